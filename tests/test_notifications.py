"""Notifications (SPEC 6): Apprise URLs in `.fetchdrive/notify.txt`, one message per finished or
failed download, off the download's path, within the address rules, secrets never shown."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from playwright.sync_api import expect

from tests.browser import open_page
from tests.conftest import new_account
from tests.downloads_helpers import url_shortcut, wait_for
from tests.server_process import PASSWORDS_USED

pytestmark = pytest.mark.shared_server
SECRET = "notify-secret-7f3a"
PASSWORDS_USED.add(SECRET)


@dataclass
class Receiver:
    """A loopback endpoint for Apprise's `json://`: records every message; the first
    `fail_first` POSTs get a 500, and `hang` makes it never answer."""

    host: str = "127.0.0.1"
    fail_first: int = 0
    hang: bool = False
    redirect_to: str | None = None
    messages: list[dict] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.attempts += 1
                if receiver.hang:
                    time.sleep(30)
                    return
                if receiver.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.messages.append({**json.loads(body), "authorization": self.headers.get("Authorization")})
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, user: str = "me") -> str:
        return f"json://{user}:{SECRET}@{self.host}:{self._server.server_address[1]}/hook"

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def write_targets(server, account, *urls: str) -> None:
    account.session.request("MKCOL", server.dav(".fetchdrive/"))
    response = account.session.put(server.dav(".fetchdrive/notify.txt"), data=("# mine\n\n" + "\n".join(urls)).encode())
    assert response.status_code in (201, 204)


def test_a_finished_and_a_failed_download_each_send_one_message(server, alice, origin, receiver):
    write_targets(server, alice, receiver.url())
    origin.add("/report.pdf", b"%PDF" * 1000)
    origin.add("/gone.bin", b"", status=404)
    alice.session.put(server.dav("downloads/good.url"), data=url_shortcut(origin.url("/report.pdf")))
    alice.session.put(server.dav("downloads/bad.url"), data=url_shortcut(origin.url("/gone.bin")))
    wait_for(lambda: len(receiver.messages) == 2, message="two notifications")
    time.sleep(1)
    assert len(receiver.messages) == 2
    done = next(m for m in receiver.messages if "report.pdf" in m["title"])
    failed = next(m for m in receiver.messages if "failed" in m["title"])
    assert "ready" in done["title"] and "3.9 KiB" in done["message"] and "downloads/" in done["message"]
    assert "404" in failed["message"]
    assert all(SECRET not in json.dumps(m) for m in receiver.messages)


def test_each_user_is_told_only_of_their_own_downloads(server, alice, bob, origin):
    receivers = {alice.name: Receiver(), bob.name: Receiver()}
    try:
        for account in (alice, bob):
            write_targets(server, account, receivers[account.name].url(account.name))
            origin.add(f"/{account.name}.txt", account.name.encode() * 10)
            account.session.put(server.dav(f"downloads/{account.name}.url"), data=url_shortcut(origin.url(f"/{account.name}.txt")))
        for name, receiver in receivers.items():
            wait_for(lambda receiver=receiver: receiver.messages, message=f"{name}'s notification")
        time.sleep(1)
        for name, receiver in receivers.items():
            assert [m["title"] for m in receiver.messages] == [f"fetchdrive: {name}.txt is ready"]
    finally:
        for receiver in receivers.values():
            receiver.stop()


def test_a_failing_target_is_retried_and_never_holds_up_a_download(server, alice, origin):
    flaky, hanging = Receiver(fail_first=1), Receiver(hang=True)
    try:
        write_targets(server, alice, hanging.url(), flaky.url())
        for number in range(3):
            origin.add(f"/f{number}.bin", b"x" * 1000)
            alice.session.put(server.dav(f"downloads/f{number}.url"), data=url_shortcut(origin.url(f"/f{number}.bin")))
        for number in range(3):
            wait_for((server.space(alice.name) / "downloads" / f"f{number}.bin").exists, message=f"f{number}.bin")
        wait_for(lambda: hanging.attempts >= 1, message="the hanging target tried")
    finally:
        hanging.stop()
    wait_for(lambda: len(flaky.messages) == 3, timeout=60, message="three messages through the flaky target")
    assert flaky.attempts == 4
    flaky.stop()


def guarded(allowlist: list[str]) -> dict:
    """Settings of a server that fetches from no private address but those of `allowlist`."""
    return {"engine.allow_private_networks": False, "engine.private_allowlist": allowlist}


@pytest.mark.parametrize("allowlist, reachable", [([], set()), (["127.0.0.1/32"], {"127.0.0.1"})])
def test_targets_obey_the_address_rules(shared_servers, allowlist, reachable):
    server = shared_servers(guarded(allowlist))
    session = new_account(server, "carol", "carol-password").session
    receivers = [Receiver("127.0.0.1"), Receiver("127.0.0.2")]
    try:
        session.request("MKCOL", server.dav(".fetchdrive/"))
        session.put(server.dav(".fetchdrive/notify.txt"), data="\n".join(r.url() for r in receivers).encode())
        results = session.post(server.base_url + "/api/v1/notifications/test").json()["results"]
        assert [r["ok"] for r in results] == [r.host in reachable for r in receivers]
        for result, receiver in zip(results, receivers):
            assert bool(receiver.messages) == (receiver.host in reachable)
            if not result["ok"]:
                assert "loopback" in result["error"] and SECRET not in result["error"]
    finally:
        for receiver in receivers:
            receiver.stop()


def test_a_target_cannot_redirect_a_message_past_the_address_rules(shared_servers):
    server = shared_servers(guarded(["127.0.0.1/32"]))
    session = new_account(server, "carol", "carol-password").session
    inside = Receiver("127.0.0.2")
    door = Receiver("127.0.0.1", redirect_to=f"http://127.0.0.2:{inside._server.server_address[1]}/hook")
    try:
        session.request("MKCOL", server.dav(".fetchdrive/"))
        session.put(server.dav(".fetchdrive/notify.txt"), data=door.url().encode())
        results = session.post(server.base_url + "/api/v1/notifications/test").json()["results"]
        assert door.attempts == 1 and not results[0]["ok"]
        assert inside.attempts == 0
    finally:
        door.stop()
        inside.stop()


def test_the_api_shows_targets_masked_and_sends_a_test(server, alice, bob, receiver):
    assert alice.session.get(server.base_url + "/api/v1/notifications").json() == {"targets": []}
    answer = alice.session.post(server.base_url + "/api/v1/notifications/test")
    assert answer.status_code == 409 and ".fetchdrive/notify.txt" in answer.json()["error"]
    write_targets(server, alice, receiver.url(), "tgram://123456789:AAbbCCddEEff/1234/", "nonsense://what")
    targets = alice.session.get(server.base_url + "/api/v1/notifications").json()["targets"]
    assert len(targets) == 3 and targets[0].startswith("json://me:") and "127.0.0.1" in targets[0]
    assert "not a notification URL" in targets[2]
    assert not any(SECRET in t or "AAbbCCddEEff" in t for t in targets)
    write_targets(server, alice, receiver.url(), "nonsense://what")  # nothing beyond loopback is sent to
    results = alice.session.post(server.base_url + "/api/v1/notifications/test").json()["results"]
    assert results[0] == {"target": targets[0], "ok": True, "error": None}
    assert not results[1]["ok"] and "Apprise" in results[1]["error"]
    assert receiver.messages[0]["title"] == "fetchdrive: test message"
    assert bob.session.get(server.base_url + "/api/v1/notifications").json() == {"targets": []}
    assert SECRET not in server.log_path.read_text()


def test_the_page_shows_the_targets_masked_and_sends_a_test(browser, server, alice, receiver):
    write_targets(server, alice, receiver.url())
    page = open_page(browser, server, alice)
    page.goto(server.url("/#shares"))
    target = page.locator("#notify-targets li")
    expect(target).to_have_count(1)
    assert "127.0.0.1" in target.inner_text() and SECRET not in page.content()
    page.click("#notify-test")
    expect(page.locator("#message")).to_contain_text("Test message sent to 1 target")
    assert receiver.messages[0]["title"] == "fetchdrive: test message"
