"""The bulk calls of the Redis engine: one script per message, all in one pipeline."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from .._errors import StorageUnavailable
from .._records import Message
from .._validate import CheckedMessage
from ._codec import MESSAGE_IDS, RETRY_QUEUE, message, meta_pairs, score
from ._link import Link, is_connection_fault

__all__ = ["get_messages", "store_messages"]

log = logging.getLogger(__name__)

# How many pipelines store_messages sends for new ids that are stored
# already. A random UUID is stored already with a chance far below one in
# a billion, so a second pipeline is rare and a third means a fault.
MAX_STORE_ROUNDS = 3

Call = tuple[list[Any], list[Any]]


def get_messages(link: Link, offset: int, message_ids: list[str]) -> dict[str, Message]:
    """Read each message by get_message.lua, in one pipeline, and return those that are stored."""
    calls: list[Call] = [([MESSAGE_IDS, message_id], [offset]) for message_id in message_ids]
    replies = link.script_batch("get_messages", "get_message", calls, retry=True)
    return {
        message_id: message(reply[1], reply[2])
        for message_id, reply in zip(message_ids, replies, strict=True)
        if reply[0] == 1
    }


def store_messages(link: Link, offset: int, messages: list[CheckedMessage]) -> list[str]:
    """Store each message by store.lua under a new random id, in one pipeline, and return the ids.

    A pipeline that fails with a connection fault is sent once more with
    the same ids, so a lost reply never stores a message twice. A 0 reply
    then means the first pipeline stored that message: no other writer can
    know ids this random. A 0 reply to a first send means the id was taken,
    and that message goes out again with a new id.
    """
    message_ids = [str(uuid.uuid4()) for _ in messages]
    pending = list(range(len(messages)))
    for _ in range(MAX_STORE_ROUNDS):
        calls = [_store_call(offset, message_ids[index], messages[index]) for index in pending]
        replies, resent = _send_stores(link, calls)
        taken = [index for index, stored in zip(pending, replies, strict=True) if not (stored or resent)]
        if not taken:
            return message_ids
        for index in taken:
            message_ids[index] = str(uuid.uuid4())
        pending = taken

    reason = f"its new random ids were stored already {MAX_STORE_ROUNDS} times in a row"
    raise link.failure("store_messages", f"{reason}; check that no other writer copies this engine's ids")


def _store_call(offset: int, message_id: str, new: CheckedMessage) -> Call:
    retry = b"" if new.retry is None else score(new.retry)
    keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
    return keys, [offset, new.contents, retry, *meta_pairs(new.meta)]


def _send_stores(link: Link, calls: list[Call]) -> tuple[list[Any], bool]:
    """Send the stores, and once more after a connection fault.

    Returns the replies and whether they are those of the second send.
    """
    try:
        return link.script_batch("store_messages", "store", calls), False
    except StorageUnavailable as error:
        if not is_connection_fault(error):
            raise
        log.warning("store_messages of %d messages failed, sending them once more: %s", len(calls), error)
        return link.script_batch("store_messages", "store", calls), True
