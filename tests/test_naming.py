"""Unit tests for downloader.naming: final paths under the destination, never outside it."""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path

import pytest

from downloader.errors import InvalidJob
from downloader.jobs import Job
from downloader.naming import (
    MAX_NAME_BYTES,
    PART_SUFFIX,
    STATE_SUFFIX,
    check_inside,
    collision_path,
    name_from_disposition,
    name_from_url,
    output_path,
    safe_name,
)

DEST = Path("/srv/dest")
INDEX = re.compile(r"index-[0-9a-f]{10}\.html")


# --- name_from_url ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "name"),
    [
        pytest.param("http://example.test/data/a.csv", "a.csv", id="last-segment"),
        pytest.param("http://example.test/a.csv?version=2&x=/y", "a.csv", id="query-ignored"),
        pytest.param("http://example.test/a.csv#part/2", "a.csv", id="fragment-ignored"),
        pytest.param("http://example.test/my%20file.txt", "my file.txt", id="percent-decoded"),
        pytest.param("http://example.test/caf%C3%A9.txt", "café.txt", id="utf8-decoded"),
        pytest.param("http://example.test/x/caf\u00e9.txt", "café.txt", id="raw-unicode"),
        pytest.param("http://example.test/a%2Fb.txt", "a_b.txt", id="encoded-slash"),
        pytest.param("http://example.test/a%2fb.txt", "a_b.txt", id="encoded-slash-lowercase"),
        pytest.param("http://example.test/..%2F..%2Fetc%2Fpasswd", ".._.._etc_passwd", id="encoded-traversal"),
        pytest.param("http://example.test/a%5Cb.txt", "a_b.txt", id="encoded-backslash"),
        pytest.param("http://example.test/a%00b", "a_b", id="encoded-nul"),
        pytest.param("http://example.test/a%0Ab", "a_b", id="encoded-newline"),
        pytest.param("http://example.test/a%7Fb", "a_b", id="encoded-del"),
        pytest.param("http://example.test/%20padded%20", "padded", id="stripped"),
        pytest.param("http://example.test/%FF.bin", "\ufffd.bin", id="invalid-utf8-replaced"),
    ],
)
def test_name_from_url(url, name):
    """The name is the last path segment, percent-decoded, with unsafe characters replaced by '_'."""
    assert name_from_url(url) == name


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.test/", id="root"),
        pytest.param("http://example.test", id="no-path"),
        pytest.param("http://example.test/dir/", id="directory"),
        pytest.param("http://example.test/dir/?q=a.csv", id="directory-with-query"),
        pytest.param("http://example.test/.", id="dot"),
        pytest.param("http://example.test/%2E%2E", id="encoded-dot-dot"),
        pytest.param("http://example.test/%2e", id="encoded-dot"),
        pytest.param("http://example.test/%20%20", id="only-spaces"),
        # Was "...": Windows strips trailing dots, so "..." would name the directory itself (R5).
        pytest.param("http://example.test/...", id="three-dots"),
        pytest.param("http://example.test/.%20.", id="dots-and-spaces"),
    ],
)
def test_name_from_url_without_usable_segment_is_index(url):
    """A URL with no usable last segment is named index-<10 hex>.html."""
    assert INDEX.fullmatch(name_from_url(url))


def test_index_names_differ_per_url():
    """Different directory URLs never share an index name."""
    urls = ["http://example.test/", "http://example.test/a/", "http://example.test/b/",
            "http://other.test/", "http://example.test/?page=2"]
    names = {name_from_url(u) for u in urls}
    assert len(names) == len(urls)


def test_index_name_is_stable():
    """The same URL always gets the same index name."""
    assert name_from_url("http://example.test/dir/") == name_from_url("http://example.test/dir/")


def test_encoded_slash_never_creates_a_directory():
    """A %2F in the last segment stays inside one file name directly under dest."""
    path = output_path(Job("http://example.test/a%2Fb%2Fc.bin"), DEST)
    assert path.parent == DEST
    assert "/" not in path.name


# --- long names ---------------------------------------------------------------------------

def test_max_name_leaves_room_for_the_state_suffix():
    """A final name of MAX_NAME_BYTES plus '.part.state' and its temporary suffix fits in 255 bytes."""
    assert MAX_NAME_BYTES + len(STATE_SUFFIX.encode()) + len(".99999999.tmp") <= 255
    assert STATE_SUFFIX.startswith(PART_SUFFIX)


def test_name_at_the_limit_is_kept():
    """A name of exactly MAX_NAME_BYTES bytes is not changed."""
    name = "a" * (MAX_NAME_BYTES - 4) + ".bin"
    assert name_from_url(f"http://example.test/{name}") == name


def test_long_name_is_shortened_keeping_extension():
    """A name over the limit is cut to MAX_NAME_BYTES and keeps its short extension."""
    name = name_from_url("http://example.test/" + "a" * 400 + ".tar")
    assert len(name.encode()) == MAX_NAME_BYTES
    assert name.endswith(".tar")
    assert name.startswith("a" * 100)


def test_long_names_with_common_prefix_stay_distinct():
    """Two long names that differ only after the cut get different short names."""
    first = name_from_url("http://example.test/" + "a" * 400 + "1.bin")
    second = name_from_url("http://example.test/" + "a" * 400 + "2.bin")
    assert first != second


