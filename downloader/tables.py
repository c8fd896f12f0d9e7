"""Tabular lists: the rows of a CSV, TSV, JSON Lines or Parquet file read lazily into jobs.

Each row becomes a :class:`~downloader.jobs.Job` or, when it cannot be one, an
:class:`~downloader.errors.InvalidJob` naming ``FILE:ROW``, exactly as a line of a URL
list does (:mod:`downloader.sources`): the same URL check, checksum and size rules.
Columns are chosen by name: the URL column (``url`` unless told), and optionally the
output path, the checksum and the size. A name is matched exactly, else ignoring case
and the white space around it.

Where ROW counts from:

- CSV and TSV: the row as a spreadsheet numbers it, the header being row 1 (the first
  data row is row 2); a quoted cell with line breaks is one row, so past it ROW is not
  the file's line number;
- JSON Lines: the line number;
- Parquet: the row's position in the file, the first row being 1.

A row is skipped when every cell the run reads (the URL, and the out, checksum and size
columns when named) is empty or null; a row with any of them but no URL fails.

Nothing is loaded whole: text is decoded and parsed as it is read (gzip too), Parquet
is read a batch of :data:`PARQUET_BATCH` rows of the needed columns at a time.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import PurePath
from typing import IO, Any, Literal, cast, get_args

from downloader import checksums
from downloader.errors import InvalidJob, ListFormatError
from downloader.jobs import Job
from downloader.sources import Entry, read_list, validate_url

__all__ = [
    "FORMATS",
    "MAX_CELL",
    "PARQUET_BATCH",
    "InputFormat",
    "Table",
    "format_of",
    "read_table",
]

InputFormat = Literal["auto", "list", "csv", "tsv", "jsonl", "parquet"]
"""How a list file is read; ``auto`` picks one from the file's name (:func:`format_of`)."""
FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)

_EXTENSIONS: dict[str, InputFormat] = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
PARQUET_BATCH = 4096
"""Rows of a Parquet file read at a time (of the needed columns only)."""
MAX_CELL = 16 * 1024 * 1024
"""Longest CSV or TSV cell in characters, and longest JSON line in bytes; a longer one fails its
row. (``csv.field_size_limit`` is raised to this for the process, never lowered.)"""
_HEX = re.compile(rb"[0-9a-fA-F]+")
_WHOLE = re.compile(r"[0-9]+(?:\.0*)?")
_DELIMITERS = {"csv": (",", ";", "|", "\t"), "tsv": ("\t",)}
"""The separators tried on a header row, in order: the first under which the URL column is found."""
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_HINT = "pip install 'downloader[parquet]'"
_Stream = Any
"""A binary stream with ``peek`` (a buffered file, standard input, a gzip stream): duck-typed."""


def format_of(name: str | os.PathLike[str]) -> InputFormat:
    """The format a file's name says: by its extension (after a ``.gz``), ``list`` by default.

    ``.csv``; ``.tsv`` and ``.tab``; ``.jsonl``, ``.ndjson`` and ``.json`` (JSON Lines,
    or one JSON array of objects); ``.parquet`` and ``.pq``.
    """
    path = PurePath(os.fspath(name))
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = PurePath(path.stem).suffix.lower()
    return _EXTENSIONS.get(suffix, "list")


class _Columns:
    """The column names a run reads, as given (before matching them to a file's)."""

    __slots__ = ("url", "out", "checksum", "size")

    def __init__(self, url: str, out: str | None, checksum: str | None, size: str | None) -> None:
        self.url, self.out, self.checksum, self.size = url, out, checksum, size

    def named(self) -> list[tuple[int, str]]:
        """(role, name) of each column given; roles: 0 url, 1 out, 2 checksum, 3 size."""
        names = (self.url, self.out, self.checksum, self.size)
        return [(role, name) for role, name in enumerate(names) if name is not None]

    @property
    def algorithm(self) -> str | None:
        """The algorithm of a bare hex checksum, when the checksum column is named after one."""
        name = (self.checksum or "").strip().lower()
        return name if name in checksums.ALGORITHMS else None


