"""The memory engine: the queue kept in the memory of one process.

It has the semantics of the Redis engine, so tests and embedded queues
behave as production does. All sessions of one engine share its
messages, and one lock per engine makes every call atomic, so sessions
may be used from several threads.

Every call costs O(1) or O(log n) in the number of stored messages,
except the listings. Sorted indexes of the ids, the retry times and the
locks let a page start where the last one ended in O(log n), then cost
O(1) per id it passes. A page of active messages also unlocks the
expired locks it passes, at O(log n) each, and passes at most
max(page size, 256) of them, so one page never costs more than
O((page size + 256) · log n). After many locks expired, a page may
therefore hold fewer ids than asked for, or none, before the last page,
as the spec allows.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _cursor
from ._attempts import ATTEMPTS_KEY, attempts_number, next_attempts
from ._errors import InvalidArgument, MessageNotFound
from ._records import Message, MessageInfo, Page
from ._sorted import Pair, SortedKeys, SortedPairs
from ._validate import LEGACY_LOCK_VALUE, CheckedMessage
from .session import Session

__all__ = ["MemoryEngine", "MemorySession", "new"]

Clock = Callable[[], float]

# How many expired locks one page of active messages may pass before it
# ends early, unless the page size is larger: then as many as the page size.
EXPIRED_PER_PAGE = 256

# The largest clock value that a memory engine takes, in UNIX seconds.
MAX_CLOCK_SECONDS = 1e11


@dataclass
class _Message:
    meta: dict[str, str] = field(default_factory=dict)
    contents: bytes | None = None
    retry: float | None = None
    lock_expires: float | None = None
    lock_value: str = LEGACY_LOCK_VALUE

    def read(self) -> Message:
        return Message(dict(self.meta), self.contents)


class _Store:
    """The messages of one engine and their indexes, guarded by one lock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mutex = threading.Lock()
        self.messages: dict[str, _Message] = {}
        # Every stored id in ascending order, for the pages of every message.
        self.all_ids: SortedKeys[str] = SortedKeys()
        # (retry time, id) pairs in ascending order, the order that
        # get_deferred_messages returns.
        self.retry_index = SortedPairs()
        # The ids whose lock_expires is set, expired or not, in ascending
        # order, for the pages of active messages.
        self.lock_index: SortedKeys[str] = SortedKeys()

    def find(self, message_id: str) -> _Message:
        message = self.messages.get(message_id)
        if message is None:
            raise MessageNotFound(message_id)
        return message

    def now(self) -> float:
        """Read the clock, which must return a finite number of UNIX seconds.

        A NaN would compare as no lock ever being held, so every
        lock_message would succeed.
        """
        value = self.clock()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidArgument(
                "clock() value",
                value,
                "the clock of a memory engine must return a finite number of UNIX seconds, like time.time",
            )
        if abs(value) >= MAX_CLOCK_SECONDS:
            # Past this, adding a lock length of a millisecond may not change the float.
            raise InvalidArgument(
                "clock() value",
                value,
                f"must be UNIX seconds, below {MAX_CLOCK_SECONDS:g} (the year 5138); a clock in milliseconds"
                " or nanoseconds gives far larger numbers",
            )
        return float(value)

    def is_locked(self, message: _Message) -> bool:
        return message.lock_expires is not None and message.lock_expires > self.now()

    def holds_lock(self, message: _Message, owner: str | None) -> bool:
        """Tell whether ``owner`` may act on the message: None always may."""
        return owner is None or (self.is_locked(message) and message.lock_value == owner)

    def new_id(self) -> str:
        message_id = str(uuid.uuid4())
        while message_id in self.messages:
            message_id = str(uuid.uuid4())
        return message_id

    def add(self, message: _Message, retry: float | None = None) -> str:
        """Store ``message`` under a new id with the retry time ``retry``, and return the id."""
        message_id = self.new_id()
        self.messages[message_id] = message
        self.all_ids.add(message_id)
        self.set_retry(message_id, message, retry)
        return message_id

    def remove(self, message_id: str) -> bool:
        """Remove the message, returning False when the id was not stored."""
        message = self.messages.pop(message_id, None)
        if message is None:
            return False

        self.all_ids.remove(message_id)
        self.set_retry(message_id, message, None)
        self.set_lock(message_id, message, None)
        return True

    def set_retry(self, message_id: str, message: _Message, timestamp: float | None) -> None:
        if message.retry is not None:
            self.retry_index.remove((message.retry, message_id))
        message.retry = timestamp
        if timestamp is not None:
            self.retry_index.add((timestamp, message_id))

    def set_lock(
        self, message_id: str, message: _Message, length_ms: int | None, value: str = LEGACY_LOCK_VALUE
    ) -> None:
        """Lock the message for ``length_ms``, or unlock it when that is None."""
        if length_ms is None:
            if message.lock_expires is not None:
                self.lock_index.remove(message_id)
            message.lock_expires = None
            return

        # Read the clock first, so that a clock that fails changes nothing.
        expires = self.now() + length_ms / 1000
        if message.lock_expires is None:
            self.lock_index.add(message_id)
        message.lock_expires = expires
        message.lock_value = value

    def active_page(self, start: str | None, count: int) -> tuple[list[str], str | None]:
        """Return up to ``count`` locked ids after ``start``, and the id the next page starts after.

        The id is None when the page reached the last lock. The expired
        locks on the way are unlocked: an expired lock never returns, as in
        Redis, so this changes nothing a caller can see and keeps later
        pages short. The page ends early after max(count, EXPIRED_PER_PAGE)
        of them, so its work is bounded however many locks expired.
        """
        found: list[str] = []
        expired: list[str] = []
        passed = None
        next_start = None
        for message_id in self.lock_index.iter_after(start):
            locked = self.is_locked(self.messages[message_id])
            full = len(found) == count if locked else len(expired) == max(count, EXPIRED_PER_PAGE)
            if full:
                # More locks follow, so the next page starts after the last id passed.
                next_start = passed
                break
            if locked:
                found.append(message_id)
            else:
                expired.append(message_id)
            passed = message_id

        # After the loop, because the index must not change during it.
        for message_id in expired:
            self.set_lock(message_id, self.messages[message_id], None)
        return found, next_start


