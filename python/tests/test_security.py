"""Security of the Redis engine: the minimal ACL user, AUTH, TLS, secrets and stored data.

The ACL tests create users on a redis-server of this module alone, from
the ``ACL SETUSER`` line of docs/security.rst, so the documented line is
the tested one. The TLS tests start their own redis-server with a
throwaway certificate authority made with ``openssl``. Nothing here
talks to a server that the tests did not start.
"""

from __future__ import annotations

import ast
import logging
import os
import pickle
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import OFFSET, ROOT, EngineKit
from faultproxy import FaultProxy

from slimta.storage import (
    InvalidArgument,
    Message,
    MessageNotFound,
    Session,
    StorageUnavailable,
    cli,
    conformance,
    open_engine,
)
from slimta.storage import redis as redis_engine
from slimta.storage.conformance import EngineChoice, InProcessTarget, Runner, default_factory, load_vectors
from slimta.storage.conformance._cli import UsageError, _parse_redis_url
from slimta.storage.conformance._redis import RedisSide
from slimta.storage.redis._scripts import SCRIPTS
from slimta.storage.testing import RedisServer

SECURITY_PAGE = ROOT / "docs" / "security.rst"
VECTORS = ROOT / "conformance" / "vectors"
PACKAGE = ROOT / "python" / "slimta" / "storage"
# A new password per run, so that finding it in a log cannot be chance.
PASSWORD = f"relay-{secrets.token_hex(12)}"
RELAY = "relay"
RELAY_WITHOUT_CONFIG = "relay-noconfig"
RELAY_WITH_NAME = "relay-named"
# Distinct values a session stores, which no log record may contain.
SECRET_META = f"meta-{secrets.token_hex(8)}"
SECRET_CONTENTS = f"contents-{secrets.token_hex(8)}".encode()


def documented_acl_rules() -> list[str]:
    """Return the rules of the ``ACL SETUSER relay`` line of docs/security.rst, with PASSWORD.

    The documented password ``>relay-password`` becomes ``>PASSWORD``.
    """
    for line in SECURITY_PAGE.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:3] == ["ACL", "SETUSER", RELAY]:
            return [f">{PASSWORD}" if word.startswith(">") else word for word in words[3:]]
    raise AssertionError(f"no 'ACL SETUSER {RELAY}' line in {SECURITY_PAGE}")


def acl_commands(rules: list[str]) -> set[str]:
    """Return the commands that ``+`` rules allow, lowercase, such as ``script|load``."""
    return {rule[1:].lower() for rule in rules if rule.startswith("+")}


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A server with the documented user, and one without CONFIG; its default user stays open."""
    with RedisServer() as server:
        admin = server.client()
        rules = documented_acl_rules()
        admin.execute_command("ACL", "SETUSER", RELAY, *rules)
        without_config = [rule for rule in rules if rule != "+config|get"]
        admin.execute_command("ACL", "SETUSER", RELAY_WITHOUT_CONFIG, *without_config)
        admin.execute_command("ACL", "SETUSER", RELAY_WITH_NAME, *rules, "+client|setname")
        yield server


@pytest.fixture
def admin(acl_server: RedisServer) -> redis.Redis:
    """The default user's client, with every database empty and ACL LOG cleared."""
    client = acl_server.client()
    client.flushall()  # This server belongs to this module alone.
    client.execute_command("ACL", "LOG", "RESET")
    return client


def relay_engine(server: RedisServer, user: str = RELAY, **options: Any) -> redis_engine.RedisEngine:
    return redis_engine.new(server.host, server.port, OFFSET, username=user, password=PASSWORD, **options)


def acl_log(admin: redis.Redis) -> list[dict[str, Any]]:
    """Return the server's ACL security events: denied commands, denied keys and failed AUTH.

    Denials of CLIENT SETINFO are left out: redis-py sends it as it
    connects and ignores a refusal, and Redis 7.2 and later log one.
    """
    log: list[dict[str, Any]] = admin.acl_log()
    return [entry for entry in log if entry.get("object") != "client|setinfo"]


