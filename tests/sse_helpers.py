"""A test client for `/api/v1/events`: reads a real stream on a thread and keeps what it heard."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

import requests

from server.live_sync import parse_sse
from tests.downloads_helpers import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Heard:
    id: int | None
    kind: str
    data: dict[str, Any]


class Listener:
    """One open event stream, read on a thread until `close()`."""

    def __init__(self, session: requests.Session, base_url: str, last_id: int | None = None) -> None:
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        self.response = session.get(base_url + "/api/v1/events", headers=headers, stream=True, timeout=(10, 30))
        assert self.response.status_code == 200, self.response.text
        self.heard: list[Heard] = []
        self.keepalives = 0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _lines(self):
        for line in self.response.iter_lines(decode_unicode=True):
            if self._closed.is_set():
                return
            if line.startswith(": keep-alive"):
                self.keepalives += 1
            yield line

    def _read(self) -> None:
        try:
            for event_id, kind, data in parse_sse(self._lines()):
                with self._lock:
                    self.heard.append(Heard(int(event_id) if event_id is not None else None, kind, json.loads(data)))
        except requests.RequestException:
            pass

    def close(self) -> None:
        self._closed.set()
        # Shutting the socket down ends the reading thread's wait at once, whatever the
        # server's keep-alive interval. No connection: the stream has ended already.
        connection = self.response.raw.connection
        if connection is not None and connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=30)
        self.response.close()

    def events(self, kind: str | None = None) -> list[Heard]:
        with self._lock:
            return [event for event in self.heard if kind is None or event.kind == kind]

    def last_id(self) -> int:
        return [event.id for event in self.events() if event.id is not None][-1]

    def wait_for(self, kind: str, message: str = "", timeout: float = 30, **data: Any) -> Heard:
        def found() -> Heard | None:
            for event in self.events(kind):
                if all(event.data.get(key) == value for key, value in data.items()):
                    return event
            return None

        return wait_for(found, timeout=timeout, message=message or f"event {kind} {data}")
