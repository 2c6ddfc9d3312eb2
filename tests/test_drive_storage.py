"""Quota, atomic writes, the protected downloads folder and what real clients need."""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import time

import pytest

from tests.quota_helpers import uploads_left

QUOTA_PROPS = (
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>"
)


pytestmark = pytest.mark.shared_server


def quota_of(server, account, path=""):
    text = account.session.request("PROPFIND", server.dav(path), data=QUOTA_PROPS, headers={"Depth": "0"}).text
    used = int(re.search(r"quota-used-bytes>(\d+)<", text).group(1))
    available = int(re.search(r"quota-available-bytes>(\d+)<", text).group(1))
    return used, available


def raw_put(server, account, path: str, head: bytes, declared: int, *, chunked: bool = False) -> None:
    """Send a PUT that declares `declared` bytes, send only `head`, and hang up."""
    host, port = server.base_url.split("//")[1].split(":")
    auth = base64.b64encode(f"{account.name}:{account.password}".encode()).decode()
    length = (
        f"Transfer-Encoding: chunked\r\nX-Expected-Entity-Length: {declared}\r\n"
        if chunked
        else f"Content-Length: {declared}\r\n"
    )
    request = f"PUT /dav/{path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n{length}\r\n"
    body = (f"{len(head):x}\r\n".encode() + head + b"\r\n") if chunked else head
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(request.encode() + body)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


@pytest.mark.both_databases
def test_quota_properties_appear_on_every_collection_and_follow_put_copy_move_delete(server, alice):
    assert quota_of(server, alice) == (0, 10 * 1024 * 1024)
    alice.session.request("MKCOL", server.dav("docs"))
    alice.session.put(server.dav("docs/a.bin"), data=b"x" * 1000)
    assert quota_of(server, alice, "docs/") == (1000, 10 * 1024 * 1024 - 1000)
    assert quota_of(server, alice, "downloads/")[0] == 1000
    alice.session.request("COPY", server.dav("docs/a.bin"), headers={"Destination": "/dav/docs/b.bin"})
    assert quota_of(server, alice)[0] == 2000
    alice.session.request("MOVE", server.dav("docs/b.bin"), headers={"Destination": "/dav/c.bin"})
    assert quota_of(server, alice)[0] == 2000
    alice.session.put(server.dav("c.bin"), data=b"y" * 10)
    assert quota_of(server, alice)[0] == 1010
    alice.session.delete(server.dav("docs/"))
    assert quota_of(server, alice)[0] == 10


@pytest.mark.both_databases
def test_a_put_over_quota_gets_507_and_leaves_nothing_behind(server, alice):
    alice.session.put(server.dav("keep.bin"), data=b"k" * 100)
    big = b"z" * (11 * 1024 * 1024)
    assert alice.session.put(server.dav("big.bin"), data=big).status_code == 507
    assert alice.session.put(server.dav("keep.bin"), data=big).status_code == 507
    assert not (server.space(alice.name) / "big.bin").exists()
    assert (server.space(alice.name) / "keep.bin").read_bytes() == b"k" * 100
    assert quota_of(server, alice)[0] == 100
    assert not uploads_left(server)


def test_a_chunked_put_over_quota_is_stopped_while_streaming(server, alice):
    def body():
        for _ in range(12):
            yield b"c" * (1024 * 1024)

    response = alice.session.put(server.dav("stream.bin"), data=body())
    assert response.status_code == 507
    assert not (server.space(alice.name) / "stream.bin").exists()


def test_copy_over_quota_gets_507(server, alice):
    alice.session.put(server.dav("six.bin"), data=b"6" * (6 * 1024 * 1024))
    response = alice.session.request("COPY", server.dav("six.bin"), headers={"Destination": "/dav/again.bin"})
    assert response.status_code == 507
    assert not (server.space(alice.name) / "again.bin").exists()


@pytest.mark.both_databases
@pytest.mark.parametrize("chunked", [False, True])
def test_an_interrupted_put_leaves_the_old_content_intact(server, alice, chunked):
    alice.session.put(server.dav("doc.txt"), data=b"old content")
    raw_put(server, alice, "doc.txt", b"new con", declared=100, chunked=chunked)
    assert alice.session.get(server.dav("doc.txt")).content == b"old content"
    raw_put(server, alice, "fresh.txt", b"half", declared=100, chunked=chunked)
    assert alice.session.get(server.dav("fresh.txt")).status_code == 404
    assert "fresh.txt" not in alice.session.request("PROPFIND", server.dav(), headers={"Depth": "1"}).text
    assert not uploads_left(server)
    assert "Traceback" not in server.log_text()  # a client's fault, answered; nothing for the log


