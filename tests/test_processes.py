"""--processes N: one list over several engine processes, with the parent owning results, bar and exit status."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from downloader import Config, Job, Status, download
from downloader.config import default_processes
from downloader.manifest import status_report
from downloader.processes import child_config, share, shares_for, window
from downloader.testing import Rule, Server, body

SLOW = 2_000_000
RATE = 1_000_000  # bytes/s per connection: each slow file takes about two seconds


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "downloader", *args]


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def wait_until(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def slow_list(server: Server, tmp_path: Path, tag: str, count: int = 8) -> tuple[Path, list[str]]:
    names = [f"slow-{tag}-{i}.bin" for i in range(count)]
    for name in names:
        server.set_rule(f"/bytes/{SLOW}/{name}", Rule(rate=RATE))
    listing = tmp_path / "slow.txt"
    listing.write_text("".join(server.file_url(name, SLOW) + "\n" for name in names))
    return listing, names


# -- the pure parts -------------------------------------------------------------------


@pytest.mark.parametrize("total, parts, expected", [(16, 2, [8, 8]), (5, 2, [3, 2]), (7, 3, [3, 2, 2]), (2, 2, [1, 1])])
def test_share_splits_as_evenly_as_whole_numbers_allow(total: int, parts: int, expected: list[int]) -> None:
    """Shares add up to the total and differ by one at most."""

    assert expected == [share(total, parts, i) for i in range(parts)]


def test_each_process_gets_its_share_of_the_limits() -> None:
    """-j, an explicit --per-host and --limit-rate are divided; nothing below one."""
    config = Config(concurrency=5, per_host=3, limit_rate=1000, processes=2, progress=True, shard=(1, 2))

    children = [child_config(config, 2, i) for i in range(2)]

    assert [3, 2] == [c.concurrency for c in children]
    assert [2, 1] == [c.per_host for c in children]
    assert [500, 500] == [c.limit_rate for c in children]
    assert all(c.processes == 1 and not c.progress and c.shard is None for c in children)


def test_an_explicit_per_host_caps_the_processes() -> None:
    """--per-host 1 with --processes 2 runs one process: the per-host limit holds for the whole run."""

    assert 1 == Config(processes=2, per_host=1).process_count
    assert 2 == Config(processes=2, per_host=3).process_count
    assert 3 == sum(child_config(Config(per_host=3), 2, i).per_host or 0 for i in range(2))


def test_the_window_covers_what_an_engine_holds() -> None:
    """A process is sent more than its engine can hold at once, so it never waits for the reader."""

    assert window(32) > 8 * 32 + 2 * 256


def test_default_is_one_process_per_core_at_most_one_per_transfer() -> None:
    """None means one per core, and never more processes than transfers."""
    cores = len(os.sched_getaffinity(0))

    assert min(cores, 16) == default_processes(16) == Config(processes=None, concurrency=16).process_count
    assert 1 == default_processes(1)


# -- runs -----------------------------------------------------------------------------


def test_two_processes_download_a_list_byte_exact(server: Server, engine: str, tmp_path: Path) -> None:
    """Every file arrives once and exact; duplicates are fetched once and reported skipped."""
    names = [f"p2-{engine}-{i}.bin" for i in range(120)]
    urls = [server.file_url(name, 5000 + i) for i, name in enumerate(names)]

    results = download([*urls, urls[0], urls[7]], dest=tmp_path, engine=engine, processes=2)

    statuses = sorted(r.status.value for r in results)
    assert ["downloaded"] * 120 + ["skipped"] * 2 == statuses
    assert all(body(name, 5000 + i) == (tmp_path / name).read_bytes() for i, name in enumerate(names))
    assert all(1 == server.counts[f"/bytes/{5000 + i}/{name}"] for i, name in enumerate(names))


def test_collisions_get_the_same_names_as_in_one_process(server: Server, engine: str, tmp_path: Path) -> None:
    """Different URLs naming one file are decided by one process: the first owns the name, as with one process."""
    urls = [server.url(f"/bytes/{size}/same-{engine}.bin") for size in (100, 200, 300)] * 2

    names = {}
    for processes in (1, 2):
        dest = tmp_path / str(processes)
        results = download(urls, config=Config(dest=dest, engine=engine, processes=processes,
                                               manifest=dest / ".downloader" / "manifest.sqlite"))
        names[processes] = sorted((r.url, Path(r.path).name) for r in results if r.path)

    assert names[1] == names[2]
    assert 3 == len({name for _, name in names[2]})


def test_a_rerun_with_one_process_skips_what_two_downloaded(server: Server, engine: str, tmp_path: Path) -> None:
    """The destination's manifest is one source of truth whatever N wrote it: no request on the re-run."""
    urls = [server.file_url(f"rerun-{engine}-{i}.bin", 300) for i in range(50)]
    download(urls, dest=tmp_path, engine=engine, processes=2,
             config=Config(dest=tmp_path, engine=engine, processes=2, manifest=tmp_path / ".downloader" / "m.sqlite"))
    before = sum(server.counts.values())

    again = download(urls, config=Config(dest=tmp_path, engine=engine, processes=1,
                                         manifest=tmp_path / ".downloader" / "m.sqlite"))

    assert before == sum(server.counts.values())
    assert {Status.SKIPPED} == {r.status for r in again}
    assert status_report(tmp_path / ".downloader" / "m.sqlite").startswith("downloaded 50,")


