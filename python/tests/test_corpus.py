"""Real e-mail messages round-trip byte for byte through every engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import CORPUS, corpus_files

from slimta.storage import Session

CORPUS_SIZE = 48


def read_sha256sums() -> dict[str, str]:
    """Return the SHA-256 hex digest of each corpus file, by file name."""
    digests = {}
    for line in (CORPUS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        digests[name.lstrip("*")] = digest
    return digests


def test_corpus_has_48_messages() -> None:
    assert len(corpus_files()) == CORPUS_SIZE


def test_corpus_has_crlf_message() -> None:
    # The corpus must exercise both line endings.
    crlf = [path.name for path in corpus_files() if b"\r\n" in path.read_bytes()]

    assert crlf != []


def test_sha256sums_lists_corpus() -> None:
    assert sorted(read_sha256sums()) == [path.name for path in corpus_files()]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_sha256sums_match(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest == read_sha256sums()[path.name]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_corpus_message_round_trips(session: Session, path: Path) -> None:
    contents = path.read_bytes()
    message_id = session.claim_message_id()

    session.set_message_contents(message_id, contents)

    assert session.get_message_contents(message_id) == contents


def test_corpus_stored_together(session: Session) -> None:
    stored = {}
    for path in corpus_files():
        message_id = session.claim_message_id()
        session.set_message_contents(message_id, path.read_bytes())
        stored[message_id] = path

    for message_id, path in stored.items():
        assert session.get_message_contents(message_id) == path.read_bytes(), path.name
    assert len(session.get_all_messages()) == CORPUS_SIZE
