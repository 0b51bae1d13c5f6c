"""Bad arguments raise InvalidArgument and change nothing, on every engine.

Also the arguments of the Redis engine's constructors, which raise
before any connection is made, and the offset check at connect.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from conftest import OFFSET, stored_state
from hypothesis import given, settings
from hypothesis.strategies import binary

from slimta.storage import InvalidArgument, Session, StorageError, StorageUnavailable, memory, open_engine
from slimta.storage import redis as redis_engine
from slimta.storage._validate import redact_url
from slimta.storage.testing import RedisServer

NAN = float("nan")
INF = float("inf")
HUGE_INT = 10**400  # too large to convert to a float

# Stand for the id of the stored message and for the bad value in the
# tables below.
STORED = object()
BAD = object()

# InvalidArgument shows at most this many characters of the value's repr.
SHOWN_REPR = 77


def check_rejected(error: InvalidArgument, param: str, value: Any) -> None:
    """Check that ``error`` names ``param`` and shows ``value``."""
    assert error.param == param
    assert error.value is value
    assert param in str(error)
    assert repr(value)[:SHOWN_REPR] in str(error)


# Message ids

BAD_IDS = [
    pytest.param(5, id="int"),
    pytest.param(b"abc", id="bytes"),
    pytest.param(None, id="none"),
    pytest.param(1.5, id="float"),
    pytest.param("", id="empty"),
    pytest.param("a" * 256, id="256-chars"),
    pytest.param("a b", id="space"),
    pytest.param("tab\tid", id="tab"),
    pytest.param("line\n", id="newline"),
    pytest.param("nul\0", id="nul"),
    pytest.param("id-\x7f", id="del"),
    pytest.param("ümlaut-id", id="non-ascii"),
]

# Every method that takes an id, with valid arguments after the id.
ID_METHODS = [
    pytest.param("set_message_meta", ({"a": "1"},), id="set_message_meta"),
    pytest.param("set_message_meta_key", ("a", "1"), id="set_message_meta_key"),
    pytest.param("set_message_contents", (b"x",), id="set_message_contents"),
    pytest.param("get_message_meta", (), id="get_message_meta"),
    pytest.param("get_message_meta_key", ("a",), id="get_message_meta_key"),
    pytest.param("get_message_contents", (), id="get_message_contents"),
    pytest.param("set_message_retry", (1.0,), id="set_message_retry"),
    pytest.param("lock_message", (1.0,), id="lock_message"),
    pytest.param("unlock_message", (), id="unlock_message"),
    pytest.param("delete_message", (), id="delete_message"),
    pytest.param("describe_message", (), id="describe_message"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(("method", "args"), ID_METHODS)
def test_bad_id_rejected(
    session: Session, stored: str, method: str, args: tuple[Any, ...], bad_id: Any
) -> None:
    before = stored_state(session)

    with pytest.raises(InvalidArgument) as caught:
        getattr(session, method)(bad_id, *args)

    check_rejected(caught.value, "message_id", bad_id)
    assert stored_state(session) == before


def test_id_max_length_accepted(session: Session) -> None:
    # Ids of other writers may be any printable ASCII up to 255 characters.
    long_id = "~" * 255

    session.delete_message(long_id)
    session.unlock_message(long_id)

    assert session.get_all_messages() == []


# Other arguments, as (method, arguments, parameter, bad value). In the
# arguments, STORED is replaced by the id of the stored message and BAD by
# the bad value, so that the error can be checked to hold that very object.

BAD_ARGUMENTS = [
    # contents
    ("set_message_contents", (STORED, BAD), "contents", "text"),
    ("set_message_contents", (STORED, BAD), "contents", None),
    ("set_message_contents", (STORED, BAD), "contents", 5),
    ("set_message_contents", (STORED, BAD), "contents", [104, 105]),
    # the whole meta
    ("set_message_meta", (STORED, BAD), "meta", None),
    ("set_message_meta", (STORED, BAD), "meta", [("a", "1")]),
    ("set_message_meta", (STORED, BAD), "meta", "a=1"),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", ""),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", "a\0b"),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", "k" * 256),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", 5),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", b"a"),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", "\ud800"),
    ("set_message_meta", (STORED, {"a": BAD}), "meta['a']", 5),
    ("set_message_meta", (STORED, {"a": BAD}), "meta['a']", None),
    ("set_message_meta", (STORED, {"a": BAD}), "meta['a']", b"1"),
    ("set_message_meta", (STORED, {"a": BAD}), "meta['a']", "x\ud800y"),
    ("set_message_meta", (STORED, {"a": "1", "b": BAD}), "meta['b']", 2),
    # Escapes of the UTF-8 bytes of "é", which Redis would read back as "é".
    ("set_message_meta", (STORED, {"a": BAD}), "meta['a']", "caf\udcc3\udca9"),
    ("set_message_meta", (STORED, {BAD: "1"}), "meta key", "\udcc3\udca9"),
    # one meta key
    ("set_message_meta_key", (STORED, BAD, "1"), "key", ""),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", "a\0"),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", "k" * 256),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", 5),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", None),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", "\ud800"),
    ("set_message_meta_key", (STORED, "a", BAD), "value", 5),
    ("set_message_meta_key", (STORED, "a", BAD), "value", 1.5),
    ("set_message_meta_key", (STORED, "a", BAD), "value", b"1"),
    ("set_message_meta_key", (STORED, "a", BAD), "value", "\ud800"),
    ("set_message_meta_key", (STORED, "a", BAD), "value", "\udce2\udc82\udcac"),
    ("set_message_meta_key", (STORED, BAD, "1"), "key", "\udcc3\udca9"),
    ("get_message_meta_key", (STORED, BAD), "key", ""),
    ("get_message_meta_key", (STORED, BAD), "key", "a\0"),
    ("get_message_meta_key", (STORED, BAD), "key", "k" * 256),
    ("get_message_meta_key", (STORED, BAD), "key", None),
    # retry timestamps
    ("set_message_retry", (STORED, BAD), "timestamp", NAN),
    ("set_message_retry", (STORED, BAD), "timestamp", INF),
    ("set_message_retry", (STORED, BAD), "timestamp", -INF),
    ("set_message_retry", (STORED, BAD), "timestamp", -1),
    ("set_message_retry", (STORED, BAD), "timestamp", -0.001),
    ("set_message_retry", (STORED, BAD), "timestamp", True),
    ("set_message_retry", (STORED, BAD), "timestamp", False),
    ("set_message_retry", (STORED, BAD), "timestamp", "100"),
    ("set_message_retry", (STORED, BAD), "timestamp", None),
    ("set_message_retry", (STORED, BAD), "timestamp", HUGE_INT),
    ("get_deferred_messages", (BAD,), "timestamp", NAN),
    ("get_deferred_messages", (BAD,), "timestamp", INF),
    ("get_deferred_messages", (BAD,), "timestamp", -1.0),
    ("get_deferred_messages", (BAD,), "timestamp", True),
    ("get_deferred_messages", (BAD,), "timestamp", "0"),
    ("get_deferred_messages", (BAD,), "timestamp", HUGE_INT),
    # lock lengths
    ("lock_message", (STORED, BAD), "length", 0),
    ("lock_message", (STORED, BAD), "length", 0.0),
    ("lock_message", (STORED, BAD), "length", -1),
    ("lock_message", (STORED, BAD), "length", -0.5),
    ("lock_message", (STORED, BAD), "length", NAN),
    ("lock_message", (STORED, BAD), "length", INF),
    ("lock_message", (STORED, BAD), "length", 31_536_000.001),
    ("lock_message", (STORED, BAD), "length", 31_536_001),
    ("lock_message", (STORED, BAD), "length", True),
    ("lock_message", (STORED, BAD), "length", "10"),
    ("lock_message", (STORED, BAD), "length", None),
    ("lock_message", (STORED, BAD), "length", HUGE_INT),
]


def case_name(case: tuple[str, tuple[Any, ...], str, Any]) -> str:
    method, _, param, value = case
    return f"{method}-{param}-{ascii(value)[:20]}"


def fill(arg: Any, stored: str, value: Any) -> Any:
    """Replace STORED and BAD in one argument, including the keys and values of a dict."""
    if isinstance(arg, dict):
        return {fill(key, stored, value): fill(item, stored, value) for key, item in arg.items()}
    if arg is STORED:
        return stored
    if arg is BAD:
        return value
    return arg


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=map(case_name, BAD_ARGUMENTS))
def test_bad_argument_rejected(
    session: Session, stored: str, case: tuple[str, tuple[Any, ...], str, Any]
) -> None:
    method, args, param, value = case
    call_args = [fill(arg, stored, value) for arg in args]
    # Unlocked, so that a lock_message that reached the engine would take the lock.
    session.unlock_message(stored)
    before = stored_state(session)

    with pytest.raises(InvalidArgument) as caught:
        getattr(session, method)(*call_args)

    check_rejected(caught.value, param, value)
    assert stored_state(session) == before


def test_bad_meta_unknown_id(session: Session) -> None:
    # Validation comes before the lookup, so bad input wins over a missing id.
    with pytest.raises(InvalidArgument) as caught:
        session.set_message_meta("never-claimed-id", {"a": 5})

    assert caught.value.param == "meta['a']"


@settings(max_examples=300, deadline=None)
@given(data=binary(max_size=40))
def test_escaped_bytes_accepted(data: bytes) -> None:
    # Whatever bytes another writer stored, the text they read as can be
    # written back, and reads back the same.
    text = data.decode("utf-8", "surrogateescape")
    # Meta keys must not be empty or contain NUL, whoever wrote them.
    key = "key " + text.replace("\0", "_")
    session = memory.new().connect()
    message_id = session.claim_message_id()

    session.set_message_meta(message_id, {"value": text, key: "v"})

    assert session.get_message_meta_key(message_id, "value") == text
    assert session.get_message_meta_key(message_id, key) == "v"


def test_lock_max_length_accepted(session: Session) -> None:
    message_id = session.claim_message_id()

    assert session.lock_message(message_id, 31_536_000) is True


def test_lock_tiny_length_accepted(session: Session) -> None:
    # Rounded up to one millisecond rather than rejected as zero.
    message_id = session.claim_message_id()

    assert session.lock_message(message_id, 1e-9) is True


# The wording of bulk errors


@pytest.mark.parametrize("method", ["get_messages", "store_messages"])
def test_empty_batch_named_plainly(session: Session, method: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        getattr(session, method)([])

    assert str(caught.value).endswith(", not an empty list")


@pytest.mark.parametrize(
    ("message", "keys"),
    [
        ({"contents": b"x"}, "it has only the key 'contents'"),
        ({"meta": {}, "contents": b"x", "ttl": 5}, "it has the keys 'contents', 'meta', 'ttl'"),
        ({}, "it has no keys"),
    ],
)
def test_new_message_keys_named_plainly(session: Session, message: dict[str, Any], keys: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        session.store_messages([message])

    assert str(caught.value).endswith(keys)


# The exception classes


def test_invalid_is_value_error() -> None:
    assert issubclass(InvalidArgument, ValueError)


def test_invalid_is_storage_error() -> None:
    assert issubclass(InvalidArgument, StorageError)


def test_invalid_caught_as_value_error(session: Session) -> None:
    with pytest.raises(ValueError, match="message_id"):
        session.get_message_meta("")


def test_invalid_kind() -> None:
    assert InvalidArgument.kind == "invalid_argument"


# The clock of the memory engine


@pytest.mark.parametrize("clock", ["x", 5, 1.5])
def test_memory_clock_not_callable(clock: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        memory.new(clock)

    check_rejected(caught.value, "clock", clock)


@pytest.mark.parametrize("now", [NAN, INF, -INF, None, "1700000000", True, 1e308, 1.7e12, -1e11])
def test_memory_clock_bad_value(now: Any) -> None:
    session = memory.new(lambda: now).connect()
    message_id = session.claim_message_id()

    with pytest.raises(InvalidArgument) as caught:
        session.lock_message(message_id, 10)

    assert caught.value.param == "clock() value"
    assert caught.value.value is now


def test_memory_nan_clock_locks_nothing() -> None:
    now = [1_700_000_000.0]
    session = memory.new(lambda: now[0]).connect()
    message_id = session.claim_message_id()
    now[0] = NAN

    for _ in range(2):
        with pytest.raises(InvalidArgument):
            session.lock_message(message_id, 10)

    now[0] = 1_700_000_000.0
    assert session.get_active_messages() == []
    assert session.lock_message(message_id, 10) is True
    assert session.lock_message(message_id, 10) is False


# The Redis engine's constructors, which validate without connecting

BAD_NEW = [
    pytest.param({"offset": -1}, "offset", -1, id="negative-offset"),
    pytest.param({"offset": 1.0}, "offset", 1.0, id="float-offset"),
    pytest.param({"offset": True}, "offset", True, id="bool-offset"),
    pytest.param({"port": 0}, "port", 0, id="port-0"),
    pytest.param({"port": 70000}, "port", 70000, id="port-70000"),
    pytest.param({"port": -1}, "port", -1, id="negative-port"),
    pytest.param({"port": "6379"}, "port", "6379", id="str-port"),
    pytest.param({"host": ""}, "host", "", id="empty-host"),
    pytest.param({"host": None}, "host", None, id="none-host"),
    pytest.param({"socket_timeout": INF}, "socket_timeout", INF, id="infinite-timeout"),
    pytest.param({"socket_timeout": NAN}, "socket_timeout", NAN, id="nan-timeout"),
    pytest.param({"socket_timeout": 0}, "socket_timeout", 0, id="zero-timeout"),
    pytest.param({"socket_timeout": -1.0}, "socket_timeout", -1.0, id="negative-timeout"),
    pytest.param({"socket_connect_timeout": INF}, "socket_connect_timeout", INF, id="infinite-connect"),
    pytest.param({"max_connections": 0}, "max_connections", 0, id="zero-connections"),
]


@pytest.mark.parametrize(("options", "param", "value"), BAD_NEW)
def test_redis_new_rejects(options: dict[str, Any], param: str, value: Any) -> None:
    settings = {"host": "127.0.0.1", "port": 1, **options}

    with pytest.raises(InvalidArgument) as caught:
        redis_engine.new(**settings)

    check_rejected(caught.value, param, value)


BAD_URLS = [
    pytest.param("http://127.0.0.1:1/0", id="http-scheme"),
    pytest.param("redis+socket:///tmp/redis.sock", id="socket-scheme"),
    pytest.param("127.0.0.1:1", id="no-scheme"),
    pytest.param("redis://127.0.0.1:1/0?bogus=1", id="unknown-option"),
    pytest.param("redis://127.0.0.1:1/0?socket_timeout=soon", id="bad-option-value"),
    pytest.param("redis://127.0.0.1:1/x", id="path-not-number"),
    pytest.param("redis://127.0.0.1:1/-1", id="negative-path"),
    pytest.param("redis://127.0.0.1:1/1.5", id="fraction-path"),
    pytest.param("redis://127.0.0.1:0/4", id="port-0"),
    pytest.param("redis://127.0.0.1:70000/4", id="port-70000"),
    pytest.param("redis://127.0.0.1:port/4", id="port-not-number"),
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_redis_url_rejected(url: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url(url)

    check_rejected(caught.value, "url", url)


def test_redis_url_not_str() -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url(b"redis://127.0.0.1:1/0")  # type: ignore[arg-type]

    check_rejected(caught.value, "url", b"redis://127.0.0.1:1/0")


def test_redis_url_infinite_timeout() -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url("redis://127.0.0.1:1/0?socket_timeout=inf")

    assert caught.value.param == "socket_timeout"


def test_redis_url_sets_fields() -> None:
    engine = redis_engine.from_url("redis://127.0.0.1:1234/8")

    assert engine.host == "127.0.0.1"
    assert engine.port == 1234
    assert engine.offset == 8


def test_redis_url_default_offset() -> None:
    engine = redis_engine.from_url("redis://127.0.0.1:1234")

    assert engine.offset == 0


# URL checks of open_engine and from_url

BAD_ENGINE_URLS = [
    pytest.param("redis://127.0.0.1:1/0#x", "fragment", id="fragment"),
    pytest.param("redis://127.0.0.1:1/0?ssl_ca_certs=/ca.pem", "rediss://", id="ca-on-plain"),
    pytest.param("redis://127.0.0.1:1/0?ssl_certfile=/c.pem", "rediss://", id="certfile-on-plain"),
    pytest.param("redis://127.0.0.1:1/0?ssl_keyfile=/k.pem", "rediss://", id="keyfile-on-plain"),
    pytest.param(
        "rediss://127.0.0.1:1/0?ssl_ca_certs=/nonexistent/ca.pem", "/nonexistent/ca.pem", id="no-ca"
    ),
    pytest.param(
        "rediss://127.0.0.1:1/0?ssl_certfile=/nonexistent/c.pem", "/nonexistent/c.pem", id="no-cert"
    ),
    pytest.param("rediss://127.0.0.1:1/0?ssl_keyfile=/nonexistent/k.pem", "/nonexistent/k.pem", id="no-key"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_ENGINE_URLS)
def test_open_engine_rejects(url: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_engine(url)

    assert caught.value.param == "url"
    assert needle in caught.value.rule


@pytest.mark.parametrize(("url", "needle"), BAD_ENGINE_URLS)
def test_redis_url_checks_like_open_engine(url: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url(url)

    assert caught.value.param == "url"
    assert needle in caught.value.rule


def test_open_engine_tls_option_rejected() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_engine("redis://127.0.0.1:1/0", ssl_ca_certs="/ca.pem")

    assert caught.value.param == "ssl_ca_certs"
    assert "rediss://" in caught.value.rule


def test_open_engine_missing_keyword_file() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_engine("rediss://127.0.0.1:1/0", ssl_ca_certs="/nonexistent/ca.pem")

    assert caught.value.param == "ssl_ca_certs"
    assert "'/nonexistent/ca.pem' was not found" in caught.value.rule


def test_open_engine_tls_files_present(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked before connecting")

    engine = open_engine(f"rediss://127.0.0.1:1/0?ssl_ca_certs={ca}")

    assert "rediss://127.0.0.1:1/0" in repr(engine)


def test_open_engine_fragment_hides_password() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_engine(f"redis://u:{PASSWORD[:3]}#{PASSWORD[3:]}@127.0.0.1:1/0")

    assert PASSWORD[:3] not in str(caught.value)
    assert PASSWORD[3:] not in str(caught.value)
    assert "%23" in caught.value.rule


TLS_FILE_OPTIONS = ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"]


@pytest.mark.parametrize("name", TLS_FILE_OPTIONS)
def test_redis_new_tls_file_needs_ssl(name: str, tmp_path: Any) -> None:
    path = tmp_path / "file.pem"
    path.write_text("not checked before connecting")
    value = str(path)

    with pytest.raises(InvalidArgument) as caught:
        redis_engine.new("127.0.0.1", 1, **{name: value})

    check_rejected(caught.value, name, value)
    assert "ssl=True" in caught.value.rule


@pytest.mark.parametrize("name", TLS_FILE_OPTIONS)
def test_redis_new_tls_file_missing(name: str, tmp_path: Any) -> None:
    missing = str(tmp_path / "missing.pem")

    with pytest.raises(InvalidArgument) as caught:
        redis_engine.new("127.0.0.1", 1, ssl=True, **{name: missing})

    check_rejected(caught.value, name, missing)
    assert f"{missing!r} was not found" in caught.value.rule


@pytest.mark.parametrize("name", TLS_FILE_OPTIONS)
@pytest.mark.parametrize("value", [b"/ca.pem", 5], ids=["bytes", "int"])
def test_redis_new_tls_file_not_str(name: str, value: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.new("127.0.0.1", 1, ssl=True, **{name: value})

    check_rejected(caught.value, name, value)


def test_redis_new_tls_path_object(tmp_path: Any) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not checked before connecting")

    with pytest.raises(InvalidArgument) as caught:
        redis_engine.new("127.0.0.1", 1, ssl=True, ssl_ca_certs=path)

    check_rejected(caught.value, "ssl_ca_certs", path)
    assert "str()" in caught.value.rule


def test_redis_new_tls_files_present(tmp_path: Any) -> None:
    files = {}
    for name in TLS_FILE_OPTIONS:
        path = tmp_path / f"{name}.pem"
        path.write_text("not checked before connecting")
        files[name] = str(path)

    engine = redis_engine.new("127.0.0.1", 1, ssl=True, **files)

    assert "rediss://127.0.0.1:1/0" in repr(engine)


def test_redis_url_keyword_tls_file_needs_ssl(tmp_path: Any) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not checked before connecting")

    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url("redis://127.0.0.1:1/0", ssl_ca_certs=str(path))

    assert caught.value.param == "ssl_ca_certs"


def test_redis_url_keyword_ssl_allows_files(tmp_path: Any) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not checked before connecting")

    engine = redis_engine.from_url(f"redis://127.0.0.1:1/0?ssl_ca_certs={path}", ssl=True)

    assert "rediss://127.0.0.1:1/0" in repr(engine)


# Passwords stay out of reprs and errors

PASSWORD = "secret"

URLS_WITH_PASSWORD = [
    pytest.param("redis://u:secret@h:1/x", id="path-not-number"),
    pytest.param("redis://:secret@h:1/x", id="no-username"),
    pytest.param("redis://u:secret@h:1/0?bogus=1", id="unknown-option"),
    pytest.param("redis://u:secret@h:70000/0", id="port-70000"),
    pytest.param("redis://u:secret@h:0/0", id="port-0"),
    pytest.param("http://u:secret@h:1/0", id="http-scheme"),
]


@pytest.mark.parametrize("url", URLS_WITH_PASSWORD)
def test_url_error_hides_password(url: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url(url)

    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)
    assert PASSWORD not in repr(caught.value.value)
    assert caught.value.param == "url"


# Halves of a password that contains a character which ends the host
# part of a URL unless it is percent-encoded.
CUT_HEAD = "sec7"
CUT_TAIL = "ret9"

URLS_WITH_CUT_PASSWORD = [
    pytest.param(f"redis://relay:{CUT_HEAD}/{CUT_TAIL}@127.0.0.1:1/0", id="slash"),
    pytest.param(f"redis://relay:{CUT_HEAD}?{CUT_TAIL}@127.0.0.1:1/0", id="question-mark"),
    pytest.param(f"redis://relay:{CUT_HEAD}#{CUT_TAIL}@127.0.0.1:1/0", id="hash"),
    pytest.param(f"redis://:{CUT_HEAD}#{CUT_TAIL}@127.0.0.1:1/0", id="hash-no-user"),
    pytest.param(f"redis://:{CUT_HEAD}?{CUT_TAIL}@127.0.0.1:1/0", id="question-mark-no-user"),
    pytest.param(f"rediss://relay:{CUT_HEAD}/x?y#{CUT_TAIL}@127.0.0.1:1/0?socket_timeout=1", id="all"),
    pytest.param(f"redis://relay:{CUT_HEAD}?socket_timeout={CUT_TAIL}@127.0.0.1:1/0", id="option-like"),
    pytest.param(f"rediss://relay:{CUT_HEAD}?ssl_ca_certs={CUT_TAIL}@127.0.0.1:1/0", id="tls-option-like"),
]


def chain_texts(error: BaseException) -> list[str]:
    """Return the message and repr of an error and of every error it was raised from."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


