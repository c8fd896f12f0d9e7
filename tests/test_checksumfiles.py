"""Checksum files (--checksums): what md5sum, sha*sum, b2sum and archives write, read and applied by output name."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from downloader import ChecksumFileError, Config, Job, Status, download
from downloader import naming
from downloader.checksumfiles import (SHOWN, ChecksumLine, ChecksumTable, _output_path, algorithm_hint, name_key,
                                      read_file)
from downloader.cli import main
from downloader.errors import DownloadError, InvalidJob
from downloader.naming import Layout
from downloader.testing import Server, body

from conftest import local_dask

# Names that take every path of coreutils' writers: spaces, a leading space, a star, and
# the backslash, line feed and carriage return it escapes (a line starting with "\").
NAMES = {
    "plain.txt": b"a",
    "with space.txt": b"b",
    " lead": b"c",
    "star*name": b"d",
    "back\\slash": b"e",
    "new\nline": b"f",
    "cr\rname": b"g",
}
TOOLS = {"md5sum": "md5", "sha1sum": "sha1", "sha256sum": "sha256", "sha512sum": "sha512", "b2sum": "blake2b"}


def digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def written(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def read(path: Path) -> dict[str, str]:
    return {line.name: line.checksum for line in read_file(path)}


def table_of(tmp_path: Path, **files: str) -> ChecksumTable:
    return ChecksumTable.read([written(tmp_path, name.replace("_", "."), text) for name, text in files.items()])


def hexes(algorithm: str, data: bytes) -> str:
    return hashlib.new(algorithm, data).hexdigest()


# -- what the tools write ---------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory holding NAMES and a sub/inner.bin, to run the tools in."""
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    for name, data in NAMES.items():
        (root / name).write_bytes(data)
    (root / "sub" / "inner.bin").write_bytes(b"h")
    return root


@pytest.mark.parametrize("tool", list(TOOLS))
@pytest.mark.parametrize("options", [[], ["--tag"], ["-b"]], ids=["text", "tag", "binary"])
def test_the_coreutils_outputs_are_read(files: Path, tmp_path: Path, tool: str, options: list[str]) -> None:
    """Each tool's output, in text, binary and --tag form, gives every name (escaped ones too) its digest."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    names = [*NAMES, "sub/inner.bin"]
    output = subprocess.run([tool, *options, "--", *names], cwd=files, capture_output=True, check=True).stdout
    # An untagged b2sum digest has sha512's length: the file's name tells them apart, as B2SUMS does.
    sums = written(tmp_path, "B2SUMS" if tool == "b2sum" else "SUMS", output)
    algorithm = TOOLS[tool]

    found = read(sums)

    assert {name: digest(algorithm, (files / name).read_bytes()) for name in names} == found
    if "-b" in options:
        assert b" *plain.txt\n" in output
    assert b"\\" == output[:1] or b"\n\\" in output  # the escaped form was exercised


@pytest.mark.parametrize("tool", list(TOOLS))
def test_a_digest_of_standard_input_in_x_dot_alg_names_x(tmp_path: Path, tool: str) -> None:
    """``sha256sum < X > X.sha256`` writes the name ``-``: the digest is X's."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    extension = {"b2sum": "b2"}.get(tool, TOOLS[tool])
    output = subprocess.run([tool], input=b"payload", capture_output=True, check=True).stdout
    assert output.endswith(b"  -\n")

    found = read(written(tmp_path, f"image.iso.{extension}", output))

    assert {"image.iso": digest(TOOLS[tool], b"payload")} == found


