"""A loopback TCP proxy in front of a test redis-server that breaks connections on purpose.

:class:`FaultProxy` listens on 127.0.0.1 and forwards every client
connection to one upstream server, which must be a server the test
started itself. It parses both directions as RESP2, so it can match
each reply to its request, and counts the requests it forwards. A
rule set with :meth:`FaultProxy.drop_reply` lets a chosen request reach
the server and run, then closes the client's connection instead of
forwarding the reply: the client cannot tell whether its command ran.
:meth:`FaultProxy.drop_request` closes the connection before the request
is forwarded, so the server never sees it. :meth:`FaultProxy.before`
runs a function before a chosen request is forwarded, so a test can
change the server's data between two requests of the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from slimta.storage.redis._scripts import SCRIPTS

__all__ = ["FaultProxy", "Matcher", "any_request", "command", "script"]

# A matcher receives a request as the list of its arguments and returns whether it matches.
Matcher = Callable[[list[bytes]], bool]

LISTEN_HOST = "127.0.0.1"
RECEIVE_SIZE = 65536
CONNECT_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0


class ProtocolError(Exception):
    """The bytes between client and server are not RESP2."""


def any_request(request: list[bytes]) -> bool:
    """Match every request."""
    return True


def command(name: str) -> Matcher:
    """Match requests of one command, such as ``command("SADD")``."""
    wanted = name.upper().encode("ascii")
    return lambda request: request[0].upper() == wanted


def script(name: str) -> Matcher:
    """Match the calls of one of the engine's Lua scripts, by EVALSHA or by EVAL."""
    sha = SCRIPTS[name].sha.encode("ascii")
    source = SCRIPTS[name].source

    def matches(request: list[bytes]) -> bool:
        verb = request[0].upper()
        if verb == b"EVALSHA":
            return request[1].lower() == sha
        return verb == b"EVAL" and request[1] == source

    return matches


@dataclass
class _Rule:
    action: str
    matcher: Matcher
    nth: int
    seen: int = 0
    fired: bool = False
    callback: Callable[[], object] | None = None


def _parse(buffer: bytearray, start: int) -> tuple[Any, int] | None:
    """Parse one RESP2 value at ``start``: return it and where it ends, or None when incomplete."""
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind = buffer[start : start + 1]
    line = bytes(buffer[start + 1 : line_end])
    after = line_end + 2
    if kind in (b"+", b"-", b":"):
        return line, after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == b"*":
        return _parse_array(buffer, int(line), after)
    raise ProtocolError(f"not RESP2 at byte {start}: {bytes(buffer[start : start + 20])!r}")


def _parse_array(buffer: bytearray, count: int, position: int) -> tuple[Any, int] | None:
    items = []
    for _ in range(max(count, 0)):
        parsed = _parse(buffer, position)
        if parsed is None:
            return None
        item, position = parsed
        items.append(item)
    return items, position


