"""Tabular lists: CSV, TSV, JSON Lines and Parquet rows read lazily into jobs, as other tools write them."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import downloader
from downloader import Config, Run, Status
from downloader.cli import main
from downloader.errors import InvalidJob, ListFormatError
from downloader.jobs import Job
from downloader.sources import Entry
from downloader.tables import format_of, read_table
from downloader.testing import Server, body

MD5 = hashlib.md5(b"").hexdigest()
SHA1 = hashlib.sha1(b"").hexdigest()
SHA256 = hashlib.sha256(b"").hexdigest()
SHA512 = hashlib.sha512(b"").hexdigest()
BLAKE2B = hashlib.blake2b(b"").hexdigest()


def entries(path: Path, **options: Any) -> list[Entry]:
    """Every entry of a table file."""
    with read_table(path, **options) as table:
        return list(table)


def problems(found: list[Entry]) -> list[str]:
    """The reasons of the invalid entries."""
    return [str(e) for e in found if isinstance(e, InvalidJob)]


def jobs(found: list[Entry]) -> list[Job]:
    return [e for e in found if isinstance(e, Job)]


def write_csv(path: Path, rows: list[list[Any]], **fmt: Any) -> Path:
    with open(path, "w", newline="", encoding=fmt.pop("encoding", "utf-8")) as f:
        csv.writer(f, **fmt).writerows(rows)
    return path


# --- which format ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("urls.csv", "csv"), ("URLS.CSV", "csv"), ("urls.csv.gz", "csv"), ("a.tsv", "tsv"), ("a.tab", "tsv"),
    ("a.tsv.gz", "tsv"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.json", "jsonl"), ("a.jsonl.gz", "jsonl"),
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("urls.txt", "list"), ("urls", "list"), ("urls.txt.gz", "list"),
    ("dir.csv/urls", "list"), ("-", "list"),
])
def test_the_format_comes_from_the_extension(name: str, expected: str) -> None:
    """By the extension, a .gz looked through; a list otherwise."""
    assert expected == format_of(name)


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    """The library refuses a format it does not know, naming those it does."""
    with pytest.raises(ListFormatError, match="known: auto, list, csv"):
        read_table(tmp_path / "x.csv", format="xlsx")  # type: ignore[arg-type]


# --- CSV and TSV -------------------------------------------------------------------------------

ROWS = [
    ["url", "out", "md5", "size"],
    ["http://example.test/a", "plain.bin", MD5, "0"],
    ["http://example.test/b", "with, comma.bin", "", "10"],
    ["http://example.test/c", 'with "quotes".bin', "", ""],
    ["http://example.test/d", "line\nbreak.bin", "", ""],
    ["http://example.test/e", "", "", "7"],
]
EXPECTED = [
    Job("http://example.test/a", out="plain.bin", checksum="md5:" + MD5, size=0),
    Job("http://example.test/b", out="with, comma.bin", size=10),
    Job("http://example.test/c", out='with "quotes".bin'),
    Job("http://example.test/d", out="line\nbreak.bin"),
    Job("http://example.test/e", size=7),
]


@pytest.mark.parametrize("dialect", ["excel", "excel-tab", "unix"])
def test_files_of_every_csv_module_dialect_are_read(tmp_path: Path, dialect: str) -> None:
    """excel (CRLF, minimal quoting), excel-tab (as .tsv), unix (every cell quoted, LF): quoted commas,
    quotes and line breaks in cells, empty cells absent; ROW is the spreadsheet's row, header = row 1."""
    path = write_csv(tmp_path / ("urls.tsv" if dialect == "excel-tab" else "urls.csv"), ROWS, dialect=dialect)

    found = entries(path, out_column="out", checksum_column="md5", size_column="size")

    assert [j.url for j in EXPECTED] == [j.url for j in jobs(found)]
    assert EXPECTED == [Job(j.url, j.out, j.checksum, j.size) for j in jobs(found)]
    assert [f"{path}:{n}" for n in range(2, 7)] == [j.origin for j in jobs(found)]


