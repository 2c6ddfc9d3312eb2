"""A content-addressed store: every finished download is kept once, under its SHA-256.

A user's copy is a hard link to the store object, so identical content costs its size
once on disk while each user's quota counts it in full. A later PUT replaces the user's
file atomically (a new inode), which breaks the link and leaves every other copy alone.
An object whose link count drops to 1 is referenced by nobody and is removed by `gc`.
A download is published before it is filed here (`adopt`), so its hash never delays it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable


_HEX = re.compile(r"^[0-9a-f]{64}$")


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def object_path(self, sha256: str) -> Path:
        if not _HEX.match(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def linked(self, sha256: str) -> bool:
        """Whether some file outside the store links to the object: one nobody links to any
        more (its owners deleted or replaced their copies) is not held for anyone."""
        try:
            return self.object_path(sha256).stat().st_nlink > 1
        except FileNotFoundError:
            return False

    def adopt(self, temp_file: Path, sha256: str, published: Path,
              relink: Callable[[Path, Path, Path], None]) -> None:
        """Take a finished download, already published as `published` (a hard link to
        `temp_file`), into the store. If the store holds that content already, `published`
        becomes a link to the stored object, so the content is on disk once: `relink(stored,
        published, temp_file)` (the drive's space writer) does that only while `published` is
        still the downloaded file, never over a file the user has replaced meanwhile."""
        target = self.object_path(sha256)
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(temp_file, target)
        except FileExistsError:
            relink(target, published, temp_file)
        temp_file.unlink()
        self.release_if_unused(sha256)  # the user may have deleted the file already

    def gc(self) -> tuple[int, int]:
        """Remove objects nobody links to; returns (objects removed, bytes freed)."""
        removed = freed = 0
        for shard in self.root.iterdir() if self.root.exists() else ():
            for item in shard.iterdir() if shard.is_dir() else ():
                info = item.stat()
                if info.st_nlink <= 1:
                    item.unlink()
                    removed += 1
                    freed += info.st_size
        return removed, freed

    def release_if_unused(self, sha256: str) -> None:
        path = self.object_path(sha256)
        try:
            if path.stat().st_nlink <= 1:
                path.unlink()
        except FileNotFoundError:
            pass

