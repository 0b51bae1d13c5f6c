"""The Redis engine: settings, the connection pool and the offset check."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.exceptions as redis_errors
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._errors import InvalidArgument, StorageUnavailable
from .._validate import redact_url, userinfo_cut
from ._link import Link
from ._scripts import SCRIPTS
from ._session import RedisSession

__all__ = ["RedisEngine", "from_url", "new"]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 100
_DATABASES = 4
# Redis's default limit on one bulk string, which bounds the contents.
DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024
# The servers already warned about in this process for persisting nothing.
_WARNED_SERVERS: set[tuple[str, int]] = set()
# The settings read at the first connect.
_SETTINGS = ("databases", "proto-max-bulk-len", "appendonly", "save")


class RedisEngine:
    """An engine that keeps its queue in four databases of a Redis server.

    Create it with :func:`new` or :func:`from_url`. It owns a connection
    pool: each session borrows one connection and gives it back on close.
    """

    def __init__(self, host: str, port: int, offset: int, options: dict[str, Any]) -> None:
        self.host = host
        self.port = port
        self.offset = offset
        self._username = options.get("username")
        self._tls = bool(options.get("ssl"))
        self._offset_checked = False
        self._check_mutex = threading.Lock()
        self._max_contents = DEFAULT_PROTO_MAX_BULK_LEN

        # No retries inside redis-py: a write whose reply was lost must not
        # be sent again blindly, so every fault reaches the session. RESP2
        # keeps the replies of the scripts the same in every redis-py
        # version: a Lua false is a nil reply, not a RESP3 boolean. When
        # every connection is in use, connect() waits up to the connect
        # timeout for one to come back.
        self._connection_options: dict[str, Any] = {
            "host": host,
            "port": port,
            "protocol": 2,
            "retry": Retry(NoBackoff(), 0),
            "connection_class": redis.SSLConnection if self._tls else redis.Connection,
            **{key: value for key, value in options.items() if key not in ("ssl", "max_connections")},
        }
        self._pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            db=offset,
            max_connections=options["max_connections"],
            timeout=options["socket_connect_timeout"],
            **self._connection_options,
        )

    def __repr__(self) -> str:
        scheme = "rediss" if self._tls else "redis"
        user = f"{self._username}@" if self._username else ""
        return f"<RedisEngine {scheme}://{user}{self.host}:{self.port}/{self.offset}>"

    def connect(self) -> RedisSession:
        """Open a session on the engine, borrowing a pooled connection.

        The first call also checks that the offset's four databases exist
        and loads the Lua scripts.

        :raises InvalidArgument: the server lacks the offset's databases.
        :raises StorageUnavailable: the server cannot be reached or used.
        """
        if not self._offset_checked:
            self._check_server()
        return RedisSession(Link(self._pool, self.host, self.port), self.offset, self._max_contents)

    def close(self) -> None:
        """Close every idle connection of the pool; open sessions keep theirs."""
        self._pool.disconnect(inuse_connections=False)

    def _check_server(self) -> None:
        """Check the offset's databases and load every script, in one round trip.

        It runs on a connection of its own to database 0, because the
        pooled connections select the offset as they connect, which fails
        before a useful message can be given.
        """
        commands: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", script.source) for script in SCRIPTS.values()]
        commands.append(("EVALSHA", SCRIPTS["check_offset"].sha, 0, self.offset))
        commands.append(("CONFIG", "GET", *_SETTINGS))

        with self._check_mutex:
            if self._offset_checked:
                return
            probe_pool = redis.ConnectionPool(db=0, max_connections=1, **self._connection_options)
            try:
                link = Link(probe_pool, self.host, self.port)
                replies = link.pipeline("connect", commands)
            except StorageUnavailable as error:
                if self._tls and _is_handshake_fault(error):
                    raise self._with_tls_hint(error) from error
                raise
            finally:
                probe_pool.disconnect()
            *loads, check, config_reply = replies
            settings = _settings(config_reply)
            self._raise_first_failure(link, loads, check, settings)
            self._apply_settings(settings)
            self._offset_checked = True

    def _raise_first_failure(
        self, link: Link, loads: list[Any], check: Any, settings: dict[str, str]
    ) -> None:
        for reply in loads:
            if isinstance(reply, Exception):
                raise link.unavailable("connect", reply)
        if _is_db_range_error(check):
            databases = settings.get("databases")
            raise self._offset_error(int(databases) if databases else None)
        if isinstance(check, Exception):
            raise self._select_error(link, check)

    def _apply_settings(self, settings: dict[str, str]) -> None:
        if "proto-max-bulk-len" in settings:
            self._max_contents = int(settings["proto-max-bulk-len"])
        persists_nothing = settings.get("appendonly") == "no" and settings.get("save") == ""
        if persists_nothing and (self.host, self.port) not in _WARNED_SERVERS:
            # Once per server and process, because engines are cheap to make.
            _WARNED_SERVERS.add((self.host, self.port))
            log.warning(
                'Redis at %s:%d persists nothing (appendonly no, save ""): a restart of the server'
                " loses the whole queue. Turn on AOF or RDB snapshots.",
                self.host,
                self.port,
            )

    def _with_tls_hint(self, error: StorageUnavailable) -> StorageUnavailable:
        """Return ``error`` with a hint that the server may not accept TLS connections."""
        reason = str(error).removesuffix(".")
        hint = (
            f"{reason}. The engine uses TLS (rediss://): check that the server at {self.host}:{self.port}"
            " accepts TLS connections, or use redis:// for a server without TLS"
        )
        return StorageUnavailable(hint, host=self.host, port=self.port, operation="connect")

    def _select_error(self, link: Link, error: Exception) -> Exception:
        last = self.offset + _DATABASES - 1
        message = (
            f"Redis at {self.host}:{self.port} rejected SELECT of databases {self.offset} to {last}"
            f" ({error}). The queue needs four databases, so use a server that offers them,"
            " not a cluster or a proxy limited to database 0"
        )
        return link.unavailable("connect", error, message)

    def _offset_error(self, databases: int | None) -> InvalidArgument:
        last = self.offset + _DATABASES - 1
        server = f"{self.host}:{self.port}"
        rule = f"the queue needs four databases from the offset, {self.offset} to {last}"
        if databases is None:
            return InvalidArgument("offset", self.offset, f"{rule}, which the server at {server} lacks")

        rule += f", and the server at {server} has only {databases} (its databases setting)"
        if databases >= _DATABASES:
            rule += f", so use an offset of at most {databases - _DATABASES}"
            rule += f" or raise databases to at least {last + 1}"
        else:
            rule += f", so raise databases to at least {last + 1}"
        return InvalidArgument("offset", self.offset, rule)


def _is_handshake_fault(error: StorageUnavailable) -> bool:
    """Tell whether a connection failed in the TLS handshake by a timeout, a reset or a close.

    A server without TLS does not complete the handshake, so the client
    sees only such a fault, which hides the likely cause. A refused
    connection or a failed name lookup happens before any handshake, and
    a rejected certificate names its own cause, so neither gets the hint.
    """
    cause = error.__cause__
    if not isinstance(cause, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        return False
    # redis-py raises its error from the OSError of the socket, or inside
    # the handler of a timeout, which makes the timeout its __context__.
    inner = cause.__cause__ or cause.__context__
    if isinstance(inner, (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    # CPython's ssl module (_ssl.c) names the handshake in its timeout,
    # unlike the timeout of the TCP connect before it.
    return isinstance(inner, TimeoutError) and "handshake" in str(inner)


def _settings(reply: Any) -> dict[str, str]:
    """Turn the reply of CONFIG GET into a dict, empty when the command was denied.

    An ACL may deny CONFIG. The engine then assumes Redis's default limit,
    checks no persistence, and names no count in offset errors.
    """
    if not isinstance(reply, list):
        log.debug("CONFIG GET failed, so the server's settings are unknown: %s", reply)
        return {}
    items = [item.decode("utf-8", "replace") for item in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _is_db_range_error(error: Any) -> bool:
    # Redis 7 says "DB index is out of range", and "value is out of range"
    # for an index beyond a 32-bit int.
    return isinstance(error, redis_errors.ResponseError) and "out of range" in str(error)


def new(
    host: str = "localhost",
    port: int = 6379,
    offset: int = 0,
    *,
    username: str | None = None,
    password: str | None = None,
    ssl: bool = False,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_check_hostname: bool = True,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    client_name: str | None = None,
) -> RedisEngine:
    """Create a Redis engine; no connection is made until :meth:`RedisEngine.connect`.

    ``offset`` is the first of the four databases the queue uses. The
    ``ssl*`` options turn on TLS and mean what they mean in redis-py.
    Timeouts are in seconds and must be finite. ``ssl_ca_certs``,
    ``ssl_certfile`` and ``ssl_keyfile`` need ``ssl=True``, and each must
    be the path of an existing file.
    """
    _check_text("host", host)
    _check_int("port", port, 1, 65535)
    _check_int("offset", offset, 0, None)
    _check_int("max_connections", max_connections, 1, None)
    _check_timeout("socket_timeout", socket_timeout)
    _check_timeout("socket_connect_timeout", socket_connect_timeout)
    tls_files = {"ssl_ca_certs": ssl_ca_certs, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    for name, path in tls_files.items():
        if path is not None:
            _check_tls_file(name, path, name, path, tls=ssl)

    options: dict[str, Any] = {
        "username": username,
        "password": password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "max_connections": max_connections,
        "client_name": client_name,
    }
    if ssl:
        options.update(
            ssl=True,
            ssl_ca_certs=ssl_ca_certs,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_check_hostname=ssl_check_hostname,
        )
    return RedisEngine(host, port, offset, options)


_URL_OPTIONS = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "max_connections": int,
    "client_name": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
}
# The options that name a file for TLS, which only rediss:// or ssl=True uses.
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_ENCODE_HINT = (
    "; if the user name or password contains /, ?, # or @, percent-encode them as %2F, %3F, %23 and %40"
)


def from_url(url: str, **options: Any) -> RedisEngine:
    """Create a Redis engine from ``redis://[[user]:password@]host[:port][/offset]``.

    ``rediss://`` turns on TLS. Query parameters set the options of
    :func:`new` that take numbers or paths, such as
    ``?socket_timeout=2.5``; keyword arguments override the URL. The URL
    must not have a ``#fragment``. The TLS file options, in the URL or as
    keywords, need ``rediss://`` or ``ssl=True`` and must name existing
    files. Errors show the URL with its password hidden.
    """
    _check_text("url", url)
    if "#" in url:
        raise InvalidArgument(
            "url",
            redact_url(url),
            "a # starts a URL fragment, which the engine would ignore: remove it, or write a # in a"
            " password as %23",
        )
    # Errors are raised outside the except clauses that find them, so that
    # their __context__ is not an error of urlsplit, which can show a password.
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None:
        rule = "cannot be parsed; check the brackets of an IPv6 host, and percent-encode the password"
        raise _url_error(url, rule, cut=False)
    cut = userinfo_cut(url)
    if parts.scheme not in ("redis", "rediss"):
        raise _url_error(url, "must start with redis:// or rediss://", cut)
    if not parts.hostname:
        raise _url_error(url, "must name a host, as in redis://127.0.0.1:6379/0", cut)

    settings: dict[str, Any] = {"ssl": parts.scheme == "rediss"}
    if parts.username:
        settings["username"] = unquote(parts.username)
    if parts.password:
        settings["password"] = unquote(parts.password)
    query_options = _query_options(url, parts.query, cut)
    settings.update(query_options)
    settings.update(options)
    for name in TLS_FILE_OPTIONS:
        if name in query_options:
            # An @ beyond the host part may have put a password into the path.
            path = query_options[name]
            path_text = "in the URL" if cut else repr(path)
            tls = bool(settings["ssl"])
            _check_tls_file("url", redact_url(url), name, path, tls=tls, path_text=path_text)
    return new(parts.hostname, _url_port(url, parts, cut), _url_offset(url, parts.path, cut), **settings)


def _url_error(url: str, rule: str, cut: bool) -> InvalidArgument:
    """Build the error for an invalid URL, asking to percent-encode when an @ lies beyond the host part."""
    return InvalidArgument("url", redact_url(url), rule + _ENCODE_HINT if cut else rule)


def _url_port(url: str, parts: Any, cut: bool) -> int:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        return 6379
    if port == 0:
        # Port 0 must not fall back to the default port 6379.
        raise _url_error(url, "the port must be a number from 1 to 65535", cut)
    return int(port)


def _url_offset(url: str, path: str, cut: bool) -> int:
    text = path.strip("/")
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise _url_error(url, "the path must be the database offset, such as /0 or /4", cut)
    return int(text)


def _query_options(url: str, query: str, cut: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        convert = _URL_OPTIONS.get(name)
        if convert is None:
            known = ", ".join(sorted(_URL_OPTIONS))
            # With an @ beyond the host part, the name may be part of a password.
            unknown = "the query has an unknown option" if cut else f"unknown option {name!r}"
            raise _url_error(url, f"{unknown}; known options: {known}", cut)
        try:
            value = convert(values[-1])
        except ValueError:
            value = None
        if value is None:
            raise _url_error(url, f"option {name} must be a {convert.__name__}", cut)
        options[name] = value
    return options


def _check_tls_file(param: str, value: Any, name: str, path: Any, *, tls: bool, path_text: str = "") -> None:
    """Check one TLS file option, raising an error that names ``param`` and ``value``.

    ``path_text`` names the file in the error, and defaults to the repr of ``path``.
    """
    if not tls:
        raise InvalidArgument(
            param,
            value,
            f"{name} is a TLS option, so it needs a rediss:// URL or ssl=True, which turn on TLS",
        )
    if not isinstance(path, str):
        raise InvalidArgument(
            param, value, f"{name} must be a str, the path of a PEM file; convert a Path with str()"
        )
    if not os.path.isfile(path):
        raise InvalidArgument(
            param,
            value,
            f"the {name} file {path_text or repr(path)} was not found or is not a file;"
            " pass the path of a PEM file",
        )


def _check_text(param: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(param, value, "must be a non-empty str")


def _check_int(param: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(param, value, "must be an int")
    if value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InvalidArgument(param, value, f"must be {limit}")


def _check_timeout(param: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InvalidArgument(param, value, "must be a finite number of seconds greater than 0")
