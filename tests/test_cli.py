"""The command line: exit statuses, the summary, list files, stdin and the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from downloader.cli import main
from downloader.core import ResumeState
from downloader.testing import Server, body, body_sha256


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``downloader argv`` in this process; exit status and stderr."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse exits on usage errors
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


def test_list_file_downloads_and_exits_zero(server: Server, engine: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A clean list downloads, prints one summary line, and exits 0."""
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# two files\n\n{server.file_url('cli-a.bin', 100)}\n{server.file_url('cli-b.bin', 200)} out=b/renamed.bin\n")

    status, err = run_cli(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q"], capsys)

    assert 0 == status
    assert "downloaded 2, skipped 0, failed 0" in err
    assert body("cli-b.bin", 200) == (tmp_path / "out/b/renamed.bin").read_bytes()


def test_malformed_lines_are_reported_with_line_numbers(server: Server, engine: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Each malformed line fails with FILE:LINE in its reason; the good lines still download; exit 1."""
    good = server.file_url("cli-good.bin", 10)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join([
        good,                                   # 1
        "ftp://example.org/file",               # 2
        f"{good}?2 colour=blue",                # 3
        f"{good}?3 sha256=xyz",                 # 4
        f"{good}?4 size=-5",                    # 5
        f"{good}?5 justaword",                  # 6
        "not a url at all",                     # 7
        f"{good}?8 out=../../escape.bin",       # 8
    ]) + "\n")

    status, err = run_cli(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q"], capsys)

    assert 1 == status
    assert "downloaded 1, skipped 0, failed 7" in err
    for line, words in [(2, "unsupported scheme 'ftp'"), (3, "unknown key 'colour'"), (4, "sha256 must be 64 hex"),
                        (5, "size must be a whole number"), (6, "expected key=value"), (7, "unsupported scheme"),
                        (8, "climbs out of the destination")]:
        assert any(f"{listing}:{line}: " in row and words in row for row in err.splitlines()), (line, err)
    assert not (tmp_path / "escape.bin").exists()


@pytest.mark.parametrize("status_code", [404, 500])
def test_http_errors_exit_one_with_reason(server: Server, engine: str, tmp_path: Path, status_code: int,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """404 and 500 are failures: listed as 'URL: reason' after the summary, exit 1."""
    url = server.url(f"/bytes/10/cli-{engine}-{status_code}?status={status_code}")

    status, err = run_cli([url, "-d", str(tmp_path), "-e", engine, "-q", "--retries", "0"], capsys)

    assert 1 == status
    assert f"{url}: HTTP {status_code}" in err
    assert "failed 1" in err


@pytest.mark.parametrize("argv", [
    ["--no-such-option", "http://127.0.0.1/x"],
    ["-j", "0", "http://127.0.0.1/x"],
    ["-j", "many", "http://127.0.0.1/x"],
    ["--timeout", "-1", "http://127.0.0.1/x"],
    ["--retries", "-2", "http://127.0.0.1/x"],
    ["-e", "curl", "http://127.0.0.1/x"],
    ["-i", "/no/such/list.txt"],
    [],
], ids=["unknown-option", "zero-concurrency", "word-concurrency", "negative-timeout", "negative-retries",
        "unknown-engine", "missing-list", "nothing-to-do"])
def test_usage_errors_exit_two(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad command line exits 2 with a message, before any download."""
    status, err = run_cli([*argv, "-d", str(tmp_path / "out")], capsys)

    assert 2 == status
    assert "error" in err
    assert not (tmp_path / "out" / "x").exists()


def test_destination_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-d naming an existing file exits 2 and names the destination."""
    (tmp_path / "afile").write_text("x")

    status, err = run_cli(["http://127.0.0.1/x", "-d", str(tmp_path / "afile")], capsys)

    assert 2 == status
    assert "destination" in err


def test_failed_list_can_be_run_again(server: Server, engine: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--failed writes the failed jobs with their fields; once the server recovers, running that file fetches them."""
    from downloader.testing import Rule

    path = f"/bytes/500/cli-failed-{engine}.bin"
    server.set_rule(path, Rule(status=503))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{server.url(path)} out=sub/again.bin size=500\n{server.file_url(f'ok-{engine}.bin', 5)}\nftp://x/y\n")
    failed = tmp_path / "failed.txt"
    run_cli(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q", "--retries", "0", "--failed", str(failed)], capsys)
    server.rules.pop(path)

    status, err = run_cli(["-i", str(failed), "-d", str(tmp_path / "out"), "-e", engine, "-q"], capsys)

    assert 0 == status, err
    assert "downloaded 1, skipped 0, failed 0" in err
    assert f"{server.url(path)}   out=sub/again.bin   size=500" in failed.read_text()
    assert "# ftp://x/y" in failed.read_text()
    assert body(f"cli-failed-{engine}.bin", 500) == (tmp_path / "out/sub/again.bin").read_bytes()


def test_json_report_has_a_record_per_url(server: Server, engine: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--report writes valid JSON: one record per URL with its status, then the summary."""
    good = server.file_url("cli-report.bin", 64)
    bad = server.url(f"/bytes/1/cli-report-{engine}?status=404")
    report = tmp_path / "report.json"
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{good} sha256={body_sha256('cli-report.bin', 64)}\n{bad}\nftp://x/y\n")

    run_cli(["-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q", "--report", str(report)], capsys)

    lines = [json.loads(line) for line in report.read_text().splitlines()]
    results, summary = [x for x in lines if x["type"] == "result"], lines[-1]
    by_url = {r["url"]: r for r in results}
    assert ["result"] * 3 + ["summary"] == [x["type"] for x in lines]
    assert {"downloaded", "failed"} == {r["status"] for r in results}
    assert (64, "sha256:" + body_sha256("cli-report.bin", 64)) == (by_url[good]["size"], by_url[good]["checksum"])
    assert "HTTP 404" in by_url[bad]["error"]
    assert f"{listing}:3" == by_url["ftp://x/y"]["origin"]
    assert {"downloaded": 1, "skipped": 0, "failed": 2} == {k: summary[k] for k in ("downloaded", "skipped", "failed")}


def test_second_run_reports_skipped(server: Server, engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Running the same command twice: the second run skips everything and exits 0."""
    argv = [server.file_url("cli-twice.bin", 1000), "-d", str(tmp_path), "-e", engine, "-q"]
    run_cli(argv, capsys)

    status, err = run_cli(argv, capsys)

    assert 0 == status
    assert "downloaded 0, skipped 1, failed 0" in err


def test_stdin_list_and_arguments_mix(server: Server, engine: str, tmp_path: Path) -> None:
    """`-i -` reads the list from standard input, alongside URLs given as arguments (python -m)."""
    listing = f"{server.file_url('stdin-a.bin', 10)}\n{server.file_url('stdin-b.bin', 20)} out=in/b.bin\n"
    argv = [sys.executable, "-m", "downloader", "-i", "-", server.file_url("arg-c.bin", 30),
            "-d", str(tmp_path), "-e", engine]

    done = subprocess.run(argv, input=listing.encode(), capture_output=True, timeout=60)

    assert 0 == done.returncode, done.stderr
    assert b"downloaded 3, skipped 0, failed 0" in done.stderr
    assert body("stdin-b.bin", 20) == (tmp_path / "in/b.bin").read_bytes()
    assert body("arg-c.bin", 30) == (tmp_path / "arg-c.bin").read_bytes()


def test_summary_line_format(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The summary names the counts, the bytes, the time and the rate on one line."""
    status, err = run_cli([server.file_url("cli-summary.bin", 2048), "-d", str(tmp_path), "-q"], capsys)

    last = err.strip().splitlines()[-1]
    assert last.startswith("downloaded 1, skipped 0, failed 0; 2.0 KiB in ")
    assert last.endswith("/s)")


def test_ctrl_c_exits_130_keeps_parts_and_the_rerun_resumes(server: Server, engine: str, tmp_path: Path) -> None:
    """SIGINT mid-transfer: exit 130, the summary counts it interrupted, the part stays, a re-run resumes it."""
    import signal
    import time

    from downloader.testing import Rule

    name, size, have = f"sigint-{engine}.bin", 3_000_000, 1_000_000
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(stall_after=have))
    argv = [sys.executable, "-m", "downloader", server.url(path), "-d", str(tmp_path), "-e", engine, "-q"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    part = tmp_path / (name + ".part")
    while (not part.exists() or part.stat().st_size < have) and time.monotonic() < deadline:
        time.sleep(0.05)

    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.communicate()
    server.rules.pop(path)
    rerun = subprocess.run(argv, capture_output=True, timeout=60)

    assert 130 == process.returncode
    assert b"interrupted 1" in err
    assert 0 == rerun.returncode, rerun.stderr
    assert f"bytes={have}-" == server.requests(path)[-1].range
    assert body(name, size) == (tmp_path / name).read_bytes()


def test_sigterm_stops_like_ctrl_c(server: Server, engine: str, tmp_path: Path) -> None:
    """SIGTERM mid-transfer: exit 130 with the summary, the part and its state kept for the next run."""
    import signal
    import time

    from downloader.testing import Rule

    name = f"sigterm-{engine}.bin"
    path = f"/bytes/2000000/{name}"
    server.set_rule(path, Rule(stall_after=500_000))
    process = subprocess.Popen([sys.executable, "-m", "downloader", server.url(path), "-d", str(tmp_path), "-e", engine, "-q"],
                               stderr=subprocess.PIPE)
    part = tmp_path / (name + ".part")
    deadline = time.monotonic() + 20
    while (not part.exists() or part.stat().st_size < 500_000) and time.monotonic() < deadline:
        time.sleep(0.05)

    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.communicate()

    assert 130 == process.returncode
    assert b"interrupted 1" in err
    assert 500_000 == part.stat().st_size
    assert (tmp_path / (name + ".part.state")).exists()


def test_dry_run_says_what_would_happen_and_fetches_nothing(server: Server, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints download/resume/skip/fail per line and the bytes announced, with no request sent."""
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "present.bin").write_bytes(b"x" * 10)
    (dest / "half.bin.part").write_bytes(b"y" * 4)
    half = server.url("/bytes/10/dry-half.bin")
    (dest / "half.bin.part.state").write_text(ResumeState(half, '"e"', None, 10).dumps())
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{server.url('/bytes/99/dry-new.bin')} size=99\n{server.url('/bytes/10/x')} out=present.bin\n"
                       f"{half} out=half.bin size=10\nftp://nope/x\n")
    before = len(server.log)

    status = main(["-i", str(listing), "-d", str(dest), "--dry-run"])

    out = capsys.readouterr().out.splitlines()
    assert 1 == status
    assert before == len(server.log)
    assert [line.split()[0] for line in out[:-1]] == ["download", "skip", "resume", "fail"]
    assert "resume 1, skip 1, fail 1" in out[-1] and "download 1" in out[-1]
    assert "109 bytes announced by size=" in out[-1]
    assert ["half.bin.part", "half.bin.part.state", "present.bin"] == sorted(p.name for p in dest.iterdir())
