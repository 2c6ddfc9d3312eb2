"""The quota is exact at every moment, under concurrent uploads, copies and downloads, and it
counts everything a user stores: dead properties too. Files, folders, locks and lock owners
have caps (storage.max_*).

While clients run, a sampler thread watches the disk (the user's space plus the temporary
areas, as only that user is active) and `quota-used-bytes`: neither may ever pass the quota,
and afterwards the used figure must equal a recount.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from provider.quota import tree_size
from tests.conftest import new_account
from tests.downloads_helpers import temp_downloads, url_shortcut, wait_for
from tests.quota_helpers import Sampler, quota_props, recounted, used, uploads_left
from tests.raw_http import DroppedConnection, raw_request

QUOTA = 4 * 1024 * 1024
# One worker runs the whole file (--dist loadgroup), so each of its shared servers starts once, not once a worker.
pytestmark = pytest.mark.xdist_group("test_quota_exact")


class SlowBody:
    """A request body of known length that takes a pause every 256 KiB, so that concurrent
    uploads are in flight together."""

    def __init__(self, size: int, pause: float = 0.1) -> None:
        self.size, self.pause, self.sent = size, pause, 0

    def __len__(self) -> int:
        return self.size - self.sent

    def read(self, amount: int = 65536) -> bytes:
        amount = min(amount, 64 * 1024, self.size - self.sent)
        if amount and self.sent % (256 * 1024) < amount:
            time.sleep(self.pause)
        self.sent += amount
        return b"q" * amount


def slow_chunks(size: int):
    for _ in range(size // (256 * 1024)):
        time.sleep(0.05)
        yield b"c" * (256 * 1024)
    yield b"c" * (size % (256 * 1024))


@dataclass
class Tiny:
    server: object
    name: str
    session: requests.Session


FOUR_AT_ONCE = {"engine.workers": 4, "engine.per_user": 4}


def tiny_user(server) -> Tiny:
    account = new_account(server, "tiny", "tiny-password", quota=str(QUOTA))
    return Tiny(server, account.name, account.session)


@pytest.fixture
def tiny(shared_servers) -> Tiny:
    """A new user with a 4 MiB quota on a server that runs four downloads at once. The file's
    tests share that server and run one at a time, so the user is the only one active on it."""
    return tiny_user(shared_servers(FOUR_AT_ONCE))


def put_all_at_once(tiny: Tiny, paths: list[str], body) -> list[int | None]:
    """PUT each path from its own thread, all released together; status codes (None: the
    server hung up on a refused body)."""
    barrier = threading.Barrier(len(paths))
    statuses: list[int | None] = [None] * len(paths)

    def put(index: int, path: str) -> None:
        session = tiny.server.session(tiny.name, "tiny-password")
        barrier.wait()
        try:
            statuses[index] = session.put(tiny.server.dav(path), data=body(), timeout=60).status_code
        except requests.ConnectionError:
            pass

    threads = [threading.Thread(target=put, args=(n, path)) for n, path in enumerate(paths)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


# (PUTs, bytes each, same path for all?, body of known length?, most that fit in 4 MiB)
PUT_CASES = {
    "ten 3 MB PUTs to ten names": (10, 3_000_000, False, True, 1),
    "ten 3 MB PUTs to one name": (10, 3_000_000, True, True, 1),
    "eight 700 kB PUTs": (8, 700_000, False, True, 5),
    "six 1.5 MB chunked PUTs": (6, 1_500_000, False, False, 2),
}


@pytest.mark.both_databases
@pytest.mark.parametrize("case", list(PUT_CASES))
def test_concurrent_puts_never_store_more_than_the_quota(tiny, case):
    count, size, same_path, known_length, most = PUT_CASES[case]
    paths = ["one.bin" if same_path else f"f{n}.bin" for n in range(count)]
    body = (lambda: SlowBody(size)) if known_length else (lambda: slow_chunks(size))
    with Sampler(tiny.server, tiny.name, tiny.session) as sampler:
        statuses = put_all_at_once(tiny, paths, body)
    stored = [p for p in set(paths) if (tiny.server.space(tiny.name) / p).exists()]
    assert 1 <= len(stored) <= most, statuses
    assert all(status in (201, 204, 507, None) for status in statuses), statuses
    assert statuses.count(507) + statuses.count(None) >= count - most, statuses
    assert sampler.samples and sampler.most_on_disk <= QUOTA and sampler.most_used <= QUOTA
    assert used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name)) == len(stored) * size
    assert not uploads_left(tiny.server)
    assert "Traceback" not in tiny.server.log_text()  # a full quota is the client's matter


def test_concurrent_copies_never_store_more_than_the_quota(tiny):
    source = b"s" * 1_500_000
    assert tiny.session.put(tiny.server.dav("source.bin"), data=source).status_code == 201
    barrier = threading.Barrier(6)
    statuses = []

    def copy(number: int) -> None:
        session = tiny.server.session(tiny.name, "tiny-password")
        barrier.wait()
        statuses.append(session.request("COPY", tiny.server.dav("source.bin"),
                                        headers={"Destination": f"/dav/copy{number}.bin"}).status_code)

    with Sampler(tiny.server, tiny.name, tiny.session) as sampler:
        threads = [threading.Thread(target=copy, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [201, 507, 507, 507, 507, 507]
    assert sampler.most_on_disk <= QUOTA and sampler.most_used <= QUOTA
    assert used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name)) == 2 * len(source)


FRAMINGS = {"with a length": {}, "without a length": {"send_length": False}, "chunked": {"chunked": True}}


def task_states(tiny: Tiny) -> list[dict]:
    return tiny.session.get(tiny.server.url("/api/v1/tasks")).json()


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_concurrent_downloads_never_hold_more_than_the_quota(tiny, origin, framing):
    """Four 3 MB downloads at once into 4 MiB: one fits; the temporary area never holds more.
    Contents of this framing's own: content the store holds already (from another framing's
    run on this server) is filed by relinking the published file to the stored copy, and in
    that instant the disk holds both, which is the store's, not the user's."""
    first = 4 * list(FRAMINGS).index(framing)
    for number in range(4):
        origin.add(f"/d{number}.bin", bytes([first + number]) * 3_000_000, rate=3_000_000, **FRAMINGS[framing])
    with Sampler(tiny.server, tiny.name, tiny.session) as sampler:
        # A trigger is bytes too: one uploaded after the downloads took the room gets a 507.
        accepted = sum(tiny.session.put(tiny.server.dav(f"downloads/d{number}.url"),
                                        data=url_shortcut(origin.url(f"/d{number}.bin"))).status_code == 201
                       for number in range(4))
        assert accepted >= 2
        finished = wait_for(lambda: (lambda tasks: tasks if len(tasks) == accepted and all(
            t["state"] in ("done", "failed") for t in tasks) else None)(task_states(tiny)), timeout=60,
            message="every download done or failed")
    done = [task for task in finished if task["state"] == "done"]
    assert len(done) == 1, finished
    assert all("not enough space" in task["error"] for task in finished if task["state"] == "failed")
    assert sampler.most_on_disk <= QUOTA and sampler.most_used <= QUOTA
    wait_for(lambda: not temp_downloads(tiny.server.data), message="temporary data removed")
    assert used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name))


@pytest.mark.parametrize("framing", ["without a length", "chunked"])
def test_a_download_of_unknown_length_stops_at_the_quota(tiny, origin, framing):
    tiny.session.put(tiny.server.dav("already.bin"), data=b"a" * 1_000_000)
    room = QUOTA - used(tiny.session, tiny.server)
    origin.add("/endless.bin", b"e" * (3 * QUOTA), rate=6_000_000, **FRAMINGS[framing])
    with Sampler(tiny.server, tiny.name, tiny.session) as sampler:
        tiny.session.put(tiny.server.dav("downloads/endless.url"), data=url_shortcut(origin.url("/endless.bin")))
        error = tiny.server.space(tiny.name) / "downloads" / "endless.url.error.txt"
        wait_for(error.exists, timeout=60, message="the error file")
    assert "not enough space" in error.read_text()
    assert sampler.most_on_disk <= QUOTA and sampler.most_used <= QUOTA
    assert origin.bytes_sent("/endless.bin") < room + 8 * 1024 * 1024  # what was in flight, not 3x the quota
    wait_for(lambda: not temp_downloads(tiny.server.data), message="temporary data removed")
    assert used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name))


def test_a_restart_leaves_no_phantom_reservation(make_server, origin):
    server = make_server(settings={"engine.connections_per_task": 1})
    server.add_user("tiny", "tiny-password", quota=str(QUOTA))
    session = server.session("tiny", "tiny-password")
    slow = origin.add("/slow.bin", b"s" * 3_000_000, rate=300_000)
    session.put(server.dav("downloads/slow.url"), data=url_shortcut(origin.url("/slow.bin")))
    wait_for(lambda: sum(p.stat().st_size for p in (server.data / "tmp" / "downloads").iterdir()) > 300_000,
             message="part of the download saved")
    in_flight = threading.Thread(target=put_all_at_once, args=(Tiny(server, "tiny", session), ["big.bin"],
                                                               lambda: SlowBody(700_000, pause=2)))
    in_flight.start()
    wait_for(lambda: uploads_left(server), message="the upload under way")
    server.kill()
    in_flight.join()
    server.start()
    saved = sum(p.stat().st_size for p in (server.data / "tmp" / "downloads").iterdir())
    # The saved part of the download holds its room again (the whole file once it resumed);
    # the cut-off upload holds none.
    assert used(session, server) - tree_size(server.space("tiny")) in (saved, 3_000_000)
    assert not (server.space("tiny") / "big.bin").exists()
    slow.rate = None  # the pace kept the download unfinished across the restart
    wait_for(lambda: (server.space("tiny") / "downloads" / "slow.bin").exists(), timeout=60, message="download done")
    assert used(session, server) == tree_size(server.space("tiny"))
    assert quota_props(session, server)[1] == QUOTA - used(session, server)


# --- dead properties ---------------------------------------------------------

def proppatch(session, url: str, name: str, value: str | None) -> requests.Response:
    action = f"<D:set><D:prop><X:{name}>{value}</X:{name}></D:prop></D:set>" if value is not None else \
        f"<D:remove><D:prop><X:{name}/></D:prop></D:remove>"
    body = f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:x:">{action}</D:propertyupdate>'
    return session.request("PROPPATCH", url, data=body.encode())


def property_status(response: requests.Response) -> int:
    assert response.status_code == 207, response.text
    return int(re.search(r"HTTP/1.1 (\d+)", response.text).group(1))


PROPERTY_CASES = [(target, value_size) for target in ("", "docs/", "docs/a.txt") for value_size in (1, 60_000)]


def test_dead_properties_count_in_the_quota(make_server):
    """On the root, a folder and a file, with a tiny and a large value, each case a user of its
    own: the quota counts the property as it is set, changed, kept across a restart and removed.
    The cases share one server and one restart (a server and a restart each took a quarter of
    this file's time)."""
    server = make_server(settings=FOUR_AT_ONCE)
    cases = [(tiny_user(server), target, value_size) for target, value_size in PROPERTY_CASES]
    before: dict[str, int] = {}
    for tiny, target, value_size in cases:
        tiny.session.request("MKCOL", server.dav("docs"))
        tiny.session.put(server.dav("docs/a.txt"), data=b"text")
        url = server.dav(target)
        before[tiny.name] = used(tiny.session, server)
        assert property_status(proppatch(tiny.session, url, "note", "v" * value_size)) == 200
        grown = used(tiny.session, server) - before[tiny.name]
        assert value_size < grown < value_size + 200, (target, value_size)
        assert used(tiny.session, server) == recounted(server, tiny.name)
        assert property_status(proppatch(tiny.session, url, "note", "w" * (value_size // 2))) == 200
        assert used(tiny.session, server) == recounted(server, tiny.name)
    server.restart()  # on another port
    for tiny, target, value_size in cases:
        assert used(tiny.session, server) == recounted(server, tiny.name), (target, value_size)
        assert property_status(proppatch(tiny.session, server.dav(target), "note", None)) == 200
        assert used(tiny.session, server) == before[tiny.name], (target, value_size)


@pytest.mark.both_databases
def test_properties_follow_copy_move_and_delete(tiny):
    tiny.session.put(tiny.server.dav("a.txt"), data=b"text")
    proppatch(tiny.session, tiny.server.dav("a.txt"), "note", "n" * 10_000)
    with_one = used(tiny.session, tiny.server)
    tiny.session.request("COPY", tiny.server.dav("a.txt"), headers={"Destination": "/dav/b.txt"})
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name) > 2 * with_one - 10
    tiny.session.request("MOVE", tiny.server.dav("b.txt"), headers={"Destination": "/dav/c.txt"})
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name)
    tiny.session.delete(tiny.server.dav("c.txt"))
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name) == with_one
    tiny.session.request("MKCOL", tiny.server.dav("folder"))
    tiny.session.request("MOVE", tiny.server.dav("a.txt"), headers={"Destination": "/dav/folder/a.txt"})
    proppatch(tiny.session, tiny.server.dav("folder/"), "note", "f" * 1000)
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name) > with_one
    tiny.session.delete(tiny.server.dav("folder/"))  # its members' properties go too
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name) == 0


