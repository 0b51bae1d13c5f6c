"""The documentation site: generated pages in sync, a clean build, doctests and a browser.

The reference pages in docs/ are generated from spec/storage.yaml by
scripts/gen_docs.py. These tests build the site with ``sphinx-build -W``
into temporary folders, read the HTML, run the doctests (the page on
sharing a Redis server starts its own ``redis-server``) and open the
built pages in headless Chromium from file:// URLs. The browser tests
skip when Chromium is missing, unless SLIMTA_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import ROOT, SPEC
from docutils import nodes

import slimta.storage

DOCS = ROOT / "docs"
GEN_DOCS = ROOT / "scripts" / "gen_docs.py"
HEADER_FIRST_LINE = ".. This file is generated from spec/storage.yaml by scripts/gen_docs.py."

# Languages of code blocks that show no Python, so no doctest can run them.
NON_PYTHON_LANGUAGES = {"sh", "text", "json", "ini"}

BROWSER_TIMEOUT = 120
BUILD_TIMEOUT = 300


@cache
def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec


def run_gen_docs(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(GEN_DOCS), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def sphinx_build(source: Path, out: Path, builder: str = "html") -> subprocess.CompletedProcess[str]:
    """Build ``source`` with warnings as errors into ``out/builder``."""
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is missing; the lifecycle diagram needs it: apt-get install graphviz")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder]
    command += ["-d", str(out / "doctrees"), str(source), str(out / builder)]
    return subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)


def copy_docs_tree(target: Path) -> Path:
    """Copy docs/ and the conformance README it includes into ``target``, and return the copy of docs/."""
    docs = target / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build"))
    (target / "conformance").mkdir()
    shutil.copy2(ROOT / "conformance" / "README.md", target / "conformance" / "README.md")
    return docs


# A small HTML tree, enough to find sections, ids and links.


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def text(self) -> str:
        parts = [child if isinstance(child, str) else child.text() for child in self.children]
        return "".join(parts)

    def heading(self) -> str:
        """Return the text of the first heading inside the element, such as a section's title."""
        headings = (element for element in self.iter() if re.fullmatch(r"h[1-6]", element.tag))
        first = next(headings, None)
        return "" if first is None else first.text()

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestor(self, tag: str) -> Element | None:
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        return node


class TreeBuilder(HTMLParser):
    VOID: ClassVar[set[str]] = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "wbr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, self.stack[-1])
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, self.stack[-1])
        self.stack[-1].children.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Element:
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def by_id(root: Element, element_id: str) -> Element:
    found = [element for element in root.iter() if element.attrs.get("id") == element_id]
    assert found, f"no element with id {element_id!r}"
    return found[0]


def section_of(root: Element, element_id: str) -> Element:
    section = by_id(root, element_id).ancestor("section")
    assert section is not None, element_id
    return section


def code_texts(element: Element) -> set[str]:
    return {node.text() for node in element.iter() if node.tag == "code"}


def read_page(html: Path, page: str) -> Element:
    return parse_html((html / page).read_text(encoding="utf-8"))


