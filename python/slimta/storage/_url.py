"""Open an engine from a URL: ``memory://`` or ``redis://host:port/offset``."""

from __future__ import annotations

from typing import Any

from . import memory
from ._errors import InvalidArgument
from ._validate import redact_url
from .memory import MemoryEngine
from .redis import RedisEngine, from_url

__all__ = ["Engine", "open_engine"]

Engine = MemoryEngine | RedisEngine


def open_engine(url: str, **options: Any) -> Engine:
    """Create the engine that ``url`` names.

    ``memory://`` gives a new, empty memory engine. ``redis://`` and
    ``rediss://`` URLs go to :func:`slimta.storage.redis.from_url` with
    ``options``, which also checks the URL's fragment and TLS options. No
    connection is made.
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
        return from_url(url, **options)
    raise InvalidArgument("url", redact_url(url), "must start with memory://, redis:// or rediss://")