class MemoryEngine:
    """An engine that keeps its queue in this process; create it with :func:`new`."""

    def __init__(self, clock: Clock | None = None) -> None:
        if clock is not None and not callable(clock):
            raise InvalidArgument(
                "clock",
                clock,
                "must be None or a function that returns the time in UNIX seconds, such as time.time",
            )
        self._store = _Store(time.time if clock is None else clock)

    def __repr__(self) -> str:
        return f"<MemoryEngine with {len(self._store.messages)} messages>"

    def connect(self) -> MemorySession:
        """Open a session on the engine."""
        return MemorySession(self._store)

    def close(self) -> None:
        """Do nothing, because the engine has no connections. Its messages stay."""


def new(clock: Clock | None = None) -> MemoryEngine:
    """Create a memory engine with an empty queue.

    ``clock`` returns the current time in UNIX seconds and defaults to
    :func:`time.time`; tests pass their own to make locks expire at once.

    :raises InvalidArgument: ``clock`` is not callable. A clock that
        returns anything but a finite number makes the call that reads it
        raise InvalidArgument.
    """
    return MemoryEngine(clock)


def _id_page(kind: str, ids: list[str], count: int) -> Page:
    """Return the page of the first ``count`` of ``ids``, where a longer ``ids`` means more follow."""
    if len(ids) <= count:
        return Page(ids, None)
    return Page(ids[:count], _cursor.make(kind, ids[count - 1]))


