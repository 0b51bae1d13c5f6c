"""The session contract that every engine implements.

:class:`Session` defines the public methods of the spec. Each one checks that
the session is open, validates its arguments, and hands them to one
private ``_do_*`` method that an engine implements with one atomic step.
The listing methods, which it inherits from ``_listings.Listings``, are
built on pages instead. The first line of each method's docstring is the
method's summary in the spec, and a test keeps them equal.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType

from . import _validate as validate
from ._errors import SessionClosed
from ._listings import Listings
from ._records import Message, MessageInfo, NewMessage, Page
from ._validate import CheckedMessage

__all__ = ["Message", "MessageInfo", "NewMessage", "Page", "Session"]

log = logging.getLogger(__name__)


class Session(Listings):
    """An open session on a storage engine.

    Get one from an engine's ``connect()``. A session is also a context
    manager that closes itself on exit. It is meant for one thread at a
    time; open one session per thread.
    """

    def __init__(self) -> None:
        self._closed = False

    def __enter__(self) -> Session:
        """Return the session, which must be open.

        :raises SessionClosed: the session was closed.
        """
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def close(self) -> None:
        """Close the session.

        Releases what the session holds, such as its connection. After
        ``close``, every other method raises :class:`SessionClosed`.
        Calling ``close`` again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._do_close()

    def claim_message_id(self) -> str:
        """Create a new message id and register it.

        Returns a random UUID in lowercase hyphenated form, which
        :meth:`get_all_messages` lists at once.
        """
        self._check_open()
        message_id = self._do_claim_message_id()
        log.debug("claimed message id %s", message_id)
        return message_id

    def store_message(self, meta: Mapping[str, str], contents: bytes, retry: float | None = None) -> str:
        """Store a new message whole, in one step.

        Creates a new id and stores ``meta``, ``contents`` and the optional
        ``retry`` time with it atomically: a reader sees all of the message
        or none of it, and a fault leaves nothing behind. Returns the id.

        :raises MessageTooLarge: the contents are longer than the engine can store.
        """
        self._check_open()
        checked_meta = validate.meta(meta)
        checked_contents = validate.contents(contents)
        checked_retry = validate.optional_timestamp(retry, "retry")
        message_id = self._do_store_message(checked_meta, checked_contents, checked_retry)
        log.debug("stored message %s, %d bytes", message_id, len(checked_contents))
        return message_id

    def set_message_meta(self, message_id: str, meta: Mapping[str, str]) -> None:
        """Replace the whole meta of a message.

        Keys not in ``meta`` are removed, in one atomic step.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_meta = validate.meta(meta)
        self._do_set_message_meta(checked_id, checked_meta)

    def set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None:
        """Set or remove one meta key of a message.

        A ``value`` of None removes the key. Other keys are unchanged.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_key = validate.meta_key(key)
        checked_value = None if value is None else validate.meta_value(value)
        self._do_set_message_meta_key(checked_id, checked_key, checked_value)

    def set_message_contents(self, message_id: str, contents: bytes) -> None:
        """Store the contents of a message.

        Replaces earlier contents. ``contents`` is any bytes-like object.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_contents = validate.contents(contents)
        self._do_set_message_contents(checked_id, checked_contents)

    def get_message_meta(self, message_id: str) -> dict[str, str]:
        """Read the whole meta of a message.

        Returns an empty dict when no meta was written.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        return self._do_get_message_meta(checked_id)

    def get_message_meta_key(self, message_id: str, key: str) -> str | None:
        """Read one meta key of a message.

        Returns None when the key is not set.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_key = validate.meta_key(key)
        return self._do_get_message_meta_key(checked_id, checked_key)

    def get_message_contents(self, message_id: str) -> bytes | None:
        """Read the contents of a message.

        Returns the bytes as written, or None when no contents were written.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        return self._do_get_message_contents(checked_id)

    def set_message_retry(self, message_id: str, timestamp: float) -> None:
        """Set when a message is next tried.

        Replaces an earlier retry time. ``timestamp`` is in UNIX seconds.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_timestamp = validate.timestamp(timestamp)
        self._do_set_message_retry(checked_id, checked_timestamp)

    def lock_message(self, message_id: str, length: float, owner: str | None = None) -> bool:
        """Take the lock of a message for a while.

        Returns True when this call took the lock for ``length`` seconds,
        and False while an unexpired lock exists, even one of the same
        ``owner``. With an ``owner``, such as ``str(uuid.uuid4())``, only
        that owner's :meth:`unlock_message` and :meth:`refresh_lock` act on
        the lock.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        length_ms = validate.lock_length_ms(length)
        checked_owner = validate.optional_lock_owner(owner)
        return self._do_lock_message(checked_id, length_ms, checked_owner)

    def refresh_lock(self, message_id: str, length: float, owner: str) -> bool:
        """Extend a lock that this owner holds.

        Sets the lock to expire ``length`` seconds from now while ``owner``
        holds it. Returns False, changing nothing, when the message has no
        unexpired lock or another owner holds it.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        length_ms = validate.lock_length_ms(length)
        checked_owner = validate.lock_owner(owner)
        return self._do_refresh_lock(checked_id, length_ms, checked_owner)

    def unlock_message(self, message_id: str, owner: str | None = None) -> bool:
        """Release the lock of a message.

        Removes any lock, or with ``owner`` only the lock that this owner
        holds, and returns True when it removed one. Does nothing when the
        message has no lock or is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_owner = validate.optional_lock_owner(owner)
        return self._do_unlock_message(checked_id, checked_owner)

    def delete_message(self, message_id: str) -> None:
        """Remove a message and everything stored for it.

        Removes the id, its meta, contents, retry time and lock in one
        atomic step. Does nothing for an id that is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        stored = self._do_delete_message(checked_id)
        if stored is None:
            log.debug("deleted message %s if it was stored", checked_id)
        elif stored:
            log.debug("deleted message %s", checked_id)
        else:
            log.debug("message %s was not stored, so nothing was deleted", checked_id)

    def get_message(self, message_id: str) -> Message:
        """Read the meta and contents of a message in one step.

        The meta and contents of the returned :class:`Message` always
        belong to the same version of the message.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        return self._do_get_message(checked_id)

    def get_messages(self, message_ids: Iterable[str]) -> dict[str, Message]:
        """Read many messages in one call.

        Takes 1 to 1000 ids and returns the stored messages among them by
        id, each read atomically. Ids that are not stored are left out, and
        an id given twice is read once.
        """
        self._check_open()
        checked_ids = validate.batch_ids(message_ids)
        return self._do_get_messages(list(dict.fromkeys(checked_ids)))

    def checkout_message(self, message_id: str, length: float, owner: str | None = None) -> Message | None:
        """Take the lock of a message and read it, in one step.

        Takes the lock for ``length`` seconds as :meth:`lock_message` does
        and returns the message, or returns None, changing nothing, while
        an unexpired lock exists.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        length_ms = validate.lock_length_ms(length)
        checked_owner = validate.optional_lock_owner(owner)
        return self._do_checkout_message(checked_id, length_ms, checked_owner)

    def finish_message(self, message_id: str, owner: str | None = None) -> bool:
        """Delete a delivered message, if its lock is still held.

        Deletes the message as :meth:`delete_message` does and returns True
        when ``owner`` is None or holds an unexpired lock on it. Otherwise
        it returns False and changes nothing.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_owner = validate.optional_lock_owner(owner)
        finished = self._do_finish_message(checked_id, checked_owner)
        if finished:
            log.debug("finished message %s", checked_id)
        return finished

    def defer_message(self, message_id: str, timestamp: float, owner: str | None = None) -> int | None:
        """Schedule a retry after a failed attempt, and release the lock.

        When ``owner`` is None or holds an unexpired lock, sets the retry
        time to ``timestamp``, adds one to the ``attempts`` meta key and
        removes the lock in one atomic step, and returns the new number of
        attempts. A missing ``attempts`` value, or one that is not ASCII
        digits, counts as 0. Otherwise it returns None and changes nothing.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        checked_timestamp = validate.timestamp(timestamp)
        checked_owner = validate.optional_lock_owner(owner)
        return self._do_defer_message(checked_id, checked_timestamp, checked_owner)

    def store_messages(self, messages: Iterable[NewMessage]) -> list[str]:
        """Store many new messages in one call.

        Takes 1 to 1000 :class:`NewMessage` mappings and stores each whole,
        as :meth:`store_message` does. Returns the new ids in the order of
        ``messages``. Every message is checked before any is stored, so a
        bad one stores none.

        :raises MessageTooLarge: the contents of a message are longer than
            the engine can store.
        """
        self._check_open()
        checked = validate.new_messages(messages)
        message_ids = self._do_store_messages(checked)
        log.debug("stored %d message%s", len(message_ids), "" if len(message_ids) == 1 else "s")
        return message_ids

    def describe_message(self, message_id: str) -> MessageInfo:
        """Return the size, retry time and lock of a message.

        A Python extension for listings, not part of the spec.

        :raises MessageNotFound: the id is not stored.
        """
        self._check_open()
        checked_id = validate.message_id(message_id)
        return self._do_describe_message(checked_id)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed()

    @abc.abstractmethod
    def _do_close(self) -> None: ...

    @abc.abstractmethod
    def _do_claim_message_id(self) -> str: ...

    @abc.abstractmethod
    def _do_store_message(self, meta: dict[str, str], contents: bytes, retry: float | None) -> str: ...

    @abc.abstractmethod
    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def _do_set_message_meta_key(self, message_id: str, key: str, value: str | None) -> None: ...

    @abc.abstractmethod
    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None: ...

    @abc.abstractmethod
    def _do_get_message_meta(self, message_id: str) -> dict[str, str]: ...

    @abc.abstractmethod
    def _do_get_message_meta_key(self, message_id: str, key: str) -> str | None: ...

    @abc.abstractmethod
    def _do_get_message_contents(self, message_id: str) -> bytes | None: ...

    @abc.abstractmethod
    def _do_set_message_retry(self, message_id: str, timestamp: float) -> None: ...

    @abc.abstractmethod
    def _do_lock_message(self, message_id: str, length_ms: int, owner: str | None) -> bool: ...

    @abc.abstractmethod
    def _do_refresh_lock(self, message_id: str, length_ms: int, owner: str) -> bool: ...

    @abc.abstractmethod
    def _do_unlock_message(self, message_id: str, owner: str | None) -> bool: ...

    @abc.abstractmethod
    def _do_delete_message(self, message_id: str) -> bool | None:
        """Delete the message, returning whether the id was stored, or None when the engine cannot tell."""

    @abc.abstractmethod
    def _do_describe_message(self, message_id: str) -> MessageInfo: ...

    @abc.abstractmethod
    def _do_get_message(self, message_id: str) -> Message: ...

    @abc.abstractmethod
    def _do_get_messages(self, message_ids: list[str]) -> dict[str, Message]: ...

    @abc.abstractmethod
    def _do_checkout_message(self, message_id: str, length_ms: int, owner: str | None) -> Message | None: ...

    @abc.abstractmethod
    def _do_finish_message(self, message_id: str, owner: str | None) -> bool: ...

    @abc.abstractmethod
    def _do_defer_message(self, message_id: str, timestamp: float, owner: str | None) -> int | None: ...

    @abc.abstractmethod
    def _do_store_messages(self, messages: list[CheckedMessage]) -> list[str]: ...
