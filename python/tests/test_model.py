"""Both engines agree with one model of the spec, under Hypothesis.

:class:`ModelStore` is a dict-based reference of the session methods,
written from the rules of spec/storage.yaml, with a clock of its own in
whole microseconds. :class:`SessionMachine` calls every session method
(the twenty-six of the spec and ``describe_message``) with arbitrary
arguments, valid and invalid, on an engine and on the model. The engine
must return what the model returns, or raise an error of the same kind:
``InvalidArgument`` naming the same parameter, ``MessageNotFound`` with
the same id, or ``SessionClosed``. Any other exception fails the test.
After each call that writes, or tries to write, a message, the machine
reads that message back. After every step the listings of the engine
must equal the model's, and on Redis the number of keys in each of the
four databases must match the messages of the model.

The paged listings are followed from the first page to the last, and the
ids of their pages must be the model's whole listing. One listing at a
time also stays open across steps, reading a page after each step, and
its pages must hold the ids that the spec requires of a listing whose
data changes meanwhile.

Arguments are checked before the id is looked up, as the Python binding
documents, so a call with a bad argument and an unknown id expects
``InvalidArgument``. The spec leaves that order open.

Time: the memory engine reads the model's clock, so the machine moves
both together and lets locks expire. A Redis server's clock cannot be
moved, so on Redis the machine takes only locks of an hour or more, which
outlast the test, and checks ``lock_remaining`` against the real time
that has passed. The lock tests of test_session.py cover expiry on Redis
with real waits.

Each run uses ``derandomize=True`` and no example database, so every run
draws the same examples.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
import redis
from conftest import OFFSET, FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from slimta.storage import (
    InvalidArgument,
    Message,
    MessageInfo,
    MessageNotFound,
    Page,
    Session,
    SessionClosed,
    StorageError,
    memory,
)
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

# The rules of the spec's types, restated here so that the model does not
# share code with the library it checks.
MAX_ID_LENGTH = 255
MAX_META_KEY_LENGTH = 255
MAX_LOCK_SECONDS = 31_536_000
PLAIN_LOCK_VALUE = "locked"
MAX_BATCH = 1000
MAX_PAGE_SIZE = 10_000
# The meta key that defer_message counts up, and the values it counts on
# from: ASCII digits only. Other values count as 0.
ATTEMPTS_KEY = "attempts"
ATTEMPTS_DIGITS = re.compile(r"[0-9]+")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# The memory engine's clock starts here, in UNIX seconds.
START_SECONDS = 1_700_000_000.0
MICROSECONDS = 1_000_000

# The model's clock never stops this close to a lock's expiry, in
# microseconds. Float seconds near START_SECONDS have a resolution of
# 0.24 microseconds, so the engine and the model agree on every lock
# whose expiry is further away. At the very instant of expiry the spec
# does not say whether the lock is still taken.
EXPIRY_MARGIN_US = 5

# describe_message's lock_remaining on the memory engine may differ from
# the model by float rounding of the clock, far below one millisecond.
MEMORY_REMAINING_TOLERANCE = 1e-5

# On Redis, PTTL counts whole milliseconds.
REDIS_PTTL_RESOLUTION = 0.001

SESSION_NAMES = ("first", "second")
# The session that reads back what each write stored, and the listings.
OBSERVER = "observer"

# Methods after which the machine reads the message back, to see that
# the engine stored what the model did, and nothing for a call that raised.
WRITES = {
    "set_message_meta",
    "set_message_meta_key",
    "set_message_contents",
    "set_message_retry",
    "lock_message",
    "refresh_lock",
    "unlock_message",
    "delete_message",
    "checkout_message",
    "finish_message",
    "defer_message",
}


# The model


def is_printable_ascii(value: Any) -> bool:
    """Return whether ``value`` is a valid message id or lock owner text."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return False
    return all("\x21" <= char <= "\x7e" for char in value)


def is_meta_text(value: Any) -> bool:
    """Return whether ``value`` is text that round-trips through bytes.

    Python reads bytes that are not UTF-8 as surrogate escapes, so text
    with escapes is valid when encoding it and decoding the bytes again
    returns the same text.
    """
    if not isinstance(value, str):
        return False
    try:
        encoded = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return encoded.decode("utf-8", "surrogateescape") == value


def is_meta_key(value: Any) -> bool:
    return is_meta_text(value) and 1 <= len(value) <= MAX_META_KEY_LENGTH and "\0" not in value


def finite_number(value: Any) -> float | None:
    """Return ``value`` as a float, or None when it is no finite int or float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def invalid(param: str, value: Any) -> InvalidArgument:
    return InvalidArgument(param, value, "rejected by the model")


def check_message_id(value: Any, param: str = "message_id") -> str:
    if not is_printable_ascii(value):
        raise invalid(param, value)
    return str(value)


def check_meta(value: Any, param: str = "meta") -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise invalid(param, value)
    for key, item in value.items():
        if not is_meta_key(key) or not is_meta_text(item):
            raise invalid(param, value)
    return dict(value)


def check_contents(value: Any, param: str = "contents") -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise invalid(param, value)
    return bytes(value)


def check_timestamp(value: Any, param: str) -> float:
    number = finite_number(value)
    if number is None or number < 0:
        raise invalid(param, value)
    return number


def check_lock_ms(value: Any) -> int:
    """Return a lock length in whole milliseconds, rounded up."""
    seconds = finite_number(value)
    if seconds is None or not 0 < seconds <= MAX_LOCK_SECONDS:
        raise invalid("length", value)
    # The decimal that the float prints as is the length the caller wrote,
    # so 2.007 is 2007 ms although the nearest float is slightly off.
    return max(1, math.ceil(Decimal(repr(seconds)) * 1000))


def check_owner(value: Any) -> str:
    if not is_printable_ascii(value) or value == PLAIN_LOCK_VALUE:
        raise invalid("owner", value)
    return str(value)


def check_optional_owner(value: Any) -> str | None:
    return None if value is None else check_owner(value)


def check_batch(value: Any, param: str) -> list[Any]:
    """Return the items of a bulk call's list of 1 to MAX_BATCH items.

    The spec's type is an array. The Python binding takes any iterable but
    text, bytes and mappings, which are iterable but no list of items.
    """
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise invalid(param, value)
    items = list(value)
    if not 1 <= len(items) <= MAX_BATCH:
        raise invalid(param, value)
    return items


def check_new_message(value: Any, param: str) -> ModelMessage:
    """Return the message to store for one item of store_messages, checked in the binding's order."""
    if not isinstance(value, Mapping):
        raise invalid(param, value)
    keys = set(value)
    if not keys <= {"meta", "contents", "retry"} or not {"meta", "contents"} <= keys:
        raise invalid(param, value)
    meta = check_meta(value["meta"], f"{param}['meta']")
    contents = check_contents(value["contents"], f"{param}['contents']")
    retry = value.get("retry")
    checked_retry = None if retry is None else check_timestamp(retry, f"{param}['retry']")
    return ModelMessage(meta=meta, contents=contents, retry=checked_retry)


def check_page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise invalid("count", value)
    return value


def check_cursor_type(value: Any) -> None:
    """Check that a cursor is None or text, which the binding checks before the page size."""
    if value is not None and (not isinstance(value, str) or value == ""):
        raise invalid("cursor", value)


def check_cursor_form(value: Any) -> None:
    """Check the form of the cursor of a listing's first page, which the engine checks last.

    The machine passes None, or a cursor that no engine accepts for that
    listing: text in no engine's form or a cursor of another listing.
    Cursors that the engine returned are passed by the machine itself,
    page after page, and never reach the model.
    """
    if value is not None:
        raise invalid("cursor", value)


def next_attempts(stored: str | None) -> int:
    """Return the attempts count after one more failed attempt."""
    if stored is None or ATTEMPTS_DIGITS.fullmatch(stored) is None:
        return 1
    return int(stored) + 1