def test_the_archives_forms_are_read(tmp_path: Path) -> None:
    """NCBI's md5checksums.txt (``./name``), Debian's SHA256SUMS, a lone digest in X.sha256."""
    md5 = written(tmp_path, "md5checksums.txt",
                  f"{hexes('md5', b'1')}  ./GCF_000001405.40_GRCh38.p14_genomic.fna.gz\n"
                  f"{hexes('md5', b'2')}  ./README.txt\n")
    debian = written(tmp_path, "SHA256SUMS",
                     f"{hexes('sha256', b'3')}  debian-12.8.0-amd64-netinst.iso\n"
                     f"{hexes('sha256', b'4')}  debian-edu-12.8.0-amd64-netinst.iso\n")
    lone = written(tmp_path, "debian-12.8.0-arm64-netinst.iso.sha256", hexes("sha256", b"5") + "\n")

    assert {"./GCF_000001405.40_GRCh38.p14_genomic.fna.gz": digest("md5", b"1"),
            "./README.txt": digest("md5", b"2")} == read(md5)
    assert {"debian-12.8.0-amd64-netinst.iso": digest("sha256", b"3"),
            "debian-edu-12.8.0-amd64-netinst.iso": digest("sha256", b"4")} == read(debian)
    assert {"debian-12.8.0-arm64-netinst.iso": digest("sha256", b"5")} == read(lone)


def test_crlf_bom_comments_and_blank_lines(tmp_path: Path) -> None:
    """A file from Windows: BOM, CRLF line ends; ``#`` comments and blank lines are skipped."""
    text = ("\ufeff# made on Windows\r\n\r\n"
            f"{hexes('sha1', b'x')} *x.bin\r\n"
            "   \r\n"
            f"SHA1 (y.bin) = {hexes('sha1', b'y')}\r\n")

    found = read(written(tmp_path, "sums.txt", text.encode("utf-8")))

    assert {"x.bin": digest("sha1", b"x"), "y.bin": digest("sha1", b"y")} == found
    assert ["sums.txt:3", "sums.txt:5"] == [line.origin.rsplit("/", 1)[-1] for line in read_file(tmp_path / "sums.txt")]


def test_utf16_with_its_byte_order_mark(tmp_path: Path) -> None:
    """PowerShell's ``>`` writes UTF-16 with a byte-order mark: read as the text it is."""
    text = f"{hexes('md5', b'z')}  z.bin\r\n"

    assert {"z.bin": digest("md5", b"z")} == read(written(tmp_path, "MD5SUMS", text.encode("utf-16")))


@pytest.mark.parametrize(("line", "name", "algorithm", "data"), [
    ("MD5 (a b) = {md5}", "a b", "md5", b"q"),
    ("SHA256 (x) = y) = {sha256}", "x) = y", "sha256", b"q"),  # the name ends at the last ')'
    ("SHA2-256(o.bin)= {sha256}", "o.bin", "sha256", b"q"),  # OpenSSL 3
    ("SHA512(o.bin)= {sha512}", "o.bin", "sha512", b"q"),  # OpenSSL 1.1
    ("BLAKE2b (b.bin) = {blake2b}", "b.bin", "blake2b", b"q"),
    ("SHA256 (c.bin) = {sha256_b64}", "c.bin", "sha256", b"q"),  # cksum --base64
    ("{md5} r.bin", "r.bin", "md5", b"q"),  # BSD md5 -r: one space
    ("{md5}\tt.bin", "t.bin", "md5", b"q"),
    ("{MD5}  upper.bin", "upper.bin", "md5", b"q"),
    ("  {md5}  indented.bin", "indented.bin", "md5", b"q"),
    ("{md5}  trailing space ", "trailing space ", "md5", b"q"),
    ("\\{md5}  tab\\\\n", "tab\\n", "md5", b"q"),
])
def test_line_forms(tmp_path: Path, line: str, name: str, algorithm: str, data: bytes) -> None:
    """Tagged (BSD, OpenSSL, base64), one-space and tab-separated lines; the escaped form."""
    import base64

    values = {alg: hexes(alg, data) for alg in ("md5", "sha256", "sha512", "blake2b")}
    values["MD5"] = values["md5"].upper()
    values["sha256_b64"] = base64.b64encode(hashlib.sha256(data).digest()).decode()

    found = read(written(tmp_path, "sums", line.format(**values) + "\n"))

    assert {name: digest(algorithm, data)} == found


