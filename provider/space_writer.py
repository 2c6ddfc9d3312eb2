"""The one place that writes into users' spaces: the drive's requests and the engine's alike.

Every change to a space goes through `SpaceWriter`, which holds the path lock of what it
changes and, shared, those of the folders above it (provider/path_locks.py: so no MOVE or
DELETE of a folder comes between a change's reads and writes below it), reads the size there
before and after, and books the difference in the quota (provider/quota.py): bytes on their
way in under a `Reservation` settled once they are in place, removals refunded by what was
actually removed. Bytes are booked before they appear in a space and refunded after they are
gone, never the other way round, so the used figure is never below what the space holds: a client may delete a file
the moment it appears (issue 13: a client's DELETE of a download just published refunded
its bytes before the engine had booked them, so the figure dipped below the disk, letting
other writes past the quota, and a dip below zero was cut off there, for good). The change
and its booking happen under the user's quota lock (`Quota.booking`, taken inside the path
locks), so a recount on another node sees both or neither. The engine reaches it as its
`SpaceAccess` (engine/engine.py), so error notes, trigger removals and published downloads
take the same locks as a client's PUT, DELETE or MOVE on the same path.
Dead properties (kept in the database, counted in the quota) change under the same locks as
the file or folder they belong to: a removal takes them along, whoever removed it; a COPY's or
MOVE's hand them on in a `then` hook run while the change still holds its locks; a PROPPATCH
changes them in `change_properties`, only while something is there (issue 13: changed outside
the locks, a PROPPATCH racing a MOVE or DELETE of a folder above left a property where no file
was, and a MOVE's properties could overwrite a PROPPATCH's on the destination).
No other module opens a user's path for writing (tests/test_space_writer.py checks the
sources); the helpers it uses (free_names, own_copy, upload) write only to the temporary area.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from provider.free_names import link_under_free_name, move_under_free_name
from provider.own_copy import private_copy
from provider.path_locks import PathLocks, size_or_zero
from provider.quota import Quota, Reservation
from provider.upload import AtomicUpload

T = TypeVar("T")
Then = Callable[[], None]
"""What a change does beside the disk while it still holds its path locks: the space's dead
properties (PROPPATCH, and those a COPY, MOVE or DELETE takes along), kept in the database."""


def _nothing() -> None:
    """No change beside the disk's."""


