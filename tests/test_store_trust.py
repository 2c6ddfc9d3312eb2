"""Instant delivery between strangers (SPEC 5): the content store answers a user only through
that user's own source, honours every sha256= line, and a retried failure never copies twice."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from playwright.sync_api import expect

from tests.conftest import Account
from tests.downloads_helpers import files_in, url_shortcut, wait_for
from tests.forked_cli import fetchdrive
from tests.browser import open_page

PRIVATE = [os.urandom(300_000 + n) for n in range(3)]
DIGESTS = [hashlib.sha256(body).hexdigest() for body in PRIVATE]
NOBODYS = hashlib.sha256(b"content nobody on this server holds").hexdigest()
WRONG = "e" * 64

# Finished triggers linger 0.2 s, not 1: no client here reads its upload back, and several
# tests wait for them to go.
BRIEF_LINGER = {"engine.trigger_linger": 0.2}
pytestmark = pytest.mark.shared_server(settings=BRIEF_LINGER)


def dead_url(path: str = "/gone.bin") -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def make_account(server, name: str) -> Account:
    """A user called `name` (`name2`... where an earlier test on a shared server took it)."""
    name = server.unused_user_name(name)
    password = f"{name}-password-9"
    server.add_user(name, password, quota="20M")
    return Account(name, password, server.session(name, password))


def tasks_of(account: Account, server) -> list[dict]:
    return account.session.get(server.url("/api/v1/tasks")).json()


def task_for(account: Account, server, trigger: str, states: tuple[str, ...]) -> dict:
    """The task of `downloads/<trigger>` once it reaches one of `states`."""
    def reached() -> dict | None:
        found = [t for t in tasks_of(account, server) if t["trigger"] == f"downloads/{trigger}" and t["state"] in states]
        return found[0] if found else None
    return wait_for(reached, message=f"{account.name}'s {trigger} to be {'/'.join(states)}")


def drop(account: Account, server, trigger: str, data: bytes) -> None:
    assert account.session.put(server.dav(f"downloads/{trigger}"), data=data).status_code in (201, 204)


def download(account: Account, server, origin, path: str, body: bytes, trigger: str) -> dict:
    origin.add(path, body)
    drop(account, server, trigger, url_shortcut(origin.url(path)))
    return task_for(account, server, trigger, ("done",))


def holds_anything_of(server, user: str, bodies: list[bytes]) -> list[str]:
    """Files in the user's space whose bytes are one of `bodies`."""
    space = server.space(user)
    return [str(path) for path in space.rglob("*") if path.is_file() and path.read_bytes() in bodies]


def error_file(server, user: str, trigger: str) -> str:
    path = server.space(user) / "downloads" / f"{trigger}.error.txt"
    wait_for(path.exists, message=f"{trigger}.error.txt")
    return path.read_text()


# --- a hash alone never hands out another user's content ----------------------------------------


@pytest.mark.parametrize("users", [2, 3])
def test_a_hash_alone_never_hands_another_users_download_to_a_stranger(server, origin, users):
    owners = [make_account(server, f"owner{n}") for n in range(users - 1)]
    stranger = make_account(server, "stranger")
    for number, body in enumerate(PRIVATE):
        download(owners[number % len(owners)], server, origin, f"/private/{number}.bin", body, f"p{number}.url")
    origin.add("/missing.bin", b"", status=404)
    attempts = {}
    for number, digest in enumerate(DIGESTS):
        attempts[f"h{number}.id"] = f"sha256:{digest}\nfilename=got{number}.bin\n".encode()
        attempts[f"dead{number}.url"] = url_shortcut(dead_url(), sha256=digest)
        attempts[f"missing{number}.url"] = url_shortcut(origin.url("/missing.bin"), sha256=digest, filename=f"m{number}.bin")
        attempts[f"dead{number}.desktop"] = f"[Desktop Entry]\nType=Link\nURL={dead_url()}\nsha256={digest}\n".encode()
    for name, data in attempts.items():
        drop(stranger, server, name, data)
    for name in attempts:
        task = task_for(stranger, server, name, ("failed", "waiting"))
        assert not task["instant"] and task["path"] is None, task
    assert origin.count("/missing.bin") >= len(PRIVATE), "the URL of every .url trigger is contacted"
    assert holds_anything_of(server, stranger.name, PRIVATE) == []


