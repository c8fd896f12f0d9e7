"""Unit tests for downloader.sources: URL lists read lazily into Jobs and InvalidJobs."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from downloader.errors import InvalidJob
from downloader.jobs import Job
from downloader.report import list_line
from downloader.sources import parse_line, read_list, read_urls, validate_url

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA1_EMPTY = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
NAME = "urls.txt"


def entries(text: bytes, name: str = NAME) -> list[Job | InvalidJob]:
    """Every entry of a list file given as bytes."""
    return list(read_list(io.BytesIO(text), name))


# --- validate_url ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    [
        "http://example.test/a",
        "https://example.test/a",
        "HTTPS://example.test/a",
        "http://example.test:8080/a",
        "http://127.0.0.1/a",
        "http://[::1]:8765/a",
        "http://example.test",
        "http://user:pw@example.test/a?q=1#frag",
    ],
)
def test_validate_url_accepts(url):
    """A well-formed http or https URL has no problem."""
    assert validate_url(url) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param("ftp://example.test/a", "unsupported scheme 'ftp'", id="ftp"),
        pytest.param("file:///etc/passwd", "unsupported scheme 'file'", id="file"),
        pytest.param("example.test/a", "unsupported scheme 'none'", id="no-scheme"),
        pytest.param("http://example.test:99999/a", "not a valid URL", id="port-out-of-range"),
        pytest.param("http://example.test:port/a", "not a valid URL", id="port-not-numeric"),
        pytest.param("http://[::1/a", "not a valid URL", id="broken-ipv6"),
        pytest.param("http:///a", "no host", id="no-host"),
        pytest.param("http://exa mple.test/a", "white space", id="space"),
        pytest.param("http://example.test/\x00", "control", id="nul"),
        pytest.param("http://example.test/\x7f", "control", id="del"),
    ],
)
def test_validate_url_rejects(url, fragment):
    """An unusable URL is described in words."""
    problem = validate_url(url)
    assert problem is not None and fragment in problem


# --- parse_line -------------------------------------------------------------------------

@pytest.mark.parametrize("line", ["", "   ", "\t\n", "# a comment", "   # indented comment", "#http://example.test/a"])
def test_parse_line_ignores_blank_and_comment_lines(line):
    """Blank and comment lines give no entry."""
    assert parse_line(line, f"{NAME}:1") is None


def test_parse_line_plain_url():
    """A line with only a URL becomes a Job with its origin."""
    assert parse_line("  https://example.test/a.csv  \n", f"{NAME}:4") == Job("https://example.test/a.csv", origin=f"{NAME}:4")


def test_parse_line_all_fields():
    """out=, sha256= and size= are parsed into the Job, in any order and with any spacing."""
    job = parse_line(f"http://example.test/b.bin\tsize=1048576   out=raw/b.bin sha256={SHA}", f"{NAME}:2")
    assert job == Job("http://example.test/b.bin", out="raw/b.bin", checksum="sha256:" + SHA, size=1048576, origin=f"{NAME}:2")


@pytest.mark.parametrize(("field", "expected"), [
    ("md5=" + "A" * 32, "md5:" + "a" * 32),
    ("sha1=" + "b" * 40, "sha1:" + "b" * 40),
    ("sha512=" + "c" * 128, "sha512:" + "c" * 128),
    ("blake2b=" + "d" * 128, "blake2b:" + "d" * 128),
    ("checksum=SHA256:" + "E" * 64, "sha256:" + "e" * 64),
    ("checksum=md5:" + "f" * 32, "md5:" + "f" * 32),
])
def test_parse_line_reads_each_checksum_form_as_alg_hex(field, expected):
    job = parse_line(f"http://example.test/a {field}", f"{NAME}:1")
    assert isinstance(job, Job) and job.checksum == expected


def test_parse_line_lowercases_sha256():
    """An upper-case sha256 is stored lower-case."""
    job = parse_line(f"http://example.test/a sha256={SHA.upper()}", f"{NAME}:1")
    assert isinstance(job, Job) and job.checksum == "sha256:" + SHA


def test_parse_line_size_zero():
    """size=0 is a valid size."""
    job = parse_line("http://example.test/a size=0", f"{NAME}:1")
    assert isinstance(job, Job) and job.size == 0


def test_parse_line_value_may_contain_equals():
    """Only the first '=' separates key and value."""
    job = parse_line("http://example.test/a out=x=y.bin", f"{NAME}:1")
    assert isinstance(job, Job) and job.out == "x=y.bin"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        pytest.param("http://example.test/a colour=red", "unknown key 'colour'", id="unknown-key"),
        pytest.param("http://example.test/a =x", "unknown key ''", id="empty-key"),
        pytest.param("http://example.test/a OUT=x", "unknown key 'OUT'", id="key-case"),
        pytest.param("http://example.test/a size=1 size=2", "key 'size' given twice", id="size-twice"),
        pytest.param("http://example.test/a out=x out=x", "key 'out' given twice", id="out-twice"),
        pytest.param("http://example.test/a sha256=abc", "sha256 must be 64 hex digits", id="sha256-short"),
        pytest.param(f"http://example.test/a sha256={SHA}0", "sha256 must be 64 hex digits", id="sha256-long"),
        pytest.param("http://example.test/a sha256=" + "g" * 64, "sha256 must be 64 hex digits", id="sha256-not-hex"),
        pytest.param("http://example.test/a sha256=", "sha256 must be 64 hex digits", id="sha256-empty"),
        pytest.param(f"http://example.test/a md5={SHA}", "md5 must be 32 hex digits", id="md5-too-long"),
        pytest.param("http://example.test/a sha512=" + "a" * 64, "sha512 must be 128 hex digits", id="sha512-short"),
        pytest.param("http://example.test/a checksum=" + "a" * 32, "checksum must be ALG:HEX", id="checksum-no-alg"),
        pytest.param("http://example.test/a checksum=crc32:abcd", "unknown checksum algorithm 'crc32'", id="checksum-crc"),
        pytest.param("http://example.test/a checksum=md5:xyz", "md5 must be 32 hex digits", id="checksum-bad-hex"),
        pytest.param(f"http://example.test/a sha256={SHA} md5=" + "a" * 32, "one checksum per line", id="two-sums"),
        pytest.param(f"http://example.test/a checksum=sha256:{SHA} sha256={SHA}", "one checksum per line",
                     id="checksum-and-sha256"),
        pytest.param("http://example.test/a MD5=" + "a" * 32, "unknown key 'MD5'", id="algorithm-case"),
        pytest.param("http://example.test/a size=-1", "size must be a whole number", id="size-negative"),
        pytest.param("http://example.test/a size=1.5", "size must be a whole number", id="size-fraction"),
        pytest.param("http://example.test/a size=1e6", "size must be a whole number", id="size-exponent"),
        pytest.param("http://example.test/a size=", "size must be a whole number", id="size-empty"),
        pytest.param("http://example.test/a size=+5", "size must be a whole number", id="size-plus"),
        pytest.param("http://example.test/a size=\xb2", "size must be a whole number", id="size-superscript"),
        pytest.param("http://example.test/a size=\u0661\u0662", "size must be a whole number", id="size-arabic-indic"),
        pytest.param("http://example.test/a out=", "out= needs a path", id="out-empty"),
        pytest.param("http://example.test/a raw/b.bin", "expected key=value", id="no-equals"),
        pytest.param("ftp://example.test/a", "unsupported scheme 'ftp'", id="ftp-scheme"),
        pytest.param("example.test/a", "unsupported scheme", id="no-scheme"),
        pytest.param("http://example.test:70000/a", "not a valid URL", id="bad-port"),
        pytest.param("http:///a", "no host", id="no-host"),
    ],
)
def test_parse_line_errors_name_file_and_line(line, fragment):
    """A malformed line becomes an InvalidJob whose message starts with 'name:LINE: ' and says what is wrong."""
    entry = parse_line(line, f"{NAME}:7")
    assert isinstance(entry, InvalidJob)
    assert str(entry).startswith(f"{NAME}:7: ")
    assert fragment in str(entry)
    assert entry.origin == f"{NAME}:7"


def test_parse_line_error_url_is_the_lines_url():
    """The InvalidJob of a bad field names the line's URL."""
    entry = parse_line("http://example.test/a bogus=1", f"{NAME}:1")
    assert isinstance(entry, InvalidJob) and entry.url == "http://example.test/a"


