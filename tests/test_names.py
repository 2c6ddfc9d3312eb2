"""One rule for names from any source (SPEC 4's safety rules, issue 12 item 9).

Names the server chooses (a trigger's filename=, Content-Disposition, the URL) are safe,
plain and visible, and never pass for an entry the product shows itself. Names a client
chooses are kept, unless XML cannot carry them: those get a 400, so that every folder stays
listable by every client (`rclone test info` found the hole).
"""

from __future__ import annotations

import os
import unicodedata
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from engine.naming import (
    MAX_NAME_BYTES, choose_filename, client_name_problem, filename_from_content_disposition, filename_from_url,
    sanitize_filename, unique_name,
)
from tests.conftest import new_account
from tests.downloads_helpers import rclone, url_shortcut, wait_for

pytestmark = pytest.mark.shared_server


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "download"),
        (".", "download"),
        ("", "download"),
        ("a\x00b\x1fc\x7f.txt", "abc.txt"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("trailing dots... ", "trailing dots"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT1.log", "_LPT1.log"),
        (".hidden", ".hidden"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),
    ],
)
def test_names_are_sanitised(raw, expected):
    assert sanitize_filename(raw) == expected


def test_long_names_are_cut_to_255_bytes_keeping_the_extension():
    name = sanitize_filename("é" * 300 + ".tar.gz")
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".gz")


@pytest.mark.parametrize(
    "header, expected",
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=plain.txt", "plain.txt"),
        ('attachment; filename="quo\\"ted.txt"', 'quo"ted.txt'),
        ("attachment; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt", "naïve résumé.txt"),
        ("attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC.txt", "€.txt"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates.txt", "£ rates.txt"),
        ("inline", None),
        ("", None),
        (None, None),
        ("attachment; filename*=bogus''%ff", None),
        (";;;===", None),
    ],
)
def test_content_disposition_follows_rfc_6266(header, expected):
    assert filename_from_content_disposition(header) == expected


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://a.example/dir/hello%20world.txt?x=1#f", "hello world.txt"),
        ("https://a.example/dir/", "dir"),
        ("https://a.example/", None),
        ("https://a.example", None),
        ("https://a.example/%E2%82%AC", "€"),
    ],
)
def test_url_names_are_the_last_segment_decoded(url, expected):
    assert filename_from_url(url) == expected


def test_the_naming_order_is_trigger_then_header_then_url_then_stem():
    cd = 'attachment; filename="header.bin"'
    assert choose_filename(trigger_filename="t.bin", content_disposition=cd, final_url="http://x/u.bin", trigger_stem="s") == "t.bin"
    assert choose_filename(trigger_filename=None, content_disposition=cd, final_url="http://x/u.bin", trigger_stem="s") == "header.bin"
    assert choose_filename(trigger_filename=None, content_disposition=None, final_url="http://x/u.bin", trigger_stem="s") == "u.bin"
    assert choose_filename(trigger_filename=None, content_disposition=None, final_url="http://x/", trigger_stem="s") == "s"
    assert choose_filename(trigger_filename="..", content_disposition=None, final_url="http://x/", trigger_stem="s") == "s"


def test_taken_names_get_a_number_before_the_extension():
    taken = {"a.bin", "a (1).bin", "noext", "archive.tar.gz"}
    assert unique_name("a.bin", taken.__contains__) == "a (2).bin"
    assert unique_name("noext", taken.__contains__) == "noext (1)"
    assert unique_name("archive.tar.gz", taken.__contains__) == "archive.tar (1).gz"
    assert unique_name("free.bin", taken.__contains__) == "free.bin"


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
def test_any_name_sanitises_to_a_plain_safe_name(raw):
    name = sanitize_filename(raw)
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name)
    assert sanitize_filename(name) == name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_content_disposition_header_is_survived(header):
    result = filename_from_content_disposition(header)
    assert result is None or isinstance(result, str)


# --- names the server chooses ---------------------------------------------------------