def exercise_session(session: Session) -> None:
    """Call every session method with valid arguments, and check what each returns."""
    owner = str(uuid.uuid4())
    stored = session.store_message({"sender": SECRET_META}, SECRET_CONTENTS, 10.0)
    claimed = session.claim_message_id()
    session.set_message_meta(claimed, {"sender": "b@example.com"})
    session.set_message_meta_key(claimed, "attempts", "1")
    session.set_message_meta_key(claimed, "attempts", None)
    session.set_message_contents(claimed, b"other body")
    session.set_message_retry(claimed, 20.0)

    assert session.get_message_meta(claimed) == {"sender": "b@example.com"}
    assert session.get_message_meta_key(stored, "sender") == SECRET_META
    assert session.get_message_contents(claimed) == b"other body"
    assert session.lock_message(stored, 30, owner)
    assert session.refresh_lock(stored, 30, owner)
    assert session.get_active_messages() == [stored]
    assert session.get_deferred_messages(15.0) == [stored]
    assert sorted(session.get_all_messages()) == sorted([stored, claimed])
    assert session.describe_message(stored).size == len(SECRET_CONTENTS)
    assert session.unlock_message(stored, owner)
    assert session.lock_message(stored, 30)
    assert session.unlock_message(stored)
    session.delete_message(stored)
    session.delete_message(claimed)
    assert session.get_all_messages() == []
    exercise_short_paths(session, owner)


def exercise_short_paths(session: Session, owner: str) -> None:
    """Call the bulk, relay and page methods of spec 1.2 on an empty queue, and empty it again."""
    first, second = session.store_messages(
        [
            {"meta": {"sender": SECRET_META}, "contents": SECRET_CONTENTS, "retry": 10.0},
            {"meta": {}, "contents": b"", "retry": 20.0},
        ]
    )
    assert session.get_message(first) == Message({"sender": SECRET_META}, SECRET_CONTENTS)
    assert session.get_messages([first, second])[second] == Message({}, b"")
    assert sorted(session.get_all_messages_page(count=10).message_ids) == sorted([first, second])

    page = session.get_deferred_messages_page(count=1)
    assert page.message_ids == [first]
    assert session.get_deferred_messages_page(cursor=page.cursor, count=10).message_ids == [second]
    # The next page starts after a message that got a new retry time meanwhile.
    session.set_message_retry(first, 30.0)
    assert session.get_deferred_messages_page(cursor=page.cursor, count=10).message_ids == [second, first]

    assert session.checkout_message(first, 30, owner) == Message({"sender": SECRET_META}, SECRET_CONTENTS)
    assert session.get_active_messages_page(count=10).message_ids == [first]
    assert session.defer_message(first, 40.0, owner) == 1
    assert session.checkout_message(second, 30, owner) == Message({}, b"")
    assert session.finish_message(second, owner)
    assert session.finish_message(first)
    assert session.get_all_messages() == []


# The minimal ACL


def run_conformance_as(server: RedisServer, user: str) -> dict[str, str]:
    """Run every conformance vector in this process with the engine logged in as ``user``.

    Returns the reason of each case that did not pass, by case id. The
    runner's own clients, which empty the databases and check the layout,
    use the default user.
    """

    def factory(kind: str, options: Any) -> Any:
        if kind == "memory":
            return default_factory(kind, options)
        return redis_engine.new(
            options["host"], options["port"], options["offset"], username=user, password=PASSWORD
        )

    target = InProcessTarget(factory)
    side = RedisSide(server.host, server.port, OFFSET)
    try:
        runner = Runner(target, target.start(), EngineChoice("redis", server.host, server.port, OFFSET), side)
        results = [runner.run_case(case) for case in load_vectors(VECTORS).cases]
    finally:
        target.close()
        side.close()
    assert len(results) > 100
    return {result.case_id: str(result.reason) for result in results if result.status != "pass"}


def test_acl_user_passes_conformance(acl_server: RedisServer, admin: redis.Redis) -> None:
    failures = run_conformance_as(acl_server, RELAY)

    assert failures == {}
    assert acl_log(admin) == []


