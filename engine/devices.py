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
from typing import Iterable

from engine.database import Database
from engine.devices_table import Delivery, Device, DeviceRepository, SqliteDevices
from engine.events import EventLog
from engine.tasks import Task

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DeviceError(ValueError):
    """A device name that is malformed or not registered; str(e) says which and what to do."""


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
    """Devices and deliveries: the rules, over the `devices` and `deliveries` tables."""

    def __init__(self, database: Database, events: EventLog) -> None:
        self._devices: DeviceRepository = SqliteDevices(database)
        self._events = events

    def register(self, user: str, name: str) -> bool:
        """Add the device (or mark it seen); True if it is new."""
        return self._devices.register(user, check_name(name))

    def seen(self, user: str, name: str, online_until: float | None = None) -> None:
        """Mark the device seen; `online_until`: its event stream is open until then unless renewed."""
        self._devices.seen(user, name, online_until)

    def offline(self, user: str, name: str) -> None:
        """The device's last event stream on this node closed."""
        self._devices.offline(user, name)

    def online(self, user: str) -> set[str]:
        """The user's devices that follow an event stream now, on this node or another."""
        return self._events.online_devices(user) | self._devices.online(user)

    def remove(self, user: str, name: str) -> bool:
        return self._devices.remove(user, name)

    def forget_user(self, user: str) -> None:
        self._devices.forget_user(user)

    def of_user(self, user: str) -> list[Device]:
        return self._devices.of_user(user)

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
        queued = self._devices.queue(user, names, path)
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
        return self._devices.pending(user, name)

    def acknowledge(self, user: str, name: str, delivery_id: int) -> bool:
        return self._devices.acknowledge(user, name, delivery_id)
