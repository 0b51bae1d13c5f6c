"""Running one case: capabilities, steps and the layout check.

For each case the runner opens a fresh engine on the target and session
``s1`` on it, runs the steps in order and stops at the first step that
fails. On Redis it empties the four databases before the case, sets the
case's ``server_config`` before it opens the engine and sets it back
afterwards, and checks the case's ``layout`` by reading Redis itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from ._display import render, to_report
from ._engines import Outcome
from ._expect import check_expect, got_text
from ._pages import check_listing, follow_pages
from ._redis import RedisSide, RedisSideError
from ._results import FAIL, PASS, SKIP, CaseResult, StepFailure
from ._targets import BindingInfo, Target, TargetFailure
from ._values import VectorValueError, resolve, same
from ._vectors import Case, version_numbers

__all__ = ["MANUAL_CLOCK_START", "MAX_REAL_WAIT", "EngineChoice", "Runner"]

log = logging.getLogger(__name__)

# The start time of a memory engine's manual clock, in UNIX seconds.
MANUAL_CLOCK_START = 1_700_000_000.0
# The maximum real time in seconds that the advance steps of one case may
# wait on Redis. A case that needs more is skipped, so a run cannot take hours.
MAX_REAL_WAIT = 10.0
FIRST_SESSION = "s1"

ACTIONS = ("call", "pages", "open_session", "close_session", "advance", "race", "raw", "connect_unreachable")
# Capabilities that the runner provides on every engine. Real-time
# waits are made by the runner: it sleeps on Redis and moves the manual
# clock on memory.
RUNNER_CAPABILITIES = frozenset({"real-time"})
KNOWN_CAPABILITIES = frozenset({"clock", "engine:memory", "engine:redis", "real-time"})


@dataclass(frozen=True)
class EngineChoice:
    """The engine that every case runs on: memory, or four databases of a Redis server."""

    kind: str
    host: str = ""
    port: int = 0
    offset: int = 0

    def open_request(self, manual_clock: bool) -> dict[str, Any]:
        """Return the fields of the ``open_engine`` request for a fresh engine.

        A memory engine gets a manual clock when the binding has the
        ``clock`` capability, else the real clock.
        """
        if self.kind == "memory":
            return {"engine": "memory", "clock": MANUAL_CLOCK_START if manual_clock else None}
        return {"engine": "redis", "host": self.host, "port": self.port, "offset": self.offset}


@dataclass
class _CaseState:
    engine: str = ""
    sessions: dict[str, str] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    # The earlier values of the Redis settings that the case changed.
    previous_config: dict[str, str] = field(default_factory=dict)


class _Skipped(Exception):
    """A case that cannot run on this server after all, with the reason as its message."""


class _Located(Exception):
    """A failure with the part of the case it happened in."""

    def __init__(self, where: str, step: int | None, failure: StepFailure) -> None:
        super().__init__(failure.reason)
        self.where = where
        self.step = step
        self.failure = failure


class Runner:
    """Runs cases on one target and engine.

    ``redis_side`` is the runner's own access to the databases, required
    when the engine is Redis.
    """

    def __init__(
        self, target: Target, info: BindingInfo, engine: EngineChoice, redis_side: RedisSide | None = None
    ) -> None:
        if engine.kind == "redis" and redis_side is None:
            raise ValueError("a Redis engine needs the runner's own RedisSide")
        self.target = target
        self.info = info
        self.engine = engine
        self.redis_side = redis_side

    def skip_reason(self, case: Case) -> str | None:
        """Return why the case cannot run with this binding and engine, or None when it can."""
        needs = set(case.capabilities) | _implied_capabilities(case)
        for engine in ("engine:memory", "engine:redis"):
            if engine in needs and engine != f"engine:{self.engine.kind}":
                return f"needs {engine}"
        if "clock" in needs and self.engine.kind == "memory" and "clock" not in self.info.capabilities:
            return "needs clock, which the binding lacks"
        unknown = sorted(needs - KNOWN_CAPABILITIES)
        if unknown:
            return f"needs {', '.join(unknown)}, which this runner does not know"
        newer = self._newer_spec(case)
        if newer is not None:
            return newer
        wait = _real_wait(case)
        if self.engine.kind == "redis" and wait > MAX_REAL_WAIT:
            limit = f"the runner waits at most {MAX_REAL_WAIT:g} s per case"
            return f"needs {wait:g} s of real time on Redis, and {limit}"
        return None

    def _newer_spec(self, case: Case) -> str | None:
        """Return why the case needs a newer spec than the binding implements, or None."""
        binding = version_numbers(self.info.spec_version)
        needed = None if case.since is None else version_numbers(case.since)
        if binding is None or needed is None or needed[0] != binding[0] or needed <= binding:
            return None
        return f"needs spec {case.since}, and the binding implements {self.info.spec_version}"

    def run_case(self, case: Case) -> CaseResult:
        """Run one case and return its result; the target is ready for the next case afterwards."""
        reason = self.skip_reason(case)
        if reason is not None:
            return CaseResult(case.id, SKIP, reason)

        log.debug("running case %s", case.id)
        state = _CaseState()
        failure: _Located | None = None
        try:
            try:
                self._run(case, state)
            except _Located as located:
                failure = located
            except _Skipped as skipped:
                reason = str(skipped)
            failure = self._tear_down(state, failure)
        finally:
            # In a finally clause, so that an interrupted run also sets the settings back.
            restore_failure = self._restore_server_config(state)
        failure = failure or restore_failure
        self.target.end_case()

        if failure is None:
            return CaseResult(case.id, PASS) if reason is None else CaseResult(case.id, SKIP, reason)
        reason = failure.failure.reason
        if case.tolerance is not None and self.engine.kind == "redis":
            reason += f" (a real-time case, allowing {case.tolerance:g} s of slack)"
        return CaseResult(
            case.id,
            FAIL,
            reason,
            failure.where,
            failure.step,
            failure.failure.expected,
            failure.failure.got,
        )

    def _run(self, case: Case, state: _CaseState) -> None:
        with _located("setup", None):
            if self.redis_side is not None:
                self.redis_side.flush()
            self._apply_server_config(case, state)
            state.engine = self._open_engine(self.engine.open_request("clock" in self.info.capabilities))
            state.sessions[FIRST_SESSION] = self._connect(state.engine)

        for number, step in enumerate(case.steps, 1):
            with _located(f"step {number} {_step_label(step)}", number):
                self._run_step(step, state)

        if case.layout is not None:
            with _located("layout", None):
                assert self.redis_side is not None
                self.redis_side.check_layout(case.layout, state.variables)

    def _apply_server_config(self, case: Case, state: _CaseState) -> None:
        """Set the case's Redis settings, or raise :class:`_Skipped` when the server rejects them."""
        if case.server_config is None:
            return
        if self.redis_side is None:
            raise StepFailure("invalid case: server_config needs the Redis engine")
        reason = self.redis_side.set_config(case.server_config, state.previous_config)
        if reason is not None:
            raise _Skipped(f"needs server_config, which the runner could not apply: {reason}")

    def _restore_server_config(self, state: _CaseState) -> _Located | None:
        """Set back the Redis settings that the case changed, and return the failure if that fails."""
        if not state.previous_config:
            return None
        assert self.redis_side is not None
        try:
            with _located("teardown", None):
                self.redis_side.restore_config(state.previous_config)
        except _Located as located:
            log.warning("%s", located.failure.reason)
            return located
        return None

    def _tear_down(self, state: _CaseState, failure: _Located | None) -> _Located | None:
        """Close the case's engine, unless the target broke; a failing close fails a passing case."""
        if not state.engine or (failure is not None and isinstance(failure.__cause__, TargetFailure)):
            return failure
        try:
            with _located("teardown", None):
                outcome = self.target.close_engine(state.engine)
                if outcome.failed:
                    raise StepFailure(f"close_engine failed: {got_text(outcome)}")
        except _Located as located:
            return failure or located
        return failure

    def _run_step(self, step: Any, state: _CaseState) -> None:
        action = _action(step)
        if action == "call":
            self._call(step, state)
        elif action == "pages":
            self._pages(step, state)
        elif action == "open_session":
            self._open_session(step["open_session"], state)
        elif action == "close_session":
            self._close_session(step["close_session"], state)
        elif action == "advance":
            self._advance(step["advance"], state)
        elif action == "race":
            self._race(step["race"], state)
        elif action == "raw":
            assert self.redis_side is not None
            self.redis_side.run_raw(step["raw"], state.variables)
        else:
            self._connect_unreachable(step, state)

    def _call(self, step: dict[str, Any], state: _CaseState) -> None:
        method = step["call"]
        if not isinstance(method, str):
            raise StepFailure(f"invalid call step: call must name a method, not {render(method)}")
        args = _resolve_args(step.get("args", {}), state)
        outcome = self.target.call(_session(state, step.get("session", FIRST_SESSION)), method, args)
        check_expect(step.get("expect"), outcome, state.variables)

        name = step.get("bind")
        if name is not None:
            if not isinstance(name, str):
                raise StepFailure(f"invalid call step: bind must be a variable name, not {render(name)}")
            state.variables[name] = outcome.value

    def _pages(self, step: dict[str, Any], state: _CaseState) -> None:
        """Read every page of a paged listing and compare all their ids with ``expect``."""
        method = step["pages"]
        if not isinstance(method, str):
            raise StepFailure(f"invalid pages step: pages must name a method, not {render(method)}")
        args = _resolve_args(step.get("args", {}), state)
        session = _session(state, step.get("session", FIRST_SESSION))
        listing = follow_pages(lambda page_args: self.target.call(session, method, page_args), args)
        check_listing(step.get("expect"), listing, state.variables)

    def _open_session(self, name: Any, state: _CaseState) -> None:
        if not isinstance(name, str) or not name:
            raise StepFailure(f"invalid open_session step: it must name the session, not {render(name)}")
        if name in state.sessions:
            raise StepFailure(f"invalid open_session step: session {name} is open already")
        state.sessions[name] = self._connect(state.engine)

    def _close_session(self, name: Any, state: _CaseState) -> None:
        outcome = self.target.call(_session(state, name), "close", {})
        if outcome.failed:
            raise StepFailure(f"close failed: {got_text(outcome)}")

    def _advance(self, seconds: Any, state: _CaseState) -> None:
        if not _is_duration(seconds):
            raise StepFailure(
                f"invalid advance step: it must be a number of seconds of at least 0, not {render(seconds)}"
            )
        if self.engine.kind == "redis":
            time.sleep(seconds)
            return
        outcome = self.target.advance_clock(state.engine, seconds)
        if outcome.failed:
            raise StepFailure(f"advance_clock failed: {got_text(outcome)}")

    def _race(self, race: Any, state: _CaseState) -> None:
        if not isinstance(race, dict) or not {"sessions", "call", "expect_count"} <= set(race):
            raise StepFailure(
                f"invalid race step: it needs sessions, call and expect_count, not {render(race)}"
            )
        count = race["sessions"]
        expect = race["expect_count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise StepFailure(
                f"invalid race step: sessions must be a whole number of at least 1, not {render(count)}"
            )
        if not isinstance(expect, dict) or set(expect) != {"value", "count"}:
            raise StepFailure(f"invalid race step: expect_count needs value and count, not {render(expect)}")

        args = _resolve_args(race.get("args", {}), state)
        sessions = [self._connect(state.engine) for _ in range(count)]
        outcomes = self.target.race(sessions, race["call"], args)
        for session in sessions:
            self.target.call(session, "close", {})
        _check_race(outcomes, _resolve(expect["value"], state), expect["count"])

    def _connect_unreachable(self, step: dict[str, Any], state: _CaseState) -> None:
        """Check the error of a Redis engine on a port where nothing listens.

        A binding may connect lazily, so when connect succeeds, the first
        call on the session, get_all_messages, must raise the error.
        """
        request = {"engine": "redis", "host": "127.0.0.1", "port": _unused_port(), "offset": 0}
        outcome = self.target.open_engine(request)
        source = "open_engine"
        if not outcome.failed:
            engine = _handle(outcome, "engine")
            try:
                outcome, source = self._first_contact(engine)
            finally:
                self.target.close_engine(engine)
        try:
            check_expect(step.get("expect"), outcome, state.variables)
        except StepFailure as failure:
            raise StepFailure(f"{failure.reason} (from {source})", failure.expected, failure.got) from None

    def _first_contact(self, engine: str) -> tuple[Outcome, str]:
        """Connect, and when that succeeds, call get_all_messages; return the outcome and which call it is."""
        outcome = self.target.connect(engine)
        if outcome.failed:
            return outcome, "connect"
        session = _handle(outcome, "session")
        return self.target.call(session, "get_all_messages", {}), "get_all_messages, after connect succeeded"

    def _open_engine(self, request: dict[str, Any]) -> str:
        outcome = self.target.open_engine(request)
        if outcome.failed:
            raise StepFailure(f"open_engine failed: {got_text(outcome)}")
        return _handle(outcome, "engine")

    def _connect(self, engine: str) -> str:
        outcome = self.target.connect(engine)
        if outcome.failed:
            raise StepFailure(f"connect failed: {got_text(outcome)}")
        return _handle(outcome, "session")


