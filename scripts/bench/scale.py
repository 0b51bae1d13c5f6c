"""The scale benchmark: store up to a million small messages on each engine and time every listing.

Each Redis listing runs in a fresh client process, so the growth of its
peak RSS over its RSS just before the listing is the memory that listing
needs. Meanwhile another process, at real-time priority where the system
allows it, sends PING in a loop and records each reply's latency, and
``SLOWLOG`` records every command that ran for long. The memory engine
lives in the measuring process, so there ``tracemalloc`` measures the
memory of each listing instead.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import redis

from slimta.storage import Session, memory
from slimta.storage import redis as redis_engine
from slimta.storage.redis import RedisSession
from slimta.storage.redis._scripts import SCRIPTS
from slimta.storage.testing import RedisServer

from .lifecycle import machine, machine_cpu, server_cpu

__all__ = ["FORMS", "ScaleSettings", "run"]

HOST = "127.0.0.1"
OFFSET = 0
BATCH = 1000
LOCK_BATCH = 10_000
LOCK_SECONDS = 4 * 3600
"""Long enough for every lock to outlast the run, so every message stays active."""
PING_INTERVAL = 0.0005
MAX_PINGS = 2_000_000
MAX_PING_SECONDS = 900.0
SLOWLOG_THRESHOLD_US = 250
SLOWLOG_LENGTH = 100_000
STEP_TIMEOUT = 900.0
SMALL_META = {"sender": "sender@example.com", "recipients": "\0rcpt@example.net"}
SMALL_CONTENTS = b"Subject: scale\r\n\r\nA small message.\r\n"

Listing = Callable[[Any], int]


def _count(ids: Any) -> int:
    return sum(1 for _ in ids)


FORMS: dict[str, tuple[str, Listing]] = {
    "get_all_messages": ("whole list", lambda session: len(session.get_all_messages())),
    "iter_all_messages": ("pages", lambda session: _count(session.iter_all_messages())),
    "get_deferred_messages": ("whole list", lambda session: len(session.get_deferred_messages())),
    "iter_deferred_messages": ("pages", lambda session: _count(session.iter_deferred_messages())),
    "get_active_messages": ("whole list", lambda session: len(session.get_active_messages())),
    "iter_active_messages": ("pages", lambda session: _count(session.iter_active_messages())),
}
"""Every listing form of a session: (kind, function that lists and returns how many ids)."""

SMEMBERS = "SMEMBERS"


@dataclass(frozen=True)
class ScaleSettings:
    """The queue sizes at which the listings are timed, smallest first."""

    sizes: tuple[int, ...]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _memory_status_kib(field: str) -> int:
    """Return one memory field of /proc/self/status, such as VmRSS or VmHWM, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _missing(cls: type, names: tuple[str, ...]) -> list[str]:
    absent = [name for name in names if not hasattr(cls, name)]
    return absent + sorted(getattr(cls, "__abstractmethods__", ()))


def _forms_available(cls: type) -> list[str]:
    return [name for name in FORMS if not _missing(cls, (name,))]


# Filling the queues.


def _new_messages(count: int, retry: float) -> list[dict[str, Any]]:
    return [{"meta": SMALL_META, "contents": SMALL_CONTENTS, "retry": retry} for _ in range(count)]


def _store_batch_redis(session: Any, client: redis.Redis, count: int, retry: float) -> list[str]:
    """Store ``count`` messages in one round trip, with store_messages when the engine has it."""
    if not _missing(RedisSession, ("store_messages",)):
        message_ids: list[str] = session.store_messages(_new_messages(count, retry))
        return message_ids
    # Without store_messages: the engine's own commands, pipelined.
    pipeline: Any = client.pipeline(transaction=False)
    message_ids = [str(uuid.uuid4()) for _ in range(count)]
    pairs = [item for pair in SMALL_META.items() for item in pair]
    for message_id in message_ids:
        pipeline.execute_command("SADD", b"message_ids", message_id)
        pipeline.evalsha(SCRIPTS["set_meta"].sha, 2, b"message_ids", message_id, OFFSET, *pairs)
        pipeline.evalsha(SCRIPTS["set_contents"].sha, 2, b"message_ids", message_id, OFFSET, SMALL_CONTENTS)
        pipeline.evalsha(SCRIPTS["set_retry"].sha, 2, b"message_ids", b"retry_queue", message_id, repr(retry))
    pipeline.execute()
    return message_ids


def _lock_redis(client: redis.Redis, message_ids: list[str]) -> None:
    """Lock each message with the engine's lock script, many to a pipeline."""
    for first in range(0, len(message_ids), LOCK_BATCH):
        pipeline = client.pipeline(transaction=False)
        for message_id in message_ids[first : first + LOCK_BATCH]:
            args = (OFFSET, LOCK_SECONDS * 1000, "locked")
            pipeline.evalsha(SCRIPTS["lock"].sha, 2, b"message_ids", message_id, *args)
        pipeline.execute()


