"""The Python engines pass every conformance vector, and the runner catches broken engines.

Each full run is one ``python -m slimta.storage conformance --json``
subprocess over conformance/vectors. The runs start together in a
module fixture, at most :data:`PARALLEL_RUNS` at a time, because the
Redis runs sleep through the lock-expiry cases. Every Redis run uses a
throwaway server: one the runner starts with ``--engine redis``, or the
test run's own server from conftest.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from slimta.storage.testing import RedisServer

VECTORS = ROOT / "conformance" / "vectors"
TESTS = Path(__file__).resolve().parent
ADAPTER = f"{shlex.quote(sys.executable)} -m slimta.storage.conformance.adapter"
# The offset of the runs on the conftest server: its tests use 4 to 7.
URL_OFFSET = 8
PARALLEL_RUNS = 3
# A full run takes a few seconds; this bound only stops a stuck run.
RUN_TIMEOUT = 300.0

# The broken engines of broken_engines.py and the cases they must fail.
BROKEN_MUST_FAIL = {
    "leaky_delete": {"delete-leaves-no-keys", "foreign-lua-writer-message", "stale-writes-leave-no-keys"},
    "merging_meta": {"meta-replace-drops-old-keys", "meta-replace-empty-removes-all"},
    "unordered_deferred": {"deferred-orders-by-time", "deferred-ties-by-id"},
}
# The broken paging engines of broken_engines.py, each run on memory over the paged-listing cases.
BROKEN_PAGES = ("repeating_pages", "dropping_pages", "looping_pages")
PAGED_CASES = "paged-*"
# The cases whose pages step reads each listing of 2500 messages, or of 12 locked ones.
EVERY_ID = {
    "paged-deferred-every-id": "step 4 pages get_deferred_messages_page",
    "paged-all-every-id": "step 4 pages get_all_messages_page",
    "paged-active-every-id": "step 14 pages get_active_messages_page",
}


@dataclass
class Run:
    """The exit status, report and stderr of one run of the runner."""

    status: int
    report: dict[str, Any]
    stderr: str
    seconds: float

    def statuses(self) -> dict[str, str]:
        """Return the status of each case by id."""
        return {case["id"]: case["status"] for case in self.report["cases"]}

    def failed(self) -> dict[str, dict[str, Any]]:
        """Return the failed cases by id."""
        return {case["id"]: case for case in self.report["cases"] if case["status"] == "fail"}


def run_conformance(*options: str) -> Run:
    """Run ``python -m slimta.storage conformance --json`` on the real vectors and parse its report."""
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    command = [sys.executable, "-m", "slimta.storage", "conformance", "--json", "--vectors", str(VECTORS)]
    started = time.monotonic()
    finished = subprocess.run(
        [*command, *options], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False
    )
    seconds = time.monotonic() - started
    assert finished.stdout, f"no report; stderr: {finished.stderr}"
    return Run(finished.returncode, json.loads(finished.stdout), finished.stderr, seconds)


def broken_adapter(factory: str) -> str:
    return f"{ADAPTER} --factory broken_engines:{factory}"


@pytest.fixture(scope="module")
def runs(redis_server: RedisServer) -> dict[str, Run]:
    """Run the full suite in every configuration at once, returning the runs by name."""
    redis_server.client().flushall()  # The conftest server belongs to the test run alone.
    url = redis_server.url(URL_OFFSET)
    plans = {
        "memory": (),
        "memory-adapter": ("--adapter", ADAPTER),
        "redis": ("--engine", "redis"),
        "redis-adapter": ("--engine", url, "--adapter", ADAPTER),
    }
    for factory in BROKEN_MUST_FAIL:
        plans[factory] = ("--engine", "redis", "--adapter", broken_adapter(factory))
    for factory in BROKEN_PAGES:
        plans[factory] = ("--adapter", broken_adapter(factory), "--select", PAGED_CASES)

    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        futures = {name: pool.submit(run_conformance, *options) for name, options in plans.items()}
        return {name: future.result() for name, future in futures.items()}


def test_vectors_exist() -> None:
    assert sorted(VECTORS.glob("*.json")), f"no vectors in {VECTORS}: run scripts/gen_vectors.py"


@pytest.mark.parametrize("name", ["memory", "memory-adapter", "redis", "redis-adapter"])
def test_python_engines_pass_every_case(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    totals = run.report["totals"]

    assert run.status == 0, run.failed()
    assert totals["failed"] == 0
    assert totals["passed"] > 100
    assert totals["xfailed"] == totals["xpassed"] == 0


def test_memory_skips_only_redis_cases(runs: dict[str, Run]) -> None:
    skipped = [case for case in runs["memory"].report["cases"] if case["status"] == "skip"]

    assert skipped
    assert {case["reason"] for case in skipped} == {"needs engine:redis"}


def test_redis_skips_nothing(runs: dict[str, Run]) -> None:
    assert runs["redis"].report["totals"]["skipped"] == 0
    assert runs["redis-adapter"].report["totals"]["skipped"] == 0


@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_adapter_matches_in_process(runs: dict[str, Run], engine: str) -> None:
    in_process = runs[engine].statuses()
    adapter = runs[f"{engine}-adapter"].statuses()

    assert adapter == in_process


def test_report_names_binding_and_target(runs: dict[str, Run]) -> None:
    report = runs["redis-adapter"].report

    assert report["binding"]["name"] == "slimta-storage"
    assert report["binding"]["language"] == "python"
    assert report["binding"]["capabilities"] == ["clock", "engine:memory", "engine:redis"]
    assert report["target"].startswith("adapter ")
    assert report["engine"]["offset"] == URL_OFFSET
    assert report["vectors"]["vector_format"].startswith("1.")


def test_url_run_leaves_databases_empty(runs: dict[str, Run], redis_server: RedisServer) -> None:
    for db in range(URL_OFFSET, URL_OFFSET + 4):
        assert redis_server.client(db).dbsize() == 0


@pytest.mark.parametrize("factory", sorted(BROKEN_MUST_FAIL))
def test_broken_engine_fails_its_cases(runs: dict[str, Run], factory: str) -> None:
    run = runs[factory]
    failed = run.failed()

    assert run.status == 1
    assert BROKEN_MUST_FAIL[factory] <= set(failed)
    assert run.report["totals"]["skipped"] == 0


def test_leaky_delete_fails_only_on_lock_keys(runs: dict[str, Run]) -> None:
    for case_id, case in runs["leaky_delete"].failed().items():
        if case["where"].endswith(" unlock_message"):
            # The stale owner's unlock found the lock key that the delete left.
            assert case["got"]["value"] is True, case_id
            continue
        assert case["where"] == "layout", case_id
        others = case["got"]["other_keys"]
        assert others, case_id
        assert {key["db"] for key in others} == {3}, case_id


def test_merging_meta_fails_only_on_kept_keys(runs: dict[str, Run]) -> None:
    for case_id, case in runs["merging_meta"].failed().items():
        if case["where"] == "layout":
            assert {key["db"] for key in case["got"]["other_keys"]} == {1}, case_id
            continue
        assert case["where"].endswith(" get_message_meta"), case_id
        expected = case["expected"]["value"]
        got = case["got"]["value"]
        assert got != expected, case_id
        assert set(expected.items()) <= set(got.items()), case_id


def deferred_ids(case: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return the expected and the returned ids of a failed deferred listing, whole, paged or one page."""
    expected, got = case["expected"], case["got"]
    if "member" in expected:
        # A fields match of a page, which names the member that failed.
        assert expected["member"] == "message_ids"
        expected, got = expected["expected"], got["got"]
    ids = expected["value"], got["value"]
    if isinstance(ids[0], dict):
        return ids[0]["message_ids"], ids[1]["message_ids"]
    return ids


