"""Tests of ``slimta-storage check`` and :func:`slimta.storage.redis.check_queue`.

The broken queues are written with plain redis-py commands, the way
another writer of the layout or a writer that crashed halfway leaves
them, into the databases OFFSET to OFFSET+3 of the test server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import OFFSET
from test_cli import console, unused_port

from slimta.storage import InvalidArgument, SessionClosed, cli, memory
from slimta.storage import redis as redis_engine
from slimta.storage.redis import (
    CheckReport,
    IncompleteMessage,
    LayoutKey,
    Orphan,
    RedisEngine,
    RedisSession,
    check_queue,
)
from slimta.storage.redis import _check as check_module
from slimta.storage.redis._scripts import SCRIPTS
from slimta.storage.testing import RedisServer

HOUR = 3600.0
META, CONTENTS, LOCKS = OFFSET + 1, OFFSET + 2, OFFSET + 3


def uid(name: str) -> str:
    """Return a UUID made from ``name``, so that check takes its keys for orphans of the queue."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


# Ids of keys that no message owns, named like the ids claim_message_id creates.
ORPHAN = uid("orphan")
GONE_META, GONE_CONTENTS, GONE_LOCK, GONE_RETRY = (uid(f"gone-{kind}") for kind in ("m", "c", "l", "r"))
# An unstored key named like an id, of a type that the layout gives no id
# key. A list is not another queue's key, so it counts as a wrong type.
WRONG = uid("wrong")

Raw = Callable[[int], redis.Redis]


@pytest.fixture
def raw(clean_redis: RedisServer) -> Iterator[Raw]:
    """Return a function that gives a plain client on database OFFSET + n of the test server."""
    clients: dict[int, redis.Redis] = {}

    def client(n: int) -> redis.Redis:
        if n not in clients:
            clients[n] = clean_redis.client(OFFSET + n)
        return clients[n]

    yield client
    for opened in clients.values():
        opened.close()


@pytest.fixture
def engine(clean_redis: RedisServer) -> Iterator[RedisEngine]:
    opened = redis_engine.from_url(clean_redis.url(OFFSET))
    yield opened
    opened.close()


@pytest.fixture
def session(engine: RedisEngine) -> Iterator[RedisSession]:
    with engine.connect() as opened:
        yield opened


def write_message(raw: Raw, message_id: str, age: float = 2 * HOUR) -> None:
    """Write a complete message the way a writer that claims first leaves it."""
    raw(0).sadd("message_ids", message_id)
    raw(1).hset(message_id, mapping={"timestamp": repr(time.time() - age), "sender": "a@example.com"})
    raw(2).set(message_id, b"Subject: hi\r\n\r\nbody\r\n")


def dump(raw: Raw) -> dict[int, dict[bytes, Any]]:
    """Return every key of the four databases with its type, serialized value and whether it expires."""
    found: dict[int, dict[bytes, Any]] = {}
    for n in range(4):
        client = raw(n)
        found[n] = {
            key: (client.type(key), client.dump(key), client.ttl(key) >= 0) for key in client.scan_iter()
        }
    return found


def write_count(server: RedisServer) -> int:
    """Return the server's count of writes since the last save, which only writes increase."""
    return int(server.client().info("persistence")["rdb_changes_since_last_save"])


