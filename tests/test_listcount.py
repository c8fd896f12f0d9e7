"""The background count of a list's entries: the progress total."""

from __future__ import annotations

import functools
import gzip
import io
import random
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from downloader.listcount import ListCount, count_entries, count_file, count_rows
from downloader.sources import read_list

URL = b"http://127.0.0.1/a"
BOM = b"\xef\xbb\xbf"


def entries_read(data: bytes) -> int:
    """How many entries the run's own reader yields for ``data``."""
    return sum(1 for _ in read_list(io.BytesIO(data), "list.txt"))


@pytest.mark.parametrize("data, expected", [
    pytest.param(b"", 0, id="empty"),
    pytest.param(URL + b"\n", 1, id="one-line"),
    pytest.param(URL, 1, id="no-final-newline"),
    pytest.param(URL + b"\n" + URL, 2, id="two-lines-no-final-newline"),
    pytest.param(b"\n\n\n", 0, id="only-newlines"),
    pytest.param(b"\n\n" + URL + b"\n\n\n" + URL + b"\n\n", 2, id="blank-lines-around"),
    pytest.param(b"# comment\n" + URL + b"\n#another\n", 1, id="comments"),
    pytest.param(b"   # indented comment\n\t#tab\n" + URL + b"\n", 1, id="indented-comments"),
    pytest.param(b"  \n\t\n \t \n" + URL + b"\n", 1, id="white-space-lines"),
    pytest.param(URL + b"\r\n\r\n" + URL + b"\r\n# c\r\n", 2, id="crlf"),
    pytest.param(URL + b"\r\n" + URL, 2, id="crlf-no-final-newline"),
    pytest.param(URL + b"\n# last comment", 1, id="final-comment-no-newline"),
    pytest.param(URL + b"\n   ", 1, id="final-white-space-no-newline"),
    pytest.param(URL + b"\n  " + URL, 2, id="final-indented-url-no-newline"),
    pytest.param(BOM + URL + b"\n", 1, id="bom"),
    pytest.param(BOM + b"# comment\n" + URL + b"\n", 1, id="bom-then-comment"),
    pytest.param(BOM + b"\n" + URL + b"\n", 1, id="bom-on-a-blank-line"),
    pytest.param(BOM, 0, id="bom-alone"),
    pytest.param(URL + b" out=a#b\n", 1, id="hash-inside-a-line"),
    pytest.param(b"ftp://x/y\nnot a url\n" + URL + b" colour=blue\n", 3, id="invalid-lines-count"),
    pytest.param(b"# \xff\xfe not UTF-8\n\xff\xfe\n", 1, id="not-utf8"),
    pytest.param(b"\f\n\v\n" + URL + b"\n", 1, id="form-feed-and-vertical-tab"),
    pytest.param(URL + b"\r", 1, id="lone-cr-at-the-end"),
])
def test_counts_the_lines_that_can_be_entries(data: bytes, expected: int) -> None:
    """Blank lines and comments are not entries, whatever their white space or line ends."""
    counted = count_entries(io.BytesIO(data))

    assert expected == counted
    assert entries_read(data) == counted  # the reader agrees


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 16, 1 << 20])
def test_block_boundaries_change_nothing(block_size: int) -> None:
    """Random lists, cut into blocks anywhere (inside a CRLF, a BOM, a comment), count as the reader reads them."""
    pieces = [URL, b"", b"   ", b"# c", b"  # d", b"\t", b"\r", URL + b" size=3", b"#", b" " + URL, b"\f"]
    rng = random.Random(12)
    for _ in range(200):
        lines = [rng.choice(pieces) for _ in range(rng.randint(0, 12))]
        data = (BOM if rng.random() < 0.2 else b"") + rng.choice([b"\n", b"\r\n"]).join(lines)
        if rng.random() < 0.5:
            data += b"\n"

        assert entries_read(data) == count_entries(io.BytesIO(data), block_size=block_size), data


