"""Escape text for a terminal: backslashes and unprintable characters as in Python literals."""

from __future__ import annotations

__all__ = ["escape_text"]

_SHORT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_text(text: str) -> str:
    """Escape backslashes and unprintable characters in the style of Python literals.

    A byte that was not valid UTF-8, kept as a surrogate by the
    ``surrogateescape`` handler, becomes ``\\xNN`` with the byte's value.
    Unprintable characters from U+0080 up become ``\\uNNNN``, so the two
    never look alike.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_character(character) for character in text)


def _escape_character(character: str) -> str:
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    if character.isprintable():
        return character

    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
