"""The library API: :func:`download` for a list in memory, :class:`Run` for streams of any length,
and their twins for async code, :func:`download_async` and :class:`AsyncRun`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path
from typing import IO, TYPE_CHECKING, Generic, Protocol, TypeVar

from downloader import memory
from downloader.config import Config, EngineName
from downloader.dispatch import Dispatcher
from downloader.engines import get_engine
from downloader.jobs import Result
from downloader.listcount import ListCount
from downloader.manifest import Manifest, ManifestError
from downloader.progress import FileTotal, Progress, Summary
from downloader.sources import Entry, read_urls

if TYPE_CHECKING:
    from downloader.checksumfiles import ChecksumTable

__all__ = ["AsyncRun", "Run", "download", "download_async"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Run:
    """One run over a stream of entries: engine, progress, summary.

    Results are handed to ``on_result`` as they happen and not kept, so a run over
    ten million URLs holds only the transfers in flight. With ``list_failures`` the
    failures are spooled to a temporary file for :meth:`failures`.

    With ``config.processes`` above one (or None: one per core) the entries are spread
    over that many engine processes (:mod:`downloader.processes`); with ``dask``, over
    the workers of a Dask cluster (:mod:`downloader.cluster`). Either way this process
    reads the list and owns the progress, the results and the summary. The checksum files of
    ``config.checksum_files`` are read when the run is made (a bad one raises
    :class:`~downloader.errors.ChecksumFileError`) and applied as this process reads the list.

    ``total`` tells the progress how many entries are coming once that is known (e.g. a
    :class:`downloader.listcount.ListCount` of the list files); it is ignored with
    ``config.shard``, whose run sees only part of them.

    .. versionchanged:: 0.3 ``config.processes``, ``config.shard`` and ``dask``.
    .. versionchanged:: 0.4 ``total``.
    """

    def __init__(self, config: Config, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False, dask: object | None = None,
                 total: FileTotal | None = None) -> None:
        self.config = config
        self._filters = ListFilters(config)
        if config.shard is not None:
            total = None
        self._backend: _Backend
        if dask is not None:
            if config.save_cookies is not None:
                raise ValueError("save_cookies cannot be used with dask: each worker has a jar of its own")
            from downloader.cluster import ClusterRun  # the optional extra, only when asked for

            self._backend = ClusterRun(config, dask, on_result=on_result, stream=stream, list_failures=list_failures,
                                       total=total)
        elif config.process_count > 1:
            from downloader.processes import ProcessRun

            self._backend = ProcessRun(config, config.process_count, on_result=on_result, stream=stream,
                                       list_failures=list_failures, total=total)
        else:
            self._backend = LocalRun(config, on_result=on_result, stream=stream, list_failures=list_failures,
                                     total=total)

    def __call__(self, entries: Iterable[Entry]) -> Summary:
        """Fetch every entry (of ``config.shard`` only, when it is set), with the digests of
        ``config.checksum_files``. On KeyboardInterrupt the parts stay on disk and the interrupt
        propagates."""
        summary = self._backend(self._filters(entries))
        self._filters.log_outcome()
        return summary

    def summary(self) -> Summary:
        """Counts so far; jobs still in flight count as interrupted once the run was stopped."""
        return self._backend.summary()

    def failures(self) -> Iterator[str]:
        """Each failure as ``URL: reason``."""
        return self._backend.failures()

    def peak_rss(self) -> dict[str, object]:
        """Peak resident memory in bytes of this process (``parent``) and of each engine process
        or cluster worker of the run (``workers``)."""
        return self._backend.peak_rss()


class ListFilters:
    """What a run does to its entries as this process reads them, before they are spread:
    the digests of ``config.checksum_files`` go to their jobs, then only the entries of
    ``config.shard`` go on. The same for :class:`Run`, :class:`AsyncRun` and ``--dry-run``.

    The checksum files are read when it is made, before anything of a run starts.

    Raises:
        ChecksumFileError: a file cannot be read, or a line of it is not a digest.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._checksums: ChecksumTable | None = None
        if config.checksum_files:
            from downloader.checksumfiles import ChecksumTable

            self._checksums = ChecksumTable.read(config.checksum_files)

    def __call__(self, entries: Iterable[Entry]) -> Iterable[Entry]:
        if self._checksums is not None:  # before the shard: a name of another shard is matched, not unmatched
            entries = self._checksums.apply(entries, self.config.layout)
        if self.config.shard is None:
            return entries
        from downloader.sharding import Shard, in_shard

        return in_shard(entries, Shard(*self.config.shard), self.config.layout)

    def log_outcome(self) -> None:
        """Log what the checksum files matched (the names no URL matched, with -v)."""
        if self._checksums is not None:
            self._checksums.log_outcome()


