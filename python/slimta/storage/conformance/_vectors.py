"""Loading the vector files of a folder.

``index.json`` lists every group, and each group's cases are in the file
``GROUP.json`` beside it. Loading checks that the folder is one complete
generation of vectors: every listed file exists and contains the listed
case ids, and every file has the index's format and spec version.
It also checks the file-level shape: the format version, the fields of
each case and that no id repeats. Steps are checked when they run, so
that a malformed step fails its case instead of the whole run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_MAJOR", "Case", "VectorError", "VectorSet", "load_vectors", "version_numbers"]

# The major version of the vector format that this runner reads; any
# minor version of it is accepted.
FORMAT_MAJOR = 1
INDEX_FILE = "index.json"
# A Redis setting that a case's server_config may name. No glob
# characters, because CONFIG GET would take them as a pattern.
SETTING_NAME = re.compile(r"[a-z][a-z0-9-]*")
# A spec version, MAJOR.MINOR.PATCH.
SPEC_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
# A group name, which is also the name of its file without .json.
GROUP_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


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
    since: str | None = None
    """The oldest spec version that can pass the case; None in vectors older than format 1.4."""


@dataclass(frozen=True)
class VectorSet:
    """The cases of every group of a vector folder, in the order of its index."""

    directory: Path
    vector_format: str
    spec_version: str
    cases: tuple[Case, ...] = field(default=())


def load_vectors(directory: Path) -> VectorSet:
    """Load the groups that ``index.json`` in ``directory`` lists, in the index's order.

    :raises VectorError: the folder is incomplete or mixed: the index or
        a group file it lists is missing, a file's case ids differ from
        the index, the files disagree on ``vector_format`` or
        ``spec_version``, or a vector file is not in the index. Also when
        a file is not valid JSON or lacks a field, its major format
        version is not :data:`FORMAT_MAJOR`, or two cases share an id.
    """
    index_path = directory / INDEX_FILE
    if not index_path.is_file():
        raise VectorError(
            f"{index_path} is missing, so {directory} is not a complete vector folder;"
            " copy the whole conformance/vectors folder, or regenerate it with scripts/gen_vectors.py"
        )
    index = _read_index(index_path)
    _reject_unlisted_groups(directory, index["groups"])

    cases: list[Case] = []
    for group, listed_ids in index["groups"].items():
        path = directory / f"{group}.json"
        if not path.is_file():
            raise VectorError(
                f"{path} is missing, but {index_path} lists the group {group};"
                " copy the whole vector folder again"
            )
        document = _read(path)
        _check_same_generation(path, document, index)
        group_cases = _cases(path, document)
        _check_listed_ids(path, group_cases, listed_ids)
        cases += group_cases

    _reject_repeated_ids(cases)
    return VectorSet(directory, index["vector_format"], index["spec_version"], tuple(cases))


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VectorError(f"could not read {path}: {error}") from None
    if not isinstance(index, dict):
        raise VectorError(f"{path}: the index must hold a JSON object")
    for name in ("vector_format", "spec_version", "groups"):
        if name not in index:
            raise VectorError(f"{path}: the field {name!r} is missing")
    _check_format(path, index["vector_format"])
    if not isinstance(index["spec_version"], str):
        raise VectorError(f"{path}: spec_version must be text, not {index['spec_version']!r}")
    groups = index["groups"]
    if (
        not isinstance(groups, dict)
        or not groups
        or not all(isinstance(name, str) and GROUP_NAME.fullmatch(name) for name in groups)
        or not all(
            isinstance(ids, list) and all(isinstance(item, str) for item in ids) for ids in groups.values()
        )
    ):
        raise VectorError(
            f"{path}: groups must map each group name, such as lock, to the list of its case ids"
        )
    return index


def _reject_unlisted_groups(directory: Path, groups: dict[str, Any]) -> None:
    """Raise :class:`VectorError` for a vector file of another generation that the index does not list.

    Other JSON files in the folder, which are no vector files, are left alone.
    """
    for path in sorted(directory.glob("*.json")):
        if path.name == INDEX_FILE or path.stem in groups:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(document, dict) and "cases" in document and "group" in document:
            raise VectorError(
                f"{path} is a vector file that {directory / INDEX_FILE} does not list, so the folder"
                " mixes vectors of different generations; remove the file or copy the whole folder again"
            )


def _check_same_generation(path: Path, document: dict[str, Any], index: dict[str, Any]) -> None:
    for name in ("vector_format", "spec_version"):
        if document[name] != index[name]:
            raise VectorError(
                f"{path} has {name} {document[name]}, but {INDEX_FILE} has {index[name]}, so the folder"
                " mixes vectors of different generations; copy the whole vector folder again"
            )
    if document["group"] != path.stem:
        raise VectorError(
            f"{path}: the group {document['group']!r} does not match the file name;"
            f" the file of group {document['group']} must be named {document['group']}.json"
        )


def _check_listed_ids(path: Path, cases: list[Case], listed_ids: list[str]) -> None:
    found = {case.id for case in cases}
    listed = set(listed_ids)
    if found == listed:
        return
    problems = []
    missing = sorted(listed - found)
    extra = sorted(found - listed)
    if missing:
        problems.append(f"lacks {_some(missing)}, which {INDEX_FILE} lists")
    if extra:
        problems.append(f"has {_some(extra)}, which {INDEX_FILE} does not list")
    raise VectorError(
        f"{path} {' and '.join(problems)}; the file and the index are of different generations,"
        " so copy the whole vector folder again"
    )


def _some(ids: list[str], shown: int = 5) -> str:
    """Return up to ``shown`` ids, joined by commas, with how many more there are."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


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
    since = raw.get("since")
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
    if since is not None and not (isinstance(since, str) and SPEC_VERSION.fullmatch(since)):
        raise VectorError(f'{where} ({case_id}): since must be a spec version such as "1.1.0", not {since!r}')

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
        since=since,
    )


def version_numbers(version: str) -> tuple[int, ...] | None:
    """Return the numbers of a MAJOR.MINOR.PATCH version, or None when it has another form."""
    if not SPEC_VERSION.fullmatch(version):
        return None
    return tuple(int(part) for part in version.split("."))


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
