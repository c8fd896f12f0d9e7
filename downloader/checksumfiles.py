"""Checksum files (``md5sum``, ``sha256sum``, ``b2sum``, BSD tags, archives' SUMS files) read into a table applied to a run's entries.

What is read (:func:`read_file`), line by line, as GNU coreutils and archives write it:

* ``HEX  NAME`` (text mode), ``HEX *NAME`` (binary mode) and ``HEX NAME`` (BSD ``md5 -r``);
* ``ALG (NAME) = HEX``, the BSD / ``--tag`` form (``MD5``, ``SHA1``, ``SHA256``, ``SHA512``,
  ``BLAKE2b``; OpenSSL's ``SHA2-256(NAME)= HEX`` too), the digest in hex or in base64
  (``cksum --base64``);
* either form after a leading backslash, coreutils' mark for an escaped name: ``\\\\`` is a
  backslash, ``\\n`` a line feed, ``\\r`` a carriage return;
* a lone ``HEX``, or ``HEX  -`` (``sha256sum < X``), in a file named ``X.sha256`` (``.md5``,
  ``.sha1``, ``.sha512``, ``.b2``...): the digest of ``X``;
* CRLF line ends, a UTF-8 (or UTF-16) byte-order mark, blank lines and ``#`` comments.

The algorithm is the tag's, else the digest's length (32 hex digits md5, 40 sha1, 64
sha256, 128 sha512 or blake2b), which the file's name decides when it says one
(``MD5SUMS``, ``SHA256SUMS``, ``B2SUMS``, ``*.md5``, ``md5checksums.txt``): a length the
name contradicts is an error, and 128 digits are sha512 unless the name says b2/blake2.
Only full-length BLAKE2b is read (``b2sum``'s default, hashlib's ``blake2b``): a
``BLAKE2b-256`` digest is another function. Any other line is a
:class:`~downloader.errors.ChecksumFileError` naming ``FILE:LINE``.

A :class:`ChecksumTable` keys each digest by its name normalised as an output path
relative to the destination (``./`` and empty components dropped, ``\\`` a separator,
each component made safe as the run makes names: :func:`naming.safe_name`), and
:meth:`ChecksumTable.apply` gives each job without a checksum of its own the digest of
its output path (as the run names it before any answer: ``out=``, else from the URL by
layout; :func:`naming.output_path`): the whole path, else the trailing components of it
that the files name (``a.iso`` for ``host/dir/a.iso`` in the mirror layout), when every
such name agrees on the digest.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from downloader import checksums, naming
from downloader.errors import ChecksumFileError, DownloadError
from downloader.jobs import Job
from downloader.naming import Layout
from downloader.sources import Entry

__all__ = ["MAX_LINE", "SHOWN", "ChecksumLine", "ChecksumTable", "algorithm_hint", "name_key", "read_file"]

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
"""Longest line read, in characters; a longer one is an error."""
SHOWN = 50
"""Names (or URLs) listed at most in one log message; the rest are counted."""

_HERE = Path(".")
_ORDER = tuple(checksums.ALGORITHMS)
"""Algorithm of each table value's first byte (its index here)."""
_PREFIX = {name: f"{index:02x}" for index, name in enumerate(_ORDER)}
"""A table value's first byte in hex, by algorithm."""
_PREFIXES = tuple(f"{name}:" for name in _ORDER)
"""The ``ALG:`` of a table value's checksum, by its first byte."""
_DIGEST_BYTES = {name: length // 2 for name, length in checksums.ALGORITHMS.items()}
_MATCHED = 0x80
"""Set in a table value's first byte once a URL matched its name."""
_CONFLICT = 0x40
"""A table value of this first byte alone: the files give its name several digests."""

# The common line, ``HEX  NAME`` or ``HEX *NAME``, in one match; anything else takes the full parse.
_PLAIN = re.compile(r"([0-9A-Fa-f]{32,128}) [ *]([^\\\r\n]+)\r?\n?")
# A component safe_name leaves as it is: no white space, no leading or trailing dot, no colon,
# short, not starting like a Windows device name (con.txt, which it changes).
_COMPONENT = r"(?!(?i:con|prn|aux|nul|com|lpt))[A-Za-z0-9_][A-Za-z0-9._+,=@~-]{0,199}(?<!\.)"
_SIMPLE_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_SIMPLE = re.compile(rf"(?:\./)*({_SIMPLE_PATH})")
"""A relative path (after ``./`` prefixes) that is its own key: most names, in one match."""
_SIMPLE_NAME = re.compile(_COMPONENT)
# A URL whose output path needs no decoding: http(s), a host of letters, digits, dots and
# dashes, an optional port, a path without ?, # or %. Its segments are compared as they are.
_FAST_URL = re.compile(r"(?i:(https?))://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?/([^?#%]*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_JOB_FIELDS = ("url", "out", "checksum", "size", "origin")

_TAGGED = re.compile(r"([A-Za-z][A-Za-z0-9-]*) ?\((.*)\)[ \t]*=[ \t]*([0-9A-Za-z+/=]+)[ \t]*", re.DOTALL)
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r"}
_TAGS = {
    "md5": "md5", "sha1": "sha1", "sha-1": "sha1",
    "sha256": "sha256", "sha2-256": "sha256", "sha-256": "sha256",
    "sha512": "sha512", "sha2-512": "sha512", "sha-512": "sha512",
    "blake2b": "blake2b", "blake2b-512": "blake2b", "blake2b512": "blake2b",
}
"""Tag names (lower case) as coreutils, BSD and OpenSSL write them."""
_LENGTHS = dict(sorted({**checksums.BY_HEX_LENGTH, 56: "sha224", 96: "sha384"}.items()))
# What a checksum file's name says: MD5SUMS, md5checksums.txt, SHA256SUMS, B2SUMS, x.sha512...
_HINTS = (
    ("blake2b", re.compile(r"(?<![a-z0-9])(?:b2|blake2b?)(?![0-9])")),
    ("sha512", re.compile(r"(?<![a-z0-9])sha-?512")),
    ("sha256", re.compile(r"(?<![a-z0-9])sha-?256")),
    ("sha1", re.compile(r"(?<![a-z0-9])sha-?1(?![0-9])")),
    ("md5", re.compile(r"(?<![a-z0-9])md5")),
)
_EXTENSIONS = frozenset({"md5", "sha1", "sha256", "sha512", "b2", "blake2b",
                         "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum"})
"""``X.<this>``: a file of X's digest alone, whose lines may give no name (or ``-``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ChecksumLine:
    """One digest a checksum file gives: the file's ``name`` for it, as written (unescaped),
    the ``checksum`` as ``ALG:HEX``, and where it was read (``FILE:LINE``)."""

    name: str
    checksum: str
    origin: str


def algorithm_hint(filename: str) -> str | None:
    """The algorithm a checksum file's name says (``SHA256SUMS``, ``x.md5``, ``B2SUMS``), or None
    when it says none or several."""
    lowered = Path(filename).name.lower()
    found = [algorithm for algorithm, pattern in _HINTS if pattern.search(lowered)]
    return found[0] if len(found) == 1 else None


def name_key(name: str) -> str:
    """``name`` as an output path relative to the destination, the table's key: ``\\`` read as
    ``/``, empty and ``.`` components dropped, each other component made safe as the run names
    files (``..`` becomes ``_``, as the mirror layout makes it). Empty when it names no file."""
    simple = _SIMPLE.fullmatch(name)
    if simple is not None:
        return simple[1]
    parts = name.replace("\\", "/").split("/")
    return "/".join(naming.safe_name(part) for part in parts if part not in ("", "."))


def read_file(path: Path) -> Iterator[ChecksumLine]:
    """The digests of one checksum file, line by line (the file is never held whole).

    Raises:
        ChecksumFileError: the file cannot be read, or a line is not a digest (naming ``FILE:LINE``).
    """
    for name, algorithm, hexdigest, number in _digests(path):
        yield ChecksumLine(name, checksums.checksum(algorithm, hexdigest), f"{path}:{number}")


def _digests(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """(name, algorithm, hex digest, line number) of each digest in the checksum file ``path``.

    Raises:
        ChecksumFileError: the file cannot be read, or a line is not a digest.
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, the generator may be left early
    except OSError as exc:
        raise ChecksumFileError(f"cannot read checksum file {path}: {exc.strerror or exc}") from exc
    reader = _Reader(path)
    by_length = reader.by_length
    number = 0
    try:
        with raw, _text(raw) as text:
            # One loop, the common line in one match: this runs a million times for a big file.
            while line := text.readline(MAX_LINE + 1):
                number += 1
                plain = _PLAIN.fullmatch(line)
                if plain is not None and plain[2] != "-" and len(line) <= MAX_LINE:
                    hexdigest = plain[1]
                    algorithm = by_length.get(len(hexdigest)) or reader.algorithm(hexdigest, number)
                    yield plain[2], algorithm, hexdigest, number
                    continue
                found = reader.line(line, number)
                if found is not None:
                    yield (*found, number)
    except UnicodeError as exc:  # UTF-16 text that is not
        raise ChecksumFileError(f"{path}:{number + 1}: not UTF-16 text ({exc})") from exc
    except OSError as exc:
        raise ChecksumFileError(f"cannot read checksum file {path}: {exc.strerror or exc}") from exc


def _text(raw: io.BufferedReader) -> io.TextIOWrapper:
    """The file as text: UTF-16 when it starts with that byte-order mark (PowerShell's
    ``>``), else UTF-8 with a mark skipped; bytes that are not UTF-8 kept (surrogateescape),
    as names on disk may be any bytes. Lines end at LF only (a CR before it is removed later)."""
    start = raw.peek(2)[:2]  # not read and seek: a pipe (<(curl ...)) cannot seek
    encoding = "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    errors = "strict" if encoding == "utf-16" else "surrogateescape"
    return io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="\n")


class _Reader:
    """The lines of one checksum file, parsed with what its name says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hint = algorithm_hint(path.name)
        stem, dot, extension = path.name.rpartition(".")
        self.subject = stem if dot and stem and extension.lower() in _EXTENSIONS else None
        """``X`` for a file named ``X.sha256``: the name of a lone digest."""
        self.by_length: dict[int, str] = {}
        """The algorithm of an untagged digest of each length met so far."""

    def line(self, line: str, number: int) -> tuple[str, str, str] | None:
        """(name, algorithm, hex digest) of any line; None for a blank or comment line."""
        where = f"{self.path}:{number}"
        if len(line) > MAX_LINE and not line.endswith("\n"):
            raise ChecksumFileError(f"{where}: line longer than {MAX_LINE} characters")
        line = line[:-1] if line.endswith("\n") else line
        line = line[:-1] if line.endswith("\r") else line
        line = line.lstrip(" \t")
        if not line or line.startswith("#"):
            return None
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        problem, hexdigest, name, algorithm = self._split(body)
        if problem:
            raise ChecksumFileError(f"{where}: {problem}: {line[:80]!r}")
        if escaped:
            name = _unescape(name, where)
        if algorithm is None:
            algorithm = self.algorithm(hexdigest, number)
        problem = checksums.checksum_problem(algorithm, hexdigest)
        if problem:
            raise ChecksumFileError(f"{where}: {problem}")
        if name in ("", "-"):
            if self.subject is None:
                raise ChecksumFileError(f"{where}: a digest without a file name (only a file named X.{algorithm} "
                                        f"may give X's digest alone)")
            name = self.subject
        return name, algorithm, hexdigest

    def _split(self, body: str) -> tuple[str | None, str, str, str | None]:
        """(problem, digest, name, algorithm of a tag) of a line's body (its escape mark removed)."""
        untagged = checksums.HEX.match(body)
        if untagged is not None:
            rest = body[untagged.end():]
            if not rest or rest in (" ", "\t"):
                return None, untagged[0], "", None
            if rest[0] in " \t":
                name = rest[2:] if rest[1:2] in (" ", "*") else rest[1:]
                return None, untagged[0], name, None
        tagged = _TAGGED.fullmatch(body)
        if tagged is None:
            return "expected 'HEX  NAME', 'HEX *NAME' or 'ALG (NAME) = HEX'", "", "", None
        algorithm = _TAGS.get(tagged[1].lower())
        if algorithm is None:
            return _unknown_tag(tagged[1]), "", "", None
        return None, _hex_of(tagged[3], algorithm), tagged[2], algorithm

    def algorithm(self, hexdigest: str, number: int) -> str:
        """The algorithm of an untagged digest: its length, and what the file's name says.

        Raises:
            ChecksumFileError: a length of no algorithm read, or one the file's name contradicts.
        """
        where = f"{self.path}:{number}"
        by_length = _LENGTHS.get(len(hexdigest))
        if by_length is None or by_length not in checksums.ALGORITHMS:
            known = ", ".join(f"{length} for {name}" for length, name in _LENGTHS.items() if name in checksums.ALGORITHMS)
            what = f" ({by_length} is not supported)" if by_length else ""
            raise ChecksumFileError(f"{where}: a digest of {len(hexdigest)} hex digits{what}; expected {known} "
                                    f"(or 128 for blake2b)")
        algorithm = by_length if self.hint is None else self.hint
        if self.hint == "blake2b" and len(hexdigest) != 128:
            raise ChecksumFileError(f"{where}: a digest of {len(hexdigest)} hex digits, but the file's name says "
                                    "BLAKE2b: only full-length (512-bit, 128 hex digits) BLAKE2b is supported "
                                    "(b2sum -l makes another function)")
        if self.hint not in (None, "blake2b", by_length):
            raise ChecksumFileError(f"{where}: a digest of {len(hexdigest)} hex digits ({by_length}), but the "
                                    f"file's name says {self.hint}")
        self.by_length[len(hexdigest)] = algorithm
        return algorithm


def _unknown_tag(tag: str) -> str:
    if tag.lower().startswith("blake2b-"):
        return (f"{tag} is not supported: only full-length BLAKE2b (512 bits, b2sum's default; hashlib's "
                "blake2b) is; a shorter BLAKE2b digest is another function")
    return f"unknown algorithm {tag!r} (known: MD5, SHA1, SHA256, SHA512, BLAKE2b)"


def _hex_of(digest: str, algorithm: str) -> str:
    """A tag's digest in hex: as given, or decoded from base64 (``cksum --base64``) when that
    is what it is (hex of the wrong length is left for the length check to name)."""
    if checksums.HEX.fullmatch(digest) and len(digest) == checksums.ALGORITHMS[algorithm]:
        return digest
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        return digest
    return raw.hex() if len(raw) == _DIGEST_BYTES[algorithm] else digest


def _unescape(name: str, where: str) -> str:
    """A name escaped as coreutils writes it (the line's leading backslash said so)."""
    def one(match: re.Match[str]) -> str:
        value = _UNESCAPED.get(match[1])
        if value is None:
            raise ChecksumFileError(f"{where}: unknown escape '\\{match[1]}' in the name (known: \\\\, \\n, \\r)")
        return value

    return _ESCAPE.sub(one, name)


_FIELDS_KNOWN = tuple(field.name for field in dataclasses.fields(Job)) == _JOB_FIELDS


class ChecksumTable:
    """The digests of some checksum files by output name, applied to the entries of a run.

    Held in memory: one dict entry per distinct name, the digest kept as raw bytes (see
    the README for the size per entry). Of several digests for one name, the strongest
    algorithm's is kept; two different digests in one algorithm make the name a conflict,
    which applies to no URL (the files disagree: which one is right cannot be known).
    """

    def __init__(self) -> None:
        self._table: dict[str, bytes] = {}
        self._conflicts: dict[str, list[str]] = {}
        """Conflicting names, with the lines that disagreed with an earlier one (for the message)."""
        self.files = 0
        self.lines = 0
        self.applied = 0
        """URLs given a digest from the table."""
        self.own = 0
        """URLs whose name is in the table but whose list line gave a digest of its own (it wins)."""
        self.ambiguous = 0
        """URLs left unchecked: the names they match disagree."""
        self._ambiguous_shown: list[str] = []

    @classmethod
    def read(cls, paths: Iterable[Path]) -> ChecksumTable:
        """The table of the checksum files ``paths``, in order; names the files disagree on are
        logged as a warning.

        Raises:
            ChecksumFileError: a file cannot be read, or a line of it is not a digest.
        """
        table = cls()
        for path in paths:
            table.add_file(Path(path))
        if table._conflicts:
            log.warning("%s", table._conflict_message())
        return table

    def add_file(self, path: Path) -> None:
        """Add the digests of one checksum file.

        Raises:
            ChecksumFileError: the file cannot be read, or a line of it is not a digest.
        """
        self.files += 1
        for name, algorithm, hexdigest, number in _digests(path):
            self._add(name, algorithm, hexdigest, path, number)

    def add(self, line: ChecksumLine) -> None:
        """Add one digest under its name's key.

        Raises:
            ChecksumFileError: the name names no file (``.``, ``/``).
        """
        algorithm, _, hexdigest = line.checksum.partition(":")
        self._add(line.name, algorithm, hexdigest, line.origin)

    def _add(self, name: str, algorithm: str, hexdigest: str, file: Path | str, number: int = 0) -> None:
        """Add a digest read at line ``number`` of ``file`` (or at ``file``, an origin, when 0)."""
        key = name_key(name)
        if not key:
            raise ChecksumFileError(f"{_origin(file, number)}: {name!r} does not name a file")
        self.lines += 1
        value = bytes.fromhex(_PREFIX[algorithm] + hexdigest)
        kept = self._table.setdefault(key, value)
        if kept is value or (kept[0] & ~_MATCHED == value[0] and kept[1:] == value[1:]):
            return
        if kept[0] & _CONFLICT:
            self._conflicts[key].append(_origin(file, number))
        elif kept[0] & ~_MATCHED == value[0]:
            self._table[key] = bytes((_CONFLICT | kept[0] & _MATCHED,))
            self._conflicts[key] = [_origin(file, number)]
        elif checksums.strongest((_ORDER[kept[0] & ~_MATCHED], algorithm)) == algorithm:
            self._table[key] = bytes((value[0] | kept[0] & _MATCHED,)) + value[1:]

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, path: str) -> str | None:
        """The digest (``ALG:HEX``) for the output path ``path`` (relative, ``/``-separated), or
        None; the names it matches are marked as matched (see :meth:`unmatched`)."""
        return self._find(path)[0]

    def apply(self, entries: Iterable[Entry], layout: Layout = "flat") -> Iterator[Entry]:
        """``entries``, each job without a checksum of its own given the digest of its output
        name, lazily. The names a URL matched are marked (see :meth:`unmatched`)."""
        if not self._table:
            yield from entries
            return
        for entry in entries:
            if isinstance(entry, Job):
                entry = self._applied(entry, layout)
            yield entry

    def _applied(self, job: Job, layout: Layout) -> Job:
        path = _output_path(job, layout)
        if path is None:
            return job  # the run fails it, with the reason
        found, names = self._find(path)
        if not names:
            return job
        if job.checksum is not None:
            self.own += 1
            return job
        if found is None:
            self.ambiguous += 1
            if len(self._ambiguous_shown) < SHOWN:
                self._ambiguous_shown.append(f"{job.url} ({', '.join(names)})")
            return job
        self.applied += 1
        if _FIELDS_KNOWN:  # dataclasses.replace costs four times as much, for every URL
            return Job(job.url, job.out, found, job.size, job.origin)
        return dataclasses.replace(job, checksum=found)

    def _find(self, path: str) -> tuple[str | None, list[str]]:
        """The digest for ``path`` and the names that matched it (now marked): the whole path,
        else its trailing components; None with the names when they disagree (or conflict)."""
        table = self._table
        value = table.get(path)
        if value is not None:  # the whole path: most lookups
            if not value[0] & _MATCHED:
                table[path] = bytes((value[0] | _MATCHED,)) + value[1:]
            return (None if value[0] & _CONFLICT else _PREFIXES[value[0] & ~_MATCHED] + value[1:].hex()), [path]
        matches = []
        slash = path.find("/")
        while slash >= 0:
            value = table.get(path[slash + 1:])
            if value is not None:
                matches.append((path[slash + 1:], value))
            slash = path.find("/", slash + 1)
        if not matches:
            return None, []
        for name, value in matches:
            if not value[0] & _MATCHED:
                table[name] = bytes((value[0] | _MATCHED,)) + value[1:]
        names = [name for name, _ in matches]
        first = matches[0][1]
        if first[0] & _CONFLICT or any(value[1:] != first[1:] or (value[0] ^ first[0]) & ~_MATCHED
                                       for _, value in matches[1:]):
            return None, names
        return _PREFIXES[first[0] & ~_MATCHED] + first[1:].hex(), names

    def unmatched(self) -> Iterator[str]:
        """The names (keys) no URL matched so far."""
        return (name for name, value in self._table.items() if not value[0] & _MATCHED)

    def log_outcome(self) -> None:
        """Log, at INFO, what the table did (the CLI shows it with -v): how many URLs it gave a
        digest, then the names no URL matched (the first :data:`SHOWN`); and, as a warning,
        the URLs left unchecked because the names they matched disagree."""
        unmatched = sum(1 for _ in self.unmatched())
        log.info("checksum files: %d digests for %d names read from %d files; %d URLs given a digest, "
                 "%d had their own; %d names matched no URL", self.lines, len(self._table), self.files,
                 self.applied, self.own, unmatched)
        if unmatched:
            log.info("%s", _listed(f"checksum files: {unmatched} names matched no URL:", self.unmatched(), unmatched))
        if self.ambiguous:
            log.warning("%s", _listed(f"checksum files: {self.ambiguous} URLs not checked, the names they match "
                                      "have different digests:", iter(self._ambiguous_shown), self.ambiguous))

    def _conflict_message(self) -> str:
        shown = (f"{name} ({', '.join(origins[:2])}{' and more' if len(origins) > 2 else ''} "
                 "disagreeing with an earlier line)" for name, origins in self._conflicts.items())
        count = len(self._conflicts)
        return _listed(f"checksum files: {count} names have different digests in different lines; URLs of "
                       "these names are not checked:", shown, count)