def test_properties_stop_at_the_quota_and_the_size_cap(tiny):
    tiny.session.put(tiny.server.dav("filler.bin"), data=b"f" * (QUOTA - 200_000))
    database = tiny.server.data / "fetchdrive.sqlite"
    statuses = [property_status(proppatch(tiny.session, tiny.server.dav("filler.bin"), f"p{n}", "v" * 60_000))
                for n in range(6)]
    assert statuses == [200, 200, 200, 507, 507, 507]
    assert used(tiny.session, tiny.server) <= QUOTA
    size_before = database.stat().st_size
    for number in range(40):  # the report: forty 1 MB properties were all accepted
        response = proppatch(tiny.session, tiny.server.dav(""), f"big{number}", "b" * 1_000_000)
        assert property_status(response) == 507 and "storage.max_property_bytes" in response.text
    assert database.stat().st_size - size_before < 2 * 1024 * 1024
    assert used(tiny.session, tiny.server) == recounted(tiny.server, tiny.name) <= QUOTA


# --- caps --------------------------------------------------------------------

LOCK_BODY = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             "<D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>")


def lock(session, url: str, owner: str = "me") -> requests.Response:
    return session.request("LOCK", url, data=LOCK_BODY.format(owner=owner).encode(), headers={"Timeout": "Second-600"})


