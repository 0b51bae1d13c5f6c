"""The conformance runner on small sample vectors: output, options, faulty adapters and tags.

The samples in conformance_samples/basic exercise every step and tag;
one of them, sample-wrong-on-purpose, fails on every correct binding.
Most tests call :func:`slimta.storage.conformance.main` in this process
and read its output from capsys; the adapters run as subprocesses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OFFSET

from slimta.storage import SPEC_VERSION, cli, conformance
from slimta.storage.conformance import _adapter_client, _engines, _expect, _pages, _values
from slimta.storage.conformance._values import VectorValueError, WireError
from slimta.storage.testing import RedisServer

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS / "conformance_samples" / "basic"
ADAPTER = f"{shlex.quote(sys.executable)} -m slimta.storage.conformance.adapter"
BROKEN = TESTS / "broken_engines.py"
FAILING = "sample-wrong-on-purpose"
REDIS_ONLY = "sample-foreign-layout"
# The sample that calls set_message_contents, where the faulty adapters fail.
CONTENTS = "sample-contents-round-trip"


class Result:
    """The exit status and output of one in-process run of the runner."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status = status
        self.out = out
        self.err = err
        self.lines = out.splitlines()

    def line(self, case_id: str) -> str:
        """Return the output line of one case."""
        found = [line for line in self.lines if line.split(" ", 1)[1].split(":")[0] == case_id]
        assert len(found) == 1, self.out
        return found[0]

    def json(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.out)
        return report


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Return a function that runs the runner on the samples with extra options."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))

    def run_runner(*options: str, vectors: Path = SAMPLES) -> Result:
        status = conformance.main(["--vectors", str(vectors), *options])
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run_runner


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_vectors(
    directory: Path,
    cases: list[dict[str, Any]],
    vector_format: str = "1.3",
    spec_version: str = SPEC_VERSION,
) -> Path:
    """Write the cases as the group g, with the index.json that lists them, and return the folder."""
    directory.mkdir(exist_ok=True)
    versions = {"vector_format": vector_format, "spec_version": spec_version}
    document = {**versions, "group": "g", "description": "Cases of one test.", "cases": cases}
    index = {**versions, "groups": {"g": sorted(case["id"] for case in cases)}, "retired": []}
    (directory / "g.json").write_text(json.dumps(document))
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def write_xfail(tmp_path: Path, text: str) -> str:
    path = tmp_path / "binding.xfail"
    path.write_text(text)
    return str(path)


# Output and exit status


def test_lines_per_case_and_summary(run: Any) -> None:
    result = run()

    assert result.status == 1
    assert result.line("sample-claim-and-list") == "PASS sample-claim-and-list"
    assert result.line(REDIS_ONLY) == f"SKIP {REDIS_ONLY}: needs engine:redis"
    assert result.lines[-1] == "8 passed, 1 failed, 1 skipped"


def test_failure_names_step_and_values(run: Any) -> None:
    result = run("--select", FAILING)

    expected = 'step 3 get_message_meta: expected {"a": "1", "b": "2"}, got {"b": "2"}'
    assert result.line(FAILING) == f"FAIL {FAILING}: {expected}"


def test_all_passing_exits_zero(run: Any) -> None:
    result = run("--select", "sample-claim-*", "--select", "sample-lock-*")

    assert result.status == 0
    assert [line.split()[1] for line in result.lines[:-1]] == ["sample-claim-and-list", "sample-lock-race"]
    assert result.lines[-1] == "2 passed, 0 failed, 0 skipped"


def test_select_without_match_is_usage_error(run: Any) -> None:
    result = run("--select", "no-such-*")

    assert result.status == 2
    assert "--select 'no-such-*' matches no case" in result.err


def test_json_report(run: Any) -> None:
    result = run("--json")
    report = result.json()
    cases = {case["id"]: case for case in report["cases"]}

    assert result.status == 1
    assert report["totals"] == {"passed": 8, "failed": 1, "skipped": 1, "xfailed": 0, "xpassed": 0}
    assert report["target"] == "in-process"
    assert report["binding"]["name"] == "slimta-storage"
    assert cases[FAILING]["step"] == 3
    assert cases[FAILING]["where"] == "step 3 get_message_meta"
    assert cases[FAILING]["expected"] == {"value": {"a": "1", "b": "2"}, "match": "exact"}
    assert cases[FAILING]["got"] == {"value": {"b": "2"}}
    assert cases[REDIS_ONLY] == {"id": REDIS_ONLY, "status": "skip", "reason": "needs engine:redis"}


def test_json_error_outcome(tmp_path: Path, run: Any) -> None:
    case = {
        "id": "expects-a-value",
        "steps": [{"call": "get_message_meta", "args": {"message_id": "nope"}, "expect": {"value": {}}}],
    }
    vectors = write_vectors(tmp_path / "vectors", [case])

    report = run("--json", vectors=vectors).json()
    got = report["cases"][0]["got"]

    assert got["error"] == "message_not_found"
    assert "nope" in got["message"]


def test_invalid_steps_fail_their_case(tmp_path: Path, run: Any) -> None:
    cases = [
        {"id": "two-actions", "steps": [{"call": "get_all_messages", "advance": 1}]},
        {"id": "unbound", "steps": [{"call": "get_message_meta", "args": {"message_id": {"$var": "m1"}}}]},
        {
            "id": "fine",
            "steps": [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}],
        },
    ]
    vectors = write_vectors(tmp_path / "vectors", cases)
    result = run(vectors=vectors)

    assert result.line("two-actions").startswith("FAIL two-actions: step 1 (invalid): invalid step: it needs")
    assert result.line("unbound") == (
        "FAIL unbound: step 1 get_message_meta: invalid vector: variable 'm1' is not bound:"
        " no earlier step has bind: m1"
    )
    assert result.line("fine") == "PASS fine"