@contextlib.contextmanager
def _located(where: str, step: int | None) -> Iterator[None]:
    """Turn a failure inside the block into :class:`_Located`, naming where it happened."""
    try:
        yield
    except (_Located, _Skipped):
        raise
    except StepFailure as error:
        raise _Located(where, step, error) from error
    except (TargetFailure, RedisSideError) as error:
        raise _Located(where, step, StepFailure(str(error))) from error
    except redis.RedisError as error:
        raise _Located(where, step, StepFailure(f"the runner's Redis client failed: {error}")) from error
    except VectorValueError as error:
        raise _Located(where, step, StepFailure(f"invalid vector: {error}")) from error
    except Exception as error:
        # A bug of the runner, or a vector shaped in a way it did not
        # foresee: the case fails and the run goes on.
        log.warning("the runner failed at %s", where, exc_info=error)
        reason = f"the runner failed: {type(error).__name__}: {error}"
        raise _Located(where, step, StepFailure(reason)) from error


def _step_label(step: Any) -> str:
    try:
        action = _action(step)
    except StepFailure:
        return "(invalid)"
    if action == "call":
        return str(step["call"])
    if action == "race" and isinstance(step["race"], dict):
        return f"race {step['race'].get('call')}"
    if action == "pages":
        return f"pages {step['pages']}"
    return action


