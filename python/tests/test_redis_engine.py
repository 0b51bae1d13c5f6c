"""The Redis engine's connection handling: a full server, fork, the pool and URLs."""

from __future__ import annotations

import gc
import logging
import os

import pytest
from conftest import OFFSET

from slimta.storage import InvalidArgument, Message, NewMessage, StorageUnavailable, open_engine
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

MB = 1024 * 1024


def fill_memory(server: RedisServer) -> None:
    """Set maxmemory below what the server uses, so writes are rejected."""
    client = server.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used - 2 * 1024 * 1024))


def test_full_server_still_drains(clean_redis: RedisServer) -> None:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    with engine.connect() as session:
        message_ids = [session.claim_message_id() for _ in range(4)]
        for message_id in message_ids:
            session.set_message_contents(message_id, os.urandom(1024 * 1024))
        try:
            fill_memory(clean_redis)

            with pytest.raises(StorageUnavailable, match="maxmemory"):
                session.set_message_meta(message_ids[0], {"k": "v"})
            assert session.lock_message(message_ids[0], 30)
            session.unlock_message(message_ids[0])
            for message_id in message_ids:
                session.delete_message(message_id)

            assert session.get_all_messages() == []
        finally:
            clean_redis.client().config_set("maxmemory", "0")


def test_bulk_store_rejected_reports_stored(
    clean_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The third message alone takes the server over maxmemory while Redis
    # reads it, so Redis rejects its store after storing the first two.
    caplog.set_level(logging.WARNING, logger="slimta.storage")
    sizes = [1000, 1000, 32 * MB, 1000]
    messages: list[NewMessage] = [
        {"meta": {"index": str(index)}, "contents": bytes([65 + index]) * size}
        for index, size in enumerate(sizes)
    ]
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    admin = clean_redis.client()
    with engine.connect() as session:
        session.get_all_messages()
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", str(used + 16 * MB))
        try:
            with pytest.raises(StorageUnavailable) as raised:
                session.store_messages(messages)
        finally:
            admin.config_set("maxmemory", "0")
        message_ids = raised.value.message_ids
        listed = set(session.get_all_messages())
        assert message_ids is not None
        confirmed = [message_id for message_id in message_ids if message_id is not None]
        read = session.get_messages(confirmed)
    engine.close()

    warnings = [record.getMessage() for record in caplog.records if "rejected" in record.getMessage()]
    assert raised.value.operation == "store_messages"
    assert "maxmemory" in str(raised.value)
    assert "messages[2]" in str(raised.value)
    assert len(message_ids) == 4
    assert message_ids[0] is not None
    assert message_ids[1] is not None
    assert message_ids[2] is None
    # Each id in the error is stored whole, and every stored message has its id there.
    assert listed == set(confirmed)
    for index, message_id in enumerate(message_ids):
        if message_id is not None:
            assert read[message_id] == Message(messages[index]["meta"], messages[index]["contents"])
    assert len(warnings) == 1
    assert "messages[2]" in warnings[0]


def test_fork_child_gets_own_connection(clean_redis: RedisServer) -> None:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    session = engine.connect()
    message_id = session.claim_message_id()
    session.set_message_contents(message_id, b"body")
    session.set_message_meta(message_id, {"k": "v"})

    pid = os.fork()
    wrong = 0
    for _ in range(500):
        if session.get_message_contents(message_id) != b"body":
            wrong += 1
        if session.get_message_meta(message_id) != {"k": "v"}:
            wrong += 1
    if pid == 0:
        os._exit(1 if wrong else 0)

    _, status = os.waitpid(pid, 0)
    session.close()
    assert wrong == 0
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_exhausted_names_limit(clean_redis: RedisServer) -> None:
    engine = redis_engine.new(
        clean_redis.host, clean_redis.port, OFFSET, max_connections=2, socket_connect_timeout=0.2
    )
    first = engine.connect()
    second = engine.connect()

    with pytest.raises(StorageUnavailable, match="all 2 connections") as raised:
        engine.connect()
    assert "max_connections" in str(raised.value)

    first.close()
    second.close()
    engine.close()


def test_dropped_session_returns_connection(clean_redis: RedisServer) -> None:
    engine = redis_engine.new(
        clean_redis.host, clean_redis.port, OFFSET, max_connections=1, socket_connect_timeout=0.2
    )
    engine.connect().claim_message_id()
    gc.collect()

    with engine.connect() as session:
        assert len(session.get_all_messages()) == 1
    engine.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://[::1/0", "cannot be parsed"),
        ("redis://", "must name a host"),
        ("redis:///4", "must name a host"),
        ("redis://h/\u0663", "database offset"),
        ("redis://h/\u00b2", "database offset"),
    ],
)
def test_bad_url_rejected(url: str, expected: str) -> None:
    with pytest.raises(InvalidArgument, match=expected):
        open_engine(url)


def test_query_password_redacted() -> None:
    with pytest.raises(InvalidArgument) as raised:
        open_engine("redis://h/0?password=hunter2")

    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(raised.value.value)


@pytest.mark.parametrize("offset", [13, 16, 2**31])
def test_offset_error_gives_limit(clean_redis: RedisServer, offset: int) -> None:
    engine = redis_engine.new(clean_redis.host, clean_redis.port, offset)

    with pytest.raises(InvalidArgument, match="use an offset of at most 12"):
        engine.connect()


@pytest.mark.parametrize("offset", [0, 2])
def test_too_few_databases_named(offset: int) -> None:
    with RedisServer(config={"databases": "3"}) as server:
        engine = redis_engine.new(server.host, server.port, offset)

        with pytest.raises(InvalidArgument) as raised:
            engine.connect()
        engine.close()

    message = str(raised.value)
    assert raised.value.param == "offset"
    assert "four databases from the offset" in message
    assert "has only 3" in message
    assert "databases setting" in message
    assert f"raise databases to at least {offset + 4}" in message
    assert "at most -" not in message


def test_server_with_password_starts() -> None:
    with RedisServer(config={"requirepass": "s3cret"}) as server:
        assert server.client().ping()
        engine = redis_engine.from_url(f"redis://:s3cret@{server.host}:{server.port}/0")
        with engine.connect() as session:
            assert session.get_all_messages() == []
        assert "s3cret" not in repr(engine)
        engine.close()
