"""Storage for the queue of a mail transfer agent.

The engines :mod:`slimta.storage.memory` and :mod:`slimta.storage.redis`
hand out sessions (:class:`~slimta.storage.session.Session`) with the
methods of the slimta-storage spec. Every error they raise derives from
:class:`StorageError`.
"""

import logging

from ._errors import (
    InvalidArgument,
    MessageNotFound,
    MessageTooLarge,
    SessionClosed,
    StorageError,
    StorageUnavailable,
)
from ._url import Engine, open_engine
from ._version import SPEC_VERSION, __version__
from .session import Message, MessageInfo, NewMessage, Page, Session

__all__ = [
    "SPEC_VERSION",
    "Engine",
    "InvalidArgument",
    "Message",
    "MessageInfo",
    "MessageNotFound",
    "MessageTooLarge",
    "NewMessage",
    "Page",
    "Session",
    "SessionClosed",
    "StorageError",
    "StorageUnavailable",
    "__version__",
    "open_engine",
]

# The application decides where log records go; without its own set-up,
# nothing is printed, not even warnings.
logging.getLogger(__name__).addHandler(logging.NullHandler())
