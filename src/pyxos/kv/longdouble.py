"""INCRBYFLOAT's arithmetic: the x87 80-bit ``long double`` Redis computes in, exactly.

Redis parses both numbers with ``strtold``, adds them as ``long double`` (a 64-bit
significand on x86-64) and prints the sum with ``%.17Lf`` minus trailing zeros. Python's
``float`` has a 53-bit significand and would print other digits (``INCRBYFLOAT k 0.1`` gives
``0.1`` in Redis and would give ``0.10000000000000001``), so the values are kept as exact
fractions, rounded to the long double grid (round half to even, with subnormals and
overflow) at each step where the hardware rounds. Deterministic on every replica, whatever
its CPU.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["INF", "add_ld", "format_ld", "parse_ld"]

_MANT = 64
_EMIN = -16382  # smallest normal exponent (value = m * 2**(e - 63), 2**63 <= m < 2**64)
_EMAX = 16383
INF = "inf"
"""What :func:`parse_ld` and :func:`add_ld` return for an infinite value (with a sign)."""

_DECIMAL = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?")
_SPECIAL = re.compile(rb"([+-]?)(inf|infinity|nan(?:\([0-9a-zA-Z_]*\))?)", re.IGNORECASE)
MAX_CHARS = 5 * 1024
"""Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are refused before parsing."""

LDValue = Fraction | tuple[str, int]
"""A finite long double as an exact fraction, or ``("inf", sign)``."""


def _round(x: Fraction) -> LDValue:
    """Round an exact value to the nearest long double (ties to even)."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    # 2**e <= a < 2**(e+1); a normal long double has 64 significant bits from 2**e down.
    scale_exp = max(e, _EMIN) - (_MANT - 1)
    scaled = a / Fraction(2) ** scale_exp
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q & 1):
        q += 1
    if q.bit_length() > _MANT:  # rounding carried into a new binary digit
        q >>= 1
        scale_exp += 1
    if scale_exp + (_MANT - 1) > _EMAX:
        return (INF, sign)
    return sign * Fraction(q) * Fraction(2) ** scale_exp


def parse_ld(text: bytes) -> LDValue | None:
    """Redis's string2ld: the long double ``strtold`` reads from the whole string, or None
    (leading space, trailing bytes, NaN, overflow to infinity, or underflow to zero)."""
    if not text or len(text) >= MAX_CHARS or text[:1].isspace():
        return None
    m = _SPECIAL.fullmatch(text)
    if m:
        if m.group(2).lower().startswith(b"nan"):
            return None
        return (INF, -1 if m.group(1) == b"-" else 1)
    m = _HEX.fullmatch(text)
    if m and (m.group(2) or m.group(3)):
        digits = (m.group(2) or b"") + (m.group(3) or b"")
        value = Fraction(int(digits, 16), 16 ** len(m.group(3) or b""))
        value *= Fraction(2) ** int(m.group(4) or b"0")
        sign = -1 if m.group(1) == b"-" else 1
    else:
        m = _DECIMAL.fullmatch(text)
        if not m or not (m.group(2) or m.group(3)):
            return None
        whole, frac = m.group(2) or b"", m.group(3) or b""
        exponent = int(m.group(4) or b"0") - len(frac)
        if abs(exponent) > 100_000:  # far beyond the range: infinity or zero
            digits_nonzero = (whole + frac).strip(b"0")
            if not digits_nonzero:
                return Fraction(0)
            return None
        value = Fraction(int(whole + frac or b"0")) * Fraction(10) ** exponent
        sign = -1 if m.group(1) == b"-" else 1
    rounded = _round(sign * value)
    if isinstance(rounded, tuple):
        return None  # ERANGE with HUGE_VAL
    if rounded == 0 and value != 0:
        return None  # ERANGE with a zero result
    return rounded


def add_ld(a: LDValue, b: LDValue) -> LDValue | None:
    """``a + b`` in long double; None for NaN (infinities of opposite signs)."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        signs = {v[1] for v in (a, b) if isinstance(v, tuple)}
        return None if len(signs) == 2 else (INF, signs.pop())
    return _round(a + b)


def format_ld(value: Fraction) -> bytes:
    """``%.17Lf`` of a finite value, trailing zeros (and a bare point) removed, ``-0`` as 0."""
    negative = value < 0
    scaled = abs(value) * 10**17
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q & 1):
        q += 1
    digits = str(q).rjust(18, "0")
    text = digits[:-17] + "." + digits[-17:]
    text = text.rstrip("0").rstrip(".")
    if negative and text != "0":
        text = "-" + text
    return text.encode()