def test_pandas_style_csv_with_an_index_column(tmp_path: Path) -> None:
    """As DataFrame.to_csv writes it: an unnamed index column, integers with gaps as floats, NaN as
    an empty cell, quoting where needed; a row whose read cells are all empty is skipped."""
    path = tmp_path / "frame.csv"
    path.write_text(",url,name,size\n"
                    "0,http://example.test/a,\"a, b.bin\",1024.0\n"
                    "1,http://example.test/b,b.bin,\n"
                    "2,,,\n"
                    "3,http://example.test/c,c.bin,2048.0\n")

    found = entries(path, out_column="name", size_column="size")

    assert [Job("http://example.test/a", out="a, b.bin", size=1024, origin=f"{path}:2"),
            Job("http://example.test/b", out="b.bin", origin=f"{path}:3"),
            Job("http://example.test/c", out="c.bin", size=2048, origin=f"{path}:5")] == found


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_byte_order_mark_is_dropped(tmp_path: Path, encoding: str) -> None:
    """A UTF-8 BOM (Excel's 'CSV UTF-8') is not part of the first column's name; a UTF-16 file with its
    BOM (Excel's 'Unicode text') is decoded."""
    path = write_csv(tmp_path / "bom.csv", [["url", "out"], ["http://example.test/é", "café.bin"]], encoding=encoding)

    assert [Job("http://example.test/é", out="café.bin", origin=f"{path}:2")] == entries(path, out_column="out")


def test_gzip_compressed_text_is_read_as_it_comes(tmp_path: Path) -> None:
    """urls.csv.gz is gunzipped while read, and so is a gzip list whatever its name."""
    path = tmp_path / "urls.csv.gz"
    path.write_bytes(gzip.compress(b"url\r\nhttp://example.test/a\r\nhttp://example.test/b\r\n"))
    listing = tmp_path / "urls.txt.gz"
    listing.write_bytes(gzip.compress(b"http://example.test/a out=x\n"))

    assert ["http://example.test/a", "http://example.test/b"] == [j.url for j in jobs(entries(path))]
    assert [Job("http://example.test/a", out="x", origin=f"{listing}:1")] == entries(listing)


def test_a_gzip_stream_cut_short_ends_with_a_failed_entry(tmp_path: Path) -> None:
    """The rows before the cut are read; the rest is one failed entry, never an exception out of the run."""
    text = "url\n" + "".join(f"http://example.test/{i}\n" for i in range(5000))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(text.encode())[:-200])

    found = entries(path)

    assert len(jobs(found)) > 4000
    assert "cannot read the rest of the file" in problems(found)[-1]


def test_names_are_matched_exactly_then_ignoring_case(tmp_path: Path) -> None:
    """'URL' answers --url-column url; an exact match wins over another column differing in case;
    two columns differing only in case are ambiguous."""
    path = write_csv(tmp_path / "a.csv", [[" URL ", "Size"], ["http://example.test/a", "3"]])
    exact = write_csv(tmp_path / "b.csv", [["Url", "url"], ["http://example.test/x", "http://example.test/y"]])
    ambiguous = write_csv(tmp_path / "c.csv", [["Url", "URL"], ["http://example.test/x", "http://example.test/y"]])

    assert [Job("http://example.test/a", size=3, origin=f"{path}:2")] == entries(path, size_column="size")
    assert ["http://example.test/y"] == [j.url for j in jobs(entries(exact))]
    with pytest.raises(ListFormatError, match="ambiguous"):
        read_table(ambiguous)


def test_a_missing_column_is_an_error_naming_the_columns_found(tmp_path: Path) -> None:
    """Before any row: the file, the column asked for, those found and the option that names it."""
    path = write_csv(tmp_path / "a.csv", [["link", "filename"], ["http://example.test/a", "a"]])

    with pytest.raises(ListFormatError) as url:
        read_table(path)
    with pytest.raises(ListFormatError) as out:
        read_table(path, url_column="link", out_column="name")

    assert f"{path}: no column 'url' (found: 'link', 'filename'); --url-column names it" == str(url.value)
    assert "no column 'name'" in str(out.value) and "--out-column" in str(out.value)


def test_rclone_style_rows_without_a_header_are_url_then_name(tmp_path: Path) -> None:
    """``rclone copyurl --urls`` reads url[,filename] rows with no header: so do we, when
    the first cell is a URL and no column is asked for by name."""
    path = write_csv(tmp_path / "a.csv", [["http://example.test/a", "a.bin"], ["http://example.test/b"],
                                         ["http://example.test/c", ""], ["ftp://example.test/d", "d.bin"]])

    found = entries(path)

    assert [Job("http://example.test/a", out="a.bin", origin=f"{path}:1"),
            Job("http://example.test/b", origin=f"{path}:2"),
            Job("http://example.test/c", origin=f"{path}:3")] == jobs(found)
    assert [f"{path}:4: unsupported scheme 'ftp' (only http and https)"] == problems(found)


def test_a_file_without_a_header_row_is_told_so_when_columns_are_named(tmp_path: Path) -> None:
    """Columns asked for by name need a header row: a first row holding a URL says so."""
    path = write_csv(tmp_path / "a.csv", [["http://example.test/a", "a.bin"]])

    with pytest.raises(ListFormatError, match="a header row naming the columns is required"):
        read_table(path, out_column="filename")


