"""Share links (SPEC 7): made, listed and revoked through /api/v1/shares, opened at /s/<token>
by anyone without a login, reading the shared file or folder and nothing else."""

from __future__ import annotations

import re
import sqlite3
import time
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.server_process import PASSWORDS_USED

SHARE_PASSWORD = "share-secret-9"
PASSWORDS_USED.add(SHARE_PASSWORD)


pytestmark = pytest.mark.shared_server


def put(account, server, path: str, body: bytes) -> None:
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        account.session.request("MKCOL", server.dav("/".join(parts[:depth]) + "/"))
    assert account.session.put(server.dav(path), data=body).status_code in (201, 204)


def share(account, server, path: str, **fields) -> dict:
    answer = account.session.post(server.url("/api/v1/shares"), json={"path": path, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def anonymous() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def test_a_file_share_serves_the_file_to_anyone_with_range(server, alice):
    body = bytes(range(256)) * 400
    put(alice, server, "films/clip.bin", body)
    made = share(alice, server, "films/clip.bin")
    assert set(made) >= {"id", "url", "expires_at"} and made["expires_at"] is None
    assert urlsplit(made["url"]).netloc == urlsplit(server.base_url).netloc
    visitor = anonymous()
    whole = visitor.get(made["url"])
    assert whole.status_code == 200 and whole.content == body
    assert "clip.bin" in whole.headers["Content-Disposition"]
    part = visitor.get(made["url"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == body[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(body)}"
    tail = visitor.get(made["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == body[-10:]
    assert visitor.head(made["url"]).headers["Content-Length"] == str(len(body))


def test_share_answers_send_anti_framing_headers_and_never_name_the_owner(server, alice):
    put(alice, server, "secret-project/report.txt", b"quarterly numbers")
    put(alice, server, "secret-project/photos/a.jpg", b"jpeg")
    folder = share(alice, server, "secret-project/photos")
    single = share(alice, server, "secret-project/report.txt")
    visitor = anonymous()
    for url in (folder["url"], folder["url"] + "/", folder["url"] + "/a.jpg", single["url"],
                folder["url"] + "/missing", server.url("/s/nonexistent-token")):
        answer = visitor.get(url)
        assert answer.headers["X-Frame-Options"] == "DENY", url
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], url
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        page = answer.text
        for leak in (alice.name, "secret-project", "Server: WsgiDAV"):
            assert leak not in page and leak not in str(answer.headers), (url, leak)
    # A shared file cannot script the drive: it is sandboxed into an origin of its own.
    assert "sandbox" in visitor.get(single["url"]).headers["Content-Security-Policy"]


def test_a_folder_share_lists_and_serves_what_is_inside(server, alice):
    put(alice, server, "album/one.txt", b"first")
    put(alice, server, "album/deep/two.txt", b"second")
    put(alice, server, "elsewhere.txt", b"not shared")
    made = share(alice, server, "album")
    visitor = anonymous()
    listing = visitor.get(made["url"] + "/")
    assert listing.status_code == 200 and listing.headers["Content-Type"].startswith("text/html")
    assert "one.txt" in listing.text and "deep/" in listing.text and "elsewhere" not in listing.text
    assert visitor.get(made["url"], allow_redirects=False).status_code == 301
    assert visitor.get(made["url"] + "/one.txt").content == b"first"
    assert visitor.get(made["url"] + "/deep/two.txt").content == b"second"
    assert "two.txt" in visitor.get(made["url"] + "/deep/").text
    # Names beyond ASCII, in the shared folder, below it and as the shared file itself.
    put(alice, server, "Café/naïve 日本.txt", b"unicode")
    cafe = share(alice, server, "Café")
    assert "naïve 日本.txt" in visitor.get(cafe["url"] + "/").text
    assert visitor.get(cafe["url"] + "/" + quote("naïve 日本.txt")).content == b"unicode"
    single = visitor.get(share(alice, server, "Café/naïve 日本.txt")["url"])
    assert single.content == b"unicode" and quote("naïve 日本.txt") in single.headers["Content-Disposition"]
    # The downloads folder, with its status file and placeholders, shares like any other.
    put(alice, server, "downloads/fetched.bin", b"fetched")
    downloads = share(alice, server, "downloads")
    assert "fetched.bin" in visitor.get(downloads["url"] + "/").text
    assert visitor.get(downloads["url"] + "/fetched.bin").content == b"fetched"


ESCAPES = [
    "/../elsewhere.txt", "/%2e%2e/elsewhere.txt", "/..%2felsewhere.txt", "/%2e%2e%2felsewhere.txt",
    "/deep/../../elsewhere.txt", "/..%5celsewhere.txt", "/./../elsewhere.txt", "/%00/elsewhere.txt",
    "/deep/%2e%2e/%2e%2e/private/secret.txt", "/..;/elsewhere.txt", "//../elsewhere.txt",
    "/link/secret.txt", "/filelink",
]


def test_nothing_outside_a_shared_folder_can_be_reached(server, alice):
    put(alice, server, "album/one.txt", b"first")
    put(alice, server, "album/deep/two.txt", b"second")
    put(alice, server, "elsewhere.txt", b"NOT SHARED")
    put(alice, server, "private/secret.txt", b"NOT SHARED")
    # Symlinks cannot be made over WebDAV; one placed on the server's disk must not lead out.
    (server.space(alice.name) / "album" / "link").symlink_to(server.space(alice.name) / "private")
    (server.space(alice.name) / "album" / "filelink").symlink_to(server.space(alice.name) / "elsewhere.txt")
    made = share(alice, server, "album")
    token_path = urlsplit(made["url"]).path
    for escape in ESCAPES:
        # Sent raw (curl --path-as-is style), so no client normalises the dots away first.
        answer = anonymous().send(_raw_request(server.url(token_path + escape)))
        assert answer.status_code in (400, 404), (escape, answer.status_code)
        assert b"NOT SHARED" not in answer.content, escape
    assert anonymous().get(made["url"] + "/deep/two.txt").content == b"second"


def _raw_request(url: str) -> requests.PreparedRequest:
    prepared = requests.Request("GET", "http://placeholder/").prepare()
    prepared.url = url
    return prepared


def test_a_file_share_serves_that_file_only(server, alice):
    put(alice, server, "docs/a.txt", b"A")
    put(alice, server, "docs/b.txt", b"NOT SHARED")
    made = share(alice, server, "docs/a.txt")
    for suffix in ("/b.txt", "/../b.txt", "/a.txt", "/"):
        answer = anonymous().send(_raw_request(made["url"] + suffix))
        assert answer.status_code == 404 and b"NOT SHARED" not in answer.content, suffix


def test_a_password_share_asks_with_basic_auth_and_any_user_name(server, alice):
    put(alice, server, "private.txt", b"for friends")
    made = share(alice, server, "private.txt", password=SHARE_PASSWORD)
    visitor = anonymous()
    asked = visitor.get(made["url"])
    assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("Basic")
    assert b"for friends" not in asked.content
    assert visitor.get(made["url"], auth=("anyone", "wrong-password")).status_code == 401
    for user in ("anyone", "", "alice"):
        assert visitor.get(made["url"], auth=(user, SHARE_PASSWORD)).content == b"for friends"
    listed = alice.session.get(server.url("/api/v1/shares")).json()
    assert listed[0]["has_password"] is True and SHARE_PASSWORD not in str(listed)
    # Guessing is throttled: after a burst of wrong passwords even the right one waits a while.
    for attempt in range(8):
        visitor.get(made["url"], auth=("x", f"guess-{attempt}-password"))
    assert visitor.get(made["url"], auth=("x", SHARE_PASSWORD)).status_code == 401
    deadline = time.monotonic() + 120
    while visitor.get(made["url"], auth=("x", SHARE_PASSWORD)).status_code != 200:
        assert time.monotonic() < deadline, "the right password stayed refused"
        time.sleep(1)


def test_expired_and_revoked_links_answer_404(server, alice):
    put(alice, server, "soon.txt", b"short-lived")
    expiring = share(alice, server, "soon.txt", expires_in=1)
    revoked = share(alice, server, "soon.txt")
    assert expiring["expires_at"] == pytest.approx(time.time() + 1, abs=30)
    assert anonymous().get(revoked["url"]).status_code == 200
    assert alice.session.delete(server.url(f"/api/v1/shares/{revoked['id']}")).status_code == 200
    assert anonymous().get(revoked["url"]).status_code == 404
    deadline = time.monotonic() + 30
    while anonymous().get(expiring["url"]).status_code != 404:
        assert time.monotonic() < deadline, "the expired link still answers"
        time.sleep(0.2)
    assert alice.session.delete(server.url(f"/api/v1/shares/{revoked['id']}")).status_code == 404


def test_a_share_of_a_deleted_file_answers_404(server, alice):
    put(alice, server, "gone.txt", b"soon deleted")
    made = share(alice, server, "gone.txt")
    assert alice.session.delete(server.dav("gone.txt")).status_code == 204
    assert anonymous().get(made["url"]).status_code == 404
    assert alice.session.get(server.url("/api/v1/shares")).json()[0]["exists"] is False


def test_users_cannot_see_use_or_revoke_each_others_shares(server, alice, bob):
    put(alice, server, "mine.txt", b"alice's")
    put(bob, server, "mine.txt", b"bob's")
    made = [share(alice, server, "mine.txt") for _ in range(3)]
    bobs = share(bob, server, "mine.txt")
    assert [s["id"] for s in bob.session.get(server.url("/api/v1/shares")).json()] == [bobs["id"]]
    for alices in made:
        for method in ("GET", "DELETE"):
            answer = bob.session.request(method, server.url(f"/api/v1/shares/{alices['id']}"))
            assert answer.status_code == 404 and answer.json() == {"error": "no such share"}
        assert anonymous().get(alices["url"]).content == b"alice's"
    missing = bob.session.delete(server.url("/api/v1/shares/AAAAAAAAAAAAAAAAAAAAAA"))
    assert missing.status_code == 404 and missing.json() == {"error": "no such share"}
    # bob's paths are his own: sharing a path only alice has is "not in your drive".
    assert bob.session.post(server.url("/api/v1/shares"), json={"path": "album"}).status_code == 404


BAD_REQUESTS = [
    ({"path": "../alice/mine.txt"}, 400), ({"path": ""}, 400), ({"path": "/"}, 400), ({"path": 3}, 400),
    ({"path": "nothing-here.txt"}, 404), ({"path": ".fetchdrive/netrc"}, 400),
    ({"path": "mine.txt", "expires_in": 0}, 400), ({"path": "mine.txt", "expires_in": "1h"}, 400),
    ({"path": "mine.txt", "expires_in": True}, 400), ({"path": "mine.txt", "password": "short"}, 400),
    ({"path": "mine.txt", "colour": "red"}, 400), ({"path": "bob"}, 404),
]


def test_bad_share_requests_get_a_precise_4xx(server, alice, bob):
    put(alice, server, "mine.txt", b"x")
    for body, status in BAD_REQUESTS:
        answer = alice.session.post(server.url("/api/v1/shares"), json=body)
        assert answer.status_code == status and answer.json()["error"], (body, answer.text)
    garbled = alice.session.post(server.url("/api/v1/shares"), data=b"{not json", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
    assert alice.session.get(server.url("/api/v1/shares")).json() == []


def test_tokens_are_long_random_and_not_stored_in_the_database(server, alice):
    put(alice, server, "mine.txt", b"x")
    tokens = [urlsplit(share(alice, server, "mine.txt")["url"]).path.removeprefix("/s/") for _ in range(20)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits, url-safe base64
    database = sqlite3.connect(server.data / "fetchdrive.sqlite")
    dump = "\n".join(database.iterdump())
    assert not any(token in dump for token in tokens)
    listed = {urlsplit(s["url"]).path.removeprefix("/s/") for s in alice.session.get(server.url("/api/v1/shares")).json()}
    assert listed == set(tokens)
    # A token one character off opens nothing.
    near = tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B")
    assert anonymous().get(server.url("/s/" + near)).status_code == 404


def test_shares_need_a_login_to_make_and_only_reads_are_allowed(server, alice):
    put(alice, server, "mine.txt", b"x")
    assert anonymous().post(server.url("/api/v1/shares"), json={"path": "mine.txt"}).status_code == 401
    made = share(alice, server, "mine.txt")
    for method in ("PUT", "DELETE", "POST", "PROPFIND", "MOVE"):
        assert anonymous().request(method, made["url"]).status_code == 405, method
    assert (server.space(alice.name) / "mine.txt").read_bytes() == b"x"


def test_a_dav_folder_opened_in_a_browser_goes_to_the_web_drive(server, alice):
    put(alice, server, "films/clip.bin", b"x")
    for path, location in (("", "/#/"), ("films/", "/#/films/"), ("films", "/#/films/")):
        answer = alice.session.get(server.dav(path), allow_redirects=False)
        assert answer.status_code == 303 and answer.headers["Location"] == location
        assert alice.session.head(server.dav(path), allow_redirects=False).status_code == 200
    assert alice.session.get(server.dav("films/clip.bin")).content == b"x"


def test_removing_a_user_ends_their_links_even_when_files_are_kept(server, alice, bob):
    put(bob, server, "kept.txt", b"bob's")
    made = share(bob, server, "kept.txt")
    assert anonymous().get(made["url"]).content == b"bob's"
    assert server.cli("user", "remove", bob.name, "--keep-files").returncode == 0
    assert (server.space(bob.name) / "kept.txt").exists()
    assert anonymous().get(made["url"]).status_code == 404
    database = sqlite3.connect(server.data / "fetchdrive.sqlite")
    assert database.execute("select count(*) from shares where owner = ?", [bob.name]).fetchone() == (0,)