# -- bad lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "line", "message"), [
    ("sums", "not a digest at all", "expected 'HEX  NAME'"),
    ("sums", "abc123  short.bin", "a digest of 6 hex digits"),
    ("sums", "a" * 96 + "  x.bin", "96 hex digits (sha384 is not supported)"),
    ("sums", "SHA384 (x.bin) = " + "a" * 96, "unknown algorithm 'SHA384'"),
    ("sums", "BLAKE2b-256 (x.bin) = " + "a" * 64, "BLAKE2b-256 is not supported: only full-length BLAKE2b"),
    ("sums", "MD5 (x.bin) = " + "a" * 64, "md5 must be 32 hex digits"),
    ("sums", "\\" + "a" * 32 + "  tab\\tname", "unknown escape '\\t'"),
    ("sums", "a" * 32, "a digest without a file name"),
    ("sums", "a" * 32 + "  ./", "does not name a file"),
    ("MD5SUMS", "a" * 64 + "  x.bin", "64 hex digits (sha256), but the file's name says md5"),
    ("B2SUMS", "a" * 64 + "  x.bin", "only full-length (512-bit, 128 hex digits) BLAKE2b"),
    ("sums", "x" * 70_000, "line longer than"),
])
def test_a_bad_line_names_the_file_and_the_line(tmp_path: Path, file: str, line: str, message: str) -> None:
    """Any line that is not a digest is an error naming FILE:LINE and what is wrong."""
    fine = "a" * (128 if file == "B2SUMS" else 32)
    path = written(tmp_path, file, f"# first\n{fine}  fine.bin\n{line}\n")

    with pytest.raises(ChecksumFileError) as raised:
        ChecksumTable.read([path])

    assert f"{path}:3: " in str(raised.value) and message in str(raised.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ChecksumFileError, match="cannot read checksum file .*nope"):
        ChecksumTable.read([tmp_path / "nope"])


# -- the algorithm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "algorithm"), [
    ("MD5SUMS", "md5"), ("md5checksums.txt", "md5"), ("x.md5", "md5"), ("SHA1SUMS", "sha1"),
    ("SHA256SUMS", "sha256"), ("SHA256SUMS.txt", "sha256"), ("image.iso.sha256", "sha256"),
    ("SHA512SUMS", "sha512"), ("x.sha512", "sha512"), ("B2SUMS", "blake2b"), ("b2sums.txt", "blake2b"),
    ("x.blake2b", "blake2b"), ("checksums.txt", None), ("job2.txt", None), ("sha1024", None),
    ("md5-and-sha256.txt", None),
])
def test_the_algorithm_a_file_name_says(name: str, algorithm: str | None) -> None:
    assert algorithm == algorithm_hint(name)


@pytest.mark.parametrize(("file", "algorithm"), [("SUMS", "sha512"), ("B2SUMS", "blake2b"), ("x.b2", "blake2b"),
                                                 ("SHA512SUMS", "sha512")])
def test_128_hex_digits_are_sha512_unless_the_name_says_blake2b(tmp_path: Path, file: str, algorithm: str) -> None:
    found = read(written(tmp_path, file, f"{'a' * 128}  x.bin\n"))

    assert {"x.bin": f"{algorithm}:{'a' * 128}"} == found


@pytest.mark.parametrize(("length", "algorithm"), [(32, "md5"), (40, "sha1"), (64, "sha256")])
def test_the_length_says_the_algorithm(tmp_path: Path, length: int, algorithm: str) -> None:
    assert {"x": f"{algorithm}:{'b' * length}"} == read(written(tmp_path, "sums.txt", f"{'B' * length}  x\n"))


# -- names and matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "key"), [
    ("a.bin", "a.bin"), ("./a.bin", "a.bin"), ("././d/a.bin", "d/a.bin"), ("d//a.bin", "d/a.bin"),
    ("d\\a.bin", "d/a.bin"), ("/abs/a.bin", "abs/a.bin"), ("../a.bin", "_/a.bin"), ("con.txt", "_con.txt"),
    ("trailing. ", "trailing"), ("with space", "with space"), ("new\nline", "new_line"), (".", ""), ("./", ""),
])
def test_names_are_normalised_as_output_paths(name: str, key: str) -> None:
    """``./`` and separators normalised; each component made safe as the run names files."""
    assert key == name_key(name)


