"""A Dask cluster: the list cut into tasks of a bounded number of lines, each run by the ordinary engine on a worker.

This process (the client) reads the list lazily and puts each entry in one of a
few *buckets* by its placement hash (:mod:`downloader.sharding`), so the lines that
must be decided together (the same URL, URLs naming the same file) share a bucket.
A bucket that holds :data:`TASK_LINES` lines becomes one task (so does one whose lines
have waited half a second, when the cluster has room for it), and each bucket has
at most one task running at a time, so no two workers ever decide the same file at
once. At most :attr:`ClusterRun.window` tasks are submitted and not finished: the
scheduler holds a bounded graph, and a slow cluster slows the reader.

A task runs :class:`downloader.api.LocalRun` on its lines, writing into the
destination, which every worker must see (a shared file system). It keeps its own
records: a manifest and a results file of its own in ``DEST/.downloader/tasks/``
(SQLite must not be shared by writers on several machines), and returns only their
names and a few numbers. The client reads the results into the report and the
summary and merges the records into the destination's manifest, which only it
writes. Before a task is submitted, the client settles from that manifest what
earlier tasks and runs already decided: done URLs are skipped without a request,
and a URL whose file name another URL owns gets its collision name.

A worker that dies takes its task with it; Dask gives the task to another worker,
which resumes the parts the dead one left (the task's records are on the shared
disk). Ctrl-C stops every task through a cluster-wide event (parts kept).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from downloader import memory, naming
from downloader.config import Config
from downloader.dispatch import failed_result, skipped_as_recorded
from downloader.errors import ClusterError, DownloadError, InvalidJob
from downloader.jobs import DONE_STATUSES, Job, Result, Status
from downloader.manifest import Manifest, ManifestError, Record, read_records
from downloader.progress import Progress, Summary
from downloader.sharding import placement_hash, placement_key, process_of
from downloader.sources import Entry

__all__ = ["NO_WORKER_SECONDS", "TASK_LINES", "ClusterError", "ClusterRun", "connect", "run_task"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

TASK_LINES = 1000
"""Most list lines per task: enough to amortise a task's start, few enough to spread a list early."""
_LINE_WAIT_SECONDS = 0.5
"""A bucket's oldest line waits about this long for more lines before the bucket is sent anyway
(when the window has room): a long list starts at once, and a list that trickles in is fetched
as it comes, not once a bucket fills or the list ends."""
_TOPIC = "downloader-progress"
_REPORT_SECONDS = 0.5
_STOP_POLL_SECONDS = 0.25
_STOP_GRACE = 20.0
NO_WORKER_SECONDS = 60.0
"""A run whose cluster has had no worker this long fails the lines of its running tasks."""
_CONNECT_SECONDS = 10.0
"""Seconds to wait for a scheduler to answer at the address given."""
_SCHEMES = ("tcp", "tls", "ws", "wss")  # the comms Dask connects to by address


def connect(dask: object, *, quiet: bool = True) -> tuple[Any, list[Any]]:
    """A ``distributed.Client`` for ``dask`` and what to close after the run (what was created here).

    ``dask`` is a Client (used as it is), ``"local"`` / ``"local:N"`` (a LocalCluster of N
    worker processes on 127.0.0.1; N defaults to the number of cores), or a scheduler
    address such as ``"tcp://10.0.0.5:8786"``.

    Raises:
        ClusterError: the address is not usable, or no scheduler answers there.
    """
    import distributed  # the optional extra: downloader[dask]

    if isinstance(dask, distributed.Client):
        return dask, []
    text = str(dask).strip()
    level = logging.ERROR if quiet else logging.INFO
    if text == "local" or text.startswith("local:"):
        workers = _local_workers(text)
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", silence_logs=level,
                                           # Even without a dashboard the scheduler serves HTTP, on 8787
                                           # unless told otherwise: a second run at once would fail.
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        return client, [client, cluster]
    _check_address(text)
    try:
        client = distributed.Client(text, timeout=_CONNECT_SECONDS)
    except Exception as error:  # noqa: BLE001 - OSError and TimeoutError mostly; Dask's comms raise others too
        raise ClusterError(f"no Dask scheduler answers at {text} ({error})") from error
    return client, [client]


