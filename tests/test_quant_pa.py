"""PA quantizers: forward/backward against hand-computed values of eq 3.6-3.14, and the
inference decomposition (eq 3.15-3.19) against the module forward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from edgecc.compiler.quant.pa import (PAActQuant, PAConv2d, PALinear, PAWeightQuant,
                                      lloyd_zero_levels, weight_endpoints,
                                      weight_piece_index)
from edgecc.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_weight_endpoints_table_3_1():
    w = torch.tensor([-2.0, 2.0])       # population std = 2
    assert weight_endpoints(w, 8).tolist() == [-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0]


def test_weight_forward_and_backward_by_hand():
    # std = sqrt(21.01 / 4) = 2.2918 -> u = (-2.865, -0.917, 0.917, 2.865) for M = 4
    w = torch.tensor([-4.0, -2.0, -1.0, -0.1, 0.1, 1.0, 2.0, 4.0], requires_grad=True)
    wq = PAWeightQuant(4, lambda_w=0.5)
    out = wq(w)
    # eq 3.6/3.7: pieces {-4} {-2,-1} zero {-0.1,0.1} {1,2} {4}; alphas are piece means
    assert out.tolist() == [-4.0, -1.5, -1.5, 0.0, 0.0, 1.5, 1.5, 4.0]
    g = torch.arange(1.0, 9.0)
    out.backward(g)
    # eq 3.9: s = (-1.891, 0, 1.891); eq 3.8 slopes 0.5*(a2-a1)=1.25, 0.5*(0-a2)=0.75,
    # 0.5*(a3-0)=0.75, 0.5*(a4-a3)=1.25
    slopes = [1.25, 1.25, 0.75, 0.75, 0.75, 0.75, 1.25, 1.25]
    assert w.grad.tolist() == pytest.approx([gi * s for gi, s in zip(g.tolist(), slopes)])


def test_weight_piece_boundaries_left_closed():
    # pieces are [u_k, u_{k+1}): index = number of endpoints <= w; M/2 = 2 is the zero piece
    u = torch.tensor([-1.0, -0.5, 0.5, 1.0])
    w = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -1.01])
    assert weight_piece_index(w, u).tolist() == [1, 2, 2, 3, 4, 0]


def test_activation_forward_and_backward_by_hand():
    aq = PAActQuant(3, lambda_a=0.5, lambda_delta=0.4)
    with torch.no_grad():
        aq.v.copy_(torch.tensor([0.5, 1.0, 2.0]))
        aq.beta.copy_(torch.tensor([0.7, 1.5, 2.5]))
    a = torch.tensor([-1.0, 0.2, 0.3, 0.6, 0.8, 1.2, 1.6, 2.0, 2.3, 3.0], requires_grad=True)
    out = aq(a)
    assert out.tolist() == pytest.approx([0, 0, 0, 0.7, 0.7, 1.5, 1.5, 2.5, 2.5, 2.5])   # eq 3.10
    g = torch.arange(1.0, 11.0)
    out.backward(g)
    # eq 3.12: t1 = 0.75, t2 = 1.5, t0 = 2*0.5 - 0.75 = 0.25, t3 = 2.0 + 0.4 = 2.4
    # eq 3.11 slopes: [0.25,0.75): 0.5*0.7 = 0.35, [0.75,1.5): 0.5*0.8 = 0.4, [1.5,2.4): 0.5*1.0 = 0.5
    assert a.grad.tolist() == pytest.approx([0, 0, 3 * .35, 4 * .35, 5 * .4, 6 * .4, 7 * .5, 8 * .5, 9 * .5, 0])
    # eq 3.13: beta_1 <- a in [0.5,1): g 4+5; beta_2 <- [1,2): 6+7; beta_3 <- [2,inf): 8+9+10
    assert aq.beta.grad.tolist() == pytest.approx([9, 13, 27])
    # eq 3.14 (sign of a true derivative, see pa.py): v_1 <- [t0,t1): 3+4, v_2 <- [t1,t2): 5+6,
    # v_3 <- [t2,t3): 7+8+9
    assert aq.v.grad.tolist() == pytest.approx([-0.35 * 7, -0.4 * 11, -0.5 * 24])


def test_endpoint_gradient_sign_reduces_loss():
    # Loss wants larger outputs near v_2: gradient descent must lower v_2.
    aq = PAActQuant(2, lambda_a=1.0)
    with torch.no_grad():
        aq.v.copy_(torch.tensor([0.5, 1.0]))
        aq.beta.copy_(torch.tensor([0.75, 1.25]))
    a = torch.tensor([0.95, 0.97])
    (-aq(a).sum()).backward()
    assert aq.v.grad[1] > 0


def test_activation_planes_rule_and_negatives():
    aq = PAActQuant(3)
    with torch.no_grad():
        aq.v.copy_(torch.tensor([0.5, 1.0, 2.0]))
    a = torch.tensor([-3.0, 0.0, 0.5, 0.99, 1.0, 2.0, 7.0])
    v = aq.planes(a).numpy()
    assert v.tolist() == [[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1]]


def test_bad_arguments():
    with pytest.raises(InputError, match="M=3"):
        PAWeightQuant(3)
    with pytest.raises(InputError, match="N=0"):
        PAActQuant(0)
    conv = PAConv2d(2, 2, 3, m=2, n=2)
    with torch.no_grad():
        conv.aq.v.copy_(torch.tensor([1.0, 0.5]))
    with pytest.raises(InputError, match="increase"):
        conv.pa_params()


def test_lloyd_init_levels():
    x = torch.tensor([0.0] * 10 + [1.0] * 5 + [3.0] * 5)
    v, beta = lloyd_zero_levels(x, 2)
    assert beta.tolist() == pytest.approx([1.0, 3.0]) and v.tolist() == pytest.approx([0.5, 2.0])


def _init_act(aq, n, rng):
    with torch.no_grad():
        aq.v.copy_(torch.tensor(np.sort(rng.uniform(0.05, 2.0, n)) + np.arange(n) * 1e-2, dtype=torch.float32))
        aq.beta.copy_(torch.tensor(rng.uniform(0.1, 3.0, n), dtype=torch.float32))


@settings(max_examples=12, deadline=None)
@given(m=st.sampled_from([2, 4, 6, 8]), n=st.integers(1, 7), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), pad=st.integers(0, 1), bias=st.booleans(), seed=st.integers(0, 1000))
def test_conv_decomposition_equals_forward(m, n, k, stride, pad, bias, seed):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    conv = PAConv2d(3, 4, k, stride=stride, padding=pad, bias=bias, m=m, n=n).eval()
    _init_act(conv.aq, n, rng)
    x = torch.tensor(rng.normal(0.5, 1.0, (2, 3, 6, 7)), dtype=torch.float32)
    with torch.no_grad():
        ref = conv(x)
    p = conv.pa_params()
    t, alphas, v, betas = p["weight_planes"], p["alphas"], p["act_endpoints"], p["betas"]
    assert t.shape == (m, 4, 3, k, k) and set(np.unique(t)) <= {0, 1} and (t.sum(0) <= 1).all()
    xn = x.numpy()
    out = np.zeros(ref.shape)
    for j in range(n):
        upper = v[j + 1] if j + 1 < n else np.inf
        vj = torch.tensor(((xn >= v[j]) & (xn < upper)).astype(np.float64))
        for i in range(m):
            out += alphas[i] * betas[j] * F.conv2d(vj, torch.tensor(t[i], dtype=torch.float64),
                                                   stride=p["stride"], padding=p["padding"]).numpy()
    if p["bias"] is not None:
        out += p["bias"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_linear_decomposition_equals_forward():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    lin = PALinear(10, 5, m=4, n=3).eval()
    _init_act(lin.aq, 3, rng)
    x = torch.tensor(rng.normal(0.5, 1.0, (6, 10)), dtype=torch.float32)
    with torch.no_grad():
        ref = lin(x).numpy()
    p = lin.pa_params()
    v = p["act_endpoints"]
    out = np.zeros(ref.shape) + p["bias"]
    for j in range(3):
        upper = v[j + 1] if j < 2 else np.inf
        vj = ((x.numpy() >= v[j]) & (x.numpy() < upper)).astype(np.float64)
        for i in range(4):
            out += p["alphas"][i] * p["betas"][j] * vj @ p["weight_planes"][i].T
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_weight_approximation_is_piece_means():
    torch.manual_seed(1)
    w = torch.randn(2000)
    out = PAWeightQuant(8)(w)
    u = (torch.tensor([-1.5, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 1.5]) * w.std(unbiased=False)).numpy()
    wn, on = w.numpy(), out.numpy()
    edges = [-np.inf, *u, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (wn >= lo) & (wn < hi)
        expect = 0.0 if (lo, hi) == (u[3], u[4]) else wn[sel].mean()
        np.testing.assert_allclose(on[sel], expect, rtol=1e-5, atol=1e-6)
