"""One session's connection to Redis, with redis-py errors translated.

Every call is one round trip: one command, or one pipeline of commands
sent before any reply is read. Errors of redis-py never leave this
module. A connection or protocol fault becomes :class:`StorageUnavailable`
naming the server and the operation, and the connection is dropped so
the next call reconnects. Before each request the connection is checked
without a round trip, so one that the server closed since the last call,
such as by a restart, is replaced before anything is sent on it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
import redis.exceptions as redis_errors

from .._errors import StorageUnavailable
from ._scripts import SCRIPTS

__all__ = ["Link", "is_connection_fault"]

log = logging.getLogger(__name__)


class Link:
    """A connection borrowed from the engine's pool for one session.

    After a fork, the child borrows a connection of its own on its first
    call, because sharing the parent's socket would mix up replies.
    """

    def __init__(self, pool: redis.ConnectionPool, host: str, port: int) -> None:
        self._pool = pool
        self._host = host
        self._port = port
        self._connection: Any = self._borrow()

    def _borrow(self) -> Any:
        self._pid = os.getpid()
        try:
            # Any, because redis-py leaves the Connection methods untyped.
            connection: Any = self._pool.get_connection()
        except redis_errors.RedisError as error:
            if "No connection available" in str(error):
                raise self._pool_exhausted() from error
            raise self.unavailable("connect", error) from error
        return connection

    def _pool_exhausted(self) -> StorageUnavailable:
        limit = self._pool.max_connections
        message = (
            f"no free connection to Redis at {self._host}:{self._port}: all {limit} connections of the"
            " engine's pool are in use. Close sessions that are done, or raise max_connections"
        )
        return StorageUnavailable(message, host=self._host, port=self._port, operation="connect")

    def release(self) -> None:
        """Give the connection back to the pool."""
        if self._pid == os.getpid():
            self._pool.release(self._connection)

    def _current(self) -> Any:
        if self._pid != os.getpid():
            self._connection = self._borrow()
        return self._connection

    def _live(self) -> Any:
        """Return the connection, dropped first when the server closed it since the last request.

        A socket that the server closed, as in a restart, polls as
        readable and reads EOF. One poll() with no wait finds that out
        without a round trip, and redis-py connects again as the request
        is sent. Without the check the request would fail on the dead
        socket, and a write that failed that way could not be sent again.
        """
        connection = self._current()
        if getattr(connection, "_sock", None) is None:
            return connection

        try:
            pending = connection.can_read(timeout=0)
        except (redis_errors.ConnectionError, OSError) as error:
            log.warning(
                "Redis at %s:%d closed the connection, reconnecting: %s", self._host, self._port, error
            )
            connection.disconnect()
            return connection

        if pending:
            # Bytes that no request waits for would be read as the reply of the next one.
            log.warning(
                "Redis at %s:%d sent data that no request waited for, reconnecting", self._host, self._port
            )
            connection.disconnect()
        return connection

    def command(self, operation: str, *args: Any, retry: bool = False) -> Any:
        """Send one command and return its reply.

        With ``retry``, a connection fault is followed by one more try on a
        new connection. Only reads and writes that are safe to repeat may
        ask for it.
        """
        try:
            return self._command(operation, *args)
        except StorageUnavailable as error:
            if not (retry and is_connection_fault(error)):
                raise
            log.warning("%s failed, trying once more: %s", operation, error)
            return self._command(operation, *args)

    def _command(self, operation: str, *args: Any) -> Any:
        connection = self._live()
        try:
            connection.send_command(*args)
            return connection.read_response()
        except redis_errors.NoScriptError:
            raise
        except redis_errors.ResponseError as error:
            if str(error).startswith("Protocol error"):
                # Redis closes the connection after this reply, such as for
                # a bulk string over its proto-max-bulk-len.
                connection.disconnect()
            raise self.unavailable(operation, error) from error
        except redis_errors.RedisError as error:
            raise self.unavailable(operation, error) from error
        except OSError as error:
            connection.disconnect()
            raise self.unavailable(operation, error) from error

    def pipeline(self, operation: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send several commands at once and return their replies in order.

        An error reply of one command is returned in its place as a
        redis-py ``ResponseError``, so the caller decides what it means.
        """
        connection = self._live()
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies = [self._read_reply(connection) for _ in commands]
        except redis_errors.RedisError as error:
            raise self.unavailable(operation, error) from error
        except OSError as error:
            connection.disconnect()
            raise self.unavailable(operation, error) from error
        if any(str(reply).startswith("Protocol error") for reply in replies if isinstance(reply, Exception)):
            # Redis closes the connection after this reply, as in _command.
            connection.disconnect()
        return replies

    @staticmethod
    def _read_reply(connection: Any) -> Any:
        try:
            return connection.read_response()
        except redis_errors.ResponseError as error:
            return error

    def script(
        self, operation: str, name: str, keys: list[Any], args: list[Any], *, retry: bool = False
    ) -> Any:
        """Run a Lua script by its SHA1, sending its source once after NOSCRIPT.

        ``retry`` means what it means for :meth:`command`.
        """
        try:
            return self._script(operation, name, keys, args)
        except StorageUnavailable as error:
            if not (retry and is_connection_fault(error)):
                raise
            log.warning("%s failed, trying once more: %s", operation, error)
            return self._script(operation, name, keys, args)

    def _script(self, operation: str, name: str, keys: list[Any], args: list[Any]) -> Any:
        script = SCRIPTS[name]
        try:
            return self._command(operation, "EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # The server restarted or its script cache was flushed since the
            # engine loaded every script at its first connect. NOSCRIPT
            # means the script did not run, so sending it again is safe.
            log.info("Redis at %s:%d lost script %s, sending it again", self._host, self._port, name)
            return self._command(operation, "EVAL", script.source, len(keys), *keys, *args)

    def script_batch(
        self,
        operation: str,
        name: str,
        calls: list[tuple[list[Any], list[Any]]],
        *,
        retry: bool = False,
        keep_errors: bool = False,
    ) -> list[Any]:
        """Run one Lua script once per (keys, args) entry, all in one pipeline, and return the replies.

        Entries that get NOSCRIPT are sent once more with EVAL in a second
        pipeline. An error reply of any entry raises
        :class:`StorageUnavailable` once every reply is read, when the
        other entries may have run. With ``keep_errors`` an error reply is
        returned in its place as a redis-py ``ResponseError`` instead.
        ``retry`` means what it means for :meth:`command`, for the whole
        batch.
        """
        try:
            replies = self._script_batch(operation, name, calls)
        except StorageUnavailable as error:
            if not (retry and is_connection_fault(error)):
                raise
            log.warning("%s failed, trying once more: %s", operation, error)
            replies = self._script_batch(operation, name, calls)

        if not keep_errors:
            for reply in replies:
                if isinstance(reply, redis_errors.ResponseError):
                    raise self.unavailable(operation, reply) from reply
        return replies

    def _script_batch(self, operation: str, name: str, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        script = SCRIPTS[name]
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = self.pipeline(operation, commands)

        # NOSCRIPT means the entry did not run, so sending it again is safe.
        lost = [index for index, reply in enumerate(replies) if isinstance(reply, redis_errors.NoScriptError)]
        if lost:
            log.info("Redis at %s:%d lost script %s, sending it again", self._host, self._port, name)
            resent = [("EVAL", script.source, *commands[index][2:]) for index in lost]
            for index, reply in zip(lost, self.pipeline(operation, resent), strict=True):
                replies[index] = reply
        return replies

    def unavailable(self, operation: str, error: BaseException, message: str = "") -> StorageUnavailable:
        """Build the error for a failed operation, naming the server and the cause."""
        if not message:
            where = f"Redis at {self._host}:{self._port}"
            if isinstance(error, redis_errors.ResponseError):
                message = f"{where} returned an error during {operation}: {error}"
            else:
                message = f"{where} is unavailable during {operation}: {error}"
        return StorageUnavailable(message, host=self._host, port=self._port, operation=operation)

    def failure(
        self,
        operation: str,
        reason: str,
        message_ids: list[str | None] | None = None,
        unknown_ids: list[str] | None = None,
    ) -> StorageUnavailable:
        """Build the error for an operation that failed without an error of redis-py.

        ``message_ids`` and ``unknown_ids`` are for the stores of new
        messages, as :class:`StorageUnavailable` describes.
        """
        message = f"{operation} on Redis at {self._host}:{self._port} failed: {reason}"
        return StorageUnavailable(
            message,
            host=self._host,
            port=self._port,
            operation=operation,
            message_ids=message_ids,
            unknown_ids=unknown_ids,
        )


def is_connection_fault(error: StorageUnavailable) -> bool:
    """Tell whether ``error`` came from the connection rather than from an error reply.

    After a connection fault the request may or may not have run, and the
    connection was dropped, so the next call reconnects.
    """
    return not isinstance(error.__cause__, redis_errors.ResponseError)
