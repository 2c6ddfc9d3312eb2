"""Parsing trigger files: every format, the optional keys, and every way a file can be wrong."""

from __future__ import annotations

import json
import plistlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.triggers import MAX_TRIGGER_BYTES, Trigger, TriggerError, is_trigger_name, parse_trigger

URL = "https://example.com/file.iso"
SUM = "ab" * 32


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("a.url", f"[InternetShortcut]\r\nURL={URL}\r\n".encode(), Trigger((URL,), False, None, None)),
        ("a.url", f"\ufeff[{{000214A0-0000-0000-C000-000000000046}}]\r\nProp3=19,11\r\n[InternetShortcut]\r\nIDList=\r\nURL={URL}\r\nIconIndex=0\r\n".encode(), Trigger((URL,), False, None, None)),
        ("a.url", f"[InternetShortcut]\nURL={URL}\n".encode("utf-16"), Trigger((URL,), False, None, None)),
        ("a.url", f"[InternetShortcut]\nURL={URL}\nsha256={SUM.upper()}\nfilename=x.iso\n".encode(), Trigger((URL,), False, SUM, "x.iso")),
        ("a.url", f"# list\n{URL}\n\nhttp://b.example/2\n{URL}\n".encode(), Trigger((URL, "http://b.example/2"), False, None, None)),
        ("a.url", f"{URL}\nsha256={SUM}\nfilename=y.iso\n".encode(), Trigger((URL,), False, SUM, "y.iso")),
        ("a.webloc", plistlib.dumps({"URL": URL}), Trigger((URL,), False, None, None)),
        ("a.webloc", plistlib.dumps({"URL": URL, "filename": "w.iso"}, fmt=plistlib.FMT_BINARY), Trigger((URL,), False, None, "w.iso")),
        ("a.desktop", f"[Desktop Entry]\nVersion=1.0\nType=Link\nName=Thing\nName[de]=Ding\nURL={URL}\n".encode(), Trigger((URL,), False, None, None)),
        ("a.id", b"# a comment\ndebian-12\n", Trigger(("debian-12",), True, None, None)),
        ("a.id", f"sha256:{SUM.upper()}\nfilename=z.bin\n".encode(), Trigger((f"sha256:{SUM}",), True, None, "z.bin")),
        ("A.URL", f"{URL}\n".encode(), Trigger((URL,), False, None, None)),
        ("m.url", f"magnet:?xt=urn:btih:{SUM[:40]}&dn=x\n".encode(), Trigger((f"magnet:?xt=urn:btih:{SUM[:40]}&dn=x",), False, None, None)),
    ],
)
def test_every_format_is_understood(name, data, expected):
    assert parse_trigger(name, data) == expected


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("a.url", b"", "empty"),
        ("a.url", b"  \n# only a comment\n", "no URL"),
        ("a.url", b"x" * (MAX_TRIGGER_BYTES + 1), "too large"),
        ("a.url", b"\x00\x01binary\xff", "binary"),
        ("a.url", b"\xff\xfe\x00garbage in utf-16 \xd8\x00", "UTF-16"),
        ("a.url", b"caf\xe9 http://x/\n", "UTF-8"),
        ("a.url", b"[InternetShortcut]\nURL=javascript:alert(1)\n", "javascript:"),
        ("a.url", b"file:///etc/passwd\n", "file:"),
        ("a.url", b"gopher://x/\n", "gopher:"),
        ("a.url", b"/relative/path\n", "not a link"),
        ("a.url", b"please fetch the new ubuntu release\n", "not a link"),
        ("a.url", b"magnet:?dn=no-hash\n", "info-hash"),
        ("a.url", b"http:///no-host\n", "no host"),
        ("a.url", b"http://a.example/x y\n", "spaces"),
        ("a.url", b"[InternetShortcut]\nIconIndex=1\n", "no URL="),
        ("a.url", f"{URL}\nsha256=nothex\n".encode(), "64 hexadecimal"),
        ("a.url", f"{URL}\nhttp://b.example/\nfilename=x\n".encode(), "own trigger"),
        ("a.url", "".join(f"http://h{i}.example/\n" for i in range(1001)).encode(), "more than 1000"),
        ("a.url", b"http://" + b"a" * 9000 + b"\n", "longer than"),
        ("a.webloc", b"not a plist", "property list"),
        ("a.webloc", plistlib.dumps(["URL"]), "dictionary"),
        ("a.webloc", plistlib.dumps({"URL": 5}), "URL string"),
        ("a.webloc", b"<?xml version='1.0'?><plist>" + b"<array>" * 3000 + b"</array>" * 3000 + b"</plist>", "property list"),
        ("a.desktop", b"[Desktop Entry]\nType=Application\nExec=rm -rf ~\n", "Type=Application"),
        ("a.desktop", b"Type=Link\nURL=http://x/\n", "[Desktop Entry]"),
        ("a.desktop", b"[Desktop Entry]\nType=Link\n", "no URL="),
        ("a.id", b"two words\n", "printable ASCII"),
        ("a.id", b"one\ntwo\n", "second line"),
        ("a.id", b"sha256:1234\n", "64 hexadecimal"),
        ("a.txt", b"http://x/\n", "not a trigger"),
    ],
)
def test_bad_triggers_get_a_precise_reason(name, data, reason):
    with pytest.raises(TriggerError, match=None) as caught:
        parse_trigger(name, data)
    assert reason.lower() in str(caught.value).lower()


