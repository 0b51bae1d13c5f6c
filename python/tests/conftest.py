"""Fixtures: every behaviour test runs on both engines.

The Redis engine runs against a ``redis-server`` that this module starts
on a free loopback port with a temporary directory, once per test run.
Each test starts with that server's databases empty; no other server is
ever touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slimta.storage import Session, memory
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
# 48 real RFC 5322 messages from CPython's email tests; see its README.
CORPUS = Path(__file__).resolve().parent / "corpus" / "email"
SPEC = ROOT / "spec" / "storage.yaml"

# The offset the Redis engine uses in tests: not 0, so that a layout bug
# that ignores the offset shows up as keys in the wrong database.
OFFSET = 4


class FakeClock:
    """A clock for the memory engine that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class EngineKit:
    """One engine under test, with a way to let time pass for its locks."""

    name: str
    engine: Any
    clock: FakeClock | None
    server: RedisServer | None = None

    def connect(self) -> Session:
        session: Session = self.engine.connect()
        return session

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: the fake clock moves, a real server needs real time."""
        if self.clock is not None:
            self.clock.now += seconds
        else:
            time.sleep(seconds)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The test server with every database empty."""
    # FLUSHALL is safe here: this server belongs to the test run alone.
    redis_server.client().flushall()
    return redis_server


@pytest.fixture(params=["memory", "redis"])
def kit(request: pytest.FixtureRequest) -> Iterator[EngineKit]:
    if request.param == "memory":
        clock = FakeClock()
        yield EngineKit("memory", memory.new(clock=clock), clock)
        return

    server = request.getfixturevalue("clean_redis")
    engine = redis_engine.from_url(server.url(OFFSET))
    yield EngineKit("redis", engine, None, server)
    engine.close()


@pytest.fixture
def session(kit: EngineKit) -> Iterator[Session]:
    with kit.connect() as opened:
        yield opened


def stored_state(session: Session) -> dict[str, Any]:
    """Return everything a session can read, for before and after comparisons."""
    ids = sorted(session.get_all_messages())
    return {
        "all": ids,
        "meta": {message_id: session.get_message_meta(message_id) for message_id in ids},
        "contents": {message_id: session.get_message_contents(message_id) for message_id in ids},
        "deferred": session.get_deferred_messages(),
        "active": sorted(session.get_active_messages()),
    }


@pytest.fixture
def stored(session: Session) -> str:
    """Return the id of a message with meta, contents, a retry time and a lock."""
    message_id = session.claim_message_id()
    session.set_message_meta(message_id, {"sender": "a@example.com", "attempts": "0"})
    session.set_message_contents(message_id, b"Subject: hi\r\n\r\nbody\r\n")
    session.set_message_retry(message_id, 1000.0)
    assert session.lock_message(message_id, 60.0)
    return message_id


def corpus_files() -> list[Path]:
    """Return the paths of the corpus messages, in name order."""
    return sorted(CORPUS.glob("msg_*.txt"))