def raw_put_in_pieces(server, account, path: str, body: bytes, pieces: list[int], pause: float) -> bytes:
    """Send a PUT whose head and first bytes share one packet and whose body then comes in
    `pieces` (sizes) with `pause` seconds between them; the response head, or b"" if none."""
    host, port = server.base_url.split("//")[1].split(":")
    auth = base64.b64encode(f"{account.name}:{account.password}".encode()).decode()
    head = (f"PUT /dav/{path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as conn:
        position = pieces[0]
        conn.sendall(head + body[:position])
        for size in pieces[1:]:
            time.sleep(pause)
            try:
                conn.sendall(body[position:position + size])
            except OSError:
                break  # the server gave up on this request
            position += size
        conn.settimeout(30)
        try:
            return conn.recv(65536)
        except OSError:
            return b""


def test_a_large_put_arriving_in_uneven_pieces_is_stored_byte_identical(server, alice):
    body = os.urandom(5 * 1024 * 1024 + 17)
    rng = random.Random(3)
    pieces = [1000]
    while sum(pieces) < len(body):
        pieces.append(min(rng.choice([1, 700, 65536, 1024 * 1024 + 5]), len(body) - sum(pieces)))
    answer = raw_put_in_pieces(server, alice, "pieces.bin", body, pieces, pause=0.001)
    assert answer.startswith(b"HTTP/1.1 201")
    assert alice.session.get(server.dav("pieces.bin")).content == body
    assert quota_of(server, alice)[0] == len(body)


def test_a_put_whose_body_stalls_past_server_timeout_changes_nothing(make_server):
    server = make_server(settings={"server.timeout": 1})
    server.add_user("alice", "alice-password")
    session = server.session("alice", "alice-password")
    assert session.put(server.dav("doc.bin"), data=b"old content").status_code == 201

    class Account:
        name, password = "alice", "alice-password"

    body = os.urandom(3 * 1024 * 1024)
    answer = raw_put_in_pieces(server, Account, "doc.bin", body, [1024 * 1024, 1024 * 1024], pause=2)
    assert not answer.startswith(b"HTTP/1.1 2")
    assert session.get(server.dav("doc.bin")).content == b"old content"
    assert not uploads_left(server)
    assert "Traceback" not in server.log_text()


def test_a_chunked_put_without_length_is_stored(server, alice):
    response = alice.session.put(server.dav("finder.bin"), data=iter([b"a" * 1000, b"b" * 1000]))
    assert response.status_code == 201
    assert alice.session.get(server.dav("finder.bin")).content == b"a" * 1000 + b"b" * 1000


@pytest.mark.parametrize(
    "method, headers",
    [
        ("DELETE", {}),
        ("MOVE", {"Destination": "/dav/elsewhere"}),
    ],
)
def test_the_downloads_folder_cannot_be_deleted_or_moved(server, alice, method, headers):
    alice.session.put(server.dav("downloads/keep.txt"), data=b"k")
    response = alice.session.request(method, server.dav("downloads/"), headers=headers)
    assert response.status_code == 403
    assert (server.space(alice.name) / "downloads" / "keep.txt").read_bytes() == b"k"


def test_nothing_can_replace_the_downloads_folder(server, alice):
    alice.session.request("MKCOL", server.dav("other"))
    response = alice.session.request("MOVE", server.dav("other/"), headers={"Destination": "/dav/downloads", "Overwrite": "T"})
    assert response.status_code == 403
    assert (server.space(alice.name) / "downloads").is_dir()


def test_head_on_a_folder_and_junk_files_work(server, alice):
    assert alice.session.head(server.dav("downloads/")).status_code == 200
    for junk in ("._photo.jpg", ".DS_Store", "Thumbs.db"):
        assert alice.session.put(server.dav(junk), data=b"junk").status_code == 201


def test_move_of_a_single_file_works(server, alice):
    alice.session.put(server.dav("one.txt"), data=b"1")
    assert alice.session.request("MOVE", server.dav("one.txt"), headers={"Destination": "/dav/two.txt"}).status_code == 201
    assert alice.session.get(server.dav("two.txt")).content == b"1"


def test_propfind_depth_infinity_is_refused(server, alice):
    response = alice.session.request("PROPFIND", server.dav(), headers={"Depth": "infinity"})
    assert response.status_code == 403
    assert "propfind-finite-depth" in response.text


def test_an_overlong_name_gets_a_clear_4xx(server, alice):
    response = alice.session.put(server.dav("x" * 300), data=b"x")
    assert 400 <= response.status_code < 500


def test_a_put_replaces_the_file_with_a_new_inode(server, alice):
    """A PUT replaces the file with a new inode, so hard-linked copies elsewhere stay as they were."""
    alice.session.put(server.dav("f.txt"), data=b"original")
    first = (server.space(alice.name) / "f.txt").stat().st_ino
    alice.session.put(server.dav("f.txt"), data=b"changed")
    assert (server.space(alice.name) / "f.txt").stat().st_ino != first