@pytest.mark.parametrize("url", URLS_WITH_CUT_PASSWORD)
@pytest.mark.parametrize("opener", [open_engine, redis_engine.from_url], ids=["open_engine", "from_url"])
def test_url_error_hides_cut_password(url: str, opener: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        opener(url)

    texts = [*chain_texts(caught.value), repr(caught.value.value)]
    assert [text for text in texts if CUT_HEAD in text] == []
    assert [text for text in texts if CUT_TAIL in text] == []
    assert caught.value.param == "url"
    assert "127.0.0.1:1" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "encoded"),
    [
        pytest.param(f"redis://relay:{CUT_HEAD}/{CUT_TAIL}@127.0.0.1:1/0", "%2F", id="slash"),
        pytest.param(f"redis://relay:{CUT_HEAD}?{CUT_TAIL}@127.0.0.1:1/0", "%3F", id="question-mark"),
        pytest.param(f"redis://relay:{CUT_HEAD}#{CUT_TAIL}@127.0.0.1:1/0", "%23", id="hash"),
    ],
)
def test_cut_password_error_names_encoding(url: str, encoded: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redis_engine.from_url(url)

    assert encoded in caught.value.rule


REDACTED_URLS = [
    pytest.param("redis://relay:pw@h:1/0", "redis://relay:***@h:1/0", id="password"),
    pytest.param("redis://relay@h:1/0", "redis://relay@h:1/0", id="user-only"),
    pytest.param("redis://h:1/0", "redis://h:1/0", id="no-userinfo"),
    pytest.param("redis://relay:pw@h:1/0?password=x", "redis://relay:***@h:1/0?password=***", id="query"),
    pytest.param("redis://relay:a@b@h:1/0", "redis://relay:***@h:1/0", id="at-sign"),
    pytest.param("redis://relay:a/b@h:1/0", "redis://***@h:1/0", id="slash"),
    pytest.param("redis://relay:a?b@h:1/0", "redis://***@h:1/0", id="question-mark"),
    pytest.param("redis://relay:a#b@h:1/0", "redis://***@h:1/0", id="hash"),
    pytest.param("redis://:a#b@h:1/0", "redis://***@h:1/0", id="hash-no-user"),
    pytest.param("redis://relay:a/b@h:1/0?passwd=x", "redis://***@h:1/0?passwd=***", id="slash-and-query"),
    pytest.param("redis://relay:a/b@c@h:1/0", "redis://***@h:1/0", id="slash-and-at-sign"),
    pytest.param("redis:relay:a/b@h", "redis:***@h", id="no-slashes"),
    pytest.param("redis://h:1/0?password=a#b", "redis://h:1/0?password=***#***", id="query-hash"),
    # Hiding more than the password is the price of never showing it.
    pytest.param("redis://h:1/0?client_name=a@b", "redis://***@b", id="at-sign-in-query"),
]


@pytest.mark.parametrize(("url", "expected"), REDACTED_URLS)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_url_repr_hides_password() -> None:
    engine = redis_engine.from_url("redis://u:secret@127.0.0.1:1/4")

    assert PASSWORD not in repr(engine)
    assert "127.0.0.1:1/4" in repr(engine)


def test_new_repr_hides_password() -> None:
    engine = redis_engine.new("127.0.0.1", 1, 4, password=PASSWORD)

    assert PASSWORD not in repr(engine)


def free_port() -> int:
    """Return a loopback port that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_unavailable_hides_password() -> None:
    engine = redis_engine.from_url(f"redis://u:{PASSWORD}@127.0.0.1:{free_port()}/4?socket_connect_timeout=2")

    with pytest.raises(StorageUnavailable) as caught:
        engine.connect()

    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


# The offset check at connect, on the test server with 16 databases


def test_offset_beyond_databases(clean_redis: RedisServer) -> None:
    # Offset 13 needs databases 13 to 16, and the server has 0 to 15.
    engine = redis_engine.new("127.0.0.1", clean_redis.port, 13)

    with pytest.raises(InvalidArgument) as caught:
        engine.connect()

    check_rejected(caught.value, "offset", 13)
    engine.close()


def test_offset_past_last_database(clean_redis: RedisServer) -> None:
    engine = redis_engine.new("127.0.0.1", clean_redis.port, 20)

    with pytest.raises(InvalidArgument) as caught:
        engine.connect()

    check_rejected(caught.value, "offset", 20)
    engine.close()


def test_offset_last_fitting(clean_redis: RedisServer) -> None:
    engine = redis_engine.new("127.0.0.1", clean_redis.port, 12)

    with engine.connect() as session:
        message_id = session.claim_message_id()
        session.set_message_meta(message_id, {"a": "1"})

    assert clean_redis.client(13).hgetall(message_id) == {b"a": b"1"}
    engine.close()


def test_offset_error_writes_nothing(clean_redis: RedisServer) -> None:
    engine = redis_engine.new("127.0.0.1", clean_redis.port, 13)

    with pytest.raises(InvalidArgument):
        engine.connect()

    for db in range(16):
        assert clean_redis.client(db).dbsize() == 0, f"db {db}"
    engine.close()


def test_fixture_offset_connects(clean_redis: RedisServer) -> None:
    engine = redis_engine.from_url(clean_redis.url(OFFSET))

    with engine.connect() as session:
        assert session.get_all_messages() == []
    engine.close()
