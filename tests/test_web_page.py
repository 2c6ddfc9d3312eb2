"""The dashboard at / in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.browser import add, open_page

pytestmark = pytest.mark.shared_server


def test_adding_a_url_shows_progress_to_100_percent_and_the_file(browser, server, alice, origin, tmp_path):
    origin.add("/movie.bin", b"m" * (3 * 1024 * 1024), rate=1024 * 1024)
    page = open_page(browser, server, alice)
    expect(page.locator("#user")).to_have_text(alice.name)
    add(page, origin.url("/movie.bin"))
    task = page.locator("li.task").first
    expect(task).to_have_attribute("data-state", "downloading")
    expect(task).to_have_attribute("data-state", "done")
    expect(task.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(task.locator("a", has_text="Open")).to_have_attribute("href", "/dav/downloads/movie.bin")
    assert (server.space(alice.name) / "downloads" / "movie.bin").stat().st_size == 3 * 1024 * 1024
    expect(page.locator("#quota-text")).to_contain_text("3.0 MiB used of 10.0 MiB")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000


def test_a_slow_download_can_be_cancelled(browser, server, alice, origin):
    origin.add("/slow.bin", b"s" * (8 * 1024 * 1024), rate=64 * 1024)
    page = open_page(browser, server, alice)
    add(page, origin.url("/slow.bin"))
    task = page.locator("li.task").first
    expect(task).to_have_attribute("data-state", "downloading")
    task.get_by_role("button", name="Cancel").click()
    expect(task).to_have_attribute("data-state", "cancelled")
    expect(page.locator("li.task").first.get_by_role("button", name="Retry")).to_be_visible()


def test_a_failed_download_shows_its_reason(browser, server, alice, origin):
    origin.add("/missing", b"", status=404)
    page = open_page(browser, server, alice)
    add(page, origin.url("/missing"))
    task = page.locator("li.task").first
    expect(task).to_have_attribute("data-state", "failed")
    expect(task.locator(".reason")).to_contain_text("404")


def test_a_bad_url_shows_an_error_and_adds_nothing(browser, server, alice):
    page = open_page(browser, server, alice)
    add(page, "javascript://alert(1)")
    expect(page.locator("#message")).to_have_class("error")
    expect(page.locator("#message")).to_contain_text("javascript")
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []


def test_the_page_fits_a_phone_screen(browser, server, alice, origin):
    origin.add("/phone.bin", b"p" * 1000)
    alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/phone.bin") + "?" + "long" * 40})
    page = open_page(browser, server, alice, viewport={"width": 375, "height": 740})
    expect(page.locator("li.task").first).to_be_visible()
    expect(page.locator("#source")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376


def test_the_page_needs_a_login(server):
    response = requests.get(server.url("/"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