def _action(step: Any) -> str:
    actions = [name for name in ACTIONS if isinstance(step, dict) and name in step]
    if len(actions) != 1:
        found = ", ".join(actions) or "none"
        raise StepFailure(f"invalid step: it needs exactly one of {', '.join(ACTIONS)}, found {found}")
    return actions[0]


def _implied_capabilities(case: Case) -> set[str]:
    """Return the capabilities that the steps and layout of a case need, whether listed or not."""
    needs = set()
    if case.layout is not None or case.server_config is not None:
        needs.add("engine:redis")
    for step in case.steps:
        if "raw" in step or "connect_unreachable" in step:
            needs.add("engine:redis")
        if "advance" in step:
            needs.add("clock")
    return needs


def _real_wait(case: Case) -> float:
    return float(sum(step["advance"] for step in case.steps if _is_duration(step.get("advance"))))


def _is_duration(seconds: Any) -> bool:
    return (
        not isinstance(seconds, bool)
        and isinstance(seconds, (int, float))
        and math.isfinite(seconds)
        and seconds >= 0
    )


def _resolve(value: Any, state: _CaseState) -> Any:
    try:
        return resolve(value, state.variables)
    except VectorValueError as error:
        raise StepFailure(f"invalid vector: {error}") from None


def _resolve_args(raw: Any, state: _CaseState) -> dict[str, Any]:
    args = _resolve(raw, state)
    if not isinstance(args, dict):
        raise StepFailure(f"invalid step: args must be an object by parameter name, not {render(raw)}")
    return args