def test_after_the_owner_deleted_the_file_a_hash_still_gets_nothing(server, alice, bob, origin):
    for number, body in enumerate(PRIVATE):
        download(alice, server, origin, f"/deleted/{number}.bin", body, f"d{number}.url")
        assert alice.session.delete(server.dav(f"downloads/{number}.bin")).status_code == 204
    for number, digest in enumerate(DIGESTS):
        drop(bob, server, f"h{number}.id", f"sha256:{digest}\n".encode())
        drop(bob, server, f"dead{number}.url", url_shortcut(dead_url(), sha256=digest))
    for number in range(len(DIGESTS)):
        task_for(bob, server, f"h{number}.id", ("failed",))
        task_for(bob, server, f"dead{number}.url", ("waiting", "failed"))
    assert holds_anything_of(server, bob.name, PRIVATE) == []


CATCH_ALL = b"<html>any path is fine here</html>"


@pytest.mark.parametrize("mirror", ["none", "not-found", "answers-everything"])
def test_the_answer_to_a_sha256_id_reads_the_same_whether_or_not_anyone_holds_it(make_server, origin, mirror):
    templates = {"none": [], "not-found": [origin.url("/nothing/{sha256}")], "answers-everything": [origin.url("/all/{sha256}")]}
    for digest in [*DIGESTS, NOBODYS]:
        origin.add(f"/all/{digest}", CATCH_ALL)
    server = make_server(settings={"engine.mirrors": templates[mirror]})
    owner, stranger = make_account(server, "owner"), make_account(server, "stranger")
    for number, body in enumerate(PRIVATE):
        download(owner, server, origin, f"/private/{number}.bin", body, f"p{number}.url")
    answers = {}
    for digest in [*DIGESTS, NOBODYS]:
        before = len(origin.requests)
        drop(stranger, server, f"{digest}.id", f"sha256:{digest}\n".encode())
        task = task_for(stranger, server, f"{digest}.id", ("failed",))
        text = error_file(server, stranger.name, f"{digest}.id")
        mirror_requests = tuple((r.method, r.range) for r in origin.requests[before:])
        answers[digest] = (text.replace(digest, "HASH"), task["error"].replace(digest, "HASH"), mirror_requests)
    assert len(set(answers.values())) == 1, answers
    assert holds_anything_of(server, stranger.name, PRIVATE) == []


# --- what a user's own source does lead to -------------------------------------------------------


def test_a_mirror_that_serves_a_held_hash_lets_the_store_deliver_it(make_server, origin):
    for digest, body in zip(DIGESTS, PRIVATE):
        origin.add(f"/mirror/{digest}", body)
    server = make_server(settings={"engine.mirrors": [origin.url("/missing/{sha256}"), origin.url("/mirror/{sha256}")]})
    owner, other = make_account(server, "owner"), make_account(server, "other")
    for number, body in enumerate(PRIVATE[:2]):
        download(owner, server, origin, f"/private/{number}.bin", body, f"p{number}.url")
    for number, digest in enumerate(DIGESTS):
        drop(other, server, f"h{number}.id", f"sha256:{digest}\nfilename=h{number}.bin\n".encode())
        task = task_for(other, server, f"h{number}.id", ("done",))
        assert (server.space(other.name) / "downloads" / f"h{number}.bin").read_bytes() == PRIVATE[number]
        held = number < 2
        assert task["instant"] is held
        mirror_bytes = origin.bytes_sent(f"/mirror/{digest}")
        assert mirror_bytes < len(PRIVATE[number]) if held else mirror_bytes >= len(PRIVATE[number])


