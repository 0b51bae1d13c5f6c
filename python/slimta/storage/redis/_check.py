"""Check the four databases of a Redis queue against the layout, and repair what is safe.

The scan reads each database in pages with SCAN, SSCAN and ZSCAN and a
COUNT hint, and describes each page of keys with one read-only script.
So each call handles about one page of keys, and a large queue does not
block the server with one long call. The scan is not a snapshot:
writers go on while it runs, so every repair (in :mod:`._check_repair`)
checks its finding again in the same atomic script that makes the change.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from .. import _validate as validate
from .._errors import InvalidArgument
from .._escape import escape_text
from ._check_repair import Repairer
from ._check_report import ORPHAN_KINDS, CheckReport, IncompleteMessage, LayoutKey, Orphan
from ._codec import MESSAGE_IDS, RETRY_QUEUE
from ._link import Link
from ._session import RedisSession

__all__ = ["DEFAULT_LOCK_EXPIRY", "DEFAULT_MIN_AGE", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "check_queue"]

log = logging.getLogger(__name__)

DEFAULT_MIN_AGE = 3600.0
DEFAULT_LOCK_EXPIRY = 300.0
# One script call handles about one page of keys or ids, and Redis serves
# no other client meanwhile. On a queue of 200,000 messages, pages of 1000
# took 3.6 to 5.2 ms per call on average and pages of 100 under 0.5 ms.
# scripts/bench/check_stall.py measures this, and docs/operations.rst has
# the figures.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_OPERATION = "check"

# The types of the keys of databases 1 to 3, and the kind of orphan a key
# of each is when its id is not stored.
_KEY_TYPES = {1: b"hash", 2: b"string", 3: b"string"}
_KINDS = {database: kind for kind, database in ORPHAN_KINDS.items()}
_DB0_TYPES = {MESSAGE_IDS: b"set", RETRY_QUEUE: b"zset"}
# The types that the layout gives keys named after ids, in one database or
# another. A key named like a UUID with any other type, such as a list, is
# not another queue's key, so it is reported as a key of the wrong type.
_ID_KEY_TYPES = frozenset(_KEY_TYPES.values())
# An id as claim_message_id creates it: a UUID in hyphenated form. The
# check takes only keys named like this for orphans of the queue, because
# the databases may be shared with applications whose keys are named
# like other valid ids, such as "cache:session:42". Either case, since
# writers in other languages may print UUIDs in capitals.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A timestamp meta value as writers store it: decimal UNIX seconds, such
# as Python's repr(time.time()) or Lua's os.time().
_TIMESTAMP = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")


def check_queue(
    session: RedisSession,
    *,
    min_age: float = DEFAULT_MIN_AGE,
    repair: bool = False,
    repair_unknown_age: bool = False,
    non_uuid_orphans: bool = False,
    lock_expiry: float = DEFAULT_LOCK_EXPIRY,
    page_size: int = DEFAULT_PAGE_SIZE,
    clock: Callable[[], float] = time.time,
) -> CheckReport:
    """Check the queue of a Redis session against the layout, and repair what is safe.

    Finds incomplete messages at least ``min_age`` seconds old or of
    unknown age, orphans, keys that are not part of the layout, keys of
    the wrong type, keys of another queue whose databases overlap these,
    invalid ids in ``message_ids`` and lock keys without an expiry.
    Without ``repair`` it writes nothing.

    An orphan is a meta, contents or lock key whose id is not in
    ``message_ids``. Only keys named like a UUID count as orphans, since
    other applications may keep keys such as ``cache:session:42`` in the
    same databases. Those keys are reported as not part of the layout. With
    ``non_uuid_orphans``, a key named like any valid message id counts as
    an orphan too.

    With ``repair`` it deletes the incomplete messages of known age,
    and those of unknown age too when ``repair_unknown_age`` is set. It
    removes the orphans and sets an expiry of ``lock_expiry`` seconds on
    the lock keys without one. Each change is one atomic script that first
    checks that its finding still holds, so a message that a writer stored
    or completed since the scan is kept. It never removes keys that are not
    part of the layout or have the wrong type, since they may belong to
    another application. When it finds keys of an overlapping queue, it
    repairs nothing and sets :attr:`CheckReport.repair_rejected`, because
    that queue's messages would look like orphans of this one.

    ``page_size``, 1 to 1000, is the COUNT hint of each SCAN, SSCAN and
    ZSCAN page and the number of ids per script call. ``clock`` returns
    the current time in UNIX seconds.

    :raises InvalidArgument: an argument is out of range.
    :raises SessionClosed: the session is closed.
    :raises StorageUnavailable: the server cannot be reached or used.
    """
    if not isinstance(session, RedisSession):
        raise InvalidArgument(
            "session", session, "must be a RedisSession: only a Redis layout can be checked"
        )
    session._check_open()
    _check_options(min_age, repair, repair_unknown_age, page_size)
    lock_expiry_ms = validate.lock_length_ms(lock_expiry, "lock_expiry")

    report = CheckReport(session._offset, float(min_age), clock())
    _Scanner(session._link, session._offset, page_size, non_uuid_orphans).scan(report)
    log.info("checked databases %d to %d: %d problems found", report.offset, report.offset + 3, report.found)
    if not repair:
        return report

    if report.overlap_keys:
        # The caller shows the reason, which the report carries.
        report.repair_rejected = _overlap_rejection(report)
        log.info("repaired nothing: %d keys of an overlapping queue found", len(report.overlap_keys))
        return report

    repairer = Repairer(session._link, session._offset, page_size)
    report.repairs = repairer.repair(report, repair_unknown_age, lock_expiry_ms)
    log.info("repaired %d of %d problems", report.repaired, report.found)
    return report


def _overlap_rejection(report: CheckReport) -> str:
    first, last = report.offset, report.offset + 3
    keys = report.overlap_keys[:3]
    shown = ", ".join(f"{escape_text(item.key)} ({item.type}) in db {item.database}" for item in keys)
    more = len(report.overlap_keys) - 3
    if more > 0:
        shown += f" and {more} more"
    return (
        f"repair rejected: databases {first} to {last} contain keys of another queue: {shown}. Each"
        " queue uses four databases from its offset, so two queues on one server need offsets at"
        " least 4 apart, and a repair here would delete the other queue's messages as orphans."
        " Stop the writers of one queue, move its keys to a free offset (for example with MOVE) and"
        " point its writers there, then run check --repair again"
    )


def _check_options(min_age: Any, repair: Any, repair_unknown_age: Any, page_size: Any) -> None:
    if isinstance(min_age, bool) or not isinstance(min_age, (int, float)) or not 0 <= min_age < math.inf:
        raise InvalidArgument("min_age", min_age, "must be a finite number of seconds, at least 0")
    if repair_unknown_age and not repair:
        raise InvalidArgument(
            "repair_unknown_age", repair_unknown_age, "has no effect without repair (--repair)"
        )
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", page_size, f"must be an int from 1 to {MAX_PAGE_SIZE}")


class _Scanner:
    """The scan of one check, over one session's connection."""

    def __init__(self, link: Link, offset: int, page_size: int, non_uuid_orphans: bool) -> None:
        self._link = link
        self._offset = offset
        self._page_size = page_size
        self._non_uuid_orphans = non_uuid_orphans
        # SSCAN may return an id twice, so recent incomplete ids are counted once each.
        self._recent: set[bytes] = set()

    def scan(self, report: CheckReport) -> None:
        """Scan the four databases and fill ``report`` with what breaks the layout."""
        self._scan_database0(report)
        ids_type = self._type(MESSAGE_IDS)
        retry_type = self._type(RETRY_QUEUE)
        if ids_type not in (b"set", b"none"):
            report.skipped_checks.append(
                f"message_ids is a {_decode(ids_type)}, not a set, so incomplete messages and"
                " orphans were not checked"
            )
        else:
            self._scan_message_ids(report)
            if retry_type == b"zset":
                self._scan_retry_queue(report)
            elif retry_type != b"none":
                report.skipped_checks.append(
                    f"retry_queue is a {_decode(retry_type)}, not a zset, so its members were not checked"
                )
        for database in (1, 2, 3):
            self._scan_database(report, database)
        if ids_type in (b"set", b"none"):
            report.stored_messages = self._link.command(_OPERATION, "SCARD", MESSAGE_IDS, retry=True)
        _sort_findings(report)

    def _type(self, key: bytes) -> bytes:
        kind: bytes = self._link.command(_OPERATION, "TYPE", key, retry=True)
        return kind

    def _scan_database0(self, report: CheckReport) -> None:
        for key, kind, _, _ in self._scan_keys(0):
            found = LayoutKey(self._offset, _decode(key), _decode(kind), None)
            expected = _DB0_TYPES.get(key)
            if expected is None and _UUID.fullmatch(found.key):
                # A key named like an id here is a meta, contents or lock
                # key of a queue whose offset is 1 to 3 below this one.
                report.overlap_keys.append(found)
            elif expected is None:
                report.foreign_keys.append(found)
            elif kind != expected:
                report.wrong_types.append(LayoutKey(self._offset, found.key, found.type, _decode(expected)))

    def _scan_database(self, report: CheckReport, database: int) -> None:
        for key, kind, stored, pttl in self._scan_keys(database):
            if stored == 1:
                self._judge_stored_key(report, database, key, kind, pttl)
            else:
                self._judge_unstored_key(report, database, key, kind, stored, pttl=pttl)

    def _judge_stored_key(
        self, report: CheckReport, database: int, key: bytes, kind: bytes, pttl: int
    ) -> None:
        """Judge a key named after a member of ``message_ids``: a part of a stored message."""
        name = _decode(key)
        expected = _KEY_TYPES[database]
        number = self._offset + database
        if kind != expected:
            report.wrong_types.append(LayoutKey(number, name, _decode(kind), _decode(expected)))
        elif database == 3 and pttl == -1 and _is_message_id(name):
            # A stored id that is not valid is listed in invalid_ids instead.
            report.locks_without_expiry.append(name)

    def _judge_unstored_key(
        self, report: CheckReport, database: int, key: bytes, kind: bytes, stored: int, *, pttl: int
    ) -> None:
        """Judge a key whose name is not in ``message_ids``, or any key when membership is unknown (-1)."""
        found = LayoutKey(self._offset + database, _decode(key), _decode(kind), None)
        expected = _KEY_TYPES[database]
        if _is_overlap_sign(database, key, kind, stored, pttl):
            report.overlap_keys.append(found)
        elif not self._is_orphan_name(found.key):
            report.foreign_keys.append(found)
        elif kind != expected:
            report.wrong_types.append(LayoutKey(found.database, found.key, found.type, _decode(expected)))
        elif stored == 0:
            report.orphans.append(Orphan(_KINDS[database], found.key, found.database))

    def _is_orphan_name(self, name: str) -> bool:
        if self._non_uuid_orphans:
            return _is_message_id(name)
        return _UUID.fullmatch(name) is not None

    def _scan_keys(self, database: int) -> Iterator[tuple[bytes, bytes, int, int]]:
        """Yield (key, type, stored, pttl) for the keys of one database.

        ``stored`` is 1 or 0 for membership in ``message_ids``, or -1 when
        message_ids is not a set. SCAN may yield a key twice.
        """
        cursor = b"0"
        while True:
            args = [self._offset, database, cursor, self._page_size]
            cursor, page = self._link.script(_OPERATION, "scan_keys", [MESSAGE_IDS], args, retry=True)
            for i in range(0, len(page), 4):
                key, kind, stored, pttl = page[i : i + 4]
                # TYPE "none": the key expired or was deleted after SCAN returned it.
                if kind != b"none":
                    yield key, kind, stored, pttl
            if cursor == b"0":
                return

    def _scan_message_ids(self, report: CheckReport) -> None:
        for page in self._pages("SSCAN", MESSAGE_IDS):
            valid = []
            for member in page:
                if _is_message_id(_decode(member)):
                    valid.append(member)
                else:
                    report.invalid_ids.append(_decode(member))
            if valid:
                self._inspect_ids(report, valid)

    def _inspect_ids(self, report: CheckReport, message_ids: list[bytes]) -> None:
        reply = self._link.script(
            _OPERATION, "inspect_ids", [MESSAGE_IDS, *message_ids], [self._offset], retry=True
        )
        for index, message_id in enumerate(message_ids):
            stored, meta_type, contents_type, timestamp = reply[4 * index : 4 * index + 4]
            if not stored:
                continue
            # A key of the wrong type is reported as such, not as missing.
            if meta_type not in (b"hash", b"none") or contents_type not in (b"string", b"none"):
                continue
            missing = tuple(
                part for part, kind in (("meta", meta_type), ("contents", contents_type)) if kind == b"none"
            )
            if not missing:
                continue
            text = None if timestamp is None else _decode(timestamp)
            age = _age(text, report.checked_at)
            if age is not None and age < report.min_age:
                self._recent.add(message_id)
                report.recent_incomplete = len(self._recent)
            else:
                report.incomplete.append(IncompleteMessage(_decode(message_id), missing, age, text))

    def _scan_retry_queue(self, report: CheckReport) -> None:
        for page in self._pages("ZSCAN", RETRY_QUEUE):
            # ZSCAN returns each member followed by its score.
            members = page[::2]
            if not members:
                continue
            stored = self._link.command(_OPERATION, "SMISMEMBER", MESSAGE_IDS, *members, retry=True)
            for member, is_stored in zip(members, stored, strict=True):
                if not is_stored:
                    report.orphans.append(Orphan("retry", _decode(member), self._offset))

    def _pages(self, command: str, key: bytes) -> Iterator[list[bytes]]:
        cursor = b"0"
        while True:
            cursor, page = self._link.command(
                _OPERATION, command, key, cursor, "COUNT", self._page_size, retry=True
            )
            yield page
            if cursor == b"0":
                return


