"""`GET /api/v1/events`: each user's own changes, live, resumable, and nobody else's (SPEC 6)."""

from __future__ import annotations

import json
import os

import pytest
import requests
from playwright.sync_api import expect

from tests import forked_cli
from tests.conftest import Account, new_account
from tests.forked_cli import ForkedProcess
from tests.downloads_helpers import url_shortcut, wait_for
from tests.sse_helpers import Listener, free_port
from tests.test_client_commands import tree
from tests.browser import open_page

QUICK = {"events.keepalive": 0.5}  # so that test listeners notice when they are closed
# No test holds more than two streams of one user at once, so the cap's test shares the server.
# One worker runs the whole file (--dist loadgroup), so each of its shared servers starts once, not once a worker.
pytestmark = [pytest.mark.shared_server(settings={**QUICK, "events.max_streams_per_user": 2}),
              pytest.mark.xdist_group("test_events")]


def _work_of(account: Account, server, origin) -> None:
    """Every kind of change one user can make: WebDAV writes, a download that works, one that fails."""
    name, session = account.name, account.session
    assert session.put(server.dav(f"{name}-a.txt"), data=b"1").status_code == 201
    assert session.put(server.dav(f"{name}-a.txt"), data=b"22").status_code == 204
    assert session.request("MKCOL", server.dav(f"{name}-dir")).status_code == 201
    assert session.request("MOVE", server.dav(f"{name}-a.txt"),
                           headers={"Destination": server.dav(f"{name}-dir/{name}-b.txt")}).status_code == 201
    assert session.request("COPY", server.dav(f"{name}-dir/{name}-b.txt"),
                           headers={"Destination": server.dav(f"{name}-c.txt")}).status_code == 201
    assert session.delete(server.dav(f"{name}-c.txt")).status_code == 204
    origin.add(f"/{name}-ok.bin", name.encode() * 100)
    origin.add(f"/{name}-gone.bin", b"", status=404)
    for path in (f"/{name}-ok.bin", f"/{name}-gone.bin"):
        assert session.post(server.url("/api/v1/tasks"), json={"url": origin.url(path)}).status_code == 201
    origin.add(f"/{name}-by-trigger.bin", b"t")
    session.put(server.dav(f"downloads/{name}-trigger.url"), data=url_shortcut(origin.url(f"/{name}-by-trigger.bin")))
    session.put(server.dav(f"downloads/{name}.url"), data=b"not a link")


EXPECTED = [  # (kind, fields) every user's stream must carry for _work_of, with NAME for the user
    ("file.created", {"path": "NAME-a.txt"}),
    ("file.changed", {"path": "NAME-a.txt"}),
    ("file.created", {"path": "NAME-dir", "folder": True}),
    ("file.moved", {"path": "NAME-a.txt", "to": "NAME-dir/NAME-b.txt"}),
    ("file.created", {"path": "NAME-c.txt"}),
    ("file.deleted", {"path": "NAME-c.txt"}),
    ("task.created", {"name": "NAME-ok.bin", "state": "queued"}),
    ("task.done", {"name": "NAME-ok.bin", "path": "downloads/NAME-ok.bin"}),
    ("file.created", {"path": "downloads/NAME-ok.bin"}),
    ("task.failed", {"name": "NAME-gone.bin"}),
    ("file.created", {"path": "downloads/NAME.url.error.txt"}),  # the engine's own files too
    ("file.deleted", {"path": "downloads/NAME-trigger.url"}),
]


def test_each_user_hears_every_kind_of_own_change_and_nothing_of_anyone_elses(server, origin):
    accounts = [new_account(server, name, f"{name}-password-9") for name in ("alice", "bob", "carol")]
    listeners = {account.name: Listener(account.session, server.base_url) for account in accounts}
    try:
        for account in accounts:
            _work_of(account, server, origin)
        for account in accounts:
            listener = listeners[account.name]
            for kind, fields in EXPECTED:
                wanted = {key: value.replace("NAME", account.name) if isinstance(value, str) else value
                          for key, value in fields.items()}
                listener.wait_for(kind, **wanted)
    finally:
        for listener in listeners.values():
            listener.close()
    for account in accounts:
        heard = listeners[account.name].events()
        others = [other.name for other in accounts if other is not account]
        text = json.dumps([event.data for event in heard])
        assert not [other for other in others if other in text], f"{account.name} heard of {others}"
        # Numbers count this user's own events only: 0 (ready), then 1, 2, 3... without gaps.
        numbers = [event.id for event in heard if event.id is not None]
        assert numbers == list(range(len(numbers))), numbers
        failed = [event for event in heard if event.kind == "task.failed"][0]
        assert "404" in failed.data["error"]


def test_a_download_reports_its_progress_as_it_runs(server, alice, origin):
    origin.add("/slow.bin", os.urandom(1024 * 1024), rate=512 * 1024)
    listener = Listener(alice.session, server.base_url)
    try:
        alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/slow.bin")})
        listener.wait_for("task.done", path="downloads/slow.bin")
    finally:
        listener.close()
    progress = listener.events("task.progress")
    assert progress and all(event.id is None for event in progress)  # transient: not resumable
    assert 0 < progress[-1].data["bytes_done"] <= 1024 * 1024


def _put_files(account: Account, server, names: list[str]) -> None:
    for name in names:
        assert account.session.put(server.dav(name), data=name.encode()).status_code == 201