def contents_case(case_id: str, stored: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Return a case that stores contents and expects to read back ``expected`` instead."""
    message = {"message_id": {"$var": "m1"}}
    return {
        "id": case_id,
        "steps": [
            {"call": "claim_message_id", "bind": "m1", "expect": {"match": "any"}},
            {"call": "set_message_contents", "args": {**message, "contents": stored}},
            {"call": "get_message_contents", "args": message, "expect": {"value": expected}},
        ],
    }


def test_bytes_failure_shows_first_difference(tmp_path: Path, run: Any) -> None:
    stored = b"x" * 1000
    expected = stored[:500] + b"y" + stored[501:]
    case = contents_case("one-byte-off", {"$bytes": b64(stored)}, {"$bytes": b64(expected)})
    result = run(vectors=write_vectors(tmp_path / "vectors", [case]))

    assert result.line("one-byte-off") == (
        "FAIL one-byte-off: step 3 get_message_contents: expected 1000 bytes, got 1000 bytes,"
        f' first difference at byte 500; from byte 484: expected ...b"{"x" * 16}y{"x" * 15}"...,'
        f' got ...b"{"x" * 32}"...'
    )


def test_short_bytes_failure_shows_text(tmp_path: Path, run: Any) -> None:
    case = contents_case("text-off", {"$bytes": b64(b"1")}, {"$bytes": b64(b"locked")})
    result = run(vectors=write_vectors(tmp_path / "vectors", [case]))

    assert result.line("text-off").endswith(
        'expected b"locked" (6 bytes), got b"1" (1 byte), first difference at byte 0'
    )


def test_json_bytes_failure_is_short(tmp_path: Path, run: Any) -> None:
    length = 5 * 1024 * 1024
    stored = {"$bytes_pattern": {"base64": b64(b"x"), "length": length}}
    expected = {"$bytes_pattern": {"base64": b64(b"x"), "length": length + 1}}
    result = run(
        "--json", vectors=write_vectors(tmp_path / "vectors", [contents_case("long", stored, expected)])
    )
    case = result.json()["cases"][0]

    assert len(result.out) < 10_000
    assert case["got"]["first_difference"] == length
    assert case["expected"]["value"]["$bytes_excerpt"]["length"] == length + 1
    assert case["got"]["value"]["$bytes_excerpt"]["length"] == length
    assert case["got"]["value"]["$bytes_excerpt"]["start"] == length - 16
    assert "expected 5242881 bytes, got 5242880 bytes, first difference at byte 5242880" in case["reason"]


def test_layout_value_failure_shows_text(tmp_path: Path, clean_redis: RedisServer, run: Any) -> None:
    case = {
        "id": "lock-value",
        "steps": [{"raw": [{"db": 3, "command": ["SET", "m1", "1"]}]}],
        "layout": {"exhaustive": True, "keys": [{"db": 3, "key": "m1", "type": "string", "value": "locked"}]},
    }
    result = run("--engine", clean_redis.url(OFFSET), vectors=write_vectors(tmp_path / "vectors", [case]))

    assert result.line("lock-value") == (
        'FAIL lock-value: layout: expected value b"locked" (6 bytes) at db 3 key "m1", got b"1" (1 byte),'
        " first difference at byte 0"
    )


def test_closed_stdout_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # The reader is gone before the first line, as with "| head -1" after it read.
    command = [sys.executable, "-m", "slimta.storage", "conformance", "--vectors", str(SAMPLES)]
    try:
        finished = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, check=False
        )
    finally:
        os.close(write_end)

    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert "BrokenPipeError" not in finished.stderr


# Expected failures


def test_xfail_listed_failure(tmp_path: Path, run: Any) -> None:
    xfail = write_xfail(tmp_path, f"# known gaps\n\n{FAILING}   meta is merged, not replaced\n")
    result = run("--xfail", xfail)

    assert result.status == 0
    assert result.line(FAILING).startswith(f"XFAIL {FAILING}: step 3 get_message_meta: expected")
    assert result.line(FAILING).endswith("(listed as expected: meta is merged, not replaced)")
    assert result.lines[-1] == "8 passed, 0 failed, 1 skipped, 1 xfailed"


def test_xfail_listed_pass_fails_run(tmp_path: Path, run: Any) -> None:
    xfail = write_xfail(tmp_path, f"{FAILING} known\nsample-claim-and-list not yet\n")
    result = run("--xfail", xfail, "--json")
    statuses = {case["id"]: case["status"] for case in result.json()["cases"]}

    assert result.status == 1
    assert statuses["sample-claim-and-list"] == "xpass"
    assert statuses[FAILING] == "xfail"
    assert result.json()["totals"]["xpassed"] == 1


def test_xfail_pass_line(tmp_path: Path, run: Any) -> None:
    xfail = write_xfail(tmp_path, "sample-claim-and-list not yet\n")
    result = run("--xfail", xfail, "--select", "sample-claim-*")

    assert result.status == 1
    assert result.line("sample-claim-and-list").startswith("XPASS sample-claim-and-list: passed, but")
    assert result.lines[-1] == "0 passed, 0 failed, 0 skipped, 1 xpassed"


def test_xfail_listed_skip_stays_skip(tmp_path: Path, run: Any) -> None:
    xfail = write_xfail(tmp_path, f"{REDIS_ONLY} needs a server\n")
    result = run("--xfail", xfail, "--select", REDIS_ONLY)

    assert result.status == 0
    assert result.line(REDIS_ONLY).startswith("SKIP")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-such-case reason\n", "unknown case id 'no-such-case'"),
        (f"{FAILING}\n", "has no reason"),
        (f"{FAILING} one\n{FAILING} two\n", "is listed twice"),
    ],
)
def test_xfail_file_errors(tmp_path: Path, run: Any, text: str, message: str) -> None:
    result = run("--xfail", write_xfail(tmp_path, text))

    assert result.status == 2
    assert message in result.err
    assert result.out == ""


def test_xfail_file_missing(tmp_path: Path, run: Any) -> None:
    result = run("--xfail", str(tmp_path / "missing.xfail"))

    assert result.status == 2
    assert "could not read the expected-failure file" in result.err


# Faulty adapters


def test_adapter_matches_in_process_on_samples(run: Any) -> None:
    in_process = run("--json").json()["cases"]
    adapter = run("--json", "--adapter", ADAPTER).json()["cases"]

    assert [(case["id"], case["status"]) for case in adapter] == [
        (case["id"], case["status"]) for case in in_process
    ]


def test_crashing_adapter_fails_case_and_goes_on(run: Any) -> None:
    result = run("--adapter", f"{ADAPTER} --factory broken_engines:crashing")
    line = result.line(CONTENTS)

    assert result.status == 1
    assert line.startswith(f"FAIL {CONTENTS}: step 2 set_message_contents: the adapter exited during")
    assert "exit status 3" in line
    assert "crashing on purpose" in line
    assert result.line("sample-meta-text-bytes") == "PASS sample-meta-text-bytes"
    assert result.lines[-1] == "7 passed, 2 failed, 1 skipped"
    assert "restarting the adapter" in result.err
    assert "slimta-storage conformance: warning: " in result.err
    assert "WARNING" not in result.err


def test_memory_url_engine_accepted(run: Any) -> None:
    result = run("--engine", "memory://")

    assert result.lines[-1] == "8 passed, 1 failed, 1 skipped"


def test_hanging_adapter_times_out_and_goes_on(run: Any) -> None:
    result = run("--timeout", "0.5", "--adapter", f"{ADAPTER} --factory broken_engines:hanging")
    line = result.line(CONTENTS)

    assert result.status == 1
    expected = f"FAIL {CONTENTS}: step 2 set_message_contents: the adapter sent no reply to call"
    assert line == f"{expected} set_message_contents within 0.5 s"
    assert result.lines[-1] == "7 passed, 2 failed, 1 skipped"


def test_garbage_adapter_fails_case_and_goes_on(run: Any) -> None:
    result = run("--adapter", f"{shlex.quote(sys.executable)} {shlex.quote(str(BROKEN))} garbage")
    line = result.line(CONTENTS)

    assert result.status == 1
    assert line.startswith(
        f"FAIL {CONTENTS}: step 2 set_message_contents: the adapter wrote an invalid reply"
    )
    assert "'this is not JSON'" in line
    assert result.lines[-1] == "7 passed, 2 failed, 1 skipped"


def test_adapter_that_cannot_start(run: Any) -> None:
    result = run("--adapter", "/nonexistent/adapter --flag")

    assert result.status == 2
    assert "could not start the adapter" in result.err


def test_exited_adapter_shows_error_line(tmp_path: Path, run: Any) -> None:
    adapter = tmp_path / "dies.py"
    adapter.write_text(
        "import sys\n"
        "print('Error: Cannot find module x', file=sys.stderr)\n"
        "for number in range(8):\n"
        "    print(f'    at frame {number}', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    result = run("--adapter", f"{shlex.quote(sys.executable)} {adapter}")

    assert result.status == 2
    assert "Error: Cannot find module x | ... |     at frame 2 |" in result.err
    assert "at frame 7" in result.err


def test_adapter_without_handshake(run: Any) -> None:
    command = f"{shlex.quote(sys.executable)} -c \"print('hello there')\""
    result = run("--adapter", command)

    assert result.status == 2
    assert "failed the handshake" in result.err
    assert "not JSON" in result.err


def test_adapter_with_unknown_factory(run: Any) -> None:
    result = run("--adapter", f"{ADAPTER} --factory broken_engines:no_such_factory")

    assert result.status == 2
    assert "failed the handshake" in result.err
    assert "no callable no_such_factory" in result.err


def live_group_members(pgid: int) -> list[int]:
    """Return the pids of the processes in a process group that have not exited, zombies left out."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # The process exited while the loop read it.
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def adapter_groups(pid_file: Path) -> set[int]:
    """Return the process groups that the hanging adapters recorded, one line of "pid pgid" each."""
    if not pid_file.exists():
        return set()
    return {int(line.split()[1]) for line in pid_file.read_text().splitlines()}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
def test_wrapped_hanging_adapter_killed_with_its_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "adapters.txt"
    # The wrapper forks the adapter instead of replacing itself with it, because of "; true".
    wrapper = shlex.join(["sh", "-c", f"{ADAPTER} --factory broken_engines:hanging; true"])
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        BROKEN_HANG_SECONDS="3600",
        BROKEN_PID_FILE=str(pid_file),
    )
    command = [sys.executable, "-m", "slimta.storage", "conformance", "--vectors", str(SAMPLES)]
    runner = subprocess.Popen(
        [*command, "--timeout", "0.5", "--adapter", wrapper],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = runner.communicate(timeout=60)
        deadline = time.monotonic() + 5
        while any(map(live_group_members, adapter_groups(pid_file))) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = {pgid: live_group_members(pgid) for pgid in adapter_groups(pid_file)}
    finally:
        # Only the groups started here: the runner's, which held the stray
        # adapters before the fix, and the adapters' own.
        for pgid in {runner.pid, *adapter_groups(pid_file)}:
            kill_group(pgid)
        runner.wait(10)
    lines = out.splitlines()

    assert f"FAIL {CONTENTS}: step 2 set_message_contents: the adapter sent no reply" in out
    assert "PASS sample-meta-text-bytes" in lines
    assert lines[-1] == "7 passed, 2 failed, 1 skipped"
    assert survivors
    assert runner.pid not in survivors
    assert survivors == {pgid: [] for pgid in survivors}


@pytest.mark.parametrize("adapter", [False, True], ids=["in-process", "adapter"])
def test_only_spec_methods_callable(adapter: bool) -> None:
    target = conformance.AdapterTarget(ADAPTER) if adapter else conformance.InProcessTarget()
    target.start()
    try:
        engine = target.open_engine({"engine": "memory", "clock": None}).value["engine"]
        session = target.connect(engine).value["session"]
        outcome = target.call(session, "describe_message", {"message_id": "not-stored"})
    finally:
        target.close()

    assert outcome.error == "protocol"
    assert "unknown method 'describe_message'" in outcome.message


def test_session_methods_are_the_specs() -> None:
    spec = yaml.safe_load((TESTS.parents[1] / "spec" / "storage.yaml").read_text(encoding="utf-8"))

    assert {method["name"] for method in spec["methods"]} == _engines.SESSION_METHODS


# Vectors and engines


def edit_json(path: Path, **fields: Any) -> None:
    document = json.loads(path.read_text())
    document.update(fields)
    path.write_text(json.dumps(document))


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """Return a copy of the sample vectors, for tests that change them."""
    return Path(shutil.copytree(SAMPLES, tmp_path / "samples"))


def test_unknown_major_format_rejected(samples: Path, run: Any) -> None:
    for name in ("samples.json", "index.json"):
        edit_json(samples / name, vector_format="2.0")
    result = run(vectors=samples)

    assert result.status == 2
    assert "vector_format 2.0 is not supported" in result.err


def test_newer_minor_format_accepted(samples: Path, run: Any) -> None:
    for name in ("samples.json", "index.json"):
        edit_json(samples / name, vector_format="1.7")
    result = run("--select", "sample-claim-*", vectors=samples)

    assert result.status == 0


def test_index_file_is_not_a_group(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "samples.json", tmp_path)
    shutil.copy(SAMPLES / "index.json", tmp_path)

    loaded = conformance.load_vectors(tmp_path)

    assert {case.group for case in loaded.cases} == {"samples"}


def test_repeated_case_id_rejected(samples: Path) -> None:
    index = json.loads((samples / "index.json").read_text())
    for group in ("a", "b"):
        shutil.copy(samples / "samples.json", samples / f"{group}.json")
        edit_json(samples / f"{group}.json", group=group)
    (samples / "samples.json").unlink()
    ids = index["groups"]["samples"]
    edit_json(samples / "index.json", groups={"a": ids, "b": ids})

    with pytest.raises(conformance.VectorError, match="appears twice"):
        conformance.load_vectors(samples)


def test_missing_vector_folder(tmp_path: Path, run: Any) -> None:
    result = run(vectors=tmp_path / "missing")

    assert result.status == 2
    assert "does not exist" in result.err


def test_missing_index_rejected(samples: Path, run: Any) -> None:
    (samples / "index.json").unlink()
    result = run(vectors=samples)

    assert result.status == 2
    assert "index.json is missing" in result.err
    assert result.out == ""


def test_missing_group_file_rejected(samples: Path, run: Any) -> None:
    index = json.loads((samples / "index.json").read_text())
    edit_json(samples / "index.json", groups={**index["groups"], "lock": ["lock-second-call-loses"]})
    result = run(vectors=samples)

    assert result.status == 2
    assert "lock.json is missing, but" in result.err


def test_case_ids_differ_from_index(samples: Path, run: Any) -> None:
    document = json.loads((samples / "samples.json").read_text())
    edit_json(samples / "samples.json", cases=document["cases"][1:])
    result = run("--select", "sample-claim-*", vectors=samples)

    assert result.status == 2
    assert "lacks sample-claim-and-list, which index.json lists" in result.err


def test_mixed_spec_versions_rejected(samples: Path, run: Any) -> None:
    edit_json(samples / "samples.json", spec_version="1.1.0")
    result = run(vectors=samples)

    assert result.status == 2
    assert "samples.json has spec_version 1.1.0, but index.json has 1.0.0" in result.err


def test_unlisted_vector_file_rejected(samples: Path, run: Any) -> None:
    shutil.copy(samples / "samples.json", samples / "old.json")
    edit_json(samples / "old.json", group="old")
    (samples / "package.json").write_text('{"name": "not a vector file"}')
    result = run(vectors=samples)

    assert result.status == 2
    assert "old.json is a vector file that" in result.err
    assert "package.json" not in result.err


def test_older_binding_spec_warns_and_runs(tmp_path: Path, run: Any) -> None:
    case = {
        "id": "lists",
        "steps": [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}],
    }
    result = run(vectors=write_vectors(tmp_path / "vectors", [case], spec_version="1.9.0"))

    assert result.status == 0
    assert result.line("lists") == "PASS lists"
    assert (
        f"warning: the binding's spec_version {SPEC_VERSION} is older than the vectors' spec_version 1.9.0"
        in result.err
    )


