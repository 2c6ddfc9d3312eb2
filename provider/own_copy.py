"""A private copy of a file whose content is stored once for several users.

Users' copies of identical content are hard links to one object of the content store
(engine/content_store.py). Content is never written in place (a PUT renames a new file over
the old one), but metadata is: a modification time set through one link would show through
every other link, and change every user's Last-Modified and ETag. So before a metadata write
the user's link is swapped for a copy of their own (copy on write): a reflink where the
filesystem shares blocks (btrfs, XFS), else copy_file_range(2) inside the kernel. The copy
holds the same bytes, so the user's quota does not move; the disk needs room for it. The
space writer (provider/space_writer.py) swaps it in under the file's path lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def _copy_content(source: int, target: int, size: int) -> None:
    try:
        fcntl.ioctl(target, _FICLONE, source)
        return
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS):
            raise
    copied = 0
    while copied < size:
        moved = os.copy_file_range(source, target, size - copied)
        if moved == 0:
            break  # the file is shorter than its stat said; what is there is the content
        copied += moved


def private_copy(path: str, info: os.stat_result, temp_dir: Path) -> Path:
    """A copy of the file at `path` (as `info` describes it) in `temp_dir`, with the same
    times and mode, for the space writer to rename over it."""
    fd, temp = tempfile.mkstemp(dir=temp_dir, prefix="own-")
    try:
        with open(path, "rb") as source:
            _copy_content(source.fileno(), fd, info.st_size)
        os.close(fd)
        fd = -1
        shutil.copystat(path, temp)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)
