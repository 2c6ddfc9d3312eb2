"""Dead properties change under the same path locks as the files they belong to (issue 13,
point 2: every write into a user space goes through one place).

PROPPATCHes (set and remove) on a/b/ and on files below it race a MOVE, DELETE or COPY of a/
or of a/b/, each onto a destination that holds older files with properties of their own.
Afterwards no request got a 5xx, every dead property in the database names a file or folder
that exists, PROPFIND shows each one's property as the last successful PROPPATCH (moved along
by the MOVE) left it, a copy shows one its source had and never the overwritten file's, and the
used bytes equal a recount. Before the fix, a PROPPATCH that looked its file up before a MOVE
or DELETE of a folder above and wrote after it left its property under a URL where no file
was, counted in the quota.
"""

from __future__ import annotations

import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote

import pytest
import requests

from tests.conftest import Account, new_account
from tests.downloads_helpers import url_shortcut, wait_for
from tests.quota_helpers import recounted, used
from tests.server_process import ServerProcess
from tests.test_space_writer import BROKEN, run_together

pytestmark = [pytest.mark.shared_server, pytest.mark.both_databases]

NAMESPACE = "urn:fetchdrive:race"
PROPERTY = f"{{{NAMESPACE}}}p"
OLD = "old"  # the property of what the MOVE or COPY overwrites

# (method, folder moved, deleted or copied, destination), both below the round's own folder.
OPERATIONS = [("MOVE", "a", "moved"), ("DELETE", "a", None), ("COPY", "a", "copied"),
              ("MOVE", "a/b", "a/moved"), ("DELETE", "a/b", None), ("COPY", "a/b", "a/copied")]
TARGETS = ["a/b/", "a/b/f0.txt", "a/b/f1.txt"]  # what the PROPPATCHes change


def _set_body(value: str | None) -> bytes:
    change = "remove" if value is None else "set"
    return (f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:R="{NAMESPACE}">'
            f"<D:{change}><D:prop><R:p>{value or ''}</R:p></D:prop></D:{change}></D:propertyupdate>").encode()


def proppatch(session: requests.Session, url: str, value: str | None) -> bool:
    """Set the property to `value` (None: remove it); whether that succeeded. The resource
    gone (404 for the request or for the property) is an answer; anything else fails."""
    answer = session.request("PROPPATCH", url, data=_set_body(value), timeout=60)
    if answer.status_code == 404:
        return False
    assert answer.status_code == 207, f"PROPPATCH {url}: {answer.status_code} {answer.text[:300]}"
    statuses = [status.text.split()[1] for status in ET.fromstring(answer.content).iter("{DAV:}status")]
    assert statuses in (["200"], ["404"]), f"PROPPATCH {url}: {answer.text[:300]}"
    return statuses == ["200"]


def property_of(session: requests.Session, url: str) -> str | None:
    """The property's value on an existing file or folder, None when it has none."""
    body = (f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:R="{NAMESPACE}">'
            "<D:prop><R:p/></D:prop></D:propfind>")
    answer = session.request("PROPFIND", url, data=body, headers={"Depth": "0"}, timeout=60)
    assert answer.status_code == 207, f"PROPFIND {url}: {answer.status_code}"
    for propstat in ET.fromstring(answer.content).iter("{DAV:}propstat"):
        found = propstat.find(f"{{DAV:}}prop/{PROPERTY}")
        if found is not None and propstat.findtext("{DAV:}status").split()[1] == "200":
            return found.text or ""
    return None