def _fill_redis(session: Any, client: redis.Redis, start: int, stop: int) -> None:
    retry = time.time() + 3600
    for first in range(start, stop, BATCH):
        message_ids = _store_batch_redis(session, client, min(BATCH, stop - first), retry)
        _lock_redis(client, message_ids)


def _fill_memory(session: Session, start: int, stop: int) -> None:
    retry = time.time() + 3600
    for first in range(start, stop, BATCH):
        count = min(BATCH, stop - first)
        if hasattr(session, "store_messages"):
            message_ids = session.store_messages(_new_messages(count, retry))  # type: ignore[arg-type]
        else:
            message_ids = [session.store_message(SMALL_META, SMALL_CONTENTS, retry) for _ in range(count)]
        for message_id in message_ids:
            session.lock_message(message_id, LOCK_SECONDS)


# The Redis listings, each in a fresh process, and the PING loop beside them.


def _listing(port: int, form: str) -> Callable[[], int]:
    """Connect and return a function that runs the listing ``form`` and returns how many ids it listed."""
    if form == SMEMBERS:
        client = redis.Redis(host=HOST, port=port, db=OFFSET, protocol=2, socket_timeout=60)
        client.ping()
        return lambda: len(client.smembers("message_ids"))
    engine = redis_engine.new(HOST, port, OFFSET, socket_timeout=60)
    session = engine.connect()
    function = FORMS[form][1]
    return lambda: function(session)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _list_redis(connection: Connection, port: int, form: str, listing_now: Event) -> None:
    try:
        listing = _listing(port, form)
        control = redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=60)
        # The resident memory now, not the peak so far, which the imports may have set.
        baseline = _memory_status_kib("VmRSS")
        machine_before, server_before, own_before = machine_cpu()[0], server_cpu(control), _cpu_seconds()
        listing_now.set()
        started = time.perf_counter()
        count = listing()
        seconds = time.perf_counter() - started
        listing_now.clear()
        own, server = _cpu_seconds() - own_before, server_cpu(control) - server_before
        memory_kib = _memory_status_kib("VmHWM") - baseline
        result = {"count": count, "seconds": seconds, "memory_kib": memory_kib}
        result.update(
            machine_cpu_seconds=machine_cpu()[0] - machine_before, client_cpu=own, server_cpu=server
        )
        connection.send(result)
    except Exception as error:
        connection.send({"error": f"{type(error).__name__}: {error}"})


def _ping_loop(connection: Connection, port: int, events: tuple[Event, Event, Event]) -> None:
    """Send PING until ``stop``, keeping the latencies of the PINGs sent while ``listing_now`` is set."""
    ready, listing_now, stop = events
    realtime = _raise_priority()
    client = redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=60)
    client.ping()
    ready.set()
    latencies: list[float] = []
    cpu_during_listing = 0.0
    deadline = time.monotonic() + MAX_PING_SECONDS
    while not stop.is_set() and len(latencies) < MAX_PINGS and time.monotonic() < deadline:
        during_listing = listing_now.is_set()
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        client.ping()
        if during_listing:
            latencies.append(time.perf_counter() - started)
        time.sleep(PING_INTERVAL)
        if during_listing:
            cpu_during_listing += _cpu_seconds() - cpu_before
    client.close()
    connection.send({**_latency_summary(latencies), "realtime": realtime, "pinger_cpu": cpu_during_listing})