def test_a_name_matches_the_output_path_in_each_layout(tmp_path: Path) -> None:
    """Flat: the URL's name; mirror: host/path, or the base name; out=: its path."""
    table = table_of(tmp_path, SHA256SUMS=f"{'1' * 64}  ./a.bin\n{'2' * 64}  raw/b.bin\n{'3' * 64}  h.test/d/c.bin\n")
    jobs = [Job("http://h.test/d/a.bin"), Job("http://h.test/x/y", out="raw/b.bin"), Job("http://h.test/d/c.bin")]

    flat = [job.checksum for job in table.apply(jobs, "flat")]
    mirror = [job.checksum for job in table.apply(jobs, "mirror")]

    assert [f"sha256:{'1' * 64}", f"sha256:{'2' * 64}", None] == flat
    assert [f"sha256:{'1' * 64}", f"sha256:{'2' * 64}", f"sha256:{'3' * 64}"] == mirror


def test_names_with_directories_match_the_trailing_part_of_a_mirror_path(tmp_path: Path) -> None:
    """``main/binary-amd64/Packages`` matches ``host/debian/dists/x/main/binary-amd64/Packages`` only."""
    table = table_of(tmp_path, SHA256SUMS=f"{'1' * 64}  main/binary-amd64/Packages\n"
                                          f"{'2' * 64}  main/binary-i386/Packages\n")
    jobs = [Job("http://h.test/debian/dists/x/main/binary-i386/Packages"),
            Job("http://h.test/debian/dists/x/contrib/binary-i386/Packages")]

    assert [f"sha256:{'2' * 64}", None] == [job.checksum for job in table.apply(jobs, "mirror")]
    assert [f"sha256:{'2' * 64}", None] == [table.lookup("h.test/debian/dists/x/main/binary-i386/Packages"),
                                            table.lookup("Packages")]


def test_names_that_disagree_check_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``x`` and ``d/x`` both trail ``h/d/x``: with different digests the URL is left unchecked, and said."""
    caplog.set_level(logging.INFO, logger="downloader")
    table = table_of(tmp_path, SHA256SUMS=f"{'1' * 64}  x\n{'2' * 64}  d/x\n{'3' * 64}  e/y\n{'3' * 64}  y\n")

    [ambiguous, agreeing] = table.apply([Job("http://h.test/d/x"), Job("http://h.test/e/y")], "mirror")
    table.log_outcome()

    assert (None, f"sha256:{'3' * 64}") == (ambiguous.checksum, agreeing.checksum)
    assert "1 URLs not checked" in caplog.text and "http://h.test/d/x (d/x, x)" in caplog.text


def test_files_that_disagree_on_a_name_check_nothing_for_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two md5checksums.txt giving README.txt different digests: a warning names both lines; no check."""
    one = written(tmp_path, "one.md5checksums.txt", f"{'1' * 32}  ./README.txt\n{'2' * 32}  ./a.fna.gz\n")
    two = written(tmp_path, "two.md5checksums.txt", f"{'3' * 32}  ./README.txt\n{'4' * 32}  ./b.fna.gz\n")

    table = ChecksumTable.read([one, two])
    jobs = list(table.apply([Job("http://h.test/1/README.txt"), Job("http://h.test/1/a.fna.gz")], "mirror"))

    assert [None, f"md5:{'2' * 32}"] == [job.checksum for job in jobs]
    assert f"README.txt ({two}:1 disagreeing with an earlier line)" in caplog.text


def test_the_strongest_algorithm_of_a_name_is_kept(tmp_path: Path) -> None:
    """MD5SUMS and SHA256SUMS both name a file: its sha256 is checked, whatever the order."""
    md5 = f"{'1' * 32}  a.bin\n"
    sha256 = f"{'2' * 64}  a.bin\n"

    for order in (("MD5SUMS", "SHA256SUMS"), ("SHA256SUMS", "MD5SUMS")):
        paths = [written(tmp_path, name, md5 if name == "MD5SUMS" else sha256) for name in order]
        assert f"sha256:{'2' * 64}" == ChecksumTable.read(paths).lookup("a.bin")


