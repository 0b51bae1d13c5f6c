"""The ``pages`` step: following the cursors of a paged listing to its last page.

:func:`follow_pages` calls a page method from a null cursor and passes
each returned cursor back until it is null, failing when a cursor comes
back a second time or no last page comes within :data:`MAX_PAGES`.
:func:`check_listing` compares the ids of all the pages with the step's
``expect``: ``ordered`` needs exactly the expected ids in their order,
and ``unordered`` needs every expected id and no other, allowing
repeats, because the spec lets the unordered listings repeat an id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._count import count as _count
from ._display import render, to_report
from ._engines import Outcome
from ._expect import got_json, got_text
from ._results import StepFailure
from ._values import Variables, VectorValueError, canonical, resolve, same

__all__ = ["MAX_PAGES", "PAGE_MATCHES", "Listing", "check_listing", "follow_pages"]

# The maximum number of pages that one pages step reads before it fails,
# so that an engine whose cursors never end cannot stall the run.
MAX_PAGES = 10_000
PAGE_MATCHES = ("ordered", "unordered")
# The parameter that the runner sets on every page call.
CURSOR = "cursor"


@dataclass(frozen=True)
class Listing:
    """The ids of every page of one listing, in the order the pages returned them."""

    message_ids: list[str]
    pages: int


def follow_pages(
    call: Callable[[dict[str, Any]], Outcome], args: Mapping[str, Any], max_pages: int = MAX_PAGES
) -> Listing:
    """Read every page with ``call``, which calls the page method with the arguments it is given.

    :raises StepFailure: a call failed or returned no page, a cursor came
        back a second time, or no page of the first ``max_pages`` was the last.
    """
    if CURSOR in args:
        raise StepFailure("invalid pages step: args must not have cursor, because the runner passes it")

    message_ids: list[str] = []
    # Each cursor returned so far, with the number of the page that returned it.
    returned: dict[str, int] = {}
    cursor: str | None = None
    for number in range(1, max_pages + 1):
        page_ids, cursor = _page(call({**args, CURSOR: cursor}), number)
        message_ids += page_ids
        if cursor is None:
            return Listing(message_ids, number)
        if cursor in returned:
            raise StepFailure(
                f"page {number} returned the cursor {render(cursor)} of page {returned[cursor]} again,"
                " so following the cursors would loop"
            )
        returned[cursor] = number
    raise StepFailure(f"no last page after {max_pages} pages: every page returned a cursor that was new")


def _page(outcome: Outcome, number: int) -> tuple[list[str], str | None]:
    """Return the ids and the cursor of one page, or raise :class:`StepFailure` when it is no page."""
    if outcome.failed:
        raise StepFailure(f"page {number}: expected a page, got {got_text(outcome)}", None, got_json(outcome))
    value = outcome.value
    if (
        isinstance(value, dict)
        and set(value) == {"message_ids", CURSOR}
        and isinstance(value["message_ids"], list)
        and all(isinstance(item, str) for item in value["message_ids"])
        and (value[CURSOR] is None or isinstance(value[CURSOR], str))
    ):
        return value["message_ids"], value[CURSOR]
    page_form = '{"message_ids": [text, ...], "cursor": text or null}'
    raise StepFailure(f"page {number}: expected {page_form}, got {render(value)}", None, got_json(outcome))


def check_listing(expect: Any, listing: Listing, variables: Variables) -> None:
    """Raise :class:`StepFailure` unless the ids of the listing meet ``expect``."""
    if (
        not isinstance(expect, dict)
        or set(expect) != {"value", "match"}
        or expect["match"] not in PAGE_MATCHES
    ):
        raise StepFailure(
            f"invalid pages step: expect needs a value and the match ordered or unordered,"
            f" not {render(expect)}"
        )
    try:
        expected = resolve(expect["value"], variables)
    except VectorValueError as error:
        raise StepFailure(f"invalid expect: {error}") from None
    if not isinstance(expected, list):
        raise StepFailure(f"invalid expect: a pages step expects a list of ids, not {render(expected)}")

    if expect["match"] == "ordered":
        _check_ordered(expected, listing)
    else:
        _check_unordered(expected, listing)


def _check_ordered(expected: list[Any], listing: Listing) -> None:
    got = listing.message_ids
    if same(expected, got):
        return
    index = next(
        (i for i, (left, right) in enumerate(zip(expected, got, strict=False)) if not same(left, right)),
        min(len(expected), len(got)),
    )
    expected_item = render(expected[index]) if index < len(expected) else "the end"
    got_item = render(got[index]) if index < len(got) else "the end"
    raise StepFailure.mismatch(
        f"{_count(len(expected), 'id')} in order",
        f"{_count(len(got), 'id')} from {_count(listing.pages, 'page')}, first difference at index {index}:"
        f" expected {expected_item}, got {got_item}",
        {"value": to_report(expected), "match": "ordered"},
        {"value": to_report(got), "pages": listing.pages, "first_difference": index},
    )


def _check_unordered(expected: list[Any], listing: Listing) -> None:
    got = listing.message_ids
    expected_keys = {canonical(item) for item in expected}
    got_keys = {canonical(item) for item in got}
    missing = _unique(item for item in expected if canonical(item) not in got_keys)
    unexpected = _unique(item for item in got if canonical(item) not in expected_keys)
    if not missing and not unexpected:
        return

    problems = [
        f"{len(items)} {what}, such as {render(items[0])}"
        for items, what in ((missing, "missing"), (unexpected, "unexpected"))
        if items
    ]
    raise StepFailure.mismatch(
        f"the {_count(len(expected_keys), 'id')} in any order",
        f"{_count(len(got), 'id')} from {_count(listing.pages, 'page')}, {' and '.join(problems)}",
        {"value": to_report(expected), "match": "unordered"},
        {
            "value": to_report(got),
            "pages": listing.pages,
            "missing": to_report(missing),
            "unexpected": to_report(unexpected),
        },
    )


def _unique(items: Iterable[Any]) -> list[Any]:
    found: dict[Any, Any] = {}
    for item in items:
        found.setdefault(canonical(item), item)
    return list(found.values())
