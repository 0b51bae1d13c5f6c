"""The Lua scripts of the Redis engine, loaded from the ``lua`` folder.

Each script is called by its SHA1 with EVALSHA. When the server answers
NOSCRIPT, because it restarted or its script cache was flushed, the
session sends the source once with EVAL, which also caches it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["SCRIPTS", "Script"]


@dataclass(frozen=True)
class Script:
    """One Lua script: its file name without ``.lua``, its source and SHA1."""

    name: str
    source: bytes
    sha: str


def _load(name: str) -> Script:
    source = resources.files(__package__).joinpath("lua", f"{name}.lua").read_bytes()
    return Script(name, source, hashlib.sha1(source).hexdigest())


_NAMES = (
    "active_page",
    "check_offset",
    "checkout",
    "defer",
    "deferred_page",
    "delete",
    "delete_incomplete",
    "describe",
    "expire_locks",
    "finish",
    "get_contents",
    "get_message",
    "get_meta",
    "get_meta_key",
    "inspect_ids",
    "lock",
    "refresh_lock",
    "remove_orphans",
    "scan_keys",
    "set_contents",
    "set_meta",
    "set_meta_key",
    "set_retry",
    "store",
    "unlock",
)

SCRIPTS = {name: _load(name) for name in _NAMES}
