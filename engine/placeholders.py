"""What the downloads folder shows of unfinished work: a `<name>.part` placeholder per
unfinished task (its bytes saved so far) and the status file, plain text for people who only
have a file manager (see provider/downloads_view.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.naming import PART_SUFFIX, STATUS_FILE
from engine.kinds import TaskState
from engine.tasks import TaskStore


@dataclass(frozen=True)
class Placeholder:
    """A read-only entry of the downloads folder: partial data on disk, or generated text."""

    name: str
    size: int
    modified: float
    temp_path: str | None
    content: bytes | None = None


def human_size(size: float | None) -> str:
    if size is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


class DownloadsStatus:
    """Placeholders and the status text of one user's unfinished and failed tasks; running
    tasks count the bytes their worker holds (`live_progress`), not only the saved figure."""

    def __init__(self, tasks: TaskStore, live_progress: Callable[[int], tuple[int, float] | None]) -> None:
        self.tasks = tasks
        self.live_progress = live_progress

    def placeholders(self, user: str, folder: str) -> list[Placeholder]:
        shown: list[Placeholder] = []
        names: set[str] = set()
        for task in self.tasks.unfinished_in_folder(user, folder):
            live = self.live_progress(task.id)
            size = live[0] if live else task.bytes_done
            name = f"{task.display_name}{PART_SUFFIX}"
            if name in names:
                name = f"{task.display_name} (task {task.id}){PART_SUFFIX}"
            names.add(name)
            shown.append(Placeholder(name, size, task.updated_at, task.temp_path))
        if folder == "downloads":
            status = self.status_text(user)
            if status:
                data = status.encode()
                shown.append(Placeholder(STATUS_FILE, len(data), time.time(), None, data))
        return shown

    def status_text(self, user: str) -> str:
        """Unfinished and failed downloads as plain text, one line each; empty when none."""
        lines = []
        for task in self.tasks.unfinished_for_user(user):
            live = self.live_progress(task.id)
            done = live[0] if live else task.bytes_done
            if task.bytes_total:
                progress = f"{100 * done // task.bytes_total} % of {human_size(task.bytes_total)}"
            else:
                progress = f"{human_size(done)} so far, size not known yet"
            speed = f", {human_size(done / live[1])}/s" if live and live[1] > 0 else ""
            note = f" ({task.error})" if task.error else ""
            lines.append(f"{task.display_name}: {task.state}, {progress}{speed}{note}")
        for task in self.tasks.for_user(user, state=TaskState.FAILED, limit=50):
            lines.append(f"{task.display_name}: failed: {task.error}")
        if not lines:
            return ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return f"fetchdrive downloads, {stamp}\n\n" + "\n".join(lines) + "\n"
