"""Run one command and write its wall time and rusage to a file: ``launch.py OUT -- ARGV...``.

Started by measure.py as ``python -I -S launch.py`` so that this process stays
at about 5 MiB. Why a launcher at all: on Linux a child's ``ru_maxrss`` is at
least the resident size of the process that forked it (exec records the old
memory map's high-water mark), so a tool forked straight from the harness
(30-40 MiB of Python) would never report less than the harness's own size.
Forked from here, the floor is this launcher's size instead.

Writes ``wall user system maxrss_kib exit_code started`` on one line to OUT,
where exit_code is minus the signal number when the command was killed and
started is ``time.monotonic()`` just before the fork (CLOCK_MONOTONIC on Linux,
one clock for all processes: a server can say how long after it a request came).
"""

import os
import sys
import time


def main() -> int:
    out, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        print("usage: launch.py OUT -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    started = time.monotonic()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: become the command
        try:
            os.execvp(argv[0], argv)
        except OSError as error:
            print(f"launch.py: cannot run {argv[0]}: {error}", file=sys.stderr)
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    exit_code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as result:
        result.write(f"{wall} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss} {exit_code} {started!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