def _check_address(text: str) -> None:
    """Refuse what is no scheduler address at once, rather than after the connect timeout
    (or with a traceback: Dask's other comms, ucx:// or inproc://, need more than an address)."""
    scheme, _, rest = text.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", *_SCHEMES) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--dask wants tcp://HOST:PORT or local[:N], not {text!r}")


def _local_workers(text: str) -> int:
    count = text.partition(":")[2]
    if not count:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not count.isdigit() or int(count) < 1:
        raise ClusterError(f"--dask local:N wants a number of workers of at least 1, not {count!r}")
    return int(count)


# -- the client --------------------------------------------------------------------------


@dataclass(eq=False)
class _Task:
    name: str
    bucket: int
    jobs: list[Job]


@dataclass
class _Buckets:
    """Lines waiting for their bucket's next task, and which buckets have one running."""

    count: int
    waiting: list[list[Job]] = field(default_factory=list)
    since: list[float | None] = field(default_factory=list)
    """When each bucket's oldest waiting line arrived (None: nothing waits)."""
    busy: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.waiting = [[] for _ in range(self.count)]
        self.since = [None] * self.count

    def add(self, bucket: int, job: Job) -> int:
        """Put ``job`` in ``bucket``; how many lines it holds now."""
        if not self.waiting[bucket]:
            self.since[bucket] = time.monotonic()
        self.waiting[bucket].append(job)
        return len(self.waiting[bucket])

    def take(self, bucket: int) -> list[Job]:
        lines, self.waiting[bucket], self.since[bucket] = self.waiting[bucket], [], None
        return lines

    def stale(self, before: float) -> list[int]:
        """The free buckets whose oldest line arrived before ``before``, oldest first."""
        found = [(since, bucket) for bucket, since in enumerate(self.since)
                 if since is not None and since < before and bucket not in self.busy]
        return [bucket for _, bucket in sorted(found)]


