"""The Redis engine: the queue in four adjacent databases of a Redis server.

Create an engine with :func:`new` or :func:`from_url`, then open sessions
with its ``connect()``. The layout is the one the spec fixes, so
processes in other languages can share the queue. :func:`check_queue`
finds and repairs what breaks the layout, as ``slimta-storage check``
does.
"""

from ._check import check_queue
from ._check_report import CheckReport, IncompleteMessage, LayoutKey, Orphan, Repairs
from ._engine import RedisEngine, from_url, new
from ._session import RedisSession

__all__ = [
    "CheckReport",
    "IncompleteMessage",
    "LayoutKey",
    "Orphan",
    "RedisEngine",
    "RedisSession",
    "Repairs",
    "check_queue",
    "from_url",
    "new",
]
