"""Accounts as `fetchdrive user ...` manages them: add, list, change a password or a quota, remove.

Removing a user may happen while a server runs that user's downloads in another process. The
account goes first, which changes the credential generation every process watches; the
running server then cancels the user's downloads (server/removed_users.py) and its workers
let go of them. Only when none of the user's tasks is running any more do their rows,
temporary data, shares, events, devices, WebDAV locks and dead properties and files go, so
nothing a worker was about to write can bring any of them back.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from engine.devices_table import SqliteDevices
from engine.events_table import SqliteEvents
from engine.kinds import TaskState
from engine.tasks import Task, TaskStore
from provider.accounts import User
from provider.dav_storage import SqliteLockStorage, SqlitePropertyManager
from provider.resources import user_ref_url
from server.app import DAV_PREFIX, Storage

# How long `user remove` waits for a running server to let go of the user's downloads. A
# server that was killed never will; its interrupted tasks are removed after this time.
HANDOVER_SECONDS = 10.0
_POLL_SECONDS = 0.1


class UserService:
    """The account commands of the CLI, on one data folder."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._tasks = TaskStore(storage.database)

    def list(self) -> list[User]:
        return self._storage.accounts.list()

    def check_new_name(self, name: str) -> None:
        """AccountError if `name` is invalid or taken (ask for no password then)."""
        self._storage.accounts.check_new_name(name)

    def add(self, name: str, password: str, quota: int | None) -> User:
        user = self._storage.accounts.add(name, password, quota)
        self._storage.space(name).joinpath("downloads").mkdir(parents=True, exist_ok=True)
        return user

    def require(self, name: str) -> User:
        """The user named `name`, else AccountError."""
        return self._storage.accounts.require(name)

    def set_password(self, name: str, password: str) -> None:
        self._storage.accounts.set_password(name, password)

    def set_quota(self, name: str, quota: int | None) -> None:
        self._storage.accounts.set_quota(name, quota)

    def remove(self, name: str, *, keep_files: bool) -> Path:
        """Remove the account and everything the server keeps for it; the space's files too
        unless `keep_files`. Returns the space's folder."""
        self._storage.accounts.remove(name)
        for task in self._stop_downloads(name):
            _discard_temporary_data(task)
        self._tasks.delete_user(name)
        self._storage.shares.remove_owner(name)
        # A later user of the same name inherits none of it.
        SqliteEvents(self._storage.database).forget_user(name)
        SqliteDevices(self._storage.database).forget_user(name)
        self._forget_dav_state(name)
        space = self._storage.space(name)
        if not keep_files:
            shutil.rmtree(space, ignore_errors=True)
        return space

    def _forget_dav_state(self, name: str) -> None:
        """The WebDAV locks and dead properties of the user's space, which live in the
        database: a later user of the same name finds none of them on their own files."""
        space = user_ref_url(DAV_PREFIX, name, "/")
        SqliteLockStorage(self._storage.database, self._storage.dav_locks).remove_locks_under(space)
        SqlitePropertyManager(self._storage.database, self._storage.quota, lambda _ref: name, None) \
            .remove_properties_under(space)

    def _stop_downloads(self, name: str) -> list[Task]:
        """Cancel the user's waiting tasks here; wait for a running server to cancel those its
        workers run (a worker's own cancel flag is the only thing that stops it at once).
        Returns the tasks that were unfinished: the ones that may hold temporary data."""
        deadline = time.monotonic() + HANDOVER_SECONDS
        unfinished: dict[int, Task] = {}
        while True:
            running = False
            for task in self._tasks.unfinished_for_user(name):
                unfinished[task.id] = task
                if task.state in (TaskState.QUEUED, TaskState.WAITING):
                    # A server may claim it meanwhile: then it runs, and is waited for below.
                    running |= not self._tasks.set_state_if(task.id, (TaskState.QUEUED, TaskState.WAITING), state=TaskState.CANCELLED,
                                                            finished_at=time.time())
                else:
                    running |= task.state in (TaskState.DOWNLOADING, TaskState.VERIFYING)
            if not running or time.monotonic() > deadline:
                return list(unfinished.values())
            time.sleep(_POLL_SECONDS)


def _discard_temporary_data(task: Task) -> None:
    """The task's files in the temporary area: `<id>.part`, a torrent's `<id>.bt` folder and
    `<id>.torrent`, a multi-file delivery's `<id>.deliver`."""
    if not task.temp_path:
        return
    for item in Path(task.temp_path).parent.glob(f"{task.id}.*"):
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