class Table(Iterator[Entry]):
    """The entries of one list file, read as they are asked for.

    The file is closed at the end of the entries, by :meth:`close`, or by leaving a
    ``with`` block; a stream given open is left open.

    Attributes:
        name: the file's name, as messages give it.
        format: the format it is read in (never ``auto``).
        columns: the columns (or JSON keys of the first object) found; empty for a URL list.
    """

    def __init__(self, entries: Iterator[Entry], *, name: str, format: InputFormat, columns: Sequence[str],
                 resources: contextlib.ExitStack) -> None:
        self._entries = entries
        self._resources = resources
        self.name = name
        self.format = format
        self.columns = tuple(columns)

    def __next__(self) -> Entry:
        try:
            return next(self._entries)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Stop reading and close the file (when this table opened it)."""
        close = getattr(self._entries, "close", None)
        if close is not None:
            close()
        self._resources.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_table(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    format: InputFormat = "auto",
    url_column: str = "url",
    out_column: str | None = None,
    checksum_column: str | None = None,
    size_column: str | None = None,
    name: str | None = None,
) -> Table:
    """Open a list file of any format and return its entries, read lazily.

    The header (of CSV and TSV), the schema (of Parquet) or the first object (of JSON
    Lines) is read now, so that a missing URL column is known before any row.

    Args:
        source: a path, or a binary stream (standard input; a Parquet stream that
            cannot seek is copied to a temporary file first).
        format: ``list``, ``csv``, ``tsv``, ``jsonl``, ``parquet``, or ``auto`` (by the
            name, :func:`format_of`). Text formats may be gzip-compressed (found by the
            content, whatever the name).
        url_column: the column (or JSON key) holding the URL.
        out_column: the column of the output path, relative to the destination.
        checksum_column: the column of the checksum: ``ALG:HEX``, or bare hex whose
            algorithm is the column's name when that is one (``md5``, ``sha256``...), else
            told by its length (32 md5, 40 sha1, 64 sha256, 128 sha512).
        size_column: the column of the expected size in bytes.
        name: the name messages and origins give the file (default: the path as given,
            or ``<stream>``).

    Returns:
        A :class:`Table`: an iterator of jobs and invalid rows, usable with
        :class:`downloader.Run`, that closes the file at its end.

    Raises:
        ListFormatError: an unknown format, a table without the URL column, Parquet
            without pyarrow, a file that is not Parquet, a gzip stream
            damaged from its start.
        OSError: the file cannot be opened.

    .. versionadded:: 0.4
    """
    if format not in FORMATS:
        raise ListFormatError(f"unknown list format {format!r} (known: {', '.join(FORMATS)})")
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    label = name if name is not None else path if path is not None else "<stream>"
    if format == "auto":
        format = format_of(path) if path is not None else "list"
    columns = _Columns(url_column, out_column, checksum_column, size_column)
    resources = contextlib.ExitStack()
    try:
        if format == "parquet":
            entries, found = _open_parquet(path, source, label, columns, resources)
        else:
            stream = resources.enter_context(open(path, "rb")) if path is not None else source
            assert not isinstance(stream, (str, os.PathLike))
            entries, found = _OPENERS[format](_decompressed(stream, resources), label, columns, resources)
            entries = _guarded(entries, label)
    except (EOFError, zlib.error, UnicodeError) as error:  # a damaged gzip stream, bytes not UTF-16
        resources.close()
        raise ListFormatError(f"{label}: cannot be read: {error}") from error
    except BaseException:
        resources.close()
        raise
    return Table(entries, name=label, format=format, columns=found, resources=resources)


# --- opening: bytes, decompression, text ----------------------------------------------------

def _decompressed(stream: IO[bytes], resources: contextlib.ExitStack) -> _Stream:
    """``stream``, or its gunzipped bytes when it starts as gzip does (read as they come)."""
    peekable = _peekable(stream, resources)
    if peekable.peek(2)[:2] != _GZIP_MAGIC:
        return peekable
    return resources.enter_context(gzip.GzipFile(fileobj=peekable, mode="rb"))


def _guarded(entries: Iterator[Entry], name: str) -> Iterator[Entry]:
    """``entries``, ended by one failed entry if the file cannot be read to its end (a disk
    error, a gzip stream cut short or corrupt) rather than by an exception that stops the run."""
    try:
        yield from entries
    except (OSError, EOFError, zlib.error, UnicodeError) as error:
        yield InvalidJob(f"<{name}>", f"{name}: cannot read the rest of the file: {error}", name)


def _peekable(stream: IO[bytes], resources: contextlib.ExitStack) -> _Stream:
    if hasattr(stream, "peek"):
        return stream
    buffered = io.BufferedReader(cast(Any, stream))
    resources.callback(buffered.detach)  # never closes a stream it was given
    return buffered


def _text(stream: _Stream, resources: contextlib.ExitStack) -> io.TextIOWrapper:
    """``stream`` decoded as UTF-8 (UTF-16 when a byte-order mark says so), a BOM dropped.

    Bytes that are not UTF-8 come through as surrogate escapes: the cells that hold
    them fail their row, the others are read as usual.
    """
    head = stream.peek(4)[:4]
    encoding = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
    resources.callback(text.detach)  # the byte stream is closed by whoever opened it
    return text


def _list_entries(stream: _Stream, name: str, columns: _Columns,
                  resources: contextlib.ExitStack) -> tuple[Iterator[Entry], list[str]]:
    return read_list(stream, name), []


# --- turning cells into a job ----------------------------------------------------------------

class _RowProblem(ValueError):
    """What is wrong with a row, in words."""


def _entry(cells: Sequence[object], number: int, name: str, unit: str, algorithm: str | None) -> Entry | None:
    """The entry of one row's cells (url, out, checksum, size): a Job, an InvalidJob, or None
    for a row with none of them."""
    url, out, checksum, size = cells
    origin = f"{name}:{number}"
    if type(url) is str and out is None and checksum is None and size is None and url.isascii():
        url = url.strip()  # the common row: a plain URL and nothing else
        if url and validate_url(url) is None:
            return Job(url, origin=origin)
    url, out, checksum, size = _present(url), _present(out), _present(checksum), _present(size)
    if url is None:
        if out is None and checksum is None and size is None:
            return None
        return InvalidJob(f"<{unit} {number}>", f"{origin}: no URL", origin)
    try:
        return Job(_url(url), out=_out(out), checksum=_checksum(checksum, algorithm), size=_size(size),
                   origin=origin)
    except _RowProblem as problem:
        shown = url if isinstance(url, str) else f"<{unit} {number}>"
        return InvalidJob(_printable(shown), f"{origin}: {problem}", origin)


def _present(cell: object) -> object:
    """The cell's value, None when it is empty or null (white space around text dropped)."""
    if type(cell) is str:
        return cell.strip() or None
    if cell is None:
        return None
    if isinstance(cell, str):
        return cell.strip() or None
    if isinstance(cell, bytes):  # raw digest bytes are not stripped; decoded text is, when decoded
        return cell or None
    if isinstance(cell, float) and cell != cell:  # NaN: how pandas writes a missing number
        return None
    return cell


