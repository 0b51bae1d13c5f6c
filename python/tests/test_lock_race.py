"""Of many concurrent lock_message calls on one message, exactly one wins.

The Redis race runs in separate processes, each with its own engine, as
relayers on several hosts would. The thread race shares one engine
between threads, each with its own session, on every engine.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
from collections import Counter
from typing import Any

from conftest import OFFSET, EngineKit

from slimta.storage import Session
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

PROCESSES = 8
THREADS = 8
MESSAGES = 50
LOCK_LENGTH = 60.0

# Upper bounds for a race that normally ends within a few seconds, most of
# it spent starting the spawned interpreters.
START_TIMEOUT = 60.0
RACE_TIMEOUT = 90.0


def lock_all(session: Session, message_ids: list[str], seed: int) -> list[str]:
    """Try to lock every id, in an order shuffled by ``seed``, and return the ids locked."""
    order = list(message_ids)
    random.Random(seed).shuffle(order)
    return [message_id for message_id in order if session.lock_message(message_id, LOCK_LENGTH)]


def race_in_process(url: str, message_ids: list[str], start: Any, results: Any, index: int) -> None:
    """Open an engine, wait for every racer, then lock what it can and report it."""
    try:
        engine = redis_engine.from_url(url)
        with engine.connect() as session:
            start.wait()
            won = lock_all(session, message_ids, index)
        engine.close()
        results.put((index, won, None))
    except BaseException as error:
        results.put((index, None, repr(error)))


def test_lock_race_processes(clean_redis: RedisServer) -> None:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    with engine.connect() as session:
        message_ids = [session.claim_message_id() for _ in range(MESSAGES)]
    engine.close()

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES, timeout=START_TIMEOUT)
    results = context.Queue()
    racers = [
        context.Process(
            target=race_in_process,
            args=(clean_redis.url(OFFSET), message_ids, start, results, index),
            daemon=True,
        )
        for index in range(PROCESSES)
    ]
    reports = []
    deadline = time.monotonic() + RACE_TIMEOUT
    try:
        for racer in racers:
            racer.start()
        for _ in racers:
            reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
    except queue.Empty:
        raise AssertionError(f"only {len(reports)} of {PROCESSES} racers reported in time") from None
    finally:
        for racer in racers:
            racer.join(timeout=max(0.1, deadline - time.monotonic()))
            if racer.is_alive():
                racer.kill()
                racer.join()

    errors = [error for _, _, error in reports if error is not None]
    assert errors == []
    wins = Counter(message_id for _, won, _ in reports for message_id in won)
    assert wins == Counter(message_ids)
    assert [racer.exitcode for racer in racers] == [0] * PROCESSES


def test_lock_race_threads(kit: EngineKit) -> None:
    with kit.connect() as session:
        message_ids = [session.claim_message_id() for _ in range(MESSAGES)]
    start = threading.Barrier(THREADS, timeout=START_TIMEOUT)
    wins: Counter[str] = Counter()
    errors: list[BaseException] = []
    counting = threading.Lock()

    def race(index: int) -> None:
        try:
            with kit.connect() as session:
                start.wait()
                won = lock_all(session, message_ids, index)
            with counting:
                wins.update(won)
        except BaseException as error:
            errors.append(error)

    racers = [threading.Thread(target=race, args=(index,), daemon=True) for index in range(THREADS)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=RACE_TIMEOUT)

    assert [racer.is_alive() for racer in racers] == [False] * THREADS
    assert errors == []
    assert wins == Counter(message_ids)
