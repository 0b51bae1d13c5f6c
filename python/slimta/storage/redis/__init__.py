"""The Redis engine: the queue in four adjacent databases of a Redis server.

Create an engine with :func:`new` or :func:`from_url`, then open sessions
with its ``connect()``. The layout is the one the spec fixes, so
processes in other languages can share the queue.
"""

from ._engine import RedisEngine, from_url, new
from ._session import RedisSession

__all__ = ["RedisEngine", "RedisSession", "from_url", "new"]