@dataclass
class ModelMessage:
    meta: dict[str, str] = field(default_factory=dict)
    contents: bytes | None = None
    retry: float | None = None
    # The value of the lock: its owner, or "locked" for a lock without one.
    lock_value: str | None = None
    lock_expires_us: int = 0
    lock_ms: int = 0
    # time.monotonic() just before the lock was taken or refreshed, for
    # the real time that has passed on a Redis server.
    locked_at: float = 0.0
    # Values of ModelStore.changes when the retry time last changed and
    # when a lock was last taken or removed, for listings read across writes.
    retry_changed: int = 0
    lock_changed: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """The facts describe_message returns, with the length and start of the lock."""

    message_id: str
    size: int | None
    retry: float | None
    lock_remaining: float | None
    lock_ms: int
    locked_at: float


class ModelStore:
    """The messages of one engine as the spec describes them.

    Each method has the name and parameters of a session method, returns
    what the spec says the method returns, and raises the error of the
    spec's kind. ``now_us`` is the model's clock, in microseconds from
    ``START_SECONDS``.
    """

    def __init__(self) -> None:
        self.messages: dict[str, ModelMessage] = {}
        # Every id that the engine issued, and the messages deleted since.
        self.issued: set[str] = set()
        self.deleted: dict[str, ModelMessage] = {}
        # A counter of the changes of retry times and locks.
        self.changes = 0
        self.closed: set[str] = set()
        self.now_us = 0

    def find(self, message_id: str) -> ModelMessage:
        message = self.messages.get(message_id)
        if message is None:
            raise MessageNotFound(message_id)
        return message

    def is_locked(self, message: ModelMessage) -> bool:
        return message.lock_value is not None and message.lock_expires_us > self.now_us

    def move_clock(self, target_us: int) -> None:
        """Move the clock forward to ``target_us``, or a little past it.

        When the target falls within EXPIRY_MARGIN_US of a lock's expiry,
        the clock stops past that window instead.
        """
        now = max(self.now_us, target_us)
        expiries = sorted(
            message.lock_expires_us for message in self.messages.values() if message.lock_value is not None
        )
        for expiry in expiries:
            if abs(now - expiry) < EXPIRY_MARGIN_US:
                now = expiry + EXPIRY_MARGIN_US
        self.now_us = now

    def register(self, message_id: str, message: ModelMessage) -> None:
        """Add a message under an id that the engine created."""
        assert isinstance(message_id, str)
        assert UUID4.fullmatch(message_id), f"{message_id!r} is not a lowercase UUID4"
        assert message_id not in self.issued, f"{message_id!r} was issued before"
        self.issued.add(message_id)
        self.messages[message_id] = message

    # The session methods

    def get_active_messages(self) -> list[str]:
        return sorted(key for key, message in self.messages.items() if self.is_locked(message))

    def get_deferred_messages(self, timestamp: Any = None) -> list[str]:
        until = None if timestamp is None else check_timestamp(timestamp, "timestamp")
        listed = [
            (message.retry, message_id.encode())
            for message_id, message in self.messages.items()
            if message.retry is not None and (until is None or message.retry <= until)
        ]
        return [raw_id.decode() for _, raw_id in sorted(listed)]

    def get_all_messages(self) -> list[str]:
        return sorted(self.messages)

    def claim_message_id(self) -> ModelMessage:
        """Return the message to register under the engine's new id."""
        return ModelMessage()

    def store_message(self, meta: Any, contents: Any, retry: Any = None) -> ModelMessage:
        """Return the message to register under the engine's new id."""
        checked_meta = check_meta(meta)
        checked_contents = check_contents(contents)
        checked_retry = None if retry is None else check_timestamp(retry, "retry")
        return ModelMessage(meta=checked_meta, contents=checked_contents, retry=checked_retry)

    def set_message_meta(self, message_id: Any, meta: Any) -> None:
        checked_id = check_message_id(message_id)
        checked_meta = check_meta(meta)
        self.find(checked_id).meta = checked_meta

    def set_message_meta_key(self, message_id: Any, key: Any, value: Any) -> None:
        checked_id = check_message_id(message_id)
        if not is_meta_key(key):
            raise invalid("key", key)
        if value is not None and not is_meta_text(value):
            raise invalid("value", value)
        meta = self.find(checked_id).meta
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value

    def set_message_contents(self, message_id: Any, contents: Any) -> None:
        checked_id = check_message_id(message_id)
        checked_contents = check_contents(contents)
        self.find(checked_id).contents = checked_contents

    def get_message_meta(self, message_id: Any) -> dict[str, str]:
        return dict(self.find(check_message_id(message_id)).meta)

    def get_message_meta_key(self, message_id: Any, key: Any) -> str | None:
        checked_id = check_message_id(message_id)
        if not is_meta_key(key):
            raise invalid("key", key)
        return self.find(checked_id).meta.get(key)

    def get_message_contents(self, message_id: Any) -> bytes | None:
        return self.find(check_message_id(message_id)).contents

    def set_message_retry(self, message_id: Any, timestamp: Any) -> None:
        checked_id = check_message_id(message_id)
        checked_timestamp = check_timestamp(timestamp, "timestamp")
        self.set_retry(self.find(checked_id), checked_timestamp)

    def lock_message(self, message_id: Any, length: Any, owner: Any = None) -> bool:
        checked_id = check_message_id(message_id)
        length_ms = check_lock_ms(length)
        value = PLAIN_LOCK_VALUE if owner is None else check_owner(owner)
        message = self.find(checked_id)
        if self.is_locked(message):
            return False
        self.take_lock(message, value, length_ms)
        return True

    def refresh_lock(self, message_id: Any, length: Any, owner: Any) -> bool:
        checked_id = check_message_id(message_id)
        length_ms = check_lock_ms(length)
        checked_owner = check_owner(owner)
        message = self.find(checked_id)
        if not self.is_locked(message) or message.lock_value != checked_owner:
            return False
        self.set_expiry(message, length_ms)
        return True

    def unlock_message(self, message_id: Any, owner: Any = None) -> bool:
        checked_id = check_message_id(message_id)
        checked_owner = None if owner is None else check_owner(owner)
        message = self.messages.get(checked_id)
        if message is None or not self.is_locked(message):
            return False
        if checked_owner is not None and message.lock_value != checked_owner:
            return False
        self.remove_lock(message)
        return True

    def delete_message(self, message_id: Any) -> None:
        checked_id = check_message_id(message_id)
        if checked_id in self.messages:
            self.remove(checked_id)

    def describe_message(self, message_id: Any) -> ModelInfo:
        checked_id = check_message_id(message_id)
        message = self.find(checked_id)
        size = None if message.contents is None else len(message.contents)
        remaining = None
        if self.is_locked(message):
            remaining = (message.lock_expires_us - self.now_us) / MICROSECONDS
        return ModelInfo(checked_id, size, message.retry, remaining, message.lock_ms, message.locked_at)

    def get_message(self, message_id: Any) -> Message:
        return self.read(self.find(check_message_id(message_id)))

    def get_messages(self, message_ids: Any) -> dict[str, Message]:
        items = check_batch(message_ids, "message_ids")
        checked = [check_message_id(item, f"message_ids[{index}]") for index, item in enumerate(items)]
        return {
            message_id: self.read(self.messages[message_id])
            for message_id in checked
            if message_id in self.messages
        }

    def checkout_message(self, message_id: Any, length: Any, owner: Any = None) -> Message | None:
        checked_id = check_message_id(message_id)
        length_ms = check_lock_ms(length)
        value = PLAIN_LOCK_VALUE if owner is None else check_owner(owner)
        message = self.find(checked_id)
        if self.is_locked(message):
            return None
        self.take_lock(message, value, length_ms)
        return self.read(message)

    def finish_message(self, message_id: Any, owner: Any = None) -> bool:
        checked_id = check_message_id(message_id)
        checked_owner = check_optional_owner(owner)
        if not self.holds(self.find(checked_id), checked_owner):
            return False
        self.remove(checked_id)
        return True

    def defer_message(self, message_id: Any, timestamp: Any, owner: Any = None) -> int | None:
        checked_id = check_message_id(message_id)
        checked_timestamp = check_timestamp(timestamp, "timestamp")
        checked_owner = check_optional_owner(owner)
        message = self.find(checked_id)
        if not self.holds(message, checked_owner):
            return None
        attempts = next_attempts(message.meta.get(ATTEMPTS_KEY))
        message.meta[ATTEMPTS_KEY] = str(attempts)
        self.set_retry(message, checked_timestamp)
        self.remove_lock(message)
        return attempts

    def store_messages(self, messages: Any) -> list[ModelMessage]:
        """Return the messages to register under the engine's new ids, in order."""
        items = check_batch(messages, "messages")
        return [check_new_message(item, f"messages[{index}]") for index, item in enumerate(items)]

    # The paged listings return every id that following their pages to the
    # end must yield: the whole listing, checked against the arguments of
    # the first page.

    def get_all_messages_page(self, cursor: Any, count: Any) -> list[str]:
        check_cursor_type(cursor)
        check_page_size(count)
        check_cursor_form(cursor)
        return self.get_all_messages()

    def get_deferred_messages_page(self, timestamp: Any, cursor: Any, count: Any) -> list[str]:
        listed = self.get_deferred_messages(timestamp)
        check_cursor_type(cursor)
        check_page_size(count)
        check_cursor_form(cursor)
        return listed

    def get_active_messages_page(self, cursor: Any, count: Any) -> list[str]:
        check_cursor_type(cursor)
        check_page_size(count)
        check_cursor_form(cursor)
        return self.get_active_messages()

    def holds(self, message: ModelMessage, owner: str | None) -> bool:
        """Return whether ``owner`` may finish or defer the message: None always may."""
        return owner is None or (self.is_locked(message) and message.lock_value == owner)

    @staticmethod
    def read(message: ModelMessage) -> Message:
        return Message(dict(message.meta), message.contents)

    def remove(self, message_id: str) -> None:
        self.deleted[message_id] = self.messages.pop(message_id)

    def set_retry(self, message: ModelMessage, timestamp: float) -> None:
        if message.retry != timestamp:
            self.changes += 1
            message.retry_changed = self.changes
        message.retry = timestamp

    def take_lock(self, message: ModelMessage, value: str, length_ms: int) -> None:
        self.changes += 1
        message.lock_changed = self.changes
        message.lock_value = value
        self.set_expiry(message, length_ms)

    def remove_lock(self, message: ModelMessage) -> None:
        self.changes += 1
        message.lock_changed = self.changes
        message.lock_value = None

    def set_expiry(self, message: ModelMessage, length_ms: int) -> None:
        message.lock_expires_us = self.now_us + length_ms * 1000
        message.lock_ms = length_ms
        message.locked_at = time.monotonic()


