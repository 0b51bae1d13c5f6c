"""The runner's side of the adapter protocol: a binding driven through a child process.

The adapter reads one JSON request per line on stdin and writes one reply
per line on stdout. A thread reads its stdout into a queue, so that every
reply can be awaited with a timeout, and requests are written without
blocking, so that sending one has a timeout too. When the adapter exits,
hangs or writes a line that is not a valid reply, the current operation
raises :class:`TargetFailure` and the adapter's process group is killed;
:meth:`end_case` starts it again for the next case.

NOTE: process groups, ``os.killpg`` and non-blocking pipes make this
module POSIX-only; the in-process target has no such need.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from .._errors import InvalidArgument, MessageNotFound, SessionClosed, StorageUnavailable
from ._engines import PROTOCOL_ERROR, Outcome
from ._targets import BindingInfo, Target, TargetFailure
from ._values import WireError, from_wire, to_wire

__all__ = ["DEFAULT_TIMEOUT", "PROTOCOL_VERSION", "AdapterStartError", "AdapterTarget"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT = 10.0
# Replies carry contents of many megabytes in base64, so a line may be
# long; a longer line is taken for garbage.
MAX_REPLY_BYTES = 256 * 1024 * 1024
STDERR_LINES = 10
# How many of those lines a failure shows, and how long each may be. A
# stack trace often ends in lines less useful than the error above them.
STDERR_SHOWN_LINES = 6
STDERR_LINE_CHARS = 200
# A stderr line that names an error, shown even when more lines follow it.
ERROR_LINE = re.compile(r"\b(error|exception|fatal|panic)\b", re.IGNORECASE)
# How long a stopping adapter may take to exit after shutdown or a kill.
EXIT_WAIT = 5.0
# How long the reader threads of a killed adapter may take to reach the end of its output.
READER_JOIN_WAIT = 2.0


# The error kinds a reply may carry: those of the spec, and protocol.
ERROR_KINDS = frozenset(
    [
        PROTOCOL_ERROR,
        *(error.kind for error in (InvalidArgument, MessageNotFound, SessionClosed, StorageUnavailable)),
    ]
)


class AdapterStartError(Exception):
    """The adapter command could not be started or did not complete the handshake."""


class _Process:
    """One running adapter process with the threads that read its output.

    The adapter runs in a session and process group of its own, so that
    :meth:`kill` also ends what it started, such as the real adapter
    behind a wrapper like ``sh -c '...; true'``.
    """

    def __init__(self, argv: list[str]) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        assert self.popen.stderr is not None
        # Requests are written to the descriptor without blocking, so that
        # an adapter that stops reading cannot stall the runner.
        os.set_blocking(self.popen.stdin.fileno(), False)
        self._writable = selectors.DefaultSelector()
        self._writable.register(self.popen.stdin.fileno(), selectors.EVENT_WRITE)
        self.replies: queue.Queue[bytes | None] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._readers = [
            threading.Thread(target=target, args=(stream,), daemon=True)
            for target, stream in (
                (self._read_replies, self.popen.stdout),
                (self._read_stderr, self.popen.stderr),
            )
        ]
        for reader in self._readers:
            reader.start()
        log.debug("started adapter pid %d: %s", self.popen.pid, shlex.join(argv))

    def _read_replies(self, stream: IO[bytes]) -> None:
        try:
            for line in iter(lambda: stream.readline(MAX_REPLY_BYTES), b""):
                self.replies.put(line)
        except (OSError, ValueError):
            pass  # The stream was closed because the adapter was stopped.
        self.replies.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                log.debug("adapter pid %d stderr: %s", self.popen.pid, line)
        except (OSError, ValueError):
            pass

    def send(self, line: bytes, timeout: float) -> None:
        """Write one request line.

        :raises TimeoutError: the adapter did not read the whole line
            within ``timeout`` seconds.
        :raises OSError: the adapter closed its input, such as by exiting.
        """
        assert self.popen.stdin is not None
        descriptor = self.popen.stdin.fileno()
        unsent = memoryview(line)
        deadline = time.monotonic() + timeout
        while unsent:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if self._writable.select(remaining):
                with contextlib.suppress(BlockingIOError):
                    unsent = unsent[os.write(descriptor, unsent) :]

    def close_stdin(self) -> None:
        """Close the adapter's input, which ends an adapter that reads until end of input."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def exit_status(self) -> int | None:
        try:
            return self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def stderr_text(self) -> str:
        # Give the stderr thread a moment to read the last lines of a crashing adapter.
        time.sleep(0.05)
        lines = [_shorten(line) for line in self.stderr_tail if line.strip()]
        if not lines:
            return "(nothing)"

        shown = lines[-STDERR_SHOWN_LINES:]
        errors = [line for line in lines if ERROR_LINE.search(line)]
        if errors and not any(ERROR_LINE.search(line) for line in shown):
            # Such as Node.js, whose error line comes before its stack trace.
            shown = [errors[-1], "...", *shown]
        return " | ".join(shown)

    def kill(self) -> None:
        """Kill every process of the adapter's group, and close the pipes that no other process has open."""
        self._kill_group()
        try:
            self.popen.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            log.warning("adapter pid %d did not exit after SIGKILL", self.popen.pid)
        self._close_pipes()

    def _kill_group(self) -> None:
        # The adapter leads its own group, so the group id is its pid. The
        # group lives on while any member does, also after the runner reaped
        # the adapter itself.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # Every process of the group has exited.
        except PermissionError as error:
            log.warning("could not kill the process group %d of the adapter: %s", self.popen.pid, error)

    def _close_pipes(self) -> None:
        """Close the pipes, but never one that a reader thread is still blocked on.

        Closing a stream waits for the lock of a blocked readline, so a
        process outside the group that still has the adapter's stdout or
        stderr open would stall the runner. Such a stream is left to its
        daemon thread.
        """
        self._writable.close()
        self.close_stdin()
        deadline = time.monotonic() + READER_JOIN_WAIT
        for reader, stream in zip(self._readers, (self.popen.stdout, self.popen.stderr), strict=True):
            reader.join(max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                log.warning(
                    "left an output pipe of adapter pid %d open, because a process outside its process"
                    " group still has it open",
                    self.popen.pid,
                )
            elif stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class AdapterTarget(Target):
    """A binding behind an adapter command, which is split like a shell would but run without one.

    ``timeout`` is how many seconds the adapter may take for each reply,
    and to read each request.
    """

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout
        self._argv = shlex.split(command)
        if not self._argv:
            raise AdapterStartError("the adapter command is empty")
        self._process: _Process | None = None
        self._broken = False
        self._seq = 0

    def describe(self) -> str:
        """Return ``adapter`` and the command."""
        return f"adapter {self.command}"

    def start(self) -> BindingInfo:
        """Start the adapter and return its handshake.

        :raises AdapterStartError: the command cannot be run, or the
            handshake failed.
        """
        try:
            return self._launch()
        except TargetFailure as error:
            self._kill()
            raise AdapterStartError(f"the adapter {self.command!r} failed the handshake: {error}") from None

    def open_engine(self, request: Mapping[str, Any]) -> Outcome:
        """Send ``open_engine``."""
        return self._request("open_engine", dict(request))

    def connect(self, engine: str) -> Outcome:
        """Send ``connect``."""
        return self._request("connect", {"engine": engine})

    def call(self, session: str, method: str, args: Mapping[str, Any]) -> Outcome:
        """Send ``call`` with the arguments in their wire form."""
        return self._request("call", self._call_fields(session, method, args), method)

    def race(self, sessions: list[str], method: str, args: Mapping[str, Any]) -> list[Outcome]:
        """Send the call on every session before reading any reply; replies may come in any order."""
        operation = f"call {method}"
        seqs = [
            self._send("call", self._call_fields(session, method, args), operation) for session in sessions
        ]
        replies = self._receive(seqs, operation)
        return [replies[seq] for seq in seqs]

    def advance_clock(self, engine: str, seconds: float) -> Outcome:
        """Send ``advance_clock``."""
        return self._request("advance_clock", {"engine": engine, "seconds": seconds})

    def close_engine(self, engine: str) -> Outcome:
        """Send ``close_engine``."""
        return self._request("close_engine", {"engine": engine})

    def end_case(self) -> None:
        """Restart the adapter when it broke during the case.

        A failing restart is not raised here: the next case's first
        operation raises it, so that case fails with the reason.
        """
        if not self._broken:
            return
        log.warning("restarting the adapter %r after it failed", self.command)
        self._kill()
        try:
            self._launch()
        except (TargetFailure, AdapterStartError) as error:
            log.warning("the adapter did not restart: %s", error)
            self._kill()
            self._broken = True

    def close(self) -> None:
        """Send ``shutdown`` and wait for the adapter to exit, killing it when it does not."""
        process = self._process
        if process is None:
            return
        if not self._broken:
            try:
                self._request("shutdown", {})
                process.close_stdin()
                process.popen.wait(timeout=EXIT_WAIT)
            except (TargetFailure, subprocess.TimeoutExpired) as error:
                log.warning("the adapter did not shut down cleanly: %s", error)
        self._kill()

    def _launch(self) -> BindingInfo:
        try:
            self._process = _Process(self._argv)
        except OSError as error:
            raise AdapterStartError(f"could not start the adapter {self.command!r}: {error}") from None
        self._broken = False
        outcome = self._request("hello", {"protocol": PROTOCOL_VERSION})
        if outcome.failed:
            self._broken = True
            raise TargetFailure(f"hello failed with error {outcome.error}: {outcome.message}")
        try:
            return BindingInfo.from_hello(outcome.value)
        except ValueError as error:
            self._broken = True
            raise TargetFailure(str(error)) from None

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process = None

    def _call_fields(self, session: str, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            wire_args = to_wire(dict(args))
        except WireError as error:
            raise TargetFailure(f"the arguments of {method} cannot be sent as JSON: {error}") from None
        return {"session": session, "method": method, "args": wire_args}

    def _request(self, op: str, fields: dict[str, Any], method: str | None = None) -> Outcome:
        operation = f"call {method}" if op == "call" else op
        seq = self._send(op, fields, operation)
        return self._receive([seq], operation)[seq]

    def _send(self, op: str, fields: dict[str, Any], operation: str) -> int:
        process = self._running()
        self._seq += 1
        request = {**fields, "op": op, "seq": self._seq}
        line = json.dumps(request, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            process.send(line, self.timeout)
        except TimeoutError:
            raise self._failure(
                f"the adapter did not read the request {operation} within {self.timeout:g} s", None
            ) from None
        except (ValueError, OSError):
            raise self._failure(f"the adapter exited before {operation} could be sent", process) from None
        return self._seq

    def _receive(self, seqs: list[int], operation: str) -> dict[int, Outcome]:
        process = self._running()
        pending = set(seqs)
        replies: dict[int, Outcome] = {}
        while pending:
            try:
                line = process.replies.get(timeout=self.timeout)
            except queue.Empty:
                raise self._failure(
                    f"the adapter sent no reply to {operation} within {self.timeout:g} s", None
                ) from None
            if line is None:
                raise self._failure(f"the adapter exited during {operation}", process)

            seq, outcome = self._parse(line, pending, operation)
            pending.discard(seq)
            replies[seq] = outcome
        return replies

    def _parse(self, line: bytes, pending: set[int], operation: str) -> tuple[int, Outcome]:
        try:
            return _parse_reply(line, pending)
        except ValueError as error:
            excerpt = line[:200].decode("utf-8", "replace").rstrip("\n")
            raise self._failure(
                f"the adapter wrote an invalid reply to {operation}: {error}: {excerpt!r}", None
            ) from None

    def _running(self) -> _Process:
        if self._process is None or self._broken:
            raise TargetFailure("the adapter is not running: it failed to restart after an earlier failure")
        return self._process

    def _failure(self, reason: str, exited: _Process | None) -> TargetFailure:
        """Mark the adapter broken and return the failure, with the exit status and stderr when it exited."""
        self._broken = True
        if exited is not None:
            status = exited.exit_status()
            status_text = "unknown" if status is None else str(status)
            reason += f" (exit status {status_text}; last stderr: {exited.stderr_text()})"
        log.debug("adapter failure: %s", reason)
        return TargetFailure(reason)


def _reject_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON; send {{"$float": ...}} for non-finite numbers')


def _parse_reply(line: bytes, pending: set[int]) -> tuple[int, Outcome]:
    """Parse one reply line, returning its seq and outcome.

    :raises ValueError: the line is not one JSON object with a pending
        ``seq`` and exactly one of a ``result`` or a well-formed ``error``.
    """
    if not line.endswith(b"\n"):
        raise ValueError(f"the line does not end in a newline, or is longer than {MAX_REPLY_BYTES} bytes")
    try:
        reply = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ValueError("the line is not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    if not isinstance(reply, dict):
        raise ValueError("not a JSON object")

    seq = reply.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq not in pending:
        expected = " or ".join(str(item) for item in sorted(pending))
        raise ValueError(f"seq is {seq!r}, expected {expected}")
    if ("result" in reply) == ("error" in reply):
        raise ValueError("a reply needs exactly one of result and error")
    if "error" in reply:
        return seq, _error_outcome(reply["error"])
    try:
        return seq, Outcome(value=from_wire(reply["result"]))
    except WireError as error:
        raise ValueError(str(error)) from None


def _error_outcome(error: Any) -> Outcome:
    if not isinstance(error, dict) or not isinstance(error.get("kind"), str):
        raise ValueError("error must be an object with kind and message")
    message = error.get("message", "")
    if not isinstance(message, str):
        raise ValueError("error message must be a string")
    if error["kind"] not in ERROR_KINDS:
        raise ValueError(f"error kind {error['kind']!r:.80} is none of {', '.join(sorted(ERROR_KINDS))}")
    return Outcome.failure(error["kind"], message)


def _shorten(line: str) -> str:
    return line if len(line) <= STDERR_LINE_CHARS else line[: STDERR_LINE_CHARS - 3] + "..."
