"""Every session call of the Redis engine is one round trip to Redis.

:class:`RoundTripProxy` sits on 127.0.0.1 between an engine and the test's
own redis-server and counts round trips: a burst of bytes from the
client, however many TCP segments it takes, followed by the server's
reply. A pipeline is one round trip, and two commands that each wait for
their reply are two. Counting starts after the engine's first connect,
which checks the server and loads the scripts on connections of its own.

The proxy forwards a burst once the client has sent nothing for
:data:`QUIET_SECONDS`. Otherwise Redis would reply to the first commands
of a large pipeline before the proxy had forwarded the rest, and the rest
would look like a second round trip.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest
import redis
from conftest import OFFSET

from slimta.storage import Session
from slimta.storage import redis as redis_engine
from slimta.storage.redis import RedisEngine
from slimta.storage.testing import RedisServer

LISTEN_HOST = "127.0.0.1"
RECEIVE_SIZE = 65536
JOIN_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
# A client that pipelines writes its whole burst at once, so on loopback
# a pause this long means it is waiting for the reply.
QUIET_SECONDS = 0.05

OWNER = "7c1e9a52-0d3b-4f6e-9a81-2b4c6d8e0f13"
LOCK_LENGTH = 30.0


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class RoundTripProxy:
    """A loopback proxy to one redis-server that counts round trips.

    Each direction records its bytes before it forwards them, so a reply
    is always recorded after its request.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = LISTEN_HOST
        self.port = 0
        self._round_trips = 0
        self._last_sender = "server"
        self._mutex = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RoundTripProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LISTEN_HOST, 0))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._start(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._listener is not None
        _close(self._listener)
        with self._mutex:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT)

    @property
    def round_trips(self) -> int:
        """The number of round trips so far, on every connection together."""
        with self._mutex:
            return self._round_trips

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=SOCKET_TIMEOUT)
            server.settimeout(None)
            with self._mutex:
                self._sockets += [client, server]
            self._start(self._pump, client, server, "client")
            self._start(self._pump, server, client, "server")

    def _pump(self, source: socket.socket, target: socket.socket, sender: str) -> None:
        try:
            while data := self._receive_burst(source, sender):
                self._record(sender)
                target.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(target)

    @staticmethod
    def _receive_burst(source: socket.socket, sender: str) -> bytes:
        """Receive the next data, and for the client, whatever follows until it pauses."""
        data = source.recv(RECEIVE_SIZE)
        if sender != "client" or not data:
            return data
        burst = bytearray(data)
        source.settimeout(QUIET_SECONDS)
        try:
            while more := source.recv(RECEIVE_SIZE):
                burst += more
        except TimeoutError:
            pass
        finally:
            source.settimeout(None)
        return bytes(burst)

    def _record(self, sender: str) -> None:
        with self._mutex:
            if sender == "client" and self._last_sender == "server":
                self._round_trips += 1
            self._last_sender = sender


@pytest.fixture
def proxy(clean_redis: RedisServer) -> Iterator[RoundTripProxy]:
    with RoundTripProxy(clean_redis.host, clean_redis.port) as opened:
        yield opened


@pytest.fixture
def proxied(proxy: RoundTripProxy) -> Iterator[RedisEngine]:
    engine = redis_engine.new(proxy.host, proxy.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
    yield engine
    engine.close()


def count_round_trips(proxy: RoundTripProxy, call: Callable[[], object]) -> int:
    """Return how many round trips ``call`` makes."""
    before = proxy.round_trips
    call()
    return proxy.round_trips - before


# The proxy itself


def test_proxy_counts_waits_not_commands(proxy: RoundTripProxy) -> None:
    # The count must be able to fail: two commands that each wait for
    # their reply are two round trips, a pipeline of three is one.
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=SOCKET_TIMEOUT)
    client.ping()

    twice = count_round_trips(proxy, lambda: (client.ping(), client.ping()))
    pipelined = count_round_trips(
        proxy, lambda: client.pipeline(transaction=False).ping().ping().ping().execute()
    )
    client.close()

    assert twice == 2
    assert pipelined == 1


