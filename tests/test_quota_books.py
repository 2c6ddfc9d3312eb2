"""The quota's books come out exact whatever order concurrent bookings land in (issue 13).

Two requests book their changes independently: a client's DELETE may refund a file the moment
it appears, before the request or download that made it has booked it. The used figure is a
plain sum of the bookings, so every order of the same bookings ends at the same figure (it
used to stop at zero, which kept part of a refund that came first from counting). And the
space writer books bytes before they appear, so a placement that fails gives its booking
back and leaves the books as they were.

In-process, with the real quota, accounts and space writer on a fresh database, SQLite and
PostgreSQL. The race of the engine and clients on the same paths, end to end, is in
tests/test_space_writer.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.cluster_locks import cluster_locks
from engine.database import SQLITE_URL, Database, open_database
from engine.nodes import Nodes
from provider.accounts import Accounts
from provider.path_locks import PathLocks
from provider.quota import Quota
from provider.space_writer import SpaceWriter

STORED = 268  # what the user held when a published download was refunded before it was booked


@dataclass
class Books:
    database: Database
    quota: Quota
    writer: SpaceWriter
    space: Path
    temp: Path

    def used(self) -> int:
        return self.quota.used("carol")


@pytest.fixture(params=["sqlite", "postgresql"])
def books(request, tmp_path: Path) -> Iterator[Books]:
    url = SQLITE_URL if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = open_database(url, tmp_path)
    accounts = Accounts(database, tmp_path)
    accounts.add("carol", "carol-password-1", 10 * 1024 * 1024)
    quota = Quota(database, accounts, Nodes(database, "books", 30), cluster_locks(database, tmp_path, "users", 4),
                  tmp_path, None)
    space = tmp_path / "spaces" / "carol"
    (space / "downloads").mkdir(parents=True)
    temp = tmp_path / "uploads"
    temp.mkdir()
    writer = SpaceWriter(quota, PathLocks(cluster_locks(database, tmp_path, "paths", 4), tmp_path / "spaces"), temp,
                         lambda user: tmp_path / "spaces" / user, None)
    yield Books(database, quota, writer, space, temp)
    database.close()


def book(quota: Quota, how: str, delta: int) -> None:
    if how == "charge":  # a removal (DELETE, a trigger taken away, a file replaced by a smaller one)
        quota.charge("carol", delta)
    else:  # bytes that were reserved, now in place (PUT, COPY, a published download)
        quota.reserve("carol", max(0, delta)).settle(delta)


BOOKINGS = [("settle", 2048), ("charge", -2048), ("settle", 125), ("charge", -125), ("settle", 1900),
            ("settle", 4 - 1900), ("charge", -4), ("settle", 712)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(order=[("charge", -2048), ("settle", 2048)])  # the DELETE of file.bin that came first (issue 13)
@example(order=[("charge", -4), ("charge", -2048), ("charge", -125), ("settle", 125), ("settle", 2048),
                ("settle", 1900), ("settle", 4 - 1900), ("settle", 712)])
@given(order=st.permutations(BOOKINGS))
def test_bookings_in_any_order_end_at_their_sum(books, order):
    books.quota.recount("carol", books.space, lambda: STORED)
    for how, delta in order:
        book(books.quota, how, delta)
    assert books.used() == STORED + sum(delta for _how, delta in order)


def _download_gone(books: Books) -> None:
    """A download cancelled at the last moment: its temporary file is gone."""
    allowance = books.writer.reserve("carol")
    allowance.claim(2048)
    books.writer.place(books.temp / "7.part", books.space / "downloads", "film.bin", allowance, 2048)


def _folder_replaced_by_a_file(books: Books) -> None:
    """A torrent's folder delivered into a folder that a client replaced by a file."""
    (books.temp / "8.bt").mkdir()
    (books.temp / "8.bt" / "track.flac").write_bytes(b"t" * 4096)
    (books.space / "downloads" / "music").write_bytes(b"")
    allowance = books.writer.reserve("carol")
    allowance.claim(4096)
    books.writer.place(books.temp / "8.bt", books.space / "downloads" / "music", "album", allowance, 4096)


def _put_over_a_folder(books: Books) -> None:
    """A PUT whose target became a folder (another client's MKCOL) after it was looked up."""
    (books.space / "notes.txt").mkdir()
    (books.temp / "put-1.tmp").write_bytes(b"n" * 500)
    with books.quota.reserve("carol", 500) as reservation:
        books.writer.put_in_place(books.temp / "put-1.tmp", books.space / "notes.txt", reservation, 500)


def _put_into_a_folder_gone(books: Books) -> None:
    """A PUT whose folder another client deleted meanwhile."""
    (books.temp / "put-2.tmp").write_bytes(b"m" * 300)
    with books.quota.reserve("carol", 300) as reservation:
        books.writer.put_in_place(books.temp / "put-2.tmp", books.space / "gone" / "notes.txt", reservation, 300)


@pytest.mark.parametrize("placement, error", [
    (_download_gone, FileNotFoundError),
    (_folder_replaced_by_a_file, FileExistsError),
    (_put_over_a_folder, IsADirectoryError),
    (_put_into_a_folder_gone, FileNotFoundError),
])
def test_a_placement_that_fails_books_nothing(books, placement, error):
    (books.space / "downloads" / "kept.txt").write_bytes(b"k" * STORED)
    books.quota.recount("carol", books.space)
    with pytest.raises(error):
        placement(books)
    assert books.used() == STORED  # nothing booked, nothing left reserved
    assert books.quota.recount("carol", books.space) == STORED
