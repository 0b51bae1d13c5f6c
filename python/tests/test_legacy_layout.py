"""The Redis engine reads and changes a queue written by the old slimta Lua writer.

That writer used plain commands, not scripts: SADD of the id, one HSET
per meta key, SET of the contents, ZADD of the retry time and SETEX of a
lock whose value is ``locked``. The fixture writes a queue the same way
with raw redis-py commands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import OFFSET

from slimta.storage import MessageNotFound, Session, cli
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

# Ids in the hyphenated UUID form and in another printable form, since
# the layout accepts ids from any writer.
LOCKED = "6f1c2d3e-8b57-4a8e-9a39-5d1f0f2b6c1e"
DEFERRED = "9b2e4c6a8d0f42e1b3c5d7e9f1a3b5c7"
CLAIMED = "legacy-claimed-0001"

LOCKED_META = {
    "timestamp": "1700000000.5",
    "attempts": "0",
    "protocol": "ESMTPS",
    "ehlo": "client.example.com",
    "ip": "192.0.2.10",
    "security": "TLS",
    "receiver": "mx.example.org",
    "auth_info": "",
    "sender": "alice@example.com",
    "recipients": "\0bob@example.net\0carol@example.net",
}
LOCKED_CONTENTS = b"From: alice@example.com\r\nSubject: legacy\r\n\r\nbody \xe9\x00\r\n"
DEFERRED_META = {"sender": "dave@example.com", "recipients": "\0erin@example.net", "attempts": "2"}
DEFERRED_CONTENTS = b"Subject: deferred\n\nbare LF body\n"

LOCK_SECONDS = 60
DATABASES = 16


def write_legacy_message(
    clients: list[redis.Redis],
    message_id: str,
    meta: dict[str, str],
    contents: bytes | None,
    retry: float | None,
) -> None:
    """Store one message with the commands of the old writer."""
    ids, meta_db, contents_db, _ = clients
    ids.sadd("message_ids", message_id)
    for key, value in meta.items():
        meta_db.hset(message_id, key, value)
    if contents is not None:
        contents_db.set(message_id, contents)
    if retry is not None:
        ids.zadd("retry_queue", {message_id: retry})


@pytest.fixture
def clients(clean_redis: RedisServer) -> Iterator[list[redis.Redis]]:
    """Return raw clients on the four databases of the queue, in layout order."""
    opened = [clean_redis.client(OFFSET + index) for index in range(4)]
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def legacy(clients: list[redis.Redis]) -> None:
    """Write a locked message, a deferred one and one with nothing but its id."""
    write_legacy_message(clients, LOCKED, LOCKED_META, LOCKED_CONTENTS, 1700000300.0)
    write_legacy_message(clients, DEFERRED, DEFERRED_META, DEFERRED_CONTENTS, 1700000100)
    write_legacy_message(clients, CLAIMED, {}, None, None)
    clients[3].setex(LOCKED, LOCK_SECONDS, "locked")


@pytest.fixture
def session(clean_redis: RedisServer, legacy: None) -> Iterator[Session]:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    with engine.connect() as opened:
        yield opened
    engine.close()


def test_legacy_all_listed(session: Session) -> None:
    listed = session.get_all_messages()

    assert sorted(listed) == sorted([LOCKED, DEFERRED, CLAIMED])
    assert len(listed) == 3


def test_legacy_deferred_listed(session: Session) -> None:
    assert session.get_deferred_messages() == [DEFERRED, LOCKED]


def test_legacy_deferred_range(session: Session) -> None:
    assert session.get_deferred_messages(1700000200) == [DEFERRED]


def test_legacy_active_listed(session: Session) -> None:
    assert session.get_active_messages() == [LOCKED]


def test_legacy_meta_read(session: Session) -> None:
    assert session.get_message_meta(LOCKED) == LOCKED_META
    assert session.get_message_meta(DEFERRED) == DEFERRED_META


def test_legacy_meta_empty(session: Session) -> None:
    assert session.get_message_meta(CLAIMED) == {}


def test_legacy_meta_key_read(session: Session) -> None:
    assert session.get_message_meta_key(LOCKED, "recipients") == "\0bob@example.net\0carol@example.net"
    assert session.get_message_meta_key(LOCKED, "auth_info") == ""
    assert session.get_message_meta_key(LOCKED, "dest_host") is None


def test_legacy_contents_read(session: Session) -> None:
    assert session.get_message_contents(LOCKED) == LOCKED_CONTENTS
    assert session.get_message_contents(DEFERRED) == DEFERRED_CONTENTS


def test_legacy_contents_none(session: Session) -> None:
    assert session.get_message_contents(CLAIMED) is None


def test_legacy_lock_held(session: Session) -> None:
    assert session.lock_message(LOCKED, 30) is False


def test_legacy_lock_kept(session: Session, clients: list[redis.Redis]) -> None:
    session.lock_message(LOCKED, 30)

    assert clients[3].get(LOCKED) == b"locked"
    assert clients[3].ttl(LOCKED) > 30


def test_legacy_unlock_frees(session: Session) -> None:
    session.unlock_message(LOCKED)

    assert session.lock_message(LOCKED, 30) is True


def test_legacy_short_lock_expires(session: Session, clients: list[redis.Redis]) -> None:
    # The old writer used SETEX with whole seconds. PSETEX is the same
    # command in milliseconds and keeps this test fast.
    clients[3].psetex(DEFERRED, 50, "locked")
    before_expiry = session.lock_message(DEFERRED, 30)

    time.sleep(0.2)
    after_expiry = session.lock_message(DEFERRED, 30)

    assert before_expiry is False
    assert after_expiry is True


def test_legacy_orphan_lock_not_active(session: Session, clients: list[redis.Redis]) -> None:
    # A lock key left for an id that is not stored is not an active message.
    clients[3].setex("orphan-id", LOCK_SECONDS, "locked")

    assert session.get_active_messages() == [LOCKED]


def test_legacy_meta_key_update(session: Session, clients: list[redis.Redis]) -> None:
    session.set_message_meta_key(DEFERRED, "attempts", "3")

    expected = {key.encode(): value.encode() for key, value in DEFERRED_META.items()}
    expected[b"attempts"] = b"3"
    assert clients[1].hgetall(DEFERRED) == expected


def test_legacy_delete_removes_keys(session: Session, clients: list[redis.Redis]) -> None:
    session.delete_message(LOCKED)

    assert clients[0].sismember("message_ids", LOCKED) == 0
    assert clients[0].zscore("retry_queue", LOCKED) is None
    assert clients[1].exists(LOCKED) == 0
    assert clients[2].exists(LOCKED) == 0
    assert clients[3].exists(LOCKED) == 0


def test_legacy_delete_keeps_others(session: Session) -> None:
    session.delete_message(LOCKED)

    assert sorted(session.get_all_messages()) == sorted([DEFERRED, CLAIMED])
    assert session.get_deferred_messages() == [DEFERRED]
    assert session.get_active_messages() == []
    with pytest.raises(MessageNotFound):
        session.get_message_meta(LOCKED)


def test_legacy_delete_all_empties(session: Session, clean_redis: RedisServer) -> None:
    for message_id in (LOCKED, DEFERRED, CLAIMED):
        session.delete_message(message_id)

    for db in range(DATABASES):
        assert clean_redis.client(db).dbsize() == 0, f"db {db}"


# The command line on the same queue


@pytest.fixture
def legacy_cli(clean_redis: RedisServer, legacy: None, capsysbinary: pytest.CaptureFixture[bytes]) -> Any:
    """Return a function that runs slimta-storage on the old writer's queue and returns status and stdout."""

    def run(*args: str) -> tuple[int, bytes]:
        status = cli.main(["--engine", clean_redis.url(OFFSET), *args])
        return status, capsysbinary.readouterr().out

    return run


def test_legacy_cli_list(legacy_cli: Any) -> None:
    status, out = legacy_cli("list", "--json")

    assert status == 0
    states = {item["id"]: item["state"] for item in json.loads(out)}
    assert states == {LOCKED: "active", DEFERRED: "deferred", CLAIMED: "incoming"}


def test_legacy_cli_show_and_cat(legacy_cli: Any) -> None:
    show_status, meta = legacy_cli("show", "--json", LOCKED)
    cat_status, contents = legacy_cli("cat", LOCKED)

    assert show_status == 0
    assert json.loads(meta) == {"id": LOCKED, "meta": LOCKED_META}
    assert cat_status == 0
    assert contents == LOCKED_CONTENTS


def test_legacy_cli_delete_all_empties(legacy_cli: Any, clean_redis: RedisServer) -> None:
    status, _ = legacy_cli("delete", LOCKED, DEFERRED, CLAIMED)

    assert status == 0
    for db in range(DATABASES):
        assert clean_redis.client(db).dbsize() == 0, f"db {db}"
