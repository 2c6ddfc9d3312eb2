"""Malformed requests get short 4xx answers; logins leak nothing; other sites cannot act for a user.

SPEC 3 (malformed requests, equal login time, throttled logins) and 6 (cross-site requests,
anti-framing headers). The browser side of cross-site requests is in test_cross_site.py.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from engine.sqlite_database import SqliteDatabase
from provider.accounts import Accounts
from tests.raw_http import raw_request
from tests.test_client_commands import client


pytestmark = pytest.mark.shared_server


def basic(credentials: bytes) -> bytes:
    return b"Basic " + base64.b64encode(credentials)


MALFORMED_AUTHORIZATION = {
    "not base64": b"Basic !!!!",
    "no colon": basic(b"alice"),
    "credentials not UTF-8": basic(b"\xff\xfe:\xff"),
    "header bytes not ASCII": b"Basic \xff\xfe\xe9",
    "empty": b"",
    "scheme only": b"Basic",
    "scheme and spaces": b"Basic     ",
    "bad padding": basic(b"alice:alice-password")[:-2],
    "only padding": b"Basic ====",
    "bearer": b"Bearer abc.def.ghi",
    "digest": b'Digest username="alice", realm="fetchdrive", nonce="x", uri="/dav/", response="0"',
    "negotiate": b"Negotiate YIIB",
    "huge": b"Basic " + b"QUFB" * 30_000,
    "huge and valid base64": basic(b"alice:" + b"p" * 60_000),
    "NUL bytes": basic(b"al\x00ice:pass\x00word"),
    "empty user": basic(b":alice-password"),
}
TARGETS = ["/dav/", "/dav/downloads/", "/api/v1/me", "/api/v1/tasks", "/"]


def assert_short_plain_answer(answer, *, statuses: set[int]) -> None:
    text = answer.body.decode("utf-8", errors="replace")
    assert answer.status in statuses, (answer.status, text)
    assert len(answer.body) < 300, text
    for leak in ("Traceback", "Error:", "Exception", "<html", "<!DOCTYPE", "wsgidav", "File \""):
        assert leak not in text, text


def test_a_malformed_authorization_header_gets_a_short_401_with_a_challenge(server, alice):
    for name, value in MALFORMED_AUTHORIZATION.items():
        for target in TARGETS:
            answer = raw_request(server.base_url, "GET", target.encode(), {"Authorization": value})
            assert_short_plain_answer(answer, statuses={401})
            assert answer.headers["www-authenticate"].startswith('Basic realm="fetchdrive"'), (name, target)
    assert "Traceback" not in server.log_text()
    assert alice.session.get(server.dav()).status_code == 200


UNDECODABLE_PATHS = [
    b"/dav/%ff%fe", b"/dav/a%c3", b"/dav/%c0%af", b"/dav/downloads/%ed%a0%80.url", b"/dav/%e2%82",
    b"/dav/ok/%80x/y", b"/api/v1/tasks/%ff", b"/%fe", b"/index.html%ff",
]


def test_a_path_that_is_not_utf8_gets_a_400_not_a_dropped_connection(server, alice):
    credentials = {"Authorization": basic(f"{alice.name}:{alice.password}".encode())}
    for method in ("GET", "HEAD", "PROPFIND", "PUT", "DELETE", "MKCOL", "LOCK", "COPY", "POST"):
        for path in [*UNDECODABLE_PATHS, b"/dav/\xff\xfe"]:
            answer = raw_request(server.base_url, method, path, credentials, body=b"x" if method == "PUT" else b"")
            assert_short_plain_answer(answer, statuses={400})
    assert "Traceback" not in server.log_text()
    assert sorted(p.name for p in server.space(alice.name).iterdir()) == ["downloads"]


DOT_PATHS = [b"/dav/names/..", b"/dav/names/%2E%2E", b"/dav/names/.", b"/dav/%2e", b"/dav/downloads/%2E%2E/x",
             b"/dav/a/../../etc"]


def test_a_path_with_a_dot_segment_gets_a_400_whatever_the_method(server, alice):
    credentials = {"Authorization": basic(f"{alice.name}:{alice.password}".encode())}
    for method in ("GET", "HEAD", "PROPFIND", "PUT", "DELETE", "MKCOL", "LOCK", "COPY", "MOVE", "PROPPATCH"):
        for path in DOT_PATHS:
            answer = raw_request(server.base_url, method, path, credentials, body=b"x" if method == "PUT" else b"")
            assert_short_plain_answer(answer, statuses={400})
    assert "Traceback" not in server.log_text()
    assert sorted(p.name for p in server.space(alice.name).iterdir()) == ["downloads"]


ROOTS = ["/dav/", "/dav", "/dav/.", "/dav/downloads/..", "/dav//"]


def test_copy_or_move_of_the_spaces_root_or_onto_it_gets_a_short_403(server, alice):
    alice.session.put(server.dav("keep.txt"), data=b"keep")
    destinations = ["/dav/copy", "/dav/", "/dav", "/dav/downloads/inside", "/dav/keep.txt", "/dav/%ff"]
    for method in ("COPY", "MOVE"):
        for source in ROOTS:
            for destination in destinations:
                for overwrite in ("T", "F"):
                    response = alice.session.request(method, server.url(source), headers={
                        "Destination": server.url(destination), "Overwrite": overwrite, "Depth": "infinity"})
                    assert response.status_code == 403, (source, destination, response.status_code, response.text)
                    assert "root of your space" in response.text and len(response.text) < 100
        for destination in ["/dav/", "/dav", "/dav/.", "/dav/downloads/.."]:
            response = alice.session.request(method, server.dav("keep.txt"),
                                             headers={"Destination": server.url(destination)})
            assert response.status_code == 403 and "root of your space" in response.text, (destination, response.text)
    assert sorted(p.name for p in server.space(alice.name).iterdir()) == ["downloads", "keep.txt"]
    assert "Traceback" not in server.log_text()


def test_after_too_many_wrong_passwords_the_answer_says_so_and_when_to_retry(server, alice, bob):
    for user in (alice.name, "nobody"):  # an unknown name is treated like a known one
        for attempt in range(5):
            assert requests.get(server.dav(), auth=(user, f"guess-{attempt}")).status_code == 401
        for target in ("/dav/", "/api/v1/me", "/"):
            answer = requests.get(server.url(target), auth=(user, alice.password))  # right for alice
            assert answer.status_code == 429, (user, target, answer.text)
            assert 1 <= int(answer.headers["Retry-After"]) <= 300
            assert "too many wrong passwords" in answer.text and "try again in" in answer.text
            assert "wrong user name or password" not in answer.text
    assert bob.session.get(server.dav()).status_code == 200  # other users are not locked out


def test_the_client_commands_say_the_login_is_throttled_not_that_the_password_is_wrong(server, alice, tmp_path):
    # A burst: the tries already under way when the lock starts count too, so it lasts longer
    # than the client commands take to start.
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda attempt: requests.get(server.dav(), auth=(alice.name, f"guess-{attempt}")), range(20)))
    assert int(requests.get(server.dav(), auth=(alice.name, alice.password)).headers["Retry-After"]) >= 16
    for command in (["add", "https://example.org/x.bin"], ["sync", str(tmp_path / "local")]):
        result = client(command[0], "--server", server.base_url, "--user", alice.name, *command[1:], password=alice.password)
        assert result.returncode != 0 and "too many wrong passwords" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_user_and_a_wrong_password_each_derive_one_key_with_the_same_cost(tmp_path, monkeypatch):
    accounts = Accounts(SqliteDatabase(tmp_path / "users.sqlite"), tmp_path)
    accounts.add("alice", "alice-password", None)
    assert accounts.verify("alice", "alice-password")  # remembered, so later wrong ones are the only hash
    derivations: list[tuple] = []
    scrypt = hashlib.scrypt

    def counted(password, *, salt, n, r, p, dklen=64, maxmem=0):
        derivations.append((n, r, p, dklen))
        return scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    costs = {}
    for name in ("alice", "nobody", "bob", "Not A Valid Name!", ""):
        derivations.clear()
        assert not accounts.verify(name, "a-wrong-password")
        costs[name] = list(derivations)
    assert all(cost == costs["alice"] for cost in costs.values()) and len(costs["alice"]) == 1, costs


def test_login_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(server, alice):
    """A leak check, not a speed check: an unknown user used to cost two key derivations, a
    wrong password one. Tries alternate, and each pair's ratio is taken, so that the load of
    the machine at that moment weighs on both sides alike."""

    def seconds(user: str, password: str) -> float:
        began = time.perf_counter()
        assert requests.get(server.url("/api/v1/me"), auth=(user, password)).status_code == 401
        return time.perf_counter() - began

    ratios = []
    for attempt in range(25):
        unknown = seconds(f"nobody-{attempt}", "a-wrong-password")
        ratios.append(unknown / seconds(alice.name, "a-wrong-password"))
        assert alice.session.get(server.url("/api/v1/me")).status_code == 200  # resets alice's throttle
    assert 0.65 < statistics.median(ratios) < 1.5, sorted(ratios)


# --- cross-site requests (SPEC 6) ---------------------------------------------------------------

def foreign_origins(server) -> list[str]:
    port = int(server.base_url.rsplit(":", 1)[1])
    return ["http://evil.example", f"http://127.0.0.2:{port}", f"http://127.0.0.1:{port + 1}",
            f"https://127.0.0.1:{port}x", "null", f"http://localhost.evil.example:{port}"]


def task_count(alice, server) -> int:
    return len(alice.session.get(server.url("/api/v1/tasks")).json())


def add_task(alice, server, headers: dict[str, str], body: bytes = b'{"url": "http://127.0.0.1:9/x.bin"}'):
    return alice.session.post(server.url("/api/v1/tasks"), data=body,
                              headers={"Content-Type": "application/json", **headers})


def test_a_state_change_whose_origin_names_another_site_is_refused(server, alice):
    for origin in foreign_origins(server):
        response = add_task(alice, server, {"Origin": origin})
        assert response.status_code == 403, (origin, response.text)
        assert "another site" in response.json()["error"]
        response = add_task(alice, server, {"Referer": origin + "/attack.html"})
        assert response.status_code == 403, (origin, response.text)
    assert task_count(alice, server) == 0
    assert "refused a cross-site POST" in server.log_text()


def test_a_state_change_from_this_site_or_from_no_browser_is_accepted(server, alice):
    own = server.base_url
    for headers in ({"Origin": own}, {"Origin": own.upper()}, {"Referer": own + "/"},
                    {"Referer": own + "/index.html?x=1"}, {}, {"Origin": own, "Referer": "http://evil.example/"}):
        assert add_task(alice, server, headers).status_code == 201, headers
    assert task_count(alice, server) == 6


def test_foreign_origins_cannot_cancel_retry_or_write_files_either(server, alice):
    task = add_task(alice, server, {}).json()
    evil = {"Origin": "http://evil.example"}
    assert alice.session.delete(server.url(f"/api/v1/tasks/{task['id']}"), headers=evil).status_code == 403
    assert alice.session.post(server.url(f"/api/v1/tasks/{task['id']}/retry"), headers=evil).status_code == 403
    assert alice.session.get(server.url(f"/api/v1/tasks/{task['id']}")).json()["state"] != "cancelled"
    for method, path in (("PUT", "planted.txt"), ("MKCOL", "planted"), ("DELETE", "downloads"),
                         ("PROPPATCH", ""), ("LOCK", "x.txt")):
        response = alice.session.request(method, server.dav(path), headers=evil, data=b"x")
        assert response.status_code == 403, (method, response.status_code)
    assert sorted(p.name for p in server.space(alice.name).iterdir()) == ["downloads"]
    assert alice.session.put(server.dav("mine.txt"), data=b"x", headers={"Origin": server.base_url}).status_code == 201


NOT_JSON = [
    ("text/plain", b'{"url": "http://127.0.0.1:9/x.bin"}'),
    ("text/plain;charset=UTF-8", b'{"url": "http://127.0.0.1:9/x.bin"}'),
    ("application/x-www-form-urlencoded", b"url=http%3A%2F%2F127.0.0.1%3A9%2Fx.bin"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="url"\r\n\r\nhttp://127.0.0.1:9/x\r\n--b--\r\n'),
    ("application/jsonp", b'{"url": "http://127.0.0.1:9/x.bin"}'),
    ("", b'{"url": "http://127.0.0.1:9/x.bin"}'),
]


def test_an_api_body_that_is_not_json_gets_415_and_json_with_a_charset_is_accepted(server, alice):
    for content_type, body in NOT_JSON:
        response = alice.session.post(server.url("/api/v1/tasks"), data=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in response.json()["error"]
    assert task_count(alice, server) == 0
    response = add_task(alice, server, {"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201, response.text


def test_pages_cannot_be_framed_and_no_answer_is_sniffed(server, alice):
    for path in ("/", "/index.html", "/dav/", "/dav/downloads/"):
        response = alice.session.get(server.url(path))
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
    alice.session.put(server.dav("file.txt"), data=b"<html>not a page</html>")
    for path in ("/api/v1/me", "/dav/file.txt", "/nowhere", "/", "/dav/%ff"):
        assert alice.session.get(server.url(path)).headers["X-Content-Type-Options"] == "nosniff", path
        assert requests.get(server.url(path)).headers["X-Content-Type-Options"] == "nosniff", path


def test_an_answer_to_head_has_no_body_whichever_part_made_it(server, alice):
    alice.session.put(server.dav("file.txt"), data=b"some bytes")
    credentials = {"Authorization": basic(f"{alice.name}:{alice.password}".encode())}
    for path, headers in ((b"/dav/", {}), (b"/api/v1/me", {}), (b"/", {}), (b"/dav/%ff", credentials),
                          (b"/dav/", credentials), (b"/dav/file.txt", credentials), (b"/", credentials),
                          (b"/api/v1/me", credentials), (b"/nowhere", credentials), (b"/dav/", {"Authorization": b"Basic !"})):
        answer = raw_request(server.base_url, "HEAD", path, headers)
        assert answer.status < 500 and answer.body == b"", (path, answer.status, answer.body[:100])
