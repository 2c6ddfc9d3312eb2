"""Torrents the server has delivered, by info-hash, and the folders they are delivered as.

After a torrent's files are filed in the content store, a small manifest records which stored
object each file is, so a later task for the same info-hash is delivered from the store
without the swarm (SPEC 4b). A multi-file torrent is assembled as a tree of hard links in the
temporary area and renamed into the user's folder (by the drive's space writer), so it
appears whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class ShelvedFile:
    path: tuple[str, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class ShelvedTorrent:
    name: str
    multi_file: bool
    files: tuple[ShelvedFile, ...]


class TorrentShelf:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _manifest(self, info_hash: str) -> Path:
        return self.root / f"{info_hash.lower()}.json"

    def record(self, info_hash: str, torrent: ShelvedTorrent) -> None:
        temporary = self._manifest(info_hash).with_suffix(".new")
        temporary.write_text(json.dumps({
            "name": torrent.name, "multi_file": torrent.multi_file,
            "files": [[list(f.path), f.sha256, f.size] for f in torrent.files],
        }))
        os.replace(temporary, self._manifest(info_hash))

    def get(self, info_hash: str) -> ShelvedTorrent | None:
        try:
            data = json.loads(self._manifest(info_hash).read_text())
        except (FileNotFoundError, ValueError):
            return None
        files = tuple(ShelvedFile(tuple(path), digest, size) for path, digest, size in data["files"])
        return ShelvedTorrent(data["name"], data["multi_file"], files)


def stage_tree(files: list[tuple[Path, tuple[str, ...]]], staging: Path) -> None:
    """Hard-link each (source, path) under `staging`; a missing source of a zero-length file is
    created empty (libtorrent may never write one)."""
    for source, parts in files:
        target = staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            os.link(source, target)
        else:
            target.touch()


def tree_size(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(top, name)) for top, _dirs, names in os.walk(folder) for name in names)