class MemorySession(Session):
    """A session on a :class:`MemoryEngine`."""

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self._store = store

    def _do_close(self) -> None:
        pass

    def _do_get_all_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        start = None if cursor is None else _cursor.position("all", cursor, operation)
        with self._store.mutex:
            ids = list(itertools.islice(self._store.all_ids.iter_after(start), count + 1))
        return _id_page("all", ids, count)

    def _do_get_deferred_messages_page(
        self, until: float | None, cursor: str | None, count: int, operation: str
    ) -> Page:
        start = None if cursor is None else _cursor.retry_position(cursor, operation)
        with self._store.mutex:
            pairs = self._store.retry_index.iter_after(start)
            due = itertools.takewhile(lambda pair: until is None or pair[0] <= until, pairs)
            found: list[Pair] = list(itertools.islice(due, count + 1))

        ids = [message_id for _, message_id in found[:count]]
        next_cursor = _cursor.make_retry(*found[count - 1]) if len(found) > count else None
        return Page(ids, next_cursor)

    def _do_get_active_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        start = None if cursor is None else _cursor.position("active", cursor, operation)
        with self._store.mutex:
            ids, next_start = self._store.active_page(start, count)
        next_cursor = None if next_start is None else _cursor.make("active", next_start)
        return Page(ids, next_cursor)

    def _do_claim_message_id(self) -> str:
        with self._store.mutex:
            return self._store.add(_Message())

    def _do_store_message(self, meta: dict[str, str], contents: bytes, retry: float | None) -> str:
        with self._store.mutex:
            return self._store.add(_Message(dict(meta), contents), retry)

    def _do_store_messages(self, messages: list[CheckedMessage]) -> list[str]:
        with self._store.mutex:
            return [
                self._store.add(_Message(dict(message.meta), message.contents), message.retry)
                for message in messages
            ]

    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None:
        with self._store.mutex:
            self._store.find(message_id).meta = dict(meta)

    def _do_set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None:
        with self._store.mutex:
            meta = self._store.find(message_id).meta
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        with self._store.mutex:
            self._store.find(message_id).contents = contents

    def _do_get_message_meta(self, message_id: str) -> dict[str, str]:
        with self._store.mutex:
            return dict(self._store.find(message_id).meta)

    def _do_get_message_meta_key(self, message_id: str, key: str) -> str | None:
        with self._store.mutex:
            return self._store.find(message_id).meta.get(key)

    def _do_get_message_contents(self, message_id: str) -> bytes | None:
        with self._store.mutex:
            return self._store.find(message_id).contents

    def _do_get_message(self, message_id: str) -> Message:
        with self._store.mutex:
            return self._store.find(message_id).read()

    def _do_get_messages(self, message_ids: list[str]) -> dict[str, Message]:
        store = self._store
        with store.mutex:
            found = {message_id: store.messages.get(message_id) for message_id in message_ids}
            return {message_id: message.read() for message_id, message in found.items() if message}

    def _do_set_message_retry(self, message_id: str, timestamp: float) -> None:
        store = self._store
        with store.mutex:
            store.set_retry(message_id, store.find(message_id), timestamp)

    def _do_lock_message(self, message_id: str, length_ms: int, owner: str | None) -> bool:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            if store.is_locked(message):
                return False
            store.set_lock(message_id, message, length_ms, owner or LEGACY_LOCK_VALUE)
            return True

    def _do_checkout_message(self, message_id: str, length_ms: int, owner: str | None) -> Message | None:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            if store.is_locked(message):
                return None
            store.set_lock(message_id, message, length_ms, owner or LEGACY_LOCK_VALUE)
            return message.read()

    def _do_refresh_lock(self, message_id: str, length_ms: int, owner: str) -> bool:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            if not store.is_locked(message) or message.lock_value != owner:
                return False
            store.set_lock(message_id, message, length_ms, owner)
            return True

    def _do_unlock_message(self, message_id: str, owner: str | None) -> bool:
        store = self._store
        with store.mutex:
            message = store.messages.get(message_id)
            if message is None or not store.is_locked(message):
                return False
            if owner is not None and message.lock_value != owner:
                return False
            store.set_lock(message_id, message, None)
            return True

    def _do_finish_message(self, message_id: str, owner: str | None) -> bool:
        store = self._store
        with store.mutex:
            if not store.holds_lock(store.find(message_id), owner):
                return False
            store.remove(message_id)
            return True

    def _do_defer_message(self, message_id: str, timestamp: float, owner: str | None) -> int | None:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            if not store.holds_lock(message, owner):
                return None
            attempts = next_attempts(message.meta.get(ATTEMPTS_KEY))
            message.meta[ATTEMPTS_KEY] = attempts
            store.set_retry(message_id, message, timestamp)
            store.set_lock(message_id, message, None)
        return attempts_number(attempts)

    def _do_delete_message(self, message_id: str) -> bool:
        with self._store.mutex:
            return self._store.remove(message_id)

    def _do_describe_message(self, message_id: str) -> MessageInfo:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            size = None if message.contents is None else len(message.contents)
            remaining = None
            if store.is_locked(message):
                assert message.lock_expires is not None
                remaining = message.lock_expires - store.now()
            return MessageInfo(message_id, size, message.retry, remaining)
