"""Origins that need a login (SPEC 4c): `user:pass@` in a link, `header=` lines, the user's own
`.fetchdrive/netrc` and `.fetchdrive/cookies.txt`. Each login reaches its own host only (never
the host a redirect leads to), is never shown or logged, a refused login says so, and content
fetched with one user's login never reaches a user the origin refuses (SPEC 5)."""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from tests.conftest import Account
from tests.downloads_helpers import url_shortcut, wait_for
from tests.origin import Origin
from tests.server_process import PASSWORDS_USED
from tests.test_store_trust import drop, error_file, make_account, task_for, tasks_of

_serial = itertools.count()

pytestmark = pytest.mark.shared_server


def secret(kind: str) -> str:
    """A fresh secret, searched for in every log and error file of the run afterwards."""
    value = f"{kind}-s3cr3t-{next(_serial)}-{os.urandom(4).hex()}"
    PASSWORDS_USED.add(value)
    return value


@dataclass
class Way:
    """One way of giving a login: what the origin demands, and what the user writes where."""

    name: str
    password: str

    def demand(self) -> dict:
        """The Resource options of an origin that wants this login."""
        if self.name in ("userinfo", "netrc"):
            return {"basic_auth": ("fetcher", self.password)}
        if self.name == "cookie":
            return {"cookie": f"session={self.password}"}
        if self.name == "bearer":
            return {"header": ("Authorization", f"Bearer {self.password}")}
        return {"header": ("X-Api-Key", self.password)}

    def give(self, account: Account, server, url: str, password: str | None = None) -> bytes:
        """Write this login (with `password`, by default the right one) into the user's space
        or the trigger; the trigger's bytes."""
        password = password or self.password
        host = url.split("/")[2].split(":")[0]
        if self.name == "userinfo":
            return url_shortcut(url.replace("://", f"://fetcher:{password}@", 1))
        if self.name == "netrc":
            put_setting(account, server, "netrc", f"machine {host}\n  login fetcher\n  password {password}\n")
        if self.name == "cookie":
            put_setting(account, server, "cookies.txt", f"{host}\tFALSE\t/\tFALSE\t0\tsession\t{password}\n")
        if self.name == "bearer":
            return url_shortcut(url, header=f"Authorization: Bearer {password}")
        if self.name == "header":
            return url_shortcut(url, header=f"X-Api-Key: {password}")
        return url_shortcut(url)

    def traces(self, password: str | None = None) -> list[str]:
        """What would betray the login in a request, a log or an answer."""
        password = password or self.password
        return [password, base64.b64encode(f"fetcher:{password}".encode()).decode()]


WAYS = ["userinfo", "netrc", "cookie", "header", "bearer"]


def put_setting(account: Account, server, name: str, text: str | bytes) -> None:
    """Write `.fetchdrive/<name>` over WebDAV, as a file manager would."""
    account.session.request("MKCOL", server.dav(".fetchdrive/"))
    data = text.encode() if isinstance(text, str) else text
    assert account.session.put(server.dav(f".fetchdrive/{name}"), data=data).status_code in (201, 204)


def carried(origin: Origin, traces: list[str]) -> list[str]:
    """The request headers `origin` received that hold any of `traces`."""
    return [f"{entry.path} {name}" for entry in list(origin.requests) for name, value in entry.headers.items()
            if any(trace in value for trace in traces)]


def answers_of(account: Account, server) -> str:
    """Everything the API and the downloads folder's status view tell `account`."""
    listing = account.session.get(server.url("/api/v1/tasks")).text
    status = account.session.get(server.dav("downloads/fetchdrive-status.txt"))
    return listing + (status.text if status.ok else "")


@pytest.fixture
def other_host() -> Iterator[Origin]:
    """An origin on another host name (127.0.0.2), where redirects lead."""
    with Origin("127.0.0.2") as running:
        yield running


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("body_size", [1, 300_000])
def test_a_login_reaches_its_origin_and_never_the_host_a_redirect_leads_to(server, alice, origin, other_host, way, body_size):
    way = Way(way, secret(way))
    body = os.urandom(body_size)
    origin.add("/direct.bin", body, **way.demand())
    origin.add("/moved.bin", b"", redirect_to=other_host.url("/cdn.bin"), **way.demand())
    other_host.add("/cdn.bin", body[::-1])
    drop(alice, server, "direct.url", way.give(alice, server, origin.url("/direct.bin")))
    drop(alice, server, "moved.url", way.give(alice, server, origin.url("/moved.bin")))
    task_for(alice, server, "direct.url", ("done",))
    task_for(alice, server, "moved.url", ("done",))
    assert (server.space(alice.name) / "downloads" / "direct.bin").read_bytes() == body
    assert (server.space(alice.name) / "downloads" / "cdn.bin").read_bytes() == body[::-1]
    assert carried(origin, way.traces()), "the origin got the login"
    assert other_host.requests and not carried(other_host, way.traces())
    assert not any(name in ("Authorization", "Cookie", "X-Api-Key") for entry in other_host.requests for name in entry.headers)
    answers = answers_of(alice, server)
    assert not any(trace in answers for trace in way.traces()) and "fetcher:" not in answers


