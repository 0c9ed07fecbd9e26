"""ABC-Net (eq 3.5) and sign (eq 3.1-3.2) baselines: hand-computed forward/backward,
inference decompositions against the module forward, and the conversion rules."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecc.compiler.quant.abc import ABCActQuant, ABCConv2d, ABCWeightQuant, abc_weight_bases
from edgecc.compiler.quant.calibration import calibrate
from edgecc.compiler.quant.convert import abc_convert, binary_layers, pa_convert, sign_convert
from edgecc.compiler.quant.pa import PAConv2d
from edgecc.compiler.quant.sign import SignActQuant, SignConv2d, sign_weight
from edgecc.errors import InputError
from edgecc.zoo.digits import DigitsResNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_abc_weight_bases_least_squares():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 3, 3)
    d, eps = abc_weight_bases(w, 3)
    wn = w.numpy()
    # u = -1, 0, 1: D_i = sign(W - mean + u_i std), sign(0) = +1
    for i, u in enumerate([-1.0, 0.0, 1.0]):
        expect = np.where(wn - wn.mean() + u * wn.std() >= 0, 1, -1)
        assert (d[i].numpy() == expect).all()
    a = d.reshape(3, -1).T.double().numpy()
    ref = np.linalg.lstsq(a, wn.reshape(-1).astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(eps.numpy(), ref, rtol=1e-5)


def test_abc_weight_straight_through():
    w = torch.tensor([-1.0, 0.3, 2.0], requires_grad=True)
    ABCWeightQuant(2)(w).backward(torch.tensor([1.0, 2.0, 3.0]))
    assert w.grad.tolist() == [1.0, 2.0, 3.0]


def test_abc_activation_by_hand():
    aq = ABCActQuant(2)
    with torch.no_grad():
        aq.theta.copy_(torch.tensor([0.5, 1.5]))
        aq.beta.copy_(torch.tensor([0.25, 1.0]))
    a = torch.tensor([0.0, 0.5, 1.2, 2.5], requires_grad=True)
    out = aq(a)
    # H_1 = [-1, 1, 1, 1], H_2 = [-1, -1, -1, 1]
    assert out.tolist() == pytest.approx([-1.25, -0.75, -0.75, 1.25])
    g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out.backward(g)
    # slope 2 on |a - theta| < 0.5: base 1 at a = 0.5 (|0.5-0.5|=0) only ... 0.0 is on the edge (excluded)
    # base 2 at a = 1.2 only
    assert a.grad.tolist() == pytest.approx([0, 2 * 0.25 * 2, 2 * 1.0 * 3, 0])
    assert aq.beta.grad.tolist() == pytest.approx([-1 + 2 + 3 + 4, -1 - 2 - 3 + 4])
    assert aq.theta.grad.tolist() == pytest.approx([-0.25 * 2 * 2, -1.0 * 2 * 3])


def test_sign_weight_and_activation_by_hand():
    w = torch.tensor([[0.5, -1.5], [0.0, -2.0]], requires_grad=True)
    out = sign_weight(w)
    assert out.tolist() == [[1.0, -1.0], [1.0, -1.0]]     # alpha = mean|W| per row = 1, 1
    out.backward(torch.ones(2, 2))
    assert w.grad.tolist() == [[1.0, 0.0], [1.0, 0.0]]   # STE clipped at |W| <= 1
    for kind, slopes in (("ste", [0, 1, 1, 1]), ("bireal", [0, 1.0, 2.0, 1.2])):
        aq = SignActQuant(1, spatial=False, backward=kind)
        with torch.no_grad():
            aq.threshold.fill_(0.5)
        a = torch.tensor([[-1.0], [0.0], [0.5], [0.9]], requires_grad=True)
        h = aq(a)
        assert h.reshape(-1).tolist() == [-1, -1, 1, 1]
        h.sum().backward()
        assert a.grad.reshape(-1).tolist() == pytest.approx(slopes)
        assert aq.threshold.grad.tolist() == pytest.approx([-sum(slopes)])
    with pytest.raises(InputError, match="backward"):
        SignActQuant(1, spatial=False, backward="tanh")


def test_abc_conv_decomposition_equals_forward():
    torch.manual_seed(0)
    conv = ABCConv2d(3, 4, 3, stride=2, padding=1, m=3, n=2)
    x = torch.randn(2, 3, 7, 7).relu()
    calibrate(nn.Sequential(conv), [x])
    with torch.no_grad():
        ref = conv(x).numpy()
    p = conv.abc_params()
    out = np.zeros(ref.shape) + p["bias"].reshape(1, -1, 1, 1)
    for j in range(2):
        hj = torch.tensor(np.where(x.numpy() >= p["act_thresholds"][j], 1.0, -1.0))
        for i in range(3):
            out += p["alphas"][i] * p["betas"][j] * F.conv2d(hj, torch.tensor(p["weight_bases"][i], dtype=torch.float64),
                                                             stride=2, padding=1).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_sign_conv_decomposition_equals_forward():
    torch.manual_seed(0)
    conv = SignConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    calibrate(nn.Sequential(conv), [x])
    with torch.no_grad():
        ref = conv(x).numpy()
    p = conv.sign_params()
    h = torch.tensor(np.where(x.numpy() >= p["act_thresholds"].reshape(1, -1, 1, 1), 1.0, -1.0))
    out = F.conv2d(h, torch.tensor(p["weight_signs"], dtype=torch.float64), padding=1).numpy()
    out = out * p["alphas"].reshape(1, -1, 1, 1) + p["bias"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_convert_keeps_first_conv_and_classifier_float():
    model = DigitsResNet()
    for conv, kind in ((lambda m: pa_convert(m, 4, 5), PAConv2d), (lambda m: abc_convert(m, 2, 3), ABCConv2d),
                       (sign_convert, SignConv2d)):
        q = conv(model)
        assert type(q.stem) is nn.Conv2d and type(q.fc) is nn.Linear
        assert isinstance(q.block2.downsample, kind) and q.block2.downsample.kernel_size == (1, 1)
        assert len(binary_layers(q)) == 7
        assert torch.equal(q.block1.conv1.weight, model.block1.conv1.weight)
    assert type(model.block1.conv1) is nn.Conv2d      # the float model is untouched


def test_calibrate_without_quantizers_fails():
    with pytest.raises(InputError, match="no activation quantizers"):
        calibrate(DigitsResNet(), [torch.zeros(1, 1, 8, 8)])
