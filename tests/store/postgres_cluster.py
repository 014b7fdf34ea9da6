"""A throwaway PostgreSQL cluster for the tests and the benchmarks: `initdb` in a temporary
folder, `pg_ctl start` on a free loopback port (127.0.0.1 only), `pg_ctl stop -m immediate` and
the folder removed afterwards.

PostgreSQL refuses to run as root, so when this runs as root (as CI does) the cluster belongs to
an unprivileged system user, `tollgate-pg` (created with `useradd --system` when missing, else
`nobody`), and initdb/pg_ctl run through `runuser -u USER --`. The server's superuser is
`tollgate` with a random password (scram-sha-256 over TCP), so tests can check password errors.

Standard library only: imported by tests/store/conftest.py and by bench/store_pg.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

SYSTEM_USER = "tollgate-pg"
SUPERUSER = "tollgate"
INSTALL_HINT = (
    "install the PostgreSQL server (15 or newer): `apt-get install postgresql` on Debian or "
    "Ubuntu (then initdb and pg_ctl are in /usr/lib/postgresql/*/bin, found automatically), "
    "`dnf install postgresql-server` on Fedora, `brew install postgresql@15` on macOS, or put "
    "the folder holding initdb and pg_ctl on PATH"
)


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (the message says how to install them)."""


class ClusterError(RuntimeError):
    """The binaries exist but the cluster could not be created or started."""


def skip_or_fail(reason: str) -> NoReturn:
    """In a test: skip where PostgreSQL (or psycopg) is missing, but fail under CI (CI=true),
    where the PostgreSQL tests must run."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the PostgreSQL tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_psycopg() -> Any:
    """The psycopg module, or a skip (a failure under CI=true) saying how to install it."""
    try:
        import psycopg
    except ImportError:
        skip_or_fail("psycopg 3 is not installed: pip install 'psycopg[binary]>=3.1,<4'")
    return psycopg


def find_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: from PATH, else the newest Debian install."""
    initdb = shutil.which("initdb")
    if initdb:
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for folder in reversed(candidates):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _server_user() -> str | None:
    """The OS user the server runs as: None (ourselves) unless we are root."""
    if not _is_root():
        return None
    try:
        import pwd

        pwd.getpwnam(SYSTEM_USER)
        return SYSTEM_USER
    except KeyError:
        pass
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        capture_output=True,
        text=True,
    )
    if made.returncode in (0, 9):  # 9: created meanwhile by another process
        return SYSTEM_USER
    return "nobody"


@dataclass
class Cluster:
    """A running throwaway cluster."""

    bin_dir: Path
    folder: Path
    port: int
    password: str
    os_user: str | None
    host: str = "127.0.0.1"
    fsync: bool = True
    stopped: bool = field(default=False)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@{self.host}:{self.port}/{dbname}"

    def describe(self) -> dict[str, object]:
        """How the server was started (for benchmark params and reports)."""
        return {
            "server": "throwaway cluster (initdb + pg_ctl)",
            "version": self.version(),
            "os_user": self.os_user or "(current user)",
            "listen": f"{self.host}:{self.port}",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on",
            "folder": str(self.folder),
        }

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (a plain identifier) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be a plain identifier, not {name!r}")
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name` if it exists, cutting the connections still open to it."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def restart(self) -> None:
        """Stop the server (-m fast: every session is ended) and start it again on the same
        port and data, as an operator's restart would."""
        pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file)]
        _run(self, [*pg_ctl, "restart", "-m", "fast", "-w", "-t", "30"])

    def stop(self) -> None:
        """Stop the server at once (-m immediate) and remove its folder; safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        try:
            _run(
                self,
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "stop",
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                ],
                check=False,
            )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _as_user(os_user: str | None, argv: Sequence[str]) -> list[str]:
    return list(argv) if os_user is None else ["runuser", "-u", os_user, "--", *argv]


def _run(cluster: Cluster, argv: Sequence[str], *, check: bool = True) -> str:
    done = subprocess.run(
        _as_user(cluster.os_user, argv),
        capture_output=True,
        text=True,
        cwd=cluster.folder,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        log = ""
        with contextlib.suppress(OSError):
            log = cluster.log_file.read_text()[-2000:]
        raise ClusterError(
            f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
        )
    return done.stdout


def start_cluster(*, fsync: bool = True, attempts: int = 3) -> Cluster:
    """initdb and start a cluster as described in the module docstring; the caller must call
    `stop()` (use `running_cluster()` for a context manager)."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise ClusterUnavailable(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
        )
    os_user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
    os.chmod(folder, 0o700)
    cluster = Cluster(
        bin_dir=bin_dir,
        folder=folder,
        port=0,
        password=secrets.token_hex(12),
        os_user=os_user,
        fsync=fsync,
    )
    try:
        if os_user is not None:
            shutil.chown(folder, user=os_user)
        pwfile = folder / "pwfile"
        pwfile.write_text(cluster.password + "\n")
        if os_user is not None:
            shutil.chown(pwfile, user=os_user)
        _run(
            cluster,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # the cluster is thrown away; the *server* runs with fsync on
            ],
        )
        pwfile.unlink()
        last: ClusterError | None = None
        for _ in range(attempts):  # a free port can be taken between probing and binding
            cluster.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={cluster.port}",
                    f"-c unix_socket_directories={folder}",
                    f"-c fsync={'on' if fsync else 'off'}",
                    "-c synchronous_commit=on",
                    "-c max_connections=60",
                    "-c shared_buffers=128MB",
                ]
            )
            try:
                _run(
                    cluster,
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(cluster.data_dir),
                        "-l",
                        str(cluster.log_file),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                )
                return cluster
            except ClusterError as exc:
                last = exc
                _run(
                    cluster,
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(cluster.data_dir),
                        "stop",
                        "-m",
                        "immediate",
                    ],
                    check=False,
                )
                time.sleep(0.2)
        assert last is not None
        raise last
    except BaseException:
        cluster.stop()
        raise


@contextlib.contextmanager
def running_cluster(*, fsync: bool = True) -> Iterator[Cluster]:
    """A started cluster, stopped (-m immediate) and removed on exit, even on failure."""
    cluster = start_cluster(fsync=fsync)
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def cluster_for_tests(*, fsync: bool = True) -> Iterator[Cluster]:
    """`running_cluster()` in a test: skipped where PostgreSQL or psycopg is missing (failed
    under CI=true, see `skip_or_fail`)."""
    require_psycopg()
    try:
        cluster = start_cluster(fsync=fsync)
    except ClusterUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
