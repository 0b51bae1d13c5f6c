"""Deliberately broken engines and adapters, to check that the conformance runner catches them.

The factories take ``(kind, options)`` like the Python adapter's
``--factory MODULE:CALLABLE`` option, with this folder on PYTHONPATH:

- ``leaky_delete``: a Redis engine whose delete_message leaves the lock key;
- ``merging_meta``: a Redis engine whose set_message_meta merges the new
  meta into the old one instead of replacing it;
- ``unordered_deferred``: a Redis engine whose get_deferred_messages
  returns the ids in reverse order;
- ``crashing``: a memory engine whose set_message_contents ends the
  adapter process;
- ``hanging``: a memory engine whose set_message_contents sleeps for
  :data:`HANG_SECONDS`, or ``$BROKEN_HANG_SECONDS`` when it is set;
- ``lazy_connect``: a Redis engine whose connect returns at once and
  whose session connects on its first call, as a binding that connects
  lazily does;
- ``fake_connect``: an engine that ignores the Redis server it is given
  and stores in memory, so that connecting never fails;
- ``repeating_pages``: a memory engine whose page methods start each page
  after the first with the last id of the page before;
- ``dropping_pages``: a memory engine whose page methods leave out the
  first id of each page after the first;
- ``looping_pages``: a memory engine whose page methods return the cursor
  they were given, so that following the cursors never ends.

When ``$BROKEN_PID_FILE`` is set, every factory call appends the
adapter's pid and process group id to that file, one line each.

Run as a script, ``python broken_engines.py garbage`` is an adapter
that replies to set_message_contents with a line that is not JSON.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from slimta.storage import memory
from slimta.storage.conformance import AdapterServer, default_factory
from slimta.storage.memory import MemorySession
from slimta.storage.redis import RedisSession
from slimta.storage.session import Page, Session

# Long enough for any runner timeout that the tests use, short enough
# that a stray adapter ends by itself.
HANG_SECONDS = float(os.environ.get("BROKEN_HANG_SECONDS", "30"))
PID_FILE = os.environ.get("BROKEN_PID_FILE")
CRASH_STATUS = 3
GARBAGE = b"this is not JSON\n"

# delete.lua without the lock database: KEYS message_ids, retry_queue,
# message id; ARGV offset.
LEAKY_DELETE_LUA = """
local offset = tonumber(ARGV[1])
redis.call('SREM', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[3])
for db = offset + 1, offset + 2 do
  redis.call('SELECT', db)
  redis.call('DEL', KEYS[3])
end
return 1
"""


class LeakyDeleteSession(RedisSession):
    """Deletes everything of a message but its lock key in database offset+3."""

    def _do_delete_message(self, message_id: str) -> None:
        keys = [b"message_ids", b"retry_queue", message_id]
        self._link.command("delete_message", "EVAL", LEAKY_DELETE_LUA, len(keys), *keys, self._offset)


class MergingMetaSession(RedisSession):
    """Sets each key of the new meta and keeps the old keys, unlike the spec's replace."""

    def _do_set_message_meta(self, message_id: str, meta: dict[str, str]) -> None:
        self._do_get_message_meta(message_id)  # Raises MessageNotFound like the real method.
        for key, value in meta.items():
            self._do_set_message_meta_key(message_id, key, value)


class UnorderedDeferredSession(RedisSession):
    """Returns the deferred ids of each page in reverse order."""

    def _do_get_deferred_messages_page(
        self, until: float | None, cursor: str | None, count: int, operation: str
    ) -> Page:
        page = super()._do_get_deferred_messages_page(until, cursor, count, operation)
        return Page(list(reversed(page.message_ids)), page.cursor)


def _last_id(cursor: str) -> str:
    """Return the id that a cursor of the memory engine continues after, its text after the last colon."""
    return cursor.rpartition(":")[2]


class _PagesSession(MemorySession):
    """Passes every page of the three page methods through :meth:`_broken_page`."""

    def _broken_page(self, page: Page, cursor: str | None) -> Page:
        raise NotImplementedError

    def _do_get_all_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        return self._broken_page(super()._do_get_all_messages_page(cursor, count, operation), cursor)

    def _do_get_deferred_messages_page(
        self, until: float | None, cursor: str | None, count: int, operation: str
    ) -> Page:
        page = super()._do_get_deferred_messages_page(until, cursor, count, operation)
        return self._broken_page(page, cursor)

    def _do_get_active_messages_page(self, cursor: str | None, count: int, operation: str) -> Page:
        return self._broken_page(super()._do_get_active_messages_page(cursor, count, operation), cursor)


