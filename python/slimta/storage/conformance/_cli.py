"""``slimta-storage conformance``: play the vectors against a binding and report each case.

The exit status is 0 when every case passed, was skipped or failed as
listed in the expected-failure file. It is 1 when a case failed or a
listed case passed, and 2 on a usage error, such as missing vectors, an
engine that cannot be used or an adapter that cannot start.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._validate import redact_url
from ..testing import RedisServer, RedisServerError
from ._adapter_client import DEFAULT_TIMEOUT, AdapterStartError, AdapterTarget
from ._redis import RedisSide, RedisSideError
from ._report import XfailError, apply_xfail, json_report, load_xfail, result_line, summary_line, totals
from ._results import CaseResult
from ._runner import EngineChoice, Runner
from ._targets import BindingInfo, InProcessTarget, Target
from ._vectors import Case, VectorError, VectorSet, load_vectors, version_numbers

__all__ = ["VECTORS_VARIABLE", "build_parser", "find_vectors", "main"]

log = logging.getLogger(__name__)

PROG = "slimta-storage conformance"
VECTORS_VARIABLE = "SLIMTA_CONFORMANCE_VECTORS"
# The vectors of a source checkout: python/slimta/storage/conformance/ is
# four folders below the repository root. An installed package usually
# has no such folder there, and the search goes on.
CHECKOUT_VECTORS = Path(__file__).resolve().parent.joinpath(*[".."] * 4, "conformance", "vectors").resolve()
# The offset on a throwaway server: not 0, so that a binding that ignores
# the offset misses every layout check.
THROWAWAY_OFFSET = 4

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The run cannot start: bad options, missing vectors or an engine that cannot be used."""


