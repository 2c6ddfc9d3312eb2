"""Sources: how the bytes of one kind of task get here. Each kind is one module behind the
`Source` protocol (`http.py` for URLs and content IDs, `torrent.py` for magnet links); a new
kind of source is one new module, listed in DownloadEngine's `sources`."""

from __future__ import annotations

from typing import Protocol

from engine.scheduler import Running
from engine.tasks import Task


class Source(Protocol):
    kinds: tuple[str, ...]
    """The task kinds (Task.kind) this source runs."""

    def run(self, task: Task, running: Running) -> None:
        """One try of `task`: deliver content the server holds already, else fetch it into the
        temporary area (resuming from the state the task saved, saving progress as it goes,
        stopping when `running.cancel` is set) and hand it to engine/delivery.py. Raises
        engine.errors' TransientError (try later), PermanentError (fail) or Cancelled."""
