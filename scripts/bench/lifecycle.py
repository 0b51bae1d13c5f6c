"""The life-cycle benchmark: probes, then interleaved timed rounds, against one throwaway Redis.

It imports redis-py and slimta.storage, so it runs in the project's own
interpreter. The clients run in the hosts of :mod:`bench.hosts`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from slimta.storage.testing import RedisServer

from .hosts import Host, prepare_anchor_venv
from .pool import ANCHOR_VARIANTS
from .workload import OFFSETS

__all__ = ["VARIANTS", "Settings", "machine", "machine_cpu", "run", "server_cpu"]

VARIANTS = {
    "ours-1.0": "slimta-storage, 1.0 life cycle: nine session calls",
    "ours-short": "slimta-storage, short life cycle: store, check out, finish",
    "old-43": "old command sequence, one command at a time with redis-py",
    "raw-nine": "the nine commands ours-1.0 sends, replayed with plain redis-py",
    "pipeline-1": "floor: the nine commands in one redis-py pipeline",
    "pipeline-32": "floor: 32 life cycles in one redis-py pipeline",
    "python-slimta": "python-slimta RedisStorage: write, get, remove",
}
"""Every variant, in the order of the report, with a one-line description."""

SERVER_CONFIG = {"save": "", "appendonly": "no"}
"""redis-server settings: no persistence, so the disk does not set the pace."""


@dataclass(frozen=True)
class Settings:
    """Settings of one run of the life-cycle benchmark: what it measures and for how long."""

    rounds: int
    seconds: float
    sizes: tuple[int, ...]
    client_counts: tuple[int, ...]
    probe_cycles: int
    anchor_venv: Path
    install: bool
    probe_grace: float = 0.002
    """Seconds the counting proxy waits for more commands of one burst; see bench.proxy.GRACE."""


def machine(server_version: str, load_at_start: float) -> dict[str, Any]:
    """Describe this machine and the software the benchmark uses.

    ``load_at_start`` is the one-minute load average when the benchmark
    started, before its own processes ran, so it shows other work on the
    machine.
    """
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": _cores(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": server_version,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load_at_start,
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_cpu() -> tuple[float, float]:
    """Return the CPU seconds that every process of the machine used, and those the hypervisor stole.

    Both are counted since boot, from the first line of /proc/stat. Time in
    interrupts is left out: most of it is the loopback traffic of the
    benchmark itself, which no process is charged for.
    """
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / ticks, steal / ticks


def server_cpu(client: redis.Redis) -> float:
    """Return the CPU seconds that the Redis server of ``client`` has used since it started."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Run:
    def __init__(self, settings: Settings, server: RedisServer) -> None:
        self.settings = settings
        self.server = server
        self.control = server.client(0)
        self.hosts: dict[str, Host] = {}
        self.skipped: dict[str, str] = {}
        self.versions: dict[str, dict[str, str]] = {}

    def start_hosts(self) -> None:
        workers = max(self.settings.client_counts)
        counts = list(self.settings.client_counts)
        main = Host(sys.executable, workers, counts)
        ours = [name for name in VARIANTS if name not in ANCHOR_VARIANTS]
        reply = main.request({"op": "check", "variants": ours}, timeout=60)
        self.versions["main"] = reply["versions"]
        for name in ours:
            self._admit(name, main, reply["unavailable"][name])

        python, note = prepare_anchor_venv(self.settings.anchor_venv, self.settings.install)
        if python is None:
            for name in ANCHOR_VARIANTS:
                self.skipped[name] = note
                _log(f"skipping {name}: {note}")
            return
        anchor = Host(python, workers, counts)
        reply = anchor.request({"op": "check", "variants": sorted(ANCHOR_VARIANTS)}, timeout=60)
        self.versions["anchor"] = reply["versions"]
        for name in ANCHOR_VARIANTS:
            self._admit(name, anchor, reply["unavailable"][name])

    def _admit(self, name: str, host: Host, reason: str | None) -> None:
        if reason is None:
            self.hosts[name] = host
        else:
            self.skipped[name] = reason
            _log(f"skipping {name}: {reason}")

    def close(self) -> None:
        for host in set(self.hosts.values()):
            host.close()

    def probes(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name, host in self.hosts.items():
            for size in self.settings.sizes:
                request = {
                    "op": "probe",
                    "variant": name,
                    "size": size,
                    "port": self.server.port,
                    "cycles": self.settings.probe_cycles,
                    "grace": self.settings.probe_grace,
                }
                reply = host.request(request, timeout=120)
                found.setdefault(name, {})[str(size)] = reply
                self._clean_up(name)
            _log(f"probed {name}: {found[name][str(self.settings.sizes[0])]['round_trips']:g} round trips")
        return found

    def timed(self, clients: int, size: int, variant: str) -> dict[str, Any]:
        request = {
            "op": "run",
            "variant": variant,
            "clients": clients,
            "size": size,
            "seconds": self.settings.seconds,
            "port": self.server.port,
        }
        machine_before, stolen_before = machine_cpu()
        own_before = time.process_time()
        wall_before = time.monotonic()
        cpu_before = server_cpu(self.control)
        reply = self.hosts[variant].request(request, timeout=self.settings.seconds + 60)
        cpu_after = server_cpu(self.control)
        wall = time.monotonic() - wall_before
        own = time.process_time() - own_before
        machine_after, stolen_after = machine_cpu()
        self._clean_up(variant)

        results = reply["results"]
        every_cycle = sum(result["cycles"] + result["warmup_cycles"] for result in results)
        server = cpu_after - cpu_before
        clients = sum(result["cpu_seconds"] for result in results)
        # What neither the server, the clients nor this process used: other work on the machine.
        others = machine_after - machine_before - server - clients - own
        return {
            "rate": sum(result["cycles"] / result["elapsed"] for result in results),
            "cycles": sum(result["cycles"] for result in results),
            "server_cpu_us": server / every_cycle * 1e6,
            "other_cores": max(others, 0.0) / wall,
            "stolen_cores": (stolen_after - stolen_before) / wall,
        }

    def _clean_up(self, variant: str) -> None:
        # python-slimta appends every message to a list that only its queue's
        # wait() pops.
        if variant in ANCHOR_VARIANTS:
            self.server.client(OFFSETS["anchor"]).delete("slimta:queue")

    def cells(self) -> list[dict[str, Any]]:
        names = list(self.hosts)
        cells = []
        for clients in self.settings.client_counts:
            for size in self.settings.sizes:
                rounds = []
                for number in range(self.settings.rounds):
                    # A B C, then C B A, so a slow drift favours no variant.
                    order = names if number % 2 == 0 else names[::-1]
                    rounds.append({name: self.timed(clients, size, name) for name in order})
                    total = self.settings.rounds
                    _log(f"{clients} clients, {size} bytes: round {number + 1} of {total} done")
                cells.append({"clients": clients, "size": size, "rounds": rounds})
        return cells


def run(settings: Settings) -> dict[str, Any]:
    """Run the life-cycle benchmark and return its results, ready for JSON."""
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    with RedisServer(SERVER_CONFIG) as server:
        control = server.client(0)
        server_version = control.info("server")["redis_version"]
        persistence = control.config_get("save")["save"], control.config_get("appendonly")["appendonly"]
        benchmark = _Run(settings, server)
        try:
            benchmark.start_hosts()
            probes = benchmark.probes()
            cells = benchmark.cells()
        finally:
            benchmark.close()
        leftover = {db: server.client(db).dbsize() for db in range(16)}
    return {
        "settings": {
            "rounds": settings.rounds,
            "seconds": settings.seconds,
            "sizes": list(settings.sizes),
            "client_counts": list(settings.client_counts),
            "probe_cycles": settings.probe_cycles,
            "probe_grace": settings.probe_grace,
        },
        "machine": machine(server_version, load_at_start),
        "server": {"save": persistence[0], "appendonly": persistence[1]},
        "versions": benchmark.versions,
        "variants": {
            name: {"description": description, "skipped": benchmark.skipped.get(name)}
            for name, description in VARIANTS.items()
        },
        "probes": probes,
        "cells": cells,
        "leftover_keys": {str(db): count for db, count in leftover.items() if count},
        "elapsed_seconds": time.monotonic() - started,
    }
