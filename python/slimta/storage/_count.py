"""Counts of things in messages for people, such as "1 problem" and "2 problems"."""

from __future__ import annotations

__all__ = ["count"]


def count(number: int, noun: str) -> str:
    """Return ``number`` with ``noun``, adding an s unless the number is 1."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
