"""Streams one URL into a temporary file, resuming where the bytes on disk end.

The resume loop (after pip's download code): ask for `Range: bytes=N-` guarded by
`If-Range` with the strong ETag or the Last-Modified date; a 206 that starts at N is
appended; a 200, a 206 at another offset or a changed validator restart from zero, so
a file is never stitched from two versions. A stream that drops after making progress is
resumed at once; one that makes none becomes a TransientError for the retry policy.
The SHA-256 follows the stream, reading the file from the page cache (engine/following_hasher.py),
so a body can go socket to file by splice(2); the saved prefix is hashed once after a restart.

Room in the user's quota is claimed before bytes are written (`room(total)` holds room for a
file of `total` bytes and says how much it got): a body of known length all at once, one of
unknown length a step ahead of what has arrived, never reading past what is held; so it
stops at the quota instead of filling the temporary area first.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin

import requests
import urllib3

from engine.addresses import BlockedAddressError
from engine.errors import Cancelled, PermanentError, TransientError, local_storage_error
from engine.following_hasher import FollowingHasher, file_sha256
from engine.origin_login import Login, login_refused
from engine.retry import parse_retry_after
from engine.safe_http import blocked_reason
from engine.socket_splice import splice_to_file, write_all

CHUNK = 1024 * 1024
ROOM_STEP = 16 * CHUNK
PROGRESS_EVERY = 0.5
MAX_RESUMES_PER_TRY = 10_000
CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@dataclass
class Download:
    """What is known about one transfer; survives between tries (and, via the task row, restarts)."""

    url: str
    temp_path: Path
    bytes_done: int = 0
    bytes_total: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    content_disposition: str | None = None
    # [start, end, done] per range when fetched in parallel segments, else None
    segments: list[list[int]] | None = None
    login: Login | None = field(default=None, repr=False)
    hasher: "hashlib._Hash | None" = field(default=None, repr=False)
    # Set while the hash is still catching up with bytes already saved: waits, returns the hasher.
    pending_hash: "Callable[[], hashlib._Hash] | None" = field(default=None, repr=False)

    def validator(self) -> str | None:
        """What guards a ranged request (If-Range): the strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def sha256(self) -> str:
        """The content's SHA-256, once the hash has caught up (which may mean waiting for it)."""
        if self.pending_hash is not None:
            self.hasher, self.pending_hash = self.pending_hash(), None
        assert self.hasher is not None
        return self.hasher.hexdigest()


class Restart(Exception):
    """The saved bytes cannot be continued; start again from zero."""


class Dropped(Exception):
    """The body ended early; resume from what was saved."""


def expected_end(download: Download, response: requests.Response) -> int | None:
    """Where the file will end once this response's body is saved, if the headers tell."""
    if download.bytes_total is not None:
        return download.bytes_total
    length = response.headers.get("Content-Length")
    return download.bytes_done + int(length) if length and length.isdigit() else None


def require_room(room: Callable[[int], int], total: int) -> None:
    """Claim room for a file of `total` bytes, or fail for good: it cannot fit."""
    held = room(total)
    if held < total:
        raise PermanentError(
            f"not enough space: the file is {total} bytes and the quota leaves room for {held}; "
            "delete some files first"
        )


def _room_for_next_read(download: Download, room: Callable[[int], int]) -> int:
    """How many bytes the next read may take: up to CHUNK, within the room held (claimed a
    step ahead when the length is unknown); 0 once the quota is reached."""
    held = room(download.bytes_done)  # what is held already: a claim never gives room back
    if download.bytes_done + CHUNK > held:
        held = room(download.bytes_done + ROOM_STEP)
    return max(0, min(CHUNK, held - download.bytes_done))


def _host(url: str) -> str:
    return requests.utils.urlparse(url).hostname or url