@pytest.mark.parametrize(
    "raw, expected",
    [
        ("x.part", "x.part_"),
        ("Movie.PART", "Movie.PART_"),
        ("y (task 3).part", "y (task 3).part_"),
        ("x.part ", "x.part_"),
        ("x.part.", "x.part_"),
        ("x.part\u200b", "x.part_"),
        (".part", ".part_"),
        ("fetchdrive-status.txt", "fetchdrive-status_.txt"),
        ("FetchDrive-Status.TXT", "FetchDrive-Status_.TXT"),
        ("\u202efetchdrive-status.txt", "fetchdrive-status_.txt"),
        ("song.url.error.txt", "song.url.error_.txt"),
        ("a.ERROR.TXT", "a.ERROR_.TXT"),
        ("x.partial", "x.partial"),
        ("status.txt", "status.txt"),
        ("x" * 300 + ".part", "x" * 249 + ".part_"),
    ],
)
def test_origin_names_never_pass_for_an_entry_the_product_shows(raw, expected):
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # RIGHT-TO-LEFT OVERRIDE: shows as invoiceexe.pdf
        ("a\u202ab\u202bc\u202cd\u202de.txt", "abcde.txt"),
        ("\u2066isolated\u2067\u2068\u2069.txt", "isolated.txt"),
        ("\u200ezero\u200fwidth\u200b\u200c\u200d.txt", "zerowidth.txt"),
        ("\ufeffbom.txt", "bom.txt"),
        ("soft\u00adhyphen.txt", "softhyphen.txt"),
        ("arabic\u061cmark.txt", "arabicmark.txt"),
        ("line\u2028para\u2029.txt", "linepara.txt"),
        ("nel\u0085c1\u009f.txt", "nelc1.txt"),
        ("filler\u3164\u115f\uffa0.txt", "filler.txt"),
        ("mongolian\u180e.txt", "mongolian.txt"),
        ("tag\U000e0041.txt", "tag.txt"),
        ("nonchar\ufffe\uffff.txt", "nonchar.txt"),
        ("\u202e", "download"),
        ("emoji \U0001f600 and \u4e2d\u6587.txt", "emoji \U0001f600 and \u4e2d\u6587.txt"),
    ],
)
def test_origin_names_lose_bidirectional_and_invisible_characters(raw, expected):
    assert sanitize_filename(raw) == expected


_HIDDEN = st.sampled_from(["\u202e", "\u200b", "\u2028", "\ufeff", "\x06", "\x7f", "\u2066", "\ud800", "\ufffe", " ", "."])
_PRODUCT = st.sampled_from([".part", ".PART", ".error.txt", "fetchdrive-status.txt", ".url", ".part.", ""])
HOSTILE_NAMES = st.builds(lambda a, b, c, d: a + b + c + d, st.text(max_size=300), _HIDDEN, _PRODUCT,
                          st.text(alphabet=_HIDDEN, max_size=3))


def looks_like_the_product(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".part", ".error.txt")) or lower == "fetchdrive-status.txt"


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.text(max_size=400), HOSTILE_NAMES))
def test_no_origin_name_is_invisible_unlistable_or_product_like(raw):
    name = sanitize_filename(raw)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name), ascii(name)
    assert client_name_problem(name) is None
    assert not looks_like_the_product(name), name
    assert not looks_like_the_product(unique_name(name, lambda candidate: candidate == name))
    etree.fromstring(f"<n>{name.replace('&', '&amp;').replace('<', '&lt;')}</n>".encode())
    assert sanitize_filename(name) == name and len(name.encode()) <= MAX_NAME_BYTES


# --- names clients choose -------------------------------------------------------------

@pytest.mark.parametrize(
    "name, refused",
    [
        ("a\x06b.txt", True), ("tab\there", True), ("new\nline", True), ("cr\r", True), ("\x00", True),
        ("\x1f", True), ("nonchar\ufffe", True), ("nonchar\uffff", True), ("lone\ud800", True),
        ("del\x7f", False), ("nel\x85", False), ("rlo\u202eok", False), ("x.part", False),
        ("fetchdrive-status.txt", False), ("e\u0301", False), ("\U0001f600", False), (" lead and trail ", False),
    ],
)
def test_client_names_are_refused_only_where_xml_cannot_carry_them(name, refused):
    assert (client_name_problem(name) is not None) == refused


PROPNAME = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>'
DEAD_PROP = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop><Z:x/><D:displayname/></D:prop></D:propfind>'


