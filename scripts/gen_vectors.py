#!/usr/bin/env python3
"""Generate the conformance vectors from spec/storage.yaml and spec/scenarios.yaml.

The script expands the scenarios, and the cases that the spec's method
list implies, into one JSON file per group under conformance/vectors/,
plus index.json. On the way it checks every name and kind against the
spec, validates every file against conformance/vector.schema.json, and
requires a case for every method, error kind and rule. Case ids must stay
stable against the index already in the output folder. With --check the
script compares a fresh run with the files in the tree instead of
writing them.

Exit status: 0 on success, 1 when a check fails (each problem is printed
on stderr), 2 on bad command-line arguments.
"""

from __future__ import annotations

import argparse
import base64
import filecmp
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# jsonschema ships without type hints, and the dev extras install no stubs for it.
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError, ValidationError  # type: ignore[import-untyped]

# The C loader when PyYAML was built with libyaml, else the pure-Python one.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "scripts/gen_vectors.py"

# Parsed YAML and JSON, whose shape the checks below establish.
Json = Any

# Each step action, with the fields a step of that action may have.
STEP_ACTIONS = {
    "call": {"call", "args", "session", "bind", "expect"},
    "pages": {"pages", "args", "session", "expect"},
    "open_session": {"open_session"},
    "close_session": {"close_session"},
    "advance": {"advance"},
    "race": {"race"},
    "raw": {"raw"},
    "connect_unreachable": {"connect_unreachable", "expect"},
}
FIRST_SESSION = "s1"
INDEX = "index.json"
TAGS = {
    "$bytes",
    "$bytes_pattern",
    "$text_bytes",
    "$var",
    "$float",
    "$sorted",
    "$concat",
    "$text_repeat",
    "$repeat",
    "$entries",
    "$object",
}
# The tag whose body is a literal object: its keys may start with $.
OBJECT_TAG = "$object"
# The parameter of the page methods that a pages step leaves to the runner.
CURSOR = "cursor"
# The matches of a pages step, and the match that compares an object member by member.
PAGE_MATCHES = ("ordered", "unordered")
FIELDS_MATCH = "fields"
FORMAT_PATTERN = re.compile(r"[0-9]+\.[0-9]+")
# The spec version of a method, parameter or rule that names none.
BASE_VERSION = "1.0.0"
# A group name, which is also its file name without .json.
GROUP_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

# A scenario-only shorthand, replaced before the checks: {"$generated_meta": N}
# becomes a meta mapping of N keys, "key-0000": "value-0000" and so on.
GENERATED_META = "$generated_meta"


