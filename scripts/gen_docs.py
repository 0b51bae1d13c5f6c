#!/usr/bin/env python3
"""Write the reference pages of the documentation from spec/storage.yaml.

The pages below ``docs/`` that this script writes are never edited by
hand: change the spec and run the script again. ``--check`` writes the
pages into a temporary folder instead and exits with status 1 when a
committed page differs, naming the command that brings it up to date.
The output depends on the spec alone, so running the script twice gives
the same bytes.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "spec" / "storage.yaml"
DEFAULT_OUT = ROOT / "docs"

HEADER = (
    ".. This file is generated from spec/storage.yaml by scripts/gen_docs.py.\n"
    "   Do not edit it: change the spec, then run scripts/gen_docs.py.\n"
)

# Public members of the Python Session that the spec does not list.
PYTHON_EXTENSIONS = [
    "describe_message",
    "iter_all_messages",
    "iter_deferred_messages",
    "iter_active_messages",
]
# Exception classes of the Python binding that refine an error kind of the spec.
PYTHON_EXCEPTIONS = (("MessageTooLarge", "invalid_argument"),)

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}

# The spec's fault categories, as one sentence each.
FAULTS = {
    "caller": "The caller's fault.",
    "state": "Caused by what the queue contains, not by the caller or the storage.",
    "storage": "The storage's fault, not the caller's.",
}

Spec = dict[str, Any]
Entry = dict[str, Any]

CODE = re.compile(r"`([^`]+)`")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PLAIN_SPECIALS = re.compile(r"([\\*|_])")


# Inline text


@dataclass(frozen=True)
class Names:
    """The spec names that a name in backticks links to."""

    methods: frozenset[str]
    errors: frozenset[str]
    meta_keys: frozenset[str]


@dataclass(frozen=True)
class Context:
    """How to render the backticked names of one piece of prose."""

    names: Names
    params: frozenset[str] = frozenset()
    link_meta_keys: bool = False


def load_names(spec: Spec) -> Names:
    methods = [entry["name"] for entry in spec["methods"] + spec["engine_methods"]]
    return Names(
        methods=frozenset(methods),
        errors=frozenset(error["kind"] for error in spec["errors"]),
        meta_keys=frozenset(entry["key"] for entry in spec["meta_keys"]),
    )


def code(name: str, context: Context) -> str:
    """Render one backticked name: a link when it names a spec entry, else a literal."""
    if IDENTIFIER.match(name) and name not in context.params:
        if name in context.names.methods:
            return f":spec-method:`{name}`"
        if name in context.names.errors:
            return f":spec-error:`{name}`"
        if context.link_meta_keys and name in context.names.meta_keys:
            return f":spec-meta-key:`{name}`"
    return literal(name)


def literal(text: str) -> str:
    return f"``{text}``"


def inline(text: str, context: Context) -> str:
    """Turn spec prose, with names in backticks, into one line of reStructuredText."""
    pieces: list[str] = []
    position = 0
    for match in CODE.finditer(text):
        pieces.append(escape(text[position : match.start()]))
        pieces.append(code(match.group(1), context))
        position = match.end()
    pieces.append(escape(text[position:]))
    return join_markup(pieces)


def join_markup(pieces: list[str]) -> str:
    """Join plain text and markup, separating markup that touches a word with an escaped space."""
    line = pieces[0]
    for index, piece in enumerate(pieces[1:], start=1):
        is_markup = index % 2 == 1
        touches = line[-1:].isalnum() if is_markup else piece[:1].isalnum()
        line += ("\\ " if touches else "") + piece
    return " ".join(line.split())


def escape(text: str) -> str:
    return PLAIN_SPECIALS.sub(r"\\\1", text)


def paragraphs(text: str, context: Context, indent: str = "") -> list[str]:
    """Render prose as paragraphs separated by blank lines."""
    lines: list[str] = []
    for paragraph in text.strip().split("\n"):
        if paragraph.strip():
            lines += [indent + inline(paragraph, context), ""]
    return lines


def heading(title: str, underline: str) -> list[str]:
    return [title, underline * len(title), ""]


def list_table(header: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[int]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}", ""]
    for row in [header, *rows]:
        for number, cell in enumerate(row):
            bullet = "* -" if number == 0 else "  -"
            first, *rest = cell.split("\n")
            lines.append(f"   {bullet} {first}")
            lines += [f"       {line}" if line else "" for line in rest]
    return [*lines, ""]


def sentence_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# Parameters, returns and errors


@dataclass
class Pages:
    """The spec with its lookup tables, shared by every page."""

    spec: Spec
    names: Names = field(init=False)
    types: dict[str, Entry] = field(init=False)
    errors: dict[str, Entry] = field(init=False)

    def __post_init__(self) -> None:
        self.names = load_names(self.spec)
        self.types = {entry["name"]: entry for entry in self.spec["types"]}
        self.errors = {entry["kind"]: entry for entry in self.spec["errors"]}

    def context(self, method: Entry | None = None, *, link_meta_keys: bool = False) -> Context:
        params = frozenset(param["name"] for param in method["params"]) if method else frozenset()
        return Context(self.names, params, link_meta_keys)

    def type_ref(self, name: str, nullable: bool = False) -> str:
        ref = f":spec-type:`{name}`"
        return f"{ref} or null" if nullable else ref

    def param_rows(self, params: list[Entry], context: Context) -> list[list[str]]:
        rows = []
        for param in params:
            default = json.dumps(param["default"]) if "default" in param else None
            description = param.get("description") or f"The {self.types[param['type']]['title']}."
            rows.append(
                [
                    literal(param["name"]),
                    self.type_ref(param["type"], param.get("nullable", False)),
                    "required" if default is None else literal(default),
                    inline(description, context),
                ]
            )
        return rows

    def params_section(self, params: list[Entry], context: Context) -> list[str]:
        lines = [".. rubric:: Parameters", ""]
        if not params:
            return [*lines, "No parameters.", ""]
        header = ["Name", "Type", "Default", "Description"]
        return lines + list_table(header, self.param_rows(params, context), [15, 20, 12, 53])

    def returns_section(self, method: Entry, context: Context) -> list[str]:
        returns = method["returns"]
        lines = [".. rubric:: Returns", ""]
        if returns["type"] == "none":
            return [*lines, "Nothing.", ""]
        text = self.type_ref(returns["type"], returns.get("nullable", False))
        if "description" in returns:
            text += ": " + inline(returns["description"], context)
        return [*lines, text, ""]

    def error_when(self, kind: str, method: Entry, context: Context) -> str:
        """Say when ``method`` raises the error ``kind``."""
        params = method["params"]
        if kind == "message_not_found":
            id_params = [literal(param["name"]) for param in params if param["type"] == "message_id"]
            return f"{sentence_list(id_params)} names a message that is not stored. Nothing was changed."
        if kind == "invalid_argument" and params:
            shown = [f"{literal(param['name'])} ({self.type_ref(param['type'])})" for param in params]
            return f"An argument has the wrong type or a value out of range: {sentence_list(shown)}."
        if kind == "invalid_argument":
            return (
                "A constructor parameter of the engine does not fit the storage, such as a Redis "
                "``offset`` whose four databases the server lacks."
            )
        if kind == "session_closed":
            return "The session was closed with :spec-method:`close`."
        first_sentence = self.errors[kind]["description"].split(". ")[0].rstrip(".") + "."
        return inline(first_sentence, context)

    def errors_section(self, method: Entry, context: Context) -> list[str]:
        lines = [".. rubric:: Errors", ""]
        if not method["errors"]:
            return [*lines, "No errors.", ""]
        rows = [
            [f":spec-error:`{kind}`", self.error_when(kind, method, context)] for kind in method["errors"]
        ]
        return lines + list_table(["Error", "When"], rows, [25, 75])

    def rules_section(self, method: Entry) -> list[str]:
        rules = {rule["id"]: rule for rule in self.spec["rules"]}
        lines = [".. rubric:: Rules", ""]
        for rule_id in method.get("rules", []):
            statement = inline(rules[rule_id]["statement"], self.context())
            lines.append(f"- :spec-rule:`{rule_id}`: {statement}")
        return [*lines, ""]

    def signature(self, method: Entry) -> str:
        params = []
        for param in method["params"]:
            default = f"={json.dumps(param['default'])}" if "default" in param else ""
            params.append(param["name"] + default)
        call = literal(f"{method['name']}({', '.join(params)})")
        returns = method["returns"]
        if returns["type"] == "none":
            return f"{call} returns nothing."
        return f"{call} returns {self.type_ref(returns['type'], returns.get('nullable', False))}."

    def method_section(self, method: Entry, python: str | None) -> list[str]:
        context = self.context(method)
        lines = [*heading(method["name"], "~"), f".. spec-method:: {method['name']}", ""]
        lines += [f"**{inline(method['summary'], context)}**", "", self.signature(method), ""]
        lines += paragraphs(method["description"], context)
        if "since" in method:
            lines += [f"Since version {method['since']} of the spec.", ""]
        if python:
            lines += [f"Python: :py:meth:`{python}`.", ""]
        lines += self.params_section(method["params"], context)
        lines += self.returns_section(method, context)
        if "ordering" in method:
            ordering = method["ordering"]
            text = "No particular order." if ordering == "none" else inline(ordering, context)
            lines += [".. rubric:: Ordering", "", text, ""]
        lines += self.errors_section(method, context)
        if method.get("rules"):
            lines += self.rules_section(method)
        return lines


# The pages


def page_session(pages: Pages) -> str:
    spec = pages.spec
    lines = [HEADER, *heading("slimta.storage.session", "=")]
    lines += [
        "A session is what an engine's :spec-method:`connect` returns. Every engine's sessions "
        f"have the same {len(spec['methods'])} methods, listed here as version {spec['version']} "
        "of the spec defines them. Types link to :ref:`spec-types`, error kinds to "
        ":ref:`spec-errors` and rules to :ref:`spec-rules`. Python's signatures are on "
        ":doc:`python`.",
        "",
        *heading("Methods", "-"),
    ]
    for method in spec["methods"]:
        lines += pages.method_section(method, f"slimta.storage.Session.{method['name']}")
    lines += [".. _spec-types:", "", *heading("Types", "-")]
    lines += ["The types of parameters and return values, with the JSON type of the conformance vectors.", ""]
    for entry in spec["types"]:
        lines += [f".. spec-type:: {entry['name']}", ""]
        lines += [f"{literal(entry['name'])} ({entry['title']}, JSON {literal(entry['json'])})"]
        lines += paragraphs(entry["description"], pages.context(), indent="   ")
    lines += rules_page_section(pages)
    return "\n".join(lines)


def rules_page_section(pages: Pages) -> list[str]:
    spec = pages.spec
    lines = [".. _spec-rules:", "", *heading("Rules", "-")]
    lines += [
        "Each rule states one behaviour that every engine must show; the conformance vectors "
        "check the rules case by case. A rule that names no method holds for the engine as a "
        "whole.",
        "",
    ]
    for rule in spec["rules"]:
        users = [
            m["name"] for m in spec["methods"] + spec["engine_methods"] if rule["id"] in m.get("rules", [])
        ]
        lines += [f".. spec-rule:: {rule['id']}", "", f"{literal(rule['id'])} (since {rule['since']})"]
        lines += paragraphs(rule["statement"], pages.context(), indent="   ")
        if users:
            links = sentence_list([f":spec-method:`{name}`" for name in users])
            lines += [f"   Methods: {links}.", ""]
    return lines


def engine_section(pages: Pages, engine: Entry) -> list[str]:
    constructor = engine["constructor"]
    lines = [*heading(engine["name"], "~"), f".. spec-engine:: {engine['name']}", ""]
    lines += [f"**{inline(engine['summary'], pages.context())}**", ""]
    lines += paragraphs(engine["description"], pages.context())
    python = f"slimta.storage.{engine['name']}.{constructor['name']}"
    lines += [f"Created with {literal(constructor['name'])}; Python: :py:func:`{python}`.", ""]
    if engine["name"] == "redis":
        lines += [":doc:`/redis-layout` lists the databases and keys the engine uses.", ""]
    context = Context(pages.names, frozenset(param["name"] for param in constructor["params"]))
    return lines + pages.params_section(constructor["params"], context)


def error_section(pages: Pages, error: Entry) -> list[str]:
    spec = pages.spec
    raisers = [m["name"] for m in spec["engine_methods"] + spec["methods"] if error["kind"] in m["errors"]]
    fault = FAULTS.get(error["fault"], error["fault"])
    lines = [*heading(error["kind"], "~"), f".. spec-error:: {error['kind']}", ""]
    lines += [f"**{error['title'].capitalize()}.** {fault}", ""]
    lines += paragraphs(error["description"], pages.context())
    lines += [f"Python: :py:exc:`slimta.storage.{error['python']}`.", ""]
    lines += [f"Raised by {sentence_list([f':spec-method:`{name}`' for name in raisers])}.", ""]
    return lines


def page_storage(pages: Pages) -> str:
    spec = pages.spec
    engine_names = sentence_list([literal(engine["name"]) for engine in spec["engines"]])
    lines = [HEADER, *heading("slimta.storage", "=")]
    lines += paragraphs(spec["summary"], pages.context())
    lines += [
        f"This page and :doc:`session` are version {spec['version']} of the spec. The Python binding "
        f"offers the engines {engine_names}. Another binding may offer only {literal('redis')}, "
        "because the memory engine is for tests and embedding. Each engine's "
        f"{literal('connect')} opens a session.",
        "",
        *heading("Engines", "-"),
    ]
    for engine in spec["engines"]:
        lines += engine_section(pages, engine)
    lines += heading("Engine methods", "-")
    for method in spec["engine_methods"]:
        lines += pages.method_section(method, None)
    lines += [".. _spec-errors:", "", *heading("Error kinds", "-")]
    lines += [
        "Every error a method raises is one of these kinds. Each binding maps them to its own "
        "error type and states the kind in it.",
        "",
    ]
    for error in spec["errors"]:
        lines += error_section(pages, error)
    return "\n".join(lines)


def database_section(pages: Pages, database: Entry) -> list[str]:
    index = database["index"]
    title = f"Database offset + {index}: {database['title']}"
    lines = [f".. _spec-database-{index}:", "", *heading(title, "~")]
    rows = []
    for key in database["keys"]:
        rows.append(
            [
                literal(key["key"]),
                literal(key["type"]),
                inline(key["contents"], pages.context()),
                inline(key["expiry"], pages.context()),
            ]
        )
    return lines + list_table(["Key", "Type", "Contents", "Expiry"], rows, [18, 10, 52, 20])


def offset_section(databases: list[Entry]) -> list[str]:
    count = len(databases)
    lines = [
        *heading("The offset", "-"),
        f"The engine's ``offset`` is the number of the first of its {NUMBER_WORDS.get(count, count)} "
        "databases. Database *offset + n* contains what the tables below list for *n*, so these "
        "queues share one server without seeing each other's keys:",
        "",
    ]

    header = ["Offset", *[f"offset + {entry['index']}" for entry in databases]]
    rows = [
        [literal(str(offset)), *[str(offset + entry["index"]) for entry in databases]] for offset in (0, 4, 8)
    ]
    lines += list_table(header, rows, [20] * (count + 1))

    return [
        *lines,
        f"The server must have databases *offset* to *offset + {count - 1}*: Redis has 16 unless its "
        "``databases`` setting sets another number. :doc:`sharing-redis` shows how to share a server "
        "and what a binding does with an offset the server lacks.",
        "",
    ]


def meta_keys_section(pages: Pages) -> list[str]:
    lines = [".. _spec-meta-keys:", "", *heading("Well-known meta keys", "-")]
    lines += [
        "A message's meta may contain any keys. These are the ones the original slimta library wrote, "
        "with the meaning every binding gives them.",
        "",
    ]
    rows = []
    for entry in pages.spec["meta_keys"]:
        target = f".. spec-meta-key:: {entry['key']}\n\n{literal(entry['key'])}"
        rows.append([target, inline(entry["description"], pages.context())])
    return lines + list_table(["Key", "Contents"], rows, [20, 80])


def page_layout(pages: Pages) -> str:
    layout = pages.spec["redis_layout"]
    lines = [HEADER, *heading("The Redis layout", "=")]
    lines += paragraphs(layout["description"], pages.context())
    lines += [
        "The rules :spec-rule:`layout-exact` and :spec-rule:`layout-foreign` bind every writer "
        "to this layout.",
        "",
    ]
    lines += offset_section(layout["databases"])

    lines += [
        *heading("Databases", "-"),
        "In the tables, ``{message_id}`` is the message id itself: the key is the id's bytes, with "
        "no prefix.",
        "",
    ]
    for database in layout["databases"]:
        lines += database_section(pages, database)
    lines += paragraphs(layout["other_keys"], pages.context())

    lines += meta_keys_section(pages)
    return "\n".join(lines)


def page_changelog(pages: Pages) -> str:
    spec = pages.spec
    lines = [HEADER, *heading("Spec changelog", "="), *heading("Versioning", "-")]
    lines += paragraphs(spec["versioning"], pages.context())
    for release in spec["changelog"]:
        lines += heading(f"Version {release['version']}", "-")
        for change in release["changes"]:
            lines.append(f"- {inline(change, pages.context())}")
        lines.append("")
    return "\n".join(lines)


def dot_label(text: str) -> str:
    return json.dumps(text)


def lifecycle_dot(lifecycle: Entry) -> list[str]:
    """Draw the states and transitions as a Graphviz digraph, one edge per pair of states."""
    lines = [
        "digraph lifecycle {",
        "   rankdir=TB;",
        '   bgcolor="transparent";',
        '   node [shape=box, style="rounded", fontname="sans-serif", fontsize=12];',
        '   edge [fontname="monospace", fontsize=10];',
        # Spec identifiers never start with "_", so the start point cannot clash with a state.
        '   "_start" [shape=point, width=0.15, label=""];',
    ]
    for state in lifecycle["states"]:
        shape = ", peripheries=2" if state.get("final") else ""
        lines.append(f"   {state['name']} [label={dot_label(state['title'])}{shape}];")
    edges: dict[tuple[str, str], list[str]] = {}
    for transition in lifecycle["transitions"]:
        pair = (transition.get("from", '"_start"'), transition["to"])
        edges.setdefault(pair, []).append(transition["method"])
    for (source, target), methods in edges.items():
        lines.append(f"   {source} -> {target} [label={dot_label(chr(10).join(methods))}];")
    return [*lines, "}"]


def lifecycle_tables(pages: Pages) -> list[str]:
    """Render the states and the transitions as two tables."""
    lifecycle = pages.spec["lifecycle"]
    context = pages.context(link_meta_keys=True)
    titles = {state["name"]: state["title"] for state in lifecycle["states"]}

    state_rows = []
    for state in lifecycle["states"]:
        target = f".. spec-state:: {state['name']}\n\n{literal(state['title'])}"
        state_rows.append([target, inline(state["description"], context)])
    lines = [".. rubric:: States", "", *list_table(["State", "What is stored"], state_rows, [20, 80])]

    rows = []
    for transition in lifecycle["transitions"]:
        source = transition.get("from")
        rows.append(
            [
                f":spec-state:`{titles[source]} <{source}>`" if source else "(new message)",
                f":spec-state:`{titles[transition['to']]} <{transition['to']}>`",
                f":spec-method:`{transition['method']}`",
                inline(transition["description"], context),
            ]
        )
    header = ["From", "To", "Method", "What happens"]
    return [*lines, ".. rubric:: Transitions", "", *list_table(header, rows, [13, 13, 24, 50])]


def page_lifecycle(pages: Pages) -> str:
    lifecycle = pages.spec["lifecycle"]
    state_titles = ", ".join(state["title"] for state in lifecycle["states"])
    lines = [HEADER, *paragraphs(lifecycle["description"], pages.context(link_meta_keys=True))]
    lines += [
        ".. graphviz::",
        "   :caption: The states of a queued message. Each arrow is labelled with the methods that cause it.",
        f"   :alt: State diagram of a queued message: {state_titles}.",
        "   :align: center",
        "",
        *["   " + line for line in lifecycle_dot(lifecycle)],
        "",
    ]
    lines += lifecycle_tables(pages)
    return "\n".join(lines)


def page_python(pages: Pages) -> str:
    spec = pages.spec
    lines = [HEADER, *heading("Python API", "=")]
    lines += [
        "The Python binding is the package ``slimta.storage``. Each session method and each "
        "exception links to its entry in the spec, which states the behaviour every binding "
        "shares; the docstrings here add what is particular to Python.",
        "",
        *heading("Opening an engine", "-"),
        ".. autofunction:: slimta.storage.open_engine",
        "",
        *heading("The memory engine", "-"),
        ".. automodule:: slimta.storage.memory",
        "",
        ".. autofunction:: slimta.storage.memory.new",
        "",
        "   Spec: :spec-engine:`memory`.",
        "",
        ".. autoclass:: slimta.storage.memory.MemoryEngine",
        "   :members:",
        "",
        ".. autoclass:: slimta.storage.memory.MemorySession",
        "",
        *heading("The Redis engine", "-"),
        ".. automodule:: slimta.storage.redis",
        "",
        ".. autofunction:: slimta.storage.redis.new",
        "",
        "   Spec: :spec-engine:`redis`.",
        "",
        ".. autofunction:: slimta.storage.redis.from_url",
        "",
        ".. autoclass:: slimta.storage.redis.RedisEngine",
        "   :members: connect, close",
        "",
        ".. autoclass:: slimta.storage.redis.RedisSession",
        "",
        *heading("Sessions", "-"),
        ".. autoclass:: slimta.storage.Session",
        "",
        "   .. autoproperty:: closed",
        "",
    ]
    for method in spec["methods"]:
        lines += [
            f"   .. automethod:: {method['name']}",
            "",
            f"      Spec: :spec-method:`{method['name']}`.",
            "",
        ]
    for name in PYTHON_EXTENSIONS:
        lines += [f"   .. automethod:: {name}", "", "      Python only: the spec has no such method.", ""]

    for name in ("Message", "Page", "NewMessage", "MessageInfo"):
        lines += [f".. autoclass:: slimta.storage.{name}", "   :members:", ""]

    lines += heading("Exceptions", "-")
    lines += [".. autoexception:: slimta.storage.StorageError", ""]
    for error in spec["errors"]:
        lines += [f".. autoexception:: slimta.storage.{error['python']}", ""]
        lines += [f"   Spec: :spec-error:`{error['kind']}`.", ""]
    for name, kind in PYTHON_EXCEPTIONS:
        lines += [f".. autoexception:: slimta.storage.{name}", ""]
        lines += [f"   Python only: a kind of :spec-error:`{kind}` with more detail.", ""]
    lines += [
        *heading("Testing", "-"),
        ".. autoclass:: slimta.storage.testing.RedisServer",
        "   :members:",
        "",
    ]
    return "\n".join(lines)


PAGES: dict[str, Callable[[Pages], str]] = {
    "reference/storage.rst": page_storage,
    "reference/session.rst": page_session,
    "reference/python.rst": page_python,
    "redis-layout.rst": page_layout,
    "changelog.rst": page_changelog,
    "_generated/lifecycle.inc": page_lifecycle,
}


def generate(spec: Spec) -> dict[str, str]:
    """Return every generated page, by its path relative to the docs folder."""
    pages = Pages(spec)
    return {path: render(pages).rstrip("\n") + "\n" for path, render in PAGES.items()}


# Writing and checking


def load_spec(path: Path) -> Spec:
    spec: Spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec


def write_pages(pages: dict[str, str], out: Path) -> None:
    for relative, text in pages.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))


def stale_pages(pages: dict[str, str], out: Path) -> list[str]:
    """Return generated files in ``out`` that the spec no longer produces."""
    stale = []
    for path in sorted(out.rglob("*")):
        if "_build" in path.relative_to(out).parts or not path.is_file():
            continue
        relative = path.relative_to(out).as_posix()
        first_line = HEADER.splitlines()[0].encode("utf-8")
        if relative not in pages and path.read_bytes().startswith(first_line):
            stale.append(relative)
    return stale


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def check_pages(pages: dict[str, str], out: Path) -> list[str]:
    """Write the pages into a temporary folder and return a report of each committed page that differs."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="slimta-docs-") as scratch:
        write_pages(pages, Path(scratch))
        for relative in pages:
            fresh = (Path(scratch) / relative).read_bytes()
            committed = out / relative
            if not committed.exists():
                problems.append(f"{display_path(committed)} is missing")
            elif committed.read_bytes() != fresh:
                diff = difflib.unified_diff(
                    committed.read_text(encoding="utf-8").splitlines(),
                    fresh.decode("utf-8").splitlines(),
                    f"{relative} (committed)",
                    f"{relative} (from the spec)",
                    lineterm="",
                    n=1,
                )
                diff_lines = list(diff)[:30]
                problems.append(f"{display_path(committed)} differs from the spec:\n" + "\n".join(diff_lines))
    problems += [
        f"{display_path(out / relative)} was generated, but the spec no longer produces it: delete it"
        for relative in stale_pages(pages, out)
    ]
    return problems


def regenerate_command(argv: Sequence[str]) -> str:
    args = [arg for arg in argv if arg != "--check"]
    return shlex.join(["scripts/gen_docs.py", *args])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC, help="spec file to read (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="docs folder to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a committed page differs from what the spec generates",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(arguments)
    pages = generate(load_spec(options.spec))
    if not options.check:
        write_pages(pages, options.out)
        for relative in stale_pages(pages, options.out):
            print(f"{options.out / relative} is no longer generated: delete it", file=sys.stderr)
        return 0
    problems = check_pages(pages, options.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"the generated docs are out of date: run {regenerate_command(arguments)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
