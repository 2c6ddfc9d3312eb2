"""Small helpers for download tests: polling, trigger files, reading the downloads folder, rclone."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 20, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.05)


def url_shortcut(url: str, **extra: str) -> bytes:
    lines = ["[InternetShortcut]", f"URL={url}"] + [f"{key}={value}" for key, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n").encode()


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def temp_downloads(data: Path) -> list[str]:
    return files_in(data / "tmp" / "downloads")


def saved_bytes(server) -> int:
    """The bytes the server's task rows hold as saved: what a restart resumes from."""
    return sum(saved or 0 for saved, in server.query("SELECT bytes_done FROM tasks"))


def refetch_allowed(size: int, saved: int) -> int:
    """The most an origin may send of a `size`-byte download after a restart that resumes from
    `saved` bytes: the rest, plus what its own cut connections had in flight (a range split
    mid-way hangs up on bytes already written to the socket); well below `size`, which a
    restart from zero would take, as long as more than a quarter was saved."""
    return size - saved + size // 4


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real filesystem of `size` (e.g. "64m") mounted on `folder`; the test is skipped where
    mounting is not allowed (CI runs as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill_disk(path: Path) -> int:
    """Write `path` until its filesystem is full; the bytes written."""
    written = 0
    block = b"\0" * (256 * 1024)
    with open(path, "wb", buffering=0) as out:
        try:
            while True:
                written += out.write(block)
        except OSError:
            return written


def rclone(server, account, *args: str) -> subprocess.CompletedProcess:
    """Run `rclone ARGS...` with the remote `fd:` set to the account's drive (no config file)."""
    obscured = subprocess.run(["rclone", "obscure", account.password], capture_output=True, text=True, check=True).stdout
    env = {
        **os.environ, "RCLONE_CONFIG_FD_TYPE": "webdav", "RCLONE_CONFIG_FD_URL": server.dav(),
        "RCLONE_CONFIG_FD_VENDOR": "other", "RCLONE_CONFIG_FD_USER": account.name,
        "RCLONE_CONFIG_FD_PASS": obscured.strip(), "RCLONE_CONFIG": os.devnull,
    }
    return subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=600)
