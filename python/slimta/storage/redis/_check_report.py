"""The report of a queue check: what :func:`check_queue` found, and what it repaired.

Ids and key names are decoded from their bytes as UTF-8 with the
``surrogateescape`` handler, like every text the Redis engine reads, so
encoding them the same way gives the stored bytes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ORPHAN_KINDS", "CheckReport", "IncompleteMessage", "LayoutKey", "Orphan", "Repairs"]

# The kinds of orphans, with the database of the layout that contains each:
# 0 is the retry_queue ZSET, 1 the meta HASH, 2 the contents STRING and 3
# the lock STRING.
ORPHAN_KINDS = {"meta": 1, "contents": 2, "lock": 3, "retry": 0}


@dataclass(frozen=True)
class IncompleteMessage:
    """A stored message id whose meta or contents are missing."""

    message_id: str
    """The id, a member of ``message_ids``."""
    missing: tuple[str, ...]
    """The missing parts: ``("meta",)``, ``("contents",)`` or ``("meta", "contents")``.

    A message stored with an empty meta has no meta hash, because Redis
    keeps no empty hashes, so it shows as ``("meta",)`` with age unknown.
    """
    age: float | None
    """Seconds since the ``timestamp`` meta key, or None when the age is unknown.

    The age is unknown when the meta is missing or has no ``timestamp`` key,
    or when its value is not a number of UNIX seconds.
    """
    timestamp: str | None
    """The ``timestamp`` meta value as stored, or None when there is none."""


@dataclass(frozen=True)
class Orphan:
    """A key of the layout, or a ``retry_queue`` member, whose id is not in ``message_ids``."""

    kind: str
    """``"meta"``, ``"contents"``, ``"lock"`` or ``"retry"``."""
    message_id: str
    """The id that the key is named after."""
    database: int
    """The number of the Redis database that contains the key."""


@dataclass(frozen=True)
class LayoutKey:
    """A key that breaks the layout: one that is not part of it, or one of the wrong type."""

    database: int
    """The number of the Redis database that contains the key."""
    key: str
    """The name of the key."""
    type: str
    """The key's type, as Redis's TYPE command names it, such as ``"string"``."""
    expected: str | None
    """The type the layout gives this key, or None for a key that is not part of the layout."""


@dataclass
class Repairs:
    """The changes that a check with ``repair=True`` made."""

    deleted_incomplete: list[IncompleteMessage] = field(default_factory=list)
    """The incomplete messages that were deleted, with all their keys."""
    removed_orphans: list[Orphan] = field(default_factory=list)
    """The orphans that were removed."""
    expired_locks: list[str] = field(default_factory=list)
    """The ids whose lock key got an expiry."""
    lock_expiry: float = 0.0
    """The expiry set on those lock keys, in seconds."""
    unknown_age: bool = False
    """True when incomplete messages of unknown age could be deleted too (``repair_unknown_age``)."""


@dataclass
class CheckReport:
    """The findings of :func:`check_queue` in the four databases of a queue.

    A finding that ``repair`` fixed stays listed, and is also listed in
    :attr:`repairs`.
    """

    offset: int
    """The first of the queue's four databases."""
    min_age: float
    """The age in seconds from which an incomplete message is reported."""
    checked_at: float
    """When the check started, in UNIX seconds."""
    stored_messages: int = 0
    """The number of members of ``message_ids`` when the scan ended."""
    incomplete: list[IncompleteMessage] = field(default_factory=list)
    """Stored ids without meta or contents, at least :attr:`min_age` old or of unknown age."""
    recent_incomplete: int = 0
    """The number of incomplete messages younger than :attr:`min_age`, which are not problems yet."""
    orphans: list[Orphan] = field(default_factory=list)
    """Keys and ``retry_queue`` members whose id is not in ``message_ids``."""
    foreign_keys: list[LayoutKey] = field(default_factory=list)
    """Keys that are not part of the layout, which may belong to another application.

    In the meta, contents and lock databases, these are the keys whose
    name is not in ``message_ids`` and is not named like a UUID (or not a
    valid message id, with ``non_uuid_orphans``).
    """
    overlap_keys: list[LayoutKey] = field(default_factory=list)
    """Keys of another queue whose four databases overlap these, such as a ``message_ids`` set
    in the meta database. A repair is rejected while there are any."""
    wrong_types: list[LayoutKey] = field(default_factory=list)
    """Keys of the layout whose type is not the one the layout gives them."""
    invalid_ids: list[str] = field(default_factory=list)
    """Members of ``message_ids`` that are not valid message ids."""
    locks_without_expiry: list[str] = field(default_factory=list)
    """Ids of stored messages whose lock key has no expiry, so it never ends by itself."""
    skipped_checks: list[str] = field(default_factory=list)
    """Sentences that name the checks that could not run, and why."""
    repairs: Repairs | None = None
    """The changes that the repair made, or None when the check ran without ``repair`` or it was rejected."""
    repair_rejected: str | None = None
    """The reason ``repair`` changed nothing, or None when it ran or was not requested."""

    @property
    def found(self) -> int:
        """The number of problems found, before any repair."""
        lists: list[list[Any]] = [
            self.incomplete,
            self.orphans,
            self.foreign_keys,
            self.overlap_keys,
            self.wrong_types,
            self.invalid_ids,
            self.locks_without_expiry,
        ]
        return sum(len(items) for items in lists)

    @property
    def repaired(self) -> int:
        """The number of problems that the repair fixed."""
        if self.repairs is None:
            return 0
        repairs = self.repairs
        return len(repairs.deleted_incomplete) + len(repairs.removed_orphans) + len(repairs.expired_locks)

    @property
    def problems(self) -> int:
        """The number of problems that remain: those found minus those repaired."""
        return self.found - self.repaired

    @property
    def clean(self) -> bool:
        """True when no problem remains and every check ran."""
        return self.problems == 0 and not self.skipped_checks

    def to_json(self) -> dict[str, Any]:
        """Return the report as a dict of JSON types, for ``json.dumps``."""
        orphans: dict[str, list[str]] = {kind: [] for kind in ORPHAN_KINDS}
        for orphan in self.orphans:
            orphans[orphan.kind].append(orphan.message_id)
        return {
            "offset": self.offset,
            "databases": list(range(self.offset, self.offset + 4)),
            "min_age": self.min_age,
            "checked_at": self.checked_at,
            "clean": self.clean,
            "problems": self.problems,
            "counts": self._counts(),
            "incomplete": [_incomplete_json(item) for item in self.incomplete],
            "orphans": orphans,
            "foreign_keys": [_layout_key_json(item) for item in self.foreign_keys],
            "overlap_keys": [_layout_key_json(item) for item in self.overlap_keys],
            "wrong_types": [_layout_key_json(item) for item in self.wrong_types],
            "invalid_ids": list(self.invalid_ids),
            "locks_without_expiry": list(self.locks_without_expiry),
            "skipped_checks": list(self.skipped_checks),
            "repaired": None if self.repairs is None else _repairs_json(self.repairs),
            "repair_rejected": self.repair_rejected,
        }

    def _counts(self) -> dict[str, int]:
        return {
            "stored_messages": self.stored_messages,
            "found": self.found,
            "repaired": self.repaired,
            "incomplete": len(self.incomplete),
            "recent_incomplete": self.recent_incomplete,
            "orphans": len(self.orphans),
            "foreign_keys": len(self.foreign_keys),
            "overlap_keys": len(self.overlap_keys),
            "wrong_types": len(self.wrong_types),
            "invalid_ids": len(self.invalid_ids),
            "locks_without_expiry": len(self.locks_without_expiry),
        }


def _incomplete_json(item: IncompleteMessage) -> dict[str, Any]:
    return {
        "id": item.message_id,
        "missing": list(item.missing),
        "age": item.age,
        "timestamp": item.timestamp,
    }


def _layout_key_json(item: LayoutKey) -> dict[str, Any]:
    return {"database": item.database, "key": item.key, "type": item.type, "expected": item.expected}


def _repairs_json(repairs: Repairs) -> dict[str, Any]:
    orphans: dict[str, list[str]] = {kind: [] for kind in ORPHAN_KINDS}
    for orphan in repairs.removed_orphans:
        orphans[orphan.kind].append(orphan.message_id)
    return {
        "deleted_incomplete": [item.message_id for item in repairs.deleted_incomplete],
        "removed_orphans": orphans,
        "expired_locks": list(repairs.expired_locks),
        "lock_expiry": repairs.lock_expiry,
        "unknown_age": repairs.unknown_age,
    }