# The build


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site from the tree once per module, and return its html folder."""
    out = tmp_path_factory.mktemp("site")
    result = sphinx_build(DOCS, out)

    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_generated_pages_in_sync() -> None:
    result = run_gen_docs("--check")

    assert result.returncode == 0, result.stderr


def test_generated_pages_have_header(tmp_path: Path) -> None:
    result = run_gen_docs("--out", tmp_path)
    generated = sorted(path for path in tmp_path.rglob("*") if path.is_file())

    assert result.returncode == 0, result.stderr
    assert len(generated) >= 5
    for path in generated:
        assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER_FIRST_LINE, path


def test_generator_byte_stable(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    run_gen_docs("--out", first)
    run_gen_docs("--out", second)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())

    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_check_reports_stale_page(tmp_path: Path) -> None:
    docs = copy_docs_tree(tmp_path)
    (docs / "reference" / "retired.rst").write_text(HEADER_FIRST_LINE + "\n", encoding="utf-8")

    result = run_gen_docs("--check", "--out", docs)

    assert result.returncode == 1
    assert "reference/retired.rst" in result.stderr


def test_build_passes(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "search.html").is_file()


def test_session_page_lists_methods(site: Path) -> None:
    page = read_page(site, "reference/session.html")
    types = {entry["name"] for entry in load_spec()["types"]}

    methods = load_spec()["methods"]
    assert len([method for method in methods if method["since"] == "1.0.0"]) == 15
    for method in methods:
        section = section_of(page, f"std-spec-method-{method['name']}")
        text = section.text()
        codes = code_texts(section)
        assert method["name"] in section.heading(), method["name"]
        for rubric in ("Parameters", "Returns", "Errors"):
            assert rubric in text, (method["name"], rubric)
        for param in method["params"]:
            assert param["name"] in codes, (method["name"], param["name"])
            assert param["type"] in codes, (method["name"], param["type"])
        if method["returns"]["type"] == "none":
            assert "Nothing." in text, method["name"]
        else:
            assert method["returns"]["type"] in codes & types, method["name"]
        for kind in method["errors"]:
            assert kind in codes, (method["name"], kind)


def test_session_page_links_python(site: Path) -> None:
    page = read_page(site, "reference/session.html")
    hrefs = {element.attrs.get("href", "") for element in page.iter() if element.tag == "a"}

    for method in load_spec()["methods"]:
        assert f"python.html#slimta.storage.Session.{method['name']}" in hrefs, method["name"]


def test_python_page_documents_session(site: Path) -> None:
    page = read_page(site, "reference/python.html")
    public = [name for name in dir(slimta.storage.Session) if not name.startswith("_")]

    for name in public:
        by_id(page, f"slimta.storage.Session.{name}")
    for error in load_spec()["errors"]:
        by_id(page, f"slimta.storage.{error['python']}")


def test_layout_page_shows_databases(site: Path) -> None:
    page = read_page(site, "redis-layout.html")

    for database in load_spec()["redis_layout"]["databases"]:
        section = section_of(page, f"spec-database-{database['index']}")
        tables = [element for element in section.iter() if element.tag == "table"]
        assert len(tables) == 1, database["index"]
        assert {key["key"] for key in database["keys"]} <= code_texts(tables[0]), database["index"]
        assert {key["type"] for key in database["keys"]} <= code_texts(tables[0]), database["index"]


def test_layout_page_lists_meta_keys(site: Path) -> None:
    page = read_page(site, "redis-layout.html")
    codes = code_texts(section_of(page, "std-spec-meta-key-timestamp"))

    assert {entry["key"] for entry in load_spec()["meta_keys"]} <= codes


def test_lifecycle_diagram_drawn(site: Path) -> None:
    page = read_page(site, "overview.html")
    objects = [
        element for element in page.iter() if element.tag == "object" and "graphviz" in element.classes()
    ]
    lifecycle = load_spec()["lifecycle"]

    assert len(objects) == 1
    svg = (site / objects[0].attrs["data"]).read_text(encoding="utf-8")
    for state in lifecycle["states"]:
        assert f">{state['title']}</text>" in svg, state["name"]
    for transition in lifecycle["transitions"]:
        assert f">{transition['method']}</text>" in svg, transition["method"]


def test_spec_change_reaches_page(tmp_path: Path) -> None:
    docs = copy_docs_tree(tmp_path)
    spec = load_spec()
    marker = "Marker sentence that only the regeneration test writes."
    changed = {**spec, "methods": [dict(method) for method in spec["methods"]]}
    lock = next(method for method in changed["methods"] if method["name"] == "lock_message")
    lock["description"] = marker
    spec_copy = tmp_path / "storage.yaml"
    spec_copy.write_text(yaml.safe_dump(changed, sort_keys=False), encoding="utf-8")

    stale = run_gen_docs("--check", "--spec", spec_copy, "--out", docs)
    assert stale.returncode == 1
    assert "reference/session.rst" in stale.stderr
    assert f"run scripts/gen_docs.py --spec {spec_copy} --out {docs}" in stale.stderr

    assert run_gen_docs("--spec", spec_copy, "--out", docs).returncode == 0
    assert run_gen_docs("--check", "--spec", spec_copy, "--out", docs).returncode == 0
    result = sphinx_build(docs, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    page = read_page(tmp_path / "out" / "html", "reference/session.html")
    assert marker in section_of(page, "std-spec-method-lock_message").text()


def test_doctests_pass(tmp_path: Path) -> None:
    result = sphinx_build(DOCS, tmp_path, "doctest")
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8")
    counts = re.search(r"^\s+(\d+) tests?$", report, re.MULTILINE)

    assert result.returncode == 0, report + result.stderr
    assert counts is not None and int(counts.group(1)) >= 10, report
    assert "0 failures in tests" in report


def test_examples_are_doctests(site: Path) -> None:
    # Every code block that can hold Python is a doctest directive, so the
    # doctest run above executes every Python example.
    doctrees = site.parent / "doctrees"
    tested = 0
    untested = []
    for path in sorted(doctrees.rglob("*.doctree")):
        with path.open("rb") as file:
            tree = pickle.load(file)  # written by the build above, from this tree
        for block in tree.findall(nodes.literal_block):
            if block.get("testnodetype"):
                tested += 1
            elif block.get("language") not in NON_PYTHON_LANGUAGES:
                untested.append(f"{path.relative_to(doctrees)}: {block.astext()[:60]!r}")

    assert tested >= 5
    assert untested == []


# The browser


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is not None:
        return path
    if os.environ.get("SLIMTA_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "chromium is missing and SLIMTA_REQUIRE_BROWSER=1: install it with apt-get install chromium"
        )
    pytest.skip(
        "chromium is missing (apt-get install chromium); set SLIMTA_REQUIRE_BROWSER=1 to fail instead"
    )


def dump_dom(url: str, profile: Path) -> Element:
    """Load ``url`` in headless Chromium with no network and return the DOM after its scripts ran."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Resolve no host name at all, so a page that needed the network would show it.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<html" in result.stdout, result.stderr[-2000:]
    return parse_html(result.stdout)


