"""The Redis engine stores exactly the layout of the spec and survives server faults.

The checks read the test server's databases with plain redis-py clients,
so they see the bytes that other writers and readers of the layout see.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import yaml
from conftest import OFFSET, SPEC

from slimta.storage import Message, MessageInfo, Page, Session, StorageUnavailable
from slimta.storage import redis as redis_engine
from slimta.storage.redis import RedisEngine
from slimta.storage.redis import _session as redis_session
from slimta.storage.testing import RedisServer

LOCK_LENGTH = 30.0
DATABASES = 16
OWNER = "relayer-a"

Dump = dict[bytes, tuple[bytes, Any]]


@pytest.fixture
def raw(clean_redis: RedisServer) -> Iterator[Callable[[int], redis.Redis]]:
    """Return a function that gives a raw client on one database of the test server."""
    clients: dict[int, redis.Redis] = {}

    def client(db: int) -> redis.Redis:
        if db not in clients:
            clients[db] = clean_redis.client(db)
        return clients[db]

    yield client
    for opened in clients.values():
        opened.close()


@pytest.fixture
def engine(clean_redis: RedisServer) -> Iterator[RedisEngine]:
    opened = redis_engine.from_url(clean_redis.url(OFFSET))
    yield opened
    opened.close()


@pytest.fixture
def session(engine: RedisEngine) -> Iterator[Session]:
    with engine.connect() as opened:
        yield opened


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return loaded


def spec_methods(spec: dict[str, Any]) -> set[str]:
    """Return the names of the session methods that the spec lists."""
    return {method["name"] for method in spec["methods"]}


def dump(client: redis.Redis) -> Dump:
    """Return every key of one database with its type and value."""
    found: Dump = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value: Any = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = None
        found[key] = (kind, value)
    return found


def dump_all(raw: Callable[[int], redis.Redis]) -> dict[int, Dump]:
    return {db: dump(raw(db)) for db in range(DATABASES)}


# The layout after a scripted sequence


@pytest.fixture
def scripted(session: Session) -> dict[str, str]:
    """Claim three messages, fill them, lock one, delete one and return the ids."""
    unlocked = session.claim_message_id()
    locked = session.claim_message_id()
    deleted = session.claim_message_id()

    session.set_message_meta(
        unlocked, {"sender": "a@example.com", "recipients": "\0b@example.net", "ümlaut": "wért"}
    )
    session.set_message_meta(locked, {"attempts": "1"})
    session.set_message_meta_key(locked, "dest_port", "25")
    session.set_message_meta(deleted, {"sender": "gone@example.com"})
    session.set_message_contents(unlocked, b"Subject: kept\r\n\r\n\x00\xff\r\n")
    session.set_message_contents(locked, b"Subject: locked\n\nbody\n")
    session.set_message_contents(deleted, b"gone")
    session.set_message_retry(unlocked, 1700000000.25)
    session.set_message_retry(locked, 1700000100)
    session.set_message_retry(deleted, 1700000050.5)
    session.lock_message(locked, LOCK_LENGTH)
    session.lock_message(deleted, LOCK_LENGTH)
    session.delete_message(deleted)
    return {"unlocked": unlocked, "locked": locked, "deleted": deleted}


def test_layout_ids_database(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    unlocked = scripted["unlocked"].encode()
    locked = scripted["locked"].encode()

    assert dump(raw(OFFSET)) == {
        b"message_ids": (b"set", {unlocked, locked}),
        b"retry_queue": (b"zset", [(unlocked, 1700000000.25), (locked, 1700000100.0)]),
    }


def test_layout_meta_database(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    unlocked = scripted["unlocked"].encode()
    locked = scripted["locked"].encode()

    assert dump(raw(OFFSET + 1)) == {
        unlocked: (
            b"hash",
            {
                b"sender": b"a@example.com",
                b"recipients": b"\x00b@example.net",
                "ümlaut".encode(): "wért".encode(),
            },
        ),
        locked: (b"hash", {b"attempts": b"1", b"dest_port": b"25"}),
    }


def test_layout_contents_database(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    unlocked = scripted["unlocked"].encode()
    locked = scripted["locked"].encode()

    assert dump(raw(OFFSET + 2)) == {
        unlocked: (b"string", b"Subject: kept\r\n\r\n\x00\xff\r\n"),
        locked: (b"string", b"Subject: locked\n\nbody\n"),
    }


def test_layout_locks_database(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    locked = scripted["locked"].encode()

    assert dump(raw(OFFSET + 3)) == {locked: (b"string", b"locked")}


def test_layout_lock_expiry(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    pttl = raw(OFFSET + 3).pttl(scripted["locked"])

    assert 0 < pttl <= LOCK_LENGTH * 1000


def test_layout_other_databases_empty(raw: Callable[[int], redis.Redis], scripted: dict[str, str]) -> None:
    layout = range(OFFSET, OFFSET + 4)

    for db in range(DATABASES):
        if db not in layout:
            assert raw(db).dbsize() == 0, f"db {db}"


def test_layout_server_has_16_databases(raw: Callable[[int], redis.Redis]) -> None:
    # The check of the other databases above needs to know them all.
    assert raw(0).config_get("databases") == {"databases": str(DATABASES)}


def test_layout_empty_after_deletes(
    raw: Callable[[int], redis.Redis], session: Session, scripted: dict[str, str]
) -> None:
    for message_id in session.get_all_messages():
        session.delete_message(message_id)

    for db in range(DATABASES):
        assert raw(db).dbsize() == 0, f"db {db}"


def test_layout_claim_only_adds_id(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()

    assert dump_all(raw)[OFFSET] == {b"message_ids": (b"set", {message_id.encode()})}
    assert sum(raw(db).dbsize() for db in range(DATABASES)) == 1


def test_layout_empty_meta_no_hash(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    session.set_message_meta(message_id, {})

    assert raw(OFFSET + 1).exists(message_id) == 0


def test_layout_retry_score_exact(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_retry(message_id, 1700000000.123456)

    assert raw(OFFSET).zscore("retry_queue", message_id) == 1700000000.123456


def test_layout_lock_milliseconds(raw: Callable[[int], redis.Redis], session: Session) -> None:
    # 2.007 s is 2007 ms, although 2.007 * 1000 is slightly above 2007 as a float.
    message_id = session.claim_message_id()

    session.lock_message(message_id, 2.007)

    assert 1900 < raw(OFFSET + 3).pttl(message_id) <= 2007


def test_unknown_id_writes_nothing(raw: Callable[[int], redis.Redis], session: Session) -> None:
    session.claim_message_id()
    before = dump_all(raw)
    unknown = "never-claimed-id"

    for call in (
        lambda: session.set_message_meta(unknown, {"a": "1"}),
        lambda: session.set_message_meta_key(unknown, "a", "1"),
        lambda: session.set_message_contents(unknown, b"x"),
        lambda: session.set_message_retry(unknown, 1.0),
        lambda: session.lock_message(unknown, LOCK_LENGTH),
    ):
        with pytest.raises(LookupError):
            call()

    assert dump_all(raw) == before


# Meta that another writer stored as bytes that are not UTF-8


def test_raw_meta_reads_as_text(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    raw_meta = {b"x-raw": b"\xff\xfe", b"\xfe-key": b"ok", b"latin": b"caf\xe9"}
    raw(OFFSET + 1).hset(message_id, mapping=raw_meta)  # type: ignore[arg-type]

    meta = session.get_message_meta(message_id)

    assert meta == {"x-raw": "\udcff\udcfe", "\udcfe-key": "ok", "latin": "caf\udce9"}


def test_raw_meta_key_reads_as_text(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    raw(OFFSET + 1).hset(message_id, b"\xfe-key", b"\xff\xfe")

    assert session.get_message_meta_key(message_id, "\udcfe-key") == "\udcff\udcfe"


def test_raw_meta_written_back_identical(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    original = {b"x-raw": b"\xff\xfe", b"\xfe-key": b"ok", b"latin": b"caf\xe9", b"utf8": "é".encode()}
    raw(OFFSET + 1).hset(message_id, mapping=original)  # type: ignore[arg-type]

    session.set_message_meta(message_id, session.get_message_meta(message_id))

    assert raw(OFFSET + 1).hgetall(message_id) == original


def test_raw_meta_key_written_back_identical(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    raw(OFFSET + 1).hset(message_id, b"x-raw", b"\xff\xfe")
    value = session.get_message_meta_key(message_id, "x-raw")
    raw(OFFSET + 1).delete(message_id)

    session.set_message_meta_key(message_id, "x-raw", value)

    assert raw(OFFSET + 1).hgetall(message_id) == {b"x-raw": b"\xff\xfe"}


# Server faults


def free_port() -> int:
    """Return a loopback port that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_unreachable_connect_unavailable() -> None:
    port = free_port()
    engine = redis_engine.new("127.0.0.1", port, OFFSET, socket_connect_timeout=2)

    with pytest.raises(StorageUnavailable) as caught:
        engine.connect()

    assert "127.0.0.1" in str(caught.value)
    assert str(port) in str(caught.value)
    assert caught.value.host == "127.0.0.1"
    assert caught.value.port == port
    assert caught.value.operation == "connect"


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """Return a server of this test alone, which it may kill and restart."""
    with RedisServer() as server:
        yield server