def test_acl_lists_used_commands(acl_server: RedisServer, admin: redis.Redis) -> None:
    # Only the relay user and this test's own INFO, CONFIG RESETSTAT and
    # SCRIPT FLUSH run commands on the server meanwhile.
    admin.config_resetstat()
    engine = relay_engine(acl_server)
    with engine.connect() as session:
        exercise_session(session)
        admin.script_flush()
        session.claim_message_id()
        assert session.get_message_meta(session.get_all_messages()[0]) == {}
    engine.close()

    stats = admin.info("commandstats")
    used = {name.removeprefix("cmdstat_") for name, row in stats.items() if row["calls"] > 0}
    used -= {"info", "config|resetstat", "script|flush", "auth", "client|setinfo"}
    assert used == acl_commands(documented_acl_rules())
    assert acl_log(admin) == []


def test_acl_denies_other_keys_and_commands(acl_server: RedisServer, admin: redis.Redis) -> None:
    admin.set("other-application", "secret")
    client = redis.Redis(
        host=acl_server.host, port=acl_server.port, username=RELAY, password=PASSWORD, socket_timeout=5
    )
    denied = [
        lambda: client.get("other-application"),
        lambda: client.keys("*"),
        client.flushall,
        lambda: client.config_set("appendonly", "no"),
        lambda: client.execute_command("ACL", "LIST"),
    ]
    try:
        for call in denied:
            with pytest.raises(redis.exceptions.NoPermissionError):
                call()
    finally:
        client.close()

    assert admin.get("other-application") == b"secret"


def test_acl_other_id_form_unavailable(acl_server: RedisServer, admin: redis.Redis) -> None:
    # An id that another writer stored, in a form the UUID key pattern does not match.
    acl_server.client(OFFSET).sadd("message_ids", "legacy.queue.0001")
    engine = relay_engine(acl_server)
    with engine.connect() as session:
        listed = session.get_all_messages()
        with pytest.raises(StorageUnavailable, match="no permissions to access one of the keys") as raised:
            session.get_message_meta("legacy.queue.0001")
    engine.close()

    assert listed == ["legacy.queue.0001"]
    assert raised.value.operation == "get_message_meta"


def test_acl_without_config_works(
    acl_server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="slimta.storage")
    engine = relay_engine(acl_server, RELAY_WITHOUT_CONFIG)
    admin.config_set("proto-max-bulk-len", "1mb")
    try:
        with engine.connect() as session:
            exercise_session(session)
            # The engine assumes the default limit of 512 MiB, so Redis rejects these contents itself.
            with pytest.raises(StorageUnavailable) as too_large:
                session.store_message({}, b"x" * (1024 * 1024 + 1))
            listed = session.get_all_messages()
    finally:
        admin.config_set("proto-max-bulk-len", "512mb")
    engine.close()

    assert too_large.value.operation == "store_message"
    assert listed == []

    denied = [(entry["reason"], entry["object"], entry["username"]) for entry in acl_log(admin)]
    assert denied == [("command", "config|get", RELAY_WITHOUT_CONFIG)]
    assert any("CONFIG GET failed" in record.getMessage() for record in caplog.records)


def test_acl_client_name_needs_setname(acl_server: RedisServer, admin: redis.Redis) -> None:
    unnamed = relay_engine(acl_server, client_name="queue-1")
    named = relay_engine(acl_server, RELAY_WITH_NAME, client_name="queue-1")

    with pytest.raises(StorageUnavailable, match=r"client\|setname") as raised:
        unnamed.connect()
    with named.connect() as session:
        listed = session.get_all_messages()
    named.close()

    assert raised.value.operation == "connect"
    assert listed == []


# AUTH


def test_auth_wrong_password_unavailable(acl_server: RedisServer) -> None:
    engine = redis_engine.new(
        acl_server.host, acl_server.port, OFFSET, username=RELAY, password=f"wrong-{PASSWORD}"
    )

    with pytest.raises(StorageUnavailable) as raised:
        engine.connect()

    assert raised.value.operation == "connect"
    assert f"{acl_server.host}:{acl_server.port}" in str(raised.value)
    assert "invalid username-password pair" in str(raised.value)


def test_auth_url_user_works(acl_server: RedisServer, admin: redis.Redis) -> None:
    engine = open_engine(f"redis://{RELAY}:{PASSWORD}@{acl_server.host}:{acl_server.port}/{OFFSET}")
    with engine.connect() as session:
        exercise_session(session)
    engine.close()

    assert acl_log(admin) == []