class SpaceWriter:
    """Writes into the spaces of all users, with their path locks and quota bookings."""

    def __init__(self, quota: Quota, path_locks: PathLocks, temp_dir: Path, space_root: Callable[[str], Path],
                 min_free: int | None, forget_properties: Callable[[str, str], None] | None = None) -> None:
        """`temp_dir`: on the spaces' filesystem, for files made before they are renamed in;
        `forget_properties(user, path)`: remove the dead properties of a file or folder (and of
        what it held) that was removed, whoever removed it (a client, or the engine)."""
        self._forget_properties = forget_properties
        self._quota = quota
        self._locked_paths = path_locks.locked_paths
        self._temp_dir = temp_dir
        self._space_root = space_root
        self._min_free = min_free or 0

    # --- what the engine sees (engine.engine.SpaceAccess) -------------------

    def root(self, user: str) -> Path:
        return self._space_root(user)

    def reserve(self, user: str, nbytes: int = 0, *, key: str | None = None) -> Reservation:
        return self._quota.reserve(user, nbytes, key=key)

    def disk_room(self) -> int:
        return self._quota.disk_free() - self._min_free

    def locked(self, *paths: Path) -> AbstractContextManager[None]:
        """All of `paths` at once (locks taken one inside another could deadlock)."""
        return self._locked_paths(*map(str, paths))

    def write_file(self, user: str, target: Path, body: bytes) -> bool:
        """Put a small generated file (an error note) at `target` atomically, booked even over
        the quota (it explains why a download stopped); whether it replaced one."""
        fd, temp = tempfile.mkstemp(dir=self._temp_dir, prefix="note-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            with self._quota.reserve(user) as reservation:
                reservation.claim(len(body), force=True)
                return self.put_in_place(Path(temp), target, reservation, len(body))[1]
        finally:
            Path(temp).unlink(missing_ok=True)

    def remove(self, user: str, path: Path) -> bool:
        """Remove the file or folder at `path` and refund its bytes; False if nothing was there.
        Files the engine removes are not taken off storage.max_files' count (see quota)."""
        return self._remove(user, str(path), count_entries=False)

    def place(self, source: Path, folder: Path, name: str, allowance: Reservation, size: int, *,
              trying: Callable[[Path], None] = lambda path: None) -> Path:
        """Hard-link the file `source`, or rename the folder `source`, into `folder` under a
        free name, and book its `size` bytes from `allowance`; where it went. `trying(path)`
        is told each name just before it is tried."""
        put = move_under_free_name if source.is_dir() else link_under_free_name
        # `name`'s lock holds the folder where it is; a free name beside it replaces nothing.
        with self._locked_paths(str(folder / name)), self._quota.booking(allowance.user), \
                self._booked(allowance, size):
            return put(source, folder, name, trying)

    def relink(self, stored: Path, published: Path, downloaded: Path) -> None:
        """Make `published` a link to the content store's `stored` object, if it is still the
        `downloaded` file (same bytes, same size: the quota does not move)."""
        with self._locked_paths(str(published)):
            try:
                # Already the stored object (a download filed before a kill kept its task
                # from being marked done): a rename onto another link of one file does nothing.
                if not os.path.samefile(published, downloaded) or os.path.samefile(published, stored):
                    return
            except FileNotFoundError:
                return
            swap = downloaded.with_name(downloaded.name + ".link")
            swap.unlink(missing_ok=True)
            os.link(stored, swap)
            os.replace(swap, published)

    # --- what the drive's requests do ---------------------------------------

    def upload(self, user: str, target: Path, environ: dict, splice_timeout: float | None) -> AtomicUpload:
        """A PUT body's sink; it comes back here (`put_in_place`) to be renamed in."""
        return AtomicUpload(target=target, temp_dir=self._temp_dir, reservation=self._quota.reserve(user),
                            place=self.put_in_place, environ=environ, splice_timeout=splice_timeout)

    def put_in_place(self, temp: Path, target: Path, reservation: Reservation, size: int) -> tuple[os.stat_result, bool]:
        """Rename `temp` (`size` bytes, held by `reservation`) over `target` and book the
        difference; the new file's stat as of the rename, and whether it replaced one."""
        with self._locked_paths(str(target)), self._quota.booking(reservation.user), open(temp, "rb") as new:
            existed = os.path.lexists(target)
            replaced = size_or_zero(str(target))
            with self._booked(reservation, size - replaced):
                os.replace(temp, target)
            info = os.fstat(new.fileno())  # not by path: a client may have moved the folder since
        return info, existed

    def book_entry(self, user: str, path: str) -> int:
        """Before making a file or folder at `path`: one more entry for the user (QuotaExceeded
        beyond storage.max_files) unless one is there already; how many were booked."""
        count = 0 if os.path.lexists(path) else 1
        self._quota.add_entries(user, count, self._space_root(user))
        return count

    def give_back_entries(self, user: str, count: int) -> None:
        self._quota.remove_entries(user, count)

    @contextmanager
    def creating(self, user: str, path: str) -> Iterator[None]:
        """`book_entry` around a block that makes `path`, given back if the block fails."""
        count = self.book_entry(user, path)
        try:
            yield
        except BaseException:
            self.give_back_entries(user, count)
            raise

    def create_empty(self, user: str, path: str) -> None:
        """An empty file at `path` unless something is there (RFC 4918's LOCK of a new URL)."""
        try:
            with self.creating(user, path), self._locked_paths(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            pass

    def make_folder(self, user: str, path: str, *, like: str | None = None, then: Then = _nothing) -> None:
        """A folder at `path` (kept if one is there and `like` is given), with the times and
        mode of the folder `like`; then `then`."""
        with self._locked_paths(path):
            with self.creating(user, path):
                if like is None or not os.path.isdir(path):
                    os.mkdir(path)
                if like is not None:
                    shutil.copystat(like, path)
            then()  # a failure here leaves the folder made, and counted

    def copy_file(self, user: str, source: str, dest: str, expected: int, *, then: Then = _nothing) -> bool:
        """Copy the file `source` over `dest` (made aside, then renamed in, so a failed copy
        leaves `dest` intact; its `expected` size is reserved first), then run `then`; whether
        it replaced one. FileNotFoundError if `source` went away."""
        with self._quota.reserve(user, expected) as reservation:
            fd, temp = tempfile.mkstemp(dir=self._temp_dir, prefix="copy-")
            os.close(fd)
            try:
                shutil.copy2(source, temp)
                size = os.stat(temp).st_size
                reservation.require(size)  # it grew since the stat
                with self._locked_paths(dest):
                    with self.creating(user, dest):
                        existed = self.put_in_place(Path(temp), Path(dest), reservation, size)[1]
                    then()  # a failure here leaves the copy in place, and counted
                return existed
            finally:
                Path(temp).unlink(missing_ok=True)

    def move(self, user: str, source: str, dest: str, *, then: Then = _nothing) -> None:
        """Rename the file or folder `source` to `dest`, refunding a file that was at `dest`
        (WsgiDAV deleted an existing target already, but another client may have put one back),
        then run `then`. FileNotFoundError if `source` went away."""
        with self._locked_paths(source, dest):
            with self._quota.booking(user):
                put_back = os.path.lexists(dest)
                if put_back and os.path.isdir(source):
                    raise FileExistsError(f"{dest} appeared meanwhile")  # a rename would replace an empty folder
                replaced = size_or_zero(dest)
                os.rename(source, dest)
                self._quota.charge(user, -replaced)
            self._quota.remove_entries(user, int(put_back))
            then()

    def delete(self, user: str, path: str) -> bool:
        """A client's DELETE of a file or folder: refunds its bytes and its entries."""
        return self._remove(user, path, count_entries=True)

    def change_properties(self, path: str, change: Callable[[], T]) -> T:
        """Run `change` of the dead properties of the file or folder at `path` while holding
        its path lock; FileNotFoundError if nothing is there any more (a client moved or
        deleted it, or a folder above it), as a property kept for no file would count in the
        quota unseen, or turn up on a later file of that name."""
        with self._locked_paths(path):
            if not os.path.lexists(path):
                raise FileNotFoundError(path)
            return change()

    def set_times(self, path: str, seconds: int) -> None:
        """Set the modification time of this user's file alone (see own_copy)."""
        with self._locked_paths(path):
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                self._quota.check_disk(info.st_size)
                temp = private_copy(path, info, self._temp_dir)
                try:
                    os.replace(temp, path)
                finally:
                    temp.unlink(missing_ok=True)
            os.utime(path, (seconds, seconds))

    @contextmanager
    def _booked(self, reservation: Reservation, delta: int) -> Iterator[None]:
        """Book `delta` from `reservation` before the block makes those bytes appear, and give
        it back if the block fails (see the module's docstring for why first)."""
        reservation.settle(delta)
        try:
            yield
        except BaseException:
            self._quota.charge(reservation.user, -delta)
            raise

    # --- removal -----------------------------------------------------------

    def _remove(self, user: str, path: str, *, count_entries: bool) -> bool:
        with self._locked_paths(path):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                return False
            if stat.S_ISDIR(info.st_mode):
                entries = self._remove_tree(user, path)
            else:
                self._unlink(user, path, info)
                entries = 1
            if count_entries:
                self._quota.remove_entries(user, entries)
            if self._forget_properties:
                self._forget_properties(user, path)
        return True

    def _remove_tree(self, user: str, root: str) -> int:
        """Remove the folder `root`, whose path lock the caller holds (so nothing arrives below
        it meanwhile), each file refunded as it goes (a recount meanwhile sees each file either
        there and booked or gone and refunded); the entries removed."""
        entries = 0
        for folder, dirs, files in os.walk(root, topdown=False):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                path = os.path.join(folder, name)
                self._unlink(user, path, os.lstat(path))
                entries += 1
            os.rmdir(folder)
            entries += 1
        return entries

    def _unlink(self, user: str, path: str, info: os.stat_result) -> None:
        """Remove the file (or link) at `path`, whose path lock the caller holds, and refund its
        bytes."""
        with self._quota.booking(user):
            os.unlink(path)
            self._quota.charge(user, -info.st_size if stat.S_ISREG(info.st_mode) else 0)
