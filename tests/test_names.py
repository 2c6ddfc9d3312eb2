"""File names from triggers, Content-Disposition and URLs are always safe, plain names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.naming import (
    MAX_NAME_BYTES, choose_filename, filename_from_content_disposition, filename_from_url, sanitize_filename, unique_name,
)


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
