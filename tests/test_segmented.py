"""Segmented downloads: several ranges in parallel, each resumed and retried on its own."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import closing

import pytest

from tests.conftest import new_account
from tests.downloads_helpers import refetch_allowed, saved_bytes, temp_downloads, url_shortcut, wait_for

SIZE = 16 * 1024 * 1024  # four ranges of engine/segments.py's smallest, 4 MiB
BODY = os.urandom(SIZE)


def delivered(server, user: str, name: str, timeout: float = 60) -> bytes:
    path = server.space(user) / "downloads" / name
    wait_for(path.exists, timeout=timeout, message=name)
    return path.read_bytes()


def range_starts(origin, path: str) -> set[int]:
    return {int(r.range.split("=")[1].split("-")[0]) for r in origin.requests if r.path == path and r.range}


def segmented_server(servers, **settings) -> tuple:
    """A server from `servers` (shared_servers, or make_server for a test that kills it) that
    fetches in four ranges, and a new user on it."""
    server = servers(settings={"engine.connections_per_task": 4, **settings})
    return server, new_account(server, "alice", "alice-password", quota="1G")


def test_a_large_file_arrives_byte_identical_through_parallel_ranges(shared_servers, origin):
    server, alice = segmented_server(shared_servers)
    origin.add("/big.bin", BODY)
    alice.session.put(server.dav("downloads/big.url"), data=url_shortcut(origin.url("/big.bin")))
    assert hashlib.sha256(delivered(server, alice.name, "big.bin")).digest() == hashlib.sha256(BODY).digest()
    assert len(range_starts(origin, "/big.bin")) >= 4
    assert origin.bytes_sent("/big.bin") < 1.05 * SIZE
    # The file shows as soon as its bytes are in; the digest follows once the hash has caught up.
    assert wait_for(lambda: alice.session.get(server.url("/api/v1/tasks")).json()[0]["sha256"],
                    message="sha256") == hashlib.sha256(BODY).hexdigest()


def test_a_segment_that_fails_alone_is_retried_alone(shared_servers, origin):
    server, alice = segmented_server(shared_servers)
    third = 2 * SIZE // 4
    origin.add("/flaky.bin", BODY, fail_range_start=third, fail_range_times=3)
    alice.session.put(server.dav("downloads/flaky.url"), data=url_shortcut(origin.url("/flaky.bin")))
    assert delivered(server, alice.name, "flaky.bin") == BODY
    unlucky = [r for r in origin.requests if r.range and r.range.startswith(f"bytes={third}-")]
    assert [r.status for r in unlucky] == [503, 503, 503, 206]
    tasks = alice.session.get(server.url("/api/v1/tasks")).json()
    assert tasks[0]["attempts"] == 0  # the task itself never failed


@pytest.mark.parametrize("status, retry_after", [(503, 2), (429, 2), (503, 3)])
def test_a_segment_told_to_retry_after_waits_at_least_that_long(shared_servers, origin, status, retry_after):
    """A 429/503 with Retry-After on one range makes the task wait as the origin asked; the
    segment's own quick retries are for faults the origin did not put a time on."""
    server, alice = segmented_server(shared_servers, **{"engine.retry.max_wait": 10})  # the cap on Retry-After
    third = 2 * SIZE // 4
    origin.add("/later.bin", BODY, fail_range_start=third, fail_range_times=1, fail_status=status,
               retry_after=str(retry_after))
    alice.session.put(server.dav("downloads/later.url"), data=url_shortcut(origin.url("/later.bin")))
    assert delivered(server, alice.name, "later.bin") == BODY
    unlucky = [r for r in origin.requests if r.range and r.range.startswith(f"bytes={third}-")]
    assert [r.status for r in unlucky] == [status, 206]
    assert unlucky[1].at - unlucky[0].at >= retry_after
    assert alice.session.get(server.url("/api/v1/tasks")).json()[0]["attempts"] == 1  # the task waited, once


def test_progress_is_saved_every_half_second_whatever_the_number_of_segments(shared_servers, origin):
    """Eight segments paced by the origin to at least 4 s: the task row in the real database file
    (read as another process would) shows several saved states, where one wait per segment
    per round had saved one every 4 s. At most one save per 0.5 s: tests/test_progress_saver.py."""
    server, alice = segmented_server(shared_servers, **{"engine.connections_per_task": 8})
    body = BODY + BODY[::-1]  # eight ranges of the smallest size
    origin.add("/paced.bin", body, rate=1024 * 1024)
    alice.session.put(server.dav("downloads/paced.url"), data=url_shortcut(origin.url("/paced.bin")))
    path = server.space(alice.name) / "downloads" / "paced.bin"
    seen: set[str] = set()
    with closing(sqlite3.connect(f"file:{server.data / 'fetchdrive.sqlite'}?mode=ro", uri=True, timeout=30)) as database:
        def saved_states() -> bool:
            seen.update(row[0] for row in database.execute("select segments from tasks") if row[0])
            return path.exists()

        wait_for(saved_states, timeout=120, message="paced.bin")
    assert path.read_bytes() == body
    assert len(seen) >= 4, seen


