"""The key names of the Redis layout and the conversions between text and bytes.

Keys and values go to Redis as bytes. Text is encoded as UTF-8 with the
``surrogateescape`` handler and decoded the same way, so meta bytes that
another writer stored and that are not valid UTF-8 survive a round trip.
"""

from __future__ import annotations

from typing import Any

from .._records import Message

__all__ = [
    "MALFORMED",
    "MESSAGE_IDS",
    "RETRY_QUEUE",
    "decode",
    "encode",
    "malformed_reason",
    "message",
    "meta",
    "meta_pairs",
    "score",
]

MESSAGE_IDS = b"message_ids"
RETRY_QUEUE = b"retry_queue"

# The first item of get_message.lua's reply for a message whose meta or
# contents key has the wrong type.
MALFORMED = 2
# The database after the offset and the Redis type of each part of a message.
_PARTS = {b"meta": (1, "hash"), b"contents": (2, "string")}


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def score(timestamp: float) -> bytes:
    # repr() gives the shortest text that parses back to the same double.
    return repr(timestamp).encode("ascii")


def meta_pairs(meta: dict[str, str]) -> list[bytes]:
    """Return ``meta`` as the flat field, value list that HSET takes."""
    pairs: list[bytes] = []
    for key, value in meta.items():
        pairs += (encode(key), encode(value))
    return pairs


def meta(flat: list[bytes]) -> dict[str, str]:
    """Return the meta of a flat HGETALL reply."""
    return {decode(flat[i]): decode(flat[i + 1]) for i in range(0, len(flat), 2)}


def message(flat_meta: list[bytes], contents: Any) -> Message:
    """Return the message of an HGETALL reply and a GET reply."""
    return Message(meta(flat_meta), contents)


def malformed_reason(offset: int, message_id: str, reply: list[Any]) -> str:
    """Describe the malformed message of a get_message.lua reply ``{2, part, type}``."""
    part, found = reply[1], decode(reply[2])
    database, expected = _PARTS[part]
    return (
        f"message {message_id!r} is malformed: its {decode(part)} key in database {offset + database}"
        f" is a {found}, not a {expected}. Another writer broke the layout; slimta-storage check lists"
        " such keys"
    )
