"""Two users on one server: no request of one can read, list, lock, write or move into the other's space."""

from __future__ import annotations

import base64
import socket

import pytest

SECRET = b"bob's secret"

pytestmark = pytest.mark.shared_server

LOCK_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner>x</D:owner></D:lockinfo>"
)


@pytest.fixture
def bob_has_a_secret(server, bob):
    assert bob.session.request("MKCOL", server.dav("private")).status_code == 201
    assert bob.session.put(server.dav("private/secret.txt"), data=SECRET).status_code == 201
    return server.space(bob.name) / "private" / "secret.txt"


@pytest.mark.both_databases
def test_each_user_sees_only_their_own_space(server, alice, bob, bob_has_a_secret):
    listing = alice.session.request("PROPFIND", server.dav(), headers={"Depth": "1"}).text
    assert "private" not in listing and "downloads" in listing
    assert alice.session.get(server.dav("private/secret.txt")).status_code == 404


TRAVERSALS = [
    "../{bob}/private/secret.txt",
    "%2e%2e/{bob}/private/secret.txt",
    "%2E%2E%2F{bob}%2Fprivate%2Fsecret.txt",
    "downloads/../../{bob}/private/secret.txt",
    "..%2f..%2f{bob}/private/secret.txt",
    "%252e%252e/{bob}/private/secret.txt",
]


def test_traversal_in_any_spelling_never_reaches_another_space(server, alice, bob, bob_has_a_secret):
    for path in TRAVERSALS:
        for method in ("GET", "PROPFIND", "PUT", "DELETE", "LOCK", "MKCOL"):
            check_traversal(server, alice, bob_has_a_secret, path.format(bob=bob.name), method)


def check_traversal(server, alice, secret_file, path: str, method: str) -> None:
    # A raw socket, so no client library normalises the path first.
    body = b"overwritten" if method == "PUT" else b""
    request = (
        f"{method} /dav/{path} HTTP/1.1\r\nHost: {server.base_url.split('//')[1]}\r\n"
        f"Authorization: Basic {_basic(alice.name, alice.password)}\r\nContent-Length: {len(body)}\r\n"
        "Depth: 0\r\nConnection: close\r\n\r\n"
    ).encode() + body
    host, port = server.base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert SECRET not in answer, (method, path)
    assert int(answer.split(b" ", 2)[1]) < 500, (method, path)
    assert secret_file.read_bytes() == SECRET, (method, path)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


HOSTILE_DESTINATIONS = [
    "/dav/../{bob}/stolen.txt",
    "/dav/%2e%2e/{bob}/stolen.txt",
    "http://{host}/dav/../{bob}/stolen.txt",
    "http://evil.example/dav/stolen.txt",
    "/{bob}/stolen.txt",
]


@pytest.mark.both_databases
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_hostile_destination_cannot_write_into_another_space(server, alice, bob, method):
    host = server.base_url.split("//")[1]
    for destination in HOSTILE_DESTINATIONS:
        alice.session.put(server.dav("mine.txt"), data=b"alice data")
        response = alice.session.request(
            method, server.dav("mine.txt"), headers={"Destination": destination.format(host=host, bob=bob.name), "Overwrite": "T"}
        )
        assert response.status_code < 500, destination
        assert not (server.space(bob.name) / "stolen.txt").exists(), destination
        assert not any(server.space(bob.name).rglob("stolen.txt")), destination


@pytest.mark.both_databases
def test_a_lock_token_of_one_user_does_not_work_for_another(server, alice, bob):
    alice.session.put(server.dav("same.txt"), data=b"alice")
    bob.session.put(server.dav("same.txt"), data=b"bob")
    locked = alice.session.request(
        "LOCK", server.dav("same.txt"), data=LOCK_BODY, headers={"Content-Type": "application/xml", "Timeout": "Second-600"}
    )
    assert locked.status_code == 200
    token = locked.headers["Lock-Token"]
    # Bob's file of the same name is not locked by Alice's lock...
    assert bob.session.put(server.dav("same.txt"), data=b"bob 2").status_code == 204
    # ...and Bob cannot use or release Alice's token.
    assert bob.session.request("UNLOCK", server.dav("same.txt"), headers={"Lock-Token": token}).status_code in (403, 409)
    assert bob.session.put(server.dav("same.txt"), data=b"bob 3", headers={"If": f"({token})"}).status_code == 412
    assert alice.session.put(server.dav("same.txt"), data=b"x").status_code == 423
    assert (server.space(alice.name) / "same.txt").read_bytes() == b"alice"


@pytest.mark.both_databases
def test_dead_properties_are_per_user(server, alice, bob):
    body = (
        '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop>'
        "<Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>"
    )
    for account in (alice, bob):
        account.session.put(server.dav("p.txt"), data=b"x")
    assert alice.session.request("PROPPATCH", server.dav("p.txt"), data=body).status_code == 207
    query = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x"><D:prop><Z:color/></D:prop></D:propfind>'
    assert "red" in alice.session.request("PROPFIND", server.dav("p.txt"), data=query, headers={"Depth": "0"}).text
    assert "red" not in bob.session.request("PROPFIND", server.dav("p.txt"), data=query, headers={"Depth": "0"}).text


def test_a_symlink_planted_in_a_space_is_not_followed(server, alice, bob, bob_has_a_secret):
    (server.space(alice.name) / "link").symlink_to(server.space(bob.name))
    assert alice.session.get(server.dav("link/private/secret.txt")).status_code in (403, 404)
    assert SECRET not in alice.session.request("PROPFIND", server.dav(), headers={"Depth": "1"}).content