def test_same_binding_spec_does_not_warn(tmp_path: Path, run: Any) -> None:
    case = {
        "id": "lists",
        "steps": [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}],
    }
    result = run(vectors=write_vectors(tmp_path / "vectors", [case]))

    assert result.status == 0
    assert "warning" not in result.err


def test_case_of_newer_spec_skipped(tmp_path: Path, run: Any) -> None:
    steps = [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}]
    cases = [
        {"id": "old", "since": "1.0.0", "steps": steps},
        {"id": "new", "since": "1.9.0", "steps": steps},
        {"id": "next-major", "since": "2.0.0", "steps": steps},
    ]
    result = run(vectors=write_vectors(tmp_path / "vectors", cases, vector_format="1.4"))

    assert result.line("old") == "PASS old"
    assert result.line("new") == f"SKIP new: needs spec 1.9.0, and the binding implements {SPEC_VERSION}"
    assert result.line("next-major") == "PASS next-major"
    assert result.lines[-1] == "2 passed, 0 failed, 1 skipped"


@pytest.mark.parametrize("since", ["1.1", "v1.1.0", 1], ids=["short", "prefix", "number"])
def test_case_since_shape_checked(tmp_path: Path, since: Any) -> None:
    case = {"id": "bad-since", "since": since, "steps": []}
    vectors = write_vectors(tmp_path / "vectors", [case], vector_format="1.4")

    with pytest.raises(conformance.VectorError, match="since must be a spec version"):
        conformance.load_vectors(vectors)


