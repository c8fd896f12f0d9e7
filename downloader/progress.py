"""Counting what happens in a run: the progress bar, the summary line, the list of failures.

Engines call :class:`Progress` from any thread, once per chunk; it only adds
numbers under a lock. A ticker thread redraws the tqdm bar at most ten times a
second, however fast the chunks arrive, so the bar costs nothing per chunk.
Failures are spooled to a temporary file, not kept in memory: a run over a
million URLs that all fail still prints every one at the end in bounded memory.

When the number of files the run will see becomes known (a :class:`FileTotal`: URLs
given as arguments, or a background count of a list file's lines), the bar counts
files done of that total and the plain lines say ``files N done of M``; until then,
files done of those seen so far.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from downloader.jobs import Result, Status

if TYPE_CHECKING:
    from tqdm import tqdm

    from downloader.config import Config

__all__ = ["Events", "FileTotal", "Progress", "Summary", "human_bytes"]

_REFRESH_SECONDS = 0.1
_FILES = " files"  # the bar's unit once it counts files


class Events(Protocol):
    """What engines report while they work."""

    def job_seen(self) -> None: ...
    def bytes_expected(self, count: int) -> None: ...
    def bytes_received(self, count: int) -> None: ...
    def result(self, result: Result) -> None: ...


class FileTotal(Protocol):
    """How many files a run will see, known later or never (see :class:`downloader.listcount.ListCount`).

    The progress starts it when it starts showing anything and stops it when the run ends.
    """

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def value(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for a whole run."""

    downloaded: int
    skipped: int
    failed: int
    interrupted: int
    received: int
    elapsed: float
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.interrupted == 0

    def line(self) -> str:
        """The one summary line printed at the end of every run."""
        counts = f"downloaded {self.downloaded}, skipped {self.skipped}, failed {self.failed}"
        if self.unchanged:
            counts += f", unchanged {self.unchanged}"
        if self.interrupted:
            counts += f", interrupted {self.interrupted}"
        rate = self.received / self.elapsed if self.elapsed > 0 else 0.0
        return f"{counts}; {human_bytes(self.received)} in {self.elapsed:.2f} s ({human_bytes(rate)}/s)"

    def to_json(self) -> dict[str, object]:
        return {
            Status.DOWNLOADED.value: self.downloaded,
            Status.SKIPPED.value: self.skipped,
            Status.FAILED.value: self.failed,
            "interrupted": self.interrupted,
            Status.UNCHANGED.value: self.unchanged,
            "bytes": self.received,
            "elapsed": round(self.elapsed, 3),
        }


