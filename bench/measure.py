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
kills the command and everything it started.
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

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def completed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_measured(argv: Sequence[str], *, timeout: float, log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Measurement:
    """Run ``argv`` with its output to ``log_path``; kill it after ``timeout`` seconds."""
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
        try:
            launcher_status = process.wait()
        except BaseException:  # Ctrl-C or anything else: leave no process behind
            _kill_group(process.pid)
            process.wait()
            raise
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
    if fired.is_set() or not result_path.exists():
        _kill_group(process.pid)  # whatever the command started and left behind
        exit_code = launcher_status if not fired.is_set() else -signal.SIGKILL
        return Measurement(elapsed, 0.0, 0.0, 0, exit_code, fired.is_set())
    wall, user, system, maxrss, status = result_path.read_text().split()
    return Measurement(float(wall), float(user), float(system), int(maxrss), int(status), False)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
