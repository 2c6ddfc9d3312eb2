"""Metadata written to one user's copy of deduplicated content changes that copy alone.

Users who download identical content get hard links to one object of the content store.
Each test here gives two or three users such links (each from their own URL), has one user
write metadata in every way a client can, and checks that the others' files keep their
bytes, modification time, Last-Modified and ETag, while the writer sees the change.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.conftest import Account, new_account
from tests.downloads_helpers import url_shortcut, wait_for

CONTENT = os.urandom(300_000)
MS = 'xmlns:Z="urn:schemas-microsoft-com:"'
WINDOWS = {"User-Agent": "Microsoft-WebDAV-MiniRedir/10.0.19045"}

# A finished trigger lingers a fifth of a second: every holder here waits for theirs to go.
pytestmark = pytest.mark.shared_server(settings={"engine.trigger_linger": 0.2})


def proppatch(prop: str, namespace: str = "") -> bytes:
    return (f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" {namespace}>'
            f"<D:set><D:prop>{prop}</D:prop></D:set></D:propertyupdate>").encode()


# Each row: what one user does to their copy, and whether it must change their Last-Modified.
WRITES = {
    "Win32LastModifiedTime": (
        lambda h, url: h.session.request("PROPPATCH", url, headers=WINDOWS, data=proppatch(
            "<Z:Win32LastModifiedTime>Wed, 01 Jan 2020 10:00:00 GMT</Z:Win32LastModifiedTime>", MS)),
        True,
    ),
    "all Win32 times and attributes at once, as Explorer sends them": (
        lambda h, url: h.session.request("PROPPATCH", url, headers=WINDOWS, data=proppatch(
            "<Z:Win32CreationTime>Tue, 02 Feb 2021 11:00:00 GMT</Z:Win32CreationTime>"
            "<Z:Win32LastAccessTime>Tue, 02 Feb 2021 11:00:00 GMT</Z:Win32LastAccessTime>"
            "<Z:Win32LastModifiedTime>Tue, 02 Feb 2021 11:00:00 GMT</Z:Win32LastModifiedTime>"
            "<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>", MS)),
        True,
    ),
    "Win32CreationTime alone": (
        lambda h, url: h.session.request("PROPPATCH", url, headers=WINDOWS, data=proppatch(
            "<Z:Win32CreationTime>Tue, 02 Feb 2021 11:00:00 GMT</Z:Win32CreationTime>", MS)),
        False,
    ),
    "getlastmodified (protected)": (
        lambda h, url: h.session.request("PROPPATCH", url, data=proppatch(
            "<D:getlastmodified>Mon, 01 Mar 2021 12:00:00 GMT</D:getlastmodified>")),
        False,
    ),
    "a dead property": (
        lambda h, url: h.session.request("PROPPATCH", url, data=proppatch(
            "<X:color>red</X:color>", 'xmlns:X="urn:example:"')),
        False,
    ),
    "PUT of the same content (a touch)": (
        lambda h, url: h.session.put(url, data=CONTENT),
        True,
    ),
}


def holders_of_the_content(server, origin, names: list[str]) -> list[Account]:
    """New users who each downloaded CONTENT from their own URL, all at once; once filed, each
    copy is a hard link to the one stored object. Returned once every trigger has lingered and
    gone, so that the users' used bytes hold still."""
    holders = [new_account(server, name, f"{name}-password") for name in names]
    for holder in holders:
        origin.add(f"/{holder.name}/same.bin", CONTENT)
        holder.session.put(server.dav("downloads/same.bin.url"),
                           data=url_shortcut(origin.url(f"/{holder.name}/same.bin")))
    for holder in holders:
        wait_for(lambda: (holder.session.get(server.url("/api/v1/tasks")).json() or [{}])[0].get("sha256"),
                 message=f"{holder.name}'s download filed in the store")
        wait_for(lambda: not (server.space(holder.name) / "downloads" / "same.bin.url").exists(),
                 message=f"{holder.name}'s trigger gone")
    return holders


def inode(server, holder: Account) -> int:
    return os.stat(server.space(holder.name) / "downloads" / "same.bin").st_ino


def observed(server, holder: Account) -> tuple:
    path = server.space(holder.name) / "downloads" / "same.bin"
    response = holder.session.get(server.dav("downloads/same.bin"))
    return (hashlib.sha256(response.content).hexdigest(), response.headers["Last-Modified"],
            response.headers["ETag"], os.stat(path).st_mtime_ns)


@pytest.mark.parametrize("observers", [1, 2], ids=["shared with 1 other", "shared with 2 others"])
def test_a_metadata_write_changes_only_the_writers_copy(server, origin, observers):
    """Every kind of write in WRITES, each by a new user holding the same content."""
    holders = holders_of_the_content(server, origin, [f"other{n}" for n in range(observers)]
                                     + [f"writer{number}" for number in range(len(WRITES))])
    others, writers = holders[:observers], holders[observers:]
    before = {h.name: observed(server, h) for h in others}
    for writer, (write, (act, changes_date)) in zip(writers, WRITES.items()):
        assert inode(server, writer) == inode(server, others[0]), "not stored once; the test would prove nothing"
        mine_before = observed(server, writer)
        used_before = writer.session.get(server.url("/api/v1/me")).json()["used_bytes"]
        response = act(writer, server.dav("downloads/same.bin"))
        assert response.status_code < 500, (write, response.text)
        for other in others:
            assert observed(server, other) == before[other.name], f"{write} changed {other.name}'s file"
        mine = observed(server, writer)
        assert mine[0] == mine_before[0], write  # the same bytes
        if changes_date:
            assert mine[2] != mine_before[2], f"{write}: the writer's ETag did not change"
        if write != "a dead property":
            assert writer.session.get(server.url("/api/v1/me")).json()["used_bytes"] == used_before, write


def test_every_user_may_set_their_own_time_on_shared_content(server, origin):
    holders = holders_of_the_content(server, origin, ["ann", "ben", "cat"])
    stamps = dict(zip((h.name for h in holders), ("Wed, 01 Jan 2020 10:00:00 GMT", "Thu, 02 Jan 2020 10:00:00 GMT",
                                                  "Fri, 03 Jan 2020 10:00:00 GMT")))
    for holder in holders:
        body = proppatch(f"<Z:Win32LastModifiedTime>{stamps[holder.name]}</Z:Win32LastModifiedTime>", MS)
        assert holder.session.request("PROPPATCH", server.dav("downloads/same.bin"), headers=WINDOWS,
                                      data=body).status_code == 207
    for holder in holders:
        got = holder.session.get(server.dav("downloads/same.bin"))
        assert got.headers["Last-Modified"] == stamps[holder.name] and got.content == CONTENT
    assert len({observed(server, h)[2] for h in holders}) == 3  # three ETags
