"""Argument checks shared by every engine, following the types of the spec.

Each function returns the value in the form the engines store, or raises
:class:`InvalidArgument` naming the parameter, the rule and the value.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ._errors import InvalidArgument

__all__ = [
    "LEGACY_LOCK_VALUE",
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "MAX_LOCK_LENGTH",
    "MAX_META_KEY_LENGTH",
    "MAX_PAGE_SIZE",
    "CheckedMessage",
    "batch_ids",
    "contents",
    "lock_length_ms",
    "lock_owner",
    "message_id",
    "meta",
    "meta_key",
    "meta_value",
    "new_messages",
    "optional_cursor",
    "optional_lock_owner",
    "optional_timestamp",
    "page_size",
    "redact_url",
    "timestamp",
    "userinfo_cut",
]

MAX_ID_LENGTH = 255
MAX_META_KEY_LENGTH = 255
MAX_LOCK_LENGTH = 31_536_000  # one year, in seconds
# The maximum number of ids or messages in one bulk call, and of ids in one page.
MAX_BATCH = 1000
MAX_PAGE_SIZE = 10_000
# The value of a lock taken without an owner, as version 1.0 writers store it.
LEGACY_LOCK_VALUE = "locked"

_ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}")


def message_id(value: Any, param: str = "message_id") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(param, value, "must be a str, such as one returned by claim_message_id()")
    if _ID_PATTERN.fullmatch(value) is None:
        raise InvalidArgument(
            param,
            value,
            f"must be 1 to {MAX_ID_LENGTH} printable ASCII characters without spaces,"
            " such as one returned by claim_message_id()",
        )
    return value


def meta_key(value: Any, param: str = "key") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(param, value, "a meta key must be a str")
    if not 1 <= len(value) <= MAX_META_KEY_LENGTH:
        raise InvalidArgument(param, value, f"a meta key must be 1 to {MAX_META_KEY_LENGTH} characters long")
    if "\0" in value:
        raise InvalidArgument(param, value, "a meta key must not contain NUL")
    _require_encodable(value, param)
    return value


def meta_value(value: Any, param: str = "value") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(
            param, value, "a meta value must be a str; store numbers as decimal text with str()"
        )
    _require_encodable(value, param)
    return value


def meta(value: Any, param: str = "meta") -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(param, value, "must be a mapping of str keys to str values")
    checked = {}
    for key, item in value.items():
        checked[meta_key(key, f"{param} key")] = meta_value(item, f"{param}[{key!r}]")
    return checked


def contents(value: Any, param: str = "contents") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(param, value, "must be bytes; encode text first, for example with .encode('utf-8')")


def timestamp(value: Any, param: str = "timestamp") -> float:
    number = _number(value, param, "a timestamp in UNIX seconds")
    if not math.isfinite(number) or number < 0:
        raise InvalidArgument(param, value, "must be a finite number of UNIX seconds, at least 0")
    return number


def optional_timestamp(value: Any, param: str = "timestamp") -> float | None:
    if value is None:
        return None
    return timestamp(value, param)


def lock_length_ms(value: Any, param: str = "length") -> int:
    """Check a lock length in seconds and return it in whole milliseconds, rounded up."""
    number = _number(value, param, "a lock length in seconds")
    if not math.isfinite(number) or not 0 < number <= MAX_LOCK_LENGTH:
        raise InvalidArgument(
            param, value, f"a lock length must be greater than 0 and at most {MAX_LOCK_LENGTH} seconds"
        )

    # The shortest decimal that prints as the float is the length the
    # caller wrote. Multiplying the float instead adds noise that can round
    # up a whole millisecond too far: 2.007 * 1000 == 2007.0000000000002,
    # and 8524671.628 * 1000 is 8524671628.000001.
    return max(1, math.ceil(Decimal(repr(number)) * 1000))


def lock_owner(value: Any, param: str = "owner") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(param, value, "a lock owner must be a str, such as str(uuid.uuid4())")
    if _ID_PATTERN.fullmatch(value) is None:
        raise InvalidArgument(
            param,
            value,
            f"a lock owner must be 1 to {MAX_ID_LENGTH} printable ASCII characters without spaces,"
            " such as str(uuid.uuid4())",
        )
    if value == LEGACY_LOCK_VALUE:
        raise InvalidArgument(
            param, value, "is the value of locks taken without an owner; use a random UUID instead"
        )
    return value


def optional_lock_owner(value: Any, param: str = "owner") -> str | None:
    if value is None:
        return None
    return lock_owner(value, param)


class CheckedMessage(NamedTuple):
    """One new message of a bulk store, in the form the engines store."""

    meta: dict[str, str]
    contents: bytes
    retry: float | None


_NEW_MESSAGE_KEYS = frozenset({"meta", "contents", "retry"})


def batch_ids(value: Any, param: str = "message_ids") -> list[str]:
    items = _batch(value, param, "message ids")
    return [message_id(item, f"{param}[{index}]") for index, item in enumerate(items)]


def new_messages(value: Any, param: str = "messages") -> list[CheckedMessage]:
    """Check every message of a bulk store, so that a bad one stops the call before any is stored."""
    items = _batch(value, param, "new messages")
    return [new_message(item, f"{param}[{index}]") for index, item in enumerate(items)]


def new_message(value: Any, param: str) -> CheckedMessage:
    rule = "must be a mapping with the keys 'meta' and 'contents', and optionally 'retry'"
    if not isinstance(value, Mapping):
        raise InvalidArgument(param, value, rule)
    keys = set(value)
    if not keys <= _NEW_MESSAGE_KEYS or not {"meta", "contents"} <= keys:
        raise InvalidArgument(param, value, f"{rule}, but {_describe_keys(keys)}")
    return CheckedMessage(
        meta(value["meta"], f"{param}['meta']"),
        contents(value["contents"], f"{param}['contents']"),
        optional_timestamp(value.get("retry"), f"{param}['retry']"),
    )


def _describe_keys(keys: set[Any]) -> str:
    """Name the keys of a mapping for an error, such as "it has the keys 'contents', 'ttl'"."""
    names = sorted(repr(key) for key in keys)
    if not names:
        return "it has no keys"
    if len(names) == 1:
        return f"it has only the key {names[0]}"
    return f"it has the keys {', '.join(names)}"


def _batch(value: Any, param: str, what: str) -> list[Any]:
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise InvalidArgument(param, value, f"must be a list of 1 to {MAX_BATCH} {what}")
    # One item past the limit is enough to reject the batch, however long it is.
    items = list(itertools.islice(value, MAX_BATCH + 1))
    if not 1 <= len(items) <= MAX_BATCH:
        found = f"more than {MAX_BATCH}" if items else "an empty list"
        raise InvalidArgument(param, value, f"must hold 1 to {MAX_BATCH} {what}, not {found}")
    return items


def page_size(value: Any, param: str = "count") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(param, value, "a page size must be an int")
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidArgument(param, value, f"a page size must be from 1 to {MAX_PAGE_SIZE}")
    return value


def optional_cursor(value: Any, param: str = "cursor") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            param, value, "must be None for the first page, or the cursor of the page before"
        )
    return value


def _number(value: Any, param: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(param, value, f"must be an int or float, {what}")
    try:
        return float(value)
    except OverflowError:
        # An int beyond the range of a float, such as 10**400.
        raise InvalidArgument(param, value, f"is too large for {what}") from None


def _require_encodable(value: str, param: str) -> None:
    # Lone surrogates other than those of surrogateescape cannot be stored
    # as bytes, so they are rejected here rather than by the engine.
    try:
        encoded = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise InvalidArgument(
            param, value, f"contains {value[error.start]!r}, which is not valid text"
        ) from None

    # Escapes of bytes that form valid UTF-8, such as "\udcc3\udca9", would
    # read back from Redis as other text ("é"), unlike from memory.
    if not value.isascii() and encoded.decode("utf-8", "surrogateescape") != value:
        raise InvalidArgument(
            param,
            value,
            "contains surrogate escapes of bytes that form valid UTF-8, which would read back"
            " as other text. Decode those bytes as UTF-8 first",
        )


def redact_url(url: str) -> str:
    """Return ``url`` with its password hidden, for errors and logs.

    The password of the ``user:password@`` part, and the value of any
    query parameter whose name contains "pass", become ``***``. When an
    unencoded /, ? or # in the password ends the host part early, so that
    an @ lies beyond it (see :func:`userinfo_cut`), everything from after
    ``://`` up to the last @ becomes ``***``. That can hide more than the
    password, such as a query value that contains an @.
    """
    try:
        cut = userinfo_cut(url)
    except ValueError:
        return _UNPARSEABLE
    if not cut:
        return _redact_parsed(url)

    # Keep the scheme, with its "://" or, in a URL without one, its ":".
    last_at = url.rindex("@")
    slashes = url.find("://", 0, last_at)
    start = slashes + 3 if slashes != -1 else url.find(":", 0, last_at) + 1
    return _redact_parsed(url[:start] + "***" + url[last_at:])


def userinfo_cut(url: str) -> bool:
    """Tell whether an @ of ``url`` lies beyond the host part that urlsplit finds.

    urlsplit ends the host part at the first /, ? or #, so such a
    character in a password that is not percent-encoded leaves the rest
    of the password, and the @ after it, in the path, query or fragment.
    Raises ValueError for a URL that urlsplit cannot parse.
    """
    return url.count("@") > urlsplit(url).netloc.count("@")


_UNPARSEABLE = "(a URL that cannot be parsed)"


def _redact_parsed(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _UNPARSEABLE

    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@", 1)
    query = "&".join(_redact_parameter(item) for item in parts.query.split("&")) if parts.query else ""
    fragment = parts.fragment
    if query != parts.query and fragment:
        # An unencoded # in a hidden value leaves the rest of it in the fragment.
        fragment = "***"
    if netloc == parts.netloc and query == parts.query:
        return url
    return parts._replace(netloc=netloc, query=query, fragment=fragment).geturl()


def _redact_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    if equals and "pass" in name.lower():
        return f"{name}=***"
    return item
