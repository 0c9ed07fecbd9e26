"""Diminished-1 arithmetic (thesis Algorithm 1) modulo 2^b + 1: the pure-Python
reference against plain modular arithmetic, and the native scalar and AVX-512 ops
against the reference, including the special words 2^b (the value 0) and 2^b - 1
(the value 2^b = -1)."""
import pytest
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.errors import InputError
from edgecc.kernels import dfnt
from edgecc.kernels.dfnt_reference import Ring

BITS = (32, 48, 64)
ISAS = ["scalar"] + (["avx512"] if _native.best_isa() == "avx512" else [])
SETTINGS = settings(max_examples=40, deadline=None)


def words(b):
    """d-1 words with the special and boundary words over-represented."""
    special = st.sampled_from([1 << b, (1 << b) - 1, 0, 1, (1 << b) - 2, 1 << (b - 1), (1 << (b - 1)) - 1])
    return st.one_of(special, st.integers(0, 1 << b))


def word_lists(b, min_size=1, max_size=37):  # 37: several 8-lane vectors plus a tail
    return st.lists(words(b), min_size=min_size, max_size=max_size)


def pair_lists(b):
    return st.integers(1, 37).flatmap(lambda n: st.tuples(st.lists(words(b), min_size=n, max_size=n),
                                                         st.lists(words(b), min_size=n, max_size=n)))


@pytest.mark.parametrize("b", BITS)
@SETTINGS
@given(data=st.data())
def test_reference_matches_modular_arithmetic(b, data):
    r = Ring(b)
    x, y = data.draw(words(b)), data.draw(words(b))
    vx, vy = r.value(x), r.value(y)
    assert r.word(vx) == x  # word <-> value is a bijection on [0, 2^b]
    assert r.value(r.add(x, y)) == (vx + vy) % r.p
    assert r.value(r.sub(x, y)) == (vx - vy) % r.p
    assert r.value(r.neg(x)) == (-vx) % r.p
    assert r.value(r.mul(x, y)) == vx * vy % r.p
    s = data.draw(st.integers(0, 2 * b))
    assert r.value(r.mul_pow2(x, s)) == vx * pow(2, s, r.p) % r.p
    assert r.value(r.shl1(x)) == 2 * vx % r.p
    nb = data.draw(st.integers(0, 1 << b))  # nb residues in [0, p)
    assert r.value(r.from_nb(nb)) == nb
    assert r.to_nb(x) == vx


@pytest.mark.parametrize("b", BITS)
def test_reference_special_words(b):
    r = Ring(b)
    zero, minus_one = 1 << b, (1 << b) - 1
    assert r.add(zero, zero) == zero and r.add(zero, 5) == 5
    assert r.add(0, minus_one) == zero  # 1 + (-1) = 0
    assert r.neg(zero) == zero and r.neg(minus_one) == 0  # -(-1) = 1, whose word is 0
    assert r.mul(minus_one, minus_one) == 0
    assert r.mul(zero, minus_one) == zero
    assert r.shl1(minus_one) == r.word(-2)
    assert r.from_nb(0) == zero and r.from_nb(1 << b) == minus_one
    assert r.to_nb(zero) == 0 and r.to_nb(minus_one) == 1 << b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@SETTINGS
@given(data=st.data())
def test_native_binary_ops(isa, b, op, data):
    r = Ring(b)
    x, y = data.draw(pair_lists(b))
    assert dfnt.ring_op(op, x, y, bits=b, isa=isa) == [getattr(r, op)(u, v) for u, v in zip(x, y)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
@SETTINGS
@given(data=st.data())
def test_native_unary_ops(isa, b, data):
    r = Ring(b)
    x = data.draw(word_lists(b))
    assert dfnt.ring_op("neg", x, bits=b, isa=isa) == [r.neg(v) for v in x]
    assert dfnt.ring_op("from_d1", x, bits=b, isa=isa) == [r.to_nb(v) for v in x]
    assert dfnt.ring_op("to_d1", x, bits=b, isa=isa) == [r.from_nb(v) for v in x]  # x read as nb residues
    s = data.draw(st.integers(0, 2 * b - 1))
    assert dfnt.ring_op("shl", x, bits=b, shift=s, isa=isa) == [r.mul_pow2(v, s) for v in x]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
def test_native_every_shift_and_all_special_pairs(isa, b):
    r = Ring(b)
    specials = [1 << b, (1 << b) - 1, 0, 1, (1 << b) - 2, 1 << (b - 1), 12345]
    for s in range(2 * b):
        assert dfnt.ring_op("shl", specials, bits=b, shift=s, isa=isa) == [r.mul_pow2(v, s) for v in specials]
    xs = [u for u in specials for _ in specials]
    ys = [v for _ in specials for v in specials]
    for op in ("add", "sub", "mul"):
        assert dfnt.ring_op(op, xs, ys, bits=b, isa=isa) == [getattr(r, op)(u, v) for u, v in zip(xs, ys)]


def test_native_rejects_words_out_of_range():
    with pytest.raises(InputError, match="2\\^32"):
        dfnt.ring_op("neg", [(1 << 32) + 1], bits=32)
    with pytest.raises(ValueError, match="not a word"):
        _native.dfnt_ring_op(48, "add", [1 << 49], [0], [0], [0], 0, "")
    with pytest.raises(ValueError, match="unknown ring op"):
        _native.dfnt_ring_op(32, "div", [1], [0], [1], [0], 0, "")
    with pytest.raises(ValueError, match="2\\^40\\+1"):
        _native.dfnt_ring_op(40, "add", [1], [0], [1], [0], 0, "")