@dataclass
class Round:
    """One operation in a folder of its own, and what the PROPPATCHes racing it achieved."""

    server: ServerProcess
    client: Account
    url: str  # the round's folder
    method: str
    source: str
    destination: str | None
    seed: int
    history: dict[str, list[str | None]] = field(default_factory=dict)  # target -> successful states, in order
    status: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def make(self) -> None:
        """The tree, each target with a first property, and the destination with older files."""
        session = self.session()
        for folder in (self.url, f"{self.url}/a", f"{self.url}/a/b"):
            assert session.request("MKCOL", folder).status_code == 201
        for target in TARGETS:
            if not target.endswith("/"):
                assert session.put(f"{self.url}/{target}", data=target.encode() * 10).status_code == 201
            assert proppatch(session, f"{self.url}/{target}", f"{target}-first")
            self.history[target] = [f"{target}-first"]
        if self.destination is not None:
            for target in TARGETS:
                old = self.moved(target)
                if old.endswith("/"):
                    parts = old.rstrip("/").split("/")
                    for depth in range(len(self.source.split("/")), len(parts) + 1):
                        assert session.request("MKCOL", f"{self.url}/{'/'.join(parts[:depth])}").status_code == 201
                else:
                    assert session.put(f"{self.url}/{old}", data=b"old " * 7).status_code == 201
                assert proppatch(session, f"{self.url}/{old}", OLD)

    def session(self) -> requests.Session:
        return self.server.session(self.client.name, self.client.password)

    def moved(self, target: str) -> str:
        """Where `target` is after the MOVE or COPY."""
        return self.destination + target[len(self.source):]

    def patch(self, target: str) -> None:
        """Set and remove the target's property until the operation is over, and once more."""
        session = self.session()  # one per thread: a requests.Session is not shared safely
        rng = random.Random(f"{self.seed}-{self.source}-{self.method}-{target}")
        count = 0
        while True:
            over = self.done.is_set()
            value = None if rng.random() < 0.3 else f"{target}-{count}-" + "x" * rng.randrange(0, 200)
            if proppatch(session, f"{self.url}/{target}", value):
                self.history[target].append(value)
            count += 1
            self.started.set()
            if over:
                return

    def operate(self) -> None:
        self.started.wait(60)
        time.sleep(random.Random(self.seed).uniform(0, 0.03))
        headers = {"Overwrite": "T"}
        if self.destination is not None:
            headers["Destination"] = f"{self.url}/{self.destination}"
        try:
            answer = self.session().request(self.method, f"{self.url}/{self.source}", headers=headers, timeout=60)
            self.status = answer.status_code
        finally:
            self.done.set()

    def check(self) -> None:
        """What PROPFIND shows of each target after the race."""
        session, moved_away = self.session(), self.method != "COPY"
        assert self.status in (201, 204), f"{self.method} {self.source}: {self.status}"
        for target, states in self.history.items():
            where = f"{self.url}/{target}"
            if moved_away:
                assert session.request("PROPFIND", where, headers={"Depth": "0"}).status_code == 404, where
            else:
                assert property_of(session, where) == states[-1], f"{self.method} {self.source}: {target}"
            if self.destination is not None:
                copy = property_of(session, f"{self.url}/{self.moved(target)}")
                if moved_away:
                    assert copy == states[-1], f"MOVE {self.source}: {target} -> {self.moved(target)}"
                else:
                    assert copy in states, f"COPY {self.source}: {target} shows {copy!r}, never its source's"


def run_all(works: list[Callable[[], None]]) -> None:
    """`run_together`, raising the first error of any of `works` (a thread's own is lost)."""
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:
            errors.append(error)

    run_together(*[partial(guarded, work) for work in works])
    if errors:
        raise errors[0]


def properties_without_a_file(server: ServerProcess, user: str) -> list[str]:
    """Keys of the user's dead properties that name no existing file or folder (or name one
    in a form no request uses, as `a//b`)."""
    prefix = f"/dav/{user}/"
    stray = []
    for (key,) in server.query("select key from dav_properties where key like ?", [f"{prefix}%"]):
        path = unquote(key)[len(prefix):]
        found = server.space(user) / path
        if "//" in path or not (found.is_dir() if path.endswith("/") or not path else found.is_file()):
            stray.append(unquote(key))
    return stray


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_proppatch_racing_a_move_delete_or_copy_of_a_folder_above_leaves_no_stray_property(server, seed):
    carol = new_account(server, "carol", "carol-password-7")
    rounds = [Round(server, carol, server.dav(f"r{index}"), method, source, destination, seed)
              for index, (method, source, destination) in enumerate(OPERATIONS)]
    run_all([race.make for race in rounds])
    run_all([race.operate for race in rounds] + [partial(race.patch, target) for race in rounds for target in TARGETS])
    run_all([race.check for race in rounds])
    assert properties_without_a_file(server, carol.name) == []
    assert used(carol.session, server) == recounted(server, carol.name)


TRIGGER_FOLDERS = ["downloads", "downloads/sub", "downloads/sub/deeper"]


def test_files_the_engine_removes_take_their_dead_properties_along(server, origin):
    """An error note goes when its trigger is uploaded again, a trigger when its download is
    done: their properties go with them, not left counted in the quota for a later file of
    that name to find."""
    dave = new_account(server, "dave", "dave-password-3")
    session = dave.session
    for folder in TRIGGER_FOLDERS[1:]:
        assert session.request("MKCOL", server.dav(folder)).status_code == 201
    origin.add("/file.bin", b"fetched " * 64)
    triggers = [f"{folder}/get.url" for folder in TRIGGER_FOLDERS]
    for trigger in triggers:
        assert session.put(server.dav(trigger), data=BROKEN).status_code == 201
    for trigger in triggers:
        note = server.space(dave.name) / f"{trigger}.error.txt"
        wait_for(note.exists, timeout=60, message=f"the error note of {trigger}")
        assert proppatch(session, server.dav(f"{trigger}.error.txt"), "on the note")
        assert proppatch(session, server.dav(trigger), "on the trigger")
        assert session.put(server.dav(trigger), data=url_shortcut(origin.url("/file.bin"))).status_code == 204
    for trigger in triggers:
        wait_for(lambda: not (server.space(dave.name) / trigger).exists(), timeout=60,
                 message=f"{trigger} done and removed")
        assert not (server.space(dave.name) / f"{trigger}.error.txt").exists()
    # The engine removes a file and then, in the same locked step, its properties: a look from
    # outside may come in between.
    wait_for(lambda: not properties_without_a_file(server, dave.name), timeout=60,
             message="no dead property left without its file")
    wait_for(lambda: used(session, server) == recounted(server, dave.name), timeout=60, message="an exact quota")