def test_semicolons_are_found_when_the_header_says_so(tmp_path: Path) -> None:
    """A European Excel CSV (';'): the separator under which the header holds the URL column."""
    path = write_csv(tmp_path / "a.csv", [["url", "size"], ["http://example.test/a?x=1,2", "5"]], delimiter=";")

    assert [Job("http://example.test/a?x=1,2", size=5, origin=f"{path}:2")] == entries(path, size_column="size")


def test_bad_rows_fail_with_file_and_row(tmp_path: Path) -> None:
    """Each bad row is one InvalidJob 'FILE:ROW: what is wrong', rows counted as a spreadsheet does
    (a quoted line break stays in its row; blank rows count and are skipped); good rows go on."""
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"url,out,checksum,size\n"                        # 1
        b"http://example.test/ok,\"two\nlines\",,\n"       # 2
        b",a.bin,,\n"                                      # 3 no URL
        b"ftp://example.test/a,,,\n"                       # 4
        b"http://example.test/size,,,1.5\n"                # 5
        b"http://example.test/sum,,md5:zz,\n"              # 6
        b"http://example.test/\xff,,,\n"                   # 7 not UTF-8
        b",,,\n"                                           # 8 blank
        b"\n"                                              # 9 blank
        b"http://example.test/name,\xe9t\xe9.bin,,\n"      # 10 not UTF-8 (Latin-1)
        b"http://example.test/short\n"                     # 11 fewer cells than the header
        b"http://example.test/sum2,,12345,\n")             # 12

    found = entries(path, out_column="out", checksum_column="checksum", size_column="size")

    assert [f"{path}:3: no URL",
            f"{path}:4: unsupported scheme 'ftp' (only http and https)",
            f"{path}:5: size must be a whole number of bytes, got '1.5'",
            f"{path}:6: md5 must be 32 hex digits, got 'zz'",
            f"{path}:7: URL is not UTF-8",
            f"{path}:10: out is not UTF-8",
            f"{path}:12: checksum must be ALG:HEX or the hex digits of md5, sha1, sha256 or sha512, got '12345'",
            ] == problems(found)
    assert [f"{path}:2", f"{path}:11"] == [j.origin for j in jobs(found)]
    assert ["<row 3>", "http://example.test/\ufffd"] == [e.url for e in found if isinstance(e, InvalidJob)][:5:4]


def test_a_cell_larger_than_the_csv_module_default_is_read(tmp_path: Path) -> None:
    """A 1 MB caption beside the URL (the csv module refuses 128 KiB by default)."""
    path = write_csv(tmp_path / "a.csv", [["url", "caption"], ["http://example.test/a", "x" * 1_000_000]])

    assert [Job("http://example.test/a", origin=f"{path}:2")] == entries(path)


