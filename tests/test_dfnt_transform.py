"""Fermat number transforms with root of unity a power of two: the reference
decimation in time (eq 2.5-2.8) against the definition (eq 2.4), the native forward
transform against the definition, forward-then-inverse is the identity (1-D and 2-D,
every length up to the ring's limit), and the cyclic convolution theorem."""
import pytest
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.errors import InputError
from edgecc.kernels import dfnt
from edgecc.kernels import dfnt_reference as ref

BITS = (32, 48, 64)
ISAS = ["scalar"] + (["avx512"] if _native.best_isa() == "avx512" else [])
SETTINGS = settings(max_examples=10, deadline=None)


def lengths(b, limit=256):
    n, out = 2, []
    while n <= min(ref.max_transform_length(b), limit):
        out.append(n)
        n *= 2
    return out


def residues(b):
    p = (1 << b) + 1
    return st.one_of(st.sampled_from([0, 1, p - 1, p - 2, 1 << (b - 1)]), st.integers(0, p - 1))


def sequences(b, length, count):
    return st.lists(st.lists(residues(b), min_size=length, max_size=length), min_size=count, max_size=count)


def test_max_lengths_and_roots():
    # 2 has order 2b; sqrt(2) = 2^(b/4) (2^(b/2) - 1) doubles that to 4b
    assert [ref.max_transform_length(b) for b in BITS] == [128, 64, 256]
    for b in BITS:
        p = (1 << b) + 1
        sqrt2 = (1 << (b // 4)) * ((1 << (b // 2)) - 1) % p
        assert sqrt2 * sqrt2 % p == 2
        assert _native.dfnt_max_transform_length(b) == ref.max_transform_length(b)
        for n in lengths(b):
            assert _native.dfnt_root_shift(b, n) == ref.root_shift(b, n)
            a = ref.root_of_unity(b, n)
            assert pow(a, n, p) == 1 and pow(a, n // 2, p) == p - 1  # order exactly n
    with pytest.raises(ValueError, match="power of two"):
        _native.dfnt_root_shift(48, 128)


@pytest.mark.parametrize("b", BITS)
def test_reference_dit_matches_definition(b):
    r = ref.Ring(b)
    for n in lengths(b, 128):  # beyond 2b the root involves sqrt(2)
        x = [(i * 2654435761 + 17) % r.p for i in range(n)]
        got = [r.value(v) for v in ref.fnt_dit([r.word(v) for v in x], b)]
        assert got == ref.fnt_definition(x, b)
        assert ref.fnt_definition(ref.fnt_definition(x, b), b, inverse=True) == x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
@SETTINGS
@given(data=st.data())
def test_forward_1d_matches_definition_and_inverts(isa, b, data):
    n = data.draw(st.sampled_from(lengths(b, 128)))
    x = data.draw(sequences(b, n, data.draw(st.integers(1, 11))))
    fx = dfnt.fnt(x, bits=b, isa=isa)
    assert fx == [ref.fnt_definition(s, b) for s in x]
    assert dfnt.fnt(fx, bits=b, inverse=True, isa=isa) == x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
def test_longest_1d_transform_inverts(isa, b):
    n = ref.max_transform_length(b)
    p = (1 << b) + 1
    x = [[(i * 40503 + j * 977 + 1) % p for i in range(n)] for j in range(9)] + [[p - 1] * n, [0] * n]
    fx = dfnt.fnt(x, bits=b, isa=isa)
    assert fx[0] == ref.fnt_definition(x[0], b)
    assert dfnt.fnt(fx, bits=b, inverse=True, isa=isa) == x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
@SETTINGS
@given(data=st.data())
def test_forward_2d_matches_definition_and_inverts(isa, b, data):
    n = data.draw(st.sampled_from([2, 4, 8, 16]))
    mats = data.draw(st.lists(sequences(b, n, n), min_size=1, max_size=9))
    fx = dfnt.fnt(mats, bits=b, dims=2, isa=isa)
    assert fx[0] == ref.fnt2d_definition(mats[0], b)
    assert dfnt.fnt(fx, bits=b, dims=2, inverse=True, isa=isa) == mats


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
def test_2d_identity_at_largest_tile(isa, b):
    n = min(ref.max_transform_length(b), 64)
    p = (1 << b) + 1
    mats = [[[(i * 131 + j * 7919 + t) % p for j in range(n)] for i in range(n)] for t in range(3)]
    mats.append([[p - 1] * n for _ in range(n)])
    assert dfnt.fnt(dfnt.fnt(mats, bits=b, dims=2, isa=isa), bits=b, dims=2, inverse=True, isa=isa) == mats


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
@SETTINGS
@given(data=st.data())
def test_cyclic_convolution_theorem_1d(isa, b, data):
    p = (1 << b) + 1
    n = data.draw(st.sampled_from(lengths(b, 128)))
    x, y = data.draw(sequences(b, n, 2))
    fx, fy = dfnt.fnt([x, y], bits=b, isa=isa)
    z = dfnt.fnt([[u * v % p for u, v in zip(fx, fy)]], bits=b, inverse=True, isa=isa)[0]
    assert z == ref.cyclic_convolution(x, y, p)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b", BITS)
def test_cyclic_convolution_theorem_2d_with_signed_data(isa, b):
    # small signed integers, as in a convolution: the modular result is the integer one
    p, n = (1 << b) + 1, 8
    x = [[((i * 37 + j * 11) % 255) - 128 for j in range(n)] for i in range(n)]
    y = [[((i * 5 + j * 3) % 15) - 7 for j in range(n)] for i in range(n)]
    fx, fy = dfnt.fnt([[[v % p for v in row] for row in x], [[v % p for v in row] for row in y]], bits=b, dims=2,
                      isa=isa)
    prod = [[u * v % p for u, v in zip(ru, rv)] for ru, rv in zip(fx, fy)]
    z = dfnt.fnt([prod], bits=b, dims=2, inverse=True, isa=isa)[0]
    expected = ref.cyclic_convolution2d(x, y)
    assert [[ref.Ring(b).signed(v) for v in row] for row in z] == expected


def test_transform_argument_errors():
    with pytest.raises(InputError, match="power of two"):
        dfnt.fnt([[1, 2, 3]], bits=32)
    with pytest.raises(InputError, match="power of two"):
        dfnt.fnt([[0] * 256], bits=32)  # F5 transforms stop at 128
    with pytest.raises(InputError, match="not in"):
        dfnt.fnt([[0, (1 << 32) + 1]], bits=32)
