"""bench/web.py: the web drive in a real Chromium against rclone on the same WebDAV drive.

1. Listing: a folder of 1,000 files. Browser: from setting the page's location to the
   folder until the table shows 1,000 rows (PROPFIND, parsing, sorting and rendering).
   rclone: `rclone lsjson` of the same folder (PROPFIND and parsing, printing JSON).
2. Uploading 100 small files (4 KiB): browser, chosen with the page's Upload button, until
   the last upload's progress says done and the list shows all of them (three PUTs at a
   time, as the page sends them); rclone: `rclone copy` of the same local folder into a
   fresh folder of the drive (its default four transfers).
Best of `--rounds` rounds each, both sides taking turns; every round's figures are printed.

    python bench/web.py [--rounds 3] [--entries 1000] [--uploads 100]

Needs chromium (Debian's, at /usr/bin/chromium), playwright and rclone. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support import fetchdrive_server  # noqa: E402

from tests.test_web_page import CHROMIUM, FLAGS  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def rclone(server, *args: str) -> None:
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null", "RCLONE_WEBDAV_URL": server.dav(""), "RCLONE_WEBDAV_VENDOR": "other",
           "RCLONE_WEBDAV_USER": USER, "RCLONE_WEBDAV_PASS": obscured}
    subprocess.run(["rclone", *args], env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--uploads", type=int, default=100)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as temp:
        base = Path(temp)
        server = fetchdrive_server(base / "server")
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        session.trust_env = False
        session.request("MKCOL", server.dav("many/"))
        for index in range(options.entries):
            session.put(server.dav(f"many/file-{index:04d}.txt"), data=b"x" * 100)
        local = base / "local"
        local.mkdir()
        for index in range(options.uploads):
            (local / f"up-{index:03d}.bin").write_bytes(os.urandom(4096))
        files = sorted(str(path) for path in local.iterdir())

        listing = {"browser": [], "rclone": []}
        upload = {"browser": [], "rclone": []}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(server.url("/#/"))
            page.wait_for_selector('#files[data-folder=""]')
            for round_number in range(options.rounds):
                page.evaluate("() => { location.hash = '#/'; }")
                page.wait_for_selector('#files[data-folder=""]')
                started = time.perf_counter()
                page.evaluate("() => { location.hash = '#/many/'; }")
                page.wait_for_function(f"() => document.querySelectorAll('#files tbody tr').length === {options.entries}",
                                       polling="raf")
                listing["browser"].append(time.perf_counter() - started)
                started = time.perf_counter()
                rclone(server, "lsjson", ":webdav:many")
                listing["rclone"].append(time.perf_counter() - started)

                folder = f"up-browser-{round_number}"
                session.request("MKCOL", server.dav(folder + "/"))
                page.evaluate(f"() => {{ location.hash = '#/{folder}/'; }}")
                page.wait_for_selector(f'#files[data-folder="{folder}/"]')
                started = time.perf_counter()
                page.set_input_files("#upload-input", files)
                page.wait_for_function(
                    f"() => document.querySelectorAll('li.upload[data-state=done]').length === {options.uploads}"
                    f" && document.querySelectorAll('#files tbody tr[data-name]').length === {options.uploads}")
                upload["browser"].append(time.perf_counter() - started)
                page.evaluate("() => document.getElementById('uploads').replaceChildren()")
                started = time.perf_counter()
                rclone(server, "copy", str(local), f":webdav:up-rclone-{round_number}")
                upload["rclone"].append(time.perf_counter() - started)
                print(f"round {round_number + 1}: list {options.entries}: browser {listing['browser'][-1]:.3f} s, "
                      f"rclone lsjson {listing['rclone'][-1]:.3f} s; upload {options.uploads}: browser "
                      f"{upload['browser'][-1]:.3f} s, rclone copy {upload['rclone'][-1]:.3f} s", flush=True)
            browser.close()
        for what, figures in (("listing", listing), ("upload", upload)):
            best_browser, best_rclone = min(figures["browser"]), min(figures["rclone"])
            print(f"{what}: browser {best_browser:.3f} s, rclone {best_rclone:.3f} s, "
                  f"ratio {best_browser / best_rclone:.2f}x rclone's time (best of {options.rounds})")
        server.stop()


if __name__ == "__main__":
    main()
