"""Start and drive the client hosts of the benchmark, and prepare python-slimta's interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Host", "HostError", "prepare_anchor_venv"]

SCRIPTS = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600.0
REPLY_SLACK = 120.0
"""Seconds a host may take beyond the requested run time before it counts as hung."""


class HostError(RuntimeError):
    """A client host failed, hung or returned an error."""


class Host:
    """One client host: a ``python -m bench.host`` process with its worker processes."""

    def __init__(self, python: str, workers: int, client_counts: list[int]) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(SCRIPTS), *filter(None, [environment.get("PYTHONPATH")])]
        )
        counts = ",".join(str(count) for count in client_counts)
        self.python = python
        self._process = subprocess.Popen(
            [python, "-m", "bench.host", str(workers), counts],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self._process.stdout is not None
        self._selector.register(self._process.stdout, selectors.EVENT_READ)

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and return the reply, raising HostError on an error reply."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        if not self._selector.select(timeout + REPLY_SLACK):
            self.close()
            limit = timeout + REPLY_SLACK
            raise HostError(f"the client host of {self.python} did not reply within {limit:.0f} s")
        line = self._process.stdout.readline()
        if not line:
            raise HostError(f"the client host of {self.python} exited with code {self._process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise HostError(f"{request['op']} of {request.get('variant', '')} failed:\n{reply['error']}")
        return reply

    def close(self) -> None:
        """Ask the host to stop its workers and exit, and kill it when it does not."""
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._selector.close()


def prepare_anchor_venv(venv: Path, install: bool) -> tuple[str | None, str]:
    """Return the interpreter of ``venv`` that has python-slimta, installing it when allowed.

    Returns (python, note): python is None when python-slimta is not
    available, and note then says why.
    """
    python = venv / "bin" / "python"
    if _imports_python_slimta(python):
        return str(python), f"python-slimta from {venv}"
    if not install:
        return None, f"python-slimta is not installed in {venv}; run without --no-install to install it"

    print(f"installing python-slimta into {venv}", file=sys.stderr)
    started = time.monotonic()
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
        # The same redis-py and hiredis as this interpreter, so both sides use one client library.
        # python-slimta 5 needs pkg_resources, which setuptools 81 removed.
        packages = ["python-slimta", "setuptools<81", *_pinned("redis", "hiredis")]
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade"]
        subprocess.run([*pip, *packages], check=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"installing python-slimta into {venv} failed: {error}"
    print(f"installed python-slimta in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if not _imports_python_slimta(python):
        return None, f"python-slimta was installed into {venv} but cannot be imported"
    return str(python), f"python-slimta from {venv}"


def _pinned(*names: str) -> list[str]:
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _imports_python_slimta(python: Path) -> bool:
    if not python.exists():
        return False
    check = "import warnings; warnings.simplefilter('ignore'); import slimta.redisstorage, slimta.envelope"
    try:
        result = subprocess.run([str(python), "-c", check], check=False, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0