# Strategies

PRINTABLE_ASCII = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def mostly(
    valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], share: int = 8
) -> st.SearchStrategy[Any]:
    """Draw from ``bad`` about once in ``share`` draws, else from ``valid``.

    A rule has up to four arguments, so a larger share of bad values
    would leave few calls that get past the argument checks. st.one_of
    cannot weight its branches, because it drops repeated ones. Shrinking
    moves the draw toward ``valid``.
    """
    return st.integers(1, share).flatmap(lambda draw: bad if draw == share else valid)


def read_as_text(data: bytes) -> str:
    """Return bytes as Python reads them from another writer: UTF-8 with surrogate escapes."""
    return data.decode("utf-8", "surrogateescape")


# Well-formed ids that no engine issues: other UUIDs, and any printable
# ASCII, which other writers of the layout may use, including the names
# of the Redis keys in database 0.
UNKNOWN_IDS = st.one_of(
    st.uuids(version=4).map(str),
    st.text(PRINTABLE_ASCII, min_size=1, max_size=40),
    st.sampled_from(
        ["x" * MAX_ID_LENGTH, "message_ids", "retry_queue", "2F1C1D3E-8B57-4A8E-9A39-5D1F0F2B6C1E"]
    ),
)
BAD_IDS = st.one_of(
    st.sampled_from(["", "x" * (MAX_ID_LENGTH + 1), "a b", " lead", "tab\tid", "nul\0", "del\x7f", "ümlaut"]),
    st.text(min_size=1, max_size=12).filter(lambda text: not is_printable_ascii(text)),
    st.uuids().map(lambda value: str(value).encode()),
    st.none(),
    st.integers(),
    st.floats(),
)
ISSUED = Bundle("issued")
# Most calls use an id that is stored or was deleted.
MESSAGE_IDS = mostly(mostly(ISSUED, UNKNOWN_IDS, share=6), BAD_IDS)

# Text of meta keys and values: any Unicode (NUL included), bytes of
# another writer read as text, and fixed hard cases.
META_TEXT = st.one_of(
    st.text(max_size=12),
    st.binary(max_size=12).map(read_as_text),
    st.sampled_from(["", "\0", "\0a@example.com\0b@example.net", "é\udce9", "\udcff\udcfe", "📨 e\u0301"]),
)
META_KEYS = st.one_of(
    META_TEXT.filter(lambda text: text != "" and "\0" not in text),
    st.sampled_from(["k" * MAX_META_KEY_LENGTH, "é" * MAX_META_KEY_LENGTH]),
)
BAD_META_KEYS = st.sampled_from(
    ["", "a\0b", "k" * (MAX_META_KEY_LENGTH + 1), "\ud800", "\udcc3\udca9", 5, b"key", None, 1.5]
)
BAD_META_VALUES = st.sampled_from([5, b"value", None, 1.5, "\ud800x", "x\udcc3\udca9", ["a"]])
VALID_METAS = st.one_of(
    st.dictionaries(META_KEYS, META_TEXT, max_size=4),
    st.dictionaries(META_KEYS, META_TEXT, max_size=3).map(MappingProxyType),
)
BAD_METAS = st.one_of(
    st.dictionaries(
        st.one_of(META_KEYS, BAD_META_KEYS), st.one_of(META_TEXT, BAD_META_VALUES), min_size=1, max_size=3
    ),
    st.sampled_from([None, "a=1", [("a", "1")], 5]),
)
META_ARGS = mostly(VALID_METAS, BAD_METAS)
KEY_ARGS = mostly(META_KEYS, BAD_META_KEYS)
VALUE_ARGS = mostly(st.one_of(st.none(), META_TEXT, META_TEXT), BAD_META_VALUES)

CONTENTS = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\0", b"a\r\nb\r\n", b"bare\nlf\rcr", b"\r\n.\r\n", bytes(range(256))]),
    st.binary(max_size=16).map(bytearray),
    st.binary(max_size=16).map(memoryview),
)
BAD_CONTENTS = st.one_of(st.text(max_size=8), st.sampled_from([None, 5, [1, 2], 1.5]))
CONTENTS_ARGS = mostly(CONTENTS, BAD_CONTENTS)

TIMESTAMPS = st.one_of(
    # A few fixed times, so that messages share retry times and listings
    # cut exactly at one.
    st.sampled_from([0, 0.0, -0.0, 10.0, 20, 20.5, START_SECONDS]),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=2**1023),
    st.sampled_from([5e-324, 1e308, sys.float_info.max, 2**63 + 1]),
)
BAD_TIMESTAMPS = st.one_of(
    st.sampled_from([-1, -0.5, float("nan"), float("inf"), float("-inf"), True, False, "10", b"10", 10**400]),
    st.floats(max_value=0, exclude_max=True),
)
TIMESTAMP_ARGS = mostly(TIMESTAMPS, st.one_of(BAD_TIMESTAMPS, st.none()))
OPTIONAL_TIMESTAMP_ARGS = mostly(st.one_of(st.none(), TIMESTAMPS), BAD_TIMESTAMPS)

