"""Load: 50 WebDAV clients and 20 downloads at once for 20 seconds, with nothing lost.

Clients 0-19 work in their own folders of one user, clients 20-39 fight over a shared folder
of that same user, clients 40-49 are two other users. Every body written is self-checking
(its first 64 bytes are the SHA-256 of the rest), so a torn or mixed file shows on any read.
Private folders are checked against an exact model; a shared file must end up as one of the
writes no later write or delete could have overtaken. Pass: no 5xx, no lost or torn file,
every download intact, the quota equal to a recount (files plus the dead properties the
clients set), server memory bounded.
`FETCHDRIVE_LOAD_SECONDS` changes the length: shorter for a quick local check, longer for a soak.
Twenty seconds make every kind of request many times over and run every download (they are
started over the first half); the minute it ran before cost CI 40 s more for the same checks.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import requests

from tests.downloads_helpers import url_shortcut, wait_for
from tests.quota_helpers import recounted

LOAD_SECONDS = float(os.environ.get("FETCHDRIVE_LOAD_SECONDS", 20))
PRIVATE_CLIENTS, SHARED_CLIENTS, OTHER_USER_CLIENTS = 20, 20, 10
DOWNLOADS = 20
SHARED_FILES = 8
MEMORY_GROWTH_LIMIT = 300 * 1024 * 1024
EMPTY = hashlib.sha256(b"").hexdigest()
USERS = {"load": "load-password", "other1": "other1-password", "other2": "other2-password"}


def _body(rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.randint(0, 150_000))
    return hashlib.sha256(payload).hexdigest().encode() + payload


def _intact(body: bytes) -> bool:
    return hashlib.sha256(body[64:]).hexdigest().encode() == body[:64]


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class _SharedHistory:
    """Completed writes and deletes per shared path, with when they began and ended."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: dict[str, list[tuple[float, float, str | None]]] = field(default_factory=lambda: defaultdict(list))
    attempted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def attempt(self, path: str, digest: str) -> None:
        with self.lock:
            self.attempted[path].add(digest)

    def done(self, path: str, began: float, digest: str | None) -> None:
        with self.lock:
            self.events[path].append((began, time.monotonic(), digest))

    def possible_final(self, path: str) -> set[str | None]:
        """Outcomes of the events that no other event began after (None: no file)."""
        events = self.events[path]
        if not events:
            return {None}
        return {digest for _began, ended, digest in events if not any(other[0] > ended for other in events)}


