"""Targets of the runner: the Python engines in-process, or a binding behind an adapter.

A :class:`Target` offers the operations of the adapter protocol. The
runner opens one engine per case, opens sessions on it, calls methods and
closes the engine again. Handles are strings, as on the wire.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._engines import PROTOCOL_ERROR, EngineFactory, EngineTable, Outcome, binding_info, default_factory
from ._values import WireError, from_wire, to_wire

__all__ = ["RACE_TIMEOUT", "BindingInfo", "InProcessTarget", "Target", "TargetFailure"]

# The maximum time in seconds that a race of in-process sessions may take before the case fails.
RACE_TIMEOUT = 60.0


class TargetFailure(Exception):
    """The target broke during an operation: an adapter crashed, hung or wrote garbage.

    It fails the case being run, and the target starts afresh for the next.
    """


@dataclass(frozen=True)
class BindingInfo:
    """The handshake of a binding: who it is and what it supports."""

    name: str
    language: str
    version: str
    spec_version: str
    capabilities: frozenset[str]

    @classmethod
    def from_hello(cls, result: Any) -> BindingInfo:
        """Build the info from the result of ``hello``.

        :raises ValueError: a field is missing or has the wrong type.
        """
        if not isinstance(result, dict):
            raise ValueError(f"the hello result must be an object, not {result!r:.200}")
        texts = {}
        for name in ("name", "language", "version", "spec_version"):
            if not isinstance(result.get(name), str):
                raise ValueError(f"the hello result needs {name} as a string, not {result.get(name)!r:.80}")
            texts[name] = result[name]
        capabilities = result.get("capabilities")
        if not isinstance(capabilities, list) or not all(isinstance(item, str) for item in capabilities):
            raise ValueError(
                f"the hello result needs capabilities as a list of strings, not {capabilities!r:.200}"
            )
        return cls(capabilities=frozenset(capabilities), **texts)

    def to_json(self) -> dict[str, Any]:
        """Return the info as in the ``hello`` result, capabilities sorted."""
        return {
            "name": self.name,
            "language": self.language,
            "version": self.version,
            "spec_version": self.spec_version,
            "capabilities": sorted(self.capabilities),
        }


class Target(abc.ABC):
    """A binding under test, driven through the operations of the adapter protocol.

    Every operation returns an :class:`Outcome` for what the binding did,
    errors included. :class:`TargetFailure` means the target itself broke.
    """

    @abc.abstractmethod
    def describe(self) -> str:
        """Return how the target runs, for reports."""

    @abc.abstractmethod
    def start(self) -> BindingInfo:
        """Start the target and return its handshake."""

    @abc.abstractmethod
    def open_engine(self, request: Mapping[str, Any]) -> Outcome:
        """Open an engine from the fields of an ``open_engine`` request."""

    @abc.abstractmethod
    def connect(self, engine: str) -> Outcome:
        """Open a session on an engine."""

    @abc.abstractmethod
    def call(self, session: str, method: str, args: Mapping[str, Any]) -> Outcome:
        """Call a session method; ``args`` are Python values by parameter name."""

    @abc.abstractmethod
    def race(self, sessions: list[str], method: str, args: Mapping[str, Any]) -> list[Outcome]:
        """Make the same call on every session at once and return the outcomes in session order."""

    @abc.abstractmethod
    def advance_clock(self, engine: str, seconds: float) -> Outcome:
        """Move the manual clock of a memory engine forward."""

    @abc.abstractmethod
    def close_engine(self, engine: str) -> Outcome:
        """Close an engine and its sessions."""

    def end_case(self) -> None:  # noqa: B027 - optional hook, empty by default.
        """Get ready for the next case, such as by restarting what broke."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the target."""


class InProcessTarget(Target):
    """The Python engines, called in this process.

    Results pass through their wire form and back, so that they compare
    exactly as an adapter's would. ``factory`` replaces the function that
    creates engines, as the adapter's ``--factory`` option does.
    """

    def __init__(self, factory: EngineFactory | None = None) -> None:
        self._table = EngineTable(factory or default_factory)

    def describe(self) -> str:
        """Return ``in-process``."""
        return "in-process"

    def start(self) -> BindingInfo:
        """Return the handshake of the Python binding."""
        return BindingInfo.from_hello(binding_info())

    def open_engine(self, request: Mapping[str, Any]) -> Outcome:
        """Open a Python engine."""
        return self._table.open_engine(request)

    def connect(self, engine: str) -> Outcome:
        """Open a session."""
        return self._table.connect(engine)

    def call(self, session: str, method: str, args: Mapping[str, Any]) -> Outcome:
        """Call a session method in this thread."""
        return _through_wire(self._table.call(session, method, dict(args)))

    def race(self, sessions: list[str], method: str, args: Mapping[str, Any]) -> list[Outcome]:
        """Call the method on every session at once, one thread each, started together by a barrier."""
        outcomes: list[Outcome | None] = [None] * len(sessions)
        barrier = threading.Barrier(len(sessions))

        def run(index: int, session: str) -> None:
            barrier.wait(RACE_TIMEOUT)
            outcomes[index] = self.call(session, method, args)

        threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RACE_TIMEOUT)
        finished = [outcome for outcome in outcomes if outcome is not None]
        if len(finished) < len(sessions):
            raise TargetFailure(
                f"only {len(finished)} of {len(sessions)} racing calls of {method}"
                f" finished within {RACE_TIMEOUT:g} s"
            )
        return finished

    def advance_clock(self, engine: str, seconds: float) -> Outcome:
        """Move the manual clock of a memory engine."""
        return self._table.advance_clock(engine, seconds)

    def close_engine(self, engine: str) -> Outcome:
        """Close an engine and its sessions."""
        return self._table.close_engine(engine)

    def close(self) -> None:
        """Close every engine still open."""
        self._table.close_all()


def _through_wire(outcome: Outcome) -> Outcome:
    if outcome.failed:
        return outcome
    try:
        return Outcome(value=from_wire(to_wire(outcome.value)))
    except WireError as error:
        return Outcome.failure(PROTOCOL_ERROR, f"the result cannot be sent as JSON: {error}")
