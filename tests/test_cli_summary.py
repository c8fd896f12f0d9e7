"""The command's output in a log file: progress lines with the list's total, and failures grouped at the end."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from downloader.cli import main
from downloader.testing import Rule, Server

PROGRESS = re.compile(r"^\[\d+ s\] files (\d+) done of (\d+)( seen)?(, \d+ failed)?; .+/s\)$")
MODES = {
    "one-process": ["--processes", "1"],
    "processes": ["--processes", "2"],
    "dask": ["--dask", "local:1"],
}


def a_list_with_failures(server: Server, tmp_path: Path, name: str) -> Path:
    """Ten entries among comments and blank lines: 4 answered 404, 2 cut off, 1 refused, 3 fine (slow)."""
    lines = ["# a list with comments", ""]
    lines += [server.url(f"/bytes/100/{name}-missing-{i}.bin?status=404") for i in range(4)]
    lines += ["   # indented comment"]
    lines += [server.file_url(f"{name}-cut-{i}.bin", 200_000, Rule(drop_after=1000)) for i in range(2)]
    lines += ["http://127.0.0.2:1/refused.bin", "", "\t"]
    lines += [server.file_url(f"{name}-slow-{i}.bin", 100_000, Rule(rate=120_000)) for i in range(3)]
    listing = tmp_path / "list.txt"
    listing.write_text("\r\n".join(lines))  # CRLF, and no newline after the last line
    return listing


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", list(MODES))
def test_a_logged_run_shows_the_total_and_groups_its_failures(server: Server, engine: str, tmp_path: Path,
                                                              mode: str) -> None:
    """stderr a file: progress lines say 'done of 10' once the list is counted; the summary counts the
    failures by reason and host, then lists them; the report has the same groups. Alike in one
    process, with --processes (the parent prints) and with --dask (the client prints)."""
    if mode == "dask" and importlib.util.find_spec("distributed") is None:
        pytest.skip("--dask needs the optional extra: pip install 'downloader[dask]'")
    listing = a_list_with_failures(server, tmp_path, f"sum-{engine}-{mode}")
    report, failed, log = tmp_path / "report.jsonl", tmp_path / "failed.txt", tmp_path / "stderr.log"
    port = server.base_url.rsplit(":", 1)[1]

    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-m", "downloader", "-i", str(listing), "-d", str(tmp_path / "out"),
                               "-e", engine, "--retries", "0", "--progress-interval", "0.2", "--report", str(report),
                               "--failed", str(failed), *MODES[mode]], stderr=stderr, timeout=100)
    err = log.read_text().splitlines()

    assert 1 == done.returncode, err
    progress = [PROGRESS.match(line) for line in err if line.startswith("[")]
    assert progress and all(progress), err
    assert any(match[2] == "10" and not match[3] for match in progress if match), err  # the total, not "seen"
    assert all(int(match[1]) <= int(match[2]) for match in progress if match)
    summary = err[err.index(next(line for line in err if line.startswith("downloaded "))):]
    assert summary[0].startswith("downloaded 3, skipped 0, failed 7; ")
    assert summary[1:5] == [
        f"failed: 7 files, by reason and host:",
        f"  4  HTTP 404 Not Found                 on 127.0.0.1:{port}",
        f"  2  connection broken during the body  on 127.0.0.1:{port}",
        f"  1  connection refused                 on 127.0.0.2:1",
    ]
    assert "failed URLs:" == summary[5]
    assert 7 == len(summary[6:]) and all(re.fullmatch(r"  http://\S+: .+", line) for line in summary[6:]), summary
    groups = json.loads(report.read_text().splitlines()[-1])["failure_groups"]
    assert [("HTTP 404 Not Found", f"127.0.0.1:{port}", 4), ("connection broken during the body", f"127.0.0.1:{port}", 2),
            ("connection refused", "127.0.0.2:1", 1)] == [(g["kind"], g["host"], g["count"]) for g in groups]
    assert 7 == failed.read_text().count("\n# ")  # the full list, one reason comment per failure


@pytest.mark.parametrize("failed_option", [True, False], ids=["failed-file", "no-failed-file"])
def test_many_failures_list_the_first_twenty(server: Server, engine: str, tmp_path: Path, failed_option: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """25 failures: one group, the first 20 URLs, then where the other 5 are (or how to get them)."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.url(f"/bytes/10/many-{engine}-{i}?status=410") + "\n" for i in range(25)))
    failed = tmp_path / "failed.txt"
    options = ["--failed", str(failed)] if failed_option else []

    status = main(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q", "--processes", "1", *options])
    err = capsys.readouterr().err.splitlines()

    assert 1 == status
    assert ["failed: 25 files, by reason and host:", f"  25  HTTP 410 Gone  on {server.base_url.split('//')[1]}",
            "the first 20 failed URLs:"] == err[1:4]
    assert 20 == sum(1 for line in err if re.fullmatch(r"  http://\S+: HTTP 410 Gone", line))
    assert err[-1] == (f"  ... and 5 more: see --failed {failed}" if failed_option else
                       "  ... and 5 more: run with --failed FILE to list them all")
    assert 25 == len(err)


def test_tabular_and_compressed_lists_have_their_total(server: Server, engine: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV's header is no file, a gzip list is counted uncompressed: 3 rows + 2 lines + 1 argument = 6,
    shown from the start (one transfer at a time: the reader has not seen them all yet)."""
    slow = [server.file_url(f"tab-{engine}-{i}.bin", 60_000, Rule(rate=150_000)) for i in range(6)]
    table, packed = tmp_path / "list.csv", tmp_path / "more.txt.gz"
    table.write_text("url,out\n" + "".join(f"{url},t{i}.bin\n" for i, url in enumerate(slow[:3])))
    packed.write_bytes(gzip.compress(f"# two more\n{slow[3]}\n\n{slow[4]}\n".encode()))

    status = main([slow[5], "-i", str(table), "-i", str(packed), "-d", str(tmp_path / "out"), "-e", engine,
                   "-j", "1", "--processes", "1", "--progress-interval", "0.1"])
    err = capsys.readouterr().err.splitlines()

    assert 0 == status, err
    progress = [match for match in map(PROGRESS.match, err) if match]
    assert progress and all(match[2] == "6" and not match[3] for match in progress[1:]), err
