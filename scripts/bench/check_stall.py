#!/usr/bin/env python3
"""Measure how long the scripts of ``check_queue`` block Redis, per page size.

It starts its own ``redis-server`` on a free loopback port, fills four
databases with a queue of ``--messages`` complete messages (and a few
orphans and incomplete messages, so that the repair has work), then runs
``check_queue`` once per page size. Two figures show the stall:

- the server's own duration of the script calls: the mean from
  ``INFO commandstats``, and the p99 and maximum from ``SLOWLOG``, which
  logs every command of at least :data:`SLOWLOG_THRESHOLD_US`. A lower
  threshold would log each command inside the scripts too, which slows
  them down and overflows the log;
- the round-trip time of ``PING`` from another process that sends PINGs
  one after another while the check runs. It includes the scheduling
  noise of the machine, so it is an upper bound.

Run it from the repository root with the project's interpreter:

    .venv/bin/python scripts/bench/check_stall.py --messages 200000 --page-sizes 1000,250,100
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from typing import Any

import redis

from slimta.storage import redis as redis_engine
from slimta.storage.redis import check_queue
from slimta.storage.redis._scripts import SCRIPTS
from slimta.storage.testing import RedisServer

FILL_BATCH = 10_000
ORPHANS = 2_000
INCOMPLETE = 2_000
# Bounds of the PING loop, so that it ends even if the check hangs.
MAX_PINGS = 5_000_000
MAX_PING_SECONDS = 600.0
SLOWLOG_LENGTH = 100_000
SLOWLOG_THRESHOLD_US = 100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000, help="complete messages to store")
    parser.add_argument(
        "--page-sizes",
        default="1000,250,100",
        help="comma-separated page sizes to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--repair", action="store_true", help="also measure a check with repair per page size"
    )
    return parser.parse_args()


def message_ids(prefix: str, count: int) -> Iterator[str]:
    """Yield UUID-shaped ids, so that the check treats their keys as orphans when unstored."""
    for n in range(count):
        yield f"{prefix}-0000-4000-8000-{n:012x}"


def fill(server: RedisServer, messages: int) -> None:
    """Store ``messages`` complete messages, a tenth locked, plus orphans and incomplete messages."""
    clients = [server.client(db) for db in range(4)]
    now = time.time()
    batch: list[str] = []
    for n, message_id in enumerate(message_ids("0000aaaa", messages)):
        batch.append(message_id)
        if len(batch) == FILL_BATCH or n == messages - 1:
            write_batch(clients, batch, now)
            batch = []
    for message_id in message_ids("0000bbbb", ORPHANS):
        clients[1].hset(message_id, "timestamp", repr(now - 7200))
    for message_id in message_ids("0000cccc", INCOMPLETE):
        clients[0].sadd("message_ids", message_id)
        clients[1].hset(message_id, "timestamp", repr(now - 7200))
    for client in clients:
        client.close()


def write_batch(clients: list[redis.Redis], batch: list[str], now: float) -> None:
    pipes = [client.pipeline(transaction=False) for client in clients]
    pipes[0].sadd("message_ids", *batch)
    pipes[0].zadd("retry_queue", {message_id: now + 300 for message_id in batch})
    for n, message_id in enumerate(batch):
        pipes[1].hset(
            message_id, mapping={"timestamp": repr(now), "sender": "a@example.com", "attempts": "0"}
        )
        pipes[2].set(message_id, b"Subject: hi\r\n\r\nbody\r\n")
        if n % 10 == 0:
            pipes[3].set(message_id, "relayer-1", px=3_600_000)
    for pipe in pipes:
        pipe.execute()


def ping_loop(port: int, stop: Any, results: Any) -> None:
    """Send PINGs one after another until ``stop`` is set, and put the round-trip times in ``results``."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    client.ping()
    times: list[float] = []
    deadline = time.monotonic() + MAX_PING_SECONDS
    while not stop.is_set() and len(times) < MAX_PINGS and time.monotonic() < deadline:
        started = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - started)
    client.close()
    results.put(times)