def test_session_recovers_after_restart(own_server: RedisServer) -> None:
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=2, socket_connect_timeout=2)
    session = engine.connect()
    session.claim_message_id()

    own_server.kill()
    with pytest.raises(StorageUnavailable) as while_down:
        session.get_all_messages()
    own_server.restart()
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    assert while_down.value.host == "127.0.0.1"
    assert while_down.value.port == own_server.port
    assert str(own_server.port) in str(while_down.value)
    assert while_down.value.operation == "get_all_messages"
    # The server persists nothing, so only the new message is stored.
    assert session.get_all_messages() == [message_id]
    assert session.get_message_meta(message_id) == {"a": "1"}
    session.close()
    engine.close()


# Every method of the spec but close, and describe_message, with valid
# arguments, for calls while the server is down.
CALLS_WHILE_DOWN: list[tuple[str, tuple[Any, ...]]] = [
    ("get_active_messages", ()),
    ("get_deferred_messages", ()),
    ("get_all_messages", ()),
    ("claim_message_id", ()),
    ("store_message", ({"a": "1"}, b"x")),
    ("set_message_meta", ("some-id", {"a": "1"})),
    ("set_message_meta_key", ("some-id", "a", "1")),
    ("set_message_contents", ("some-id", b"x")),
    ("get_message_meta", ("some-id",)),
    ("get_message_meta_key", ("some-id", "a")),
    ("get_message_contents", ("some-id",)),
    ("set_message_retry", ("some-id", 1.0)),
    ("lock_message", ("some-id", 1.0)),
    ("refresh_lock", ("some-id", 1.0, OWNER)),
    ("unlock_message", ("some-id",)),
    ("delete_message", ("some-id",)),
    ("get_message", ("some-id",)),
    ("get_messages", (["some-id", "other-id"],)),
    ("checkout_message", ("some-id", 1.0, OWNER)),
    ("finish_message", ("some-id", OWNER)),
    ("defer_message", ("some-id", 1.0, OWNER)),
    ("store_messages", ([{"meta": {"a": "1"}, "contents": b"x"}, {"meta": {}, "contents": b"y"}],)),
    ("get_all_messages_page", (None, 10)),
    ("get_deferred_messages_page", (None, None, 10)),
    ("get_active_messages_page", (None, 10)),
    ("describe_message", ("some-id",)),
]


