"""A throwaway ``redis-server`` for tests, demos and benchmarks.

:class:`RedisServer` starts ``redis-server`` on a free loopback port with a
temporary directory and stops it by its pid. It never touches another
server, such as one already running on port 6379.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["RedisServer", "RedisServerError", "find_redis_server"]

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0


class RedisServerError(RuntimeError):
    """``redis-server`` is missing or did not start."""


def find_redis_server() -> str | None:
    """Return the path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(path)), None
    )


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` of its own on 127.0.0.1, with a temporary directory.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    ``config`` adds ``redis-server`` options, such as
    ``{"appendonly": "yes"}``. By default the server persists nothing.
    """

    def __init__(self, config: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.config = {"save": "", "appendonly": "no", "databases": "16"}
        self.config.update(config or {})
        self.directory: Path | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The pid of the running server, or None."""
        return None if self._process is None else self._process.pid

    def url(self, offset: int = 0) -> str:
        """Return the ``redis://`` URL of the server with the given offset."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{offset}"

    def client(self, db: int = 0) -> redis.Redis:
        """Return a plain redis-py client on one database, for raw checks.

        It authenticates with the ``requirepass`` of ``config``, if any.
        """
        password = self.config.get("requirepass")
        return redis.Redis(host=self.host, port=self.port, db=db, password=password, socket_timeout=10)

    def start(self) -> None:
        """Start the server on a free port and wait until it replies to PING."""
        binary = find_redis_server()
        if binary is None:
            raise RedisServerError(
                "redis-server not found: install it, for example with apt-get install redis-server"
            )
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="slimta-redis-")
            self.directory = Path(self._temporary.name)
            self.port = _free_port(self.host)
        self._launch(binary)

    def _launch(self, binary: str) -> None:
        assert self.directory is not None
        args = [binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.directory)]
        args += ["--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_ready()
        log.debug("started redis-server pid %d on %s:%d", self._process.pid, self.host, self.port)

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RedisServerError(f"redis-server exited at start: {self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.AuthenticationError:
                    # A server with requirepass replies NOAUTH: it is up.
                    return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {START_TIMEOUT} s")

    def log_tail(self, lines: int = 5) -> str:
        """Return the last lines of the server's log, for error messages."""
        if self.directory is None or not (self.directory / "redis.log").exists():
            return "(no log)"
        text = (self.directory / "redis.log").read_text(errors="replace").splitlines()
        return " | ".join(text[-lines:])

    def kill(self) -> None:
        """Kill the server with SIGKILL at once, keeping its directory for a restart."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def restart(self) -> None:
        """Start the server again on the same port and directory after :meth:`kill`."""
        binary = find_redis_server()
        assert binary is not None
        self._launch(binary)

    def stop(self) -> None:
        """Stop the server by its pid and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self.directory = None