# Every session method


@dataclass
class Queue:
    """A small queue on the proxied engine, with ids in each state."""

    session: Session
    plain: str
    locked: str
    deferred: str
    others: list[str]


@pytest.fixture
def queue(proxied: RedisEngine) -> Iterator[Queue]:
    with proxied.connect() as session:
        plain = session.store_message({"sender": "a@example.com", "attempts": "2"}, b"plain body")
        locked = session.store_message({"sender": "b@example.com"}, b"locked body", 20.0)
        assert session.lock_message(locked, LOCK_LENGTH, OWNER)
        deferred = session.store_message({}, b"deferred body", 10.0)
        others = [session.store_message({"index": str(index)}, b"x", float(index)) for index in range(5)]
        yield Queue(session, plain, locked, deferred, others)


def calls_of(queue: Queue) -> list[tuple[str, Callable[[], object]]]:
    """Return every session method with valid arguments, in an order where each finds its message."""
    session, plain, locked, deferred, others = (
        queue.session,
        queue.plain,
        queue.locked,
        queue.deferred,
        queue.others,
    )
    new_messages = [{"meta": {"n": str(index)}, "contents": b"bulk", "retry": 5.0} for index in range(3)]
    cursor = session.get_deferred_messages_page(None, None, 2).cursor
    assert cursor is not None
    return [
        ("get_all_messages", session.get_all_messages),
        ("get_deferred_messages", session.get_deferred_messages),
        ("get_deferred_messages(timestamp)", lambda: session.get_deferred_messages(10.0)),
        ("get_active_messages", session.get_active_messages),
        ("get_all_messages_page", lambda: session.get_all_messages_page(None, 3)),
        (
            "get_deferred_messages_page",
            lambda: session.get_deferred_messages_page(None, cursor, 2),
        ),
        ("get_active_messages_page", session.get_active_messages_page),
        ("claim_message_id", session.claim_message_id),
        ("store_message", lambda: session.store_message({"a": "1"}, b"new", 3.0)),
        ("store_messages", lambda: session.store_messages(new_messages)),
        ("set_message_meta", lambda: session.set_message_meta(plain, {"sender": "c@example.com"})),
        ("set_message_meta_key", lambda: session.set_message_meta_key(plain, "attempts", "3")),
        ("set_message_contents", lambda: session.set_message_contents(plain, b"new body")),
        ("get_message_meta", lambda: session.get_message_meta(plain)),
        ("get_message_meta_key", lambda: session.get_message_meta_key(plain, "sender")),
        ("get_message_contents", lambda: session.get_message_contents(plain)),
        ("get_message", lambda: session.get_message(plain)),
        ("get_messages", lambda: session.get_messages([plain, locked, "not-stored"])),
        ("describe_message", lambda: session.describe_message(locked)),
        ("set_message_retry", lambda: session.set_message_retry(plain, 40.0)),
        ("lock_message", lambda: session.lock_message(plain, LOCK_LENGTH)),
        ("unlock_message", lambda: session.unlock_message(plain)),
        ("refresh_lock", lambda: session.refresh_lock(locked, LOCK_LENGTH, OWNER)),
        ("defer_message", lambda: session.defer_message(locked, 50.0, OWNER)),
        ("checkout_message", lambda: session.checkout_message(deferred, LOCK_LENGTH, OWNER)),
        ("finish_message", lambda: session.finish_message(deferred, OWNER)),
        ("delete_message", lambda: session.delete_message(others[0])),
    ]


def test_every_call_one_round_trip(proxy: RoundTripProxy, queue: Queue) -> None:
    counts = {name: count_round_trips(proxy, call) for name, call in calls_of(queue)}

    assert counts == dict.fromkeys(counts, 1)