def _text_cell(value: object, what: str) -> str:
    if type(value) is str and value.isascii():
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _RowProblem(f"{what} is not UTF-8") from None
    if not isinstance(value, str):
        raise _RowProblem(f"{what} must be text, got {value!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # surrogate escapes of bytes that were not UTF-8
            raise _RowProblem(f"{what} is not UTF-8") from None
    return value


def _url(value: object) -> str:
    url = _text_cell(value, "URL")
    problem = validate_url(url)
    if problem:
        raise _RowProblem(problem)
    return url


def _out(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is int:  # an id column used as the name
        return str(value)
    return _text_cell(value, "out")


def _checksum(value: object, algorithm: str | None) -> str | None:
    """The cell as ``ALG:HEX``: ``ALG:HEX`` as it is, bare hex by the column's name or its length,
    raw digest bytes (a Parquet binary column) as their hex."""
    if value is None:
        return None
    if isinstance(value, bytes) and not (len(value) in checksums.BY_HEX_LENGTH and _HEX.fullmatch(value)):
        value = value.hex()
    text = _text_cell(value, "checksum")
    if algorithm is not None and len(text) == checksums.ALGORITHMS[algorithm] and checksums.HEX.fullmatch(text):
        return f"{algorithm}:{text.lower()}"  # the common cell: hex of the column's algorithm
    if ":" in text:
        try:
            return checksums.parse(text)
        except ValueError as error:
            raise _RowProblem(str(error)) from None
    algorithm = algorithm or checksums.BY_HEX_LENGTH.get(len(text))
    if algorithm is None:
        raise _RowProblem(f"checksum must be ALG:HEX or the hex digits of md5, sha1, sha256 or sha512, got {text!r}")
    problem = checksums.checksum_problem(algorithm, text)
    if problem:
        raise _RowProblem(problem)
    return checksums.checksum(algorithm, text)


def _size(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)  # pandas writes a column of integers with gaps as floats
    if type(value).__name__ == "Decimal":  # a Parquet decimal column (decimal is not imported to ask)
        number: Any = value
        if number.is_finite() and number == number.to_integral_value() and number >= 0:
            return int(number)
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value.partition(".")[0])  # 1024.0: how pandas writes a column of integers with gaps
    raise _RowProblem(f"size must be a whole number of bytes, got {value!r}")


def _printable(text: str) -> str:
    """``text`` with the surrogate escapes of undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if not text.isascii() else text


# --- matching column names -------------------------------------------------------------------

def _find(names: Sequence[str], wanted: str, *, name: str) -> int | None:
    """The index of the column called ``wanted``: exactly, else ignoring case and surrounding
    white space; None when there is none."""
    exact = [i for i, found in enumerate(names) if found == wanted]
    if not exact:
        folded = wanted.strip().casefold()
        exact = [i for i, found in enumerate(names) if found.strip().casefold() == folded]
    if len(exact) > 1:
        shown = ", ".join(repr(names[i]) for i in exact)
        raise ListFormatError(f"{name}: column {wanted!r} is ambiguous: {shown}")
    return exact[0] if exact else None


def _picks(names: Sequence[str], columns: _Columns, *, name: str, kind: str = "column") -> list[int | None]:
    """For each role (url, out, checksum, size) the index of its column, None when not asked for.

    Raises:
        ListFormatError: a column asked for is not there; the message lists those found.
    """
    picks: list[int | None] = [None] * 4
    for role, wanted in columns.named():
        index = _find(names, wanted, name=name)
        if index is None:
            raise ListFormatError(_missing(names, wanted, role, name=name, kind=kind))
        picks[role] = index
    return picks


def _missing(names: Sequence[str], wanted: str, role: int, *, name: str, kind: str) -> str:
    option = ("--url-column", "--out-column", "--checksum-column", "--size-column")[role]
    found = ", ".join(repr(n) for n in names[:50]) + (f" and {len(names) - 50} more" if len(names) > 50 else "")
    message = f"{name}: no {kind} {wanted!r} (found: {found or 'none'}); {option} names it"
    if kind == "column" and any(n.strip().lower().startswith(("http://", "https://")) for n in names):
        message += "; the first row holds a URL: a header row naming the columns is required"
    return message


# --- CSV and TSV ---------------------------------------------------------------------------

def _csv_entries(delimiters: tuple[str, ...]) -> Callable[..., tuple[Iterator[Entry], list[str]]]:
    def opener(stream: _Stream, name: str, columns: _Columns,
               resources: contextlib.ExitStack) -> tuple[Iterator[Entry], list[str]]:
        if csv.field_size_limit() < MAX_CELL:
            csv.field_size_limit(MAX_CELL)
        lines = iter(_text(stream, resources))
        header, number = _header_line(lines)
        if header is None:
            return iter(()), []
        delimiter, names = _delimited(header, delimiters, columns.url)
        if _headerless(names, columns):  # rclone's url,filename rows: the first one is data
            lines, number, picks = itertools.chain([header], lines), number - 1, [0, 1, None, None]
        else:
            picks = _picks(names, columns, name=name)
        reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
        return _csv_rows(reader, picks, name, number, columns.algorithm), names
    return opener


def _headerless(names: Sequence[str], columns: _Columns) -> bool:
    """Whether a CSV has no header row but URL[,NAME] rows, as ``rclone copyurl --urls``
    reads them: its first cell is an http(s) URL, no header cell is the URL column, and no
    column but the URL's is asked for by name (by position: the URL, then the output name)."""
    return (bool(names) and names[0].strip().lower().startswith(("http://", "https://"))
            and _find(names, columns.url, name="") is None
            and columns.out is None and columns.checksum is None and columns.size is None)


def _header_line(lines: Iterator[str]) -> tuple[str | None, int]:
    """The header row's text (blank lines before it skipped) and its row number; None for an
    empty file. A quoted header cell may hold line breaks: lines are joined until quotes pair."""
    number = 0
    for line in lines:
        number += 1
        if line.strip():
            while line.count('"') % 2 and len(line) < MAX_CELL:
                more = next(lines, None)
                if more is None:
                    break
                line += more
            return line, number
    return None, number


def _delimited(header: str, delimiters: tuple[str, ...], url: str) -> tuple[str, list[str]]:
    """The separator under which the header has the URL column (the format's own when none
    does), and the header's names split by it."""
    splits = [(d, next(csv.reader([header], delimiter=d, skipinitialspace=True), [])) for d in delimiters]
    for delimiter, names in splits:
        if len(names) > 1 and any(n == url or n.strip().casefold() == url.strip().casefold() for n in names):
            return delimiter, names
    return splits[0]


def _csv_rows(reader: Iterator[list[str]], picks: list[int | None], name: str, number: int,
              algorithm: str | None) -> Iterator[Entry]:
    """Entries of the data rows, ``number`` being the header's row number."""
    url_at, out_at, checksum_at, size_at = picks
    line_num = -1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a cell over the limit: the rest of its line is dropped
            number += 1
            problem = f"{error} (a cell longer than {MAX_CELL} characters, or a quote never closed)"
            yield InvalidJob(f"<row {number}>", f"{name}:{number}: {problem}", f"{name}:{number}")
            if reader.line_num == line_num:  # type: ignore[attr-defined]
                return  # nothing more was read: the reader cannot go on
            line_num = reader.line_num  # type: ignore[attr-defined]
            continue
        number += 1
        width = len(row)
        if width <= 1 and (not row or not row[0]):  # a blank line
            continue
        cells = (
            row[url_at] if url_at is not None and url_at < width else None,
            row[out_at] if out_at is not None and out_at < width else None,
            row[checksum_at] if checksum_at is not None and checksum_at < width else None,
            row[size_at] if size_at is not None and size_at < width else None,
        )
        entry = _entry(cells, number, name, "row", algorithm)
        if entry is not None:
            yield entry


# --- JSON Lines ----------------------------------------------------------------------------

def _jsonl_entries(stream: _Stream, name: str, columns: _Columns,
                   resources: contextlib.ExitStack) -> tuple[Iterator[Entry], list[str]]:
    """Entries of a JSON Lines file, or of a file holding one JSON array of objects (pandas'
    ``to_json(orient="records")``); the first object must have the URL key."""
    first = stream.peek(64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    lines = _json_array(_text(stream, resources), name) if first == b"[" else _json_lines(stream, name)
    seen: list[tuple[int, object]] = []
    for number, value in lines:
        seen.append((number, value))
        if isinstance(value, dict) or len(seen) >= 100:
            break
    keys = list(seen[-1][1]) if seen and isinstance(seen[-1][1], dict) else []
    if keys and _find(keys, columns.url, name=name) is None:
        raise ListFormatError(_missing(keys, columns.url, 0, name=f"{name}:{seen[-1][0]}", kind="key"))
    rows = _json_rows(itertools.chain(seen, lines), name, columns)
    return rows, keys


_NOT_JSON = object()
"""Stands for a line that is not JSON; the line's error follows it."""


def _json_lines(stream: _Stream, name: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line; a line that cannot be parsed gives
    an :class:`InvalidJob` as its value."""
    number = 0
    while raw := stream.readline(MAX_CELL + 1):
        number += 1
        origin = f"{name}:{number}"
        if len(raw) > MAX_CELL and not raw.endswith(b"\n"):
            while (rest := stream.readline(MAX_CELL)) and not rest.endswith(b"\n"):
                pass
            yield number, InvalidJob(f"<line {number}>", f"{origin}: line longer than {MAX_CELL} bytes", origin)
            continue
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            yield number, InvalidJob(f"<line {number}>", f"{origin}: line is not UTF-8 ({error.reason})", origin)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, the limit on digits, deep nesting
            yield number, InvalidJob(f"<line {number}>", f"{origin}: invalid JSON ({_json_message(error)})", origin)


_JSON_BLOCK = 1 << 16
_JSON_SPACE = re.compile(r"[ \t\r\n]*")


def _json_array(text: IO[str], name: str) -> Iterator[tuple[int, object]]:
    """(position, value) of each element of the JSON array that ``text`` holds, decoded one
    element at a time: memory holds one element (at most MAX_CELL characters) and a block.
    Past an element that cannot be decoded the array cannot be followed: it ends there,
    with that element's error."""
    def failed(number: int, reason: str) -> tuple[int, object]:
        origin = f"{name}:{number}"
        return number, InvalidJob(f"<element {number}>", f"{origin}: {reason}", origin)

    reader = _JsonBlocks(text)
    if reader.token() != "[":
        return
    reader.at += 1
    number = 0
    while reader.token() != "]" or number:
        number += 1
        value = reader.value()
        if isinstance(value, _TooLong):
            yield failed(number, str(value))
            return
        if isinstance(value, Exception):
            yield failed(number, f"invalid JSON ({_json_message(value)}); the rest of the array is not read")
            return
        yield number, value
        token = reader.token()
        if token == "]":
            return
        if token != ",":
            yield failed(number + 1, "invalid JSON (expected ',' or ']' after an array element); "
                                     "the rest of the array is not read")
            return
        reader.at += 1


class _TooLong(ValueError):
    """A JSON value longer than MAX_CELL characters."""


class _JsonBlocks:
    """JSON text read in blocks as it is decoded: the next token, the next value."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        self._decoder = json.JSONDecoder()
        self.buffer, self.at, self.ended = "", 0, False

    def token(self) -> str:
        """The next character that is not white space, reading more as needed ("" at the end)."""
        while True:
            self.at = _JSON_SPACE.match(self.buffer, self.at).end()  # type: ignore[union-attr]
            if self.at < len(self.buffer) or self.ended:
                return self.buffer[self.at:self.at + 1]
            self.buffer, self.at = self._text.read(_JSON_BLOCK), 0
            self.ended = not self.buffer

    def value(self) -> object:
        """The value that starts here, read past; the error when it cannot be decoded (a
        :class:`_TooLong` past MAX_CELL characters), the place then left as it was."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.at)
            except (ValueError, RecursionError) as error:
                value, end = error, len(self.buffer)
            if end < len(self.buffer) or self.ended:  # whole: something follows it, or the text has ended
                if not isinstance(value, Exception):
                    self.at = end
                return value
            if len(self.buffer) - self.at > MAX_CELL:
                return _TooLong(f"array element longer than {MAX_CELL} characters")
            # Doubling what is held: each retry decodes the value from its start again.
            more = self._text.read(max(_JSON_BLOCK, len(self.buffer) - self.at))
            self.buffer, self.at, self.ended = self.buffer[self.at:] + more, 0, not more


def _json_message(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return str(error)


def _json_rows(lines: Iterable[tuple[int, object]], name: str, columns: _Columns) -> Iterator[Entry]:
    named = columns.named()
    algorithm = columns.algorithm
    for number, value in lines:
        if isinstance(value, InvalidJob):
            yield value
            continue
        if not isinstance(value, dict):
            origin = f"{name}:{number}"
            yield InvalidJob(f"<line {number}>", f"{origin}: not a JSON object: {_short(value)}", origin)
            continue
        cells: list[object] = [None] * 4
        for role, key in named:
            cells[role] = value[key] if key in value else _get_folded(value, key)
        entry = _entry(cells, number, name, "line", algorithm)
        if entry is not None:
            yield entry


def _get_folded(value: dict[str, Any], key: str) -> object:
    """The value under ``key`` ignoring case and white space around it, None when there is none."""
    folded = key.strip().casefold()
    for found, cell in value.items():
        if found.strip().casefold() == folded:
            return cell
    return None


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Parquet -------------------------------------------------------------------------------

def _open_parquet(path: str | None, source: object, name: str, columns: _Columns,
                  resources: contextlib.ExitStack) -> tuple[Iterator[Entry], list[str]]:
    """Entries of a Parquet file, read a batch of the needed columns at a time."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ListFormatError(f"{name}: reading Parquet needs pyarrow: {_PARQUET_HINT}") from None
    if path is not None:
        with open(path, "rb") as probe:  # the system's error for a missing file, as for the others
            if probe.read(2) == _GZIP_MAGIC:
                raise ListFormatError(f"{name}: a gzip-compressed Parquet file; decompress it first "
                                      "(Parquet compresses its own pages)")
        opened: Any = path
    else:
        opened = _seekable(cast(IO[bytes], source), resources)
    try:
        # pre_buffer off, a read buffer on: one page at a time, not the row group's column chunks whole
        file = pyarrow.parquet.ParquetFile(opened, pre_buffer=False, buffer_size=1 << 20)
    except (pyarrow.ArrowException, OSError) as error:
        raise ListFormatError(f"{name}: not a Parquet file ({error})") from None
    resources.callback(file.close)
    names = list(file.schema_arrow.names)
    picks = _picks(names, columns, name=name)
    _check_types(file.schema_arrow, picks, name)
    wanted = sorted({i for i in picks if i is not None})
    batches = file.iter_batches(batch_size=PARQUET_BATCH, columns=[names[i] for i in wanted], use_threads=False)
    places = [None if i is None else wanted.index(i) for i in picks]
    return _parquet_rows(batches, places, name, columns.algorithm, pyarrow.ArrowException), names


def _seekable(stream: IO[bytes], resources: contextlib.ExitStack) -> IO[bytes]:
    """``stream`` when it can seek (Parquet's footer is at its end), else a temporary copy."""
    import shutil
    import tempfile

    with contextlib.suppress(AttributeError, OSError, ValueError):
        if stream.seekable():
            return stream
    copy = resources.enter_context(tempfile.TemporaryFile(prefix="downloader-", suffix=".parquet"))
    shutil.copyfileobj(stream, copy, 1 << 20)
    copy.seek(0)
    return cast(IO[bytes], copy)


def _check_types(schema: Any, picks: list[int | None], name: str) -> None:
    """A usage error for a column whose type no row could use (a URL column of numbers)."""
    import pyarrow.types as t

    def text(kind: Any) -> bool:
        if t.is_dictionary(kind):
            kind = kind.value_type
        return bool(t.is_string(kind) or t.is_large_string(kind) or t.is_binary(kind) or t.is_large_binary(kind)
                    or getattr(t, "is_string_view", lambda _: False)(kind) or t.is_fixed_size_binary(kind)
                    or t.is_null(kind))

    rules: tuple[tuple[str, Callable[[Any], bool]], ...] = (
        ("URL", text),
        ("out", lambda kind: text(kind) or t.is_integer(kind)),
        ("checksum", text),
        ("size", lambda kind: text(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_decimal(kind)),
    )
    for (what, accepts), index in zip(rules, picks):
        if index is not None and not accepts(schema.field(index).type):
            field = schema.field(index)
            raise ListFormatError(f"{name}: column {field.name!r} holds {field.type}, which cannot be a {what}")


def _parquet_rows(batches: Iterable[Any], places: list[int | None], name: str, algorithm: str | None,
                  arrow_error: type[Exception]) -> Iterator[Entry]:
    number = 0
    try:
        for batch in batches:
            values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            none = [None] * batch.num_rows
            for cells in zip(*(none if place is None else values[place] for place in places)):
                number += 1
                entry = _entry(cells, number, name, "row", algorithm)
                if entry is not None:
                    yield entry
    except (arrow_error, OSError) as error:
        yield InvalidJob(f"<row {number + 1}>", f"{name}: cannot read past row {number}: {error}", f"{name}:{number + 1}")


_OPENERS: dict[str, Callable[..., tuple[Iterator[Entry], list[str]]]] = {
    "list": _list_entries,
    "csv": _csv_entries(_DELIMITERS["csv"]),
    "tsv": _csv_entries(_DELIMITERS["tsv"]),
    "jsonl": _jsonl_entries,
}