def test_a_cell_over_the_limit_fails_its_row_and_the_next_rows_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell longer than MAX_CELL (a quote never closed, a blob) fails its row, not the file."""
    from downloader import tables

    path = write_csv(tmp_path / "a.csv", [["url", "caption"], ["http://example.test/a", "x" * 5000],
                                          ["http://example.test/b", "short"]])
    monkeypatch.setattr(tables, "MAX_CELL", 1000)
    saved = csv.field_size_limit(1000)
    try:
        found = entries(path)
    finally:
        csv.field_size_limit(saved)

    assert [f"{path}:2: field larger than field limit (1000) (a cell longer than 1000 characters, "
            "or a quote never closed)"] == problems(found)
    assert [Job("http://example.test/b", origin=f"{path}:3")] == jobs(found)


@pytest.mark.parametrize(("column", "cell", "expected"), [
    ("md5", MD5, "md5:" + MD5),
    ("MD5", MD5.upper(), "md5:" + MD5),
    ("sha1", SHA1, "sha1:" + SHA1),
    ("blake2b", BLAKE2B, "blake2b:" + BLAKE2B),
    ("checksum", MD5, "md5:" + MD5),
    ("checksum", SHA1, "sha1:" + SHA1),
    ("checksum", SHA256, "sha256:" + SHA256),
    ("checksum", SHA512, "sha512:" + SHA512),
    ("checksum", "blake2b:" + BLAKE2B, "blake2b:" + BLAKE2B),
    ("checksum", "SHA256:" + SHA256.upper(), "sha256:" + SHA256),
    ("md5", "sha1:" + SHA1, "sha1:" + SHA1),
])
def test_checksum_cells(tmp_path: Path, column: str, cell: str, expected: str) -> None:
    """ALG:HEX as written; bare hex of the algorithm the column is named after, else by its length
    (128 digits are sha512: blake2b needs the blake2b: form or a column named blake2b)."""
    path = write_csv(tmp_path / "a.csv", [["url", column], ["http://example.test/a", cell]])

    (job,) = entries(path, checksum_column=column)

    assert expected == job.checksum  # type: ignore[union-attr]


@pytest.mark.parametrize(("column", "cell", "problem"), [
    ("md5", SHA1, "md5 must be 32 hex digits"),
    ("sha256", "xyz", "sha256 must be 64 hex digits"),
    ("checksum", "a" * 33, "checksum must be ALG:HEX or the hex digits"),
    ("checksum", "crc32:abcd", "unknown checksum algorithm 'crc32'"),
])
def test_bad_checksum_cells(tmp_path: Path, column: str, cell: str, problem: str) -> None:
    path = write_csv(tmp_path / "a.csv", [["url", column], ["http://example.test/a", cell]])

    (error,) = problems(entries(path, checksum_column=column))

    assert error.startswith(f"{path}:2: {problem}")


def test_an_empty_file_has_no_rows(tmp_path: Path) -> None:
    """No header, no rows: nothing to do, no error."""
    (tmp_path / "empty.csv").write_bytes(b"")

    assert [] == entries(tmp_path / "empty.csv")


# --- JSON Lines ----------------------------------------------------------------------------------

def test_json_lines_with_extra_keys_bad_lines_and_nulls(tmp_path: Path) -> None:
    """One object per line, other keys ignored, null = absent, numbers as numbers; each bad line is
    'FILE:LINE: what is wrong' and the others go on."""
    path = tmp_path / "urls.jsonl"
    lines = [
        json.dumps({"url": "http://example.test/a", "size": 5, "caption": "x", "meta": {"w": 1}}),  # 1
        "",                                                                                         # 2
        json.dumps({"url": "http://example.test/b", "size": None, "md5": None, "key": 7}),          # 3
        json.dumps({"url": 5}),                                                                     # 4
        "{not json",                                                                                # 5
        "[1, 2]",                                                                                   # 6
        json.dumps({"url": "http://example.test/c", "size": 1.5}),                                  # 7
        json.dumps({"url": "http://example.test/d", "size": "12"}),                                 # 8
        json.dumps({"url": "http://example.test/e", "size": True}),                                 # 9
        json.dumps({"URL": "http://example.test/f", "md5": MD5, "key": 9}),                         # 10
        json.dumps({"caption": "no url"}),                                                          # 11
        json.dumps({"url": None, "key": 3}),                                                        # 12
        json.dumps({"url": None, "size": 3}),                                                       # 13
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"url": "http://example.test/\xff"}\n')

    found = entries(path, checksum_column="md5", size_column="size", out_column="key")

    assert [Job("http://example.test/a", size=5, origin=f"{path}:1"),
            Job("http://example.test/b", out="7", origin=f"{path}:3"),
            Job("http://example.test/d", size=12, origin=f"{path}:8"),
            Job("http://example.test/f", out="9", checksum="md5:" + MD5, origin=f"{path}:10")] == jobs(found)
    assert [f"{path}:4: URL must be text, got 5",
            f"{path}:5: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
            f"{path}:6: not a JSON object: [1, 2]",
            f"{path}:7: size must be a whole number of bytes, got 1.5",
            f"{path}:9: size must be a whole number of bytes, got True",
            f"{path}:12: no URL",
            f"{path}:13: no URL",
            f"{path}:14: line is not UTF-8 (invalid start byte)"] == problems(found)


def test_a_json_array_of_records_is_read_an_element_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas' to_json(orient="records") writes one array: its elements are decoded one at a
    time (blocks of 64 KiB), ROW being the element's position; a bad element ends the array."""
    import downloader.tables as tables

    records = [{"url": f"http://example.test/{i}", "name": f"f{i}.bin", "big": "x" * 5000} for i in range(40)]
    path = tmp_path / "urls.json"
    path.write_text(" \n[\n" + ",\n  ".join(json.dumps(r) for r in records) + "\n]\n")
    monkeypatch.setattr(tables, "_JSON_BLOCK", 1000)  # elements span many blocks

    found = entries(path, out_column="name")

    assert [Job(f"http://example.test/{i}", out=f"f{i}.bin", origin=f"{path}:{i + 1}") for i in range(40)] == jobs(found)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"url": "http://example.test/a"}, {"url": "http://example.test/b", }, {"url": "x"}]')
    found = entries(bad)
    assert ["http://example.test/a"] == [job.url for job in jobs(found)]
    assert [f"{bad}:2: invalid JSON"] == [p.split(" (")[0] for p in problems(found)]
    assert "the rest of the array is not read" in problems(found)[0]


