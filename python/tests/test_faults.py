"""The Redis engine under faults: a killed server, lost replies, racing relayers, stale holders.

Every test runs against a redis-server that the test run started on
127.0.0.1, and is bounded in time. Connection faults come from
:mod:`faultproxy`, a proxy between the engine and the server that can let
a request run and then drop its reply, or drop the request itself.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from conftest import OFFSET, EngineKit
from faultproxy import FaultProxy, command, script

from slimta.storage import (
    InvalidArgument,
    Message,
    MessageNotFound,
    MessageTooLarge,
    Page,
    Session,
    StorageUnavailable,
)
from slimta.storage import redis as redis_engine
from slimta.storage.redis import RedisEngine
from slimta.storage.redis import _bulk as redis_bulk
from slimta.storage.redis._bulk import CHECK_PAUSES
from slimta.storage.redis._scripts import SCRIPTS
from slimta.storage.testing import RedisServer

OWNER = "5f0c6d2e-3b1a-4c55-9e47-2a8d1b6f0e93"
OTHER_OWNER = "9a3e7b10-64cd-4f2a-8b05-c1d2e3f4a5b6"
LOCK_LENGTH = 30.0
# Timeouts of the engines in these tests, in seconds: short, so a test
# that hangs on a dead connection fails quickly instead.
SOCKET_TIMEOUT = 5.0


def raw_client(server: RedisServer, index: int) -> redis.Redis:
    """Return a plain client on database ``OFFSET + index`` of ``server``."""
    return server.client(OFFSET + index)


def key_counts(server: RedisServer) -> list[int]:
    """Return DBSIZE of each of the four databases of the queue."""
    return [int(raw_client(server, index).dbsize()) for index in range(4)]


def stored_ids(server: RedisServer) -> set[str]:
    return {member.decode() for member in raw_client(server, 0).smembers("message_ids")}


def snapshot(server: RedisServer, message_id: str) -> dict[str, Any]:
    """Read everything the layout stores for one message, straight from the databases."""
    ids, meta, contents, locks = (raw_client(server, index) for index in range(4))
    lock_ms = int(locks.pttl(message_id))
    return {
        "listed": bool(ids.sismember("message_ids", message_id)),
        "retry": ids.zscore("retry_queue", message_id),
        "meta": {key.decode(): value.decode() for key, value in meta.hgetall(message_id).items()},
        "contents": contents.get(message_id),
        "lock": None if lock_ms == -2 else locks.get(message_id).decode(),
        # Locks in these tests last 30 or 60 s, and this field distinguishes the two.
        "long_lock": lock_ms > 45_000,
    }


def command_calls(server: RedisServer, name: str) -> int:
    """Return how many times the server ran a command since the last CONFIG RESETSTAT."""
    stats = server.client().info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


@pytest.fixture
def proxy(clean_redis: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(clean_redis.host, clean_redis.port) as opened:
        yield opened


@pytest.fixture
def proxied(proxy: FaultProxy) -> Iterator[RedisEngine]:
    """An engine that reaches the test server through the fault proxy."""
    engine = redis_engine.new(proxy.host, proxy.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
    yield engine
    engine.close()


# SIGKILL while messages are being stored


@dataclass
class Sample:
    meta: dict[str, str]
    contents: bytes
    retry: float


def sample(index: int) -> Sample:
    """Return the meta, contents and retry time of message ``index``, the same on every call."""
    rng = random.Random(index)
    contents = b"Subject: message %d\r\n\r\n" % index + rng.randbytes(rng.randint(1, 64 * 1024))
    meta = {
        "sender": f"sender{index}@example.com",
        "recipients": "\0a@example.com\0b@example.net",
        "index": str(index),
    }
    return Sample(meta, contents, 1_700_000_000.0 + index)


def store_whole(session: Session, message: Sample) -> str:
    return session.store_message(message.meta, message.contents, message.retry)


def claim_then_write(session: Session, message: Sample) -> str:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, message.meta)
    session.set_message_contents(message_id, message.contents)
    session.set_message_retry(message_id, message.retry)
    return message_id


STORE_PATHS: dict[str, Callable[[Session, Sample], str]] = {
    "store_message": store_whole,
    "claim_then_write": claim_then_write,
}
# The writer stores at most this many messages. The kill comes after KILL_AFTER of them.
MAX_MESSAGES = 2000
KILL_AFTER = 40
KILL_TIMEOUT = 30.0


def write_until_failure(engine: RedisEngine, path: str, reported: dict[str, int]) -> None:
    """Store messages until a call fails, recording each id once its last call returned."""
    store = STORE_PATHS[path]
    with engine.connect() as session:
        for index in range(MAX_MESSAGES):
            try:
                message_id = store(session, sample(index))
            except StorageUnavailable:
                return
            reported[message_id] = index


@pytest.mark.parametrize("path", sorted(STORE_PATHS))
def test_kill_keeps_acknowledged_messages(path: str) -> None:
    """Every message whose store returned survives SIGKILL of a server with AOF appendfsync always.

    With store_message nothing is half stored: every id in message_ids has
    its meta, contents and retry time. The 1.0 path (claim, then three
    writes) may leave one incomplete id: the message in flight at the kill.
    """
    config = {"appendonly": "yes", "appendfsync": "always"}
    with RedisServer(config=config) as server:
        engine = redis_engine.new(server.host, server.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
        reported: dict[str, int] = {}
        writer = threading.Thread(target=write_until_failure, args=(engine, path, reported), daemon=True)
        writer.start()
        deadline = time.monotonic() + KILL_TIMEOUT
        while len(reported) < KILL_AFTER and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        # A random pause, so the kill lands at a different step on each run.
        time.sleep(random.uniform(0, 0.01))
        server.kill()
        writer.join(KILL_TIMEOUT)
        engine.close()
        assert not writer.is_alive()
        assert len(reported) >= KILL_AFTER

        server.restart()
        listed = stored_ids(server)
        unreported = listed - set(reported)
        reader = redis_engine.new(server.host, server.port, OFFSET)
        retry_times = dict(raw_client(server, 0).zrange("retry_queue", 0, -1, withscores=True))
        with reader.connect() as session:
            for message_id, index in reported.items():
                expected = sample(index)
                assert session.get_message_meta(message_id) == expected.meta, message_id
                assert session.get_message_contents(message_id) == expected.contents, message_id
                assert retry_times[message_id.encode()] == expected.retry, message_id
            incomplete = [
                message_id
                for message_id in listed
                if session.get_message_contents(message_id) is None
                or not session.get_message_meta(message_id)
                or message_id.encode() not in retry_times
            ]
        reader.close()

    assert set(reported) <= listed
    assert len(unreported) <= 1
    if path == "store_message":
        assert incomplete == []
    else:
        assert set(incomplete) <= unreported


# Lost replies and dropped requests, through the fault proxy


@dataclass(frozen=True)
class Write:
    """A write whose reply or request the proxy drops, and the snapshot fields it changes."""

    label: str
    operation: str
    script: str
    call: Callable[[Session, str], object]
    changes: dict[str, Any]
    locked_before: bool = False


OLD_META = {"old": "1", "keep": "2"}
OLD_CONTENTS = b"old body\r\n"
OLD_RETRY = 100.0
OLD_MESSAGE = Message(OLD_META, OLD_CONTENTS)

WRITES = [
    Write(
        "set_meta",
        "set_message_meta",
        "set_meta",
        lambda s, m: s.set_message_meta(m, {"new": "3"}),
        {"meta": {"new": "3"}},
    ),
    Write(
        "set_meta_key",
        "set_message_meta_key",
        "set_meta_key",
        lambda s, m: s.set_message_meta_key(m, "added", "4"),
        {"meta": {**OLD_META, "added": "4"}},
    ),
    Write(
        "remove_meta_key",
        "set_message_meta_key",
        "set_meta_key",
        lambda s, m: s.set_message_meta_key(m, "old", None),
        {"meta": {"keep": "2"}},
    ),
    Write(
        "set_contents",
        "set_message_contents",
        "set_contents",
        lambda s, m: s.set_message_contents(m, b"new body"),
        {"contents": b"new body"},
    ),
    Write(
        "set_retry",
        "set_message_retry",
        "set_retry",
        lambda s, m: s.set_message_retry(m, 200.0),
        {"retry": 200.0},
    ),
    Write(
        "lock_owner",
        "lock_message",
        "lock",
        lambda s, m: s.lock_message(m, 60, OWNER),
        {"lock": OWNER, "long_lock": True},
    ),
    Write(
        "refresh_lock",
        "refresh_lock",
        "refresh_lock",
        lambda s, m: s.refresh_lock(m, 60, OWNER),
        {"long_lock": True},
        locked_before=True,
    ),
    Write(
        "unlock_owner",
        "unlock_message",
        "unlock",
        lambda s, m: s.unlock_message(m, OWNER),
        {"lock": None},
        locked_before=True,
    ),
    Write(
        "unlock_any",
        "unlock_message",
        "unlock",
        lambda s, m: s.unlock_message(m),
        {"lock": None},
        locked_before=True,
    ),
    Write(
        "delete",
        "delete_message",
        "delete",
        lambda s, m: s.delete_message(m),
        {"listed": False, "retry": None, "meta": {}, "contents": None, "lock": None},
        locked_before=True,
    ),
    Write(
        "checkout_owner",
        "checkout_message",
        "checkout",
        lambda s, m: s.checkout_message(m, 60, OWNER),
        {"lock": OWNER, "long_lock": True},
    ),
    Write(
        "finish_owner",
        "finish_message",
        "finish",
        lambda s, m: s.finish_message(m, OWNER),
        {"listed": False, "retry": None, "meta": {}, "contents": None, "lock": None},
        locked_before=True,
    ),
    Write(
        "defer_owner",
        "defer_message",
        "defer",
        lambda s, m: s.defer_message(m, 300.0, OWNER),
        {"retry": 300.0, "meta": {**OLD_META, "attempts": "1"}, "lock": None},
        locked_before=True,
    ),
]
WRITE_IDS = [write.label for write in WRITES]


def stored_message(session: Session, locked: bool) -> str:
    """Store the message the writes act on, with meta, contents, a retry time and maybe a lock."""
    message_id = session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)
    if locked:
        assert session.lock_message(message_id, LOCK_LENGTH, OWNER)
    return message_id


def assert_names_proxy(error: StorageUnavailable, proxy: FaultProxy, operation: str) -> None:
    assert error.host == proxy.host
    assert error.port == proxy.port
    assert error.operation == operation
    assert f"{proxy.host}:{proxy.port}" in str(error)
    assert operation in str(error)


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_lost_reply_write_applied_once(
    write: Write, proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        message_id = stored_message(session, write.locked_before)
        before = snapshot(clean_redis, message_id)
        clean_redis.client().config_resetstat()
        proxy.drop_reply(script(write.script))

        with pytest.raises(StorageUnavailable) as raised:
            write.call(session, message_id)
        after = snapshot(clean_redis, message_id)

    assert proxy.fired() == 1
    assert_names_proxy(raised.value, proxy, write.operation)
    # The server ran the script once, the whole write, and the engine did not send it again.
    assert after == {**before, **write.changes}
    assert command_calls(clean_redis, "evalsha") + command_calls(clean_redis, "eval") == 1


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_dropped_request_write_not_applied(
    write: Write, proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        message_id = stored_message(session, write.locked_before)
        before = snapshot(clean_redis, message_id)
        clean_redis.client().config_resetstat()
        proxy.drop_request(script(write.script))

        with pytest.raises(StorageUnavailable) as raised:
            write.call(session, message_id)
        after = snapshot(clean_redis, message_id)
        # The session reconnects: the same write works on the next call.
        write.call(session, message_id)
        repeated = snapshot(clean_redis, message_id)

    assert_names_proxy(raised.value, proxy, write.operation)
    assert after == before
    assert command_calls(clean_redis, "evalsha") == 1
    assert repeated == {**before, **write.changes}


def test_lost_lock_reply_owner_can_check(proxy: FaultProxy, proxied: RedisEngine) -> None:
    # A relayer whose lock reply was lost finds out with refresh_lock
    # whether the lock is its own, without taking it twice.
    with proxied.connect() as session:
        message_id = stored_message(session, locked=False)
        proxy.drop_reply(script("lock"))

        with pytest.raises(StorageUnavailable):
            session.lock_message(message_id, LOCK_LENGTH, OWNER)

        assert session.refresh_lock(message_id, LOCK_LENGTH, OWNER) is True
        assert session.refresh_lock(message_id, LOCK_LENGTH, OTHER_OWNER) is False
        assert session.lock_message(message_id, LOCK_LENGTH, OTHER_OWNER) is False


@pytest.mark.parametrize("drop", ["reply", "request"])
def test_lost_claim_registers_one_id(
    drop: str, proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        getattr(proxy, f"drop_{drop}")(command("SADD"))
        message_id = session.claim_message_id()

    # The SADD is never sent twice. After a lost reply the check finds the
    # id registered. After a dropped request it does not, so the engine
    # claims another id, and that SADD is the one the server ran.
    assert proxy.fired() == 1
    assert proxy.requests[b"SADD"] == 1
    assert proxy.requests[b"SMISMEMBER"] == 1
    assert stored_ids(clean_redis) == {message_id}


def test_lost_store_reply_returns_id(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        proxy.drop_reply(script("store"))
        message_id = session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)
        meta = session.get_message_meta(message_id)
        contents = session.get_message_contents(message_id)

    assert proxy.fired() == 1
    assert proxy.scripts[SCRIPTS["store"].sha] == 1
    assert proxy.requests[b"SMISMEMBER"] == 1
    assert stored_ids(clean_redis) == {message_id}
    assert key_counts(clean_redis) == [2, 1, 1, 0]
    assert meta == OLD_META
    assert contents == OLD_CONTENTS


def assert_not_stored_error(error: StorageUnavailable, proxy: FaultProxy, operation: str) -> None:
    assert_names_proxy(error, proxy, operation)
    assert "not stored" in str(error)
    assert "delivered and deleted" in str(error)
    assert "not stored again" in str(error)


def test_dropped_store_not_sent_again(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        proxy.drop_request(script("store"))

        with pytest.raises(StorageUnavailable) as raised:
            session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)

    assert proxy.fired() == 1
    assert_not_stored_error(raised.value, proxy, "store_message")
    assert raised.value.message_ids is None
    assert proxy.scripts[SCRIPTS["store"].sha] == 0
    assert key_counts(clean_redis) == [0, 0, 0, 0]


def delete_all_by_other_session(server: RedisServer) -> Callable[[], None]:
    """Return a function that deletes every stored message, as another relayer that delivered them."""

    def delete_all() -> None:
        engine = redis_engine.new(server.host, server.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
        with engine.connect() as other:
            for message_id in other.get_all_messages():
                assert other.finish_message(message_id) is True
        engine.close()

    return delete_all


def test_lost_store_deleted_before_check(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    # The store ran and its reply was lost. Before the engine checks, another
    # relayer delivers and deletes the message. Storing it again would
    # bring it back and deliver it twice.
    with proxied.connect() as session:
        proxy.drop_reply(script("store"))
        proxy.before(command("SMISMEMBER"), delete_all_by_other_session(clean_redis))

        with pytest.raises(StorageUnavailable) as raised:
            session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)

    assert proxy.fired() == 2
    assert proxy.callback_errors == []
    assert_not_stored_error(raised.value, proxy, "store_message")
    assert proxy.scripts[SCRIPTS["store"].sha] == 1
    assert key_counts(clean_redis) == [0, 0, 0, 0]


def test_store_check_fails_too(proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer) -> None:
    # The store's reply is lost, and so are the replies of every try of the
    # check: the caller gets the error with the id whose state is unknown,
    # the store is never sent again, and the stored message is complete.
    with proxied.connect() as session:
        proxy.drop_reply(script("store"))
        for nth in range(1, len(CHECK_PAUSES) + 1):
            proxy.drop_reply(command("SMISMEMBER"), nth=nth)

        with pytest.raises(StorageUnavailable) as raised:
            session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)

    (message_id,) = stored_ids(clean_redis)
    assert proxy.fired() == 1 + len(CHECK_PAUSES)
    assert_names_proxy(raised.value, proxy, "store_message")
    assert "may or may not be stored" in str(raised.value)
    assert ".." not in str(raised.value)
    assert raised.value.unknown_ids == [message_id]
    assert raised.value.message_ids is None
    assert proxy.scripts[SCRIPTS["store"].sha] == 1
    assert snapshot(clean_redis, message_id)["meta"] == OLD_META
    assert snapshot(clean_redis, message_id)["contents"] == OLD_CONTENTS
    assert key_counts(clean_redis) == [2, 1, 1, 0]


def test_store_check_succeeds_late(proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer) -> None:
    # As while a server restarts: the first tries of the check fail, and
    # the last one finds the stored message, so the call succeeds.
    with proxied.connect() as session:
        proxy.drop_reply(script("store"))
        for nth in range(1, len(CHECK_PAUSES)):
            proxy.drop_reply(command("SMISMEMBER"), nth=nth)

        message_id = session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)

    assert stored_ids(clean_redis) == {message_id}
    assert proxy.scripts[SCRIPTS["store"].sha] == 1
    assert proxy.requests[b"SMISMEMBER"] == len(CHECK_PAUSES)


# store_messages: one pipeline of store.lua calls

BULK = [
    {"meta": {**OLD_META, "index": str(index)}, "contents": OLD_CONTENTS, "retry": OLD_RETRY}
    for index in range(3)
]


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_lost_bulk_reply_returns_ids(
    nth: int, proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    # The server ran the whole pipeline; the check finds every id stored.
    with proxied.connect() as session:
        proxy.drop_reply(script("store"), nth=nth)
        message_ids = session.store_messages(BULK)
        messages = session.get_messages(message_ids)

    assert proxy.fired() == 1
    assert proxy.scripts[SCRIPTS["store"].sha] == 3
    assert proxy.requests[b"SMISMEMBER"] == 1
    assert stored_ids(clean_redis) == set(message_ids)
    assert key_counts(clean_redis) == [2, 3, 3, 0]
    assert [messages[message_id].meta["index"] for message_id in message_ids] == ["0", "1", "2"]


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_dropped_bulk_store_reports_stored(
    nth: int, proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    # The server ran the stores before the nth only. The error names the
    # stored ids, and the others are not sent again.
    with proxied.connect() as session:
        proxy.drop_request(script("store"), nth=nth)

        with pytest.raises(StorageUnavailable) as raised:
            session.store_messages(BULK)
        message_ids = raised.value.message_ids
        assert message_ids is not None
        confirmed = [message_id for message_id in message_ids if message_id is not None]
        messages = session.get_messages(confirmed) if confirmed else {}

    stored_before = nth - 1
    assert proxy.fired() == 1
    assert_not_stored_error(raised.value, proxy, "store_messages")
    assert len(message_ids) == 3
    assert message_ids[stored_before:] == [None] * (3 - stored_before)
    assert len(confirmed) == stored_before
    assert stored_ids(clean_redis) == set(confirmed)
    assert [messages[message_id].meta["index"] for message_id in confirmed] == [
        str(index) for index in range(stored_before)
    ]
    assert key_counts(clean_redis) == [
        2 if stored_before else 0,
        stored_before,
        stored_before,
        0,
    ]


def delete_one_by_other_session(server: RedisServer, index: str) -> Callable[[], None]:
    """Return a function that deletes the stored message whose meta ``index`` is ``index``."""

    def delete_one() -> None:
        engine = redis_engine.new(server.host, server.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
        with engine.connect() as other:
            found = other.get_messages(other.get_all_messages())
            (message_id,) = [key for key, message in found.items() if message.meta["index"] == index]
            assert other.finish_message(message_id) is True
        engine.close()

    return delete_one


def test_lost_bulk_deleted_before_check(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        proxy.drop_reply(script("store"), nth=3)
        proxy.before(command("SMISMEMBER"), delete_one_by_other_session(clean_redis, "1"))

        with pytest.raises(StorageUnavailable) as raised:
            session.store_messages(BULK)
        message_ids = raised.value.message_ids

    assert proxy.callback_errors == []
    assert_not_stored_error(raised.value, proxy, "store_messages")
    assert message_ids is not None
    assert message_ids[1] is None
    assert message_ids[0] is not None
    assert message_ids[2] is not None
    # The deleted message stays deleted: the stores are never sent twice.
    assert proxy.scripts[SCRIPTS["store"].sha] == 3
    assert stored_ids(clean_redis) == {message_ids[0], message_ids[2]}
    assert key_counts(clean_redis) == [2, 2, 2, 0]


def test_bulk_store_check_fails_too(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    with proxied.connect() as session:
        proxy.drop_reply(script("store"), nth=1)
        for nth in range(1, len(CHECK_PAUSES) + 1):
            proxy.drop_reply(command("SMISMEMBER"), nth=nth)

        with pytest.raises(StorageUnavailable) as raised:
            session.store_messages(BULK)

    # The server stored all three, but the engine could confirm none, so
    # it names all three as unknown.
    assert proxy.fired() == 1 + len(CHECK_PAUSES)
    assert_names_proxy(raised.value, proxy, "store_messages")
    assert "may or may not be stored" in str(raised.value)
    assert raised.value.message_ids == [None, None, None]
    assert sorted(raised.value.unknown_ids) == sorted(stored_ids(clean_redis))
    assert proxy.scripts[SCRIPTS["store"].sha] == 3
    assert len(stored_ids(clean_redis)) == 3
    assert key_counts(clean_redis) == [2, 3, 3, 0]


def test_unavailable_message_ids_pickled(
    proxy: FaultProxy, proxied: RedisEngine, clean_redis: RedisServer
) -> None:
    # A bulk error crosses process boundaries, as in a worker pool, with its ids.
    with proxied.connect() as session:
        proxy.drop_request(script("store"), nth=2)
        with pytest.raises(StorageUnavailable) as raised:
            session.store_messages(BULK)

    copied = pickle.loads(pickle.dumps(raised.value))

    assert type(copied) is StorageUnavailable
    assert copied.message_ids == raised.value.message_ids
    assert copied.unknown_ids == raised.value.unknown_ids
    assert copied.message_ids is not None
    assert copied.message_ids[0] in stored_ids(clean_redis)
    assert (copied.host, copied.port, copied.operation) == (proxy.host, proxy.port, "store_messages")
    assert str(copied) == str(raised.value)


def fixed_ids(monkeypatch: pytest.MonkeyPatch, ids: Iterator[str]) -> None:
    """Make the bulk store draw its new ids from ``ids``."""
    monkeypatch.setattr(redis_bulk.uuid, "uuid4", lambda: next(ids))


def test_bulk_store_taken_id_gets_new_one(
    monkeypatch: pytest.MonkeyPatch, clean_redis: RedisServer, proxy: FaultProxy, proxied: RedisEngine
) -> None:
    taken, first, second = (str(uuid.UUID(int=number, version=4)) for number in (1, 2, 3))
    raw_client(clean_redis, 0).sadd("message_ids", taken)
    fixed_ids(monkeypatch, iter([first, taken, second]))

    with proxied.connect() as session:
        message_ids = session.store_messages(BULK[:2])
        messages = session.get_messages(message_ids)

    assert message_ids == [first, second]
    assert proxy.scripts[SCRIPTS["store"].sha] == 3
    assert messages[second].meta["index"] == "1"
    assert stored_ids(clean_redis) == {taken, first, second}
    assert raw_client(clean_redis, 1).exists(taken) == 0


def test_bulk_store_ids_always_taken(
    monkeypatch: pytest.MonkeyPatch, clean_redis: RedisServer, proxied: RedisEngine
) -> None:
    taken = str(uuid.UUID(int=1, version=4))
    raw_client(clean_redis, 0).sadd("message_ids", taken)
    fixed_ids(monkeypatch, itertools.repeat(taken))

    with proxied.connect() as session, pytest.raises(StorageUnavailable) as raised:
        session.store_messages(BULK[:1])

    assert raised.value.operation == "store_messages"
    assert "stored already" in str(raised.value)
    assert key_counts(clean_redis) == [1, 0, 0, 0]


@dataclass(frozen=True)
class Read:
    operation: str
    matcher_name: str
    call: Callable[[Session, str], object]
    expected: Callable[[str], object]
    is_script: bool = True


READS = [
    Read("get_all_messages", "SSCAN", lambda s, m: s.get_all_messages(), lambda m: [m], is_script=False),
    Read("get_deferred_messages", "deferred_page", lambda s, m: s.get_deferred_messages(), lambda m: [m]),
    Read("get_active_messages", "active_page", lambda s, m: s.get_active_messages(), lambda m: [m]),
    Read("get_message_meta", "get_meta", lambda s, m: s.get_message_meta(m), lambda m: OLD_META),
    Read(
        "get_message_meta_key", "get_meta_key", lambda s, m: s.get_message_meta_key(m, "old"), lambda m: "1"
    ),
    Read(
        "get_message_contents", "get_contents", lambda s, m: s.get_message_contents(m), lambda m: OLD_CONTENTS
    ),
    Read(
        "describe_message",
        "describe",
        lambda s, m: s.describe_message(m).size,
        lambda m: len(OLD_CONTENTS),
    ),
    Read(
        "get_message", "get_message", lambda s, m: s.get_message(m), lambda m: Message(OLD_META, OLD_CONTENTS)
    ),
    Read(
        "get_messages",
        "get_message",
        lambda s, m: s.get_messages([m]),
        lambda m: {m: OLD_MESSAGE},
    ),
    Read(
        "get_all_messages_page",
        "SSCAN",
        lambda s, m: s.get_all_messages_page(),
        lambda m: Page([m], None),
        is_script=False,
    ),
    Read(
        "get_deferred_messages_page",
        "deferred_page",
        lambda s, m: s.get_deferred_messages_page(),
        lambda m: Page([m], None),
    ),
    Read(
        "get_active_messages_page",
        "active_page",
        lambda s, m: s.get_active_messages_page(),
        lambda m: Page([m], None),
    ),
]


def read_matcher(read: Read) -> Callable[[list[bytes]], bool]:
    return script(read.matcher_name) if read.is_script else command(read.matcher_name)


def read_requests(proxy: FaultProxy, read: Read) -> int:
    """Return how many requests of this read the proxy forwarded."""
    if read.is_script:
        return proxy.scripts[SCRIPTS[read.matcher_name].sha]
    return proxy.requests[read.matcher_name.encode()]


@pytest.mark.parametrize("read", READS, ids=[read.operation for read in READS])
def test_lost_read_reply_retried(read: Read, proxy: FaultProxy, proxied: RedisEngine) -> None:
    with proxied.connect() as session:
        message_id = stored_message(session, locked=True)
        proxy.drop_reply(read_matcher(read))
        value = read.call(session, message_id)

    assert proxy.fired() == 1
    assert read_requests(proxy, read) == 2
    assert value == read.expected(message_id)


@pytest.mark.parametrize("read", READS, ids=[read.operation for read in READS])
def test_read_retried_only_once(read: Read, proxy: FaultProxy, proxied: RedisEngine) -> None:
    with proxied.connect() as session:
        message_id = stored_message(session, locked=True)
        proxy.drop_reply(read_matcher(read), nth=1)
        proxy.drop_reply(read_matcher(read), nth=2)

        with pytest.raises(StorageUnavailable) as raised:
            read.call(session, message_id)
        sent_before_success = read_requests(proxy, read)
        value = read.call(session, message_id)

    assert proxy.fired() == 2
    assert sent_before_success == 2
    assert_names_proxy(raised.value, proxy, read.operation)
    assert value == read.expected(message_id)


@pytest.mark.parametrize("verb", ["CONFIG", "SELECT"])
def test_lost_connect_reply_then_connects(verb: str, proxy: FaultProxy, proxied: RedisEngine) -> None:
    # CONFIG GET is part of the first connect's checks, and a pooled
    # connection sends SELECT of the offset as it connects.
    proxy.drop_reply(command(verb))

    with pytest.raises(StorageUnavailable) as raised:
        proxied.connect()
    with proxied.connect() as session:
        message_id = session.store_message(OLD_META, OLD_CONTENTS)
        meta = session.get_message_meta(message_id)

    assert proxy.fired() == 1
    assert_names_proxy(raised.value, proxy, "connect")
    assert meta == OLD_META


# CLIENT KILL of the session's connection between two calls

VICTIM_NAME = "slimta-faults-victim"


def kill_victims(server: RedisServer) -> int:
    """Close every connection named VICTIM_NAME from the server side and return how many."""
    admin = server.client()
    victims = [client for client in admin.client_list() if client.get("name") == VICTIM_NAME]
    for client in victims:
        admin.client_kill_filter(_id=client["id"])
    return len(victims)


@pytest.fixture
def victim(clean_redis: RedisServer) -> Iterator[RedisEngine]:
    engine = redis_engine.new(
        clean_redis.host, clean_redis.port, OFFSET, socket_timeout=SOCKET_TIMEOUT, client_name=VICTIM_NAME
    )
    yield engine
    engine.close()


@pytest.mark.parametrize("read", READS, ids=[read.operation for read in READS])
def test_client_kill_read_reconnects(read: Read, victim: RedisEngine, clean_redis: RedisServer) -> None:
    with victim.connect() as session:
        message_id = stored_message(session, locked=True)
        killed = kill_victims(clean_redis)
        value = read.call(session, message_id)

    assert killed == 1
    assert value == read.expected(message_id)


@pytest.mark.parametrize("operation", ["claim_message_id", "store_message"])
def test_client_kill_new_message_once(
    operation: str, victim: RedisEngine, clean_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The session finds its connection closed before it sends anything, so
    # it reconnects, and the first request succeeds without a check.
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    with victim.connect() as session:
        session.get_all_messages()
        killed = kill_victims(clean_redis)
        clean_redis.client().config_resetstat()
        if operation == "claim_message_id":
            message_id = session.claim_message_id()
        else:
            message_id = session.store_message(OLD_META, OLD_CONTENTS)

    faults = [
        record.getMessage()
        for record in caplog.records
        if "got no reply" in record.getMessage() or "once more" in record.getMessage()
    ]
    assert killed == 1
    assert stored_ids(clean_redis) == {message_id}
    assert faults == []


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_client_kill_write_reconnects(
    write: Write, victim: RedisEngine, clean_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server closed the connection between two calls: the write
    # reconnects before it is sent, so it succeeds at once, and once.
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    with victim.connect() as session:
        message_id = stored_message(session, write.locked_before)
        before = snapshot(clean_redis, message_id)
        killed = kill_victims(clean_redis)
        clean_redis.client().config_resetstat()

        write.call(session, message_id)
        after = snapshot(clean_redis, message_id)

    reconnects = [record for record in caplog.records if "closed the connection" in record.getMessage()]
    assert killed == 1
    assert after == {**before, **write.changes}
    assert command_calls(clean_redis, "evalsha") + command_calls(clean_redis, "eval") == 1
    assert len(reconnects) == 1


# Racing relayers with owner locks that expire mid-work

RACE_PROCESSES = 8
RACE_ROUNDS = 500
RACE_IDS = 3
# Lock lengths in whole milliseconds, and the longest "delivery", in
# seconds: longer than most locks, so many expire mid-work.
LOCK_MS_RANGE = (20, 50)
WORK_MAX = 0.06
# The wait after a lock_message that returned False, as a polling relayer does.
RETRY_PAUSE_MAX = 0.003
RACE_START_TIMEOUT = 60.0
RACE_TIMEOUT = 90.0


@dataclass
class Holding:
    """One time a racer held a lock, with server times in microseconds from the TIME command.

    ``t0`` is the time before lock_message and ``t1`` the time after it
    returned True. ``seen`` holds (lock value, time) pairs read atomically
    before and after the work. ``t_pre`` and ``t_post`` are the times
    before and after unlock_message.
    """

    message_id: str
    owner: str
    length_ms: int
    t0: int
    t1: int
    seen: list[tuple[str | None, int]]
    unlocked: bool
    t_pre: int
    t_post: int

    @property
    def alive_until_ms(self) -> int:
        """The last server millisecond at which the lock surely exists, unless its owner removed it.

        Redis set its expiry at a time of at least t0, and a key lives
        while the server's millisecond clock is at most its expiry.
        """
        return self.t0 // 1000 + self.length_ms

    @property
    def expired_after_ms(self) -> int:
        """A server millisecond after which the lock has surely expired: it was set by t1."""
        return self.t1 // 1000 + self.length_ms

    def sure_interval(self) -> tuple[int, int]:
        """Return an interval of server microseconds during which this racer surely held the lock."""
        end = self.alive_until_ms * 1000
        if self.unlocked:
            end = min(end, self.t_pre)
        return self.t1, end


def server_time(client: redis.Redis) -> int:
    seconds, microseconds = client.time()
    return int(seconds) * 1_000_000 + int(microseconds)


def observe_lock(client: redis.Redis, message_id: str) -> tuple[str | None, int]:
    """Read the lock value and the server time in one MULTI/EXEC, GET first.

    The GET's notion of now is no later than the TIME after it, so a value
    read at a time up to the lock's expiry is the value the lock had then.
    """
    pipe = client.pipeline(transaction=True)
    pipe.get(message_id)
    pipe.time()
    value, (seconds, microseconds) = pipe.execute()
    return (None if value is None else value.decode()), int(seconds) * 1_000_000 + int(microseconds)


def race_owner_locks(
    address: tuple[str, int], message_ids: list[str], seed: int, start: Any, results: Any
) -> None:
    """Race for the locks for RACE_ROUNDS rounds and report every holding."""
    host, port = address
    try:
        rng = random.Random(seed)
        engine = redis_engine.new(host, port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
        locks = redis.Redis(host=host, port=port, db=OFFSET + 3, socket_timeout=SOCKET_TIMEOUT)
        holdings: list[Holding] = []
        with engine.connect() as session:
            start.wait()
            for _ in range(RACE_ROUNDS):
                message_id = rng.choice(message_ids)
                owner = str(uuid.uuid4())
                length_ms = rng.randint(*LOCK_MS_RANGE)
                t0 = server_time(locks)
                if not session.lock_message(message_id, length_ms / 1000, owner):
                    time.sleep(rng.uniform(0, RETRY_PAUSE_MAX))
                    continue
                t1 = server_time(locks)
                seen = [observe_lock(locks, message_id)]
                time.sleep(rng.uniform(0, WORK_MAX))
                seen.append(observe_lock(locks, message_id))
                t_pre = server_time(locks)
                unlocked = session.unlock_message(message_id, owner)
                t_post = server_time(locks)
                holdings.append(Holding(message_id, owner, length_ms, t0, t1, seen, unlocked, t_pre, t_post))
        engine.close()
        locks.close()
        results.put((seed, holdings, None))
    except BaseException as error:
        results.put((seed, None, repr(error)))


def run_racers(server: RedisServer, message_ids: list[str]) -> list[Holding]:
    """Run RACE_PROCESSES spawned racers and return their holdings.

    Racers still running at RACE_TIMEOUT are killed.
    """
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(RACE_PROCESSES, timeout=RACE_START_TIMEOUT)
    results = context.Queue()
    racers = [
        context.Process(
            target=race_owner_locks,
            args=((server.host, server.port), message_ids, seed, start, results),
            daemon=True,
        )
        for seed in range(RACE_PROCESSES)
    ]
    reports = []
    deadline = time.monotonic() + RACE_TIMEOUT
    try:
        for racer in racers:
            racer.start()
        while len(reports) < RACE_PROCESSES and time.monotonic() < deadline:
            try:
                reports.append(results.get(timeout=0.5))
            except queue.Empty:
                # A racer that died before it could report leaves nothing to wait for.
                if not any(racer.is_alive() for racer in racers):
                    break
        if len(reports) < RACE_PROCESSES:
            exits = [racer.exitcode for racer in racers]
            raise AssertionError(
                f"only {len(reports)} of {RACE_PROCESSES} racers reported; exit codes {exits}"
            )
    finally:
        for racer in racers:
            racer.join(timeout=max(0.1, deadline - time.monotonic()))
            if racer.is_alive():
                racer.kill()
                racer.join()

    errors = [error for _, _, error in reports if error is not None]
    assert errors == []
    return [holding for _, holdings, _ in reports for holding in holdings]


def lock_violations(holding: Holding) -> list[str]:
    """Return what this holding saw that a correct owner lock never allows."""
    found = []
    for value, at in holding.seen:
        if at // 1000 <= holding.alive_until_ms and value != holding.owner:
            found.append(f"{holding.owner} saw {value!r} at {at} before its lock could expire")
    if holding.unlocked and holding.t_pre // 1000 > holding.expired_after_ms:
        found.append(f"{holding.owner}'s unlock returned True after its own lock had expired")
    if not holding.unlocked and holding.t_post // 1000 <= holding.alive_until_ms:
        found.append(f"{holding.owner}'s unlock returned False while its own lock was unexpired")
    return found


def overlaps(holdings: list[Holding]) -> list[str]:
    """Return the pairs of holdings of one id whose sure intervals overlap."""
    found = []
    for message_id in {holding.message_id for holding in holdings}:
        intervals = sorted(
            (*holding.sure_interval(), holding.owner)
            for holding in holdings
            if holding.message_id == message_id
        )
        intervals = [interval for interval in intervals if interval[0] < interval[1]]
        for (_, end, owner), (next_start, _, next_owner) in itertools.pairwise(intervals):
            if next_start < end:
                found.append(f"{owner} and {next_owner} both held {message_id} at {next_start}")
    return found


def test_owner_locks_race(clean_redis: RedisServer) -> None:
    """Race 8 processes for owner locks on 3 ids, with locks that often expire mid-work.

    Every check uses the server's clock (TIME) and is sound: a correct
    engine never fails it, whatever the scheduling.

    - While a lock surely exists (server millisecond at most t0 + length,
      since Redis set the expiry after t0), a GET read atomically with TIME
      must return the holder's own owner. Another owner's value there is
      two holders at once; no value is a lock removed by someone else.
    - unlock_message(owner) returning True when it started after the lock
      surely expired (after t1 + length) removed a lock that was not the
      caller's: the caller's own lock was gone by then.
    - unlock_message(owner) returning False while the lock surely existed
      left the caller's own lock in place.
    - Per id, the intervals in which each holder surely held the lock,
      from t1 to the sure expiry or the start of a successful unlock,
      never overlap.
    """
    engine = redis_engine.new(clean_redis.host, clean_redis.port, OFFSET)
    with engine.connect() as session:
        message_ids = [session.store_message({}, b"race") for _ in range(RACE_IDS)]
    engine.close()

    started = time.monotonic()
    holdings = run_racers(clean_redis, message_ids)
    seconds = time.monotonic() - started

    violations = [violation for holding in holdings for violation in lock_violations(holding)]
    expired_mid_work = [holding for holding in holdings if not holding.unlocked]
    assert violations == []
    assert overlaps(holdings) == []
    # The race exercised both endings: released by the owner, and expired mid-work.
    assert len(holdings) > RACE_IDS * 20
    assert len(expired_mid_work) > 10
    assert len(holdings) - len(expired_mid_work) > 10
    assert seconds < RACE_TIMEOUT


# A stale holder after another relayer deleted the message


def test_stale_holder_writes_not_found(kit: EngineKit) -> None:
    with kit.connect() as bystander:
        other_id = bystander.store_message({"k": "v"}, b"other", 50.0)
        bystander.lock_message(other_id, LOCK_LENGTH, OTHER_OWNER)
    before = key_counts(kit.server) if kit.server is not None else None
    stale, fresh = kit.connect(), kit.connect()
    message_id = stale.store_message({"sender": "a@example.com"}, b"body", 100.0)
    assert stale.lock_message(message_id, 0.05, OWNER)
    kit.advance(0.1)
    assert fresh.lock_message(message_id, LOCK_LENGTH, OTHER_OWNER)
    fresh.delete_message(message_id)

    stale_writes: list[Callable[[], object]] = [
        lambda: stale.set_message_meta(message_id, {"attempts": "1"}),
        lambda: stale.set_message_meta_key(message_id, "attempts", "1"),
        lambda: stale.set_message_meta_key(message_id, "attempts", None),
        lambda: stale.set_message_contents(message_id, b"ghost"),
        lambda: stale.set_message_retry(message_id, 200.0),
        lambda: stale.lock_message(message_id, LOCK_LENGTH, OWNER),
        lambda: stale.lock_message(message_id, LOCK_LENGTH),
        lambda: stale.refresh_lock(message_id, LOCK_LENGTH, OWNER),
    ]
    for write in stale_writes:
        with pytest.raises(MessageNotFound) as raised:
            write()
        assert raised.value.message_id == message_id
    unlocked = stale.unlock_message(message_id, OWNER)
    stale.delete_message(message_id)
    listed = stale.get_all_messages()
    stale.close()
    fresh.close()

    assert unlocked is False
    assert listed == [other_id]
    if kit.server is not None:
        assert key_counts(kit.server) == before


# SCRIPT FLUSH before every call

# The expected result of a call that returns a new message id.
NEW_ID = object()
# The expected result of a call that returns a list of new message ids.
NEW_IDS = object()


def test_script_flush_before_every_call(clean_redis: RedisServer) -> None:
    engine = redis_engine.new(clean_redis.host, clean_redis.port, OFFSET)
    admin = clean_redis.client()
    session = engine.connect()
    message_id = session.store_message(OLD_META, OLD_CONTENTS, OLD_RETRY)
    assert session.lock_message(message_id, LOCK_LENGTH, OWNER)

    # (method, call, expected result, how many scripts it runs), in an
    # order where each call finds the state the calls before it left.
    now = Message({"a": "1", "b": "2"}, b"new")
    calls: list[tuple[str, Callable[[], object], object, int]] = [
        ("get_all_messages", session.get_all_messages, [message_id], 0),
        ("get_active_messages", session.get_active_messages, [message_id], 1),
        ("get_deferred_messages", lambda: session.get_deferred_messages(OLD_RETRY), [message_id], 1),
        ("get_message_meta", lambda: session.get_message_meta(message_id), OLD_META, 1),
        ("get_message_meta_key", lambda: session.get_message_meta_key(message_id, "old"), "1", 1),
        ("get_message_contents", lambda: session.get_message_contents(message_id), OLD_CONTENTS, 1),
        ("describe_message", lambda: session.describe_message(message_id).size, len(OLD_CONTENTS), 1),
        ("set_message_meta", lambda: session.set_message_meta(message_id, {"a": "1"}), None, 1),
        ("set_message_meta_key", lambda: session.set_message_meta_key(message_id, "b", "2"), None, 1),
        ("set_message_contents", lambda: session.set_message_contents(message_id, b"new"), None, 1),
        ("set_message_retry", lambda: session.set_message_retry(message_id, 5.0), None, 1),
        ("refresh_lock", lambda: session.refresh_lock(message_id, LOCK_LENGTH, OWNER), True, 1),
        ("unlock_message", lambda: session.unlock_message(message_id, OWNER), True, 1),
        ("lock_message", lambda: session.lock_message(message_id, LOCK_LENGTH), True, 1),
        ("unlock_message", lambda: session.unlock_message(message_id), True, 1),
        ("lock_message", lambda: session.lock_message(message_id, LOCK_LENGTH, OWNER), True, 1),
        ("get_message", lambda: session.get_message(message_id), now, 1),
        ("get_messages", lambda: session.get_messages([message_id, "not-stored"]), {message_id: now}, 2),
        ("get_all_messages_page", session.get_all_messages_page, Page([message_id], None), 0),
        ("get_deferred_messages_page", session.get_deferred_messages_page, Page([message_id], None), 1),
        ("get_active_messages_page", session.get_active_messages_page, Page([message_id], None), 1),
        ("defer_message", lambda: session.defer_message(message_id, 6.0, OWNER), 1, 1),
        (
            "checkout_message",
            lambda: session.checkout_message(message_id, LOCK_LENGTH, OWNER),
            Message({**now.meta, "attempts": "1"}, b"new"),
            1,
        ),
        ("claim_message_id", session.claim_message_id, NEW_ID, 0),
        ("store_message", lambda: session.store_message({"c": "3"}, b"second"), NEW_ID, 1),
        ("store_messages", lambda: session.store_messages([{"meta": {}, "contents": b"x"}] * 2), NEW_IDS, 2),
        ("finish_message", lambda: session.finish_message(message_id, OWNER), True, 1),
        ("delete_message", lambda: session.delete_message(message_id), None, 1),
    ]
    results = []
    evals = []
    for name, call, _, _ in calls:
        admin.script_flush()
        admin.config_resetstat()
        results.append((name, call()))
        evals.append((name, command_calls(clean_redis, "eval")))
    final = session.get_all_messages()
    session.close()
    engine.close()

    new_ids: list[Any] = []
    for (name, result), (_, _, expected, _) in zip(results, calls, strict=True):
        if expected is NEW_ID:
            new_ids.append(result)
        elif expected is NEW_IDS:
            new_ids += result
        else:
            assert result == expected, name
    # Each script ran once by EVALSHA, got NOSCRIPT, and ran once by EVAL.
    assert evals == [(name, scripts) for name, _, _, scripts in calls]
    assert sorted(final) == sorted(new_ids)


# Contents over the server's proto-max-bulk-len

BULK_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def small_bulk_server() -> Iterator[RedisServer]:
    with RedisServer(config={"proto-max-bulk-len": "1mb"}) as server:
        yield server


@pytest.fixture
def small_bulk(small_bulk_server: RedisServer) -> Iterator[Session]:
    small_bulk_server.client().flushall()  # This server belongs to this module alone.
    engine = redis_engine.new(small_bulk_server.host, small_bulk_server.port, OFFSET)
    with engine.connect() as session:
        yield session
    engine.close()


def assert_too_large(error: MessageTooLarge, size: int) -> None:
    assert isinstance(error, InvalidArgument)
    assert error.kind == "invalid_argument"
    assert error.param == "contents"
    assert (error.size, error.limit) == (size, BULK_LIMIT)
    assert str(size) in str(error)
    assert str(BULK_LIMIT) in str(error)
    assert "proto-max-bulk-len" in str(error)


def test_store_over_bulk_limit(small_bulk: Session, small_bulk_server: RedisServer) -> None:
    kept_id = small_bulk.store_message({"k": "v"}, b"kept")
    before = key_counts(small_bulk_server)

    with pytest.raises(MessageTooLarge) as raised:
        small_bulk.store_message({"k": "v"}, b"x" * (BULK_LIMIT + 1), 10.0)

    assert_too_large(raised.value, BULK_LIMIT + 1)
    assert small_bulk.get_all_messages() == [kept_id]
    assert key_counts(small_bulk_server) == before


def test_bulk_store_over_limit_stores_none(small_bulk: Session, small_bulk_server: RedisServer) -> None:
    kept_id = small_bulk.store_message({"k": "v"}, b"kept")
    before = key_counts(small_bulk_server)
    messages = [
        {"meta": {}, "contents": b"small"},
        {"meta": {}, "contents": b"x" * BULK_LIMIT},
        {"meta": {}, "contents": b"x" * (BULK_LIMIT + 1)},
    ]

    with pytest.raises(MessageTooLarge) as raised:
        small_bulk.store_messages(messages)

    assert raised.value.param == "messages[2]['contents']"
    assert (raised.value.size, raised.value.limit) == (BULK_LIMIT + 1, BULK_LIMIT)
    assert "messages[2]['contents']" in str(raised.value)
    assert small_bulk.get_all_messages() == [kept_id]
    assert key_counts(small_bulk_server) == before


def test_meta_value_over_bulk_limit(small_bulk: Session, small_bulk_server: RedisServer) -> None:
    kept_id = small_bulk.store_message({"k": "v"}, b"kept")
    before = key_counts(small_bulk_server)
    long_value = "é" * (BULK_LIMIT // 2 + 1)  # two UTF-8 bytes each
    calls = [
        ("meta['note']", lambda: small_bulk.store_message({"note": long_value}, b"x")),
        (
            "messages[1]['meta']['note']",
            lambda: small_bulk.store_messages(
                [{"meta": {}, "contents": b"x"}, {"meta": {"note": long_value}, "contents": b"x"}]
            ),
        ),
        ("meta['note']", lambda: small_bulk.set_message_meta(kept_id, {"note": long_value})),
        ("value", lambda: small_bulk.set_message_meta_key(kept_id, "note", long_value)),
    ]

    for param, call in calls:
        with pytest.raises(MessageTooLarge) as raised:
            call()
        assert raised.value.param == param
        assert raised.value.size == BULK_LIMIT + 2

    assert small_bulk.get_all_messages() == [kept_id]
    assert small_bulk.get_message_meta(kept_id) == {"k": "v"}
    assert key_counts(small_bulk_server) == before


def test_set_contents_over_bulk_limit(small_bulk: Session, small_bulk_server: RedisServer) -> None:
    with_contents = small_bulk.store_message({"k": "v"}, b"old")
    claimed = small_bulk.claim_message_id()
    before = key_counts(small_bulk_server)

    for message_id in (with_contents, claimed):
        with pytest.raises(MessageTooLarge) as raised:
            small_bulk.set_message_contents(message_id, b"x" * (BULK_LIMIT + 100))
        assert_too_large(raised.value, BULK_LIMIT + 100)

    assert small_bulk.get_message_contents(with_contents) == b"old"
    assert small_bulk.get_message_contents(claimed) is None
    assert key_counts(small_bulk_server) == before


def test_limit_lowered_after_connect(clean_redis: RedisServer) -> None:
    # The engine reads proto-max-bulk-len at its first connect only. When
    # the limit drops later, the server rejects the contents itself and
    # closes the connection, so the session must reconnect for the next call.
    admin = clean_redis.client()
    engine = redis_engine.new(clean_redis.host, clean_redis.port, OFFSET, socket_timeout=SOCKET_TIMEOUT)
    session = engine.connect()
    kept_id = session.store_message(OLD_META, OLD_CONTENTS)
    before = key_counts(clean_redis)
    admin.config_set("proto-max-bulk-len", str(BULK_LIMIT))
    try:
        with pytest.raises(StorageUnavailable) as stored:
            session.store_message(OLD_META, b"x" * (BULK_LIMIT + 1))
        session.set_message_meta(kept_id, {"first": "1"})
        with pytest.raises(StorageUnavailable) as replaced:
            session.set_message_contents(kept_id, b"x" * (BULK_LIMIT + 1))
        session.set_message_meta(kept_id, {"new": "3"})
        after = key_counts(clean_redis)
    finally:
        admin.config_set("proto-max-bulk-len", "512mb")
    meta = session.get_message_meta(kept_id)
    contents = session.get_message_contents(kept_id)
    session.close()
    engine.close()

    assert stored.value.operation == "store_message"
    assert replaced.value.operation == "set_message_contents"
    assert after == before
    assert meta == {"new": "3"}
    assert contents == OLD_CONTENTS


def test_contents_at_bulk_limit_stored(small_bulk: Session) -> None:
    contents = random.Random(1).randbytes(BULK_LIMIT)

    stored = small_bulk.store_message({"k": "v"}, contents)
    claimed = small_bulk.claim_message_id()
    small_bulk.set_message_contents(claimed, contents)

    assert small_bulk.get_message_contents(stored) == contents
    assert small_bulk.get_message_contents(claimed) == contents


# Checks at the first connect


def test_select_rejected_at_connect() -> None:
    with RedisServer() as server:
        server.client().acl_setuser(
            "noselect", enabled=True, passwords=["+select-test"], keys=["*"], commands=["+@all", "-select"]
        )
        engine = redis_engine.new(
            server.host, server.port, OFFSET, username="noselect", password="select-test"
        )

        with pytest.raises(StorageUnavailable) as raised:
            engine.connect()
        engine.close()
        counts = key_counts(server)

    message = str(raised.value)
    assert raised.value.operation == "connect"
    assert "rejected SELECT" in message
    assert f"databases {OFFSET} to {OFFSET + 3}" in message
    assert "four databases" in message
    assert counts == [0, 0, 0, 0]


def persistence_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "persists nothing" in record.getMessage()
    ]


def test_no_persistence_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    # A server of its own: the warning comes once per server and process.
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    with RedisServer() as server:
        for _ in range(2):
            engine = redis_engine.new(server.host, server.port, OFFSET)
            engine.connect().close()
            engine.connect().close()
            engine.close()

    warnings = persistence_warnings(caplog)
    assert len(warnings) == 1
    assert f"{server.host}:{server.port}" in warnings[0]


@pytest.mark.parametrize("config", [{"appendonly": "yes"}, {"save": "3600 1"}], ids=["aof", "rdb"])
def test_persistence_no_warning(config: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    with RedisServer(config=config) as server:
        engine = redis_engine.new(server.host, server.port, OFFSET)
        engine.connect().close()
        engine.close()

    assert persistence_warnings(caplog) == []
