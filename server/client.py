"""The client-side commands: `fetchdrive add` queues downloads by uploading a trigger over
WebDAV (the path a file manager takes), and `fetchdrive sync` mirrors a drive folder locally.

Sync keeps its state in `LOCAL_DIR/.fetchdrive-sync/state.json` (ETag, size and mtime of each
file it wrote), resumes partial transfers with Range + If-Range from `.fetchdrive-sync/partial/`,
and renames a file into place only when it is complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests
from tqdm import tqdm
from webdav3.client import Client
from webdav3.exceptions import NoConnection, ResponseErrorCode, WebDavException

from engine.body_copy import copy_body
from engine.errors import FetchError, LocalStorageError, Restart, disk_failure
from engine.outcomes import Outcome
from engine.ranged_get import RangedGet
from engine.kinds import TaskState
from engine.tasks import FINISHED
from engine.transfer_context import TransferContext

STATE_DIR = ".fetchdrive-sync"
STATUS_FILE = "downloads/fetchdrive-status.txt"
POLL_SECONDS = 0.5
PICKUP_SECONDS = 10


# The sync's own disk: no quota, nothing to cancel or throttle (the bar counts each chunk).
_SYNC_CONTEXT = TransferContext(on_progress=lambda download: None, is_cancelled=lambda: False,
                                room=lambda total, whole=False: total)
# What a write into a local file met, beyond a full disk, in the words of its errno.
_LOCAL_FAULTS = {Outcome.DISK_READ_ONLY: os.strerror(errno.EROFS), Outcome.DISK_IO: os.strerror(errno.EIO)}


class ClientError(Exception):
    """A failure the user can act on; printed as one line."""


def _local_disk_error(error: LocalStorageError | OSError, name: str, target: Path) -> ClientError:
    """One line for a fault of the local disk: a full one says so, any other in the words of
    the file system."""
    fault = disk_failure(error) if isinstance(error, OSError) else error
    if fault.outcome in (Outcome.DISK_FULL, Outcome.DISK_QUOTA):
        return ClientError(f"local disk full while writing {name}; free space and run sync again")
    reason = error.strerror if isinstance(error, OSError) else _LOCAL_FAULTS.get(fault.outcome, "the file system refused it")
    return ClientError(f"cannot write {target}: {reason}")


@dataclass(frozen=True)
class Server:
    url: str  # e.g. http://127.0.0.1:8080
    user: str
    password: str

    @property
    def dav_root(self) -> str:
        return self.url.rstrip("/") + "/dav/"

    def webdav(self) -> Client:
        return Client({"webdav_hostname": self.url, "webdav_root": "/dav/", "webdav_login": self.user, "webdav_password": self.password,
                       "webdav_timeout": 60})

    def http(self) -> requests.Session:
        session = requests.Session()
        session.auth = (self.user, self.password)
        return session


def server_from(url: str, user: str, password: str | None) -> Server:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--server {url!r} must be an http:// or https:// URL such as http://127.0.0.1:8080")
    if not password:
        raise ClientError("no password: use --password, --password-stdin or the FETCHDRIVE_PASSWORD variable")
    return Server(f"{parts.scheme}://{parts.netloc}", user, password)


def _explain(server: Server, error: Exception) -> ClientError:
    if isinstance(error, ResponseErrorCode) and error.code == 401:
        return ClientError(f"wrong user name or password for {server.dav_root}")
    if isinstance(error, requests.HTTPError) and error.response is not None and error.response.status_code == 401:
        return ClientError(f"wrong user name or password for {server.dav_root}")
    if isinstance(error, (NoConnection, requests.ConnectionError)):
        return ClientError(f"cannot reach {server.url}: is the server running and the address right?")
    return ClientError(f"{server.url}: {error}")


def _check_login(server: Server) -> None:
    try:
        response = server.http().request("PROPFIND", server.dav_root, headers={"Depth": "0"}, timeout=30)
    except requests.RequestException as error:
        raise _explain(server, error) from None
    if response.status_code == 401:
        raise ClientError(f"wrong user name or password for {server.dav_root}")
    if response.status_code == 429:  # the server's one line: too many wrong passwords, and when to retry
        raise ClientError(f"{server.dav_root}: {response.text.strip()}")
    if response.status_code != 207:
        raise ClientError(f"{server.dav_root} is not a fetchdrive drive (HTTP {response.status_code})")


# --- add -------------------------------------------------------------------


def _plain(stem: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in stem)[:80]


def _trigger_for(source: str) -> tuple[str, bytes]:
    """A trigger file name and content for a URL, a magnet link, a local .torrent file or a content ID."""
    tag = secrets.token_hex(3)
    if source.lower().endswith(".torrent") and os.path.isfile(source):
        with open(source, "rb") as torrent:
            return f"{_plain(posixpath.basename(source)[:-8])}-{tag}.torrent", torrent.read()
    if source[:7].lower() == "magnet:":
        stem = parse_qs(urlsplit(source).query).get("dn", ["magnet"])[0]
        return f"{_plain(stem)}-{tag}.url", f"{source}\n".encode()
    if "://" in source:
        stem = posixpath.basename(urlsplit(source).path.rstrip("/")) or urlsplit(source).hostname or "link"
        return f"{_plain(unquote(stem))}-{tag}.url", f"[InternetShortcut]\r\nURL={source}\r\n".encode()
    return f"{_plain(source)}-{tag}.id", f"{source}\n".encode()


def add(server: Server, sources: list[str], *, folder: str = "downloads", wait: bool = False,
        timeout: float | None = None) -> int:
    """Upload one trigger per source; a trigger the server refuses is a one-line ClientError.
    With `wait`, show progress until every download ends or `timeout` seconds pass."""
    _check_login(server)
    client = server.webdav()
    folder = folder.strip("/") or "downloads"
    if folder != "downloads" and not folder.startswith("downloads/"):
        raise ClientError(f"--folder {folder!r} must be downloads/ or a folder inside it")
    triggers = {}
    for source in sources:
        name, content = _trigger_for(source)
        remote = f"{folder}/{name}"
        try:
            client.upload_to(content, remote)
        except WebDavException as error:
            raise _explain(server, error) from None
        triggers[remote] = source
    waiter = _Waiter(server, dict(triggers), timeout)
    refusals = waiter.confirm()
    for remote, source in triggers.items():
        if remote in waiter.triggers:
            print(f"queued {source} as {remote}")
    status = waiter.run() if wait else 0
    if refusals:
        more = f" (and {len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
        raise ClientError(refusals[0] + more)
    return status


class _Waiter:
    """Follows the tasks of uploaded triggers through the API, and the `.error.txt` beside each
    trigger, which is the server's only answer to a trigger it refuses (it starts no task)."""

    def __init__(self, server: Server, triggers: dict[str, str], timeout: float | None) -> None:
        self.server = server
        self.triggers = triggers  # remote trigger path -> the source it was made for
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.session = server.http()

    def _tasks(self) -> dict[str, dict]:
        """The newest task of each of our triggers."""
        try:
            response = self.session.get(f"{self.server.url}/api/v1/tasks?limit=1000", timeout=30)
            response.raise_for_status()
            tasks = response.json()
        except (requests.RequestException, ValueError) as error:
            raise _explain(self.server, error) from None
        found: dict[str, dict] = {}
        for task in sorted(tasks, key=lambda task: task["id"]):
            if task.get("trigger") in self.triggers:
                found[task["trigger"]] = task
        return found

    def _refusal(self, trigger: str) -> str | None:
        """The reason in `<trigger>.error.txt`, if the server wrote one, as one line."""
        try:
            response = self.session.get(self.server.dav_root + quote(trigger + ".error.txt"), timeout=30)
        except requests.RequestException as error:
            raise _explain(self.server, error) from None
        if response.status_code != 200:
            return None
        return " ".join(response.content.decode("utf-8", "replace").split())

    def _remove(self, trigger: str) -> None:
        """Take back a refused trigger and its error file: the refusal is told on the terminal."""
        for path in (trigger, trigger + ".error.txt"):
            try:
                self.session.delete(self.server.dav_root + quote(path), timeout=30)
            except requests.RequestException as error:
                raise _explain(self.server, error) from None

    def _gone(self, trigger: str) -> bool:
        try:
            response = self.session.head(self.server.dav_root + quote(trigger), timeout=30)
        except requests.RequestException as error:
            raise _explain(self.server, error) from None
        return response.status_code == 404

    def confirm(self) -> list[str]:
        """Wait until the server has acted on every trigger (SPEC 4.1: within 2 seconds): a task
        exists, or an error file says why none will, or the trigger is gone without a task (the
        same download was already delivered to that folder, SPEC 4.4). Refused triggers are
        no longer followed; the answer is one line for each, saying why."""
        refusals = []
        deadline = time.monotonic() + PICKUP_SECONDS
        while True:
            pending = [trigger for trigger in self.triggers if trigger not in self._tasks()]
            for trigger in pending:
                if reason := self._refusal(trigger):
                    refusals.append(f"{self.triggers.pop(trigger)} was refused: {reason}")
                    self._remove(trigger)
            pending = [trigger for trigger in pending if trigger in self.triggers]
            gone = [trigger for trigger in pending if self._gone(trigger)]
            if gone:
                tasks = self._tasks()  # a task may have started, finished and taken its trigger meanwhile
                for trigger in gone:
                    if trigger not in tasks:
                        print(f"nothing new to download for {self.triggers.pop(trigger)}: it is already there")
                pending = [trigger for trigger in pending if trigger in self.triggers and trigger not in tasks]
            if not pending:
                return refusals
            if time.monotonic() > deadline:
                raise ClientError(f"{self.server.url} started no download for {pending[0]} within "
                                  f"{PICKUP_SECONDS} s; is the server's download engine running?")
            time.sleep(POLL_SECONDS)

    def run(self) -> int:
        """One progress bar per trigger until each is done or failed; 0 if all succeeded."""
        bars: dict[str, tqdm] = {}
        finished: dict[str, str] = {}
        try:
            while len(finished) < len(self.triggers):
                tasks = self._tasks()
                for trigger in self.triggers:
                    task = tasks.get(trigger)
                    if trigger in finished or task is None:
                        continue
                    bar = bars.get(trigger)
                    if bar is None:
                        bar = bars[trigger] = tqdm(total=task["bytes_total"], unit="B", unit_scale=True, desc=task["name"],
                                                   file=sys.stderr)
                    bar.total = task["bytes_total"]
                    bar.n = task["bytes_done"]
                    bar.refresh()
                    if task["state"] in FINISHED:
                        finished[trigger] = task["state"]
                        bar.close()
                        print(f"{task['state']}: {task['path'] or task['source']}"
                              + (f" ({task['error']})" if task["error"] else ""))
                self._check_deadline(finished)
                if len(finished) < len(self.triggers):
                    time.sleep(POLL_SECONDS)
        finally:
            for bar in bars.values():
                bar.close()
        return 0 if all(state == TaskState.DONE for state in finished.values()) else 1

    def _check_deadline(self, finished: dict[str, str]) -> None:
        if self.deadline is None or time.monotonic() < self.deadline:
            return
        unfinished = [trigger for trigger in self.triggers if trigger not in finished]
        if unfinished:
            raise ClientError(f"{len(unfinished)} download(s) still unfinished after --timeout {self.timeout:g} s "
                              f"(first: {unfinished[0]}); they continue on the server")


