"""The devices API under /api/v1/devices (SPEC 6): register, list, send files, deliver.

    GET    /api/v1/devices                   the user's devices, when each was last seen, which are online
    PUT    /api/v1/devices/NAME              register NAME (or mark it seen)
    DELETE /api/v1/devices/NAME              forget NAME and its undelivered files
    POST   /api/v1/devices/NAME/send         {"path": "downloads/x.iso"}: queue a file for NAME
    GET    /api/v1/devices/NAME/deliveries   what NAME still has to fetch (marks it seen)
    POST   /api/v1/devices/NAME/ack          {"delivery": ID}: NAME has the file

Device names belong to their user: another user's device is as unknown as one never made.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

from engine.devices import Delivery, DeviceError, Devices, check_name
from provider.resources import file_etag
from server.api import ApiError, Request, _text_field

_DEVICE_PATH = re.compile(r"^/api/v1/devices/([^/]+)(?:/(send|deliveries|ack))?$")


def _delivery(delivery: Delivery) -> dict[str, Any]:
    return {"id": delivery.id, "device": delivery.device, "path": delivery.path, "created_at": delivery.created_at}


class DevicesApi:
    def __init__(self, devices: Devices, space_root: Callable[[str], Path], online: Callable[[str], set[str]]) -> None:
        self._devices = devices
        self._space_root = space_root
        self._online = online

    def __call__(self, request: Request) -> tuple[int, Any]:
        if request.path == "/api/v1/devices":
            if request.method != "GET":
                raise ApiError(405, f"{request.method} is not allowed on {request.path}")
            online = self._online(request.user)
            return 200, [{"name": d.name, "created_at": d.created_at, "last_seen": d.last_seen, "pending": d.pending,
                          "online": d.name in online} for d in self._devices.of_user(request.user)]
        match = _DEVICE_PATH.match(request.path)
        if not match:
            raise ApiError(404, f"no API route {request.path}; see /api/v1/openapi.json")
        name, action = match.group(1), match.group(2)
        try:
            check_name(name)
        except DeviceError as error:
            raise ApiError(400, str(error)) from None
        handlers = {
            ("PUT", None): self._register, ("DELETE", None): self._remove, ("POST", "send"): self._send,
            ("GET", "deliveries"): self._deliveries, ("POST", "ack"): self._ack,
        }
        handler = handlers.get((request.method, action))
        if handler is None:
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        if action != "send" and (request.method, action) != ("PUT", None) and self._devices.unknown(request.user, [name]):
            raise ApiError(404, f"no device {name!r}; register it with `fetchdrive sync --device {name} ... LOCAL_DIR`")
        return handler(request, name)

    def _register(self, request: Request, name: str) -> tuple[int, Any]:
        created = self._devices.register(request.user, name)
        return (201 if created else 200), {"name": name}

    def _remove(self, request: Request, name: str) -> tuple[int, Any]:
        self._devices.remove(request.user, name)
        return 200, {"name": name}

    def _send(self, request: Request, name: str) -> tuple[int, Any]:
        body = request.json()
        unknown = body.keys() - {"path"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        path = _text_field(body, "path")
        if path is None:
            raise ApiError(400, 'give the file to send as {"path": "downloads/name.ext"}')
        path = self._existing_file(request.user, path)
        try:
            (delivery,) = self._devices.send(request.user, [name], path)
        except DeviceError as error:
            raise ApiError(404, str(error)) from None
        return 201, _delivery(delivery)

    def _existing_file(self, user: str, path: str) -> str:
        """`path` normalised ('a/b.txt'), if it names a file of the user's space."""
        parts = [part for part in path.replace("\\", "/").split("/") if part]
        if not parts or any(part in (".", "..") or "\0" in part for part in parts):
            raise ApiError(400, f"path {path!r} must be a file's path in your drive, without '..'")
        root = self._space_root(user)
        full = root.joinpath(*parts)
        real = os.path.realpath(full)
        if not real.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(real):
            raise ApiError(404, f"no file {'/'.join(parts)!r} in your drive")
        return "/".join(parts)

    def _deliveries(self, request: Request, name: str) -> tuple[int, Any]:
        """Pending deliveries with the file's size and ETag as they are now (both null when the
        file is gone), so the device can fetch each with a single GET."""
        self._devices.seen(request.user, name)
        root = self._space_root(request.user)
        answer = []
        for delivery in self._devices.pending(request.user, name):
            try:
                info = os.stat(root / delivery.path)
                current = {"size": info.st_size, "etag": file_etag(info)}
            except OSError:
                current = {"size": None, "etag": None}
            answer.append({**_delivery(delivery), **current})
        return 200, answer

    def _ack(self, request: Request, name: str) -> tuple[int, Any]:
        delivery_id = request.json().get("delivery")
        if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
            raise ApiError(400, 'give the delivery as {"delivery": ID}, ID a number from .../deliveries')
        if not self._devices.acknowledge(request.user, name, delivery_id):
            raise ApiError(404, f"no undelivered delivery {delivery_id} for device {name!r}")
        return 200, {"delivery": delivery_id, "delivered": True}
