"""Every core of one machine: the parent reads the list and hands each entry to one of N engine processes.

The parent reads the list once, lazily, and sends each entry to the process its
placement hash names (:mod:`downloader.sharding`), so that one dispatcher sees
every line that must be decided together (the same URL, or URLs that name the
same file). Each process runs the ordinary engine on its share of ``-j`` with its
own dispatcher, over the destination's one manifest (SQLite in WAL mode takes
writers from several processes). The parent owns what the user sees: the bar, the
results (report, failed list), the summary and the exit status.

Bounds and faults:

* At most :func:`window` entries per process are sent and not yet answered; the
  reader waits for the slowest process it has to feed, so the list is never queued
  in memory.
* A process that dies (kill -9, out of memory) is noticed by its sentinel; the
  entries it had not answered go to a fresh process, which resumes their parts.
  An entry that was in flight in a second death fails, naming the crash. After
  :data:`MAX_RESTARTS` deaths of one process its share of the list fails.
* Ctrl-C or SIGTERM in the parent stops every process as one run stops: parts
  kept, in-flight URLs recorded as pending, interrupted ones counted. Children
  ignore the terminal's SIGINT and stop on the parent's SIGTERM, so each is told
  once; a parent killed with SIGKILL takes them with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import IO, Any

from downloader import memory
from downloader.config import Config
from downloader.dispatch import Dispatcher, failed_result
from downloader.engines import get_engine
from downloader.errors import InvalidJob
from downloader.jobs import Job, Result, Status
from downloader.manifest import Manifest, ManifestError
from downloader.progress import Progress, Summary
from downloader.sharding import placement_hash, placement_key, process_of
from downloader.sources import Entry

__all__ = ["MAX_RESTARTS", "ProcessRun", "child_config", "child_main", "share", "shares_for", "window"]

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
"""Fresh processes started for one share of the list after deaths, before its entries fail."""

_READ_BATCH = 256  # entries read from the list per turn, and sent per message at most
_RESULTS_BATCH = 128  # results a child sends per message at most
_FLUSH_SECONDS = 0.05  # longest a child holds counts and results before sending them
_STOP_GRACE = 20.0  # seconds stopped children get to record their state before SIGKILL
_PR_SET_PDEATHSIG = 1


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split as evenly as whole numbers allow (the first parts get the remainder)."""
    return total // parts + (1 if index < total % parts else 0)


def window(concurrency: int) -> int:
    """Entries a process may have been sent and not yet answered: every job its engine may hold
    (up to 8 per transfer, queued or running) plus two reading batches, so it never starves."""
    return 8 * concurrency + 4 * _READ_BATCH


