"""The rules of the spec for the session methods, run on every engine.

Each test gets a fresh engine from the ``kit`` fixture: a memory engine
with a fake clock, and a Redis engine on the test server with its
databases empty. ``kit.advance`` lets lock time pass.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
from conftest import OFFSET, EngineKit, FakeClock, stored_state

from slimta.storage import (
    InvalidArgument,
    Message,
    MessageInfo,
    MessageNotFound,
    Page,
    Session,
    SessionClosed,
    StorageUnavailable,
    memory,
)
from slimta.storage.testing import RedisServer

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# A valid id that no test claims.
UNKNOWN_ID = "never-claimed-id"

# Long enough that no lock taken with it expires during a test.
LONG_LOCK = 60.0

# Short locks for expiry tests, and a wait that outlasts them with a wide
# margin, so the Redis tests stay fast and still pass on a slow machine.
SHORT_LOCK = 0.05
PAST_SHORT_LOCK = 0.2

# Lock owners of two relayers, in the form the spec recommends.
OWNER_A = "0b9e4f8a-3c1d-4e5f-8a7b-6c5d4e3f2a1b"
OWNER_B = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def second_session(kit: EngineKit) -> Iterator[Session]:
    """Return another session on the engine of ``session``."""
    with kit.connect() as opened:
        yield opened


def redis_key_counts(kit: EngineKit) -> list[int]:
    """Return the number of keys in each of the four databases of the Redis queue."""
    assert kit.server is not None
    counts = []
    for index in range(4):
        with kit.server.client(OFFSET + index) as client:
            counts.append(client.dbsize())
    return counts


# claim_message_id


def test_claim_returns_uuid4(session: Session) -> None:
    message_id = session.claim_message_id()

    assert UUID4.fullmatch(message_id)
    assert uuid.UUID(message_id).version == 4
    assert str(uuid.UUID(message_id)) == message_id


def test_claim_ids_are_unique(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(300)]

    assert len(set(ids)) == 300


def test_claim_registers_at_once(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.get_all_messages() == [message_id]
    assert session.get_message_meta(message_id) == {}
    assert session.get_message_meta_key(message_id, "sender") is None
    assert session.get_message_contents(message_id) is None
    assert session.lock_message(message_id, LONG_LOCK) is True


def test_claim_not_deferred_or_active(session: Session) -> None:
    session.claim_message_id()

    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []


# store_message


def test_store_returns_new_uuid(session: Session) -> None:
    claimed = session.claim_message_id()

    message_id = session.store_message({"a": "1"}, b"body")

    assert UUID4.fullmatch(message_id)
    assert uuid.UUID(message_id).version == 4
    assert message_id != claimed
    assert sorted(session.get_all_messages()) == sorted([claimed, message_id])


def test_store_ids_are_unique(session: Session) -> None:
    ids = [session.store_message({}, b"x") for _ in range(100)]

    assert len(set(ids)) == 100
    assert sorted(session.get_all_messages()) == sorted(ids)


def test_store_whole_message_readable(session: Session, second_session: Session) -> None:
    meta = {"sender": "a@example.com", "recipients": "\0b@example.net", "empfänger": "ü"}
    contents = b"Subject: hi\r\n\r\n\0\xff body\r\n"

    message_id = session.store_message(meta, contents, 1234.5)

    assert second_session.get_message_meta(message_id) == meta
    assert second_session.get_message_meta_key(message_id, "sender") == "a@example.com"
    assert second_session.get_message_contents(message_id) == contents
    assert second_session.get_deferred_messages(1234.5) == [message_id]
    assert second_session.get_deferred_messages(1234.4) == []
    assert second_session.describe_message(message_id) == MessageInfo(message_id, len(contents), 1234.5, None)


def test_store_without_retry(session: Session) -> None:
    message_id = session.store_message({"a": "1"}, b"body")

    assert session.get_deferred_messages() == []
    assert session.describe_message(message_id).retry is None


def test_store_retry_none_explicit(session: Session) -> None:
    message_id = session.store_message({"a": "1"}, b"body", None)

    assert session.get_all_messages() == [message_id]
    assert session.get_deferred_messages() == []


def test_store_empty_meta_and_contents(session: Session) -> None:
    message_id = session.store_message({}, b"")

    assert session.get_message_meta(message_id) == {}
    assert session.get_message_contents(message_id) == b""


def test_store_bytes_like_contents(session: Session) -> None:
    contents = bytearray(b"a\r\nb")

    message_id = session.store_message({}, contents)
    contents[0:1] = b"z"
    read = session.get_message_contents(message_id)

    assert type(read) is bytes
    assert read == b"a\r\nb"


def test_store_not_locked(session: Session) -> None:
    message_id = session.store_message({"a": "1"}, b"body", 0.0)

    assert session.get_active_messages() == []
    assert session.lock_message(message_id, LONG_LOCK) is True


def test_store_then_write(session: Session) -> None:
    message_id = session.store_message({"a": "1", "b": "2"}, b"first")

    session.set_message_meta_key(message_id, "a", None)
    session.set_message_contents(message_id, b"second")
    session.set_message_retry(message_id, 5.0)

    assert session.get_message_meta(message_id) == {"b": "2"}
    assert session.get_message_contents(message_id) == b"second"
    assert session.get_deferred_messages() == [message_id]


# Bad arguments of store_message, each with the parameter that the error names.
BAD_STORE_ARGS = [
    pytest.param(({"a": 1}, b"x", None), "meta", id="meta-int-value"),
    pytest.param(({"": "v"}, b"x", None), "meta", id="meta-empty-key"),
    pytest.param(({"k\0": "v"}, b"x", None), "meta", id="meta-nul-key"),
    pytest.param(({"k": "\ud800"}, b"x", None), "meta", id="meta-lone-surrogate"),
    pytest.param(({"a": "1", "b": None}, b"x", None), "meta", id="meta-one-bad-value"),
    pytest.param(([("a", "1")], b"x", None), "meta", id="meta-not-mapping"),
    pytest.param(({"a": "1"}, "text", None), "contents", id="contents-str"),
    pytest.param(({"a": "1"}, None, None), "contents", id="contents-none"),
    pytest.param(({"a": "1"}, b"x", -1.0), "retry", id="retry-negative"),
    pytest.param(({"a": "1"}, b"x", float("nan")), "retry", id="retry-nan"),
    pytest.param(({"a": "1"}, b"x", float("inf")), "retry", id="retry-inf"),
    pytest.param(({"a": "1"}, b"x", True), "retry", id="retry-bool"),
    pytest.param(({"a": "1"}, b"x", "10"), "retry", id="retry-str"),
]


@pytest.mark.parametrize(("args", "param"), BAD_STORE_ARGS)
def test_store_bad_input_stores_nothing(
    kit: EngineKit, session: Session, stored: str, args: tuple[Any, ...], param: str
) -> None:
    before = stored_state(session)
    keys_before = redis_key_counts(kit) if kit.server is not None else None

    with pytest.raises(InvalidArgument) as caught:
        session.store_message(*args)

    assert caught.value.param.startswith(param)
    assert stored_state(session) == before
    if kit.server is not None:
        assert redis_key_counts(kit) == keys_before


# get_all_messages


def test_all_empty_queue(session: Session) -> None:
    assert session.get_all_messages() == []


def test_all_lists_each_once(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(5)]
    session.set_message_meta(ids[0], {"a": "1"})
    session.set_message_contents(ids[1], b"x")
    session.set_message_retry(ids[2], 10.0)
    session.lock_message(ids[3], LONG_LOCK)

    listed = session.get_all_messages()

    assert sorted(listed) == sorted(ids)
    assert len(listed) == len(set(listed))


def test_all_lists_many_ids(session: Session) -> None:
    # More ids than one page of the Redis engine's SSCAN loop.
    ids = [session.claim_message_id() for _ in range(2500)]

    listed = session.get_all_messages()

    assert sorted(listed) == sorted(ids)
    assert len(listed) == 2500


# set_message_meta and get_message_meta


def test_meta_empty_without_meta(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.get_message_meta(message_id) == {}


def test_meta_round_trips(session: Session) -> None:
    message_id = session.claim_message_id()
    meta = {"sender": "a@example.com", "recipients": "\0b@example.net", "attempts": "3"}

    session.set_message_meta(message_id, meta)

    assert session.get_message_meta(message_id) == meta


def test_meta_replace_removes_keys(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1", "b": "2"})

    session.set_message_meta(message_id, {"b": "20", "c": "30"})

    assert session.get_message_meta(message_id) == {"b": "20", "c": "30"}


def test_meta_empty_mapping_removes_all(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1", "b": "2"})

    session.set_message_meta(message_id, {})

    assert session.get_message_meta(message_id) == {}


def test_meta_accepts_any_mapping(session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_meta(message_id, MappingProxyType({"a": "1"}))

    assert session.get_message_meta(message_id) == {"a": "1"}


def test_meta_stored_by_value(session: Session) -> None:
    message_id = session.claim_message_id()
    meta = {"a": "1"}
    session.set_message_meta(message_id, meta)

    meta["a"] = "changed"
    session.get_message_meta(message_id)["a"] = "changed too"

    assert session.get_message_meta(message_id) == {"a": "1"}


def test_meta_values_with_nul(session: Session) -> None:
    message_id = session.claim_message_id()
    meta = {"recipients": "\0a@example.com\0b@example.net", "nul": "\0", "inner": "a\0b\0"}

    session.set_message_meta(message_id, meta)

    assert session.get_message_meta(message_id) == meta


def test_meta_empty_value_kept(session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_meta(message_id, {"security": ""})

    assert session.get_message_meta(message_id) == {"security": ""}
    assert session.get_message_meta_key(message_id, "security") == ""


def test_meta_long_value(session: Session) -> None:
    message_id = session.claim_message_id()
    value = "x" * (2 * 1024 * 1024) + "\0end"

    session.set_message_meta(message_id, {"long": value})

    assert session.get_message_meta(message_id) == {"long": value}


def test_meta_key_max_length(session: Session) -> None:
    message_id = session.claim_message_id()
    key = "k" * 255

    session.set_message_meta(message_id, {key: "v"})

    assert session.get_message_meta(message_id) == {key: "v"}


def test_meta_many_keys(session: Session) -> None:
    # Enough keys that the Redis script writes the hash in several slices.
    message_id = session.claim_message_id()
    meta = {f"key-{index}": f"value-{index}" for index in range(3000)}

    session.set_message_meta(message_id, meta)

    assert session.get_message_meta(message_id) == meta


def test_meta_many_keys_replaced(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {f"old-{index}": "x" for index in range(3000)})

    session.set_message_meta(message_id, {"new": "y"})

    assert session.get_message_meta(message_id) == {"new": "y"}


def test_meta_unicode(session: Session) -> None:
    message_id = session.claim_message_id()
    meta = {
        "empfänger": "Jürgen <j@exämple.de>",
        "件名": "こんにちは",
        "emoji 📨": "🚀 launch",
        "combining": "e\u0301",
        "rtl": "\u05e9\u05dc\u05d5\u05dd",
    }

    session.set_message_meta(message_id, meta)

    assert session.get_message_meta(message_id) == meta


def test_meta_surrogateescape_round_trips(session: Session) -> None:
    # The surrogateescape form of bytes that are not UTF-8, as read from other writers.
    message_id = session.claim_message_id()
    meta = {"raw\udcff": "\udcff\udcfe", "mixed": "é\udce9\udcc3 ok"}

    session.set_message_meta(message_id, meta)

    assert session.get_message_meta(message_id) == meta


# set_message_meta_key and get_message_meta_key


def test_meta_key_sets_one(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1", "b": "2"})

    session.set_message_meta_key(message_id, "a", "10")

    assert session.get_message_meta(message_id) == {"a": "10", "b": "2"}


def test_meta_key_adds_new(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    session.set_message_meta_key(message_id, "b", "2")

    assert session.get_message_meta(message_id) == {"a": "1", "b": "2"}


def test_meta_key_on_empty_meta(session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_meta_key(message_id, "attempts", "1")

    assert session.get_message_meta(message_id) == {"attempts": "1"}


def test_meta_key_reads_value(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1", "b": "\0x"})

    assert session.get_message_meta_key(message_id, "b") == "\0x"


def test_meta_key_unset_is_none(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    assert session.get_message_meta_key(message_id, "b") is None


def test_meta_key_none_removes(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1", "b": "2"})

    session.set_message_meta_key(message_id, "a", None)

    assert session.get_message_meta(message_id) == {"b": "2"}
    assert session.get_message_meta_key(message_id, "a") is None


def test_meta_key_remove_last(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    session.set_message_meta_key(message_id, "a", None)

    assert session.get_message_meta(message_id) == {}


def test_meta_key_remove_unset_noop(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    session.set_message_meta_key(message_id, "b", None)

    assert session.get_message_meta(message_id) == {"a": "1"}


def test_meta_key_remove_without_meta(session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_meta_key(message_id, "b", None)

    assert session.get_message_meta(message_id) == {}


def test_meta_key_unicode_and_nul(session: Session) -> None:
    message_id = session.claim_message_id()

    session.set_message_meta_key(message_id, "empfänger", "\0jürgen@exämple.de")

    assert session.get_message_meta_key(message_id, "empfänger") == "\0jürgen@exämple.de"


# set_message_contents and get_message_contents

CONTENTS = [
    pytest.param(bytes(range(256)), id="all-byte-values"),
    pytest.param(b"Subject: a\r\n\r\nline one\r\nline two\r\n", id="crlf"),
    pytest.param(b"Subject: a\n\nline one\nline two\n", id="bare-lf"),
    pytest.param(b"a\r\nb\nc\rd\n\r", id="mixed-line-endings"),
    pytest.param(b"\0", id="nul"),
    pytest.param(b"head\0\0tail\0", id="inner-nul"),
    pytest.param(b"Subject: caf\xe9\r\n\r\n\xc3\xa9t\xe9 \x80\xff\xfe\r\n", id="eight-bit"),
    pytest.param(b"", id="empty"),
    pytest.param(bytes(range(256)) * (5 * 4096), id="five-mib"),
]


@pytest.mark.parametrize("contents", CONTENTS)
def test_contents_exact(session: Session, contents: bytes) -> None:
    message_id = session.claim_message_id()

    session.set_message_contents(message_id, contents)
    read = session.get_message_contents(message_id)

    assert type(read) is bytes
    assert read == contents


def test_contents_none_without_contents(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})

    assert session.get_message_contents(message_id) is None


def test_contents_replaces_earlier(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_contents(message_id, b"first, and longer")

    session.set_message_contents(message_id, b"second")

    assert session.get_message_contents(message_id) == b"second"


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_contents_bytes_like(session: Session, wrap: Any) -> None:
    message_id = session.claim_message_id()

    session.set_message_contents(message_id, wrap(b"a\r\nb"))
    read = session.get_message_contents(message_id)

    assert type(read) is bytes
    assert read == b"a\r\nb"


# Unknown ids

# Every method that takes an id and raises MessageNotFound, with valid
# arguments after the id.
CALLS_WITH_ID = [
    pytest.param("set_message_meta", ({"a": "1"},), id="set_message_meta"),
    pytest.param("set_message_meta", ({},), id="set_message_meta-empty"),
    pytest.param("set_message_meta_key", ("a", "1"), id="set_message_meta_key"),
    pytest.param("set_message_meta_key", ("a", None), id="set_message_meta_key-remove"),
    pytest.param("set_message_contents", (b"x",), id="set_message_contents"),
    pytest.param("get_message_meta", (), id="get_message_meta"),
    pytest.param("get_message_meta_key", ("a",), id="get_message_meta_key"),
    pytest.param("get_message_contents", (), id="get_message_contents"),
    pytest.param("set_message_retry", (100.0,), id="set_message_retry"),
    pytest.param("lock_message", (LONG_LOCK,), id="lock_message"),
    pytest.param("lock_message", (LONG_LOCK, OWNER_A), id="lock_message-owner"),
    pytest.param("refresh_lock", (LONG_LOCK, OWNER_A), id="refresh_lock"),
    pytest.param("describe_message", (), id="describe_message"),
    pytest.param("get_message", (), id="get_message"),
    pytest.param("checkout_message", (LONG_LOCK,), id="checkout_message"),
    pytest.param("checkout_message", (LONG_LOCK, OWNER_A), id="checkout_message-owner"),
    pytest.param("finish_message", (), id="finish_message"),
    pytest.param("finish_message", (OWNER_A,), id="finish_message-owner"),
    pytest.param("defer_message", (100.0,), id="defer_message"),
    pytest.param("defer_message", (100.0, OWNER_A), id="defer_message-owner"),
]


@pytest.mark.parametrize(("method", "args"), CALLS_WITH_ID)
def test_unknown_id_raises(session: Session, stored: str, method: str, args: tuple[Any, ...]) -> None:
    before = stored_state(session)

    with pytest.raises(MessageNotFound) as caught:
        getattr(session, method)(UNKNOWN_ID, *args)

    assert caught.value.message_id == UNKNOWN_ID
    assert UNKNOWN_ID in str(caught.value)
    assert stored_state(session) == before


@pytest.mark.parametrize(("method", "args"), CALLS_WITH_ID)
def test_deleted_id_raises(session: Session, method: str, args: tuple[Any, ...]) -> None:
    message_id = session.claim_message_id()
    session.delete_message(message_id)

    with pytest.raises(MessageNotFound) as caught:
        getattr(session, method)(message_id, *args)

    assert caught.value.message_id == message_id
    assert session.get_all_messages() == []


def test_unknown_id_not_registered(session: Session) -> None:
    # A failed write must not register the id as a side effect.
    with pytest.raises(MessageNotFound):
        session.set_message_retry(UNKNOWN_ID, 1.0)
    with pytest.raises(MessageNotFound):
        session.lock_message(UNKNOWN_ID, LONG_LOCK)

    assert session.get_all_messages() == []
    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []


# Every write that takes an id, with valid arguments after the id.
WRITES_WITH_ID = [
    pytest.param("set_message_meta", ({"a": "1"},), id="set_message_meta"),
    pytest.param("set_message_meta", ({},), id="set_message_meta-empty"),
    pytest.param("set_message_meta_key", ("a", "1"), id="set_message_meta_key"),
    pytest.param("set_message_meta_key", ("sender", None), id="set_message_meta_key-remove"),
    pytest.param("set_message_contents", (b"x",), id="set_message_contents"),
    pytest.param("set_message_contents", (b"",), id="set_message_contents-empty"),
    pytest.param("set_message_retry", (100.0,), id="set_message_retry"),
    pytest.param("lock_message", (LONG_LOCK,), id="lock_message"),
    pytest.param("lock_message", (LONG_LOCK, OWNER_A), id="lock_message-owner"),
    pytest.param("refresh_lock", (LONG_LOCK, OWNER_A), id="refresh_lock"),
    pytest.param("checkout_message", (LONG_LOCK,), id="checkout_message"),
    pytest.param("finish_message", (), id="finish_message"),
    pytest.param("defer_message", (100.0,), id="defer_message"),
]


@pytest.mark.parametrize(("method", "args"), WRITES_WITH_ID)
def test_write_after_delete_raises(
    kit: EngineKit, session: Session, stored: str, method: str, args: tuple[Any, ...]
) -> None:
    # Another relayer deletes the message while this one still has its id.
    with kit.connect() as other:
        other.delete_message(stored)

    with pytest.raises(MessageNotFound) as caught:
        getattr(session, method)(stored, *args)

    assert caught.value.message_id == stored
    assert session.get_all_messages() == []
    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []
    if kit.server is not None:
        assert redis_key_counts(kit) == [0, 0, 0, 0]


@pytest.mark.parametrize("owner", [None, OWNER_A])
def test_unlock_after_delete(kit: EngineKit, session: Session, stored: str, owner: str | None) -> None:
    session.delete_message(stored)

    assert session.unlock_message(stored, owner) is False
    assert session.get_all_messages() == []
    if kit.server is not None:
        assert redis_key_counts(kit) == [0, 0, 0, 0]


# delete_message


def test_delete_removes_everything(session: Session, stored: str) -> None:
    session.delete_message(stored)

    assert session.get_all_messages() == []
    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []
    with pytest.raises(MessageNotFound):
        session.get_message_meta(stored)
    with pytest.raises(MessageNotFound):
        session.get_message_contents(stored)


def test_delete_keeps_other_messages(session: Session, stored: str) -> None:
    other = session.claim_message_id()
    session.set_message_meta(other, {"a": "1"})
    session.set_message_retry(other, 5.0)
    session.lock_message(other, LONG_LOCK)
    before = stored_state(session)

    session.delete_message(stored)

    after = stored_state(session)
    assert after["all"] == [other]
    assert after["meta"] == {other: before["meta"][other]}
    assert after["deferred"] == [other]
    assert after["active"] == [other]


def test_delete_unknown_noop(session: Session, stored: str) -> None:
    before = stored_state(session)

    session.delete_message(UNKNOWN_ID)

    assert stored_state(session) == before


def test_delete_twice_noop(session: Session, stored: str) -> None:
    session.delete_message(stored)

    session.delete_message(stored)

    assert session.get_all_messages() == []


# get_deferred_messages and set_message_retry


@pytest.fixture
def timed(session: Session) -> dict[str, float]:
    """Return four messages by retry time, plus one without a retry time."""
    ids = {}
    for timestamp in (10.0, 20.0, 20.5, 30.0):
        message_id = session.claim_message_id()
        session.set_message_retry(message_id, timestamp)
        ids[message_id] = timestamp
    session.claim_message_id()
    return ids


def by_retry(ids: dict[str, float], until: float | None = None) -> list[str]:
    """Return the ids retried at or before ``until``, in the order of the spec."""
    chosen = [(timestamp, message_id) for message_id, timestamp in ids.items()]
    return [message_id for timestamp, message_id in sorted(chosen) if until is None or timestamp <= until]


def test_deferred_includes_timestamp(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(20.0) == by_retry(timed, 20.0)
    assert len(session.get_deferred_messages(20.0)) == 2


def test_deferred_excludes_later(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(19.999) == by_retry(timed, 10.0)


def test_deferred_before_all_empty(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(9.5) == []


def test_deferred_fraction_boundary(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(20.5) == by_retry(timed, 20.5)
    assert len(session.get_deferred_messages(20.5)) == 3


def test_deferred_omitted_lists_all(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages() == by_retry(timed)
    assert len(session.get_deferred_messages()) == 4


def test_deferred_none_lists_all(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(None) == by_retry(timed)


def test_deferred_int_timestamp(session: Session, timed: dict[str, float]) -> None:
    assert session.get_deferred_messages(20) == by_retry(timed, 20.0)


def test_deferred_zero_retry(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_retry(message_id, 0)

    assert session.get_deferred_messages(0) == [message_id]


def test_deferred_far_future(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_retry(message_id, 4e18)

    assert session.get_deferred_messages(4e18 - 1e6) == []
    assert session.get_deferred_messages(1e300) == [message_id]


def test_deferred_orders_by_time(session: Session) -> None:
    times = [50.0, 10.0, 1700000000.25, 30.0, 1700000000.125, 0.5]
    ids = {}
    for timestamp in times:
        message_id = session.claim_message_id()
        session.set_message_retry(message_id, timestamp)
        ids[message_id] = timestamp

    assert session.get_deferred_messages() == by_retry(ids)


def test_deferred_ties_by_id(session: Session) -> None:
    ids = {}
    for index in range(12):
        ids[session.claim_message_id()] = 100.0 if index % 3 else 50.0
    for message_id, timestamp in ids.items():
        session.set_message_retry(message_id, timestamp)

    expected = sorted(ids, key=lambda message_id: (ids[message_id], message_id.encode()))
    assert session.get_deferred_messages() == expected


def test_deferred_skips_no_retry(session: Session) -> None:
    session.claim_message_id()
    with_retry = session.claim_message_id()
    session.set_message_retry(with_retry, 5.0)

    assert session.get_deferred_messages() == [with_retry]


def test_retry_replaces_earlier(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_retry(message_id, 100.0)

    session.set_message_retry(message_id, 300.0)

    assert session.get_deferred_messages(200.0) == []
    assert session.get_deferred_messages() == [message_id]


def test_retry_moves_earlier(session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_retry(message_id, 300.0)

    session.set_message_retry(message_id, 100.0)

    assert session.get_deferred_messages(200.0) == [message_id]


def test_retry_reorders_deferred(session: Session) -> None:
    first = session.claim_message_id()
    second = session.claim_message_id()
    session.set_message_retry(first, 10.0)
    session.set_message_retry(second, 20.0)

    session.set_message_retry(first, 30.0)

    assert session.get_deferred_messages() == [second, first]


# lock_message and unlock_message


def test_lock_twice_returns_false(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.lock_message(message_id, LONG_LOCK) is True
    assert session.lock_message(message_id, LONG_LOCK) is False


def test_lock_fails_other_session(session: Session, second_session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    assert second_session.lock_message(message_id, LONG_LOCK) is False


def test_lock_is_per_message(session: Session) -> None:
    first = session.claim_message_id()
    second = session.claim_message_id()
    session.lock_message(first, LONG_LOCK)

    assert session.lock_message(second, LONG_LOCK) is True


def test_lock_expires(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK)

    kit.advance(PAST_SHORT_LOCK)

    assert session.lock_message(message_id, LONG_LOCK) is True


def test_lock_held_until_expiry(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, 0.5)

    kit.advance(0.1)
    before_expiry = session.lock_message(message_id, LONG_LOCK)
    kit.advance(0.5)
    after_expiry = session.lock_message(message_id, LONG_LOCK)

    assert before_expiry is False
    assert after_expiry is True


def test_failed_lock_keeps_expiry(kit: EngineKit, session: Session) -> None:
    # A lock_message that returns False must not extend the existing lock.
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK)
    session.lock_message(message_id, LONG_LOCK)

    kit.advance(PAST_SHORT_LOCK)

    assert session.lock_message(message_id, LONG_LOCK) is True


def test_lock_length_whole_ms(session: Session) -> None:
    # 2.007 s is 2007 ms, although 2.007 * 1000 is slightly above 2007 as a float.
    message_id = session.claim_message_id()

    session.lock_message(message_id, 2.007)
    remaining = session.describe_message(message_id).lock_remaining

    assert remaining is not None
    # The tolerance covers float rounding of the clock, far below 1 ms.
    assert remaining <= 2.007 + 1e-6


def test_lock_rounds_up_to_ms() -> None:
    # Needs the memory engine's fake clock: a lock of 2 ms on a real
    # server may expire before the next call.
    clock = FakeClock()
    session = memory.new(clock=clock).connect()
    message_id = session.claim_message_id()
    session.lock_message(message_id, 0.0011)

    clock.now += 0.0015
    before_expiry = session.lock_message(message_id, LONG_LOCK)
    clock.now += 0.001
    after_expiry = session.lock_message(message_id, LONG_LOCK)

    assert before_expiry is False
    assert after_expiry is True


def test_unlock_allows_relock(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    session.unlock_message(message_id)

    assert session.lock_message(message_id, LONG_LOCK) is True


def test_unlock_from_other_session(session: Session, second_session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    second_session.unlock_message(message_id)

    assert session.get_active_messages() == []


def test_unlock_unlocked_noop(session: Session, stored: str) -> None:
    other = session.claim_message_id()
    before = stored_state(session)

    session.unlock_message(other)

    assert stored_state(session) == before
    assert session.lock_message(other, LONG_LOCK) is True


def test_unlock_unknown_noop(session: Session, stored: str) -> None:
    before = stored_state(session)

    session.unlock_message(UNKNOWN_ID)

    assert stored_state(session) == before


# Lock owners, the return value of unlock_message, and refresh_lock


def test_lock_owner_twice_false(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.lock_message(message_id, LONG_LOCK, OWNER_A) is True
    assert session.lock_message(message_id, LONG_LOCK, OWNER_A) is False
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is False
    assert session.lock_message(message_id, LONG_LOCK) is False


def test_lock_owner_after_plain_lock(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    assert session.lock_message(message_id, LONG_LOCK, OWNER_A) is False


def test_lock_owner_listed_active(session: Session) -> None:
    message_id = session.claim_message_id()

    session.lock_message(message_id, LONG_LOCK, OWNER_A)

    assert session.get_active_messages() == [message_id]


def test_lock_owner_expires(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK, OWNER_A)

    kit.advance(PAST_SHORT_LOCK)

    assert session.lock_message(message_id, LONG_LOCK, OWNER_A) is True


def test_lock_owner_locked_rejected(session: Session) -> None:
    # "locked" is the value of a lock without an owner, so no owner may use it.
    message_id = session.claim_message_id()

    with pytest.raises(InvalidArgument) as caught:
        session.lock_message(message_id, LONG_LOCK, "locked")

    assert caught.value.param == "owner"
    assert session.get_active_messages() == []


def test_unlock_returns_true(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    assert session.unlock_message(message_id) is True
    assert session.get_active_messages() == []


def test_unlock_twice_returns_false(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)
    session.unlock_message(message_id)

    assert session.unlock_message(message_id) is False


def test_unlock_unlocked_returns_false(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.unlock_message(message_id) is False
    assert session.unlock_message(message_id, OWNER_A) is False


def test_unlock_unknown_returns_false(session: Session) -> None:
    assert session.unlock_message(UNKNOWN_ID) is False
    assert session.unlock_message(UNKNOWN_ID, OWNER_A) is False


def test_unlock_expired_returns_false(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK, OWNER_A)

    kit.advance(PAST_SHORT_LOCK)

    assert session.unlock_message(message_id, OWNER_A) is False
    assert session.unlock_message(message_id) is False


def test_unlock_owner_removes_own(session: Session, second_session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK, OWNER_A)

    assert second_session.unlock_message(message_id, OWNER_A) is True
    assert session.get_active_messages() == []
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is True


def test_unlock_other_owner_keeps(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK, OWNER_A)

    assert session.unlock_message(message_id, OWNER_B) is False
    assert session.get_active_messages() == [message_id]
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is False
    assert session.unlock_message(message_id, OWNER_A) is True


def test_unlock_owner_keeps_plain_lock(session: Session) -> None:
    # A lock taken without an owner is not any owner's lock.
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    assert session.unlock_message(message_id, OWNER_A) is False
    assert session.get_active_messages() == [message_id]


def test_unlock_without_owner_removes_any(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK, OWNER_A)

    assert session.unlock_message(message_id) is True
    assert session.get_active_messages() == []


def test_unlock_owner_keeps_other_messages(session: Session) -> None:
    first = session.claim_message_id()
    second = session.claim_message_id()
    session.lock_message(first, LONG_LOCK, OWNER_A)
    session.lock_message(second, LONG_LOCK, OWNER_A)

    assert session.unlock_message(first, OWNER_A) is True
    assert session.get_active_messages() == [second]


def test_refresh_extends_own_lock(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK, OWNER_A)

    refreshed = session.refresh_lock(message_id, LONG_LOCK, OWNER_A)
    kit.advance(PAST_SHORT_LOCK)

    assert refreshed is True
    assert session.get_active_messages() == [message_id]
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is False
    remaining = session.describe_message(message_id).lock_remaining
    assert remaining is not None
    assert LONG_LOCK - 5 < remaining <= LONG_LOCK


def test_refresh_shortens_own_lock(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK, OWNER_A)

    refreshed = session.refresh_lock(message_id, SHORT_LOCK, OWNER_A)
    kit.advance(PAST_SHORT_LOCK)

    assert refreshed is True
    assert session.get_active_messages() == []
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is True


def test_refresh_other_owner_false(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK, OWNER_A)

    refreshed = session.refresh_lock(message_id, LONG_LOCK, OWNER_B)
    kit.advance(PAST_SHORT_LOCK)

    assert refreshed is False
    # The refresh that returned False left the short expiry as it was.
    assert session.get_active_messages() == []
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is True


def test_refresh_plain_lock_false(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is False
    assert session.get_active_messages() == [message_id]


def test_refresh_without_lock_false(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is False
    assert session.get_active_messages() == []
    assert session.lock_message(message_id, LONG_LOCK, OWNER_B) is True


def test_refresh_after_expiry_false(kit: EngineKit, session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, SHORT_LOCK, OWNER_A)

    kit.advance(PAST_SHORT_LOCK)

    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is False
    assert session.get_active_messages() == []


def test_refresh_after_unlock_false(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK, OWNER_A)
    session.unlock_message(message_id, OWNER_A)

    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is False
    assert session.get_active_messages() == []


def test_refresh_unknown_id_raises(session: Session) -> None:
    with pytest.raises(MessageNotFound) as caught:
        session.refresh_lock(UNKNOWN_ID, LONG_LOCK, OWNER_A)

    assert caught.value.message_id == UNKNOWN_ID
    assert session.get_all_messages() == []
    assert session.get_active_messages() == []


@pytest.mark.parametrize(
    "owner", [None, "locked", "", "a b", 5], ids=["none", "locked", "empty", "space", "int"]
)
def test_refresh_bad_owner_raises(session: Session, owner: Any) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    with pytest.raises(InvalidArgument) as caught:
        session.refresh_lock(message_id, LONG_LOCK, owner)

    assert caught.value.param == "owner"


def test_stale_holder_loses_lock(kit: EngineKit, session: Session, second_session: Session) -> None:
    # Relayer A stalls past its lock, relayer B takes the message over, and
    # A's late unlock and refresh must not touch B's lock.
    message_id = session.claim_message_id()
    assert session.lock_message(message_id, SHORT_LOCK, OWNER_A) is True

    kit.advance(PAST_SHORT_LOCK)
    taken_over = second_session.lock_message(message_id, LONG_LOCK, OWNER_B)
    stale_unlock = session.unlock_message(message_id, OWNER_A)
    stale_refresh = session.refresh_lock(message_id, LONG_LOCK, OWNER_A)

    assert taken_over is True
    assert stale_unlock is False
    assert stale_refresh is False
    assert session.get_active_messages() == [message_id]
    assert session.lock_message(message_id, LONG_LOCK, OWNER_A) is False
    assert second_session.refresh_lock(message_id, LONG_LOCK, OWNER_B) is True
    assert second_session.unlock_message(message_id, OWNER_B) is True
    assert session.get_active_messages() == []


# get_active_messages


def test_active_empty_queue(session: Session) -> None:
    assert session.get_active_messages() == []


def test_active_lists_locked_only(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(4)]
    session.lock_message(ids[0], LONG_LOCK)
    session.lock_message(ids[2], LONG_LOCK)

    active = session.get_active_messages()

    assert sorted(active) == sorted([ids[0], ids[2]])
    assert len(active) == 2


def test_active_drops_expired(kit: EngineKit, session: Session) -> None:
    long_locked = session.claim_message_id()
    short_locked = session.claim_message_id()
    session.lock_message(long_locked, LONG_LOCK)
    session.lock_message(short_locked, SHORT_LOCK)

    kit.advance(PAST_SHORT_LOCK)

    assert session.get_active_messages() == [long_locked]


def test_active_drops_unlocked(session: Session) -> None:
    message_id = session.claim_message_id()
    session.lock_message(message_id, LONG_LOCK)

    session.unlock_message(message_id)

    assert session.get_active_messages() == []


def test_active_drops_deleted(session: Session, stored: str) -> None:
    session.delete_message(stored)

    assert session.get_active_messages() == []


def test_active_lists_many_locks(session: Session) -> None:
    # More locks than one page of the Redis engine's SCAN loop.
    ids = [session.claim_message_id() for _ in range(1500)]
    for message_id in ids:
        session.lock_message(message_id, LONG_LOCK)

    active = session.get_active_messages()

    assert sorted(active) == sorted(ids)
    assert len(active) == 1500


# describe_message, a Python extension


def test_describe_new_message(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.describe_message(message_id) == MessageInfo(message_id, None, None, None)


def test_describe_stored_message(session: Session, stored: str) -> None:
    info = session.describe_message(stored)

    assert info.message_id == stored
    assert info.size == len(b"Subject: hi\r\n\r\nbody\r\n")
    assert info.retry == 1000.0
    assert info.lock_remaining is not None
    assert 0 < info.lock_remaining <= LONG_LOCK


# close and the context manager

# Every public method but close, with valid arguments.
CALLS_AFTER_CLOSE = [
    ("get_active_messages", ()),
    ("get_deferred_messages", ()),
    ("get_deferred_messages", (10.0,)),
    ("get_all_messages", ()),
    ("claim_message_id", ()),
    ("set_message_meta", (UNKNOWN_ID, {"a": "1"})),
    ("set_message_meta_key", (UNKNOWN_ID, "a", "1")),
    ("set_message_contents", (UNKNOWN_ID, b"x")),
    ("get_message_meta", (UNKNOWN_ID,)),
    ("get_message_meta_key", (UNKNOWN_ID, "a")),
    ("get_message_contents", (UNKNOWN_ID,)),
    ("set_message_retry", (UNKNOWN_ID, 1.0)),
    ("store_message", ({"a": "1"}, b"x")),
    ("lock_message", (UNKNOWN_ID, 1.0)),
    ("lock_message", (UNKNOWN_ID, 1.0, OWNER_A)),
    ("refresh_lock", (UNKNOWN_ID, 1.0, OWNER_A)),
    ("unlock_message", (UNKNOWN_ID,)),
    ("unlock_message", (UNKNOWN_ID, OWNER_A)),
    ("delete_message", (UNKNOWN_ID,)),
    ("describe_message", (UNKNOWN_ID,)),
    ("get_message", (UNKNOWN_ID,)),
    ("get_messages", ([UNKNOWN_ID],)),
    ("checkout_message", (UNKNOWN_ID, 1.0)),
    ("finish_message", (UNKNOWN_ID,)),
    ("defer_message", (UNKNOWN_ID, 1.0)),
    ("store_messages", ([{"meta": {}, "contents": b"x"}],)),
    ("get_all_messages_page", ()),
    ("get_deferred_messages_page", ()),
    ("get_active_messages_page", ()),
    ("iter_all_messages", ()),
    ("iter_deferred_messages", ()),
    ("iter_active_messages", ()),
]


@pytest.mark.parametrize(("method", "args"), CALLS_AFTER_CLOSE, ids=[call[0] for call in CALLS_AFTER_CLOSE])
def test_closed_method_raises(kit: EngineKit, method: str, args: tuple[Any, ...]) -> None:
    session = kit.connect()
    session.close()

    with pytest.raises(SessionClosed):
        getattr(session, method)(*args)


def test_closed_with_stored_id(kit: EngineKit) -> None:
    session = kit.connect()
    message_id = session.claim_message_id()
    session.close()

    with pytest.raises(SessionClosed):
        session.get_message_meta(message_id)


def test_close_twice_is_fine(kit: EngineKit) -> None:
    session = kit.connect()
    session.close()

    session.close()

    assert session.closed is True


def test_closed_property(kit: EngineKit) -> None:
    session = kit.connect()
    opened = session.closed
    session.close()

    assert opened is False
    assert session.closed is True


def test_context_manager_closes(kit: EngineKit) -> None:
    with kit.connect() as session:
        message_id = session.claim_message_id()

    assert session.closed is True
    with pytest.raises(SessionClosed):
        session.get_all_messages()
    with kit.connect() as reopened:
        assert reopened.get_all_messages() == [message_id]


def test_context_manager_closes_on_error(kit: EngineKit) -> None:
    with pytest.raises(KeyError), kit.connect() as session:
        raise KeyError("boom")

    assert session.closed is True


def test_enter_closed_session_raises(kit: EngineKit) -> None:
    session = kit.connect()
    session.close()

    with pytest.raises(SessionClosed), session:
        pytest.fail("the body ran on a closed session")


def test_store_messages_log_counts(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="slimta.storage.session")

    session.store_messages([{"meta": {}, "contents": b"a"}])
    session.store_messages([{"meta": {}, "contents": b"a"}, {"meta": {}, "contents": b"b"}])

    assert "stored 1 message" in caplog.messages
    assert "stored 2 messages" in caplog.messages


def test_delete_log_memory_engine(caplog: pytest.LogCaptureFixture) -> None:
    session = memory.new().connect()
    stored = session.store_message({}, b"body")
    caplog.set_level("DEBUG", logger="slimta.storage.session")

    session.delete_message(stored)
    session.delete_message(stored)

    assert caplog.messages == [
        f"deleted message {stored}",
        f"message {stored} was not stored, so nothing was deleted",
    ]


def test_close_keeps_data(kit: EngineKit) -> None:
    session = kit.connect()
    message_id = session.claim_message_id()
    session.set_message_contents(message_id, b"kept")
    session.close()

    with kit.connect() as reopened:
        assert reopened.get_message_contents(message_id) == b"kept"


# Several sessions of one engine


def test_sessions_share_messages(session: Session, second_session: Session) -> None:
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"a": "1"})
    session.set_message_contents(message_id, b"body")
    session.set_message_retry(message_id, 7.0)
    session.lock_message(message_id, LONG_LOCK)

    assert second_session.get_all_messages() == [message_id]
    assert second_session.get_message_meta(message_id) == {"a": "1"}
    assert second_session.get_message_contents(message_id) == b"body"
    assert second_session.get_deferred_messages() == [message_id]
    assert second_session.get_active_messages() == [message_id]


def test_sessions_see_deletes(session: Session, second_session: Session, stored: str) -> None:
    second_session.delete_message(stored)

    assert session.get_all_messages() == []


def test_many_sessions_open(kit: EngineKit) -> None:
    sessions = [kit.connect() for _ in range(20)]
    ids = [opened.claim_message_id() for opened in sessions]

    for opened in sessions:
        assert sorted(opened.get_all_messages()) == sorted(ids)
        opened.close()


# Helpers for the methods of version 1.2


def require_redis(kit: EngineKit) -> RedisServer:
    """Return the kit's Redis server, or skip a test that writes the layout by hand."""
    if kit.server is None:
        pytest.skip("writes keys of the Redis layout by hand")
    return kit.server