# Lock lengths that the memory engine's clock lets expire during a run.
MEMORY_LOCK_LENGTHS = st.one_of(
    st.integers(1, 120),
    st.integers(1, 120_000).map(lambda ms: ms / 1000),
    st.integers(1, 10**9).map(lambda ns: ns / 10**9),
    st.integers(1, MAX_LOCK_SECONDS * 1000).map(lambda ms: ms / 1000),
    # Whole milliseconds above about 12 days, where the float noise of
    # length * 1000 exceeds a microsecond.
    st.integers(10**9, MAX_LOCK_SECONDS * 1000).map(lambda ms: ms / 1000),
    st.sampled_from([0.0011, 2.007, 5e-324, 1e-12, MAX_LOCK_SECONDS, 31_535_999.9999]),
)
# Lock lengths that outlast a test run on a real Redis server.
REDIS_LOCK_LENGTHS = st.one_of(
    st.integers(3600, MAX_LOCK_SECONDS),
    st.integers(3_600_000, MAX_LOCK_SECONDS * 1000).map(lambda ms: ms / 1000),
    st.sampled_from([3600.0005, 86_400.001, MAX_LOCK_SECONDS]),
)
BAD_LOCK_LENGTHS = st.one_of(
    st.sampled_from(
        [0, 0.0, -0.0, -1, -0.001, float("nan"), float("inf"), float("-inf"), MAX_LOCK_SECONDS + 0.001]
    ),
    st.sampled_from([MAX_LOCK_SECONDS + 1, 1e308, True, False, "60", b"60", None, 10**400]),
    st.floats(max_value=0),
)

# Mostly a few fixed owners, so that calls often meet a lock of their own.
OWNERS = mostly(
    st.sampled_from(["relayer-a", "relayer-b"]),
    st.one_of(
        st.sampled_from(["0b9e4f8a-3c1d-4e5f-8a7b-6c5d4e3f2a1b", "LOCKED", "x" * MAX_ID_LENGTH]),
        st.text(PRINTABLE_ASCII, min_size=1, max_size=40).filter(lambda text: text != "locked"),
    ),
    share=4,
)
BAD_OWNERS = st.sampled_from(
    ["locked", "", "a b", "ümlaut", "nul\0", "x" * (MAX_ID_LENGTH + 1), 5, b"relayer-a", 1.5]
)
# lock_message and unlock_message take None for no owner, but
# refresh_lock requires an owner.
OPTIONAL_OWNER_ARGS = mostly(st.one_of(st.none(), OWNERS), BAD_OWNERS)
OWNER_ARGS = mostly(OWNERS, st.one_of(BAD_OWNERS, st.none()))

SESSIONS = st.sampled_from(SESSION_NAMES)

PAGED_LISTINGS = ("get_all_messages_page", "get_deferred_messages_page", "get_active_messages_page")
# How many of the last cursors of each paged listing the machine keeps.
KEPT_CURSORS = 4
# The maximum time that following the pages of one listing may take, in seconds.
PAGES_TIMEOUT = 30.0
# The changes that list_while_changing makes between pages, and the retry
# times it sets, a few of those that DEFERRED_MESSAGES stores among them.
LISTING_CHANGES = ("retry", "delete", "lock", "unlock")
CHANGED_RETRY_TIMES = (0.0, 10.0, 15, 20, 20.5, 30.0)
# A lock length that both machines take: Redis's locks must outlast a run.
LISTING_LOCK_LENGTH = 3600.0

# Ids for get_messages: short lists and tuples, repeats included, and two
# full batches of ids that are not stored.
BATCH_IDS = st.one_of(
    st.lists(mostly(ISSUED, UNKNOWN_IDS, share=4), min_size=1, max_size=6),
    st.lists(ISSUED, min_size=1, max_size=4).map(tuple),
    st.builds(lambda: ["x"] * MAX_BATCH),
    st.builds(lambda: [f"unknown-{index}" for index in range(MAX_BATCH)]),
)
BAD_BATCH_IDS = st.one_of(
    st.lists(mostly(ISSUED, BAD_IDS, share=2), min_size=1, max_size=4),
    st.sampled_from([[], (), None, "message-id", b"message-id", 5, {"x": "y"}]),
    st.builds(lambda: ["x"] * (MAX_BATCH + 1)),
)
BATCH_ID_ARGS = mostly(BATCH_IDS, BAD_BATCH_IDS)

NEW_MESSAGES = st.fixed_dictionaries(
    {"meta": VALID_METAS, "contents": CONTENTS}, optional={"retry": st.one_of(st.none(), TIMESTAMPS)}
)
BAD_NEW_MESSAGES = st.one_of(
    st.fixed_dictionaries(
        {"meta": META_ARGS, "contents": CONTENTS_ARGS}, optional={"retry": OPTIONAL_TIMESTAMP_ARGS}
    ),
    NEW_MESSAGES.map(lambda message: {**message, "ttl": 60}),
    st.sampled_from(
        [
            {},
            {"meta": {}},
            {"contents": b"body"},
            {"meta": {}, "contents": b"body", "retry": -1.0},
            {"meta": {}, "contents": b"body", 5: 1},
            None,
            "message",
            [("meta", {}), ("contents", b"body")],
        ]
    ),
)
NEW_MESSAGE_LISTS = st.one_of(
    st.lists(NEW_MESSAGES, min_size=1, max_size=4),
    st.lists(NEW_MESSAGES.map(MappingProxyType), min_size=1, max_size=2),
    st.lists(NEW_MESSAGES, min_size=1, max_size=3).map(tuple),
)
BAD_NEW_MESSAGE_LISTS = st.one_of(
    st.lists(mostly(NEW_MESSAGES, BAD_NEW_MESSAGES, share=2), min_size=1, max_size=4),
    st.sampled_from(
        [
            [],
            (),
            None,
            "messages",
            b"messages",
            5,
            {"meta": {}, "contents": b"body"},
        ]
    ),
    st.builds(lambda: [{"meta": {}, "contents": b"body"}] * (MAX_BATCH + 1)),
)
NEW_MESSAGE_LIST_ARGS = mostly(NEW_MESSAGE_LISTS, BAD_NEW_MESSAGE_LISTS, share=4)
# New messages that share a few retry times, so that the deferred listing
# orders equal times by id, across pages.
DEFERRED_MESSAGES = st.fixed_dictionaries(
    {"meta": st.just({}), "contents": st.just(b""), "retry": st.sampled_from([10.0, 20, 20.5])}
)

# Values of the attempts meta key before defer_message: decimal text that
# defer_message counts on from, and text that it counts as 0. Their 4000
# digits at most stay below the 4300 that int() and repr() take by default
# since Python 3.11, so that the model and the failure messages can use ints.
ATTEMPTS_VALUES = st.one_of(
    st.integers(0, 10**20).map(str),
    st.sampled_from(["0", "00", "007", "9", "99", "0009", "0" * 50 + "7"]),
    st.sampled_from([40, 4000]).map(lambda digits: "9" * digits),
    st.sampled_from(
        ["", "-1", "+1", " 1", "1 ", "1.0", "1e3", "1_000", "\uff11", "\u0663", "1\n", "\n1", "x"]
    ),
    META_TEXT,
)

# Page sizes: mostly small, so that a listing takes several pages.
PAGE_SIZE_ARGS = mostly(
    st.one_of(st.integers(1, 4), st.sampled_from([5, 1000, MAX_PAGE_SIZE])),
    st.sampled_from([0, -1, MAX_PAGE_SIZE + 1, True, False, 1.0, 2.5, "5", None, 2**64]),
)
# Cursors that no listing of either engine accepts: no text, empty text,
# and text in the form of no engine's cursors. Cursors of other listings,
# which the machine keeps, are the other cursors that the model rejects.
BAD_CURSORS = st.sampled_from(
    [
        5,
        b"all:x",
        1.5,
        "",
        ":",
        "x:y",
        "nonsense",
        "all:",
        "active:",
        "retry:",
        "retry:1.0",
        "retry:1.0:",
        "retry:nan:x",
        "retry:01.0:x",
        "retry: 1.0:x",
        "sscan:",
        "sscan:-1",
        "sscan:abc",
        "scan:18446744073709551616",
    ]
)


# Outcomes


@dataclass(frozen=True)
class Outcome:
    """The value a call returned, or the storage error it raised."""

    value: Any = None
    error: StorageError | None = None


def outcome_of(call: Callable[[], Any]) -> Outcome:
    """Run ``call`` and keep the StorageError it raises. Other exceptions propagate."""
    try:
        return Outcome(value=call())
    except StorageError as error:
        return Outcome(error=error)


