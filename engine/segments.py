"""Segmented transfers: one large download fetched as several ranges in parallel.

Used when the origin answers a `Range: bytes=0-` probe with 206, the size is known and
large enough, and the content has a validator. Each segment is its own resume loop (Range
guarded by If-Range) and is retried on its own with tenacity's back-off; the segments'
progress is part of the task row, so `kill -9` loses no finished range. If any segment
sees the content change, everything restarts as one stream from zero. On plain HTTP a
range's bytes go from the socket into the file with splice(2) (engine/socket_splice.py);
over TLS, or when the origin sends a range chunked or encoded, they are read through Python.

The SHA-256 is computed in order while the segments run (engine/following_hasher.py): from
byte 0 as far as the file is written without a gap (segment 0's progress, then segment 1's
once segment 0 is complete, ...), so when the last range lands only the part the hasher
could not get to is left. The transfer returns without waiting for that part
(`Download.pending_hash`). After a restart the hash starts again from byte 0.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

import requests
import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.errors import Cancelled, LocalStorageError, PermanentError, TransientError, local_storage_error
from engine.fetcher import CHUNK, CONTENT_RANGE, PROGRESS_EVERY, Download, Dropped, Fetcher, Restart, require_room
from engine.following_hasher import FollowingHasher, file_sha256
from engine.socket_splice import write_all

MIN_SEGMENT = 4 * 1024 * 1024
PROBE = 1024 * 1024
SEGMENT_TRIES = 6
START, END, DONE = 0, 1, 2


class _NoProgress(Exception):
    """A segment's try saved nothing; tenacity waits before the next."""


class _Halted(Exception):
    """Another segment failed, so this one stops too (not a failure of its own)."""


def transfer(
    fetcher: Fetcher,
    download: Download,
    *,
    connections: int,
    on_progress: Callable[[Download], None],
    is_cancelled: Callable[[], bool],
    room: Callable[[int], int],
    throttle: Callable[[int], None] = lambda n: None,
) -> Download:
    """Fetch `download` in parallel segments where the origin allows, else in one stream.
    `room(total)` claims quota room before bytes are written (see engine/fetcher.py)."""
    if download.segments is None and download.bytes_done == 0 and connections > 1:
        _probe(fetcher, download, connections, throttle, room)
        if download.bytes_total is not None and download.bytes_done >= download.bytes_total:
            return _hash_saved(download, on_progress)  # the probe brought the whole file
    if download.segments:
        try:
            return _fetch_segments(fetcher, download, on_progress, is_cancelled, room, throttle)
        except Restart:
            fetcher.reset(download)
    return fetcher.fetch(download, on_progress=on_progress, is_cancelled=is_cancelled, room=room, throttle=throttle)