def test_a_digest_in_the_list_line_wins(tmp_path: Path) -> None:
    """A job with its own checksum keeps it; its name still counts as matched."""
    table = table_of(tmp_path, SHA256SUMS=f"{'1' * 64}  a.bin\n")
    own = Job("http://h.test/a.bin", checksum=f"md5:{'9' * 32}")

    [job] = table.apply([own], "flat")

    assert own == job
    assert [] == list(table.unmatched())
    assert 1 == table.own


def test_invalid_entries_pass_through_untouched(tmp_path: Path) -> None:
    table = table_of(tmp_path, SHA256SUMS=f"{'1' * 64}  a.bin\n")
    invalid = InvalidJob("ftp://x/a.bin", "list:1: unsupported scheme", "list:1")

    assert [invalid] == list(table.apply([invalid], "flat"))


def test_unmatched_names_are_listed_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The names no URL matched: the first SHOWN, then '... N more'; with the counts at INFO."""
    caplog.set_level(logging.INFO, logger="downloader")
    table = table_of(tmp_path, MD5SUMS="".join(f"{i:032x}  f{i:03d}.bin\n" for i in range(SHOWN + 7)))

    list(table.apply([Job("http://h.test/f000.bin")], "flat"))
    table.log_outcome()

    assert 1 == table.applied
    assert f"{SHOWN + 6} names matched no URL:\n  f001.bin\n" in caplog.text
    assert f"  f{SHOWN:03d}.bin\n  ... 6 more" in caplog.text and f"f{SHOWN + 1:03d}.bin" not in caplog.text


def test_the_library_reads_config_checksum_files(tmp_path: Path) -> None:
    """Config(checksum_files=...) takes one path or several; a bad file raises when the run is made."""
    bad = written(tmp_path, "SHA256SUMS", "nonsense\n")

    assert (bad,) == Config(checksum_files=str(bad)).checksum_files  # type: ignore[arg-type]
    with pytest.raises(ChecksumFileError, match="SHA256SUMS:1: "):
        download(["http://127.0.0.1:9/a.bin"], config=Config(dest=tmp_path / "out", checksum_files=(bad,)))
    assert not (tmp_path / "out").exists()


def test_read_file_gives_origins(tmp_path: Path) -> None:
    path = written(tmp_path, "MD5SUMS", f"# c\n{'a' * 32}  x\n")

    assert [ChecksumLine("x", f"md5:{'a' * 32}", f"{path}:2")] == list(read_file(path))


# -- whole runs --------------------------------------------------------------------------------------


def serve(server: Server, tag: str, count: int = 3, size: int = 150_000) -> tuple[list[str], list[bytes]]:
    names = [f"sums-{tag}-{i}.bin" for i in range(count)]
    return [server.file_url(name, size) for name in names], [body(name, size) for name in names]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "downloader", *args]


def test_a_right_digest_passes_a_wrong_one_fails_naming_the_algorithm(server: Server, engine: str,
                                                                      tmp_path: Path) -> None:
    """SHA256SUMS right for one file, MD5SUMS wrong for another: the first downloads, the second fails
    with 'md5 mismatch' and leaves no file; a third with no digest downloads; exit 1."""
    urls, bodies = serve(server, f"cli-{engine}")
    names = [url.rsplit("/", 1)[1] for url in urls]
    sha = written(tmp_path, "SHA256SUMS", f"{hexes('sha256', bodies[0])}  ./{names[0]}\n")
    md5 = written(tmp_path, "MD5SUMS", f"{hexes('md5', b'not it')} *{names[1]}\n")
    report = tmp_path / "report.jsonl"

    status = main(["-q", "-e", engine, "-d", str(tmp_path / "out"), "--checksums", str(sha), "--checksums", str(md5),
                   "--report", str(report), *urls])

    results = {r["url"]: r for r in map(json.loads, report.read_text().splitlines()) if r["type"] == "result"}
    assert 1 == status
    assert ("downloaded", f"sha256:{hexes('sha256', bodies[0])}") == (results[urls[0]]["status"],
                                                                      results[urls[0]]["checksum"])
    assert "failed" == results[urls[1]]["status"] and "md5 mismatch" in results[urls[1]]["error"]
    assert "downloaded" == results[urls[2]]["status"]
    assert sorted([names[0], names[2]]) == sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())


def test_mirror_layout_matches_by_base_name(server: Server, engine: str, tmp_path: Path) -> None:
    """An NCBI-style ``./name`` file applies to host/bytes/SIZE/name in the mirror layout."""
    urls, bodies = serve(server, f"mirror-{engine}", count=2)
    names = [url.rsplit("/", 1)[1] for url in urls]
    sums = written(tmp_path, "md5checksums.txt",
                   f"{hexes('md5', bodies[0])}  ./{names[0]}\n{hexes('md5', b'wrong')}  ./{names[1]}\n")

    results = {r.url: r for r in download(urls, config=Config(dest=tmp_path / "out", engine=engine, layout="mirror",
                                                               checksum_files=(sums,), retries=0))}

    assert (Status.DOWNLOADED, f"md5:{hexes('md5', bodies[0])}") == (results[urls[0]].status, results[urls[0]].checksum)
    assert Status.FAILED == results[urls[1]].status and "md5 mismatch" in str(results[urls[1]].error)


def test_with_two_processes_and_verbose_unmatched_names_are_listed(server: Server, engine: str,
                                                                   tmp_path: Path) -> None:
    """--processes 2: the parent applies the digests (right passes, wrong fails); -v lists the
    names no URL matched."""
    urls, bodies = serve(server, f"p2-{engine}", count=4, size=20_000)
    names = [url.rsplit("/", 1)[1] for url in urls]
    lines = [f"{hexes('sha256', data)}  {name}" for name, data in zip(names[:3], bodies)]
    lines.append(f"{hexes('sha256', b'wrong')}  {names[3]}")
    lines += ["0" * 64 + "  not-in-the-list.bin", "1" * 64 + "  sub/neither.bin"]
    sums = written(tmp_path, "SHA256SUMS", "\n".join(lines) + "\n")
    listing = written(tmp_path, "list.txt", "\n".join(urls) + "\n")
    report = tmp_path / "report.jsonl"

    done = subprocess.run(cli("-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "--processes", "2",
                              "--checksums", str(sums), "--report", str(report), "-v", "--retries", "0"),
                          capture_output=True, text=True, timeout=120)

    results = [r for r in map(json.loads, report.read_text().splitlines()) if r["type"] == "result"]
    assert 1 == done.returncode, done.stderr
    assert ["downloaded"] * 3 + ["failed"] == [r["status"] for r in sorted(results, key=lambda r: r["url"])]
    assert all(r["checksum"] and r["checksum"].startswith("sha256:") for r in results if r["status"] == "downloaded")
    assert "sha256 mismatch" in done.stderr
    assert "2 names matched no URL:\n  not-in-the-list.bin\n  sub/neither.bin" in done.stderr.replace("downloader: ", "")


def test_a_bad_checksum_file_exits_2_before_any_request(server: Server, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = server.file_url("sums-never.bin", 100)
    bad = written(tmp_path, "SHA256SUMS", f"{'a' * 64}  ok.bin\nSHA384 (x) = {'b' * 96}\n")

    status = main(["-q", "-d", str(tmp_path / "out"), "--checksums", str(bad), url])

    assert 2 == status
    assert f"{bad}:2: unknown algorithm 'SHA384'" in capsys.readouterr().err
    assert 0 == server.counts.get("/bytes/100/sums-never.bin", 0)


def test_dry_run_applies_and_reports(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run reads the files too: a bad one exits 2; a good one plans as a run would."""
    url = server.file_url("sums-dry.bin", 100)
    bad = written(tmp_path, "bad.sha256", "zz\n")
    good = written(tmp_path, "SHA256SUMS", f"{'a' * 64}  sums-dry.bin\n")

    assert 2 == main(["--dry-run", "-d", str(tmp_path / "out"), "--checksums", str(bad), url])
    assert f"{bad}:1: " in capsys.readouterr().err
    assert 0 == main(["--dry-run", "-d", str(tmp_path / "out"), "--checksums", str(good), url])
    assert "download" in capsys.readouterr().out


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A Client of a LocalCluster with one worker process, for this module's --dask test."""
    pytest.importorskip("distributed", reason="needs the optional extra downloader[dask]")
    with local_dask(1) as (client, _):
        yield client