class ClusterRun:
    """A run on a Dask cluster; the same interface as :class:`downloader.Run`.

    Raises:
        ClusterError: the cluster cannot be reached or has no worker.
        ManifestError: the destination's manifest cannot be opened.
    """

    def __init__(self, config: Config, dask: object, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False) -> None:
        self.config = config
        config.dest.mkdir(parents=True, exist_ok=True)
        self._tasks_dir = config.dest / ".downloader" / "tasks"
        self._manifest = Manifest(config.manifest) if config.manifest is not None else None
        quiet = not logging.getLogger("downloader").isEnabledFor(logging.INFO)
        self._owned: list[Any] = []
        try:
            self._client, self._owned = connect(dask, quiet=quiet)
            threads = sum(self._client.nthreads().values()) or self._wait_for_workers()
        except BaseException:  # no run: nothing of it may stay open (the manifest's writer thread, a LocalCluster)
            self._close_cluster()
            self._close_manifest()
            raise
        # Two tasks per worker thread keep every worker busy while results come back; an
        # explicit --per-host, and --limit-rate (a total, as with --processes), hold for the
        # whole cluster: each task that may run gets its share.
        # When limits are shared, only as many tasks as can run at once are sent, so that no
        # share sits idle in a task waiting for a worker.
        limited = config.per_host is not None or config.limit_rate is not None
        self.window = max(1, min(threads, config.per_host or threads)) if limited else 2 * threads
        task_per_host = None if config.per_host is None else max(1, config.per_host // self.window)
        task_rate = None if config.limit_rate is None else max(1, config.limit_rate // self.window)
        self._task_config = dataclasses.replace(config, processes=1, shard=None, progress=False, progress_lines=None,
                                                per_host=task_per_host, limit_rate=task_rate)
        self._buckets = _Buckets(2 * self.window)
        self._run_id = uuid.uuid4().hex[:12]
        self._numbers = itertools.count(1)
        self._running: dict[Any, _Task] = {}
        self._peaks: dict[str, int] = {}  # worker -> its peak RSS, as its tasks reported it
        self._live: dict[str, int] = {}  # running task -> files it has finished so far
        self._interrupted = 0
        self._checked = 0.0  # when _send_stale last looked at the buckets
        self._workers_asked = 0.0  # when _workerless last asked the scheduler
        self._workerless_since: float | None = None
        self.progress = Progress.of_run(config, stream=stream, on_result=on_result, list_failures=list_failures)
        self._client.subscribe_topic(_TOPIC, self._on_progress)
        self._merge_left_over()

    def _wait_for_workers(self) -> int:
        try:
            self._client.wait_for_workers(1, timeout=30)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"the Dask cluster has no worker ({error})") from error
        return sum(self._client.nthreads().values())

    # -- the run ---------------------------------------------------------------------

    def __call__(self, entries: Iterable[Entry]) -> Summary:
        try:
            for entry in entries:
                self._take(entry)
            for bucket in range(self._buckets.count):
                if self._buckets.waiting[bucket]:
                    self._submit(bucket)
            while self._running:
                self._wait(block=True)
        except BaseException:
            self._stop()
            raise
        finally:
            self.progress.close()
            self._close()
        return self.summary()

    def summary(self) -> Summary:
        return self.progress.summary(interrupted=self._interrupted)

    def failures(self) -> Iterator[str]:
        return self.progress.failures()

    def peak_rss(self) -> dict[str, object]:
        return {"parent": memory.peak_rss(), "workers": list(self._peaks.values())}

    def _take(self, entry: Entry) -> None:
        self.progress.job_seen()
        if isinstance(entry, InvalidJob):
            self.progress.result(failed_result(entry.url, entry, entry.origin))
            return
        done = self._done_before(entry)
        if done is not None:  # settled here: a re-run of a completed list sends no task at all
            self.progress.result(done)
            return
        bucket = process_of(placement_hash(placement_key(entry, self.config.layout)), self._buckets.count)
        if self._buckets.add(bucket, entry) >= TASK_LINES:
            self._submit(bucket)
        else:
            self._send_stale()
        self._wait(block=False)

    def _send_stale(self) -> None:
        """Send the buckets whose lines have waited :data:`_LINE_WAIT_SECONDS`, while the window has room.

        Never waits (the list goes on being read), and looks a few times a second only: with
        thousands of buckets, looking at every line would cost more than reading it.
        """
        now = time.monotonic()
        if now - self._checked < _LINE_WAIT_SECONDS / 5:
            return
        self._checked = now
        for bucket in self._buckets.stale(now - _LINE_WAIT_SECONDS):
            if len(self._running) >= self.window:
                return
            self._submit(bucket)

    def _submit(self, bucket: int) -> None:
        """Send the bucket's waiting lines as one task, once the bucket is free and the window has room."""
        while bucket in self._buckets.busy or len(self._running) >= self.window:
            self._wait(block=True)
        lines = self._buckets.take(bucket)
        jobs = [job for job in map(self._settle_names, lines) if job is not None]
        if not jobs:
            return
        name = f"{self._run_id}-{next(self._numbers):06d}"
        future = self._client.submit(run_task, self._task_config, jobs, str(self._tasks_dir), name, self._run_id,
                                     key=f"downloader-{name}", pure=False)
        self._live[name] = 0
        self._running[future] = _Task(name, bucket, jobs)
        self._buckets.busy.add(bucket)

    def _wait(self, *, block: bool) -> None:
        """Take the results of the tasks that finished (waiting for one when ``block``)."""
        import distributed

        if not self._running:
            return
        if block:
            with contextlib.suppress(TimeoutError, distributed.TimeoutError):
                distributed.wait(list(self._running), timeout=0.5, return_when="FIRST_COMPLETED")
            if self._workerless():
                self._give_up(f"the Dask cluster has had no worker for {NO_WORKER_SECONDS:.0f} s")
        for future in [future for future in self._running if future.done()]:
            self._finished(future, self._running.pop(future))

    def _workerless(self) -> bool:
        """Whether the cluster has had no worker for NO_WORKER_SECONDS (asked every few seconds):
        Dask keeps a task whose workers all died waiting for one, and the run would never end."""
        now = time.monotonic()
        if now - self._workers_asked < 2.0:
            return self._workerless_since is not None and now - self._workerless_since > NO_WORKER_SECONDS
        self._workers_asked = now
        try:
            alive = bool(self._client.nthreads())
        except Exception:  # noqa: BLE001 - the scheduler itself is gone: no worker either
            alive = False
        if alive:
            self._workerless_since = None
        elif self._workerless_since is None:
            self._workerless_since = now
        return self._workerless_since is not None and now - self._workerless_since > NO_WORKER_SECONDS

    def _give_up(self, reason: str) -> None:
        """Fail every running task's jobs that have no result yet with ``reason``."""
        for future in list(self._running):
            with contextlib.suppress(Exception):
                future.cancel()
            self._finished(future, self._running.pop(future), problem=reason)

    def _finished(self, future: Any, task: _Task, problem: str | None = None) -> None:
        self._buckets.busy.discard(task.bucket)
        outcome: dict[str, Any] = {}
        if problem is None:
            try:
                outcome = future.result()
            except Exception as error:  # noqa: BLE001 - a lost task (KilledWorker, cancelled) or a bug in it
                problem = f"Dask task {task.name} failed ({type(error).__name__}: {error})"
        self._interrupted += int(outcome.get("interrupted", 0))
        if "peak_rss" in outcome:
            worker = str(outcome.get("worker"))
            self._peaks[worker] = max(self._peaks.get(worker, 0), int(outcome["peak_rss"]))
        self._live.pop(task.name, None)
        self.progress.provisional(sum(self._live.values()))
        answered = self._read_results(task.name)
        self._merge(task.name)
        if problem is not None:
            log.error("%s; %d of its URLs had no result", problem, len(task.jobs) - len(answered))
        for job in task.jobs:
            if (job.url, job.origin) in answered:
                answered.discard((job.url, job.origin))
            elif problem is not None:
                self.progress.result(failed_result(job.url, problem, job.origin, job=job))

    def _read_results(self, name: str) -> set[tuple[str, str | None]]:
        """Report each result the task wrote; the (url, origin) of those reported."""
        path = self._tasks_dir / f"{name}.jsonl"
        answered: set[tuple[str, str | None]] = set()
        with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError, KeyError, TypeError):  # a line cut by a dying worker
                    result = _result_from_json(json.loads(line))
                    answered.add((result.url, result.origin))
                    self.progress.result(result)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return answered

    def _on_progress(self, event: tuple[float, dict[str, Any]]) -> None:
        """Byte counts the tasks publish while they run (on the client's event-loop thread)."""
        message = event[1]
        if message.get("run") != self._run_id:
            return
        self.progress.bytes_received(int(message.get("bytes", 0)))
        task = message.get("task")
        if task in self._live:  # not yet finished: its results are not counted yet
            self._live[task] = int(message.get("files", 0))
            self.progress.provisional(sum(self._live.values()))

    # -- the destination's manifest ---------------------------------------------------------

    def _done_before(self, job: Job) -> Result | None:
        if self._manifest is None or self.config.sync:
            return None
        record = self._lookup(job.url)
        if record is None or record.status not in DONE_STATUSES:
            return None
        return skipped_as_recorded(job, record, str(self.config.dest / record.path))

    def _settle_names(self, job: Job) -> Job | None:
        """``job`` with the path earlier runs gave it, or its collision name when another URL owns its name."""
        if self._manifest is None or job.out is not None:
            return job
        record = self._lookup(job.url)
        if record is not None and record.path:
            return dataclasses.replace(job, out=record.path)
        try:
            wanted = naming.output_path(job, Path("."), layout=self.config.layout)
        except DownloadError:
            return job  # the task reports it
        owner = self._owner(wanted.as_posix())
        if owner is None or owner == job.url:
            return job
        return dataclasses.replace(job, out=naming.collision_path(wanted, job.url).as_posix())

    def _lookup(self, url: str) -> Record | None:
        return self._ask(Manifest.lookup, url)

    def _owner(self, path: str) -> str | None:
        return self._ask(Manifest.owner, path)

    def _ask(self, query: Callable[[Manifest, str], _T | None], key: str) -> _T | None:
        """``query(manifest, key)``, or None without a manifest (or once it failed: the run goes on)."""
        if self._manifest is None:
            return None
        try:
            return query(self._manifest, key)
        except ManifestError as error:
            self._drop_manifest(error)
            return None

    def _drop_manifest(self, error: ManifestError) -> None:
        log.error("manifest disabled for the rest of this run: %s", error)
        self._manifest = None

    def _merge(self, name: str) -> None:
        """Move a task's records into the destination's manifest, then delete its file."""
        path = self._tasks_dir / f"{name}.sqlite"
        if self._manifest is not None and path.is_file():
            try:
                for record in read_records(path):
                    self._manifest.record(record)
                self._manifest.flush()  # the next task of this bucket may look these up
            except ManifestError as error:
                self._drop_manifest(error)
                return
            except sqlite3.Error as error:
                log.error("the records of task %s could not be read (%s); kept in %s", name, error, path)
                return
        for leftover in (path, *path.parent.glob(f"{path.name}-*")):  # its -wal, -shm or -journal too
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _merge_left_over(self) -> None:
        """Records of tasks whose client stopped before taking them (a killed run), merged now."""
        if not self._tasks_dir.is_dir():
            return
        for path in sorted(self._tasks_dir.glob("*.sqlite")):
            self._merge(path.stem)
        for path in self._tasks_dir.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # results of a run whose report is gone with it

    # -- stopping ----------------------------------------------------------------------------

    def _stop(self) -> None:
        """Ctrl-C: stop every running task (parts kept), take what they report, cancel the rest."""
        import distributed

        with contextlib.suppress(Exception):
            distributed.Event(_stop_event(self._run_id), client=self._client).set()
        pending = list(self._running)
        deadline = time.monotonic() + _STOP_GRACE
        with contextlib.suppress(Exception):
            while self._running and time.monotonic() < deadline:
                self._wait(block=True)
        with contextlib.suppress(Exception):
            self._client.cancel(pending, force=True)
        self._running.clear()

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(_TOPIC)
        self._close_cluster()
        self._close_manifest()

    def _close_manifest(self) -> None:
        if self._manifest is not None:
            try:
                self._manifest.close()
            except ManifestError as error:
                log.error("manifest not fully written: %s", error)

    def _close_cluster(self) -> None:
        for owned in self._owned:
            with contextlib.suppress(Exception):
                owned.close()
        self._owned = []