class Fetcher:
    """Performs HTTP(S) transfers with an address-checked session."""

    def __init__(self, session: requests.Session, *, connect_timeout: float, read_timeout: float,
                 splice: bool = False) -> None:
        """`splice`: whether the temporary files take splice(2) writes (engine/socket_splice.py)."""
        self.session = session
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.splice = splice

    def fetch(
        self,
        download: Download,
        *,
        on_progress: Callable[[Download], None],
        is_cancelled: Callable[[], bool],
        room: Callable[[int], int],
        throttle: Callable[[int], None] = lambda n: None,
    ) -> Download:
        """Bring `download` to completion in one stream, or raise TransientError /
        PermanentError / Cancelled. `room(total)`: see the module's docstring."""
        self._prepare(download)
        resumes = 0
        while True:
            before = download.bytes_done
            try:
                self._one_request(download, on_progress, is_cancelled, room, throttle)
                return download
            except Restart:
                self.reset(download)
                resumes += 1
            except Dropped as dropped:
                if download.bytes_done <= before:
                    raise TransientError(f"connection to {_host(download.url)} dropped: {dropped}") from None
                resumes += 1
            if resumes > MAX_RESUMES_PER_TRY:
                raise TransientError(f"{_host(download.url)} keeps dropping the connection")

    # --- steps ------------------------------------------------------------

    def _prepare(self, download: Download) -> None:
        """Trust the bytes on disk (they may be more than the last progress figure saved)."""
        download.temp_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            on_disk = os.path.getsize(download.temp_path)
        except FileNotFoundError:
            on_disk = 0
        if download.hasher is not None and on_disk == download.bytes_done:
            return
        download.bytes_done = on_disk
        download.temp_path.touch()  # a crash may have left no file at all
        download.hasher = file_sha256(download.temp_path)

    def reset(self, download: Download) -> None:
        with open(download.temp_path, "wb"):
            pass
        download.segments = None
        download.bytes_done = 0
        download.bytes_total = None
        download.etag = download.last_modified = None
        download.hasher = hashlib.sha256()

    def _request_headers(self, download: Download) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        if download.bytes_done:
            validator = download.validator()
            if not validator:
                raise Restart()  # nothing to guard a resume with: the content may have changed
            headers["Range"] = f"bytes={download.bytes_done}-"
            headers["If-Range"] = validator
        return headers

    def get(self, url: str, headers: dict[str, str], login: Login | None = None) -> requests.Response:
        """A streaming GET; connection problems come out as TransientError / PermanentError.
        Redirects are followed here, one checked request a hop, so that each hop carries only
        the part of `login` that belongs to its own host (requests would keep custom headers
        across hosts). `response.sent_login` tells whether the last hop carried any of it."""
        try:
            hop = url
            for _ in range(self.session.max_redirects + 1):
                extra = login.headers_for(hop) if login else {}
                response = self.session.get(hop, headers={**headers, **extra}, stream=True, allow_redirects=False,
                                            cookies=login.cookies if login else None,
                                            timeout=(self.connect_timeout, self.read_timeout))
                if login:  # cookies an origin sets stay with this task, never with the shared session
                    requests.cookies.extract_cookies_to_jar(login.cookies, response.request, response.raw)
                target = self.session.get_redirect_target(response)
                if not target:
                    response.sent_login = bool(extra) or "Cookie" in response.request.headers
                    return response
                response.close()
                hop = urljoin(response.url, target)
            raise requests.exceptions.TooManyRedirects()
        except (requests.exceptions.RequestException, BlockedAddressError) as error:
            raise self._classify(url, error) from None

    def _open(self, download: Download) -> requests.Response:
        return self.get(download.url, self._request_headers(download), download.login)

    @staticmethod
    def _classify(url: str, error: BaseException) -> Exception:
        reason = blocked_reason(error)
        if reason:
            return PermanentError(reason)
        host = _host(url)
        if isinstance(error, requests.exceptions.TooManyRedirects):
            return PermanentError(f"too many redirects starting at {url}")
        if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)):
            return PermanentError(f"{url} is not a URL that can be fetched ({error})")
        if isinstance(error, requests.exceptions.Timeout):
            return TransientError(f"{host} did not answer in time")
        if "Name or service not known" in str(error) or "getaddrinfo" in str(error):
            return TransientError(f"cannot resolve {host} (DNS)")
        return TransientError(f"cannot connect to {host}: {type(error).__name__}")

    def check_status(self, download: Download, response: requests.Response) -> None:
        status = response.status_code
        host = _host(download.url)
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            raise TransientError(f"{host} answered HTTP {status} {response.reason}", retry_after)
        if status == 416 and download.bytes_done:
            if download.bytes_total is not None and download.bytes_done >= download.bytes_total:
                return
            raise Restart()
        if status in (401, 403) and getattr(response, "sent_login", False):
            raise login_refused(host, status)
        if status >= 400 or status not in (200, 206):
            raise PermanentError(f"{host} answered HTTP {status} {response.reason} for {download.url}")

    @staticmethod
    def note_headers(download: Download, response: requests.Response) -> None:
        download.etag = response.headers.get("ETag")
        download.last_modified = response.headers.get("Last-Modified")
        download.final_url = response.url
        download.content_disposition = response.headers.get("Content-Disposition")

    def _begin_body(self, download: Download, response: requests.Response) -> None:
        """Decide from the headers whether the body continues the saved bytes or replaces them."""
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if response.status_code == 206:
            match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != download.bytes_done:
                raise Restart()
            if download.etag and etag and etag != download.etag:
                raise Restart()
            if match.group(3) != "*":
                download.bytes_total = int(match.group(3))
        else:
            if download.bytes_done:
                self.reset(download)
            download.etag, download.last_modified = etag, last_modified
            length = response.headers.get("Content-Length")
            download.bytes_total = int(length) if length and length.isdigit() else None
        download.final_url = response.url
        download.content_disposition = response.headers.get("Content-Disposition")

    def _one_request(self, download, on_progress, is_cancelled, room, throttle) -> None:
        response = self._open(download)
        with response:
            self.check_status(download, response)
            if response.status_code == 416:
                return
            self._begin_body(download, response)
            end = expected_end(download, response)
            if end is not None:
                require_room(room, end)
            on_progress(download)
            self._stream_body(download, response, on_progress, is_cancelled, room, throttle)

    def _stream_body(self, download, response, on_progress, is_cancelled, room, throttle) -> None:
        last_report = time.monotonic()

        def landed(count: int) -> None:
            nonlocal last_report
            download.bytes_done += count
            throttle(count)
            if is_cancelled():
                raise Cancelled()
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                on_progress(download)

        hasher = FollowingHasher(download.temp_path, lambda: download.bytes_done, download.hasher, download.bytes_done)
        hasher.start()
        try:
            self._write_body(download, response, landed, room)
        except Dropped:
            download.hasher = hasher.finish()  # the next request continues the hash from here
            raise
        except BaseException:
            hasher.abandon()
            download.hasher = None  # a later try hashes the saved bytes again
            raise
        download.pending_hash = hasher.finish  # whoever needs the digest hashes the rest
        on_progress(download)

    def _write_body(self, download: Download, response: requests.Response, landed: Callable[[int], None],
                    room: Callable[[int], int]) -> None:
        """The body into the temporary file after the bytes saved, spliced where it can be."""
        try:
            out = os.open(download.temp_path, os.O_WRONLY)
            try:
                os.ftruncate(out, download.bytes_done)
                if not self.splice_body(response, out, None, download.bytes_done, landed):
                    while True:
                        allowed = _room_for_next_read(download, room)
                        # With no room left, one byte more says whether the body goes on.
                        chunk = response.raw.read1(allowed or 1, decode_content=True)
                        if not chunk:
                            break
                        if not allowed:
                            raise PermanentError(
                                f"not enough space: {download.bytes_done} bytes saved and the quota has no room "
                                "for more; delete some files first"
                            )
                        write_all(out, chunk, download.bytes_done)
                        landed(len(chunk))
            finally:
                os.close(out)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise local_storage_error(error) or Dropped(type(error).__name__) from None
        if download.bytes_total is not None and download.bytes_done < download.bytes_total:
            raise Dropped(f"body ended after {download.bytes_done} of {download.bytes_total} bytes")

    def splice_body(self, response: requests.Response, fd: int, count: int | None, offset: int,
                    landed: Callable[[int], None], write_lock: AbstractContextManager[object] = nullcontext()) -> bool:
        """Move up to `count` bytes of the body (None: all of it) into `fd` at `offset` inside
        the kernel (engine/socket_splice.py), calling `landed(n)` as they arrive; False, having
        read nothing, where that cannot work: no splice here, TLS, a content coding, a body
        of unknown length."""
        wire = getattr(response.raw, "_fp", None)  # http.client's response, under urllib3's
        buffered = getattr(wire, "fp", None)
        sock = getattr(response.raw.connection, "sock", None)
        if not self.splice or type(sock) is not socket.socket or buffered is None or (
            getattr(wire, "length", None) is None
            or response.headers.get("Content-Encoding", "identity").lower() != "identity"
        ):
            return False
        count = wire.length if count is None else min(count, wire.length)
        # What came along with the headers sits in http.client's small buffer: one read1 empties it.
        if count > 0 and (first := buffered.read1(min(CHUNK, count))):
            with write_lock:
                write_all(fd, first, offset)
            landed(len(first))
            offset, count = offset + len(first), count - len(first)
        splice_to_file(sock.fileno(), fd, count, timeout=self.read_timeout, offset=offset, after_block=landed,
                       write_lock=write_lock)
        return True