class _Run:
    """What the clients share: the server, the failures seen and the tally."""

    def __init__(self, server, tally) -> None:
        self.server = server
        self.tally = tally
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.shared = _SharedHistory()
        self._lock = threading.Lock()

    def call(self, session: requests.Session, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            response = session.request(method, self.server.dav(path), timeout=60, **kwargs)
        except requests.RequestException as error:
            self.fail(f"{method} {path}: {error}")
            return None
        with self._lock:
            self.tally["requests made"] += 1
        if response.status_code >= 500:
            self.fail(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)

    def checked(self) -> None:
        with self._lock:
            self.tally["files checked"] += 1


def _listing(run: _Run, session: requests.Session, folder: str) -> set[str] | None:
    response = run.call(session, "PROPFIND", folder + "/", headers={"Depth": "1"})
    if response is None or response.status_code != 207:
        return None
    hrefs = [unquote(urlsplit(part.split("</D:href>")[0]).path) for part in response.text.split("<D:href>")[1:]]
    return {href.rstrip("/").rsplit("/", 1)[1] for href in hrefs if href.rstrip("/") != f"/dav/{folder}"}


def _private_client(run: _Run, user: str, folder: str, seed: int) -> dict[str, str]:
    """Random operations in a folder no one else touches; returns name -> digest it must hold."""
    rng = random.Random(seed)
    session = run.server.session(user, USERS[user])
    run.call(session, "MKCOL", folder)
    model: dict[str, str] = {}
    while not run.stop.is_set():
        operation = rng.choice(["put", "put", "get", "get", "move", "copy", "delete", "list", "lock", "proppatch"])
        name = f"f{rng.randint(0, 9)}.bin"
        path = f"{folder}/{name}"
        if operation == "put" or (operation == "lock" and name not in model):
            body = _body(rng)
            response = run.call(session, "PUT", path, data=body)
            if response is not None and response.status_code in (201, 204):
                model[name] = _digest(body)
        elif operation == "get":
            response = run.call(session, "GET", path)
            if response is not None:
                expected = model.get(name)
                actual = _digest(response.content) if response.status_code == 200 else None
                if actual != expected:
                    run.fail(f"GET {user}/{path}: {response.status_code}, not what was last written")
                run.checked()
        elif operation in ("move", "copy"):
            target = f"f{rng.randint(0, 9)}.bin"
            destination = run.server.dav(f"{folder}/{target}")
            response = run.call(session, operation.upper(), path, headers={"Destination": destination, "Overwrite": "T"})
            if response is not None and response.status_code in (201, 204) and name != target:
                model[target] = model[name]
                if operation == "move":
                    del model[name]
        elif operation == "delete":
            response = run.call(session, "DELETE", path)
            if response is not None and response.status_code == 204:
                model.pop(name, None)
        elif operation == "proppatch":
            prop, value = f"note{rng.randint(0, 3)}", "v" * rng.choice([0, 10, 5000, 60_000])
            body = (f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:load:"><D:set><D:prop>'
                    f"<X:{prop}>{value}</X:{prop}></D:prop></D:set></D:propertyupdate>")
            response = run.call(session, "PROPPATCH", path if name in model else folder, data=body.encode())
            if response is not None and response.status_code not in (207, 404):
                run.fail(f"PROPPATCH {user}/{path}: {response.status_code}")
        elif operation == "list":
            names = _listing(run, session, folder)
            if names is not None and names != set(model):
                run.fail(f"PROPFIND {user}/{folder}: {sorted(names)} but expected {sorted(model)}")
        else:
            token, _created = _lock(run, session, path)
            if token:
                body = _body(rng)
                response = run.call(session, "PUT", path, data=body, headers={"If": f"({token})"})
                if response is not None and response.status_code in (201, 204):
                    model[name] = _digest(body)
                run.call(session, "UNLOCK", path, headers={"Lock-Token": token})
    return model


def _lock(run: _Run, session: requests.Session, path: str) -> tuple[str | None, bool]:
    """The lock token (None if refused), and whether the LOCK created an empty file."""
    body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            "<D:locktype><D:write/></D:locktype></D:lockinfo>")
    response = run.call(session, "LOCK", path, data=body, headers={"Timeout": "Second-60"})
    if response is None or response.status_code not in (200, 201):
        return None, False
    return response.headers["Lock-Token"], response.status_code == 201