# --- sync ------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the synced folder, '/'-separated
    size: int
    etag: str | None
    modified: str | None


class Sync:
    def __init__(self, server: Server, folder: str, local: Path, *, delete: bool) -> None:
        self.server = server
        self.folder = folder.strip("/")
        self.local = local
        self.delete = delete
        self.state_dir = local / STATE_DIR
        self.state_file = self.state_dir / "state.json"
        self.partial_dir = self.state_dir / "partial"
        self.client = server.webdav()
        self.http = server.http()

    def _load_state(self) -> dict[str, dict]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_state(self, state: dict[str, dict]) -> None:
        temp = self.state_file.with_suffix(".tmp")
        temp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(temp, self.state_file)

    def _remote_files(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []
        pending = [self.folder]
        while pending:
            current = pending.pop()
            try:
                entries = self.client.list(current + "/" if current else "", get_info=True)
            except WebDavException as error:
                raise _explain(self.server, error) from None
            for entry in entries:
                full = unquote(urlsplit(entry["path"]).path)
                relative = full.split("/dav/", 1)[1].strip("/")
                if relative == current:
                    continue
                if entry.get("isdir"):
                    pending.append(relative)
                    continue
                inside = relative[len(self.folder):].lstrip("/") if self.folder else relative
                if relative.startswith("downloads/") and (relative.endswith(".part") or relative == STATUS_FILE):
                    continue  # read-only views of unfinished downloads, not files
                found.append(RemoteFile(inside, int(entry.get("size") or 0), entry.get("etag"), entry.get("modified")))
        return found

    def run(self) -> int:
        _check_login(self.server)
        self.local.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        remote = self._remote_files()
        todo = [f for f in remote if not self._up_to_date(f, state.get(f.path))]
        failures = 0
        with tqdm(total=sum(f.size for f in todo), unit="B", unit_scale=True, desc="sync", file=sys.stderr,
                  disable=not todo) as bar:
            for item in todo:
                try:
                    self._fetch(item, bar)
                except ClientError as error:
                    tqdm.write(f"fetchdrive: error: {error}", file=sys.stderr)  # above the bar, not inside it
                    failures += 1
                    continue
                state[item.path] = {"etag": item.etag, "size": item.size, "modified": item.modified}
                self._save_state(state)
        if self.delete:
            present = {f.path for f in remote}
            for path in sorted(set(state) - present):
                (self.local / path).unlink(missing_ok=True)
                del state[path]
            self._save_state(state)
        print(f"synced {len(todo) - failures} file(s), {len(remote) - len(todo)} already up to date" +
              (f", {failures} failed" if failures else ""))
        return 1 if failures else 0

    def _up_to_date(self, item: RemoteFile, known: dict | None) -> bool:
        target = self.local / item.path
        if known is None or not target.is_file() or target.stat().st_size != item.size:
            return False
        if item.etag and known.get("etag"):
            return item.etag == known["etag"]
        return known.get("size") == item.size and known.get("modified") == item.modified

    def _fetch(self, item: RemoteFile, bar: tqdm) -> None:
        self.download(f"{self.folder}/{item.path}".strip("/"), self.local / item.path, item, bar)

    def download(self, remote_path: str, target: Path, item: RemoteFile, bar: tqdm) -> None:
        """Fetch the drive's `remote_path` into `target` by way of a resumable partial file:
        nothing partial is ever under the final name. The body goes in as the server's own
        downloads do (engine/body_copy.py), its progress into `bar`."""
        partial = self.partial_dir / (hashlib.sha256(remote_path.encode()).hexdigest() + ".part")
        have = partial.stat().st_size if partial.exists() else 0
        etag = f'"{item.etag.strip(chr(34))}"' if item.etag else None
        request = RangedGet(have, validator=etag, etag=etag, total=item.size) if have and etag else RangedGet(0)
        url = self.server.dav_root + quote(remote_path)
        try:
            with self.http.get(url, headers=request.headers(), stream=True, timeout=60) as response:
                if response.status_code == 401:
                    raise ClientError(f"wrong user name or password for {self.server.dav_root}")
                if response.status_code not in (200, 206):
                    raise ClientError(f"{item.path}: HTTP {response.status_code}")
                try:
                    start = have if request.continues(response) else 0
                except Restart:  # not the bytes the partial file ends with: fetch it whole
                    response.close()
                    partial.unlink()
                    return self.download(remote_path, target, item, bar)
                if start:
                    bar.update(have)
                    tqdm.write(f"resumed {item.path} at {have} bytes")
                with open(partial, "r+b" if start else "wb") as out:  # r+b: the bytes up to `start` stay
                    copy_body(response, out.fileno(), start, _SYNC_CONTEXT, bar.update)
        except requests.RequestException as error:
            raise ClientError(f"{item.path}: transfer interrupted ({type(error).__name__}); run sync again to resume") from None
        except (LocalStorageError, OSError) as error:  # writing the body (engine/errors.py's), or opening the file
            partial.unlink(missing_ok=True)
            raise _local_disk_error(error, item.path, target) from None
        except FetchError as error:  # the network's, classified by engine/errors.py
            raise ClientError(f"{item.path}: transfer interrupted ({error}); run sync again to resume") from None
        if partial.stat().st_size != item.size:
            raise ClientError(f"{item.path}: got {partial.stat().st_size} of {item.size} bytes; run sync again to resume")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)