def test_vectors_from_environment(run: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv(conformance.VECTORS_VARIABLE, str(SAMPLES))

    assert conformance.find_vectors(None) == SAMPLES
    assert conformance.main(["--select", "sample-claim-*"]) == 0


def test_vectors_default_to_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(conformance.VECTORS_VARIABLE, raising=False)

    assert conformance.find_vectors(None) == TESTS.parents[1] / "conformance" / "vectors"


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("sqlite", "--engine must be memory, memory://, redis or redis://HOST:PORT/OFFSET"),
        ("redis://127.0.0.1/0", "needs a host, a port and an offset"),
        ("redis://127.0.0.1:6400", "needs a host, a port and an offset"),
        ("redis://user:secret@127.0.0.1:6400/0", "takes no user, password or options"),
    ],
)
def test_engine_option_errors(run: Any, engine: str, message: str) -> None:
    result = run("--engine", engine)

    assert result.status == 2
    assert message in result.err


def test_engine_error_hides_password(run: Any) -> None:
    result = run("--engine", "redis://:s3cret-pw@127.0.0.1:6400/4")

    assert result.status == 2
    assert "takes no user, password or options" in result.err
    assert "s3cret-pw" not in result.err


def test_redis_url_refuses_databases_with_keys(clean_redis: RedisServer, run: Any) -> None:
    clean_redis.client(OFFSET + 2).set("someone-elses-key", b"kept")
    result = run("--engine", clean_redis.url(OFFSET))

    assert result.status == 2
    assert f"database {OFFSET + 2} of the Redis server" in result.err
    assert clean_redis.client(OFFSET + 2).get("someone-elses-key") == b"kept"


def test_redis_url_empties_only_its_databases(clean_redis: RedisServer, run: Any) -> None:
    clean_redis.client(OFFSET - 1).set("below", b"kept")
    clean_redis.client(OFFSET + 4).set("above", b"kept")
    result = run("--engine", clean_redis.url(OFFSET))

    assert result.line(REDIS_ONLY) == f"PASS {REDIS_ONLY}"
    assert result.line("sample-long-clock").startswith("SKIP sample-long-clock: needs 11 s of real time")
    assert result.lines[-1] == "8 passed, 1 failed, 1 skipped"
    assert clean_redis.client(OFFSET - 1).get("below") == b"kept"
    assert clean_redis.client(OFFSET + 4).get("above") == b"kept"
    for db in range(OFFSET, OFFSET + 4):
        assert clean_redis.client(db).dbsize() == 0