def measure(server: RedisServer, page_size: int, repair: bool) -> dict[str, Any]:
    """Run one check and return the script durations and the PING times, in milliseconds."""
    admin = server.client()
    admin.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    admin.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    admin.slowlog_reset()
    admin.config_resetstat()

    stop = multiprocessing.Event()
    results: Any = multiprocessing.Queue()
    pinger = multiprocessing.Process(target=ping_loop, args=(server.port, stop, results))
    pinger.start()
    time.sleep(0.5)

    engine = redis_engine.new("127.0.0.1", server.port, 0)
    started = time.monotonic()
    session = engine.connect()
    try:
        report = check_queue(session, page_size=page_size, repair=repair, repair_unknown_age=repair)
    finally:
        session.close()
    elapsed = time.monotonic() - started
    engine.close()

    stop.set()
    pings = results.get(timeout=60)
    pinger.join(timeout=60)
    scripts = script_durations(admin)
    evalsha = admin.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec_per_call": 0.0})
    admin.config_set("slowlog-log-slower-than", 10_000)
    admin.close()
    return {
        "page_size": page_size,
        "repair": repair,
        "seconds": elapsed,
        "found": report.found,
        "script_calls": int(evalsha["calls"]),
        "script_mean": float(evalsha["usec_per_call"]) / 1000,
        "scripts": scripts,
        "pings": [seconds * 1000 for seconds in pings],
    }


def script_durations(admin: redis.Redis) -> dict[str, list[float]]:
    """Return the durations of the script calls in the slow log, in milliseconds, by script name."""
    names = {script.sha.encode(): name for name, script in SCRIPTS.items()}
    durations: dict[str, list[float]] = {}
    for entry in admin.slowlog_get(SLOWLOG_LENGTH):
        words = entry["command"].split()
        if not words or words[0].upper() != b"EVALSHA":
            continue
        name = names.get(words[1], "other") if len(words) > 1 else "other"
        durations.setdefault(name, []).append(entry["duration"] / 1000)
    return durations


def summary(values: list[float], total: int | None = None) -> str:
    """Summarize durations in milliseconds. ``total``, when given, also counts the calls too short to log."""
    if not values:
        return "none logged"
    # The calls that were too short to be logged count as 0 ms.
    ordered = [0.0] * max(0, (total or 0) - len(values)) + sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    text = f"p99={p99:.2f} max={ordered[-1]:.2f} ms"
    if total is None:
        text = f"n={len(values)} median={statistics.median(ordered):.2f} {text}"
    return text


def main() -> None:
    args = parse_args()
    sizes = [int(text) for text in args.page_sizes.split(",")]
    with RedisServer() as server:
        fill(server, args.messages)
        print(f"redis-server {server.client().info('server')['redis_version']}, {args.messages} messages")
        for size in sizes:
            for repair in (False, True) if args.repair else (False,):
                if repair:
                    # The first repair removes what it finds, so fill the findings again.
                    fill_findings(server)
                result = measure(server, size, repair)
                label = f"page size {size:>4}{' repair' if repair else ''}"
                print(f"{label}: {result['seconds']:.1f} s, {result['found']} found")
                every_call = [value for values in result["scripts"].values() for value in values]
                calls = result["script_calls"]
                print(
                    f"  script calls: n={calls} mean={result['script_mean']:.2f} {summary(every_call, calls)}"
                )
                for name, values in sorted(result["scripts"].items()):
                    print(f"    {name:<18}{len(values)} calls of at least 0.1 ms, max={max(values):.2f} ms")
                print(f"  PING:         {summary(result['pings'])}")


def fill_findings(server: RedisServer) -> None:
    clients = [server.client(db) for db in range(2)]
    now = time.time()
    for message_id in message_ids("0000bbbb", ORPHANS):
        clients[1].hset(message_id, "timestamp", repr(now - 7200))
    for message_id in message_ids("0000cccc", INCOMPLETE):
        clients[0].sadd("message_ids", message_id)
        clients[1].hset(message_id, "timestamp", repr(now - 7200))
    for client in clients:
        client.close()


if __name__ == "__main__":
    main()
