"""The ``attempts`` meta key, which ``defer_message`` counts up by one."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["ATTEMPTS_KEY", "attempts_number", "next_attempts"]

ATTEMPTS_KEY = "attempts"

# Decimal text: ASCII digits only, without sign, spaces or separators.
_DECIMAL = re.compile(r"[0-9]+")


def next_attempts(stored: str | None) -> str:
    """Return the ``attempts`` value after one more failed attempt.

    A missing value, or one that is not decimal text, counts as 0. The
    sum is exact for any number of digits and has no leading zeros, as
    the Redis engine's defer.lua computes it.
    """
    if stored is None or _DECIMAL.fullmatch(stored) is None:
        return "1"
    digits = stored.lstrip("0")
    head = digits.rstrip("9")
    zeros = "0" * (len(digits) - len(head))
    if not head:
        return "1" + zeros
    return head[:-1] + str(int(head[-1]) + 1) + zeros


def attempts_number(text: str | bytes) -> int:
    """Return decimal ``attempts`` text as an int, however many digits it has."""
    # int(str) rejects more than 4300 digits since Python 3.11; Decimal does not.
    decimal = text.decode("ascii") if isinstance(text, bytes) else text
    return int(Decimal(decimal))