def test_calls_cover_every_method(queue: Queue) -> None:
    # Every public method of Session is in calls_of, but close, which the
    # next test counts, and the Python iterators, which read pages.
    public = {name for name in dir(Session) if not name.startswith("_")}
    covered = {name.partition("(")[0] for name, _ in calls_of(queue)}

    assert public - covered == {
        "close",
        "closed",
        "iter_all_messages",
        "iter_deferred_messages",
        "iter_active_messages",
    }


def test_close_no_round_trip(proxy: RoundTripProxy, proxied: RedisEngine) -> None:
    # close gives the connection back to the pool without a command.
    session = proxied.connect()
    session.get_all_messages()

    assert count_round_trips(proxy, session.close) == 0


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("get_message_meta", lambda session: session.get_message_meta("not-stored")),
        ("checkout_message", lambda session: session.checkout_message("not-stored", LOCK_LENGTH)),
        ("finish_message", lambda session: session.finish_message("not-stored", OWNER)),
        ("defer_message", lambda session: session.defer_message("not-stored", 1.0)),
    ],
)
def test_not_found_one_round_trip(
    proxy: RoundTripProxy, proxied: RedisEngine, name: str, call: Callable[[Session], object]
) -> None:
    with proxied.connect() as session:
        session.get_all_messages()

        def expect_not_found() -> None:
            with pytest.raises(LookupError):
                call(session)

        assert count_round_trips(proxy, expect_not_found) == 1, name


def test_bulk_calls_of_1000_one_round_trip(proxy: RoundTripProxy, proxied: RedisEngine) -> None:
    messages = [{"meta": {"i": str(index)}, "contents": b"x" * 64} for index in range(1000)]
    with proxied.connect() as session:
        session.get_all_messages()
        message_ids: list[str] = []

        stores = count_round_trips(proxy, lambda: message_ids.extend(session.store_messages(messages)))
        reads = count_round_trips(proxy, lambda: session.get_messages(message_ids))

    assert len(message_ids) == 1000
    assert stores == 1
    assert reads == 1


def test_lost_scripts_cost_one_more(
    proxy: RoundTripProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    # After SCRIPT FLUSH a call sends its script once more, then the
    # server has it again.
    with proxied.connect() as session:
        message_id = session.store_message({}, b"x")
        clean_redis.client().script_flush()

        first = count_round_trips(proxy, lambda: session.get_messages([message_id]))
        second = count_round_trips(proxy, lambda: session.get_messages([message_id]))

    assert (first, second) == (2, 1)


# Life cycles


def test_life_cycle_nine_round_trips(proxy: RoundTripProxy, proxied: RedisEngine) -> None:
    # The nine calls of one message's life with the methods of version 1.0.
    with proxied.connect() as session:
        session.get_all_messages()

        def life_cycle() -> None:
            message_id = session.claim_message_id()
            session.set_message_meta(message_id, {"sender": "a@example.com", "recipients": "\0b@example.net"})
            session.set_message_contents(message_id, b"Subject: hi\r\n\r\nbody\r\n")
            session.set_message_retry(message_id, 0.0)
            assert session.lock_message(message_id, LOCK_LENGTH, OWNER)
            session.get_message_meta(message_id)
            session.get_message_contents(message_id)
            session.unlock_message(message_id, OWNER)
            session.delete_message(message_id)

        assert count_round_trips(proxy, life_cycle) == 9
        assert session.get_all_messages() == []


def test_short_life_cycle_three_round_trips(proxy: RoundTripProxy, proxied: RedisEngine) -> None:
    with proxied.connect() as session:
        session.get_all_messages()

        def life_cycle() -> None:
            message_id = session.store_message(
                {"sender": "a@example.com"}, b"Subject: hi\r\n\r\nbody\r\n", 0.0
            )
            assert session.checkout_message(message_id, LOCK_LENGTH, OWNER) is not None
            assert session.finish_message(message_id, OWNER) is True

        assert count_round_trips(proxy, life_cycle) == 3
        assert session.get_all_messages() == []