def test_redis_url_missing_databases(clean_redis: RedisServer, run: Any) -> None:
    result = run("--engine", clean_redis.url(14))

    assert result.status == 2
    assert "could not read database 16" in result.err


# server_config

LIMIT = "proto-max-bulk-len"
ONE_MIB = 1024 * 1024


def over_limit_case(case_id: str, expect: dict[str, Any]) -> dict[str, Any]:
    """Return a case that lowers the limit to 1 MiB and stores 1 MiB and 1 byte of contents."""
    contents = {"$bytes_pattern": {"base64": "eA==", "length": ONE_MIB + 1}}
    return {
        "id": case_id,
        "server_config": {LIMIT: str(ONE_MIB)},
        "steps": [
            {"call": "store_message", "args": {"meta": {}, "contents": contents}, "expect": expect},
        ],
    }


@pytest.mark.parametrize("target", ["in-process", "adapter"])
def test_server_config_applied_and_restored(
    tmp_path: Path, clean_redis: RedisServer, run: Any, target: str
) -> None:
    before = clean_redis.client().config_get(LIMIT)[LIMIT]
    cases = [
        over_limit_case("rejected-over-limit", {"error": "invalid_argument"}),
        over_limit_case("fails-on-purpose", {"match": "any"}),
    ]
    vectors = write_vectors(tmp_path / "vectors", cases)
    adapter = ["--adapter", ADAPTER] if target == "adapter" else []
    result = run("--engine", clean_redis.url(OFFSET), *adapter, vectors=vectors)

    # The first case passes only with the lowered limit, because Redis's default is 512 MiB.
    assert result.line("rejected-over-limit") == "PASS rejected-over-limit"
    assert result.line("fails-on-purpose").startswith(
        "FAIL fails-on-purpose: step 1 store_message: expected any value, got error invalid_argument"
    )
    assert result.status == 1
    assert int(before) > ONE_MIB
    assert clean_redis.client().config_get(LIMIT)[LIMIT] == before


@pytest.mark.parametrize(
    ("server_config", "reason"),
    [
        ({"no-such-setting": "1"}, "has no setting no-such-setting"),
        ({LIMIT: "1000"}, f"rejected CONFIG SET {LIMIT} 1000"),
    ],
)
def test_server_config_rejected_skips(
    tmp_path: Path, clean_redis: RedisServer, run: Any, server_config: dict[str, str], reason: str
) -> None:
    before = clean_redis.client().config_get(LIMIT)[LIMIT]
    case = {
        "id": "rejected-setting",
        "server_config": server_config,
        "steps": [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}],
    }
    vectors = write_vectors(tmp_path / "vectors", [case])
    result = run("--engine", clean_redis.url(OFFSET), vectors=vectors)
    line = result.line("rejected-setting")

    assert result.status == 0
    assert line.startswith("SKIP rejected-setting: needs server_config, which the runner could not apply: ")
    assert reason in line
    assert clean_redis.client().config_get(LIMIT)[LIMIT] == before


def test_server_config_skipped_on_memory(tmp_path: Path, run: Any) -> None:
    vectors = write_vectors(
        tmp_path / "vectors", [over_limit_case("redis-only", {"error": "invalid_argument"})]
    )
    result = run(vectors=vectors)

    assert result.line("redis-only") == "SKIP redis-only: needs engine:redis"


@pytest.mark.parametrize(
    "server_config",
    [{}, {LIMIT: 1048576}, {"proto-max-*": "1048576"}, [LIMIT, "1048576"]],
    ids=["empty", "number", "pattern", "list"],
)
def test_server_config_shape_checked(tmp_path: Path, server_config: Any) -> None:
    case = {"id": "bad-config", "server_config": server_config, "steps": []}
    vectors = write_vectors(tmp_path / "vectors", [case])

    with pytest.raises(conformance.VectorError, match="server_config must be a non-empty object"):
        conformance.load_vectors(vectors)


def test_binding_without_engine_is_usage_error(tmp_path: Path, run: Any) -> None:
    adapter = tmp_path / "memory_only.py"
    adapter.write_text(
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    request = json.loads(line)\n"
        "    info = {'name': 'x', 'language': 'y', 'version': '0', 'spec_version': '1.0.0',\n"
        "            'capabilities': ['engine:memory']}\n"
        "    print(json.dumps({'seq': request['seq'], 'result': info if request['op'] == 'hello' else None}),"
        " flush=True)\n"
    )
    result = run("--engine", "redis", "--adapter", f"{shlex.quote(sys.executable)} {adapter}")

    assert result.status == 2
    assert "lacks the capability engine:redis" in result.err


VECTORS = TESTS.parents[1] / "conformance" / "vectors"
UNREACHABLE = "storage-connect-unreachable"


def test_lazy_connect_passes_unreachable(clean_redis: RedisServer, run: Any) -> None:
    adapter = f"{ADAPTER} --factory broken_engines:lazy_connect"
    result = run(
        "--engine", clean_redis.url(OFFSET), "--adapter", adapter, "--select", UNREACHABLE, vectors=VECTORS
    )

    assert result.line(UNREACHABLE) == f"PASS {UNREACHABLE}"
    assert result.status == 0


def test_unreachable_needs_error_from_first_call(clean_redis: RedisServer, run: Any) -> None:
    adapter = f"{ADAPTER} --factory broken_engines:fake_connect"
    result = run(
        "--engine", clean_redis.url(OFFSET), "--adapter", adapter, "--select", UNREACHABLE, vectors=VECTORS
    )

    assert result.line(UNREACHABLE) == (
        f"FAIL {UNREACHABLE}: step 1 connect_unreachable: expected error storage_unavailable, got []"
        " (from get_all_messages, after connect succeeded)"
    )


def test_cli_hook_help(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["conformance", "--help"])

    assert status == 0
    assert "--adapter COMMAND" in capsys.readouterr().out


# Tags, the wire form and replies


def test_resolve_bytes_pattern() -> None:
    value = _values.resolve({"$bytes_pattern": {"base64": "YWJj", "length": 7}}, {})

    assert value == b"abcabca"


