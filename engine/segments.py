"""Segmented transfers: one large download fetched as several ranges in parallel.

Used when the origin answers a `Range: bytes=0-` probe with 206, the size is known and
large enough, and the content has a validator. Each segment is its own resume loop (Range
guarded by If-Range) and is retried on its own with tenacity's back-off; the segments'
progress is part of the task row, so `kill -9` loses no finished range. If any segment
sees the content change, everything restarts as one stream from zero. Each range's body is
copied into the shared file by engine/body_copy.py, the loop of every resume path: on plain
HTTP from the socket with splice(2); over TLS, or when the origin sends a range chunked or
encoded, through Python.

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

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.body_copy import copy_body
from engine.download import Download, Segment
from engine.errors import Cancelled, FetchError, Restart, TransientError, most_telling, on_local_disk
from engine.fetcher import PROGRESS_EVERY, Fetcher
from engine.following_hasher import FollowingHasher, file_sha256
from engine.ranged_get import RangedGet, content_range
from engine.transfer_context import TransferContext

MIN_SEGMENT = 4 * 1024 * 1024
PROBE = 1024 * 1024
SEGMENT_TRIES = 6


class _NoProgress(Exception):
    """A segment's try saved nothing; tenacity waits before the next. Carries the fault."""

    def __init__(self, fault: TransientError) -> None:
        super().__init__(str(fault))
        self.fault = fault


class _Halted(Exception):
    """Another segment failed, so this one stops too (not a failure of its own)."""


def transfer(fetcher: Fetcher, download: Download, context: TransferContext, *, connections: int) -> Download:
    """Fetch `download` in parallel segments where the origin allows, else in one stream."""
    if download.segments is None and download.bytes_done == 0 and connections > 1:
        _probe(fetcher, download, connections, context)
        if download.bytes_total is not None and download.bytes_done >= download.bytes_total:
            return _hash_saved(download, context)  # the probe brought the whole file
    if download.segments:
        try:
            return _fetch_segments(fetcher, download, context)
        except Restart:
            fetcher.reset(download)
    return fetcher.fetch(download, context)