@pytest.fixture
def capped(shared_servers):
    """Two new users, as "ann" and "ben", on a server with small caps shared by the file's tests."""
    server = shared_servers({"storage.max_files": 6, "storage.max_locks": 3, "storage.max_lock_owner_bytes": 200})
    return server, {role: new_account(server, role, f"{role}-password").session for role in ("ann", "ben")}


def test_files_and_folders_per_user_are_capped(capped):
    server, sessions = capped
    ann = sessions["ann"]
    for number in range(4):  # with downloads/ and docs/: six entries
        assert ann.put(server.dav(f"f{number}.txt"), data=b"x").status_code == 201
    assert ann.request("MKCOL", server.dav("docs")).status_code == 201
    refused = [
        ann.put(server.dav("one-more.txt"), data=b"x"),
        ann.request("MKCOL", server.dav("more")),
        ann.request("COPY", server.dav("f0.txt"), headers={"Destination": "/dav/f9.txt"}),
        lock(ann, server.dav("locked-new.txt")),
    ]
    for response in refused:
        assert response.status_code == 507 and "storage.max_files" in response.text, response.text
    assert ann.put(server.dav("f0.txt"), data=b"replaced").status_code == 204  # not a new entry
    assert sessions["ben"].put(server.dav("ben.txt"), data=b"x").status_code == 201  # ben has his own count
    assert ann.delete(server.dav("f1.txt")).status_code == 204
    assert ann.put(server.dav("now-fits.txt"), data=b"x").status_code == 201