def run_cli(engine: RedisEngine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``slimta-storage check ARGS`` in this process on ``engine``."""
    status = cli.main(["check", *args], engine=engine)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# What the check finds


def test_clean_queue(session: RedisSession, clean_redis: RedisServer) -> None:
    stored = session.store_message({"timestamp": repr(time.time())}, b"body", retry=time.time())
    assert session.lock_message(stored, 30.0, owner="relayer-1")
    claimed = session.claim_message_id()
    session.set_message_meta(claimed, {"timestamp": repr(time.time() - 10 * HOUR)})
    session.set_message_contents(claimed, b"body")

    report = check_queue(session)

    assert report.clean
    assert report.found == 0
    assert report.stored_messages == 2
    assert report.repairs is None


def test_incomplete_without_contents(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "no-contents")
    raw(1).hset("no-contents", "timestamp", repr(time.time() - 2 * HOUR))

    report = check_queue(session)

    assert len(report.incomplete) == 1
    found = report.incomplete[0]
    assert found.message_id == "no-contents"
    assert found.missing == ("contents",)
    assert found.age is not None
    assert 2 * HOUR - 60 < found.age < 2 * HOUR + 60
    assert not report.clean


def test_incomplete_without_meta(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "no-meta")
    raw(2).set("no-meta", b"body")

    report = check_queue(session)

    assert report.incomplete == [IncompleteMessage("no-meta", ("meta",), None, None)]


def test_incomplete_claimed_only(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "claimed")

    report = check_queue(session)

    assert report.incomplete == [IncompleteMessage("claimed", ("meta", "contents"), None, None)]


def test_incomplete_timestamp_not_number(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "odd-time")
    raw(1).hset("odd-time", "timestamp", "yesterday")

    report = check_queue(session)

    assert report.incomplete == [IncompleteMessage("odd-time", ("contents",), None, "yesterday")]


def test_incomplete_integer_timestamp(session: RedisSession, raw: Raw) -> None:
    # The original Lua library stores os.time(), whole seconds.
    raw(0).sadd("message_ids", "lua")
    raw(1).hset("lua", "timestamp", str(int(time.time() - 2 * HOUR)))

    report = check_queue(session)

    assert [item.message_id for item in report.incomplete] == ["lua"]
    assert report.incomplete[0].age is not None


def test_incomplete_recent_not_reported(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "young", "future")
    raw(1).hset("young", "timestamp", repr(time.time() - 60))
    raw(1).hset("future", "timestamp", repr(time.time() + HOUR))

    report = check_queue(session)

    assert report.incomplete == []
    assert report.recent_incomplete == 2
    assert report.clean


def test_min_age(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "minute-old")
    raw(1).hset("minute-old", "timestamp", repr(time.time() - 60))

    report = check_queue(session, min_age=30)

    assert [item.message_id for item in report.incomplete] == ["minute-old"]
    assert report.min_age == 30


def test_injected_clock(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "fixed")
    raw(1).hset("fixed", "timestamp", "1000")

    report = check_queue(session, clock=lambda: 1000 + HOUR + 5)

    assert report.incomplete[0].age == HOUR + 5
    assert report.checked_at == 1000 + HOUR + 5


def test_empty_meta_reported(session: RedisSession, raw: Raw) -> None:
    empty = session.store_message({}, b"body")

    report = check_queue(session)

    assert raw(1).exists(empty) == 0
    assert report.incomplete == [IncompleteMessage(empty, ("meta",), None, None)]


def test_repair_keeps_young_and_unknown_age(session: RedisSession, raw: Raw) -> None:
    empty = session.store_message({}, b"body")
    raw(0).sadd("message_ids", "young", "old")
    raw(1).hset("young", "timestamp", repr(time.time() - 60))
    raw(1).hset("old", "timestamp", repr(time.time() - 2 * HOUR))

    report = check_queue(session, repair=True, min_age=HOUR)

    assert report.repairs is not None
    assert [item.message_id for item in report.repairs.deleted_incomplete] == ["old"]
    assert raw(0).smembers("message_ids") == {b"young", empty.encode()}
    assert raw(2).get(empty) == b"body"

    report = check_queue(session, repair=True, repair_unknown_age=True, min_age=HOUR)

    assert report.repairs is not None
    assert [item.message_id for item in report.repairs.deleted_incomplete] == [empty]
    assert raw(0).smembers("message_ids") == {b"young"}
    assert raw(1).hget("young", "timestamp") is not None


def test_orphans_of_each_kind(session: RedisSession, raw: Raw) -> None:
    write_message(raw, "kept")
    raw(1).hset(GONE_META, "sender", "a@example.com")
    raw(2).set(GONE_CONTENTS, b"body")
    raw(3).set(GONE_LOCK, "locked", px=60_000)
    raw(0).zadd("retry_queue", {GONE_RETRY: 5.0, "kept": 6.0})

    report = check_queue(session)

    assert report.orphans == [
        Orphan("meta", GONE_META, META),
        Orphan("contents", GONE_CONTENTS, CONTENTS),
        Orphan("lock", GONE_LOCK, LOCKS),
        Orphan("retry", GONE_RETRY, OFFSET),
    ]
    assert report.found == 4


def test_foreign_keys_in_ids_database(session: RedisSession, raw: Raw) -> None:
    raw(0).set("config", "x")
    raw(0).hset("stats", "delivered", "3")
    raw(0).set(b"\xff", "x")

    report = check_queue(session)

    assert report.foreign_keys == [
        LayoutKey(OFFSET, "config", "string", None),
        LayoutKey(OFFSET, "stats", "hash", None),
        LayoutKey(OFFSET, "\udcff", "string", None),
    ]
    assert report.wrong_types == []


def test_foreign_keys_named_invalid_ids(session: RedisSession, raw: Raw) -> None:
    raw(1).hset("session:1 user", "name", "x")
    raw(2).set("x" * 256, "x")
    raw(3).set("", "x")

    report = check_queue(session)

    assert report.foreign_keys == [
        LayoutKey(META, "session:1 user", "hash", None),
        LayoutKey(CONTENTS, "x" * 256, "string", None),
        LayoutKey(LOCKS, "", "string", None),
    ]
    assert report.orphans == []


def test_keys_of_other_forms_are_foreign(session: RedisSession, raw: Raw) -> None:
    # Another application's keys, named like valid ids but not like UUIDs.
    raw(1).hset("cache:session:42", "user", "x")
    raw(2).set("cache:session:42", "x")
    raw(3).set("legacy.queue.0001", "locked")
    raw(1).hset(ORPHAN, "a", "b")
    upper = uid("upper").upper()
    raw(2).set(upper, b"body")

    report = check_queue(session, repair=True)

    assert report.foreign_keys == [
        LayoutKey(META, "cache:session:42", "hash", None),
        LayoutKey(CONTENTS, "cache:session:42", "string", None),
        LayoutKey(LOCKS, "legacy.queue.0001", "string", None),
    ]
    assert report.orphans == [Orphan("meta", ORPHAN, META), Orphan("contents", upper, CONTENTS)]
    assert report.repairs is not None
    assert len(report.repairs.removed_orphans) == 2
    assert raw(1).hgetall("cache:session:42") == {b"user": b"x"}
    assert raw(2).get("cache:session:42") == b"x"
    assert raw(3).get("legacy.queue.0001") == b"locked"
    assert raw(1).exists(ORPHAN) == 0
    assert raw(2).exists(upper) == 0


def test_non_uuid_orphans_option(session: RedisSession, raw: Raw) -> None:
    raw(1).hset("legacy.queue.0001", "sender", "a@example.com")
    raw(2).set("has space", b"body")

    report = check_queue(session, repair=True, non_uuid_orphans=True)

    assert report.orphans == [Orphan("meta", "legacy.queue.0001", META)]
    assert report.foreign_keys == [LayoutKey(CONTENTS, "has space", "string", None)]
    assert raw(1).exists("legacy.queue.0001") == 0
    assert raw(2).get("has space") == b"body"


# Keys that show another queue sharing these databases, written as that
# queue's writer would write them: (database of this layout, key, type).
OVERLAP_SIGNS = [
    (1, "message_ids", "set"),
    (2, "message_ids", "set"),
    (3, "message_ids", "set"),
    (1, "retry_queue", "zset"),
    (3, "retry_queue", "zset"),
    (2, ORPHAN, "hash"),
    (3, ORPHAN, "hash"),
    (1, ORPHAN, "string"),
    (0, ORPHAN, "hash"),
    (0, ORPHAN, "string"),
]


def write_key(client: redis.Redis, key: str, kind: str) -> None:
    if kind == "set":
        client.sadd(key, uid("other-queue"))
    elif kind == "zset":
        client.zadd(key, {uid("other-queue"): 1.0})
    elif kind == "hash":
        client.hset(key, "timestamp", "1")
    else:
        client.set(key, b"body")


@pytest.mark.parametrize(("database", "key", "kind"), OVERLAP_SIGNS)
def test_overlap_rejects_repair(session: RedisSession, raw: Raw, database: int, key: str, kind: str) -> None:
    write_key(raw(database), key, kind)
    # What a repair would otherwise change: the other queue's contents look like orphan locks.
    raw(3).set(uid("other-contents"), b"body")
    raw(0).sadd("message_ids", "claimed")
    raw(1).hset("claimed", "timestamp", "1")
    before = dump(raw)

    report = check_queue(session, repair=True, repair_unknown_age=True)

    assert report.overlap_keys == [LayoutKey(OFFSET + database, key, kind, None)]
    assert report.orphans == [Orphan("lock", uid("other-contents"), LOCKS)]
    assert len(report.incomplete) == 1
    assert report.repairs is None
    assert report.repair_rejected is not None
    assert "another queue" in report.repair_rejected
    assert f"{key} ({kind}) in db {OFFSET + database}" in report.repair_rejected
    assert not report.clean
    assert dump(raw) == before


def test_overlap_reported_without_repair(session: RedisSession, raw: Raw) -> None:
    raw(1).sadd("message_ids", uid("other-queue"))

    report = check_queue(session)

    assert report.overlap_keys == [LayoutKey(META, "message_ids", "set", None)]
    assert report.wrong_types == []
    assert report.foreign_keys == []
    assert report.repair_rejected is None
    assert report.found == 1


@pytest.mark.parametrize(("database", "kind"), [(1, "string"), (2, "hash"), (3, "hash")])
def test_stored_wrong_type_not_overlap(session: RedisSession, raw: Raw, database: int, kind: str) -> None:
    # A key under a stored id is this queue's own key of the wrong type.
    stored = uid("stored")
    raw(0).sadd("message_ids", stored)
    raw(database).delete(stored)
    write_key(raw(database), stored, kind)

    report = check_queue(session, repair=True)

    expected = {1: "hash", 2: "string", 3: "string"}[database]
    assert report.overlap_keys == []
    assert report.wrong_types == [LayoutKey(OFFSET + database, stored, kind, expected)]
    assert report.repair_rejected is None


def test_contents_with_expiry_is_overlap(session: RedisSession, raw: Raw) -> None:
    # The layout never sets an expiry on contents, so this is the lock of a queue one below.
    lock = uid("lock-of-queue-below")
    raw(2).set(lock, "relayer-1", px=600_000)
    raw(2).set(ORPHAN, b"body")
    before = dump(raw)

    report = check_queue(session, repair=True)

    assert report.overlap_keys == [LayoutKey(CONTENTS, lock, "string", None)]
    assert report.orphans == [Orphan("contents", ORPHAN, CONTENTS)]
    assert report.repair_rejected is not None
    assert dump(raw) == before


def test_non_uuid_keys_not_overlap(session: RedisSession, raw: Raw) -> None:
    # Another application's keys of any type stay foreign, even where a queue's would be a sign.
    raw(1).set("cache:session:42", "x")
    raw(2).set("cache:token:7", "x", px=600_000)
    raw(3).hset("cache:user:3", "name", "x")
    raw(1).hset(ORPHAN, "a", "b")

    report = check_queue(session, repair=True)

    assert report.overlap_keys == []
    assert report.foreign_keys == [
        LayoutKey(META, "cache:session:42", "string", None),
        LayoutKey(CONTENTS, "cache:token:7", "string", None),
        LayoutKey(LOCKS, "cache:user:3", "hash", None),
    ]
    assert report.repair_rejected is None
    assert report.repaired == 1


def test_uuid_keys_of_other_types_not_overlap(session: RedisSession, raw: Raw) -> None:
    # No queue writes an id key of these types, so they are wrong types, not another queue's keys.
    lists, sets, zsets = uid("list"), uid("set"), uid("zset")
    raw(1).rpush(lists, "x")
    raw(2).sadd(sets, "x")
    raw(3).zadd(zsets, {"x": 1.0})

    report = check_queue(session, repair=True)

    assert report.overlap_keys == []
    assert report.wrong_types == [
        LayoutKey(META, lists, "list", "hash"),
        LayoutKey(CONTENTS, sets, "set", "string"),
        LayoutKey(LOCKS, zsets, "zset", "string"),
    ]
    assert report.repair_rejected is None


# Another queue at OFFSET + distance, written with the engine. "empty" is a
# message stored with an empty meta, so it has no meta hash, and "claimed"
# an id claimed and never written. "full" has meta, contents and a retry
# time. "+lock" adds a lock with an expiry.
OTHER_STATES = ["empty", "empty+lock", "claimed", "claimed+lock", "full+lock"]
ID, IDS, RETRY = "{id}", "message_ids", "retry_queue"
# The keys of that queue that check must report as keys of an overlapping
# queue: (database of this layout, key, type). An empty tuple means that
# none of its keys are in these four databases.
OVERLAP_BY_DISTANCE: dict[int, list[tuple[tuple[int, str, str], ...]]] = {
    -3: [
        (),
        ((0, ID, "string"),),
        (),
        ((0, ID, "string"),),
        ((0, ID, "string"),),
    ],
    -2: [
        ((0, ID, "string"),),
        ((0, ID, "string"), (1, ID, "string")),
        (),
        ((1, ID, "string"),),
        ((0, ID, "string"), (1, ID, "string")),
    ],
    -1: [
        ((1, ID, "string"),),
        ((1, ID, "string"), (2, ID, "string")),
        (),
        ((2, ID, "string"),),
        ((0, ID, "hash"), (1, ID, "string"), (2, ID, "string")),
    ],
    1: [
        ((1, IDS, "set"),),
        ((1, IDS, "set"),),
        ((1, IDS, "set"),),
        ((1, IDS, "set"),),
        ((1, IDS, "set"), (1, RETRY, "zset"), (2, ID, "hash")),
    ],
    2: [
        ((2, IDS, "set"),),
        ((2, IDS, "set"),),
        ((2, IDS, "set"),),
        ((2, IDS, "set"),),
        ((2, IDS, "set"), (2, RETRY, "zset"), (3, ID, "hash")),
    ],
    3: [
        ((3, IDS, "set"),),
        ((3, IDS, "set"),),
        ((3, IDS, "set"),),
        ((3, IDS, "set"),),
        ((3, IDS, "set"), (3, RETRY, "zset")),
    ],
}
OVERLAP_CASES = [
    pytest.param(distance, state, expected, id=f"{distance:+d}-{state}")
    for distance, rows in OVERLAP_BY_DISTANCE.items()
    for state, expected in zip(OTHER_STATES, rows, strict=True)
]


def write_other_queue(server: RedisServer, offset: int, state: str) -> str:
    """Write one message of ``state`` into a queue at ``offset`` with the engine, and return its id."""
    engine = redis_engine.from_url(server.url(offset))
    try:
        with engine.connect() as other:
            if state.startswith("empty"):
                message_id = other.store_message({}, b"hello")
            elif state.startswith("claimed"):
                message_id = other.claim_message_id()
            else:
                meta = {"timestamp": repr(time.time())}
                message_id = other.store_message(meta, b"hello", retry=time.time() + HOUR)
            if state.endswith("+lock"):
                assert other.lock_message(message_id, 600.0)
    finally:
        engine.close()
    return message_id


def dump_server(server: RedisServer) -> dict[int, dict[bytes, Any]]:
    """Return every key of the databases that either queue uses, with its type and serialized value."""
    found = {}
    for number in range(OFFSET - 3, OFFSET + 7):
        client = server.client(number)
        try:
            found[number] = {key: (client.type(key), client.dump(key)) for key in client.scan_iter()}
        finally:
            client.close()
    return found


@pytest.mark.parametrize(("distance", "state", "expected"), OVERLAP_CASES)
def test_overlap_at_each_distance(
    session: RedisSession,
    clean_redis: RedisServer,
    distance: int,
    state: str,
    expected: tuple[tuple[int, str, str], ...],
) -> None:
    message_id = write_other_queue(clean_redis, OFFSET + distance, state)
    before = dump_server(clean_redis)

    report = check_queue(session, repair=True, repair_unknown_age=True)

    keys = [LayoutKey(OFFSET + n, key.format(id=message_id), kind, None) for n, key, kind in expected]
    assert report.overlap_keys == sorted(keys, key=lambda item: (item.database, item.key))
    if expected:
        assert report.repair_rejected is not None
        assert "another queue" in report.repair_rejected
    else:
        # Nothing of the other queue is in these databases, so nothing of it can be repaired away.
        assert report.clean
        assert report.repair_rejected is None
    assert dump_server(clean_redis) == before


def test_overlap_undetectable_states(session: RedisSession, raw: Raw) -> None:
    # Keys of another queue that look like this queue's own orphans, as
    # docs/operations.rst lists them. A queue one below locked a claimed id
    # without an expiry:
    below = uid("claimed-below")
    raw(2).set(below, "locked")
    # A queue one above has contents left but no message_ids:
    above = uid("contents-above")
    raw(3).set(above, b"hello")

    report = check_queue(session)

    assert report.overlap_keys == []
    assert report.orphans == [Orphan("contents", below, CONTENTS), Orphan("lock", above, LOCKS)]


def test_wrong_types(session: RedisSession, raw: Raw) -> None:
    for message_id in ("meta-string", "contents-hash", "lock-list"):
        write_message(raw, message_id)
    raw(1).delete("meta-string")
    raw(1).set("meta-string", "x")
    raw(2).delete("contents-hash")
    raw(2).hset("contents-hash", "a", "b")
    raw(3).rpush("lock-list", "locked")
    orphan_list = uid("orphan-list")
    raw(1).rpush(orphan_list, "x")

    report = check_queue(session)

    assert report.wrong_types == [
        LayoutKey(META, orphan_list, "list", "hash"),
        LayoutKey(META, "meta-string", "string", "hash"),
        LayoutKey(CONTENTS, "contents-hash", "hash", "string"),
        LayoutKey(LOCKS, "lock-list", "list", "string"),
    ]
    # A wrong-typed key is reported once, as such, not as missing or as an orphan.
    assert report.incomplete == []
    assert report.orphans == []


def test_message_ids_not_a_set(session: RedisSession, raw: Raw) -> None:
    raw(0).set("message_ids", "x")
    raw(1).hset("some-id", "timestamp", "1")

    report = check_queue(session)

    assert report.wrong_types == [LayoutKey(OFFSET, "message_ids", "string", "set")]
    assert report.orphans == []
    assert len(report.skipped_checks) == 1
    assert "message_ids is a string" in report.skipped_checks[0]
    assert not report.clean


def test_retry_queue_not_a_zset(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("retry_queue", "some-id")

    report = check_queue(session)

    assert report.wrong_types == [LayoutKey(OFFSET, "retry_queue", "set", "zset")]
    assert "retry_queue is a set" in report.skipped_checks[0]


def test_invalid_ids(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "has space", "x" * 256, b"caf\xc3\xa9", b"\xff", "valid")
    raw(1).hset("has space", "timestamp", "1")
    write_message(raw, "valid")

    report = check_queue(session)

    assert report.invalid_ids == sorted(["has space", "x" * 256, "café", "\udcff"])
    # The meta of a stored invalid id is part of that message, not a foreign key.
    assert report.foreign_keys == []
    assert report.incomplete == []


def test_lock_without_expiry(session: RedisSession, raw: Raw) -> None:
    write_message(raw, "stuck")
    write_message(raw, "held")
    raw(3).set("stuck", "locked")
    raw(3).set("held", "relayer-1", px=60_000)

    report = check_queue(session)

    assert report.locks_without_expiry == ["stuck"]
    assert report.found == 1


def test_check_writes_nothing(session: RedisSession, raw: Raw, clean_redis: RedisServer) -> None:
    write_message(raw, "good")
    raw(0).sadd("message_ids", "claimed")
    raw(1).hset(ORPHAN, "a", "b")
    raw(3).set("good", "locked")
    raw(0).set("foreign", "x")
    before = dump(raw)
    writes = write_count(clean_redis)

    report = check_queue(session)

    assert report.found == 4
    assert write_count(clean_redis) == writes
    assert dump(raw) == before


# Repair


def broken_queue(raw: Raw) -> dict[str, Any]:
    """Write one finding of every category next to two complete messages."""
    write_message(raw, "good-1")
    write_message(raw, "good-2")
    raw(3).set("good-2", "relayer-1", px=60_000)
    raw(0).zadd("retry_queue", {"good-1": 10.0})

    raw(0).sadd("message_ids", "old-incomplete", "unknown-age")
    raw(1).hset("old-incomplete", "timestamp", repr(time.time() - 2 * HOUR))
    raw(3).set("old-incomplete", "locked", px=60_000)
    raw(0).zadd("retry_queue", {"old-incomplete": 20.0})
    raw(2).set("unknown-age", b"body")

    raw(1).hset(ORPHAN, "a", "b")
    raw(2).set(ORPHAN, b"body")
    raw(3).set(ORPHAN, "locked")
    raw(0).zadd("retry_queue", {ORPHAN: 30.0})

    write_message(raw, "stuck")
    raw(3).set("stuck", "locked")

    raw(0).set("foreign", "x")
    raw(1).rpush(WRONG, "x")
    raw(0).sadd("message_ids", "has space")
    return {"good": {n: _keys_of(raw, n, ["good-1", "good-2"]) for n in range(4)}}


def _keys_of(raw: Raw, n: int, names: list[str]) -> dict[str, Any]:
    return {name: raw(n).dump(name) for name in names}


def test_repair_fixes_safe_findings(session: RedisSession, raw: Raw) -> None:
    before = broken_queue(raw)

    report = check_queue(session, repair=True)

    assert report.repairs is not None
    assert [item.message_id for item in report.repairs.deleted_incomplete] == ["old-incomplete"]
    assert sorted(orphan.kind for orphan in report.repairs.removed_orphans) == [
        "contents",
        "lock",
        "meta",
        "retry",
    ]
    assert report.repairs.expired_locks == ["stuck"]
    # Left: unknown-age, foreign, wrong, 'has space'.
    assert report.problems == 4
    assert not report.clean

    assert not raw(0).sismember("message_ids", "old-incomplete")
    assert raw(0).zscore("retry_queue", "old-incomplete") is None
    for n in (1, 2, 3):
        assert raw(n).exists("old-incomplete") == 0
        assert raw(n).exists(ORPHAN) == 0
    assert raw(0).zscore("retry_queue", ORPHAN) is None
    assert 0 < raw(3).pttl("stuck") <= 300_000

    assert raw(0).sismember("message_ids", "unknown-age")
    assert raw(2).get("unknown-age") == b"body"
    assert raw(0).get("foreign") == b"x"
    assert raw(1).lrange(WRONG, 0, -1) == [b"x"]
    assert raw(0).sismember("message_ids", "has space")
    for n in range(4):
        assert _keys_of(raw, n, ["good-1", "good-2"]) == before["good"][n]
    assert raw(3).pttl("good-2") > 0


def test_repair_unknown_age(session: RedisSession, raw: Raw) -> None:
    broken_queue(raw)

    report = check_queue(session, repair=True, repair_unknown_age=True)

    assert report.repairs is not None
    assert [item.message_id for item in report.repairs.deleted_incomplete] == [
        "old-incomplete",
        "unknown-age",
    ]
    assert not raw(0).sismember("message_ids", "unknown-age")
    assert raw(2).exists("unknown-age") == 0
    assert report.problems == 3


def test_repair_idempotent(session: RedisSession, raw: Raw) -> None:
    broken_queue(raw)
    check_queue(session, repair=True, repair_unknown_age=True)
    after_first = dump(raw)

    second = check_queue(session, repair=True, repair_unknown_age=True)

    assert second.repaired == 0
    assert second.found == 3
    assert second.incomplete == []
    assert second.orphans == []
    assert second.locks_without_expiry == []
    # Only the expiry of the repaired lock keeps running down.
    assert dump(raw) == after_first


def test_repair_then_clean(session: RedisSession, raw: Raw) -> None:
    raw(1).hset(ORPHAN, "a", "b")
    raw(0).sadd("message_ids", "claimed")
    raw(1).hset("claimed", "timestamp", "1")
    write_message(raw, "stuck")
    raw(3).set("stuck", "locked")

    first = check_queue(session, repair=True)
    second = check_queue(session)

    assert first.found == 3
    assert first.repaired == 3
    assert first.clean
    assert second.found == 0
    assert second.clean


def test_lock_expiry_option(session: RedisSession, raw: Raw) -> None:
    write_message(raw, "stuck")
    raw(3).set("stuck", "locked")

    report = check_queue(session, repair=True, lock_expiry=30)

    assert report.repairs is not None
    assert report.repairs.lock_expiry == 30
    assert 0 < raw(3).pttl("stuck") <= 30_000
    assert raw(3).get("stuck") == b"locked"


def test_repair_keeps_wrong_typed_message(session: RedisSession, raw: Raw) -> None:
    raw(0).sadd("message_ids", "mixed")
    raw(2).hset("mixed", "a", "b")

    report = check_queue(session, repair=True, repair_unknown_age=True)

    assert report.wrong_types == [LayoutKey(CONTENTS, "mixed", "hash", "string")]
    assert report.incomplete == []
    assert raw(0).sismember("message_ids", "mixed")
    assert raw(2).hgetall("mixed") == {b"a": b"b"}


def test_repair_with_message_ids_not_a_set(session: RedisSession, raw: Raw) -> None:
    raw(0).set("message_ids", "x")
    raw(1).hset("some-id", "timestamp", "1")

    report = check_queue(session, repair=True)

    assert report.repaired == 0
    assert raw(1).hgetall("some-id") == {b"timestamp": b"1"}
    assert raw(0).get("message_ids") == b"x"


# Concurrent writers: each repair script checks its finding again.


def run_script(raw: Raw, name: str, keys: list[Any], args: list[Any]) -> Any:
    """Run one of the engine's scripts with EVAL on a plain client, as the repair does."""
    return raw(0).eval(SCRIPTS[name].source, len(keys), *keys, *args)


@pytest.mark.parametrize(("kind", "database"), [("meta", 1), ("contents", 2), ("lock", 3)])
def test_remove_orphans_rechecks_id(raw: Raw, kind: str, database: int) -> None:
    value: Any = {"a": "b"} if kind == "meta" else "x"
    for message_id in ("now-stored", "still-orphan"):
        if kind == "meta":
            raw(database).hset(message_id, mapping=value)
        else:
            raw(database).set(message_id, value)
    raw(0).sadd("message_ids", "now-stored")

    removed = run_script(
        raw, "remove_orphans", ["message_ids", "retry_queue", "now-stored", "still-orphan"], [OFFSET, kind]
    )

    assert removed == [0, 1]
    assert raw(database).exists("now-stored") == 1
    assert raw(database).exists("still-orphan") == 0


def test_remove_orphans_rechecks_retry(raw: Raw) -> None:
    raw(0).zadd("retry_queue", {"now-stored": 1.0, "still-orphan": 2.0})
    raw(0).sadd("message_ids", "now-stored")

    removed = run_script(
        raw, "remove_orphans", ["message_ids", "retry_queue", "now-stored", "still-orphan"], [OFFSET, "retry"]
    )

    assert removed == [0, 1]
    assert raw(0).zrange("retry_queue", 0, -1) == [b"now-stored"]


def test_remove_orphans_keeps_other_types(raw: Raw) -> None:
    raw(1).set("string-meta", "x")

    removed = run_script(
        raw, "remove_orphans", ["message_ids", "retry_queue", "string-meta"], [OFFSET, "meta"]
    )

    assert removed == [0]
    assert raw(1).get("string-meta") == b"x"


def test_orphan_stored_before_repair(
    session: RedisSession, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    racing = uid("racing")
    raw(1).hset(racing, "sender", "a@example.com")
    raw(1).hset(ORPHAN, "sender", "a@example.com")
    scan = check_module._Scanner.scan

    def scan_then_store(self: Any, report: CheckReport) -> None:
        scan(self, report)
        # A writer stores the id between the scan and the repair.
        raw(0).sadd("message_ids", racing)

    monkeypatch.setattr(check_module._Scanner, "scan", scan_then_store)

    report = check_queue(session, repair=True)

    assert sorted(orphan.message_id for orphan in report.orphans) == sorted([ORPHAN, racing])
    assert report.repairs is not None
    assert [orphan.message_id for orphan in report.repairs.removed_orphans] == [ORPHAN]
    assert raw(1).hgetall(racing) == {b"sender": b"a@example.com"}
    assert report.problems == 1


def test_incomplete_completed_before_repair(
    session: RedisSession, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw(0).sadd("message_ids", "slow-writer")
    raw(1).hset("slow-writer", "timestamp", repr(time.time() - 2 * HOUR))
    scan = check_module._Scanner.scan

    def scan_then_complete(self: Any, report: CheckReport) -> None:
        scan(self, report)
        raw(2).set("slow-writer", b"body")

    monkeypatch.setattr(check_module._Scanner, "scan", scan_then_complete)

    report = check_queue(session, repair=True)

    assert [item.message_id for item in report.incomplete] == ["slow-writer"]
    assert report.repaired == 0
    assert raw(0).sismember("message_ids", "slow-writer")
    assert raw(2).get("slow-writer") == b"body"


def test_delete_incomplete_rechecks(raw: Raw) -> None:
    keys = ["message_ids", "retry_queue", "m"]
    raw(0).sadd("message_ids", "m")
    raw(1).hset("m", "timestamp", "100")

    # Each case changes one thing the check saw, so the message is kept.
    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "1", "99"]) == 0
    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "0", ""]) == 0
    raw(2).set("m", b"body")
    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "1", "100"]) == 0
    raw(2).delete("m")
    raw(3).hset("m", "a", "b")
    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "1", "100"]) == 0
    raw(3).delete("m")
    assert raw(0).sismember("message_ids", "m")

    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "1", "100"]) == 1
    assert not raw(0).sismember("message_ids", "m")
    assert raw(1).exists("m") == 0
    assert run_script(raw, "delete_incomplete", keys, [OFFSET, "1", "100"]) == 0