def test_a_dropping_origin_still_gives_an_intact_file_with_little_overhead(shared_servers, origin):
    server, alice = segmented_server(shared_servers)
    origin.add("/drops.bin", BODY, drop_after=3 * 1024 * 1024)  # within each 4 MiB range
    alice.session.put(server.dav("downloads/drops.url"), data=url_shortcut(origin.url("/drops.bin")))
    assert delivered(server, alice.name, "drops.bin") == BODY
    assert origin.bytes_sent("/drops.bin") < 1.3 * SIZE


def test_kill_9_mid_segmented_download_keeps_finished_ranges(make_server, origin):
    server, alice = segmented_server(make_server)
    origin.add("/slow.bin", BODY, rate=3 * 1024 * 1024 // 2)
    alice.session.put(server.dav("downloads/slow.url"), data=url_shortcut(origin.url("/slow.bin")))
    # What the task row holds is what a restart resumes from; the origin has sent more by the
    # kill, the more the later the kill comes on a loaded machine, and those bytes come again.
    wait_for(lambda: saved_bytes(server) > SIZE // 3, timeout=30, message="a third saved")
    server.kill()
    saved, sent_before = saved_bytes(server), origin.bytes_sent("/slow.bin")
    origin.add("/slow.bin", BODY)  # same content and validators, no throttle
    server.start()
    assert delivered(server, alice.name, "slow.bin") == BODY
    assert origin.bytes_sent("/slow.bin") - sent_before <= refetch_allowed(SIZE, saved), (saved, sent_before, origin.bytes_sent("/slow.bin"))
    # The hash follows the segments as they write; after the restart it starts again from byte 0.
    assert wait_for(lambda: alice.session.get(server.url("/api/v1/tasks")).json()[0]["sha256"],
                    message="sha256") == hashlib.sha256(BODY).hexdigest()
    wait_for(lambda: not temp_downloads(server.data), message="temporary data removed")


def test_content_that_changes_between_segments_restarts_as_one_stream(shared_servers, origin):
    server, alice = segmented_server(shared_servers)
    origin.add("/moving.bin", BODY, rate=8 * 1024 * 1024)
    alice.session.put(server.dav("downloads/m.url"), data=url_shortcut(origin.url("/moving.bin")))
    wait_for(lambda: len(range_starts(origin, "/moving.bin")) >= 2, message="segments started")
    replacement = os.urandom(SIZE // 2)
    origin.change("/moving.bin", replacement)
    data = delivered(server, alice.name, "moving.bin")
    assert data in (BODY, replacement)


def test_an_origin_without_ranges_is_fetched_in_one_stream(shared_servers, origin):
    server, alice = segmented_server(shared_servers)
    origin.add("/plain.bin", BODY, ranges=False)
    alice.session.put(server.dav("downloads/p.url"), data=url_shortcut(origin.url("/plain.bin")))
    assert delivered(server, alice.name, "plain.bin") == BODY


def test_a_range_that_stalls_is_resumed_from_where_it_stopped(shared_servers, origin):
    server, alice = segmented_server(shared_servers, **{"engine.read_timeout": 1})
    origin.add("/stalls.bin", BODY, stall_after=2 * 1024 * 1024, stall_seconds=3)  # halfway through a range
    alice.session.put(server.dav("downloads/s.url"), data=url_shortcut(origin.url("/stalls.bin")))
    assert delivered(server, alice.name, "stalls.bin") == BODY
    assert origin.bytes_sent("/stalls.bin") < 1.3 * SIZE


def test_ranges_sent_chunked_arrive_intact(shared_servers, origin):
    """A chunked range cannot be spliced from the socket: it is read through Python."""
    server, alice = segmented_server(shared_servers)
    origin.add("/chunked.bin", BODY, chunked=True, drop_after=3 * 1024 * 1024, drop_times=4)
    alice.session.put(server.dav("downloads/c.url"), data=url_shortcut(origin.url("/chunked.bin")))
    assert delivered(server, alice.name, "chunked.bin") == BODY
    assert len(range_starts(origin, "/chunked.bin")) >= 4