def _resumed(account: Account, server, before: str, away: list[str], after: str, meanwhile=lambda: None) -> Listener:
    """A stream that heard `before`, dropped while `away` were made (then `meanwhile` ran),
    and resumed from its Last-Event-ID until it heard `after`."""
    first = Listener(account.session, server.base_url)
    _put_files(account, server, [before])
    first.wait_for("file.created", path=before)
    first.close()
    _put_files(account, server, away)
    meanwhile()
    second = Listener(account.session, server.base_url, last_id=first.last_id())
    try:
        _put_files(account, server, [after])
        second.wait_for("file.created", path=after)
    finally:
        second.close()
    return second


def test_a_dropped_stream_resumes_with_last_event_id_missing_nothing(server, alice):
    away = [f"while-away-{n}.txt" for n in range(5)]
    second = _resumed(alice, server, "one.txt", away, "after.txt")
    paths = [event.data["path"] for event in second.events("file.created")]
    assert paths == away + ["after.txt"]
    assert not second.events("ready")


def test_a_client_further_behind_than_the_history_is_told_to_resync(make_server):
    server = make_server(settings={**QUICK, "events.history": 10})
    server.add_user("alice", "alice-password")
    alice = Account("alice", "alice-password", server.session("alice", "alice-password"))
    _put_files(alice, server, [f"f{n}.txt" for n in range(15)])
    for stale in (1, 4, 99):  # dropped from the history, and a number never reached
        listener = Listener(alice.session, server.base_url, last_id=stale)
        try:
            resync = listener.wait_for("resync")
        finally:
            listener.close()
        assert resync.id == 15 and not listener.events("file.created")
    listener = Listener(alice.session, server.base_url, last_id=6)  # still kept
    try:
        listener.wait_for("file.created", path="f14.txt")
    finally:
        listener.close()
    assert [event.id for event in listener.events("file.created")] == list(range(7, 16))


def test_an_idle_stream_gets_keep_alive_comments(server, alice):
    listener = Listener(alice.session, server.base_url)
    try:
        wait_for(lambda: listener.keepalives >= 2, message="two keep-alive comments")
    finally:
        listener.close()


def test_a_malformed_last_event_id_gets_400(server, alice):
    for malformed in ("abc", "-1", "1e3", "9" * 40, "²"):
        response = alice.session.get(server.url("/api/v1/events"), headers={"Last-Event-ID": malformed}, timeout=10)
        assert response.status_code == 400 and "Last-Event-ID" in response.json()["error"], malformed


def test_the_stream_needs_a_login(server, alice):
    for auth in (None, (alice.name, "wrong"), ("nobody", alice.password)):
        response = requests.get(server.url("/api/v1/events"), auth=auth, timeout=10)
        assert response.status_code == 401 and "event:" not in response.text, auth


def test_a_user_may_hold_only_so_many_streams(server, alice, bob):
    held = [Listener(alice.session, server.base_url) for _ in range(2)]
    try:
        refused = alice.session.get(server.url("/api/v1/events"), timeout=10)
        assert refused.status_code == 429 and "too many" in refused.json()["error"]
        other = Listener(bob.session, server.base_url)  # others are unaffected
        other.wait_for("ready")
        other.close()
    finally:
        for listener in held:
            listener.close()


def _watch(server, account: Account, local, *extra: str) -> ForkedProcess:
    """`fetchdrive sync` forked (tests/forked_cli.py), its output in a log beside `local`."""
    return forked_cli.start(["sync", "--server", server.base_url, "--user", account.name, *extra, str(local)],
                            env={**os.environ, "FETCHDRIVE_PASSWORD": account.password},
                            stdout=local.parent / f"{local.name}.log")


def test_a_stream_and_sync_watch_resume_across_a_server_restart_missing_nothing(make_server, tmp_path):
    """bob's stream resumes after the restart with what it missed; alice's `sync --watch`
    follows the stream and catches up. (One restarted server for both: each on a server of
    its own cost a start, a restart and a stop more.)"""
    server = make_server(settings={**QUICK, "server.port": free_port()})  # the same port after the restart
    alice, bob = new_account(server, "alice", "alice-password"), new_account(server, "bob", "bob-password-2")
    local = tmp_path / "mirror"
    # A fallback poll of an hour: whatever arrives sooner came by the event stream.
    watcher = _watch(server, alice, local, "--watch", "3600")
    try:
        _put_files(alice, server, ["first.txt"])
        wait_for(lambda: tree(local).get("first.txt") == b"first.txt", message="first file synced")
        _put_files(alice, server, ["second.txt"])
        wait_for(lambda: tree(local).get("second.txt") == b"second.txt", message="a new file synced live")
        second = _resumed(bob, server, "before.txt", ["not-yet-heard.txt"], "after-restart.txt", server.restart)
        assert [event.data["path"] for event in second.events("file.created")] == ["not-yet-heard.txt", "after-restart.txt"]
        _put_files(alice, server, ["after-restart.txt"])
        wait_for(lambda: "after-restart.txt" in tree(local), timeout=60, message="a file put after a restart")
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
    assert sorted(tree(local)) == ["after-restart.txt", "first.txt", "second.txt"]


def test_the_dashboard_follows_the_stream_instead_of_polling(browser, server, alice, origin):
    page = open_page(browser, server, alice)
    expect(page.locator("#user")).to_have_text(alice.name)
    origin.add("/live.bin", b"l" * 1000)
    alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/live.bin")})  # not from the page
    task = page.locator("li.task").first
    expect(task).to_have_attribute("data-state", "done")
    expect(task.locator("a", has_text="Open")).to_have_attribute("href", "/dav/downloads/live.bin")
    page.wait_for_timeout(1000)  # the refreshes the last events asked for
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/api/v1/tasks" in request.url else None)
    page.wait_for_timeout(2000)  # idle: the page used to poll every second, so twice in this while
    assert polls == []