def _take_frames(buffer: bytearray) -> list[tuple[Any, bytes]]:
    """Remove the complete values from the front of ``buffer`` and return each with its bytes."""
    frames = []
    position = 0
    while position < len(buffer):
        parsed = _parse(buffer, position)
        if parsed is None:
            break
        value, end = parsed
        frames.append((value, bytes(buffer[position:end])))
        position = end
    del buffer[:position]
    return frames


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Pair:
    """One client connection and its connection to the server, with a thread per direction."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection(proxy.upstream, timeout=CONNECT_TIMEOUT)
        self.server.settimeout(None)
        # One entry per forwarded request, in order: True when its reply is to be dropped.
        self.pending: deque[bool] = deque()
        self.closed = threading.Event()
        self.threads = [
            threading.Thread(target=self._pump_requests, daemon=True),
            threading.Thread(target=self._pump_replies, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _close(self.client)
            _close(self.server)

    def _pump_requests(self) -> None:
        buffer = bytearray()
        try:
            while not self.closed.is_set():
                data = self.client.recv(RECEIVE_SIZE)
                if not data:
                    break
                buffer += data
                outgoing, dropped = self._admit_requests(buffer)
                self.server.sendall(outgoing)
                if dropped:
                    # Cut the connection in place of forwarding the dropped request.
                    break
        except (OSError, ProtocolError):
            pass
        self.close()

    def _admit_requests(self, buffer: bytearray) -> tuple[bytes, bool]:
        """Take the complete requests out of ``buffer`` and return the bytes to forward.

        The flag returned with them is True when a rule dropped a request,
        which ends the bytes to forward.
        """
        outgoing = bytearray()
        for request, raw in _take_frames(buffer):
            action = self.proxy._decide(request)
            if action == "request":
                return bytes(outgoing), True
            self.pending.append(action == "reply")
            outgoing += raw
        return bytes(outgoing), False

    def _pump_replies(self) -> None:
        buffer = bytearray()
        try:
            while not self.closed.is_set():
                data = self.server.recv(RECEIVE_SIZE)
                if not data:
                    break
                buffer += data
                outgoing = bytearray()
                dropped = False
                for _, raw in _take_frames(buffer):
                    if self.pending and self.pending.popleft():
                        dropped = True
                        break
                    outgoing += raw
                self.client.sendall(outgoing)
                if dropped:
                    break
        except (OSError, ProtocolError):
            pass
        self.close()


class FaultProxy:
    """A proxy on 127.0.0.1 to one redis-server, able to drop a request or a reply.

    ``requests`` counts the forwarded requests by command name in upper
    case, such as ``b"EVALSHA"``. ``scripts`` counts the Lua scripts run
    by EVALSHA or EVAL, and ``loaded`` those sent with SCRIPT LOAD, both by
    SHA1 in hex. Use it as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = LISTEN_HOST
        self.port = 0
        self.requests: Counter[bytes] = Counter()
        self.scripts: Counter[str] = Counter()
        self.loaded: Counter[str] = Counter()
        # Exceptions that the functions of before() raised, for the test to check.
        self.callback_errors: list[BaseException] = []
        self._rules: list[_Rule] = []
        self._pairs: list[_Pair] = []
        self._mutex = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and accept connections in a thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LISTEN_HOST, 0))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and every connection, and wait for the threads."""
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._mutex:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        threads = [thread for pair in pairs for thread in pair.threads]
        if self._acceptor is not None:
            threads.append(self._acceptor)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

    def drop_reply(self, matcher: Matcher = any_request, nth: int = 1) -> None:
        """Let the ``nth`` request that ``matcher`` matches run, then drop its reply.

        The proxy forwards the request, waits for the server's reply and
        closes the client's connection in place of forwarding it. The
        rule fires once.
        """
        with self._mutex:
            self._rules.append(_Rule("reply", matcher, nth))

    def drop_request(self, matcher: Matcher = any_request, nth: int = 1) -> None:
        """Close the connection of the ``nth`` request that ``matcher`` matches, without forwarding it.

        The server never receives the request. The rule fires once.
        """
        with self._mutex:
            self._rules.append(_Rule("request", matcher, nth))

    def before(self, matcher: Matcher, callback: Callable[[], object], nth: int = 1) -> None:
        """Call ``callback`` before the ``nth`` request that ``matcher`` matches is forwarded.

        The request goes on to the server once ``callback`` returns. An
        exception of ``callback`` is kept in ``callback_errors``. The rule
        fires once.
        """
        with self._mutex:
            self._rules.append(_Rule("call", matcher, nth, callback=callback))

    def fired(self) -> int:
        """Return how many rules have fired."""
        with self._mutex:
            return sum(rule.fired for rule in self._rules)

    def _decide(self, request: list[bytes]) -> str:
        """Count ``request`` and return what to do with it: ``forward``, ``reply`` or ``request``.

        The functions of the :meth:`before` rules that fire run first,
        outside the mutex, so that they may take their time.
        """
        callbacks = []
        with self._mutex:
            action = "forward"
            for rule in self._rules:
                if rule.fired or not rule.matcher(request):
                    continue
                rule.seen += 1
                if rule.seen != rule.nth:
                    continue
                if rule.callback is not None:
                    rule.fired = True
                    callbacks.append(rule.callback)
                elif action == "forward":
                    rule.fired = True
                    action = rule.action
            if action != "request":
                self._count(request)

        for callback in callbacks:
            try:
                callback()
            except Exception as error:  # kept in callback_errors for the test to check
                self.callback_errors.append(error)
        return action

    def _count(self, request: list[bytes]) -> None:
        verb = request[0].upper()
        self.requests[verb] += 1
        if verb == b"EVALSHA":
            self.scripts[request[1].decode("ascii", "replace").lower()] += 1
        elif verb == b"EVAL":
            self.scripts[hashlib.sha1(request[1]).hexdigest()] += 1
        elif verb == b"SCRIPT" and request[1].upper() == b"LOAD":
            self.loaded[hashlib.sha1(request[2]).hexdigest()] += 1

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                pair = _Pair(self, client)
            except OSError:
                _close(client)
                continue
            with self._mutex:
                self._pairs.append(pair)
