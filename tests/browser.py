"""The page tests' browser: Debian's headless Chromium driven by Playwright (no browser download).

The `browser` fixture (tests/conftest.py) launches it once a module; `open_page` opens the page
at / in a fresh context logged in as one account.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def open_page(browser: Browser, server, account, **options) -> Page:
    context = browser.new_context(http_credentials={"username": account.name, "password": account.password}, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url("/"))
    return page


def add(page: Page, source: str) -> None:
    page.fill("#source", source)
    page.click("#add button[type=submit]")
