"""Tests of the memory engine's pages of active messages after many locks expired.

A page drops the expired locks it passes, but passes at most
max(count, EXPIRED_PER_PAGE) of them, so the work of one page stays
bounded however many locks expired at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import FakeClock

from slimta.storage import memory
from slimta.storage.memory import MemorySession

EXPIRED = 2000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(clock: FakeClock) -> MemorySession:
    return memory.new(clock=clock).connect()


def lock_many(session: MemorySession, count: int, seconds: float) -> list[str]:
    """Store ``count`` messages, lock each for ``seconds`` and return their ids."""
    ids = []
    for _ in range(count):
        message_id = session.store_message({"timestamp": "1"}, b"body")
        assert session.lock_message(message_id, seconds)
        ids.append(message_id)
    return ids


def count_lock_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of the store's lock check, one per lock that a page passes."""
    calls = [0]
    is_locked = memory._Store.is_locked

    def counting(self: Any, message: Any) -> bool:
        calls[0] += 1
        return is_locked(self, message)

    monkeypatch.setattr(memory._Store, "is_locked", counting)
    return calls


def test_page_work_bounded_after_expiry(
    session: MemorySession, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_many(session, EXPIRED, 10)
    clock.now += 20
    held = sorted(lock_many(session, 3, 60))
    calls = count_lock_checks(monkeypatch)

    listed: list[str] = []
    cursor = None
    pages = 0
    while pages < EXPIRED:
        before = calls[0]
        page = session.get_active_messages_page(cursor, count=10)
        pages += 1

        assert calls[0] - before <= 10 + 1 + memory.EXPIRED_PER_PAGE
        listed += page.message_ids
        cursor = page.cursor
        if cursor is None:
            break

    assert sorted(listed) == held
    assert pages <= EXPIRED // memory.EXPIRED_PER_PAGE + 2


def test_expired_locks_dropped_once(
    session: MemorySession, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_many(session, EXPIRED, 10)
    clock.now += 20
    held = lock_many(session, 3, 60)
    calls = count_lock_checks(monkeypatch)

    first = session.get_active_messages()
    walked = calls[0]
    second = session.get_active_messages()

    assert sorted(first) == sorted(held)
    assert second == first
    assert walked >= EXPIRED
    # The second listing passes only the three held locks.
    assert calls[0] - walked == 3


def test_pages_resume_between_expired(session: MemorySession, clock: FakeClock) -> None:
    short = lock_many(session, 600, 10)
    long = lock_many(session, 40, 60)
    clock.now += 20

    listed: list[str] = []
    cursor = None
    for _ in range(1000):
        page = session.get_active_messages_page(cursor, count=3)
        assert len(page.message_ids) <= 3
        listed += page.message_ids
        cursor = page.cursor
        if cursor is None:
            break

    assert listed == sorted(long)
    for message_id in short:
        assert session.describe_message(message_id).lock_remaining is None


def test_lock_again_after_expiry_listed(session: MemorySession, clock: FakeClock) -> None:
    ids = lock_many(session, 300, 10)
    clock.now += 20
    assert session.get_active_messages() == []

    assert session.lock_message(ids[0], 30)

    assert session.get_active_messages() == [ids[0]]