@pytest.mark.parametrize("way", ["userinfo", "header", "bearer"])
@pytest.mark.parametrize("scheme_or_port", ["port", "redirect-back"])
def test_a_triggers_login_stays_on_its_scheme_host_and_port(server, alice, origin, way, scheme_or_port):
    """Another port of the same host is another origin; coming back to the origin through it
    brings the login back, but only to the origin."""
    way = Way(way, secret(way))
    with Origin() as other_port:
        origin.add("/file.bin", b"", redirect_to=other_port.url("/file.bin"), **way.demand())
        if scheme_or_port == "port":
            other_port.add("/file.bin", b"from the other port")
        else:
            other_port.add("/file.bin", b"", redirect_to=origin.url("/back.bin"))
            origin.add("/back.bin", b"back home", **way.demand())
        drop(alice, server, "file.url", way.give(alice, server, origin.url("/file.bin")))
        task_for(alice, server, "file.url", ("done",))
        assert other_port.requests and not carried(other_port, way.traces())
    expected = b"from the other port" if scheme_or_port == "port" else b"back home"
    name = "file.bin" if scheme_or_port == "port" else "back.bin"
    assert (server.space(alice.name) / "downloads" / name).read_bytes() == expected


@pytest.mark.parametrize("way", WAYS)
def test_a_wrong_login_says_the_origin_refused_it_without_repeating_it(server, alice, origin, way):
    way = Way(way, secret(way))
    wrong = secret("wrong")
    origin.add("/locked.bin", b"locked content", **way.demand())
    url = origin.url("/locked.bin")
    drop(alice, server, "locked.url", way.give(alice, server, url, password=wrong))
    text = error_file(server, alice.name, "locked.url")
    assert "refused the login" in text and "127.0.0.1" in text
    task = task_for(alice, server, "locked.url", ("failed",))
    assert task["source"] == url  # shown without userinfo
    answers = answers_of(alice, server) + text + server.log_text()
    assert not any(trace in answers for trace in way.traces(wrong) + way.traces())


@pytest.mark.parametrize("setting", ["netrc", "cookie"])
def test_settings_files_are_read_again_at_each_download(server, alice, origin, setting):
    """Fixed in any file manager (here over WebDAV), a login counts from the next upload, no restart."""
    way = Way(setting, secret(setting))
    origin.add("/members.bin", b"members only", **way.demand())
    url = origin.url("/members.bin")
    trigger = way.give(alice, server, url, password=secret("stale"))
    drop(alice, server, "members.url", trigger)
    assert "refused the login" in error_file(server, alice.name, "members.url")
    way.give(alice, server, url)
    drop(alice, server, "members.url", trigger)
    task_for(alice, server, "members.url", ("done",))
    assert (server.space(alice.name) / "downloads" / "members.bin").read_bytes() == b"members only"


UNUSABLE_FILES = [
    # Python's own messages would quote the stray token: here, the secret.
    ("netrc", "machine 127.0.0.1 login fetcher password x {secret}\n", "not in netrc format near line"),
    ("netrc", "# mine\n{secret} machine 127.0.0.1\n", "not in netrc format near line"),
    ("cookies.txt", "127.0.0.1\tFALSE\t/\tFALSE\tnever\tsession\t{secret}\n", "not a Netscape cookies file"),
    # a value in the expiry's place: http.cookiejar's own warning would log it
    ("cookies.txt", "127.0.0.1\tFALSE\t/\tFALSE\t{secret}\tsession\tvalue\n", "not a Netscape cookies file"),
    ("cookies.txt", "# Netscape HTTP Cookie File\n127.0.0.1 {secret}\n", "not a Netscape cookies file"),
    ("cookies.txt", "\xff{secret}", "not UTF-8"),
]


def test_an_unusable_settings_file_is_named_without_echoing_it(server, origin):
    origin.add("/any.bin", b"anything")
    for number, (name, text, says) in enumerate(UNUSABLE_FILES):
        account, hidden = make_account(server, f"user{number}"), secret("file")
        data = text.replace("{secret}", hidden).encode("latin-1" if "\xff" in text else "utf-8")
        put_setting(account, server, name, data)
        drop(account, server, "any.url", url_shortcut(origin.url("/any.bin")))
        error = error_file(server, account.name, "any.url")
        assert f".fetchdrive/{name}" in error and says in error and hidden not in error, (name, text, error)
        assert hidden not in answers_of(account, server)
    assert not origin.requests


