"""The GET/HEAD fast paths answer exactly what WsgiDAV's general handling answers.

Two fast paths: `server/fast_files.py` right after cheroot reads the request head, and
`provider/fast_get.py` inside WsgiDAV. One tree (odd names, an empty file, a file larger
than one read, a folder, a symlink, a locked file, another user's files) is asked the same
table of GETs and HEADs, plain, with ranges, conditions and lock tokens, and the same raw
requests (paths no HTTP library sends as written, odd credentials, bodies), with
`server.fast_get` on and then off; status, headers (in order, all but `Date`) and bodies must
be equal. Remembered logins end for file reads as they do elsewhere.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from wsgidav import util

from provider.http_dates import rfc1123
from tests.forked_cli import fetchdrive
from tests.raw_http import raw_request
from tests.test_credential_cache import NEAR_MISSES, USERS

NAMES = ["plain.txt", "with space & amp.txt", "ünïcode €.pdf", "(parens) 'quote'.jpg", "no-extension", "empty.bin",
         "page.html", "downloads/fetched.iso", "archive.tar.gz", "single.gz", "README.MD", "notes.md", ".hidden",
         "..tar.gz"]
LARGE = "large.bin"  # more than one read of the fast path
LOCK_BODY = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             "<D:locktype><D:write/></D:locktype></D:lockinfo>")

_DATE_LINE = re.compile(rb"\r\nDate: [^\r]*")
_ERROR_PAGE_TIME = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")
# Each row: request headers, given the file's ETag and Last-Modified.
HEADER_ROWS = [
    lambda etag, modified: {},
    lambda etag, modified: {"Range": "bytes=0-3"},
    lambda etag, modified: {"Range": "bytes=5-"},
    lambda etag, modified: {"Range": "bytes=-4"},
    lambda etag, modified: {"Range": "bytes=0-1,4-5"},  # several ranges
    lambda etag, modified: {"Range": "bytes=9-2"},  # invalid
    lambda etag, modified: {"Range": "bytes=100000000-"},  # unsatisfiable
    lambda etag, modified: {"Range": "bytes=0-0"},
    lambda etag, modified: {"Range": "bytes=-0"},
    lambda etag, modified: {"Range": "bytes=70000-"},  # past the first read of the large file
    lambda etag, modified: {"Range": "bytes=1-2,2-3"},  # overlapping: one range
    lambda etag, modified: {"Range": "bytes=abc"},
    lambda etag, modified: {"Range": "items=0-3"},
    lambda etag, modified: {"Range": "bytes=0-3", "If-Range": etag},
    lambda etag, modified: {"Range": "bytes=0-3", "If-Range": '"other"'},
    lambda etag, modified: {"If-None-Match": etag},
    lambda etag, modified: {"If-None-Match": "*"},
    lambda etag, modified: {"If-None-Match": '"other"'},
    lambda etag, modified: {"If-Match": '"other"'},
    lambda etag, modified: {"If-Match": etag},
    lambda etag, modified: {"If-Modified-Since": modified},
    lambda etag, modified: {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    lambda etag, modified: {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    lambda etag, modified: {"If-Match": "*"},
    lambda etag, modified: {"If-None-Match": f'"other", {etag}'},
    lambda etag, modified: {"If-None-Match": '"other"', "Range": "bytes=0-3"},
    lambda etag, modified: {"If-Match": etag, "Range": "bytes=2-"},
    lambda etag, modified: {"If-Match": '"other"', "Range": "bytes=2-"},
    lambda etag, modified: {"If-Unmodified-Since": modified},
    lambda etag, modified: {"If-Modified-Since": "not a date"},
    lambda etag, modified: {"If-None-Match": etag, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    lambda etag, modified: {"If": "(<opaquelocktoken:not-a-lock>)"},
    lambda etag, modified: {"Depth": "1"},
]


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


ALICE = _basic("alice", "alice-password")
BOB = _basic("bob", "bob-password-2")
# Each row: raw path, request headers, body. Wrong passwords stay below the throttle's five.
RAW_ROWS = [
    (b"/dav/plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/plain.txt", {"Authorization": BOB}, b""),  # bob has no plain.txt: his own space
    (b"/dav/plain.txt?x=1", {"Authorization": ALICE}, b""),
    (b"/dav//plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/./plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/docs/../plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/../dav/plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/docs%2Fplain.txt", {"Authorization": ALICE}, b""),
    (b"/dav/docs%2fplain.txt", {"Authorization": BOB}, b""),
    (b"/dav/plain%2etxt", {"Authorization": ALICE}, b""),
    (b"/dav/%C3%BCn%C3%AFcode%20%E2%82%AC.pdf", {"Authorization": ALICE}, b""),
    (b"/dav/%FF.txt", {"Authorization": ALICE}, b""),
    (b"/dav/plain.txt%00", {"Authorization": ALICE}, b""),
    (b"/DAV/plain.txt", {"Authorization": ALICE}, b""),
    (b"/dav", {"Authorization": ALICE}, b""),
    (b"/dav/docs", {"Authorization": BOB}, b""),
    (b"/dav/plain.txt", {"Authorization": b"Basic !!!"}, b""),
    (b"/dav/plain.txt", {"Authorization": b"Digest username=alice"}, b""),
    (b"/dav/plain.txt", {"Authorization": _basic("alice", "not-her-password")}, b""),
    (b"/dav/plain.txt", {"Authorization": _basic("ghost", "alice-password")}, b""),
    (b"/dav/plain.txt", {}, b""),
    (b"/dav/plain.txt", {"Authorization": ALICE}, b"a body"),
    (b"/dav/plain.txt", {"Authorization": ALICE, "Content-Length": b"0"}, b""),
    (b"/dav/plain.txt", {"Authorization": ALICE, "Expect": b"100-continue"}, b""),
    (b"/dav/plain.txt", {"Authorization": ALICE, "Origin": b"https://elsewhere.example"}, b""),
    (b"/dav/large.bin", {"Authorization": ALICE}, b""),
    (b"/dav/link.txt", {"Authorization": ALICE}, b""),
    (b"/dav/downloads/nothing.part", {"Authorization": BOB}, b""),
]


def _fill(server, session) -> dict[str, bytes]:
    """The tree both passes are asked about; returns path -> content."""
    contents = {}
    assert session.request("MKCOL", server.dav("docs")).status_code == 201
    for number, name in enumerate(NAMES):
        contents[name] = b"" if name == "empty.bin" else f"{name} {number}\n".encode() * 7
    contents[f"docs/{NAMES[0]}"] = b"in a folder"
    contents[LARGE] = os.urandom(200 * 1024)
    for path, data in contents.items():
        assert session.put(server.dav(path), data=data).status_code in (201, 204)
    os.symlink(server.space("alice") / "plain.txt", server.space("alice") / "link.txt")
    return contents


def _answer(status: int, headers: list[tuple[str, str]], body: bytes) -> tuple:
    """Status, headers and body, without the moments they name (`Date`, the time WsgiDAV
    prints on its error pages, and with it their length)."""
    body, stamped = _ERROR_PAGE_TIME.subn(b"<time>", body)
    ignored = {"date", "content-length"} if stamped else {"date"}
    return status, [(name, value) for name, value in headers if name.lower() not in ignored], body


class _KeptAlive:
    """Sends what a requests session sends (its default headers and login, the URL as it
    quotes it: prepared once a path) over one kept-alive connection. requests' own work for
    each of the comparison's ~9,000 requests cost the test process more CPU than the server."""

    def __init__(self, server, session: requests.Session) -> None:
        self._server, self._session = server, session
        address = urlsplit(server.base_url)
        self._connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)

    def asker(self, path: str) -> Callable[[str, dict[str, str]], tuple]:
        prepared = self._session.prepare_request(requests.Request("GET", self._server.dav(path)))

        def ask(method: str, headers: dict[str, str]) -> tuple:
            self._connection.request(method, prepared.path_url, headers={**prepared.headers, **headers})
            response = self._connection.getresponse()  # (reconnects after an answer that closed)
            answer = _answer(response.status, response.getheaders(), response.read())
            if 300 <= response.status < 400:  # a folder's GET leads to the web page: that page too
                followed = self._session.request(method, self._server.dav(path), headers=headers)
                answer += _answer(followed.status_code, list(followed.raw.headers.items()), followed.content)
            return answer

        return ask

    def close(self) -> None:
        self._connection.close()