def test_long_name_with_long_extension_drops_it():
    """An 'extension' longer than 16 characters is not kept; the name still fits."""
    name = name_from_url("http://example.test/" + "a" * 300 + "." + "b" * 40)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert "." not in name


def test_long_multibyte_name_is_cut_on_a_character_boundary():
    """A long UTF-8 name is shortened in bytes without splitting a character."""
    name = name_from_url("http://example.test/" + "\u00e9" * 300 + ".txt")
    encoded = name.encode()
    assert len(encoded) <= MAX_NAME_BYTES
    assert encoded.decode() == name
    assert name.endswith(".txt") and name.startswith("\u00e9" * 100)


def test_long_out_component_is_shortened():
    """Each component of out= is shortened like a URL name."""
    path = output_path(Job("http://example.test/x", out="sub/" + "c" * 300 + ".gz"), DEST)
    assert path.parent == DEST / "sub"
    assert len(path.name.encode()) <= MAX_NAME_BYTES and path.name.endswith(".gz")


# --- output_path ----------------------------------------------------------------------------

def test_output_path_from_url():
    """Without out= the file goes straight under dest, named from the URL."""
    assert output_path(Job("http://example.test/d/a.csv"), DEST) == DEST / "a.csv"


@pytest.mark.parametrize(
    ("out", "relative"),
    [
        pytest.param("b.bin", "b.bin", id="name"),
        pytest.param("raw/b.bin", "raw/b.bin", id="subdirectory"),
        pytest.param("./b.bin", "b.bin", id="leading-dot"),
        pytest.param("raw//b.bin", "raw/b.bin", id="double-slash"),
        pytest.param("raw/./b.bin", "raw/b.bin", id="inner-dot"),
        pytest.param("..b.bin", "..b.bin", id="dots-in-name"),
        pytest.param("a..b/c", "a..b/c", id="dots-in-directory"),
        pytest.param("donn\u00e9es/\u00e9.txt", "donn\u00e9es/\u00e9.txt", id="unicode"),
    ],
)
def test_output_path_with_out(out, relative):
    """A safe out= is joined under dest."""
    assert output_path(Job("http://example.test/x", out=out), DEST) == DEST / relative


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        pytest.param("/etc/passwd", "absolute", id="absolute"),
        pytest.param("//server/share", "absolute", id="double-slash-absolute"),
        pytest.param("../b.bin", "'..'", id="parent"),
        pytest.param("raw/../../b.bin", "'..'", id="climbs-out"),
        pytest.param("raw/..", "'..'", id="ends-with-parent"),
        pytest.param("..", "'..'", id="dot-dot"),
        pytest.param("raw\\b.bin", "backslash", id="backslash"),
        pytest.param("..\\b.bin", "backslash", id="backslash-parent"),
        pytest.param("a\x00b", "control", id="nul"),
        pytest.param("a\nb", "control", id="newline"),
        pytest.param("a\tb", "control", id="tab"),
        pytest.param("a\x1bb", "control", id="escape"),
        pytest.param("a\x7fb", "control", id="del"),
        pytest.param("a\x85b", "control", id="c1-next-line"),
        pytest.param("a\x9b2Jb", "control", id="c1-csi"),
        pytest.param("raw/", "directory", id="trailing-slash"),
        pytest.param(".", "directory", id="dot"),
        pytest.param("./", "directory", id="dot-slash"),
        pytest.param("raw/./", "directory", id="dot-slash-in-directory"),
        pytest.param("raw/.", "directory", id="trailing-dot-component"),
        pytest.param("", "directory", id="empty"),
    ],
)
def test_output_path_rejects_unsafe_out(out, fragment):
    """An out= that is absolute, climbs out, holds a backslash or control character, or names a directory raises InvalidJob."""
    with pytest.raises(InvalidJob) as info:
        output_path(Job("http://example.test/x", out=out), DEST)
    assert fragment in str(info.value)
    assert info.value.url == "http://example.test/x"


def test_output_path_error_names_origin():
    """The InvalidJob for a bad out= starts with the job's origin."""
    with pytest.raises(InvalidJob) as info:
        output_path(Job("http://example.test/x", out="/abs", origin="urls.txt:9"), DEST)
    assert str(info.value).startswith("urls.txt:9: ")


@pytest.mark.parametrize("url", ["http://example.test/a%1Bb", "http://example.test/a%C2%85b", "http://example.test/a%C2%9Bb"],
                         ids=["escape", "c1-next-line", "c1-csi"])
def test_name_from_url_replaces_control_characters(url):
    """No control character, C0 or C1, survives into a file name."""
    assert name_from_url(url) == "a_b"


# --- helpers for the hostile tables -----------------------------------------------------------

def assert_inside(dest: Path, path: Path) -> None:
    """Fail unless ``path`` resolves strictly below the resolved ``dest``."""
    assert dest.resolve() in path.resolve().parents, f"{path} escapes {dest}"