# --- read_list --------------------------------------------------------------------------

def test_read_list_numbers_lines_counting_blanks_and_comments():
    """Origins count every physical line, including blank and comment lines."""
    text = b"# header\n\nhttp://example.test/a\n   \nhttp://example.test/b\n"
    assert [e.origin for e in entries(text)] == [f"{NAME}:3", f"{NAME}:5"]


def test_read_list_yields_jobs_in_order():
    """Each URL line becomes one Job, in file order."""
    text = b"http://example.test/a\nhttp://example.test/b out=x/b.bin\n"
    assert entries(text) == [
        Job("http://example.test/a", origin=f"{NAME}:1"),
        Job("http://example.test/b", out="x/b.bin", origin=f"{NAME}:2"),
    ]


def test_read_list_last_line_without_newline():
    """A final line without a newline is still read."""
    assert [e.url for e in entries(b"http://example.test/a\nhttp://example.test/b")] == [
        "http://example.test/a", "http://example.test/b"]


def test_read_list_crlf_line_endings():
    """Windows line endings do not leak into URLs or values."""
    text = b"http://example.test/a\r\nhttp://example.test/b size=3\r\n"
    assert entries(text) == [
        Job("http://example.test/a", origin=f"{NAME}:1"),
        Job("http://example.test/b", size=3, origin=f"{NAME}:2"),
    ]


