"""A TCP proxy on 127.0.0.1 that counts round trips between a Redis client and server.

A round trip is one burst of commands from the client followed by the
server's replies to them. The proxy forwards commands at once, but holds
the replies back until every command received so far is answered, then
waits up to ``GRACE`` seconds for more commands of the same burst. So a
pipeline whose bytes reach the proxy in several reads still counts as
one round trip, and a client that waits for each reply counts one per
command: the client cannot send its next command before the proxy has
delivered the reply it waits for.

It is slow on purpose; the benchmark counts in a pass that it does not
time.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass

from .resp import RespCounter

__all__ = ["CountingProxy", "Counts"]

GRACE = 0.002
"""Seconds to wait for more commands before delivering the replies of a burst.

NOTE: a client that pauses longer than this between two writes of one
pipeline, and after a write that ends on a command boundary, is counted
twice for that pipeline.
"""
READ_SIZE = 1 << 20
IDLE_TIMEOUT = 60.0
"""Seconds after which a connection without traffic is closed."""
POLL_INTERVAL = 0.1
"""Seconds between checks of whether the proxy is closing."""


@dataclass(frozen=True)
class Counts:
    """Totals over every connection the proxy carried."""

    round_trips: int
    commands: int
    bytes_sent: int
    bytes_received: int


class CountingProxy:
    """Forward connections from a free port of 127.0.0.1 to one server, counting round trips."""

    def __init__(self, server_port: int, server_host: str = "127.0.0.1", *, grace: float = GRACE) -> None:
        self._server = (server_host, server_port)
        self.grace = grace
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_INTERVAL)
        self.port: int = self._listener.getsockname()[1]
        self._mutex = threading.Lock()
        self._round_trips = 0
        self._commands = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    def counts(self) -> Counts:
        """Return the totals so far."""
        with self._mutex:
            return Counts(self._round_trips, self._commands, self._bytes_sent, self._bytes_received)

    def close(self) -> None:
        """Stop accepting, close every connection and wait for the threads."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            server = socket.create_connection(self._server, timeout=10)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._carry, args=(client, server), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _carry(self, client: socket.socket, server: socket.socket) -> None:
        try:
            _Connection(self, client, server).run()
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def _add(self, round_trips: int = 0, commands: int = 0, sent: int = 0, received: int = 0) -> None:
        with self._mutex:
            self._round_trips += round_trips
            self._commands += commands
            self._bytes_sent += sent
            self._bytes_received += received


class _Connection:
    """One client connection and its server connection, carried by one thread."""

    def __init__(self, proxy: CountingProxy, client: socket.socket, server: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._server = server
        self._commands = RespCounter()
        self._replies = RespCounter()
        self._outstanding = 0
        self._held = bytearray()
        # True once replies were delivered, so the next command starts a new round trip.
        self._replied = True

    def run(self) -> None:
        idle_since = time.monotonic()
        while not self._proxy._stopping.is_set():
            readable, _, _ = select.select([self._client, self._server], [], [], POLL_INTERVAL)
            if not readable:
                if time.monotonic() - idle_since > IDLE_TIMEOUT:
                    return
                continue
            idle_since = time.monotonic()
            if self._client in readable and not self._from_client():
                return
            if self._server in readable and not self._from_server():
                return

    def _from_client(self) -> bool:
        data = self._client.recv(READ_SIZE)
        if not data:
            return False
        if self._replied:
            self._proxy._add(round_trips=1)
            self._replied = False
        commands = self._commands.feed(data)
        self._outstanding += commands
        self._proxy._add(commands=commands, sent=len(data))
        self._server.sendall(data)
        return True

    def _from_server(self) -> bool:
        data = self._server.recv(READ_SIZE)
        if not data:
            return False
        self._held += data
        self._outstanding -= self._replies.feed(data)
        self._proxy._add(received=len(data))
        while self._burst_answered():
            # More commands of the same burst may still be on their way.
            more, _, _ = select.select([self._client], [], [], self._proxy.grace)
            if not more:
                self._client.sendall(self._held)
                self._held.clear()
                self._replied = True
                return True
            if not self._from_client():
                return False
        return True

    def _burst_answered(self) -> bool:
        return self._outstanding <= 0 and not self._commands.partial and not self._replies.partial