def sha(text: str, length: int) -> str:
    """The first ``length`` hex digits of sha256(text), as the naming rules use them."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def assert_safe(name: str) -> None:
    """Fail unless ``name`` obeys every safe_name rule (one segment, portable, short)."""
    assert name not in ("", ".", "..")
    assert not any(c in "/\\\x00" for c in name)
    assert name == name.strip() and not name.endswith(".")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert safe_name(name) == name


# --- hostile URL names (flat) ------------------------------------------------------------------

LONG = "n" * 400


@pytest.mark.parametrize(
    ("path", "name"),
    [
        pytest.param("/%2e%2e%2f%2e%2e%2fetc", ".._.._etc", id="encoded-dot-dot-slash"),
        pytest.param("/..%2F..%2Fetc%2Fpasswd", ".._.._etc_passwd", id="encoded-traversal"),
        pytest.param("/..%5C..%5Cwin.ini", ".._.._win.ini", id="encoded-backslash-traversal"),
        pytest.param("/%00", "_", id="only-nul"),
        pytest.param("/a.txt%00.jpg", "a.txt_.jpg", id="nul-truncation"),
        pytest.param("/%01%1F%7F%C2%80", "____", id="controls"),
        pytest.param("/a%0D%0Ab", "a__b", id="crlf"),
        pytest.param("/con", "_con", id="reserved-con"),
        pytest.param("/CON.txt", "_CON.txt", id="reserved-with-extension"),
        pytest.param("/nul.tar.gz", "_nul.tar.gz", id="reserved-with-two-extensions"),
        pytest.param("/Com1", "_Com1", id="reserved-com1-mixed-case"),
        pytest.param("/LPT9.log", "_LPT9.log", id="reserved-lpt9"),
        pytest.param("/com%C2%B9.txt", "_com\u00b9.txt", id="reserved-superscript"),
        pytest.param("/aux%20.txt", "_aux .txt", id="reserved-space-before-dot"),
        pytest.param("/prn.", "_prn", id="reserved-trailing-dot"),
        pytest.param("/console.log", "console.log", id="not-reserved-prefix"),
        pytest.param("/com10", "com10", id="not-reserved-com10"),
        pytest.param("/C:", "C_", id="drive"),
        pytest.param("/c%3Aevil.txt", "c_evil.txt", id="drive-relative"),
        pytest.param("/C%3A%5CWindows%5Cwin.ini", "C__Windows_win.ini", id="drive-absolute"),
        pytest.param("/ab:c", "ab:c", id="colon-not-drive"),
        pytest.param("/a.txt.", "a.txt", id="trailing-dot"),
        pytest.param("/a.txt%20.%20.", "a.txt", id="trailing-dots-and-spaces"),
        pytest.param("/.hidden", ".hidden", id="leading-dot-kept"),
        pytest.param("/%E2%82%AC%20rates.txt", "\u20ac rates.txt", id="unicode"),
        pytest.param("/%E3%80%80x%E3%80%80", "x", id="unicode-white-space"),
        pytest.param("/a\udcffb", "a\ufffdb", id="lone-surrogate"),
        pytest.param("/" + "a" * (MAX_NAME_BYTES - 4) + ".bin", "a" * (MAX_NAME_BYTES - 4) + ".bin", id="at-limit"),
    ],
)
def test_hostile_url_names(tmp_path, path, name):
    """A hostile last URL segment becomes the exact safe name under dest."""
    result = output_path(Job("http://example.test" + path), tmp_path)

    assert name == result.name
    assert result.parent == tmp_path
    assert_safe(result.name)
    assert_inside(tmp_path, result)


@pytest.mark.parametrize(
    ("path", "end"),
    [
        pytest.param("/" + LONG + ".tar", ".tar", id="long-with-extension"),
        pytest.param("/" + LONG, "", id="long-without-extension"),
        pytest.param("/" + "\u20ac" * 200 + ".txt", ".txt", id="long-multibyte"),
        pytest.param("/" + LONG + "." + "x" * 30, "", id="long-extension-dropped"),
        pytest.param("/con." + LONG + ".bin", ".bin", id="long-reserved"),
        pytest.param("/" + "%2e%2e%2f" * 120, "._", id="long-encoded-traversal"),
    ],
)
def test_hostile_long_url_names(tmp_path, path, end):
    """A name over MAX_NAME_BYTES is shortened with a hash tag, keeping a short extension."""
    result = output_path(Job("http://example.test" + path), tmp_path)

    assert re.search(r"-[0-9a-f]{8}" + re.escape(end) + r"\Z", result.name)
    assert result.parent == tmp_path
    assert_safe(result.name)
    assert_inside(tmp_path, result)


# --- mirror layout -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "relative"),
    [
        pytest.param("http://Example.TEST/a/b.txt", "example.test/a/b.txt", id="host-lower-cased"),
        pytest.param("http://example.test:80/x", "example.test/x", id="http-default-port"),
        pytest.param("https://example.test:443/x", "example.test/x", id="https-default-port"),
        pytest.param("http://example.test:443/x", "example.test:443/x", id="http-on-443"),
        pytest.param("https://example.test:80/x", "example.test:80/x", id="https-on-80"),
        pytest.param("http://example.test:8080/x", "example.test:8080/x", id="port"),
        pytest.param("http://example.test:/x", "example.test/x", id="empty-port"),
        pytest.param("http://[::1]:8080/x", "[::1]:8080/x", id="ipv6-port"),
        pytest.param("http://[::1]/x", "[::1]/x", id="ipv6"),
        pytest.param("http://[::1]:80/x", "[::1]/x", id="ipv6-default-port"),
        pytest.param("http://[FE80::1%25eth0]:81/x", "[fe80::1%25eth0]:81/x", id="ipv6-zone"),
        pytest.param("http://192.0.2.1:8443/x", "192.0.2.1:8443/x", id="ipv4-port"),
        pytest.param("http://user:secret@example.test/x", "example.test/x", id="user-info-dropped"),
        pytest.param("http://example.test/a/b.txt?q=/../../y#/../z", "example.test/a/b.txt", id="query-fragment-ignored"),
        pytest.param("http://example.test/a/../b", "example.test/a/_/b", id="dot-dot"),
        pytest.param("http://example.test/a/%2e%2e/%2E%2E/b", "example.test/a/_/_/b", id="encoded-dot-dot"),
        pytest.param("http://example.test/../../etc/passwd", "example.test/_/_/etc/passwd", id="leading-dot-dots"),
        pytest.param("http://example.test/..%2F..%2Fetc/passwd", "example.test/.._.._etc/passwd", id="encoded-slash-traversal"),
        pytest.param("http://example.test/./a/./b", "example.test/a/b", id="dot-dropped"),
        pytest.param("http://example.test/%2e/a", "example.test/a", id="encoded-dot-dropped"),
        pytest.param("http://example.test/a//b", "example.test/a/b", id="empty-segment-dropped"),
        pytest.param("http://example.test/a%2Fb/c%2fd", "example.test/a_b/c_d", id="encoded-slash-no-directory"),
        pytest.param("http://example.test/a%5Cb/c", "example.test/a_b/c", id="encoded-backslash"),
        pytest.param("http://example.test/.../x", "example.test/_/x", id="three-dots-directory"),
        pytest.param("http://example.test/dir%20./x", "example.test/dir/x", id="trailing-dot-directory"),
        pytest.param("http://example.test/a%00b/c", "example.test/a_b/c", id="nul-directory"),
        pytest.param("http://example.test/con/aux.txt", "example.test/_con/_aux.txt", id="reserved"),
        pytest.param("http://example.test/C:/x", "example.test/C_/x", id="drive-directory"),
        pytest.param("http://example.test/caf%C3%A9/x", "example.test/caf\u00e9/x", id="unicode-directory"),
        pytest.param("http://../x", "_/x", id="host-dot-dot"),
        pytest.param("http://a\\b/x", "a_b/x", id="host-backslash"),
        pytest.param("http://c:8080/x", "c_8080/x", id="one-letter-host-reads-as-drive"),
        pytest.param("http://example.test./x", "example.test/x", id="host-trailing-dot"),
    ],
)
def test_mirror_layout(tmp_path, url, relative):
    """The mirror layout gives dest/host[:port]/dirs/name with every segment safe."""
    result = output_path(Job(url), tmp_path, layout="mirror")

    assert tmp_path / relative == result
    assert all(part == safe_name(part) for part in result.relative_to(tmp_path).parts)
    assert_inside(tmp_path, result)


@pytest.mark.parametrize(
    ("url", "directory"),
    [
        pytest.param("http://example.test/", "example.test", id="root"),
        pytest.param("http://example.test", "example.test", id="no-path"),
        pytest.param("http://example.test/a/b/", "example.test/a/b", id="trailing-slash"),
        pytest.param("http://example.test/a/..", "example.test/a", id="ends-with-dot-dot"),
        pytest.param("http://example.test:8080/?q=1", "example.test:8080", id="port-query-only"),
    ],
)
def test_mirror_directory_urls_end_in_index(tmp_path, url, directory):
    """A mirror URL without a file name ends in index-<10 hex of sha256(url)>.html."""
    result = output_path(Job(url), tmp_path, layout="mirror")

    assert tmp_path / directory / f"index-{sha(url, 10)}.html" == result
    assert_inside(tmp_path, result)


def test_mirror_long_directory_is_shortened(tmp_path):
    """A directory segment over MAX_NAME_BYTES is shortened like a file name."""
    result = output_path(Job("http://example.test/" + "d" * 400 + "/x"), tmp_path, layout="mirror")

    directory = result.parent.name
    assert len(directory.encode()) <= MAX_NAME_BYTES and directory.startswith("d" * 100)
    assert_inside(tmp_path, result)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param("http:///x", "no host", id="no-host"),
        pytest.param("http://example.test:99999/x", "invalid port", id="port-out-of-range"),
        pytest.param("http://example.test:abc/x", "invalid port", id="port-not-a-number"),
        pytest.param("http://[::1/x", "not valid", id="broken-ipv6"),
    ],
)
def test_mirror_rejects_unmappable_url(url, fragment):
    """A URL the mirror layout cannot map raises InvalidJob naming the problem after the origin."""
    with pytest.raises(InvalidJob) as info:
        output_path(Job(url, origin="urls.txt:3"), DEST, layout="mirror")

    assert str(info.value).startswith("urls.txt:3: ")
    assert fragment in str(info.value)
    assert info.value.url == url


@pytest.mark.parametrize("layout", ["flat", "mirror"])
def test_out_wins_over_layout(tmp_path, layout):
    """out= from the list is used as given in both layouts."""
    result = output_path(Job("http://example.test:8080/a/b.txt", out="raw/c.bin"), tmp_path, layout=layout)

    assert tmp_path / "raw" / "c.bin" == result
    assert_inside(tmp_path, result)


@pytest.mark.parametrize("out", ["C:/x", "c:x", "sub/d:y/z"], ids=["drive-absolute", "drive-relative", "drive-inner"])
@pytest.mark.parametrize("layout", ["flat", "mirror"])
def test_out_rejects_drive_letter(out, layout):
    """An out= component in drive-letter form is refused (it is drive-relative on Windows)."""
    with pytest.raises(InvalidJob, match="drive"):
        output_path(Job("http://example.test/x", out=out), DEST, layout=layout)


def test_unknown_layout_is_a_programming_error():
    """A layout other than flat or mirror raises ValueError, not InvalidJob."""
    with pytest.raises(ValueError, match="layout") as info:
        output_path(Job("http://example.test/x"), DEST, layout="tree")  # type: ignore[arg-type]

    assert not isinstance(info.value, InvalidJob)


# --- safe_name ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "safe"),
    [
        pytest.param("", "_", id="empty"),
        pytest.param(".", "_", id="dot"),
        pytest.param("..", "_", id="dot-dot"),
        pytest.param("...", "_", id="three-dots"),
        pytest.param(" \t ", "_", id="only-white-space"),
        pytest.param("a/b", "a_b", id="slash"),
        pytest.param("../../etc/passwd", ".._.._etc_passwd", id="traversal"),
        pytest.param("a\\b", "a_b", id="backslash"),
        pytest.param("\x00", "_", id="nul"),
        pytest.param("a\x00b", "a_b", id="inner-nul"),
        pytest.param("a\x1b[2Jb", "a_[2Jb", id="escape"),
        pytest.param("a\x85b", "a_b", id="c1"),
        pytest.param("  a  ", "a", id="surrounding-spaces"),
        pytest.param("a. . ", "a", id="trailing-dots-spaces"),
        pytest.param(".bashrc", ".bashrc", id="dotfile"),
        pytest.param("C:", "C_", id="drive"),
        pytest.param("z:evil", "z_evil", id="drive-relative"),
        pytest.param("ab:c", "ab:c", id="colon-kept"),
        pytest.param("CON", "_CON", id="con"),
        pytest.param("con.txt", "_con.txt", id="con-extension"),
        pytest.param("Com1.tar.gz", "_Com1.tar.gz", id="com1-two-extensions"),
        pytest.param("lpt9", "_lpt9", id="lpt9"),
        pytest.param("NUL ", "_NUL", id="nul-trailing-space"),
        pytest.param("CONIN$", "_CONIN$", id="conin"),
        pytest.param("COM\u00b2", "_COM\u00b2", id="com-superscript"),
        pytest.param("icon.png", "icon.png", id="not-reserved"),
        pytest.param("lpt", "lpt", id="lpt-alone"),
        pytest.param("_CON", "_CON", id="already-safe-reserved"),
        pytest.param("a\udcffb", "a\ufffdb", id="lone-surrogate"),
        pytest.param("\u3000x\u3000", "x", id="ideographic-space"),
        pytest.param("caf\u00e9 \u20ac.txt", "caf\u00e9 \u20ac.txt", id="unicode-kept"),
    ],
)
def test_safe_name(tmp_path, name, safe):
    """safe_name gives the exact portable segment, is idempotent and stays inside dest."""
    result = safe_name(name)

    assert safe == result
    assert_safe(result)
    assert_inside(tmp_path, tmp_path / result)


def test_safe_name_shortens_keeping_extension(tmp_path):
    """A name over MAX_NAME_BYTES is cut to the limit and keeps its short extension."""
    result = safe_name("x" * 300 + ".json")

    assert len(result.encode()) == MAX_NAME_BYTES and result.endswith(".json")
    assert_safe(result)
    assert_inside(tmp_path, tmp_path / result)


# --- Content-Disposition -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "name"),
    [
        pytest.param('attachment; filename="a.txt"', "a.txt", id="quoted"),
        pytest.param("attachment; filename=a.txt", "a.txt", id="token"),
        pytest.param("attachment;filename=a.txt", "a.txt", id="no-space"),
        pytest.param('ATTACHMENT; FileName="a.txt"', "a.txt", id="case"),
        pytest.param("attachment; filename=my file.txt", "my file.txt", id="unquoted-spaces"),
        pytest.param('attachment; filename="a.txt";', "a.txt", id="trailing-semicolon"),
        pytest.param('attachment ; filename = "a.txt" ; ', "a.txt", id="spaces-around"),
        pytest.param('attachment; size=3; foo="x;y"; filename=a.txt', "a.txt", id="unknown-parameters"),
        pytest.param('attachment filename="a.txt"', "a.txt", id="missing-semicolon"),
        pytest.param('filename="a.txt"', "a.txt", id="no-type"),
        pytest.param('attachment; filename="a \\"b\\".txt"', 'a "b".txt', id="escaped-quotes"),
        pytest.param('attachment; filename="a;b.txt"', "a;b.txt", id="semicolon-in-quotes"),
        pytest.param('attachment; filename="a.txt"junk; x=1', "a.txt", id="junk-after-quote"),
        pytest.param('attachment; filename="abc', "abc", id="unterminated-quote"),
        pytest.param("attachment; filename=a.txt; filename=b.txt", "a.txt", id="first-wins"),
        pytest.param("attachment; filename*=UTF-8''%e2%82%ac%20rates", "\u20ac rates", id="rfc8187-utf8"),
        pytest.param("attachment; filename*=iso-8859-1'en'%A3%20rates", "\u00a3 rates", id="rfc8187-latin1"),
        pytest.param("attachment; filename*=UTF-8'de'n%C3%A4chste.txt", "n\u00e4chste.txt", id="rfc8187-language"),
        pytest.param("attachment; filename*=us-ascii''a%20b", "a b", id="rfc8187-ascii"),
        pytest.param("attachment; FILENAME*=utf-8''x.txt", "x.txt", id="rfc8187-case"),
        pytest.param("attachment; filename*=\"UTF-8''q.txt\"", "q.txt", id="rfc8187-quoted-junk"),
        pytest.param("attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates", "\u20ac rates",
                     id="star-wins-after"),
        pytest.param("attachment; filename*=UTF-8''b.txt; filename=a.txt", "b.txt", id="star-wins-before"),
        pytest.param("attachment; filename*=x-bogus''a.txt; filename=b.txt", "b.txt", id="unknown-charset-falls-back"),
        pytest.param("attachment; filename*=rot13''a.txt; filename=b.txt", "b.txt", id="non-text-codec-falls-back"),
        pytest.param("attachment; filename*=UTF-8''%FF; filename=b.txt", "b.txt", id="bad-utf8-falls-back"),
        pytest.param("attachment; filename*=a.txt; filename=b.txt", "b.txt", id="no-delimiters-falls-back"),
        pytest.param("attachment; filename*=UTF-8''; filename=b.txt", "b.txt", id="empty-star-falls-back"),
        pytest.param('attachment; filename="../../x"', "x", id="traversal"),
        pytest.param('attachment; filename="/etc/passwd"', "passwd", id="absolute"),
        pytest.param('attachment; filename="..\\..\\x"', "x", id="backslash-traversal-quoted"),
        pytest.param("attachment; filename=..\\..\\x", "x", id="backslash-traversal-token"),
        pytest.param('attachment; filename="a\\\\b.txt"', "b.txt", id="escaped-backslash-is-separator"),
        pytest.param('attachment; filename="C:\\Users\\me\\x.txt"', "x.txt", id="windows-path"),
        pytest.param("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd", id="encoded-traversal"),
        pytest.param("attachment; filename*=UTF-8''..%5C..%5Cx", "x", id="encoded-backslash"),
        pytest.param('attachment; filename="C:x.txt"', "C_x.txt", id="drive"),
        pytest.param('attachment; filename="con.txt"', "_con.txt", id="reserved"),
        pytest.param('attachment; filename="a\x00b.txt"', "a_b.txt", id="nul"),
        pytest.param("attachment; filename*=UTF-8''a%00b%0A.txt", "a_b_.txt", id="encoded-controls"),
        pytest.param('attachment; filename="a.txt. "', "a.txt", id="trailing-dot"),
        pytest.param("attachment; filename=%41.txt", "%41.txt", id="plain-not-percent-decoded"),
        pytest.param('attachment; filename="caf\u00c3\u00a9.txt"', "caf\u00e9.txt", id="raw-utf8-read-as-latin1"),
        pytest.param('attachment; filename="caf\u00e9.txt"', "caf\u00e9.txt", id="genuine-latin1"),
        pytest.param('attachment; filename="\u20ac.txt"', "\u20ac.txt", id="already-unicode"),
        pytest.param("attachment; filename=a\udcff.txt", "a\ufffd.txt", id="surrogate-escaped"),
    ],
)
def test_name_from_disposition(tmp_path, value, name):
    """The header's file name is decoded, reduced to its base name and made safe."""
    result = name_from_disposition(value)

    assert name == result
    assert_safe(result)
    assert_inside(tmp_path, tmp_path / result)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty-header"),
        pytest.param("attachment", id="no-parameters"),
        pytest.param("inline; foo=bar", id="no-file-name"),
        pytest.param('attachment; filename=""', id="empty-name"),
        pytest.param("attachment; filename=", id="empty-token"),
        pytest.param("attachment; filename", id="no-value"),
        pytest.param('attachment; filename="."', id="dot"),
        pytest.param('attachment; filename=".."', id="dot-dot"),
        pytest.param('attachment; filename="..."', id="three-dots"),
        pytest.param('attachment; filename="   "', id="spaces"),
        pytest.param('attachment; filename="dir/"', id="directory"),
        pytest.param('attachment; filename="../"', id="parent-directory"),
        pytest.param("attachment; filename*=UTF-8''%2e%2e", id="encoded-dot-dot"),
        pytest.param("attachment; filename*=x-bogus''a.txt", id="unknown-charset-alone"),
        pytest.param("attachment; filename*0=\"a\"; filename*1=\"b\"", id="rfc2231-continuation"),
        pytest.param(";;;===;\"", id="junk"),
        pytest.param("attachment; filename*=UTF-8''\udcff", id="surrogate-in-star"),
        pytest.param("attachment; filename*=utf\x00''a.txt", id="nul-in-charset"),
    ],
)
def test_name_from_disposition_unusable_is_none(value):
    """An absent, empty or unusable Content-Disposition gives None."""
    assert name_from_disposition(value) is None