def local_references(page: Element) -> Iterator[tuple[str, str]]:
    """Yield (attribute, value) for every link and resource the page refers to."""
    attributes = {"a": "href", "link": "href", "script": "src", "img": "src", "object": "data"}
    for element in page.iter():
        name = attributes.get(element.tag)
        if name is not None and name in element.attrs:
            yield name, element.attrs[name]


def broken_references(site: Path, page_path: Path, page: Element) -> list[str]:
    """Return the references of ``page`` that leave the site or point at nothing in it."""
    broken = []
    for name, value in local_references(page):
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            broken.append(f"{name}={value}: not a relative link")
            continue
        target = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
        if not target.is_file() or site.resolve() not in target.parents:
            broken.append(f"{name}={value}: no file {target}")
            continue
        if parts.fragment and target.suffix == ".html":
            ids = {element.attrs.get("id") for element in read_page(target.parent, target.name).iter()}
            if unquote(parts.fragment) not in ids:
                broken.append(f"{name}={value}: no id {parts.fragment!r} in {target.name}")
    return broken


@pytest.mark.parametrize("page_name", ["index.html", "reference/session.html"])
def test_browser_links_resolve(site: Path, tmp_path: Path, page_name: str) -> None:
    page_path = site / page_name
    page = dump_dom(page_path.as_uri(), tmp_path / "profile")
    navigation = [element for element in page.iter() if "sphinxsidebarwrapper" in element.classes()]

    assert len(navigation) == 1
    assert len([element for element in navigation[0].iter() if element.tag == "a"]) >= 9
    assert broken_references(site, page_path, page) == []


def test_browser_shows_session_methods(site: Path, tmp_path: Path) -> None:
    page = dump_dom((site / "reference" / "session.html").as_uri(), tmp_path / "profile")

    for method in load_spec()["methods"]:
        section = section_of(page, f"std-spec-method-{method['name']}")
        assert method["name"] in section.heading(), method["name"]


def test_browser_search_finds_session(site: Path, tmp_path: Path) -> None:
    url = (site / "search.html").as_uri() + "?q=lock_message"
    page = dump_dom(url, tmp_path / "profile")
    results = [element for element in page.iter() if element.tag == "ul" and "search" in element.classes()]

    assert len(results) == 1, "the search page shows no results list"
    hrefs = [element.attrs["href"] for element in results[0].iter() if element.tag == "a"]
    assert any(href.startswith("reference/session.html#") for href in hrefs), hrefs
    assert broken_references(site, site / "search.html", results[0]) == []
