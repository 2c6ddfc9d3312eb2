"""A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, a cluster in a
temporary folder, one fresh database per test (or per shared server).

`PostgresCluster.start()` runs `initdb` and `pg_ctl start` as the `postgres` OS user when
the tests run as root (PostgreSQL refuses to run as root), listening on a free loopback
port with its socket in the folder, fsync off (a crash of the test machine loses nothing
of value) and room for many nodes' connections. Under pytest-xdist each worker starts its
own cluster when its first test needs one (about a second); it stops at the session's end.
Logins use a password, so tests see how a URL with one is logged.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

PASSWORD = "pg-secret-Xq7"  # the cluster's superuser password: never in a log
_BIN_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = sorted(_BIN_ROOT.glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """One PostgreSQL server under a temporary folder, and databases made on it."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError(f"no PostgreSQL under {_BIN_ROOT}: install Debian's postgresql (.ci/run does)")
        self.folder = Path(tempfile.mkdtemp(prefix="fetchdrive-pg-"))
        self.data = self.folder / "data"
        self.port = 0
        self._names = itertools.count(1)
        # PostgreSQL will not run as root; the folder then belongs to its own user.
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        def as_owner() -> None:
            if self._owner is not None:
                os.setgid(self._owner.pw_gid)
                os.setuid(self._owner.pw_uid)
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], preexec_fn=as_owner, cwd=self.folder,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def start(self) -> PostgresCluster:
        if self._owner is not None:
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD)
        if self._owner is not None:
            os.chown(password_file, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(password_file),
                  "--auth=scram-sha-256", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8")
        password_file.unlink()
        for attempt in itertools.count(1):  # another process may bind the free port first
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.folder} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                       "-c shared_buffers=32MB")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-o", options,
                          "-w", "-t", "60", "start")
                break
            except RuntimeError:
                if attempt == 3:
                    raise
        self.port = port
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"fetchdrive_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'create database "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.port:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
            self.port = 0
        shutil.rmtree(self.folder, ignore_errors=True)