@pytest.mark.parametrize(("text", "urls", "problem"), [
    ("[]", [], None),
    ("[ ]\n", [], None),
    ('[{"url": "http://example.test/a"}', ["http://example.test/a"], ":2: invalid JSON (expected ','"),
    ('[{"url": "http://example.test/a"} {"url": "http://example.test/b"}]', ["http://example.test/a"], ":2:"),
    ('[{"url": "http://example.test/a"', [], ":1: invalid JSON"),
    ("[", [], ":1: invalid JSON"),
])
def test_json_arrays_cut_or_malformed(tmp_path: Path, text: str, urls: list[str], problem: str | None) -> None:
    path = tmp_path / "a.json"
    path.write_text(text)
    found = entries(path)
    assert urls == [job.url for job in jobs(found)]
    assert ([problem] if problem else []) == [problem for p in problems(found) if problem in p]
    assert len(problems(found)) == (1 if problem else 0)


def test_the_first_object_without_the_url_key_is_a_usage_error(tmp_path: Path) -> None:
    """The first object's keys are the file's columns: a URL key missing there is named at once."""
    path = tmp_path / "urls.ndjson"
    path.write_text('\n{"link": "http://example.test/a", "id": 1}\n')

    with pytest.raises(ListFormatError) as error:
        read_table(path)

    assert f"{path}:2: no key 'url' (found: 'link', 'id'); --url-column names it" == str(error.value)
    assert ["http://example.test/a"] == [j.url for j in jobs(entries(path, url_column="link"))]


def test_json_lines_from_a_gzip_stream_with_an_explicit_format() -> None:
    """A stream (standard input) has no name: the format is told, gzip is found by its bytes."""
    data = gzip.compress(b'\xef\xbb\xbf{"url": "http://example.test/a"}\r\n')

    table = read_table(io.BytesIO(data), format="jsonl", name="<stdin>")

    assert [Job("http://example.test/a", origin="<stdin>:1")] == list(table)


# --- Parquet -------------------------------------------------------------------------------------

def parquet_module() -> Any:
    return pytest.importorskip("pyarrow.parquet", reason="the Parquet tests need pip install 'downloader[parquet]'")


def test_parquet_over_several_row_groups_with_null_cells(tmp_path: Path) -> None:
    """Rows numbered from 1 across row groups and batches; null cells absent; integer sizes, an
    integer column as out, raw digest bytes as hex, a dictionary-encoded URL column."""
    pq = parquet_module()
    import pyarrow as pa

    count = 10_000
    urls = pa.array([f"http://example.test/{i}" if i % 1000 else None for i in range(count)]).dictionary_encode()
    table = pa.table({
        "url": urls,
        "key": pa.array(list(range(count)), pa.int64()),
        "size": pa.array([i if i % 3 else None for i in range(count)], pa.int32()),
        "md5": pa.array([hashlib.md5(str(i).encode()).digest() if i % 2 else None for i in range(count)], pa.binary()),
        "caption": pa.array(["c"] * count),
    })
    path = tmp_path / "urls.parquet"
    pq.write_table(table, path, row_group_size=3000)
    assert 4 == pq.ParquetFile(path).metadata.num_row_groups

    found = entries(path, out_column="key", size_column="size", checksum_column="md5")

    assert count == len(found)
    assert [f"{path}:{i + 1}: no URL" for i in range(0, count, 1000)] == problems(found)
    seventh = found[7]
    assert Job("http://example.test/7", out="7", checksum="md5:" + hashlib.md5(b"7").hexdigest(), size=7,
               origin=f"{path}:8") == seventh
    assert Job("http://example.test/9999", out="9999", checksum="md5:" + hashlib.md5(b"9999").hexdigest(),
               origin=f"{path}:10000") == found[-1]


def test_parquet_as_pandas_writes_it(tmp_path: Path) -> None:
    """A pandas frame's file: its index as __index_level_0__, pandas metadata, float sizes with NaN
    (null once written), string checksums."""
    pq = parquet_module()
    import pyarrow as pa

    table = pa.table({"URL": ["http://example.test/a", "http://example.test/b"], "sha256": [SHA256, None],
                      "bytes": pa.array([10.0, None], pa.float64()), "__index_level_0__": [4, 9]})
    table = table.replace_schema_metadata({b"pandas": b'{"index_columns": ["__index_level_0__"]}'})
    path = tmp_path / "frame.pq"
    pq.write_table(table, path)

    found = entries(path, checksum_column="sha256", size_column="bytes")

    assert [Job("http://example.test/a", checksum="sha256:" + SHA256, size=10, origin=f"{path}:1"),
            Job("http://example.test/b", origin=f"{path}:2")] == found


