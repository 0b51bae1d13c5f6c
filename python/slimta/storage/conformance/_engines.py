"""The Python engines as the conformance runner and the adapter drive them.

:class:`EngineTable` keeps the engines and sessions of one target under
string handles and runs each operation of the adapter protocol on them,
returning an :class:`Outcome`. The in-process target and the Python
adapter both use it, so both give the same results.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import memory
from .. import redis as redis_engine
from .._errors import StorageError
from .._version import SPEC_VERSION, __version__
from ..session import Message, Page, Session

__all__ = [
    "CAPABILITIES",
    "PROTOCOL_ERROR",
    "SESSION_METHODS",
    "EngineFactory",
    "EngineTable",
    "ManualClock",
    "Outcome",
    "binding_info",
    "default_factory",
]

log = logging.getLogger(__name__)

CAPABILITIES = ("clock", "engine:memory", "engine:redis")
# The error kind for a request that cannot be handled, such as an unknown
# method or handle, or an exception that is not a storage error.
PROTOCOL_ERROR = "protocol"

# The session methods of the spec, which a call may name. Methods that
# only the Python binding has, such as describe_message, are left out,
# because another binding could not be asked for them. The tests check
# this list against spec/storage.yaml.
SESSION_METHODS = frozenset(
    {
        "checkout_message",
        "claim_message_id",
        "close",
        "defer_message",
        "delete_message",
        "finish_message",
        "get_active_messages",
        "get_active_messages_page",
        "get_all_messages",
        "get_all_messages_page",
        "get_deferred_messages",
        "get_deferred_messages_page",
        "get_message",
        "get_message_contents",
        "get_message_meta",
        "get_message_meta_key",
        "get_messages",
        "lock_message",
        "refresh_lock",
        "set_message_contents",
        "set_message_meta",
        "set_message_meta_key",
        "set_message_retry",
        "store_message",
        "store_messages",
        "unlock_message",
    }
)

# Builds an engine from its kind ("memory" or "redis") and its options:
# {"clock": ManualClock or None} for memory, {"host", "port", "offset"} for redis.
EngineFactory = Callable[[str, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Outcome:
    """The result of one operation: a value, or an error of a kind with its message."""

    value: Any = None
    error: str | None = None
    message: str = ""

    @classmethod
    def failure(cls, kind: str, message: str) -> Outcome:
        """Return an outcome that is an error of ``kind``."""
        return cls(error=kind, message=message)

    @property
    def failed(self) -> bool:
        """True when the operation raised an error."""
        return self.error is not None


class _ProtocolError(Exception):
    """A request that the table cannot handle, reported with the kind ``protocol``."""


class ManualClock:
    """A clock for the memory engine that moves only when :meth:`advance` is called."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


def binding_info() -> dict[str, Any]:
    """Return the handshake of the Python binding: name, language, versions and capabilities."""
    return {
        "name": "slimta-storage",
        "language": "python",
        "version": __version__,
        "spec_version": SPEC_VERSION,
        "capabilities": list(CAPABILITIES),
    }


def default_factory(kind: str, options: Mapping[str, Any]) -> Any:
    """Create a Python engine: ``memory.new(clock=...)`` or ``redis.new(host, port, offset)``."""
    if kind == "memory":
        return memory.new(clock=options["clock"])
    return redis_engine.new(options["host"], options["port"], options["offset"])


@dataclass
class _EngineEntry:
    engine: Any
    clock: ManualClock | None
    sessions: list[str]


