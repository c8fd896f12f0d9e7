"""The two engines: they move bytes between sockets and files, and decide nothing.

Both have the same shape (``run`` -> ``_run_one`` -> ``fetch`` -> ``_attempt`` ->
``_exchange`` -> ``_write`` -> ``_receive``), so ``diff engines/threads.py
engines/aio.py`` shows only I/O. Each ``_attempt`` is a driver of a
:class:`downloader.attempt.Attempt` (the protocol, no I/O), carrying out its steps
on a :class:`downloader.storage.Part` (the file) with its own HTTP library; the
other decisions are calls into :mod:`downloader.retry` and :mod:`downloader.dispatch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from downloader.config import Config
from downloader.dispatch import Dispatcher
from downloader.progress import Events
from downloader.sources import Entry

__all__ = ["Engine", "get_engine"]


class Engine(Protocol):
    def __call__(self, entries: Iterator[Entry], config: Config, events: Events, dispatcher: Dispatcher) -> None: ...


def get_engine(name: str) -> Engine:
    """The ``run`` function of the engine called ``name``."""
    if name == "threads":
        from downloader.engines import threads

        return threads.run
    from downloader.engines import aio

    return aio.run
