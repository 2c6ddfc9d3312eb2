"""Runs the real `fetchdrive serve` as a subprocess on a free loopback port, for tests.

Nothing is mocked: the server reads a config file written here, listens on port 0 (the
start line tells which port it got), and is stopped with SIGTERM or killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from engine.database import SQLITE_URL, open_database
from tests import forked_cli
from tests.forked_cli import REPO, ForkedProcess, fetchdrive

ADMIN_PASSWORD = "admin-password-1"
PASSWORDS_USED: set[str] = {ADMIN_PASSWORD}  # every log of the run is searched for these
_STARTED = re.compile(r"map the drive at (https?)://([^/]+)/dav/")


def run_cli(config: Path, *args: str, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `fetchdrive --config CONFIG ARGS...` (forked: tests/forked_cli.py) and capture its output."""
    return fetchdrive("--config", str(config), *args, input=input, env=env)


class ServerProcess:
    """One fetchdrive server with its own data folder under `base`."""

    def __init__(self, base: Path, settings: dict[str, Any] | None = None, forked: bool = True) -> None:
        """`forked`: started as a child of tests/forked_cli.py's helper, which has imported the
        app already; False for a `python -m server.cli serve` of its own."""
        self.base = base
        self.forked = forked
        self.base.mkdir(parents=True, exist_ok=True)
        self.config_path = base / "config.yaml"
        self.log_path = base / "server.log"
        tree: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": 0, "threads": 20, "timeout": 30},
            "storage": {"root": str(base / "data"), "min_free": "1M"},
            # A finished trigger lingers 1 s, not 30: tests wait for it to go.
            "engine": {"allow_private_networks": True, "retry": {"initial": 0.2, "max_wait": 1}, "trigger_linger": 1,
                       "torrent": {"port": 0, "dht": False}},
        }
        for key, value in (settings or {}).items():
            node = tree
            *parents, last = key.split(".")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[last] = value
        self.config_path.write_text(yaml.safe_dump(tree))
        self.database_url: str = (settings or {}).get("database.url", SQLITE_URL)
        self.process: subprocess.Popen | ForkedProcess | None = None
        self.base_url = ""
        self.user_names: set[str] = set()

    @property
    def data(self) -> Path:
        return self.base / "data"

    def space(self, user: str) -> Path:
        return self.data / "spaces" / user

    def start(self, timeout: float = 60) -> ServerProcess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = ["--config", str(self.config_path), "serve"]
        env = {**os.environ, "FETCHDRIVE_ADMIN_PASSWORD": ADMIN_PASSWORD}
        if self.forked:
            self.process = forked_cli.start(args, env=env, stdout=self.log_path)
        else:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen([sys.executable, "-m", "server.cli", *args], cwd=REPO, stdout=log,
                                                stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            match = _STARTED.search(text)
            if match:
                self.base_url = f"{match.group(1)}://{match.group(2)}"
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def query(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        """Committed rows of the server's database, SQLite or PostgreSQL: what it stored."""
        database = open_database(self.database_url, self.data)
        try:
            return database.read_committed(sql, params)
        finally:
            database.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return run_cli(self.config_path, *args, input=input)

    def add_user(self, name: str, password: str, quota: str | None = None) -> None:
        """`fetchdrive user add`, run in this process (see `command`)."""
        PASSWORDS_USED.add(password)
        self.user_names.add(name)
        self.command("user", "add", name, "--password", password, *(["--quota", quota] if quota else []))

    def command(self, *args: str) -> str:
        """`fetchdrive --config CONFIG ARGS...` run in this process; returns what it printed. The
        same code as the command, without a new interpreter importing the whole app each time
        (1 to 3 s each on CI; the commands as processes are tested in tests/test_cli_and_config.py)."""
        from server.cli import main

        output, errors = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
            try:
                main(["--config", str(self.config_path), *args])
            except SystemExit as exit:
                raise AssertionError(f"{' '.join(args[:2])} failed ({exit.code}): {errors.getvalue()}") from None
            finally:
                # The command's database connection must not outlive it here (as it would not
                # in its own process): a test may unmount the data folder afterwards.
                gc.collect()
        return output.getvalue()

    def unused_user_name(self, name: str) -> str:
        """`name`, or the first of `name2`, `name3`... that no test has added here yet."""
        candidates = itertools.chain([name], (f"{name}{n}" for n in itertools.count(2)))
        return next(candidate for candidate in candidates if candidate not in self.user_names)

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def dav(self, path: str = "") -> str:
        return self.base_url + "/dav/" + path.lstrip("/")

    def session(self, user: str, password: str) -> requests.Session:
        PASSWORDS_USED.add(password)
        session = requests.Session()
        session.auth = (user, password)
        session.trust_env = False
        return session

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
