"""The ``slimta-storage`` command: store, list, show, print and delete queued messages, and check a queue.

The queue comes from ``--engine URL`` or the environment variable
``SLIMTA_STORAGE_URL``. There is deliberately no default server, so the
command never writes to a queue that nobody named. Run
``slimta-storage --help`` for the sub-commands.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import email.utils
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import _check_command, conformance
from . import _validate as validate
from ._count import count as _count
from ._errors import InvalidArgument, MessageNotFound, MessageTooLarge, StorageError, StorageUnavailable
from ._escape import escape_text as _escape_text
from ._url import Engine, open_engine
from ._version import SPEC_VERSION, __version__
from .redis._link import is_connection_fault
from .session import MessageInfo, Session

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["main"]

log = logging.getLogger(__name__)

PROG = "slimta-storage"
URL_VARIABLE = "SLIMTA_STORAGE_URL"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE, the status that a shell reports for a program killed by
# SIGPIPE, such as cat in "cat big | head". Python ignores SIGPIPE, so the
# command returns this status itself when its standard output is closed.
EXIT_BROKEN_PIPE = 141

# 9999-12-31T23:59:59Z, the last second that datetime, and so list, can show as an ISO 8601 time.
LAST_ISO_TIMESTAMP = 253_402_300_799.0

SENDER_HEADERS = ("Return-Path", "Sender", "From")
RECIPIENT_HEADERS = ("To", "Cc", "Bcc")


class _RawHeaderPolicy(email.policy.Compat32):
    """The compat32 policy, except that header values keep their 8-bit bytes.

    compat32 turns a value with 8-bit bytes into an email.header.Header,
    and str() of that replaces each such byte with U+FFFD. This policy
    returns the parsed text instead, where each byte is a surrogate.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Return the header value as parsed, with 8-bit bytes as surrogates."""
        return value


_RAW_HEADERS = _RawHeaderPolicy()


class _Parser(argparse.ArgumentParser):
    """An argument parser that lets a failed write of --help or --version reach :func:`main`.

    argparse ignores an OSError when it prints, so with unbuffered output,
    as under PYTHONUNBUFFERED=1, "--help | head" would exit with 0
    while every sub-command exits with EXIT_BROKEN_PIPE.
    """

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (file or sys.stderr).write(message)


Handler = Callable[[Session, argparse.Namespace], int]
# Returns the usage error of a sub-command's options, or None. It runs before the engine is opened.
UsageCheck = Callable[[argparse.Namespace], str | None]


class _UsageError(Exception):
    """An incomplete command line, such as one without an engine URL, which exits with status 2."""


class _CommandError(Exception):
    """A sub-command failure other than a storage error, which exits with status 1."""


class _EngineUrlError(Exception):
    """An error of opening the engine that SLIMTA_STORAGE_URL names, with the exit status of its cause."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _EngineUrl:
    """The engine URL, and whether it came from SLIMTA_STORAGE_URL rather than --engine."""

    text: str
    from_environment: bool


@dataclass(frozen=True)
class _Envelope:
    """The envelope sender and recipients stored in a message's meta."""

    sender: str
    recipients: list[str]


@dataclass(frozen=True)
class _HeaderEnvelope:
    """The envelope found in a message's headers, with sender None when no header named one."""

    sender: str | None
    recipients: list[str]


def main(argv: Sequence[str] | None = None, *, engine: Engine | None = None) -> int:
    """Run the command line and return its exit status.

    ``argv`` defaults to ``sys.argv[1:]``. ``engine`` replaces the
    ``--engine`` option, so that several calls in one process can share
    one memory engine. The caller keeps it open and closes it.
    ``conformance``, which opens engines of its own, has its own options
    and parser in :mod:`slimta.storage.conformance`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv, engine)
    except BrokenPipeError:
        # The reader of stdout went away during --help, or during conformance
        # in a way that its own error handling let through.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str], engine: Engine | None) -> int:
    if argv[:1] == ["conformance"]:
        status = conformance.main(argv[1:])
        sys.stdout.flush()
        return status

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # argparse exits after --help, --version and usage errors.
        sys.stdout.flush()
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE

    with _logging_to_stderr(getattr(args, "verbose", False)):
        return _run(args, engine)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the command line, with one sub-parser per sub-command."""
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        description=(
            "Store, list, show, print and delete the messages of a slimta mail queue, and check a"
            " Redis queue against the layout."
        ),
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    version = f"%(prog)s {__version__} (spec {SPEC_VERSION})"
    parser.add_argument("--version", action="version", version=version)

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_store(commands, common)
    _add_list(commands, common)
    _add_show(commands, common)
    _add_cat(commands, common)
    _add_delete(commands, common)
    _check_command.add_parser(commands, common)
    return parser