@dataclass
class _Options:
    vectors: Path
    cases: list[Case]
    vector_set: VectorSet
    xfail: dict[str, str]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conformance suite and return the exit status; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # argparse exits after --help and usage errors.
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE

    with _logging_to_stderr(args.verbose):
        try:
            return _run(args)
        except UsageError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:
            # The reader of stdout went away, as with "| head". Point stdout at
            # /dev/null so that the flush at exit does not fail a second time.
            _silence_stdout()
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of ``slimta-storage conformance``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Play the conformance vectors against the Python engines in this process, or against any"
            " binding through an adapter command that speaks the line protocol of conformance/README.md."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--vectors",
        metavar="DIR",
        help=(
            f"the folder of vector files (default: ${VECTORS_VARIABLE}, else conformance/vectors of the"
            " source checkout, else ./conformance/vectors)"
        ),
    )
    parser.add_argument(
        "--engine",
        default="memory",
        metavar="ENGINE",
        help=(
            "memory or memory:// (the default); redis, a throwaway redis-server that the runner starts and"
            " stops; or redis://HOST:PORT/OFFSET, four empty databases of a running server"
        ),
    )
    parser.add_argument(
        "--adapter",
        metavar="COMMAND",
        help="run the binding through this adapter command, split like a shell would but run without one",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long the adapter may take for each reply (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--select",
        action="append",
        metavar="PATTERN",
        help="run only the cases whose id matches this shell-style pattern; repeat for several",
    )
    parser.add_argument(
        "--xfail",
        metavar="FILE",
        help="the expected-failure file: one case id and its reason per line",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON report instead of lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the runner does to stderr")
    return parser


_EPILOG = """\
output: one line per case (PASS id, FAIL id: where: expected X, got Y,
SKIP id: reason, XFAIL or XPASS id: ...), then the totals.

exit status: 0 when no case failed, 1 when a case failed or a case of
the expected-failure file passed, 2 on a usage error.
"""


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number greater than 0, not {text!r}")
    return seconds


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Log warnings, such as adapter restarts, to stderr, and everything down to debug with ``verbose``.

    The handler is removed again at the end, so that in-process callers
    such as tests keep their own logging set-up.
    """
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    else:
        handler.setFormatter(_LowerLevelFormatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("slimta")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def find_vectors(option: str | None) -> Path:
    """Return the vector folder: the option, else the environment variable, else a checkout's or ./.

    :raises UsageError: the named folder does not exist, or none was found.
    """
    named = option or os.environ.get(VECTORS_VARIABLE)
    if named:
        path = Path(named)
        if not path.is_dir():
            source = "--vectors" if option else VECTORS_VARIABLE
            raise UsageError(f"the vector folder {path} of {source} does not exist")
        return path
    for path in (CHECKOUT_VECTORS, Path("conformance", "vectors")):
        if path.is_dir():
            return path
    raise UsageError(
        f"no vectors found: pass --vectors DIR or set {VECTORS_VARIABLE}; looked in {CHECKOUT_VECTORS}"
        " and ./conformance/vectors"
    )


def _run(args: argparse.Namespace) -> int:
    options = _load_options(args)
    with contextlib.ExitStack() as stack:
        target = _start_target(args, stack)
        info = _handshake(target)
        _warn_on_older_spec(info.spec_version, options.vector_set.spec_version)
        kind = "memory" if args.engine == "memory" else "redis"
        if f"engine:{kind}" not in info.capabilities:
            raise UsageError(
                f"the binding {info.name} lacks the capability engine:{kind}; choose another --engine"
            )
        engine, redis_side = _open_engine(args.engine, stack)

        runner = Runner(target, info, engine, redis_side)
        results = _run_cases(runner, options, args.json)
        run = {
            "binding": info.to_json(),
            "target": target.describe(),
            "engine": _engine_json(engine),
            "vectors": {
                "directory": str(options.vectors),
                "vector_format": options.vector_set.vector_format,
                "spec_version": options.vector_set.spec_version,
            },
            "xfail_file": args.xfail,
        }

    counts = totals(results)
    if args.json:
        print(json.dumps(json_report(results, run), indent=2, sort_keys=True))
    else:
        print(summary_line(counts))
    return EXIT_FAILURE if counts["failed"] or counts["xpassed"] else EXIT_OK


def _warn_on_older_spec(binding_version: str, vectors_version: str) -> None:
    """Print a warning when the binding implements an older spec than the vectors, or another major version.

    The run goes on. Cases that need a newer spec than the binding's are
    skipped, and cases of rules that changed between the versions may fail.
    """
    binding = version_numbers(binding_version)
    vectors = version_numbers(vectors_version)
    if binding is None or vectors is None:
        problem = "cannot be compared with"
        outcome = "every case runs, and cases of rules that differ between the two may fail"
    elif binding[0] != vectors[0]:
        problem = "has another major version than"
        outcome = "cases of rules that differ between the two may fail"
    elif binding < vectors:
        problem = "is older than"
        outcome = "cases that need a newer spec are skipped"
    else:
        return
    print(
        f"{PROG}: warning: the binding's spec_version {binding_version} {problem} the vectors'"
        f" spec_version {vectors_version}; {outcome}",
        file=sys.stderr,
    )


def _load_options(args: argparse.Namespace) -> _Options:
    # Check the engine option before anything starts; _open_engine uses it.
    if args.engine == "memory://":
        # The spelling that the main command line's --engine takes.
        args.engine = "memory"
    if args.engine not in ("memory", "redis"):
        _parse_redis_url(args.engine)
    directory = find_vectors(args.vectors)
    try:
        vector_set = load_vectors(directory)
    except VectorError as error:
        raise UsageError(str(error)) from None

    cases = list(vector_set.cases)
    if args.select:
        for pattern in args.select:
            if not any(fnmatch.fnmatchcase(case.id, pattern) for case in cases):
                raise UsageError(f"--select {pattern!r} matches no case id in {directory}")
        cases = [
            case for case in cases if any(fnmatch.fnmatchcase(case.id, pattern) for pattern in args.select)
        ]

    xfail: dict[str, str] = {}
    if args.xfail:
        try:
            xfail = load_xfail(Path(args.xfail), (case.id for case in vector_set.cases))
        except XfailError as error:
            raise UsageError(str(error)) from None
    return _Options(directory, cases, vector_set, xfail)


def _open_engine(choice: str, stack: contextlib.ExitStack) -> tuple[EngineChoice, RedisSide | None]:
    """Return the engine of ``--engine`` and, for Redis, the runner's clients after checking the databases."""
    if choice == "memory":
        return EngineChoice("memory"), None
    if choice == "redis":
        server = _start_throwaway_server(stack)
        engine = EngineChoice("redis", server.host, server.port, THROWAWAY_OFFSET)
    else:
        engine = _parse_redis_url(choice)

    side = RedisSide(engine.host, engine.port, engine.offset)
    stack.callback(side.close)
    try:
        side.check_empty()
    except RedisSideError as error:
        raise UsageError(str(error)) from None
    # Registered after the check, so that databases the runner did not
    # find empty are never emptied. Runs before the clients close.
    stack.callback(_flush_quietly, side)
    return engine, side


def _start_throwaway_server(stack: contextlib.ExitStack) -> RedisServer:
    server = RedisServer()
    try:
        server.start()
    except RedisServerError as error:
        raise UsageError(f"could not start a throwaway redis-server: {error}") from None
    stack.callback(server.stop)
    log.debug("started a throwaway redis-server on port %d", server.port)
    return server


class _LowerLevelFormatter(logging.Formatter):
    """Show the level in lower case, as in the runner's own ``warning:`` lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (the name logging defines)
        """Return the formatted line with ``levelname`` in lower case."""
        return super().formatMessage(
            logging.makeLogRecord({**record.__dict__, "levelname": record.levelname.lower()})
        )


def _parse_redis_url(url: str) -> EngineChoice:
    # Errors show the URL with its password hidden, because they end up in logs.
    redacted = redact_url(url)
    if not url.startswith("redis://"):
        raise UsageError(
            f"--engine must be memory, memory://, redis or redis://HOST:PORT/OFFSET, not {redacted!r}"
        )
    usage = "use redis://HOST:PORT/OFFSET, such as redis://127.0.0.1:6400/4"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts = None
    if parts is None:
        # Raised outside the except block: urlsplit's error, kept as the
        # context, could hold a part of the password.
        raise UsageError(f"invalid --engine URL {redacted!r}: {usage}")
    offset = parts.path.strip("/")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(f"--engine {redacted!r}: the runner takes no user, password or options; {usage}")
    if not parts.hostname or port is None or not offset.isdigit():
        raise UsageError(f"--engine {redacted!r} needs a host, a port and an offset: {usage}")
    return EngineChoice("redis", parts.hostname, port, int(offset))


def _start_target(args: argparse.Namespace, stack: contextlib.ExitStack) -> Target:
    target: Target
    if args.adapter is None:
        target = InProcessTarget()
    else:
        try:
            target = AdapterTarget(args.adapter, args.timeout)
        except (AdapterStartError, ValueError) as error:
            raise UsageError(f"invalid --adapter command: {error}") from None
    stack.callback(target.close)
    return target


def _handshake(target: Target) -> BindingInfo:
    try:
        return target.start()
    except AdapterStartError as error:
        raise UsageError(str(error)) from None


def _run_cases(runner: Runner, options: _Options, quiet: bool) -> list[CaseResult]:
    results = []
    for case in options.cases:
        result = apply_xfail(runner.run_case(case), options.xfail)
        results.append(result)
        if not quiet:
            print(result_line(result), flush=True)
    return results


def _engine_json(engine: EngineChoice) -> dict[str, Any]:
    if engine.kind == "memory":
        return {"kind": "memory"}
    return {"kind": "redis", "host": engine.host, "port": engine.port, "offset": engine.offset}


def _flush_quietly(side: RedisSide) -> None:
    try:
        side.flush()
    except RedisSideError as error:
        log.warning("could not empty the databases after the run: %s", error)
