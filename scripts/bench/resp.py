"""Count complete RESP values in a byte stream, for the counting proxy.

Redis clients send commands as RESP arrays of bulk strings (or as inline
text lines), and the server replies to each command with one RESP value, in
RESP2 or RESP3. Only the framing matters here: the counter skips over
values without building them.
"""

from __future__ import annotations

__all__ = ["RespCounter"]

# Types whose value is the rest of the line.
_LINE_TYPES = frozenset(b"+-:_,#(")
# Types followed by a length and that many bytes.
_BULK_TYPES = frozenset(b"$!=")
# Types followed by an element count.
_AGGREGATE_TYPES = frozenset(b"*~>")
# Types followed by a count of pairs.
_PAIR_TYPES = frozenset(b"%|")


class RespCounter:
    """Count the complete top-level values fed to it, keeping a partial one for later."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def partial(self) -> bool:
        """True while the bytes fed so far end inside a value."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> int:
        """Add ``data`` and return how many values it completed."""
        self._buffer += data
        count = 0
        position = 0
        while position < len(self._buffer):
            end = _skip_value(self._buffer, position)
            if end < 0:
                break
            count += 1
            position = end
        del self._buffer[:position]
        return count


def _line_end(buffer: bytearray, position: int) -> int:
    """Return the index just past the CRLF that ends the line at ``position``, or -1."""
    newline = buffer.find(b"\r\n", position)
    return -1 if newline < 0 else newline + 2


def _skip_value(buffer: bytearray, position: int) -> int:
    """Return the index just past the value at ``position``, or -1 when it is incomplete."""
    kind = buffer[position]
    after_line = _line_end(buffer, position)
    if after_line < 0 or kind in _LINE_TYPES:
        return after_line
    if kind in _BULK_TYPES:
        length = int(buffer[position + 1 : after_line - 2])
        end = after_line if length < 0 else after_line + length + 2
        return end if end <= len(buffer) else -1
    if kind in _AGGREGATE_TYPES or kind in _PAIR_TYPES:
        elements = int(buffer[position + 1 : after_line - 2])
        if kind in _PAIR_TYPES:
            elements *= 2
        # An attribute (|) comes before the value it describes.
        if kind == ord("|"):
            elements += 1
        return _skip_elements(buffer, after_line, elements)
    # Anything else is an inline command: one line of text.
    return after_line


def _skip_elements(buffer: bytearray, position: int, count: int) -> int:
    """Return the index just past ``count`` values from ``position``, or -1 when one is incomplete."""
    for _ in range(max(count, 0)):
        if position >= len(buffer):
            return -1
        position = _skip_value(buffer, position)
        if position < 0:
            return -1
    return position
