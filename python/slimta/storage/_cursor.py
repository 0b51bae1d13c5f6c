"""Page cursors: opaque text that names where the next page of a listing starts.

A cursor is ``KIND:POSITION``. The kind names the listing and the engine
that made it, so a cursor passed to another listing is rejected rather
than misread. Cursors are checked for their form only: a well-formed
cursor that no engine returned starts the listing at the position it
names.
"""

from __future__ import annotations

import math

from ._errors import InvalidArgument

__all__ = ["make", "make_retry", "position", "retry_position", "scan_position"]

# The largest cursor of Redis's SCAN and SSCAN, an unsigned 64-bit number.
_MAX_SCAN_CURSOR = 2**64 - 1


def make(kind: str, at: str) -> str:
    """Return the cursor of listing ``kind`` that continues after ``at``."""
    return f"{kind}:{at}"


def make_retry(score: float, member: str) -> str:
    """Return the cursor of a deferred listing that continues after (``score``, ``member``)."""
    # repr() is the shortest text that parses back to the same float.
    return make("retry", f"{score!r}:{member}")


def position(kind: str, cursor: str, method: str) -> str:
    """Return the position in a cursor of listing ``kind``.

    :raises InvalidArgument: ``cursor`` is not of that kind.
    """
    found, colon, at = cursor.partition(":")
    if found != kind or not colon or not at:
        raise _invalid(cursor, method)
    return at


def retry_position(cursor: str, method: str) -> tuple[float, str]:
    """Return the (retry time, id) pair in a cursor that :func:`make_retry` made."""
    score_text, colon, member = position("retry", cursor, method).partition(":")
    try:
        score = float(score_text)
    except ValueError:
        raise _invalid(cursor, method) from None
    # Only the form that make_retry writes, so "1_0" or " 1" are rejected.
    if not colon or not member or math.isnan(score) or repr(score) != score_text:
        raise _invalid(cursor, method)
    return score, member


def scan_position(kind: str, cursor: str, method: str) -> int:
    """Return the SCAN or SSCAN cursor in a cursor of listing ``kind``."""
    at = position(kind, cursor, method)
    too_long = len(at) > len(str(_MAX_SCAN_CURSOR))
    if too_long or not (at.isascii() and at.isdigit()) or int(at) > _MAX_SCAN_CURSOR:
        raise _invalid(cursor, method)
    return int(at)


def _invalid(cursor: str, method: str) -> InvalidArgument:
    return InvalidArgument(
        "cursor",
        cursor,
        f"is not a cursor of {method}: pass None for the first page, then the cursor of the page before",
    )