class EngineTable:
    """The engines and sessions of one target, each under a handle such as ``e1`` or ``s1``.

    Every method returns an :class:`Outcome`. A storage error becomes its
    ``kind``; a bad request, or any other exception, becomes the kind
    ``protocol`` with a message that describes the failure.
    """

    def __init__(self, factory: EngineFactory = default_factory) -> None:
        self._factory = factory
        self._engines: dict[str, _EngineEntry] = {}
        self._sessions: dict[str, Session] = {}
        self._counters = {"e": 0, "s": 0}

    def open_engine(self, request: Mapping[str, Any]) -> Outcome:
        """Open an engine from the ``open_engine`` request's fields; the value is ``{"engine": handle}``."""
        return _guard("open_engine", lambda: {"engine": self._open_engine(request)})

    def connect(self, engine: Any) -> Outcome:
        """Open a session on an engine; the value is ``{"session": handle}``."""
        return _guard("connect", lambda: {"session": self._connect(engine)})

    def call(self, session: Any, method: Any, args: Any) -> Outcome:
        """Call a session method with arguments by parameter name; the value is what it returns."""
        return _guard(str(method), lambda: self._call(session, method, args))

    def advance_clock(self, engine: Any, seconds: Any) -> Outcome:
        """Move the manual clock of a memory engine forward."""
        return _guard("advance_clock", lambda: self._advance_clock(engine, seconds))

    def close_engine(self, engine: Any) -> Outcome:
        """Close an engine and every session opened on it."""
        return _guard("close_engine", lambda: self._close_engine(engine))

    def close_all(self) -> None:
        """Close every engine still open, logging the errors instead of raising them."""
        for handle in list(self._engines):
            outcome = self.close_engine(handle)
            if outcome.failed:
                log.warning("could not close engine %s: %s", handle, outcome.message)

    def has_session(self, handle: str) -> bool:
        """Return whether a session handle is open, its engine not closed yet."""
        return handle in self._sessions

    def session(self, handle: Any) -> Session:
        """Return the session of a handle; :meth:`call` looks it up the same way."""
        session = self._sessions.get(handle) if isinstance(handle, str) else None
        if session is None:
            raise _ProtocolError(f"no session with handle {handle!r}; connect returns the handles")
        return session

    def _open_engine(self, request: Mapping[str, Any]) -> str:
        kind = request.get("engine")
        if kind == "memory":
            clock = _manual_clock(request.get("clock"))
            engine = self._factory("memory", {"clock": clock})
        elif kind == "redis":
            engine = self._factory("redis", _redis_options(request))
            clock = None
        else:
            raise _ProtocolError(f'engine must be "memory" or "redis", not {kind!r}')

        handle = self._new_handle("e")
        self._engines[handle] = _EngineEntry(engine, clock, [])
        log.debug("opened %s engine %s", kind, handle)
        return handle

    def _connect(self, engine: Any) -> str:
        entry = self._engine(engine)
        session = entry.engine.connect()
        handle = self._new_handle("s")
        self._sessions[handle] = session
        entry.sessions.append(handle)
        return handle

    def _call(self, session: Any, method: Any, args: Any) -> Any:
        target = self.session(session)
        if method not in SESSION_METHODS:
            known = ", ".join(sorted(SESSION_METHODS))
            raise _ProtocolError(f"unknown method {method!r}; the session methods of the spec are {known}")
        if not isinstance(args, dict):
            raise _ProtocolError(f"args of {method} must be an object by parameter name, not {args!r:.80}")

        bound = getattr(target, method)
        try:
            inspect.signature(bound).bind(**args)
        except TypeError as error:
            raise _ProtocolError(f"{method}: {error}") from None
        return _plain_result(bound(**args))

    def _advance_clock(self, engine: Any, seconds: Any) -> None:
        entry = self._engine(engine)
        if entry.clock is None:
            raise _ProtocolError(f"engine {engine} has no manual clock: open it as memory with a clock")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise _ProtocolError(f"seconds must be a number of at least 0, not {seconds!r}")
        entry.clock.advance(seconds)

    def _close_engine(self, engine: Any) -> None:
        entry = self._engine(engine)
        del self._engines[engine]
        for handle in entry.sessions:
            self._sessions.pop(handle).close()
        entry.engine.close()
        log.debug("closed engine %s", engine)

    def _engine(self, handle: Any) -> _EngineEntry:
        entry = self._engines.get(handle) if isinstance(handle, str) else None
        if entry is None:
            raise _ProtocolError(f"no engine with handle {handle!r}; open_engine returns the handles")
        return entry

    def _new_handle(self, prefix: str) -> str:
        self._counters[prefix] += 1
        return f"{prefix}{self._counters[prefix]}"


def _plain_result(value: Any) -> Any:
    """Return a method's result in the JSON form of the spec's types.

    A :class:`Message` becomes ``{"meta": ..., "contents": ...}`` and a
    :class:`Page` ``{"message_ids": [...], "cursor": ...}``, also as the
    values of the mapping that ``get_messages`` returns. Other values are
    returned as they are.
    """
    if isinstance(value, Message):
        return {"meta": value.meta, "contents": value.contents}
    if isinstance(value, Page):
        return {"message_ids": list(value.message_ids), "cursor": value.cursor}
    if isinstance(value, dict):
        return {key: _plain_result(item) for key, item in value.items()}
    return value


def _manual_clock(start: Any) -> ManualClock | None:
    if start is None:
        return None
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
        raise _ProtocolError(f"clock must be a start time in UNIX seconds or null, not {start!r}")
    return ManualClock(float(start))


def _redis_options(request: Mapping[str, Any]) -> dict[str, Any]:
    missing = [name for name in ("host", "port", "offset") if name not in request]
    if missing:
        raise _ProtocolError(f"a redis engine needs host, port and offset; missing: {', '.join(missing)}")
    return {"host": request["host"], "port": request["port"], "offset": request["offset"]}


def _guard(operation: str, action: Callable[[], Any]) -> Outcome:
    """Run one operation and turn its exception, if any, into an error outcome."""
    try:
        return Outcome(value=action())
    except StorageError as error:
        return Outcome.failure(error.kind, str(error))
    except _ProtocolError as error:
        return Outcome.failure(PROTOCOL_ERROR, str(error))
    except Exception as error:
        log.warning("%s raised an unexpected %s", operation, type(error).__name__, exc_info=True)
        return Outcome.failure(PROTOCOL_ERROR, f"{operation} raised {type(error).__name__}: {error}")