def _origin(file: Path | str, number: int) -> str:
    return f"{file}:{number}" if number else str(file)


def _output_path(job: Job, layout: Layout) -> str | None:
    """The output path of ``job`` relative to the destination as the run names it before any
    answer (``out=``, else from the URL by ``layout``); None when it cannot be named."""
    fast = _simple_output_path(job, layout)
    if fast is not None:
        return fast
    try:
        if job.out is None and layout == "flat":
            return naming.name_from_url(job.url)
        return naming.output_path(job, _HERE, layout=layout).as_posix()
    except (DownloadError, ValueError):
        return None


def _simple_output_path(job: Job, layout: Layout) -> str | None:
    """:func:`_output_path` of the usual job (a plain URL, or a plain ``out=``) without parsing
    the URL, splitting it thrice and building a Path: the same text. None for any other job."""
    if job.out is not None:
        simple = _SIMPLE.fullmatch(job.out)
        return simple[1] if simple is not None else None
    if layout == "flat":  # the last segment of a URL without query, fragment or escapes
        text = job.url
        if "?" in text or "#" in text or "%" in text or text.rfind("/") <= text.find("://") + 2:
            return None
        name = text[text.rfind("/") + 1:]
        return name if _SIMPLE_NAME.fullmatch(name) else None
    url = _FAST_URL.fullmatch(job.url)
    if url is None:
        return None
    path = url[4]
    host, port = url[2].lower(), url[3]
    if not _SIMPLE_NAME.fullmatch(host) or not re.fullmatch(_SIMPLE_PATH, path):
        return None
    if port is not None and int(port) != _DEFAULT_PORTS[url[1].lower()]:
        if len(host) == 1 or int(port) > 0xFFFF:  # "a:8080" reads as a drive: safe_name changes it
            return None
        host = f"{host}:{int(port)}"
    return f"{host}/{path}"


def _listed(head: str, items: Iterator[str], count: int) -> str:
    """``head``, then the first :data:`SHOWN` items one per line, then ``... N more``."""
    lines = [head]
    for item in items:
        if len(lines) > SHOWN:
            break
        lines.append(f"  {item}")
    if count > SHOWN:
        lines.append(f"  ... {count - SHOWN} more")
    return "\n".join(lines)
