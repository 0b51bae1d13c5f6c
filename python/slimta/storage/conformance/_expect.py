"""Comparing the outcome of a call with the ``expect`` of its step.

``expect`` contains either ``{"value": V, "match": M}`` or ``{"error":
KIND}``. A ``match`` that is left out means ``exact``, and an ``expect``
that is left out means any value that is not an error. With the match
``fields``, ``V`` maps each member of the expected object to an
``expect`` of its own, for results known only in part.
"""

from __future__ import annotations

import collections
import re
from typing import Any

from ._display import bytes_mismatch, is_bytes, render, to_report
from ._engines import Outcome
from ._results import StepFailure
from ._values import Variables, VectorValueError, canonical, resolve, same

__all__ = ["MATCH_MODES", "check_expect", "got_json", "got_text"]

MATCH_MODES = ("exact", "ordered", "unordered", "pattern", "fields", "any")


def got_text(outcome: Outcome) -> str:
    """Return an outcome as a report shows it: the value in JSON, or the error kind and message."""
    if outcome.failed:
        return f"error {outcome.error}: {outcome.message}" if outcome.message else f"error {outcome.error}"
    return render(outcome.value)


def got_json(outcome: Outcome) -> dict[str, Any]:
    """Return an outcome in the form of the JSON report: the wire value, or the error kind and message."""
    if outcome.failed:
        return {"error": outcome.error, "message": outcome.message}
    return {"value": to_report(outcome.value)}


def check_expect(expect: Any, outcome: Outcome, variables: Variables) -> None:
    """Raise :class:`StepFailure` unless the outcome meets ``expect``."""
    if expect is None:
        expect = {"match": "any"}
    if not isinstance(expect, dict) or ("error" in expect) == ("value" in expect or "match" in expect):
        raise StepFailure(f'invalid expect {render(expect)}: it needs either "error" or "value" with "match"')

    if "error" in expect:
        _check_error(expect["error"], outcome)
        return
    _check_value(expect, outcome, variables)


def _check_error(kind: Any, outcome: Outcome) -> None:
    if outcome.error != kind:
        raise StepFailure.mismatch(f"error {kind}", got_text(outcome), {"error": kind}, got_json(outcome))


def _check_value(expect: dict[str, Any], outcome: Outcome, variables: Variables) -> None:
    mode = expect.get("match", "exact")
    if mode not in MATCH_MODES:
        raise StepFailure(f"invalid expect: match {mode!r} is not one of {', '.join(MATCH_MODES)}")
    if mode != "any" and "value" not in expect:
        raise StepFailure(f"invalid expect: match {mode} needs a value")
    if mode == "fields":
        _check_fields(expect["value"], outcome, variables)
        return
    try:
        expected = resolve(expect.get("value"), variables)
    except VectorValueError as error:
        raise StepFailure(f"invalid expect: {error}") from None

    if not outcome.failed and _matches(mode, expected, outcome.value):
        return
    if mode == "exact" and is_bytes(expected) and is_bytes(outcome.value):
        difference = bytes_mismatch(bytes(expected), bytes(outcome.value))
        raise StepFailure.mismatch(
            difference.expected_text,
            difference.got_text,
            {"value": difference.expected_json, "match": mode},
            {"value": difference.got_json, "first_difference": difference.offset},
        )
    report = {"match": mode} if mode == "any" else {"value": to_report(expected), "match": mode}
    raise StepFailure.mismatch(_describe(mode, expected), got_text(outcome), report, got_json(outcome))


def _check_fields(fields: Any, outcome: Outcome, variables: Variables) -> None:
    """Check that the outcome is an object with exactly the members of ``fields``, each meeting its expect."""
    if not isinstance(fields, dict) or not all(isinstance(member, dict) for member in fields.values()):
        raise StepFailure(f"invalid expect: match fields needs an object of expects, not {render(fields)}")
    got = outcome.value
    if outcome.failed or not isinstance(got, dict) or set(got) != set(fields):
        names = ", ".join(sorted(fields)) or "none"
        raise StepFailure.mismatch(
            f"an object with the members {names}",
            got_text(outcome),
            {"members": sorted(fields), "match": "fields"},
            got_json(outcome),
        )

    for name in sorted(fields):
        member = fields[name]
        if "error" in member:
            raise StepFailure(f"invalid expect: member {name} of match fields cannot expect an error")
        try:
            _check_value(member, Outcome(value=got[name]), variables)
        except StepFailure as failure:
            raise StepFailure(
                f"member {name}: {failure.reason}",
                {"member": name, "expected": failure.expected},
                {"member": name, "got": failure.got},
            ) from None


def _matches(mode: str, expected: Any, got: Any) -> bool:
    if mode == "exact":
        return same(expected, got)
    if mode == "ordered":
        return isinstance(got, list) and same(expected, got)
    if mode == "unordered":
        return _same_elements(expected, got)
    if mode == "pattern":
        return _matches_pattern(expected, got)
    return True


def _same_elements(expected: Any, got: Any) -> bool:
    if not isinstance(expected, list) or not isinstance(got, list):
        return False
    return collections.Counter(map(canonical, expected)) == collections.Counter(map(canonical, got))


def _matches_pattern(pattern: Any, got: Any) -> bool:
    if not isinstance(pattern, str):
        raise StepFailure(f"invalid expect: a pattern must be text, not {render(pattern)}")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise StepFailure(
            f"invalid expect: pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None
    return isinstance(got, str) and compiled.fullmatch(got) is not None


def _describe(mode: str, expected: Any) -> str:
    if mode == "unordered":
        return f"{render(expected)} in any order"
    if mode == "pattern":
        return f"text matching {render(expected)}"
    if mode == "any":
        return "any value"
    return render(expected)
