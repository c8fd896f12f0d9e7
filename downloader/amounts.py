"""Byte amounts as people write them (``500k``, ``1.5M``, ``2T``): the one parser of every size and rate option."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["MAX_AMOUNT", "SUFFIXES", "parse_amount"]

SUFFIXES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
"""Binary multipliers, as in curl and wget: ``k`` is 1024 bytes; any case."""

MAX_AMOUNT = 2**63 - 1
"""The largest amount accepted: what a signed 64-bit file offset holds."""

_AMOUNT = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)([kmgt]?)", re.ASCII | re.IGNORECASE)


def parse_amount(text: str, *, minimum: int = 0) -> int:
    """Bytes from ``100``, ``500k``, ``1.5m``, ``20M``, ``1G`` or ``2T``.

    The suffixes are binary and case-insensitive (k = 1024). A fraction is exact
    (``1.5m`` is 1572864, computed with :class:`~fractions.Fraction`, never a float)
    and a result that is not a whole number of bytes is rounded to the nearest one.

    Args:
        text: the value as given, white space around it ignored.
        minimum: the smallest amount the option allows.

    Raises:
        ValueError: not a number with an optional suffix, negative, under ``minimum``
            or over :data:`MAX_AMOUNT`; the message quotes ``text``.
    """
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid amount {text!r}: expected a number of bytes with an optional suffix "
                         f"k, M, G or T (k = 1024), such as 500k, 1.5M or 2G")
    sign, number, unit = match.groups()
    if sign == "-":
        raise ValueError(f"invalid amount {text!r}: cannot be negative")
    amount = round(Fraction(number) * SUFFIXES[unit.lower()])
    if amount < minimum:
        raise ValueError(f"invalid amount {text!r}: must be at least {minimum}")
    if amount > MAX_AMOUNT:
        raise ValueError(f"invalid amount {text!r}: more than {MAX_AMOUNT} bytes")
    return amount
