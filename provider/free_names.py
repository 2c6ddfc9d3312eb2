"""Putting a finished download into a folder under a name nobody uses yet.

Helpers of the space writer (provider/space_writer.py): a file is hard-linked in, a folder
renamed in, each in one step that never replaces what a client put there meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from engine.naming import unique_name


def link_under_free_name(source: Path, folder: Path, name: str, trying: Callable[[Path], None]) -> Path:
    """Hard-link `source` into `folder` as `name`, or `name (1)`... if taken; `trying(path)`
    is told each path just before the link. os.link never replaces an existing file, so a
    race cannot clobber one."""
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    while True:
        candidate = unique_name(name, lambda n: n in taken or (folder / n).exists())
        trying(folder / candidate)
        try:
            os.link(source, folder / candidate)
            return folder / candidate
        except FileExistsError:
            taken.add(candidate)


def move_under_free_name(source: Path, folder: Path, name: str, trying: Callable[[Path], None]) -> Path:
    """Rename the folder `source` into `folder` as `name`, or `name (1)`... if taken: one
    rename, so the folder appears whole; `trying(path)` is told each path just before."""
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    while True:
        candidate = unique_name(name, lambda n: n in taken or os.path.lexists(folder / n))
        trying(folder / candidate)
        try:
            os.rename(source, folder / candidate)
            return folder / candidate
        except OSError:
            if not os.path.lexists(folder / candidate):
                raise
            taken.add(candidate)