def test_read_list_bad_line_does_not_stop_the_list():
    """A malformed line is yielded as an InvalidJob and the next lines are still read."""
    result = entries(b"http://example.test/a size=x\nhttp://example.test/b\n")
    assert isinstance(result[0], InvalidJob) and str(result[0]).startswith(f"{NAME}:1: ")
    assert result[1] == Job("http://example.test/b", origin=f"{NAME}:2")


def test_read_list_non_ascii_digit_size_does_not_stop_the_list():
    """A size= of digit-like non-ASCII characters is one InvalidJob, and the following lines are still read."""
    result = entries("http://example.test/a size=\xb2\nhttp://example.test/b\n".encode())
    assert isinstance(result[0], InvalidJob) and str(result[0]).startswith(f"{NAME}:1: ")
    assert result[1] == Job("http://example.test/b", origin=f"{NAME}:2")


def test_read_list_error_uses_given_name():
    """The file name in messages is the one passed to read_list."""
    (entry,) = entries(b"\n\nhttp://example.test/a nope\n", name="lists/batch-3.txt")
    assert isinstance(entry, InvalidJob) and str(entry).startswith("lists/batch-3.txt:3: ")


def test_read_list_not_utf8_line_is_invalid_and_named():
    """A line that is not UTF-8 is an InvalidJob naming its file and line, and reading goes on."""
    result = entries(b"http://example.test/a\nhttp://example.test/caf\xe9\nhttp://example.test/c\n")
    bad = result[1]
    assert isinstance(bad, InvalidJob)
    assert str(bad).startswith(f"{NAME}:2: ") and "not UTF-8" in str(bad)
    assert bad.origin == f"{NAME}:2"
    assert result[2] == Job("http://example.test/c", origin=f"{NAME}:3")


def test_read_list_utf8_url_is_kept():
    """Non-ASCII UTF-8 in a line is decoded, not rejected."""
    (job,) = entries("http://example.test/café.txt out=données/é.txt\n".encode())
    assert isinstance(job, Job) and (job.url, job.out) == ("http://example.test/café.txt", "données/é.txt")


def test_read_list_bom_on_first_line_is_ignored():
    """A UTF-8 byte order mark at the start of the file is skipped."""
    assert entries(b"\xef\xbb\xbfhttp://example.test/a\n") == [Job("http://example.test/a", origin=f"{NAME}:1")]


def test_read_list_bom_before_comment_on_first_line():
    """A byte order mark before a first-line comment leaves a comment."""
    assert entries(b"\xef\xbb\xbf# list\nhttp://example.test/a\n") == [Job("http://example.test/a", origin=f"{NAME}:2")]


def test_read_list_bom_on_later_line_is_an_error():
    """A byte order mark is only skipped on line 1."""
    (entry,) = entries(b"# list\n\xef\xbb\xbfhttp://example.test/a\n")
    assert isinstance(entry, InvalidJob) and str(entry).startswith(f"{NAME}:2: ")


def test_read_list_empty_file():
    """An empty file yields nothing."""
    assert entries(b"") == []


