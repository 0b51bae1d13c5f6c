"""Sphinx configuration of the slimta-storage documentation.

The reference pages are generated from spec/storage.yaml by
scripts/gen_docs.py. scripts/build_docs checks that they are current and
builds the site into docs/_build/html. Everything the site loads ships in
the build folder, so it works offline.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx

from slimta.storage import SPEC_VERSION, __version__

project = "slimta-storage"
version = __version__
release = f"{__version__} (spec {SPEC_VERSION})"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.graphviz",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# Every cross reference must resolve, so a generated link from the spec to
# a Python name that does not exist fails the build. The site is built
# offline without intersphinx, so names from the standard library and
# redis-py stay unlinked, and so do private classes in the signatures of
# the session classes, which callers never create themselves.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(collections\.abc|time|typing|redis)\..*"),
    (r"py:class", r"slimta\.storage\.(\w+\.)*_\w+.*"),
]

# Graphviz's dot draws the lifecycle diagram as SVG at build time
# (Debian's package graphviz).
graphviz_output_format = "svg"

# The conformance README is included as Markdown. Its headings down to
# level 3 get anchors, so Markdown links such as (#adapter-protocol) work.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"slimta-storage {__version__}"
html_theme_options = {
    "description": f"Mail queue storage, spec {SPEC_VERSION}",
    "show_powered_by": False,
}
html_show_sphinx = False
html_show_copyright = False
# Alabaster links custom.css from every page, which underlines code links.
html_static_path = ["_static"]

# Cross-reference types for the entries of the spec: each directive marks
# an entry in a generated page, and the role of the same name links to it
# in code style, such as :spec-method:`lock_message`.
SPEC_ENTRIES = {
    "spec-method": "spec method",
    "spec-type": "spec type",
    "spec-error": "spec error kind",
    "spec-rule": "spec rule",
    "spec-engine": "spec engine",
    "spec-meta-key": "meta key",
    "spec-state": "message state",
}


def setup(app: Sphinx) -> None:
    for name, title in SPEC_ENTRIES.items():
        app.add_crossref_type(
            name, name, indextemplate=f"pair: %s; {title}", ref_nodeclass=nodes.literal, objname=title
        )