def _probe(fetcher: Fetcher, download: Download, connections: int, throttle: Callable[[int], None],
           room: Callable[[int], int]) -> None:
    """Ask for the first PROBE bytes. They are kept (as the start of the file, or of segment 0);
    the answer tells the size and whether ranges work. A large file with a validator is then
    split into segments; anything else continues as one stream from where the probe ended."""
    with fetcher.get(download.url, {"Accept-Encoding": "identity", "Range": f"bytes=0-{PROBE - 1}"}, download.login) as response:
        fetcher.check_status(download, response)
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status_code != 206 or not match or match.group(3) == "*" or int(match.group(1)) != 0:
            return  # no usable range support: one plain stream
        Fetcher.note_headers(download, response)
        download.bytes_total = int(match.group(3))
        download.temp_path.parent.mkdir(parents=True, exist_ok=True)
        require_room(room, download.bytes_total)
        limit = min(PROBE, download.bytes_total)  # no more than was asked for, and room was claimed for
        with open(download.temp_path, "wb") as out:
            try:
                while chunk := response.raw.read1(min(CHUNK, limit - download.bytes_done)):
                    out.write(chunk)
                    download.bytes_done += len(chunk)
                    throttle(len(chunk))
            except (urllib3.exceptions.HTTPError, OSError) as error:
                if local := local_storage_error(error):
                    raise local from None
                # what arrived is kept; the stream resumes from there
    total = download.bytes_total
    count = min(connections, total // MIN_SEGMENT)
    if count < 2 or not download.validator():
        return
    step = -(-total // count)
    download.segments = [[start, min(start + step, total), 0] for start in range(0, total, step)]
    download.segments[0][DONE] = min(download.bytes_done, step)
    with open(download.temp_path, "r+b") as out:
        out.truncate(total)


def _fetch_segments(fetcher, download, on_progress, is_cancelled, room, throttle) -> Download:
    require_room(room, download.bytes_total)
    failures: list[BaseException] = []
    stop = threading.Event()
    target = _SharedFile(download.temp_path)
    hasher = FollowingHasher(download.temp_path, lambda: _written_without_gap(download.segments))
    hasher.start()
    try:
        workers = [
            threading.Thread(
                target=_run_segment,
                args=(fetcher, download, segment, target, is_cancelled, throttle, failures, stop),
                name=f"segment-{index}",
                daemon=True,
            )
            for index, segment in enumerate(download.segments)
            if segment[DONE] < segment[END] - segment[START]
        ]
        for worker in workers:
            worker.start()
        # One wait per round, not one per segment (which made a round last PROGRESS_EVERY
        # times the number of segments); the caller's saver writes at most once per interval.
        while alive := [worker for worker in workers if worker.is_alive()]:
            alive[0].join(timeout=PROGRESS_EVERY)
            download.bytes_done = sum(segment[DONE] for segment in download.segments)
            on_progress(download)
    finally:
        target.close()
        hasher.stop()
    failure = _most_telling(failures) or (Cancelled() if is_cancelled() else None)
    if failure is not None:
        hasher.abandon()  # its partial hash is of no use: the next try starts a new one
        raise failure
    download.bytes_done = download.bytes_total
    download.pending_hash = hasher.finish  # whoever needs the digest hashes the rest
    on_progress(download)
    return download


def _written_without_gap(segments: list[list[int]]) -> int:
    end = 0
    for segment in segments:  # in file order, each starting where the last ends
        end = segment[START] + segment[DONE]
        if end < segment[END]:
            break
    return end


def _most_telling(failures: list[BaseException]) -> BaseException | None:
    """The failure that decides what happens next: a cancel over a permanent error over a fault
    of the local disk over a restart over a transient error, of which the one with the longest
    Retry-After."""
    for kind in (Cancelled, PermanentError, LocalStorageError, Restart):
        for failure in failures:
            if isinstance(failure, kind):
                return failure
    transient = [failure for failure in failures if isinstance(failure, TransientError)]
    if transient:
        return max(transient, key=lambda failure: failure.retry_after or 0)
    return failures[0] if failures else None


def _hash_saved(download: Download, on_progress: Callable[[Download], None]) -> Download:
    download.hasher = file_sha256(download.temp_path)
    on_progress(download)
    return download


class _SharedFile:
    """The file all segments write into. Their writes take turns under a lock: threads
    waiting for it sleep, whereas eight writers meeting on the file's lock in the kernel spin
    on it, taking CPU from the transfer (perf showed this on a 2-core machine)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY)
        self.lock = threading.Lock()

    def write(self, data: bytes, offset: int) -> None:
        with self.lock:
            write_all(self.fd, data, offset)

    def close(self) -> None:
        os.close(self.fd)


def _run_segment(fetcher, download, segment, target, is_cancelled, throttle, failures, stop) -> None:
    """One segment to its end, retried on its own; failures are collected for the caller."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(_NoProgress),
            stop=stop_after_attempt(SEGMENT_TRIES),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                _fetch_segment(fetcher, download, segment, target, lambda: _check_stop(is_cancelled, stop), throttle)
    except _Halted:
        pass
    except _NoProgress as error:
        failures.append(TransientError(f"a segment of {download.url} failed {SEGMENT_TRIES} times: {error}"))
        stop.set()
    except BaseException as error:  # handed to the caller, which decides what it means
        failures.append(error)
        stop.set()


def _check_stop(is_cancelled: Callable[[], bool], stop: threading.Event) -> None:
    if is_cancelled():
        raise Cancelled()
    if stop.is_set():
        raise _Halted()


def _fetch_segment(fetcher, download, segment, target, check_stop, throttle) -> None:
    """Resume this segment until it is complete; raise _NoProgress if a try saved nothing."""
    while segment[DONE] < segment[END] - segment[START]:
        before = segment[DONE]
        offset = segment[START] + segment[DONE]
        headers = {
            "Accept-Encoding": "identity",
            "Range": f"bytes={offset}-{segment[END] - 1}",
            "If-Range": download.validator(),
        }
        try:
            _stream_segment(fetcher, download, segment, target, headers, offset, check_stop, throttle)
        except (Dropped, TransientError, urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
            if local := local_storage_error(error):
                raise local from None  # the server's own disk, not the network: the task waits for it
            if isinstance(error, TransientError) and error.retry_after is not None:
                raise  # the origin said when to come back: the whole task waits that long, as in one stream
            if segment[DONE] == before:
                raise _NoProgress(str(error) or type(error).__name__) from None


def _stream_segment(fetcher, download, segment, target, headers, offset, check_stop, throttle) -> None:
    with fetcher.get(download.final_url or download.url, headers, download.login) as response:
        fetcher.check_status(download, response)
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        etag = response.headers.get("ETag")
        if response.status_code != 206 or not match or int(match.group(1)) != offset or (
            download.etag and etag and etag != download.etag
        ):
            raise Restart()  # the content changed, or the origin stopped honouring ranges
        length = segment[END] - segment[START]

        def landed(count: int) -> None:
            segment[DONE] += count
            throttle(count)
            check_stop()

        if not fetcher.splice_body(response, target.fd, length - segment[DONE], segment[START] + segment[DONE],
                                   landed, write_lock=target.lock):
            while segment[DONE] < length and (chunk := response.raw.read1(min(CHUNK, length - segment[DONE]))):
                target.write(chunk, segment[START] + segment[DONE])
                landed(len(chunk))
        if segment[DONE] < length:
            raise Dropped(f"range ended after {segment[DONE]} of {length} bytes")