def error_texts(error: BaseException) -> list[str]:
    """Return the message and repr of an error and of every error it was raised from."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter()
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
    return texts


def test_password_never_shown(
    acl_server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://{RELAY}:{PASSWORD}@{acl_server.host}:{acl_server.port}/{OFFSET}"
    texts: list[str] = []

    engine = open_engine(url, socket_timeout=5)
    texts += [repr(engine), str(engine)]
    with engine.connect() as session:
        texts.append(repr(session))
        exercise_session(session)
        message_id = session.store_message({"sender": SECRET_META}, SECRET_CONTENTS)
        # A lost connection: the session reconnects with a warning before the read.
        admin.client_kill_filter(user=RELAY)
        assert session.get_message_meta(message_id) == {"sender": SECRET_META}
        # A lost connection whose reconnect is refused: the write fails.
        admin.acl_setuser(RELAY, enabled=False)
        admin.client_kill_filter(user=RELAY)
        try:
            with pytest.raises(StorageUnavailable) as lost:
                session.set_message_meta(message_id, {"sender": SECRET_META})
        finally:
            admin.acl_setuser(RELAY, enabled=True)
        with pytest.raises(MessageNotFound) as missing:
            session.get_message_contents(str(uuid.uuid4()))
    engine.close()
    texts += error_texts(lost.value) + error_texts(missing.value)

    wrong = open_engine(url.replace(f":{PASSWORD}@", f":wrong-{PASSWORD}@"))
    texts.append(repr(wrong))
    with pytest.raises(StorageUnavailable) as refused:
        wrong.connect()
    texts += error_texts(refused.value)
    with pytest.raises(InvalidArgument) as invalid:
        open_engine(url.replace(f":{acl_server.port}/", ":99999/"))
    texts += error_texts(invalid.value)

    logged = record_texts(caplog.records)
    assert any(
        record.levelno == logging.DEBUG and record.name.startswith("slimta.storage")
        for record in caplog.records
    )
    assert any(record.levelno == logging.WARNING for record in caplog.records)
    assert [text for text in texts + logged if PASSWORD in text] == []
    assert [text for text in logged if SECRET_META in text or SECRET_CONTENTS.decode() in text] == []


# Halves of a password with a character that ends the host part of a URL
# unless it is percent-encoded, new per run like PASSWORD.
CUT_HEAD = f"head-{secrets.token_hex(6)}"
CUT_TAIL = f"tail-{secrets.token_hex(6)}"
CUT_URLS = [
    pytest.param(f"redis://{RELAY}:{CUT_HEAD}/{CUT_TAIL}@127.0.0.1:1/0", id="slash"),
    pytest.param(f"redis://{RELAY}:{CUT_HEAD}?{CUT_TAIL}@127.0.0.1:1/0", id="question-mark"),
    pytest.param(f"redis://{RELAY}:{CUT_HEAD}#{CUT_TAIL}@127.0.0.1:1/0", id="hash"),
    pytest.param(f"redis://:{CUT_HEAD}#{CUT_TAIL}@127.0.0.1:1/0", id="hash-no-user"),
    pytest.param(f"rediss://{RELAY}:{CUT_HEAD}?ssl_ca_certs={CUT_TAIL}@127.0.0.1:1/0", id="option-like"),
]


def shown_cut_password(texts: list[str]) -> list[str]:
    return [text for text in texts if CUT_HEAD in text or CUT_TAIL in text]


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any name lookup other than 127.0.0.1, so that a misread URL reaches no other host."""
    lookup = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "127.0.0.1":
            raise AssertionError(f"the test looked up {host!r}")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize("url", CUT_URLS)