class VectorError(Exception):
    """The spec, the scenarios or the committed vectors failed a check."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# The spec


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    nullable: bool
    required: bool
    since: str = BASE_VERSION


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[Param, ...]
    errors: frozenset[str]
    # Whether the method returns ids in an order, as some listings do.
    ordered: bool = False
    since: str = BASE_VERSION

    def param(self, name: str) -> Param | None:
        return next((param for param in self.params if param.name == name), None)


@dataclass(frozen=True)
class Spec:
    version: str
    methods: dict[str, Method]
    engine_methods: dict[str, Method]
    error_kinds: tuple[str, ...]
    rules: tuple[str, ...]
    # The spec version that introduced each rule, by rule id.
    rule_since: dict[str, str] = field(default_factory=dict)


def load_yaml(path: Path) -> Json:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader)
    except (OSError, yaml.YAMLError) as error:
        raise VectorError([f"{path}: cannot be read: {error}"]) from None


def load_json(path: Path) -> Json:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise VectorError([f"{path}: cannot be read: {error}"]) from None


def parse_method(raw: Json) -> Method:
    since = raw.get("since", BASE_VERSION)
    params = tuple(
        Param(
            name=param["name"],
            type=param["type"],
            nullable=bool(param.get("nullable", False)),
            required="default" not in param,
            since=param.get("since", since),
        )
        for param in raw["params"]
    )
    ordered = raw.get("ordering", "none") != "none"
    return Method(raw["name"], params, frozenset(raw["errors"]), ordered, since)


def load_spec(path: Path) -> Spec:
    raw = load_yaml(path)
    return Spec(
        version=raw["version"],
        methods={method["name"]: parse_method(method) for method in raw["methods"]},
        engine_methods={method["name"]: parse_method(method) for method in raw["engine_methods"]},
        error_kinds=tuple(error["kind"] for error in raw["errors"]),
        rules=tuple(rule["id"] for rule in raw["rules"]),
        rule_since={rule["id"]: rule["since"] for rule in raw["rules"]},
    )


# Small helpers for building steps


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def var(name: str) -> Json:
    return {"$var": name}


def call(method: str, args: Json | None = None, expect: Json | None = None, **extra: Json) -> Json:
    """Return a call step on session s1 unless ``extra`` names another session."""
    step: dict[str, Json] = {"call": method, "args": args or {}, "expect": expect or {"match": "any"}}
    step.update(extra)
    return step


def returns(value: Json, match: str = "exact") -> Json:
    return {"value": value, "match": match}


def raises(kind: str) -> Json:
    return {"error": kind}


def hyphenated(name: str) -> str:
    return name.replace("_", "-")


def is_tag(value: Json) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith("$")


# Expansions: cases generated from the spec's method list


# A valid message of a store_messages batch.
VALID_NEW_MESSAGE = {"meta": {"k": "changed"}, "contents": {"$bytes": b64(b"changed")}, "retry": 200}

# Valid arguments by spec type, used for every parameter but the one under test.
VALID_ARGUMENTS: dict[str, Json] = {
    "message_id": var("m1"),
    "meta": {"k": "changed"},
    "meta_key": "k",
    "meta_value": "changed",
    "contents": {"$bytes": b64(b"changed")},
    "timestamp": 200,
    "lock_length": 10,
    "lock_owner": "relayer-7f3c",
    "batch_ids": [var("m1")],
    "new_message_list": [VALID_NEW_MESSAGE],
    "page_cursor": None,
    "page_size": 100,
}


def batch_with(bad_message: Json) -> Json:
    """Return a store_messages batch of a valid message followed by ``bad_message``."""
    return [VALID_NEW_MESSAGE, bad_message]


# Bad values by spec type: (id suffix, value, what the value is).
BAD_VALUES: dict[str, tuple[tuple[str, Json, str], ...]] = {
    "message_id": (
        ("empty", "", "empty"),
        ("too-long", {"$text_repeat": {"text": "a", "count": 256}}, "256 characters long"),
        ("space", "has space", "text with a space"),
        ("non-ascii", "caf\u00e9-0001", "text with a non-ASCII character"),
        ("number", 12345, "a number, not text"),
        ("null", None, "null"),
    ),
    "timestamp": (
        ("nan", {"$float": "nan"}, "NaN"),
        ("inf", {"$float": "inf"}, "infinite"),
        ("negative", -1, "negative"),
        ("text", "100", "text, not a number"),
        ("boolean", True, "a boolean"),
    ),
    "lock_length": (
        ("zero", 0, "zero"),
        ("negative", -1, "negative"),
        ("nan", {"$float": "nan"}, "NaN"),
        ("over-one-year", 31536001, "longer than one year"),
        ("text", "10", "text, not a number"),
    ),
    "meta": (
        ("not-mapping", ["k", "v"], "a list, not a mapping"),
        ("empty-key", {"": "v"}, "a mapping with an empty key"),
        ("key-nul", {"a\u0000b": "v"}, "a mapping with NUL in a key"),
        ("key-too-long", {"k" * 256: "v"}, "a mapping with a key of 256 characters"),
        ("value-number", {"k": 1}, "a mapping with a number as a value"),
    ),
    "meta_key": (
        ("empty", "", "empty"),
        ("nul", "a\u0000b", "text with NUL"),
        ("too-long", {"$text_repeat": {"text": "k", "count": 256}}, "256 characters long"),
        ("number", 1, "a number, not text"),
    ),
    "meta_value": (("number", 1, "a number, not text"),),
    "lock_owner": (
        ("empty", "", "empty"),
        ("locked", "locked", "the value of locks without an owner"),
        ("space", "relayer 1", "text with a space"),
        ("too-long", {"$text_repeat": {"text": "o", "count": 256}}, "256 characters long"),
        ("number", 7, "a number, not text"),
    ),
    "contents": (
        ("text", "Subject: hi\r\n\r\nbody\r\n", "text, not bytes"),
        ("number", 1, "a number, not bytes"),
    ),
    "batch_ids": (
        ("empty", [], "an empty list"),
        ("too-many", {"$repeat": {"value": var("m1"), "count": 1001}}, "a list of 1001 ids"),
        ("invalid-id", [var("m1"), "has space"], "a list with an invalid id after a stored one"),
        ("text", var("m1"), "one id, not a list"),
        ("null", None, "null"),
    ),
    "new_message_list": (
        ("empty", [], "an empty list"),
        ("too-many", {"$repeat": {"value": VALID_NEW_MESSAGE, "count": 1001}}, "a list of 1001 messages"),
        (
            "no-contents",
            batch_with({"meta": {"k": "v"}}),
            "a list whose second message has no contents",
        ),
        (
            "text-contents",
            batch_with({"meta": {"k": "v"}, "contents": "Subject: hi\r\n\r\nbody\r\n"}),
            "a list whose second message has text contents, not bytes",
        ),
        (
            "bad-retry",
            batch_with({"meta": {"k": "v"}, "contents": {"$bytes": b64(b"x")}, "retry": -1}),
            "a list whose second message has a negative retry time",
        ),
        (
            "bad-meta",
            batch_with({"meta": {"k": 1}, "contents": {"$bytes": b64(b"x")}}),
            "a list whose second message has a number as a meta value",
        ),
        ("mapping", VALID_NEW_MESSAGE, "one message, not a list"),
        ("null", None, "null"),
    ),
    "page_cursor": (
        ("number", 12345, "a number, not text"),
        ("empty", "", "empty text"),
        ("garbage", "not-a-cursor", "text that no engine made"),
    ),
    "page_size": (
        ("zero", 0, "zero"),
        ("over-maximum", 10001, "above the maximum of 10000"),
        ("fraction", 2.5, "a fraction"),
        ("text", "100", "text, not a number"),
        ("null", None, "null"),
    ),
}

STORED_META = {"k": "v"}
STORED_CONTENTS = {"$bytes": b64(b"Subject: kept\r\n\r\nkept\r\n")}
STORED_RETRY = 100


def valid_args(method: Method) -> dict[str, Json]:
    """Return a valid value of each parameter, leaving out optional ones newer than the method.

    So a binding of the method's first spec version can run the cases
    built on these arguments.
    """
    return {
        param.name: VALID_ARGUMENTS[param.type]
        for param in method.params
        if param.required or param.since == method.since
    }


def write_message_steps() -> list[Json]:
    """Return steps that claim message m1 and write its meta, contents and retry time one by one."""
    return [
        call("claim_message_id", bind="m1"),
        call("set_message_meta", {"message_id": var("m1"), "meta": STORED_META}, returns(None)),
        call("set_message_contents", {"message_id": var("m1"), "contents": STORED_CONTENTS}, returns(None)),
        call("set_message_retry", {"message_id": var("m1"), "timestamp": STORED_RETRY}, returns(None)),
    ]


def unchanged_steps() -> list[Json]:
    """Return steps that check m1 is exactly as write_message_steps left it."""
    message = {"message_id": var("m1")}
    return [
        call("get_message_meta", message, returns(STORED_META)),
        call("get_message_contents", message, returns(STORED_CONTENTS)),
        call("get_all_messages", {}, returns([var("m1")], "unordered")),
        call("get_deferred_messages", {"timestamp": STORED_RETRY}, returns([var("m1")], "ordered")),
        call("get_deferred_messages", {"timestamp": STORED_RETRY - 1}, returns([], "ordered")),
        call("get_active_messages", {}, returns([], "unordered")),
    ]


def expand_invalid_argument(spec: Spec, config: Json) -> Iterator[Json]:
    for method in spec.methods.values():
        for param in method.params:
            yield from invalid_cases(method, param, config)


def invalid_cases(method: Method, param: Param, config: Json) -> Iterator[Json]:
    if param.type not in BAD_VALUES:
        raise VectorError([f"invalid-argument expansion: no bad values for the spec type {param.type!r}"])

    for suffix, value, what in BAD_VALUES[param.type]:
        if value is None and param.nullable:
            continue
        args = valid_args(method) | {param.name: value}
        yield {
            "id": f"invalid-{hyphenated(method.name)}-{hyphenated(param.name)}-{suffix}",
            "group": config["group"],
            "rule": config["rule"],
            "description": (
                f"{method.name} rejects a {param.name} that is {what} with invalid_argument"
                " and changes nothing stored."
            ),
            "steps": [
                *write_message_steps(),
                call(method.name, args, raises("invalid_argument")),
                *unchanged_steps(),
            ],
        }


def expand_unknown_id(spec: Spec, config: Json) -> Iterator[Json]:
    unknown = config["message_id"]
    for method in spec.methods.values():
        if method.param("message_id") is None or "message_not_found" not in method.errors:
            continue
        yield {
            "id": f"unknown-id-{hyphenated(method.name)}",
            "group": config["group"],
            "rule": config["rule"],
            "description": (
                f"{method.name} raises message_not_found for an id that is not stored, and stores nothing."
            ),
            "steps": [
                call(method.name, valid_args(method) | {"message_id": unknown}, raises("message_not_found")),
                call("get_all_messages", {}, returns([], "unordered")),
            ],
        }


def expand_session_closed(spec: Spec, config: Json) -> Iterator[Json]:
    for method in spec.methods.values():
        if method.name != "close":
            yield session_closed_case(method, config)

    yield {
        "id": "session-closed-close-twice",
        "group": config["group"],
        "rule": config["rule"],
        "description": "Calling close on a closed session does nothing and raises no error.",
        "steps": [
            call("close", {}, returns(None)),
            call("close", {}, returns(None)),
            {"open_session": "s2"},
            call("get_all_messages", {}, returns([], "unordered"), session="s2"),
        ],
    }


def session_closed_case(method: Method, config: Json) -> Json:
    return {
        "id": f"session-closed-{hyphenated(method.name)}",
        "group": config["group"],
        "rule": config["rule"],
        "description": (
            f"{method.name} on a closed session raises session_closed,"
            " and another session sees nothing changed."
        ),
        "steps": [
            call("claim_message_id", bind="m1"),
            {"close_session": FIRST_SESSION},
            call(method.name, valid_args(method), raises("session_closed")),
            {"open_session": "s2"},
            call("get_all_messages", {}, returns([var("m1")], "unordered"), session="s2"),
        ],
    }


EXPANSIONS = {
    "unknown-id": (expand_unknown_id, {"kind", "group", "rule", "message_id"}),
    "session-closed": (expand_session_closed, {"kind", "group", "rule"}),
    "invalid-argument": (expand_invalid_argument, {"kind", "group", "rule"}),
}


def expand(spec: Spec, configs: Json) -> list[Json]:
    scenarios: list[Json] = []
    for index, config in enumerate(configs):
        kind = config.get("kind") if isinstance(config, dict) else None
        if kind not in EXPANSIONS:
            raise VectorError(
                [f"expansion {index + 1}: unknown kind {kind!r}, expected one of {sorted(EXPANSIONS)}"]
            )
        function, fields = EXPANSIONS[kind]
        if set(config) != fields:
            raise VectorError(
                [f"expansion {kind}: expected the fields {sorted(fields)}, got {sorted(config)}"]
            )
        scenarios.extend(function(spec, config))
    return scenarios


# Normalising scenarios into cases


def replace_generated_meta(value: Json) -> Json:
    if isinstance(value, dict) and set(value) == {GENERATED_META} and isinstance(value[GENERATED_META], int):
        count = value[GENERATED_META]
        return {f"key-{index:04d}": f"value-{index:04d}" for index in range(count)}
    if isinstance(value, dict):
        return {key: replace_generated_meta(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_generated_meta(item) for item in value]
    return value


def normalize_expect(expect: Json) -> Json:
    """Return ``expect`` with the default match, exact, written out, also in the members of a fields match."""
    if not isinstance(expect, dict):
        return expect
    if "value" in expect and "match" not in expect:
        expect = {**expect, "match": "exact"}
    if expect.get("match") == FIELDS_MATCH and isinstance(expect.get("value"), dict):
        members = {name: normalize_expect(member) for name, member in expect["value"].items()}
        expect = {**expect, "value": members}
    return expect


def normalize_step(step: Json) -> Json:
    if not isinstance(step, dict):
        return step
    step = dict(step)
    if "call" in step or "pages" in step:
        step.setdefault("args", {})
        step.setdefault("session", FIRST_SESSION)
    if "expect" in step:
        step["expect"] = normalize_expect(step["expect"])
    return step


def implied_capabilities(case: Json) -> set[str]:
    implied = set()
    for step in case["steps"]:
        if isinstance(step, dict) and ("raw" in step or "connect_unreachable" in step):
            implied.add("engine:redis")
        if isinstance(step, dict) and "advance" in step:
            implied.add("clock")
    if "layout" in case or "server_config" in case:
        implied.add("engine:redis")
    return implied


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def called_methods(step: Json) -> Iterator[tuple[str, Json]]:
    """Yield the method and arguments of each call that a step makes, a race or a pages step included."""
    if not isinstance(step, dict):
        return
    if "call" in step:
        yield step["call"], step.get("args", {})
    if "pages" in step:
        yield step["pages"], step.get("args", {})
    if isinstance(step.get("race"), dict):
        yield step["race"].get("call"), step["race"].get("args", {})


def case_since(spec: Spec, case: Json) -> str:
    """Return the newest spec version among the case's rule and own since, and the methods it calls.

    A binding that implements an older spec cannot pass the case, so the
    runner skips it for such a binding. Unknown names count as the base
    version here and fail the reference checks later.
    """
    versions = [spec.rule_since.get(case.get("rule"), BASE_VERSION)]
    if isinstance(case.get("since"), str):
        # A scenario names its version when it checks a later change to an older rule.
        versions.append(case["since"])
    steps = case.get("steps")
    for step in steps if isinstance(steps, list) else []:
        for name, args in called_methods(step):
            method = spec.methods.get(name)
            if method is None:
                continue
            versions.append(method.since)
            params = [method.param(arg) for arg in args] if isinstance(args, dict) else []
            versions += [param.since for param in params if param is not None]
    return max(versions, key=version_key)


def normalize_case(scenario: Json) -> Json:
    """Return the case of one scenario, with its defaults filled in and its capabilities completed."""
    case = replace_generated_meta({key: item for key, item in scenario.items() if key != "group"})
    case.setdefault("level", "required")
    steps = case.get("steps")
    case["steps"] = [normalize_step(step) for step in steps] if isinstance(steps, list) else steps
    declared = case.get("capabilities", [])
    if isinstance(declared, list) and isinstance(case["steps"], list):
        case["capabilities"] = sorted(set(declared) | implied_capabilities(case))
    return case


# Checking cases
#
# Cases are checked in three passes, and a later pass skips the cases
# that an earlier one failed, so that each can trust the shape the others
# checked. The first pass checks groups, step actions, expectations and
# tags, with messages that name the step, and stops the run when it fails.
# The second validates the vector files against vector.schema.json. The
# third checks the references to the spec and to the variables and
# sessions of the steps.


def check_shape(case: Json) -> list[str]:
    steps = case.get("steps")
    if not isinstance(steps, list) or not steps:
        return ["steps: must be a non-empty list"]
    problems = list(unknown_tags(case))
    for number, step in enumerate(steps, start=1):
        actions = [key for key in STEP_ACTIONS if isinstance(step, dict) and key in step]
        if len(actions) != 1:
            problems.append(
                f"step {number}: must have exactly one action of {list(STEP_ACTIONS)}, has {actions}"
            )
        elif "expect" in STEP_ACTIONS[actions[0]]:
            problems += [f"step {number} ({actions[0]}): {problem}" for problem in check_expect_shape(step)]
    try:
        json.dumps(case, allow_nan=False)
    except ValueError:
        problems.append('has a NaN or infinite number, which JSON cannot carry: write {"$float": "nan"}')
    return problems


def unknown_tags(value: Json) -> Iterator[str]:
    if is_tag(value) and next(iter(value)) not in TAGS:
        yield f"unknown tag {next(iter(value))!r}, expected one of {sorted(TAGS)}"
    elif is_tag(value) and OBJECT_TAG in value:
        if not isinstance(value[OBJECT_TAG], dict):
            yield f"{OBJECT_TAG} must hold an object, not {value[OBJECT_TAG]!r}"
        else:
            for item in value[OBJECT_TAG].values():
                yield from unknown_tags(item)
    elif isinstance(value, dict):
        if not is_tag(value) and any(str(key).startswith("$") for key in value):
            yield (
                f"an object of several keys has a key that starts with $: {sorted(map(str, value))};"
                f' write it as {{"{OBJECT_TAG}": {{...}}}}'
            )
        for item in value.values():
            yield from unknown_tags(item)
    elif isinstance(value, list):
        for item in value:
            yield from unknown_tags(item)


def check_expect_shape(step: Json) -> list[str]:
    expect = step.get("expect")
    if not isinstance(expect, dict):
        return ["expect is missing: give it a value with a match, or an error"]
    if "pages" in step and not ("value" in expect and expect.get("match") in PAGE_MATCHES):
        return ["expect of a pages step must be a value with the match ordered or unordered"]
    if ("value" in expect) + ("error" in expect) + (expect.get("match") == "any") != 1:
        return ["expect must have exactly one of value and error, and a match of any has neither"]
    return list(fields_problems(expect))


def fields_problems(expect: Json) -> Iterator[str]:
    """Yield the problems of the member expects of a fields match, which cannot expect an error."""
    if expect.get("match") != FIELDS_MATCH:
        return
    members = expect.get("value")
    if not isinstance(members, dict) or not all(isinstance(member, dict) for member in members.values()):
        yield "a match of fields needs an object that maps each member to an expect"
        return
    for name, member in members.items():
        if "error" in member or ("value" in member) == (member.get("match") == "any"):
            yield f"member {name!r} of a fields match needs a value with a match, or a match of any"
        else:
            yield from fields_problems(member)


def schema_problems(
    suite: Suite, files: dict[str, bytes], schema: Json
) -> tuple[list[str], set[tuple[str, int]]]:
    """Validate the files against the schema, naming the case at fault where there is one.

    Returns the problems and the (group, position) of each case that failed.
    """
    root = {key: item for key, item in schema.items() if key != "oneOf"}
    group_file = Draft202012Validator({**root, "$ref": "#/$defs/group_file"})
    index_file = Draft202012Validator({**root, "$ref": "#/$defs/index_file"})
    problems: list[str] = []
    failed: set[tuple[str, int]] = set()
    for name, data in sorted(files.items()):
        validator = index_file if name == INDEX else group_file
        for error in validator.iter_errors(json.loads(data)):
            path, message = deepest_cause(error)
            if name == INDEX or path[:1] != ["cases"] or len(path) < 2:
                problems.append(f"{name}: {pointer(path)}: {message}")
                continue
            group = name.removesuffix(".json")
            failed.add((group, path[1]))
            problems.append(f"{suite.cases[group][path[1]].get('id')}: {pointer(path[2:])}: {message}")
    return problems, failed


def deepest_cause(error: ValidationError) -> tuple[list[Any], str]:
    """Return the path and message of an error's deepest cause, which names the innermost bad value."""
    deepest = max(leaf_errors(error), key=lambda leaf: len(leaf.absolute_path))
    return list(deepest.absolute_path), deepest.message


def leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    if not error.context:
        yield error
    for cause in error.context:
        yield from leaf_errors(cause)


def pointer(path: list[Any]) -> str:
    return "/" + "/".join(str(part) for part in path)


@dataclass
class CaseChecker:
    """Checks the references of one case: to the spec, to its variables and to its sessions."""

    spec: Spec
    problems: list[str] = field(default_factory=list)
    bound: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=lambda: {FIRST_SESSION})

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def check_case(self, case: Json) -> None:
        if case["rule"] not in self.spec.rules:
            self.fail("rule", f"unknown rule {case['rule']!r}")
        self.check_capabilities(case["capabilities"], case.get("tolerance"))
        for number, step in enumerate(case["steps"], start=1):
            action = next(key for key in STEP_ACTIONS if key in step)
            getattr(self, f"check_{action}")(step, f"step {number} ({action})")
        if "layout" in case:
            self.check_layout(case["layout"])

    def check_capabilities(self, capabilities: list[str], tolerance: Json) -> None:
        if {"engine:memory", "engine:redis"} <= set(capabilities):
            self.fail("capabilities", "needs both engine:memory and engine:redis, so no engine can run it")
        if ("real-time" in capabilities) != (tolerance is not None):
            self.fail("tolerance", "is required with the real-time capability, and only with it")

    # Actions

    def check_call(self, step: Json, where: str) -> None:
        where = f"{where} {step['call']}"
        if step["session"] not in self.sessions:
            self.fail(where, f"session {step['session']!r} was never opened")
        self.check_method_args(step["call"], step["args"], where)
        self.check_expect(step["expect"], where)
        if "bind" in step and "error" in step["expect"]:
            self.fail(where, "bind needs a call that returns a value, not an error")
        elif "bind" in step:
            self.bound.add(step["bind"])

    def check_method_args(self, name: str, args: dict[str, Json], where: str) -> None:
        method = self.spec.methods.get(name)
        if method is None:
            self.fail(where, f"unknown method {name!r}, expected one of {sorted(self.spec.methods)}")
            return
        for arg in args:
            if method.param(arg) is None:
                self.fail(where, f"unknown parameter {arg!r} of {method.name}")
        for param in method.params:
            if param.required and param.name not in args:
                self.fail(where, f"missing the parameter {param.name!r}")
        self.check_variables(args, f"{where} args")

    def check_expect(self, expect: Json, where: str) -> None:
        if "error" in expect and expect["error"] not in self.spec.error_kinds:
            self.fail(
                where,
                f"unknown error kind {expect['error']!r}, expected one of {list(self.spec.error_kinds)}",
            )
        self.check_variables(expect.get("value"), f"{where} expect")

    def check_pages(self, step: Json, where: str) -> None:
        """Check that the step reads a page method, leaves out the cursor and matches the spec's ordering."""
        name = step["pages"]
        where = f"{where} {name}"
        if step["session"] not in self.sessions:
            self.fail(where, f"session {step['session']!r} was never opened")
        if CURSOR in step["args"]:
            self.fail(where, "args must not have cursor, because the runner passes each page's cursor")
        args = {key: item for key, item in step["args"].items() if key != CURSOR}
        self.check_method_args(name, args, where)
        self.check_expect(step["expect"], where)

        method = self.spec.methods.get(name)
        if method is None:
            return
        if method.param(CURSOR) is None:
            self.fail(where, f"{name} is no page method: a pages step needs a method with a cursor parameter")
        expected = "ordered" if method.ordered else "unordered"
        if step["expect"]["match"] != expected:
            order = "in an order" if method.ordered else "in no order"
            self.fail(where, f"match must be {expected}, because the spec lists the ids of {name} {order}")

    def check_open_session(self, step: Json, where: str) -> None:
        if step["open_session"] in self.sessions:
            self.fail(where, f"session {step['open_session']!r} is open already")
        self.sessions.add(step["open_session"])

    def check_close_session(self, step: Json, where: str) -> None:
        if step["close_session"] not in self.sessions:
            self.fail(where, f"session {step['close_session']!r} was never opened")

    def check_advance(self, step: Json, where: str) -> None:
        """Accept any advance, whose number the schema has checked."""

    def check_race(self, step: Json, where: str) -> None:
        race = step["race"]
        if race["expect_count"]["count"] > race["sessions"]:
            self.fail(where, "expect_count count is larger than the number of sessions")
        self.check_method_args(race["call"], race["args"], f"{where} {race['call']}")
        self.check_variables(race["expect_count"]["value"], f"{where} expect_count")

    def check_raw(self, step: Json, where: str) -> None:
        self.check_variables(step["raw"], where)

    def check_connect_unreachable(self, step: Json, where: str) -> None:
        """Check that the step expects an error that connect and get_all_messages can both raise.

        A binding may connect lazily, so the runner takes the error from
        connect or, when connect succeeds, from get_all_messages.
        """
        expect = step["expect"]
        self.check_expect(expect, where)
        if "error" not in expect:
            self.fail(where, "expect must be an error, because nothing can be reached")
            return
        for method in (self.spec.engine_methods["connect"], self.spec.methods["get_all_messages"]):
            if expect["error"] not in method.errors:
                self.fail(
                    where,
                    f"expects the error {expect['error']!r}, which {method.name} cannot raise;"
                    f" its errors are {sorted(method.errors)}",
                )

    # Variables and layout

    def check_variables(self, value: Json, where: str) -> None:
        """Check that every $var in ``value`` is bound by an earlier step.

        A $var may name a member or element of the variable, as in
        ``p1.cursor``, which only the run can check.
        """
        if is_tag(value) and "$var" in value and str(value["$var"]).split(".")[0] not in self.bound:
            self.fail(where, f"variable {value['$var']!r} is used before a step binds it")
        elif is_tag(value) and OBJECT_TAG in value:
            for item in value[OBJECT_TAG].values():
                self.check_variables(item, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.fail(where, f"key {key!r} must be text")
                self.check_variables(item, where)
        elif isinstance(value, list):
            for item in value:
                self.check_variables(item, where)

    def check_layout(self, layout: Json) -> None:
        self.check_variables(layout, "layout")
        listed = [json.dumps([entry["db"], entry["key"]], sort_keys=True) for entry in layout["keys"]]
        if len(listed) != len(set(listed)):
            self.fail("layout", "lists one key of one database twice")
        for entry in layout["keys"]:
            ttl = entry.get("ttl_ms")
            if ttl is not None and ttl["min"] > ttl["max"]:
                self.fail("layout", f"ttl_ms of {entry['key']!r} has a min above its max")


def check_references(spec: Spec, suite: Suite, failed: set[tuple[str, int]]) -> list[str]:
    """Return the problems of the cases that passed the earlier passes, checked against the spec."""
    problems = []
    for group, cases in suite.cases.items():
        for number, case in enumerate(cases):
            if (group, number) not in failed:
                checker = CaseChecker(spec)
                checker.check_case(case)
                problems += [f"{case['id']}: {problem}" for problem in checker.problems]
    return problems


# The whole suite


@dataclass(frozen=True)
class Suite:
    vector_format: str
    groups: dict[str, str]
    retired: list[str]
    cases: dict[str, list[Json]]

    def all_cases(self) -> list[Json]:
        return [case for cases in self.cases.values() for case in cases]

    def ids(self) -> list[str]:
        return [str(case.get("id")) for case in self.all_cases()]


def check_scenario_file(raw: Json) -> list[str]:
    problems = []
    expected = {"vector_format", "groups", "retired", "scenarios", "expansions"}
    if not isinstance(raw, dict) or set(raw) != expected:
        return [f"scenarios file: expected the top-level fields {sorted(expected)}"]
    if not isinstance(raw["vector_format"], str) or not FORMAT_PATTERN.fullmatch(raw["vector_format"]):
        problems.append('scenarios file: vector_format must be text such as "1.0"')
    if not isinstance(raw["groups"], dict) or not all(
        isinstance(text, str) for text in raw["groups"].values()
    ):
        problems.append("scenarios file: groups must map each group name to its description")
    if not isinstance(raw["retired"], list) or not all(isinstance(item, str) for item in raw["retired"]):
        problems.append("scenarios file: retired must be a list of case ids")
    if not isinstance(raw["scenarios"], list) or not all(isinstance(item, dict) for item in raw["scenarios"]):
        problems.append("scenarios file: scenarios must be a list of mappings")
    if not isinstance(raw["expansions"], list):
        problems.append("scenarios file: expansions must be a list")
    return problems


def build_suite(spec: Spec, raw: Json) -> Suite:
    """Expand and normalise every scenario, and check the shape of each case."""
    problems = check_scenario_file(raw)
    if problems:
        raise VectorError(problems)

    groups: dict[str, str] = raw["groups"]
    cases: dict[str, list[Json]] = {group: [] for group in groups}
    for scenario in [*raw["scenarios"], *expand(spec, raw["expansions"])]:
        case = normalize_case(scenario)
        case["since"] = case_since(spec, case)
        group = scenario.get("group")
        if group not in groups:
            problems.append(
                f"{case.get('id')}: group: unknown group {group!r}, which must be listed under groups"
            )
        problems += [f"{case.get('id')}: {problem}" for problem in check_shape(case)]
        cases.setdefault(group, []).append(case)

    problems += [f"group {group}: has no cases" for group in groups if not cases[group]]
    if problems:
        raise VectorError(problems)
    return Suite(raw["vector_format"], groups, raw["retired"], cases)


# Coverage and id stability


def successful_calls(cases: Iterable[Json]) -> set[str]:
    """Return the methods that some case calls and expects a value from, a pages step included."""
    called = set()
    for case in cases:
        for step in case["steps"]:
            if "call" in step and "error" not in step["expect"]:
                called.add(step["call"])
            if "pages" in step:
                called.add(step["pages"])
            if "race" in step:
                called.add(step["race"]["call"])
            if "connect_unreachable" in step:
                called.add("connect")
    return called


def expected_errors(cases: Iterable[Json]) -> set[str]:
    return {
        step["expect"]["error"]
        for case in cases
        for step in case["steps"]
        if "error" in step.get("expect", {})
    }


def lint_coverage(spec: Spec, suite: Suite) -> list[str]:
    """List each method, error kind and rule of the spec that no case covers."""
    cases = suite.all_cases()
    called = successful_calls(cases)
    errors = expected_errors(cases)
    rules = {case["rule"] for case in cases}

    missing = [
        f"coverage: no case calls {name} and expects a value" for name in spec.methods if name not in called
    ]
    if "connect" not in called:
        missing.append("coverage: no case has a connect_unreachable step, which covers connect")
    missing += [
        f"coverage: no case expects the error kind {kind}" for kind in spec.error_kinds if kind not in errors
    ]
    missing += [f"coverage: no case checks the rule {rule}" for rule in spec.rules if rule not in rules]
    return missing


def check_ids(suite: Suite, index: Json | None) -> list[str]:
    """Check that ids are unique, retired ids stay retired and no committed id vanished."""
    ids = suite.ids()
    retired = set(suite.retired)
    problems = [f"id {case_id}: is used by more than one case" for case_id in sorted(duplicates(ids))]
    problems += [
        f"id {case_id}: is retired and must not be used again" for case_id in sorted(retired & set(ids))
    ]
    if index is None:
        return problems
    if not isinstance(index, dict):
        return [*problems, "index.json: must be a JSON object, so restore it from version control"]

    committed = {case_id for group in index.get("groups", {}).values() for case_id in group}
    committed_retired = set(index.get("retired", []))
    for case_id in sorted((committed | committed_retired) - set(ids) - retired):
        problems.append(
            f"id {case_id}: is in index.json but no case has it."
            " Restore the case or list its id under retired"
        )
    for case_id in sorted(committed_retired & set(ids)):
        problems.append(f"id {case_id}: was retired in index.json and must not be used again")
    return problems


def duplicates(items: list[str]) -> set[str]:
    return {item for item, count in Counter(items).items() if count > 1}


# Output


def render(document: Json) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def render_files(spec: Spec, suite: Suite) -> dict[str, bytes]:
    files = {}
    for group, cases in suite.cases.items():
        files[f"{group}.json"] = render(
            {
                "vector_format": suite.vector_format,
                "spec_version": spec.version,
                "group": group,
                "description": suite.groups[group],
                "cases": cases,
            }
        )
    index = {
        "vector_format": suite.vector_format,
        "spec_version": spec.version,
        "groups": {group: sorted(case["id"] for case in cases) for group, cases in suite.cases.items()},
        "retired": sorted(suite.retired),
    }
    files[INDEX] = render(index)
    return files


def load_schema(path: Path) -> Json:
    schema = load_json(path)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise VectorError([f"{path}: is not a valid JSON Schema: {error.message}"]) from None
    return schema


def owned_group_files(out_dir: Path) -> set[str]:
    """Return the names of the group files that the index already in ``out_dir`` lists.

    These are the files an earlier run wrote, and the only ones a run may
    remove. An index that is missing or unreadable lists none.
    """
    try:
        index = load_json(out_dir / INDEX) if (out_dir / INDEX).is_file() else None
    except VectorError:
        return set()
    groups = index.get("groups") if isinstance(index, dict) else None
    if not isinstance(groups, dict):
        return set()
    # Only plain group names, so that an edited index cannot name a file elsewhere.
    return {f"{group}.json" for group in groups if isinstance(group, str) and GROUP_NAME.fullmatch(group)}


def unlisted_vector_files(out_dir: Path, known: set[str]) -> list[str]:
    """Return the names of the files in ``out_dir`` that contain a vector group but are not in ``known``."""
    names = []
    for path in sorted(out_dir.glob("*.json")):
        if path.name in known:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and "group" in document and "cases" in document:
            names.append(path.name)
    return names


def write_files(out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write the files and remove the group files of the previous index that are no longer generated.

    Returns the names of the removed files. Other files in ``out_dir``
    are left alone.
    """
    owned = owned_group_files(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = sorted(name for name in owned - set(files) if (out_dir / name).is_file())
    for name in removed:
        (out_dir / name).unlink()
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    return removed


def compare_files(out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write the files to a temporary folder and describe each file of out_dir that differs."""
    owned = owned_group_files(out_dir)
    with tempfile.TemporaryDirectory(prefix="vectors-") as temporary:
        fresh = Path(temporary)
        write_files(fresh, files)
        present = {path.name for path in out_dir.glob("*.json")}
        differences = [f"{out_dir / name}: is missing" for name in sorted(set(files) - present)]
        differences += [
            f"{out_dir / name}: is no longer generated" for name in sorted((owned & present) - set(files))
        ]
        differences += [
            f"{out_dir / name}: is a vector file that {INDEX} does not list"
            for name in unlisted_vector_files(out_dir, owned | set(files))
        ]
        differences += [
            f"{out_dir / name}: differs from a fresh run"
            for name in sorted(present & set(files))
            if not filecmp.cmp(fresh / name, out_dir / name, shallow=False)
        ]
        return differences


def generate(paths: Paths) -> dict[str, bytes]:
    """Build, check and render every vector file, or raise VectorError listing each problem."""
    spec = load_spec(paths.spec)
    suite = build_suite(spec, load_yaml(paths.scenarios))
    files = render_files(spec, suite)

    problems, failed = schema_problems(suite, files, load_schema(paths.schema))
    problems += check_references(spec, suite, failed)
    problems += check_ids(suite, load_json(paths.index) if paths.index.exists() else None)
    # Coverage counts only cases that passed their checks, so it waits for them.
    problems = problems or lint_coverage(spec, suite)
    if problems:
        raise VectorError(problems)
    return files


# Command line


@dataclass(frozen=True)
class Paths:
    spec: Path
    scenarios: Path
    out: Path
    index: Path
    schema: Path


def parse_args(argv: list[str] | None) -> tuple[Paths, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh run with the files in --out")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root that the defaults are under")
    parser.add_argument("--spec", type=Path, help="spec to read (default: ROOT/spec/storage.yaml)")
    parser.add_argument(
        "--scenarios", type=Path, help="scenarios to expand (default: ROOT/spec/scenarios.yaml)"
    )
    parser.add_argument(
        "--out", type=Path, help="folder of the vector files (default: ROOT/conformance/vectors)"
    )
    parser.add_argument(
        "--index", type=Path, help="index to keep the case ids stable to (default: OUT/index.json)"
    )
    parser.add_argument(
        "--schema",
        type=Path,
        help="JSON Schema of the vectors (default: ROOT/conformance/vector.schema.json)",
    )
    args = parser.parse_args(argv)

    root: Path = args.root
    out: Path = args.out or root / "conformance" / "vectors"
    paths = Paths(
        spec=args.spec or root / "spec" / "storage.yaml",
        scenarios=args.scenarios or root / "spec" / "scenarios.yaml",
        out=out,
        index=args.index or out / "index.json",
        schema=args.schema or root / "conformance" / "vector.schema.json",
    )
    return paths, bool(args.check)


def main(argv: list[str] | None = None) -> int:
    paths, check = parse_args(argv)
    try:
        files = generate(paths)
    except VectorError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        count = len(error.problems)
        print(
            f"{count} problem{'s' * (count != 1)} found, so the vector files were left as they are",
            file=sys.stderr,
        )
        return 1

    if not check:
        removed = write_files(paths.out, files)
        for name in removed:
            print(
                f"removed {paths.out / name}: the previous {INDEX} lists its group,"
                " which is no longer generated"
            )
        for name in unlisted_vector_files(paths.out, set(files)):
            print(
                f"left {paths.out / name}: it contains a vector group that no {INDEX} lists;"
                " remove it if it is stale, because the runner rejects a folder with it",
                file=sys.stderr,
            )
        print(f"wrote {len(files)} files to {paths.out}")
        return 0

    differing = compare_files(paths.out, files)
    for difference in differing:
        print(difference, file=sys.stderr)
    if differing:
        print(f"The vectors are out of date: run {COMMAND} and commit the result.", file=sys.stderr)
        return 1
    print(f"{len(files)} files in {paths.out} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