def test_parquet_columns_missing_or_of_the_wrong_type_are_usage_errors(tmp_path: Path) -> None:
    """Told when opened: the columns found, or the column's type."""
    pq = parquet_module()
    import pyarrow as pa

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"link": ["http://example.test/a"], "n": [1], "when": pa.array([1.5])}), path)

    with pytest.raises(ListFormatError, match=r"no column 'url' \(found: 'link', 'n', 'when'\)"):
        read_table(path)
    with pytest.raises(ListFormatError, match="column 'n' holds int64, which cannot be a URL"):
        read_table(path, url_column="n")
    with pytest.raises(ListFormatError, match="column 'when' holds double, which cannot be a checksum"):
        read_table(path, url_column="link", checksum_column="when")


def test_a_file_that_is_not_parquet_is_a_usage_error(tmp_path: Path) -> None:
    parquet_module()
    path = tmp_path / "a.parquet"
    path.write_text("url\nhttp://example.test/a\n")

    with pytest.raises(ListFormatError, match="not a Parquet file"):
        read_table(path)


def test_parquet_from_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    """Standard input: copied to a temporary file first (the footer is at the end)."""
    pq = parquet_module()
    import pyarrow as pa

    buffer = io.BytesIO()
    pq.write_table(pa.table({"url": ["http://example.test/a"]}), buffer)

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, target: Any) -> int:
            return self._data.readinto(target)

    with read_table(io.BufferedReader(Pipe(buffer.getvalue())), format="parquet", name="<stdin>") as table:
        assert [Job("http://example.test/a", origin="<stdin>:1")] == list(table)


def test_without_pyarrow_parquet_is_a_usage_error_naming_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """pip install 'downloader[parquet]' is the way out, from the library and the command line."""
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(ListFormatError, match=r"needs pyarrow: pip install 'downloader\[parquet\]'"):
        read_table(path)
    status = main(["-i", str(path), "-d", str(tmp_path / "out"), "-q"])

    assert 2 == status
    assert "pip install 'downloader[parquet]'" in capsys.readouterr().err


# --- runs: command line, both engines ----------------------------------------------------------------

def test_a_csv_run_and_its_failed_list_rerun(server: Server, engine: str, tmp_path: Path) -> None:
    """A CSV (rclone-style: url,filename plus md5 and size) on the command line: every good row lands
    under its out name; the failed rows go to --failed as list lines with out (spaces quoted), the
    checksum and the size, and that list re-runs them; an invalid row is only a comment there."""
    names = [f"csv-{engine}-{i}.bin" for i in range(6)]
    flaky = server.url(f"/bytes/300/{names[5]}?status=503&times=1")
    rows = [["url", "filename", "md5", "size"]]
    rows += [[server.file_url(n, 100 + i), f"sub dir/{n}", hashlib.md5(body(n, 100 + i)).hexdigest(), str(100 + i)]
             for i, n in enumerate(names[:5])]
    rows += [[flaky, f"flaky {names[5]}", hashlib.md5(body(names[5], 300)).hexdigest(), "300"],
             ["not-a-url", "x.bin", "", ""]]
    listing = write_csv(tmp_path / "urls.csv", rows)
    dest, failed = tmp_path / "out", tmp_path / "failed.txt"
    options = ["-d", str(dest), "-e", engine, "-q", "--retries", "0"]

    first = main(["-i", str(listing), "--out-column", "filename", "--checksum-column", "md5",
                  "--size-column", "size", "--failed", str(failed), *options])
    written = failed.read_text()
    again = main(["-i", str(failed), *options])

    assert (1, 0) == (first, again)
    for i, n in enumerate(names[:5]):
        assert body(n, 100 + i) == (dest / "sub dir" / n).read_bytes()
    assert body(names[5], 300) == (dest / f"flaky {names[5]}").read_bytes()
    assert f'{flaky}   out="flaky {names[5]}"   md5={rows[6][2]}   size=300' in written.splitlines()
    assert f"# {listing}:8: unsupported scheme 'none' (only http and https)" in written
    assert "# not-a-url" in written.splitlines()


def test_a_parquet_run_img2dataset_style(server: Server, config: Config, tmp_path: Path) -> None:
    """An img2dataset-style Parquet (url, caption, key) through the library: read_table with Run."""
    pq = parquet_module()
    import pyarrow as pa

    count = 50
    names = [f"pq-{config.engine}-{i}.jpg" for i in range(count)]
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"url": [server.file_url(n, 64 + i) for i, n in enumerate(names)],
                             "caption": [f"a picture {i}" for i in range(count)],
                             "key": [f"{i:09d}.jpg" for i in range(count)]}), path, row_group_size=16)
    results: list[Any] = []

    summary = Run(config, on_result=results.append)(downloader.read_table(path, out_column="key"))

    assert (count, 0) == (summary.downloaded, summary.failed)
    assert {f"{path}:{i + 1}" for i in range(count)} == {r.origin for r in results}
    for i, n in enumerate(names):
        assert body(n, 64 + i) == (config.dest / f"{i:09d}.jpg").read_bytes()


