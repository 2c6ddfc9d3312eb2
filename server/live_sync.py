"""`fetchdrive sync --watch` and `--device`: a local folder that follows the drive as it changes.

`EventFeed` follows `/api/v1/events` on a thread of its own and reconnects after a network
loss or a server restart, with growing back-off (0.5 s up to 30 s), resuming with
`Last-Event-ID`, so nothing that happened meanwhile is missed; when the server says `ready`
(a fresh stream) or `resync` (too far behind), the whole folder is compared again. The watch
interval is only the fallback: a sync also runs when no event came for that long.

A device (`--device NAME`) registers itself, then fetches what it was sent (its delivery
queue) into LOCAL_DIR under each file's own name, at start and on each `device.send` event
for it, and acknowledges each file once it is complete on disk. A file of that name already
in LOCAL_DIR is kept: the new one arrives as `name (1).ext`. Files go through the same
partial-file download as the folder sync, so nothing partial is ever under a final name.
"""

from __future__ import annotations

import json
import posixpath
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import requests
from tqdm import tqdm

from engine.naming import sanitize_filename, unique_name
from server.client import ClientError, RemoteFile, Server, Sync, _explain

_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0
_READ_TIMEOUT = 90  # several keep-alive intervals: a silent stream is a dead one


@dataclass(frozen=True)
class FeedEvent:
    kind: str
    data: dict[str, Any]


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """(id, event, data) of each event in a text/event-stream; comments and `retry:` skipped."""
    event_id: str | None = None
    kind, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event_id, kind, "\n".join(data)
            event_id, kind, data = None, "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


class EventFeed:
    """The user's event stream, kept open across network losses; events arrive in `queue`."""

    def __init__(self, server: Server, device: str | None = None) -> None:
        self._server = server
        self._url = server.url + "/api/v1/events" + (f"?device={quote(device, safe='')}" if device else "")
        self.queue: queue.Queue[FeedEvent] = queue.Queue()
        self.last_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="event feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        wait = _BACKOFF_FIRST
        session = self._server.http()
        while not self._stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with session.get(self._url, headers=headers, stream=True,
                                 timeout=(10, _READ_TIMEOUT)) as response:
                    if response.status_code != 200:
                        raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
                    for event_id, kind, data in parse_sse(response.iter_lines(decode_unicode=True)):
                        wait = _BACKOFF_FIRST  # connected and hearing from the server
                        if event_id is not None:
                            self.last_id = event_id
                        self.queue.put(FeedEvent(kind, json.loads(data or "{}")))
            except (requests.RequestException, ValueError):
                pass
            self.queue.put(FeedEvent("disconnected", {}))
            self._stop.wait(wait)
            wait = min(wait * 2, _BACKOFF_MAX)


class Device:
    """This machine as a device of the drive: registration and its delivery queue."""

    def __init__(self, job: Sync, name: str) -> None:
        self._job = job
        self.name = name
        self._api = f"{job.server.url}/api/v1/devices/{quote(name, safe='')}"

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._job.http.request(method, url, timeout=30, **kwargs)
        except requests.RequestException as error:
            raise _explain(self._job.server, error) from None
        if response.status_code == 401:
            raise ClientError(f"wrong user name or password for {self._job.server.url}")
        if response.status_code >= 400:
            try:
                reason = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {response.status_code}"
            raise ClientError(f"device {self.name}: {reason}")
        return response.json()

    def register(self) -> None:
        self._call("PUT", self._api)

    def receive(self) -> int:
        """Fetch every pending delivery into the local folder; the number received."""
        self._job.partial_dir.mkdir(parents=True, exist_ok=True)
        received = 0
        for delivery in self._call("GET", self._api + "/deliveries"):
            path = delivery["path"]
            # Its own name, but never over a file already there (ours or the user's).
            name = unique_name(sanitize_filename(posixpath.basename(path)), lambda n: (self._job.local / n).exists())
            if delivery["size"] is not None:
                item = RemoteFile(path, delivery["size"], delivery["etag"], None)
                with tqdm(total=item.size, unit="B", unit_scale=True, desc=name, file=sys.stderr) as bar:
                    self._job.download(path, self._job.local / name, item, bar)
                print(f"received {name}", flush=True)
                received += 1
            else:
                print(f"{path} was sent to {self.name} but is no longer in the drive", file=sys.stderr, flush=True)
            self._call("POST", self._api + "/ack", json={"delivery": delivery["id"]})
        return received


def _concerns(job: Sync, event: FeedEvent) -> bool:
    """Whether a file event touches the synced folder."""
    prefix = job.folder + "/" if job.folder else ""
    paths = [event.data.get("path") or "", event.data.get("to") or ""]
    return any(path and (path == job.folder or path.startswith(prefix)) for path in paths)


def sync(server: Server, folder: str | None, local: Path, *, delete: bool, watch: float | None,
         device: str | None) -> int:
    """`fetchdrive sync`: mirror `folder` (None: only receive what `device` is sent) once, or
    with `watch` keep doing so until interrupted."""
    job = Sync(server, folder or "", local, delete=delete)
    mirror = folder is not None or device is None
    receiver = Device(job, device) if device is not None else None
    status = job.run() if mirror else 0  # a wrong password or address ends it here, in one line
    if receiver is not None:
        receiver.register()
        receiver.receive()
    if watch is None:
        return status
    feed = EventFeed(server, device)
    feed.start()
    pending_sync = pending_receive = False
    registered = True
    while True:
        try:
            event = feed.queue.get(timeout=watch)
        except queue.Empty:
            pending_sync, pending_receive, registered = mirror, receiver is not None, False  # the fallback poll
        else:
            events = [event]
            try:
                while True:  # what queued up meanwhile is handled by the same sync
                    events.append(feed.queue.get_nowait())
            except queue.Empty:
                pass
            for event in events:
                if event.kind in ("ready", "resync"):
                    pending_sync, pending_receive, registered = mirror, receiver is not None, False
                elif event.kind.startswith("file.") and mirror and _concerns(job, event):
                    pending_sync = True
                elif event.kind == "device.send" and receiver is not None and event.data.get("device") == device:
                    pending_receive = True
        try:
            if pending_sync:
                job.run()
            if pending_receive and receiver is not None:
                if not registered:  # again on a new stream: the server may have lost its database
                    receiver.register()
                    registered = True
                receiver.receive()
            pending_sync = pending_receive = False
        except ClientError as error:
            print(f"fetchdrive: {error}; trying again when the server answers", file=sys.stderr, flush=True)
