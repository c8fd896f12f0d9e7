"""Read URL lists lazily: each line becomes a :class:`Job` or an :class:`InvalidJob`.

Format (one job per line)::

    # comments and blank lines are ignored
    https://example.org/data/a.csv
    https://example.org/data/b.bin   out=raw/b.bin   sha256=9f86d08...   size=1048576
    https://example.org/data/c.bin   md5=d41d8cd9...
    https://example.org/data/d.bin   checksum=blake2b:786a02f7...

A checksum is ``md5=``, ``sha1=``, ``sha256=``, ``sha512=``, ``blake2b=`` or
``checksum=ALG:HEX``: one per line. A value with white space in it is written in double
quotes, ``out="raw/my file.bin"`` (``\\"`` and ``\\\\`` inside stand for ``"`` and ``\\``): a value
that starts with ``"`` is always read so.

A malformed line is yielded as an :class:`InvalidJob` naming the file and the line
number, so the caller can count it as failed and go on with the next line.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import IO

from downloader import checksums
from downloader.errors import InvalidJob
from downloader.jobs import Job

__all__ = ["MAX_LINE", "Entry", "parse_line", "read_list", "read_urls", "validate_url"]

Entry = Job | InvalidJob
"""What a source yields: a job to run, or the error of a line that cannot be one."""

_DIGITS = re.compile(r"[0-9]+")
MAX_LINE = 64 * 1024
"""Longest list line accepted, in bytes; a longer one is an error, never held in memory."""
_KEYS = ("out", "size", "checksum", *checksums.ALGORITHMS)


# The usual URL, checked by one match instead of urlsplit and its properties (a list of
# ten million lines spends most of its parse time there): http or https, a host of
# letters, digits and ._~- (no user info, no IPv6), an optional port, then printable
# ASCII. Whatever does not match takes the full check, which alone words the problems.
_PLAIN_URL = re.compile(r"(?i:https?)://[A-Za-z0-9._~-]+(?::([0-9]{1,5}))?(?:[/?#][\x21-\x7e]*)?")
_WHITE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# A field after the URL: key="quoted value" (ending at white space or the end), else a plain word.
_FIELD = re.compile(r'([^\s="]+=)"((?:[^"\\]|\\.)*)"(?!\S)|\S+')
_ESCAPED = re.compile(r"\\(.)")


def validate_url(url: str) -> str | None:
    """Why ``url`` cannot be fetched, or None when it is a usable http(s) URL."""
    return None if _is_plain(url) else _url_problem(url)


def _is_plain(url: str) -> bool:
    """Whether ``url`` has the usual form, which :func:`_url_problem` would accept."""
    plain = _PLAIN_URL.fullmatch(url)
    return plain is not None and (plain[1] is None or int(plain[1]) <= 0xFFFF)


def _url_problem(url: str) -> str | None:
    """The full check of :func:`validate_url`, for any URL."""
    if _WHITE_OR_CONTROL.search(url):
        return "URL contains white space or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "none"
        return f"unsupported scheme {scheme!r} (only http and https)"
    if not parts.hostname:
        return "URL has no host"
    return None


def parse_line(text: str, origin: str) -> Entry | None:
    """Parse one list line: a Job, an InvalidJob, or None for a blank or comment line."""
    words = text.split()  # split() drops the white space around the line, as strip() would
    if not words or words[0].startswith("#"):
        return None
    url = words[0]
    problem = validate_url(url)
    if problem:
        return InvalidJob(url, f"{origin}: {problem}", origin)
    if len(words) == 1:
        return Job(url, origin=origin)  # most lines: the URL alone
    if '"' in text:
        try:
            words = _quoted_words(text)
        except ValueError as error:
            return InvalidJob(url, f"{origin}: {error}", origin)
    values: dict[str, str] = {}
    for field in words[1:]:
        key, sep, value = field.partition("=")
        problem = _field_problem(key, sep, value, values)
        if problem:
            return InvalidJob(url, f"{origin}: {problem}", origin)
        if key in checksums.ALGORITHMS:
            key, value = "checksum", checksums.checksum(key, value)
        elif key == "checksum":
            value = value.lower()
        values[key] = value
    return Job(
        url,
        out=values.get("out"),
        checksum=values.get("checksum"),
        size=int(values["size"]) if "size" in values else None,
        origin=origin,
    )


def _quoted_words(text: str) -> list[str]:
    """The words of a line whose values may be quoted: ``out="a b"`` is one word, the value ``a b``.

    Raises:
        ValueError: a value opens a quote that does not close before white space or the end.
    """
    url, rest = text.split(None, 1)
    words = [url]
    for match in _FIELD.finditer(rest):
        if match[1] is not None:
            words.append(match[1] + _ESCAPED.sub(r"\1", match[2]))
        elif match[0].partition("=")[2].startswith('"'):
            raise ValueError(f"unterminated quoted value in {match[0]!r} (write key=\"a b\", with \\\" for a quote)")
        else:
            words.append(match[0])
    return words


def _field_problem(key: str, sep: str, value: str, seen: dict[str, str]) -> str | None:
    if not sep:
        return f"expected key=value after the URL, got {key!r}"
    if key not in _KEYS:
        return f"unknown key {key!r} (known: {', '.join(_KEYS)})"
    if (key == "checksum" or key in checksums.ALGORITHMS) and "checksum" in seen:
        return f"one checksum per line, got a second one ({key}=)"
    if key in seen:
        return f"key {key!r} given twice"
    if key in checksums.ALGORITHMS:
        return checksums.checksum_problem(key, value)
    if key == "checksum":
        return _checksum_problem(value)
    if key == "size" and not _DIGITS.fullmatch(value):
        return f"size must be a whole number of bytes, got {value!r}"
    if key == "out" and not value:
        return "out= needs a path"
    return None


def _checksum_problem(value: str) -> str | None:
    try:
        checksums.parse(value)
    except ValueError as error:
        return str(error)
    return None


def _job_problem(job: Job) -> str | None:
    problem = validate_url(job.url)
    if problem is None and job.checksum is not None:
        problem = _checksum_problem(job.checksum)
    if problem is None and job.size is not None and (type(job.size) is not int or job.size < 0):
        problem = f"size must be a whole number of bytes, got {job.size!r}"
    return problem


def read_list(stream: IO[bytes], name: str) -> Iterator[Entry]:
    """Yield the entries of a list file, one line at a time (never the whole file).

    A line longer than MAX_LINE bytes is reported and skipped without being held in memory.
    """
    # One loop, no helper generator per line: this runs ten million times for a long list.
    number = 0
    while raw := stream.readline(MAX_LINE + 1):
        number += 1
        origin = f"{name}:{number}"
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            _skip_rest_of_line(stream)
            yield InvalidJob(f"<line {number}>", f"{origin}: line longer than {MAX_LINE} bytes", origin)
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not raw.lstrip().startswith(b"#"):  # a comment is ignored, whatever its encoding
                text = raw.decode("utf-8", "replace").strip()
                yield InvalidJob(text, f"{origin}: line is not UTF-8 ({exc.reason})", origin)
            continue
        entry = parse_line(text.lstrip("\ufeff") if number == 1 else text, origin)
        if entry is not None:
            yield entry


def _skip_rest_of_line(stream: IO[bytes]) -> None:
    """Read past the end of a line too long to keep, a piece at a time."""
    while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
        pass


def read_urls(urls: Iterable[str | Entry]) -> Iterator[Entry]:
    """Turn URLs or jobs given directly (arguments, the library API) into entries; an
    :class:`InvalidJob` (a bad row of a table) is passed on as it is."""
    for number, item in enumerate(urls, start=1):
        if isinstance(item, InvalidJob):
            yield item
            continue
        if isinstance(item, Job):
            problem = _job_problem(item)
            yield InvalidJob(item.url, problem, item.origin) if problem else replace(item, checksum=item.checksum and item.checksum.lower())
            continue
        origin = f"argument {number}"
        problem = validate_url(item)
        yield InvalidJob(item, f"{origin}: {problem}", origin) if problem else Job(item, origin=origin)
