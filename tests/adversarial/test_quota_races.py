"""Concurrency against the quota: generated mixes of simultaneous uploads (declared length and
chunked), copies, dead-property writes and downloads (with and without a length) under a
small quota, each mix by a new user released all at once.

Pass: at no sampled moment do the disk (space plus temporary areas) or `quota-used-bytes`
pass the quota (error notes the server writes about failed downloads excepted: a user must
learn why); afterwards the used figure equals a recount of files plus dead properties, and
nothing is left in the temporary areas.
"""

from __future__ import annotations

import itertools
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider.quota import tree_size
from tests.downloads_helpers import temp_downloads, url_shortcut, wait_for
from tests.quota_helpers import Sampler, recounted, used, uploads_left

QUOTA = 2 * 1024 * 1024
KINDS = ["put", "chunked put", "copy", "proppatch", "download", "unsized download"]
MIXES = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 1_500_000)), min_size=3, max_size=9)
USERS = itertools.count()


def _proppatch_body(name: str, size: int) -> bytes:
    return (f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:x:"><D:set><D:prop>'
            f"<X:{name}>{'p' * size}</X:{name}></D:prop></D:set></D:propertyupdate>").encode()


def _chunks(size: int):
    for start in range(0, size, 128 * 1024):
        yield b"c" * min(128 * 1024, size - start)


def test_generated_concurrent_writers_never_pass_the_quota(make_server, origin, tally):
    server = make_server(settings={"engine.workers": 8, "engine.per_user": 8})
    failures: list[str] = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(MIXES)
    def mix(operations):
        user = f"race{next(USERS)}"
        server.add_user(user, f"{user}-password", quota=str(QUOTA))
        session = server.session(user, f"{user}-password")
        session.put(server.dav("seed.bin"), data=b"s" * 300_000)
        barrier = threading.Barrier(len(operations))

        def run(number: int, kind: str, size: int) -> None:
            own = server.session(user, f"{user}-password")
            if kind in ("download", "unsized download"):
                origin.add(f"/{user}/{number}.bin", b"d" * size, rate=2_000_000, send_length=kind == "download")
            barrier.wait()
            try:
                if kind == "put":
                    response = own.put(server.dav(f"p{number}.bin"), data=b"p" * size)
                elif kind == "chunked put":
                    response = own.put(server.dav(f"c{number}.bin"), data=_chunks(size))
                elif kind == "copy":
                    response = own.request("COPY", server.dav("seed.bin"), headers={"Destination": f"/dav/k{number}.bin"})
                elif kind == "proppatch":
                    response = own.request("PROPPATCH", server.dav("seed.bin"), data=_proppatch_body(f"n{number}", size % 70_000))
                else:
                    response = own.put(server.dav(f"downloads/{number}.url"),
                                       data=url_shortcut(origin.url(f"/{user}/{number}.bin")))
            except Exception:  # a refused chunked body may be cut off; the outcome is checked below
                return
            if response.status_code >= 500 and response.status_code != 507:
                failures.append(f"{kind} {size}: {response.status_code} {response.text[:200]}")

        with Sampler(server, user, session) as sampler:
            threads = [threading.Thread(target=run, args=(n, kind, size)) for n, (kind, size) in enumerate(operations)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wait_for(lambda: all(t["state"] in ("done", "failed") for t in session.get(server.url("/api/v1/tasks")).json()),
                     timeout=60, message="every download done or failed")
        wait_for(lambda: not temp_downloads(server.data), message="temporary download data removed")
        tally["requests made"] += len(operations) + sampler.samples // 5
        tally["hostile inputs tried"] += len(operations)
        notes = sum(path.stat().st_size for path in server.space(user).rglob("*.error.txt"))
        assert not failures, failures
        assert sampler.most_on_disk <= QUOTA + notes and sampler.most_used <= QUOTA + notes, operations
        assert used(session, server) == recounted(server, user), operations
        assert not uploads_left(server)
        tally["files checked"] += sum(1 for _ in server.space(user).rglob("*"))
        assert tree_size(server.space(user)) <= QUOTA + notes

    mix()
    assert "Traceback" not in server.log_text()