class RepeatingPagesSession(_PagesSession):
    """Starts each page after the first with the last id of the page before."""

    def _broken_page(self, page: Page, cursor: str | None) -> Page:
        if cursor is None:
            return page
        return Page([_last_id(cursor), *page.message_ids], page.cursor)


class DroppingPagesSession(_PagesSession):
    """Leaves out the first id of each page after the first."""

    def _broken_page(self, page: Page, cursor: str | None) -> Page:
        if cursor is None:
            return page
        return Page(page.message_ids[1:], page.cursor)


class LoopingPagesSession(_PagesSession):
    """Returns the cursor it was given with each page after the first, so the pages never end."""

    def _broken_page(self, page: Page, cursor: str | None) -> Page:
        if cursor is None or page.cursor is None:
            return page
        return Page(page.message_ids, cursor)


class CrashingSession(MemorySession):
    """Ends the whole process in set_message_contents, as a crashing binding would."""

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        print("crashing on purpose in set_message_contents", file=sys.stderr, flush=True)
        os._exit(CRASH_STATUS)


class HangingSession(MemorySession):
    """Sleeps in set_message_contents, as a binding stuck on a lock would."""

    def _do_set_message_contents(self, message_id: str, contents: bytes) -> None:
        time.sleep(HANG_SECONDS)


class _Wrapped:
    """An engine whose sessions are turned into a broken subclass of the real session class."""

    def __init__(self, engine: Any, session_class: type[Any]) -> None:
        self._engine = engine
        self._session_class = session_class

    def connect(self) -> Any:
        session = self._engine.connect()
        # The subclasses only override methods, so the session keeps its
        # connection or store and everything its constructor set up.
        session.__class__ = self._session_class
        return session

    def close(self) -> None:
        self._engine.close()


class LazySession:
    """A session that opens the real one on its first call, so that connect itself never fails."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._session: Session | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(Session, name)
        parameters = list(inspect.signature(method).parameters.values())[1:]

        def call_real_session(*args: Any, **kwargs: Any) -> Any:
            if self._session is None:
                self._session = self._engine.connect()
            return getattr(self._session, name)(*args, **kwargs)

        # The adapter binds the arguments to this signature, as it would to the real method's.
        call_real_session.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return call_real_session


class _Lazy:
    """An engine whose connect returns a :class:`LazySession`."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def connect(self) -> LazySession:
        return LazySession(self._engine)

    def close(self) -> None:
        self._engine.close()


def _record_process() -> None:
    if PID_FILE:
        with open(PID_FILE, "a", encoding="ascii") as pids:
            pids.write(f"{os.getpid()} {os.getpgrp()}\n")


def _redis_only(kind: str, options: Mapping[str, Any], session_class: type[RedisSession]) -> _Wrapped:
    if kind != "redis":
        raise ValueError(f"{session_class.__name__} is a broken Redis engine; run it with --engine redis")
    return _Wrapped(default_factory(kind, options), session_class)


def leaky_delete(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _redis_only(kind, options, LeakyDeleteSession)


def merging_meta(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _redis_only(kind, options, MergingMetaSession)


def unordered_deferred(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _redis_only(kind, options, UnorderedDeferredSession)


def crashing(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _Wrapped(memory.new(clock=options.get("clock")), CrashingSession)


def hanging(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    _record_process()
    return _Wrapped(memory.new(clock=options.get("clock")), HangingSession)


def lazy_connect(kind: str, options: Mapping[str, Any]) -> _Lazy:
    if kind != "redis":
        raise ValueError("lazy_connect is a Redis engine; run it with --engine redis")
    return _Lazy(default_factory(kind, options))


def fake_connect(kind: str, options: Mapping[str, Any]) -> Any:
    return memory.new(clock=options.get("clock"))


def repeating_pages(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _Wrapped(memory.new(clock=options.get("clock")), RepeatingPagesSession)


def dropping_pages(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _Wrapped(memory.new(clock=options.get("clock")), DroppingPagesSession)


def looping_pages(kind: str, options: Mapping[str, Any]) -> _Wrapped:
    return _Wrapped(memory.new(clock=options.get("clock")), LoopingPagesSession)


def serve_garbage() -> None:
    """Serve the Python engines, but reply to every set_message_contents call with :data:`GARBAGE`."""
    replies = sys.stdout.buffer
    server = AdapterServer(replies)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if request.get("op") == "call" and request.get("method") == "set_message_contents":
            replies.write(GARBAGE)
            replies.flush()
        elif not server.handle(line):
            break


if __name__ == "__main__":
    if sys.argv[1:] != ["garbage"]:
        sys.exit("usage: broken_engines.py garbage")
    serve_garbage()