class Progress:
    """Thread-safe counters behind the bar and the summary (an :class:`Events`)."""

    def __init__(self, *, bar: bool = False, stream: IO[str] | None = None,
                 on_result: Callable[[Result], None] | None = None, spool_failures: bool = False,
                 lines: float | None = None, total: FileTotal | None = None) -> None:
        self._on_result = on_result
        self._total = total
        self._spool_failures = spool_failures
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._seen = self._expected = self._received = self._provisional = 0
        self._counts = {status: 0 for status in Status}
        self._failures: IO[str] | None = None
        self._stop = threading.Event()
        self._bar: tqdm[None] | None = None
        self._ticker: threading.Thread | None = None
        if (bar or lines is not None) and total is not None:
            total.start()  # counted only when shown
        if bar:
            from tqdm import tqdm  # here: a run without a bar does not pay its import (10 ms)

            self._bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, file=stream,
                             dynamic_ncols=True, mininterval=_REFRESH_SECONDS, leave=True, smoothing=0.1)
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        elif lines is not None:  # no terminal: a plain line every ``lines`` seconds, for a log
            self._ticker = threading.Thread(target=self._write_lines, args=(lines, stream), name="progress", daemon=True)
            self._ticker.start()

    @classmethod
    def of_run(cls, config: Config, *, stream: IO[str] | None = None,
               on_result: Callable[[Result], None] | None = None, list_failures: bool = False,
               total: FileTotal | None = None) -> Progress:
        """The progress of a run as ``config`` asks: the bar, plain lines, or neither."""
        return cls(bar=config.progress, lines=config.progress_lines, stream=stream, on_result=on_result,
                   spool_failures=list_failures, total=total)

    # -- Events ----------------------------------------------------------------

    def job_seen(self) -> None:
        with self._lock:
            self._seen += 1

    def bytes_expected(self, count: int) -> None:
        with self._lock:
            self._expected += count

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._received += count

    def provisional(self, count: int) -> None:
        """Files finished elsewhere whose results have not arrived yet (a Dask task still
        running): shown in the bar's files count, never in the summary."""
        with self._lock:
            self._provisional = count

    def result(self, result: Result) -> None:
        with self._lock:
            self._counts[result.status] += 1
            if result.status is Status.FAILED and self._spool_failures:
                self._spool().write(f"{result.url}: {result.error}\n")
            if self._on_result is not None:
                self._on_result(result)

    # -- the end of a run ------------------------------------------------------

    def close(self) -> None:
        """Stop the ticker (and the count of the total) and draw the bar one last time."""
        self._stop.set()
        if self._total is not None:
            self._total.stop()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._draw()
            self._bar.close()

    def summary(self, interrupted: int = 0) -> Summary:
        with self._lock:
            counts = dict(self._counts)
            received = self._received
        return Summary(counts[Status.DOWNLOADED], counts[Status.SKIPPED], counts[Status.FAILED],
                       interrupted, received, time.monotonic() - self._started, counts[Status.UNCHANGED])

    def failures(self) -> Iterator[str]:
        """Each failure as ``URL: reason``, in the order they happened."""
        if self._failures is None:
            return
        self._failures.flush()
        self._failures.seek(0)
        for line in self._failures:
            yield line.rstrip("\n")
        self._failures.close()
        self._failures = None

    def _spool(self) -> IO[str]:
        if self._failures is None:
            self._failures = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        return self._failures

    # -- the bar ---------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(_REFRESH_SECONDS):
            self._draw()

    def _write_lines(self, interval: float, stream: IO[str] | None) -> None:
        while not self._stop.wait(interval):
            print(self.line(), file=stream if stream is not None else sys.stderr, flush=True)

    def line(self) -> str:
        """The plain progress line: ``[12 s] files 120 done of 5000 seen, 2 failed; 1.9 MiB (150.2 KiB/s)``,
        or ``files 120 done of 80000`` once the total is known."""
        done, seen, total, failed, received = self._files()
        elapsed = time.monotonic() - self._started
        rate = received / elapsed if elapsed > 0 else 0.0
        failures = f", {failed} failed" if failed else ""
        of = f"{seen} seen" if total is None else f"{total}"
        return (f"[{elapsed:.0f} s] files {done} done of {of}{failures}; "
                f"{human_bytes(received)} ({human_bytes(rate)}/s)")

    def _files(self) -> tuple[int, int, int | None, int, int]:
        """Files done, seen, the total (None while unknown), failed, and bytes received.

        The total is a count of list lines, an estimate: it is never shown below what
        was seen or done (a line it took for blank may hold an entry)."""
        with self._lock:
            received, seen = self._received, self._seen
            done = sum(self._counts.values()) + self._provisional
            failed = self._counts[Status.FAILED]
        total = self._total.value() if self._total is not None else None
        if total is not None:
            total = max(total, seen, done)
        return done, seen, total, failed, received

    def _draw(self) -> None:
        assert self._bar is not None
        done, seen, total, failed, received = self._files()
        with self._lock:
            expected = self._expected
        bar = self._bar
        failures = f", failed {failed}" if failed else ""
        if total is None:  # bytes done of those announced so far
            if expected and expected >= received:
                bar.total = expected
            bar.n = received
            bar.set_postfix_str(f"files {done}/{seen}{failures}", refresh=False)
        else:  # files done of the total: a true percentage and ETA, however large the files
            if bar.unit != _FILES:
                bar.unit, bar.unit_scale = _FILES, False
            bar.total, bar.n = total, done
            elapsed = time.monotonic() - self._started
            rate = received / elapsed if elapsed > 0 else 0.0
            bar.set_postfix_str(f"{human_bytes(received)} ({human_bytes(rate)}/s){failures}", refresh=False)
        bar.refresh()


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
