"""Sessions of the Redis engine: each method is one round trip.

A round trip is one command, one Lua script called by its SHA1, or one
pipeline of scripts for the bulk calls. A call waits for Redis a second
time only to send a script again after NOSCRIPT, to try a read once
more after a connection fault, or to check whether a new id is stored
after a connection fault. The paged listings are in ``_pages``, the
bulk calls in ``_bulk``, and ``_codec`` turns text into the bytes Redis
stores.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from typing import Any

from .._attempts import attempts_number
from .._errors import MessageNotFound, MessageTooLarge, StorageUnavailable
from .._records import Message, MessageInfo, Page
from .._validate import LEGACY_LOCK_VALUE, CheckedMessage
from ..session import Session
from . import _bulk, _pages
from ._codec import (
    MALFORMED,
    MESSAGE_IDS,
    RETRY_QUEUE,
    decode,
    encode,
    malformed_reason,
    message,
    meta,
    meta_pairs,
    score,
)
from ._link import Link, is_connection_fault

__all__ = ["RedisSession"]

log = logging.getLogger(__name__)

# How many new ids a claim or a store tries. A random UUID is stored
# already with a chance far below one in a billion, so a third id means
# a fault, such as another writer that copies this engine's ids.
MAX_NEW_ID_ROUNDS = 3

NOT_STORED = (
    "the connection failed before the reply came ({fault}), and message {message_id} is not stored:"
    " the store did not run, or it ran and another session has delivered and deleted the message since."
    " It is not stored again, because that could deliver it twice"
)


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

    def _do_get_all_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        return _pages.all_page(self._link, operation, cursor, count)

    def _do_get_deferred_messages_page(
        self, until: float | None, cursor: str | None, count: int, operation: str
    ) -> Page:
        return _pages.deferred_page(self._link, operation, until, cursor, count)

    def _do_get_active_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        return _pages.active_page(self._link, self._offset, operation, cursor, count)

    def _do_claim_message_id(self) -> str:
        operation = "claim_message_id"
        fault: StorageUnavailable | None = None
        for _ in range(MAX_NEW_ID_ROUNDS):
            message_id = str(uuid.uuid4())
            try:
                if self._link.command(operation, "SADD", MESSAGE_IDS, message_id):
                    return message_id
            except StorageUnavailable as error:
                if not is_connection_fault(error):
                    raise
                # A claimed id has no meta or contents yet, so when the SADD
                # did not run, claiming another id loses nothing.
                if self._is_stored(operation, message_id, error):
                    return message_id
                fault = error

        if fault is not None:
            raise fault
        raise self._ids_taken(operation)

    def _do_store_message(self, meta: dict[str, str], contents: bytes, retry: float | None) -> str:
        self._check_size(contents)
        self._check_meta_sizes(meta)
        args = [self._offset, contents, b"" if retry is None else score(retry), *meta_pairs(meta)]
        operation = "store_message"
        for _ in range(MAX_NEW_ID_ROUNDS):
            message_id = str(uuid.uuid4())
            keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
            try:
                if self._link.script(operation, "store", keys, args):
                    return message_id
            except StorageUnavailable as error:
                if not is_connection_fault(error):
                    raise
                # Never send the store again: between the first store and
                # a second one, another relayer may deliver and delete the
                # message, and the second store would bring it back.
                if self._is_stored(operation, message_id, error):
                    return message_id
                reason = NOT_STORED.format(fault=str(error).rstrip("."), message_id=message_id)
                raise self._link.failure(operation, reason) from error

        raise self._ids_taken(operation)

    def _do_store_messages(self, messages: list[CheckedMessage]) -> list[str]:
        for index, new in enumerate(messages):
            self._check_size(new.contents, f"messages[{index}]['contents']")
            self._check_meta_sizes(new.meta, f"messages[{index}]['meta']")
        return _bulk.store_messages(self._link, self._offset, messages)

    def _is_stored(self, operation: str, message_id: str, fault: StorageUnavailable) -> bool:
        """Check on a new connection whether a new id whose request got no reply is stored."""
        log.warning("%s of %s got no reply, checking whether it is stored: %s", operation, message_id, fault)
        try:
            (stored,) = _bulk.check_stored(self._link, operation, [message_id])
        except StorageUnavailable as error:
            raise _bulk.unknown_error(self._link, operation, [message_id], fault, error) from error
        return stored

    def _ids_taken(self, operation: str) -> StorageUnavailable:
        reason = f"its new random ids were stored already {MAX_NEW_ID_ROUNDS} times in a row"
        return self._link.failure(operation, f"{reason}; check that no other writer copies this engine's ids")

    def _check_size(self, contents: bytes, param: str = "contents") -> None:
        """Raise MessageTooLarge when one value, contents or a meta value, is over the server's limit."""
        # NOTE: the limit is the one the engine read at its first connect,
        # or Redis's default when CONFIG GET was denied. A value over a
        # lower limit set on the server since then is rejected by Redis
        # itself: the call raises StorageUnavailable and stores nothing.
        if len(contents) > self._max_contents:
            raise MessageTooLarge(
                len(contents), self._max_contents, "the proto-max-bulk-len of the Redis server", param
            )

    def _check_meta_sizes(self, meta: dict[str, str], param: str = "meta") -> None:
        """Raise MessageTooLarge when a meta value is over the server's limit once encoded."""
        for key, value in meta.items():
            # A character encodes to at most 4 bytes, so most values need no encoding here.
            if len(value) * 4 > self._max_contents:
                self._check_size(encode(value), f"{param}[{key!r}]")

    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None:
        self._check_meta_sizes(meta)
        self._write("set_message_meta", "set_meta", message_id, meta_pairs(meta))

    def _do_set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None:
        args = [encode(key)] if value is None else [encode(key), encode(value)]
        if value is not None:
            self._check_size(args[1], "value")
        self._write("set_message_meta_key", "set_meta_key", message_id, args)

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        self._check_size(contents)
        self._write("set_message_contents", "set_contents", message_id, [contents])

    def _do_get_message_meta(self, message_id: str) -> dict[str, str]:
        return meta(self._run("get_message_meta", "get_meta", message_id, [], retry=True)[0])

    def _do_get_message_meta_key(self, message_id: str, key: str) -> str | None:
        (value,) = self._run("get_message_meta_key", "get_meta_key", message_id, [encode(key)], retry=True)
        return None if value is None else decode(value)

    def _do_get_message_contents(self, message_id: str) -> bytes | None:
        contents: bytes | None = self._run(
            "get_message_contents", "get_contents", message_id, [], retry=True
        )[0]
        return contents

    def _do_get_message(self, message_id: str) -> Message:
        keys = [MESSAGE_IDS, message_id]
        reply = self._link.script("get_message", "get_message", keys, [self._offset], retry=True)
        if reply[0] == 0:
            raise MessageNotFound(message_id)
        if reply[0] == MALFORMED:
            reason = malformed_reason(self._offset, message_id, reply)
            raise self._link.failure("get_message", reason)
        return message(reply[1], reply[2])

    def _do_get_messages(self, message_ids: list[str]) -> dict[str, Message]:
        return _bulk.get_messages(self._link, self._offset, message_ids)

    def _do_set_message_retry(self, message_id: str, timestamp: float) -> None:
        keys = [MESSAGE_IDS, RETRY_QUEUE]
        if not self._link.script("set_message_retry", "set_retry", keys, [message_id, score(timestamp)]):
            raise MessageNotFound(message_id)

    def _do_lock_message(self, message_id: str, length_ms: int, owner: str | None) -> bool:
        (took,) = self._run("lock_message", "lock", message_id, [length_ms, owner or LEGACY_LOCK_VALUE])
        return bool(took == 1)

    def _do_checkout_message(self, message_id: str, length_ms: int, owner: str | None) -> Message | None:
        args = [length_ms, owner or LEGACY_LOCK_VALUE]
        reply = self._run("checkout_message", "checkout", message_id, args)
        if reply[0] == 0:
            return None
        return message(reply[1], reply[2])

    def _do_refresh_lock(self, message_id: str, length_ms: int, owner: str) -> bool:
        (refreshed,) = self._run("refresh_lock", "refresh_lock", message_id, [length_ms, owner])
        return bool(refreshed == 1)

    def _do_unlock_message(self, message_id: str, owner: str | None) -> bool:
        args = [self._offset] if owner is None else [self._offset, owner]
        removed = self._link.script("unlock_message", "unlock", [MESSAGE_IDS, message_id], args)
        return bool(removed == 1)

    def _do_finish_message(self, message_id: str, owner: str | None) -> bool:
        args = [] if owner is None else [owner]
        reply = self._run("finish_message", "finish", message_id, args, queue=True)
        return bool(reply[0] == 1)

    def _do_defer_message(self, message_id: str, timestamp: float, owner: str | None) -> int | None:
        args = [score(timestamp)] if owner is None else [score(timestamp), owner]
        reply = self._run("defer_message", "defer", message_id, args, queue=True)
        return attempts_number(reply[1]) if reply[0] == 1 else None

    def _do_delete_message(self, message_id: str) -> bool:
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
        return bool(self._link.script("delete_message", "delete", keys, [self._offset]) == 1)

    def _do_describe_message(self, message_id: str) -> MessageInfo:
        reply = self._run("describe_message", "describe", message_id, [], queue=True, retry=True)
        has_contents, size, retry, lock_ms = reply
        return MessageInfo(
            message_id,
            size if has_contents else None,
            None if retry is None else float(retry),
            _lock_remaining(lock_ms),
        )

    def _write(self, operation: str, script: str, message_id: str, args: list[Any]) -> None:
        """Run a write script that returns 0 when the id is not stored."""
        keys = [MESSAGE_IDS, message_id]
        if not self._script(operation, script, message_id, keys, [self._offset, *args]):
            raise MessageNotFound(message_id)

    def _run(
        self,
        operation: str,
        script: str,
        message_id: str,
        args: list[Any],
        *,
        queue: bool = False,
        retry: bool = False,
    ) -> list[Any]:
        """Run a script that returns {0} when the id is not stored, and return the rest of {1, ...}.

        The script's KEYS are message_ids, with ``queue`` retry_queue, and
        the id. ``retry`` is for scripts that only read.
        """
        keys = [MESSAGE_IDS, RETRY_QUEUE, message_id] if queue else [MESSAGE_IDS, message_id]
        reply = self._script(operation, script, message_id, keys, [self._offset, *args], retry=retry)
        if reply[0] == 0:
            raise MessageNotFound(message_id)
        return list(reply[1:])

    def _script(
        self,
        operation: str,
        script: str,
        message_id: str,
        keys: list[Any],
        args: list[Any],
        *,
        retry: bool = False,
    ) -> Any:
        """Run a script on one message, naming the message when one of its keys has the wrong type."""
        try:
            return self._link.script(operation, script, keys, args, retry=retry)
        except StorageUnavailable as error:
            if not str(error.__cause__).startswith("WRONGTYPE"):
                raise
            # Redis appends the script's SHA1 and line, which mean nothing to the reader.
            reply = str(error.__cause__).split(" script: ")[0]
            reason = (
                f"a key of message {message_id!r}, or message_ids or retry_queue, has the wrong Redis type"
                f" ({reply}). Another writer broke the layout; slimta-storage check lists such keys"
            )
            # Raised from the error reply, so that is_connection_fault() still returns False for it.
            raise self._link.failure(operation, reason) from error.__cause__