def _session(state: _CaseState, name: Any) -> str:
    handle = state.sessions.get(name) if isinstance(name, str) else None
    if handle is None:
        raise StepFailure(
            f"invalid step: no session named {render(name)}; open it with an open_session step first"
        )
    return handle


def _handle(outcome: Outcome, name: str) -> str:
    value = outcome.value
    if not isinstance(value, dict) or not isinstance(value.get(name), str):
        raise StepFailure(f'expected a result of the form {{"{name}": handle}}, got {render(value)}')
    handle: str = value[name]
    return handle


def _check_race(outcomes: list[Outcome], value: Any, count: Any) -> None:
    errors = [outcome for outcome in outcomes if outcome.failed]
    if errors:
        raise StepFailure(
            f"expected no errors, got {len(errors)} of {len(outcomes)} calls failing, the first with"
            f" {got_text(errors[0])}",
            {"errors": 0},
            {"errors": len(errors), "first": {"error": errors[0].error, "message": errors[0].message}},
        )
    results = [outcome.value for outcome in outcomes]
    matched = sum(1 for result in results if same(result, value))
    if matched != count:
        raise StepFailure.mismatch(
            f"{count} of {len(results)} results equal to {render(value)}",
            f"{matched}: {render(results)}",
            {"value": to_report(value), "count": count},
            {"count": matched, "results": to_report(results)},
        )


def _unused_port() -> int:
    """Return a loopback port where nothing listens: bound, read and closed again at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