def test_on_a_dask_cluster_the_client_applies_the_digests(dask_client: Any, server: Server, engine: str,
                                                          tmp_path: Path) -> None:
    """--dask: the client reads the checksum files and sends the digests with the lines; the
    workers check them (a right one passes, a wrong one fails naming the algorithm)."""
    urls, bodies = serve(server, f"dask-{engine}", count=2, size=20_000)
    names = [url.rsplit("/", 1)[1] for url in urls]
    sums = written(tmp_path, "SHA1SUMS", f"{hexes('sha1', bodies[0])}  {names[0]}\n{hexes('sha1', b'x')}  {names[1]}\n")
    config = Config(dest=tmp_path / "out", engine=engine, retries=0, checksum_files=(sums,))

    results = {r.url: r for r in download(urls, config=config, dask=dask_client)}

    assert (Status.DOWNLOADED, f"sha1:{hexes('sha1', bodies[0])}") == (results[urls[0]].status,
                                                                       results[urls[0]].checksum)
    assert Status.FAILED == results[urls[1]].status and "sha1 mismatch" in str(results[urls[1]].error)


def test_names_of_other_shards_count_as_matched(server: Server, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """--shard: the digests are applied before the shard is taken, so a name whose URL is in
    another shard is not listed as unmatched."""
    caplog.set_level(logging.INFO, logger="downloader")
    urls, _ = serve(server, "shard", count=6, size=100)
    sums = written(tmp_path, "MD5SUMS", "".join(f"{'0' * 32}  {url.rsplit('/', 1)[1]}\n" for url in urls))

    results = download(urls, config=Config(dest=tmp_path / "out", shard=(1, 2), checksum_files=(sums,), retries=0))

    assert 0 < len(results) < 6
    assert "0 names matched no URL" in caplog.text


@pytest.mark.parametrize("layout", ["flat", "mirror"])
@pytest.mark.parametrize("job", [
    Job("http://h.test/a.bin"), Job("HTTPS://H.Test:443/d/a.bin"), Job("http://h.test:8080/d/e/a.bin"),
    Job("http://h.test:080/a.bin"), Job("http://a:8080/x.bin"), Job("http://h.test/"), Job("http://h.test"),
    Job("http://h.test/d//a.bin"), Job("http://h.test/./a.bin"), Job("http://h.test/../a.bin"),
    Job("http://h.test/a%20b.bin"), Job("http://h.test/a.bin?x=/y.bin"), Job("http://h.test/a.bin#f"),
    Job("http://h.test/con.txt"), Job("http://h.test/a."), Job("http://h.test/.hidden"), Job("http://u@h.test/a"),
    Job("http://[::1]:8080/a.bin"), Job("http://h.test./a.bin"), Job("http://h.test/a\\b.bin"),
    Job("http://h.test/" + "n" * 300), Job("http://h.test/x", out="./raw/b.bin"), Job("http://h.test/x", out="a/../b"),
    Job("http://h.test/x", out="a//b"), Job("http://h.test:99999/a.bin"),
])
def test_the_quick_output_path_is_the_runs(job: Job, layout: Layout) -> None:
    """The output path the table is matched against is the one the run names (naming.output_path)."""
    try:
        expected: str | None = naming.output_path(job, Path("."), layout=layout).as_posix()
    except (DownloadError, ValueError):
        expected = None

    assert expected == _output_path(job, layout)