def test_name_from_disposition_long_name_is_shortened(tmp_path):
    """A long header file name is shortened to MAX_NAME_BYTES, keeping its extension."""
    result = name_from_disposition('attachment; filename="' + "r" * 400 + '.pdf"')

    assert result is not None and len(result.encode()) == MAX_NAME_BYTES and result.endswith(".pdf")
    assert_inside(tmp_path, tmp_path / result)


def test_name_from_disposition_never_raises_on_junk(tmp_path):
    """Random junk built from the header's special characters never raises and never gives an unsafe name."""
    alphabet = ['"', "'", "\\", ";", "=", "/", ".", " ", "%", "%2F", "%2e", "*", "\x00", "\udcff", "\u00e9",
                "filename", "filename*", "UTF-8", "a", "C:", "con"]
    rng = random.Random(6266)
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14)))
        result = name_from_disposition(value)
        if result is not None:
            assert_safe(result)
            assert_inside(tmp_path, tmp_path / result)


# --- collision_path ----------------------------------------------------------------------------

URL = "http://example.test/a"


@pytest.mark.parametrize(
    ("name", "alternative"),
    [
        pytest.param("a.csv", f"a~{sha(URL, 8)}.csv", id="extension"),
        pytest.param("a.tar.gz", f"a.tar~{sha(URL, 8)}.gz", id="last-extension"),
        pytest.param("noext", f"noext~{sha(URL, 8)}", id="no-extension"),
        pytest.param(".bashrc", f".bashrc~{sha(URL, 8)}", id="dotfile"),
        pytest.param("index-0123456789.html", f"index-0123456789~{sha(URL, 8)}.html", id="index"),
        pytest.param("a." + "e" * 20, f"a.{'e' * 20}~{sha(URL, 8)}", id="long-extension-not-kept"),
    ],
)
def test_collision_path(tmp_path, name, alternative):
    """The alternative name is stem~<8 hex of sha256(url)>.ext in the same directory."""
    result = collision_path(tmp_path / "sub" / name, URL)

    assert tmp_path / "sub" / alternative == result
    assert_safe(result.name)
    assert_inside(tmp_path, result)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a" * (MAX_NAME_BYTES - 4) + ".bin", id="ascii-at-limit"),
        pytest.param("\u20ac" * 80 + ".bin", id="multibyte-at-limit"),
    ],
)
def test_collision_path_stays_within_limit(tmp_path, name):
    """A tagged name is cut on a character boundary to fit MAX_NAME_BYTES and keeps its extension."""
    result = collision_path(tmp_path / name, URL)

    assert len(result.name.encode()) <= MAX_NAME_BYTES
    assert result.name.endswith(f"~{sha(URL, 8)}.bin")
    assert result.name.encode().decode() == result.name
    assert_inside(tmp_path, result)