def test_download_takes_the_entries_of_a_table(server: Server, config: Config, tmp_path: Path) -> None:
    """download(read_table(...)): the jobs are fetched, a bad row ends as a failed result with its FILE:ROW."""
    listing = write_csv(tmp_path / "a.csv", [["url"], [server.file_url(f"dl-{config.engine}.bin", 12)], ["ftp://x/y"]])

    results = downloader.download(downloader.read_table(listing), config=config)

    assert [(Status.DOWNLOADED, f"{listing}:2"), (Status.FAILED, f"{listing}:3")] == sorted(
        (r.status, r.origin) for r in results)


def test_a_checksum_file_applies_to_the_rows_of_a_table(server: Server, engine: str, tmp_path: Path) -> None:
    """--checksums goes by the output name a row's out column gives; a row's own checksum wins."""
    names = [f"sums-{engine}-{i}.bin" for i in range(3)]
    digests = [hashlib.sha256(body(n, 50)).hexdigest() for n in names]
    listing = write_csv(tmp_path / "a.csv", [["url", "name", "sha256"],
                                             [server.file_url(names[0], 50), f"d/{names[0]}", ""],
                                             [server.file_url(names[1], 50), f"d/{names[1]}", ""],
                                             [server.file_url(names[2], 50), f"d/{names[2]}", digests[2]]])
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{digests[0]}  d/{names[0]}\n{'0' * 64}  d/{names[1]}\n{'0' * 64}  d/{names[2]}\n")
    report = tmp_path / "report.jsonl"

    status = main(["-i", str(listing), "--out-column", "name", "--checksum-column", "sha256", "--checksums", str(sums),
                   "-d", str(tmp_path / "out"), "-e", engine, "-q", "--retries", "0", "--report", str(report)])

    records = {r["origin"]: r for r in map(json.loads, report.read_text().splitlines()) if r["type"] == "result"}
    assert 1 == status
    assert ["downloaded", "failed", "downloaded"] == [records[f"{listing}:{n}"]["status"] for n in (2, 3, 4)]
    assert "sha256 mismatch" in records[f"{listing}:3"]["error"]