def test_content_nobody_links_to_is_not_held(make_server, origin):
    origin.add(f"/mirror/{DIGESTS[0]}", PRIVATE[0])
    server = make_server(settings={
        "engine.mirrors": [origin.url("/mirror/{sha256}")],
        "catalog": [{"id": "pinned", "url": origin.url("/pinned.bin"), "sha256": DIGESTS[1]}],
    })
    owner, other = make_account(server, "owner"), make_account(server, "other")
    download(owner, server, origin, "/first.bin", PRIVATE[0], "first.url")
    origin.add("/pinned.bin", PRIVATE[1])
    drop(owner, server, "pinned.id", b"pinned\n")
    task_for(owner, server, "pinned.id", ("done",))
    download(owner, server, origin, "/third.bin", PRIVATE[2], "third.url")
    wait_for(lambda: all(t["sha256"] for t in tasks_of(owner, server)), message="all filed")
    for name in ("first.bin", "pinned.bin", "third.bin"):  # an ID names its file after its URL
        assert owner.session.delete(server.dav(f"downloads/{name}")).status_code == 204
    drop(other, server, "mirror.id", f"sha256:{DIGESTS[0]}\n".encode())
    drop(other, server, "pinned.id", b"pinned\n")
    drop(other, server, "fresh.url", url_shortcut(origin.url("/third.bin")))
    for trigger in ("mirror.id", "pinned.id", "fresh.url"):
        assert task_for(other, server, trigger, ("done",))["instant"] is False, trigger


def test_the_url_behind_a_catalog_id_is_the_same_fresh_url_both_ways(make_server, origin):
    origin.add("/catalogued.bin", PRIVATE[0])
    origin.add("/linked.bin", PRIVATE[1])
    origin.add("/pinned.bin", PRIVATE[2])
    server = make_server(settings={"catalog": [
        {"id": "by-catalog", "url": origin.url("/catalogued.bin")},
        {"id": "later-id", "url": origin.url("/linked.bin"), "filename": "from-id.bin"},
        {"id": "pinned", "url": origin.url("/pinned.bin"), "sha256": DIGESTS[2]},
    ]})
    first, second = make_account(server, "first"), make_account(server, "second")
    drop(first, server, "c.id", b"by-catalog\n")
    drop(first, server, "pinned.id", b"pinned\n")
    drop(first, server, "l.url", url_shortcut(origin.url("/linked.bin")))
    for trigger in ("c.id", "pinned.id", "l.url"):
        task_for(first, server, trigger, ("done",))
    cases = [  # (trigger, data, file name, content)
        ("c.url", url_shortcut(origin.url("/catalogued.bin")), "catalogued.bin", PRIVATE[0]),
        ("l.id", b"later-id\n", "from-id.bin", PRIVATE[1]),
        ("p.url", url_shortcut(origin.url("/pinned.bin")), "pinned.bin", PRIVATE[2]),
    ]
    for trigger, data, name, body in cases:
        drop(second, server, trigger, data)
        task = task_for(second, server, trigger, ("done",))
        assert task["instant"] is True, task
        assert (server.space(second.name) / "downloads" / name).read_bytes() == body
    conditional = [r for r in origin.requests if r.headers.get("If-None-Match")]
    assert {r.path for r in conditional} >= {"/catalogued.bin", "/linked.bin", "/pinned.bin"}
    assert all(r.body_bytes_sent == 0 for r in conditional)
    origin.change("/catalogued.bin", b"a new version")
    drop(second, server, "again.id", b"by-catalog\nfilename=again.bin\n")
    assert task_for(second, server, "again.id", ("done",))["instant"] is False
    assert (server.space(second.name) / "downloads" / "again.bin").read_bytes() == b"a new version"


# --- sha256= is honoured on every path -----------------------------------------------------------


