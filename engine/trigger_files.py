"""The life of a trigger file in a user's `downloads/`: read and submitted when complete
(`trigger_ready`), its tasks cancelled when it goes (`path_removed`), its `.error.txt` written
and removed, and the trigger itself removed a while after all its downloads finished (the
waiting is engine/trigger_linger.py). At start, triggers that arrived just before a crash are
picked up again."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from engine.devices import Devices
from engine.events import EventLog
from engine.naming import ERROR_SUFFIX
from engine.space_access import SpaceAccess
from engine.kinds import TaskState
from engine.tasks import Task, TaskStore
from engine.trigger_linger import LingeringTriggers
from engine.triggers import MAX_TRIGGER_BYTES, Trigger, TriggerError, is_trigger_name, parse_trigger, source_kind, trigger_size_limit


class TriggerFiles:
    """`add_task(user, **fields)` makes a task (DownloadEngine._add_task); `cancel(task)` stops one."""

    def __init__(self, tasks: TaskStore, events: EventLog, devices: Devices, spaces: SpaceAccess, temp_root: Path,
                 *, linger: float, add_task: Callable[..., Task], cancel: Callable[[Task], bool]) -> None:
        self.tasks = tasks
        self.events = events
        self.devices = devices
        self._spaces = spaces
        self.temp_root = temp_root
        self._add_task = add_task
        self._cancel = cancel
        self._trigger_lock = threading.RLock()
        self._lingering = LingeringTriggers(linger, self._remove_finished_trigger)

    def start(self) -> None:
        self._lingering.start()

    def stop(self) -> None:
        self._lingering.stop()

    def trigger_ready(self, user: str, rel_path: str) -> None:
        """A complete trigger file is at `rel_path`: create, keep or cancel its tasks."""
        with self._trigger_lock:
            trigger_file = self._spaces.root(user) / rel_path
            try:
                with open(trigger_file, "rb") as handle:
                    data = handle.read(trigger_size_limit(rel_path) + 1)
            except FileNotFoundError:
                return
            name = PurePosixPath(rel_path).name
            try:
                trigger = parse_trigger(name, data)
            except TriggerError as error:
                for task in self.tasks.for_trigger(user, rel_path):
                    self._cancel(task)
                self.write_error_file(user, rel_path, f"{name} cannot be used: {error}")
                return
            self._submit(user, rel_path, trigger)

    def _submit(self, user: str, rel_path: str, trigger: Trigger) -> None:
        unfinished = [t for t in self.tasks.for_trigger(user, rel_path) if t.unfinished]
        wanted = set(trigger.sources)
        for task in unfinished:
            if task.source not in wanted:
                self._cancel(task)
        kept = {task.source: task.id for task in unfinished if task.source in wanted}
        unknown_devices = self.devices.unknown(user, trigger.send_to)
        if unknown_devices:
            self.write_error_file(user, rel_path, f"{PurePosixPath(rel_path).name} cannot be used: no device "
                                  f"{', '.join(unknown_devices)}; run `fetchdrive sync --device NAME` there first")
            return
        self.remove_error_file(user, rel_path)
        path = PurePosixPath(rel_path)
        # SPEC 4.4: the same trigger again (rclone uploads it again once it is gone) starts
        # nothing new while the file its earlier download made is still in the folder.
        delivered = {source for source, task in self._latest_in_folder(user, str(path.parent), trigger).items()
                     if task.state == TaskState.DONE and self._still_there(task)}
        if delivered >= wanted:
            self._lingering.schedule(user, rel_path)
        for source, secrets in zip(trigger.sources, trigger.secrets):
            if source in kept:  # a login fixed in the trigger counts from the next try
                self.tasks.update(kept[source], origin_headers=secrets)
            elif source not in delivered:
                self._add_task(
                    user,
                    source=source,
                    kind=source_kind(source, trigger.is_content_id),
                    folder=str(path.parent),
                    trigger_path=rel_path,
                    sha256_expected=trigger.sha256,
                    filename_hint=trigger.filename,
                    stem=path.stem,
                    metainfo=trigger.metainfo,
                    send_to=",".join(trigger.send_to) or None,
                    secrets=secrets,
                )

    def _latest_in_folder(self, user: str, folder: str, trigger: Trigger) -> dict[str, Task]:
        """The newest task for each of the trigger's sources in `folder`, made with the same
        options (checksum, file name), by this trigger or any other."""
        latest: dict[str, Task] = {}
        for task in self.tasks.in_folder_for_sources(user, folder, trigger.sources):
            if task.sha256_expected == trigger.sha256 and task.filename_hint == trigger.filename:
                latest[task.source] = task
        return latest

    def _still_there(self, task: Task) -> bool:
        return bool(task.path) and (self._spaces.root(task.user) / str(task.path)).is_file()

    def path_removed(self, user: str, rel_path: str) -> None:
        """A trigger (or a folder holding triggers) was deleted or moved away: cancel."""
        for task in self.tasks.under_trigger_prefix(user, rel_path.rstrip("/")):
            self._cancel(task)

    def pick_up_waiting_triggers(self, user: str) -> None:
        """Triggers that arrived just before a crash may have no task yet."""
        downloads = self._spaces.root(user) / "downloads"
        for folder, _dirs, files in os.walk(downloads):
            for file_name in files:
                if not is_trigger_name(file_name) or file_name + ERROR_SUFFIX in files:
                    continue
                rel = os.path.relpath(os.path.join(folder, file_name), self._spaces.root(user)).replace(os.sep, "/")
                if self.tasks.for_trigger(user, rel):
                    self._lingering.schedule(user, rel)  # goes if its downloads finished meanwhile
                elif os.path.getsize(os.path.join(folder, file_name)) and not self.tasks.delivered_to(user, rel):
                    self.trigger_ready(user, rel)

    def trigger_finished(self, task: Task) -> None:
        """A download finished: its trigger goes after the linger time, if all its others did."""
        if task.trigger_path:
            self._lingering.schedule(task.user, task.trigger_path)

    def _remove_finished_trigger(self, user: str, rel_path: str) -> None:
        """Remove the trigger at `rel_path` if every download it now asks for is done (it may
        have been uploaded again with other links, or replaced by a broken file, meanwhile)."""
        trigger_file = self._spaces.root(user) / rel_path
        apple_double = trigger_file.with_name("._" + trigger_file.name)  # Finder's, beside the trigger
        with self._trigger_lock, self._spaces.locked(trigger_file, apple_double, self._error_file(user, rel_path)):
            try:
                with open(trigger_file, "rb") as handle:
                    data = handle.read(MAX_TRIGGER_BYTES + 1)
                trigger = parse_trigger(trigger_file.name, data)
            except (OSError, TriggerError):
                return
            latest = self._latest_in_folder(user, str(PurePosixPath(rel_path).parent), trigger)
            if not all(source in latest and latest[source].state == TaskState.DONE for source in trigger.sources):
                return
            for path in (trigger_file, apple_double):
                if self._spaces.remove(user, path):
                    self.events.publish(user, "file.deleted", {"path": str(path.relative_to(self._spaces.root(user)))})
            self.remove_error_file(user, rel_path)

    def report_trigger_errors(self, task: Task) -> None:
        latest: dict[str, Task] = {}
        for sibling in self.tasks.for_trigger(task.user, task.trigger_path):
            latest[sibling.source] = sibling
        failed = [t for t in latest.values() if t.state == TaskState.FAILED]
        name = PurePosixPath(task.trigger_path).name
        lines = [f"{t.source}: {t.error}" for t in failed]
        what = lines[0] if len(lines) == 1 else f"{len(lines)} downloads failed: " + "; ".join(lines)
        self.write_error_file(
            task.user, task.trigger_path,
            f"fetchdrive could not download from {name}. {what}. "
            f"To try again, upload {name} again; to give up, delete it.",
        )

    # --- files beside the trigger -----------------------------------------

    def _error_file(self, user: str, rel_path: str) -> Path:
        return self._spaces.root(user) / (rel_path + ERROR_SUFFIX)

    def write_error_file(self, user: str, rel_path: str, text: str) -> None:
        target = self._error_file(user, rel_path)
        try:
            replaced = self._spaces.write_file(user, target, (text.rstrip() + "\n").encode())
        except (FileNotFoundError, NotADirectoryError):
            return  # a client moved or deleted the trigger's folder meanwhile: the note has no place
        self.events.publish(user, "file.changed" if replaced else "file.created", {"path": rel_path + ERROR_SUFFIX})

    def remove_error_file(self, user: str, rel_path: str) -> None:
        if self._spaces.remove(user, self._error_file(user, rel_path)):
            self.events.publish(user, "file.deleted", {"path": rel_path + ERROR_SUFFIX})