def test_unordered_deferred_fails_only_on_order(runs: dict[str, Run]) -> None:
    failed = runs["unordered_deferred"].failed()

    assert failed["paged-deferred-every-id"]["where"] == EVERY_ID["paged-deferred-every-id"]
    for case_id, case in failed.items():
        expected, got = deferred_ids(case)
        assert case["where"].endswith((" get_deferred_messages", " get_deferred_messages_page")), case_id
        assert got != expected, case_id
        assert sorted(got) == sorted(expected), case_id


def test_repeating_pages_fail_ordered_listing_only(runs: dict[str, Run]) -> None:
    run = runs["repeating_pages"]
    failed = run.failed()
    deferred = failed["paged-deferred-every-id"]

    assert run.status == 1
    assert deferred["where"] == EVERY_ID["paged-deferred-every-id"]
    assert deferred["expected"]["match"] == "ordered"
    assert len(deferred["got"]["value"]) > len(deferred["expected"]["value"])
    # The spec lets the listings without an order repeat an id, so their pages steps pass.
    assert run.statuses()["paged-all-every-id"] == "pass"
    assert run.statuses()["paged-active-every-id"] == "pass"


def test_dropping_pages_fail_every_listing(runs: dict[str, Run]) -> None:
    run = runs["dropping_pages"]
    failed = run.failed()

    assert run.status == 1
    for case_id, where in EVERY_ID.items():
        assert failed[case_id]["where"] == where, case_id
    for case_id in ("paged-all-every-id", "paged-active-every-id"):
        assert failed[case_id]["got"]["missing"], case_id
        assert failed[case_id]["got"]["unexpected"] == [], case_id


def test_looping_pages_fail_on_repeated_cursor(runs: dict[str, Run]) -> None:
    run = runs["looping_pages"]
    failed = run.failed()

    assert run.status == 1
    assert set(EVERY_ID) <= set(failed)
    for case_id, case in failed.items():
        assert case["where"] == EVERY_ID.get(case_id, case["where"]), case_id
        assert case["reason"].endswith("so following the cursors would loop"), case_id


def test_broken_engine_line_shows_step_and_values(redis_server: RedisServer) -> None:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    command = [sys.executable, "-m", "slimta.storage", "conformance", "--vectors", str(VECTORS)]
    options = ["--engine", "redis", "--adapter", broken_adapter("merging_meta")]
    options += ["--select", "meta-replace-drops-old-keys"]
    finished = subprocess.run(
        [*command, *options], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False
    )

    line = finished.stdout.splitlines()[0]
    assert finished.returncode == 1
    assert line.startswith("FAIL meta-replace-drops-old-keys: step 4 get_message_meta: expected {")
    assert 'expected {"b": "3", "c": "4"}, got {"a": "1", "b": "3", "c": "4"}' in line
    assert finished.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"
