"""Tests of the ``slimta-storage`` command line.

Most tests call :func:`slimta.storage.cli.main` in this process, on both
engines of the ``kit`` fixture, passing the engine in so that several
calls share one queue. The tests named test_console_script_*,
test_unreachable_* and test_missing_engine_console run
``python -m slimta.storage`` in a subprocess instead.
"""

from __future__ import annotations

import email.parser
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import OFFSET, EngineKit, corpus_files

from slimta.storage import Session, StorageUnavailable, cli, memory
from slimta.storage import redis as redis_engine
from slimta.storage.testing import RedisServer

DATABASES = range(OFFSET, OFFSET + 4)
# A message with a sender and a recipient, so that store prints no warning.
PLAIN = b"From: f@x\nTo: t@x\n\nbody\n"


@dataclass
class Result:
    """The exit status and output of one run of the command line."""

    status: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        """The lines of stdout, decoded."""
        return self.out.decode().splitlines()


@pytest.fixture(autouse=True, scope="module")
def persistence_warned(redis_server: RedisServer) -> None:
    """Connect to the test server once, before the tests of this module.

    The engine warns once per server and process that the test server
    persists nothing, and the command line shows that warning on stderr.
    Connecting here first keeps it out of the stderr that tests capture.
    """
    engine = redis_engine.from_url(redis_server.url(OFFSET))
    with engine.connect() as session:
        session.get_all_messages()
    engine.close()


@pytest.fixture
def run(kit: EngineKit, capsysbinary: pytest.CaptureFixture[bytes]) -> Runner:
    """Run the command line in this process on the kit's engine."""
    return Runner(kit, capsysbinary)


@pytest.fixture
def redis_run(clean_redis: RedisServer, capsysbinary: pytest.CaptureFixture[bytes]) -> Iterator[Runner]:
    """Run the command line in this process on a Redis engine of the test server only."""
    engine = redis_engine.from_url(clean_redis.url(OFFSET))
    yield Runner(EngineKit("redis", engine, None, clean_redis), capsysbinary)
    engine.close()


class Runner:
    """Calls :func:`cli.main` on one engine and captures its exit status and output."""

    def __init__(self, kit: EngineKit, capture: pytest.CaptureFixture[bytes]) -> None:
        self.kit = kit
        self.capture = capture

    def __call__(self, *args: str) -> Result:
        self.capture.readouterr()
        status = cli.main(list(args), engine=self.kit.engine)
        captured = self.capture.readouterr()
        return Result(status, captured.out, captured.err.decode())

    def store(self, *args: str) -> str:
        """Store one message and return its id."""
        result = self("store", *args)
        assert result.status == 0, result.err
        assert len(result.lines) == 1
        return result.lines[0]

    def meta(self, message_id: str) -> dict[str, str]:
        with self.kit.connect() as session:
            return session.get_message_meta(message_id)


