"""Devices (SPEC 6): `sync --device` registers a machine, and a finished file sent to named
devices (by a trigger's `send-to=` line or the API) reaches those and no others."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect

from tests import forked_cli
from tests.conftest import Account
from tests.forked_cli import ForkedProcess, fetchdrive
from tests.downloads_helpers import url_shortcut, wait_for
from tests.sse_helpers import Listener
from tests.test_client_commands import tree
from tests.browser import open_page


# One worker runs the whole file (--dist loadgroup), so each of its shared servers starts once, not once a worker.
pytestmark = [pytest.mark.shared_server(settings={"events.keepalive": 0.5}), pytest.mark.xdist_group("test_devices")]


def _device(server, account: Account, name: str, local: Path, *extra: str) -> list[str]:
    return ["sync", "--server", server.base_url, "--user", account.name, "--device", name, *extra, str(local)]


def _env(account: Account) -> dict[str, str]:
    return {**os.environ, "FETCHDRIVE_PASSWORD": account.password}


def _run_once(server, account: Account, name: str, local: Path) -> subprocess.CompletedProcess:
    return fetchdrive(*_device(server, account, name, local), env=_env(account), timeout=120)


def _devices(account: Account, server) -> dict[str, dict]:
    return {device["name"]: device for device in account.session.get(server.url("/api/v1/devices")).json()}


@pytest.fixture
def watching(server, tmp_path):
    """Start `sync --device NAME --watch` processes (forked: tests/forked_cli.py); all are
    stopped at the end."""
    started: list[ForkedProcess] = []

    def start(account: Account, name: str) -> Path:
        local = tmp_path / f"{account.name}-{name}"
        started.append(forked_cli.start(_device(server, account, name, local, "--watch", "3600"), env=_env(account),
                                        stdout=tmp_path / f"{account.name}-{name}.log"))
        return local

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def test_a_trigger_sends_its_file_to_the_named_devices_only(server, alice, origin, watching):
    folders = {name: watching(alice, name) for name in ("laptop", "phone", "tablet")}
    wait_for(lambda: len(_devices(alice, server)) == 3 and all(d["online"] for d in _devices(alice, server).values()),
             timeout=60, message="three devices registered and following their streams")
    body = os.urandom(200_000)
    origin.add("/film.mkv", body)
    trigger = url_shortcut(origin.url("/film.mkv"), **{"send-to": "laptop, phone"})
    assert alice.session.put(server.dav("downloads/film.url"), data=trigger).status_code == 201
    for name in ("laptop", "phone"):
        wait_for(lambda: tree(folders[name]).get("film.mkv") == body, message=f"film.mkv on {name}")
    wait_for(lambda: all(device["pending"] == 0 for device in _devices(alice, server).values()),
             message="every delivery acknowledged")
    assert tree(folders["tablet"]) == {}
    assert sorted(tree(folders["laptop"])) == ["film.mkv"]  # under its own name, nothing partial beside it


def test_the_api_sends_a_file_to_one_device_and_another_users_devices_hear_nothing(server, alice, bob, watching):
    laptop = watching(alice, "laptop")
    bobs_laptop = watching(bob, "laptop")  # the same name, another user
    wait_for(lambda: "laptop" in _devices(alice, server) and "laptop" in _devices(bob, server),
             message="both registered")
    alice.session.put(server.dav("notes.txt"), data=b"for my laptop")
    response = alice.session.post(server.url("/api/v1/devices/laptop/send"), json={"path": "notes.txt"})
    assert response.status_code == 201 and response.json()["path"] == "notes.txt"
    wait_for(lambda: tree(laptop).get("notes.txt") == b"for my laptop", message="notes.txt on alice's laptop")
    wait_for(lambda: _devices(alice, server)["laptop"]["pending"] == 0, message="delivery acknowledged")
    assert tree(bobs_laptop) == {}


def test_a_device_offline_when_its_download_finishes_receives_it_when_it_starts(server, alice, origin, tmp_path):
    local = tmp_path / "desk"
    first = _run_once(server, alice, "desk", local)  # registers, then goes away
    assert first.returncode == 0, first.stderr
    origin.add("/report.pdf", b"%PDF report")
    alice.session.put(server.dav("downloads/report.url"),
                      data=url_shortcut(origin.url("/report.pdf"), **{"send-to": "desk"}))
    wait_for(lambda: (server.space(alice.name) / "downloads" / "report.pdf").exists(), message="the download")
    wait_for(lambda: _devices(alice, server)["desk"]["pending"] == 1, message="a delivery waiting")
    assert tree(local) == {}
    second = _run_once(server, alice, "desk", local)
    assert second.returncode == 0, second.stderr
    assert tree(local) == {"report.pdf": b"%PDF report"}
    assert _devices(alice, server)["desk"]["pending"] == 0 and not _devices(alice, server)["desk"]["online"]
    assert _devices(alice, server)["desk"]["last_seen"] >= _devices(alice, server)["desk"]["created_at"]


# The tables below are checked by one pair of users each: their requests are refused and
# change nothing (a pair for each row made these tests most of this file's time).

def test_sending_to_a_device_the_user_does_not_have_is_a_404(server, alice, bob):
    assert bob.session.put(server.url("/api/v1/devices/bobs-phone")).status_code == 201
    assert alice.session.put(server.url("/api/v1/devices/laptop")).status_code == 201
    alice.session.put(server.dav("a.txt"), data=b"a")
    for name in ("ghost", "bobs-phone", "laptop2"):
        response = alice.session.post(server.url(f"/api/v1/devices/{name}/send"), json={"path": "a.txt"})
        never_made = alice.session.post(server.url("/api/v1/devices/never-made/send"), json={"path": "a.txt"})
        assert response.status_code == never_made.status_code == 404, name
        assert response.json()["error"].startswith(f"no device {name!r}")
        # Another user's device is as unknown as one never made: the same answer, name for name.
        assert response.json()["error"].replace(name, "N") == never_made.json()["error"].replace("never-made", "N")


BAD_DEVICE_REQUESTS = [  # (path, body, status)
    ("/api/v1/devices/laptop/send", {"path": "missing.txt"}, 404),
    ("/api/v1/devices/laptop/send", {"path": "../bob/a.txt"}, 400),
    ("/api/v1/devices/laptop/send", {"path": "downloads"}, 404),
    ("/api/v1/devices/laptop/send", {"file": "a.txt"}, 400),
    ("/api/v1/devices/bad%20name/send", {"path": "a.txt"}, 400),
    ("/api/v1/devices/laptop/ack", {"delivery": 999}, 404),
    ("/api/v1/devices/laptop/ack", {"delivery": "one"}, 400),
]


def test_bad_device_requests_get_a_precise_4xx(server, alice, bob):
    bob.session.put(server.dav("a.txt"), data=b"bob's")
    alice.session.put(server.url("/api/v1/devices/laptop"))
    for path, body, status in BAD_DEVICE_REQUESTS:
        response = alice.session.post(server.url(path), json=body)
        assert response.status_code == status and response.json()["error"], (path, body)
    assert _devices(alice, server)["laptop"]["pending"] == 0


def test_a_trigger_naming_an_unknown_device_gets_an_error_file_and_no_task(server, alice, bob, origin):
    bob.session.put(server.url("/api/v1/devices/bobs-phone"))
    alice.session.put(server.url("/api/v1/devices/laptop"))
    origin.add("/x.bin", b"x")
    for number, send_to in enumerate(["ghost", "laptop,ghost", "bobs-phone"]):
        trigger = f"x{number}.url"
        alice.session.put(server.dav(f"downloads/{trigger}"), data=url_shortcut(origin.url("/x.bin"), **{"send-to": send_to}))
        error_file = server.space(alice.name) / "downloads" / f"{trigger}.error.txt"
        text = wait_for(lambda: error_file.exists() and error_file.read_text(), message=f"the error file of {send_to}")
        unknown = [name for name in send_to.split(",") if name != "laptop"]
        assert all(name in text for name in unknown) and "bob" not in text.replace("bobs-phone", ""), send_to
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []
    assert origin.count("/x.bin") == 0


def test_sync_with_a_malformed_device_name_stops_with_one_line(server, alice, tmp_path):
    result = _run_once(server, alice, "not/allowed", tmp_path / "x")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("fetchdrive: error: ")


def test_the_web_page_sends_a_finished_file_to_a_chosen_device(browser, server, alice, origin):
    for name in ("laptop", "phone"):
        alice.session.put(server.url(f"/api/v1/devices/{name}"))
    origin.add("/song.ogg", b"ogg" * 100)
    alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/song.ogg")})
    page = open_page(browser, server, alice)
    task = page.locator("li.task").first
    expect(task).to_have_attribute("data-state", "done")
    task.get_by_label("Send to device").select_option("phone")
    expect(page.locator("#message")).to_have_text("Sent song.ogg to phone")
    devices = _devices(alice, server)
    assert devices["phone"]["pending"] == 1 and devices["laptop"]["pending"] == 0


def test_a_new_user_of_a_removed_users_name_inherits_no_events_and_no_devices(server):
    dana = server.unused_user_name("dana")
    server.add_user(dana, "dana-password-1")
    old = server.session(dana, "dana-password-1")
    old.put(server.url("/api/v1/devices/old-laptop"))
    old.put(server.dav("secret-plans.txt"), data=b"x")
    assert server.cli("user", "remove", dana).returncode == 0
    server.add_user(dana, "dana-password-2")
    new = server.session(dana, "dana-password-2")
    assert new.get(server.url("/api/v1/devices")).json() == []
    listener = Listener(new, server.base_url, last_id=1)  # a number of the old user's
    try:
        resync = listener.wait_for("resync")
        wait_for(lambda: listener.keepalives >= 1, message="a keep-alive after the resync")
    finally:
        listener.close()
    assert resync.id == 0 and [event.kind for event in listener.events()] == ["resync"]


HOSTILE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def test_hostile_device_names_and_bodies_never_cause_a_server_error(server, alice):
    alice.session.put(server.url("/api/v1/devices/laptop"))
    alice.session.put(server.dav("a.txt"), data=b"a")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["laptop", "ghost"]) | st.text(min_size=1, max_size=70),
           st.sampled_from(["", "/send", "/ack", "/deliveries"]),
           st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
           st.fixed_dictionaries({}, optional={"path": HOSTILE_JSON | st.text(max_size=60), "delivery": HOSTILE_JSON})
           | HOSTILE_JSON)
    def request(name, action, method, body):
        url = server.url("/api/v1/devices/" + quote(name, safe="") + action)
        response = alice.session.request(method, url, data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (name, action, method, body, response.text)
        assert "Traceback" not in response.text

    request()
    assert alice.session.get(server.url("/api/v1/me")).status_code == 200


def test_a_delivered_file_never_replaces_a_local_file_of_the_same_name(server, alice, tmp_path):
    local = tmp_path / "desk"
    assert _run_once(server, alice, "desk", local).returncode == 0
    (local / "notes.txt").write_bytes(b"the user's own notes")
    alice.session.put(server.dav("notes.txt"), data=b"sent notes")
    for _ in range(2):
        assert alice.session.post(server.url("/api/v1/devices/desk/send"), json={"path": "notes.txt"}).status_code == 201
    result = _run_once(server, alice, "desk", local)
    assert result.returncode == 0, result.stderr
    assert tree(local) == {"notes.txt": b"the user's own notes", "notes (1).txt": b"sent notes",
                           "notes (2).txt": b"sent notes"}
