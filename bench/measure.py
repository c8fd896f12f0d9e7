"""Run one command and measure it: wall time, CPU time and peak RSS of that one process.

The command is started by a tiny launcher (launch.py, run as ``python -I -S``)
that forks it, reaps it with ``os.wait4(pid)`` and writes down that child's own
``ru_utime``, ``ru_stime`` and ``ru_maxrss`` (not ``RUSAGE_CHILDREN``, which adds
up every child a process ever had), plus the wall time from fork to reaping.
The launcher exists because a child's ``ru_maxrss`` can never be lower than the
size of the process that forked it: forked from the harness, every tool would
report at least the harness's 30-40 MiB; forked from the launcher, the floor is
about 5 MiB (``/bin/true`` reports 4.9 MiB), below every tool measured here.

The launcher and the command run in their own session, so a timeout or Ctrl-C
kills the command and everything it started. The same session lets the harness
watch every process the command starts (``sample_rss``): their peak RSS
(``VmHWM`` in /proc) is read every SAMPLE_INTERVAL seconds while the command runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "launch.py"
SAMPLE_INTERVAL = 0.2
"""Seconds between two reads of /proc when sampling the peak RSS of a command's processes."""


@dataclass(frozen=True)
class Measurement:
    wall: float
    """Seconds from fork to reaping (or until killed, for a timeout)."""
    user: float
    system: float
    maxrss_kib: int
    """ru_maxrss of the command's process; Linux reports it in KiB."""
    exit_code: int
    """Exit status, or minus the signal number when killed by a signal."""
    timed_out: bool
    started: float = 0.0
    """``time.monotonic()`` at fork (0.0 when unknown: timed out)."""
    sampled_rss_kib: tuple[int, ...] = ()
    """With ``sample_rss``: the peak RSS (VmHWM) seen of the command's process, then of
    every other process of its session, in KiB; a process that lived less than
    SAMPLE_INTERVAL may be missed, and growth in its last interval is."""

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def completed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_measured(argv: Sequence[str], *, timeout: float, log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 sample_rss: bool = False) -> Measurement:
    """Run ``argv`` with its output to ``log_path``; kill it after ``timeout`` seconds.

    With ``sample_rss``, also watch the peak RSS of each process it starts (see Measurement).
    """
    result_path = log_path.with_suffix(".rusage")
    result_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", str(LAUNCHER), str(result_path), "--", *argv]
    fired = threading.Event()

    def kill_on_timeout(pid: int) -> None:
        fired.set()
        _kill_group(pid)

    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
        timer = threading.Timer(timeout, kill_on_timeout, (process.pid,))
        timer.start()
        sampler = RssSampler(process.pid) if sample_rss else None
        try:
            launcher_status = process.wait()
        except BaseException:  # Ctrl-C or anything else: leave no process behind
            _kill_group(process.pid)
            process.wait()
            raise
        finally:
            timer.cancel()
            sampled = sampler.stop() if sampler else ()
        elapsed = time.perf_counter() - start
    if fired.is_set() or not result_path.exists():
        _kill_group(process.pid)  # whatever the command started and left behind
        exit_code = launcher_status if not fired.is_set() else -signal.SIGKILL
        return Measurement(elapsed, 0.0, 0.0, 0, exit_code, fired.is_set(), sampled_rss_kib=sampled)
    wall, user, system, maxrss, status, started = result_path.read_text().split()
    return Measurement(float(wall), float(user), float(system), int(maxrss), int(status), False, float(started),
                       sampled)


class RssSampler:
    """Reads the peak RSS of every process in the session of ``launcher`` (itself excluded)
    every SAMPLE_INTERVAL seconds, in a thread, until :meth:`stop`."""

    def __init__(self, launcher: int) -> None:
        self.launcher = launcher
        self.peaks: dict[int, int] = {}
        self.command: int | None = None
        """The launcher's child: the command itself."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def stop(self) -> tuple[int, ...]:
        """Stop sampling; the peaks in KiB, the command's process first."""
        self._stop.set()
        self._thread.join()
        first = [self.peaks.pop(self.command)] if self.command in self.peaks else []
        return tuple(first + [self.peaks[pid] for pid in sorted(self.peaks)])

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self.sample()

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == self.launcher:
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                ppid, _, session = stat[stat.rindex(")") + 2:].split()[1:4]
                if int(session) != self.launcher:
                    continue
                peak = _vm_hwm_kib(Path(entry.path, "status").read_text())
            except (OSError, ValueError):  # gone meanwhile, or a kernel thread
                continue
            pid = int(entry.name)
            if int(ppid) == self.launcher:
                self.command = pid
            self.peaks[pid] = max(peak, self.peaks.get(pid, 0))


def _vm_hwm_kib(status: str) -> int:
    """``VmHWM`` (peak resident set) from the text of /proc/PID/status, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise ValueError("no VmHWM")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
