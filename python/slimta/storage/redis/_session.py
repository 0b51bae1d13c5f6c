"""Sessions of the Redis engine: each method is one command or one script.

Keys and values go to Redis as bytes. Text is encoded as UTF-8 with the
``surrogateescape`` handler and decoded the same way, so meta bytes that
another writer stored and that are not valid UTF-8 survive a round trip.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .._errors import MessageNotFound, MessageTooLarge, StorageUnavailable
from .._validate import LEGACY_LOCK_VALUE
from ..session import MessageInfo, Session
from ._link import Link, is_connection_fault

__all__ = ["RedisSession"]

log = logging.getLogger(__name__)

MESSAGE_IDS = b"message_ids"
RETRY_QUEUE = b"retry_queue"
PAGE_SIZE = 1000


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _score(timestamp: float) -> bytes:
    # repr() gives the shortest text that parses back to the same double.
    return repr(timestamp).encode("ascii")


def _meta_pairs(meta: dict[str, str]) -> list[bytes]:
    pairs: list[bytes] = []
    for key, value in meta.items():
        pairs += (_encode(key), _encode(value))
    return pairs


def _lock_remaining(pttl: int) -> float | None:
    # PTTL is -2 without a lock key and -1 for a lock key that another
    # writer left without an expiry, which holds the lock until removed.
    if pttl == -2:
        return None
    if pttl == -1:
        return float("inf")
    return pttl / 1000


def _release_unclosed(link: Link) -> None:
    log.warning("a Redis session was garbage-collected without close(); releasing its connection")
    link.release()


class RedisSession(Session):
    """A session on a :class:`RedisEngine`, holding one pooled connection."""

    def __init__(self, link: Link, offset: int, max_contents: int) -> None:
        super().__init__()
        self._link = link
        self._offset = offset
        self._max_contents = max_contents
        # A session dropped without close() still gives its connection back
        # to the pool, so forgotten sessions cannot use the pool up.
        self._finalizer = weakref.finalize(self, _release_unclosed, link)

    def _do_close(self) -> None:
        self._finalizer.detach()
        self._link.release()

    def _do_get_active_messages(self) -> list[str]:
        found: dict[str, None] = {}
        cursor = b"0"
        while True:
            cursor, page = self._link.script(
                "get_active_messages",
                "active_page",
                [MESSAGE_IDS],
                [self._offset, cursor, PAGE_SIZE],
                retry=True,
            )
            found.update(dict.fromkeys(_decode(key) for key in page))
            if cursor == b"0":
                return list(found)

    def _do_get_deferred_messages(self, until: float | None) -> list[str]:
        end = b"+inf" if until is None else _score(until)
        reply = self._link.command(
            "get_deferred_messages", "ZRANGE", RETRY_QUEUE, b"-inf", end, "BYSCORE", retry=True
        )
        return [_decode(member) for member in reply]

    def _do_get_all_messages(self) -> list[str]:
        found: dict[str, None] = {}
        cursor = b"0"
        while True:
            cursor, page = self._link.command(
                "get_all_messages", "SSCAN", MESSAGE_IDS, cursor, "COUNT", PAGE_SIZE, retry=True
            )
            found.update(dict.fromkeys(_decode(member) for member in page))
            if cursor == b"0":
                return list(found)

    def _do_claim_message_id(self) -> str:
        def register(message_id: str) -> int:
            added: int = self._link.command("claim_message_id", "SADD", MESSAGE_IDS, message_id)
            return added

        return self._register_new_id("claim_message_id", register)

    def _do_store_message(self, meta: dict[str, str], contents: bytes, retry: float | None) -> str:
        self._check_size(contents)
        args = [self._offset, contents, b"" if retry is None else _score(retry), *_meta_pairs(meta)]

        def store(message_id: str) -> int:
            keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
            stored: int = self._link.script("store_message", "store", keys, args)
            return stored

        return self._register_new_id("store_message", store)

    def _register_new_id(self, operation: str, register: Callable[[str], int]) -> str:
        """Register a new random id with ``register``, which returns 0 when it was taken.

        After a connection fault the same id is sent once more, so a lost
        reply never registers two ids. A 0 then means the first request
        did register it: no other writer can know an id this random.
        """
        while True:
            message_id = str(uuid.uuid4())
            try:
                if register(message_id):
                    return message_id
            except StorageUnavailable as error:
                if not is_connection_fault(error):
                    raise
                log.warning("%s of %s failed, sending it once more: %s", operation, message_id, error)
                register(message_id)
                return message_id

    def _check_size(self, contents: bytes) -> None:
        # NOTE: the limit is the one the engine read at its first connect,
        # or Redis's default when CONFIG GET was denied. Contents over a
        # lower limit set on the server since then are rejected by Redis
        # itself: the call raises StorageUnavailable and stores nothing.
        if len(contents) > self._max_contents:
            raise MessageTooLarge(
                len(contents), self._max_contents, "the proto-max-bulk-len of the Redis server"
            )

    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None:
        self._write("set_message_meta", "set_meta", message_id, _meta_pairs(meta))

    def _do_set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None:
        args = [_encode(key)] if value is None else [_encode(key), _encode(value)]
        self._write("set_message_meta_key", "set_meta_key", message_id, args)

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        self._check_size(contents)
        self._write("set_message_contents", "set_contents", message_id, [contents])

    def _do_get_message_meta(self, message_id: str) -> dict[str, str]:
        flat = self._read("get_message_meta", "get_meta", message_id, [], retry=True)
        return {_decode(flat[i]): _decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    def _do_get_message_meta_key(self, message_id: str, key: str) -> str | None:
        value = self._read("get_message_meta_key", "get_meta_key", message_id, [_encode(key)], retry=True)
        return None if value is None else _decode(value)

    def _do_get_message_contents(self, message_id: str) -> bytes | None:
        contents: bytes | None = self._read(
            "get_message_contents", "get_contents", message_id, [], retry=True
        )
        return contents

    def _do_set_message_retry(self, message_id: str, timestamp: float) -> None:
        keys = [MESSAGE_IDS, RETRY_QUEUE]
        if not self._link.script("set_message_retry", "set_retry", keys, [message_id, _score(timestamp)]):
            raise MessageNotFound(message_id)

    def _do_lock_message(self, message_id: str, length_ms: int, owner: str | None) -> bool:
        value = owner or LEGACY_LOCK_VALUE
        took = self._read("lock_message", "lock", message_id, [length_ms, value])
        return bool(took == 1)

    def _do_refresh_lock(self, message_id: str, length_ms: int, owner: str) -> bool:
        refreshed = self._read("refresh_lock", "refresh_lock", message_id, [length_ms, owner])
        return bool(refreshed == 1)

    def _do_unlock_message(self, message_id: str, owner: str | None) -> bool:
        args = [self._offset] if owner is None else [self._offset, owner]
        removed = self._link.script("unlock_message", "unlock", [MESSAGE_IDS, message_id], args)
        return bool(removed == 1)

    def _do_delete_message(self, message_id: str) -> None:
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
        self._link.script("delete_message", "delete", keys, [self._offset])

    def _do_describe_message(self, message_id: str) -> MessageInfo:
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
        reply = self._link.script("describe_message", "describe", keys, [self._offset], retry=True)
        if reply[0] == 0:
            raise MessageNotFound(message_id)

        _, has_contents, size, retry, lock_ms = reply
        return MessageInfo(
            message_id,
            size if has_contents else None,
            None if retry is None else float(retry),
            _lock_remaining(lock_ms),
        )

    def _write(self, operation: str, script: str, message_id: str, args: list[Any]) -> None:
        """Run a write script that returns 0 when the id is not stored."""
        keys = [MESSAGE_IDS, message_id]
        if not self._link.script(operation, script, keys, [self._offset, *args]):
            raise MessageNotFound(message_id)

    def _read(
        self, operation: str, script: str, message_id: str, args: list[Any], *, retry: bool = False
    ) -> Any:
        """Run a script that returns {0} when the id is not stored, else {1, value}.

        ``retry`` is for scripts that only read.
        """
        keys = [MESSAGE_IDS, message_id]
        reply = self._link.script(operation, script, keys, [self._offset, *args], retry=retry)
        if reply[0] == 0:
            raise MessageNotFound(message_id)
        return reply[1] if len(reply) > 1 else None
