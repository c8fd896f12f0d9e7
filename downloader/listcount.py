"""How many entries URL lists hold, counted in a background thread: the progress bar's total.

The reader (:func:`downloader.sources.read_list`) yields one entry per line that is
neither blank nor a comment, so the count is the number of such lines: newlines
counted a block at a time in C (``bytes.count``), less the blank and comment lines
(a regular expression run from the first place that may hold one). The list is
read in 1 MiB blocks and never held: of a line a block leaves unfinished, only
its first byte that is not white space is kept for the next.

A tabular list (:mod:`downloader.tables`) is counted by :func:`count_rows`: its lines
less a CSV's header, or a Parquet file's row count from its footer; gzip lists are
counted uncompressed.

The count is an estimate of what the run will see: an invalid line counts (it ends
as a failure, which is a file done too); white space that only ``str.split`` knows
(NBSP, U+2003...) does not make a line blank here. :class:`downloader.progress.Progress`
never shows more done than the total.

A count runs in a daemon thread and keeps out of the run's way: after each block
(about a millisecond of work) it sleeps a millisecond, which hands the GIL back to
the run's threads and keeps it under about half a core; it stops between two
blocks when the run ends. (A lower OS priority for the thread, tried first, made
things worse: a starved thread that holds the GIL stalls every thread of the process.)
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

__all__ = ["BLOCK_SIZE", "PAUSE", "ByteStream", "Counter", "ListCount", "count_entries", "count_file", "count_rows", "open_list"]

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20
"""Bytes read at a time: large enough that counting costs little more than reading."""
PAUSE = 0.001
"""Seconds a background count sleeps after each block: the run's threads take the GIL meanwhile."""

_GZIP_MAGIC = b"\x1f\x8b"
_MEANINGFUL = re.compile(rb"[^ \t\r\f\v]")  # not white space; searched within one line only
# A newline whose next line is blank or a comment (white space, then '#' or the end of the line).
_SKIPPED = re.compile(rb"\n(?=[ \t\r\f\v]*[#\n])")
# Where _SKIPPED can first match: a simpler expression, a third faster over a block of URLs
# that holds no blank line and no comment (most lists), and _SKIPPED starts from there.
_CANDIDATE = re.compile(rb"\n[ \t\r\f\v#\n]")


def count_entries(stream: ByteStream, stop: threading.Event | None = None, *, block_size: int = BLOCK_SIZE) -> int | None:
    """The lines of the list in ``stream`` that can be entries: neither blank nor comments.

    Lines end with LF (a CR before it is white space); a last line without one counts
    like the others; a UTF-8 byte-order mark before the first line is ignored.

    Args:
        stream: the list, opened for reading bytes (a plain file, a gzip file...).
        stop: when set, the count ends before the next block; when given, the count
            pauses :data:`PAUSE` seconds after each block (it runs beside a download).
        block_size: bytes read at a time.

    Returns:
        The count, or None when ``stop`` was set first.
    """
    entries = 0
    start = b""  # the first meaningful byte of the line a block left unfinished (b"" while none)
    for block in _blocks(stream, block_size):
        if stop is not None and stop.wait(PAUSE):
            return None
        first = block.find(b"\n")
        if first < 0:  # the line goes on
            start = start or _first_meaningful(block, 0)
            continue
        # The line that began before this block ends at ``first``.
        start = start or _first_meaningful(block, 0, first)
        entries += start not in (b"", b"#")
        # Each newline up to the last one starts a line that ends in this block.
        last = block.rfind(b"\n")
        entries += block.count(b"\n", first + 1, last + 1)
        candidate = _CANDIDATE.search(block, first, last + 1)
        if candidate is not None:
            entries -= len(_SKIPPED.findall(block, candidate.start(), last + 1))
        start = _first_meaningful(block, last + 1)
    return entries + (start not in (b"", b"#"))  # a last line without a newline


def _first_meaningful(block: bytes, begin: int, end: int | None = None) -> bytes:
    """The first byte of ``block[begin:end]`` that is not white space, or b"" when there is none:
    all that tells a blank line, a comment and an entry apart."""
    found = _MEANINGFUL.search(block, begin, len(block) if end is None else end)
    return b"" if found is None else found[0]


