"""Progress off a terminal: a plain line every few seconds instead of the animated bar."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from downloader.cli import main
from downloader.jobs import Result, Status
from downloader.progress import Progress
from downloader.testing import Rule, Server

LINE = re.compile(r"^\[\d+ s\] files \d+ done of \d+( seen)?(, \d+ failed)?; [\d.]+ (B|KiB|MiB|GiB) \([\d.]+ (B|KiB|MiB|GiB)/s\)$")


def test_progress_writes_a_plain_line_every_interval() -> None:
    """Counts, failures and bytes, one line per interval, nothing after close."""
    stream = io.StringIO()
    progress = Progress(stream=stream, lines=0.05)
    for _ in range(3):
        progress.job_seen()
    progress.bytes_received(2048)
    progress.result(Result("http://h/a", Status.DOWNLOADED, size=2048, received=2048))
    progress.result(Result("http://h/b", Status.FAILED, error="HTTP 404 Not Found"))
    time.sleep(0.18)
    progress.close()
    written = stream.getvalue()
    time.sleep(0.1)

    lines = written.splitlines()
    assert 2 <= len(lines) <= 5 and all(LINE.match(line) for line in lines), lines
    assert "files 2 done of 3 seen, 1 failed; 2.0 KiB" in lines[-1]
    assert written == stream.getvalue()  # the ticker has stopped


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("options, lines", [
    pytest.param([], True, id="auto-off-a-terminal"),
    pytest.param(["--progress", "lines"], True, id="lines"),
    pytest.param(["-q"], False, id="quiet"),
    pytest.param(["--progress", "none"], False, id="none"),
])
def test_the_cli_off_a_terminal_prints_progress_lines(server: Server, engine: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], options: list[str],
                                                      lines: bool) -> None:
    """stderr captured (no terminal): by default a line every --progress-interval, then the summary."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(f"plines-{engine}-{i}.bin", 100_000, Rule(rate=200_000)) + "\n"
                               for i in range(2)))

    status, err = run_cli(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "--processes", "1",
                           "--progress-interval", "0.2", *options], capsys)

    assert 0 == status
    progress = [line for line in err.splitlines() if LINE.match(line)]
    assert bool(progress) == lines, err
    assert all(" done of 2" in line for line in progress), progress  # the list's total, or the 2 seen
    assert "downloaded 2, skipped 0, failed 0" in err.splitlines()[-1]


def test_a_bad_progress_interval_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_cli(["-d", str(tmp_path), "--progress-interval", "0", "http://127.0.0.1:9/x"], capsys)
    assert 2 == status and "--progress-interval" in err


class Fixed:
    """A FileTotal whose value a test sets; records whether the progress started and stopped it."""

    def __init__(self, value: int | None) -> None:
        self.total, self.started, self.stopped = value, False, False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def value(self) -> int | None:
        return self.total


def finished(progress: Progress, count: int, status: Status = Status.DOWNLOADED) -> None:
    for i in range(count):
        progress.job_seen()
        progress.result(Result(f"http://h/{status.value}{i}", status, error=None if status is Status.DOWNLOADED else "x"))


def test_the_total_replaces_seen_once_known() -> None:
    """'done of N seen' while the count runs, 'done of TOTAL' once it is known."""
    total = Fixed(None)
    progress = Progress(stream=io.StringIO(), lines=60, total=total)
    finished(progress, 2)
    finished(progress, 1, Status.FAILED)

    before = progress.line()
    total.total = 10
    after = progress.line()
    progress.close()

    assert "files 3 done of 3 seen, 1 failed;" in before
    assert "files 3 done of 10, 1 failed;" in after
    assert total.started and total.stopped


def test_the_total_is_never_below_what_was_done() -> None:
    """A count below the files done (a line it took for blank held an entry) shows the files done."""
    progress = Progress(stream=io.StringIO(), lines=60, total=Fixed(2))
    finished(progress, 3)

    line = progress.line()
    progress.close()

    assert "files 3 done of 3;" in line


def test_the_total_is_counted_only_when_progress_is_shown() -> None:
    """No bar and no lines (-q): the count never starts."""
    total = Fixed(None)
    Progress(total=total).close()

    assert not total.started


def test_the_bar_counts_files_of_the_total() -> None:
    """With the total known the bar's own total is the files: 'N/TOTAL', a files rate, bytes in the postfix."""
    stream = io.StringIO()
    progress = Progress(bar=True, stream=stream, total=Fixed(8))
    finished(progress, 3)
    progress.bytes_received(3 * 1024 * 1024)
    time.sleep(0.25)
    progress.close()

    last = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r" 38%\|.*\| 3/8 \[.* files/s, 3\.0 MiB \([\d.]+ (KiB|MiB|GiB)/s\)\]", last), last
