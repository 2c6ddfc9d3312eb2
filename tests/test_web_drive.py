"""The web drive at /#/ in a real headless Chromium: drop to upload, rename, delete, previews,
seeking (a Range request reaches the server), share links opened without a login."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page
from tests.conftest import new_account

pytestmark = pytest.mark.shared_server
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def drive(browser: Browser, server, account, folder: str = "") -> Page:
    page = open_page(browser, server, account)
    page.goto(server.url("/#/" + folder))
    expect(page.locator("#files")).to_have_attribute("data-folder", folder)
    return page


def row(page: Page, name: str):
    return page.locator(f'#files tr[data-name="{name}"]')


def drop(page: Page, files: dict[str, str]) -> None:
    """Drop files on the browser as a file manager would: a drop event carrying a DataTransfer."""
    page.evaluate("""(files) => {
        const transfer = new DataTransfer();
        for (const [name, text] of Object.entries(files)) transfer.items.add(new File([text], name));
        const zone = document.getElementById("view-files");
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", files)


def png(width: int = 8, height: int = 6) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    pixels = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def wav(seconds: int = 120, rate: int = 8000) -> bytes:
    """A plain tone, big enough (about 2 MB) that seeking near the end needs a Range request."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        period = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate)]
        second = struct.pack(f"<{rate}h", *period)
        writer.writeframes(second * seconds)
    return out.getvalue()


def test_dropped_files_upload_with_progress_then_rename_and_delete(browser, server, alice):
    page = drive(browser, server, alice)
    drop(page, {"notes.txt": "hello from the browser", "second.txt": "two"})
    expect(row(page, "notes.txt")).to_be_visible()
    expect(row(page, "second.txt")).to_be_visible()
    assert (server.space(alice.name) / "notes.txt").read_text() == "hello from the browser"
    expect(page.locator("li.upload").first).to_have_attribute("data-state", "done")

    page.once("dialog", lambda dialog: dialog.accept("renamed.txt"))
    row(page, "notes.txt").get_by_role("button", name="Rename").click()
    expect(row(page, "renamed.txt")).to_be_visible()
    expect(row(page, "notes.txt")).to_have_count(0)
    assert (server.space(alice.name) / "renamed.txt").read_text() == "hello from the browser"

    page.once("dialog", lambda dialog: dialog.accept())
    row(page, "renamed.txt").get_by_role("button", name="Delete").click()
    expect(row(page, "renamed.txt")).to_have_count(0)
    assert not (server.space(alice.name) / "renamed.txt").exists()
    assert (server.space(alice.name) / "second.txt").exists()


def test_a_dropped_link_file_starts_a_download(browser, server, alice, origin):
    origin.add("/song.mp3", b"la la la")
    page = drive(browser, server, alice)
    drop(page, {"song.url": f"[InternetShortcut]\nURL={origin.url('/song.mp3')}\n"})
    expect(page.locator("#message")).to_contain_text("downloads/")
    page.click("#tab-downloads")
    expect(page.locator("li.task").first).to_have_attribute("data-state", "done")
    assert (server.space(alice.name) / "downloads" / "song.mp3").read_bytes() == b"la la la"


def test_new_folder_move_and_breadcrumbs(browser, server, alice):
    alice.session.put(server.dav("loose.txt"), data=b"loose")
    page = drive(browser, server, alice)
    page.once("dialog", lambda dialog: dialog.accept("Films"))
    page.click("#new-folder")
    expect(row(page, "Films")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept("Films"))
    row(page, "loose.txt").get_by_role("button", name="Move").click()
    expect(row(page, "loose.txt")).to_have_count(0)
    # From the keyboard: Enter opens a folder, Backspace goes up one.
    row(page, "Films").get_by_role("link", name="Films/").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#files")).to_have_attribute("data-folder", "Films/")
    expect(row(page, "loose.txt")).to_be_visible()
    page.keyboard.press("Backspace")
    expect(page.locator("#files")).to_have_attribute("data-folder", "")
    row(page, "Films").get_by_role("link", name="Films/").click()
    expect(page.locator("#files")).to_have_attribute("data-folder", "Films/")
    page.locator("#crumbs a", has_text="My drive").click()
    expect(page.locator("#files")).to_have_attribute("data-folder", "")
    assert (server.space(alice.name) / "Films" / "loose.txt").read_bytes() == b"loose"


def test_an_image_and_a_text_file_preview_in_the_page(browser, server, alice):
    alice.session.put(server.dav("red.png"), data=png())
    page = drive(browser, server, alice)
    row(page, "red.png").get_by_role("link", name="red.png").click()
    image = page.locator("#preview img")
    expect(image).to_be_visible()
    page.wait_for_function("() => document.querySelector('#preview img').naturalWidth === 8")
    page.keyboard.press("Escape")
    expect(page.locator("#preview")).not_to_be_visible()
    alice.session.put(server.dav("readme.md"), data="# Hello\nplain words, ünïcode".encode())
    page.reload()
    row(page, "readme.md").get_by_role("link", name="readme.md").click()
    expect(page.locator("#preview pre")).to_have_text("# Hello\nplain words, ünïcode")


# tests/data/clip.webm: 60 s of ffmpeg's test pattern, VP8 at 250 kbit/s (1.9 MB), made once with
# `ffmpeg -f lavfi -i testsrc2=size=320x240:rate=10 -t 60 -c:v libvpx -b:v 250k -g 20
# -reserve_index_space 8192 clip.webm`. The index (Cues) is at the front: with it at the end, the
# browser found a seek's place by reading on from where it was, and asked for no range at all
# whenever it had read that far already.
MEDIA = [("tone.wav", "audio", lambda: wav(), 110),
         ("clip.webm", "video", lambda: (Path(__file__).parent / "data" / "clip.webm").read_bytes(), 55)]


@pytest.mark.parametrize("name, element, body, seek_to", MEDIA, ids=["audio", "video"])
def test_seeking_in_audio_and_video_streams_with_a_range_request(browser, server, alice, name, element, body, seek_to):
    alice.session.put(server.dav(name), data=body())
    page = drive(browser, server, alice)
    partial: list[str] = []
    page.on("response", lambda response: partial.append(response.request.headers.get("range", ""))
            if response.url.endswith(f"/dav/{name}") and response.status == 206 else None)
    row(page, name).get_by_role("link", name=name).click()
    player = f"document.querySelector('#preview {element}')"
    expect(page.locator(f"#preview {element}")).to_be_visible()
    page.wait_for_function(f"() => {player}.readyState >= 1")
    page.evaluate(f"() => {{ {player}.currentTime = {seek_to}; }}")
    page.wait_for_function(f"() => !{player}.seeking && {player}.currentTime >= {seek_to - 1}")
    # The server answered 206 to a range that starts past the first megabyte: a real seek.
    assert any(r.startswith("bytes=") and int(r[6:].split("-")[0]) > 1_000_000 for r in partial), partial


def test_a_share_made_in_the_page_opens_without_a_login_until_revoked(browser, server, alice, tmp_path):
    alice.session.put(server.dav("downloads/holiday.txt"), data=b"postcard")
    page = drive(browser, server, alice, "downloads/")
    row(page, "holiday.txt").get_by_role("button", name="Share").click()
    page.click("#share-create")
    url = page.locator("#share-url")
    expect(url).to_be_visible()
    link = url.input_value()
    assert link.startswith(server.url("/s/"))

    stranger = browser.new_context()
    visit = stranger.new_page()
    answer = visit.goto(link)
    assert answer.status == 200 and "postcard" in visit.content()
    assert "alice" not in visit.content()

    page.click("#share-cancel")
    page.click("#tab-shares")
    share = page.locator("li.share").first
    expect(share).to_contain_text("downloads/holiday.txt")
    page.once("dialog", lambda dialog: dialog.accept())
    share.get_by_role("button", name="Revoke").click()
    expect(page.locator("li.share")).to_have_count(0)
    assert visit.goto(link).status == 404
    stranger.close()


def test_a_dav_folder_link_opens_the_drive_view_not_a_raw_listing(browser, server, alice):
    alice.session.put(server.dav("downloads/a.txt"), data=b"a")
    page = open_page(browser, server, alice)
    page.goto(server.dav("downloads/"))
    expect(page.locator("#files")).to_have_attribute("data-folder", "downloads/")
    expect(row(page, "a.txt")).to_be_visible()


def test_the_page_works_when_opened_with_credentials_in_the_url(browser, server, alice):
    context = browser.new_context()
    page = context.new_page()
    base = server.url("/").replace("://", f"://{alice.name}:{alice.password}@")
    page.goto(base + "#/")
    expect(page.locator("#user")).to_have_text(alice.name)
    expect(row(page, "downloads")).to_be_visible()
    expect(page.locator("#message")).to_have_text("")
    context.close()


def test_screenshots_of_the_dashboard_and_the_file_browser(browser, make_server, origin):
    server = make_server()  # of its own, so that the README's pictures show plain "alice"
    alice = new_account(server, "alice", "alice-password")
    origin.add("/ubuntu.iso", b"u" * (2 * 1024 * 1024))
    alice.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/ubuntu.iso")})
    for path, body in (("Photos/red.png", png()), ("notes.txt", b"shopping list"), ("tone.wav", wav(5))):
        if "/" in path:
            alice.session.request("MKCOL", server.dav(path.split("/")[0]))
        alice.session.put(server.dav(path), data=body)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, server, alice, viewport={"width": 1000, "height": 560})
    expect(page.locator("li.task").first).to_have_attribute("data-state", "done")
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
    page.goto(server.url("/#/"))
    expect(row(page, "notes.txt")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "files.png"))
    assert (SCREENSHOTS / "files.png").stat().st_size > 5000
    # On a phone the table reflows: nothing runs off the side of the screen.
    page.set_viewport_size({"width": 360, "height": 720})
    expect(row(page, "notes.txt").get_by_role("button", name="Delete")).to_be_in_viewport()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_an_html_file_opened_from_the_drive_cannot_script_the_drive(browser, server, alice):
    """A downloaded web page is someone else's content: opened from the drive (or a share),
    it runs sandboxed, without the reader's login."""
    attack = b"""<script>fetch("/dav/victim.txt", {method: "DELETE"}); document.title = "ran";</script>"""
    alice.session.put(server.dav("victim.txt"), data=b"keep me")
    alice.session.put(server.dav("downloads/page.html"), data=attack)
    shared = alice.session.post(server.url("/api/v1/shares"), json={"path": "downloads/page.html"}).json()["url"]
    page = open_page(browser, server, alice)
    for url in (server.dav("downloads/page.html"), shared):
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.title() != "ran", url
    assert alice.session.get(server.dav("victim.txt")).content == b"keep me"
