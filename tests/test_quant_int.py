"""Integer (int8 / int16) post-training quantization of IR graphs: the quantized graph
through the reference interpreter equals an independent torch computation of the same
quantization bit for bit; per-channel scales, relu fusion, skip list, shared weights,
bad input; digits accuracy with data calibration and data-free calibration."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgecc
from edgecc.compiler.ir import DType, Graph
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.quant import calibration as C
from edgecc.compiler.quant.data_free import bn_statistics_loss, bn_targets, synthesize_calibration
from edgecc.compiler.quant.int_quant import quantize_int
from edgecc.errors import InputError
from edgecc.zoo import digits as D

QMAX = {8: 127, 16: 32767}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _two_conv_graph(rng):
    """grouped conv (bias, stride 2, asymmetric pads) -> relu -> depthwise conv (no bias)."""
    g = Graph("two_conv")
    x = g.add_input("x", (2, 4, 9, 9))
    c1 = g.add_node("conv2d", [x, Graph.constant("w1", _rand(rng, 6, 2, 3, 3)),
                               Graph.constant("b1", _rand(rng, 6))],
                    {"groups": 2, "strides": 2, "pads": (1, 0, 2, 1)}, name="c1")
    r = g.add_node("relu", c1.outputs, name="r1")
    c2 = g.add_node("conv2d", [r.outputs[0], Graph.constant("w2", _rand(rng, 6, 1, 3, 3))],
                    {"groups": 6, "pads": 1}, name="c2")
    g.outputs = c2.outputs
    return g


def _expected_qconv(x, w, b, x_scale, bits, conv_attrs, relu):
    """Independent computation (torch, float64 on exact integers) of one quantized conv."""
    qmax = QMAX[bits]
    w64 = w.astype(np.float64)
    w_scale = np.abs(w64).reshape(len(w), -1).max(1) / qmax
    wq = np.clip(np.round(w64 / w_scale[:, None, None, None]), -qmax, qmax)   # numpy round: half even
    inv = np.float32(1) / np.float32(x_scale)
    xq = torch.round(torch.from_numpy(x) * torch.tensor(inv)).clamp(-qmax, qmax).double()
    t, l, bo, r = conv_attrs["pads"]
    acc = F.conv2d(F.pad(xq, (l, r, t, bo)), torch.from_numpy(wq), stride=conv_attrs["strides"],
                   dilation=conv_attrs["dilations"], groups=conv_attrs["groups"]).numpy()
    assert np.array_equal(acc, np.rint(acc))                       # exact integers
    scale = (np.float64(np.float32(x_scale)) * w_scale).astype(np.float32)
    y = (acc * scale.astype(np.float64)[None, :, None, None]
         + b.astype(np.float64)[None, :, None, None]).astype(np.float32)
    return (np.maximum(y, 0) if relu else y), wq, scale


@pytest.mark.parametrize("bits", [8, 16])
def test_quantized_graph_is_bit_exact_against_independent_computation(bits):
    rng = np.random.default_rng(0)
    g = _two_conv_graph(rng)
    calib = [_rand(rng, 2, 4, 9, 9) for _ in range(3)]
    q, report = quantize_int(g, bits=bits, calib=calib)
    assert [n.op for n in q.nodes] == ["qconv2d", "qconv2d"]       # relu fused into c1
    n1, n2 = q.nodes
    assert n1.attrs["relu"] and not n2.attrs["relu"]
    assert n1.inputs[1].dtype == (DType.i8 if bits == 8 else DType.i16)

    # activation scales: int16 = max|x| / 32767 of the calibration data
    xs1, xs2 = n1.attrs["x_scale"], n2.attrs["x_scale"]
    assert report.layer("c1").x_scale == xs1 and report.layer("c2").x_scale == xs2
    if bits == 16:
        assert xs1 == float(np.float32(max(np.abs(c).max() for c in calib) / 32767))

    x = _rand(rng, 2, 4, 9, 9, scale=1.2)
    w1, b1 = g.nodes[0].inputs[1].data, g.nodes[0].inputs[2].data
    w2 = g.nodes[2].inputs[1].data
    y1, wq1, s1 = _expected_qconv(x, w1, b1, xs1, bits, n1.attrs, relu=True)
    y2, wq2, s2 = _expected_qconv(y1, w2, np.zeros(6, np.float32), xs2, bits, n2.attrs, relu=False)
    assert np.array_equal(n1.inputs[1].data, wq1) and np.array_equal(n2.inputs[1].data, wq2)
    assert np.array_equal(n1.inputs[2].data, s1) and np.array_equal(n2.inputs[2].data, s2)
    assert len(set(s1.tolist())) == 6                                # per-output-channel scales
    out = edgecc.interpret(q, x)[0]
    assert np.array_equal(out, y2)
    # and close to the float graph
    ref = edgecc.interpret(g, x)[0]
    tol = 0.05 if bits == 8 else 1e-3
    assert np.abs(out - ref).max() <= tol * np.abs(ref).max()


def test_int8_range_is_mse_optimal_clipping():
    """The int8 bound is the grid point (peak * k / 128) of least quantization MSE; on a
    Gaussian it clips the sparse tail (on digits: lowest logit error of max-abs, 99.99th
    percentile and MSE, see benchmarks/int_digits.py)."""
    rng = np.random.default_rng(1)
    v = rng.standard_normal(100000)
    c = C.range_mse([v[:50000], v[50000:]], 127)
    peak = C.range_max_abs([v])
    assert peak == np.abs(v).max()

    def mse(bound):
        s = bound / 127
        return np.mean((np.clip(np.round(v / s), -127, 127) * s - v) ** 2)
    grid = peak * np.arange(1, 129) / 128
    errs = [mse(b) for b in grid]
    assert mse(c) == pytest.approx(min(errs), rel=1e-9)
    assert c < 0.9 * peak and mse(c) < 0.9 * mse(peak)
    assert C.range_mse([np.zeros(5)], 127) == 0.0


def test_relu_fusion_only_when_relu_is_the_only_consumer():
    rng = np.random.default_rng(2)
    g = Graph("fuse")
    x = g.add_input("x", (1, 3, 6, 6))
    c1 = g.add_node("conv2d", [x, Graph.constant("w1", _rand(rng, 4, 3, 1, 1))], name="c1")
    r1 = g.add_node("relu", c1.outputs, name="r1")
    add = g.add_node("add", [r1.outputs[0], c1.outputs[0]], name="add")   # c1 read twice
    c2 = g.add_node("conv2d", [add.outputs[0], Graph.constant("w2", _rand(rng, 4, 4, 1, 1))], name="c2")
    r2 = g.add_node("relu", c2.outputs, name="r2")
    c3 = g.add_node("conv2d", [r2.outputs[0], Graph.constant("w3", _rand(rng, 2, 4, 1, 1))], name="c3")
    r3 = g.add_node("relu", c3.outputs, name="r3")
    g.outputs = [r3.outputs[0], c3.outputs[0]]                       # c3 output is a graph output
    xx = _rand(rng, 1, 3, 6, 6)
    q, report = quantize_int(g, bits=16, calib=[xx])
    ops = {n.name: n for n in q.nodes}
    assert not ops["c1"].attrs["relu"] and "r1" in ops
    assert ops["c2"].attrs["relu"] and "r2" not in ops and report.layer("c2").relu_fused
    assert not ops["c3"].attrs["relu"] and "r3" in ops
    for a, b in zip(edgecc.interpret(q, xx), edgecc.interpret(g, xx)):
        assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max()


def _classifier_graph(rng):
    g = Graph("cls")
    x = g.add_input("x", (2, 3, 5, 5))
    w = Graph.constant("shared_w", _rand(rng, 3, 3, 3, 3))             # read by two convs
    c1 = g.add_node("conv2d", [x, w], {"pads": 1}, name="c1")
    c2 = g.add_node("conv2d", [c1.outputs[0], w], {"pads": 1}, name="c2")
    c3 = g.add_node("conv2d", [c2.outputs[0], Graph.constant("w3", _rand(rng, 4, 3, 1, 1))], name="c3")
    gp = g.add_node("global_avg_pool", c3.outputs)
    fl = g.add_node("flatten", gp.outputs)
    fc = g.add_node("gemm", [fl.outputs[0], Graph.constant("fw", _rand(rng, 5, 4)),
                             Graph.constant("fb", _rand(rng, 5))], {"trans_b": True}, name="fc")
    g.outputs = fc.outputs
    return g


def test_shared_weight_stays_one_constant_and_skip_list():
    rng = np.random.default_rng(3)
    g = _classifier_graph(rng)
    calib = [_rand(rng, 2, 3, 5, 5)]
    logs = []
    q, report = quantize_int(g, bits=8, calib=calib, skip=["c3"], log=logs.append)
    n = {m.name: m for m in q.nodes}
    assert n["c1"].op == n["c2"].op == "qconv2d"
    assert n["c1"].inputs[1] is n["c2"].inputs[1]                      # one quantized constant
    assert sum(v.dtype == DType.i8 for v in q.constants()) == 1
    assert n["c1"].attrs["x_scale"] != n["c2"].attrs["x_scale"]        # own activation scales
    assert n["c3"].op == "conv2d" and report.layer("c3").precision == "float"
    assert report.layer("c3").reason == "skipped by override"
    assert report.layer("fc").precision == "float" and "gemm" in report.layer("fc").reason
    assert any("c3" in m and "skipped" in m for m in logs)
    assert report.weight_bits_quant < report.weight_bits_float
    assert "skipped by override" in str(report)
    # the float original is untouched
    assert [m.op for m in g.nodes].count("conv2d") == 3


def test_estimator_override_sets_the_activation_scale():
    rng = np.random.default_rng(5)
    g = _classifier_graph(rng)
    q, report = quantize_int(g, bits=8, calib=[_rand(rng, 2, 3, 5, 5)], estimator=lambda v, qmax: 2.0)
    assert all(n.attrs["x_scale"] == float(np.float32(2.0 / 127)) for n in q.nodes if n.op == "qconv2d")
    with pytest.raises(InputError, match="estimator gave nan"):
        quantize_int(g, bits=8, calib=[_rand(rng, 2, 3, 5, 5)], estimator=lambda v, qmax: float("nan"))


def test_bad_input_raises_input_error():
    rng = np.random.default_rng(4)
    g = _classifier_graph(rng)
    good = [_rand(rng, 2, 3, 5, 5)]
    with pytest.raises(InputError, match="bits=4"):
        quantize_int(g, bits=4, calib=good)
    with pytest.raises(InputError, match="empty"):
        quantize_int(g, bits=8, calib=[])
    with pytest.raises(InputError, match=r"input 'x'.*\[2, 3, 5, 5\].*\[2, 3, 6, 6\]"):
        quantize_int(g, bits=8, calib=[_rand(rng, 2, 3, 6, 6)])
    with pytest.raises(InputError, match="nope"):
        quantize_int(g, bits=8, calib=good, skip=["nope"])
    with pytest.raises(InputError, match="calib="):
        quantize_int(g, bits=8, calib="imagenet")
    with pytest.raises(InputError, match="no batch-norm"):          # data-free needs BN stats
        quantize_int(g, bits=8, calib="data-free")


# ---- digits: accuracy of the quantized graphs --------------------------------------
BATCH = 150     # the graph's batch: the 450 test images run as 3 batches


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    xtr, _, xte, yte = D.load_digits_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unfolded = edgecc.load(D.load_bundled("float"), (xte[:BATCH],))
    folded = copy.deepcopy(unfolded)
    default_pipeline().run(folded)
    assert sum(n.op == "batch_norm" for n in folded.nodes) == 4     # 3 folded into convs
    return unfolded, folded, xtr.numpy(), xte.numpy(), yte.numpy()


def _accuracy(g, x, y) -> float:
    pred = np.concatenate([edgecc.interpret(g, x[i:i + BATCH])[0].argmax(1)
                           for i in range(0, len(x), BATCH)])
    return float((pred == y).mean())


def test_digits_int8_int16_with_data_calibration(digits):
    _, g, xtr, xte, yte = digits
    acc_f = _accuracy(g, xte, yte)
    assert acc_f > 0.95
    calib = [xtr[i:i + BATCH] for i in range(0, 2 * BATCH, BATCH)]
    q8, r8 = quantize_int(g, bits=8, calib=calib)
    q16, _ = quantize_int(g, bits=16, calib=calib)
    assert sum(n.op == "qconv2d" for n in q8.nodes) == 8
    assert r8.layer("linear").precision == "float"
    assert _accuracy(q8, xte, yte) >= acc_f - 0.01
    assert _accuracy(q16, xte, yte) >= acc_f - 0.005


def test_digits_data_free(digits):
    unfolded, g, _, xte, yte = digits
    acc_f = _accuracy(g, xte, yte)
    with pytest.raises(InputError, match="multiple of the graph's batch"):
        synthesize_calibration(unfolded, n=BATCH + 1)
    samples = synthesize_calibration(unfolded, seed=0)
    assert len(samples) == 1 and samples[0].shape == (BATCH, 1, 8, 8)
    # the synthetic batch matches the BN statistics far better than noise does, measured
    # on the unfolded graph and (the same loss) on the folded one
    noise = np.random.default_rng(0).standard_normal((BATCH, 1, 8, 8)).astype(np.float32)
    loss_noise, loss_syn = bn_statistics_loss(unfolded, noise), bn_statistics_loss(unfolded, samples[0])
    assert loss_syn < loss_noise / 100
    assert len(bn_targets(g)) == len(bn_targets(unfolded)) == 7
    assert bn_statistics_loss(g, samples[0]) == pytest.approx(loss_syn, rel=1e-3)
    for bits in (8, 16):
        q, report = quantize_int(g, bits=bits, calib=samples)
        assert _accuracy(q, xte, yte) >= acc_f - 0.02      # measured: 0 points lost
    q, report = quantize_int(g, bits=8, calib="data-free")   # synthesized on the folded graph
    assert report.calibration.startswith("data-free")
    assert _accuracy(q, xte, yte) >= acc_f - 0.02
