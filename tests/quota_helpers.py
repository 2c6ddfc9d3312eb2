"""Watching a user's storage while clients run: the sampler, the quota figures and a recount
that includes dead properties, shared by the quota tests and the adversarial suite."""

from __future__ import annotations

import os
import pickle
import re
import threading
import time

import requests

from provider.quota import tree_size

QUOTA_PROPS = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
               b"<D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>")


def quota_props(session: requests.Session, server) -> tuple[int, int]:
    text = session.request("PROPFIND", server.dav(""), data=QUOTA_PROPS, headers={"Depth": "0"}).text
    return (int(re.search(r"quota-used-bytes>(\d+)<", text).group(1)),
            int(re.search(r"quota-available-bytes>(\d+)<", text).group(1)))


def used(session: requests.Session, server) -> int:
    return session.get(server.url("/api/v1/me")).json()["used_bytes"]


class Sampler(threading.Thread):
    """Largest disk usage and quota-used-bytes seen while it runs."""

    def __init__(self, server, user: str, session: requests.Session) -> None:
        super().__init__(daemon=True)
        self.server, self.user, self.session = server, user, session
        self.most_on_disk = self.most_used = 0
        self.samples = 0
        self._done = threading.Event()

    def on_disk(self) -> int:
        """Bytes in the space and the temporary areas, each inode once: a published download is
        a hard link to its temporary file until the content store takes it. The space first: a
        file renamed from the temporary area meanwhile is then missed, never counted twice."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for tree in (self.server.space(self.user), self.server.data / "tmp" / "uploads", self.server.data / "tmp" / "downloads"):
            for folder, _dirs, names in os.walk(tree):
                for name in names:
                    try:
                        info = os.lstat(os.path.join(folder, name))
                    except FileNotFoundError:
                        continue
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_size
        return total

    def run(self) -> None:
        while not self._done.is_set():
            self.most_on_disk = max(self.most_on_disk, self.on_disk())
            if self.samples % 5 == 0:
                self.most_used = max(self.most_used, quota_props(self.session, self.server)[0])
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self.join()


def recounted(server, user: str) -> int:
    """The space's files plus what its dead properties hold, read from the database."""
    rows = server.query("select value from dav_properties where key like ?", [f"/dav/{user}/%"])
    properties = sum(len(name.encode()) + len(value) for (blob,) in rows for name, value in pickle.loads(blob).items())
    return tree_size(server.space(user)) + properties