def test_locks_per_user_and_lock_owners_are_capped(capped):
    server, sessions = capped
    ann = sessions["ann"]
    for number in range(4):
        ann.put(server.dav(f"f{number}.txt"), data=b"x")
    tokens = [lock(ann, server.dav(f"f{number}.txt")).headers.get("Lock-Token") for number in range(3)]
    assert all(tokens)
    fourth = lock(ann, server.dav("f3.txt"))
    assert fourth.status_code == 507 and "storage.max_locks" in fourth.text
    assert lock(sessions["ben"], server.dav("ben.txt")).status_code == 201  # his own allowance
    assert ann.request("UNLOCK", server.dav("f0.txt"), headers={"Lock-Token": tokens[0]}).status_code == 204
    assert lock(ann, server.dav("f3.txt")).status_code == 200
    for owner in ("o" * 300, "<D:href>" + "h" * 400 + "</D:href>"):
        response = lock(sessions["ben"], server.dav("ben.txt") + "2", owner)
        assert response.status_code == 400 and "storage.max_lock_owner_bytes" in response.text


def test_cancelled_downloads_and_cut_off_uploads_give_their_room_back(tiny, origin):
    origin.add("/held.bin", b"h" * 3_000_000, rate=200_000)
    tiny.session.put(tiny.server.dav("downloads/held.url"), data=url_shortcut(origin.url("/held.bin")))
    wait_for(lambda: used(tiny.session, tiny.server) > 3_000_000, message="the download's room reserved")
    assert tiny.session.put(tiny.server.dav("big.bin"), data=b"b" * 2_000_000).status_code == 507
    tiny.session.delete(tiny.server.dav("downloads/held.url"))  # cancels it
    wait_for(lambda: used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name)),
             message="the cancelled download's room given back")
    for cut_after in (1, 1_000_000):
        # Waiting for the answer (or the hang-up) before the checks below: they could pass
        # before the server read the request at all, and the room it took then would refuse
        # the last PUT.
        with contextlib.suppress(DroppedConnection):
            answer = raw_request(tiny.server.base_url, "PUT", b"/dav/cut.bin", body=b"c" * cut_after,
                                 headers={"Authorization": b"Basic " + base64.b64encode(f"{tiny.name}:tiny-password".encode())},
                                 declared_length=3_000_000, timeout=60)
            assert answer.status == 400, answer
        wait_for(lambda: used(tiny.session, tiny.server) == tree_size(tiny.server.space(tiny.name))
                 and not uploads_left(tiny.server), message="the cut-off upload's room back")
    assert tiny.session.put(tiny.server.dav("big.bin"), data=b"b" * 4_000_000).status_code == 201