def _blocks(stream: ByteStream, size: int) -> Iterator[bytes]:
    """The bytes of ``stream``, ``size`` at a time, without a UTF-8 byte-order mark at the start."""
    head = b""
    while len(head) < len(codecs.BOM_UTF8) and (more := stream.read(size)):
        head += more
    yield head.removeprefix(codecs.BOM_UTF8)
    while block := stream.read(size):
        yield block


def open_list(path: str) -> ByteStream:
    """The bytes of the list at ``path``, gunzipped when the file starts as gzip does (as
    :func:`downloader.tables.read_table` reads it, whatever the name)."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    if compressed:
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def count_file(path: str | os.PathLike[str], stop: threading.Event | None = None, *,
               opener: Callable[[str], ByteStream] = open_list) -> int | None:
    """:func:`count_entries` of the list at ``path``, opened with ``opener``: by default
    :func:`open_list` (plain or gzip); any function that returns a stream of the list's bytes.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with contextlib.closing(opener(os.fspath(path))) as stream:
        _advise_sequential(stream)
        return count_entries(stream, stop)


def count_rows(path: str | os.PathLike[str], format: str, stop: threading.Event | None = None) -> int | None:
    """The entries of a list file read in ``format`` (see :mod:`downloader.tables`), estimated
    as cheaply as the run allows:

    * ``list`` and ``jsonl``: :func:`count_file` (a JSON line starting with ``#`` is taken for
      a comment, which none is);
    * ``csv`` and ``tsv``: the same, less the header line (a quoted cell over several lines,
      or a row of empty cells, counts a row too many);
    * ``parquet``: the row count in the file's footer, read at once (needs pyarrow, which
      reading the file needs anyway);
    * a JSON array (``jsonl`` whose first byte is ``[``): unknown (None), its lines say nothing.

    Raises:
        OSError: the file cannot be opened or read.
    """
    if format == "parquet":
        import pyarrow.parquet

        with pyarrow.parquet.ParquetFile(os.fspath(path)) as file:
            rows: int = file.metadata.num_rows
        return rows
    if format == "jsonl":
        with contextlib.closing(open_list(os.fspath(path))) as stream:
            if stream.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
                return None
    lines = count_file(path, stop)
    if lines is None or format not in ("csv", "tsv"):
        return lines
    return max(0, lines - 1)


def _advise_sequential(stream: ByteStream) -> None:
    """Tell the kernel the file is read once from start to end (a larger read-ahead); for a
    compressed stream, its file underneath."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no file under it, or no posix_fadvise
        os.posix_fadvise(getattr(stream, "fileno")(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


class ByteStream(Protocol):
    """What a count reads: a binary stream (a file, a gzip stream, standard input...)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class Counter(Protocol):
    """Counts one list's entries; None when ``stop`` was set first."""

    def __call__(self, stop: threading.Event) -> int | None: ...


class ListCount:
    """The number of entries a run will see: ``known`` (URLs given as arguments) plus the
    entries of each list, counted in one daemon thread by ``counters`` (one per list, in
    order, e.g. ``functools.partial(count_file, path)``).

    :meth:`value` is None until every list is counted, and stays None when a count
    fails (the list cannot be read): the progress then keeps showing what it has seen.
    A :class:`downloader.progress.FileTotal`: the progress starts it with its display
    and stops it when the run ends.
    """

    def __init__(self, counters: Sequence[Counter] = (), *, known: int = 0) -> None:
        self._counters = tuple(counters)
        self._known = known
        self._value: int | None = known if not self._counters else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin counting, once; nothing to do when no list is to be counted."""
        with self._lock:
            if self._thread is not None or not self._counters or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._count, name="downloader-count", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the count (between two blocks) and wait a moment for the thread to finish."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)  # a read stuck on a dead network file system stays behind, a daemon

    def value(self) -> int | None:
        """The total once every list is counted, else None."""
        return self._value

    def _count(self) -> None:
        total = self._known
        for counter in self._counters:
            try:
                counted = counter(self._stop)
            except Exception as error:  # any reader's failure (OSError, a broken gzip stream...)
                log.debug("no total for the progress: counting a list failed: %s", error)
                return
            if counted is None:
                return
            total += counted
        self._value = total