def read_pages(read_page: Callable[[str | None], Page], max_pages: int = 1000) -> list[Page]:
    """Follow the cursors of a listing from the first page to the last, reading at most ``max_pages``."""
    pages = [read_page(None)]
    while pages[-1].cursor is not None:
        assert len(pages) < max_pages, "the listing did not end"
        pages.append(read_page(pages[-1].cursor))
    return pages


def page_ids(pages: list[Page]) -> list[str]:
    return [message_id for page in pages for message_id in page.message_ids]


def by_bytes(ids: dict[str, float]) -> list[str]:
    """Return the ids in the order of get_deferred_messages: retry time, then the id's bytes."""
    return sorted(ids, key=lambda message_id: (ids[message_id], message_id.encode()))


def new_message(index: int, retry: float | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"meta": {"index": str(index)}, "contents": b"body %d\r\n" % index}
    if retry is not None:
        message["retry"] = retry
    return message


# get_message


def test_get_message_reads_both(session: Session) -> None:
    meta = {"sender": "a@example.com", "recipients": "\0b@example.net"}
    message_id = session.store_message(meta, b"Subject: hi\r\n\r\n\0\xff")

    message = session.get_message(message_id)

    assert message == Message(meta, b"Subject: hi\r\n\r\n\0\xff")
    assert type(message.contents) is bytes