def test_calls_while_down_cover_spec(spec: dict[str, Any]) -> None:
    # close is the one method that must not raise, so its own test checks it.
    listed = {method for method, _ in CALLS_WHILE_DOWN} | {"close"}

    assert sorted(spec_methods(spec) - listed) == []
    assert len(CALLS_WHILE_DOWN) == len(listed) - 1


def test_server_down_every_method(own_server: RedisServer) -> None:
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=2, socket_connect_timeout=2)
    session = engine.connect()
    own_server.kill()

    for method, args in CALLS_WHILE_DOWN:
        with pytest.raises(StorageUnavailable) as caught:
            getattr(session, method)(*args)
        assert caught.value.operation == method
        assert caught.value.host == "127.0.0.1"
        assert caught.value.port == own_server.port

    with pytest.raises(StorageUnavailable):
        engine.connect()
    own_server.restart()
    assert session.get_all_messages() == []
    with engine.connect() as reopened:
        assert reopened.get_active_messages() == []
    session.close()
    engine.close()


def test_server_down_close(own_server: RedisServer) -> None:
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=2, socket_connect_timeout=2)
    session = engine.connect()
    session.claim_message_id()
    own_server.kill()

    # Neither close raises, because close sends nothing to the server.
    session.close()
    session.close()
    own_server.restart()
    with engine.connect() as reopened:
        message_id = reopened.claim_message_id()
        listed = reopened.get_all_messages()
    engine.close()

    assert session.closed
    # The server persists nothing, so only the new message is stored.
    assert listed == [message_id]