def test_collision_path_is_deterministic():
    """Same path and URL give the same alternative; another URL gives another one."""
    first = collision_path(DEST / "a.csv", URL)

    assert first == collision_path(DEST / "a.csv", URL)
    assert first != collision_path(DEST / "a.csv", URL + "?v=2")
    assert first != DEST / "a.csv"


# --- check_inside ------------------------------------------------------------------------------

def plant(root: Path, layout: dict[str, str | None]) -> None:
    """Create ``root/dest`` and ``root/outside/file``, then each entry: a symlink to a target, or a directory (None)."""
    (root / "dest").mkdir()
    (root / "outside").mkdir()
    (root / "outside" / "file").write_text("secret")
    for name, target in layout.items():
        entry = root / "dest" / name
        entry.parent.mkdir(parents=True, exist_ok=True)
        if target is None:
            entry.mkdir()
        else:
            entry.symlink_to(target)


@pytest.mark.parametrize(
    ("layout", "relative", "named"),
    [
        pytest.param({"link": "../outside"}, "link/x.txt", "link", id="directory-link-outside"),
        pytest.param({"link": "/"}, "link/etc/x", "link", id="directory-link-to-root"),
        pytest.param({"a/link": "../../outside"}, "a/link/b/x.txt", "a/link", id="nested-link-outside"),
        pytest.param({"gone": "../nowhere"}, "gone/x.txt", "gone", id="dangling-directory-link"),
        pytest.param({"loop": "loop"}, "loop/x.txt", "loop", id="looping-link"),
        pytest.param({"b": "../outside", "a": "b"}, "a/x.txt", "a", id="chain-inside-to-outside"),
        pytest.param({"x.txt": "../outside/file"}, "x.txt", "x.txt", id="file-link-outside"),
        pytest.param({"real.txt": None, "x.txt": "real.txt"}, "x.txt", "x.txt", id="file-link-inside"),
        pytest.param({"x.txt": "missing"}, "x.txt", "x.txt", id="dangling-file-link"),
        pytest.param({"x.txt.part": "../outside/file"}, "x.txt", "x.txt.part", id="part-link"),
        pytest.param({"x.txt.part.state": "../outside/file"}, "x.txt", "x.txt.part.state", id="state-link"),
        pytest.param({"sub": None, "sub/x.txt": "../../outside/file"}, "sub/x.txt", "sub/x.txt", id="file-link-in-subdir"),
    ],
)
def test_check_inside_refuses_symlinks(tmp_path, layout, relative, named):
    """A symlink leading out of dest (or nowhere) on the way, or any symlink at the file, is refused, naming it."""
    plant(tmp_path, layout)
    dest = tmp_path / "dest"

    with pytest.raises(InvalidJob) as info:
        check_inside(dest, dest / relative)

    assert str(dest / named) in str(info.value)
    assert (tmp_path / "outside" / "file").read_text() == "secret"


