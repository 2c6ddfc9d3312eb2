"""The `devices` and `deliveries` tables behind `DeviceRepository`. `engine.devices` holds
the rules (names, who may be sent what, the events) and `SqliteDevices` the SQL, for
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

from engine.database import Database


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


@runtime_checkable
class DeviceRepository(Protocol):
    def register(self, user: str, name: str) -> bool:
        """Add the device (or mark it seen); True if it is new."""
    def seen(self, user: str, name: str) -> None: ...
    def remove(self, user: str, name: str) -> bool:
        """Remove the device and its deliveries; False if there was none."""
    def forget_user(self, user: str) -> None: ...
    def of_user(self, user: str) -> list[Device]:
        """By name, each with its count of undelivered files."""
    def queue(self, user: str, names: Iterable[str], path: str) -> list[Delivery]:
        """One new delivery of `path` per device, all or none."""
    def pending(self, user: str, name: str) -> list[Delivery]:
        """The device's undelivered files, oldest first."""
    def acknowledge(self, user: str, name: str, delivery_id: int) -> bool:
        """Mark the delivery done; False if it is not the device's or was done already."""


class SqliteDevices:
    """The `DeviceRepository` (on either database)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def register(self, user: str, name: str) -> bool:
        now = time.time()
        with self._database.write() as db:
            # Insert first: of two nodes registering one new device at once, one inserts.
            if db.execute('insert into devices ("user", name, created_at, last_seen) values (?, ?, ?, ?) '
                          'on conflict ("user", name) do nothing', [user, name, now, now]).rowcount:
                return True
            db.execute('update devices set last_seen = ? where "user" = ? and name = ?', [now, user, name])
        return False

    def seen(self, user: str, name: str) -> None:
        with self._database.write() as db:
            db.execute('update devices set last_seen = ? where "user" = ? and name = ?', [time.time(), user, name])

    def remove(self, user: str, name: str) -> bool:
        with self._database.write() as db:
            db.execute('delete from deliveries where "user" = ? and device = ?', [user, name])
            return db.execute('delete from devices where "user" = ? and name = ?', [user, name]).rowcount == 1

    def forget_user(self, user: str) -> None:
        with self._database.write() as db:
            db.execute('delete from deliveries where "user" = ?', [user])
            db.execute('delete from devices where "user" = ?', [user])

    def of_user(self, user: str) -> list[Device]:
        rows = self._database.read_committed(
            'select name, created_at, last_seen, (select count(*) from deliveries d where d."user" = devices."user" '
            'and d.device = devices.name and d.delivered_at is null) from devices where "user" = ? order by name', [user])
        return [Device(*row) for row in rows]

    def queue(self, user: str, names: Iterable[str], path: str) -> list[Delivery]:
        now = time.time()
        with self._database.write() as db:
            return [
                Delivery(db.execute('insert into deliveries ("user", device, path, created_at) values (?, ?, ?, ?) '
                                    "returning id", [user, name, path, now]).fetchone()[0], name, path, now)
                for name in names
            ]

    def pending(self, user: str, name: str) -> list[Delivery]:
        rows = self._database.read_committed(
            'select id, device, path, created_at from deliveries where "user" = ? and device = ? '
            "and delivered_at is null order by id", [user, name])
        return [Delivery(*row) for row in rows]

    def acknowledge(self, user: str, name: str, delivery_id: int) -> bool:
        with self._database.write() as db:
            return db.execute(
                'update deliveries set delivered_at = ? where id = ? and "user" = ? and device = ? and delivered_at is null',
                [time.time(), delivery_id, user, name]).rowcount == 1
