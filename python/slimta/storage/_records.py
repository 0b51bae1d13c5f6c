"""The values that session methods take and return, beyond text, bytes and numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

__all__ = ["Message", "MessageInfo", "NewMessage", "Page"]


@dataclass(frozen=True)
class Message:
    """One stored message, its meta and contents read in one atomic step."""

    meta: dict[str, str]
    """The meta, empty when none was written."""
    contents: bytes | None
    """The contents byte for byte, or None when none were written."""


@dataclass(frozen=True)
class Page:
    """One page of a listing and the cursor of the next page."""

    message_ids: list[str]
    """The ids of this page, possibly none before the last page."""
    cursor: str | None
    """The text to pass back for the next page, or None when this page is the last."""


class _NewMessageFields(TypedDict):
    meta: Mapping[str, str]
    contents: bytes


class NewMessage(_NewMessageFields, total=False):
    """One message for :meth:`Session.store_messages`, as :meth:`Session.store_message` takes it.

    ``meta`` and ``contents`` are required; ``retry``, the first retry time
    in UNIX seconds or None, is optional.
    """

    retry: float | None


@dataclass(frozen=True)
class MessageInfo:
    """Facts about one stored message, for listings such as the command line's.

    Not part of the spec: other bindings need not offer it.
    """

    message_id: str
    """The id of the message."""
    size: int | None
    """Length of the contents in bytes, or None when none were written."""
    retry: float | None
    """Retry time in UNIX seconds, or None when the message has none."""
    lock_remaining: float | None
    """Seconds until the lock expires, or None when the message is not locked."""
