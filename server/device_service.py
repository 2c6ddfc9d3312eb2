"""A user's devices as the API asks for them (SPEC 6): register, list, forget, send a file,
what a device still has to fetch, and its acknowledgements.

Device names belong to their user: another user's device is as unknown as one never made.
A file sent must be a file of the sender's own space, reached without leaving it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.devices import Delivery, Device, DeviceError, Devices, check_name
from provider.resources import file_etag
from server.service_errors import Invalid, NotFound


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery with its file's size and ETag as they are now (None when the file is gone),
    so the device can fetch it with a single GET."""

    delivery: Delivery
    size: int | None
    etag: str | None


class DeviceService:
    def __init__(self, devices: Devices, space_root: Callable[[str], Path], online: Callable[[str], set[str]]) -> None:
        self._devices = devices
        self._space_root = space_root
        self._online = online

    def listing(self, user: str) -> list[tuple[Device, bool]]:
        """The user's devices, each with whether it follows the event stream now."""
        online = self._online(user)
        return [(device, device.name in online) for device in self._devices.of_user(user)]

    def register(self, user: str, name: str) -> bool:
        """Register `name` (or mark it seen); True if it is new."""
        return self._devices.register(user, valid_name(name))

    def remove(self, user: str, name: str) -> None:
        self._devices.remove(user, self.require_known(user, name))

    def send(self, user: str, name: str, path: str) -> Delivery:
        path = self._existing_file(user, path)
        try:
            (delivery,) = self._devices.send(user, [valid_name(name)], path)
        except DeviceError as error:
            raise NotFound(str(error)) from None
        return delivery

    def pending(self, user: str, name: str) -> list[PendingDelivery]:
        """What `name` still has to fetch; asking marks it seen."""
        self._devices.seen(user, self.require_known(user, name))
        root = self._space_root(user)
        answer = []
        for delivery in self._devices.pending(user, name):
            try:
                info = os.stat(root / delivery.path)
                answer.append(PendingDelivery(delivery, info.st_size, file_etag(info)))
            except OSError:
                answer.append(PendingDelivery(delivery, None, None))
        return answer

    def acknowledge(self, user: str, name: str, delivery_id: int) -> None:
        if not self._devices.acknowledge(user, self.require_known(user, name), delivery_id):
            raise NotFound(f"no undelivered delivery {delivery_id} for device {name!r}")

    def require_known(self, user: str, name: str) -> str:
        """`name` if the user has that device, else NotFound (another user's is as unknown)."""
        if self._devices.unknown(user, [valid_name(name)]):
            raise NotFound(f"no device {name!r}; register it with `fetchdrive sync --device {name} ... LOCAL_DIR`")
        return name

    def _existing_file(self, user: str, path: str) -> str:
        """`path` normalised ('a/b.txt'), if it names a file of the user's space."""
        parts = [part for part in path.replace("\\", "/").split("/") if part]
        if not parts or any(part in (".", "..") or "\0" in part for part in parts):
            raise Invalid(f"path {path!r} must be a file's path in your drive, without '..'")
        root = self._space_root(user)
        real = os.path.realpath(root.joinpath(*parts))
        if not real.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(real):
            raise NotFound(f"no file {'/'.join(parts)!r} in your drive")
        return "/".join(parts)


def valid_name(name: str) -> str:
    """`name` if it is a well-formed device name, else Invalid."""
    try:
        return check_name(name)
    except DeviceError as error:
        raise Invalid(str(error)) from None
