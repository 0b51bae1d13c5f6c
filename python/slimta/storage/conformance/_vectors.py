"""Loading the vector files of a folder.

Every ``*.json`` file but ``index.json`` is one group of cases. Loading
checks the file-level shape: the format version, the fields of each
case and that no id repeats. Steps are checked when they run, so that a
malformed step fails its case instead of the whole run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_MAJOR", "Case", "VectorError", "VectorSet", "load_vectors"]

# The major version of the vector format that this runner reads; any
# minor version of it is accepted.
FORMAT_MAJOR = 1
INDEX_FILE = "index.json"
# A Redis setting that a case's server_config may name. No glob
# characters, because CONFIG GET would take them as a pattern.
SETTING_NAME = re.compile(r"[a-z][a-z0-9-]*")


class VectorError(Exception):
    """A vector file cannot be read or does not have the vector format."""


@dataclass(frozen=True)
class Case:
    """One case of a vector file."""

    id: str
    group: str
    description: str
    rule: str
    level: str
    capabilities: tuple[str, ...]
    steps: tuple[dict[str, Any], ...]
    layout: dict[str, Any] | None = None
    tolerance: float | None = None
    server_config: dict[str, str] | None = None
    """Redis settings to set with CONFIG SET for the case, by name."""


@dataclass(frozen=True)
class VectorSet:
    """The cases of every vector file of a folder, in file-name order."""

    directory: Path
    vector_format: str
    spec_version: str
    cases: tuple[Case, ...] = field(default=())


def load_vectors(directory: Path) -> VectorSet:
    """Load every vector file in ``directory``.

    :raises VectorError: the folder contains no vector file, a file is not
        valid JSON or lacks a field, its major format version is not
        :data:`FORMAT_MAJOR`, or two cases share an id.
    """
    paths = sorted(path for path in directory.glob("*.json") if path.name != INDEX_FILE)
    if not paths:
        raise VectorError(f"no vector files (*.json) in {directory}")

    cases: list[Case] = []
    formats: set[str] = set()
    spec_versions: set[str] = set()
    for path in paths:
        document = _read(path)
        formats.add(document["vector_format"])
        spec_versions.add(document["spec_version"])
        cases += _cases(path, document)

    _reject_repeated_ids(cases)
    return VectorSet(directory, _joined(formats), _joined(spec_versions), tuple(cases))


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VectorError(f"could not read {path}: {error}") from None
    if not isinstance(document, dict):
        raise VectorError(f"{path}: a vector file must hold a JSON object")

    for name in ("vector_format", "spec_version", "group", "cases"):
        if name not in document:
            raise VectorError(f"{path}: the field {name!r} is missing")
    _check_format(path, document["vector_format"])
    if not isinstance(document["cases"], list):
        raise VectorError(f"{path}: cases must be a list")
    return document


def _check_format(path: Path, version: Any) -> None:
    major, _, minor = str(version).partition(".")
    if not isinstance(version, str) or not major.isdigit() or not minor.isdigit():
        raise VectorError(f'{path}: vector_format must be MAJOR.MINOR, such as "1.0", not {version!r}')
    if int(major) != FORMAT_MAJOR:
        raise VectorError(
            f"{path}: vector_format {version} is not supported: this runner reads"
            f" version {FORMAT_MAJOR}.x; use a runner that matches the vectors"
        )


def _cases(path: Path, document: dict[str, Any]) -> list[Case]:
    group = str(document["group"])
    return [_case(path, group, index, raw) for index, raw in enumerate(document["cases"])]


def _case(path: Path, group: str, index: int, raw: Any) -> Case:
    where = f"{path}: case {index + 1}"
    if not isinstance(raw, dict):
        raise VectorError(f"{where} must be a JSON object")
    for name in ("id", "steps"):
        if name not in raw:
            raise VectorError(f"{where}: the field {name!r} is missing")

    case_id = raw["id"]
    steps = raw["steps"]
    capabilities = raw.get("capabilities", [])
    layout = raw.get("layout")
    tolerance = raw.get("tolerance")
    server_config = raw.get("server_config")
    if not isinstance(case_id, str) or not case_id:
        raise VectorError(f"{where}: id must be a non-empty string, not {case_id!r}")
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise VectorError(f"{where} ({case_id}): steps must be a list of objects")
    if not isinstance(capabilities, list) or not all(isinstance(item, str) for item in capabilities):
        raise VectorError(f"{where} ({case_id}): capabilities must be a list of strings")
    if layout is not None and not isinstance(layout, dict):
        raise VectorError(f"{where} ({case_id}): layout must be an object")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))):
        raise VectorError(f"{where} ({case_id}): tolerance must be a number of seconds")
    if server_config is not None and not _is_server_config(server_config):
        raise VectorError(
            f"{where} ({case_id}): server_config must be a non-empty object of Redis setting names,"
            f" such as proto-max-bulk-len, to text values, not {server_config!r:.200}"
        )

    return Case(
        id=case_id,
        group=group,
        description=str(raw.get("description", "")),
        rule=str(raw.get("rule", "")),
        level=str(raw.get("level", "required")),
        capabilities=tuple(capabilities),
        steps=tuple(steps),
        layout=layout,
        tolerance=None if tolerance is None else float(tolerance),
        server_config=server_config,
    )


def _is_server_config(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(name, str) and SETTING_NAME.fullmatch(name) for name in value)
        and all(isinstance(setting, str) for setting in value.values())
    )


def _reject_repeated_ids(cases: list[Case]) -> None:
    groups: dict[str, str] = {}
    for case in cases:
        if case.id in groups:
            raise VectorError(
                f"case id {case.id!r} appears twice, in groups {groups[case.id]} and {case.group}"
            )
        groups[case.id] = case.group


def _joined(values: set[str]) -> str:
    """Return the version all files share, or the versions joined by commas when they differ."""
    return ", ".join(sorted(values))
