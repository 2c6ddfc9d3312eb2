"""In a running server: the downloads of a user removed by another process stop at once.

`fetchdrive user remove` runs as its own process (server/user_service.py). It deletes the
account, which changes the credential generation that every process on the data folder maps
into memory; this watcher reads that word a few times a second (a memory access) and, when
it changed, cancels the unfinished tasks of every user who no longer has an account. A
cancelled download's worker stops and frees its temporary data; `user remove` waits for that
before it deletes the rest.
"""

from __future__ import annotations

import logging
import threading

from engine.engine import DownloadEngine
from provider.accounts import Accounts

_log = logging.getLogger(__name__)
_POLL_SECONDS = 0.2


class RemovedUsers:
    """A thread that cancels the downloads of users whose account went away."""

    def __init__(self, accounts: Accounts, engine: DownloadEngine) -> None:
        self._accounts = accounts
        self._engine = engine
        self._seen = accounts.generation()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="removed-users", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stopping.wait(_POLL_SECONDS):
            if self._accounts.generation() != self._seen:
                try:
                    self.cancel_orphaned_downloads()
                except Exception:  # the next change tries again; the server goes on
                    _log.exception("could not cancel the downloads of removed users")

    def cancel_orphaned_downloads(self) -> None:
        """Cancel every unfinished task whose user has no account."""
        self._seen = self._accounts.generation()  # read first: a removal from now on is seen again
        users = {user.name for user in self._accounts.list()}
        for user in self._engine.tasks.users_with_unfinished() - users:
            cancelled = [task.id for task in self._engine.tasks.unfinished_for_user(user) if self._engine.cancel(task.id)]
            if cancelled:
                _log.info("user %s was removed: cancelled %d download(s)", user, len(cancelled))