def test_the_cli_report_and_failed_list_come_from_the_parent(server: Server, engine: str, tmp_path: Path) -> None:
    """One JSON record per line of the list, the failures listed, exit 1, and every process's peak RSS."""
    listing = tmp_path / "list.txt"
    good = [server.file_url(f"rep-{engine}-{i}.bin", 100) for i in range(20)]
    missing = server.url(f"/bytes/100/gone-{engine}.bin?status=404")
    listing.write_text("\n".join([*good, missing, "ftp://nope/x", good[3]]) + "\n")
    report, failed = tmp_path / "r.jsonl", tmp_path / "failed.txt"

    done = subprocess.run(cli("-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "--processes", "2",
                              "--report", str(report), "--failed", str(failed)),
                          capture_output=True, text=True, timeout=60)

    lines = [json.loads(line) for line in report.read_text().splitlines()]
    summary = lines[-1]
    assert 1 == done.returncode, done.stderr
    assert 23 == len(lines) - 1
    assert (20, 1, 2) == (summary["downloaded"], summary["skipped"], summary["failed"])
    assert 2 == len(summary["peak_rss"]["workers"]) and all(n > 0 for n in summary["peak_rss"]["workers"])
    assert missing.split("?")[0] in failed.read_text()
    assert "downloaded 20, skipped 1, failed 2" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_killed_process_is_replaced_and_its_urls_finish(server: Server, engine: str, tmp_path: Path) -> None:
    """SIGKILL to one engine process: a fresh one resumes its transfers; every file exact, exit 0."""
    listing, names = slow_list(server, tmp_path, f"kill-{engine}")
    dest = tmp_path / "out"
    run = subprocess.Popen(cli("-i", str(listing), "-d", str(dest), "-e", engine, "--processes", "2", "-q"),
                           stderr=subprocess.PIPE, text=True)
    wait_until(lambda: sum(1 for p in dest.glob("*.part") if p.stat().st_size > 200_000) >= 4)
    victim = children_of(run.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=60)

    assert 0 == run.returncode, err
    assert f"(pid {victim}) died (killed by SIGKILL)" in err
    assert all(body(name, SLOW) == (dest / name).read_bytes() for name in names)
    assert [] == sorted(p.name for p in dest.iterdir() if p.suffix != ".bin" and p.name != ".downloader")
    assert sum(server.bytes_sent(f"/bytes/{SLOW}/{n}") for n in names) < len(names) * SLOW + 4 * SLOW


def test_ctrl_c_stops_every_process_and_keeps_the_parts(server: Server, engine: str, tmp_path: Path) -> None:
    """SIGINT to the process group: exit 130, parts kept, URLs in flight counted and recorded pending."""
    listing, names = slow_list(server, tmp_path, f"int-{engine}")
    dest = tmp_path / "out"
    run = subprocess.Popen(cli("-i", str(listing), "-d", str(dest), "-e", engine, "--processes", "2", "-q"),
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: sum(1 for p in dest.glob("*.part") if p.stat().st_size > 100_000) >= 4)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=30)

    assert 130 == run.returncode, err
    assert "interrupted 8" in err
    assert 8 == len(list(dest.glob("*.part.state")))
    assert not any((dest / name).exists() for name in names)
    assert "pending 8" in status_report(dest)
    rerun = subprocess.run(cli("-i", str(listing), "-d", str(dest), "-e", engine, "--processes", "2", "-q"),
                           capture_output=True, text=True, timeout=60)
    assert 0 == rerun.returncode, rerun.stderr
    assert all(body(name, SLOW) == (dest / name).read_bytes() for name in names)


def test_killing_the_parent_leaves_no_process_downloading(server: Server, engine: str, tmp_path: Path) -> None:
    """kill -9 of the parent: its engine processes end too, within seconds."""
    listing, _ = slow_list(server, tmp_path, f"orphan-{engine}")
    dest = tmp_path / "out"
    run = subprocess.Popen(cli("-i", str(listing), "-d", str(dest), "-e", engine, "--processes", "2", "-q"),
                           stderr=subprocess.DEVNULL)
    wait_until(lambda: len(list(dest.glob("*.part"))) >= 4)
    children = children_of(run.pid)
    assert 2 == len(children)
    run.kill()
    run.wait(10)

    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in children), 10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_process_that_keeps_dying_fails_its_share_with_the_reason(server: Server, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_RESTARTS deaths every entry of that share fails naming the crash; the run still ends."""
    import downloader.processes as processes

    def die(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(processes, "MAX_RESTARTS", 0)
    monkeypatch.setattr(processes, "child_main", die)  # forked children run it as they start
    jobs = [Job(server.file_url(f"die-{i}.bin", 10), out=f"x{i}.bin") for i in range(6)]
    results: list[object] = []

    summary = processes.ProcessRun(Config(dest=tmp_path, concurrency=2), 2, on_result=results.append)(iter(jobs))

    assert 6 == summary.failed
    assert all("died (killed by SIGKILL)" in str(r.error) for r in results)  # type: ignore[attr-defined]


def test_a_short_list_runs_all_at_once_however_the_hash_spreads_it() -> None:
    """A list that ends within its first -j entries sizes each process to what it has."""
    config = Config(concurrency=200, processes=2)

    assert [100, 100] == shares_for(config, 2, None)
    assert [113, 87] == shares_for(config, 2, [113, 87])
    assert [1, 5] == shares_for(config, 2, [0, 5])


def test_processes_must_be_at_least_one() -> None:
    """Config(processes=0) is refused with the value named."""
    with pytest.raises(ValueError, match="processes must be at least 1, not 0"):
        dataclasses.replace(Config(), processes=0)