BAD_HEADER_LINES = [
    "Host: evil.example", "Content-Length: 0", "Transfer-Encoding: chunked", "Connection: close",
    "Range: bytes=0-", "If-Range: x", "If-None-Match: *", "Proxy-Authorization: Basic {secret}",
    "Bad Name: {secret}", "X-Key {secret}", "X-Key: caf\u00e9 {secret}", "X-Key: a\u0001{secret}",
    # a stray line break would end the line early and start a header line of its own
    "X-Key: {secret}\rHost: evil.example", "X-Key: {secret}\x0bHost: evil.example", "X-Key: {secret}\u2028Host: evil",
]


@pytest.mark.parametrize("kind", ["ini", "plain", "desktop", "id"])
def test_a_header_line_that_would_break_the_request_is_refused(server, alice, origin, kind):
    url = origin.url("/x.bin")
    for number, line in enumerate(BAD_HEADER_LINES):
        hidden = secret("header")
        line = line.replace("{secret}", hidden)
        trigger, data = {
            "ini": (f"x{number}.url", url_shortcut(url, header=line)),
            "plain": (f"x{number}.url", f"{url}\nheader={line}\n".encode()),
            "desktop": (f"x{number}.desktop", f"[Desktop Entry]\nType=Link\nURL={url}\nheader={line}\n".encode()),
            "id": (f"x{number}.id", f"some-id\nheader={line}\n".encode()),
        }[kind]
        drop(alice, server, trigger, data)
        error = error_file(server, alice.name, trigger)
        assert ("header" in error or "line break" in error) and hidden not in error and "evil" not in error, (line, error)
    assert not origin.requests


@pytest.mark.parametrize("way", WAYS)
def test_content_fetched_with_a_login_never_reaches_a_user_the_origin_refuses(server, origin, way):
    """Alice fetches with her login; Bob drops the same URL without one: the origin, asked
    about freshness with Bob's own (no) login, refuses him, and he gets an error, not her file.
    Carol, with a login of her own, gets it from the store without a transfer."""
    way = Way(way, secret(way))
    alice, bob, carol = (make_account(server, name) for name in ("alice", "bob", "carol"))
    body = os.urandom(200_000)
    origin.add("/paid.bin", body, **way.demand())
    url = origin.url("/paid.bin")
    drop(alice, server, "paid.url", way.give(alice, server, url))
    task_for(alice, server, "paid.url", ("done",))
    drop(bob, server, "paid.url", url_shortcut(url))
    error = error_file(server, bob.name, "paid.url")
    assert "HTTP 40" in error
    assert not (server.space(bob.name) / "downloads" / "paid.bin").exists()
    assert not any(t["state"] == "done" for t in tasks_of(bob, server))
    sent = origin.bytes_sent("/paid.bin")
    drop(carol, server, "paid.url", way.give(carol, server, url))
    task = task_for(carol, server, "paid.url", ("done",))
    assert task["instant"] and origin.bytes_sent("/paid.bin") == sent
    assert (server.space(carol.name) / "downloads" / "paid.bin").read_bytes() == body


def test_a_login_is_never_in_the_log_api_or_error_files_of_a_busy_run(server, alice, origin):
    """Many tasks, all ways at once, some failing: the secrets appear nowhere the user or an
    operator can read (the suite-wide check also searches every log and error file)."""
    ways = [Way(name, secret(name)) for name in WAYS]
    for number, way in enumerate(ways):
        origin.add(f"/ok{number}.bin", os.urandom(1000), **way.demand())
        drop(alice, server, f"ok{number}.url", way.give(alice, server, origin.url(f"/ok{number}.bin")))
        task_for(alice, server, f"ok{number}.url", ("done",))
    origin.add("/gone.bin", b"", status=404)
    drop(alice, server, "gone.url", ways[0].give(alice, server, origin.url("/gone.bin")))
    error_file(server, alice.name, "gone.url")
    seen = answers_of(alice, server) + server.log_text()
    for path in server.space(alice.name).rglob("*.error.txt"):
        seen += path.read_text()
    for way in ways:
        assert not any(trace in seen for trace in way.traces())


@pytest.mark.parametrize("password", ["plain", "with:colon", "p@ss/word"])
def test_a_link_with_a_login_given_to_the_api_is_shown_and_kept_without_it(server, alice, origin, password):
    hidden = secret(password)
    origin.add("/api.bin", b"through the api", basic_auth=("fetcher", hidden))
    login = "fetcher:" + quote(hidden, safe="")
    url = origin.url("/api.bin")
    answer = alice.session.post(server.url("/api/v1/tasks"), json={"url": url.replace("://", f"://{login}@", 1)})
    assert answer.status_code == 201 and answer.json()["source"] == url
    wait_for(lambda: alice.session.get(server.url(f"/api/v1/tasks/{answer.json()['id']}")).json()["state"] == "done")
    assert (server.space(alice.name) / "downloads" / "api.bin").read_bytes() == b"through the api"
    assert hidden not in answers_of(alice, server) + server.log_text()
