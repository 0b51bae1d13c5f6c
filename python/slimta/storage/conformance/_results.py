"""The result of one case, and the failure of one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FAIL", "PASS", "SKIP", "XFAIL", "XPASS", "CaseResult", "StepFailure"]

PASS = "pass"
FAIL = "fail"
SKIP = "skip"
# A case listed as an expected failure that failed (xfail) or passed (xpass).
XFAIL = "xfail"
XPASS = "xpass"


class StepFailure(Exception):
    """A step did not give what the vector expects, or could not run.

    ``reason`` is the text a report prints. ``expected`` and ``got`` are
    JSON values for machine-readable reports, or None when the failure
    is not a comparison.
    """

    def __init__(self, reason: str, expected: Any = None, got: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expected = expected
        self.got = got

    @classmethod
    def mismatch(cls, expected_text: str, got_text: str, expected: Any, got: Any) -> StepFailure:
        """Return a failure that reads ``expected X, got Y``."""
        return cls(f"expected {expected_text}, got {got_text}", expected, got)


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case.

    ``where`` names the failing part, such as ``step 3 get_message_meta``,
    ``setup``, ``layout`` or ``teardown``; ``step`` is the 1-based step
    number when a step failed.
    """

    case_id: str
    status: str
    reason: str = ""
    where: str = ""
    step: int | None = None
    expected: Any = None
    got: Any = None
    xfail_reason: str | None = None

    @property
    def detail(self) -> str:
        """Return the reason, prefixed with where the case failed."""
        return f"{self.where}: {self.reason}" if self.where else self.reason
