"""The transfer layer without a server: the fetcher and the segments against the real loopback
origin (tests/origin.py), each row a way the origin or the local disk misbehaves and the
outcome it must come to (after pip's tests/unit/test_network_download.py)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from engine.cancel_signal import CancelSignal
from engine.download import Download, dump_segments, load_segments
from engine.errors import (Cancelled, FetchError, LocalStorageError, PermanentError, Restart, TransientError,
                           classify, most_telling)
from engine.fetcher import Fetcher
from engine.outcomes import Disposition, Outcome
from engine.safe_http import make_session
from engine.segments import MIN_SEGMENT, transfer
from engine.socket_splice import FileWriteError
from engine.transfer_context import TransferContext
from tests.downloads_helpers import wait_for
from tests.origin import Origin

KIB = 1024
MIB = 1024 * KIB


def _fetcher(*, read_timeout: float = 5, allow_private: bool = True, splice: bool = False) -> Fetcher:
    return Fetcher(make_session(allow_private=allow_private), connect_timeout=2, read_timeout=read_timeout,
                   splice=splice)


def _context(**overrides) -> TransferContext:
    return TransferContext(**{"on_progress": lambda download: None, "is_cancelled": lambda: False,
                              "room": lambda total, whole=False: total, **overrides})


def _run(fetcher: Fetcher, download: Download, context: TransferContext, connections: int = 1) -> FetchError | None:
    try:
        transfer(fetcher, download, context, connections=connections)
    except FetchError as error:
        return error
    return None


def _ranges_asked(origin: Origin, path: str) -> list[str | None]:
    return [entry.range for entry in origin.requests if entry.path == path]


@dataclass
class Case:
    options: dict = field(default_factory=dict)  # the origin's faults (tests/origin.py Resource)
    saved: int = 0  # bytes of the content already saved by an earlier try, with its validators
    change: bool = False  # the content changes on the origin after those bytes were saved
    read_timeout: float = 5
    outcome: Outcome | None = None  # None: the download completes with the origin's current body
    ranges: list[str | None] | None = None  # the Range headers the origin must have seen, in order


BODY = 512 * KIB

STREAM_CASES = {
    # a stream that drops after making progress is resumed at once, where the bytes end
    "a drop mid-body resumes where the saved bytes end": Case(
        {"drop_after": 128 * KIB, "drop_times": 2}, ranges=[None, f"bytes={128 * KIB}-", f"bytes={256 * KIB}-"]),
    "bytes saved by an earlier try are continued with Range": Case(saved=200 * KIB, ranges=[f"bytes={200 * KIB}-"]),
    # If-Range fails, the origin sends the whole new content: it replaces the saved bytes
    "a changed validator restarts from zero": Case(saved=200 * KIB, change=True, ranges=[f"bytes={200 * KIB}-"]),
    # never stitched: a 206 for other bytes than asked for throws the saved ones away
    "a 206 at the wrong offset restarts from zero": Case(
        {"range_shift": 1}, saved=200 * KIB, ranges=[f"bytes={200 * KIB}-", None]),
    "a 200 instead of a 206 starts over": Case({"ranges": False}, saved=200 * KIB, ranges=[f"bytes={200 * KIB}-"]),
    "a body cut before its first byte is a network drop": Case({"drop_after": 0}, outcome=Outcome.NETWORK_DROP),
    "a body truncated again and again still completes": Case({"drop_after": 100 * KIB}),
    "an origin that stalls before the first byte times out": Case(
        {"stall_after": 0, "stall_seconds": 2}, read_timeout=0.3, outcome=Outcome.TIMEOUT),
    "HTTP 503 is the origin's, retried later as it asks": Case(
        {"fail_first": 1, "retry_after": "120"}, outcome=Outcome.ORIGIN_UNAVAILABLE),
    "HTTP 410 means gone": Case({"status": 410}, outcome=Outcome.GONE),
    "HTTP 418 is refused for good": Case({"status": 418}, outcome=Outcome.HTTP_REFUSED),
    "a redirect loop is too many redirects": Case({"redirect_to": "SELF"}, outcome=Outcome.TOO_MANY_REDIRECTS),
    # a body of unknown length cannot be spliced: it is read through Python, within the room held
    "a chunked body of unknown length completes": Case({"chunked": True}),
    "a body sent without a length completes": Case({"send_length": False}),
    "a chunked body that drops mid-body resumes": Case({"chunked": True, "drop_after": 128 * KIB, "drop_times": 1}),
}


@pytest.mark.parametrize("splice", [False, True], ids=["read", "splice"])
@pytest.mark.parametrize("case", STREAM_CASES.values(), ids=STREAM_CASES.keys())
def test_one_stream_comes_to_the_outcome_of_each_fault(case: Case, splice: bool, origin: Origin, tmp_path: Path):
    old = os.urandom(BODY)
    path = "/file.bin"
    options = {**case.options}
    if options.get("redirect_to") == "SELF":
        options["redirect_to"] = origin.url(path)
    resource = origin.add(path, old, **options)
    download = Download(url=origin.url(path), temp_path=tmp_path / "tmp" / "1.part")
    if case.saved:
        download.temp_path.parent.mkdir()
        download.temp_path.write_bytes(old[: case.saved])
        download.bytes_done, download.bytes_total = case.saved, BODY
        download.etag, download.last_modified = resource.etag, resource.last_modified
    if case.change:
        origin.change(path, os.urandom(BODY))
    error = _run(_fetcher(read_timeout=case.read_timeout, splice=splice), download, _context())
    if case.outcome is not None:
        assert error is not None and error.outcome is case.outcome, error
        assert error.outcome.disposition in (Disposition.RETRY, Disposition.FAIL)
        if case.outcome is Outcome.ORIGIN_UNAVAILABLE:
            assert error.retry_after == 120
        return
    assert error is None
    assert download.temp_path.read_bytes() == resource.body
    assert download.sha256() == hashlib.sha256(resource.body).hexdigest()
    if case.ranges is not None:
        assert _ranges_asked(origin, path) == case.ranges


@pytest.mark.parametrize("splice", [False, True], ids=["read", "splice"])
def test_a_stall_after_some_bytes_is_resumed_from_them(splice: bool, origin: Origin, tmp_path: Path):
    """Each request stalls once, 300 KiB into its body: the first times out and the second,
    for the rest, does not get that far."""
    body = os.urandom(BODY)
    origin.add("/slow.bin", body, stall_after=300 * KIB, stall_seconds=2)
    download = Download(url=origin.url("/slow.bin"), temp_path=tmp_path / "slow.part")
    assert _run(_fetcher(read_timeout=0.3, splice=splice), download, _context()) is None
    assert download.temp_path.read_bytes() == body
    ranges = _ranges_asked(origin, "/slow.bin")
    assert ranges[0] is None and all(asked and asked.startswith("bytes=") for asked in ranges[1:]), ranges


@pytest.mark.parametrize("connections", [1, 4])
@pytest.mark.parametrize("splice", [False, True], ids=["read", "splice"])
def test_a_cancel_while_the_origin_is_silent_cuts_the_transfer_at_once(splice: bool, connections: int, origin: Origin,
                                                                       tmp_path: Path):
    """Each request's body goes silent for a minute after 300 KiB, within a read time-out of ten;
    the cancel comes in the silence. Cut at once, the transfer ends as cancelled and the origin
    never sends past the silence: a cancel seen only at the next block would have waited it out,
    holding the worker (and the task's temporary data) all that while."""
    origin.add("/silent.bin", os.urandom(2 * MIN_SEGMENT), stall_after=300 * KIB, stall_seconds=60)
    cancel = CancelSignal()
    download = Download(url=origin.url("/silent.bin"), temp_path=tmp_path / "1.part")

    def cancel_in_the_silence() -> None:
        wait_for(lambda: any(entry.body_bytes_sent >= 300 * KIB for entry in origin.requests), message="300 KiB sent")
        time.sleep(0.2)  # (the client's read is then waiting on the silent socket, or soon will be)
        cancel.set()

    canceller = threading.Thread(target=cancel_in_the_silence)
    canceller.start()
    error = _run(_fetcher(read_timeout=600, splice=splice), download,
                 _context(is_cancelled=cancel.is_set, interrupting=cancel.interrupting), connections)
    canceller.join()
    assert error is not None and error.outcome is Outcome.CANCELLED, error
    assert max(entry.body_bytes_sent for entry in origin.requests) == 300 * KIB


LOCAL_CASES = {
    "a closed port refuses the connection": ("refused", Outcome.CONNECTION_REFUSED, (1, 4)),
    "a private address is refused unless allowed": ("private", Outcome.ADDRESS_REFUSED, (1, 4)),
    "a file larger than the quota is refused": ("quota", Outcome.QUOTA, (1, 4)),
    "a cancel stops the transfer": ("cancel", Outcome.CANCELLED, (1, 4)),
    # the file's folder vanishes before the body is written: the server's disk, never the network
    # (segments hold the file open from the start, so only one stream can meet this)
    "the temporary folder removed mid-transfer is a local fault": ("rmdir", Outcome.DISK_ERROR, (1,)),
}


@pytest.mark.parametrize("what, outcome, connections", [
    pytest.param(what, outcome, connections, id=f"{name}, {connections} connection(s)")
    for name, (what, outcome, counts) in LOCAL_CASES.items() for connections in counts
])
def test_faults_around_the_origin_come_to_their_outcome(what: str, outcome: Outcome, connections: int,
                                                         origin: Origin, tmp_path: Path):
    origin.add("/big.bin", os.urandom(2 * MIN_SEGMENT))
    url = origin.url("/big.bin")
    fetcher, context = _fetcher(), _context()
    if what == "refused":
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{unused.getsockname()[1]}/big.bin"
    elif what == "private":
        fetcher = _fetcher(allow_private=False)
    elif what == "quota":
        context = _context(room=lambda total, whole=False: total if total <= MIB or not whole else 0)
    elif what == "cancel":
        context = _context(is_cancelled=lambda: True)
    download = Download(url=url, temp_path=tmp_path / "tmp" / "1.part")
    if what == "rmdir":
        context = _context(on_progress=lambda seen: shutil.rmtree(tmp_path / "tmp", ignore_errors=True))
    error = _run(fetcher, download, context, connections)
    assert error is not None and error.outcome is outcome, error
    assert isinstance(error, LocalStorageError) is (outcome.disposition is Disposition.WAIT_FOR_DISK)
    assert str(tmp_path) not in str(error)  # the server's paths stay out of what the user reads


_WRITE_LIMITED = """
import resource, signal, sys
from pathlib import Path
from engine.download import Download
from engine.safe_http import make_session
from engine.fetcher import Fetcher
from engine.segments import transfer
from engine.transfer_context import TransferContext
from engine.errors import FetchError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
fetcher = Fetcher(make_session(allow_private=True), connect_timeout=2, read_timeout=5, splice=sys.argv[3] == "splice")
context = TransferContext(on_progress=lambda d: None, is_cancelled=lambda: False, room=lambda total, whole=False: total)
try:
    transfer(fetcher, Download(url=sys.argv[1], temp_path=Path(sys.argv[2])), context, connections=1)
    print("COMPLETE")
except FetchError as error:
    print(error.outcome.name, type(error).__name__)
"""


@pytest.mark.parametrize("way", ["python", "splice"])
def test_a_file_system_that_refuses_writes_is_a_local_fault_not_a_drop(way: str, origin: Origin, tmp_path: Path):
    """RLIMIT_FSIZE makes the file refuse bytes past 256 KiB (EFBIG, an errno a socket could
    give too): the write's side decides, so it waits for the disk."""
    origin.add("/file.bin", os.urandom(MIB))
    result = subprocess.run([sys.executable, "-c", _WRITE_LIMITED, origin.url("/file.bin"), str(tmp_path / "1.part"), way],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert result.stdout.split() == ["DISK_ERROR", "LocalStorageError"], result.stderr


def _saved_segments(body: bytes, temp: Path, rows: list[list[int]]) -> None:
    """A partial file as a segmented try leaves it: each range's done bytes in place."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "wb") as out:
        out.truncate(len(body))
        for start, _end, done in rows:
            out.seek(start)
            out.write(body[start:start + done])


SEGMENT_CASES = {
    # [[start, end, done], ...] is what task rows hold from before the Segment dataclass
    "segments saved by an earlier version resume only the missing bytes": (
        {}, False, None, [f"bytes={MIN_SEGMENT + MIB}-{2 * MIN_SEGMENT - 1}"]),
    "a changed validator restarts as one stream": ({}, True, None, [f"bytes={MIN_SEGMENT + MIB}-{2 * MIN_SEGMENT - 1}", None]),
    "a 206 at the wrong offset restarts as one stream": (
        {"range_shift": 1}, False, None, [f"bytes={MIN_SEGMENT + MIB}-{2 * MIN_SEGMENT - 1}", None]),
    "a 200 to a segment restarts as one stream": (
        {"ranges": False}, False, None, [f"bytes={MIN_SEGMENT + MIB}-{2 * MIN_SEGMENT - 1}", None]),
    "a segment refused for good fails the transfer": (
        {"fail_range_start": MIN_SEGMENT + MIB, "fail_range_times": 1, "fail_status": 404}, False, Outcome.NOT_FOUND, None),
    "a segment the origin says to retry later waits as long": (
        {"fail_range_start": MIN_SEGMENT + MIB, "fail_range_times": 1, "retry_after": "60"}, False,
        Outcome.ORIGIN_UNAVAILABLE, None),
}


@pytest.mark.parametrize("options, change, outcome, ranges", SEGMENT_CASES.values(), ids=SEGMENT_CASES.keys())
def test_segments_come_to_the_outcome_of_each_fault(options, change, outcome, ranges, origin: Origin, tmp_path: Path):
    body = os.urandom(2 * MIN_SEGMENT)
    resource = origin.add("/big.bin", body, **options)
    saved = json.dumps([[0, MIN_SEGMENT, MIN_SEGMENT], [MIN_SEGMENT, 2 * MIN_SEGMENT, MIB]])
    download = Download(url=origin.url("/big.bin"), temp_path=tmp_path / "1.part", bytes_done=MIN_SEGMENT + MIB,
                        bytes_total=len(body), etag=resource.etag, last_modified=resource.last_modified,
                        segments=load_segments(saved))
    _saved_segments(body, download.temp_path, json.loads(saved))
    if change:
        origin.change("/big.bin", os.urandom(len(body)))
    error = _run(_fetcher(), download, _context(), connections=2)
    if outcome is not None:
        assert error is not None and error.outcome is outcome, error
        if outcome is Outcome.ORIGIN_UNAVAILABLE:
            assert error.retry_after == 60
        return
    assert error is None
    assert download.temp_path.read_bytes() == resource.body
    assert download.sha256() == hashlib.sha256(resource.body).hexdigest()
    assert _ranges_asked(origin, "/big.bin") == ranges


def test_a_fresh_segmented_download_splits_after_the_probe(origin: Origin, tmp_path: Path):
    body = os.urandom(3 * MIN_SEGMENT)
    origin.add("/big.bin", body)
    download = Download(url=origin.url("/big.bin"), temp_path=tmp_path / "1.part")
    seen: list[str | None] = []
    assert _run(_fetcher(), download, _context(on_progress=lambda d: seen.append(dump_segments(d.segments))), 3) is None
    assert download.temp_path.read_bytes() == body
    assert json.loads(seen[-1]) == [[0, MIN_SEGMENT, MIN_SEGMENT], [MIN_SEGMENT, 2 * MIN_SEGMENT, MIN_SEGMENT],
                                    [2 * MIN_SEGMENT, 3 * MIN_SEGMENT, MIN_SEGMENT]]
    assert sorted(filter(None, _ranges_asked(origin, "/big.bin")))[0] == f"bytes=0-{MIB - 1}"  # the probe


@pytest.mark.parametrize("saved", ["[[0, 10, 10], [10, 25, 3]]", "[[0, 4194304, 0]]", None])
def test_saved_segments_read_and_write_the_same_json_as_before(saved):
    assert dump_segments(load_segments(saved)) == (json.dumps(json.loads(saved)) if saved else None)


MOST_TELLING = {
    "a cancel over everything": ([TransientError("t", Outcome.TIMEOUT), PermanentError("p"), Cancelled()], Cancelled),
    "a permanent error over a full disk": ([LocalStorageError("l", Outcome.DISK_FULL), PermanentError("p")],
                                           PermanentError),
    "a full disk over a restart": ([Restart(), LocalStorageError("l", Outcome.DISK_FULL)], LocalStorageError),
    "a restart over a network fault": ([TransientError("t", Outcome.NETWORK_DROP), Restart()], Restart),
}


@pytest.mark.parametrize("failures, winner", MOST_TELLING.values(), ids=MOST_TELLING.keys())
def test_of_failures_together_the_most_telling_decides(failures, winner):
    assert type(most_telling(failures)) is winner
    assert type(most_telling(list(reversed(failures)))) is winner


def test_of_network_faults_together_the_longest_retry_after_decides():
    faults = [TransientError("a", Outcome.ORIGIN_UNAVAILABLE, 5), TransientError("b", Outcome.ORIGIN_UNAVAILABLE, 50),
              TransientError("c", Outcome.NETWORK_DROP)]
    assert most_telling(faults).retry_after == 50


CLASSIFIED = {
    "disk full": (OSError(errno.ENOSPC, "No space left on device", "/srv/x.part"), Outcome.DISK_FULL),
    "read-only file system": (OSError(errno.EROFS, "Read-only file system"), Outcome.DISK_READ_ONLY),
    "any errno of a file write": (FileWriteError(errno.EFBIG, "File too large"), Outcome.DISK_ERROR),
    "a reset connection": (ConnectionResetError(errno.ECONNRESET, "reset"), Outcome.NETWORK_DROP),
    "a refused connection": (requests.ConnectionError(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
                             Outcome.CONNECTION_REFUSED),
    "a connect time-out": (requests.ConnectTimeout("slow"), Outcome.TIMEOUT),
    "a name that does not resolve": (requests.ConnectionError(socket.gaierror(-2, "Name or service not known")),
                                     Outcome.NAME_NOT_RESOLVED),
    "a URL without a scheme": (requests.exceptions.MissingSchema("no scheme"), Outcome.BAD_URL),
}


@pytest.mark.parametrize("error, outcome", CLASSIFIED.values(), ids=CLASSIFIED.keys())
def test_each_exception_is_classified_once_local_apart_from_remote(error, outcome):
    found = classify(error, "http://origin.example/x")
    assert found.outcome is outcome
    assert isinstance(found, LocalStorageError) is (outcome.disposition is Disposition.WAIT_FOR_DISK)
    assert "/srv" not in str(found)


def test_what_is_no_transfer_fault_is_left_to_the_caller_as_a_bug():
    assert classify(ValueError("a bug")) is None
