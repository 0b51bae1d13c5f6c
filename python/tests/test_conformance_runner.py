"""The conformance runner on small sample vectors: output, options, faulty adapters and tags.

The samples in conformance_samples/basic exercise every step and tag;
one of them, sample-wrong-on-purpose, fails on every correct binding.
Most tests call :func:`slimta.storage.conformance.main` in this process
and read its output from capsys; the adapters run as subprocesses.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import OFFSET

from slimta.storage import cli, conformance
from slimta.storage.conformance import _adapter_client, _values
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
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    case = {
        "id": "expects-a-value",
        "steps": [{"call": "get_message_meta", "args": {"message_id": "nope"}, "expect": {"value": {}}}],
    }
    document = {"vector_format": "1.0", "spec_version": "1.0.0", "group": "g", "cases": [case]}
    (vectors / "g.json").write_text(json.dumps(document))

    report = run("--json", vectors=vectors).json()
    got = report["cases"][0]["got"]

    assert got["error"] == "message_not_found"
    assert "nope" in got["message"]


def test_invalid_steps_fail_their_case(tmp_path: Path, run: Any) -> None:
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    cases = [
        {"id": "two-actions", "steps": [{"call": "get_all_messages", "advance": 1}]},
        {"id": "unbound", "steps": [{"call": "get_message_meta", "args": {"message_id": {"$var": "m1"}}}]},
        {
            "id": "fine",
            "steps": [{"call": "get_all_messages", "expect": {"value": [], "match": "unordered"}}],
        },
    ]
    document = {"vector_format": "1.0", "spec_version": "1.0.0", "group": "g", "cases": cases}
    (vectors / "g.json").write_text(json.dumps(document))
    result = run(vectors=vectors)

    assert result.line("two-actions").startswith("FAIL two-actions: step 1 (invalid): invalid step: it needs")
    assert result.line("unbound") == (
        "FAIL unbound: step 1 get_message_meta: invalid vector: variable 'm1' is not bound:"
        " no earlier step has bind: m1"
    )
    assert result.line("fine") == "PASS fine"


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


# Vectors and engines


def test_unknown_major_format_rejected(tmp_path: Path, run: Any) -> None:
    document = json.loads((SAMPLES / "samples.json").read_text())
    document["vector_format"] = "2.0"
    (tmp_path / "samples.json").write_text(json.dumps(document))
    result = run(vectors=tmp_path)

    assert result.status == 2
    assert "vector_format 2.0 is not supported" in result.err


def test_newer_minor_format_accepted(tmp_path: Path, run: Any) -> None:
    document = json.loads((SAMPLES / "samples.json").read_text())
    document["vector_format"] = "1.7"
    (tmp_path / "samples.json").write_text(json.dumps(document))
    result = run("--select", "sample-claim-*", vectors=tmp_path)

    assert result.status == 0


def test_index_file_is_not_a_group(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "samples.json", tmp_path)
    shutil.copy(SAMPLES / "index.json", tmp_path)

    loaded = conformance.load_vectors(tmp_path)

    assert {case.group for case in loaded.cases} == {"samples"}


def test_repeated_case_id_rejected(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "samples.json", tmp_path / "a.json")
    shutil.copy(SAMPLES / "samples.json", tmp_path / "b.json")

    with pytest.raises(conformance.VectorError, match="appears twice"):
        conformance.load_vectors(tmp_path)


def test_missing_vector_folder(tmp_path: Path, run: Any) -> None:
    result = run(vectors=tmp_path / "missing")

    assert result.status == 2
    assert "does not exist" in result.err


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
        ("sqlite", "--engine must be memory, redis or redis://HOST:PORT/OFFSET"),
        ("redis://127.0.0.1/0", "needs a host, a port and an offset"),
        ("redis://127.0.0.1:6400", "needs a host, a port and an offset"),
        ("redis://user:secret@127.0.0.1:6400/0", "takes no user, password or options"),
    ],
)
def test_engine_option_errors(run: Any, engine: str, message: str) -> None:
    result = run("--engine", engine)

    assert result.status == 2
    assert message in result.err


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


def write_cases(directory: Path, cases: list[dict[str, Any]]) -> Path:
    directory.mkdir()
    document = {"vector_format": "1.1", "spec_version": "1.1.0", "group": "g", "cases": cases}
    (directory / "g.json").write_text(json.dumps(document))
    return directory


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
    vectors = write_cases(tmp_path / "vectors", cases)
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
    vectors = write_cases(tmp_path / "vectors", [case])
    result = run("--engine", clean_redis.url(OFFSET), vectors=vectors)
    line = result.line("rejected-setting")

    assert result.status == 0
    assert line.startswith("SKIP rejected-setting: needs server_config, which the runner could not apply: ")
    assert reason in line
    assert clean_redis.client().config_get(LIMIT)[LIMIT] == before


def test_server_config_skipped_on_memory(tmp_path: Path, run: Any) -> None:
    vectors = write_cases(
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
    vectors = write_cases(tmp_path / "vectors", [case])

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
    seq, outcome = _adapter_client._parse_reply(b'{"seq": 1, "error": {"kind": "k", "message": "m"}}\n', {1})

    assert seq == 1
    assert (outcome.error, outcome.message) == ("k", "m")


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
