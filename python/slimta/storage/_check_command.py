"""``slimta-storage check``: check a Redis queue against the layout, and repair what is safe.

:mod:`slimta.storage.cli` adds this sub-command with :func:`add_parser`;
the work is done by :func:`slimta.storage.redis.check_queue`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ._count import count as _count
from ._errors import InvalidArgument
from ._escape import escape_text
from ._validate import MAX_LOCK_LENGTH
from .redis import CheckReport, IncompleteMessage, LayoutKey, RedisSession, check_queue
from .redis._check import DEFAULT_LOCK_EXPIRY, DEFAULT_MIN_AGE, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .session import Session

__all__ = ["add_parser"]

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1

# The mark after a finding that the repair left as it was.
_CHANGED = "  [kept: it changed since the scan; run check again]"

_DESCRIPTION = """\
Check the four databases of a Redis queue against the layout and report:
- messages whose meta or contents are missing, at least --min-age old or of
  unknown age because their meta has no timestamp;
- orphans: meta, contents and lock keys named like a UUID, and retry_queue
  members, whose id is not in message_ids;
- keys that are not part of the layout, and keys of the wrong type;
- keys of another queue whose four databases overlap these;
- members of message_ids that are not valid message ids;
- lock keys without an expiry.

Without --repair nothing is written. The databases are read in pages with
SCAN, SSCAN and ZSCAN, never with KEYS.
"""
_EPILOG = """\
--repair deletes the incomplete messages of known age, removes the orphans
and sets an expiry on the lock keys without one. Each change is one atomic
script that checks its finding again first, so a message that a writer
stored or completed since the scan is kept. Keys that are not part of the
layout or have the wrong type are only reported, since they may belong to
another application. When keys of an overlapping queue are found, --repair
changes nothing and reports why on stderr.

A message stored with an empty meta has no meta hash, because Redis keeps
no empty hashes, so check reports it as "no meta, contents present" of
unknown age, and --repair-unknown-age deletes it. Writers should always
store a timestamp meta key.