def _shared_client(run: _Run, seed: int) -> None:
    """Writes, deletes, reads and locks on files other clients write at the same time."""
    rng = random.Random(seed)
    session = run.server.session("load", USERS["load"])
    while not run.stop.is_set():
        path = f"shared/s{rng.randint(0, SHARED_FILES - 1)}.bin"
        operation = rng.choice(["put", "put", "get", "get", "get", "delete", "lock"])
        if operation in ("put", "lock"):
            token = None
            if operation == "lock":
                run.shared.attempt(path, EMPTY)  # RFC 4918: a LOCK on an unmapped URL makes an empty file
                began = time.monotonic()
                token, created = _lock(run, session, path)
                if created:
                    run.shared.done(path, began, EMPTY)
                if not token:
                    continue
            body = _body(rng)
            run.shared.attempt(path, _digest(body))
            began = time.monotonic()
            response = run.call(session, "PUT", path, data=body, headers={"If": f"({token})"} if token else {})
            if response is not None and response.status_code in (201, 204):
                run.shared.done(path, began, _digest(body))
            if token:
                run.call(session, "UNLOCK", path, headers={"Lock-Token": token})
        elif operation == "delete":
            began = time.monotonic()
            response = run.call(session, "DELETE", path)
            if response is not None and response.status_code == 204:
                run.shared.done(path, began, None)
        else:
            response = run.call(session, "GET", path)
            if response is not None and response.status_code == 200:
                empty_or_intact = not response.content or _intact(response.content)
                if not empty_or_intact or _digest(response.content) not in run.shared.attempted[path]:
                    run.fail(f"GET {path}: {len(response.content)} bytes no client wrote (torn or mixed)")
                run.checked()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_fifty_clients_and_twenty_downloads_for_twenty_seconds(make_server, origin, tally):
    server = make_server(settings={"server.threads": 60, "engine.workers": DOWNLOADS, "engine.per_user": DOWNLOADS})
    for user, password in USERS.items():
        server.add_user(user, password, quota="5G")
    run = _Run(server, tally)
    owner = server.session("load", USERS["load"])
    run.call(owner, "MKCOL", "shared")
    bodies = {f"/load-{n}.bin": random.Random(n).randbytes(2_000_000 + n * 10_000) for n in range(DOWNLOADS)}
    for path, body in bodies.items():
        origin.add(path, body, rate=300_000)
    base_memory = _rss(server.process.pid)
    peak_memory = base_memory
    models: dict[tuple[str, str], dict[str, str]] = {}

    def private(user: str, folder: str, seed: int) -> None:
        try:
            models[(user, folder)] = _private_client(run, user, folder, seed)
        except Exception as error:  # a crashed client must fail the test, not vanish
            run.fail(f"client {user}/{folder} crashed: {error!r}")

    def shared(seed: int) -> None:
        try:
            _shared_client(run, seed)
        except Exception as error:
            run.fail(f"shared client {seed} crashed: {error!r}")

    threads = [threading.Thread(target=private, args=("load", f"p{n}", n)) for n in range(PRIVATE_CLIENTS)]
    threads += [threading.Thread(target=shared, args=(100 + n,)) for n in range(SHARED_CLIENTS)]
    threads += [threading.Thread(target=private, args=(f"other{1 + n % 2}", f"q{n}", 200 + n)) for n in range(OTHER_USER_CLIENTS)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    triggers = list(bodies)
    users = list(USERS)
    # Until every trigger is in too: on a busy machine a PUT can take a second, and the last
    # triggers would otherwise never be sent.
    while time.monotonic() - began < LOAD_SECONDS or triggers:
        elapsed = time.monotonic() - began
        while triggers and elapsed >= (DOWNLOADS - len(triggers)) * LOAD_SECONDS / DOWNLOADS / 2:
            path = triggers.pop(0)
            user = users[len(triggers) % len(users)]
            session = server.session(user, USERS[user])
            run.call(session, "PUT", f"downloads{path[:-4]}.url", data=url_shortcut(origin.url(path)))
        peak_memory = max(peak_memory, _rss(server.process.pid))
        time.sleep(0.5)
    run.stop.set()
    for thread in threads:
        thread.join()

    assert not run.failures, run.failures[:20]
    assert len(models) == PRIVATE_CLIENTS + OTHER_USER_CLIENTS
    for (user, folder), model in models.items():
        session = server.session(user, USERS[user])
        assert _listing(run, session, folder) == set(model), (user, folder)
        for name, digest in model.items():
            assert _digest(session.get(server.dav(f"{folder}/{name}")).content) == digest, (user, folder, name)
            run.checked()
    for number in range(SHARED_FILES):
        path = f"shared/s{number}.bin"
        response = owner.get(server.dav(path))
        final = _digest(response.content) if response.status_code == 200 else None
        assert final in run.shared.possible_final(path), path
        run.checked()
    for index, (path, body) in enumerate(bodies.items()):
        user = users[(DOWNLOADS - 1 - index) % len(users)]
        delivered = server.space(user) / "downloads" / path.lstrip("/")
        wait_for(delivered.exists, timeout=120, message=f"download {path} for {user}")
        assert hashlib.sha256(delivered.read_bytes()).digest() == hashlib.sha256(body).digest(), path
        tally["downloads delivered"] += 1
        run.checked()
    for user, password in USERS.items():
        downloads = server.space(user) / "downloads"
        wait_for(lambda: not [name for name in os.listdir(downloads) if name.endswith(".url")], message="triggers gone")
        used = server.session(user, password).get(server.url("/api/v1/me")).json()["used_bytes"]
        assert used == recounted(server, user), user
    assert peak_memory - base_memory < MEMORY_GROWTH_LIMIT, f"server memory grew by {(peak_memory - base_memory) >> 20} MiB"
    assert "Traceback" not in server.log_text()