@pytest.mark.parametrize("opener", [open_engine, redis_engine.from_url], ids=["open_engine", "from_url"])
def test_cut_password_never_shown_api(url: str, opener: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    with pytest.raises(InvalidArgument) as caught:
        opener(url)

    texts = [*error_texts(caught.value), repr(caught.value.value), *record_texts(caplog.records)]
    assert shown_cut_password(texts) == []
    assert "127.0.0.1:1" in str(caught.value)


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize("url", CUT_URLS)
def test_cut_password_never_shown_cli(
    url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    status = cli.main(["--verbose", "--engine", url, "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("slimta-storage: error: invalid url")
    assert shown_cut_password([captured.out, captured.err, *record_texts(caplog.records)]) == []


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize("url", CUT_URLS)
def test_cut_password_never_shown_environment(
    url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SLIMTA_STORAGE_URL", url)

    status = cli.main(["--verbose", "list"])

    captured = capsys.readouterr()
    assert status == 2
    assert "SLIMTA_STORAGE_URL" in captured.err
    assert shown_cut_password([captured.out, captured.err, *record_texts(caplog.records)]) == []


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize("url", CUT_URLS)
def test_cut_password_never_shown_conformance(
    url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    status = conformance.main(["--verbose", "--engine", url])

    captured = capsys.readouterr()
    assert status == 2
    assert "--engine" in captured.err
    assert shown_cut_password([captured.out, captured.err, *record_texts(caplog.records)]) == []


@pytest.mark.parametrize("url", CUT_URLS)
def test_cut_password_not_in_runner_error_chain(url: str) -> None:
    # The runner prints only the message, but a caller of its parser gets the whole chain.
    try:
        _parse_redis_url(url)
    except UsageError as error:
        assert shown_cut_password(error_texts(error)) == []
    else:
        pytest.fail(f"the runner took the URL {url!r}")


# TLS


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    other_ca_file: Path


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    """Create ``name.crt`` and ``name.key``: a self-signed certificate authority valid for two days."""
    openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=slimta-storage {name}",
        cwd=directory,
    )  # fmt: skip


def make_server_certificate(directory: Path) -> None:
    """Create ``server.crt`` and ``server.key`` for 127.0.0.1, signed by ``ca``."""
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n",
        encoding="ascii",
    )
    openssl(
        "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_tls(port: int, ca_file: Path, process: subprocess.Popen[bytes], log_file: Path) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca_file), socket_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited at start: {log_file.read_text(errors='replace')}")
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("redis-server with TLS did not answer within 15 s")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A redis-server on 127.0.0.1 that speaks TLS only, with a throwaway CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing; the TLS tests need it: apt-get install openssl")
    directory = tmp_path_factory.mktemp("tls")
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    make_server_certificate(directory)
    port = free_port()
    log_file = directory / "redis.log"
    binary = shutil.which("redis-server") or "redis-server"
    args = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"]
    args += ["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--logfile", str(log_file)]
    process = subprocess.Popen(args, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_tls(port, directory / "ca.crt", process, log_file)
        yield TlsServer(port, directory / "ca.crt", directory / "other-ca.crt")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_tls_session_works(tls_server: TlsServer) -> None:
    engine = open_engine(f"rediss://127.0.0.1:{tls_server.port}/{OFFSET}?ssl_ca_certs={tls_server.ca_file}")
    with engine.connect() as session:
        exercise_session(session)
    engine_repr = repr(engine)
    engine.close()

    assert engine_repr.startswith("<RedisEngine rediss://127.0.0.1:")


def test_plain_url_against_tls_unavailable(tls_server: TlsServer) -> None:
    engine = open_engine(
        f"redis://127.0.0.1:{tls_server.port}/{OFFSET}?socket_timeout=2&socket_connect_timeout=2"
    )

    with pytest.raises(StorageUnavailable) as raised:
        engine.connect()

    assert raised.value.operation == "connect"
    assert raised.value.port == tls_server.port


def test_tls_url_against_plain_server_hints(clean_redis: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{clean_redis.port}/{OFFSET}?socket_timeout=1&socket_connect_timeout=1"
    engine = open_engine(url)

    with pytest.raises(StorageUnavailable) as raised:
        engine.connect()

    assert raised.value.operation == "connect"
    assert "accepts TLS connections, or use redis://" in str(raised.value)
    assert ".." not in str(raised.value)


def close_during_handshake(listener: socket.socket, reset: bool) -> None:
    """Accept one connection, read the TLS ClientHello and close, with a reset when ``reset``."""
    listener.settimeout(10)
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        return
    with connection:
        connection.settimeout(10)
        connection.recv(4096)
        if reset:
            # A linger time of 0 makes close() send RST instead of FIN.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
def test_tls_url_handshake_closed_hints(reset: bool) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        server = threading.Thread(target=close_during_handshake, args=(listener, reset))
        server.start()
        engine = open_engine(f"rediss://127.0.0.1:{port}/{OFFSET}?socket_timeout=5&socket_connect_timeout=5")
        try:
            with pytest.raises(StorageUnavailable) as raised:
                engine.connect()
        finally:
            server.join(timeout=15)

    assert "accepts TLS connections, or use redis://" in str(raised.value)
    assert ".." not in str(raised.value)


def test_tls_url_refused_no_hint() -> None:
    engine = open_engine(f"rediss://127.0.0.1:{free_port()}/{OFFSET}?socket_connect_timeout=2")

    with pytest.raises(StorageUnavailable) as raised:
        engine.connect()

    assert raised.value.operation == "connect"
    assert "Connection refused" in str(raised.value)
    assert "TLS" not in str(raised.value)
    assert str(raised.value).endswith("Connection refused.")


def test_tls_url_unknown_host_no_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # No name is looked up: the failure is made here.
    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    engine = open_engine(f"rediss://queue.invalid:1/{OFFSET}?socket_connect_timeout=2")

    with pytest.raises(StorageUnavailable) as raised:
        engine.connect()

    assert "Name or service not known" in str(raised.value)
    assert "TLS" not in str(raised.value)


def test_tls_untrusted_ca_unavailable(tls_server: TlsServer) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/{OFFSET}?ssl_ca_certs={tls_server.other_ca_file}"
    engine = open_engine(url, socket_timeout=2, socket_connect_timeout=2)

    with pytest.raises(StorageUnavailable, match="certificate verify failed") as raised:
        engine.connect()

    assert raised.value.operation == "connect"


# Stored data is never run


class Trap:
    """An object whose unpickling creates the directory ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


LUA_LOOKING = "') redis.call('FLUSHALL') --"
LUA_LOOKING_META = {
    LUA_LOOKING: LUA_LOOKING,
    "code": "]] .. redis.call('SET', 'pwned', '1') .. [[",
    "return redis.call('FLUSHALL')": "\0os.execute('touch pwned')",
}


def test_stored_data_never_run(kit: EngineKit, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Trap(str(marker)))
    hostile_id = "x')redis.call('FLUSHALL')--"

    with kit.connect() as session:
        message_id = session.store_message(LUA_LOOKING_META, payload)
        session.set_message_meta_key(message_id, "key", LUA_LOOKING)
        with pytest.raises(MessageNotFound):
            session.set_message_meta(hostile_id, LUA_LOOKING_META)
        contents = session.get_message_contents(message_id)
        meta = session.get_message_meta(message_id)
        listed = session.get_all_messages()

    assert contents == payload
    assert meta == {**LUA_LOOKING_META, "key": LUA_LOOKING}
    assert listed == [message_id]
    assert not marker.exists()
    if kit.server is not None:
        for db in range(16):
            assert kit.server.client(db).exists("pwned") == 0, db


def test_scripts_sent_are_packaged(clean_redis: RedisServer) -> None:
    with FaultProxy(clean_redis.host, clean_redis.port) as proxy:
        engine = redis_engine.new(proxy.host, proxy.port, OFFSET)
        with engine.connect() as session:
            exercise_session(session)
            clean_redis.client().script_flush()
            session.store_message(LUA_LOOKING_META, b"after a flush")
        engine.close()

    packaged = {script.sha for script in SCRIPTS.values()}
    assert proxy.requests[b"EVAL"] == 1
    assert set(proxy.loaded) == packaged
    assert set(proxy.scripts) <= packaged


# Names of modules that turn bytes into objects or code.
LOADER_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
EVALUATING_BUILTINS = {"eval", "exec", "compile", "__import__"}
# Lua functions that would run text as code.
LUA_LOADERS = ("loadstring", "load(", "dofile", "loadfile")


def test_package_never_unpickles_or_evaluates() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules = {(node.module or "").split(".")[0]}
            else:
                modules = set()
            if modules & LOADER_MODULES:
                found.append(f"{path.name}:{node.lineno} imports {sorted(modules & LOADER_MODULES)}")
            called = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            if called in EVALUATING_BUILTINS:
                found.append(f"{path.name}:{node.lineno} calls {node.func.id}")
    for path in sorted((PACKAGE / "redis" / "lua").glob("*.lua")):
        source = path.read_text(encoding="utf-8")
        found += [f"{path.name} uses {name}" for name in LUA_LOADERS if name in source]

    assert found == []