exit status: 0 when nothing is wrong or everything found was repaired, 1
when problems remain, a repair was rejected or the server cannot be used, 2
on a usage error such as a memory:// engine.
"""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``check`` sub-parser to the sub-parsers of the ``slimta-storage`` parser."""
    parser = commands.add_parser(
        "check",
        parents=[common],
        help="check a Redis queue against the layout, and repair what is safe",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--min-age",
        metavar="SECONDS",
        type=_parse_min_age,
        default=DEFAULT_MIN_AGE,
        help=f"report incomplete messages at least this old (default: {DEFAULT_MIN_AGE:g})",
    )
    parser.add_argument("--repair", action="store_true", help="fix what is safe to fix, and report it")
    parser.add_argument(
        "--repair-unknown-age",
        action="store_true",
        help=(
            "with --repair, also delete incomplete messages of unknown age. That deletes a message that"
            " a writer claimed a moment ago and has not written yet, so use it only while no writer"
            " that claims ids before writing them is running"
        ),
    )
    parser.add_argument(
        "--non-uuid-orphans",
        action="store_true",
        help=(
            "count keys named like any valid message id, not only like a UUID, as orphans, so that"
            " --repair removes them. Use it only when no other application keeps keys in the"
            " meta, contents and lock databases of the queue"
        ),
    )
    parser.add_argument(
        "--lock-expiry",
        metavar="SECONDS",
        type=_parse_lock_expiry,
        default=DEFAULT_LOCK_EXPIRY,
        help=(
            "the expiry --repair sets on lock keys without one, so that a current holder keeps"
            f" the lock that long (default: {DEFAULT_LOCK_EXPIRY:g})"
        ),
    )
    parser.add_argument(
        "--page-size",
        metavar="N",
        type=_parse_page_size,
        default=DEFAULT_PAGE_SIZE,
        help=(
            f"the COUNT hint of each SCAN, SSCAN and ZSCAN page, and the number of ids per script"
            f" call, from 1 to {MAX_PAGE_SIZE}. Larger pages block the server longer per call"
            f" (default: {DEFAULT_PAGE_SIZE})"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    parser.set_defaults(handler=_run_check, usage_check=_check_usage)


def _check_usage(args: argparse.Namespace) -> str | None:
    if args.repair_unknown_age and not args.repair:
        return (
            "--repair-unknown-age needs --repair: pass both to also delete incomplete messages of unknown age"
        )
    return None


def _parse_min_age(text: str) -> float:
    seconds = _parse_number(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number of at least 0, not {text!r}")
    return seconds


def _parse_lock_expiry(text: str) -> float:
    seconds = _parse_number(text)
    if not 0 < seconds <= MAX_LOCK_LENGTH:
        raise argparse.ArgumentTypeError(
            f"seconds must be greater than 0 and at most {MAX_LOCK_LENGTH}, not {text!r}"
        )
    return seconds


def _parse_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None


def _parse_page_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid page size: {text!r}") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"the page size must be from 1 to {MAX_PAGE_SIZE}, not {text!r}")
    return size


def _run_check(session: Session, args: argparse.Namespace) -> int:
    if not isinstance(session, RedisSession):
        raise InvalidArgument(
            "engine", "memory://", "check applies to Redis layouts only, so pass a redis:// or rediss:// URL"
        )

    report = check_queue(
        session,
        min_age=args.min_age,
        repair=args.repair,
        repair_unknown_age=args.repair_unknown_age,
        non_uuid_orphans=args.non_uuid_orphans,
        lock_expiry=args.lock_expiry,
        page_size=args.page_size,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for line in _report_lines(report):
            print(line)

    if report.repair_rejected is not None:
        sys.stdout.flush()
        print(f"slimta-storage: error: {report.repair_rejected}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_CLEAN if report.clean else EXIT_PROBLEMS


# The text report


def _report_lines(report: CheckReport) -> list[str]:
    first, last = report.offset, report.offset + 3
    lines = [f"checked databases {first} to {last}: {_count(report.stored_messages, 'stored message')}"]
    lines += _incomplete_lines(report)
    lines += _orphan_lines(report)
    lines += _lock_lines(report)
    lines += _section(
        "keys that are not part of the layout",
        [_layout_key_line(item) for item in report.foreign_keys],
        "check never removes them, since they may belong to another application: move them to"
        " other databases or delete them yourself. Orphans of a writer whose ids are not UUIDs may"
        " be among them, and --non-uuid-orphans counts those as orphans",
    )
    lines += _section(
        "keys of another queue, whose databases overlap these",
        [_layout_key_line(item) for item in report.overlap_keys],
        "each queue uses four databases from its offset, so queues on one server need offsets at"
        " least 4 apart; check --repair changes nothing until they are",
    )
    lines += _section(
        "keys of the wrong type",
        [_layout_key_line(item) for item in report.wrong_types],
        "check never removes them: find the writer that stored them, then fix or delete them yourself",
    )
    lines += _section(
        "members of message_ids that are not valid message ids",
        [_shown(message_id) for message_id in report.invalid_ids],
        "a valid id is 1 to 255 printable ASCII characters without spaces; the library cannot read"
        " these messages, so remove them with SREM once their writer is done with them",
    )
    lines += [f"skipped: {note}" for note in report.skipped_checks]
    lines.append(_summary(report))
    return lines


def _section(title: str, items: list[str], advice: str = "") -> list[str]:
    if not items:
        return []
    lines = [f"{title}: {len(items)}", *(f"  {item}" for item in items)]
    if advice:
        lines.append(f"  ({advice})")
    return lines


def _incomplete_lines(report: CheckReport) -> list[str]:
    deleted = (
        set() if report.repairs is None else {item.message_id for item in report.repairs.deleted_incomplete}
    )
    items = []
    for item in report.incomplete:
        action = ""
        if report.repairs is not None:
            action = _incomplete_action(item, item.message_id in deleted, report.repairs.unknown_age)
        items.append(f"{_incomplete_text(item)}{action}")
    advice = ""
    if any(item.missing == ("meta",) and item.age is None for item in report.incomplete):
        advice = (
            "a message stored with an empty meta has no meta hash and shows as 'no meta, contents"
            " present'; --repair-unknown-age deletes such messages"
        )
    lines = _section(
        f"incomplete messages at least {report.min_age:g} s old or of unknown age", items, advice
    )
    if report.recent_incomplete:
        lines.append(
            f"incomplete messages younger than {report.min_age:g} s, not reported: {report.recent_incomplete}"
        )
    return lines


# The text that names the missing and the present parts, for each value of IncompleteMessage.missing.
_MISSING_TEXT = {
    ("meta",): "no meta, contents present",
    ("contents",): "no contents, meta present",
    ("meta", "contents"): "no meta and no contents",
}


def _incomplete_text(item: IncompleteMessage) -> str:
    missing = _MISSING_TEXT[item.missing]
    if item.age is not None:
        age = f"age {item.age:.0f} s"
    elif item.timestamp is None:
        age = "age unknown: no timestamp meta key"
    else:
        age = f"age unknown: timestamp {item.timestamp!r} is not a number"
    return f"{_shown(item.message_id)}  {missing}, {age}"


def _incomplete_action(item: IncompleteMessage, deleted: bool, unknown_age: bool) -> str:
    if deleted:
        return "  [deleted]"
    if item.age is None and not unknown_age:
        return "  [kept: pass --repair-unknown-age to delete it]"
    return _CHANGED


def _orphan_lines(report: CheckReport) -> list[str]:
    removed = set() if report.repairs is None else set(report.repairs.removed_orphans)
    items = []
    for orphan in report.orphans:
        where = f"retry_queue in db {orphan.database}" if orphan.kind == "retry" else f"db {orphan.database}"
        action = ""
        if report.repairs is not None:
            action = "  [removed]" if orphan in removed else _CHANGED
        items.append(f"{orphan.kind:<8}  {_shown(orphan.message_id)}  ({where}){action}")
    return _section("orphans, whose id is not in message_ids", items)


def _lock_lines(report: CheckReport) -> list[str]:
    expired = set() if report.repairs is None else set(report.repairs.expired_locks)
    items = []
    for message_id in report.locks_without_expiry:
        action = ""
        if report.repairs is not None:
            action = f"  [expires in {report.repairs.lock_expiry:g} s]" if message_id in expired else _CHANGED
        items.append(f"{_shown(message_id)}{action}")
    return _section("lock keys without an expiry", items)


def _layout_key_line(item: LayoutKey) -> str:
    text = f"db {item.database}  {_shown(item.key)}  ({item.type})"
    if item.expected is not None:
        text += f", the layout expects a {item.expected}"
    return text


def _summary(report: CheckReport) -> str:
    found = f"{_count(report.found, 'problem')} found"
    if report.repair_rejected is not None:
        return f"{found}; the repair was rejected, so nothing was changed"
    if report.clean:
        return _clean_summary(report)
    if report.repairs is not None:
        remain = "1 remains" if report.problems == 1 else f"{report.problems} remain"
        return f"{found}, {report.repaired} repaired, {remain}"
    if report.found == 0:
        return "no problems found, but some checks were skipped, as listed above"
    return f"{found}{_repair_advice(report)}"


def _clean_summary(report: CheckReport) -> str:
    if report.repaired == 1:
        return "repaired the 1 problem found"
    if report.repaired:
        return f"repaired all {report.repaired} problems found"
    return "no problems found"


def _repair_advice(report: CheckReport) -> str:
    """Say what a run with --repair would fix, or that it would fix nothing."""
    safe, unknown_age = _repairable(report)
    unknown_text = f"the {_count(unknown_age, 'incomplete message')} of unknown age"
    if safe == 0 and unknown_age == 0:
        return ", which --repair cannot fix; follow the advice above"
    if safe == 0:
        return f"; run again with --repair --repair-unknown-age to delete {unknown_text}"

    fixed = "it" if report.found == 1 else "them"
    if safe < report.found:
        fixed = f"{safe} of them"
    advice = f"; run again with --repair to fix {fixed}"
    if unknown_age:
        advice += f", and add --repair-unknown-age to delete {unknown_text} too"
    return advice


def _repairable(report: CheckReport) -> tuple[int, int]:
    """Count the findings that --repair fixes, and those that only --repair-unknown-age adds.

    While keys of an overlapping queue are found, the repair is rejected,
    so it fixes nothing.
    """
    if report.overlap_keys:
        return 0, 0
    unknown_age = sum(1 for item in report.incomplete if item.age is None)
    known_age = len(report.incomplete) - unknown_age
    return known_age + len(report.orphans) + len(report.locks_without_expiry), unknown_age


def _shown(text: str) -> str:
    """Show an id or key name escaped, and in quotes when it is empty or has spaces."""
    escaped = escape_text(text)
    if not escaped or " " in escaped:
        return f"'{escaped}'"
    return escaped
