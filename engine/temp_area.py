"""The temporary area (`data/tmp/downloads`): where each task keeps its bytes until they are
published (`<id>.part` for HTTP; `<id>.bt`, `<id>.torrent`, `<id>.resume` and `<id>.deliver` for
torrents), how a task's data is discarded, and the clean-up at start."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Collection
from pathlib import Path

from engine.allowances import Allowances
from engine.following_hasher import file_sha256
from engine.space_access import SpaceAccess
from engine.kinds import SourceKind, TaskState
from engine.tasks import Task, TaskStore

_log = logging.getLogger(__name__)

FileAway = Callable[[Task, Path, str, Path], None]
"""Files a published download's temporary file in the content store: (task, temp, digest, placed)."""


def _remove_temp(item: Path) -> None:
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item, ignore_errors=True)
    else:
        item.unlink(missing_ok=True)


def _kept(task: Task | None, others_alive: Collection[str]) -> bool:
    """Whether a temporary file of `task` is still needed: it is unfinished (resumable), or a
    live node ran it."""
    return task is not None and (task.unfinished or task.node in others_alive)


class TempArea:
    def __init__(self, root: Path, tasks: TaskStore, allowances: Allowances, spaces: SpaceAccess) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.tasks = tasks
        self._allowances = allowances
        self._spaces = spaces

    def part_path(self, task: Task) -> Path:
        return Path(task.temp_path) if task.temp_path else self.root / f"{task.id}.part"

    def torrent_paths(self, task: Task) -> tuple[Path, Path, Path]:
        """Where a torrent task keeps its data, its metainfo once known, and its resume data."""
        return self.root / f"{task.id}.bt", self.root / f"{task.id}.torrent", self.root / f"{task.id}.resume"

    def discard_temp(self, task: Task) -> None:
        self.part_path(task).unlink(missing_ok=True)
        self.remove_torrent_temp(task)
        self._allowances.release_room(task)
        self.tasks.update(task.id, bytes_done=0, etag=None, last_modified=None, segments=None)

    def remove_torrent_temp(self, task: Task) -> None:
        if task.kind == SourceKind.TORRENT:
            for item in self.root.glob(f"{task.id}.*"):
                _remove_temp(item)

    def remove_orphan_temp_files(self, file_away: FileAway, others_alive: Collection[str] = ()) -> None:
        """Temporary files nobody needs go; a published download that a crash kept from being
        filed in the content store is filed now, on a thread of its own (it needs hashing).
        What a node in `others_alive` ran is left to it: it may be filing it now (a finished
        task's temporary file, or the link its filing swaps in), or seeding it."""
        unfiled: list[tuple[Task, Path]] = []
        for item in self.root.iterdir():
            task = self._task_named_by(item)
            if item == self.seeding_root:
                for seeded in item.iterdir():
                    if not _kept(self._task_named_by(seeded), others_alive):
                        _remove_temp(seeded)
            elif task is not None and task.state == TaskState.DONE and not task.sha256 and task.path and item.suffix == ".part":
                if task.node not in others_alive:
                    unfiled.append((task, item))
            elif not _kept(task, others_alive):
                _remove_temp(item)
        if unfiled:
            threading.Thread(target=self._file_away_after_restart, args=(unfiled, file_away), name="filing",
                             daemon=True).start()

    @property
    def seeding_root(self) -> Path:
        """Where finished torrents are seeded from, a folder per task."""
        return self.root / "seeding"

    def _task_named_by(self, item: Path) -> Task | None:
        stem = item.name.split(".", 1)[0]
        return self.tasks.get(int(stem)) if stem.isdigit() else None

    def _file_away_after_restart(self, unfiled: list[tuple[Task, Path]], file_away: FileAway) -> None:
        for task, temp in unfiled:
            try:
                digest = file_sha256(temp).hexdigest()
                file_away(task, temp, digest, self._spaces.root(task.user) / task.path)
            except OSError as error:
                _log.warning("task %d: could not file %s in the content store: %s", task.id, temp, error)