@pytest.mark.parametrize(
    ("layout", "relative"),
    [
        pytest.param({}, "x.txt", id="plain"),
        pytest.param({}, "a/b/c/x.txt", id="nothing-exists-yet"),
        pytest.param({"a": None, "a/b": None}, "a/b/x.txt", id="real-directories"),
        pytest.param({"real": None, "alias": "real"}, "alias/x.txt", id="link-inside"),
        pytest.param({"real/deep": None, "alias": "real/deep"}, "alias/x.txt", id="link-deeper-inside"),
        pytest.param({"self": "."}, "self/x.txt", id="link-to-dest"),
        pytest.param({"real": None, "up/alias": "../real"}, "up/alias/x.txt", id="relative-link-inside"),
        pytest.param({"file.txt": None}, "file.txt/x", id="missing-below-a-directory"),
    ],
)
def test_check_inside_accepts(tmp_path, layout, relative):
    """Plain paths and symlinks that stay inside dest pass, and the path resolves inside dest."""
    plant(tmp_path, layout)
    dest = tmp_path / "dest"

    check_inside(dest, dest / relative)

    assert_inside(dest, dest / relative)


def test_check_inside_under_a_regular_file_is_left_to_the_writer(tmp_path):
    """A path below a regular file is not refused here: the writer reports it with its path."""
    plant(tmp_path, {})
    dest = tmp_path / "dest"
    (dest / "file").write_text("x")

    check_inside(dest, dest / "file" / "x.txt")


