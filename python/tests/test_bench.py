"""A smoke test of ``scripts/bench.py --quick``: every variant runs and is reported.

It checks the round trips that the counting proxy counts, which depend
on the variants' command sequences only, and never a timing. It passes
``--no-install``, so python-slimta runs only when ``.venv-bench`` already
has it. Otherwise the report must say that it was skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from slimta.storage.testing import find_redis_server

BENCH = ROOT / "scripts" / "bench.py"
TIMEOUT = 120
VARIANTS = ("ours-1.0", "ours-short", "old-43", "raw-nine", "pipeline-1", "pipeline-32", "python-slimta")
ROUND_TRIPS = {
    "ours-1.0": 9,
    "ours-short": 3,
    "old-43": 43,
    "raw-nine": 9,
    "pipeline-1": 1,
    "pipeline-32": 1 / 32,
    "python-slimta": 4,
}
ALWAYS_MEASURED = ("ours-1.0", "ours-short", "old-43", "raw-nine", "pipeline-1", "pipeline-32")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_redis_server() is None, reason="redis-server is not installed"),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the quick benchmark once, writing its JSON and a report page to a temporary folder."""
    folder = tmp_path_factory.mktemp("bench")
    command = [sys.executable, str(BENCH), "--quick", "--no-install"]
    command += ["--json", str(folder / "results.json"), "--report", str(folder / "benchmarks.rst")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return completed, folder


@pytest.fixture(scope="module")
def results(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    completed, folder = quick_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded: dict[str, Any] = json.loads((folder / "results.json").read_text())
    return loaded


def test_quick_bench_completes(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    completed, _ = quick_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Life cycles per second" in completed.stdout
    assert "Targets" in completed.stdout


def test_quick_bench_lists_every_variant(results: dict[str, Any]) -> None:
    assert tuple(results["variants"]) == VARIANTS
    for name in ALWAYS_MEASURED:
        assert results["variants"][name]["skipped"] is None, name


def test_quick_bench_times_every_measured_variant(results: dict[str, Any]) -> None:
    measured = [name for name, variant in results["variants"].items() if not variant["skipped"]]
    assert len(results["cells"]) == 4
    for cell in results["cells"]:
        for round_ in cell["rounds"]:
            assert sorted(round_) == sorted(measured)
            for name in measured:
                assert round_[name]["cycles"] > 0, (name, cell["clients"], cell["size"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_quick_bench_round_trips(results: dict[str, Any], variant: str) -> None:
    if results["variants"][variant]["skipped"]:
        pytest.skip(f"{variant} was skipped: {results['variants'][variant]['skipped']}")
    for size, probe in results["probes"][variant].items():
        assert probe["round_trips"] == pytest.approx(ROUND_TRIPS[variant]), size


def test_quick_bench_report_page(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, folder = quick_run
    page = (folder / "benchmarks.rst").read_text()
    for name in VARIANTS:
        assert f"``{name}``" in page
    assert "Round trips" in page
    assert ".. BEGIN lifecycle results" in page
    assert ".. BEGIN scale results" in page


def test_quick_bench_marks_targets_indicative(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    completed, _ = quick_run
    assert "(quick run: indicative only)" in completed.stdout
