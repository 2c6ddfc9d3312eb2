"""Malformed requests to the tasks API: each gets a precise 4xx with a short reason, and nothing
is written anywhere (no file in any space, no temporary data, no task)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.server_process import ServerProcess

HEX = "ab" * 32


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """One server for the whole table: alice with room, tiny with a full quota."""
    with ServerProcess(tmp_path_factory.mktemp("validation")) as server:
        server.add_user("alice", "alice-password", quota="10M")
        server.add_user("tiny", "tiny-password", quota="1K")
        server.session("tiny", "tiny-password").put(server.dav("fill.bin"), data=b"x" * 1024)
        yield server


def _everything_on_disk(server: ServerProcess) -> dict[str, int]:
    """Every file under the data folder's spaces and temporary area, with its size."""
    found = {}
    for top in ("spaces", "tmp"):
        for folder, _dirs, files in os.walk(server.data / top):
            for name in files:
                path = Path(folder, name)
                found[str(path.relative_to(server.data))] = path.stat().st_size
    return found


# (what is wrong, user, request body as sent, status, words the reason holds)
CASES = [
    ("not JSON", "alice", b"{not json", 400, "not valid JSON"),
    ("an array", "alice", b"[1, 2]", 400, "must be a JSON object"),
    ("no source", "alice", {}, 400, 'exactly one of "url" or "id"'),
    ("both sources", "alice", {"url": "https://a.example/x", "id": "y"}, 400, 'exactly one of "url" or "id"'),
    ("a number as URL", "alice", {"url": 5}, 400, "'url' must be a non-empty single-line string"),
    ("a blank URL", "alice", {"url": "   "}, 400, "'url' must be a non-empty single-line string"),
    ("two lines", "alice", {"url": "https://a.example/x\nhttps://b.example/"}, 400, "single-line"),
    ("javascript:", "alice", {"url": "javascript:alert(1)"}, 400, "uses javascript:"),
    ("file:", "alice", {"url": "file:///etc/passwd"}, 400, "uses file:"),
    ("ftp:", "alice", {"url": "ftp://a.example/x"}, 400, "uses ftp:"),
    ("no host", "alice", {"url": "http:///x"}, 400, "has no host name"),
    ("a space", "alice", {"url": "https://a.example/a b"}, 400, "spaces or control characters"),
    ("too long", "alice", {"url": "https://a.example/" + "x" * 9000}, 400, "longer than 8192 characters"),
    ("a bad magnet", "alice", {"url": "magnet:?dn=nothing"}, 400, "magnet"),
    # Trigger-file syntax in a field is a value like any other, never a line of a trigger.
    ("a comment as URL", "alice", {"url": "# https://a.example/x"}, 400, "is not a link"),
    ("an option as URL", "alice", {"url": f"sha256={HEX}"}, 400, "is not a link"),
    ("a section as URL", "alice", {"url": "[InternetShortcut]"}, 400, "is not a link"),
    ("send-to as URL", "alice", {"url": "send-to=laptop"}, 400, "is not a link"),
    ("a bad sha256: ID", "alice", {"id": "sha256:nothex"}, 400, "64 hexadecimal digits"),
    ("a spaced ID", "alice", {"id": "my id"}, 400, "printable ASCII characters without spaces"),
    ("a bad checksum", "alice", {"url": "https://a.example/x", "sha256": "nothex"}, 400, "is not 64 hexadecimal digits"),
    ("a blank filename", "alice", {"url": "https://a.example/x", "filename": " "}, 400, "'filename' must be"),
    ("a folder outside", "alice", {"url": "https://a.example/x", "folder": "../../etc"}, 400, "inside downloads/ without '..'"),
    ("a folder climbing", "alice", {"url": "https://a.example/x", "folder": "a/../../b"}, 400, "without '..'"),
    ("a folder name XML cannot carry", "alice", {"url": "https://a.example/x", "folder": "a\x01b"}, 400, "U+0001"),
    ("an unknown field", "alice", {"url": "https://a.example/x", "colour": "red"}, 400, "unknown field(s) colour"),
    ("a body too large", "alice", {"url": "https://a.example/x", "filename": "x" * 70_000}, 413, "too large"),
    ("a full quota", "tiny", {"url": "https://a.example/x"}, 507, "quota is used up"),
]


@pytest.mark.parametrize("what, user, body, status, reason", CASES, ids=[case[0] for case in CASES])
def test_a_malformed_download_request_gets_a_precise_4xx_and_writes_nothing(quiet_server, what, user, body, status, reason):
    server = quiet_server
    session = server.session(user, f"{user}-password")
    before = _everything_on_disk(server)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = session.post(server.url("/api/v1/tasks"), data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert reason.lower() in error.lower() and len(error) < 300 and "Traceback" not in error
    assert _everything_on_disk(server) == before
    assert session.get(server.url("/api/v1/tasks")).json() == []


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/api/v1/tasks/424242", 404),
    ("DELETE", "/api/v1/tasks/424242", 404),
    ("POST", "/api/v1/tasks/424242/retry", 404),
    ("GET", "/api/v1/tasks?limit=0", 400),
    ("GET", "/api/v1/tasks?limit=1001", 400),
    ("GET", "/api/v1/tasks?limit=ten", 400),
    ("GET", "/api/v1/tasks?cursor=x", 400),
    ("GET", "/api/v1/tasks?state=finished", 400),
    ("PUT", "/api/v1/tasks", 405),
])
def test_a_malformed_task_query_gets_a_precise_4xx(quiet_server, method, path, status):
    server = quiet_server
    before = _everything_on_disk(server)
    response = server.session("alice", "alice-password").request(method, server.url(path))
    assert response.status_code == status and response.json()["error"]
    assert _everything_on_disk(server) == before


def test_a_request_without_json_content_type_is_refused(quiet_server):
    server = quiet_server
    response = server.session("alice", "alice-password").post(
        server.url("/api/v1/tasks"), data=b'{"url": "https://a.example/x"}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert requests.post(server.url("/api/v1/tasks"), json={"url": "https://a.example/x"}).status_code == 401