def assert_same_error(expected: StorageError, actual: Outcome) -> None:
    assert actual.error is not None, f"expected {expected.kind} ({expected}), got {actual.value!r}"
    assert actual.error.kind == expected.kind, f"expected {expected!r}, got {actual.error!r}"
    if isinstance(expected, InvalidArgument):
        assert isinstance(actual.error, InvalidArgument)
        assert actual.error.param.startswith(expected.param), f"expected {expected!r}, got {actual.error!r}"
    if isinstance(expected, MessageNotFound):
        assert isinstance(actual.error, MessageNotFound)
        assert actual.error.message_id == expected.message_id


def assert_same_kind(expected: Outcome, actual: Outcome) -> None:
    """Check that both calls raised the same error kind, or neither raised."""
    if expected.error is not None:
        assert_same_error(expected.error, actual)
    else:
        assert actual.error is None, f"expected a result, got {actual.error!r}"


# The state machine


@dataclass
class OpenListing:
    """A paged listing that the observer reads one page per step, while other steps write."""

    method: str
    # The arguments before the cursor, and the page size.
    before: tuple[Any, ...]
    count: int
    cursor: str | None
    # The model's whole listing, its change counter and its issued ids
    # when the first page was read.
    first_listing: list[str]
    changes: int
    issued: frozenset[str]
    listed: list[str] = field(default_factory=list)
    pages: int = 0


