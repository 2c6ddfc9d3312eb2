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

import re
from typing import Any

from engine.devices import Delivery
from server.api import ApiError, Request, _text_field
from server.device_service import DeviceService, valid_name

_DEVICE_PATH = re.compile(r"^/api/v1/devices/([^/]+)(?:/(send|deliveries|ack))?$")


def _delivery(delivery: Delivery) -> dict[str, Any]:
    return {"id": delivery.id, "device": delivery.device, "path": delivery.path, "created_at": delivery.created_at}


class DevicesApi:
    """The device routes: parse, call server/device_service.py, render."""

    def __init__(self, devices: DeviceService) -> None:
        self._devices = devices

    def __call__(self, request: Request) -> tuple[int, Any]:
        if request.path == "/api/v1/devices":
            if request.method != "GET":
                raise ApiError(405, f"{request.method} is not allowed on {request.path}")
            return 200, [{"name": d.name, "created_at": d.created_at, "last_seen": d.last_seen, "pending": d.pending,
                          "online": online} for d, online in self._devices.listing(request.user)]
        match = _DEVICE_PATH.match(request.path)
        if not match:
            raise ApiError(404, f"no API route {request.path}; see /api/v1/openapi.json")
        name, action = match.group(1), match.group(2)
        valid_name(name)  # a malformed name is a 400 whatever the method or body
        handlers = {
            ("PUT", None): self._register, ("DELETE", None): self._remove, ("POST", "send"): self._send,
            ("GET", "deliveries"): self._deliveries, ("POST", "ack"): self._ack,
        }
        handler = handlers.get((request.method, action))
        if handler is None:
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        if handler not in (self._send, self._register):
            self._devices.require_known(request.user, name)  # before the body: an unknown device is a 404
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
        return 201, _delivery(self._devices.send(request.user, name, path))

    def _deliveries(self, request: Request, name: str) -> tuple[int, Any]:
        return 200, [{**_delivery(p.delivery), "size": p.size, "etag": p.etag}
                     for p in self._devices.pending(request.user, name)]

    def _ack(self, request: Request, name: str) -> tuple[int, Any]:
        delivery_id = request.json().get("delivery")
        if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
            raise ApiError(400, 'give the delivery as {"delivery": ID}, ID a number from .../deliveries')
        self._devices.acknowledge(request.user, name, delivery_id)
        return 200, {"delivery": delivery_id, "delivered": True}
