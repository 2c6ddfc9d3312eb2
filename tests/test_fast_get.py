"""The GET/HEAD fast path answers exactly what WsgiDAV's general handling answers.

One tree (odd names, an empty file, a file larger than one read, a folder, a symlink, a
locked file, another user's files) is asked the same table of GETs and HEADs, plain, with
ranges, conditions and lock tokens, with `server.fast_get` on and then off; status, headers
(in order, all but `Date`) and bodies must be equal.
"""

from __future__ import annotations

import os
import re

import pytest
import requests
import yaml
from wsgidav import util

from provider.http_dates import rfc1123

NAMES = ["plain.txt", "with space & amp.txt", "ünïcode €.pdf", "(parens) 'quote'.jpg", "no-extension", "empty.bin",
         "page.html", "downloads/fetched.iso", "archive.tar.gz", "single.gz", "README.MD", "notes.md", ".hidden",
         "..tar.gz"]
LARGE = "large.bin"  # more than one read of the fast path
LOCK_BODY = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             "<D:locktype><D:write/></D:locktype></D:lockinfo>")

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
    lambda etag, modified: {"If": "(<opaquelocktoken:not-a-lock>)"},
    lambda etag, modified: {"Depth": "1"},
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


def _answer(response: requests.Response) -> tuple:
    """Status, headers and body, without the moments they name (`Date`, the time WsgiDAV
    prints on its error pages, and with it their length)."""
    body, stamped = _ERROR_PAGE_TIME.subn(b"<time>", response.content)
    ignored = {"date", "content-length"} if stamped else {"date"}
    headers = [(name, value) for name, value in response.raw.headers.items() if name.lower() not in ignored]
    return response.status_code, headers, body


def _ask(server, users: dict[str, requests.Session], paths: list[str], lock_token: str) -> list[tuple]:
    answers = []
    probe = users["alice"]
    for path in paths:
        found = probe.head(server.dav(path))
        etag, modified = found.headers.get("ETag", '"none"'), found.headers.get("Last-Modified", "")
        rows = [row(etag, modified) for row in HEADER_ROWS] + [{"If": f"(<{lock_token}>)"}]
        for user, session in users.items():
            for method in ("GET", "HEAD"):
                for headers in rows:
                    response = session.request(method, server.dav(path), headers=headers)
                    answers.append((user, method, path, headers, *_answer(response)))
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

    fast = _ask(server, users, paths, token)
    config = yaml.safe_load(server.config_path.read_text())
    config["server"]["fast_get"] = False
    server.config_path.write_text(yaml.safe_dump(config))
    server.restart()
    general = _ask(server, users, paths, token)

    assert len(fast) == len(general)
    for fast_answer, general_answer in zip(fast, general):
        assert fast_answer == general_answer
    whole = [answer for answer in fast if answer[:2] == ("alice", "GET") and answer[3] == {} and answer[4] == 200]
    assert {answer[2]: answer[6] for answer in whole if answer[2] in contents} == contents


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
