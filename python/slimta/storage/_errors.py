"""The exceptions of slimta-storage, one per error kind of the spec."""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "InvalidArgument",
    "MessageNotFound",
    "MessageTooLarge",
    "SessionClosed",
    "StorageError",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Root of every error that slimta-storage raises.

    Each subclass stands for one error kind of the spec, named by
    ``kind``, so that a caller can catch all storage errors at once.
    """

    kind: ClassVar[str] = "storage_error"


class InvalidArgument(StorageError, ValueError):
    """An argument has the wrong type or a value out of range.

    The caller's fault: nothing was changed. ``param`` is the name of the
    parameter, ``value`` the rejected value and ``rule`` the rule it
    broke.
    """

    kind = "invalid_argument"

    def __init__(self, param: str, value: Any, rule: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid {param} {shown}: {rule}")
        self.param = param
        self.value = value
        self.rule = rule

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.param, self.value, self.rule))


class _SizeOnly(int):
    """The size of rejected contents, shown as such in error messages."""

    def __repr__(self) -> str:
        return f"<{int(self)} bytes>"


class MessageTooLarge(InvalidArgument):
    """The contents, or a meta value, are longer than the engine can store.

    Its error kind is ``invalid_argument``. ``size`` and ``limit`` are in
    bytes, and ``param`` names the value, such as
    ``messages[2]['contents']`` in a bulk store or ``meta['note']``. A
    mail server would reject such a message, for example with SMTP reply
    552. Nothing was stored.
    """

    def __init__(self, size: int, limit: int, setting: str, param: str = "contents") -> None:
        rule = f"{size} bytes are over the limit of {limit} bytes ({setting})"
        rule += "; reject the message, or raise that limit"
        super().__init__(param, _SizeOnly(size), rule)
        self.size = size
        self.limit = limit
        self.setting = setting

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.size, self.limit, self.setting, self.param))


class MessageNotFound(StorageError, LookupError):
    """The message id is not stored: never claimed, or deleted since.

    ``message_id`` is the id. Nothing was changed.
    """

    kind = "message_not_found"

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id!r} not found: it was never claimed or has been deleted")
        self.message_id = message_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message_id,))


class SessionClosed(StorageError, RuntimeError):
    """The session was closed; open a new one with the engine's ``connect()``."""

    kind = "session_closed"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or "session is closed: open a new one with engine.connect()")


class StorageUnavailable(StorageError, ConnectionError):
    """The storage could not be reached or used.

    ``host``, ``port`` and ``operation`` name the server and the operation
    that failed, or are None when the engine does not know them. A write
    that raised this error may or may not have been applied, except a new
    message: ``store_message`` and ``store_messages`` never send a store
    twice, and check after a lost reply whether the message is stored.

    ``message_ids`` is set by ``store_messages`` only: a list in the order
    of its ``messages``, with the new id of each message confirmed stored
    and None for each other message. A message with None was not stored,
    or was stored and then delivered and deleted by another session, or
    its id is in ``unknown_ids``. The engine did not store it again.
    Other operations leave ``message_ids`` None.

    ``unknown_ids`` lists the new ids whose store got no reply and whose
    check failed too, so their messages may or may not be stored. Once the
    storage is back, read them with ``get_message``, and delete them before
    storing those messages again, or they may be delivered twice. It is
    empty for other errors.
    """

    kind = "storage_unavailable"

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        port: int | None = None,
        operation: str | None = None,
        message_ids: list[str | None] | None = None,
        unknown_ids: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.operation = operation
        self.message_ids = None if message_ids is None else list(message_ids)
        self.unknown_ids = [] if unknown_ids is None else list(unknown_ids)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {
            "host": self.host,
            "port": self.port,
            "operation": self.operation,
            "message_ids": self.message_ids,
            "unknown_ids": self.unknown_ids,
        }
        return (_rebuild_unavailable, (self.args[0], fields))


def _rebuild_unavailable(message: str, fields: dict[str, Any]) -> StorageUnavailable:
    return StorageUnavailable(message, **fields)