def test_resolve_text_bytes_keeps_invalid_utf8() -> None:
    value = _values.resolve({"$text_bytes": "Y2Fm6Q=="}, {})

    assert value == "caf\udce9"
    assert _values.text_to_bytes(value) == b"caf\xe9"


def test_resolve_sorted_by_utf8_bytes() -> None:
    value = _values.resolve({"$sorted": ["b", {"$var": "x"}, "\u00e9", "B"]}, {"x": "a"})

    assert value == ["B", "a", "b", "\u00e9"]


def test_resolve_concat_and_repeat() -> None:
    value = _values.resolve({"$concat": [["a"], [{"$text_repeat": {"text": "xy", "count": 3}}], []]}, {})

    assert value == ["a", "xyxyxy"]


def test_resolve_floats() -> None:
    value = _values.resolve([{"$float": "inf"}, {"$float": "-inf"}, {"$float": "nan"}], {})

    assert value[:2] == [math.inf, -math.inf]
    assert math.isnan(value[2])


def test_resolve_unbound_variable() -> None:
    with pytest.raises(VectorValueError, match="variable 'm9' is not bound"):
        _values.resolve({"args": [{"$var": "m9"}]}, {})


def test_resolve_unknown_tag() -> None:
    with pytest.raises(VectorValueError, match=r"unknown tag \$nope"):
        _values.resolve({"$nope": 1}, {})


def test_wire_round_trip() -> None:
    value = {"contents": b"\x00\xff", "text": "caf\udce9", "plain": "café", "n": math.inf, "list": (1, None)}
    wire = _values.to_wire(value)

    assert wire == {
        "contents": {"$bytes": "AP8="},
        "text": {"$text_bytes": "Y2Fm6Q=="},
        "plain": "café",
        "n": {"$float": "inf"},
        "list": [1, None],
    }
    assert _values.from_wire(wire) == {**value, "list": [1, None]}


def test_wire_rejects_tags_resolved_by_runner() -> None:
    with pytest.raises(WireError, match=r"\$var is not allowed on the wire"):
        _values.from_wire({"$var": "m1"})


def test_wire_rejects_invalid_utf8_key() -> None:
    with pytest.raises(WireError, match="cannot be a JSON object key"):
        _values.to_wire({"caf\udce9": "x"})


def test_wire_object_escape_round_trip() -> None:
    meta = {"$bytes": "QQ==", "plain": "x"}
    wire = _values.to_wire({"meta": meta, "one": {"$float": "nan"}})

    assert wire == {"meta": {"$object": meta}, "one": {"$object": {"$float": "nan"}}}
    assert _values.from_wire(wire) == {"meta": meta, "one": {"$float": "nan"}}


def test_wire_rejects_unescaped_dollar_key() -> None:
    with pytest.raises(WireError, match=r"must be sent as \{\"\$object\""):
        _values.from_wire({"$bytes": "QQ==", "plain": "x"})


def test_resolve_object_keeps_keys_and_resolves_values() -> None:
    value = _values.resolve({"$object": {"$var": {"$var": "m1"}}}, {"m1": "id-1"})

    assert value == {"$var": "id-1"}


@pytest.mark.parametrize("adapter", [False, True], ids=["in-process", "adapter"])
def test_dollar_key_meta_round_trips(tmp_path: Path, run: Any, adapter: bool) -> None:
    message = {"message_id": {"$var": "m1"}}
    meta = {"$object": {"$bytes": "QQ=="}}
    case = {
        "id": "dollar-meta",
        "steps": [
            {"call": "claim_message_id", "bind": "m1", "expect": {"match": "any"}},
            {"call": "set_message_meta", "args": {**message, "meta": meta}, "expect": {"value": None}},
            {"call": "get_message_meta", "args": message, "expect": {"value": meta}},
        ],
    }
    options = ["--adapter", ADAPTER] if adapter else []
    result = run(*options, vectors=write_vectors(tmp_path / "vectors", [case]))

    assert result.line("dollar-meta") == "PASS dollar-meta"


def test_resolve_var_path() -> None:
    variables = {"p1": {"cursor": "c1", "message_ids": ["a", "b"]}}

    assert _values.resolve({"$var": "p1.cursor"}, variables) == "c1"
    assert _values.resolve({"$var": "p1.message_ids.1"}, variables) == "b"


@pytest.mark.parametrize("path", ["p1.message_ids.2", "p1.size", "p1.cursor.0", "p1.message_ids.-1"])
def test_resolve_var_path_missing(path: str) -> None:
    variables = {"p1": {"cursor": "c1", "message_ids": ["a", "b"]}}

    with pytest.raises(VectorValueError, match=f"\\$var {path}: the bound value has no member or element"):
        _values.resolve({"$var": path}, variables)


def test_resolve_sorted_of_variable() -> None:
    value = _values.resolve({"$sorted": {"$var": "ids"}}, {"ids": ["c", "a", "b"]})

    assert value == ["a", "b", "c"]


def test_resolve_repeat() -> None:
    value = _values.resolve({"$repeat": {"value": {"id": {"$var": "m1"}}, "count": 3}}, {"m1": "x"})

    assert value == [{"id": "x"}] * 3


def test_resolve_entries_with_variable_keys() -> None:
    value = _values.resolve(
        {"$entries": [[{"$var": "m1"}, {"n": 1}], ["plain", {"$bytes": "eA=="}]]}, {"m1": "id-1"}
    )

    assert value == {"id-1": {"n": 1}, "plain": b"x"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([["a", 1], ["a", 2]], "has the key 'a' twice"),
        ([[1, 2]], "keys must be text"),
        ([["a"]], r"must hold \[key, value\] pairs"),
        ({"a": 1}, "must hold a list"),
    ],
)
def test_resolve_entries_rejects_bad_pairs(body: Any, message: str) -> None:
    with pytest.raises(VectorValueError, match=message):
        _values.resolve({"$entries": body}, {})