def test_check_inside_dest_itself_a_symlink(tmp_path):
    """A destination that is itself a symlink is trusted; links inside it are judged against its real path."""
    plant(tmp_path, {"real": None, "alias": "real"})
    link_dest = tmp_path / "dest-link"
    link_dest.symlink_to(tmp_path / "dest")

    check_inside(link_dest, link_dest / "alias" / "x.txt")

    assert_inside(link_dest, link_dest / "alias" / "x.txt")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        pytest.param("/elsewhere/x.txt", "not under", id="elsewhere"),
        pytest.param("", "does not name a file", id="dest-itself"),
        pytest.param("a/../../x.txt", "does not name a file", id="dot-dot"),
    ],
)
def test_check_inside_refuses_paths_not_below_dest(tmp_path, path, fragment):
    """A path that is not lexically below dest is refused."""
    with pytest.raises(InvalidJob, match=fragment):
        check_inside(tmp_path, tmp_path / path)


def test_check_inside_error_names_job_and_origin(tmp_path):
    """With a job, the refusal carries its URL and starts with its origin."""
    plant(tmp_path, {"link": "../outside"})
    job = Job("http://example.test/link/x", origin="urls.txt:7")

    with pytest.raises(InvalidJob) as info:
        check_inside(tmp_path / "dest", tmp_path / "dest" / "link" / "x", job=job)

    assert str(info.value).startswith("urls.txt:7: ")
    assert info.value.url == job.url


def test_check_inside_is_cheap(tmp_path, monkeypatch):
    """Without symlinks, only the components below dest and the file's three names are lstat-ed; nothing is resolved."""
    plant(tmp_path, {"a/b": None})
    dest = tmp_path / "dest"
    seen: list[str] = []
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: seen.append(str(p)) or real_lstat(p, *a, **k))
    monkeypatch.setattr(os.path, "realpath", lambda *a, **k: pytest.fail("realpath called"))

    check_inside(dest, dest / "a" / "b" / "x")

    assert [str(dest / "a"), str(dest / "a/b"), str(dest / "a/b/x"),
            str(dest / "a/b/x.part"), str(dest / "a/b/x.part.state")] == seen


def test_mirror_path_through_planted_link_is_refused(tmp_path):
    """A mirror path whose host directory was replaced by a link to outside is refused end to end."""
    plant(tmp_path, {"example.test:8080": "../outside"})
    dest = tmp_path / "dest"
    path = output_path(Job("http://example.test:8080/x"), dest, layout="mirror")

    with pytest.raises(InvalidJob, match="outside the destination"):
        check_inside(dest, path)