def _probe(fetcher: Fetcher, download: Download, connections: int, context: TransferContext) -> None:
    """Ask for the first PROBE bytes. They are kept (as the start of the file, or of segment 0);
    the answer tells the size and whether ranges work. A large file with a validator is then
    split into segments; anything else continues as one stream from where the probe ended."""
    request = RangedGet(0, PROBE)
    with fetcher.get(download.url, request.headers(), download.login) as response:
        fetcher.check_status(download, response)
        try:
            usable = request.continues(response) and content_range(response).total is not None
        except Restart:
            usable = False
        if not usable:
            return  # no usable range support: one plain stream
        download.note_headers(response)
        download.bytes_total = content_range(response).total
        with on_local_disk():
            download.temp_path.parent.mkdir(parents=True, exist_ok=True)
        context.require_room(download.bytes_total)
        limit = min(PROBE, download.bytes_total)  # no more than was asked for, and room was claimed for

        def landed(count: int) -> None:
            download.bytes_done += count

        with on_local_disk(), open(download.temp_path, "wb") as out:
            try:
                copy_body(response, out.fileno(), 0, context, landed, count=limit, splice=fetcher.splice)
            except TransientError:
                pass  # what arrived is kept; the stream resumes from there
    total = download.bytes_total
    count = min(connections, total // MIN_SEGMENT)
    if count < 2 or not download.validator():
        return
    step = -(-total // count)
    download.segments = [Segment(start, min(start + step, total)) for start in range(0, total, step)]
    download.segments[0].done = min(download.bytes_done, step)
    with on_local_disk(), open(download.temp_path, "r+b") as out:
        out.truncate(total)


def _fetch_segments(fetcher: Fetcher, download: Download, context: TransferContext) -> Download:
    context.require_room(download.bytes_total)
    failures: list[BaseException] = []
    stop = threading.Event()
    with on_local_disk():
        target = _SharedFile(download.temp_path)
    hasher = FollowingHasher(download.temp_path, lambda: _written_without_gap(download.segments))
    hasher.start()
    try:
        workers = [
            threading.Thread(
                target=_run_segment,
                args=(fetcher, download, segment, target, context, failures, stop),
                name=f"segment-{index}",
                daemon=True,
            )
            for index, segment in enumerate(download.segments)
            if not segment.complete
        ]
        for worker in workers:
            worker.start()
        # One wait per round, not one per segment (which made a round last PROGRESS_EVERY
        # times the number of segments); the caller's saver writes at most once per interval.
        while alive := [worker for worker in workers if worker.is_alive()]:
            alive[0].join(timeout=PROGRESS_EVERY)
            download.bytes_done = sum(segment.done for segment in download.segments)
            context.on_progress(download)
    finally:
        target.close()
        hasher.stop()
    bugs = [error for error in failures if not isinstance(error, FetchError)]
    failure = bugs[0] if bugs else most_telling(failures) or (Cancelled() if context.is_cancelled() else None)
    if failure is not None:
        hasher.abandon()  # its partial hash is of no use: the next try starts a new one
        raise failure
    download.bytes_done = download.bytes_total
    download.pending_hash = hasher.finish  # whoever needs the digest hashes the rest
    context.on_progress(download)
    return download


def _written_without_gap(segments: list[Segment]) -> int:
    end = 0
    for segment in segments:  # in file order, each starting where the last ends
        end = segment.offset
        if not segment.complete:
            break
    return end


def _hash_saved(download: Download, context: TransferContext) -> Download:
    with on_local_disk():
        download.hasher = file_sha256(download.temp_path)
    context.on_progress(download)
    return download


class _SharedFile:
    """The file all segments write into. Their writes take turns under a lock: threads
    waiting for it sleep, whereas eight writers meeting on the file's lock in the kernel spin
    on it, taking CPU from the transfer (perf showed this on a 2-core machine)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY)
        self.lock = threading.Lock()

    def close(self) -> None:
        os.close(self.fd)


def _run_segment(fetcher: Fetcher, download: Download, segment: Segment, target: _SharedFile,
                 context: TransferContext, failures: list[BaseException], stop: threading.Event) -> None:
    """One segment to its end, retried on its own; failures are collected for the caller."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(_NoProgress),
            stop=stop_after_attempt(SEGMENT_TRIES),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                _fetch_segment(fetcher, download, segment, target, context, stop)
    except _Halted:
        pass
    except _NoProgress as error:
        fault = error.fault
        failures.append(TransientError(f"a segment of {download.url} failed {SEGMENT_TRIES} times: {fault}",
                                       fault.outcome, fault.retry_after))
        stop.set()
    except BaseException as error:  # handed to the caller, which decides what it means
        failures.append(error)  # a FetchError, classified where it arose, or a bug
        stop.set()


def _fetch_segment(fetcher: Fetcher, download: Download, segment: Segment, target: _SharedFile,
                   context: TransferContext, stop: threading.Event) -> None:
    """Resume this segment until it is complete; raise _NoProgress if a try saved nothing."""
    while not segment.complete:
        before = segment.done
        try:
            _stream_segment(fetcher, download, segment, target, context, stop)
        except TransientError as error:
            if error.retry_after is not None:
                raise  # the origin said when to come back: the whole task waits that long, as in one stream
            if segment.done == before:
                raise _NoProgress(error) from None


def _stream_segment(fetcher: Fetcher, download: Download, segment: Segment, target: _SharedFile,
                    context: TransferContext, stop: threading.Event) -> None:
    request = RangedGet(segment.offset, segment.end, validator=download.validator(), etag=download.etag,
                        total=download.bytes_total)
    with fetcher.get(download.final_url or download.url, request.headers(), download.login) as response:
        fetcher.check_status(download, response)
        if not request.continues(response):
            raise Restart()  # a 200: the origin stopped honouring ranges, or the content changed

        def landed(count: int) -> None:
            segment.done += count
            if stop.is_set():
                raise _Halted()

        copy_body(response, target.fd, segment.offset, context, landed, count=segment.length - segment.done,
                  splice=fetcher.splice, write_lock=target.lock)
