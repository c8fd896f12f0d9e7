"""``download()`` called from inside a running event loop (a notebook, an async application)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from downloader import Config, Status, download
from downloader.testing import Rule, Server, body


def test_download_works_inside_a_running_loop(server: Server, engine: str, tmp_path: Path) -> None:
    """The asyncio engine cannot start its loop in a thread that runs one: it runs in a worker
    thread instead, with the same results; the threads engine needs no loop."""
    urls = [server.file_url(f"loop-{engine}-{i}.bin", 20_000) for i in range(12)]

    async def notebook_cell() -> list[Status]:
        results = download(urls, config=Config(dest=tmp_path, engine=engine))  # type: ignore[arg-type]
        return [result.status for result in results]

    statuses = asyncio.run(notebook_cell())

    assert [Status.DOWNLOADED] * 12 == statuses
    assert body(f"loop-{engine}-3.bin", 20_000) == (tmp_path / f"loop-{engine}-3.bin").read_bytes()
    assert not [t for t in threading.enumerate() if t.name == "downloader-run"]


def test_an_interrupt_inside_a_running_loop_stops_the_run_and_keeps_the_parts(server: Server, tmp_path: Path) -> None:
    """A notebook's interrupt (KeyboardInterrupt in the waiting thread) reaches the worker:
    the run stops at once, the parts and their states stay for a resume, no thread is left."""
    urls = [server.file_url(f"loop-slow-{i}.bin", 2_000_000, Rule(rate=200_000)) for i in range(3)]
    def interrupt() -> None:  # what a kernel's interrupt does: SIGINT, KeyboardInterrupt in the main thread
        os.kill(os.getpid(), signal.SIGINT)

    async def notebook_cell() -> None:
        download(urls, dest=tmp_path)

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    loop = asyncio.new_event_loop()  # not asyncio.run, which would turn SIGINT into a cancellation
    timer = threading.Timer(0.5, interrupt)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
    finally:
        timer.join()
        loop.close()

    assert time.monotonic() - started < 5
    assert not [t for t in threading.enumerate() if t.name == "downloader-run"]
    assert {f"loop-slow-{i}.bin.part" for i in range(3)} <= {p.name for p in tmp_path.iterdir()}
    assert not any((tmp_path / f"loop-slow-{i}.bin").exists() for i in range(3))
