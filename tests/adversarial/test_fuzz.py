"""Property-based hostile input: API JSON and WebDAV paths and headers never cause a 5xx."""

from __future__ import annotations

import json
import random
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.downloads_helpers import wait_for

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
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


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
    downloads = server.space("alice") / "downloads"
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