def _ask(server, users: dict[str, requests.Session], paths: list[str], lock_token: str) -> list[tuple]:
    answers = []
    probe = users["alice"]
    clients = {user: _KeptAlive(server, session) for user, session in users.items()}
    for path in paths:
        found = probe.head(server.dav(path))
        etag, modified = found.headers.get("ETag", '"none"'), found.headers.get("Last-Modified", "")
        rows = [row(etag, modified) for row in HEADER_ROWS] + [{"If": f"(<{lock_token}>)"}]
        for user, client in clients.items():
            ask = client.asker(path)
            for method in ("GET", "HEAD"):
                for headers in rows:
                    answers.append((user, method, path, headers, *ask(method, headers)))
    for client in clients.values():
        client.close()
    return answers


def _ask_raw(server) -> list[tuple]:
    answers = []
    for method in ("GET", "HEAD"):
        for path, headers, body in RAW_ROWS:
            answer = raw_request(server.url(), method, path, headers, body)
            shown = {name: value for name, value in answer.headers.items() if name != "date"}
            # After a `100 Continue` the final answer, its Date included, is in the body.
            answers.append((method, path, headers, body, answer.status, shown, _DATE_LINE.sub(b"", answer.body)))
    return answers


def test_fast_path_answers_as_wsgidav_does(server, alice, bob):
    contents = _fill(server, alice.session)
    locked = alice.session.request("LOCK", server.dav("locked.txt"), data=LOCK_BODY)
    assert locked.status_code in (200, 201)
    token = locked.headers["Lock-Token"].strip("<>")
    assert alice.session.put(server.dav("locked.txt"), data=b"locked content",
                             headers={"If": f"(<{token}>)"}).status_code in (201, 204)
    paths = [*contents, "locked.txt", "link.txt", "missing.txt", "docs", "plain.txt/", "docs/../plain.txt",
             "downloads/nothing.part"]
    users = {"alice": alice.session, "bob": bob.session, "nobody": requests.Session()}

    fast = _ask(server, users, paths, token) + _ask_raw(server)
    config = yaml.safe_load(server.config_path.read_text())
    config["server"]["fast_get"] = False
    server.config_path.write_text(yaml.safe_dump(config))
    server.restart()
    general = _ask(server, users, paths, token) + _ask_raw(server)

    assert len(fast) == len(general)
    for fast_answer, general_answer in zip(fast, general):
        assert fast_answer == general_answer
    whole = [answer for answer in fast if answer[:2] == ("alice", "GET") and answer[3] == {} and answer[4] == 200]
    assert {answer[2]: answer[6] for answer in whole if answer[2] in contents} == contents


