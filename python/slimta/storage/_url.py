"""Open an engine from a URL: ``memory://`` or ``redis://host:port/offset``."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import memory
from ._errors import InvalidArgument
from ._validate import redact_url
from .memory import MemoryEngine
from .redis import RedisEngine, from_url

__all__ = ["Engine", "open_engine"]

Engine = MemoryEngine | RedisEngine

# The options of the Redis engine that name a file for TLS, which only rediss:// uses.
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def open_engine(url: str, **options: Any) -> Engine:
    """Create the engine that ``url`` names.

    ``memory://`` gives a new, empty memory engine. ``redis://`` and
    ``rediss://`` URLs go to :func:`slimta.storage.redis.from_url` with
    ``options``, after these checks, which ``from_url`` does not make:
    the URL has no ``#fragment``, TLS options such as ``ssl_ca_certs``
    come only with ``rediss://`` (or the option ``ssl=True``), and the
    files that they name exist. No connection is made.
    """
    if not isinstance(url, str):
        raise InvalidArgument("url", url, "must be a str such as memory:// or redis://localhost:6379/0")
    if url.startswith("memory:"):
        if url not in ("memory:", "memory://"):
            raise InvalidArgument(
                "url", redact_url(url), "a memory engine URL takes no host or path: use memory://"
            )
        return memory.new()
    if url.startswith(("redis://", "rediss://")):
        _check_redis_url(url, options)
        return from_url(url, **options)
    raise InvalidArgument("url", redact_url(url), "must start with memory://, redis:// or rediss://")


def _check_redis_url(url: str, options: dict[str, Any]) -> None:
    if "#" in url:
        raise InvalidArgument(
            "url",
            _redact_with_hash(url),
            "a # starts a URL fragment, which the engine would ignore: remove it, or write a # in a"
            " password as %23",
        )

    try:
        query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        # from_url reports a URL that cannot be parsed.
        return
    files = {name: values[-1] for name, values in query.items() if name in TLS_FILE_OPTIONS}
    tls = url.startswith("rediss://") or bool(options.get("ssl"))
    for name, path in files.items():
        _check_tls_file("url", redact_url(url), name, path, tls)
    for name in TLS_FILE_OPTIONS:
        if options.get(name) is not None:
            _check_tls_file(name, options[name], name, options[name], tls)


def _check_tls_file(param: str, value: Any, name: str, path: Any, tls: bool) -> None:
    """Check one TLS file option; ``param`` and ``value`` are what the error names."""
    if not tls:
        raise InvalidArgument(
            param, value, f"{name} is a TLS option, so it needs a rediss:// URL, which turns on TLS"
        )
    if isinstance(path, str) and not os.path.isfile(path):
        raise InvalidArgument(
            param,
            value,
            f"the {name} file {path!r} was not found or is not a file; pass the path of a PEM file",
        )


def _redact_with_hash(url: str) -> str:
    """Return ``url`` with its password hidden, even when the password contains a #.

    A # in the password cuts the URL short for urlsplit, so the rest of
    the password would be taken for a fragment and shown. Each # is
    parsed as %23 instead, then shown as # again.
    """
    return redact_url(url.replace("#", "%23")).replace("%23", "#")