def _is_overlap_sign(database: int, key: bytes, kind: bytes, stored: int, pttl: int) -> bool:
    """Tell whether a key of database ``database`` (1 to 3) of the layout belongs to another queue.

    A queue whose offset is 1 to 3 above this one keeps its ``message_ids``
    and ``retry_queue`` in one of these databases. Apart from those, only keys
    named like UUIDs and not in ``message_ids`` count, since other keys may
    be another application's data or this queue's own keys of the wrong
    type. Such a key is a sign when its type is the one the layout gives
    ids in another database. A string in the meta database is the contents
    or lock of a queue 1 or 2 below. A hash in the contents or lock
    database is the meta of a queue 1 or 2 above. A string with an expiry
    in the contents database is the lock of the queue right below, because
    the layout never sets an expiry on contents.
    """
    if _DB0_TYPES.get(key) == kind:
        return True
    if stored != 0 or kind not in _ID_KEY_TYPES or _UUID.fullmatch(_decode(key)) is None:
        return False
    if kind != _KEY_TYPES[database]:
        return True
    return database == 2 and pttl >= 0


def _sort_findings(report: CheckReport) -> None:
    """Sort each list of findings and keep each finding once, because a scan may return an item twice."""
    kinds = list(ORPHAN_KINDS)
    report.orphans = sorted(set(report.orphans), key=lambda item: (kinds.index(item.kind), item.message_id))
    report.foreign_keys = sorted(set(report.foreign_keys), key=_database_and_key)
    report.overlap_keys = sorted(set(report.overlap_keys), key=_database_and_key)
    report.wrong_types = sorted(set(report.wrong_types), key=_database_and_key)
    report.invalid_ids = sorted(set(report.invalid_ids))
    report.locks_without_expiry = sorted(set(report.locks_without_expiry))
    first: dict[str, IncompleteMessage] = {}
    for message in report.incomplete:
        first.setdefault(message.message_id, message)
    report.incomplete = sorted(first.values(), key=lambda message: message.message_id)


def _database_and_key(item: LayoutKey) -> tuple[int, str]:
    return item.database, item.key


def _age(timestamp: str | None, now: float) -> float | None:
    """Return the seconds from ``timestamp`` to ``now``, or None when it is not a decimal number."""
    if timestamp is None or _TIMESTAMP.fullmatch(timestamp) is None:
        return None
    seconds = float(timestamp)
    if not math.isfinite(seconds):
        return None
    return now - seconds


def _is_message_id(text: str) -> bool:
    try:
        validate.message_id(text)
    except InvalidArgument:
        return False
    return True


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")