def test_get_message_claimed_is_empty(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.get_message(message_id) == Message({}, None)


def test_get_message_matches_single_reads(session: Session, stored: str) -> None:
    message = session.get_message(stored)

    assert message.meta == session.get_message_meta(stored)
    assert message.contents == session.get_message_contents(stored)


def test_get_message_meta_is_copy(session: Session, stored: str) -> None:
    message = session.get_message(stored)
    message.meta["sender"] = "changed"

    assert session.get_message_meta(stored)["sender"] == "a@example.com"


def test_message_is_frozen(session: Session, stored: str) -> None:
    message = session.get_message(stored)

    with pytest.raises(dataclasses.FrozenInstanceError):
        message.contents = b"other"  # type: ignore[misc]


def test_get_message_does_not_lock(session: Session, stored: str) -> None:
    other = session.store_message({}, b"x")

    session.get_message(other)

    assert session.get_active_messages() == [stored]


# get_messages


def test_get_messages_reads_each(session: Session) -> None:
    ids = [session.store_message({"index": str(index)}, b"%d" % index) for index in range(5)]

    messages = session.get_messages(ids)

    assert list(messages) == ids
    for index, message_id in enumerate(ids):
        assert messages[message_id] == Message({"index": str(index)}, b"%d" % index)


def test_get_messages_leaves_out_missing(session: Session, stored: str) -> None:
    deleted = session.store_message({}, b"gone")
    session.delete_message(deleted)

    messages = session.get_messages([UNKNOWN_ID, stored, deleted])

    assert list(messages) == [stored]
    assert messages[stored] == session.get_message(stored)


def test_get_messages_all_missing(session: Session) -> None:
    assert session.get_messages([UNKNOWN_ID, "another-unknown-id"]) == {}


def test_get_messages_duplicates_once(session: Session, stored: str) -> None:
    other = session.claim_message_id()

    messages = session.get_messages([stored, other, stored, UNKNOWN_ID, other])

    assert list(messages) == [stored, other]
    assert messages[other] == Message({}, None)


def test_get_messages_any_iterable(session: Session, stored: str) -> None:
    assert list(session.get_messages((stored,))) == [stored]
    assert list(session.get_messages(iter([stored]))) == [stored]
    assert list(session.get_messages({stored})) == [stored]


def test_get_messages_full_batch(session: Session) -> None:
    ids = session.store_messages([new_message(index) for index in range(1000)])

    messages = session.get_messages(ids)

    assert list(messages) == ids
    assert messages[ids[999]] == Message({"index": "999"}, b"body 999\r\n")


BAD_ID_BATCHES = [
    pytest.param([], "message_ids", id="empty"),
    pytest.param([f"id-{index}" for index in range(1001)], "message_ids", id="1001-ids"),
    pytest.param("an-id", "message_ids", id="str"),
    pytest.param(b"an-id", "message_ids", id="bytes"),
    pytest.param({"an-id": 1}, "message_ids", id="mapping"),
    pytest.param(None, "message_ids", id="none"),
    pytest.param(7, "message_ids", id="int"),
    pytest.param(["good-id", "has space"], "message_ids[1]", id="space-in-id"),
    pytest.param(["good-id", ""], "message_ids[1]", id="empty-id"),
    pytest.param(["good-id", 5], "message_ids[1]", id="int-id"),
]


@pytest.mark.parametrize(("batch", "param"), BAD_ID_BATCHES)
def test_get_messages_bad_batch(session: Session, stored: str, batch: Any, param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        session.get_messages(batch)

    assert caught.value.param == param


# checkout_message


def test_checkout_locks_and_reads(session: Session, second_session: Session) -> None:
    message_id = session.store_message({"sender": "a@example.com"}, b"body", 5.0)

    message = session.checkout_message(message_id, LONG_LOCK, OWNER_A)

    assert message == Message({"sender": "a@example.com"}, b"body")
    assert session.get_active_messages() == [message_id]
    assert second_session.lock_message(message_id, LONG_LOCK) is False
    assert second_session.get_deferred_messages() == [message_id]


def test_checkout_while_locked_none(session: Session, second_session: Session) -> None:
    message_id = session.store_message({}, b"body")
    assert session.checkout_message(message_id, LONG_LOCK, OWNER_A) is not None

    again = second_session.checkout_message(message_id, LONG_LOCK, OWNER_B)
    same_owner = session.checkout_message(message_id, LONG_LOCK, OWNER_A)

    assert again is None
    assert same_owner is None
    # The first owner still holds the lock.
    assert second_session.unlock_message(message_id, OWNER_B) is False
    assert session.unlock_message(message_id, OWNER_A) is True


def test_checkout_plain_lock_blocks(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.lock_message(message_id, LONG_LOCK)

    assert session.checkout_message(message_id, LONG_LOCK, OWNER_A) is None
    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is False


def test_checkout_failed_keeps_expiry(kit: EngineKit, session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.lock_message(message_id, SHORT_LOCK)
    assert session.checkout_message(message_id, LONG_LOCK) is None

    kit.advance(PAST_SHORT_LOCK)

    assert session.checkout_message(message_id, LONG_LOCK) == Message({}, b"body")


def test_checkout_owner_stored(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.checkout_message(message_id, LONG_LOCK, OWNER_A)

    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_B) is False
    assert session.refresh_lock(message_id, LONG_LOCK, OWNER_A) is True


def test_checkout_without_owner(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.checkout_message(message_id, LONG_LOCK) == Message({}, None)
    assert session.lock_message(message_id, LONG_LOCK) is False
    assert session.unlock_message(message_id, OWNER_A) is False
    assert session.unlock_message(message_id) is True


def test_checkout_expires(kit: EngineKit, session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.checkout_message(message_id, SHORT_LOCK, OWNER_A)

    kit.advance(PAST_SHORT_LOCK)

    assert session.get_active_messages() == []
    assert session.checkout_message(message_id, LONG_LOCK, OWNER_B) == Message({}, b"body")


@pytest.mark.parametrize(
    ("args", "param"),
    [
        pytest.param((0,), "length", id="zero-length"),
        pytest.param((-1.0,), "length", id="negative-length"),
        pytest.param((float("nan"),), "length", id="nan-length"),
        pytest.param(("10",), "length", id="str-length"),
        pytest.param((LONG_LOCK, "locked"), "owner", id="legacy-owner"),
        pytest.param((LONG_LOCK, ""), "owner", id="empty-owner"),
        pytest.param((LONG_LOCK, 7), "owner", id="int-owner"),
    ],
)
def test_checkout_bad_args(session: Session, args: tuple[Any, ...], param: str) -> None:
    message_id = session.store_message({}, b"body")

    with pytest.raises(InvalidArgument) as caught:
        session.checkout_message(message_id, *args)

    assert caught.value.param == param
    assert session.get_active_messages() == []


# finish_message


def test_finish_own_lock_deletes(kit: EngineKit, session: Session) -> None:
    message_id = session.store_message({"a": "1"}, b"body", 5.0)
    session.checkout_message(message_id, LONG_LOCK, OWNER_A)

    assert session.finish_message(message_id, OWNER_A) is True

    assert session.get_all_messages() == []
    assert session.get_deferred_messages() == []
    assert session.get_active_messages() == []
    with pytest.raises(MessageNotFound):
        session.get_message(message_id)
    if kit.server is not None:
        assert redis_key_counts(kit) == [0, 0, 0, 0]


def test_finish_without_owner_deletes(session: Session, stored: str) -> None:
    # The stored fixture holds a lock without an owner.
    assert session.finish_message(stored) is True

    assert session.get_all_messages() == []


def test_finish_without_owner_ignores_lock(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.lock_message(message_id, LONG_LOCK, OWNER_B)

    assert session.finish_message(message_id) is True
    assert session.get_all_messages() == []


def test_finish_unlocked_without_owner(session: Session) -> None:
    message_id = session.store_message({}, b"body")

    assert session.finish_message(message_id) is True
    assert session.get_all_messages() == []


@pytest.mark.parametrize("lock", ["other-owner", "plain", "none", "expired"])
def test_finish_not_holder_changes_nothing(kit: EngineKit, session: Session, lock: str) -> None:
    message_id = session.store_message({"a": "1"}, b"body", 5.0)
    if lock == "other-owner":
        session.lock_message(message_id, LONG_LOCK, OWNER_B)
    elif lock == "plain":
        session.lock_message(message_id, LONG_LOCK)
    elif lock == "expired":
        session.lock_message(message_id, SHORT_LOCK, OWNER_A)
        kit.advance(PAST_SHORT_LOCK)
    before = stored_state(session)

    assert session.finish_message(message_id, OWNER_A) is False

    assert stored_state(session) == before


def test_finish_twice_raises(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.checkout_message(message_id, LONG_LOCK, OWNER_A)
    session.finish_message(message_id, OWNER_A)

    with pytest.raises(MessageNotFound):
        session.finish_message(message_id, OWNER_A)


def test_finish_keeps_other_messages(session: Session, stored: str) -> None:
    message_id = session.store_message({}, b"body")
    session.checkout_message(message_id, LONG_LOCK, OWNER_A)
    before = stored_state(session)

    session.finish_message(message_id, OWNER_A)

    after = stored_state(session)
    assert after["all"] == [stored]
    assert after["meta"] == {stored: before["meta"][stored]}
    assert after["deferred"] == [stored]
    assert after["active"] == [stored]


# defer_message


def test_defer_counts_and_releases(session: Session, second_session: Session) -> None:
    message_id = session.store_message({"sender": "a@example.com"}, b"body", 5.0)
    session.checkout_message(message_id, LONG_LOCK, OWNER_A)

    attempts = session.defer_message(message_id, 300.0, OWNER_A)

    assert attempts == 1
    assert session.get_message_meta(message_id) == {"sender": "a@example.com", "attempts": "1"}
    assert session.get_deferred_messages(299.0) == []
    assert session.get_deferred_messages(300.0) == [message_id]
    assert session.get_active_messages() == []
    assert second_session.lock_message(message_id, LONG_LOCK, OWNER_B) is True


def test_defer_counts_up(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    counts = []
    for round_number in range(1, 6):
        session.checkout_message(message_id, LONG_LOCK, OWNER_A)
        counts.append(session.defer_message(message_id, 100.0 * round_number, OWNER_A))

    assert counts == [1, 2, 3, 4, 5]
    assert session.get_message_meta_key(message_id, "attempts") == "5"
    assert session.describe_message(message_id).retry == 500.0


@pytest.mark.parametrize(
    ("stored_attempts", "expected"),
    [
        pytest.param("0", 1, id="zero"),
        pytest.param("41", 42, id="number"),
        pytest.param("9", 10, id="carry"),
        pytest.param("1999", 2000, id="carries"),
        pytest.param("007", 8, id="leading-zeros"),
        pytest.param("000", 1, id="zeros"),
        pytest.param("9" * 30, 10**30, id="beyond-64-bits"),
        pytest.param("", 1, id="empty"),
        pytest.param("abc", 1, id="letters"),
        pytest.param("-3", 1, id="negative"),
        pytest.param("+5", 1, id="plus-sign"),
        pytest.param(" 5", 1, id="space"),
        pytest.param("5\n", 1, id="newline"),
        pytest.param("1.5", 1, id="fraction"),
        pytest.param("1_000", 1, id="underscore"),
        pytest.param("\u0663", 1, id="arabic-indic-digit"),
        pytest.param("\udcff", 1, id="undecodable-byte"),
    ],
)
def test_defer_attempts_values(session: Session, stored_attempts: str, expected: int) -> None:
    message_id = session.store_message({"attempts": stored_attempts}, b"body")

    attempts = session.defer_message(message_id, 10.0)

    assert attempts == expected
    assert session.get_message_meta_key(message_id, "attempts") == str(expected)


def test_defer_without_owner_ignores_lock(session: Session) -> None:
    message_id = session.store_message({}, b"body")
    session.lock_message(message_id, LONG_LOCK, OWNER_B)

    assert session.defer_message(message_id, 10.0) == 1

    assert session.get_active_messages() == []
    assert session.unlock_message(message_id, OWNER_B) is False


def test_defer_unlocked_without_owner(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.defer_message(message_id, 10.0) == 1

    assert session.get_message_meta(message_id) == {"attempts": "1"}
    assert session.get_deferred_messages() == [message_id]
    assert session.get_message_contents(message_id) is None


@pytest.mark.parametrize("lock", ["other-owner", "plain", "none", "expired"])
def test_defer_not_holder_changes_nothing(kit: EngineKit, session: Session, lock: str) -> None:
    message_id = session.store_message({"attempts": "3"}, b"body", 5.0)
    if lock == "other-owner":
        session.lock_message(message_id, LONG_LOCK, OWNER_B)
    elif lock == "plain":
        session.lock_message(message_id, LONG_LOCK)
    elif lock == "expired":
        session.lock_message(message_id, SHORT_LOCK, OWNER_A)
        kit.advance(PAST_SHORT_LOCK)
    before = stored_state(session)

    assert session.defer_message(message_id, 100.0, OWNER_A) is None

    assert stored_state(session) == before


def test_defer_reorders_deferred(session: Session) -> None:
    first = session.store_message({}, b"1", 10.0)
    second = session.store_message({}, b"2", 20.0)

    session.defer_message(first, 30.0)

    assert session.get_deferred_messages() == [second, first]


@pytest.mark.parametrize(
    ("args", "param"),
    [
        pytest.param((-1.0,), "timestamp", id="negative-time"),
        pytest.param((float("inf"),), "timestamp", id="inf-time"),
        pytest.param((None,), "timestamp", id="none-time"),
        pytest.param((10.0, "locked"), "owner", id="legacy-owner"),
        pytest.param((10.0, "a b"), "owner", id="space-owner"),
    ],
)
def test_defer_bad_args_change_nothing(
    session: Session, stored: str, args: tuple[Any, ...], param: str
) -> None:
    before = stored_state(session)

    with pytest.raises(InvalidArgument) as caught:
        session.defer_message(stored, *args)

    assert caught.value.param == param
    assert stored_state(session) == before


def test_defer_raw_attempts_redis(kit: EngineKit, session: Session) -> None:
    # Another writer stored bytes that are not decimal, nor even UTF-8.
    server = require_redis(kit)
    message_id = session.store_message({}, b"body")
    server.client(OFFSET + 1).hset(message_id, "attempts", b"\xff\xfe12")

    assert session.defer_message(message_id, 10.0) == 1
    assert server.client(OFFSET + 1).hget(message_id, "attempts") == b"1"


def test_defer_raw_number_redis(kit: EngineKit, session: Session) -> None:
    server = require_redis(kit)
    message_id = session.store_message({}, b"body")
    server.client(OFFSET + 1).hset(message_id, "attempts", b"123456789012345678901234567890")

    assert session.defer_message(message_id, 10.0) == 123456789012345678901234567891


def test_defer_wrong_type_changes_nothing_redis(kit: EngineKit, session: Session) -> None:
    # A meta key of another type fails the script before its first write.
    server = require_redis(kit)
    message_id = session.store_message({}, b"body", 5.0)
    session.lock_message(message_id, LONG_LOCK, OWNER_A)
    meta = server.client(OFFSET + 1)
    meta.delete(message_id)
    meta.rpush(message_id, "not a hash")

    with pytest.raises(StorageUnavailable):
        session.defer_message(message_id, 10.0, OWNER_A)

    assert session.describe_message(message_id).retry == 5.0
    assert session.get_active_messages() == [message_id]


# store_messages


def test_store_messages_in_order(session: Session) -> None:
    messages = [new_message(index, float(index) if index % 2 else None) for index in range(6)]

    ids = session.store_messages(messages)

    assert len(ids) == 6
    assert len(set(ids)) == 6
    for message_id in ids:
        assert UUID4.fullmatch(message_id)
    for index, message_id in enumerate(ids):
        assert session.get_message(message_id) == Message({"index": str(index)}, b"body %d\r\n" % index)
    assert session.get_deferred_messages() == [ids[1], ids[3], ids[5]]
    assert sorted(session.get_all_messages()) == sorted(ids)


def test_store_messages_retry_none(session: Session) -> None:
    (message_id,) = session.store_messages([{"meta": {}, "contents": b"", "retry": None}])

    assert session.get_message(message_id) == Message({}, b"")
    assert session.get_deferred_messages() == []


def test_store_messages_full_batch(session: Session) -> None:
    ids = session.store_messages([new_message(index, 1.0) for index in range(1000)])

    assert len(set(ids)) == 1000
    assert sorted(session.get_all_messages()) == sorted(ids)
    assert session.get_deferred_messages() == sorted(ids)


def test_store_messages_same_message_twice(session: Session) -> None:
    message = new_message(1)

    ids = session.store_messages([message, message])

    assert ids[0] != ids[1]
    assert session.get_message(ids[0]) == session.get_message(ids[1])


def test_store_messages_bytes_like(session: Session) -> None:
    contents = bytearray(b"a\r\nb")

    (message_id,) = session.store_messages([{"meta": MappingProxyType({"a": "1"}), "contents": contents}])
    contents[0:1] = b"z"

    assert session.get_message(message_id) == Message({"a": "1"}, b"a\r\nb")


# Bad batches of store_messages, each with the parameter that the error names.
BAD_STORE_BATCHES = [
    pytest.param([], "messages", id="empty"),
    pytest.param([new_message(index) for index in range(1001)], "messages", id="1001-messages"),
    pytest.param(new_message(1), "messages", id="one-mapping"),
    pytest.param("text", "messages", id="str"),
    pytest.param(None, "messages", id="none"),
    pytest.param([new_message(1), ("meta", "contents")], "messages[1]", id="not-mapping"),
    pytest.param([new_message(1), {"meta": {}}], "messages[1]", id="missing-contents"),
    pytest.param([new_message(1), {"contents": b"x"}], "messages[1]", id="missing-meta"),
    pytest.param(
        [new_message(1), {"meta": {}, "contents": b"x", "retr": 1.0}], "messages[1]", id="extra-key"
    ),
    pytest.param([new_message(1), {"meta": {"a": 1}, "contents": b"x"}], "messages[1]['meta']", id="meta"),
    pytest.param(
        [new_message(1), {"meta": {"": "v"}, "contents": b"x"}], "messages[1]['meta']", id="meta-key"
    ),
    pytest.param([new_message(1), {"meta": {}, "contents": "x"}], "messages[1]['contents']", id="contents"),
    pytest.param(
        [new_message(1), new_message(2), {"meta": {}, "contents": b"x", "retry": -1.0}],
        "messages[2]['retry']",
        id="retry",
    ),
]


@pytest.mark.parametrize(("batch", "param"), BAD_STORE_BATCHES)
def test_store_messages_bad_stores_nothing(
    kit: EngineKit, session: Session, stored: str, batch: Any, param: str
) -> None:
    before = stored_state(session)
    keys_before = redis_key_counts(kit) if kit.server is not None else None

    with pytest.raises(InvalidArgument) as caught:
        session.store_messages(batch)

    assert caught.value.param.startswith(param)
    assert stored_state(session) == before
    if kit.server is not None:
        assert redis_key_counts(kit) == keys_before


# Paged listings


def test_pages_of_empty_queue(session: Session) -> None:
    assert session.get_all_messages_page() == Page([], None)
    assert session.get_deferred_messages_page() == Page([], None)
    assert session.get_active_messages_page() == Page([], None)


def test_page_is_frozen(session: Session) -> None:
    page = session.get_all_messages_page()

    with pytest.raises(dataclasses.FrozenInstanceError):
        page.cursor = "all:x"  # type: ignore[misc]


def test_all_pages_cover_each_once(kit: EngineKit, session: Session) -> None:
    ids = session.store_messages([new_message(index) for index in range(1000)])
    ids += session.store_messages([new_message(index) for index in range(1000)])
    ids += session.store_messages([new_message(index) for index in range(500)])

    pages = read_pages(lambda cursor: session.get_all_messages_page(cursor, 100))

    listed = page_ids(pages)
    assert sorted(listed) == sorted(ids)
    assert len(listed) == 2500
    assert len(pages) >= 2500 // 200
    if kit.server is None:
        assert [len(page.message_ids) for page in pages] == [100] * 25


def test_all_pages_count_one(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(7)]

    pages = read_pages(lambda cursor: session.get_all_messages_page(cursor, 1))

    assert sorted(page_ids(pages)) == sorted(ids)


def test_all_pages_default_count(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(10)]

    page = session.get_all_messages_page()

    assert sorted(page.message_ids) == sorted(ids)
    assert page.cursor is None


def test_deferred_pages_in_order(session: Session) -> None:
    # Seven retry times for 2,500 ids: ties of about 360 ids each, which
    # cross page boundaries.
    messages = [new_message(index, float(index % 7)) for index in range(2500)]
    ids: dict[str, float] = {}
    for first in range(0, 2500, 1000):
        batch = messages[first : first + 1000]
        stored_ids = session.store_messages(batch)
        ids.update(zip(stored_ids, (message["retry"] for message in batch), strict=True))

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor, 100))

    assert page_ids(pages) == by_bytes(ids)
    assert page_ids(pages) == session.get_deferred_messages()
    assert all(len(page.message_ids) <= 100 for page in pages)


def test_deferred_pages_until_timestamp(session: Session) -> None:
    ids = {session.store_message({}, b"x", float(index % 10)): float(index % 10) for index in range(95)}

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(4.0, cursor, 9))

    expected = [message_id for message_id in by_bytes(ids) if ids[message_id] <= 4.0]
    assert page_ids(pages) == expected
    assert page_ids(pages) == session.get_deferred_messages(4.0)


def test_deferred_pages_tie_block(session: Session) -> None:
    ids = {session.store_message({}, b"x", 50.0): 50.0 for _ in range(30)}
    ids[session.store_message({}, b"x", 49.0)] = 49.0
    ids[session.store_message({}, b"x", 51.0)] = 51.0

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor, 7))

    assert page_ids(pages) == by_bytes(ids)
    assert [len(page.message_ids) for page in pages] == [7, 7, 7, 7, 4]


def test_deferred_pages_exact_end(session: Session) -> None:
    ids = {session.store_message({}, b"x", float(index)): float(index) for index in range(6)}

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor, 3))

    assert page_ids(pages) == by_bytes(ids)
    assert pages[-1].cursor is None


def test_deferred_pages_cursor_deleted(session: Session, second_session: Session) -> None:
    # Another relayer deletes the id that the cursor names, and one more on
    # the next page, between two pages.
    ids = {session.store_message({}, b"x", float(index // 4)): float(index // 4) for index in range(40)}
    ordered = by_bytes(ids)
    first = session.get_deferred_messages_page(None, None, 10)
    assert first.message_ids == ordered[:10]
    second_session.delete_message(ordered[9])
    second_session.delete_message(ordered[12])

    rest = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor or first.cursor, 10))

    assert page_ids(rest) == ordered[10:12] + ordered[13:]


def test_deferred_pages_cursor_moved(session: Session) -> None:
    ids = {session.store_message({}, b"x", float(index // 5)): float(index // 5) for index in range(30)}
    ordered = by_bytes(ids)
    first = session.get_deferred_messages_page(None, None, 7)
    session.set_message_retry(ordered[6], 0.0)

    rest = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor or first.cursor, 7))

    assert page_ids(rest) == ordered[7:]


def test_deferred_pages_tie_block_deletions(session: Session, second_session: Session) -> None:
    # Every page's last id is deleted before the next page is read, so each
    # page starts after a cursor whose member is gone, inside one tie.
    ids = [session.store_message({}, b"x", 7.0) for _ in range(300)]
    ordered = sorted(ids, key=str.encode)
    listed: list[str] = []
    cursor = None
    for _ in range(100):
        page = session.get_deferred_messages_page(None, cursor, 25)
        listed += page.message_ids
        if page.cursor is None:
            break
        second_session.delete_message(page.message_ids[-1])
        cursor = page.cursor

    assert listed == ordered


def test_active_pages_cover_each_once(kit: EngineKit, session: Session) -> None:
    ids = session.store_messages([new_message(index) for index in range(1000)])
    ids += session.store_messages([new_message(index) for index in range(500)])
    for message_id in ids[:1200]:
        session.lock_message(message_id, LONG_LOCK)

    pages = read_pages(lambda cursor: session.get_active_messages_page(cursor, 100))

    listed = page_ids(pages)
    assert sorted(listed) == sorted(ids[:1200])
    assert len(listed) == 1200


def test_active_pages_skip_expired(kit: EngineKit, session: Session) -> None:
    short = [session.store_message({}, b"x") for _ in range(20)]
    long = [session.store_message({}, b"x") for _ in range(5)]
    for message_id in short:
        session.lock_message(message_id, SHORT_LOCK)
    for message_id in long:
        session.lock_message(message_id, LONG_LOCK)

    kit.advance(PAST_SHORT_LOCK)
    pages = read_pages(lambda cursor: session.get_active_messages_page(cursor, 3))

    assert sorted(page_ids(pages)) == sorted(long)
    assert [session.lock_message(message_id, LONG_LOCK) for message_id in short] == [True] * 20


def test_active_pages_after_unlock(session: Session) -> None:
    ids = [session.store_message({}, b"x") for _ in range(12)]
    for message_id in ids:
        session.lock_message(message_id, LONG_LOCK)
    first = session.get_active_messages_page(None, 4)
    remaining = [message_id for message_id in ids if message_id not in first.message_ids]
    session.unlock_message(remaining[0])

    rest = read_pages(lambda cursor: session.get_active_messages_page(cursor or first.cursor, 4))

    assert sorted(first.message_ids + page_ids(rest)) == sorted(set(ids) - {remaining[0]})


# Cursors of one engine, used by the garbage tests for every listing.
LISTINGS: dict[str, Callable[[Session, Any, Any], Page]] = {
    "all": lambda session, cursor, count: session.get_all_messages_page(cursor, count),
    "deferred": lambda session, cursor, count: session.get_deferred_messages_page(None, cursor, count),
    "active": lambda session, cursor, count: session.get_active_messages_page(cursor, count),
}

GARBAGE_CURSORS = [
    pytest.param("garbage", id="garbage"),
    pytest.param("", id="empty"),
    pytest.param(":", id="colon"),
    pytest.param("retry:", id="retry-empty"),
    pytest.param("retry:abc:id", id="retry-not-number"),
    pytest.param("retry:1.0:", id="retry-no-member"),
    pytest.param("retry:1.0", id="retry-no-colon"),
    pytest.param("retry:nan:id", id="retry-nan"),
    pytest.param("retry: 1.0:id", id="retry-space"),
    pytest.param("retry:1_0.0:id", id="retry-underscore"),
    pytest.param("sscan:-1", id="sscan-negative"),
    pytest.param("sscan:" + "9" * 30, id="sscan-too-large"),
    pytest.param("scan:12x", id="scan-not-number"),
    pytest.param("all:", id="all-empty"),
    pytest.param("\u0663", id="arabic-indic-digit"),
]


@pytest.mark.parametrize("listing", sorted(LISTINGS))
@pytest.mark.parametrize("cursor", GARBAGE_CURSORS)
def test_page_garbage_cursor(session: Session, stored: str, listing: str, cursor: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        LISTINGS[listing](session, cursor, 10)

    assert caught.value.param == "cursor"
    assert "cursor" in str(caught.value)


@pytest.mark.parametrize("listing", sorted(LISTINGS))
@pytest.mark.parametrize("cursor", [5, b"retry:1.0:id", ["x"]], ids=["int", "bytes", "list"])
def test_page_cursor_wrong_type(session: Session, listing: str, cursor: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        LISTINGS[listing](session, cursor, 10)

    assert caught.value.param == "cursor"


@pytest.mark.parametrize(
    ("source", "target"), [("all", "deferred"), ("deferred", "active"), ("active", "all")]
)
def test_page_cursor_of_other_listing(session: Session, source: str, target: str) -> None:
    ids = [session.store_message({}, b"x", 1.0) for _ in range(5)]
    for message_id in ids:
        session.lock_message(message_id, LONG_LOCK)
    cursor = LISTINGS[source](session, None, 2).cursor
    assert cursor is not None

    with pytest.raises(InvalidArgument) as caught:
        LISTINGS[target](session, cursor, 2)

    assert caught.value.param == "cursor"


@pytest.mark.parametrize("listing", sorted(LISTINGS))
@pytest.mark.parametrize("count", [0, -1, 10_001, True, 1.5, "10", None])
def test_page_bad_count(session: Session, listing: str, count: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        LISTINGS[listing](session, None, count)

    assert caught.value.param == "count"


@pytest.mark.parametrize("listing", sorted(LISTINGS))
def test_page_count_limits(session: Session, listing: str) -> None:
    ids = [session.store_message({}, b"x", 1.0) for _ in range(3)]
    for message_id in ids:
        session.lock_message(message_id, LONG_LOCK)

    smallest = read_pages(lambda cursor: LISTINGS[listing](session, cursor, 1))
    largest = LISTINGS[listing](session, None, 10_000)

    assert sorted(page_ids(smallest)) == sorted(ids)
    assert sorted(largest.message_ids) == sorted(ids)
    assert largest.cursor is None


def test_deferred_page_bad_timestamp(session: Session) -> None:
    with pytest.raises(InvalidArgument) as caught:
        session.get_deferred_messages_page(-1.0)

    assert caught.value.param == "timestamp"


# Listings leave out what another writer left for ids that are not stored


def test_orphan_retry_not_listed_redis(kit: EngineKit, session: Session) -> None:
    server = require_redis(kit)
    ids = {session.store_message({}, b"x", float(index)): float(index) for index in range(10)}
    ids_db = server.client(OFFSET)
    ids_db.zadd("retry_queue", {f"orphan-{index:02d}": float(index) + 0.5 for index in range(10)})
    ids_db.zadd("retry_queue", {f"orphan-tie-{index:02d}": 3.0 for index in range(10)})

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor, 3))

    assert session.get_deferred_messages() == by_bytes(ids)
    assert session.get_deferred_messages(4.0) == by_bytes(ids)[:5]
    assert page_ids(pages) == by_bytes(ids)
    assert list(session.iter_deferred_messages(page_size=2)) == by_bytes(ids)


def test_orphan_retry_pages_move_on_redis(kit: EngineKit, session: Session) -> None:
    # A page of orphans only is empty but still moves the cursor on.
    server = require_redis(kit)
    server.client(OFFSET).zadd("retry_queue", {f"orphan-{index:02d}": 1.0 for index in range(20)})
    message_id = session.store_message({}, b"x", 2.0)

    pages = read_pages(lambda cursor: session.get_deferred_messages_page(None, cursor, 5))

    assert page_ids(pages) == [message_id]
    assert pages[0] == Page([], pages[0].cursor)
    assert len(pages) == 5


def test_orphan_lock_not_listed_redis(kit: EngineKit, session: Session) -> None:
    server = require_redis(kit)
    locked = session.store_message({}, b"x")
    session.lock_message(locked, LONG_LOCK)
    locks = server.client(OFFSET + 3)
    for index in range(30):
        locks.set(f"orphan-{index}", "locked", px=60_000)

    pages = read_pages(lambda cursor: session.get_active_messages_page(cursor, 4))

    assert session.get_active_messages() == [locked]
    assert page_ids(pages) == [locked]


def test_orphan_ids_not_read_redis(kit: EngineKit, session: Session) -> None:
    # Meta and contents of an id that is not stored are not a message.
    server = require_redis(kit)
    server.client(OFFSET + 1).hset("orphan", "a", "1")
    server.client(OFFSET + 2).set("orphan", b"body")

    assert session.get_messages(["orphan"]) == {}
    with pytest.raises(MessageNotFound):
        session.get_message("orphan")
    with pytest.raises(MessageNotFound):
        session.checkout_message("orphan", LONG_LOCK)
    assert server.client(OFFSET + 3).exists("orphan") == 0


# Python iterators on the pages


def test_iter_all_messages(session: Session) -> None:
    ids = [session.claim_message_id() for _ in range(23)]

    listed = list(session.iter_all_messages(page_size=5))

    assert sorted(listed) == sorted(ids)
    assert len(listed) == 23


def test_iter_deferred_messages(session: Session) -> None:
    ids = {session.store_message({}, b"x", float(index % 4)): float(index % 4) for index in range(23)}

    assert list(session.iter_deferred_messages(page_size=5)) == by_bytes(ids)
    assert list(session.iter_deferred_messages(2.0, page_size=3)) == session.get_deferred_messages(2.0)


def test_iter_active_messages(session: Session) -> None:
    ids = [session.store_message({}, b"x") for _ in range(11)]
    for message_id in ids[:7]:
        session.lock_message(message_id, LONG_LOCK)

    assert sorted(session.iter_active_messages(page_size=2)) == sorted(ids[:7])


def test_iter_empty_queue(session: Session) -> None:
    assert list(session.iter_all_messages()) == []
    assert list(session.iter_deferred_messages()) == []
    assert list(session.iter_active_messages()) == []


@pytest.mark.parametrize("method", ["iter_all_messages", "iter_deferred_messages", "iter_active_messages"])
@pytest.mark.parametrize("page_size", [0, 10_001, 2.5, None])
def test_iter_bad_page_size_at_call(session: Session, method: str, page_size: Any) -> None:
    # The error comes from the call itself, before the first next().
    with pytest.raises(InvalidArgument) as caught:
        getattr(session, method)(page_size=page_size)

    assert caught.value.param == "page_size"


def test_iter_closed_midway(kit: EngineKit) -> None:
    session = kit.connect()
    for _ in range(5):
        session.claim_message_id()
    iterator = session.iter_all_messages(page_size=2)
    next(iterator)
    session.close()

    with pytest.raises(SessionClosed):
        list(iterator)


def test_whole_lists_many_pages(session: Session) -> None:
    # More ids than one page of the whole-list methods, with ties.
    ids: dict[str, float] = {}
    for first in range(0, 2500, 1000):
        batch = [new_message(index, float(index % 3)) for index in range(first, min(first + 1000, 2500))]
        for message_id, message in zip(session.store_messages(batch), batch, strict=True):
            ids[message_id] = message["retry"]
    for message_id in list(ids)[:1100]:
        session.lock_message(message_id, LONG_LOCK)

    assert session.get_deferred_messages() == by_bytes(ids)
    assert sorted(session.get_all_messages()) == sorted(ids)
    assert sorted(session.get_active_messages()) == sorted(list(ids)[:1100])
