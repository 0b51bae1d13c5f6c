"""The client processes of the benchmark, driven by ``scripts/bench.py`` over JSON lines.

A host process (``python -m bench.host``) starts one worker process per
client with the ``spawn`` method and keeps them for the whole run. For
each timed run it hands a task to the first N workers. Each worker
connects, warms up, waits on a barrier shared by the N workers, then
runs life cycles for the given number of seconds. Probes, which count
round trips and memory, run in a fresh process each.

Standard library only: the interpreter that has python-slimta runs it
too, and imports only the variant module it is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import resource
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any, TextIO

from .proxy import CountingProxy

__all__ = ["ANCHOR_VARIANTS", "serve"]

ANCHOR_VARIANTS = frozenset({"python-slimta"})
"""Variants that need python-slimta, which lives in another interpreter."""
BARRIER_TIMEOUT = 120.0
MAX_CALLS = 10_000_000
"""Bound on the calls of one timed run, whatever the seconds."""
WARMUP_SECONDS = 0.1
WARMUP_CALLS = 50
PROBE_WARMUP_CALLS = 2


def _factory(variant: str) -> Callable[[int, int], Any]:
    module = importlib.import_module("bench.anchor" if variant in ANCHOR_VARIANTS else "bench.variants")
    factory: Callable[[int, int], Any] = module.FACTORIES[variant]
    return factory


def _max_rss_kib() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_run(task: dict[str, Any], barrier: Barrier) -> dict[str, Any]:
    cpu_at_start = _cpu_seconds()
    cycle = _factory(task["variant"])(task["port"], task["size"])
    try:
        warmup_cycles = 0
        warmup_end = time.perf_counter() + min(WARMUP_SECONDS, task["seconds"] / 4)
        for _ in range(WARMUP_CALLS):
            warmup_cycles += cycle.run()
            if time.perf_counter() >= warmup_end:
                break
        barrier.wait(BARRIER_TIMEOUT)

        cycles = 0
        start = time.perf_counter()
        for _ in range(MAX_CALLS):
            cycles += cycle.run()
            if time.perf_counter() - start >= task["seconds"]:
                break
        elapsed = time.perf_counter() - start
    finally:
        cycle.close()
    return {
        "cycles": cycles,
        "elapsed": elapsed,
        "warmup_cycles": warmup_cycles,
        "cpu_seconds": _cpu_seconds() - cpu_at_start,
    }


def _worker(connection: Connection, barriers: dict[int, Barrier]) -> None:
    while True:
        task = connection.recv()
        if task is None:
            return
        barrier = barriers[task["clients"]]
        try:
            result = _timed_run(task, barrier)
        except Exception:
            # Let the other clients of this run stop waiting at the barrier.
            barrier.abort()
            result = {"error": traceback.format_exc()}
        connection.send(result)


def _run_cycles(cycle: Any, count: int) -> int:
    done = 0
    for _ in range(count):
        done += cycle.run()
        if done >= count:
            break
    return done


def _probe(connection: Connection, task: dict[str, Any]) -> None:
    try:
        connection.send(_probe_result(task))
    except Exception:
        connection.send({"error": traceback.format_exc()})


def _probe_result(task: dict[str, Any]) -> dict[str, Any]:
    """Measure the memory of one client, then count its round trips through the proxy."""
    factory = _factory(task["variant"])
    cycle = factory(task["port"], task["size"])
    _run_cycles(cycle, PROBE_WARMUP_CALLS)
    baseline_kib = _max_rss_kib()
    _run_cycles(cycle, task["cycles"])
    peak_kib = _max_rss_kib()
    tracemalloc.start()
    start_bytes = tracemalloc.get_traced_memory()[0]
    traced_cycles = cycle.run()
    traced_peak = tracemalloc.get_traced_memory()[1] - start_bytes
    tracemalloc.stop()
    cycle.close()

    proxy = CountingProxy(task["port"], grace=task["grace"])
    try:
        cycle = factory(proxy.port, task["size"])
        _run_cycles(cycle, PROBE_WARMUP_CALLS)
        before = proxy.counts()
        cycles = _run_cycles(cycle, task["cycles"])
        after = proxy.counts()
        cycle.close()
    finally:
        proxy.close()
    return {
        "rss_baseline_kib": baseline_kib,
        "rss_peak_kib": peak_kib,
        "traced_peak_bytes_per_cycle": traced_peak / traced_cycles,
        "cycles": cycles,
        "round_trips": (after.round_trips - before.round_trips) / cycles,
        "commands": (after.commands - before.commands) / cycles,
        "bytes_sent": (after.bytes_sent - before.bytes_sent) / cycles,
        "bytes_received": (after.bytes_received - before.bytes_received) / cycles,
    }


def _unavailable(variant: str) -> str | None:
    """Return why ``variant`` cannot run in this interpreter, or None when it can."""
    try:
        module = importlib.import_module("bench.anchor" if variant in ANCHOR_VARIANTS else "bench.variants")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    reason: str | None = module.unavailable(variant)
    return reason


def _versions() -> dict[str, str]:
    """Return the versions of the Python packages a client of this interpreter uses."""
    names = ("redis", "hiredis", "python-slimta", "slimta-storage")
    found: dict[str, str] = {"python": sys.version.split()[0]}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


class _Host:
    def __init__(self, workers: int, client_counts: list[int]) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._workers = workers
        self._client_counts = client_counts
        self._connections: list[Connection] = []
        self._processes: list[Any] = []
        self._barriers: dict[int, Barrier] = {}

    def _start_workers(self) -> None:
        # Kept for the life of the host: a child can open a semaphore only
        # while the parent's object exists.
        self._barriers = {count: self._context.Barrier(count) for count in self._client_counts}
        for index in range(self._workers):
            ours, theirs = self._context.Pipe()
            process = self._context.Process(
                target=_worker, args=(theirs, self._barriers), name=f"bench-client-{index}", daemon=True
            )
            process.start()
            self._connections.append(ours)
            self._processes.append(process)

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self._processes:
            self._start_workers()
        clients = request["clients"]
        for connection in self._connections[:clients]:
            connection.send(request)
        results = [connection.recv() for connection in self._connections[:clients]]
        errors = [result["error"] for result in results if "error" in result]
        if errors:
            return {"error": errors[0]}
        return {"results": results}

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_probe, args=(theirs, request), name="bench-probe")
        process.start()
        result: dict[str, Any] = ours.recv()
        process.join()
        return result

    def stop(self) -> None:
        for connection in self._connections:
            connection.send(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def serve(workers: int, client_counts: list[int], requests: TextIO, replies: TextIO) -> None:
    """Serve JSON requests, one a line, until ``quit`` or the end of ``requests``."""
    host = _Host(workers, client_counts)
    try:
        for line in requests:
            request = json.loads(line)
            operation = request["op"]
            if operation == "quit":
                break
            if operation == "check":
                reasons = {name: _unavailable(name) for name in request["variants"]}
                reply: dict[str, Any] = {"unavailable": reasons, "versions": _versions()}
            elif operation == "run":
                reply = host.run(request)
            elif operation == "probe":
                reply = host.probe(request)
            else:
                reply = {"error": f"unknown operation {operation!r}"}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        host.stop()


def main(argv: list[str]) -> None:
    """Serve on the original standard output and send everything else printed to standard error."""
    workers = int(argv[0])
    client_counts = [int(count) for count in argv[1].split(",")]
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(workers, client_counts, sys.stdin, replies)