class AsyncRun:
    """:class:`Run` for async code: ``summary = await AsyncRun(config)(entries)``.

    The asyncio engine in this process (``engine="asyncio"``, ``processes=1``, no Dask)
    runs on the caller's event loop: no thread of its own and no new loop, each transfer
    a task beside the caller's tasks. What cannot run on that loop (the threads engine,
    ``processes`` above one, Dask) runs in a worker thread that the awaiting task waits
    for without blocking the loop. The results are the same either way.

    Cancelling the awaiting task stops the run as Ctrl-C stops the command: no new
    transfer starts, every part and its state stay on disk, the transfers in flight are
    recorded in the manifest as pending, and a later run resumes them. The
    CancelledError propagates once the run has stopped: every transfer of the asyncio
    engine, a write in flight finished first; the worker thread of the others (whose
    own workers, as after Ctrl-C, end at their next chunk, possibly just after).

    One instance runs once; two runs may share a loop, each with its own destination.
    The arguments are :class:`Run`'s.

    .. versionadded:: 0.4
    """

    def __init__(self, config: Config, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False, dask: object | None = None,
                 total: FileTotal | None = None) -> None:
        self._run = Run(config, on_result=on_result, stream=stream, list_failures=list_failures, dask=dask,
                        total=total)
        self.config = config

    async def __call__(self, entries: Iterable[Entry]) -> Summary:
        """Fetch every entry (of ``config.shard`` only, when it is set), as :meth:`Run.__call__`.

        Raises:
            asyncio.CancelledError: the awaiting task was cancelled; the parts stay on disk.
        """
        entries = self._run._filters(entries)
        backend = self._run._backend
        if isinstance(backend, LocalRun) and self.config.engine == "asyncio":
            summary = await backend.run_async(entries)
        else:
            summary = await _in_a_worker(lambda: backend(entries), interrupt=True)
        self._run._filters.log_outcome()
        return summary

    def summary(self) -> Summary:
        """Counts so far; jobs still in flight count as interrupted once the run was stopped."""
        return self._run.summary()

    def failures(self) -> Iterator[str]:
        """Each failure as ``URL: reason``."""
        return self._run.failures()

    def peak_rss(self) -> dict[str, object]:
        """As :meth:`Run.peak_rss`."""
        return self._run.peak_rss()


