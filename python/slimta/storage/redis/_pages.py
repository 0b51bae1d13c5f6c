"""The paged listings of the Redis engine, each page one command or one script.

``operation`` names the public method that reads the page, for errors.

Every message: SSCAN of ``message_ids``. Locked messages: SCAN of the
lock database, keeping the ids that are stored. Deferred messages:
``retry_queue`` by rank after a cursor of (retry time, id), keeping the
ids that are stored. Each page blocks Redis for O(log n + page size).
"""

from __future__ import annotations

from .. import _cursor
from .._records import Page
from ._codec import MESSAGE_IDS, RETRY_QUEUE, decode, encode, score
from ._link import Link

__all__ = ["SCRIPT_PAGE_LIMIT", "active_page", "all_page", "deferred_page"]

# The most ids one page script handles, whatever count asks for. The
# scripts of the locked and deferred pages block Redis for about 2 us per
# id (scripts/bench.py --scale, Redis 7.0 on 2 cores), so 250 ids keep one
# page near half a millisecond. A page count is a hint, so fewer is allowed.
SCRIPT_PAGE_LIMIT = 250


def all_page(link: Link, operation: str, cursor: str | None, count: int) -> Page:
    """Return one page of every stored id, from SSCAN."""
    # NOTE: SSCAN may return an id twice when message_ids shrinks between
    # two pages, as Redis 7 does once the set uses under a tenth of its
    # hash table. So the pages may repeat an id although the spec promises
    # each id once. The whole list of get_all_messages leaves out repeats.
    position = 0 if cursor is None else _cursor.scan_position("sscan", cursor, operation)
    next_position, members = link.command(
        operation, "SSCAN", MESSAGE_IDS, position, "COUNT", count, retry=True
    )
    return Page([decode(member) for member in members], _scan_cursor("sscan", next_position))


def active_page(link: Link, offset: int, operation: str, cursor: str | None, count: int) -> Page:
    """Return one page of the stored ids with an unexpired lock, from SCAN of the lock database.

    Like SSCAN, SCAN may repeat an id when the lock database shrinks
    between two pages.
    """
    position = 0 if cursor is None else _cursor.scan_position("scan", cursor, operation)
    next_position, keys = link.script(
        operation, "active_page", [MESSAGE_IDS], [offset, position, min(count, SCRIPT_PAGE_LIMIT)], retry=True
    )
    return Page([decode(key) for key in keys], _scan_cursor("scan", next_position))


def deferred_page(link: Link, operation: str, until: float | None, cursor: str | None, count: int) -> Page:
    """Return one page of the stored ids whose retry time is at or before ``until``, in order."""
    after_score, after_member = b"", b""
    if cursor is not None:
        retry, message_id = _cursor.retry_position(cursor, operation)
        after_score, after_member = score(retry), encode(message_id)

    limit = min(count, SCRIPT_PAGE_LIMIT)
    args = [b"" if until is None else score(until), limit, after_score, after_member]
    keys = [MESSAGE_IDS, RETRY_QUEUE]
    ids, last_score, last_member = link.script(operation, "deferred_page", keys, args, retry=True)

    next_cursor = None
    if last_member is not None:
        next_cursor = _cursor.make_retry(float(last_score), decode(last_member))
    return Page([decode(member) for member in ids], next_cursor)


def _scan_cursor(kind: str, position: bytes) -> str | None:
    """Return the page cursor for the next SCAN or SSCAN cursor, or None when the scan is over."""
    return None if position == b"0" else _cursor.make(kind, position.decode("ascii"))
