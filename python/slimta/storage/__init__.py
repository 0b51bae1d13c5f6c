"""Storage for the queue of a mail transfer agent.

The engines :mod:`slimta.storage.memory` and :mod:`slimta.storage.redis`
hand out sessions (:class:`~slimta.storage.session.Session`) with the
methods of the slimta-storage spec. Every error they raise derives from
:class:`StorageError`.
"""

from ._errors import (
    InvalidArgument,
    MessageNotFound,
    SessionClosed,
    StorageError,
    StorageUnavailable,
)
from ._url import Engine, open_engine
from ._version import SPEC_VERSION, __version__
from .session import MessageInfo, Session

__all__ = [
    "SPEC_VERSION",
    "Engine",
    "InvalidArgument",
    "MessageInfo",
    "MessageNotFound",
    "Session",
    "SessionClosed",
    "StorageError",
    "StorageUnavailable",
    "__version__",
    "open_engine",
]
