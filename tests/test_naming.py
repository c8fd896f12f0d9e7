"""Unit tests for downloader.naming: final paths under the destination, never outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from downloader.errors import InvalidJob
from downloader.jobs import Job
from downloader.naming import MAX_NAME_BYTES, PART_SUFFIX, STATE_SUFFIX, name_from_url, output_path

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
        pytest.param("http://example.test/...", "...", id="three-dots-is-a-name"),
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