def test_parquet_and_tsv_on_the_command_line_with_stdin(
        server: Server, engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parquet by its name and a TSV on standard input with --input-format: one format for every -i."""
    pq = parquet_module()
    import pyarrow as pa

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"link": [server.file_url(f"cli-{engine}-pq.bin", 10)]}), path)
    stdin = tmp_path / "stdin.tsv"
    stdin.write_text(f"link\tnote\n{server.file_url(f'cli-{engine}-tsv.bin', 20)}\tx\n")
    dest = tmp_path / "out"

    with open(stdin, "rb") as f:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(f))
        status = main(["-i", "-", "--input-format", "tsv", "--url-column", "link", "-d", str(dest), "-e", engine, "-q"])
    both = main(["-i", str(path), "--url-column", "link", "-d", str(dest), "-e", engine, "-q"])

    assert (0, 0) == (status, both)
    assert body(f"cli-{engine}-pq.bin", 10) == (dest / f"cli-{engine}-pq.bin").read_bytes()
    assert body(f"cli-{engine}-tsv.bin", 20) == (dest / f"cli-{engine}-tsv.bin").read_bytes()


def test_usage_errors_of_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing column, and column options with no tabular list: exit 2 before anything is fetched."""
    listing = write_csv(tmp_path / "a.csv", [["link"], ["http://127.0.0.1:9/a"]])
    plain = tmp_path / "a.txt"
    plain.write_text("http://127.0.0.1:9/a\n")

    missing = main(["-i", str(listing), "-d", str(tmp_path / "out")])
    missing_err = capsys.readouterr().err
    pointless = main(["-i", str(plain), "--out-column", "name", "-d", str(tmp_path / "out")])

    assert (2, 2) == (missing, pointless)
    assert f"{listing}: no column 'url' (found: 'link')" in missing_err
    assert "--out-column apply to tabular lists" in capsys.readouterr().err


def test_dry_run_shard_and_processes_read_a_table(server: Server, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run plans every row with its FILE:ROW; two shards cover the table exactly; --processes 2
    fetches it all, the parent reading the table (the row without a URL fails: its size is read)."""
    names = [f"spread-{i}.bin" for i in range(40)]
    listing = write_csv(tmp_path / "a.csv", [["url", "size"]] + [[server.file_url(n, 10), "10"] for n in names]
                        + [["", "10"]])
    dest = tmp_path / "out"

    dry = main(["-i", str(listing), "--size-column", "size", "-d", str(dest), "--dry-run"])
    plan = capsys.readouterr().out
    shards = [main(["-i", str(listing), "-d", str(tmp_path / f"shard{k}"), "--shard", f"{k}/2", "-q"]) for k in (1, 2)]
    spread = main(["-i", str(listing), "--size-column", "size", "-d", str(dest), "--processes", "2", "-q"])

    assert 1 == dry and f"{listing}:42: no URL" in plan and "download 40" in plan.splitlines()[-1]
    assert all(s in (0, 1) for s in shards)
    assert sorted(names) == sorted(p.name for k in (1, 2) for p in (tmp_path / f"shard{k}").glob("*.bin"))
    assert 1 == spread
    assert sorted(names) == sorted(p.name for p in dest.glob("*.bin"))


def test_a_dask_client_reads_the_table(server: Server, tmp_path: Path) -> None:
    """--dask local:1: the client reads the CSV and the workers fetch its rows."""
    pytest.importorskip("distributed", reason="the --dask test needs pip install 'downloader[dask]'")
    names = [f"dask-{i}.bin" for i in range(10)]
    listing = write_csv(tmp_path / "a.csv", [["url", "out"]] + [[server.file_url(n, 30), f"d/{n}"] for n in names])
    dest = tmp_path / "out"

    status = main(["-i", str(listing), "--out-column", "out", "-d", str(dest), "--dask", "local:1", "-q"])

    assert 0 == status
    assert sorted(names) == sorted(p.name for p in (dest / "d").glob("*.bin"))


# --- a million rows, bounded ---------------------------------------------------------------------------

_MEASURE = """
import itertools, resource, sys, time
from downloader.tables import read_table
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
path, small = sys.argv[1:]
for _ in read_table(small, size_column="size"):  # loads the libraries a read needs
    pass
before = peak()
started = time.perf_counter()
rows = read_table(path, size_column="size")
count = sum(1 for entry in itertools.islice(rows, 200_000) if entry.origin)
early = peak()
count += sum(1 for entry in rows if entry.origin)
elapsed = time.perf_counter() - started
print(count, peak() - before, peak() - early, count / elapsed)
"""


def measured(path: Path, small: Path) -> tuple[int, int, int, float]:
    """In a fresh process: rows read, growth of the peak RSS past a first small read, growth past the
    first 200,000 rows, rows per second."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(small)], capture_output=True, text=True,
                          timeout=120)
    assert 0 == done.returncode, done.stderr
    count, growth, late, rate = done.stdout.split()
    return int(count), int(growth), int(late), float(rate)


MILLION = 1_000_000


def test_a_million_csv_rows_are_read_in_bounded_memory(tmp_path: Path) -> None:
    """10^6 rows read as a stream: the peak RSS does not grow past the first rows, and by a few MiB at
    most in all (holding the jobs takes 300 MiB)."""
    path, small = tmp_path / "million.csv", tmp_path / "small.csv"
    with open(path, "w") as f:
        f.write("url,size\n")
        for start in range(0, MILLION, 100_000):
            f.write("".join(f"http://example.test/files/{i:07d}.bin,{i}\n" for i in range(start, start + 100_000)))
    small.write_text("url,size\nhttp://example.test/a,1\n")

    count, growth, late, rate = measured(path, small)

    assert MILLION == count
    assert growth < 16 * 2**20 and late < 8 * 2**20, f"peak RSS grew by {growth}, {late} bytes ({rate:.0f} rows/s)"


def test_a_million_parquet_rows_are_read_in_bounded_memory(tmp_path: Path) -> None:
    """10^6 rows in one row group (pyarrow's default) read a batch at a time: the peak RSS does not grow
    past the first rows; in all, pyarrow's pools and buffers take about 30 MiB (holding the jobs, 300)."""
    pq = parquet_module()
    import pyarrow as pa

    path, small = tmp_path / "million.parquet", tmp_path / "small.parquet"
    urls = pa.array([f"http://example.test/files/{i:07d}.bin" for i in range(MILLION)])
    pq.write_table(pa.table({"url": urls, "size": pa.array(range(MILLION), pa.int64())}), path)
    pq.write_table(pa.table({"url": ["http://example.test/a"], "size": [1]}), small)
    assert 1 == pq.ParquetFile(path).metadata.num_row_groups

    count, growth, late, rate = measured(path, small)

    assert MILLION == count
    assert growth < 64 * 2**20 and late < 8 * 2**20, f"peak RSS grew by {growth}, {late} bytes ({rate:.0f} rows/s)"