_MAIN_EPILOG = f"""\
engine URLs:
  redis://[[user]:password@]host[:port][/offset]
                  four databases offset to offset+3 of a Redis server
                  (port 6379 and offset 0 when omitted)
  rediss://...    the same over TLS
  memory://       an empty queue in this process, gone when the command ends

There is no default engine: pass --engine or set {URL_VARIABLE}.

{PROG} conformance [options] checks a binding against the conformance
vectors; see {PROG} conformance --help.

exit status: 0 on success, 1 when an operation failed, such as a message
larger than the server accepts, 2 on a usage error such as a missing
engine, an invalid URL or an invalid message id, and 141 (128 + SIGPIPE)
when standard output was closed early, as by "| head". check also exits
with 1 when problems remain in the queue.
"""


def _common_options() -> argparse.ArgumentParser:
    # Shared by the main parser and every sub-parser, so the options may
    # come before or after the sub-command. SUPPRESS keeps a sub-parser
    # from overwriting a value given before the sub-command, so an option
    # that was not given is missing from the namespace. The parsers share
    # these action objects: set_defaults() on one parser would change the
    # default of all of them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--engine",
        metavar="URL",
        dest="engine_url",
        default=argparse.SUPPRESS,
        help=f"the queue to use (default: the environment variable {URL_VARIABLE})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help=(
            "log what the library does to stderr, down to debug messages, with times; without it,"
            " only the library's warnings and errors are shown"
        ),
    )
    return common