@pytest.mark.shared_server  # the others restart the server or count wrong passwords for fixed names
@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 17])
def test_whole_files_of_every_size_arrive_intact(server, alice, size):
    """Bodies read in one piece and bodies streamed in blocks, around each boundary."""
    data = os.urandom(size)
    assert alice.session.put(server.dav("file.bin"), data=data).status_code == 201
    response = alice.session.get(server.dav("file.bin"))
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(size)
    assert response.content == data


@pytest.mark.parametrize("seconds", [0, 1, 59.5, 951782400, 1_000_000_000.9999994, 1_000_000_000.9999996,
                                     1_795_893_126.4256, 2**31, 4_102_444_799.9999999, 253_402_300_799])
def test_dates_are_written_as_wsgidav_writes_them(seconds):
    """Last-Modified and getlastmodified: the same text as WsgiDAV's, also where rounding to
    microseconds carries into the next second."""
    assert rfc1123(seconds) == util.get_rfc1123_time(seconds)


def _read(server, user: str, password: str, method: str = "GET") -> requests.Response:
    return requests.request(method, server.dav("own.txt"), auth=(user, password))


@pytest.fixture
def reading(server) -> dict[str, str]:
    """Three users, each with a file `own.txt` they have read once (so their login is remembered)."""
    for user, password in USERS.items():
        server.add_user(user, password)
        assert requests.put(server.dav("own.txt"), data=user.encode(), auth=(user, password)).status_code == 201
        assert _read(server, user, password).content == user.encode()
    return dict(USERS)


def test_a_remembered_login_reading_a_file_ends_as_every_login_does(server, reading):
    # One user after the other: throttled by wrong guesses, a new password, removed.
    steps = [("carol", None), ("dave", ("user", "passwd", "dave", "--password-stdin")),
             ("erin", ("user", "remove", "erin"))]
    for user, command in steps:
        if command is None:
            for _ in range(5):
                assert _read(server, user, "a-wrong-guess").status_code == 401
        else:
            assert fetchdrive("--config", str(server.config_path), *command, input="a-new-password\n").returncode == 0
        for method in ("GET", "HEAD"):
            refused = _read(server, user, reading[user], method)
            if command is None:
                assert refused.status_code == 429 and "Retry-After" in refused.headers
            else:
                assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith('Basic realm=')
        del reading[user]
        for other, password in reading.items():
            assert _read(server, other, password).content == other.encode(), other


def test_near_misses_of_a_remembered_login_cannot_read_a_file(server, reading):
    # GET and HEAD by turns: both of a pair would count twice against the throttle.
    for number, (user, password) in enumerate(NEAR_MISSES):
        method = ("GET", "HEAD")[number % 2]
        assert _read(server, user, password, method).status_code == 401, (user, password, method)
