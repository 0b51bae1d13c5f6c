"""Expected-failure files and the reports of a run: text lines and JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._results import FAIL, PASS, SKIP, XFAIL, XPASS, CaseResult

__all__ = ["XfailError", "apply_xfail", "json_report", "load_xfail", "result_line", "summary_line", "totals"]

_TOTAL_NAMES = {PASS: "passed", FAIL: "failed", SKIP: "skipped", XFAIL: "xfailed", XPASS: "xpassed"}


class XfailError(Exception):
    """An expected-failure file cannot be read, or names a case that does not exist."""


def load_xfail(path: Path, known_ids: Iterable[str]) -> dict[str, str]:
    """Read an expected-failure file: one case id and its reason per line, ``#`` starting a comment.

    Returns the reasons by case id.

    :raises XfailError: the file cannot be read, a line has no reason,
        an id repeats, or an id is not a case of the vectors.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise XfailError(f"could not read the expected-failure file {path}: {error}") from None

    known = set(known_ids)
    reasons: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}, line {number}"
        parts = stripped.split(None, 1)
        case_id = parts[0]
        if len(parts) < 2:
            raise XfailError(f"{where}: {case_id} has no reason; write the case id, then why it fails")
        if case_id not in known:
            raise XfailError(f"{where}: unknown case id {case_id!r}; remove it, or check its spelling")
        if case_id in reasons:
            raise XfailError(f"{where}: {case_id} is listed twice")
        reasons[case_id] = parts[1]
    return reasons


def apply_xfail(result: CaseResult, reasons: dict[str, str]) -> CaseResult:
    """Turn the result of a listed case into XFAIL when it failed, or XPASS when it passed."""
    reason = reasons.get(result.case_id)
    if reason is None or result.status == SKIP:
        return result
    status = XFAIL if result.status == FAIL else XPASS
    return dataclasses.replace(result, status=status, xfail_reason=reason)


def result_line(result: CaseResult) -> str:
    """Return the report line of one case, such as ``PASS id`` or ``FAIL id: step 3 ...``."""
    status = result.status
    if status == PASS:
        return f"PASS {result.case_id}"
    if status == XFAIL:
        return f"XFAIL {result.case_id}: {result.detail} (listed as expected: {result.xfail_reason})"
    if status == XPASS:
        return (
            f"XPASS {result.case_id}: passed, but the expected-failure file lists it"
            f" ({result.xfail_reason}); remove it from the file"
        )
    return f"{status.upper()} {result.case_id}: {result.detail}"


def totals(results: Iterable[CaseResult]) -> dict[str, int]:
    """Count the results by status, with the keys passed, failed, skipped, xfailed and xpassed."""
    counts = dict.fromkeys(_TOTAL_NAMES.values(), 0)
    for result in results:
        counts[_TOTAL_NAMES[result.status]] += 1
    return counts


def summary_line(counts: dict[str, int]) -> str:
    """Return ``N passed, N failed, N skipped``, adding the xfailed and xpassed counts when not 0."""
    parts = [f"{counts[name]} {name}" for name in ("passed", "failed", "skipped")]
    parts += [f"{counts[name]} {name}" for name in ("xfailed", "xpassed") if counts[name]]
    return ", ".join(parts)


def json_report(results: list[CaseResult], run: dict[str, Any]) -> dict[str, Any]:
    """Return the machine-readable report: ``run`` facts, each case and the totals."""
    return {**run, "cases": [_case_json(result) for result in results], "totals": totals(results)}


def _case_json(result: CaseResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": result.case_id, "status": result.status}
    if result.status != PASS:
        entry["reason"] = result.reason
    if result.where:
        entry["where"] = result.where
        entry["step"] = result.step
    if result.expected is not None or result.got is not None:
        entry["expected"] = result.expected
        entry["got"] = result.got
    if result.xfail_reason is not None:
        entry["xfail_reason"] = result.xfail_reason
    return entry