def _add_store(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "store",
        parents=[common],
        help="store files as new messages and print their ids",
        description=(
            "Store each FILE, byte for byte, as one new message and print its id, one line per file"
            " in order. A FILE of - reads standard input, which may be given once. The envelope"
            " addresses that --sender and"
            " --recipient do not give come from the headers: the sender from Return-Path, else Sender,"
            " else From, and the recipients from To, Cc and Bcc. A message without such addresses is stored"
            " anyway, with an empty sender or no recipients and a warning. The command stops at"
            " the first file that fails; the ids printed before it are stored, and the failed"
            " file leaves nothing behind."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a message file, or - for standard input")
    parser.add_argument(
        "--sender",
        metavar="ADDR",
        type=_parse_sender,
        help="the envelope sender; an empty ADDR ('') is the null sender <> of bounces",
    )
    parser.add_argument(
        "--recipient",
        metavar="ADDR",
        dest="recipients",
        action="append",
        type=_parse_recipient,
        help="an envelope recipient, not empty; repeat the option for several",
    )
    parser.add_argument(
        "--retry",
        metavar="SECONDS",
        type=_parse_retry,
        help=(
            "defer the messages: set their retry time to SECONDS from now, at most"
            " 9999-12-31T23:59:59Z, the last time that list shows in ISO 8601"
        ),
    )
    parser.set_defaults(handler=_run_store, usage_check=_check_store_usage)


def _add_list(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "list",
        parents=[common],
        help="list the messages, one line each",
        description=(
            "List every message, sorted by id: its id, state, size in bytes, retry time and lock."
            " STATE is active (locked), deferred (has a retry time) or incoming (neither). RETRY"
            " is an ISO 8601 time in UTC, or UNIX seconds for a time after the year 9999, which"
            " store --retry never sets. LOCK is the seconds until the lock expires, or inf for"
            " a lock without expiry. A - stands for none. In JSON, retry_timestamp is in UNIX"
            " seconds, and lock_remaining is null for a lock without expiry. A message that"
            " cannot be read, such as one whose id is not valid or whose keys another tool wrote"
            " with the wrong type, is skipped with a warning on stderr that names its id. The"
            " rest is listed, and the exit status is then 1, because the list is incomplete; run"
            " check to find the cause."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.set_defaults(handler=_run_list)


def _add_show(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "show",
        parents=[common],
        help="print the meta of a message",
        description=(
            "Print the meta of a message, one 'key: value' line per key, sorted by key, or a"
            " warning on stderr when it has no meta. Recipients"
            " are shown separated by ', '. Backslashes and characters that are not printable are"
            " shown as Python escapes, such as \\n or \\x01; bytes that are not valid UTF-8 are"
            " shown as \\xNN. With --json, the values are printed as stored, recipients in their"
            " NUL-separated form, and bytes that are not valid UTF-8 as the escapes \\udc80 to \\udcff."
        ),
    )
    parser.add_argument("message_id", metavar="ID", help="the message id")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.set_defaults(handler=_run_show, usage_check=_check_ids_usage)


def _add_cat(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "cat",
        parents=[common],
        help="write the contents of a message to stdout",
        description="Write the contents of a message to standard output, byte for byte, adding nothing.",
    )
    parser.add_argument("message_id", metavar="ID", help="the message id")
    parser.set_defaults(handler=_run_cat, usage_check=_check_ids_usage)


def _add_delete(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "delete",
        parents=[common],
        help="delete messages",
        description=(
            "Delete each message with its meta, contents, retry time and lock. Like Postfix's"
            " postsuper -d, it prints nothing, and an id that is not stored is ignored, so"
            " deleting a message twice is not an error. Every id is checked first, so an invalid"
            " id deletes nothing."
        ),
    )
    parser.add_argument("message_ids", nargs="+", metavar="ID", help="a message id")
    parser.set_defaults(handler=_run_delete, usage_check=_check_ids_usage)


def _parse_retry(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if math.isnan(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a number of at least 0, not {text!r}")

    latest = LAST_ISO_TIMESTAMP - time.time()
    if seconds > latest:
        raise argparse.ArgumentTypeError(
            f"the retry time must be at most 9999-12-31T23:59:59Z, the last time that list shows in"
            f" ISO 8601, so seconds must be at most {latest:.0f}, not {text!r}"
        )
    return seconds


def _parse_sender(text: str) -> str:
    if text and not text.strip():
        raise argparse.ArgumentTypeError(
            f"a sender of only spaces is not an address: {text!r}; pass '' for the null sender"
        )
    _reject_control_characters(text)
    return text


def _parse_recipient(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"a recipient must not be empty or only spaces: {text!r}; give an address such as b@example.net"
        )
    _reject_control_characters(text)
    return text


def _reject_control_characters(address: str) -> None:
    # NUL separates the recipients in the meta, and a line break in an
    # address would start a new SMTP command when a relayer sends it.
    if not _has_no_control_characters(address):
        raise argparse.ArgumentTypeError(f"an address must not contain control characters: {address!r}")


def _check_store_usage(args: argparse.Namespace) -> str | None:
    count = args.files.count("-")
    if count > 1:
        return f"- (standard input) is given {count} times, but standard input can be read only once"
    if count and sys.stdin is None:
        return "- (standard input) is given, but standard input is closed; pass a file, or open it"
    if sys.stdout is None:
        # The ids of the new messages would be lost, and without them the messages cannot be found.
        return "standard output is closed, so the ids of the stored messages could not be printed; open it"
    return None


def _check_ids_usage(args: argparse.Namespace) -> str | None:
    """Check the ID arguments before the engine is opened, and for delete before any is deleted."""
    message_ids = args.message_ids if "message_ids" in args else [args.message_id]
    for message_id in message_ids:
        try:
            validate.message_id(message_id)
        except InvalidArgument:
            return (
                f"invalid message id {message_id!r}: an id is 1 to {validate.MAX_ID_LENGTH} printable ASCII"
                f" characters without spaces, as {PROG} store and list print them"
            )
    return None


class _OneLineFormatter(logging.Formatter):
    """Format a log record as one line in the style of the command's own messages.

    A record with an exception gets the exception's text appended, not a
    traceback, so that a warning stays one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return ``slimta-storage: LEVEL: MESSAGE`` on one line."""
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {record.exc_info[1]}"
        return f"{PROG}: {record.levelname.lower()}: {_one_line(message)}"


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Show the library's log records on stderr: warnings and errors, or everything with ``verbose``.

    The library adds only a NullHandler, so without this handler its
    warnings, such as the one about a server that persists nothing, would
    not be shown. The handler is removed again at the end, so that
    in-process callers such as tests keep their own logging set-up.
    """
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    else:
        handler.setFormatter(_OneLineFormatter())
    level = logging.DEBUG if verbose else logging.WARNING
    handler.setLevel(level)
    logger = logging.getLogger("slimta")
    previous_level = logger.level
    logger.addHandler(handler)
    # Only lower the logger's level, so that -v shows debug records even
    # when a caller set WARNING, and a caller's DEBUG level stays.
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _run(args: argparse.Namespace, engine: Engine | None) -> int:
    """Run the sub-command and turn every expected error into one line on stderr."""
    try:
        _check_usage(args)
        status = _run_on_engine(args, engine)
        # Flush here, so that a failed write is handled below and not at exit.
        if sys.stdout is not None:
            sys.stdout.flush()
        return status
    except (_EngineUrlError, _UsageError, _CommandError, StorageError) as error:
        _print_error(str(error))
        return _error_status(error)
    except BrokenPipeError:
        # The reader of stdout went away, as with "| head". Point stdout at
        # /dev/null so that the flush at exit does not fail a second time.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as error:
        # Standard output could not be written, as on a full disk.
        _silence_stdout()
        _print_error(f"could not write the output: {error.strerror or error}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED


def _error_status(error: Exception) -> int:
    if isinstance(error, _EngineUrlError):
        return error.status
    if isinstance(error, MessageTooLarge):
        # An InvalidArgument, but about the message, not about the command line.
        return EXIT_FAILURE
    if isinstance(error, (_UsageError, InvalidArgument)):
        return EXIT_USAGE
    return EXIT_FAILURE


def _silence_stdout() -> None:
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):
        # An in-process caller replaced stdout with an object without a file descriptor.
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)


def _check_usage(args: argparse.Namespace) -> None:
    """Raise the usage error of the sub-command's options, if any, before the engine is opened."""
    usage_check: UsageCheck | None = getattr(args, "usage_check", None)
    problem = None if usage_check is None else usage_check(args)
    if problem is not None:
        raise _UsageError(problem)


def _run_on_engine(args: argparse.Namespace, engine: Engine | None) -> int:
    if engine is not None:
        return _run_on_session(args, engine.connect())

    url = _engine_url(args)
    with _naming_url_source(url):
        opened = open_engine(url.text)
    try:
        with _naming_url_source(url):
            session = opened.connect()
        return _run_on_session(args, session)
    finally:
        opened.close()


def _run_on_session(args: argparse.Namespace, session: Session) -> int:
    handler: Handler = args.handler
    with session:
        return handler(session, args)


def _engine_url(args: argparse.Namespace) -> _EngineUrl:
    option = getattr(args, "engine_url", None)
    if option:
        return _EngineUrl(str(option), from_environment=False)

    variable = os.environ.get(URL_VARIABLE)
    if not variable:
        raise _UsageError(
            f"no engine given: pass --engine URL or set {URL_VARIABLE}, such as redis://localhost:6379/0"
        )
    return _EngineUrl(variable, from_environment=True)


@contextlib.contextmanager
def _naming_url_source(url: _EngineUrl) -> Iterator[None]:
    """Add to an error of opening the engine that its URL came from SLIMTA_STORAGE_URL, when it did."""
    try:
        yield
    except StorageError as error:
        if not url.from_environment:
            raise
        status = EXIT_USAGE if isinstance(error, InvalidArgument) else EXIT_FAILURE
        message = f"{error} (the engine URL came from the environment variable {URL_VARIABLE})"
        raise _EngineUrlError(message, status) from error


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _print_warning(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(message: str) -> str:
    return " ".join(message.split())


# store


def _run_store(session: Session, args: argparse.Namespace) -> int:
    for path in args.files:
        contents = _read_file(path)
        envelope = _choose_envelope(contents, args, path)

        now = time.time()
        meta = _initial_meta(now, envelope)
        # The clock has moved on since --retry was checked at parse time, so
        # cap the time at the last one that list shows rather than reject it.
        retry = None if args.retry is None else min(now + args.retry, LAST_ISO_TIMESTAMP)
        message_id = _store_message(session, contents, meta, retry)
        _print_stored_id(session, message_id)
    return EXIT_OK


def _print_stored_id(session: Session, message_id: str) -> None:
    """Print the id of a stored message, deleting the message when the id cannot be printed.

    Nobody could find a message whose id was lost, so it would stay in the
    queue for nothing.
    """
    try:
        print(message_id, flush=True)
    except OSError:
        session.delete_message(message_id)
        raise


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()

    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise _CommandError(f"could not read {path}: {error.strerror or error}") from error


def _choose_envelope(contents: bytes, args: argparse.Namespace, path: str) -> _Envelope:
    """Take the envelope from the options, and what they leave out from the headers."""
    from_headers = _envelope_from_headers(contents)
    sender = args.sender if args.sender is not None else from_headers.sender
    recipients = args.recipients or from_headers.recipients

    if sender is None:
        _print_warning(f"{path}: no sender in Return-Path, Sender or From; storing an empty sender")
    if not recipients:
        _print_warning(f"{path}: no recipients in To, Cc or Bcc; storing none")
    return _Envelope(sender or "", recipients)


def _envelope_from_headers(contents: bytes) -> _HeaderEnvelope:
    """Find the envelope sender and recipients in the headers of a raw message.

    The sender is the first address of Return-Path, else Sender, else
    From; ``Return-Path: <>`` gives the null sender ``""``. The
    recipients are the addresses of To, Cc and Bcc. Headers that cannot
    be parsed give no addresses instead of an error.
    """
    try:
        headers = email.parser.BytesHeaderParser(policy=_RAW_HEADERS).parsebytes(contents)
        return _HeaderEnvelope(_header_sender(headers), _header_recipients(headers))
    except Exception:
        # The email package can raise on malformed input that its authors
        # did not foresee. A queue must store every message, so a failure
        # here only loses the addresses.
        log.warning("could not parse the headers of a message", exc_info=True)
        return _HeaderEnvelope(None, [])


def _header_sender(headers: Any) -> str | None:
    for name in SENDER_HEADERS:
        values = _header_values(headers, name)
        if not values:
            continue

        if name == "Return-Path" and values[0].strip() == "<>":
            return ""
        addresses = _addresses(values)
        if addresses:
            return addresses[0]
    return None


def _header_recipients(headers: Any) -> list[str]:
    values: list[str] = []
    for name in RECIPIENT_HEADERS:
        values += _header_values(headers, name)
    return _addresses(values)


def _header_values(headers: Any, name: str) -> list[str]:
    return [str(value) for value in headers.get_all(name, [])]


def _addresses(values: list[str]) -> list[str]:
    found = [_decode_utf8(address) for _, address in email.utils.getaddresses(values)]
    return [address for address in found if _is_usable_address(address)]


def _decode_utf8(text: str) -> str:
    """Decode the 8-bit bytes that the parser kept as surrogates as UTF-8 where they are valid.

    Bytes that are not valid UTF-8 stay surrogates, which the engines
    store as the original bytes.
    """
    return text.encode("ascii", "surrogateescape").decode("utf-8", "surrogateescape")


def _is_usable_address(address: str) -> bool:
    # NUL separates the recipients in the meta, and no other control
    # character belongs in an envelope address either.
    return bool(address) and _has_no_control_characters(address)


def _has_no_control_characters(address: str) -> bool:
    return not any(ord(character) < 0x20 or character == "\x7f" for character in address)


def _initial_meta(now: float, envelope: _Envelope) -> dict[str, str]:
    return {
        "timestamp": repr(now),
        "attempts": "0",
        "sender": envelope.sender,
        "recipients": "".join("\0" + recipient for recipient in envelope.recipients),
    }


def _store_message(session: Session, contents: bytes, meta: Mapping[str, str], retry: float | None) -> str:
    """Store one message with its meta, contents and retry time in one atomic step, and return its id.

    A crash or a fault leaves nothing half stored, unlike a claim followed
    by separate writes.
    """
    return session.store_message(dict(meta), contents, retry)


# list


# The most skipped messages that list names one warning each; a count follows for the rest.
MAX_SKIP_WARNINGS = 20


def _run_list(session: Session, args: argparse.Namespace) -> int:
    infos, skipped = _describe_all(session)

    if args.json:
        print(json.dumps([_info_to_json(info) for info in infos], indent=2))
    else:
        rows: list[tuple[str, ...]] = [("ID", "STATE", "SIZE", "RETRY", "LOCK")]
        rows += [_info_to_row(info) for info in infos]
        for line in _format_table(rows):
            print(line)

    if skipped:
        sys.stdout.flush()
        _print_warning(
            f"skipped {_count(skipped, 'stored message')} that could not be read, so the list is"
            f" incomplete; run {PROG} check to find the cause"
        )
        return EXIT_FAILURE
    return EXIT_OK


def _describe_all(session: Session) -> tuple[list[MessageInfo], int]:
    """Describe every stored message, sorted by id, and count the messages that could not be read.

    Skips the ids that were deleted between listing and describing, and
    warns about each message that cannot be read.
    """
    infos = []
    skipped = 0
    for message_id in sorted(session.get_all_messages()):
        try:
            infos.append(session.describe_message(message_id))
        except MessageNotFound:
            log.debug("message %s was deleted while listing", message_id)
        except InvalidArgument:
            # Another writer stored an id this library would not create.
            skipped += 1
            _warn_skipped(skipped, f"skipped the stored id {message_id!r}, which is not a valid message id")
        except StorageUnavailable as error:
            if is_connection_fault(error):
                raise
            # An error reply about this message's keys, such as WRONGTYPE
            # for a key that another tool wrote with another type.
            skipped += 1
            _warn_skipped(skipped, f"skipped message {message_id}, which could not be read: {error}")
    return infos, skipped


def _warn_skipped(skipped: int, message: str) -> None:
    if skipped <= MAX_SKIP_WARNINGS:
        _print_warning(message)
    if skipped == MAX_SKIP_WARNINGS:
        _print_warning("not naming further skipped messages, only counting them")


def _message_state(info: MessageInfo) -> str:
    """Name the state of a message: active (locked), deferred (has a retry time) or incoming."""
    if info.lock_remaining is not None:
        return "active"
    if info.retry is not None:
        return "deferred"
    return "incoming"


def _info_to_row(info: MessageInfo) -> tuple[str, ...]:
    size = "-" if info.size is None else str(info.size)
    retry = "-" if info.retry is None else _format_time(info.retry)
    return (info.message_id, _message_state(info), size, retry, _format_lock(info.lock_remaining))


def _info_to_json(info: MessageInfo) -> dict[str, Any]:
    remaining = info.lock_remaining
    return {
        "id": info.message_id,
        "state": _message_state(info),
        "size": info.size,
        "retry": None if info.retry is None else _format_time(info.retry),
        "retry_timestamp": info.retry,
        "locked": remaining is not None,
        "lock_remaining": remaining if remaining is not None and math.isfinite(remaining) else None,
    }


def _format_time(timestamp: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        # datetime only supports the years 1 to 9999, so show UNIX seconds beyond them.
        return repr(timestamp)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_lock(remaining: float | None) -> str:
    if remaining is None:
        return "-"
    if math.isinf(remaining):
        return "inf"
    return f"{remaining:.1f}"


def _format_table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


# show


def _run_show(session: Session, args: argparse.Namespace) -> int:
    meta = session.get_message_meta(args.message_id)

    if args.json:
        print(json.dumps({"id": args.message_id, "meta": meta}, indent=2, sort_keys=True))
        return EXIT_OK

    if not meta:
        # A 'key: value' line would be read as a meta key, so the warning goes to stderr.
        _print_warning(f"message {args.message_id} has no meta")
    for key in sorted(meta):
        value_text = _format_meta_value(key, meta[key])
        print(f"{_escape_text(key)}: {value_text}" if value_text else f"{_escape_text(key)}:")
    return EXIT_OK


def _format_meta_value(key: str, value: str) -> str:
    """Format one meta value for a terminal: recipients as a list, unprintable characters escaped."""
    if key == "recipients":
        return ", ".join(_escape_text(recipient) for recipient in _split_recipients(value))
    return _escape_text(value)


def _split_recipients(value: str) -> list[str]:
    """Split the ``recipients`` meta value, each recipient preceded by NUL, into a list."""
    parts = value.split("\0")
    if parts[0] == "":
        parts = parts[1:]
    return parts


# cat and delete


def _run_cat(session: Session, args: argparse.Namespace) -> int:
    contents = session.get_message_contents(args.message_id)
    if contents is None:
        raise _CommandError(
            f"message {args.message_id} has no contents: its id was claimed but no contents were written"
        )

    sys.stdout.flush()
    sys.stdout.buffer.write(contents)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _run_delete(session: Session, args: argparse.Namespace) -> int:
    # _check_ids_usage checked every id before the engine was opened.
    for message_id in args.message_ids:
        session.delete_message(message_id)
    return EXIT_OK
