"""PassManager: order, fixed point, verification naming the pass, the pass log, and
the default pipeline end to end on a small CNN."""
import numpy as np
import pytest
import torch

import edgecc
from edgecc.compiler.ir import Graph, TensorType, load, save
from edgecc.compiler.passes import PassManager, default_pipeline, log_change
from edgecc.errors import EdgeccError, VerifyError

RNG = np.random.default_rng(5)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def tiny():
    g = Graph("tiny")
    x = g.add_input("x", (2, 3))
    g.outputs = [g.add_node("relu", [x], name="r").outputs[0]]
    return g


def test_runs_in_order_and_logs():
    calls = []

    def first(g):
        calls.append("first")
        log_change(g, "first", "did a")
        return False

    class Second:
        name = "second"

        def __call__(self, g):
            calls.append(self.name)
            return True

    g = tiny()
    assert PassManager([first, Second()]).run(g) is True
    assert calls == ["first", "second"]
    assert g.meta["pass_log"] == [{"pass": "first", "message": "did a"}]


def test_fixed_point_repeats_until_no_change_and_caps_rounds():
    budget = [3]

    def shrink(g):
        if budget[0] == 0:
            return False
        budget[0] -= 1
        log_change(g, "shrink", f"left {budget[0]}")
        log_change(g, "shrink", "same note every round")
        return True

    g = tiny()
    assert PassManager([shrink], fixed_point=True).run(g)
    assert budget == [0]
    assert [r["message"] for r in g.meta["pass_log"]] == [
        "left 2", "same note every round", "left 1", "left 0"]

    budget[0] = 10
    PassManager([shrink], fixed_point=True, max_rounds=4).run(tiny())
    assert budget == [6]
    assert PassManager([shrink]).run(tiny()) is True and budget == [5]  # one round


def test_verification_failure_names_the_pass():
    def break_types(g):  # records a wrong output type: the verifier must catch it
        v = g.nodes[0].outputs[0]
        v.type = TensorType((9,), v.type.dtype)
        return True

    with pytest.raises(VerifyError, match="after pass 'break_types'.*node 'r' \\(op relu\\)"):
        PassManager([break_types]).run(tiny())


def test_dangling_input_after_pass_names_the_pass():
    class DropProducer:
        name = "drop_producer"

        def __call__(self, g):
            y = g.add_node("tanh", [g.outputs[0]], name="t").outputs[0]
            g.outputs = [y]
            g.nodes.pop(0)
            return True

    with pytest.raises(VerifyError, match="after pass 'drop_producer'.*node 't'.*used before"):
        PassManager([DropProducer()]).run(tiny())


def test_pass_crash_and_bad_return_name_the_pass():
    def crash(g):
        raise KeyError("oops")

    with pytest.raises(EdgeccError, match="pass 'crash' failed.*KeyError"):
        PassManager([crash]).run(tiny())
    with pytest.raises(EdgeccError, match="pass 'lazy' returned None"):
        def lazy(g):
            return None
        PassManager([lazy]).run(tiny())


def small_cnn():
    """conv-bn-relu, dropout (identity), a depthwise conv-bn, a dead branch, a constant
    weight transpose, linear-bn: the default pipeline has work on every pass."""
    torch.manual_seed(0)
    conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
    bn1 = torch.nn.BatchNorm2d(8)
    dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    bn2 = torch.nn.BatchNorm2d(8)
    fc = torch.nn.Linear(8 * 4 * 4, 5)
    bn3 = torch.nn.BatchNorm1d(5)
    for bn in (bn1, bn2, bn3):
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(bn.num_features))
            bn.running_var.copy_(torch.rand(bn.num_features) + 0.3)
            bn.weight.copy_(torch.randn(bn.num_features))
            bn.bias.copy_(torch.randn(bn.num_features))
    model = torch.nn.Sequential(conv1, bn1, torch.nn.ReLU(), torch.nn.Dropout(), dw, bn2,
                                torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), fc,
                                bn3).eval()

    def c(name, t):
        return Graph.constant(name, t.detach().numpy().copy())

    def bn_ins(prefix, bn):
        return [c(f"{prefix}.{k}", getattr(bn, a)) for k, a in
                (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                 ("var", "running_var"))]

    g = Graph("small_cnn")
    x = g.add_input("x", (2, 3, 8, 8))
    v = g.add_node("conv2d", [x, c("conv1.w", conv1.weight), c("conv1.b", conv1.bias)],
                   {"pads": 1}, name="conv1").outputs[0]
    v = g.add_node("batch_norm", [v] + bn_ins("bn1", bn1), name="bn1").outputs[0]
    v = g.add_node("relu", [v], name="relu1").outputs[0]
    v = g.add_node("identity", [v], name="dropout").outputs[0]
    g.add_node("sigmoid", [v], name="unused_probe")
    v = g.add_node("conv2d", [v, c("dw.w", dw.weight)], {"pads": 1, "groups": 8},
                   name="dw").outputs[0]
    v = g.add_node("batch_norm", [v] + bn_ins("bn2", bn2), name="bn2").outputs[0]
    v = g.add_node("relu", [v], name="relu2").outputs[0]
    v = g.add_node("max_pool2d", [v], {"kernel": 2}, name="pool").outputs[0]
    v = g.add_node("flatten", [v], name="flat").outputs[0]
    wt = g.add_node("transpose", [c("fc.wT", fc.weight.T.contiguous())], {"perm": (1, 0)},
                    name="fc.w").outputs[0]
    v = g.add_node("gemm", [v, wt, c("fc.b", fc.bias)], {"trans_b": True}, name="fc").outputs[0]
    g.outputs = [g.add_node("batch_norm", [v] + bn_ins("bn3", bn3), name="bn3",
                            output_names=["logits"]).outputs[0]]
    return model, g


def test_default_pipeline_matches_torch_and_logs(tmp_path):
    model, g = small_cnn()
    x = rand(2, 3, 8, 8)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert default_pipeline().run(g) is True
    assert [n.op for n in g.nodes] == ["conv2d", "relu", "conv2d", "relu", "max_pool2d",
                                       "flatten", "gemm"]
    assert g.outputs[0].name == "logits"
    got = edgecc.interpret(g, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    msgs = [f"{r['pass']}: {r['message']}" for r in g.meta["pass_log"]]
    assert msgs == [
        "eliminate_identities: removed dropout (identity, no-op)",
        "fold_constants: folded fc.w (op transpose) into constant fc.w",
        "eliminate_dead_code: removed 1 unused node(s): unused_probe (sigmoid)",
        "fold_batchnorm: folded bn1 into conv1",
        "fold_batchnorm: folded bn2 into dw",
        "fold_batchnorm: folded bn3 into fc",
    ]
    assert default_pipeline().run(g) is False
    save(g, tmp_path / "m.ecir")
    g2 = load(tmp_path / "m.ecir")
    assert g2.meta["pass_log"] == g.meta["pass_log"]
    np.testing.assert_array_equal(edgecc.interpret(g2, x)[0], got)


def test_constant_graph_output_stays_valid():
    g = Graph("g")
    g.add_input("x", (1,))
    k = Graph.constant("k", np.array([1, -1], np.float32))
    g.outputs = [g.add_node("relu", [k], name="r").outputs[0]]
    default_pipeline().run(g)
    np.testing.assert_array_equal(edgecc.interpret(g, np.zeros(1, np.float32))[0], [1, 0])
