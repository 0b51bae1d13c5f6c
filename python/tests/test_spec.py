"""The spec is well formed, consistent, and matches the Python binding.

JSON Schema checks the shape of spec/storage.yaml. The cross references
that a schema cannot follow (error kinds, rule ids and type names) and the
match between the spec and the Python classes are checked here.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import cache
from typing import Any

import pytest
import yaml
from conftest import SPEC
from jsonschema import Draft202012Validator

import slimta.storage
from slimta.storage import Session, StorageError, memory
from slimta.storage import redis as redis_engine

SCHEMA = SPEC.with_name("storage.schema.json")

# Public members of Session that the spec does not list.
PYTHON_EXTENSIONS = {
    "describe_message",
    "closed",
    "iter_all_messages",
    "iter_deferred_messages",
    "iter_active_messages",
}

# Methods that take a message id but do nothing for an id that is not stored.
UNKNOWN_ID_EXCEPTIONS = {"delete_message", "unlock_message"}


@cache
def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return schema


def methods() -> list[dict[str, Any]]:
    return list(load_spec()["methods"])


def all_methods() -> list[dict[str, Any]]:
    """Return the session methods and the engine methods."""
    return methods() + list(load_spec()["engine_methods"])


def method_ids() -> list[str]:
    return [method["name"] for method in methods()]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def names_in_backticks(text: str) -> set[str]:
    """Return the names in backticks, without the arguments of a call such as `f(x)`."""
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)[^`]*`", text))


# Shape


def test_schema_is_valid() -> None:
    Draft202012Validator.check_schema(load_schema())


def test_spec_matches_schema() -> None:
    validator = Draft202012Validator(load_schema())

    errors = validator.iter_errors(load_spec())
    problems = [f"{list(error.absolute_path)}: {error.message}" for error in errors]

    assert problems == []


@pytest.mark.parametrize(
    ("section", "field"),
    [("types", "name"), ("errors", "kind"), ("methods", "name"), ("rules", "id"), ("engines", "name")],
)
def test_spec_names_unique(section: str, field: str) -> None:
    names = [entry[field] for entry in load_spec()[section]]

    assert len(names) == len(set(names))


# Cross references


def test_method_errors_exist() -> None:
    kinds = {error["kind"] for error in load_spec()["errors"]}

    for method in all_methods():
        assert set(method["errors"]) <= kinds, method["name"]


def test_method_rules_exist() -> None:
    rule_ids = {rule["id"] for rule in load_spec()["rules"]}

    for method in all_methods():
        assert set(method.get("rules", [])) <= rule_ids, method["name"]


def test_method_types_exist() -> None:
    type_names = {entry["name"] for entry in load_spec()["types"]}

    for method in all_methods():
        assert {param["type"] for param in method["params"]} <= type_names, method["name"]
        assert method["returns"]["type"] in type_names, method["name"]


def test_constructor_types_exist() -> None:
    type_names = {entry["name"] for entry in load_spec()["types"]}

    for engine in load_spec()["engines"]:
        assert {param["type"] for param in engine["constructor"]["params"]} <= type_names, engine["name"]


def test_rules_referenced_or_global() -> None:
    # A rule that no method lists must hold for every method, so its
    # statement names no method in particular.
    referenced = {rule_id for method in all_methods() for rule_id in method.get("rules", [])}
    method_names = {method["name"] for method in all_methods()}

    for rule in load_spec()["rules"]:
        if rule["id"] not in referenced:
            assert names_in_backticks(rule["statement"]) & method_names == set(), rule["id"]


def test_rule_statements_name_known_methods() -> None:
    # Backticked names in a rule are methods, error kinds or parameters.
    spec = load_spec()
    known = {method["name"] for method in all_methods()}
    known |= {error["kind"] for error in spec["errors"]}
    known |= {param["name"] for method in all_methods() for param in method["params"]}

    for rule in spec["rules"]:
        assert names_in_backticks(rule["statement"]) <= known, rule["id"]


def test_unknown_id_errors_match() -> None:
    for method in methods():
        takes_id = any(param["type"] == "message_id" for param in method["params"])
        raises = "message_not_found" in method["errors"]
        expected = takes_id and method["name"] not in UNKNOWN_ID_EXCEPTIONS
        assert raises == expected, method["name"]
        assert ("unknown-id" in method.get("rules", [])) == expected, method["name"]


def test_methods_raise_session_closed() -> None:
    for method in methods():
        expected = method["name"] != "close"
        assert ("session_closed" in method["errors"]) == expected, method["name"]


def test_methods_with_params_validate() -> None:
    for method in methods():
        if method["params"]:
            assert "invalid_argument" in method["errors"], method["name"]


def test_since_not_after_version() -> None:
    spec = load_spec()
    entries = spec["methods"] + spec["rules"]

    for entry in entries:
        name = entry.get("name", entry.get("id"))
        assert version_tuple(entry["since"]) <= version_tuple(spec["version"]), name


def test_changelog_starts_at_version() -> None:
    spec = load_spec()

    assert spec["changelog"][0]["version"] == spec["version"]


def test_layout_four_databases() -> None:
    indexes = [database["index"] for database in load_spec()["redis_layout"]["databases"]]

    assert indexes == [0, 1, 2, 3]


# Lifecycle


def lifecycle_states() -> dict[str, dict[str, Any]]:
    return {state["name"]: state for state in load_spec()["lifecycle"]["states"]}


def lifecycle_transitions() -> list[dict[str, Any]]:
    return list(load_spec()["lifecycle"]["transitions"])


def test_lifecycle_state_names_unique() -> None:
    names = [state["name"] for state in load_spec()["lifecycle"]["states"]]

    assert len(names) == len(set(names))


def test_lifecycle_transitions_name_methods() -> None:
    names = set(method_ids())

    for transition in lifecycle_transitions():
        assert transition["method"] in names, transition


def test_lifecycle_transitions_name_states() -> None:
    states = lifecycle_states()

    for transition in lifecycle_transitions():
        assert transition["to"] in states, transition
        assert transition.get("from", transition["to"]) in states, transition


def test_lifecycle_transitions_unique() -> None:
    keys = [(item.get("from"), item["to"], item["method"]) for item in lifecycle_transitions()]

    assert len(keys) == len(set(keys))


def test_lifecycle_has_start() -> None:
    starts = [transition for transition in lifecycle_transitions() if "from" not in transition]

    assert starts != []


def test_lifecycle_states_reachable() -> None:
    reached = {transition["to"] for transition in lifecycle_transitions() if "from" not in transition}
    changed = True
    while changed:
        before = len(reached)
        reached |= {item["to"] for item in lifecycle_transitions() if item.get("from") in reached}
        changed = len(reached) != before

    assert reached == set(lifecycle_states())


def test_lifecycle_final_states_end() -> None:
    leaving = {
        item["from"] for item in lifecycle_transitions() if "from" in item and item["from"] != item["to"]
    }

    for name, state in lifecycle_states().items():
        assert (name in leaving) != state.get("final", False), name


# The Python binding


def test_spec_version_matches() -> None:
    assert load_spec()["version"] == slimta.storage.SPEC_VERSION


def test_session_public_members() -> None:
    public = {name for name in dir(Session) if not name.startswith("_")}

    assert public == set(method_ids()) | PYTHON_EXTENSIONS


def test_session_closed_is_property() -> None:
    assert isinstance(inspect.getattr_static(Session, "closed"), property)


@pytest.mark.parametrize("method", methods(), ids=method_ids())
def test_session_signature(method: dict[str, Any]) -> None:
    parameters = list(inspect.signature(getattr(Session, method["name"])).parameters.values())[1:]

    assert [parameter.name for parameter in parameters] == [param["name"] for param in method["params"]]
    for parameter, param in zip(parameters, method["params"], strict=True):
        expected = param.get("default", inspect.Parameter.empty)
        assert parameter.default == expected, parameter.name
        assert parameter.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, parameter.name


@pytest.mark.parametrize("method", methods(), ids=method_ids())
def test_session_summary(method: dict[str, Any]) -> None:
    docstring = inspect.getdoc(getattr(Session, method["name"]))

    assert docstring is not None
    assert docstring.splitlines()[0] == method["summary"]


@pytest.mark.parametrize("error", load_spec()["errors"], ids=lambda error: error["kind"])
def test_error_class_exists(error: dict[str, Any]) -> None:
    cls = getattr(slimta.storage, error["python"])

    assert cls.kind == error["kind"]
    assert issubclass(cls, StorageError)
    assert error["python"] in slimta.storage.__all__


def test_error_classes_in_spec() -> None:
    kinds = {error["kind"] for error in load_spec()["errors"]}
    exported = [getattr(slimta.storage, name) for name in slimta.storage.__all__]
    subclasses = [item for item in exported if isinstance(item, type) and issubclass(item, StorageError)]

    for cls in subclasses:
        if cls is not StorageError:
            assert cls.kind in kinds, cls.__name__


def constructor_params(engine_name: str) -> list[dict[str, Any]]:
    engine = next(engine for engine in load_spec()["engines"] if engine["name"] == engine_name)
    params: list[dict[str, Any]] = engine["constructor"]["params"]
    return params


@pytest.mark.parametrize(("engine_name", "module"), [("memory", memory), ("redis", redis_engine)])
def test_engine_constructor(engine_name: str, module: Any) -> None:
    # The spec's parameters come first, in order, with their defaults. Any
    # further Python options have defaults too.
    spec_params = constructor_params(engine_name)
    parameters = list(inspect.signature(module.new).parameters.values())

    assert [parameter.name for parameter in parameters[: len(spec_params)]] == [
        param["name"] for param in spec_params
    ]
    for parameter, param in zip(parameters, spec_params, strict=False):
        assert parameter.default == param["default"], parameter.name
    for parameter in parameters[len(spec_params) :]:
        assert parameter.default is not inspect.Parameter.empty, parameter.name


def test_redis_new_params() -> None:
    parameters = inspect.signature(redis_engine.new).parameters

    assert list(parameters)[:3] == ["host", "port", "offset"]
    assert parameters["host"].default == "localhost"
    assert parameters["port"].default == 6379
    assert parameters["offset"].default == 0


@pytest.mark.parametrize("engine_class", [memory.MemoryEngine, redis_engine.RedisEngine])
def test_engine_has_connect(engine_class: type) -> None:
    connect = load_spec()["engine_methods"][0]
    parameters = list(inspect.signature(getattr(engine_class, connect["name"])).parameters)

    assert connect["name"] == "connect"
    assert parameters == ["self"]
