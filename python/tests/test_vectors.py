"""The vector generator, scripts/gen_vectors.py, and the vectors it wrote.

Tests that change the spec or the scenarios work on copies of spec/ and
conformance/ in a temporary folder, and point the generator there with
--root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from jsonschema import Draft202012Validator

GENERATOR = ROOT / "scripts" / "gen_vectors.py"
VECTORS = ROOT / "conformance" / "vectors"
SCHEMA = ROOT / "conformance" / "vector.schema.json"

Edit = Callable[[dict[str, Any]], None]


def run_generator(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def copy_tree(target: Path) -> Path:
    """Copy spec/ and conformance/, with the committed vectors, into ``target``."""
    shutil.copytree(ROOT / "spec", target / "spec")
    shutil.copytree(ROOT / "conformance", target / "conformance")
    return target


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return copy_tree(tmp_path)


def edit_yaml(path: Path, edit: Edit) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")


def edit_scenarios(tree: Path, edit: Edit) -> None:
    edit_yaml(tree / "spec" / "scenarios.yaml", edit)


def edit_spec(tree: Path, edit: Edit) -> None:
    edit_yaml(tree / "spec" / "storage.yaml", edit)


def scenario(document: dict[str, Any], case_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(item for item in document["scenarios"] if item["id"] == case_id)
    return found


@cache
def committed_files() -> list[Path]:
    return sorted(VECTORS.glob("*.json"))


# The committed vectors


def test_committed_vectors_in_sync() -> None:
    result = run_generator("--check")

    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


@pytest.mark.parametrize("path", committed_files(), ids=lambda path: path.name)
def test_vector_file_matches_schema(path: Path) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))

    errors = [error.message for error in validator.iter_errors(json.loads(path.read_bytes()))]

    assert errors == []


def test_schema_is_valid() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_index_lists_every_case() -> None:
    index = json.loads((VECTORS / "index.json").read_bytes())
    listed = {group: set(ids) for group, ids in index["groups"].items()}

    for path in committed_files():
        if path.name == "index.json":
            continue
        document = json.loads(path.read_bytes())
        assert path.stem in listed
        assert {case["id"] for case in document["cases"]} == listed[path.stem]


def test_committed_vectors_byte_form() -> None:
    # sort_keys, indent 2, ASCII only and a trailing newline, as the generator writes them.
    for path in committed_files():
        data = path.read_bytes()
        rendered = json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=True) + "\n"
        assert data == rendered.encode("ascii"), path.name


def test_defaults_are_written_out() -> None:
    document = json.loads((VECTORS / "claim.json").read_bytes())
    case = next(case for case in document["cases"] if case["id"] == "claim-registers-at-once")

    assert case["level"] == "required"
    assert case["steps"][0] == {
        "args": {},
        "bind": "m1",
        "call": "claim_message_id",
        "expect": {"match": "any"},
        "session": "s1",
    }
    assert case["steps"][1]["expect"]["match"] == "unordered"


def test_implied_capabilities_added() -> None:
    lock = {case["id"]: case for case in json.loads((VECTORS / "lock.json").read_bytes())["cases"]}
    storage = json.loads((VECTORS / "storage.json").read_bytes())["cases"]
    layout = json.loads((VECTORS / "layout.json").read_bytes())["cases"]
    contents = json.loads((VECTORS / "contents.json").read_bytes())["cases"]
    configured = [case for case in contents if "server_config" in case]

    assert lock["lock-expiry-frees-lock"]["capabilities"] == ["clock", "real-time"]
    assert lock["lock-second-call-loses"]["capabilities"] == []
    assert storage[0]["capabilities"] == ["engine:redis"]
    assert all("engine:redis" in case["capabilities"] for case in layout)
    assert configured
    assert all(case["capabilities"] == ["engine:redis"] for case in configured)


def cases_by_id() -> dict[str, dict[str, Any]]:
    found = {}
    for path in committed_files():
        if path.name != "index.json":
            found |= {case["id"]: case for case in json.loads(path.read_bytes())["cases"]}
    return found


def test_case_since_is_newest_version_used() -> None:
    cases = cases_by_id()

    # Rule and methods of 1.0, a method of 1.1, a method of 1.2.
    assert cases["claim-registers-at-once"]["since"] == "1.0.0"
    assert cases["contents-limit-store-rejected"]["since"] == "1.1.0"
    assert cases["unknown-id-checkout-message"]["since"] == "1.2.0"
    # A 1.0 method called with the owner parameter of 1.1.
    assert cases["owner-unlock-right-owner"]["since"] == "1.1.0"
    # A scenario's own since raises the version of its 1.1 rule.
    assert cases["contents-limit-meta-value-set"]["since"] == "1.2.0"


def test_invalid_cases_leave_out_newer_optional_params() -> None:
    lock = cases_by_id()["invalid-lock-message-message-id-empty"]

    call = next(step for step in lock["steps"] if step.get("call") == "lock_message")
    assert "owner" not in call["args"]
    assert lock["since"] == "1.0.0"


def test_expansion_ids() -> None:
    index = json.loads((VECTORS / "index.json").read_bytes())
    groups = index["groups"]

    assert "unknown-id-lock-message" in groups["unknown-id"]
    assert "unknown-id-delete-message" not in groups["unknown-id"]
    assert "unknown-id-unlock-message" not in groups["unknown-id"]
    assert "session-closed-close-twice" in groups["session"]
    assert "session-closed-close" not in groups["session"]
    assert "invalid-set-message-meta-key-value-number" in groups["invalid-argument"]
    assert "invalid-lock-message-length-over-one-year" in groups["invalid-argument"]


def test_expansion_ids_of_spec_1_2_methods() -> None:
    groups = json.loads((VECTORS / "index.json").read_bytes())["groups"]
    invalid = set(groups["invalid-argument"])

    assert {"unknown-id-get-message", "unknown-id-checkout-message", "unknown-id-defer-message"} <= set(
        groups["unknown-id"]
    )
    assert "unknown-id-get-messages" not in groups["unknown-id"]
    assert "session-closed-get-all-messages-page" in groups["session"]
    assert "invalid-get-messages-message-ids-too-many" in invalid
    assert "invalid-store-messages-messages-no-contents" in invalid
    assert "invalid-get-deferred-messages-page-cursor-garbage" in invalid
    assert "invalid-get-active-messages-page-count-over-maximum" in invalid
    assert not any(case_id.startswith("invalid-get-all-messages-page-cursor-null") for case_id in invalid)


def test_bad_batch_stores_none_of_its_messages() -> None:
    document = json.loads((VECTORS / "invalid-argument.json").read_bytes())
    case = next(
        case for case in document["cases"] if case["id"] == "invalid-store-messages-messages-bad-retry"
    )
    messages = case["steps"][4]["args"]["messages"]

    assert len(messages) == 2
    assert messages[0]["retry"] == 200
    assert messages[1]["retry"] == -1
    assert case["steps"][4]["expect"] == {"error": "invalid_argument"}
    assert case["steps"][7]["expect"]["value"] == [{"$var": "m1"}]


def test_pages_defaults_are_written_out() -> None:
    document = json.loads((VECTORS / "pages.json").read_bytes())
    case = next(case for case in document["cases"] if case["id"] == "paged-empty-listings")

    assert case["steps"][0] == {
        "args": {},
        "expect": {"match": "unordered", "value": []},
        "pages": "get_all_messages_page",
        "session": "s1",
    }


def test_fields_members_get_default_match() -> None:
    document = json.loads((VECTORS / "pages.json").read_bytes())
    case = next(case for case in document["cases"] if case["id"] == "paged-one-page-each")
    fields = case["steps"][2]["expect"]["value"]

    assert case["steps"][2]["expect"]["match"] == "fields"
    assert fields["cursor"] == {"value": None, "match": "exact"}
    assert fields["message_ids"] == {"value": {"$var": "ids"}, "match": "unordered"}


def test_nullable_parameter_skips_null() -> None:
    # set_message_meta_key takes a null value, so null is no bad value for it.
    groups = json.loads((VECTORS / "index.json").read_bytes())["groups"]
    invalid = set(groups["invalid-argument"])

    assert "invalid-set-message-meta-key-message-id-null" in invalid
    assert not any(case_id.startswith("invalid-set-message-meta-key-value-null") for case_id in invalid)
    assert "invalid-get-deferred-messages-timestamp-nan" in invalid


# Regenerating


def test_generator_byte_stable(tree: Path) -> None:
    first = tree / "first"
    second = tree / "second"

    assert run_generator("--root", tree, "--out", first).returncode == 0
    assert run_generator("--root", tree, "--out", second, "--index", first / "index.json").returncode == 0

    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_write_matches_committed(tree: Path) -> None:
    out = tree / "conformance" / "vectors"
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    result = run_generator("--root", tree)

    assert result.returncode == 0, result.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_edited_scenario_fails_check(tree: Path) -> None:
    def reword(document: dict[str, Any]) -> None:
        scenario(document, "meta-replace-drops-old-keys")["description"] = "A new description."

    edit_scenarios(tree, reword)
    result = run_generator("--root", tree, "--check")

    assert result.returncode == 1
    assert "meta.json: differs" in result.stderr
    assert "scripts/gen_vectors.py" in result.stderr
    assert "claim.json" not in result.stderr


def add_stale_group(out: Path) -> Path:
    """List the group old-group in the index of ``out`` and write its file, as an earlier run would have."""
    index = json.loads((out / "index.json").read_bytes())
    index["groups"]["old-group"] = []
    (out / "index.json").write_text(json.dumps(index), encoding="utf-8")
    stale = out / "old-group.json"
    stale.write_text('{"group": "old-group", "cases": []}\n', encoding="utf-8")
    return stale


def test_check_reports_stale_file(tree: Path) -> None:
    add_stale_group(tree / "conformance" / "vectors")

    result = run_generator("--root", tree, "--check")

    assert result.returncode == 1
    assert "old-group.json: is no longer generated" in result.stderr


def test_check_reports_unlisted_vector_file(tree: Path) -> None:
    out = tree / "conformance" / "vectors"
    (out / "stray.json").write_text('{"group": "stray", "cases": []}\n', encoding="utf-8")
    (out / "package.json").write_text('{"name": "vectors"}\n', encoding="utf-8")

    result = run_generator("--root", tree, "--check")

    assert result.returncode == 1
    assert "stray.json: is a vector file that index.json does not list" in result.stderr
    assert "package.json" not in result.stderr


def test_write_removes_stale_file(tree: Path) -> None:
    stale = add_stale_group(tree / "conformance" / "vectors")

    result = run_generator("--root", tree)

    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert f"removed {stale}" in result.stdout


def test_write_keeps_files_it_does_not_own(tree: Path) -> None:
    out = tree / "conformance" / "vectors"
    package = out / "package.json"
    package.write_text('{"name": "vectors"}\n', encoding="utf-8")
    stray = out / "stray.json"
    stray.write_text('{"group": "stray", "cases": []}\n', encoding="utf-8")

    result = run_generator("--root", tree)

    assert result.returncode == 0, result.stderr
    assert package.exists()
    assert stray.exists()
    assert "removed" not in result.stdout
    assert f"left {stray}" in result.stderr


def test_failed_run_writes_nothing(tree: Path) -> None:
    out = tree / "conformance" / "vectors"
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def break_rule(document: dict[str, Any]) -> None:
        scenario(document, "claim-returns-uuid")["rule"] = "no-such-rule"

    edit_scenarios(tree, break_rule)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


# Id stability


def drop_case(document: dict[str, Any]) -> None:
    document["scenarios"].remove(scenario(document, "meta-key-remove-unset"))


def test_removed_case_needs_retiring(tree: Path) -> None:
    edit_scenarios(tree, drop_case)

    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "id meta-key-remove-unset: is in index.json but no case has it" in result.stderr


def test_retired_case_may_go(tree: Path) -> None:
    def retire(document: dict[str, Any]) -> None:
        drop_case(document)
        document["retired"].append("meta-key-remove-unset")

    edit_scenarios(tree, retire)
    result = run_generator("--root", tree)
    index = json.loads((tree / "conformance" / "vectors" / "index.json").read_bytes())

    assert result.returncode == 0, result.stderr
    assert index["retired"] == ["meta-key-remove-unset"]
    assert "meta-key-remove-unset" not in index["groups"]["meta"]


def test_retired_id_reused_fails(tree: Path) -> None:
    def retire_in_use(document: dict[str, Any]) -> None:
        document["retired"].append("meta-key-remove-unset")

    edit_scenarios(tree, retire_in_use)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "meta-key-remove-unset: is retired and must not be used again" in result.stderr


def test_committed_retired_id_reused_fails(tree: Path) -> None:
    # Dropping an id from retired does not make it free again.
    index_path = tree / "conformance" / "vectors" / "index.json"
    index = json.loads(index_path.read_bytes())
    index["retired"] = ["meta-key-remove-unset"]
    index_path.write_text(json.dumps(index), encoding="utf-8")

    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "meta-key-remove-unset: was retired in index.json and must not be used again" in result.stderr


def test_duplicate_id_fails(tree: Path) -> None:
    def duplicate(document: dict[str, Any]) -> None:
        document["scenarios"].append(dict(scenario(document, "claim-returns-uuid")))

    edit_scenarios(tree, duplicate)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "claim-returns-uuid: is used by more than one case" in result.stderr


# Coverage


def test_missing_rule_coverage_fails(tree: Path) -> None:
    def add_rule(document: dict[str, Any]) -> None:
        rule = {"id": "queue-fair", "since": "1.0.0", "statement": "Every message is delivered in time."}
        document["rules"].append(rule)

    edit_spec(tree, add_rule)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "coverage: no case checks the rule queue-fair" in result.stderr


def test_missing_method_coverage_fails(tree: Path) -> None:
    # The expansions cover a new method's errors, but not a call that succeeds.
    def add_method(document: dict[str, Any]) -> None:
        method = dict(next(item for item in document["methods"] if item["name"] == "get_all_messages"))
        method["name"] = "count_messages"
        document["methods"].append(method)

    edit_spec(tree, add_method)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "coverage: no case calls count_messages and expects a value" in result.stderr


def test_missing_error_coverage_fails(tree: Path) -> None:
    def add_error(document: dict[str, Any]) -> None:
        error = dict(document["errors"][0])
        error["kind"] = "queue_full"
        document["errors"].append(error)

    edit_spec(tree, add_error)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "coverage: no case expects the error kind queue_full" in result.stderr


def test_pages_step_covers_page_method(tree: Path) -> None:
    # Without the cases that call the page methods directly, only pages steps cover them.
    direct = ("paged-one-page-each", "paged-cursor-continues")

    def drop_direct_calls(document: dict[str, Any]) -> None:
        for case_id in direct:
            document["scenarios"].remove(scenario(document, case_id))
        document["retired"] += direct

    edit_scenarios(tree, drop_direct_calls)
    result = run_generator("--root", tree)

    assert result.returncode == 0, result.stderr


def test_page_method_without_pages_fails_coverage(tree: Path) -> None:
    def drop_active_pages(document: dict[str, Any]) -> None:
        for item in document["scenarios"]:
            item["steps"] = [
                step
                for step in item["steps"]
                if "get_active_messages_page" not in (step.get("pages"), step.get("call"))
            ]

    edit_scenarios(tree, drop_active_pages)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "coverage: no case calls get_active_messages_page and expects a value" in result.stderr


def test_missing_connect_coverage_fails(tree: Path) -> None:
    def drop_storage(document: dict[str, Any]) -> None:
        document["scenarios"].remove(scenario(document, "storage-connect-unreachable"))
        document["retired"].append("storage-connect-unreachable")
        del document["groups"]["storage"]

    edit_scenarios(tree, drop_storage)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "connect_unreachable step, which covers connect" in result.stderr
    assert "coverage: no case expects the error kind storage_unavailable" in result.stderr
    assert "coverage: no case checks the rule storage-fault" in result.stderr


# Scenario checks
#
# Each bad step or field below goes into its own scenario of one copy of
# the tree, and the generator runs once per table, so that one run shows
# every problem at once. A case that fails the first pass (step shapes
# and tags) hides the later passes of every case, so the two tables run
# apart.

Step = dict[str, Any]

# Hand-written scenarios that a bad step or field can go into: no timing
# and no capabilities, in groups that keep other cases.
TARGET_GROUPS = ("claim", "meta", "contents", "retry", "lock", "delete")

SHAPE_STEPS = [
    pytest.param(
        {"call": "get_all_messages", "advance": 1, "expect": {"value": []}},
        "step 2: must have exactly one action",
        id="two-actions",
    ),
    pytest.param({"wait": 1}, "step 2: must have exactly one action", id="no-action"),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": [], "error": "session_closed"}},
        "expect must have exactly one of value and error",
        id="value-and-error",
    ),
    pytest.param({"call": "get_all_messages"}, "expect is missing", id="no-expect"),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$byte": "AA=="}}},
        "unknown tag '$byte'",
        id="unknown-tag",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$var": "m1", "x": 1}}},
        "an object of several keys has a key that starts with $",
        id="mixed-tag",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": float("nan")}},
        "has a NaN or infinite number",
        id="literal-nan",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$object": ["$a"]}}},
        "$object must hold an object",
        id="object-not-mapping",
    ),
    pytest.param(
        {"pages": "get_all_messages_page", "expect": {"error": "session_closed"}},
        "expect of a pages step must be a value with the match ordered or unordered",
        id="pages-error",
    ),
    pytest.param(
        {"pages": "get_all_messages_page", "expect": {"value": [], "match": "exact"}},
        "expect of a pages step must be a value with the match ordered or unordered",
        id="pages-exact",
    ),
    pytest.param(
        {"call": "get_all_messages_page", "expect": {"match": "fields", "value": {"cursor": {"error": "x"}}}},
        "member 'cursor' of a fields match needs a value with a match, or a match of any",
        id="fields-error",
    ),
    pytest.param(
        {"call": "get_all_messages_page", "expect": {"match": "fields", "value": [1]}},
        "a match of fields needs an object that maps each member to an expect",
        id="fields-not-object",
    ),
]

SHAPE_FIELDS = [
    pytest.param({"group": "no-such-group"}, "group: unknown group 'no-such-group'", id="group"),
]

LATER_STEPS = [
    pytest.param(
        {"call": "frobnicate", "expect": {"value": None}}, "unknown method 'frobnicate'", id="method"
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"error": "queue_full"}},
        "unknown error kind 'queue_full'",
        id="error-kind",
    ),
    pytest.param(
        {"call": "get_message_meta", "args": {"id": "x", "message_id": "x"}, "expect": {"match": "any"}},
        "unknown parameter 'id' of get_message_meta",
        id="parameter",
    ),
    pytest.param(
        {"call": "get_message_meta", "expect": {"match": "any"}},
        "missing the parameter 'message_id'",
        id="missing-parameter",
    ),
    pytest.param(
        {"call": "get_message_meta", "args": {"message_id": {"$var": "later"}}, "expect": {"match": "any"}},
        "variable 'later' is used before a step binds it",
        id="unbound-variable",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$bytes": "not base64!"}}},
        "/expect/value/$bytes: 'not base64!' does not match",
        id="bad-base64",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$float": "-nan"}}},
        "'-nan' is not one of",
        id="bad-float",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": [], "match": "sorta"}},
        "'sorta' is not one of",
        id="bad-match",
    ),
    pytest.param(
        {"call": "get_all_messages", "session": "s9", "expect": {"value": []}},
        "session 's9' was never opened",
        id="unknown-session",
    ),
    pytest.param(
        {"call": "get_all_messages", "bind": "x", "expect": {"error": "session_closed"}},
        "bind needs a call that returns a value",
        id="bind-error",
    ),
    pytest.param(
        {"raw": [{"db": 4, "command": ["FLUSHALL"]}]},
        "/raw/0/db: 4 is greater than the maximum of 3",
        id="raw-db",
    ),
    pytest.param(
        {"connect_unreachable": True, "expect": {"value": [], "match": "unordered"}},
        "'error' is a required property",
        id="unreachable-value",
    ),
    pytest.param(
        {"connect_unreachable": True, "expect": {"error": "message_not_found"}},
        "expects the error 'message_not_found', which connect cannot raise",
        id="unreachable-kind",
    ),
    pytest.param(
        {
            "pages": "get_all_messages_page",
            "args": {"cursor": None},
            "expect": {"value": [], "match": "unordered"},
        },
        "args must not have cursor, because the runner passes each page's cursor",
        id="pages-cursor",
    ),
    pytest.param(
        {"pages": "get_all_messages", "expect": {"value": [], "match": "unordered"}},
        "get_all_messages is no page method",
        id="pages-not-page-method",
    ),
    pytest.param(
        {"pages": "get_deferred_messages_page", "expect": {"value": [], "match": "unordered"}},
        "match must be ordered, because the spec lists the ids of get_deferred_messages_page in an order",
        id="pages-deferred-unordered",
    ),
    pytest.param(
        {"pages": "get_all_messages_page", "expect": {"value": [], "match": "ordered"}},
        "match must be unordered, because the spec lists the ids of get_all_messages_page in no order",
        id="pages-all-ordered",
    ),
    pytest.param(
        {"pages": "frobnicate_page", "expect": {"value": [], "match": "unordered"}},
        "unknown method 'frobnicate_page'",
        id="pages-method",
    ),
    pytest.param(
        {"call": "get_all_messages", "expect": {"value": {"$var": "m1..x"}}},
        "'m1..x' does not match",
        id="var-path",
    ),
    pytest.param(
        {"call": "get_message", "args": {"message_id": {"$var": "later.0"}}, "expect": {"match": "any"}},
        "variable 'later.0' is used before a step binds it",
        id="unbound-var-path",
    ),
]

BAD_FIELDS = [
    pytest.param({"rule": "no-such-rule"}, "unknown rule 'no-such-rule'", id="rule"),
    pytest.param({"level": "nice-to-have"}, "'nice-to-have' is not one of", id="level"),
    pytest.param({"capabilities": ["gpu"]}, "'gpu' is not one of", id="capability"),
    pytest.param({"tolerance": 0.1}, "tolerance: is required with the real-time capability", id="tolerance"),
    pytest.param({"capabilities": ["real-time"]}, "tolerance: is required", id="real-time"),
    pytest.param(
        {"capabilities": ["engine:memory"], "layout": {"exhaustive": True, "keys": []}},
        "no engine can run it",
        id="engines",
    ),
    pytest.param({"owner": "me"}, "('owner' was unexpected)", id="field"),
    pytest.param(
        {"server_config": {"proto-max-bulk-len": 1048576}},
        "1048576 is not of type 'string'",
        id="server-config",
    ),
    pytest.param(
        {"capabilities": ["engine:memory"], "server_config": {"proto-max-bulk-len": "1048576"}},
        "no engine can run it",
        id="server-config-on-memory",
    ),
    pytest.param({"description": "No full stop"}, "'No full stop' does not match", id="description"),
    pytest.param(
        {"layout": {"exhaustive": True, "keys": [{"db": 0, "key": "k", "type": "list", "items": []}]}},
        "'list' is not one of",
        id="layout-type",
    ),
]


def target_ids(document: dict[str, Any]) -> list[str]:
    return [
        item["id"]
        for item in document["scenarios"]
        if item["group"] in TARGET_GROUPS and "capabilities" not in item and "layout" not in item
    ]


def break_scenarios(tree: Path, steps: list[Any], fields: list[Any]) -> dict[str, str]:
    """Add each bad step and field to its own scenario; return the scenario id of each param id."""
    targets: dict[str, str] = {}

    def edit(document: dict[str, Any]) -> None:
        free = iter(target_ids(document))
        for param in steps:
            targets[param.id] = case_id = next(free)
            scenario(document, case_id)["steps"][1:] = [param.values[0]]
        for param in fields:
            targets[param.id] = case_id = next(free)
            scenario(document, case_id).update(param.values[0])

    edit_scenarios(tree, edit)
    return targets


def broken_run(tmp_path_factory: pytest.TempPathFactory, steps: list[Any], fields: list[Any]) -> BrokenRun:
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    targets = break_scenarios(tree, steps, fields)
    return BrokenRun(run_generator("--root", tree), targets)


class BrokenRun:
    """One generator run over scenarios that each have one problem."""

    def __init__(self, result: subprocess.CompletedProcess[str], targets: dict[str, str]) -> None:
        self.result = result
        self.targets = targets

    def lines_of(self, param_id: str) -> list[str]:
        prefix = f"{self.targets[param_id]}: "
        return [line for line in self.result.stderr.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def shape_run(tmp_path_factory: pytest.TempPathFactory) -> BrokenRun:
    return broken_run(tmp_path_factory, SHAPE_STEPS, SHAPE_FIELDS)


@pytest.fixture(scope="module")
def later_run(tmp_path_factory: pytest.TempPathFactory) -> BrokenRun:
    return broken_run(tmp_path_factory, LATER_STEPS, BAD_FIELDS)


@pytest.mark.parametrize(("step", "message"), SHAPE_STEPS)
def test_bad_step_shape_fails(
    shape_run: BrokenRun, request: pytest.FixtureRequest, step: Step, message: str
) -> None:
    lines = shape_run.lines_of(request.node.callspec.id)

    assert shape_run.result.returncode == 1
    assert any(message in line for line in lines), shape_run.result.stderr


@pytest.mark.parametrize(("step", "message"), LATER_STEPS)
def test_bad_step_fails(
    later_run: BrokenRun, request: pytest.FixtureRequest, step: Step, message: str
) -> None:
    lines = later_run.lines_of(request.node.callspec.id)

    assert later_run.result.returncode == 1
    assert any(message in line for line in lines), later_run.result.stderr


@pytest.mark.parametrize(("fields", "message"), SHAPE_FIELDS)
def test_bad_case_shape_fails(
    shape_run: BrokenRun, request: pytest.FixtureRequest, fields: dict[str, Any], message: str
) -> None:
    lines = shape_run.lines_of(request.node.callspec.id)

    assert shape_run.result.returncode == 1
    assert any(message in line for line in lines), shape_run.result.stderr


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS)
def test_bad_case_fails(
    later_run: BrokenRun, request: pytest.FixtureRequest, fields: dict[str, Any], message: str
) -> None:
    lines = later_run.lines_of(request.node.callspec.id)

    assert later_run.result.returncode == 1
    assert any(message in line for line in lines), later_run.result.stderr


def test_layout_key_twice_fails(tree: Path) -> None:
    def add_layout(document: dict[str, Any]) -> None:
        entry = {"db": 0, "key": "message_ids", "type": "set", "members": []}
        scenario(document, "all-empty-queue")["layout"] = {"exhaustive": True, "keys": [entry, entry]}

    edit_scenarios(tree, add_layout)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "all-empty-queue: layout: lists one key of one database twice" in result.stderr


def test_unknown_expansion_fails(tree: Path) -> None:
    def add_expansion(document: dict[str, Any]) -> None:
        document["expansions"].append({"kind": "every-engine", "group": "claim", "rule": "all-listed"})

    edit_scenarios(tree, add_expansion)
    result = run_generator("--root", tree)

    assert result.returncode == 1
    assert "unknown kind 'every-engine'" in result.stderr


def test_generated_meta_expands(tree: Path) -> None:
    document = json.loads((VECTORS / "meta.json").read_bytes())
    case = next(case for case in document["cases"] if case["id"] == "meta-many-keys")
    meta = case["steps"][1]["args"]["meta"]

    assert len(meta) == 1000
    assert meta["key-0000"] == "value-0000"
    assert meta["key-0999"] == "value-0999"
    assert case["steps"][2]["expect"]["value"] == meta


# Docs that describe the vectors and the bindings

NUMBER_WORDS = {
    15: "fifteen",
    16: "sixteen",
    17: "seventeen",
    18: "eighteen",
    19: "nineteen",
    20: "twenty",
    26: "twenty-six",
}


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "spec" / "storage.yaml").read_text(encoding="utf-8"))
    return document


def test_readme_handshake_names_current_spec() -> None:
    readme = (ROOT / "conformance" / "README.md").read_text(encoding="utf-8")
    hello = next(line for line in readme.splitlines() if line.startswith('< {"result": {"capabilities"'))

    assert f'"spec_version": "{spec()["version"]}"' in hello


def test_bindings_page_counts_session_methods() -> None:
    page = (ROOT / "docs" / "bindings.md").read_text(encoding="utf-8")

    assert f"The {NUMBER_WORDS[len(spec()['methods'])]} session methods" in page


def test_bindings_page_names_lock_owner() -> None:
    page = " ".join((ROOT / "docs" / "bindings.md").read_text(encoding="utf-8").split())

    assert "the value of a lock key, which is the lock's owner, or `locked` for a lock taken without" in page


def test_storage_reference_lets_bindings_skip_memory() -> None:
    page = (ROOT / "docs" / "reference" / "storage.rst").read_text(encoding="utf-8")

    assert "Every binding offers" not in page
    assert "The Python binding offers the engines ``memory`` and ``redis``." in page
    assert "Another binding may offer only ``redis``" in page
