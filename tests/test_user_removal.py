"""`fetchdrive user remove` beside a running server: the user's downloads stop, their data goes
and nothing of them comes back, while other users' downloads go on."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Account
from tests.downloads_helpers import temp_downloads, url_shortcut, wait_for

# One connection a task: a cancelled segmented download keeps its quota reservation in the
# running server (a known engine bug, any cancel), which would charge a user added again.
pytestmark = pytest.mark.shared_server(
    settings={"engine.workers": 8, "engine.per_user": 2, "engine.connections_per_task": 1})
SLOW = 64 * 1024  # bytes a second: a 16 MiB body takes four minutes, far longer than any test waits
BIG = b"r" * (16 * 1024 * 1024)


def _rows(server, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(f"file:{server.data / 'fetchdrive.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


def _start_download(server, account, origin, how: str, number: int) -> str:
    """Start one slow download for `account` the way `how` says; returns its origin path."""
    path = f"/{account.name}-{how}-{number}.bin"
    origin.add(path, BIG, rate=SLOW)
    if how == "api":
        response = account.session.post(server.url("/api/v1/tasks"), json={"url": origin.url(path)})
        assert response.status_code == 201, response.text
    else:
        response = account.session.put(server.dav(f"downloads/{how}-{number}.url"), data=url_shortcut(origin.url(path)))
        assert response.status_code in (201, 204), response.text
    return path


def _settled(origin, paths: list[str]) -> int:
    """Bytes the origin has sent for `paths`, once no response to them is under way: those
    requests can send nothing more (a new one would show in the checks after)."""
    wait_for(lambda: not any(origin.sending(path) for path in paths), timeout=30, message="the origin to stop sending")
    return sum(origin.bytes_sent(path) for path in paths)


# (user, how each of their downloads starts, --keep-files); per_user is 2, so "mixed"'s third waits in the queue.
CASES = [
    ("api-user", ["api"], False),
    ("trigger-user", ["trigger"], False),
    ("mixed-user", ["api", "trigger", "trigger"], False),
    ("kept-user", ["trigger", "api"], True),
]


def test_removing_users_stops_their_downloads_and_leaves_nothing_behind(server, origin):
    accounts = {}
    for name, _hows, _keep in CASES + [("bob", [], False)]:
        server.add_user(name, f"{name}-password", quota="100M")
        accounts[name] = Account(name, f"{name}-password", server.session(name, f"{name}-password"))
    paths = {name: [_start_download(server, accounts[name], origin, how, n) for n, how in enumerate(hows)]
             for name, hows, _keep in CASES}
    origin.add("/bob.bin", BIG, rate=SLOW)
    bob_task = accounts["bob"].session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/bob.bin")}).json()
    for name, hows, _keep in CASES:
        wait_for(lambda: len(_rows(server, "select id from tasks where user = ?", name)) == len(hows), message=f"{name}'s tasks")
        wait_for(lambda: origin.bytes_sent(paths[name][0]) > 0, message=f"{name}'s first download to run")

    stopped_at: dict[str, int] = {}
    for name, _hows, keep_files in CASES:
        ids = {row[0] for row in _rows(server, "select id from tasks where user = ?", name)}
        server.command("user", "remove", name, *(["--keep-files"] if keep_files else []))

        sent = stopped_at[name] = _settled(origin, paths[name])
        assert sent < len(BIG) * len(paths[name])  # stopped, never finished
        assert _rows(server, "select count(*) from tasks where user = ?", name) == [(0,)]
        assert _rows(server, "select count(*) from events where user = ?", name) == [(0,)]
        assert not [item for item in temp_downloads(server.data) if int(item.split(".")[0]) in ids]
        assert server.space(name).exists() == keep_files
        if keep_files:  # the triggers the user wrote stay; nothing the server made does
            assert all(p.name.endswith(".url") for p in (server.space(name) / "downloads").iterdir())
        assert accounts[name].session.get(server.url("/api/v1/tasks")).status_code == 401
        bob = accounts["bob"].session.get(server.url(f"/api/v1/tasks/{bob_task['id']}")).json()
        assert bob["state"] == "downloading", bob  # another user's download goes on

    # Nothing of the users removed first has come back while the others were being removed.
    for name, _hows, keep_files in CASES:
        assert sum(origin.bytes_sent(path) for path in paths[name]) == stopped_at[name]
        assert server.space(name).exists() == keep_files
        assert _rows(server, "select count(*) from tasks where user = ?", name) == [(0,)]
    assert _rows(server, "select state from tasks where id = ?", bob_task["id"]) == [("downloading",)]


PROPPATCH = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop>'
             b'<Z:colour>carol-secret-colour</Z:colour></D:prop></D:set></D:propertyupdate>')
LOCK = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
        b'<D:locktype><D:write/></D:locktype><D:owner>carol</D:owner></D:lockinfo>')
PROPFIND = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


def test_a_user_added_again_under_a_removed_name_inherits_nothing(server, origin):
    user = server.unused_user_name("carol")
    server.add_user(user, "carol-password", quota="100M")
    carol = server.session(user, "carol-password")
    origin.add("/carol.bin", BIG, rate=SLOW)
    assert carol.post(server.url("/api/v1/tasks"), json={"url": origin.url("/carol.bin")}).status_code == 201
    for name in ("mine.txt", "locked.txt"):
        assert carol.put(server.dav(f"downloads/{name}"), data=b"carol's file").status_code == 201
    assert carol.request("PROPPATCH", server.dav("downloads/mine.txt"), data=PROPPATCH).status_code == 207
    assert carol.request("LOCK", server.dav("downloads/locked.txt"), data=LOCK,
                         headers={"Timeout": "Second-3600"}).status_code == 200
    assert carol.post(server.url("/api/v1/shares"), json={"path": "downloads/mine.txt"}).status_code == 201
    wait_for(lambda: origin.bytes_sent("/carol.bin") > 0, message="carol's download to run")

    server.command("user", "remove", user)
    server.add_user(user, "another-password", quota="100M")
    again = server.session(user, "another-password")
    assert again.get(server.url("/api/v1/tasks")).json() == []
    assert again.get(server.url("/api/v1/shares")).json() == []
    assert again.get(server.dav("downloads/mine.txt")).status_code == 404
    assert sorted(p.name for p in server.space(user).rglob("*")) == ["downloads"]
    for name in ("mine.txt", "locked.txt"):  # the same paths again: no old lock, no old property
        assert again.put(server.dav(f"downloads/{name}"), data=b"new").status_code == 201
        listing = again.request("PROPFIND", server.dav(f"downloads/{name}"), data=PROPFIND, headers={"Depth": "0"})
        assert b"carol-secret-colour" not in listing.content and b"locktoken" not in listing.content
    assert again.get(server.url("/api/v1/me")).json()["used_bytes"] == 2 * len(b"new")