def _raise_priority() -> bool:
    """Run this process at real-time priority, so a PING waits for Redis rather than for a core.

    Returns False, changing nothing, where the system does not allow it.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        return False
    return True


def _latency_summary(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"pings": len(latencies), "max_ms": max(latencies, default=0) * 1000, "p99_ms": 0.0}
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    return {"pings": len(latencies), "max_ms": max(latencies) * 1000, "p99_ms": p99 * 1000}


def _longest_command(client: redis.Redis) -> dict[str, Any]:
    entries = client.slowlog_get(SLOWLOG_LENGTH)
    if not entries:
        return {"slowest_us": None, "slowest_command": None, "slow_commands": 0}
    slowest = max(entries, key=lambda entry: entry["duration"])
    command = slowest["command"]
    name = command.split()[0].decode() if isinstance(command, bytes) else str(command).split()[0]
    return {"slowest_us": slowest["duration"], "slowest_command": name, "slow_commands": len(entries)}


def _measure_redis_form(server: RedisServer, form: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    control = server.client(OFFSET)
    control.slowlog_reset()

    ready, listing_now, stop = context.Event(), context.Event(), context.Event()
    ping_ours, ping_theirs = context.Pipe()
    events = (ready, listing_now, stop)
    pinger = context.Process(target=_ping_loop, args=(ping_theirs, server.port, events), daemon=True)
    pinger.start()
    if not ready.wait(60):
        raise RuntimeError("the PING process did not connect within 60 s")

    list_ours, list_theirs = context.Pipe()
    arguments = (list_theirs, server.port, form, listing_now)
    lister = context.Process(target=_list_redis, args=arguments, daemon=True)
    lister.start()
    try:
        if not list_ours.poll(STEP_TIMEOUT):
            raise RuntimeError(f"{form} did not finish within {STEP_TIMEOUT:.0f} s")
        result: dict[str, Any] = list_ours.recv()
    finally:
        stop.set()
        lister.join(timeout=30)
        pinger.join(timeout=30)
    if "error" in result:
        raise RuntimeError(f"{form} failed: {result['error']}")
    result.update(ping_ours.recv())
    result.update(_longest_command(control))
    others = (
        result["machine_cpu_seconds"] - result["client_cpu"] - result["server_cpu"] - result["pinger_cpu"]
    )
    result["other_cpu"] = max(others, 0.0)
    return result


# The memory engine, filled and listed in one process of its own.


def _memory_engine(connection: Connection, sizes: list[int]) -> None:
    try:
        engine = memory.new()
        session = engine.connect()
        forms = _forms_available(type(session))
        results: list[dict[str, Any]] = []
        stored = 0
        for size in sizes:
            started = time.perf_counter()
            _fill_memory(session, stored, size)
            stored = size
            _log(f"memory engine: {size:,} messages stored in {time.perf_counter() - started:.0f} s")
            for form in forms:
                results.append({"size": size, "form": form, **_measure_memory_form(session, form)})
        connection.send({"results": results, "skipped": sorted(set(FORMS) - set(forms))})
    except Exception as error:
        connection.send({"error": f"{type(error).__name__}: {error}"})


def _measure_memory_form(session: Session, form: str) -> dict[str, Any]:
    listing = FORMS[form][1]
    gc.collect()
    machine_before, own_before = machine_cpu()[0], _cpu_seconds()
    started = time.perf_counter()
    count = listing(session)
    seconds = time.perf_counter() - started
    others = machine_cpu()[0] - machine_before - (_cpu_seconds() - own_before)
    # A second, traced run for the memory: tracemalloc slows Python down.
    gc.collect()
    tracemalloc.start()
    listing(session)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "count": count,
        "seconds": seconds,
        "memory_kib": peak / 1024,
        "other_cpu": max(others, 0.0),
    }


def _run_memory(sizes: list[int]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_memory_engine, args=(theirs, sizes), daemon=True)
    process.start()
    try:
        if not ours.poll(STEP_TIMEOUT * len(sizes)):
            raise RuntimeError("the memory engine's process did not finish in time")
        reply: dict[str, Any] = ours.recv()
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    if "error" in reply:
        raise RuntimeError(f"memory engine: {reply['error']}")
    return reply


def _run_redis(sizes: list[int]) -> dict[str, Any]:
    forms = [*_forms_available(RedisSession), SMEMBERS]
    results: list[dict[str, Any]] = []
    config = {"save": "", "appendonly": "no", "slowlog-max-len": str(SLOWLOG_LENGTH)}
    config["slowlog-log-slower-than"] = str(SLOWLOG_THRESHOLD_US)
    with RedisServer(config) as server:
        engine = redis_engine.new(HOST, server.port, OFFSET, socket_timeout=120)
        session = engine.connect()
        client = server.client(OFFSET)
        stored = 0
        for size in sizes:
            started = time.perf_counter()
            _fill_redis(session, client, stored, size)
            stored = size
            _log(f"redis engine: {size:,} messages stored in {time.perf_counter() - started:.0f} s")
            for form in forms:
                result = _measure_redis_form(server, form)
                results.append({"size": size, "form": form, **result})
                _log(f"redis engine, {size:,}: {form} took {result['seconds']:.2f} s")
        used_memory = client.info("memory")["used_memory"]
        version = client.info("server")["redis_version"]
        session.close()
        engine.close()
    skipped = sorted(set(FORMS) - set(forms))
    return {"results": results, "skipped": skipped, "used_memory": used_memory, "server_version": version}


def run(settings: ScaleSettings) -> dict[str, Any]:
    """Run the scale benchmark and return its results, ready for JSON."""
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    sizes = list(settings.sizes)
    redis_results = _run_redis(sizes)
    memory_results = _run_memory(sizes)
    return {
        "settings": {"sizes": sizes, "slowlog_threshold_us": SLOWLOG_THRESHOLD_US},
        "machine": machine(redis_results.pop("server_version"), load_at_start),
        "store_messages": not _missing(RedisSession, ("store_messages",)),
        "redis": redis_results,
        "memory": memory_results,
        "elapsed_seconds": time.monotonic() - started,
    }