class _Worker(Generic[_T]):
    """``work`` in a thread of its own, which :meth:`interrupt` stops as Ctrl-C stops the
    main thread, and never once ``work`` has returned (an interrupt sent and not raised
    yet is then withdrawn): its outcome is :attr:`done`, set last."""

    def __init__(self, work: Callable[[], _T]) -> None:
        import concurrent.futures

        self.done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._body, args=(work,), name="downloader-run")
        self._thread.start()

    def _body(self, work: Callable[[], _T]) -> None:
        try:
            try:
                outcome = work()
            finally:
                with self._lock:  # no interrupt is sent after this; one sent and not raised yet is dropped
                    self._running = False
                    _interrupt(self._thread, cancel=True)
        except BaseException as error:  # handed to the waiting side
            self.done.set_exception(error)
        else:
            self.done.set_result(outcome)

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the thread, unless ``work`` has returned."""
        with self._lock:
            if self._running:
                _interrupt(self._thread)

    def join(self) -> None:
        """Wait for the thread, which has only to return once :attr:`done` is set."""
        self._thread.join()


async def _in_a_worker(work: Callable[[], _T], *, interrupt: bool) -> _T:
    """Run ``work`` in a thread of its own and await it without blocking the loop.

    A cancellation of the awaiting task does not abandon the thread: with ``interrupt``
    it raises KeyboardInterrupt in the thread while ``work`` runs (which stops as a run
    stops on Ctrl-C, parts kept), and either way the task waits for the thread to end
    before the CancelledError goes on, so nothing of the run still works once it has.
    """
    import asyncio

    worker: _Worker[_T] = _Worker(work)
    waiting = asyncio.wrap_future(worker.done)
    cancelled: asyncio.CancelledError | None = None
    while not waiting.done():
        try:
            await asyncio.wait([waiting])  # wait() never cancels what it waits for
        except asyncio.CancelledError as error:
            if interrupt and cancelled is None:
                worker.interrupt()
            cancelled = error
    worker.join()
    if cancelled is not None:
        if not waiting.cancelled():
            waiting.exception()  # seen: the KeyboardInterrupt that stopped it gives way to the cancellation
        raise cancelled
    return waiting.result()


def _interrupt(thread: threading.Thread, *, cancel: bool = False) -> None:
    """Raise KeyboardInterrupt in ``thread`` at its next Python instruction, as Ctrl-C does
    in the main thread (the runs wait in short turns, so that it lands soon); ``cancel``:
    drop one sent and not raised yet."""
    import ctypes

    exception = None if cancel else ctypes.py_object(KeyboardInterrupt)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), exception)


def _loop_running() -> bool:
    """Whether this thread runs an event loop (a notebook, an async application): the
    asyncio engine cannot start its own loop in it. Never imports asyncio to ask."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_a_thread(engine: Callable[..., None], *arguments: object) -> None:
    """Run ``engine`` (and its own event loop) in a worker thread, this thread waiting for it:
    ``download()`` called from inside a running loop (Jupyter) works as anywhere else. The
    caller's loop is blocked meanwhile, as by any blocking call. A KeyboardInterrupt in the
    waiting thread (a notebook's interrupt) is raised in the worker too, which stops as a
    run stops on Ctrl-C (parts kept), and is re-raised once the worker has ended."""
    import concurrent.futures

    worker = _Worker(lambda: engine(*arguments))
    try:
        concurrent.futures.wait([worker.done])  # not Thread.join: in CPython 3.11 a join
        # interrupted by Ctrl-C marks the thread as ended while it still runs
    except BaseException:
        worker.interrupt()
        while not worker.done.done():
            concurrent.futures.wait([worker.done], timeout=0.1)
        raise
    worker.done.result()


class _Backend(Protocol):
    def __call__(self, entries: Iterable[Entry]) -> Summary: ...
    def summary(self) -> Summary: ...
    def failures(self) -> Iterator[str]: ...
    def peak_rss(self) -> dict[str, object]: ...


class LocalRun:
    """A run in this process: one engine, one dispatcher."""

    def __init__(self, config: Config, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False, total: FileTotal | None = None) -> None:
        self.config = config
        # Created here even when no file arrives. When it cannot be, each job says why
        # (with the path and the system's reason) as it tries to create its part.
        with contextlib.suppress(OSError):
            config.dest.mkdir(parents=True, exist_ok=True)
        self.progress = Progress.of_run(config, stream=stream, on_result=on_result, list_failures=list_failures,
                                        total=total)
        self.manifest = Manifest(config.manifest) if config.manifest is not None else None
        self.dispatcher = Dispatcher(config, self.progress, self.manifest)
        self._interrupted = False

    def __call__(self, entries: Iterable[Entry]) -> Summary:
        engine = get_engine(self.config.engine)
        try:
            if self.config.engine == "asyncio" and _loop_running():
                _in_a_thread(engine, iter(entries), self.config, self.progress, self.dispatcher)
            else:
                engine(iter(entries), self.config, self.progress, self.dispatcher)
        except BaseException:
            self._interrupted = True
            self.dispatcher.record_in_flight()
            raise
        finally:
            self._end()
        return self.summary()

    async def run_async(self, entries: Iterable[Entry]) -> Summary:
        """:meth:`__call__` with the asyncio engine on the running event loop (:class:`AsyncRun`).

        Cancelled, it stops as a run stops on Ctrl-C: parts kept, the transfers in flight
        recorded as pending. The end of the run (the bar's last draw, the manifest's last
        writes) happens in a thread, so that the loop goes on meanwhile.
        """
        from downloader.engines import aio

        try:
            await aio.run_async(iter(entries), self.config, self.progress, self.dispatcher)
        except BaseException:
            self._interrupted = True
            self.dispatcher.record_in_flight()
            raise
        finally:
            await _in_a_worker(self._end, interrupt=False)
        return self.summary()

    def _end(self) -> None:
        self.progress.close()
        self._close_manifest()

    def _close_manifest(self) -> None:
        if self.manifest is None:
            return
        try:
            self.manifest.close()
        except ManifestError as error:  # the downloads are done; only the bookkeeping failed
            log.error("manifest not fully written: %s", error)

    def summary(self) -> Summary:
        return self.progress.summary(interrupted=self.dispatcher.in_flight if self._interrupted else 0)

    def failures(self) -> Iterator[str]:
        return self.progress.failures()

    def peak_rss(self) -> dict[str, object]:
        return {"parent": memory.peak_rss(), "workers": []}