class SessionMachine(RuleBasedStateMachine):
    """Calls every session method on an engine and on the model.

    Two sessions, "first" and "second", make the calls. A rule closes
    one, the next call on it must raise SessionClosed, and then a new
    session takes its place. A third session, never closed, reads back
    each message that a call wrote or tried to write, and the listings
    for the invariants.
    """

    def __init__(self, connect: Callable[[], Session]) -> None:
        super().__init__()
        self.model = ModelStore()
        self.connect = connect
        self.sessions = {name: connect() for name in (*SESSION_NAMES, OBSERVER)}
        # The last cursors that each paged listing returned, to pass to the others.
        self.cursors: dict[str, list[str]] = {method: [] for method in PAGED_LISTINGS}
        self.open_listing: OpenListing | None = None

    def teardown(self) -> None:
        for session in self.sessions.values():
            session.close()

    def expect(self, session: str, method: str, *args: Any) -> Outcome:
        """Return the model's outcome of a call on ``session``."""
        if session in self.model.closed:
            return Outcome(error=SessionClosed())
        return outcome_of(lambda: getattr(self.model, method)(*args))

    def call(self, session: str, method: str, *args: Any) -> Outcome:
        """Return the engine's outcome of a call on ``session``, then reopen it if closed."""
        outcome = outcome_of(lambda: getattr(self.sessions[session], method)(*args))
        if session in self.model.closed:
            self.sessions[session] = self.connect()
            self.model.closed.discard(session)
        return outcome

    def check(self, session: str, method: str, *args: Any) -> Outcome:
        """Call ``method`` on the model, then on the engine, and compare the outcomes."""
        expected = self.expect(session, method, *args)
        actual = self.call(session, method, *args)
        assert_same_kind(expected, actual)
        if expected.error is None:
            failure = f"{method}{args!r} returned {actual.value!r}, expected {expected.value!r}"
            assert type(actual.value) is type(expected.value), failure
            assert actual.value == expected.value, failure
        if method in WRITES and is_printable_ascii(args[0]):
            self.read_back(args[0])
        return actual

    def register_new(self, expected: Outcome, actual: Outcome) -> Any:
        assert_same_kind(expected, actual)
        if actual.error is not None:
            return multiple()
        self.model.register(actual.value, expected.value)
        self.read_back(actual.value)
        return actual.value

    def read_back(self, message_id: str) -> None:
        """Check everything the observer can read of one message against the model."""
        self.check(OBSERVER, "get_message_meta", message_id)
        self.check(OBSERVER, "get_message_contents", message_id)
        self.check(OBSERVER, "get_message", message_id)
        self.check_described(OBSERVER, message_id)

    # Sessions

    @rule(session=SESSIONS)
    def close_session(self, session: str) -> None:
        # close returns None, and again when the session is closed already.
        assert self.sessions[session].close() is None
        assert self.sessions[session].close() is None
        self.model.closed.add(session)

    # New messages

    @initialize(target=ISSUED, meta=VALID_METAS, contents=CONTENTS, retry=st.one_of(st.none(), TIMESTAMPS))
    def start_with_messages(self, meta: Any, contents: Any, retry: Any) -> Any:
        # One claimed and one stored message, so that every run has ids to use.
        claimed = self.register_new(
            self.expect("first", "claim_message_id"), self.call("first", "claim_message_id")
        )
        expected = self.expect("first", "store_message", meta, contents, retry)
        stored = self.register_new(expected, self.call("first", "store_message", meta, contents, retry))
        return multiple(claimed, stored)

    @initialize(target=ISSUED, messages=st.lists(DEFERRED_MESSAGES, min_size=2, max_size=8))
    def start_with_deferred_messages(self, messages: list[dict[str, Any]]) -> Any:
        # Enough messages with retry times for listings of several pages.
        return self.store_messages("first", messages)

    @rule(target=ISSUED, session=SESSIONS)
    def claim_message_id(self, session: str) -> Any:
        expected = self.expect(session, "claim_message_id")
        actual = self.call(session, "claim_message_id")
        return self.register_new(expected, actual)

    @rule(
        target=ISSUED, session=SESSIONS, meta=META_ARGS, contents=CONTENTS_ARGS, retry=OPTIONAL_TIMESTAMP_ARGS
    )
    def store_message(self, session: str, meta: Any, contents: Any, retry: Any) -> Any:
        meta, contents = own_copies(meta, contents)
        expected = self.expect(session, "store_message", meta, contents, retry)
        actual = self.call(session, "store_message", meta, contents, retry)
        scribble(meta, contents)
        return self.register_new(expected, actual)

    # Writes

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, meta=META_ARGS)
    def set_message_meta(self, session: str, message_id: Any, meta: Any) -> None:
        meta, _ = own_copies(meta, None)
        self.check(session, "set_message_meta", message_id, meta)
        scribble(meta, None)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, key=KEY_ARGS, value=VALUE_ARGS)
    def set_message_meta_key(self, session: str, message_id: Any, key: Any, value: Any) -> None:
        self.check(session, "set_message_meta_key", message_id, key, value)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, contents=CONTENTS_ARGS)
    def set_message_contents(self, session: str, message_id: Any, contents: Any) -> None:
        _, contents = own_copies(None, contents)
        self.check(session, "set_message_contents", message_id, contents)
        scribble(None, contents)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, timestamp=TIMESTAMP_ARGS)
    def set_message_retry(self, session: str, message_id: Any, timestamp: Any) -> None:
        self.check(session, "set_message_retry", message_id, timestamp)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS)
    def delete_message(self, session: str, message_id: Any) -> None:
        self.check(session, "delete_message", message_id)

    # Reads

    @rule(session=SESSIONS, message_id=MESSAGE_IDS)
    def get_message_meta(self, session: str, message_id: Any) -> None:
        self.check(session, "get_message_meta", message_id)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, key=KEY_ARGS)
    def get_message_meta_key(self, session: str, message_id: Any, key: Any) -> None:
        self.check(session, "get_message_meta_key", message_id, key)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS)
    def get_message_contents(self, session: str, message_id: Any) -> None:
        self.check(session, "get_message_contents", message_id)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS)
    def describe_message(self, session: str, message_id: Any) -> None:
        self.check_described(session, message_id)

    def check_described(self, session: str, message_id: Any) -> None:
        expected = self.expect(session, "describe_message", message_id)
        actual = self.call(session, "describe_message", message_id)
        assert_same_kind(expected, actual)
        if expected.error is None:
            self.check_info(expected.value, actual.value)

    def check_info(self, expected: ModelInfo, actual: MessageInfo) -> None:
        assert type(actual) is MessageInfo
        assert actual.message_id == expected.message_id
        assert actual.size == expected.size
        assert actual.retry == expected.retry
        if expected.lock_remaining is None:
            assert actual.lock_remaining is None
        else:
            assert actual.lock_remaining is not None
            low, high = self.remaining_bounds(expected)
            assert low <= actual.lock_remaining <= high, f"lock_remaining {actual.lock_remaining}"

    def remaining_bounds(self, expected: ModelInfo) -> tuple[float, float]:
        """Return the range that describe_message's lock_remaining must fall in."""
        raise NotImplementedError

    # Listings, which the invariants also check after every step

    @rule(session=SESSIONS, timestamp=OPTIONAL_TIMESTAMP_ARGS)
    def get_deferred_messages(self, session: str, timestamp: Any) -> None:
        self.check(session, "get_deferred_messages", timestamp)

    @rule(session=SESSIONS)
    def get_all_messages(self, session: str) -> None:
        self.check_unordered(session, "get_all_messages")

    @rule(session=SESSIONS)
    def get_active_messages(self, session: str) -> None:
        self.check_unordered(session, "get_active_messages")

    def check_unordered(self, session: str, method: str) -> None:
        expected = self.expect(session, method)
        actual = self.call(session, method)
        assert_same_kind(expected, actual)
        if expected.error is None:
            assert type(actual.value) is list
            assert sorted(actual.value) == expected.value, f"{method} returned {actual.value!r}"

    # Locks. Each engine draws lock lengths from its own strategy, which
    # the rules draw from inside.

    lock_lengths: st.SearchStrategy[Any]

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, owner=OPTIONAL_OWNER_ARGS, data=st.data())
    def lock_message(self, session: str, message_id: Any, owner: Any, data: st.DataObject) -> None:
        length = data.draw(self.lock_lengths, label="length")
        self.check(session, "lock_message", message_id, length, owner)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, owner=OWNER_ARGS, data=st.data())
    def refresh_lock(self, session: str, message_id: Any, owner: Any, data: st.DataObject) -> None:
        length = data.draw(self.lock_lengths, label="length")
        self.check(session, "refresh_lock", message_id, length, owner)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, owner=OPTIONAL_OWNER_ARGS)
    def unlock_message(self, session: str, message_id: Any, owner: Any) -> None:
        self.check(session, "unlock_message", message_id, owner)

    # Random ids and owners rarely meet a lock that is held, so the rules
    # below pick a message that is locked now, by its index among the
    # locked ids, and act as the lock's holder or as another owner. They
    # draw a length whether or not a message is locked, because which
    # messages are locked may differ between runs of the same draws:
    # engine ids are random, and so are the pages of a Redis listing.

    @rule(session=SESSIONS, pick=st.integers(0, 7), as_holder=st.booleans(), data=st.data())
    def refresh_held_lock(self, session: str, pick: int, as_holder: bool, data: st.DataObject) -> None:
        length = data.draw(self.lock_lengths, label="length")
        message_id = self.locked_message(pick)
        if message_id is not None:
            owner = self.acting_owner(message_id, as_holder)
            self.check(session, "refresh_lock", message_id, length, owner)

    @rule(session=SESSIONS, pick=st.integers(0, 7), as_holder=st.booleans(), with_owner=st.booleans())
    def unlock_held_lock(self, session: str, pick: int, as_holder: bool, with_owner: bool) -> None:
        message_id = self.locked_message(pick)
        if message_id is not None:
            owner = self.acting_owner(message_id, as_holder) if with_owner else None
            self.check(session, "unlock_message", message_id, owner)

    @rule(session=SESSIONS, pick=st.integers(0, 7), owner=OPTIONAL_OWNER_ARGS, data=st.data())
    def lock_held_lock(self, session: str, pick: int, owner: Any, data: st.DataObject) -> None:
        # Must return False and leave the lock's expiry as it was.
        length = data.draw(self.lock_lengths, label="length")
        message_id = self.locked_message(pick)
        if message_id is not None:
            self.check(session, "lock_message", message_id, length, owner)

    def locked_message(self, pick: int) -> str | None:
        locked = self.model.get_active_messages()
        return locked[pick % len(locked)] if locked else None

    def acting_owner(self, message_id: str, as_holder: bool) -> str:
        """Return the owner of the message's lock, or another owner.

        A lock taken without an owner has no owner to act as.
        """
        holder = self.model.messages[message_id].lock_value
        if as_holder and holder is not None and holder != PLAIN_LOCK_VALUE:
            return holder
        return "relayer-b" if holder == "relayer-a" else "relayer-a"

    # The relayer's short paths of spec 1.2

    @rule(session=SESSIONS, message_id=MESSAGE_IDS)
    def get_message(self, session: str, message_id: Any) -> None:
        self.check(session, "get_message", message_id)

    @rule(session=SESSIONS, message_ids=BATCH_ID_ARGS)
    def get_messages(self, session: str, message_ids: Any) -> None:
        self.check(session, "get_messages", message_ids)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, owner=OPTIONAL_OWNER_ARGS, data=st.data())
    def checkout_message(self, session: str, message_id: Any, owner: Any, data: st.DataObject) -> None:
        length = data.draw(self.lock_lengths, label="length")
        self.check(session, "checkout_message", message_id, length, owner)

    @rule(session=SESSIONS, pick=st.integers(0, 7), owner=OPTIONAL_OWNER_ARGS, data=st.data())
    def checkout_held_lock(self, session: str, pick: int, owner: Any, data: st.DataObject) -> None:
        # Must return None and leave the lock's expiry as it was.
        length = data.draw(self.lock_lengths, label="length")
        message_id = self.locked_message(pick)
        if message_id is not None:
            self.check(session, "checkout_message", message_id, length, owner)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, owner=OPTIONAL_OWNER_ARGS)
    def finish_message(self, session: str, message_id: Any, owner: Any) -> None:
        self.check(session, "finish_message", message_id, owner)

    @rule(session=SESSIONS, pick=st.integers(0, 7), as_holder=st.booleans(), with_owner=st.booleans())
    def finish_held_lock(self, session: str, pick: int, as_holder: bool, with_owner: bool) -> None:
        message_id = self.locked_message(pick)
        if message_id is not None:
            owner = self.acting_owner(message_id, as_holder) if with_owner else None
            self.check(session, "finish_message", message_id, owner)

    @rule(session=SESSIONS, message_id=MESSAGE_IDS, timestamp=TIMESTAMP_ARGS, owner=OPTIONAL_OWNER_ARGS)
    def defer_message(self, session: str, message_id: Any, timestamp: Any, owner: Any) -> None:
        self.check(session, "defer_message", message_id, timestamp, owner)

    @rule(
        session=SESSIONS,
        pick=st.integers(0, 7),
        as_holder=st.booleans(),
        with_owner=st.booleans(),
        timestamp=TIMESTAMPS,
    )
    def defer_held_lock(
        self, session: str, pick: int, as_holder: bool, with_owner: bool, timestamp: Any
    ) -> None:
        message_id = self.locked_message(pick)
        if message_id is not None:
            owner = self.acting_owner(message_id, as_holder) if with_owner else None
            self.check(session, "defer_message", message_id, timestamp, owner)

    @rule(session=SESSIONS, message_id=ISSUED, value=ATTEMPTS_VALUES, timestamp=TIMESTAMPS)
    def defer_after_attempts(self, session: str, message_id: str, value: str, timestamp: Any) -> None:
        # Sets the value that defer_message counts on from, then defers.
        self.check(session, "set_message_meta_key", message_id, ATTEMPTS_KEY, value)
        self.check(session, "defer_message", message_id, timestamp, None)

    @rule(target=ISSUED, session=SESSIONS, messages=NEW_MESSAGE_LIST_ARGS)
    def store_messages(self, session: str, messages: Any) -> Any:
        messages = own_message_copies(messages)
        expected = self.expect(session, "store_messages", messages)
        actual = self.call(session, "store_messages", messages)
        scribble_messages(messages)
        assert_same_kind(expected, actual)
        if actual.error is not None:
            return multiple()

        assert type(actual.value) is list
        assert len(actual.value) == len(expected.value), f"store_messages returned {actual.value!r}"
        for message_id, message in zip(actual.value, expected.value, strict=True):
            self.model.register(message_id, message)
        for message_id in actual.value:
            self.read_back(message_id)
        return multiple(*actual.value)

    # Paged listings: each rule follows the pages from the first to the
    # last, with no other call in between, and compares the ids they yield
    # with the model's whole listing.

    # Whether an unordered listing may yield an id twice, and a page may
    # hold more ids than its count requests.
    pages_may_repeat = False
    pages_may_exceed_count = False

    @rule(session=SESSIONS, cursor=mostly(st.none(), BAD_CURSORS), count=PAGE_SIZE_ARGS)
    def get_all_messages_page(self, session: str, cursor: Any, count: Any) -> None:
        self.check_unordered_pages(session, "get_all_messages_page", (), cursor, count)

    @rule(session=SESSIONS, cursor=mostly(st.none(), BAD_CURSORS), count=PAGE_SIZE_ARGS)
    def get_active_messages_page(self, session: str, cursor: Any, count: Any) -> None:
        self.check_unordered_pages(session, "get_active_messages_page", (), cursor, count)

    @rule(
        session=SESSIONS,
        timestamp=OPTIONAL_TIMESTAMP_ARGS,
        cursor=mostly(st.none(), BAD_CURSORS),
        count=PAGE_SIZE_ARGS,
    )
    def get_deferred_messages_page(self, session: str, timestamp: Any, cursor: Any, count: Any) -> None:
        pages = self.follow_pages(session, "get_deferred_messages_page", (timestamp,), cursor, count)
        if pages is not None:
            expected, listed = pages
            assert listed == expected, f"the pages of get_deferred_messages_page yielded {listed!r}"

    @rule(
        session=SESSIONS,
        method=st.sampled_from(PAGED_LISTINGS),
        timestamp=st.one_of(st.none(), TIMESTAMPS),
        pick=st.integers(0, 7),
    )
    def cursor_of_other_listing(self, session: str, method: str, timestamp: Any, pick: int) -> None:
        # Each listing rejects the cursors that the other listings return.
        others = [cursor for other, cursors in self.cursors.items() if other != method for cursor in cursors]
        if others:
            before = (timestamp,) if method == "get_deferred_messages_page" else ()
            self.follow_pages(session, method, before, others[pick % len(others)], 10)

    # One paged listing at a time stays open across steps, and the
    # observer reads its next page after each step, because cursors stay
    # valid while the data changes. Ids stored for the whole listing must
    # be in its pages, and ids stored, deleted or changed meanwhile may or
    # may not be.

    @rule(
        method=st.sampled_from(PAGED_LISTINGS),
        timestamp=st.one_of(st.none(), TIMESTAMPS),
        count=st.integers(1, 2),
    )
    def start_listing(self, method: str, timestamp: Any, count: int) -> None:
        if self.open_listing is None:
            self.open_first_page(method, timestamp, count)

    @rule(
        session=SESSIONS,
        method=st.sampled_from(PAGED_LISTINGS),
        timestamp=st.one_of(st.none(), TIMESTAMPS),
        count=st.integers(1, 2),
        changes=st.lists(
            st.tuples(
                st.integers(0, 3), st.sampled_from(LISTING_CHANGES), st.sampled_from(CHANGED_RETRY_TIMES)
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def list_while_changing(
        self, session: str, method: str, timestamp: Any, count: int, changes: list[tuple[int, str, float]]
    ) -> None:
        # Between the pages of a listing, changes an id that the listing
        # yielded, mostly the one its cursor names, so that the next page
        # starts after an id that has moved or is gone. The listing stays
        # open for later steps when it has more pages.
        if self.open_listing is not None:
            return
        self.open_first_page(method, timestamp, count)
        for pick, change, retry in changes:
            listing = self.open_listing
            if listing is None:
                return
            if listing.listed:
                self.change_listed(session, listing.listed[-1 - pick % len(listing.listed)], change, retry)
            self.read_open_page()

    def open_first_page(self, method: str, timestamp: Any, count: int) -> None:
        before = (timestamp,) if method == "get_deferred_messages_page" else ()
        first_listing = getattr(self.model, method)(*before, None, count)
        self.open_listing = OpenListing(
            method, before, count, None, first_listing, self.model.changes, frozenset(self.model.issued)
        )
        self.read_open_page()

    def change_listed(self, session: str, message_id: str, change: str, retry: float) -> None:
        if change == "retry":
            self.check(session, "set_message_retry", message_id, retry)
        elif change == "delete":
            self.check(session, "delete_message", message_id)
        elif change == "lock":
            self.check(session, "lock_message", message_id, LISTING_LOCK_LENGTH)
        else:
            self.check(session, "unlock_message", message_id)

    @invariant()
    def continue_listing(self) -> None:
        if self.open_listing is not None:
            self.read_open_page()

    def read_open_page(self) -> None:
        listing = self.open_listing
        assert listing is not None
        method = getattr(self.sessions[OBSERVER], listing.method)
        page = method(*listing.before, listing.cursor, listing.count)
        self.check_page(listing.method, page, listing.count)
        listing.listed.extend(page.message_ids)
        listing.pages += 1
        max_pages = 4 * (len(self.model.issued) + 16)
        assert listing.pages <= max_pages, (
            f"{listing.method} did not reach its last page in {max_pages} pages"
        )

        listing.cursor = page.cursor
        if page.cursor is None:
            self.open_listing = None
            self.check_open_listing(listing)
        else:
            self.remember_cursor(listing.method, page.cursor)

    def check_open_listing(self, listing: OpenListing) -> None:
        """Check the ids of a listing read while other steps wrote, against what the spec allows."""
        model = self.model
        stored = model.messages
        everyone = {**model.deleted, **stored}
        new_ids = model.issued - listing.issued
        first = listing.first_listing
        if listing.method == "get_all_messages_page":
            changed: set[str] = set()
            required = [message_id for message_id in first if message_id in stored]
            may_repeat = set(first) | new_ids if self.pages_may_repeat else set()
        elif listing.method == "get_deferred_messages_page":
            changed = {key for key, message in everyone.items() if message.retry_changed > listing.changes}
            required = [
                message_id for message_id in first if message_id in stored and message_id not in changed
            ]
            # An id whose retry time changed may be read at its old place and at its new one.
            may_repeat = changed
        else:
            changed = {key for key, message in everyone.items() if message.lock_changed > listing.changes}
            required = [
                message_id
                for message_id in first
                if message_id in stored and message_id not in changed and model.is_locked(stored[message_id])
            ]
            may_repeat = set(first) | changed | new_ids if self.pages_may_repeat else set()

        listed = listing.listed
        allowed = set(first) | changed | new_ids
        repeated = {message_id for message_id in listed if listed.count(message_id) > 1}
        failure = f"the pages of {listing.method}{listing.before!r} yielded {listed!r}"
        assert set(listed) <= allowed, f"{failure}, with ids it must not list"
        assert set(required) <= set(listed), f"{failure}, without ids stored throughout: {required!r}"
        assert repeated <= may_repeat, f"{failure}, repeating {repeated!r}"
        if listing.method == "get_deferred_messages_page":
            unchanged = set(required)
            in_order = [message_id for message_id in model.get_deferred_messages() if message_id in unchanged]
            assert [message_id for message_id in listed if message_id in unchanged] == in_order, failure

    def check_unordered_pages(
        self, session: str, method: str, before: tuple[Any, ...], cursor: Any, count: Any
    ) -> None:
        pages = self.follow_pages(session, method, before, cursor, count)
        if pages is None:
            return
        expected, listed = pages
        assert sorted(set(listed)) == expected, f"the pages of {method} yielded {listed!r}"
        if not self.pages_may_repeat:
            assert len(listed) == len(set(listed)), f"the pages of {method} repeat ids: {listed!r}"

    def follow_pages(
        self, session: str, method: str, before: tuple[Any, ...], cursor: Any, count: Any
    ) -> tuple[list[str], list[str]] | None:
        """Read the pages of a listing to the last, and return the model's listing and the ids of the pages.

        Returns None when the first page raised the error that the model
        expects. ``before`` contains the arguments that precede the cursor.
        """
        expected = self.expect(session, method, *before, cursor, count)
        actual = self.call(session, method, *before, cursor, count)
        assert_same_kind(expected, actual)
        if expected.error is not None:
            return None

        # An engine may return pages without ids before the last. SCAN
        # visits at least one bucket per page, and Redis 7.0 grows a table
        # to at most about twice the keys it held, so this is an estimate
        # with a wide margin.
        max_pages = 4 * (len(self.model.issued) + 16)
        deadline = time.monotonic() + PAGES_TIMEOUT
        listed: list[str] = []
        page = actual.value
        for _ in range(max_pages):
            self.check_page(method, page, count)
            listed.extend(page.message_ids)
            if page.cursor is None:
                return expected.value, listed
            self.remember_cursor(method, page.cursor)
            assert time.monotonic() < deadline, f"{method} did not reach its last page in {PAGES_TIMEOUT} s"
            page = getattr(self.sessions[session], method)(*before, page.cursor, count)
        raise AssertionError(f"{method} did not reach its last page in {max_pages} pages")

    def check_page(self, method: str, page: Any, count: int) -> None:
        assert type(page) is Page, f"{method} returned {page!r}"
        assert type(page.message_ids) is list
        assert all(type(message_id) is str for message_id in page.message_ids)
        assert page.cursor is None or (type(page.cursor) is str and page.cursor != "")
        if not self.pages_may_exceed_count:
            assert len(page.message_ids) <= count, f"{method} returned {page!r} for count={count}"

    def remember_cursor(self, method: str, cursor: str) -> None:
        cursors = self.cursors[method]
        cursors.append(cursor)
        del cursors[:-KEPT_CURSORS]

    @invariant()
    def listings_match(self) -> None:
        model = self.model
        observer = self.sessions[OBSERVER]
        assert sorted(observer.get_all_messages()) == model.get_all_messages()
        assert observer.get_deferred_messages() == model.get_deferred_messages()
        assert sorted(observer.get_active_messages()) == model.get_active_messages()


def own_copies(meta: Any, contents: Any) -> tuple[Any, Any]:
    """Return fresh copies of mutable arguments, so that scribble() cannot alter drawn values."""
    if isinstance(meta, dict):
        meta = dict(meta)
    if isinstance(contents, bytearray):
        contents = bytearray(contents)
    return meta, contents


def own_message_copies(messages: Any) -> Any:
    """Return a fresh copy of a list or tuple of new messages, with own copies of their dicts."""
    if not isinstance(messages, (list, tuple)):
        return messages
    copies = []
    for message in messages:
        if not isinstance(message, dict):
            copies.append(message)
            continue
        copy = dict(message)
        if "meta" in copy:
            copy["meta"], _ = own_copies(copy["meta"], None)
        if "contents" in copy:
            _, copy["contents"] = own_copies(None, copy["contents"])
        copies.append(copy)
    return type(messages)(copies)


def scribble_messages(messages: Any) -> None:
    """Change the new messages of store_messages after the call, as scribble() does."""
    if isinstance(messages, (list, tuple)):
        for message in messages:
            if isinstance(message, dict):
                scribble(message.get("meta"), message.get("contents"))


def scribble(meta: Any, contents: Any) -> None:
    """Change arguments after a call, which must not change what the engine stored."""
    if isinstance(meta, dict):
        meta.clear()
        meta["scribbled"] = "yes"
    if isinstance(contents, bytearray):
        contents[:] = b"scribbled"


class MemoryMachine(SessionMachine):
    """The machine on a new memory engine whose clock is the model's."""

    lock_lengths = mostly(MEMORY_LOCK_LENGTHS, BAD_LOCK_LENGTHS)

    def __init__(self) -> None:
        engine = memory.new(clock=self.engine_clock)
        super().__init__(engine.connect)

    def engine_clock(self) -> float:
        return START_SECONDS + self.model.now_us / MICROSECONDS

    @rule(
        microseconds=st.one_of(
            st.integers(0, 2 * MICROSECONDS),
            st.integers(0, 200 * MICROSECONDS),
            st.integers(0, 400 * 86_400 * MICROSECONDS),
        )
    )
    def advance_clock(self, microseconds: int) -> None:
        self.model.move_clock(self.model.now_us + microseconds)

    @rule(pick=st.integers(0, 7), after=st.booleans())
    def advance_to_lock_expiry(self, pick: int, after: bool) -> None:
        # Stops just before or just after the expiry of a held lock, where a
        # length rounded the wrong way or an expiry changed by mistake shows.
        message_id = self.locked_message(pick)
        if message_id is not None:
            offset = 2 * EXPIRY_MARGIN_US
            expiry = self.model.messages[message_id].lock_expires_us
            self.model.move_clock(expiry + (offset if after else -offset))

    def remaining_bounds(self, expected: ModelInfo) -> tuple[float, float]:
        assert expected.lock_remaining is not None
        return (
            expected.lock_remaining - MEMORY_REMAINING_TOLERANCE,
            expected.lock_remaining + MEMORY_REMAINING_TOLERANCE,
        )


class RedisMachine(SessionMachine):
    """The machine on a Redis engine whose databases it empties first.

    The model's clock stays at 0. No lock expires during a run, because
    every valid lock length is an hour or more.
    """

    lock_lengths = mostly(REDIS_LOCK_LENGTHS, BAD_LOCK_LENGTHS)
    # SSCAN and SCAN may return an id twice when a hash table shrinks
    # between two pages, which Redis may do after earlier deletes. They
    # may also return more ids than COUNT, such as a whole bucket.
    pages_may_repeat = True
    pages_may_exceed_count = True

    def __init__(self, engine: redis_engine.RedisEngine, clients: list[redis.Redis]) -> None:
        # FLUSHALL is safe here because the server belongs to this test run alone.
        clients[0].flushall()
        self.clients = clients
        super().__init__(engine.connect)

    def remaining_bounds(self, expected: ModelInfo) -> tuple[float, float]:
        # PTTL never exceeds the length set, and falls with the real time
        # since the model's call, which began before the engine's.
        elapsed = time.monotonic() - expected.locked_at
        length = expected.lock_ms / 1000
        return (length - elapsed - REDIS_PTTL_RESOLUTION, length)

    @invariant()
    def keys_match(self) -> None:
        # Exactly the keys of the layout, and none left by a write that raised.
        messages = self.model.messages.values()
        expected = [
            int(bool(messages)) + int(any(message.retry is not None for message in messages)),
            sum(1 for message in messages if message.meta),
            sum(1 for message in messages if message.contents is not None),
            sum(1 for message in messages if self.model.is_locked(message)),
        ]
        assert [client.dbsize() for client in self.clients] == expected


MACHINE_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_memory_matches_model() -> None:
    run_state_machine_as_test(
        MemoryMachine,
        settings=settings(MACHINE_SETTINGS, max_examples=300, stateful_step_count=50),
    )


def test_redis_matches_model(clean_redis: RedisServer) -> None:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    clients = [clean_redis.client(OFFSET + index) for index in range(4)]
    try:
        run_state_machine_as_test(
            lambda: RedisMachine(engine, clients),
            settings=settings(MACHINE_SETTINGS, max_examples=200, stateful_step_count=50),
        )
    finally:
        for client in clients:
            client.close()
        engine.close()


@settings(deadline=None, derandomize=True, database=None, max_examples=1000)
@given(length=st.one_of(MEMORY_LOCK_LENGTHS, REDIS_LOCK_LENGTHS))
def test_lock_length_rounds_up_to_ms(length: float) -> None:
    # The memory engine with a stopped clock shows the rounded length exactly.
    session = memory.new(clock=FakeClock(START_SECONDS)).connect()
    message_id = session.claim_message_id()

    session.lock_message(message_id, length)
    remaining = session.describe_message(message_id).lock_remaining

    assert remaining == pytest.approx(check_lock_ms(length) / 1000, abs=MEMORY_REMAINING_TOLERANCE)
