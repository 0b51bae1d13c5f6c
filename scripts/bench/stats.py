"""Medians, paired ratios and the targets of the life-cycle benchmark."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["RATIOS", "TARGET_CELL", "Target", "paired_ratio", "rate_median", "targets"]

TARGET_CELL = (1, 4096)
"""The clients and body size that the speed targets refer to."""

RATIOS = (
    ("ours-1.0", "old-43"),
    ("ours-1.0", "raw-nine"),
    ("ours-short", "old-43"),
    ("ours-short", "python-slimta"),
    ("ours-short", "ours-1.0"),
)
"""The (numerator, denominator) pairs of variants whose speed the report compares."""


@dataclass(frozen=True)
class Target:
    """One target: its goal, the measured value and whether the value meets the goal."""

    name: str
    goal: str
    measured: str
    met: bool | None
    """None when it could not be measured."""


def _rates(cell: dict[str, Any], variant: str) -> list[float]:
    return [round_[variant]["rate"] for round_ in cell["rounds"] if variant in round_]


def rate_median(cell: dict[str, Any], variant: str) -> float | None:
    """Return the median life cycles per second of ``variant`` over the rounds of ``cell``."""
    rates = _rates(cell, variant)
    return statistics.median(rates) if rates else None


def cpu_median(cell: dict[str, Any], variant: str) -> float | None:
    """Return the median server CPU microseconds per life cycle of ``variant`` in ``cell``."""
    values = [round_[variant]["server_cpu_us"] for round_ in cell["rounds"] if variant in round_]
    return statistics.median(values) if values else None


def spread(cell: dict[str, Any], variant: str) -> float | None:
    """Return (max - min) / median of the rates of ``variant`` in ``cell``, as a fraction."""
    rates = _rates(cell, variant)
    if len(rates) < 2:
        return None
    return (max(rates) - min(rates)) / statistics.median(rates)


def paired_ratio(cell: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """Return the median over rounds of rate(numerator) / rate(denominator) in the same round."""
    ratios = [
        round_[numerator]["rate"] / round_[denominator]["rate"]
        for round_ in cell["rounds"]
        if numerator in round_ and denominator in round_
    ]
    return statistics.median(ratios) if ratios else None


def interference(results: dict[str, Any], key: str) -> tuple[float, float] | None:
    """Return the mean and the max over every timed run of ``key``, such as ``other_cores``."""
    values = [
        run[key]
        for cell in results["cells"]
        for round_ in cell["rounds"]
        for run in round_.values()
        if key in run
    ]
    if not values:
        return None
    return statistics.fmean(values), max(values)


def _find_cell(results: dict[str, Any], clients: int, size: int) -> dict[str, Any] | None:
    cells: list[dict[str, Any]] = results["cells"]
    for cell in cells:
        if cell["clients"] == clients and cell["size"] == size:
            return cell
    return None


def _round_trip_target(results: dict[str, Any], variant: str, goal: float, name: str) -> Target:
    probe = results["probes"].get(variant, {}).get("4096")
    goal_text = f"≤ {goal:g} round trips"
    if probe is None:
        return Target(name, goal_text, "not measured", None)
    measured = probe["round_trips"]
    return Target(name, goal_text, f"{measured:g}", measured <= goal)


def _ratio_target(results: dict[str, Any], pair: tuple[str, str], goal: float, name: str) -> Target:
    cell = _find_cell(results, *TARGET_CELL)
    ratio = None if cell is None else paired_ratio(cell, *pair)
    goal_text = f"≥ {goal:g}x"
    if ratio is None:
        return Target(name, goal_text, "not measured", None)
    return Target(name, goal_text, f"{ratio:.2f}x", ratio >= goal)


def targets(results: dict[str, Any]) -> list[Target]:
    """Return the targets of the life-cycle benchmark with what ``results`` measured."""
    return [
        _round_trip_target(results, "ours-1.0", 9, "1.0 life cycle: round trips (one per call)"),
        _round_trip_target(results, "ours-short", 3, "Short life cycle: round trips"),
        _ratio_target(results, ("ours-1.0", "old-43"), 3, "1.0 life cycle vs old sequence"),
        _ratio_target(
            results, ("ours-1.0", "raw-nine"), 0.9, "1.0 life cycle vs plain redis-py (within 10%)"
        ),
        _ratio_target(results, ("ours-short", "old-43"), 6, "Short life cycle vs old sequence"),
        _ratio_target(results, ("ours-short", "python-slimta"), 1.2, "Short life cycle vs python-slimta"),
    ]
