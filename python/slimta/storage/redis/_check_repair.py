"""The repairs of a queue check: each one atomic script that checks its finding again first.

A finding may be stale by the time it is repaired, because writers go on
while the scan runs. So each script checks, in the same atomic step as the
change, that the finding still holds, and leaves the keys alone when it
does not. The engine's sessions never see a half-repaired message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ._check_report import ORPHAN_KINDS, CheckReport, IncompleteMessage, Orphan, Repairs
from ._codec import MESSAGE_IDS, RETRY_QUEUE
from ._link import Link

__all__ = ["Repairer"]

log = logging.getLogger(__name__)

_OPERATION = "check --repair"


class Repairer:
    """Repairs the findings of a check, ``batch_size`` ids per script call."""

    def __init__(self, link: Link, offset: int, batch_size: int) -> None:
        self._link = link
        self._offset = offset
        self._batch_size = batch_size

    def repair(self, report: CheckReport, repair_unknown_age: bool, lock_expiry_ms: int) -> Repairs:
        """Repair what is safe to repair, and return what was changed."""
        repairs = Repairs(lock_expiry=lock_expiry_ms / 1000, unknown_age=repair_unknown_age)
        for kind in ORPHAN_KINDS:
            orphans = [orphan for orphan in report.orphans if orphan.kind == kind]
            for batch in _batches(orphans, self._batch_size):
                repairs.removed_orphans += self._remove_orphans(kind, batch)
        for message in report.incomplete:
            if (message.age is not None or repair_unknown_age) and self._delete_incomplete(message):
                repairs.deleted_incomplete.append(message)
        for batch in _batches(report.locks_without_expiry, self._batch_size):
            repairs.expired_locks += self._expire_locks(batch, lock_expiry_ms)
        return repairs

    def _remove_orphans(self, kind: str, orphans: list[Orphan]) -> list[Orphan]:
        keys = [MESSAGE_IDS, RETRY_QUEUE, *(_encode(orphan.message_id) for orphan in orphans)]
        flags = self._link.script(_OPERATION, "remove_orphans", keys, [self._offset, kind])
        removed = []
        for orphan, flag in zip(orphans, flags, strict=True):
            if flag == 1:
                log.debug("removed the orphan %s key of %s", kind, orphan.message_id)
                removed.append(orphan)
            else:
                log.debug("kept the %s key of %s: it changed since the scan", kind, orphan.message_id)
        return removed

    def _delete_incomplete(self, message: IncompleteMessage) -> bool:
        keys = [MESSAGE_IDS, RETRY_QUEUE, _encode(message.message_id)]
        has_timestamp = b"0" if message.timestamp is None else b"1"
        timestamp = b"" if message.timestamp is None else _encode(message.timestamp)
        deleted = self._link.script(
            _OPERATION, "delete_incomplete", keys, [self._offset, has_timestamp, timestamp]
        )
        if deleted == 1:
            log.debug("deleted the incomplete message %s", message.message_id)
            return True
        log.debug("kept the incomplete message %s: it changed since the scan", message.message_id)
        return False

    def _expire_locks(self, message_ids: list[str], lock_expiry_ms: int) -> list[str]:
        keys = [_encode(message_id) for message_id in message_ids]
        done = self._link.script(_OPERATION, "expire_locks", keys, [self._offset, lock_expiry_ms])
        return [message_id for message_id, flag in zip(message_ids, done, strict=True) if flag == 1]


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
