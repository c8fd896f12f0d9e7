"""The library API: :func:`download` for a list in memory, :class:`Run` for streams of any length."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from downloader.config import Config, EngineName
from downloader.dispatch import Dispatcher
from downloader.engines import get_engine
from downloader.jobs import Job, Result
from downloader.manifest import Manifest, ManifestError
from downloader.progress import Progress, Summary
from downloader.sources import Entry, read_urls

__all__ = ["Run", "download"]

log = logging.getLogger(__name__)


class Run:
    """One run over a stream of entries: engine, progress, summary.

    Results are handed to ``on_result`` as they happen and not kept, so a run over
    ten million URLs holds only the transfers in flight. With ``list_failures`` the
    failures are spooled to a temporary file for :meth:`failures`.
    """

    def __init__(self, config: Config, *, on_result: Callable[[Result], None] | None = None,
                 stream: IO[str] | None = None, list_failures: bool = False) -> None:
        self.config = config
        # Created here even when no file arrives. When it cannot be, each job says why
        # (with the path and the system's reason) as it tries to create its part.
        with contextlib.suppress(OSError):
            config.dest.mkdir(parents=True, exist_ok=True)
        self.progress = Progress(bar=config.progress, stream=stream, on_result=on_result, spool_failures=list_failures)
        self.manifest = Manifest(config.manifest) if config.manifest is not None else None
        self.dispatcher = Dispatcher(config, self.progress, self.manifest)
        self._interrupted = False

    def __call__(self, entries: Iterable[Entry]) -> Summary:
        """Fetch every entry. On KeyboardInterrupt the parts stay on disk and the interrupt propagates."""
        engine = get_engine(self.config.engine)
        try:
            engine(iter(entries), self.config, self.progress, self.dispatcher)
        except BaseException:
            self._interrupted = True
            self.dispatcher.record_in_flight()
            raise
        finally:
            self.progress.close()
            self._close_manifest()
        return self.summary()

    def _close_manifest(self) -> None:
        if self.manifest is None:
            return
        try:
            self.manifest.close()
        except ManifestError as error:  # the downloads are done; only the bookkeeping failed
            log.error("manifest not fully written: %s", error)

    def summary(self) -> Summary:
        """Counts so far; jobs still in flight count as interrupted once the run was stopped."""
        return self.progress.summary(interrupted=self.dispatcher.in_flight if self._interrupted else 0)

    def failures(self) -> Iterator[str]:
        """Each failure as ``URL: reason``."""
        return self.progress.failures()


def download(
    urls: Iterable[str | Job],
    *,
    dest: str | Path = ".",
    engine: EngineName = "asyncio",
    concurrency: int = 16,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = False,
    config: Config | None = None,
) -> list[Result]:
    """Download ``urls`` (strings or :class:`Job` objects) and return one result per job, in completion order.

    Args:
        urls: URLs, or jobs carrying ``out``, ``sha256`` and ``size``.
        dest: directory to write into, created if missing.
        engine: ``"asyncio"`` (aiohttp) or ``"threads"`` (requests).
        concurrency: simultaneous transfers.
        retries: retries after the first attempt of each URL.
        timeout: connect timeout and stall timeout, in seconds.
        progress: show a progress bar on stderr.
        config: a full :class:`Config`; when given, the keyword options above are ignored.

    Returns:
        A :class:`Result` per job: downloaded, skipped or failed (with the reason).
    """
    if config is None:
        config = Config(dest=Path(dest), engine=engine, concurrency=concurrency, retries=retries,
                        timeout=timeout, progress=progress)
    results: list[Result] = []
    lock = threading.Lock()

    def collect(result: Result) -> None:
        with lock:
            results.append(result)

    Run(dataclasses.replace(config), on_result=collect)(read_urls(urls))
    return results
