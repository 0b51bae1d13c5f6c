"""The message every variant of the benchmark stores, and where each variant keeps it.

Standard library only: the interpreter that runs python-slimta imports it too.
"""

from __future__ import annotations

import time

__all__ = [
    "LOCK_SECONDS",
    "OFFSETS",
    "RECIPIENTS",
    "SENDER",
    "make_body",
    "make_meta",
]

SENDER = "sender@example.com"
RECIPIENTS = ("rcpt1@example.net", "rcpt2@example.org")
LOCK_SECONDS = 30.0

OFFSETS = {
    "ours": 0,
    "raw": 4,
    "old": 8,
    "anchor": 12,
}
"""The first database of each family of variants, so no family reads another's keys.

python-slimta uses one database, the one given for ``anchor``.
"""


def make_meta() -> dict[str, str]:
    """Return the meta a receiving server writes: eight well-known keys."""
    return {
        "timestamp": repr(time.time()),
        "attempts": "0",
        "protocol": "ESMTPS",
        "ehlo": "mail.example.com",
        "ip": "192.0.2.25",
        "sender": SENDER,
        "recipients": "".join("\0" + recipient for recipient in RECIPIENTS),
        "receiver": "mx1.example.net",
    }


def make_body(size: int) -> bytes:
    """Return an RFC 5322 message of exactly ``size`` bytes, CRLF line endings."""
    header = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENTS[0]}>\r\nSubject: benchmark\r\n"
        "Message-Id: <bench@example.com>\r\n\r\n"
    ).encode("ascii")
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    lines = line * (size // len(line) + 1)
    body = header + lines
    return body[: size - 2] + b"\r\n"
