"""The room in the users' quotas that the temporary area holds: per task, the bytes on their
way in (kept while the task waits between tries; given back when the file is published or the
data discarded). A task's room is one reservation named after it, whichever node holds it;
a node's reservations stop counting when it dies, so a start takes them again from the disk."""

from __future__ import annotations

import os
import threading

from engine.space_access import Allowance, SpaceAccess
from engine.tasks import Task, TaskStore


class Allowances:
    def __init__(self, spaces: SpaceAccess, tasks: TaskStore) -> None:
        self._spaces = spaces
        self.tasks = tasks
        self._allowances: dict[int, Allowance] = {}
        self._allowances_lock = threading.Lock()

    def allowance(self, task: Task) -> Allowance:
        with self._allowances_lock:
            if task.id not in self._allowances:
                self._allowances[task.id] = self._spaces.reserve(task.user, key=f"task-{task.id}")
            return self._allowances[task.id]

    def drop_allowance(self, task: Task) -> Allowance | None:
        with self._allowances_lock:
            return self._allowances.pop(task.id, None)

    def release_room(self, task: Task) -> None:
        """Give back the room the task holds here, leaving its data where it is."""
        allowance = self.drop_allowance(task)
        if allowance is not None:
            allowance.release()

    def hold_only_saved_bytes(self, task: Task) -> None:
        """While a task waits between tries, its room in the quota is what it has saved (even
        over the quota: the bytes are there)."""
        try:
            saved = os.path.getsize(task.temp_path) if task.temp_path else 0
        except FileNotFoundError:
            saved = 0
        self.allowance(task).claim(saved, force=True)

    def hold_room_of_saved_bytes(self, user: str, others_alive: set[str]) -> None:
        """At start, the partial downloads kept on disk take their room in the quota again,
        but for tasks running on another live node, which holds their room."""
        for task in self.tasks.unfinished_for_user(user):
            if task.node not in others_alive:
                self.hold_only_saved_bytes(task)