def _stop_event(run_id: str) -> str:
    return f"downloader-stop-{run_id}"


# -- the task, on a worker ---------------------------------------------------------------


def run_task(config: Config, jobs: list[Job], tasks_dir: str, name: str, run_id: str) -> dict[str, Any]:
    """Fetch ``jobs`` with the ordinary engine; return the names of its records and a few numbers.

    Runs on a Dask worker. Results go to ``tasks_dir/name.jsonl``, records to
    ``tasks_dir/name.sqlite``; a second attempt of the same task (its worker died)
    reopens both and skips what the first one finished.
    """
    from downloader.api import LocalRun

    directory = Path(tasks_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if config.manifest is not None:
        config = dataclasses.replace(config, manifest=directory / f"{name}.sqlite")
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as results:
        lock = threading.Lock()

        def write(result: Result) -> None:
            line = json.dumps(_result_to_json(result)) + "\n"
            with lock:
                results.write(line)

        run = LocalRun(config, on_result=write)
        interrupted = 0
        try:
            with _published(run, run_id, name), _stoppable(run_id) as stopped:
                if not stopped.is_set():  # a task that starts after Ctrl-C fetches nothing
                    run(_until(stopped, jobs))
        except KeyboardInterrupt:  # the stop, wherever in this thread it landed
            interrupted = run.summary().interrupted
    return {"interrupted": interrupted, "peak_rss": memory.peak_rss(),
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def _until(stopped: threading.Event, jobs: list[Job]) -> Iterator[Job]:
    """The jobs, until the run is stopped: an engine that cannot be interrupted at once
    (the threads engine, blocked waiting for its transfers) at least starts no more."""
    for job in jobs:
        if stopped.is_set():
            return
        yield job


@contextlib.contextmanager
def _published(run: Any, run_id: str, task: str) -> Iterator[None]:
    """Publish the bytes received and the files finished every half second, for the client's bar."""
    from distributed import get_worker

    worker = get_worker()
    stop = threading.Event()

    def publish(sent: int) -> int:
        summary = run.summary()
        files = summary.downloaded + summary.skipped + summary.failed + summary.unchanged
        if summary.received > sent or files:
            worker.log_event(_TOPIC, {"run": run_id, "task": task, "bytes": summary.received - sent, "files": files})
        return int(summary.received)

    def report() -> None:
        sent = 0
        while not stop.wait(_REPORT_SECONDS):
            sent = publish(sent)
        publish(sent)

    thread = threading.Thread(target=report, name="downloader-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _stoppable(run_id: str) -> Iterator[threading.Event]:
    """Raise KeyboardInterrupt in this thread once the client sets the run's stop event.

    Yields an event set from then on: already set when the run was stopped before this
    task began. The exception is raised at most once, and only inside the ``with``: one
    still pending when the block ends is withdrawn, so that it never hits the worker's
    own code (or the next task of this thread) instead.
    """
    from distributed import Event, get_client

    target = ctypes.c_ulong(threading.get_ident())
    # The client is looked up here, in the task's thread: the watcher's own thread is no
    # worker thread, and an Event that finds no client there fails every wait (never stops).
    event = Event(_stop_event(run_id), client=get_client())
    stopped, finished, lock = threading.Event(), threading.Event(), threading.Lock()
    with contextlib.suppress(Exception):
        if event.is_set():
            stopped.set()

    def watch() -> None:
        # Short is_set() questions with the waiting done here, not a long event.wait() on
        # the scheduler: a wait still open when the task ends is cancelled as the worker or
        # the cluster closes, and Dask logs that with a traceback.
        while not finished.wait(_STOP_POLL_SECONDS) and not stopped.is_set():
            with contextlib.suppress(Exception):
                if event.is_set():
                    stopped.set()
                    with lock:
                        if not finished.is_set():
                            ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(KeyboardInterrupt))

    thread = threading.Thread(target=watch, name="downloader-stop", daemon=True)
    thread.start()
    try:
        yield stopped
    finally:
        with lock:
            finished.set()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)  # NULL: withdraw one not yet raised
        thread.join()  # no question left open once the task returns


def _result_to_json(result: Result) -> dict[str, Any]:
    job = result.job
    return {**result.to_json(), "attempts": result.attempts,
            "job": None if job is None else [job.url, job.out, job.checksum, job.size, job.origin]}


def _result_from_json(data: dict[str, Any]) -> Result:
    job = data.get("job")
    return Result(data["url"], Status(data["status"]), data["path"], int(data["size"]), int(data["received"]),
                  data["checksum"], data["error"], data["origin"], data["final_url"], data["etag"],
                  data["last_modified"], int(data.get("attempts", 1)), job=None if job is None else Job(*job))
