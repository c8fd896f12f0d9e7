"""Crash safety: a real downloader process killed with SIGKILL mid-transfer, then re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from downloader import DEFAULT_CHUNK_SIZE
from downloader.testing import Rule, Server, body

SIZE = 12 * 1024 * 1024
RATE = 8 * 1024 * 1024  # bytes/s: slow enough to kill the process at chosen points
PIECE = RATE // 10  # the server sends RATE/10 bytes per tenth of a second
CHUNK = DEFAULT_CHUNK_SIZE


def start(server: Server, path: str, dest: Path, engine: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "downloader", server.url(path), "-d", str(dest), "-e", engine, "-q"]
    return subprocess.Popen(argv, stderr=subprocess.PIPE)


def wait_for_part(part: Path, at_least: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if part.exists() and part.stat().st_size >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError(f"{part} never reached {at_least} bytes")


def test_sigkill_at_several_points_then_rerun(server: Server, engine: str, tmp_path: Path) -> None:
    """Killed three times mid-body, the fourth run finishes byte-exact, and little is fetched twice."""
    name = f"crash-{engine}.bin"
    path = f"/bytes/{SIZE}/{name}"
    server.set_rule(path, Rule(rate=RATE))
    final, part = tmp_path / name, tmp_path / (name + ".part")

    for fraction in (0.2, 0.45, 0.7):
        process = start(server, path, tmp_path, engine)
        wait_for_part(part, int(SIZE * fraction), process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert not final.exists()  # never a file under its final name before it is whole
    done = start(server, path, tmp_path, engine)
    _, err = done.communicate(timeout=60)

    assert 0 == done.returncode, err
    assert body(name, SIZE) == final.read_bytes()
    assert [] == sorted(p.name for p in tmp_path.iterdir() if p.name not in (name, ".downloader"))
    served = server.bytes_sent(path)
    assert served <= SIZE + 3 * (PIECE + 2 * CHUNK), f"served {served} bytes for a {SIZE}-byte file"
    assert 4 == len(server.requests(path))
    assert all(entry.range for entry in server.requests(path)[1:])


def test_sigkill_before_the_first_byte_leaves_nothing_corrupt(server: Server, engine: str, tmp_path: Path) -> None:
    """Killed while waiting for the headers, a run leaves no final file and the next run completes."""
    name = f"crash-early-{engine}.bin"
    path = f"/bytes/100000/{name}"
    server.set_rule(path, Rule(delay=0.5, times=1))
    process = start(server, path, tmp_path, engine)
    deadline = time.monotonic() + 10
    while server.counts[path] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)

    done = start(server, path, tmp_path, engine)
    _, err = done.communicate(timeout=30)

    assert 0 == done.returncode, err
    assert body(name, 100000) == (tmp_path / name).read_bytes()


def test_two_runs_on_one_list_share_the_work(server: Server, engine: str, tmp_path: Path) -> None:
    """Two runs started together on one list and one destination (manifest on): both end well,
    every file is whole, and the files are fetched about once in all (a part being written by
    one run is left to it), not once per run."""
    names = [f"{engine}-shared-{i}.bin" for i in range(60)]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(name, 20_000) + "\n" for name in names))
    dest = tmp_path / "dest"
    argv = [sys.executable, "-m", "downloader", "-i", str(listing), "-d", str(dest), "-e", engine, "-q", "-j", "8"]
    for name in names:
        server.set_rule(f"/bytes/20000/{name}", Rule(delay=0.05))  # transfers overlap in time

    runs = [subprocess.Popen(argv, stderr=subprocess.PIPE) for _ in range(2)]
    outcomes = [run.communicate(timeout=60) for run in runs]

    assert [0, 0] == [run.returncode for run in runs], outcomes
    assert all(body(name, 20_000) == (dest / name).read_bytes() for name in names)
    served = sum(len(server.requests(f"/bytes/20000/{name}")) for name in names)
    assert served <= 1.2 * len(names), served


LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
sys.argv = ["downloader", *sys.argv[1:]]
runpy.run_module("downloader", run_name="__main__")
"""
"""The CLI in a process whose files may not grow past 1 MiB (like a full disk, without one)."""


def test_a_write_that_fails_fails_the_url_and_keeps_the_part(server: Server, engine: str, tmp_path: Path) -> None:
    """A local write error in the middle of a body (EFBIG from RLIMIT_FSIZE, as a full disk would
    give ENOSPC) fails the URL at once, naming the part and the system's reason; the bytes written
    stay in the part, and a run without the limit resumes from them, byte-exact."""
    name, size = f"{engine}-toolarge.bin", 3_000_000
    args = [server.file_url(name, size), "-d", str(tmp_path), "-e", engine, "-q", "--no-manifest"]

    limited = subprocess.run([sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, timeout=60)
    part = tmp_path / f"{name}.part"
    kept = part.stat().st_size
    served_first = server.bytes_sent(f"/bytes/{size}/{name}")
    again = subprocess.run([sys.executable, "-m", "downloader", *args], capture_output=True, text=True, timeout=60)

    assert 1 == limited.returncode, limited.stderr
    assert f"{name}.part" in limited.stderr and "File too large" in limited.stderr
    assert 1 == len([e for e in server.requests(f"/bytes/{size}/{name}") if e.range is None])  # not retried
    assert 0 < kept <= 1024 * 1024
    assert 0 == again.returncode, again.stderr
    assert body(name, size) == (tmp_path / name).read_bytes()
    assert server.bytes_sent(f"/bytes/{size}/{name}") - served_first <= size - kept + 1024 * 1024
