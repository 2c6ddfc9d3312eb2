"""`GET /api/v1/events`: the user's live events as a Server-Sent Events stream (SPEC 6).

A device's client names itself (`?device=NAME`): the device is then listed as online, on
every node, and seen; the stream renews both every `events.keepalive` seconds (the shared
`online_until` lapses after two missed renewals and a margin, so a device whose node died
shows offline soon) and clears `online_until` when the device's last stream here closes.

A stream without `Last-Event-ID` (header, or `last_event_id` in the query for clients that
cannot set headers) starts with a `ready` event numbered with the user's newest event: a
client lists what it needs after that and misses nothing. With `Last-Event-ID` it first gets
every stored event after that number, or `resync` (numbered like `ready`) when those are no
longer kept. Idle streams get a comment every `events.keepalive` seconds, so proxies keep
them open and a vanished client is noticed.

Each open stream holds one HTTP worker thread, blocked on a condition variable: the pool
grows up to `server.max_threads`, and `events.max_streams_per_user` keeps one
user from taking them all. `bench/push.py` measures what 200 idle streams cost.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterator
from urllib.parse import parse_qs

from engine.devices import Devices
from engine.events import Event, EventLog
from server.api import Api, ApiError

_RETRY_MS = 2000  # how soon an EventSource reconnects after the stream drops
_ONLINE_MARGIN = 10.0  # seconds a device stays listed as online past two missed renewals (a slow database)


class EventStream:
    """The WSGI app of `/api/v1/events`."""

    def __init__(self, api: Api, log: EventLog, devices: Devices, *, keepalive: float, max_streams_per_user: int) -> None:
        self._api = api
        self._log = log
        self._devices = devices
        self._keepalive = keepalive
        self._max_streams = max_streams_per_user

    def __call__(self, environ, start_response):
        try:
            if environ["REQUEST_METHOD"] != "GET":
                raise ApiError(405, f"{environ['REQUEST_METHOD']} is not allowed on /api/v1/events; use GET")
            user = self._api.authenticate(environ)
            after = _last_event_id(environ)
            device = parse_qs(environ.get("QUERY_STRING", "")).get("device", [None])[0]
            if device is not None and self._devices.unknown(user, [device]):
                raise ApiError(404, f"no device {device[:80]!r}; register it with PUT /api/v1/devices/NAME first")
            if self._log.streams(user) >= self._max_streams:
                raise ApiError(429, f"too many open event streams (limit {self._max_streams}); close one first")
        except ApiError as error:
            body = json.dumps({"error": str(error)}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
            if error.status == 401:
                headers.append(("WWW-Authenticate", 'Basic realm="fetchdrive"'))
            reasons = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                       429: "Too Many Requests"}
            start_response(f"{error.status} {reasons[error.status]}", headers)
            return [body]
        start_response("200 OK", [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Accel-Buffering", "no"),  # nginx: pass events on at once
        ])
        return self._stream(user, after, device)

    def _stream(self, user: str, after: int | None, device: str | None) -> Iterator[bytes]:
        subscription = self._log.subscribe(user, device)
        try:
            renewed = self._online(user, device)
            fresh = after is None
            if fresh:
                # Before the first bytes, which carry the status line: a change the client makes
                # once it has the answer must come after the point `ready` names, not before it.
                after = self._log.latest(user)
            yield f"retry: {_RETRY_MS}\n\n".encode()
            if fresh:
                yield Event("ready", {"last": after}, after).sse()
            while not subscription.closed:
                events = self._log.since(user, after)
                if events is None:
                    after = self._log.latest(user)
                    yield Event("resync", {"last": after}, after).sse()
                    continue
                for event in events:
                    yield event.sse()
                if events:
                    after = events[-1].id or after
                    continue  # there may be more than one page
                stored, flashes = subscription.wait(self._keepalive)
                for flash in flashes:
                    yield flash.sse()
                if not (stored or flashes or subscription.closed):
                    yield b": keep-alive\n\n"
                if time.monotonic() - renewed >= self._keepalive:
                    renewed = self._online(user, device)
        finally:
            self._log.unsubscribe(subscription)
            if device is not None and device not in self._log.online_devices(user):
                self._devices.offline(user, device)

    def _online(self, user: str, device: str | None) -> float:
        """Mark the stream's device seen and online on every node; when that was (monotonic)."""
        if device is not None:
            self._devices.seen(user, device, online_until=time.time() + 2 * self._keepalive + _ONLINE_MARGIN)
        return time.monotonic()


def _last_event_id(environ: dict) -> int | None:
    raw = environ.get("HTTP_LAST_EVENT_ID")
    if raw is None:
        raw = parse_qs(environ.get("QUERY_STRING", "")).get("last_event_id", [None])[0]
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise ApiError(400, f"Last-Event-ID {raw[:40]!r} is not an event number from this stream")
    return int(raw)
