"""python-slimta's RedisStorage as the third-party anchor of the benchmark.

It runs only in the separate interpreter that has python-slimta
installed (``.venv-bench`` by default), never in the project's own. One
life cycle is what a python-slimta queue does for a message delivered at
the first attempt: ``write``, ``get`` and ``remove``. That storage takes
no lock and keeps no retry time apart from the envelope's timestamp.
"""

from __future__ import annotations

import importlib
import time
import warnings
from typing import Any

from .workload import OFFSETS, RECIPIENTS, SENDER, make_body

__all__ = ["FACTORIES", "PythonSlimta", "unavailable"]

HOST = "127.0.0.1"
RETRY_DELAY = 300.0


def _import() -> tuple[Any, Any]:
    """Import python-slimta's Envelope and RedisStorage, only in the interpreter that has them."""
    with warnings.catch_warnings():
        # python-slimta 5 imports pkg_resources, which warns that it is deprecated.
        warnings.simplefilter("ignore")
        envelope = importlib.import_module("slimta.envelope")
        storage = importlib.import_module("slimta.redisstorage")
    return envelope.Envelope, storage.RedisStorage


def unavailable(variant: str) -> str | None:
    """Return why python-slimta cannot be imported here, or None when it can."""
    try:
        _import()
    except Exception as error:
        return f"python-slimta cannot be imported: {type(error).__name__}: {error}"
    return None


class PythonSlimta:
    """python-slimta's RedisStorage: write, get and remove one envelope."""

    def __init__(self, port: int, size: int) -> None:
        envelope_class, storage_class = _import()
        # Host and port are always given: the defaults name localhost:6379.
        self._storage = storage_class(host=HOST, port=port, db=OFFSETS["anchor"], socket_timeout=10)
        self._envelope = envelope_class(SENDER, list(RECIPIENTS))
        self._envelope.parse(make_body(size))

    def run(self) -> int:
        message_id = self._storage.write(self._envelope, time.time() + RETRY_DELAY)
        envelope, attempts = self._storage.get(message_id)
        if envelope.message != self._envelope.message or attempts != 0:
            raise RuntimeError("life cycle check failed: python-slimta returned another envelope")
        self._storage.remove(message_id)
        return 1

    def close(self) -> None:
        self._storage.redis.connection_pool.disconnect()


FACTORIES = {"python-slimta": PythonSlimta}
"""The variant by name: a function of the server's port and the body size."""
