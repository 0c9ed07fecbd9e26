"""Pure-Python big-integer reference of the DFNT ring arithmetic and transforms
(thesis ch.2): diminished-1 operations written bit by bit as in Algorithm 1, the
Fermat number transform by its definition (eq 2.4, 2.9, 2.10) and by decimation in
time (eq 2.5-2.8), and cyclic convolution. Slow and obvious on purpose: the native
kernels are tested against it, and it is tested against plain modular arithmetic.

A diminished-1 (d-1) word X of the ring Z/(2^b + 1) is a (b+1)-bit integer:
X in [0, 2^b - 1] stands for the value X + 1, X = 2^b stands for 0.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ring:
    """Z/(2^b + 1) with diminished-1 words."""

    b: int

    @property
    def p(self) -> int:
        return (1 << self.b) + 1

    @property
    def zero_word(self) -> int:  # the d-1 word of the value 0
        return 1 << self.b

    @property
    def mask(self) -> int:  # b ones; also the d-1 word of 2^b = -1
        return (1 << self.b) - 1

    # ---- Algorithm 1 ----
    def add(self, x: int, y: int) -> int:
        """addition_d-1: X_b + Y_b + complemented carry; a zero operand passes the other."""
        if x == self.zero_word:
            return y
        if y == self.zero_word:
            return x
        s = x + y
        carry = s >> self.b
        z = (s & self.mask) + (1 - carry)
        return z  # equals 2^b (the zero word) exactly when x + y + 2 = p

    def neg(self, x: int) -> int:
        """negation_d-1: complement the b bits; zero stays zero."""
        return x if x == self.zero_word else self.mask ^ x

    def sub(self, x: int, y: int) -> int:
        return self.add(x, self.neg(y))

    def shl1(self, x: int) -> int:
        """left shift_d-1 (times 2): rotate left by one, the wrapped bit complemented."""
        if x == self.zero_word:
            return x
        top = x >> (self.b - 1)
        return ((x << 1) & self.mask) | (1 - top)

    def mul_pow2(self, x: int, s: int) -> int:
        """x * 2^s by s left shifts (2^b = -1, so 2b shifts are the identity)."""
        for _ in range(s % (2 * self.b)):
            x = self.shl1(x)
        return x

    def mul_pow2_half(self, x: int, h: int) -> int:
        """x * 2^(h/2): for odd h, 2^((h-1)/2) * sqrt(2) with sqrt(2) = 2^(b/4) (2^(b/2) - 1)."""
        if h % 2 == 0:
            return self.mul_pow2(x, h // 2)
        s = (h - 1) // 2
        return self.sub(self.mul_pow2(x, s + 3 * self.b // 4), self.mul_pow2(x, s + self.b // 4))

    def mul(self, x: int, y: int) -> int:
        """multiplication_d-1; the zero operand is handled first (Algorithm 1 leaves it out)."""
        if x == self.zero_word or y == self.zero_word:
            return self.zero_word
        if x == self.mask:  # the value 2^b = -1
            return self.neg(y)
        if y == self.mask:
            return self.neg(x)
        prod = (x + 1) * (y + 1)  # nb operands of b bits
        zh, zl = prod >> self.b, prod & self.mask
        return self.sub(zl, zh)

    def from_nb(self, x: int) -> int:
        """nb_to_d-1: addition_d-1(x, 2^b - 1), with x read as a d-1 word (value x + 1)."""
        return self.add(x, self.mask)  # x = 2^b (= -1) reads as the zero word: gives 2^b - 1

    def to_nb(self, x: int) -> int:
        """d-1_to_nb: the residue in [0, 2^b]."""
        return 0 if x == self.zero_word else x + 1

    # ---- value <-> word helpers ----
    def word(self, value: int) -> int:
        """d-1 word of an integer (any sign)."""
        r = value % self.p
        return self.zero_word if r == 0 else r - 1

    def value(self, x: int) -> int:
        """Residue in [0, p) of a d-1 word."""
        return self.to_nb(x)

    def signed(self, residue: int) -> int:
        """Residue in [0, p) -> the integer in [-(p-1)/2, (p-1)/2]."""
        return residue - self.p if residue > self.p // 2 else residue


def max_transform_length(b: int) -> int:
    """Largest power-of-two length with a root of unity made of shifts: 2 has order
    2b, sqrt(2) = 2^(b/4) (2^(b/2) - 1) has order 4b."""
    four_b = 4 * b
    return four_b & -four_b


def root_shift(b: int, length: int) -> int:
    """h (in half-bits) with 2^(h/2) a root of unity of order `length`."""
    if length < 1 or length & (length - 1) or length > max_transform_length(b):
        raise ValueError(f"length {length} is not a power of two <= {max_transform_length(b)} for b={b}")
    return 4 * b // length


def root_of_unity(b: int, length: int) -> int:
    """2^(h/2) mod 2^b + 1 as an integer (sqrt(2) = 2^(b/4) (2^(b/2) - 1))."""
    p, h = (1 << b) + 1, root_shift(b, length)
    sqrt2 = (1 << (b // 4)) * ((1 << (b // 2)) - 1) % p
    return pow(2, h // 2, p) * (sqrt2 if h % 2 else 1) % p


def fnt_definition(x: list[int], b: int, inverse: bool = False) -> list[int]:
    """Eq 2.4 (forward) and eq 2.9 (inverse, scaled by 1/L) on residues, O(L^2)."""
    p, n = (1 << b) + 1, len(x)
    a = root_of_unity(b, n)
    if inverse:
        a = pow(a, -1, p)
    out = [sum(x[l] * pow(a, l * k, p) for l in range(n)) % p for k in range(n)]
    if inverse:
        inv_n = pow(n, -1, p)
        out = [v * inv_n % p for v in out]
    return out


def fnt_dit(x: list[int], b: int, root: int | None = None) -> list[int]:
    """Forward FNT by decimation in time (eq 2.5-2.8), recursively, on d-1 words.
    root: the root of unity of order len(x) as 2^(root/2) (default root_shift)."""
    ring, n = Ring(b), len(x)
    if root is None:
        root = root_shift(b, n)
    if n == 1:
        return list(x)
    x1 = fnt_dit(x[0::2], b, 2 * root)  # eq 2.7: the even samples, root a^2
    x2 = fnt_dit(x[1::2], b, 2 * root)  # eq 2.8 without its 2^q factor
    out = [0] * n
    for q in range(n // 2):
        t = ring.mul_pow2_half(x2[q], q * root)
        out[q] = ring.add(x1[q], t)            # eq 2.5
        out[q + n // 2] = ring.sub(x1[q], t)   # eq 2.6
    return out


def fnt2d_definition(x: list[list[int]], b: int, inverse: bool = False) -> list[list[int]]:
    """Eq 2.10: rows, then columns, each by the 1-D definition."""
    rows = [fnt_definition(r, b, inverse) for r in x]
    cols = [fnt_definition([rows[i][j] for i in range(len(rows))], b, inverse) for j in range(len(rows[0]))]
    return [[cols[j][i] for j in range(len(cols))] for i in range(len(rows))]


def cyclic_convolution(x: list[int], y: list[int], p: int | None = None) -> list[int]:
    """z[i] = sum_j x[j] y[(i - j) mod n], optionally reduced mod p."""
    n = len(x)
    z = [sum(x[j] * y[(i - j) % n] for j in range(n)) for i in range(n)]
    return [v % p for v in z] if p else z


def cyclic_convolution2d(x: list[list[int]], y: list[list[int]], p: int | None = None) -> list[list[int]]:
    n, m = len(x), len(x[0])
    z = [[sum(x[a][c] * y[(i - a) % n][(j - c) % m] for a in range(n) for c in range(m))
          for j in range(m)] for i in range(n)]
    return [[v % p for v in row] for row in z] if p else z


def overflow_bound(w, max_abs_input: int) -> int:
    """Eq 2.11 generalized: max |output| <= max|x| * max over output channels of
    sum |w| (w: nested sequences or an array, output channel first)."""
    best = 0
    for wo in w:
        s = sum(abs(int(v)) for v in _flatten(wo))
        best = max(best, s)
    return int(max_abs_input) * best


def _flatten(a):
    try:
        it = iter(a)
    except TypeError:
        yield a
        return
    for v in it:
        yield from _flatten(v)
