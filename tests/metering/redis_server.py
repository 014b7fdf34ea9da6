"""A throwaway Redis server for the tests: `redis-server` on a free loopback port (127.0.0.1
only), in a temporary folder, with no persistence; stopped and the folder removed afterwards.

Without the binary the Redis tests skip, saying how to install it, except under CI (CI=true),
where they must run and so fail instead. Standard library only (plus pytest for the skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

INSTALL_HINT = (
    "install the Redis server (7 or newer): `apt-get install redis-server` on Debian or Ubuntu "
    "(or run .ci/redis_setup.sh), `dnf install redis` on Fedora, `brew install redis` on macOS, "
    "or put the folder holding redis-server on PATH"
)
START_TIMEOUT_S = 10.0


class ServerUnavailable(RuntimeError):
    """No redis-server binary here (the message says how to install one)."""


class ServerError(RuntimeError):
    """The binary exists but the server did not start."""


def skip_or_fail(reason: str) -> NoReturn:
    """In a test: skip where Redis (or redis-py) is missing, but fail under CI (CI=true),
    where the Redis tests must run."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Redis tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on 127.0.0.1:port (raw RESP, no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(binary: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the server on `port` and wait for PING; raises ServerError (with the log's tail)."""
    log = folder / "server.log"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--daemonize", "no", "--dir", str(folder), "--logfile", str(log)]
    process = subprocess.Popen(argv, cwd=folder, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break  # exited: most often the port was taken meanwhile
        if ping(port):
            return process
        time.sleep(0.05)
    _stop(process)
    tail = ""
    with contextlib.suppress(OSError):
        tail = log.read_text()[-2000:]
    raise ServerError(f"redis-server did not answer PING on 127.0.0.1:{port}\n{tail}")


@contextlib.contextmanager
def running_server(attempts: int = 3) -> Iterator[str]:
    """A started server's URL (redis://127.0.0.1:PORT/0); stopped and removed on exit, even on
    failure. A free port can be taken between probing and binding, hence the attempts."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable(f"redis-server not found: {INSTALL_HINT}")
    folder = Path(tempfile.mkdtemp(prefix="tollgate-redis-"))
    try:
        last: ServerError | None = None
        for _ in range(attempts):
            port = free_port()
            try:
                process = _start(binary, folder, port)
            except ServerError as exc:
                last = exc
                continue
            try:
                yield f"redis://127.0.0.1:{port}/0"
            finally:
                _stop(process)
            return
        assert last is not None
        raise last
    finally:
        shutil.rmtree(folder, ignore_errors=True)