def console(*args: str, url: str | None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m slimta.storage`` with SLIMTA_STORAGE_URL set to ``url``, or unset."""
    environment = dict(os.environ)
    environment.pop("SLIMTA_STORAGE_URL", None)
    if url is not None:
        environment["SLIMTA_STORAGE_URL"] = url
    command = [sys.executable, "-m", "slimta.storage", *args]
    return subprocess.run(command, env=environment, capture_output=True, timeout=60, check=False)


def unused_port() -> int:
    """Return a loopback port that nothing listens on, at least right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def without_persistence_warning(stderr: bytes) -> list[str]:
    """Return the lines of a subprocess's stderr, less the warning that the test server persists nothing."""
    return [line for line in stderr.decode().splitlines() if "persists nothing" not in line]


def key_counts(server: RedisServer) -> list[int]:
    """Return the number of keys in each database of the queue, with a plain client."""
    return [server.client(database).dbsize() for database in DATABASES]


def write_message(tmp_path: Path, contents: bytes, name: str = "message.eml") -> str:
    path = tmp_path / name
    path.write_bytes(contents)
    return str(path)


# The corpus round trip


def test_corpus_round_trip(run: Runner) -> None:
    files = corpus_files()
    assert len(files) == 48

    stored = run("store", *map(str, files))
    assert stored.status == 0, stored.err
    ids = stored.lines
    assert len(ids) == 48
    assert len(set(ids)) == 48
    for message_id in ids:
        assert uuid.UUID(message_id).version == 4

    listed = run("list")
    assert listed.status == 0
    assert listed.lines[0].split() == ["ID", "STATE", "SIZE", "RETRY", "LOCK"]
    assert sorted(line.split()[0] for line in listed.lines[1:]) == sorted(ids)

    for message_id, path in zip(ids, files, strict=True):
        printed = run("cat", message_id)
        assert printed.status == 0
        assert printed.out == path.read_bytes(), path.name

    deleted = run("delete", *ids)
    assert deleted.status == 0
    assert deleted.out == b""
    assert run("list").lines == ["ID  STATE  SIZE  RETRY  LOCK"]
    if run.kit.server is not None:
        assert key_counts(run.kit.server) == [0, 0, 0, 0]


def test_console_script_corpus(clean_redis: RedisServer) -> None:
    url = clean_redis.url(OFFSET)
    files = corpus_files()

    stored = console("store", *map(str, files), url=url)
    assert stored.returncode == 0, stored.stderr
    ids = stored.stdout.decode().split()
    assert len(ids) == 48
    assert key_counts(clean_redis) == [1, 48, 48, 0]

    listed = console("list", "--json", url=url)
    assert listed.returncode == 0
    assert sorted(entry["id"] for entry in json.loads(listed.stdout)) == sorted(ids)

    crlf = files.index(files[0].with_name("msg_26.txt"))
    printed = console("cat", ids[crlf], url=url)
    assert printed.returncode == 0
    assert printed.stdout == files[crlf].read_bytes()

    deleted = console("delete", *ids, url=url)
    assert deleted.returncode == 0
    assert deleted.stdout == b""
    assert key_counts(clean_redis) == [0, 0, 0, 0]


def test_console_script_engine_option(clean_redis: RedisServer, tmp_path: Path) -> None:
    path = write_message(tmp_path, b"To: a@example.com\n\nhi\n")
    url = clean_redis.url(OFFSET)

    before = console("--engine", url, "store", path, url=None)
    after = console("store", "--engine", url, path, url=None)

    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    assert clean_redis.client(OFFSET + 2).dbsize() == 2


# store: the envelope


def test_store_envelope_from_headers(run: Runner) -> None:
    message_id = run.store(str(corpus_files()[0].with_name("msg_20.txt")))

    meta = run.meta(message_id)
    assert meta["sender"] == "bbb@zzz.org"
    assert meta["recipients"] == "\0bbb@zzz.org\0ccc@zzz.org\0ddd@zzz.org\0eee@zzz.org"
    assert meta["attempts"] == "0"
    assert abs(float(meta["timestamp"]) - time.time()) < 60


def test_store_sender_header_order(run: Runner, tmp_path: Path) -> None:
    cases = [
        (b"Return-Path: <r@x>\nSender: s@x\nFrom: f@x\n", "r@x"),
        (b"Sender: s@x\nFrom: f@x\n", "s@x"),
        (b"From: Someone <f@x>\n", "f@x"),
        (b"Return-Path: <>\nFrom: f@x\n", ""),
    ]
    for headers, sender in cases:
        path = write_message(tmp_path, headers + b"To: t@x\n\nbody\n")
        assert run.meta(run.store(path))["sender"] == sender, headers


def test_store_envelope_from_options(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    message_id = run.store("--sender", "s@y", "--recipient", "a@x", "--recipient", "b@y", path)

    meta = run.meta(message_id)
    assert meta["sender"] == "s@y"
    assert meta["recipients"] == "\0a@x\0b@y"


def test_store_null_sender_option(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    message_id = run.store("--sender", "", path)

    assert run.meta(message_id)["sender"] == ""


@pytest.mark.parametrize("recipient", ["", " ", "a@x\nb@y", "a@x\x7f"])
def test_store_bad_recipient_rejected(run: Runner, tmp_path: Path, recipient: str) -> None:
    path = write_message(tmp_path, PLAIN)

    result = run("store", "--recipient", "a@x", "--recipient", recipient, path)

    assert result.status == 2
    assert result.out == b""
    assert "argument --recipient: " in result.err
    with run.kit.connect() as session:
        assert session.get_all_messages() == []


def test_store_bad_sender_rejected(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    result = run("store", "--sender", "s@x\r\nRCPT TO:<b@y>", path)

    assert result.status == 2
    assert "argument --sender: " in result.err
    with run.kit.connect() as session:
        assert session.get_all_messages() == []


def test_store_without_addresses_warns(run: Runner) -> None:
    path = corpus_files()[0].with_name("msg_11.txt")

    result = run("store", str(path))

    assert result.status == 0
    assert "no sender" in result.err
    assert "no recipients" in result.err
    meta = run.meta(result.lines[0])
    assert meta["sender"] == ""
    assert meta["recipients"] == ""


def test_store_with_addresses_silent(run: Runner) -> None:
    result = run("store", str(corpus_files()[0]))

    assert result.status == 0
    assert result.err == ""


def test_store_crlf_message(run: Runner) -> None:
    path = corpus_files()[0].with_name("msg_26.txt")
    contents = path.read_bytes()
    assert b"\r\n" in contents

    message_id = run.store(str(path))

    assert run("cat", message_id).out == contents
    assert run.meta(message_id)["recipients"] == "\0timbo@jeeves.wooster.local"


def test_store_binary_message(run: Runner, tmp_path: Path) -> None:
    contents = (
        b"From: J\xe9r\xf4me <j@example.com>\r\nTo: a@x\x00y, b@example.net\r\n"
        b"Subject: \xff\xfe\x00\r\n\r\n" + bytes(range(256)) + b"\n.\r\n"
    )
    path = write_message(tmp_path, contents)

    result = run("store", path)

    assert result.status == 0, result.err
    assert run("cat", result.lines[0]).out == contents
    assert run.meta(result.lines[0])["sender"] == "j@example.com"


def test_store_8bit_addresses(run: Runner, tmp_path: Path) -> None:
    headers = b"From: <jos\xc3\xa9@example.com>\r\nTo: a@x\x00y, <c@\xff.x>,\r\n  b@example.net\r\n\r\n"
    path = write_message(tmp_path, headers + b"body\r\n")

    message_id = run.store(path)

    meta = run.meta(message_id)
    assert meta["sender"] == "jos\u00e9@example.com"
    assert meta["recipients"] == "\0c@\udcff.x\0b@example.net"
    if run.kit.server is not None:
        stored = run.kit.server.client(OFFSET + 1).hget(message_id, "recipients")
        assert stored == b"\0c@\xff.x\0b@example.net"


def test_store_stdin(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = b"From: f@x\r\nTo: t@x\r\n\r\n\x00\xff\r\n"
    stdin = FakeStdin(contents)
    monkeypatch.setattr(sys, "stdin", stdin)

    message_id = run.store("-")

    assert run("cat", message_id).out == contents


class FakeStdin:
    def __init__(self, contents: bytes) -> None:
        self.buffer = io.BytesIO(contents)


def test_store_stdin_twice_rejected(run: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(PLAIN))
    path = write_message(tmp_path, PLAIN)

    result = run("store", "-", path, "-")

    assert result.status == 2
    assert result.out == b""
    assert result.err.count("\n") == 1
    assert "- (standard input) is given 2 times" in result.err
    with run.kit.connect() as session:
        assert session.get_all_messages() == []


def test_store_empty_file(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, b"")

    result = run("store", path)

    assert result.status == 0
    assert run("cat", result.lines[0]).out == b""


def test_store_retry_option(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    message_id = run.store("--retry", "600", path)

    with run.kit.connect() as session:
        assert session.get_deferred_messages() == [message_id]
    entry = json.loads(run("list", "--json").out)[0]
    assert entry["state"] == "deferred"
    assert abs(entry["retry_timestamp"] - (time.time() + 600)) < 60
    assert entry["retry"].endswith("Z")


def test_store_retry_invalid(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    for value in ("-1", "nan", "soon"):
        result = run("store", "--retry", value, path)
        assert result.status == 2, value
        assert "seconds" in result.err


def test_store_retry_beyond_year_9999(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    for value in ("1e300", "inf", str(cli.LAST_ISO_TIMESTAMP)):
        result = run("store", "--retry", value, path)
        assert result.status == 2, value
        assert "9999-12-31T23:59:59Z" in result.err
    with run.kit.connect() as session:
        assert session.get_all_messages() == []


def test_store_retry_up_to_year_9999(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    seconds = cli.LAST_ISO_TIMESTAMP - time.time() - 3600

    run.store("--retry", repr(seconds), path)

    entry = json.loads(run("list", "--json").out)[0]
    assert entry["retry"].startswith("9999-12-31T")


def test_list_shows_huge_retry_as_seconds(run: Runner, tmp_path: Path) -> None:
    message_id = run.store(write_message(tmp_path, PLAIN))
    with run.kit.connect() as session:
        session.set_message_retry(message_id, 1e300)

    row = run("list").lines[1].split()

    assert row[3] == "1e+300"
    assert "UNIX seconds for a time after the year 9999" in " ".join(
        run("list", "--help").out.decode().split()
    )


def test_store_missing_file(run: Runner, tmp_path: Path) -> None:
    present = write_message(tmp_path, PLAIN)
    missing = str(tmp_path / "missing.eml")

    result = run("store", present, missing)

    assert result.status == 1
    assert len(result.lines) == 1
    assert result.err.count("\n") == 1
    assert "missing.eml" in result.err
    with run.kit.connect() as session:
        assert session.get_all_messages() == result.lines


def test_store_failure_leaves_nothing(kit: EngineKit, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Session, *args: object) -> None:
        raise StorageUnavailable("contents write failed", host="127.0.0.1", port=1, operation="test")

    # store writes one message in one atomic step, so no other call may write.
    for method in ("store_message", "claim_message_id", "set_message_meta", "set_message_contents"):
        monkeypatch.setattr(Session, method, fail)

    result = run("store", str(corpus_files()[0]))

    assert result.status == 1
    assert result.out == b""
    assert result.err == "slimta-storage: error: contents write failed\n"
    with kit.connect() as session:
        assert session.get_all_messages() == []
    if kit.server is not None:
        assert key_counts(kit.server) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("closed", "arguments", "needle"),
    [
        ("stdout", ["store", "MESSAGE"], "standard output is closed"),
        ("stdin", ["store", "-"], "standard input is closed"),
    ],
)
def test_store_with_closed_stream(
    clean_redis: RedisServer, tmp_path: Path, closed: str, arguments: list[str], needle: str
) -> None:
    # A shell's >&- or <&- starts Python with sys.stdout or sys.stdin set to None.
    message = write_message(tmp_path, PLAIN)
    command = [sys.executable, "-m", "slimta.storage", "--engine", clean_redis.url(OFFSET), *arguments]
    command = [message if argument == "MESSAGE" else argument for argument in command]
    redirect = ">&-" if closed == "stdout" else "<&-"

    completed = subprocess.run(
        f"{shlex.join(command)} {redirect}", shell=True, capture_output=True, text=True, check=False
    )

    assert completed.returncode == 2
    assert needle in completed.stderr
    assert "Traceback" not in completed.stderr
    assert clean_redis.client(OFFSET).scard("message_ids") == 0


def test_delete_checks_ids_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{unused_port()}/0"

    status = cli.main(["--engine", url, "delete", str(uuid.uuid4()), "bad id"])

    err = capsys.readouterr().err
    assert status == 2
    assert "invalid message id 'bad id'" in err
    assert "claim_message_id" not in err
    assert "refused" not in err


def test_store_header_parser_crash(run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: email.parser.BytesHeaderParser, contents: bytes) -> None:
        raise IndexError("parser bug")

    monkeypatch.setattr(email.parser.BytesHeaderParser, "parsebytes", crash)

    result = run("store", write_message(tmp_path, PLAIN))

    assert result.status == 0
    assert "no sender" in result.err
    # The library's warning is shown on one line, without a traceback.
    assert "slimta-storage: warning: could not parse the headers of a message: parser bug\n" in result.err
    assert "Traceback" not in result.err
    assert run("cat", result.lines[0]).out == PLAIN


def test_store_too_large_exits_one(tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN + b"x" * (1024 * 1024))

    with RedisServer({"proto-max-bulk-len": "1mb"}) as server:
        result = console("store", path, url=server.url(0))
        stored = server.client(0).scard("message_ids")

    errors = without_persistence_warning(result.stderr)
    assert result.returncode == 1
    assert result.stdout == b""
    assert len(errors) == 1
    assert "over the limit of 1048576 bytes" in errors[0]
    assert stored == 0


# list


def test_list_states(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, b"To: t@x\n\n12345")
    incoming = run.store(path)
    deferred = run.store("--retry", "60", path)
    active = run.store(path)
    with run.kit.connect() as session:
        assert session.lock_message(active, 300)

    rows = {line.split()[0]: line.split() for line in run("list").lines[1:]}

    assert rows[incoming][1:] == ["incoming", str(len(b"To: t@x\n\n12345")), "-", "-"]
    assert rows[deferred][1] == "deferred"
    assert rows[deferred][3].endswith("Z")
    assert rows[active][1] == "active"
    assert 250 < float(rows[active][4]) <= 300


def test_list_sorted(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    ids = [run.store(path) for _ in range(5)]

    listed = [line.split()[0] for line in run("list").lines[1:]]

    assert listed == sorted(ids)


def test_list_json(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    message_id = run.store(path)
    with run.kit.connect() as session:
        session.lock_message(message_id, 30)
        claimed = session.claim_message_id()

    entries = {entry["id"]: entry for entry in json.loads(run("list", "--json").out)}

    assert entries[message_id]["state"] == "active"
    assert entries[message_id]["size"] == len(PLAIN)
    assert entries[message_id]["locked"] is True
    assert 0 < entries[message_id]["lock_remaining"] <= 30
    assert entries[message_id]["retry"] is None
    assert entries[claimed] == {
        "id": claimed,
        "state": "incoming",
        "size": None,
        "retry": None,
        "retry_timestamp": None,
        "locked": False,
        "lock_remaining": None,
    }


def test_list_empty_json(run: Runner) -> None:
    result = run("list", "--json")

    assert result.status == 0
    assert json.loads(result.out) == []


def test_list_skips_vanished_id(run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message_id = run.store(write_message(tmp_path, PLAIN))
    vanished = str(uuid.uuid4())
    listing = Session.get_all_messages

    def list_with_vanished(self: Session) -> list[str]:
        return [*listing(self), vanished]

    monkeypatch.setattr(Session, "get_all_messages", list_with_vanished)

    result = run("list")

    assert result.status == 0
    assert [line.split()[0] for line in result.lines[1:]] == [message_id]


def replace_key(server: RedisServer, database: int, key: str, kind: str) -> None:
    """Replace a key of the queue with one of another type, as another tool might write it."""
    client = server.client(OFFSET + database)
    client.delete(key)
    if kind == "hash":
        client.hset(key, "a", "b")
    else:
        client.set(key, "x")
    client.close()


def test_list_skips_wrong_type_message(redis_run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    good = redis_run.store(path)
    broken = redis_run.store(path)
    assert redis_run.kit.server is not None
    replace_key(redis_run.kit.server, 2, broken, "hash")

    result = redis_run("list")

    warnings = result.err.splitlines()
    assert result.status == 1
    assert [line.split()[0] for line in result.lines[1:]] == [good]
    assert len(warnings) == 2
    assert warnings[0].startswith(
        f"slimta-storage: warning: skipped message {broken}, which could not be read"
    )
    assert "WRONGTYPE" in warnings[0]
    assert warnings[1].startswith("slimta-storage: warning: skipped 1 stored message that could not be read,")


def test_list_json_skips_wrong_type(redis_run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    good = redis_run.store(path)
    broken = redis_run.store(path)
    assert redis_run.kit.server is not None
    replace_key(redis_run.kit.server, 2, broken, "hash")

    result = redis_run("list", "--json")

    assert result.status == 1
    assert [item["id"] for item in json.loads(result.out)] == [good]
    assert broken in result.err


def test_list_survives_string_meta(redis_run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)
    good = redis_run.store(path)
    broken = redis_run.store(path)
    assert redis_run.kit.server is not None
    replace_key(redis_run.kit.server, 1, broken, "string")

    result = redis_run("list")

    listed = [line.split()[0] for line in result.lines[1:]]
    assert good in listed
    # Listing reads no meta today; if it ever does, the message must be skipped with a warning.
    if broken not in listed:
        assert result.status == 1
        assert f"skipped message {broken}" in result.err
    else:
        assert result.status == 0
        assert result.err == ""


def test_list_names_at_most_twenty_skipped(redis_run: Runner, tmp_path: Path) -> None:
    good = redis_run.store(write_message(tmp_path, PLAIN))
    assert redis_run.kit.server is not None
    redis_run.kit.server.client(OFFSET).sadd("message_ids", *(f"bad id {n:02d}" for n in range(25)))

    result = redis_run("list")

    warnings = result.err.splitlines()
    assert result.status == 1
    assert [line.split()[0] for line in result.lines[1:]] == [good]
    assert len(warnings) == cli.MAX_SKIP_WARNINGS + 2
    assert "'bad id 19'" in warnings[cli.MAX_SKIP_WARNINGS - 1]
    assert "not naming further" in warnings[cli.MAX_SKIP_WARNINGS]
    assert "skipped 25 stored messages" in warnings[-1]


def test_list_aborts_on_connection_fault(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.store(write_message(tmp_path, PLAIN))

    def lost(self: Session, message_id: str) -> None:
        raise StorageUnavailable("Redis at 127.0.0.1:1 is unavailable during describe_message: lost")

    monkeypatch.setattr(Session, "describe_message", lost)

    result = run("list")

    assert result.status == 1
    assert result.out == b""
    assert result.err == (
        "slimta-storage: error: Redis at 127.0.0.1:1 is unavailable during describe_message: lost\n"
    )


# show


def test_show_output(run: Runner, tmp_path: Path) -> None:
    path = write_message(tmp_path, b"Subject: hi\n\nbody\n")
    message_id = run.store("--sender", "s@x", "--recipient", "a@x", "--recipient", "b@y", path)
    timestamp = run.meta(message_id)["timestamp"]

    result = run("show", message_id)

    assert result.status == 0
    assert result.lines == [
        "attempts: 0",
        "recipients: a@x, b@y",
        "sender: s@x",
        f"timestamp: {timestamp}",
    ]


def test_show_escapes_values(run: Runner) -> None:
    with run.kit.connect() as session:
        message_id = session.claim_message_id()
        meta = {
            "ehlo": "bad\x01name\n",
            "ip": "\udcff\udcfe",
            "receiver": "caf\u00e9 \\ \u0085",
            "recipients": "\0t\tab@x\0\udce9@x",
        }
        session.set_message_meta(message_id, meta)

    result = run("show", message_id)

    assert result.lines == [
        "ehlo: bad\\x01name\\n",
        "ip: \\xff\\xfe",
        "receiver: caf\u00e9 \\\\ \\u0085",
        "recipients: t\\tab@x, \\xe9@x",
    ]


def test_show_json(run: Runner) -> None:
    meta = {"sender": "s@x", "recipients": "\0a@x\0b@y", "ehlo": "\udcff"}
    with run.kit.connect() as session:
        message_id = session.claim_message_id()
        session.set_message_meta(message_id, meta)

    result = run("show", "--json", message_id)

    assert result.status == 0
    assert json.loads(result.out) == {"id": message_id, "meta": meta}


def test_show_without_meta(run: Runner) -> None:
    with run.kit.connect() as session:
        message_id = session.claim_message_id()

    result = run("show", message_id)
    as_json = run("show", "--json", message_id)

    assert result.status == 0
    assert result.out == b""
    assert result.err == f"slimta-storage: warning: message {message_id} has no meta\n"
    assert json.loads(as_json.out) == {"id": message_id, "meta": {}}
    assert as_json.err == ""


# cat and delete


def test_cat_without_contents(run: Runner) -> None:
    with run.kit.connect() as session:
        message_id = session.claim_message_id()

    result = run("cat", message_id)

    assert result.status == 1
    assert result.out == b""
    assert "has no contents" in result.err


def test_delete_unknown_id(run: Runner) -> None:
    result = run("delete", str(uuid.uuid4()))

    assert result.status == 0
    assert result.out == b""
    assert result.err == ""


def test_delete_twice(run: Runner, tmp_path: Path) -> None:
    message_id = run.store(write_message(tmp_path, PLAIN))

    first = run("delete", message_id)
    second = run("delete", message_id)

    assert first.status == 0
    assert second.status == 0
    assert run("cat", message_id).status == 1


@pytest.mark.parametrize("first", [True, False], ids=["bad-id-last", "bad-id-first"])
def test_delete_checks_ids_first(run: Runner, tmp_path: Path, first: bool) -> None:
    message_id = run.store(write_message(tmp_path, PLAIN))
    ids = [message_id, "bad id"] if first else ["bad id", message_id]

    result = run("delete", *ids)

    assert result.status == 2
    assert "'bad id'" in result.err
    assert run("cat", message_id).status == 0


def test_verbose_delete_unknown_id(capsys: pytest.CaptureFixture[str]) -> None:
    engine = memory.new()
    with engine.connect() as session:
        stored = session.store_message({}, b"body")
    unknown = str(uuid.uuid4())

    status = cli.main(["-v", "delete", stored, unknown], engine=engine)

    err = capsys.readouterr().err
    assert status == 0
    assert f"deleted message {stored}" in err
    assert f"message {unknown} was not stored, so nothing was deleted" in err
    assert f"deleted message {unknown}" not in err


def test_verbose_delete_unknown_id_redis(
    clean_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = redis_engine.new(clean_redis.host, clean_redis.port, OFFSET)
    with engine.connect() as session:
        stored = session.store_message({}, b"body")
    unknown = str(uuid.uuid4())

    status = cli.main(["-v", "delete", stored, unknown], engine=engine)

    err = capsys.readouterr().err
    engine.close()
    assert status == 0
    assert f"deleted message {stored}" in err
    assert f"message {unknown} was not stored, so nothing was deleted" in err


# errors


@pytest.mark.parametrize("command", ["cat", "show"])
def test_unknown_id(run: Runner, command: str) -> None:
    unknown = str(uuid.uuid4())

    result = run(command, unknown)

    assert result.status == 1
    assert result.out == b""
    assert result.err.count("\n") == 1
    assert result.err.startswith("slimta-storage: error: ")
    assert unknown in result.err
    assert "not found" in result.err


@pytest.mark.parametrize("command", ["cat", "show", "delete"])
def test_invalid_id(run: Runner, command: str) -> None:
    result = run(command, "not an id")

    assert result.status == 2
    assert result.err.count("\n") == 1
    assert "invalid message id 'not an id'" in result.err


def test_unreachable_redis() -> None:
    port = unused_port()

    result = console("--engine", f"redis://127.0.0.1:{port}/0", "list", url=None)

    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1
    assert stderr.startswith("slimta-storage: error: ")
    assert f"127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


def test_unreachable_redis_store(tmp_path: Path) -> None:
    port = unused_port()
    path = write_message(tmp_path, PLAIN)

    result = console("store", path, url=f"redis://127.0.0.1:{port}/0")

    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1
    assert str(port) in result.stderr.decode()


def test_missing_engine(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SLIMTA_STORAGE_URL", raising=False)

    status = cli.main(["list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "--engine" in captured.err
    assert "SLIMTA_STORAGE_URL" in captured.err


def test_missing_engine_console() -> None:
    result = console("list", url=None)

    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert b"SLIMTA_STORAGE_URL" in result.stderr


def test_engine_from_environment(
    clean_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLIMTA_STORAGE_URL", clean_redis.url(OFFSET))

    status = cli.main(["store", str(corpus_files()[0])])

    assert status == 0
    assert capsys.readouterr().out.strip() in {
        member.decode() for member in clean_redis.client(OFFSET).smembers("message_ids")
    }


@pytest.mark.parametrize("kind", ["invalid", "offset", "unreachable"])
def test_environment_url_named_in_errors(
    clean_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    urls = {
        "invalid": ("http://localhost/", 2),
        "offset": (clean_redis.url(14), 2),
        "unreachable": (f"redis://127.0.0.1:{unused_port()}/0", 1),
    }
    url, expected = urls[kind]
    monkeypatch.setenv("SLIMTA_STORAGE_URL", url)

    from_environment = cli.main(["list"])
    from_environment_err = capsys.readouterr().err
    from_option = cli.main(["--engine", url, "list"])
    from_option_err = capsys.readouterr().err

    assert from_environment == expected
    assert from_option == expected
    assert from_environment_err.count("\n") == 1
    assert "from the environment variable SLIMTA_STORAGE_URL" in from_environment_err
    assert "SLIMTA_STORAGE_URL" not in from_option_err


@pytest.mark.parametrize("url", ["http://localhost/", "memory://host", "redis://127.0.0.1:notaport/0"])
def test_invalid_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", url, "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("slimta-storage: error: invalid url")


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("#x", "fragment"),
        ("?ssl_ca_certs=/ca.pem", "rediss://"),
        ("?ssl_certfile=/cert.pem&ssl_keyfile=/key.pem", "rediss://"),
    ],
)
def test_url_options_rejected(query: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", f"redis://127.0.0.1:1/0{query}", "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("slimta-storage: error: invalid url")
    assert needle in captured.err


def test_tls_missing_ca_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing-ca.pem"

    status = cli.main(["--engine", f"rediss://127.0.0.1:1/0?ssl_ca_certs={missing}", "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert f"ssl_ca_certs file {str(missing)!r} was not found" in captured.err


def test_offset_out_of_range(clean_redis: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", clean_redis.url(14), "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert "offset" in captured.err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--engine", "memory://"],
        ["--engine", "memory://", "bogus"],
        ["--engine", "memory://", "cat"],
    ):
        assert cli.main(argv) == 2, argv
        assert "usage:" in capsys.readouterr().err


def test_help_describes_delete(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["delete", "--help"])

    assert status == 0
    assert "not stored is ignored" in " ".join(capsys.readouterr().out.split())


def test_verbose_logs(kit: EngineKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_message(tmp_path, PLAIN)

    status = cli.main(["-v", "store", path], engine=kit.engine)

    captured = capsys.readouterr()
    assert status == 0
    assert f"stored message {captured.out.strip()}" in captured.err


def test_memory_engine_url(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["--engine", "memory://", "list"])

    assert status == 0
    assert capsys.readouterr().out == "ID  STATE  SIZE  RETRY  LOCK\n"


def console_to_full_disk(*args: str, url: str) -> subprocess.CompletedProcess[bytes]:
    """Run the console script with its stdout on /dev/full, where every write fails."""
    environment = {**os.environ, "SLIMTA_STORAGE_URL": url}
    command = [sys.executable, "-m", "slimta.storage", *args]
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            command, env=environment, stdout=full, stderr=subprocess.PIPE, timeout=60, check=False
        )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_store_output_failure_leaves_nothing(clean_redis: RedisServer, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    result = console_to_full_disk("store", path, url=clean_redis.url(OFFSET))

    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    errors = without_persistence_warning(result.stderr)
    assert len(errors) == 1
    assert errors[0].startswith("slimta-storage: error: could not write the output: ")
    assert key_counts(clean_redis) == [0, 0, 0, 0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cat_output_failure_one_line(clean_redis: RedisServer, tmp_path: Path) -> None:
    url = clean_redis.url(OFFSET)
    message_id = console("store", write_message(tmp_path, PLAIN), url=url).stdout.decode().strip()

    result = console_to_full_disk("cat", message_id, url=url)

    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert b"could not write the output" in result.stderr


def test_list_skips_foreign_invalid_id(clean_redis: RedisServer, tmp_path: Path) -> None:
    url = clean_redis.url(OFFSET)
    message_id = console("store", write_message(tmp_path, PLAIN), url=url).stdout.decode().strip()
    clean_redis.client(OFFSET).sadd("message_ids", "has space")

    result = console("list", url=url)

    assert result.returncode == 1
    assert message_id in result.stdout.decode()
    assert "'has space'" in result.stderr.decode()


def test_library_warning_shown_by_default() -> None:
    with RedisServer({"save": "", "appendonly": "no"}) as server:
        quiet = console("list", url=server.url(0))
        verbose = console("-v", "list", url=server.url(0))

    warning = f"Redis at 127.0.0.1:{server.port} persists nothing"
    assert quiet.returncode == 0
    assert quiet.stderr.decode().splitlines() == [
        f'slimta-storage: warning: {warning} (appendonly no, save ""): a restart of the server loses the'
        " whole queue. Turn on AOF or RDB snapshots."
    ]
    assert verbose.returncode == 0
    assert f"slimta.storage.redis._engine WARNING: {warning}" in verbose.stderr.decode()


def test_debug_logs_only_with_verbose(
    kit: EngineKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_message(tmp_path, PLAIN)

    status = cli.main(["store", path], engine=kit.engine)

    captured = capsys.readouterr()
    assert status == 0
    assert captured.err == ""


# A reader that goes away, as with | head


def console_to_closed_pipe(*args: str, url: str) -> tuple[int, list[str]]:
    """Run the console script with its stdout on a pipe whose reader has already gone away.

    Returns the exit status and the lines of stderr, less the persistence warning.
    """
    environment = {**os.environ, "SLIMTA_STORAGE_URL": url}
    command = [sys.executable, "-m", "slimta.storage", *args]
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            command, env=environment, stdout=writer, stderr=subprocess.PIPE, timeout=60, check=False
        )
    finally:
        os.close(writer)
    return result.returncode, without_persistence_warning(result.stderr)


def test_closed_pipe_exit_status(clean_redis: RedisServer, tmp_path: Path) -> None:
    url = clean_redis.url(OFFSET)
    path = write_message(tmp_path, PLAIN)
    message_id = console("store", path, url=url).stdout.decode().strip()

    for args in (
        ["list"],
        ["list", "--json"],
        ["show", message_id],
        ["cat", message_id],
        ["check"],
        ["--help"],
    ):
        status, errors = console_to_closed_pipe(*args, url=url)
        assert status == cli.EXIT_BROKEN_PIPE, args
        assert errors == [], args


def test_closed_pipe_store_keeps_nothing(clean_redis: RedisServer, tmp_path: Path) -> None:
    path = write_message(tmp_path, PLAIN)

    status, errors = console_to_closed_pipe("store", path, url=clean_redis.url(OFFSET))

    assert status == cli.EXIT_BROKEN_PIPE
    assert errors == []
    assert key_counts(clean_redis) == [0, 0, 0, 0]