def download(
    urls: Iterable[str | Entry],
    *,
    dest: str | Path = ".",
    engine: EngineName = "asyncio",
    concurrency: int = 16,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = False,
    processes: int | None = 1,
    shard: tuple[int, int] | None = None,
    dask: object | None = None,
    config: Config | None = None,
) -> list[Result]:
    """Download ``urls`` (strings or :class:`Job` objects) and return one result per job, in completion order.

    Called from inside a running event loop (a notebook), it works as anywhere else, the
    loop waiting meanwhile; :func:`download_async` lets the loop go on.

    Args:
        urls: URLs, or jobs carrying ``out``, ``checksum`` and ``size`` (the entries of
            :func:`downloader.read_table` too: its invalid rows end as failed results).
        dest: directory to write into, created if missing.
        engine: ``"asyncio"`` (aiohttp) or ``"threads"`` (requests).
        concurrency: simultaneous transfers.
        retries: retries after the first attempt of each URL.
        timeout: connect timeout and stall timeout, in seconds.
        progress: show a progress bar on stderr.
        processes: engine processes to spread the URLs over (None: one per core).
        shard: ``(K, N)``: fetch only shard K of N of ``urls`` (see :mod:`downloader.sharding`).
        dask: run on a Dask cluster: a ``distributed.Client``, a scheduler address
            (``"tcp://host:8786"``), or ``"local"`` / ``"local:N"`` for a LocalCluster of N
            worker processes (needs ``pip install 'downloader[dask]'``).
        config: a full :class:`Config`; when given, the keyword options above but ``dask`` are ignored.

    Returns:
        A :class:`Result` per job: downloaded, skipped or failed (with the reason).
    """
    config = config or Config(dest=Path(dest), engine=engine, concurrency=concurrency, retries=retries,
                              timeout=timeout, progress=progress, processes=processes, shard=shard)
    results, total = _Results(), _total_of(urls)
    Run(dataclasses.replace(config), on_result=results.add, dask=dask, total=total)(read_urls(urls))
    return results.items


def _total_of(urls: Iterable[str | Entry]) -> ListCount | None:
    """The bar's files total of :func:`download`'s URLs: known at once when they have a length."""
    return ListCount(known=len(urls)) if isinstance(urls, Sized) else None


async def download_async(
    urls: Iterable[str | Entry],
    *,
    dest: str | Path = ".",
    engine: EngineName = "asyncio",
    concurrency: int = 16,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = False,
    processes: int | None = 1,
    shard: tuple[int, int] | None = None,
    dask: object | None = None,
    config: Config | None = None,
) -> list[Result]:
    """:func:`download` for async code: ``results = await download_async(urls, dest="data")``.

    The same arguments and results. The asyncio engine runs on the caller's event loop,
    which goes on running its other tasks; the threads engine, ``processes`` above one
    and Dask run in a worker thread (see :class:`AsyncRun`). Cancelling the awaiting
    task stops the run and keeps every part on disk for the next run to resume.

    .. versionadded:: 0.4
    """
    config = config or Config(dest=Path(dest), engine=engine, concurrency=concurrency, retries=retries,
                              timeout=timeout, progress=progress, processes=processes, shard=shard)
    results, total = _Results(), _total_of(urls)
    await AsyncRun(dataclasses.replace(config), on_result=results.add, dask=dask, total=total)(read_urls(urls))
    return results.items


class _Results:
    """The results of a run as they arrive, from any thread."""

    def __init__(self) -> None:
        self.items: list[Result] = []
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        with self._lock:
            self.items.append(result)
