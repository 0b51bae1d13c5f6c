"""The Python examples of README.md run as written."""

from __future__ import annotations

import re

from conftest import ROOT

BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_readme_python_examples_run() -> None:
    blocks = BLOCK.findall((ROOT / "README.md").read_text())

    assert blocks, "README.md has no Python example"
    for block in blocks:
        # Our own README, run as a reader would paste it.
        exec(compile(block, "README.md", "exec"), {})