class LineStream:
    """A binary stream over an iterator of lines: readline() takes the next one."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines

    def readline(self, limit: int = -1) -> bytes:
        return next(self._lines, b"")


def test_read_list_first_entry_before_rest_is_read():
    """read_list yields the first entry without reading past the first line."""
    def lines() -> Iterator[bytes]:
        yield b"http://example.test/a\n"
        raise AssertionError("read_list read past the first line")

    reader = read_list(LineStream(lines()), NAME)  # type: ignore[arg-type]
    assert next(reader) == Job("http://example.test/a", origin=f"{NAME}:1")


def test_read_list_reads_nothing_until_iterated():
    """Creating the reader reads no line."""
    consumed: list[bytes] = []

    def lines() -> Iterator[bytes]:
        for line in (b"http://example.test/a\n", b"http://example.test/b\n"):
            consumed.append(line)
            yield line

    reader = read_list(LineStream(lines()), NAME)  # type: ignore[arg-type]
    assert consumed == []
    next(reader)
    assert len(consumed) == 1


def test_read_list_reads_a_real_binary_stream_lazily():
    """On a file object, the first entry arrives while most of the file is still unread."""
    stream = io.BytesIO(b"".join(b"http://example.test/%d\n" % i for i in range(100_000)))
    reader = read_list(stream, NAME)
    first = next(reader)
    assert first == Job("http://example.test/0", origin=f"{NAME}:1")
    assert stream.tell() < len(stream.getvalue()) // 10


# --- read_urls ---------------------------------------------------------------------------

def test_read_urls_strings_become_jobs_with_argument_origin():
    """Each string becomes a Job whose origin is its argument number."""
    assert list(read_urls(["http://example.test/a", "https://example.test/b"])) == [
        Job("http://example.test/a", origin="argument 1"),
        Job("https://example.test/b", origin="argument 2"),
    ]


def test_read_urls_bad_string_is_invalid_job_named_by_argument():
    """A bad URL argument becomes an InvalidJob naming its position."""
    result = list(read_urls(["http://example.test/a", "ftp://example.test/b"]))
    assert isinstance(result[1], InvalidJob)
    assert str(result[1]).startswith("argument 2: ") and "ftp" in str(result[1])
    assert result[1].origin == "argument 2"


def test_read_urls_job_checksum_is_lowercased():
    """A Job given directly has its checksum lower-cased and keeps its other fields."""
    (job,) = read_urls([Job("http://example.test/a", out="o.bin", checksum="SHA256:" + SHA.upper(), size=3, origin="api")])
    assert job == Job("http://example.test/a", out="o.bin", checksum="sha256:" + SHA, size=3, origin="api")


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        pytest.param(Job("ftp://example.test/a"), "unsupported scheme", id="scheme"),
        pytest.param(Job("http://example.test/a", checksum="sha256:abc"), "sha256", id="short-sha256"),
        pytest.param(Job("http://example.test/a", checksum="sha256:"), "sha256", id="empty-sha256"),
        pytest.param(Job("http://example.test/a", size=-1), "size", id="negative-size"),
        pytest.param(Job("http://example.test/a", size=True), "size", id="bool-size"),
        pytest.param(Job("http://example.test/a", size="3"), "size", id="string-size"),  # type: ignore[arg-type]
    ],
)
def test_read_urls_invalid_job(job, fragment):
    """A Job with a bad URL, sha256 or size becomes an InvalidJob keeping the job's origin."""
    job = Job(job.url, job.out, job.checksum, job.size, origin="api 1")
    (entry,) = read_urls([job])
    assert isinstance(entry, InvalidJob)
    assert fragment in str(entry)
    assert (entry.url, entry.origin) == (job.url, "api 1")


def test_read_urls_is_lazy():
    """read_urls yields the first entry before looking at the second."""
    def urls() -> Iterator[str]:
        yield "http://example.test/a"
        raise AssertionError("read_urls read ahead")

    assert next(read_urls(urls())) == Job("http://example.test/a", origin="argument 1")


def test_overlong_line_is_an_error_and_the_next_line_still_reads():
    """A line longer than MAX_LINE fails with its line number; the lines after it are read as usual."""
    import io

    from downloader.sources import MAX_LINE

    data = b"http://h/a\n" + b"http://h/" + b"x" * (3 * MAX_LINE) + b"\nhttp://h/c size=1\n"

    entries = list(read_list(io.BytesIO(data), "big.txt"))

    assert ["http://h/a", None, "http://h/c"] == [e.url if isinstance(e, Job) else None for e in entries]
    assert "big.txt:2: line longer than" in str(entries[1])


# --- the list format: values with white space -----------------------------------------------------

@pytest.mark.parametrize("out", ["my file.bin", "dir with space/a b\tc.bin", 'quote" and space.bin', '"leading.bin',
                                 "no-space.bin", "ideographic\u3000space.bin", "back\\slash here"])
def test_a_failed_list_line_gives_back_the_job(out: str) -> None:
    """list_line quotes a value white space would cut (or that starts with a quote); parse_line reads it back."""
    job = Job("http://example.test/a", out=out, checksum="sha1:" + SHA1_EMPTY, size=3, origin="l:1")

    assert job == parse_line(list_line(job), "l:1")


def test_quoted_values_in_list_lines() -> None:
    """out="a b" is one value; an unterminated quote is an error; a quote inside a plain value is kept."""
    assert Job("http://h/a", out="a b.bin", size=2, origin="l:1") == parse_line('http://h/a out="a b.bin" size=2', "l:1")
    assert Job("http://h/a", out='x"y', origin="l:1") == parse_line('http://h/a out=x"y', "l:1")
    bad = parse_line('http://h/a out="a b.bin size=2', "l:1")
    assert isinstance(bad, InvalidJob) and "unterminated quoted value" in str(bad)
