"""Property-based hostile input: API JSON, WebDAV paths and headers, Authorization headers and
undecodable paths never cause a 5xx or a dropped connection."""

from __future__ import annotations

import base64
import json
import os
import random
import unicodedata
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.downloads_helpers import wait_for
from tests.raw_http import raw_request

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
API_OBJECTS = st.fixed_dictionaries(
    {}, optional={"url": JSON | st.text(max_size=300), "id": JSON | st.text(max_size=80), "filename": JSON,
                  "sha256": JSON, "folder": JSON | st.text(max_size=80)},
)
SEGMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(["Depth", "If", "Overwrite", "Destination", "Timeout", "Lock-Token", "Content-Type", "Range"]),
    # lstrip: requests itself refuses to send a value with leading whitespace.
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.lstrip),
    max_size=4,
)
# One server for the file: each test has a user of its own, and none restarts the server.
pytestmark = pytest.mark.shared_server
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
# Header values as raw bytes: anything but CR and LF, which would end the header.
HEADER_BYTES = st.binary(max_size=300).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b""))
CREDENTIALS = st.one_of(
    st.binary(max_size=200),  # not UTF-8, no colon, NULs...
    st.tuples(st.text(max_size=40), st.text(max_size=80)).map(lambda pair: f"{pair[0]}:{pair[1]}".encode()),
)
AUTHORIZATION = st.one_of(
    HEADER_BYTES,
    st.tuples(st.sampled_from([b"Basic", b"basic", b"BASIC", b"Basic ", b"Bearer", b"Digest", b""]), st.sampled_from([b" ", b"  ", b"\t"]),
              CREDENTIALS.map(base64.b64encode) | HEADER_BYTES).map(b"".join),
    st.integers(min_value=8_000, max_value=200_000).map(lambda size: b"Basic " + b"QUFB" * (size // 4)),
)
# Percent-encoded arbitrary bytes: mostly not UTF-8.
UNDECODABLE = st.lists(st.binary(min_size=1, max_size=12).map(lambda raw: quote_from_bytes(raw, safe="")),
                       min_size=1, max_size=3).map("/".join)


def test_api_never_fails_with_a_server_error(server, alice, tally):
    @FUZZ
    @given(st.one_of(API_OBJECTS, JSON))
    def post(body):
        response = alice.session.post(server.url("/api/v1/tasks"), data=json.dumps(body),
                                      headers={"Content-Type": "application/json"})
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert response.status_code in (201, 400, 507), (body, response.status_code, response.text)
        assert "Traceback" not in response.text

    post()
    assert alice.session.get(server.url("/api/v1/me")).status_code == 200


def test_webdav_paths_and_headers_never_cause_a_server_error(server, alice, tally):
    @FUZZ
    @given(st.sampled_from(["GET", "PUT", "PROPFIND", "PROPPATCH", "DELETE", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "HEAD"]),
           st.lists(SEGMENT, min_size=1, max_size=4), HEADERS, st.binary(max_size=200))
    def request(method, segments, headers, body):
        path = "/".join(quote(segment, safe="") for segment in segments)
        response = alice.session.request(method, server.dav(path), headers=headers, data=body, timeout=30)
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert response.status_code < 500, (method, path, headers, response.status_code, response.text[:300])
        assert "Traceback" not in response.text

    request()
    assert alice.session.get(server.dav()).status_code == 200
    assert "Traceback" not in server.log_text()


HOSTILE_TRIGGERS = {
    "random.url": bytes(random.Random(1).randbytes(5000)),
    "huge.url": b"[InternetShortcut]\r\nURL=https://a.example/" + b"x" * 200_000 + b"\r\n",
    "deep.webloc": b'<?xml version="1.0"?><plist version="1.0">' + b"<array>" * 4000 + b"</array>" * 4000 + b"</plist>",
    "nul.desktop": b"[Desktop Entry]\x00\x00Type=Link\nURL=\x00\n",
    "latin1.url": "[InternetShortcut]\r\nURL=https://ä.example/\xff\r\n".encode("latin-1"),
    "scheme.url": b"[InternetShortcut]\r\nURL=file:///etc/passwd\r\n",
    **{f"{scheme}-scheme.url": f"[InternetShortcut]\r\nURL={url}\r\n".encode() for scheme, url in (
        ("ftp", "ftp://ftp.example.org/pub/x.iso"), ("gopher", "gopher://h.example/1"),
        ("data", "data:text/plain;base64,aGk="), ("javascript", "javascript:alert(document.cookie)"),
        ("sftp", "sftp://h.example/x"), ("mailto", "mailto:a@example.com"), ("smb", "smb://h.example/share/x"))},
    "schemes.url": b"ftp://a.example/x\nfile:///etc/shadow\n",
    "nothing.desktop": b"[Desktop Entry]\nType=Application\nExec=rm -rf /\n",
    "bad.id": b"sha256:not-hex\n",
    "entity.webloc": b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                     b'<plist version="1.0"><dict><key>URL</key><string>&x;</string></dict></plist>',
}


def test_hostile_trigger_files_get_an_error_file_each_and_nothing_else(server, alice, tally):
    downloads = server.space(alice.name) / "downloads"
    for name, data in HOSTILE_TRIGGERS.items():
        response = alice.session.put(server.dav(f"downloads/{name}"), data=data)
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert response.status_code < 500, (name, response.status_code)
    for name in HOSTILE_TRIGGERS:
        error_file = downloads / f"{name}.error.txt"
        wait_for(error_file.exists, message=f"{name}.error.txt")
        reason = error_file.read_text()
        assert reason.strip() and "Traceback" not in reason and "root:" not in reason, (name, reason)  # no entity read
        tally["files checked"] += 1
    tasks = alice.session.get(server.url("/api/v1/tasks")).json()
    assert all(task["state"] == "failed" for task in tasks), tasks
    assert alice.session.get(server.dav()).status_code == 200
    assert "Traceback" not in server.log_text()


def test_malformed_authorization_headers_never_cause_a_server_error(server, alice, tally):
    @FUZZ
    @given(AUTHORIZATION, st.sampled_from(["/dav/", "/dav/downloads/", "/api/v1/me", "/api/v1/tasks", "/"]))
    def request(authorization, target):
        answer = raw_request(server.base_url, "GET", target.encode(), {"Authorization": authorization})
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert answer.status in (401, 429), (authorization[:100], target, answer.status, answer.body[:200])
        assert b"Traceback" not in answer.body and len(answer.body) < 300

    request()
    assert alice.session.get(server.dav()).status_code == 200
    assert "Traceback" not in server.log_text()


def test_undecodable_paths_never_cause_a_server_error_or_a_dropped_connection(server, alice, tally):
    credentials = {"Authorization": b"Basic " + base64.b64encode(f"{alice.name}:{alice.password}".encode())}

    @FUZZ
    @given(st.sampled_from(["GET", "HEAD", "PUT", "PROPFIND", "DELETE", "MKCOL", "COPY", "MOVE", "LOCK", "POST"]),
           st.sampled_from(["/dav/", "/dav/downloads/", "/api/v1/tasks/", "/"]), UNDECODABLE)
    @example("PUT", "/dav/", "%09")  # a name of white space alone in the root had no parent: a 500
    @example("MKCOL", "/dav/", "%0A")
    def request(method, prefix, path):
        headers = {**credentials, "Destination": f"{server.base_url}/dav/{path}".encode()}
        answer = raw_request(server.base_url, method, (prefix + path).encode(), headers)
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert answer.status < 500, (method, prefix + path, answer.status, answer.body[:200])
        assert b"Traceback" not in answer.body

    request()
    assert alice.session.get(server.dav()).status_code == 200


INVISIBLE_AND_CONTROL = st.sampled_from(
    ["\x00", "\x06", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u200b", "\u202e", "\u2066", "\u2028", "\ufeff",
     "\ufffe", "\uffff", "\u3164", "/", "\\", ".", " "]
)
PRODUCT_FORMS = st.sampled_from([".part", ".PART", ".error.txt", "fetchdrive-status.txt", "Fetchdrive-Status.TXT", ""])
HOSTILE_NAME = st.builds(
    lambda head, hidden, form, tail: head + hidden + form + tail,
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
    st.text(alphabet=INVISIBLE_AND_CONTROL, max_size=4), PRODUCT_FORMS, st.text(alphabet=INVISIBLE_AND_CONTROL, max_size=3),
)


def _well_formed_listing(account, url: str) -> list[str]:
    response = account.session.request("PROPFIND", url, headers={"Depth": "1"})
    assert response.status_code == 207, response.text[:300]
    return [href.text for href in etree.fromstring(response.content).iter("{DAV:}href")]


def test_hostile_names_from_clients_and_origins_never_break_a_listing_or_pass_for_the_product(server, alice, origin, tally):
    """Clients get a 400 for names a listing cannot carry; origins' names are cleaned and
    never look like a placeholder, an error file or the status file."""

    @FUZZ
    @given(HOSTILE_NAME, st.sampled_from(["PUT", "MKCOL", "LOCK", "COPY", "MOVE", "origin"]))
    def name_something(name, how):
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        if how == "origin":
            path = f"/o{tally['hostile inputs tried']}"
            origin.add(path, b"x", content_disposition="attachment; filename*=UTF-8''" + quote(name, safe=""))
            response = alice.session.put(server.dav(f"downloads/names{path}.url"),
                                         data=f"[InternetShortcut]\r\nURL={origin.url(path)}\r\n".encode())
        elif how in ("COPY", "MOVE"):
            alice.session.put(server.dav("names/source"), data=b"x")
            # Overwrite: F, as a `/` in the name may lead the Destination to a folder this test lists.
            response = alice.session.request(how, server.dav("names/source"), headers={
                "Destination": server.dav("names/" + quote(name, safe="")), "Overwrite": "F"})
        else:
            response = alice.session.request(how, server.dav("names/" + quote(name, safe="")), data=b"x" if how == "PUT" else b"")
        assert response.status_code < 500, (ascii(name), how, response.status_code, response.text[:300])

    assert alice.session.request("MKCOL", server.dav("names")).status_code == 201
    assert alice.session.request("MKCOL", server.dav("downloads/names")).status_code == 201
    name_something()
    downloads = server.space(alice.name) / "downloads" / "names"
    wait_for(lambda: not [name for name in os.listdir(downloads) if name.endswith(".url")], timeout=120,
             message="every origin download finished and its trigger gone")
    for folder in ("names/", "downloads/names/"):
        tally["files checked"] += len(_well_formed_listing(alice, server.dav(folder)))
    for name in os.listdir(downloads):
        lower = name.lower()
        assert not lower.endswith(".part") and lower != "fetchdrive-status.txt", ascii(name)
        assert not lower.endswith(".error.txt"), ascii(name)  # every download here succeeds
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name), ascii(name)
    assert "Traceback" not in server.log_text()
