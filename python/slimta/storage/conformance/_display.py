"""Values in reports: one-line text for the report lines, and short JSON for ``--json``.

Text shows values in their JSON wire form, except bytes, which show as
``b"..."``: valid UTF-8 as its text, any other byte as ``\\xNN``. When an
expected and a returned value are both bytes, :func:`bytes_mismatch`
describes the difference by the lengths and the offset of the first
byte that differs, with the bytes around it, instead of showing two
long values that look alike.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._values import OBJECT_TAG, WireError, key_to_wire, to_wire

__all__ = [
    "EXCERPT_TAG",
    "RENDER_LIMIT",
    "WHOLE_BYTES",
    "BytesMismatch",
    "bytes_mismatch",
    "first_difference",
    "is_bytes",
    "render",
    "show_bytes",
    "to_report",
]

# How much of a value a text report shows before cutting it.
RENDER_LIMIT = 400
# Bytes values up to this length are shown whole; longer ones as an excerpt.
WHOLE_BYTES = 64
# An excerpt starts this many bytes before the first difference and is this long.
EXCERPT_BEFORE = 16
EXCERPT_BYTES = 32
# The JSON report's form of a long bytes value: an excerpt and the full length.
EXCERPT_TAG = "$bytes_excerpt"
# Escapes of the characters that would break a b"..." text.
_ESCAPES = {'"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Compared in chunks, so that finding the difference of multi-megabyte values stays fast.
_CHUNK = 4096


def is_bytes(value: Any) -> bool:
    """Return whether a value is bytes, as contents and layout values are."""
    return isinstance(value, (bytes, bytearray, memoryview))


def show_bytes(data: bytes) -> str:
    """Return bytes as ``b"..."``: valid UTF-8 as its text, other bytes as ``\\xNN``.

    A backslash byte is doubled, and a character that is not printable
    is written ``\\xNN`` when it is one byte and ``\\uNNNN`` otherwise, so
    that every ``\\xNN`` stands for exactly one byte.
    """
    # 0x5C never occurs inside a multi-byte UTF-8 sequence, so doubling it first is safe.
    text = data.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return 'b"' + "".join(_escape(character) for character in text) + '"'


def _escape(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    if character.isprintable() or character == "\\":
        return character
    code = ord(character)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _count(length: int) -> str:
    return "1 byte" if length == 1 else f"{length} bytes"


def render(value: Any, limit: int | None = RENDER_LIMIT) -> str:
    """Return a value as one line of JSON in its wire form, but bytes as ``b"..."``.

    The line is cut after ``limit`` characters.
    """
    try:
        text = _render(value)
    except WireError:
        text = repr(value)
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def _render(value: Any) -> str:
    if is_bytes(value):
        data = bytes(value)
        if len(data) <= WHOLE_BYTES:
            return show_bytes(data)
        return f"{show_bytes(data[:EXCERPT_BYTES])}... ({_count(len(data))})"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = sorted(((key_to_wire(key), item) for key, item in value.items()), key=lambda pair: pair[0])
        body = "{" + ", ".join(
            f"{json.dumps(key, ensure_ascii=False)}: {_render(item)}" for key, item in pairs
        )
        body += "}"
        return f'{{"{OBJECT_TAG}": {body}}}' if any(key.startswith("$") for key, _ in pairs) else body
    return json.dumps(to_wire(value), ensure_ascii=False)


def to_report(value: Any, around: int | None = None) -> Any:
    """Return the wire form of a value for the JSON report, or its Python repr when it has none.

    Bytes longer than :data:`WHOLE_BYTES` become an excerpt, ``{"$bytes_excerpt":
    {"base64", "start", "length"}}``, which starts a little before the
    offset ``around`` when it is given, else at the start.
    """
    try:
        return _to_report(value, around)
    except WireError:
        return repr(value)


def _to_report(value: Any, around: int | None) -> Any:
    if is_bytes(value):
        return _bytes_report(bytes(value), around)
    if isinstance(value, (list, tuple)):
        return [_to_report(item, around) for item in value]
    if isinstance(value, Mapping):
        wire = {key_to_wire(key): _to_report(item, around) for key, item in value.items()}
        return {OBJECT_TAG: wire} if any(key.startswith("$") for key in wire) else wire
    return to_wire(value)


def _bytes_report(data: bytes, around: int | None) -> Any:
    if len(data) <= WHOLE_BYTES:
        return {"$bytes": base64.b64encode(data).decode("ascii")}
    start = 0 if around is None else min(max(0, around - EXCERPT_BEFORE), len(data))
    excerpt = base64.b64encode(data[start : start + EXCERPT_BYTES]).decode("ascii")
    return {EXCERPT_TAG: {"base64": excerpt, "start": start, "length": len(data)}}


def first_difference(left: bytes, right: bytes) -> int:
    """Return the offset of the first byte that differs, or the shorter length when one starts the other."""
    shorter = min(len(left), len(right))
    start = 0
    while start < shorter and left[start : start + _CHUNK] == right[start : start + _CHUNK]:
        start += _CHUNK
    for offset in range(start, min(start + _CHUNK, shorter)):
        if left[offset] != right[offset]:
            return offset
    return shorter


@dataclass(frozen=True)
class BytesMismatch:
    """The report texts and JSON forms of two bytes values that differ.

    ``expected_text`` and ``got_text`` complete "expected X, got Y";
    ``got_text`` ends with the offset of the first difference and, for
    long values, the bytes around it. The JSON forms are short, see
    :func:`to_report`.
    """

    expected_text: str
    got_text: str
    expected_json: Any
    got_json: Any
    offset: int


def bytes_mismatch(expected: bytes, got: bytes) -> BytesMismatch:
    """Describe where two different bytes values differ, for the text and the JSON report."""
    offset = first_difference(expected, got)
    expected_json = _bytes_report(expected, offset)
    got_json = _bytes_report(got, offset)
    where = f"first difference at byte {offset}"
    if max(len(expected), len(got)) <= WHOLE_BYTES:
        return BytesMismatch(
            f"{show_bytes(expected)} ({_count(len(expected))})",
            f"{show_bytes(got)} ({_count(len(got))}), {where}",
            expected_json,
            got_json,
            offset,
        )

    start = max(0, offset - EXCERPT_BEFORE)
    windows = f"expected {_window(expected, start)}, got {_window(got, start)}"
    return BytesMismatch(
        _count(len(expected)),
        f"{_count(len(got))}, {where}; from byte {start}: {windows}",
        expected_json,
        got_json,
        offset,
    )


def _window(data: bytes, start: int) -> str:
    """Return the bytes of the excerpt from ``start``, with ``...`` where the value goes on."""
    before = "..." if start else ""
    after = "..." if start + EXCERPT_BYTES < len(data) else ""
    return f"{before}{show_bytes(data[start : start + EXCERPT_BYTES])}{after}"