def counted_with_peak(path: Path) -> tuple[int | None, int]:
    """count_file of ``path``, and the most memory Python held meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        return count_file(path), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_line_longer_than_any_block_is_one_entry(tmp_path: Path) -> None:
    """A 30 MB line with no newline is counted without being held: memory stays about one block."""
    path = tmp_path / "long-line.txt"
    with open(path, "wb") as file:
        file.write(b"# comment\n   ")
        for _ in range(30):
            file.write(b"x" * (1 << 20))
        file.write(b"\n" + URL + b"\n")

    counted, peak = counted_with_peak(path)

    assert 2 == counted
    assert peak < 4 * (1 << 20), peak


def test_a_large_list_is_counted_in_bounded_memory(tmp_path: Path) -> None:
    """A million lines (56 MB) with comments and blank lines: the exact count, memory of a few blocks."""
    path = tmp_path / "large.txt"
    block = b"".join(b"http://127.0.0.1:8765/bytes/16384/file-%08d.bin\n" % i for i in range(999))
    with open(path, "wb") as file:
        for _ in range(1000):
            file.write(b"# a thousand lines\n" + block)
        file.write(b"\n\n   \r\n")

    counted, peak = counted_with_peak(path)

    assert 999_000 == counted
    assert peak < 4 * (1 << 20), peak


def test_a_compressed_list_is_counted_uncompressed(tmp_path: Path) -> None:
    """A gzip list is counted by its lines, found by its first bytes as the reader finds it
    (whatever its name); another opener can be given."""
    path = tmp_path / "list.txt"
    with gzip.open(path, "wb") as file:
        file.write(b"# urls\n" + b"".join(URL + b"?%d\n" % i for i in range(5000)))

    assert 5000 == count_file(path)
    assert 5000 == count_file(path, opener=gzip.open)


@pytest.mark.parametrize("format, data, expected", [
    pytest.param("list", b"# c\n" + URL + b"\n\n" + URL + b"\n", 2, id="list"),
    pytest.param("csv", b"url,out\n" + URL + b",a\n" + URL + b",b\n", 2, id="csv-less-its-header"),
    pytest.param("csv", b"\xef\xbb\xbfurl\r\n" + URL + b"\r\n\r\n" + URL, 2, id="csv-bom-crlf-blank"),
    pytest.param("tsv", b"url\tout\n" + URL + b"\ta\n", 1, id="tsv"),
    pytest.param("csv", b"url\n", 0, id="csv-header-only"),
    pytest.param("csv", b"", 0, id="csv-empty"),
    pytest.param("jsonl", b'{"url": "http://h/a"}\n\n{"url": "http://h/b"}\n', 2, id="jsonl"),
])
def test_rows_are_counted_as_each_format_reads_them(tmp_path: Path, format: str, data: bytes, expected: int) -> None:
    """count_rows: a table's header is no entry; gzip or not, alike."""
    plain, packed = tmp_path / "plain", tmp_path / "packed.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))

    assert (expected, expected) == (count_rows(plain, format), count_rows(packed, format))


def test_a_parquet_file_is_counted_from_its_footer(tmp_path: Path) -> None:
    """The row count of a Parquet file comes from its metadata, without reading the rows."""
    pa = pytest.importorskip("pyarrow", reason="the Parquet tests need pip install 'downloader[parquet]'")
    parquet = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "list.parquet"
    parquet.write_table(pa.table({"url": [f"http://h/{i}" for i in range(12_345)]}), path, row_group_size=1000)

    assert 12_345 == count_rows(path, "parquet")


def test_a_stopped_count_says_nothing() -> None:
    """With the stop event set, the count ends at the next block and returns None."""
    stop = threading.Event()
    stop.set()

    assert None is count_entries(io.BytesIO(URL + b"\n"), stop)


def test_list_count_adds_the_known_urls_once_every_list_is_counted(tmp_path: Path) -> None:
    """None until started and finished; then the arguments plus each list's entries."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"# a\n" + URL + b"\n" + URL + b"\n")
    second.write_bytes(URL + b"\n\n" + URL)
    total = ListCount([functools.partial(count_file, first), functools.partial(count_file, second)], known=3)

    before = total.value()
    total.start()
    deadline = time.monotonic() + 10
    while total.value() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    total.stop()

    assert (None, 7) == (before, total.value())


def test_list_count_without_lists_is_known_at_once() -> None:
    """URLs as arguments only: the total is their number, without any thread."""
    total = ListCount(known=4)
    total.start()

    assert 4 == total.value()
    assert not any(thread.name == "downloader-count" for thread in threading.enumerate())


def test_a_list_that_cannot_be_read_leaves_the_total_unknown(tmp_path: Path) -> None:
    """A count that fails (the list vanished) never ends the run: the total stays None."""
    total = ListCount([functools.partial(count_file, tmp_path / "gone.txt")], known=1)

    total.start()
    total.stop()

    assert None is total.value()


def test_stop_ends_a_long_count(tmp_path: Path) -> None:
    """The run ending stops the count between two blocks; the total stays unknown."""
    entered = threading.Event()

    def slow(stop: threading.Event) -> int | None:
        entered.set()
        stop.wait(10)
        return None if stop.is_set() else 1

    total = ListCount([slow])
    total.start()
    entered.wait(5)
    started = time.monotonic()
    total.stop()

    assert time.monotonic() - started < 1
    assert None is total.value()


def test_a_json_array_has_no_count(tmp_path: Path) -> None:
    """Its lines say nothing of its elements (pandas writes them all on one): unknown."""
    path = tmp_path / "a.json"
    path.write_text('\ufeff [{"url": "http://example.test/a"}, {"url": "http://example.test/b"}]')
    assert count_rows(path, "jsonl") is None
