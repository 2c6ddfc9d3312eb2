"""Streams one URL into a temporary file, resuming where the bytes on disk end.

The resume loop (after pip's download code): ask for `Range: bytes=N-` guarded by
`If-Range` with the strong ETag or the Last-Modified date; a 206 that starts at N is
appended; a 200, a 206 at another offset or a changed validator restart from zero, so
a file is never stitched from two versions. A stream that drops after making progress is
resumed at once; one that makes none becomes a TransientError for the retry policy.
The SHA-256 follows the stream, reading the file from the page cache (engine/following_hasher.py),
so a body can go socket to file by splice(2); the saved prefix is hashed once after a restart.

Room in the user's quota is claimed before bytes are written (engine/transfer_context.py):
a body of known length all at once, one of unknown length a step ahead of what has arrived,
never reading past what is held; so it stops at the quota instead of filling the temporary
area first. What ends a try is classified once (engine/errors.py); the checks of a ranged
answer are engine/ranged_get.py's and the body's copy into the file is engine/body_copy.py's,
both shared with the segments and the sync client.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable
from urllib.parse import urljoin

import requests

from engine.addresses import BlockedAddressError
from engine.download import Download
from engine.body_copy import copy_body
from engine.errors import Dropped, Restart, classify, failure, host_of, on_local_disk
from engine.following_hasher import FollowingHasher, file_sha256
from engine.origin_login import Login
from engine.outcomes import Outcome, status_outcome
from engine.ranged_get import RangedGet, content_range
from engine.retry import parse_retry_after
from engine.transfer_context import TransferContext

PROGRESS_EVERY = 0.5
MAX_RESUMES_PER_TRY = 10_000


def expected_end(download: Download, response: requests.Response) -> int | None:
    """Where the file will end once this response's body is saved, if the headers tell."""
    if download.bytes_total is not None:
        return download.bytes_total
    length = response.headers.get("Content-Length")
    return download.bytes_done + int(length) if length and length.isdigit() else None


class Fetcher:
    """Performs HTTP(S) transfers with an address-checked session."""

    def __init__(self, session: requests.Session, *, connect_timeout: float, read_timeout: float,
                 splice: bool = False) -> None:
        """`splice`: whether the temporary files take splice(2) writes (engine/socket_splice.py)."""
        self.session = session
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.splice = splice

    def fetch(self, download: Download, context: TransferContext) -> Download:
        """Bring `download` to completion in one stream, or raise the FetchError of the try's
        outcome (engine/errors.py). Room is claimed as the module's docstring says."""
        self._prepare(download)
        resumes = 0
        while True:
            before = download.bytes_done
            try:
                self._one_request(download, context)
                return download
            except Restart:
                self.reset(download)
                resumes += 1
            except Dropped as dropped:
                if download.bytes_done <= before:
                    raise failure(dropped.outcome, host=host_of(download.url), detail=str(dropped)) from None
                resumes += 1
            if resumes > MAX_RESUMES_PER_TRY:
                raise failure(Outcome.NETWORK_DROP, host=host_of(download.url),
                              detail=f"{resumes} times in one try; it keeps dropping the connection")

    # --- steps ------------------------------------------------------------

    def _prepare(self, download: Download) -> None:
        """Trust the bytes on disk (they may be more than the last progress figure saved)."""
        with on_local_disk():
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
        with on_local_disk(), open(download.temp_path, "wb"):
            pass
        download.segments = None
        download.bytes_done = 0
        download.bytes_total = None
        download.etag = download.last_modified = None
        download.hasher = hashlib.sha256()

    def _resume_request(self, download: Download) -> RangedGet:
        if download.bytes_done and not download.validator():
            raise Restart()  # nothing to guard a resume with: the content may have changed
        return RangedGet(download.bytes_done, validator=download.validator(), etag=download.etag,
                         total=download.bytes_total)

    def get(self, url: str, headers: dict[str, str], login: Login | None = None) -> requests.Response:
        """A streaming GET; connection problems come out as the FetchError of their outcome.
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
            raise classify(error, url) or error from None

    def check_status(self, download: Download, response: requests.Response) -> None:
        status = response.status_code
        if status == 416 and download.bytes_done:
            if download.bytes_total is not None and download.bytes_done >= download.bytes_total:
                return
            raise Restart()
        outcome = status_outcome(status, sent_login=getattr(response, "sent_login", False))
        if outcome is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            raise failure(outcome, retry_after=retry_after, host=host_of(download.url), status=status,
                          reason=response.reason, url=download.url)

    def _begin_body(self, download: Download, response: requests.Response, request: RangedGet) -> None:
        """Decide from the headers whether the body continues the saved bytes or replaces them."""
        if request.continues(response):
            total = content_range(response).total
            if total is not None:
                download.bytes_total = total
        else:
            if download.bytes_done:
                self.reset(download)
            download.etag = response.headers.get("ETag")
            download.last_modified = response.headers.get("Last-Modified")
            length = response.headers.get("Content-Length")
            download.bytes_total = int(length) if length and length.isdigit() else None
        download.final_url = response.url
        download.content_disposition = response.headers.get("Content-Disposition")

    def _one_request(self, download: Download, context: TransferContext) -> None:
        request = self._resume_request(download)
        with self.get(download.url, request.headers(), download.login) as response:
            self.check_status(download, response)
            if response.status_code == 416:
                return
            self._begin_body(download, response, request)
            end = expected_end(download, response)
            if end is not None:
                context.require_room(end)
            context.on_progress(download)
            self._stream_body(download, response, context)

    def _stream_body(self, download: Download, response: requests.Response, context: TransferContext) -> None:
        last_report = time.monotonic()

        def landed(count: int) -> None:
            nonlocal last_report
            download.bytes_done += count
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                context.on_progress(download)

        with on_local_disk():  # opened before the hasher, which reads the same file
            out = os.open(download.temp_path, os.O_WRONLY)
        hasher = FollowingHasher(download.temp_path, lambda: download.bytes_done, download.hasher, download.bytes_done)
        hasher.start()
        try:
            self._write_body(download, response, out, landed, context)
        except Dropped:
            download.hasher = hasher.finish()  # the next request continues the hash from here
            raise
        except BaseException:
            hasher.abandon()
            download.hasher = None  # a later try hashes the saved bytes again
            raise
        finally:
            os.close(out)
        download.pending_hash = hasher.finish  # whoever needs the digest hashes the rest
        context.on_progress(download)

    def _write_body(self, download: Download, response: requests.Response, out: int, landed: Callable[[int], None],
                    context: TransferContext) -> None:
        """The body into the temporary file `out` after the bytes saved (engine/body_copy.py)."""
        with on_local_disk():
            os.ftruncate(out, download.bytes_done)
        copy_body(response, out, download.bytes_done, context, landed, splice=self.splice)
        if download.bytes_total is not None and download.bytes_done < download.bytes_total:
            raise Dropped(f"body ended after {download.bytes_done} of {download.bytes_total} bytes")