def listing(account, url: str) -> list[str]:
    """The names a Depth 1 PROPFIND lists, asked the three ways clients do (allprop is
    answered by the fast path, the others by WsgiDAV); each answer must be well-formed XML."""
    seen = None
    for body in ("", PROPNAME, DEAD_PROP):
        response = account.session.request("PROPFIND", url, data=body, headers={"Depth": "1"})
        assert response.status_code == 207, response.text[:300]
        tree = etree.fromstring(response.content)
        hrefs = [unquote(urlsplit(href.text).path) for href in tree.iter("{DAV:}href")]
        names = sorted(href.rstrip("/").rpartition("/")[2] for href in hrefs[1:])
        assert seen is None or names == seen
        seen = names
    return seen or []


UNLISTABLE = ["a\x06b", "tab\tname", "line\nfeed", "cr\rname", "\x01", "esc\x1b[31m", "x\x1f\x7f", "non\ufffe", "non\uffff"]


@pytest.mark.parametrize("folder", ["", "downloads/"])
def test_every_way_a_client_names_an_entry_refuses_what_a_listing_cannot_carry(server, alice, folder):
    alice.session.put(server.dav(f"{folder}source.txt"), data=b"x")
    lock = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            "<D:locktype><D:write/></D:locktype></D:lockinfo>")
    for name in UNLISTABLE:
        target = server.dav(folder + quote(name))
        answers = {
            "PUT": alice.session.put(target, data=b"x"),
            "PUT trigger": alice.session.put(target + ".url", data=url_shortcut("http://127.0.0.1:9/x")),
            "MKCOL": alice.session.request("MKCOL", target),
            "LOCK": alice.session.request("LOCK", target + ".lock", data=lock),
            "COPY": alice.session.request("COPY", server.dav(f"{folder}source.txt"), headers={"Destination": target}),
            "MOVE": alice.session.request("MOVE", server.dav(f"{folder}source.txt"), headers={"Destination": target}),
        }
        assert {how: answer.status_code for how, answer in answers.items()} == {how: 400 for how in answers}, ascii(name)
        assert all("cannot carry" in answer.text and "Traceback" not in answer.text for answer in answers.values())
    assert "source.txt" in listing(alice, server.dav(folder))
    assert sorted(os.listdir(server.space(alice.name) / folder)) == sorted(listing(alice, server.dav(folder)))


def test_the_api_refuses_a_download_folder_a_listing_could_not_carry(server, alice):
    for name in UNLISTABLE:
        response = alice.session.post(server.url("/api/v1/tasks"), json={"url": "http://127.0.0.1:9/x", "folder": f"downloads/{name}"})
        assert response.status_code == 400 and response.json()["error"], (ascii(name), response.text)
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []
    assert listing(alice, server.dav("downloads/")) == []


def test_a_folder_holding_an_unlistable_name_from_before_the_rule_stays_listable(server, alice):
    legacy = server.space(alice.name) / "old\x06name.txt"
    legacy.write_bytes(b"made before the rule")
    assert legacy.name in listing(alice, server.dav())  # its href carries it percent-encoded
    assert alice.session.delete(server.dav(quote(legacy.name))).status_code == 204
    assert not legacy.exists()


CLIENT_SEGMENT = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from("\x00\x06\t\n\r\x1f\ufffe\uffff.%")),
    min_size=1, max_size=30,
)


def test_whatever_names_clients_try_every_folder_stays_well_formed_and_lists_what_was_made(server, alice):
    made: set[str] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(CLIENT_SEGMENT, st.sampled_from(["PUT", "MKCOL"]))
    def create(name, method):
        response = alice.session.request(method, server.dav("names/" + quote(name, safe="")), data=b"x" if method == "PUT" else b"")
        assert response.status_code < 500, (ascii(name), response.status_code)
        if client_name_problem(name) is not None:
            assert response.status_code == 400, ascii(name)
        elif response.status_code in (201, 204):
            made.add(name)
        elif name not in (".", "..") and response.status_code != 405:  # 405: MKCOL on an existing name
            raise AssertionError((ascii(name), method, response.status_code, response.text[:200]))

    assert alice.session.request("MKCOL", server.dav("names")).status_code == 201
    create()
    assert set(listing(alice, server.dav("names/"))) == made
    assert sorted(os.listdir(server.space(alice.name) / "names")) == sorted(made)


