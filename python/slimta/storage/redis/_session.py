"""Sessions of the Redis engine: each method is one command or one script.

Keys and values go to Redis as bytes. Text is encoded as UTF-8 with the
``surrogateescape`` handler and decoded the same way, so meta bytes that
another writer stored and that are not valid UTF-8 survive a round trip.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from typing import Any

from .._errors import MessageNotFound
from ..session import MessageInfo, Session
from ._link import Link

__all__ = ["RedisSession"]

log = logging.getLogger(__name__)

MESSAGE_IDS = b"message_ids"
RETRY_QUEUE = b"retry_queue"
LOCK_VALUE = b"locked"
PAGE_SIZE = 1000


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _score(timestamp: float) -> bytes:
    # repr() gives the shortest text that parses back to the same double.
    return repr(timestamp).encode("ascii")


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

    def __init__(self, link: Link, offset: int) -> None:
        super().__init__()
        self._link = link
        self._offset = offset
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
                "get_active_messages", "active_page", [MESSAGE_IDS], [self._offset, cursor, PAGE_SIZE]
            )
            found.update(dict.fromkeys(_decode(key) for key in page))
            if cursor == b"0":
                return list(found)

    def _do_get_deferred_messages(self, until: float | None) -> list[str]:
        end = b"+inf" if until is None else _score(until)
        reply = self._link.command("get_deferred_messages", "ZRANGE", RETRY_QUEUE, b"-inf", end, "BYSCORE")
        return [_decode(member) for member in reply]

    def _do_get_all_messages(self) -> list[str]:
        found: dict[str, None] = {}
        cursor = b"0"
        while True:
            cursor, page = self._link.command(
                "get_all_messages", "SSCAN", MESSAGE_IDS, cursor, "COUNT", PAGE_SIZE
            )
            found.update(dict.fromkeys(_decode(member) for member in page))
            if cursor == b"0":
                return list(found)

    def _do_claim_message_id(self) -> str:
        while True:
            message_id = str(uuid.uuid4())
            if self._link.command("claim_message_id", "SADD", MESSAGE_IDS, message_id):
                return message_id

    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None:
        pairs: list[bytes] = []
        for key, value in meta.items():
            pairs += (_encode(key), _encode(value))
        self._write("set_message_meta", "set_meta", message_id, pairs)

    def _do_set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None:
        args = [_encode(key)] if value is None else [_encode(key), _encode(value)]
        self._write("set_message_meta_key", "set_meta_key", message_id, args)

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        self._write("set_message_contents", "set_contents", message_id, [contents])

    def _do_get_message_meta(self, message_id: str) -> dict[str, str]:
        flat = self._read("get_message_meta", "get_meta", message_id, [])
        return {_decode(flat[i]): _decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    def _do_get_message_meta_key(self, message_id: str, key: str) -> str | None:
        value = self._read("get_message_meta_key", "get_meta_key", message_id, [_encode(key)])
        return None if value is None else _decode(value)

    def _do_get_message_contents(self, message_id: str) -> bytes | None:
        contents: bytes | None = self._read("get_message_contents", "get_contents", message_id, [])
        return contents

    def _do_set_message_retry(self, message_id: str, timestamp: float) -> None:
        keys = [MESSAGE_IDS, RETRY_QUEUE]
        if not self._link.script("set_message_retry", "set_retry", keys, [message_id, _score(timestamp)]):
            raise MessageNotFound(message_id)

    def _do_lock_message(self, message_id: str, length_ms: int) -> bool:
        took = self._read("lock_message", "lock", message_id, [length_ms, LOCK_VALUE])
        return bool(took == 1)

    def _do_unlock_message(self, message_id: str) -> None:
        self._link.script("unlock_message", "unlock", [message_id], [self._offset])

    def _do_delete_message(self, message_id: str) -> None:
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
        self._link.script("delete_message", "delete", keys, [self._offset])

    def _do_describe_message(self, message_id: str) -> MessageInfo:
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
        reply = self._link.script("describe_message", "describe", keys, [self._offset])
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

    def _read(self, operation: str, script: str, message_id: str, args: list[Any]) -> Any:
        """Run a script that returns {0} when the id is not stored, else {1, value}."""
        keys = [MESSAGE_IDS, message_id]
        reply = self._link.script(operation, script, keys, [self._offset, *args])
        if reply[0] == 0:
            raise MessageNotFound(message_id)
        return reply[1] if len(reply) > 1 else None