def test_a_wrong_sha256_fails_on_every_delivery_path_and_a_right_one_succeeds(make_server, origin):
    origin.add(f"/mirror/{DIGESTS[2]}", PRIVATE[2])
    server = make_server(settings={
        "engine.mirrors": [origin.url("/mirror/{sha256}")],
        "catalog": [{"id": "pinned", "url": origin.url("/pinned.bin"), "sha256": DIGESTS[1]}], **BRIEF_LINGER,
    })
    owner, other = make_account(server, "owner"), make_account(server, "other")
    download(owner, server, origin, "/fresh.bin", PRIVATE[0], "fresh.url")
    origin.add("/pinned.bin", PRIVATE[1])
    drop(owner, server, "pinned.id", b"pinned\n")
    task_for(owner, server, "pinned.id", ("done",))
    download(owner, server, origin, "/third.bin", PRIVATE[2], "third.url")
    paths = {  # path: (trigger suffix, trigger body given a sha256= value, digest)
        "fresh-url": (".url", lambda sha: url_shortcut(origin.url("/fresh.bin"), sha256=sha, filename="f.bin"), DIGESTS[0]),
        "catalog": (".id", lambda sha: f"pinned\nsha256={sha}\nfilename=c.bin\n".encode(), DIGESTS[1]),
        "mirror": (".id", lambda sha: f"sha256:{DIGESTS[2]}\nsha256={sha}\nfilename=m.bin\n".encode(), DIGESTS[2]),
    }
    for label, (suffix, body, digest) in paths.items():
        drop(other, server, f"wrong-{label}{suffix}", body(WRONG))
        task = task_for(other, server, f"wrong-{label}{suffix}", ("failed", "done"))
        assert task["state"] == "failed" and "checksum mismatch" in task["error"], (label, task)
        assert "checksum mismatch" in error_file(server, other.name, f"wrong-{label}{suffix}")
        assert all(f.startswith("wrong-") for f in files_in(server.space(other.name) / "downloads")), label
    for label, (suffix, body, digest) in paths.items():
        drop(other, server, f"right-{label}{suffix}", body(digest.upper()))
        task = task_for(other, server, f"right-{label}{suffix}", ("done", "failed"))
        assert task["state"] == "done" and task["instant"] is True, (label, task)
    wait_for(lambda: sorted(f for f in files_in(server.space(other.name) / "downloads") if not f.startswith("wrong-")) == [
        "c.bin", "f.bin", "m.bin"], message="only the files (the triggers linger a moment)")


def test_a_sha256_line_that_contradicts_the_id_fails_before_anything_is_fetched(make_server, origin):
    origin.add(f"/mirror/{DIGESTS[0]}", PRIVATE[0])
    origin.add("/pinned.bin", PRIVATE[1])
    server = make_server(settings={
        "engine.mirrors": [origin.url("/mirror/{sha256}")],
        "catalog": [{"id": "pinned", "url": origin.url("/pinned.bin"), "sha256": DIGESTS[1]}],
    })
    user = make_account(server, "user")
    drop(user, server, "m.id", f"sha256:{DIGESTS[0]}\nsha256={WRONG}\n".encode())
    drop(user, server, "c.id", f"pinned\nsha256={WRONG}\n".encode())
    for trigger in ("m.id", "c.id"):
        assert "checksum mismatch" in task_for(user, server, trigger, ("failed",))["error"]
    assert origin.requests == []
    wait_for(lambda: files_in(server.space(user.name) / "downloads") == ["c.id", "c.id.error.txt", "m.id", "m.id.error.txt"],
             message="both triggers and their error files")


# --- a retry never copies twice ------------------------------------------------------------------


