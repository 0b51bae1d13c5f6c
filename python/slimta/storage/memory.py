"""The memory engine: the queue kept in the memory of one process.

It has the semantics of the Redis engine, so tests and embedded queues
behave as production does. All sessions of one engine share its
messages, and one lock per engine makes every call atomic, so sessions
may be used from several threads.
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ._errors import MessageNotFound
from ._validate import LEGACY_LOCK_VALUE
from .session import MessageInfo, Session

__all__ = ["MemoryEngine", "MemorySession", "new"]

Clock = Callable[[], float]

# Sorts after every valid message id, which are printable ASCII only.
_AFTER_EVERY_ID = "\x7f"


@dataclass
class _Message:
    meta: dict[str, str] = field(default_factory=dict)
    contents: bytes | None = None
    retry: float | None = None
    lock_expires: float | None = None
    lock_value: str = LEGACY_LOCK_VALUE


class _Store:
    """The messages of one engine, guarded by one lock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mutex = threading.Lock()
        self.messages: dict[str, _Message] = {}
        # (retry time, id) pairs in ascending order, the order that
        # get_deferred_messages returns.
        self.retry_index: list[tuple[float, str]] = []

    def find(self, message_id: str) -> _Message:
        message = self.messages.get(message_id)
        if message is None:
            raise MessageNotFound(message_id)
        return message

    def is_locked(self, message: _Message) -> bool:
        return message.lock_expires is not None and message.lock_expires > self.clock()

    def new_id(self) -> str:
        message_id = str(uuid.uuid4())
        while message_id in self.messages:
            message_id = str(uuid.uuid4())
        return message_id

    def set_retry(self, message_id: str, message: _Message, timestamp: float | None) -> None:
        if message.retry is not None:
            position = bisect.bisect_left(self.retry_index, (message.retry, message_id))
            del self.retry_index[position]
        message.retry = timestamp
        if timestamp is not None:
            bisect.insort(self.retry_index, (timestamp, message_id))


class MemoryEngine:
    """An engine that keeps its queue in this process; create it with :func:`new`."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._store = _Store(clock or time.time)

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
    """
    return MemoryEngine(clock)


class MemorySession(Session):
    """A session on a :class:`MemoryEngine`."""

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self._store = store

    def _do_close(self) -> None:
        pass

    def _do_get_active_messages(self) -> list[str]:
        store = self._store
        with store.mutex:
            return [key for key, message in store.messages.items() if store.is_locked(message)]

    def _do_get_deferred_messages(self, until: float | None) -> list[str]:
        store = self._store
        with store.mutex:
            if until is None:
                end = len(store.retry_index)
            else:
                end = bisect.bisect_right(store.retry_index, (until, _AFTER_EVERY_ID))
            return [message_id for _, message_id in store.retry_index[:end]]

    def _do_get_all_messages(self) -> list[str]:
        with self._store.mutex:
            return list(self._store.messages)

    def _do_claim_message_id(self) -> str:
        store = self._store
        with store.mutex:
            message_id = store.new_id()
            store.messages[message_id] = _Message()
            return message_id

    def _do_store_message(self, meta: dict[str, str], contents: bytes, retry: float | None) -> str:
        store = self._store
        with store.mutex:
            message_id = store.new_id()
            message = _Message(meta=dict(meta), contents=contents)
            store.messages[message_id] = message
            store.set_retry(message_id, message, retry)
            return message_id

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
            message.lock_expires = store.clock() + length_ms / 1000
            message.lock_value = owner or LEGACY_LOCK_VALUE
            return True

    def _do_refresh_lock(self, message_id: str, length_ms: int, owner: str) -> bool:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            if not store.is_locked(message) or message.lock_value != owner:
                return False
            message.lock_expires = store.clock() + length_ms / 1000
            return True

    def _do_unlock_message(self, message_id: str, owner: str | None) -> bool:
        store = self._store
        with store.mutex:
            message = store.messages.get(message_id)
            if message is None or not store.is_locked(message):
                return False
            if owner is not None and message.lock_value != owner:
                return False
            message.lock_expires = None
            return True

    def _do_delete_message(self, message_id: str) -> None:
        store = self._store
        with store.mutex:
            message = store.messages.pop(message_id, None)
            if message is not None:
                store.set_retry(message_id, message, None)

    def _do_describe_message(self, message_id: str) -> MessageInfo:
        store = self._store
        with store.mutex:
            message = store.find(message_id)
            size = None if message.contents is None else len(message.contents)
            remaining = None
            if store.is_locked(message):
                assert message.lock_expires is not None
                remaining = message.lock_expires - store.clock()
            return MessageInfo(message_id, size, message.retry, remaining)