def test_rclone_test_info_completes_and_leaves_the_folder_listable(server, alice):
    # rclone waits a second after each refused PUT (its webdav backend lets the server settle)
    # and tries eight names at a time by default: 99 refusals were 11 s of its 31. More at
    # once try the same names; its pacer (a request per 10 ms) is what is left.
    result = rclone(server, alice, "test", "info", "--check-control", "--check-normalization", "--low-level-retries", "1",
                    "--checkers", "32", "fd:downloads/info")
    assert result.returncode == 0 and "canWriteUnnormalized = true" in result.stdout, result.stderr[-2000:]
    listed = rclone(server, alice, "lsf", "-R", "fd:downloads/info")
    assert listed.returncode == 0, listed.stderr[-2000:]
    root = server.space(alice.name) / "downloads" / "info"
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        url = server.dav(quote("downloads/info/" + ("" if relative == "." else relative + "/")))
        assert sorted(listing(alice, url)) == sorted(dirs + files)
        assert not [name for name in dirs + files if client_name_problem(name)]


# --- names origins choose, end to end ----------------------------------------------

ORIGIN_NAMES = [
    ('attachment; filename="clip.part"', "clip.part_"),
    ('attachment; filename="fetchdrive-status.txt"', "fetchdrive-status_.txt"),
    ('attachment; filename="t.url.error.txt"', "t.url.error_.txt"),
    ("attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe", "invoicefdp.exe"),
    ("attachment; filename*=UTF-8''zero%E2%80%8Bwidth%EF%BB%BF.txt", "zerowidth.txt"),
    ("attachment; filename*=UTF-8''ctl%06%1B%7F%C2%85.txt", "ctl.txt"),
    ("attachment; filename*=UTF-8''sep%E2%80%A8%E2%80%A9.part%E2%80%8B", "sep.part_"),
]


def test_origin_names_are_saved_visible_and_unlike_the_product_and_the_status_view_still_shows(server, alice, origin):
    for number, (header, _) in enumerate(ORIGIN_NAMES):
        origin.add(f"/cd{number}", b"%d" % number, content_disposition=header)
        alice.session.put(server.dav(f"downloads/cd{number}.url"), data=url_shortcut(origin.url(f"/cd{number}")))
    origin.add("/path/movie.part", b"by path")
    alice.session.put(server.dav("downloads/bypath.url"), data=url_shortcut(origin.url("/path/movie.part")))
    alice.session.put(server.dav("downloads/named.url"),
                      data=url_shortcut(origin.url("/path/movie.part"), filename="FETCHDRIVE-STATUS.TXT"))
    alice.session.put(server.dav("downloads/missing.url"), data=url_shortcut(origin.url("/nowhere")))
    expected = {name for _, name in ORIGIN_NAMES} | {"movie.part_", "FETCHDRIVE-STATUS_.TXT"}
    downloads = server.space(alice.name) / "downloads"
    # Until the finished triggers have gone too: the listing below is asked three times over.
    wait_for(lambda: expected <= set(os.listdir(downloads)) and (downloads / "missing.url.error.txt").exists()
             and [name for name in os.listdir(downloads) if name.endswith(".url")] == ["missing.url"],
             timeout=60, message="every download saved and every finished trigger gone")
    listed = listing(alice, server.dav("downloads/"))
    assert expected <= set(listed) and "fetchdrive-status.txt" in listed
    status = alice.session.get(server.dav("downloads/fetchdrive-status.txt"))
    assert status.status_code == 200 and status.text.startswith("fetchdrive downloads") and "failed" in status.text
    assert not [name for name in os.listdir(downloads) if looks_like_the_product(name)
                and not name.endswith(".url.error.txt")]


def test_a_link_file_an_origin_delivered_is_not_taken_for_a_trigger_after_a_restart(make_server, origin):
    server = make_server()  # restarted: a server of its own
    alice = new_account(server, "alice", "alice-password")
    origin.add("/never", b"must not be fetched")
    origin.add("/next", url_shortcut(origin.url("/never")), content_disposition='attachment; filename="next.url"')
    alice.session.put(server.dav("downloads/first.url"), data=url_shortcut(origin.url("/next")))
    downloads = server.space(alice.name) / "downloads"
    wait_for(lambda: (downloads / "next.url").exists() and not (downloads / "first.url").exists(), message="delivered")
    server.stop()
    origin.add("/other", b"other")
    (downloads / "waiting.url").write_bytes(url_shortcut(origin.url("/other")))  # a real trigger, for contrast
    server.start()
    triggers = {task["trigger"] for task in alice.session.get(server.url("/api/v1/tasks")).json()}
    assert triggers == {"downloads/first.url", "downloads/waiting.url"}
    assert origin.count("/never") == 0
