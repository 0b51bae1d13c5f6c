"""The Python reference adapter: the adapter protocol served over the Python engines.

It reads one JSON request per line and writes one reply per line. Calls
run on one worker thread per session. The runner sends the calls of a
``race`` before reading any reply, so they really run at once, and their
replies come in the order the calls finish. Any other request first
waits for every pending call, so that it runs after them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from ._engines import PROTOCOL_ERROR, EngineFactory, EngineTable, Outcome, binding_info, default_factory
from ._values import WireError, from_wire, to_wire

__all__ = ["PROTOCOL_VERSION", "AdapterServer", "load_factory", "main"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


class AdapterServer:
    """Serves adapter requests from one stream and writes the replies to another."""

    def __init__(self, replies: IO[bytes], factory: EngineFactory = default_factory) -> None:
        self._replies = replies
        self._table = EngineTable(factory)
        self._write_lock = threading.Lock()
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._pending: list[Future[None]] = []

    def serve(self, requests: IO[bytes]) -> None:
        """Handle requests until ``shutdown`` or the end of the input, then close every engine."""
        try:
            for line in requests:
                if not line.strip():
                    continue
                if not self.handle(line):
                    break
        finally:
            self._wait_for_calls()
            self._table.close_all()
            for worker in self._workers.values():
                worker.shutdown(wait=True)

    def handle(self, line: bytes) -> bool:
        """Handle one request line; return False after ``shutdown``."""
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            self._reply(None, Outcome.failure(PROTOCOL_ERROR, f"the request is not a JSON line: {error}"))
            return True
        if not isinstance(request, dict):
            self._reply(None, Outcome.failure(PROTOCOL_ERROR, "a request must be a JSON object"))
            return True

        seq = request.get("seq")
        op = request.get("op")
        if op == "call":
            self._submit_call(seq, request)
            return True

        self._wait_for_calls()
        if op == "shutdown":
            self._reply(seq, Outcome())
            return False
        self._reply(seq, self._run(op, request))
        return True

    def _run(self, op: Any, request: dict[str, Any]) -> Outcome:
        if op == "hello":
            return _hello(request.get("protocol"))
        if op == "open_engine":
            fields = {key: value for key, value in request.items() if key not in ("op", "seq")}
            return self._table.open_engine(fields)
        if op == "connect":
            return self._table.connect(request.get("engine"))
        if op == "advance_clock":
            return _null_result(self._table.advance_clock(request.get("engine"), request.get("seconds")))
        if op == "close_engine":
            outcome = _null_result(self._table.close_engine(request.get("engine")))
            self._stop_idle_workers()
            return outcome
        known = "hello, open_engine, connect, call, advance_clock, close_engine and shutdown"
        return Outcome.failure(PROTOCOL_ERROR, f"unknown op {op!r}; the ops are {known}")

    def _submit_call(self, seq: Any, request: dict[str, Any]) -> None:
        session = request.get("session")
        if not isinstance(session, str) or not self._table.has_session(session):
            # The table reports the unknown handle; no worker is needed.
            self._call(seq, request)
            return
        worker = self._workers.get(session)
        if worker is None:
            worker = self._workers[session] = ThreadPoolExecutor(1, thread_name_prefix=f"session-{session}")
        self._pending.append(worker.submit(self._call, seq, request))

    def _call(self, seq: Any, request: dict[str, Any]) -> None:
        try:
            args = from_wire(request.get("args", {}))
        except WireError as error:
            self._reply(seq, Outcome.failure(PROTOCOL_ERROR, f"invalid args: {error}"))
            return
        self._reply(seq, self._table.call(request.get("session"), request.get("method"), args))

    def _wait_for_calls(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _stop_idle_workers(self) -> None:
        """Stop the workers of sessions whose engine was closed."""
        for handle in [handle for handle in self._workers if not self._table.has_session(handle)]:
            self._workers.pop(handle).shutdown(wait=True)

    def _reply(self, seq: Any, outcome: Outcome) -> None:
        reply: dict[str, Any] = {"seq": seq}
        if outcome.failed:
            reply["error"] = {"kind": outcome.error, "message": outcome.message}
        else:
            try:
                reply["result"] = to_wire(outcome.value)
            except WireError as error:
                reply["error"] = {
                    "kind": PROTOCOL_ERROR,
                    "message": f"the result cannot be sent as JSON: {error}",
                }
        line = json.dumps(reply, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._write_lock:
            self._replies.write(line)
            self._replies.flush()


def _hello(protocol: Any) -> Outcome:
    if protocol != PROTOCOL_VERSION:
        return Outcome.failure(
            PROTOCOL_ERROR,
            f"protocol version {protocol!r} is not supported; this adapter speaks {PROTOCOL_VERSION}",
        )
    return Outcome(value=binding_info())


def _null_result(outcome: Outcome) -> Outcome:
    return outcome if outcome.failed else Outcome()


def load_factory(spec: str) -> EngineFactory:
    """Import ``MODULE:CALLABLE`` and return the callable.

    :raises ValueError: the spec has no colon, the module cannot be
        imported or it has no such callable.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"--factory must be MODULE:CALLABLE, such as mypackage.engines:make, not {spec!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"could not import {module_name} of --factory: {error}") from None
    for name in attribute.split("."):
        found = getattr(found, name, None)
    if not callable(found):
        raise ValueError(f"{module_name} has no callable {attribute} for --factory")
    factory: EngineFactory = found
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the adapter protocol on stdin and stdout; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m slimta.storage.conformance.adapter",
        description=(
            "Serve the conformance adapter protocol over the Python engines: JSON requests on stdin,"
            " replies on stdout, logs on stderr."
        ),
    )
    parser.add_argument(
        "--factory",
        metavar="MODULE:CALLABLE",
        help="create engines with CALLABLE(kind, options) instead of the Python engines' constructors",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        factory = default_factory if args.factory is None else load_factory(args.factory)
    except ValueError as error:
        print(f"adapter: error: {error}", file=sys.stderr)
        return 2

    replies = _take_stdout()
    AdapterServer(replies, factory).serve(sys.stdin.buffer)
    return 0


def _take_stdout() -> IO[bytes]:
    """Return a stream on the real stdout for the replies, and point fd 1 and sys.stdout at stderr.

    Anything else that writes to stdout, such as a stray print(), then
    lands in the log instead of corrupting the protocol.
    """
    sys.stdout.flush()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return replies