def test_expire_locks_keeps_expiry(raw: Raw) -> None:
    raw(3).set("held", "relayer-1", px=5_000)
    raw(3).set("stuck", "locked")

    done = run_script(raw, "expire_locks", ["held", "stuck", "gone"], [OFFSET, 300_000])

    assert done == [0, 1, 0]
    assert raw(3).pttl("held") <= 5_000
    assert raw(3).pttl("stuck") > 5_000


# Arguments


def test_memory_session_rejected() -> None:
    with memory.new().connect() as opened, pytest.raises(InvalidArgument, match="Redis"):
        check_queue(opened)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"min_age": -1}, "min_age"),
        ({"min_age": float("nan")}, "min_age"),
        ({"min_age": "60"}, "min_age"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page_size": 100.0}, "page_size"),
        ({"lock_expiry": 0}, "lock_expiry"),
        ({"repair_unknown_age": True}, "repair_unknown_age"),
    ],
)
def test_invalid_options(session: RedisSession, options: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_queue(session, **options)

    assert raised.value.param == param


def test_closed_session(session: RedisSession) -> None:
    session.close()

    with pytest.raises(SessionClosed):
        check_queue(session)


def test_scripts_flushed(session: RedisSession, raw: Raw) -> None:
    raw(1).hset(ORPHAN, "a", "b")
    raw(0).script_flush()

    report = check_queue(session, repair=True)

    assert report.repaired == 1


# Paging


def test_large_queue_paging(session: RedisSession, raw: Raw, clean_redis: RedisServer) -> None:
    pipe = raw(0).pipeline(transaction=False)
    ids = [f"message-{i:05d}" for i in range(5000)]
    pipe.sadd("message_ids", *ids)
    pipe.execute()
    meta_pipe = raw(1).pipeline(transaction=False)
    contents_pipe = raw(2).pipeline(transaction=False)
    for i, message_id in enumerate(ids):
        meta_pipe.hset(message_id, "timestamp", repr(time.time() - 2 * HOUR))
        if i % 10:
            contents_pipe.set(message_id, b"body")
    for i in range(1200):
        meta_pipe.hset(uid(f"orphan-{i:05d}"), "a", "b")
    meta_pipe.execute()
    contents_pipe.execute()
    clean_redis.client().config_resetstat()

    report = check_queue(session, page_size=100)

    assert report.stored_messages == 5000
    assert len(report.incomplete) == 500
    assert len(report.orphans) == 1200
    assert report.found == 1700
    stats = clean_redis.client().info("commandstats")
    assert stats["cmdstat_sscan"]["calls"] >= 5000 // 100
    assert "cmdstat_keys" not in stats

    repaired = check_queue(session, page_size=100, repair=True)
    again = check_queue(session, page_size=100)

    assert repaired.repaired == 1700
    assert again.clean
    assert again.stored_messages == 4500


# The command line


def test_cli_clean_exit_zero(engine: RedisEngine, capsys: pytest.CaptureFixture[str]) -> None:
    with engine.connect() as session:
        session.store_message({"timestamp": repr(time.time())}, b"body")

    status, out, err = run_cli(engine, capsys)

    assert status == 0
    assert err == ""
    assert out.splitlines()[-1] == "no problems found"


def test_cli_problems_exit_one(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(1).hset(ORPHAN, "a", "b")
    raw(0).set("foreign", "x")

    status, out, _ = run_cli(engine, capsys)

    assert status == 1
    assert f"meta      {ORPHAN}  (db {META})" in out
    assert "db 4  foreign  (string)" in out
    assert raw(1).exists(ORPHAN) == 1


def test_cli_repair_all_exit_zero(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(1).hset(ORPHAN, "a", "b")

    status, out, _ = run_cli(engine, capsys, "--repair")
    again, _, _ = run_cli(engine, capsys)

    assert status == 0
    assert "[removed]" in out
    assert out.splitlines()[-1] == "repaired the 1 problem found"
    assert again == 0


def test_cli_stored_messages_count(engine: RedisEngine, capsys: pytest.CaptureFixture[str]) -> None:
    with engine.connect() as session:
        session.store_message({"timestamp": repr(time.time())}, b"body")

    _, one, _ = run_cli(engine, capsys)
    with engine.connect() as session:
        session.store_message({"timestamp": repr(time.time())}, b"body")
    _, two, _ = run_cli(engine, capsys)

    assert one.splitlines()[0] == f"checked databases {OFFSET} to {OFFSET + 3}: 1 stored message"
    assert two.splitlines()[0] == f"checked databases {OFFSET} to {OFFSET + 3}: 2 stored messages"


def test_cli_summary_counts_repairable(
    engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]
) -> None:
    broken_queue(raw)

    status, out, _ = run_cli(engine, capsys)

    assert status == 1
    assert out.splitlines()[-1] == (
        "10 problems found; run again with --repair to fix 6 of them, and add --repair-unknown-age"
        " to delete the 1 incomplete message of unknown age too"
    )


@pytest.mark.parametrize(
    ("finding", "summary"),
    [
        ("orphan", "1 problem found; run again with --repair to fix it"),
        ("orphans", "2 problems found; run again with --repair to fix them"),
        (
            "unknown-age",
            "1 problem found; run again with --repair --repair-unknown-age to delete the 1 incomplete"
            " message of unknown age",
        ),
        ("foreign", "1 problem found, which --repair cannot fix; follow the advice above"),
        ("overlap", "1 problem found, which --repair cannot fix; follow the advice above"),
    ],
)
def test_cli_summary_without_repair(
    engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str], finding: str, summary: str
) -> None:
    if finding in ("orphan", "orphans"):
        raw(1).hset(ORPHAN, "a", "b")
    if finding == "orphans":
        raw(2).set(ORPHAN, "body")
    if finding == "unknown-age":
        raw(0).sadd("message_ids", "claimed")
    if finding == "foreign":
        raw(0).set("foreign", "x")
    if finding == "overlap":
        raw(1).sadd("message_ids", uid("other-queue"))

    status, out, _ = run_cli(engine, capsys)

    assert status == 1
    assert out.splitlines()[-1] == summary


def test_cli_summary_after_repair(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(1).hset(ORPHAN, "a", "b")
    raw(0).set("foreign", "x")
    raw(0).set("another-foreign", "x")

    repaired, _, _ = run_cli(engine, capsys, "--repair")
    status, out, _ = run_cli(engine, capsys)

    assert repaired == 1
    assert status == 1
    assert out.splitlines()[-1] == "2 problems found, which --repair cannot fix; follow the advice above"


def test_cli_repair_leaves_foreign_exit_one(
    engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]
) -> None:
    raw(1).hset(ORPHAN, "a", "b")
    raw(0).set("foreign", "x")
    raw(0).sadd("message_ids", "claimed")

    status, out, _ = run_cli(engine, capsys, "--repair", "--lock-expiry", "60")

    assert status == 1
    assert "pass --repair-unknown-age" in out
    assert out.splitlines()[-1] == "3 problems found, 1 repaired, 2 remain"
    assert raw(0).get("foreign") == b"x"


def test_cli_json(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    broken_queue(raw)
    raw(0).set(b"\xff", "x")

    status, out, _ = run_cli(engine, capsys, "--json", "--repair")

    report = json.loads(out)
    assert status == 1
    assert report["clean"] is False
    assert report["counts"]["orphans"] == 4
    assert report["counts"]["incomplete"] == 2
    assert report["counts"]["foreign_keys"] == 2
    assert report["counts"]["wrong_types"] == 1
    assert report["counts"]["invalid_ids"] == 1
    assert report["counts"]["locks_without_expiry"] == 1
    assert report["counts"]["repaired"] == 6
    assert report["problems"] == 5
    assert report["orphans"]["retry"] == [ORPHAN]
    assert report["repaired"]["deleted_incomplete"] == ["old-incomplete"]
    assert report["repaired"]["expired_locks"] == ["stuck"]
    assert {"database": OFFSET, "key": "\udcff", "type": "string", "expected": None} in report["foreign_keys"]


def test_cli_json_without_repair(engine: RedisEngine, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(engine, capsys, "--json")

    report = json.loads(out)
    assert status == 0
    assert report["clean"] is True
    assert report["repaired"] is None
    assert report["databases"] == [OFFSET, OFFSET + 1, OFFSET + 2, OFFSET + 3]


@pytest.mark.parametrize(
    "args",
    [["--min-age", "-5"], ["--min-age", "soon"], ["--lock-expiry", "0"], ["--page-size", "0"]],
)
def test_cli_invalid_option(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", "redis://127.0.0.1:1/0", "check", *args])

    assert status == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "1001", "-3"])
def test_cli_page_size_out_of_range(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", "redis://127.0.0.1:1/0", "check", "--page-size", size])

    err = capsys.readouterr().err
    assert status == 2
    assert f"the page size must be from 1 to 1000, not '{size}'" in err


def test_default_page_size_in_range() -> None:
    assert 1 <= check_module.DEFAULT_PAGE_SIZE <= 100
    assert check_module.MAX_PAGE_SIZE == 1000


def test_cli_page_size_limits(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(1).hset(ORPHAN, "a", "b")

    for size in ("1", "1000"):
        status, out, _ = run_cli(engine, capsys, "--page-size", size)

        assert status == 1
        assert ORPHAN in out


def test_cli_incomplete_texts(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(0).sadd("message_ids", "meta-only", "contents-only", "claimed")
    raw(1).hset("meta-only", "timestamp", repr(time.time() - 2 * HOUR))
    raw(2).set("contents-only", b"body")

    status, out, _ = run_cli(engine, capsys)

    lines = out.splitlines()
    assert status == 1
    assert "  claimed  no meta and no contents, age unknown: no timestamp meta key" in lines
    assert "  contents-only  no meta, contents present, age unknown: no timestamp meta key" in lines
    assert any(line.startswith("  meta-only  no contents, meta present, age 7") for line in lines)
    assert any("empty meta has no meta hash" in line for line in lines)


def test_cli_overlap_rejects_repair(
    engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]
) -> None:
    raw(1).sadd("message_ids", uid("other-queue"))
    raw(3).set(uid("other-contents"), b"body")
    before = dump(raw)

    status, out, err = run_cli(engine, capsys, "--repair")

    assert status == 1
    assert f"db {META}  message_ids  (set)" in out
    assert "keys of another queue" in out
    assert out.splitlines()[-1] == "2 problems found; the repair was rejected, so nothing was changed"
    assert err.count("\n") == 1
    assert err.startswith("slimta-storage: error: repair rejected: ")
    assert "offsets at least 4 apart" in err
    assert dump(raw) == before


def test_cli_overlap_below_empty_meta(
    engine: RedisEngine, clean_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The queue one below stores a message without meta and locks it: only strings land here.
    message_id = write_other_queue(clean_redis, OFFSET - 1, "empty+lock")
    before = dump_server(clean_redis)

    status, out, err = run_cli(engine, capsys, "--repair")

    assert status == 1
    assert f"db {META}  {message_id}  (string)" in out
    assert f"db {CONTENTS}  {message_id}  (string)" in out
    assert "orphans" not in out
    assert "wrong type" not in out
    assert err.startswith("slimta-storage: error: repair rejected: ")
    assert dump_server(clean_redis) == before
    with clean_redis.client(OFFSET + 2) as locks:
        assert 0 < locks.pttl(message_id) <= 600_000


def test_cli_overlap_json(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(2).sadd("message_ids", uid("other-queue"))

    status, out, _ = run_cli(engine, capsys, "--json", "--repair")

    report = json.loads(out)
    assert status == 1
    assert report["counts"]["overlap_keys"] == 1
    assert report["overlap_keys"] == [
        {"database": CONTENTS, "key": "message_ids", "type": "set", "expected": None}
    ]
    assert report["repaired"] is None
    assert report["repair_rejected"].startswith("repair rejected: ")


def test_cli_non_uuid_orphans(engine: RedisEngine, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    raw(1).hset("legacy.queue.0001", "a", "b")

    kept, out, _ = run_cli(engine, capsys, "--repair")
    assert kept == 1
    assert "--non-uuid-orphans" in out
    assert raw(1).exists("legacy.queue.0001") == 1

    removed, out, _ = run_cli(engine, capsys, "--repair", "--non-uuid-orphans")
    assert removed == 0
    assert "[removed]" in out
    assert raw(1).exists("legacy.queue.0001") == 0


def test_cli_unknown_age_needs_repair(engine: RedisEngine, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(engine, capsys, "--repair-unknown-age")

    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("slimta-storage: error: --repair-unknown-age needs --repair")
    assert "repair_unknown_age" not in err


def test_cli_unknown_age_checked_first(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", f"redis://127.0.0.1:{unused_port()}/0", "check", "--repair-unknown-age"])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("slimta-storage: error: --repair-unknown-age needs --repair")


def test_cli_memory_engine(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", "memory://", "check"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "Redis layouts only" in captured.err


def test_cli_unreachable_server() -> None:
    port = unused_port()

    result = console("check", "--repair", url=f"redis://127.0.0.1:{port}/0")

    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr.count("\n") == 1
    assert stderr.startswith("slimta-storage: error: ")
    assert f"127.0.0.1:{port}" in stderr


def test_cli_console_script(clean_redis: RedisServer, raw: Raw) -> None:
    raw(1).hset(ORPHAN, "a", "b")

    result = console("--engine", clean_redis.url(OFFSET), "check", "--json", url=None)

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["orphans"]["meta"] == [ORPHAN]


def test_cli_help_lists_check(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--help"])

    assert status == 0
    assert "check a Redis queue against the layout" in capsys.readouterr().out