def child_config(config: Config, processes: int, index: int, *, concurrency: int | None = None) -> Config:
    """The configuration of engine process ``index``: its share of -j (or ``concurrency``), of
    --per-host and of --limit-rate."""
    per_host = None if config.per_host is None else max(1, share(config.per_host, processes, index))
    rate = None if config.limit_rate is None else max(1, config.limit_rate // processes)
    if concurrency is None:
        concurrency = share(config.concurrency, processes, index)
    return dataclasses.replace(config, processes=1, concurrency=max(1, concurrency),
                               per_host=per_host, limit_rate=rate, progress=False, progress_lines=None, shard=None)


def shares_for(config: Config, processes: int, head: list[int] | None) -> list[int]:
    """Each process's transfers: equal shares of -j, or, for a list that ended within its first
    -j entries (``head``: how many of them each process takes), what each process has, so that
    a short list runs all at once, as in one process, however the hash spread it."""
    if head is None:
        return [share(config.concurrency, processes, index) for index in range(processes)]
    return [max(1, count) for count in head]


# -- the parent ----------------------------------------------------------------------


@dataclass(slots=True)
class _Sent:
    entry: Job
    resent: bool = False
    """Already given to a fresh process once after a death."""


@dataclass(eq=False)
class _Worker:
    """One engine process as the parent sees it; every field is guarded by the pool's lock."""

    index: int
    config: Config
    process: BaseProcess
    inbox: Connection
    """Parent -> child: lists of entries, then None at the end of the list."""
    outbox: Connection
    """Child -> parent: counts and results, then ("done", interrupted, peak RSS)."""
    generation: int = 0
    """How many times the process was replaced; a send prepared for another generation is dropped."""
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    outstanding: dict[tuple[str, str | None], list[_Sent]] = field(default_factory=dict)
    count: int = 0
    """Entries sent and not yet answered."""
    restarts: int = 0
    fed: bool = False
    """The end of the list was sent."""
    done: bool = False
    """The process said it finished (its list, or stopping)."""
    ended: bool = False
    """Nothing more will come from it."""
    broken: str | None = None
    """Why its share of the list fails from now on (it died too often)."""
    interrupted: int = 0
    peak_rss: int = 0


class ProcessRun:
    """A run over ``processes`` engine processes; the same interface as :class:`downloader.Run`.

    The processes are started here, before any thread of this run exists, so that
    forking copies no lock held by another thread.

    Raises:
        ManifestError: the destination's manifest cannot be opened (checked once here).
    """

    def __init__(self, config: Config, processes: int, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False) -> None:
        self.config = config
        with contextlib.suppress(OSError):
            config.dest.mkdir(parents=True, exist_ok=True)
        if config.manifest is not None:
            Manifest(config.manifest).close()  # created (schema, WAL) once, and any problem said here
        get_engine(config.engine)  # imported once, before the fork: every child shares it
        self._count = processes
        self._lock = threading.Condition()
        self._stopping = False
        self._workers: list[_Worker] = []
        self._progress_options: dict[str, Any] = {"stream": stream, "on_result": on_result,
                                                  "list_failures": list_failures}
        self.progress: Progress | None = None
        self._manifest: Manifest | None = None
        self._screen: Dispatcher | None = None
        # Waited on through this event, never Thread.join: a Ctrl-C that interrupts join()
        # leaves the thread looking finished in CPython 3.11 (is_alive() turns False).
        self._collected = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="processes", daemon=True)

    def _begin(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        """Read the head of the list, start the processes (before any thread of this run exists,
        so that forking copies no lock another thread holds), then the bar and the collector."""
        head = list(itertools.islice(entries, self.config.concurrency + 1))
        counts = None
        if len(head) <= self.config.concurrency:  # the whole list: size each process to what it has
            counts = [0] * self._count
            for entry in head:
                if not isinstance(entry, InvalidJob):
                    counts[self._place(entry)] += 1
        shares = shares_for(self.config, self._count, counts)
        self._workers = [self._start(index, shares[index]) for index in range(self._count)]
        self.progress = Progress.of_run(self.config, **self._progress_options)
        # This process settles what needs no transfer (invalid lines, files the manifest
        # has), one manifest query per batch as one engine would: a re-run sends nothing on.
        self._manifest = Manifest(self.config.manifest) if self.config.manifest is not None else None
        self._screen = Dispatcher(self.config, self.progress, self._manifest)
        self._collector.start()
        return itertools.chain(head, entries)

    # -- the run -----------------------------------------------------------------

    def __call__(self, entries: Iterable[Entry]) -> Summary:
        """Fetch every entry; on KeyboardInterrupt every process stops, then the interrupt propagates."""
        try:
            self._feed(self._begin(iter(entries)))
            self._join_collector()
        except BaseException:
            self._stop()
            raise
        finally:
            if self.progress is not None:
                self.progress.close()
            self._close_manifest()
        return self.summary()

    def _close_manifest(self) -> None:
        if self._manifest is not None:
            try:
                self._manifest.close()
            except ManifestError as error:  # it only read: nothing of the run is lost
                log.error("%s", error)

    def summary(self) -> Summary:
        """Counts so far; what the processes had in flight when stopped counts as interrupted."""
        with self._lock:
            interrupted = sum(worker.interrupted for worker in self._workers)
        if self.progress is None:  # stopped while reading the head of the list
            return Summary(0, 0, 0, 0, 0, 0.0)
        return self.progress.summary(interrupted=interrupted)

    def failures(self) -> Iterator[str]:
        """Each failure as ``URL: reason``."""
        return self.progress.failures() if self.progress is not None else iter(())

    def peak_rss(self) -> dict[str, object]:
        """Peak resident memory in bytes: this process, and each engine process that reported it."""
        with self._lock:
            workers = [worker.peak_rss for worker in self._workers]
        return {"parent": memory.peak_rss(), "workers": workers}

    @property
    def _events(self) -> Progress:
        assert self.progress is not None, "used only once the run has begun"
        return self.progress

    def _place(self, entry: Job) -> int:
        return process_of(placement_hash(placement_key(entry, self.config.layout)), self._count)

    def _feed(self, entries: Iterator[Entry]) -> None:
        screen = self._screen
        assert screen is not None
        while chunk := list(itertools.islice(entries, _READ_BATCH)):
            batches: list[list[Job]] = [[] for _ in self._workers]
            for entry, done in screen.with_done(chunk):
                job = screen.screen(entry, done)  # counts it seen; settles it when nothing is to fetch
                if job is not None:
                    batches[self._place(job)].append(job)
            for worker, batch in zip(self._workers, batches):
                if batch:
                    self._send(worker, batch)
        for worker in self._workers:
            self._send(worker, None)

    def _send(self, worker: _Worker, batch: list[Job] | None) -> None:
        """Hand ``batch`` (None: the end of the list) to ``worker``, once its window has room."""
        limit = window(worker.config.concurrency)
        with self._lock:
            while batch is not None and worker.count >= limit and not worker.ended:
                self._lock.wait()
            if worker.broken is not None:
                refused = batch or []
                batch = None
            else:
                refused = []
                if batch is None:
                    worker.fed = True
                else:
                    for entry in batch:
                        worker.outstanding.setdefault((entry.url, entry.origin), []).append(_Sent(entry))
                    worker.count += len(batch)
            generation, broken = worker.generation, worker.broken
        for entry in refused:
            self._events.result(failed_result(entry.url, str(broken), entry.origin, job=entry))
        if broken is None:
            self._deliver(worker, None if batch is None else _pack_jobs(batch), generation)

    def _deliver(self, worker: _Worker, message: object, generation: int) -> None:
        with worker.send_lock:
            if worker.generation != generation:
                return  # the process died meanwhile: its replacement was given everything outstanding
            with contextlib.suppress(OSError):  # a dead process: its sentinel says so to the collector
                worker.inbox.send(message)

    def _join_collector(self) -> None:
        while not self._collected.wait(0.2):
            pass

    def _stop(self) -> None:
        """Tell every process to stop once, wait for them to record their state, then end stragglers."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            alive = [worker.process for worker in self._workers if not worker.ended]
        for process in alive:
            with contextlib.suppress(OSError, AttributeError):
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        try:
            while not self._collected.wait(0.2) and time.monotonic() < deadline:
                pass
        finally:  # a second Ctrl-C, or the grace is over: no process is left fetching
            for process in alive:
                if process.is_alive():
                    process.kill()

    # -- starting and replacing processes -----------------------------------------

    def _start(self, index: int, concurrency: int) -> _Worker:
        config = child_config(self.config, self._count, index, concurrency=concurrency)
        process, inbox, outbox = _spawn(config, fresh=False)
        return _Worker(index, config, process, inbox, outbox)

    def _replace(self, worker: _Worker, reason: str) -> None:
        """After ``worker`` died: hand what it had not answered to a fresh process, or fail it."""
        with worker.send_lock:
            with self._lock:
                sent = [item for items in worker.outstanding.values() for item in items]
                worker.outstanding.clear()
                worker.count = 0
                lost = [item.entry for item in sent if item.resent or self._stopping]
                again = [item for item in sent if not item.resent and not self._stopping]
                if not self._stopping and worker.restarts >= MAX_RESTARTS:
                    worker.broken = f"{reason}; it died {worker.restarts + 1} times, so its share of the list fails"
                    lost, again = [item.entry for item in sent], []
                if self._stopping or worker.broken is not None:
                    worker.ended = True
                else:
                    self._restart(worker, again)
                    log.warning("%s; %d URLs it had in flight go to a fresh process", reason, len(again))
                self._lock.notify_all()
            if again and not worker.ended:
                with contextlib.suppress(OSError):
                    worker.inbox.send(_pack_jobs([item.entry for item in again]))
                    if worker.fed:
                        worker.inbox.send(None)
        why = worker.broken or f"{reason} while this URL was in flight, for the second time; not tried again"
        for entry in lost:
            if self._stopping:
                continue  # counted as interrupted by nobody: the run is stopping anyway
            self._events.result(failed_result(entry.url, why, entry.origin, job=entry))

    def _restart(self, worker: _Worker, again: list[_Sent]) -> None:
        """Start the replacement of ``worker`` (under both locks): a new process, pipes and generation."""
        for connection in (worker.inbox, worker.outbox):
            connection.close()
        worker.process, worker.inbox, worker.outbox = _spawn(worker.config, fresh=True)
        worker.generation += 1
        worker.restarts += 1
        worker.done = False
        for item in again:
            item.resent = True
            worker.outstanding.setdefault((item.entry.url, item.entry.origin), []).append(item)
        worker.count = len(again)

    # -- the collector thread -------------------------------------------------------

    def _collect(self) -> None:
        """Receive counts and results from every process; notice deaths. Ends when every process has."""
        try:
            self._collect_until_ended()
        finally:
            self._collected.set()

    def _collect_until_ended(self) -> None:
        while True:
            with self._lock:
                live = [(worker, worker.generation) for worker in self._workers if not worker.ended]
            if not live:
                return
            owners: dict[Any, tuple[_Worker, int]] = {}  # a pipe or a process sentinel
            for worker, generation in live:
                owners[worker.outbox] = owners[worker.process.sentinel] = (worker, generation)
            for ready in wait(list(owners), timeout=1.0):
                worker, generation = owners[ready]
                if worker.ended or worker.generation != generation:
                    continue  # already reaped through its other handle in this turn
                if ready is not worker.outbox or not self._drain(worker):
                    self._reap(worker)  # its process ended (sentinel), or closed its pipe in ending

    def _drain(self, worker: _Worker) -> bool:
        """Handle every message waiting from ``worker``; False once its pipe is closed."""
        outbox = worker.outbox
        try:
            while outbox.poll():
                self._handle(worker, outbox.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            _, expected, received, results = message
            if expected:
                self._events.bytes_expected(expected)
            if received:
                self._events.bytes_received(received)
            for row in results:
                self._settled(worker, _unpack_result(row))
        elif kind == "done":
            with self._lock:
                worker.done = True
                worker.interrupted, worker.peak_rss = message[1], message[2]

    def _settled(self, worker: _Worker, result: Result) -> None:
        with self._lock:
            sent = worker.outstanding.get((result.url, result.origin))
            if not sent:
                return  # an answer for an entry given twice around a death: the first one counted
            item = sent.pop()
            if not sent:
                del worker.outstanding[(result.url, result.origin)]
            worker.count -= 1
            self._lock.notify_all()
        if result.job is None and result.status is Status.FAILED:  # what --failed writes back
            result = dataclasses.replace(result, job=item.entry)
        self._events.result(result)

    def _reap(self, worker: _Worker) -> None:
        """``worker``'s process ended: take its last messages, then see whether it finished or died."""
        while self._drain(worker) and worker.outbox.poll(0.2):
            pass
        worker.process.join(5.0)
        with self._lock:
            clean = worker.done and not worker.outstanding or self._stopping and worker.done
            if clean:
                worker.ended = True
                self._lock.notify_all()
        if not clean:
            self._replace(worker, f"engine process {worker.index + 1} of {self._count} "
                                  f"(pid {worker.process.pid}) died ({_death(worker.process.exitcode)})")


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def _spawn(config: Config, *, fresh: bool) -> tuple[BaseProcess, Connection, Connection]:
    """Start one engine process: forked while the parent has no other thread (fast, shares the
    imports), else started fresh (a fork would copy locks other threads may hold)."""
    fork = not fresh and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
    child_inbox, inbox = context.Pipe(duplex=False)
    outbox, child_outbox = context.Pipe(duplex=False)
    process = context.Process(target=child_main, args=(config, child_inbox, child_outbox, os.getpid()),
                              name="downloader-engine", daemon=True)
    process.start()
    child_inbox.close()  # only the child holds its ends: its death shows as EOF and EPIPE here
    child_outbox.close()
    return process, inbox, outbox


# Jobs and results cross the pipes as plain tuples: pickling the dataclasses themselves
# cost 16 us per result and 5 us per job (their slots go through dataclasses.fields()),
# the tuples about a tenth of that, which is what a re-run of a long list is made of.
_JobRow = tuple[str, str | None, str | None, int | None, str | None]
_ResultRow = tuple[str, str, str | None, int, int, str | None, str | None, str | None, str | None, str | None,
                   str | None, int]


def _pack_jobs(jobs: list[Job]) -> list[_JobRow]:
    return [(job.url, job.out, job.checksum, job.size, job.origin) for job in jobs]


def _pack_result(result: Result) -> _ResultRow:
    """Everything but ``job``, which the parent still holds."""
    return (result.url, result.status.value, result.path, result.size, result.received, result.checksum, result.error,
            result.origin, result.final_url, result.etag, result.last_modified, result.attempts)


def _unpack_result(row: _ResultRow) -> Result:
    url, status, path, size, received, checksum, error, origin, final_url, etag, last_modified, attempts = row
    return Result(url, Status(status), path, size, received, checksum, error, origin, final_url, etag, last_modified,
                  attempts)


# -- the child -------------------------------------------------------------------------


class _Relay:
    """A child's events: byte counts and results, sent to the parent in batches by one thread."""

    def __init__(self, outbox: Connection) -> None:
        self._outbox = outbox
        self._lock = threading.Condition()
        self._expected = self._received = 0
        self._results: list[_ResultRow] = []
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)
        self._thread.start()

    def job_seen(self) -> None:
        pass  # the parent counts what it reads

    def bytes_expected(self, count: int) -> None:
        with self._lock:
            self._expected += count

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._received += count

    def result(self, result: Result) -> None:
        with self._lock:
            self._results.append(_pack_result(result))
            if len(self._results) == _RESULTS_BATCH:
                self._lock.notify()

    def close(self, interrupted: int | None) -> None:
        """Send what is left, then ``("done", interrupted, peak RSS)`` unless ``interrupted`` is None."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()
        if interrupted is not None:
            self._send(("done", interrupted, memory.peak_rss()))

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._closing and len(self._results) < _RESULTS_BATCH:
                    self._lock.wait(_FLUSH_SECONDS)
                message = ("progress", self._expected, self._received, self._results)
                self._expected = self._received = 0
                self._results = []
                closing = self._closing
            if message[1] or message[2] or message[3]:
                self._send(message)
            if closing:
                return

    def _send(self, message: object) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            self._outbox.send(message)


def child_main(config: Config, inbox: Connection, outbox: Connection, parent: int) -> None:
    """An engine process: run the engine on what the parent sends, until the end of the list or SIGTERM.

    It says ``done`` when it finished or was stopped; a process that ends without saying
    so (killed, or a bug) is treated by the parent as dead, and its entries go to a fresh one.
    """
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, and tells each child once
    signal.signal(signal.SIGTERM, _stop_once)
    relay = _Relay(outbox)
    try:
        interrupted = _serve(config, inbox, relay)
    except Exception:  # noqa: BLE001 - a bug: said here, and the parent hands the entries on
        log.exception("engine process failed")
        relay.close(None)
        os._exit(1)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(130))
    relay.close(interrupted)
    os._exit(0)  # worker threads blocked on a socket after a stop would delay the exit


def _serve(config: Config, inbox: Connection, relay: _Relay) -> int:
    """Run the engine over the entries from ``inbox``; how many were in flight when it was stopped."""
    try:
        manifest = Manifest(config.manifest) if config.manifest is not None else None
    except KeyboardInterrupt:
        return 0
    dispatcher = Dispatcher(config, relay, manifest)
    interrupted = 0
    try:
        get_engine(config.engine)(_incoming(inbox), config, relay, dispatcher)
    except KeyboardInterrupt:
        interrupted = dispatcher.in_flight
        dispatcher.record_in_flight()
    finally:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(130))
        if manifest is not None:
            try:
                manifest.close()
            except ManifestError as error:
                log.error("manifest not fully written: %s", error)
    return interrupted


def _incoming(inbox: Connection) -> Iterator[Entry]:
    while True:
        try:
            batch = inbox.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if batch is None:
            return
        for row in batch:
            yield Job(*row)


def _stop_once(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(130))
    raise KeyboardInterrupt


def _die_with(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (kill -9 included); elsewhere, the closed pipe tells."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
