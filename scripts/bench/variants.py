"""The life cycles the benchmark times, each as a :class:`Cycle` against one Redis server.

A life cycle takes one message through the queue: store it, lock it,
read it back, release it and delete it. The variants differ only in how
they talk to Redis: through slimta-storage, through plain redis-py
replaying the commands that slimta-storage or the old implementation
sends, or through one pipeline. Each variant checks what it reads back,
so a broken variant fails instead of looking fast.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import redis

from slimta.storage import __version__
from slimta.storage import redis as redis_engine
from slimta.storage.redis import RedisSession
from slimta.storage.redis._scripts import SCRIPTS

from .workload import LOCK_SECONDS, OFFSETS, make_body, make_meta

__all__ = ["FACTORIES", "Cycle", "CycleError", "unavailable"]

HOST = "127.0.0.1"
MESSAGE_IDS = b"message_ids"
RETRY_QUEUE = b"retry_queue"
# The lock value of a lock taken without an owner, as the engine writes it.
LEGACY_LOCK_VALUE = b"locked"
RETRY_DELAY = 300.0
PIPELINE_DEPTH = 32
SHORT_CALLS = ("store_message", "checkout_message", "finish_message")
NINE_SCRIPTS = (
    "set_meta",
    "set_contents",
    "set_retry",
    "lock",
    "get_meta",
    "get_contents",
    "unlock",
    "delete",
)


class CycleError(RuntimeError):
    """A variant read back something other than what it stored."""


class Cycle(Protocol):
    """One client's way of running life cycles."""

    def run(self) -> int:
        """Run one or more life cycles and return how many."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def _check(condition: bool, failure: str) -> None:
    if not condition:
        raise CycleError(f"life cycle check failed: {failure}")


class OursNine:
    """The 1.0 life cycle: nine calls of a slimta-storage session."""

    def __init__(self, port: int, size: int) -> None:
        self._engine = redis_engine.new(HOST, port, OFFSETS["ours"])
        self._session = self._engine.connect()
        self._meta = make_meta()
        self._body = make_body(size)

    def run(self) -> int:
        session = self._session
        message_id = session.claim_message_id()
        session.set_message_meta(message_id, self._meta)
        session.set_message_contents(message_id, self._body)
        session.set_message_retry(message_id, time.time() + RETRY_DELAY)
        _check(session.lock_message(message_id, LOCK_SECONDS), "lock_message returned False")
        _check(session.get_message_meta(message_id) == self._meta, "meta differs")
        _check(session.get_message_contents(message_id) == self._body, "contents differ")
        _check(session.unlock_message(message_id), "unlock_message returned False")
        session.delete_message(message_id)
        return 1

    def close(self) -> None:
        self._session.close()
        self._engine.close()


class OursShort:
    """The short life cycle: store_message, checkout_message and finish_message."""

    def __init__(self, port: int, size: int) -> None:
        self._engine = redis_engine.new(HOST, port, OFFSETS["ours"])
        self._session: Any = self._engine.connect()
        self._meta = make_meta()
        self._body = make_body(size)
        self._owner = str(uuid.uuid4())

    def run(self) -> int:
        session = self._session
        message_id = session.store_message(self._meta, self._body, time.time() + RETRY_DELAY)
        message = session.checkout_message(message_id, LOCK_SECONDS, self._owner)
        _check(message is not None, "checkout_message returned None")
        _check(message.meta == self._meta, "meta differs")
        _check(message.contents == self._body, "contents differ")
        _check(session.finish_message(message_id, self._owner), "finish_message returned False")
        return 1

    def close(self) -> None:
        self._session.close()
        self._engine.close()


def _plain_client(port: int, db: int) -> redis.Redis:
    # One connection for every command, as WATCH and MULTI need, and RESP2
    # as the engine uses.
    return redis.Redis(
        host=HOST, port=port, db=db, protocol=2, single_connection_client=True, socket_timeout=10
    )


class OldSequence:
    """The old implementation's 43 round trips, one command at a time, with redis-py.

    Every session call starts with a SELECT of its database and selects
    again when it moves to another one. Meta is written with one
    set_message_meta_key call per key, each with its own SELECT. The lock
    takes five commands: WATCH, TTL, MULTI, SETEX and EXEC.
    """

    def __init__(self, port: int, size: int) -> None:
        self._offset = OFFSETS["old"]
        self._client = _plain_client(port, self._offset)
        self._meta = make_meta()
        self._body = make_body(size)

    def run(self) -> int:
        command: Callable[..., Any] = self._client.execute_command
        offset = self._offset
        message_id = str(uuid.uuid4())

        command("SELECT", offset)
        _check(command("SADD", MESSAGE_IDS, message_id) == 1, "SADD found the id taken")
        for key, value in self._meta.items():
            command("SELECT", offset + 1)
            command("HSET", message_id, key, value)
        command("SELECT", offset + 2)
        command("SET", message_id, self._body)
        command("SELECT", offset)
        command("ZADD", RETRY_QUEUE, repr(time.time() + RETRY_DELAY), message_id)

        command("SELECT", offset + 3)
        command("WATCH", message_id)
        _check(command("TTL", message_id) == -2, "the message has a lock already")
        command("MULTI")
        command("SETEX", message_id, int(LOCK_SECONDS), LEGACY_LOCK_VALUE)
        _check(command("EXEC") is not None, "EXEC was aborted")

        command("SELECT", offset + 1)
        _check(len(command("HGETALL", message_id)) == len(self._meta), "meta differs")
        command("SELECT", offset + 2)
        _check(command("GET", message_id) == self._body, "contents differ")
        command("SELECT", offset + 3)
        command("DEL", message_id)

        command("SELECT", offset)
        command("SREM", MESSAGE_IDS, message_id)
        command("ZREM", RETRY_QUEUE, message_id)
        for db in (offset + 1, offset + 2, offset + 3):
            command("SELECT", db)
            command("DEL", message_id)
        return 1

    def close(self) -> None:
        self._client.close()


class _EngineCommands:
    """The commands the engine sends for the nine calls of the 1.0 life cycle, for redis-py."""

    def __init__(self, client: redis.Redis, offset: int, size: int) -> None:
        for name in NINE_SCRIPTS:
            client.script_load(SCRIPTS[name].source)
        self.offset = offset
        self.meta = make_meta()
        self.pairs = [item for pair in self.meta.items() for item in pair]
        self.body = make_body(size)
        self.lock_ms = int(LOCK_SECONDS * 1000)

    def queue(self, target: Any, message_id: str) -> None:
        """Send or queue the nine commands on ``target``, a client or a pipeline."""
        offset = self.offset
        target.execute_command("SADD", MESSAGE_IDS, message_id)
        target.evalsha(SCRIPTS["set_meta"].sha, 2, MESSAGE_IDS, message_id, offset, *self.pairs)
        target.evalsha(SCRIPTS["set_contents"].sha, 2, MESSAGE_IDS, message_id, offset, self.body)
        retry = repr(time.time() + RETRY_DELAY)
        target.evalsha(SCRIPTS["set_retry"].sha, 2, MESSAGE_IDS, RETRY_QUEUE, message_id, retry)
        lock_args = (offset, self.lock_ms, LEGACY_LOCK_VALUE)
        target.evalsha(SCRIPTS["lock"].sha, 2, MESSAGE_IDS, message_id, *lock_args)
        target.evalsha(SCRIPTS["get_meta"].sha, 2, MESSAGE_IDS, message_id, offset)
        target.evalsha(SCRIPTS["get_contents"].sha, 2, MESSAGE_IDS, message_id, offset)
        target.evalsha(SCRIPTS["unlock"].sha, 2, MESSAGE_IDS, message_id, offset)
        target.evalsha(SCRIPTS["delete"].sha, 3, MESSAGE_IDS, RETRY_QUEUE, message_id, offset)

    def check(self, replies: list[Any]) -> None:
        """Check the replies of the nine commands, in order."""
        _check(replies[0] == 1, "SADD found the id taken")
        _check(replies[1] == 1 and replies[2] == 1 and replies[3] == 1, "a write found no id")
        _check(replies[4] == [1, 1], "the lock was not taken")
        _check(len(replies[5][1]) == 2 * len(self.meta), "meta differs")
        _check(replies[6][1] == self.body, "contents differ")
        _check(replies[7] == 1 and replies[8] == 1, "unlock or delete found nothing")


class _ReplyRecorder:
    """Send each command at once, with a plain client, and keep the replies for one check."""

    def __init__(self, client: redis.Redis) -> None:
        # Any, because redis-py leaves execute_command untyped.
        self._client: Any = client
        self.replies: list[Any] = []

    def execute_command(self, *args: Any) -> None:
        self.replies.append(self._client.execute_command(*args))

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        self.replies.append(self._client.evalsha(sha, numkeys, *keys_and_args))


class RawNine:
    """The nine commands that ours-1.0 sends, one round trip each, replayed with plain redis-py.

    They are SADD and EVALSHA of eight of the engine's own scripts. So this
    variant measures the engine's commands without the library's Python
    code around them: argument checks, reply decoding and error handling.
    It is not a sequence of plain Redis commands without scripts.
    """

    def __init__(self, port: int, size: int) -> None:
        self._client = _plain_client(port, OFFSETS["raw"])
        self._commands = _EngineCommands(self._client, OFFSETS["raw"], size)

    def run(self) -> int:
        recorder = _ReplyRecorder(self._client)
        self._commands.queue(recorder, str(uuid.uuid4()))
        self._commands.check(recorder.replies)
        return 1

    def close(self) -> None:
        self._client.close()


class Pipelined:
    """The nine commands of ``depth`` life cycles in one redis-py pipeline: the floor."""

    def __init__(self, port: int, size: int, depth: int) -> None:
        self._client = _plain_client(port, OFFSETS["raw"])
        self._commands = _EngineCommands(self._client, OFFSETS["raw"], size)
        self._depth = depth

    def run(self) -> int:
        pipeline: Any = self._client.pipeline(transaction=False)
        for _ in range(self._depth):
            self._commands.queue(pipeline, str(uuid.uuid4()))
        replies = pipeline.execute()
        for first in range(0, len(replies), 9):
            self._commands.check(replies[first : first + 9])
        return self._depth

    def close(self) -> None:
        self._client.close()


FACTORIES: dict[str, Callable[[int, int], Cycle]] = {
    "ours-1.0": OursNine,
    "ours-short": OursShort,
    "old-43": OldSequence,
    "raw-nine": RawNine,
    "pipeline-1": lambda port, size: Pipelined(port, size, 1),
    "pipeline-32": lambda port, size: Pipelined(port, size, PIPELINE_DEPTH),
}
"""Each variant by name: a function of the server's port and the body size."""


def unavailable(variant: str) -> str | None:
    """Return why ``variant`` cannot run with this version of slimta-storage, or None."""
    if variant not in ("ours-1.0", "ours-short"):
        return None
    missing = sorted(getattr(RedisSession, "__abstractmethods__", ()))
    if missing:
        return f"the Redis session of slimta-storage {__version__} lacks {', '.join(missing)}"
    if variant == "ours-short":
        absent = [name for name in SHORT_CALLS if not hasattr(RedisSession, name)]
        if absent:
            return f"slimta-storage {__version__} has no {', '.join(absent)}"
    return None