UNSUPPORTED_URLS = [
    "ftp://ftp.example.org/pub/x", "FTP://ftp.example.org/pub/x", "file:///etc/passwd", "gopher://x.example/1",
    "data:text/plain;base64,aGk=", "javascript:alert(1)", "sftp://h.example/x", "mailto:a@example.com",
    "ws://h.example/x",
]


@pytest.mark.parametrize("url", UNSUPPORTED_URLS)
@pytest.mark.parametrize("wrap", ["{}\n", "[InternetShortcut]\r\nURL={}\r\n"])
def test_unsupported_schemes_are_refused_when_the_trigger_is_read(url, wrap):
    scheme = url.split(":", 1)[0].lower()
    with pytest.raises(TriggerError) as caught:
        parse_trigger("a.url", wrap.format(url).encode())
    message = str(caught.value)
    assert f"uses {scheme}:" in message and "http://, https:// or magnet:" in message


@pytest.mark.parametrize(
    "name, expected",
    [("a.url", True), ("b.WEBLOC", True), ("c.desktop", True), ("d.id", True), ("._a.url", False),
     (".DS_Store", False), ("Thumbs.db", False), ("desktop.ini", False), ("a.url.error.txt", False),
     ("~$doc.url", False), ("a.txt", False), ("url", False)],
)
def test_trigger_names_and_os_junk(name, expected):
    assert is_trigger_name(name) is expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([".url", ".webloc", ".desktop", ".id"]), st.binary(max_size=4096))
def test_any_bytes_give_a_trigger_or_a_trigger_error(suffix, data):
    try:
        result = parse_trigger("x" + suffix, data)
    except TriggerError as error:
        assert str(error)
    else:
        assert result.sources


@pytest.mark.parametrize(
    "name, data, sources, secrets",
    [
        ("a.url", b"https://me:pw@example.com/f\n", ("https://example.com/f",), [[["Authorization", "Basic bWU6cHc="]]]),
        ("a.url", b"https://me%40x:p%3Aw@example.com/f\nhttp://example.org/g\n",
         ("https://example.com/f", "http://example.org/g"), [[["Authorization", "Basic bWVAeDpwOnc="]], None]),
        ("a.url", b"[InternetShortcut]\nURL=https://example.com/f\nheader=X-Key: 1\nheader=Cookie: a=b; c=d\n",
         ("https://example.com/f",), [[["X-Key", "1"], ["Cookie", "a=b; c=d"]]]),
        ("a.url", b"https://me:pw@example.com/f\nheader=Authorization: Bearer t\n",
         ("https://example.com/f",), [[["Authorization", "Bearer t"]]]),
        ("a.desktop", b"[Desktop Entry]\nType=Link\nURL=https://u@example.com/f\nheader=Referer: https://example.com/\n",
         ("https://example.com/f",), [[["Referer", "https://example.com/"], ["Authorization", "Basic dTo="]]]),
        ("a.id", b"debian-12\nheader=X-Key: 2\n", ("debian-12",), [[["X-Key", "2"]]]),
        ("a.webloc", plistlib.dumps({"URL": "https://me:pw@example.com/f"}), ("https://example.com/f",),
         [[["Authorization", "Basic bWU6cHc="]]]),
    ],
)
def test_a_login_in_a_trigger_is_kept_apart_from_the_link_it_shows(name, data, sources, secrets):
    trigger = parse_trigger(name, data)
    assert trigger.sources == sources
    assert [json.loads(s) if s else None for s in trigger.secrets] == secrets
    assert "pw" not in repr(trigger) and "X-Key" not in repr(trigger)


@pytest.mark.parametrize("password", ["hunter2", "p@ss word", "x" * 300])
def test_an_unusable_link_is_quoted_without_its_password(password):
    with pytest.raises(TriggerError) as raised:
        parse_trigger("a.url", f"https://me:{password}@example.com/a b\n".encode())
    assert password not in str(raised.value) and "example.com" in str(raised.value)