def test_retrying_a_failure_that_a_later_upload_made_good_copies_nothing_and_it_leaves_the_views(server, alice, origin):
    broken = {name: origin.add(f"/later/{name}", PRIVATE[n], status=404) for n, name in enumerate(("a.bin", "b.bin"))}
    added = fetchdrive("--config", str(server.config_path), "catalog", "add", "later-id", origin.url("/later/b.bin"),
                       "--filename", "b.bin")
    assert added.returncode == 0, added.stderr
    triggers = {"a.url": url_shortcut(origin.url("/later/a.bin")), "b.id": b"later-id\n"}
    for trigger, data in triggers.items():
        drop(alice, server, trigger, data)
    old = {trigger: task_for(alice, server, trigger, ("failed",)) for trigger in triggers}
    api_old = alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/later/a.bin"), "filename": "api.bin"}).json()
    wait_for(lambda: alice.session.get(server.url(f"/api/v1/tasks/{api_old['id']}")).json()["state"] == "failed", message="API failure")
    status = alice.session.get(server.dav("downloads/fetchdrive-status.txt")).text
    assert status.count(": failed:") == 3, status
    for resource in broken.values():
        resource.status = 200
    for trigger, data in triggers.items():
        drop(alice, server, trigger, data)
        task_for(alice, server, trigger, ("done",))
    api_new = alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/later/a.bin"), "filename": "api.bin"}).json()
    wait_for(lambda: alice.session.get(server.url(f"/api/v1/tasks/{api_new['id']}")).json()["state"] == "done", message="API done")
    before = ["a.bin", "api.bin", "b.bin"]
    wait_for(lambda: files_in(server.space(alice.name) / "downloads") == before, message="the files (the triggers linger a moment)")
    listed = {t["id"] for t in tasks_of(alice, server)}
    for task_id in [t["id"] for t in old.values()] + [api_old["id"]]:
        assert task_id not in listed
        shown = alice.session.get(server.url(f"/api/v1/tasks/{task_id}")).json()
        assert shown["state"] == "failed" and shown["superseded_by"] is not None
        retried = alice.session.post(server.url(f"/api/v1/tasks/{task_id}/retry"))
        assert retried.status_code == 409 and "needs no retry" in retried.json()["error"], retried.text
    status = alice.session.get(server.dav("downloads/fetchdrive-status.txt"))
    assert status.status_code == 404 or "failed" not in status.text
    assert files_in(server.space(alice.name) / "downloads") == before


def test_retrying_a_failure_while_a_newer_upload_of_its_trigger_runs_starts_nothing(server, alice, origin):
    resource = origin.add("/slow.bin", PRIVATE[0], status=404)
    drop(alice, server, "slow.url", url_shortcut(origin.url("/slow.bin")))
    old = task_for(alice, server, "slow.url", ("failed",))
    resource.status, resource.rate = 200, 30_000
    drop(alice, server, "slow.url", url_shortcut(origin.url("/slow.bin")))
    task_for(alice, server, "slow.url", ("downloading",))
    retried = alice.session.post(server.url(f"/api/v1/tasks/{old['id']}/retry"))
    assert retried.status_code == 409 and "needs no retry" in retried.json()["error"], retried.text
    resource.rate = None  # the pace kept the new upload running for the retry above
    task_for(alice, server, "slow.url", ("done",))
    wait_for(lambda: files_in(server.space(alice.name) / "downloads") == ["slow.bin"], message="one file, the trigger gone")


def test_the_dashboard_drops_a_failure_once_a_later_upload_made_it_good(browser, server, alice, origin):
    resource = origin.add("/fixed.bin", PRIVATE[0], status=404)
    drop(alice, server, "fixed.url", url_shortcut(origin.url("/fixed.bin")))
    task_for(alice, server, "fixed.url", ("failed",))
    page = open_page(browser, server, alice)
    expect(page.locator("li.task[data-state=failed]")).to_have_count(1)
    resource.status = 200
    drop(alice, server, "fixed.url", url_shortcut(origin.url("/fixed.bin")))
    expect(page.locator("li.task[data-state=done]")).to_have_count(1)
    expect(page.locator("li.task[data-state=failed]")).to_have_count(0)
    wait_for(lambda: files_in(server.space(alice.name) / "downloads") == ["fixed.bin"], message="one file, the trigger gone")
