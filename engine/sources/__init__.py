"""Sources: how the bytes of one kind of task get here. Each kind is one module behind the
`Source` protocol (`http.py` for URLs and content IDs, `torrent.py` for magnet links); a new
kind of source is one new module, listed in DownloadEngine's `sources`."""

from __future__ import annotations

from typing import Protocol, TypeVar

from engine.scheduler import Running
from engine.tasks import Task


State = TypeVar("State")


class Source(Protocol[State]):
    """A try runs in two steps: `fetch` brings the content into the temporary area and returns
    its resumable state as data (`State`: engine/download.Download for HTTP, what the task row
    saves; engine/torrent_client.TorrentState for BitTorrent, what libtorrent resumes from);
    `deliver` hands that to the user's folder."""

    kinds: tuple[str, ...]
    """The task kinds (Task.kind) this source runs."""

    def run(self, task: Task, running: Running) -> None:
        """One try of `task`: deliver content the server holds already, else
        `deliver(task, running, fetch(task, running))`. Raises engine.errors' TransientError
        (try later), PermanentError (fail) or Cancelled."""

    def fetch(self, task: Task, running: Running) -> State:
        """The task's content in its temporary path, fetched with a transfer context (progress
        saved as it goes, room claimed in the user's quota, stopping when `running.cancel` is
        set) and resumed from the state an earlier try saved; returns that state."""

    def deliver(self, task: Task, running: Running, state: State) -> None:
        """Publish what `fetch` left into the task's folder (engine/delivery.py) and file it in
        the content store."""