def test_server_down_bulk_store_ids(own_server: RedisServer) -> None:
    # Nothing can be stored while the server is down, and the check whether
    # the stores ran fails too, so each new id is unknown.
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=2, socket_connect_timeout=2)
    session = engine.connect()
    own_server.kill()

    with pytest.raises(StorageUnavailable) as caught:
        session.store_messages([{"meta": {"a": "1"}, "contents": b"x"}, {"meta": {}, "contents": b"y"}])
    session.close()
    engine.close()

    assert caught.value.message_ids == [None, None]
    assert len(caught.value.unknown_ids) == 2


def test_script_flush_between_calls(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    raw(0).script_flush()

    # The first call of each script after the flush finds it missing.
    session.set_message_meta(message_id, {"a": "1"})
    session.set_message_meta_key(message_id, "b", "2")
    session.set_message_contents(message_id, b"body")
    session.set_message_retry(message_id, 5.0)
    locked = session.lock_message(message_id, LOCK_LENGTH)

    assert locked is True
    assert session.get_message_meta(message_id) == {"a": "1", "b": "2"}
    assert session.get_message_meta_key(message_id, "b") == "2"
    assert session.get_message_contents(message_id) == b"body"
    assert session.get_active_messages() == [message_id]
    assert session.describe_message(message_id).size == 4
    session.unlock_message(message_id)
    session.delete_message(message_id)
    assert session.get_all_messages() == []


def test_script_flush_twice(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()

    raw(0).script_flush()
    session.set_message_meta(message_id, {"a": "1"})
    raw(0).script_flush()
    session.set_message_meta(message_id, {"a": "2"})

    assert session.get_message_meta(message_id) == {"a": "2"}


def test_wrong_type_unavailable(raw: Callable[[int], redis.Redis], session: Session) -> None:
    # Another program put a string where the layout has the id set.
    raw(OFFSET).set("message_ids", "not a set")

    with pytest.raises(StorageUnavailable) as caught:
        session.get_all_messages()

    assert caught.value.operation == "get_all_messages"
    assert "WRONGTYPE" in str(caught.value)


def test_script_error_unavailable(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.claim_message_id()
    raw(OFFSET + 1).set(message_id, "not a hash")

    with pytest.raises(StorageUnavailable) as caught:
        session.get_message_meta(message_id)

    assert caught.value.operation == "get_message_meta"
    assert session.get_all_messages() == [message_id]


def test_timeout_then_in_sync(own_server: RedisServer) -> None:
    # A reply that arrives after the timeout must not be read as the reply
    # of the next call.
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=0.3, socket_connect_timeout=2)
    session = engine.connect()
    first = session.claim_message_id()
    second = session.claim_message_id()
    session.set_message_meta(first, {"name": "first"})
    session.set_message_meta(second, {"name": "second"})
    assert own_server.pid is not None

    os.kill(own_server.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            session.get_message_meta(first)
    finally:
        os.kill(own_server.pid, signal.SIGCONT)
    time.sleep(0.1)
    meta = session.get_message_meta(second)

    assert caught.value.operation == "get_message_meta"
    assert "timeout" in str(caught.value).lower()
    assert meta == {"name": "second"}
    session.close()
    engine.close()


# Writes that find the layout broken by another writer


def break_key(raw: Callable[[int], redis.Redis], key: str) -> None:
    """Put a string where the layout has the set or sorted set ``key``, keeping what it held."""
    client = raw(OFFSET)
    client.delete(key)
    client.set(key, "not a collection")


def assert_names_broken_key(error: StorageUnavailable, key: str, expected: str) -> None:
    message = str(error)
    assert "layout is broken" in message
    assert f"{key} is a string, not a {expected}" in message


@pytest.mark.parametrize(("key", "expected"), [("message_ids", "set"), ("retry_queue", "zset")])
@pytest.mark.parametrize("retry", [None, 5.0], ids=["no_retry", "retry"])
def test_store_broken_layout_writes_nothing(
    raw: Callable[[int], redis.Redis], session: Session, key: str, expected: str, retry: float | None
) -> None:
    break_key(raw, key)
    before = dump_all(raw)

    with pytest.raises(StorageUnavailable) as raised:
        session.store_message({"a": "1"}, b"body", retry)

    assert raised.value.operation == "store_message"
    assert_names_broken_key(raised.value, key, expected)
    assert dump_all(raw) == before


def test_bulk_store_broken_layout_writes_nothing(raw: Callable[[int], redis.Redis], session: Session) -> None:
    break_key(raw, "retry_queue")
    before = dump_all(raw)

    with pytest.raises(StorageUnavailable) as raised:
        session.store_messages([{"meta": {"a": "1"}, "contents": b"body", "retry": 5.0}] * 2)

    assert raised.value.operation == "store_messages"
    assert_names_broken_key(raised.value, "retry_queue", "zset")
    assert raised.value.message_ids == [None, None]
    assert dump_all(raw) == before


# Writes that find retry_queue of the wrong type, with their error text for it.
RETRY_QUEUE_WRITES: list[tuple[str, Callable[[Session, str], object]]] = [
    ("set_message_retry", lambda s, m: s.set_message_retry(m, 9.0)),
    ("delete_message", lambda s, m: s.delete_message(m)),
    ("finish_message", lambda s, m: s.finish_message(m)),
    ("defer_message", lambda s, m: s.defer_message(m, 9.0)),
]


@pytest.mark.parametrize(("method", "call"), RETRY_QUEUE_WRITES, ids=[m for m, _ in RETRY_QUEUE_WRITES])
def test_broken_retry_queue_write_changes_nothing(
    raw: Callable[[int], redis.Redis], session: Session, method: str, call: Callable[[Session, str], object]
) -> None:
    message_id = session.store_message({"a": "1"}, b"body")
    assert session.lock_message(message_id, LOCK_LENGTH)
    break_key(raw, "retry_queue")
    before = dump_all(raw)

    with pytest.raises(StorageUnavailable) as raised:
        call(session, message_id)

    assert raised.value.operation == method
    assert "retry_queue is a string, not a zset" in str(raised.value)
    assert dump_all(raw) == before


def test_store_clears_leftover_keys(
    raw: Callable[[int], redis.Redis], session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer deleted a message with this id but left its meta,
    # contents, lock and retry time behind. A new message of the same id
    # is exactly what was given.
    leftover = "0a0b0c0d-0000-4000-8000-000000000001"
    raw(OFFSET).zadd("retry_queue", {leftover: 7.0})
    raw(OFFSET + 1).hset(leftover, mapping={"old": "1", "a": "old"})
    raw(OFFSET + 2).set(leftover, b"old body")
    raw(OFFSET + 3).set(leftover, "locked")
    monkeypatch.setattr(redis_session.uuid, "uuid4", lambda: leftover)

    message_id = session.store_message({"a": "1"}, b"new body")

    assert message_id == leftover
    assert raw(OFFSET + 1).hgetall(leftover) == {b"a": b"1"}
    assert raw(OFFSET + 2).get(leftover) == b"new body"
    assert raw(OFFSET + 3).exists(leftover) == 0
    assert raw(OFFSET).zscore("retry_queue", leftover) is None
    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []


# Messages that another writer stored with keys of the wrong type


def store_three(session: Session) -> list[str]:
    return session.store_messages(
        [{"meta": {"index": str(index)}, "contents": b"body"} for index in range(3)]
    )


# The database after the offset, the part of the message kept there and its Redis type.
MALFORMED_PARTS = [(1, "meta", "hash"), (2, "contents", "string")]


@pytest.mark.parametrize("part_case", MALFORMED_PARTS, ids=[part for _, part, _ in MALFORMED_PARTS])
def test_get_messages_skips_malformed(
    raw: Callable[[int], redis.Redis],
    session: Session,
    caplog: pytest.LogCaptureFixture,
    part_case: tuple[int, str, str],
) -> None:
    database, part, expected = part_case
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    first, malformed, last = store_three(session)
    raw(OFFSET + database).delete(malformed)
    if part == "meta":
        raw(OFFSET + database).set(malformed, "not a hash")
    else:
        raw(OFFSET + database).hset(malformed, "not", "a string")

    messages = session.get_messages([first, malformed, last])

    warnings = [record.getMessage() for record in caplog.records if malformed in record.getMessage()]
    assert sorted(messages) == sorted([first, last])
    assert messages[first].meta == {"index": "0"}
    assert messages[last].meta == {"index": "2"}
    assert len(warnings) == 1
    assert f"its {part} key in database {OFFSET + database}" in warnings[0]
    assert f"not a {expected}" in warnings[0]


def test_get_message_malformed_names_key(raw: Callable[[int], redis.Redis], session: Session) -> None:
    message_id = session.store_message({"a": "1"}, b"body")
    raw(OFFSET + 1).delete(message_id)
    raw(OFFSET + 1).set(message_id, "not a hash")

    with pytest.raises(StorageUnavailable) as raised:
        session.get_message(message_id)

    message = str(raised.value)
    assert raised.value.operation == "get_message"
    assert message_id in message
    assert "malformed" in message
    assert f"meta key in database {OFFSET + 1} is a string, not a hash" in message


WRONG_TYPE_CALLS = {
    "get_message_meta": lambda session, message_id: session.get_message_meta(message_id),
    "get_message_contents": lambda session, message_id: session.get_message_contents(message_id),
    "describe_message": lambda session, message_id: session.describe_message(message_id),
    "checkout_message": lambda session, message_id: session.checkout_message(message_id, 60),
    "set_message_meta_key": lambda session, message_id: session.set_message_meta_key(message_id, "a", "2"),
}
# Each call with a database it reads, relative to the offset: 1 for meta, 2 for contents.
WRONG_TYPE_CASES = [
    ("get_message_meta", 1),
    ("set_message_meta_key", 1),
    ("checkout_message", 1),
    ("get_message_contents", 2),
    ("describe_message", 2),
    ("checkout_message", 2),
]


@pytest.mark.parametrize(("operation", "database"), WRONG_TYPE_CASES)
def test_wrong_type_names_message(
    raw: Callable[[int], redis.Redis], session: Session, operation: str, database: int
) -> None:
    message_id = session.store_message({"a": "1"}, b"body")
    raw(OFFSET + database).delete(message_id)
    raw(OFFSET + database).sadd(message_id, "a set, not a hash or string")

    with pytest.raises(StorageUnavailable) as raised:
        WRONG_TYPE_CALLS[operation](session, message_id)

    message = str(raised.value)
    assert raised.value.operation == operation
    assert message_id in message
    assert "WRONGTYPE" in message
    assert "slimta-storage check" in message
    assert "script:" not in message


# A server restart between two calls of a session


@dataclass(frozen=True)
class CallAfterRestart:
    """A session method that a session calls first after a server restart.

    ``call`` takes the session and the id of a message that another
    session stored after the restart. It returns what the method returns,
    or, for a write, a read of what it changed, made after the write.
    ``expected`` takes the id and returns what ``call`` must return, or is
    None for the methods that return new ids. With ``locked``, OWNER
    holds the message's lock before the call.
    """

    method: str
    call: Callable[[Session, str], object]
    expected: Callable[[str], object] | None
    locked: bool = False


STORED_META = {"a": "1"}
STORED_CONTENTS = b"first"
STORED_RETRY = 5.0
STORED = Message(STORED_META, STORED_CONTENTS)


def set_meta_then_read(session: Session, message_id: str) -> dict[str, str]:
    session.set_message_meta(message_id, {"b": "2"})
    return session.get_message_meta(message_id)


def set_meta_key_then_read(session: Session, message_id: str) -> dict[str, str]:
    session.set_message_meta_key(message_id, "b", "2")
    return session.get_message_meta(message_id)


def set_contents_then_read(session: Session, message_id: str) -> bytes | None:
    session.set_message_contents(message_id, b"second")
    return session.get_message_contents(message_id)


def set_retry_then_read(session: Session, message_id: str) -> float | None:
    session.set_message_retry(message_id, 9.0)
    return session.describe_message(message_id).retry


# Every method of the spec, and describe_message. The message has meta,
# contents and a retry time. In rows with ``locked``, OWNER also holds its lock.
CALLS_AFTER_RESTART: list[CallAfterRestart] = [
    CallAfterRestart("close", lambda s, m: s.close(), lambda m: None),
    CallAfterRestart("get_active_messages", lambda s, m: s.get_active_messages(), lambda m: [m], locked=True),
    CallAfterRestart("get_deferred_messages", lambda s, m: s.get_deferred_messages(), lambda m: [m]),
    CallAfterRestart("get_all_messages", lambda s, m: s.get_all_messages(), lambda m: [m]),
    CallAfterRestart("claim_message_id", lambda s, m: s.claim_message_id(), None),
    CallAfterRestart("store_message", lambda s, m: s.store_message({"b": "2"}, b"second"), None),
    CallAfterRestart("set_message_meta", set_meta_then_read, lambda m: {"b": "2"}),
    CallAfterRestart("set_message_meta_key", set_meta_key_then_read, lambda m: {"a": "1", "b": "2"}),
    CallAfterRestart("set_message_contents", set_contents_then_read, lambda m: b"second"),
    CallAfterRestart("get_message_meta", lambda s, m: s.get_message_meta(m), lambda m: STORED_META),
    CallAfterRestart("get_message_meta_key", lambda s, m: s.get_message_meta_key(m, "a"), lambda m: "1"),
    CallAfterRestart(
        "get_message_contents", lambda s, m: s.get_message_contents(m), lambda m: STORED_CONTENTS
    ),
    CallAfterRestart("set_message_retry", set_retry_then_read, lambda m: 9.0),
    CallAfterRestart(
        "lock_message",
        lambda s, m: (s.lock_message(m, LOCK_LENGTH), s.get_active_messages()),
        lambda m: (True, [m]),
    ),
    CallAfterRestart(
        "refresh_lock", lambda s, m: s.refresh_lock(m, LOCK_LENGTH, OWNER), lambda m: True, locked=True
    ),
    CallAfterRestart(
        "unlock_message",
        lambda s, m: (s.unlock_message(m, OWNER), s.get_active_messages()),
        lambda m: (True, []),
        locked=True,
    ),
    CallAfterRestart("delete_message", lambda s, m: s.delete_message(m), lambda m: None),
    CallAfterRestart("get_message", lambda s, m: s.get_message(m), lambda m: STORED),
    CallAfterRestart(
        "get_messages", lambda s, m: s.get_messages([m, "never-claimed-id"]), lambda m: {m: STORED}
    ),
    CallAfterRestart(
        "checkout_message",
        lambda s, m: (s.checkout_message(m, LOCK_LENGTH, OWNER), s.get_active_messages()),
        lambda m: (STORED, [m]),
    ),
    CallAfterRestart("finish_message", lambda s, m: s.finish_message(m, OWNER), lambda m: True, locked=True),
    CallAfterRestart(
        "defer_message",
        lambda s, m: (s.defer_message(m, 9.0, OWNER), s.get_message_meta(m), s.get_active_messages()),
        lambda m: (1, {"a": "1", "attempts": "1"}, []),
        locked=True,
    ),
    CallAfterRestart(
        "store_messages",
        lambda s, m: s.store_messages([{"meta": {"b": "2"}, "contents": b"second"}] * 2),
        None,
    ),
    CallAfterRestart(
        "get_all_messages_page", lambda s, m: s.get_all_messages_page(), lambda m: Page([m], None)
    ),
    CallAfterRestart(
        "get_deferred_messages_page", lambda s, m: s.get_deferred_messages_page(), lambda m: Page([m], None)
    ),
    CallAfterRestart(
        "get_active_messages_page",
        lambda s, m: s.get_active_messages_page(),
        lambda m: Page([m], None),
        locked=True,
    ),
    CallAfterRestart(
        "describe_message",
        lambda s, m: s.describe_message(m),
        lambda m: MessageInfo(m, len(STORED_CONTENTS), STORED_RETRY, None),
    ),
]


def test_calls_after_restart_cover_spec(spec: dict[str, Any]) -> None:
    listed = [row.method for row in CALLS_AFTER_RESTART]

    assert sorted(spec_methods(spec) - set(listed)) == []
    assert len(listed) == len(set(listed))


def expected_listing(row: CallAfterRestart, message_id: str, result: object) -> list[str]:
    """Return the ids that get_all_messages lists after ``row``'s call, sorted."""
    if row.method in ("delete_message", "finish_message"):
        return []
    if row.method in ("claim_message_id", "store_message"):
        assert isinstance(result, str)
        return sorted([message_id, result])
    if row.method == "store_messages":
        assert isinstance(result, list)
        return sorted([message_id, *result])
    return [message_id]


@pytest.mark.parametrize("row", CALLS_AFTER_RESTART, ids=[row.method for row in CALLS_AFTER_RESTART])
def test_first_call_after_restart(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture, row: CallAfterRestart
) -> None:
    engine = redis_engine.from_url(own_server.url(OFFSET), socket_timeout=2, socket_connect_timeout=2)
    session = engine.connect()
    session.get_all_messages()
    other = redis_engine.from_url(own_server.url(OFFSET))

    own_server.kill()
    own_server.restart()
    with other.connect() as writer:
        message_id = writer.store_message(STORED_META, STORED_CONTENTS, STORED_RETRY)
        if row.locked:
            assert writer.lock_message(message_id, LOCK_LENGTH, OWNER)
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    result = row.call(session, message_id)
    # After close, a new session borrows the connection that the restart
    # closed, and must work although close sent nothing on it.
    reader = engine.connect() if session.closed else session
    listed = reader.get_all_messages()
    reader.close()
    session.close()
    engine.close()
    other.close()

    messages = [record.getMessage() for record in caplog.records]
    if row.method != "close":
        # redis-py's pool (ensure_connection in redis-py 8.2) replaces a closed connection
        # silently when it lends it, so only a session that stays open logs the closing.
        assert [text for text in messages if "closed the connection" in text] != []
    assert [text for text in messages if "got no reply" in text or "once more" in text] == []
    if row.expected is not None:
        assert result == row.expected(message_id)
    assert sorted(listed) == expected_listing(row, message_id, result)