def test_same_tells_true_from_one() -> None:
    assert not _values.same(True, 1)
    assert not _values.same("a", b"a")
    assert _values.same(1, 1.0)
    assert _values.same([math.nan], [math.nan])
    assert _values.same({"a": [1, "b"]}, {"a": [1, "b"]})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"seq": 1, "result": null}', "does not end in a newline"),
        (b"[1]\n", "not a JSON object"),
        (b'{"seq": 2, "result": null}\n', "seq is 2, expected 1"),
        (b'{"seq": 1}\n', "exactly one of result and error"),
        (b'{"seq": 1, "result": 1, "error": {"kind": "x"}}\n', "exactly one of result and error"),
        (b'{"seq": 1, "error": "boom"}\n', "error must be an object"),
        (b'{"seq": 1, "result": NaN}\n', "NaN is not valid JSON"),
        (b'{"seq": 1, "result": {"$var": "x"}}\n', "not allowed on the wire"),
        (b'{"seq": 1, "result": "\xff"}\n', "not UTF-8"),
    ],
)
def test_reply_garbage(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _adapter_client._parse_reply(line, {1})


def test_reply_error_outcome() -> None:
    line = b'{"seq": 1, "error": {"kind": "message_not_found", "message": "m"}}\n'
    seq, outcome = _adapter_client._parse_reply(line, {1})

    assert seq == 1
    assert (outcome.error, outcome.message) == ("message_not_found", "m")


def test_reply_unknown_error_kind_rejected() -> None:
    line = b'{"seq": 1, "error": {"kind": "oops", "message": "m"}}\n'

    with pytest.raises(ValueError, match="error kind 'oops' is none of invalid_argument,"):
        _adapter_client._parse_reply(line, {1})


# Results of spec 1.2 and the pages step


@pytest.mark.parametrize("adapter", [False, True], ids=["in-process", "adapter"])
def test_message_and_page_json_forms(adapter: bool) -> None:
    target = conformance.AdapterTarget(ADAPTER) if adapter else conformance.InProcessTarget()
    target.start()
    try:
        engine = target.open_engine({"engine": "memory", "clock": None}).value["engine"]
        session = target.connect(engine).value["session"]
        new = [{"meta": {"$a": "1"}, "contents": b"x", "retry": 5}, {"meta": {}, "contents": b""}]
        ids = target.call(session, "store_messages", {"messages": new}).value
        message = target.call(session, "get_message", {"message_id": ids[0]}).value
        messages = target.call(session, "get_messages", {"message_ids": [*ids, "not-stored"]}).value
        page = target.call(session, "get_deferred_messages_page", {"count": 10}).value
        checkout = target.call(session, "checkout_message", {"message_id": ids[1], "length": 60}).value
    finally:
        target.close()

    assert message == {"meta": {"$a": "1"}, "contents": b"x"}
    assert messages == {ids[0]: message, ids[1]: {"meta": {}, "contents": b""}}
    assert page == {"message_ids": [ids[0]], "cursor": None}
    assert checkout == {"meta": {}, "contents": b""}


def forms_case() -> dict[str, Any]:
    """Return a case that uses every form that vector format 1.3 added."""
    new = {"meta": {"n": "1"}, "contents": {"$bytes": "eA=="}, "retry": 10}
    every_id = [{"$var": "ids.0"}, {"$var": "ids.1"}, {"$var": "ids.2"}]
    return {
        "id": "forms",
        "steps": [
            {
                "call": "store_messages",
                "args": {"messages": {"$repeat": {"value": new, "count": 3}}},
                "bind": "ids",
            },
            {
                "call": "get_messages",
                "args": {"message_ids": [{"$var": "ids.2"}]},
                "expect": {
                    "value": {
                        "$entries": [[{"$var": "ids.2"}, {"meta": {"n": "1"}, "contents": new["contents"]}]]
                    }
                },
            },
            {
                "call": "get_deferred_messages_page",
                "args": {"count": 2},
                "bind": "p1",
                "expect": {
                    "match": "fields",
                    "value": {
                        "message_ids": {"match": "any"},
                        "cursor": {"value": "[\\s\\S]+", "match": "pattern"},
                    },
                },
            },
            {
                "call": "get_deferred_messages_page",
                "args": {"count": 2, "cursor": {"$var": "p1.cursor"}},
                "expect": {
                    "match": "fields",
                    "value": {"message_ids": {"match": "any"}, "cursor": {"value": None}},
                },
            },
            {
                "pages": "get_deferred_messages_page",
                "args": {"count": 1},
                "expect": {"value": {"$sorted": {"$var": "ids"}}, "match": "ordered"},
            },
            {
                "pages": "get_all_messages_page",
                "args": {"count": 1},
                "expect": {"value": every_id, "match": "unordered"},
            },
        ],
    }


@pytest.mark.parametrize("adapter", [False, True], ids=["in-process", "adapter"])
def test_forms_of_format_1_3_pass(tmp_path: Path, run: Any, adapter: bool) -> None:
    options = ["--adapter", ADAPTER] if adapter else []
    result = run(*options, vectors=write_vectors(tmp_path / "vectors", [forms_case()]))

    assert result.line("forms") == "PASS forms"


def test_pages_step_failure_line(tmp_path: Path, run: Any) -> None:
    case = {
        "id": "pages-missing",
        "steps": [
            {"call": "claim_message_id", "bind": "m1", "expect": {"match": "any"}},
            {"call": "claim_message_id", "bind": "m2", "expect": {"match": "any"}},
            {"call": "delete_message", "args": {"message_id": {"$var": "m2"}}, "expect": {"value": None}},
            {
                "pages": "get_all_messages_page",
                "args": {"count": 1},
                "expect": {"value": [{"$var": "m1"}, {"$var": "m2"}], "match": "unordered"},
            },
        ],
    }
    result = run("--json", vectors=write_vectors(tmp_path / "vectors", [case]))
    report = result.json()["cases"][0]

    assert report["where"] == "step 4 pages get_all_messages_page"
    assert report["reason"].startswith(
        "expected the 2 ids in any order, got 1 id from 1 page, 1 missing, such as"
    )
    assert report["got"]["pages"] == 1
    assert report["got"]["unexpected"] == []
    assert len(report["got"]["missing"]) == 1


def page(message_ids: list[str], cursor: str | None) -> _engines.Outcome:
    return _engines.Outcome(value={"message_ids": message_ids, "cursor": cursor})


def page_source(
    *outcomes: _engines.Outcome,
) -> tuple[Callable[[dict[str, Any]], _engines.Outcome], list[Any]]:
    """Return a page call that returns ``outcomes`` in turn, and the list of the cursors it was given."""
    cursors: list[Any] = []
    replies = iter(outcomes)

    def call(args: dict[str, Any]) -> _engines.Outcome:
        cursors.append(args["cursor"])
        return next(replies)

    return call, cursors


def test_pages_follow_cursors_to_last_page() -> None:
    call, cursors = page_source(page(["a", "b"], "c1"), page([], "c2"), page(["c"], None))

    listing = _pages.follow_pages(call, {"count": 2})

    assert listing == _pages.Listing(["a", "b", "c"], 3)
    assert cursors == [None, "c1", "c2"]


def test_pages_repeated_cursor_fails() -> None:
    call, _ = page_source(page(["a"], "c1"), page(["b"], "c2"), page(["c"], "c1"))

    with pytest.raises(conformance.StepFailure, match='page 3 returned the cursor "c1" of page 1 again'):
        _pages.follow_pages(call, {})


def test_pages_without_last_page_fail() -> None:
    call, cursors = page_source(*(page([], f"c{number}") for number in range(10)))

    with pytest.raises(conformance.StepFailure, match="no last page after 5 pages"):
        _pages.follow_pages(call, {}, max_pages=5)
    assert len(cursors) == 5


def test_pages_error_fails() -> None:
    call, _ = page_source(page(["a"], "c1"), _engines.Outcome.failure("invalid_argument", "bad cursor"))

    with pytest.raises(conformance.StepFailure) as raised:
        _pages.follow_pages(call, {})
    assert raised.value.reason == "page 2: expected a page, got error invalid_argument: bad cursor"


@pytest.mark.parametrize(
    "value",
    [
        ["a"],
        {"message_ids": "a", "cursor": None},
        {"message_ids": [1], "cursor": None},
        {"message_ids": [], "cursor": 7},
        {"message_ids": [], "cursor": None, "more": True},
    ],
)
def test_pages_shape_checked(value: Any) -> None:
    call, _ = page_source(_engines.Outcome(value=value))

    with pytest.raises(conformance.StepFailure, match="page 1: expected"):
        _pages.follow_pages(call, {})


def test_pages_cursor_argument_rejected() -> None:
    call, cursors = page_source()

    with pytest.raises(conformance.StepFailure, match="args must not have cursor"):
        _pages.follow_pages(call, {"cursor": None})
    assert cursors == []


def check_listing(match: str, expected: list[str], got: list[str]) -> None:
    _pages.check_listing({"value": expected, "match": match}, _pages.Listing(got, 2), {})


def test_listing_ordered_needs_exact_order() -> None:
    check_listing("ordered", ["a", "b", "c"], ["a", "b", "c"])

    with pytest.raises(conformance.StepFailure) as raised:
        check_listing("ordered", ["a", "b", "c"], ["a", "c", "b"])
    assert raised.value.reason == (
        'expected 3 ids in order, got 3 ids from 2 pages, first difference at index 1: expected "b", got "c"'
    )


def test_listing_ordered_rejects_repeat() -> None:
    with pytest.raises(conformance.StepFailure) as raised:
        check_listing("ordered", ["a", "b"], ["a", "b", "b"])
    assert raised.value.reason.endswith('first difference at index 2: expected the end, got "b"')
    assert raised.value.got["first_difference"] == 2


def test_listing_unordered_allows_repeats() -> None:
    check_listing("unordered", ["a", "b"], ["b", "a", "a"])


def test_listing_unordered_names_missing_and_unexpected() -> None:
    with pytest.raises(conformance.StepFailure) as raised:
        check_listing("unordered", ["a", "b"], ["a", "c", "c"])
    assert raised.value.reason == (
        'expected the 2 ids in any order, got 3 ids from 2 pages, 1 missing, such as "b"'
        ' and 1 unexpected, such as "c"'
    )
    assert raised.value.got["missing"] == ["b"]
    assert raised.value.got["unexpected"] == ["c"]


@pytest.mark.parametrize("expect", [{"value": [], "match": "exact"}, {"error": "session_closed"}, None])
def test_listing_expect_checked(expect: Any) -> None:
    with pytest.raises(conformance.StepFailure, match="invalid pages step"):
        _pages.check_listing(expect, _pages.Listing([], 1), {})


PAGE_FIELDS = {
    "match": "fields",
    "value": {
        "message_ids": {"value": ["b", "a"], "match": "unordered"},
        "cursor": {"value": None, "match": "exact"},
    },
}


def test_fields_match_compares_each_member() -> None:
    _expect.check_expect(PAGE_FIELDS, page(["a", "b"], None), {})


def test_fields_match_names_failing_member() -> None:
    with pytest.raises(conformance.StepFailure) as raised:
        _expect.check_expect(PAGE_FIELDS, page(["a", "b"], "c1"), {})

    assert raised.value.reason == 'member cursor: expected null, got "c1"'
    assert raised.value.expected == {"member": "cursor", "expected": {"value": None, "match": "exact"}}


@pytest.mark.parametrize(
    "outcome",
    [
        _engines.Outcome(value={"message_ids": ["a", "b"], "cursor": None, "extra": 1}),
        _engines.Outcome(value=["a", "b"]),
        _engines.Outcome.failure("session_closed", "closed"),
    ],
)
def test_fields_match_needs_same_members(outcome: _engines.Outcome) -> None:
    with pytest.raises(
        conformance.StepFailure, match="expected an object with the members cursor, message_ids"
    ):
        _expect.check_expect(PAGE_FIELDS, outcome, {})


# Capabilities


def skip_reason(
    capabilities: list[str], engine: str, binding: set[str], steps: list[Any] | None = None
) -> Any:
    info = conformance.BindingInfo("x", "y", "0", "1.0.0", frozenset(binding))
    runner = conformance.Runner(
        conformance.InProcessTarget(), info, conformance.EngineChoice(engine), object()
    )  # type: ignore[arg-type]
    case = conformance.Case("c", "g", "", "", "required", tuple(capabilities), tuple(steps or []))
    return runner.skip_reason(case)


def test_skip_clock_without_binding_clock() -> None:
    binding = {"engine:memory", "engine:redis"}

    assert skip_reason(["clock"], "memory", binding) == "needs clock, which the binding lacks"
    assert skip_reason(["clock"], "redis", binding) is None


def test_skip_implied_by_steps() -> None:
    binding = {"clock", "engine:memory", "engine:redis"}

    assert skip_reason([], "memory", binding, [{"raw": []}]) == "needs engine:redis"
    assert skip_reason([], "redis", binding, [{"advance": 1}]) is None
    assert skip_reason(["engine:memory"], "redis", binding) == "needs engine:memory"


def test_skip_unknown_capability() -> None:
    reason = skip_reason(["teleport"], "memory", {"clock"})

    assert reason == "needs teleport, which this runner does not know"


def test_real_time_provided_by_runner() -> None:
    assert skip_reason(["real-time", "clock"], "memory", {"clock", "engine:memory"}) is None
