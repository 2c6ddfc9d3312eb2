"""Devices: the machines a user names to receive finished files (SPEC 6, claims 2 and 5).

A device is registered by `fetchdrive sync --device NAME` (PUT /api/v1/devices/NAME), which
also marks it seen. Sending a file to devices, by a trigger's `send-to=` line, the API or the
web page, queues one delivery per device in the `deliveries` table and publishes a
`device.send` event; the device fetches the file into its folder and acknowledges it, which
marks the delivery done. A device that is offline finds its queue when it next connects.
Names are per user: two users' devices never meet.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable

from engine.database import Database
from engine.events import EventLog
from engine.tasks import Task

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DeviceError(ValueError):
    """A device name that is malformed or not registered; str(e) says which and what to do."""


@dataclass(frozen=True)
class Device:
    name: str
    created_at: float
    last_seen: float | None
    pending: int


@dataclass(frozen=True)
class Delivery:
    id: int
    device: str
    path: str
    created_at: float


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise DeviceError(f"device name {name[:80]!r} must be 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def parse_names(text: str) -> tuple[str, ...]:
    """`laptop, phone` -> ("laptop", "phone"); DeviceError on a malformed or empty list."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise DeviceError("send-to= names no device; write send-to=NAME[,NAME...]")
    for name in names:
        check_name(name)
    return names


class Devices:
    """All reads and writes of the `devices` and `deliveries` tables."""

    def __init__(self, database: Database, events: EventLog) -> None:
        self._database = database
        self._events = events

    def register(self, user: str, name: str) -> bool:
        """Add the device (or mark it seen); True if it is new."""
        check_name(name)
        now = time.time()
        with self._database.write() as db:
            cursor = db.execute("update devices set last_seen = ? where user = ? and name = ?", [now, user, name])
            if cursor.rowcount:
                return False
            db.execute("insert into devices (user, name, created_at, last_seen) values (?, ?, ?, ?)", [user, name, now, now])
        return True

    def seen(self, user: str, name: str) -> None:
        with self._database.write() as db:
            db.execute("update devices set last_seen = ? where user = ? and name = ?", [time.time(), user, name])

    def remove(self, user: str, name: str) -> bool:
        with self._database.write() as db:
            db.execute("delete from deliveries where user = ? and device = ?", [user, name])
            return db.execute("delete from devices where user = ? and name = ?", [user, name]).rowcount == 1

    def forget_user(self, user: str) -> None:
        with self._database.write() as db:
            db.execute("delete from deliveries where user = ?", [user])
            db.execute("delete from devices where user = ?", [user])

    def of_user(self, user: str) -> list[Device]:
        rows = self._database.read_committed(
            "select name, created_at, last_seen, (select count(*) from deliveries d where d.user = devices.user "
            "and d.device = devices.name and d.delivered_at is null) from devices where user = ? order by name", [user])
        return [Device(*row) for row in rows]

    def unknown(self, user: str, names: Iterable[str]) -> list[str]:
        known = {device.name for device in self.of_user(user)}
        return [name for name in names if name not in known]

    def require(self, user: str, names: Iterable[str]) -> None:
        missing = self.unknown(user, names)
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            raise DeviceError(f"no device {listed}; a device is registered when it runs "
                              "`fetchdrive sync --device NAME ... LOCAL_DIR`")

    def send(self, user: str, names: Iterable[str], path: str) -> list[Delivery]:
        """Queue `path` (a file in the user's space) for each device; DeviceError if one is unknown."""
        names = list(names)
        self.require(user, names)
        now = time.time()
        queued = []
        with self._database.write() as db:
            for name in names:
                delivery_id = db["deliveries"].insert(
                    {"user": user, "device": name, "path": path, "created_at": now}).last_pk
                queued.append(Delivery(delivery_id, name, path, now))
        for delivery in queued:
            self._events.publish(user, "device.send", {"device": delivery.device, "delivery": delivery.id,
                                                       "path": delivery.path})
        return queued

    def send_finished(self, task: Task) -> None:
        """A download with a `send-to=` line is done: queue it for those of its devices that
        still exist (they were checked when the trigger was read)."""
        if task.send_to and task.path:
            names = task.send_to.split(",")
            missing = set(self.unknown(task.user, names))
            self.send(task.user, [name for name in names if name not in missing], task.path)

    def pending(self, user: str, name: str) -> list[Delivery]:
        rows = self._database.read_committed(
            "select id, device, path, created_at from deliveries where user = ? and device = ? "
            "and delivered_at is null order by id", [user, name])
        return [Delivery(*row) for row in rows]

    def acknowledge(self, user: str, name: str, delivery_id: int) -> bool:
        with self._database.write() as db:
            return db.execute(
                "update deliveries set delivered_at = ? where id = ? and user = ? and device = ? and delivered_at is null",
                [time.time(), delivery_id, user, name]).rowcount == 1
