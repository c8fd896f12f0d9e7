"""Run one command and measure it: wall time, CPU time and peak RSS of that child process.

The child is reaped with ``os.wait4(pid)``, which returns the resource usage of
that one child (plus any of its own children it waited for), unlike
``RUSAGE_CHILDREN``, which adds up every child the harness ever had. The child
runs in its own session so that a timeout or Ctrl-C kills it with everything it
started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measurement:
    wall: float
    """Seconds from just before the process was started until it was reaped."""
    user: float
    system: float
    maxrss_kib: int
    """ru_maxrss of the child; Linux reports it in KiB."""
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
    """Run ``argv`` with output to ``log_path``; kill it after ``timeout`` seconds."""
    fired = threading.Event()

    def kill_on_timeout(pid: int) -> None:
        fired.set()
        _kill_group(pid)

    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
        timer = threading.Timer(timeout, kill_on_timeout, (process.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C or anything else: leave no child behind
            _kill_group(process.pid)
            process.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    if fired.is_set():
        _kill_group(process.pid)  # the child's own children, if any survived it
    return Measurement(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, process.returncode, fired.is_set())


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
