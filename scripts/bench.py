#!/usr/bin/env python3
"""Benchmark the Redis engine of slimta-storage against its baselines.

The default mode times one message's life cycle through the queue in
several ways. slimta-storage runs it with its nine 1.0 calls and with
its short life cycle. The baselines are the old implementation's command
sequence, the nine commands that slimta-storage sends (SADD and eight
EVALSHA of its scripts) replayed with plain redis-py, the same commands in
one pipeline per life cycle, and python-slimta's RedisStorage.

``--scale`` stores a million small messages on each engine and times the
listings. Both modes start their own redis-server on 127.0.0.1 and stop
it at the end.

    scripts/bench.py                    # about three minutes on two cores
    scripts/bench.py --quick            # a smoke test of every variant
    scripts/bench.py --report docs/benchmarks.rst
    scripts/bench.py --scale --report docs/benchmarks.rst   # about two minutes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _ensure_packages() -> None:
    """Run this script again in the repository's .venv when this interpreter lacks slimta-storage."""
    try:
        found = importlib.util.find_spec("redis") and importlib.util.find_spec("slimta.storage")
    except ModuleNotFoundError:
        found = None
    if found:
        return
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parents[1].resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    sys.exit(
        "scripts/bench.py needs slimta-storage and redis-py: run scripts/test once to create .venv,"
        " or install the package with pip install -e '.[hiredis]'"
    )


_ensure_packages()
# The helper package bench/ beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import lifecycle, proxy, report, scale  # noqa: E402 - needs the path above.

DEFAULT_ROUNDS = 5
DEFAULT_SECONDS = 1.0
QUICK_ROUNDS = 2
QUICK_SECONDS = 0.1
SIZES = (4 * 1024, 100 * 1024)
CLIENT_COUNTS = (1, 8)
PROBE_CYCLES = 32
QUICK_PROBE_CYCLES = 8
# The quick run is the test suite's smoke test, which runs on busy
# machines, so its proxy waits longer for the rest of a pipeline before it
# counts a round trip as done. Its probe has few cycles, so this stays cheap.
QUICK_PROBE_GRACE = 0.02
SCALE_SIZES = (100_000, 300_000, 1_000_000)
QUICK_SCALE_SIZES = (2_000, 6_000, 20_000)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted(int(item) for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, not {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"every size must be at least 1, not {text!r}")
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="store up to a million messages on each engine and time the listings instead",
    )
    parser.add_argument(
        "--scale-sizes",
        type=_sizes,
        metavar="N,N,...",
        help="queue sizes at which --scale times the listings (default 100000,300000,1000000)",
    )
    parser.add_argument("--quick", action="store_true", help="few short rounds, for a smoke test")
    parser.add_argument(
        "--rounds", type=_positive_int, help=f"rounds of every variant (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--seconds-per-round",
        type=_positive_float,
        help=f"seconds each variant runs per round (default {DEFAULT_SECONDS})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw results as JSON")
    parser.add_argument(
        "--report", type=Path, metavar="PATH", help="write the results section of the docs page at PATH"
    )
    parser.add_argument(
        "--anchor-venv",
        type=Path,
        default=ROOT / ".venv-bench",
        metavar="PATH",
        help="virtual environment that contains python-slimta (default .venv-bench)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="skip python-slimta when it is not installed, instead of installing it from PyPI",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark that the arguments select and print its tables."""
    arguments = _parser().parse_args(argv)
    command = " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    if arguments.scale:
        return _scale(arguments, command)
    quick = arguments.quick
    settings = lifecycle.Settings(
        rounds=arguments.rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS),
        seconds=arguments.seconds_per_round or (QUICK_SECONDS if quick else DEFAULT_SECONDS),
        sizes=SIZES,
        client_counts=CLIENT_COUNTS,
        probe_cycles=QUICK_PROBE_CYCLES if quick else PROBE_CYCLES,
        anchor_venv=arguments.anchor_venv,
        install=not arguments.no_install,
        probe_grace=QUICK_PROBE_GRACE if quick else proxy.GRACE,
    )
    results = lifecycle.run(settings)
    results["command"] = command
    # Few short rounds leave the ratios at the mercy of the machine's noise.
    results["quick"] = quick

    print(report.lifecycle_tables(results))
    print(f"finished in {results['elapsed_seconds']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
    if arguments.report:
        report.write_section(arguments.report, "lifecycle", report.lifecycle_section(results))
    return 0


def _scale(arguments: argparse.Namespace, command: str) -> int:
    sizes = arguments.scale_sizes or (QUICK_SCALE_SIZES if arguments.quick else SCALE_SIZES)
    results = scale.run(scale.ScaleSettings(sizes))
    results["command"] = command

    print(report.scale_tables(results))
    print(f"finished in {results['elapsed_seconds']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
    if arguments.report:
        report.write_section(arguments.report, "scale", report.scale_section(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
