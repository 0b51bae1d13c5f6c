"""The bulk calls of the Redis engine: one script per message, all in one pipeline."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import redis.exceptions as redis_errors

from .._errors import StorageUnavailable
from .._records import Message
from .._validate import CheckedMessage
from ._codec import MALFORMED, MESSAGE_IDS, RETRY_QUEUE, malformed_reason, message, meta_pairs, score
from ._link import Link, is_connection_fault

__all__ = ["check_stored", "get_messages", "store_messages", "unknown_error"]

log = logging.getLogger(__name__)

# How many pipelines store_messages sends for new ids that are stored
# already. A random UUID is stored already with a chance far below one in
# a billion, so a second pipeline is rare and a third means a fault.
MAX_STORE_ROUNDS = 3

OPERATION = "store_messages"

# Pauses in seconds before each try of the check whether new ids are
# stored, after a connection fault: a restarting server refuses
# connections for a moment, often well under a second.
CHECK_PAUSES = (0.0, 0.1, 0.5)

Call = tuple[list[Any], list[Any]]


def get_messages(link: Link, offset: int, message_ids: list[str]) -> dict[str, Message]:
    """Read each message by get_message.lua, in one pipeline, and return those that are stored.

    A malformed message is left out with a warning, so that it does not
    keep the others from being read.
    """
    calls: list[Call] = [([MESSAGE_IDS, message_id], [offset]) for message_id in message_ids]
    replies = link.script_batch("get_messages", "get_message", calls, retry=True)

    messages = {}
    for message_id, reply in zip(message_ids, replies, strict=True):
        if reply[0] == 1:
            messages[message_id] = message(reply[1], reply[2])
        elif reply[0] == MALFORMED:
            log.warning("get_messages left out %s", malformed_reason(offset, message_id, reply))
    return messages


def store_messages(link: Link, offset: int, messages: list[CheckedMessage]) -> list[str]:
    """Store each message by store.lua under a new random id, in one pipeline, and return the ids.

    No store is ever sent twice. After a connection fault the engine checks
    which new ids are stored: when all are, the call succeeds, and
    otherwise it raises :class:`StorageUnavailable` whose ``message_ids``
    contains the stored ids and None for the others. An error reply to some
    of the stores raises the same way. A 0 reply means the id was taken,
    and that message goes out again with a new id.
    """
    message_ids = [str(uuid.uuid4()) for _ in messages]
    stored: list[str | None] = [None] * len(messages)
    pending = list(range(len(messages)))
    for _ in range(MAX_STORE_ROUNDS):
        calls = [_store_call(offset, message_ids[index], messages[index]) for index in pending]
        replies = _send_stores(link, calls, pending, message_ids, stored)

        rejected = _record_replies(replies, pending, message_ids, stored)
        if rejected:
            raise _rejected_error(link, stored, rejected) from rejected[0][1]

        taken = [index for index, reply in zip(pending, replies, strict=True) if not reply]
        if not taken:
            return [message_id for message_id in stored if message_id is not None]
        for index in taken:
            message_ids[index] = str(uuid.uuid4())
        pending = taken

    reason = f"its new random ids were stored already {MAX_STORE_ROUNDS} times in a row"
    reason += "; check that no other writer copies this engine's ids"
    raise link.failure(OPERATION, reason, stored)


def _store_call(offset: int, message_id: str, new: CheckedMessage) -> Call:
    retry = b"" if new.retry is None else score(new.retry)
    keys = [MESSAGE_IDS, RETRY_QUEUE, message_id]
    return keys, [offset, new.contents, retry, *meta_pairs(new.meta)]


def _send_stores(
    link: Link, calls: list[Call], pending: list[int], message_ids: list[str], stored: list[str | None]
) -> list[Any]:
    """Send the stores of the ``pending`` messages once, and return their replies.

    A reply is 1, 0 or an error reply in its place. After a connection
    fault it returns 1 for each message that the check finds stored, and
    raises when any is not, with ``stored`` updated.
    """
    try:
        return link.script_batch(OPERATION, "store", calls, keep_errors=True)
    except StorageUnavailable as error:
        if not is_connection_fault(error):
            error.message_ids = list(stored)
            raise
        fault = error

    log.warning("%s of %d messages got no reply, checking which are stored: %s", OPERATION, len(calls), fault)
    sent_ids = [message_ids[index] for index in pending]
    try:
        flags = check_stored(link, OPERATION, sent_ids)
    except StorageUnavailable as error:
        raise unknown_error(link, OPERATION, sent_ids, fault, error, message_ids=stored) from error

    for index, message_id, flag in zip(pending, sent_ids, flags, strict=True):
        if flag:
            stored[index] = message_id
    if all(flags):
        return [1] * len(calls)

    missing = len(flags) - sum(flags)
    reason = (
        f"the connection failed before the reply came ({_clause(fault)}), and {missing} of the {len(flags)}"
        " messages sent are not stored: their stores did not run, or ran and another session has delivered"
        " and deleted those messages since. They are not stored again, because that could deliver them"
        " twice. message_ids contains the id of each stored message and None for the others"
    )
    raise link.failure(OPERATION, reason, stored) from fault


def check_stored(link: Link, operation: str, message_ids: list[str]) -> list[bool]:
    """Return whether each new id is in message_ids, asked on a new connection after a connection fault.

    A server that restarts refuses connections for a moment, so the check
    is tried once after each pause of :data:`CHECK_PAUSES`.

    NOTE: the result is final only when the lost request can no longer
    reach the server. A request held up in a proxy between the engine and
    Redis can still run after the check and store a message that the
    call reported as not stored.

    :raises StorageUnavailable: every try failed; the error of the last one.
    """
    for attempt, pause in enumerate(CHECK_PAUSES, 1):
        time.sleep(pause)
        try:
            flags = link.command(operation, "SMISMEMBER", MESSAGE_IDS, *message_ids)
            return [bool(flag) for flag in flags]
        except StorageUnavailable as error:
            if not is_connection_fault(error) or attempt == len(CHECK_PAUSES):
                raise
            log.warning(
                "%s: checking whether the new ids are stored failed, trying again: %s", operation, error
            )
    raise AssertionError("unreachable: the last try returns or raises")


def unknown_error(
    link: Link,
    operation: str,
    unknown_ids: list[str],
    fault: Exception,
    error: Exception,
    *,
    message_ids: list[str | None] | None = None,
) -> StorageUnavailable:
    """Build the error for new ids whose store got no reply and whose check failed too.

    ``message_ids`` is for store_messages, as :class:`StorageUnavailable` describes.
    """
    reason = (
        f"the connection failed before the reply came ({_clause(fault)}), and the check whether the new"
        f" ids are stored failed too ({_clause(error)}). Their messages may or may not be stored, and"
        " unknown_ids lists the ids. Once the storage is back, read them with get_message, and"
        " delete_message them before storing their messages again, or those may be delivered twice"
    )
    if message_ids is not None:
        reason += ". message_ids contains the ids of the messages confirmed stored and None for the others"
    return link.failure(operation, reason, message_ids, unknown_ids)


def _clause(error: Exception) -> str:
    """Return an error's text without a final period, to go inside a sentence."""
    return str(error).rstrip(".")


def _record_replies(
    replies: list[Any], pending: list[int], message_ids: list[str], stored: list[str | None]
) -> list[tuple[int, Exception]]:
    """Put the id of each stored message in ``stored``, and return the error replies by index."""
    rejected: list[tuple[int, Exception]] = []
    for index, reply in zip(pending, replies, strict=True):
        if isinstance(reply, redis_errors.ResponseError):
            rejected.append((index, reply))
        elif reply:
            stored[index] = message_ids[index]
    return rejected


def _rejected_error(
    link: Link, stored: list[str | None], rejected: list[tuple[int, Exception]]
) -> StorageUnavailable:
    first_index, first_error = rejected[0]
    error_text = str(first_error).rstrip(".")
    count = sum(message_id is not None for message_id in stored)
    log.warning(
        "%s: Redis rejected %d stores, %d messages are stored; first error, of messages[%d]: %s",
        OPERATION,
        len(rejected),
        count,
        first_index,
        first_error,
    )
    reason = (
        f"Redis rejected the stores of {len(rejected)} of {len(stored)} messages, first that of"
        f" messages[{first_index}]: {error_text}. {count} messages are stored; message_ids contains their ids"
        " and None for the others"
    )
    return link.failure(OPERATION, reason, stored)
