"""``download_async`` and ``AsyncRun``: the library from async code, on the caller's event loop."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

import downloader
from downloader import AsyncRun, Config, Result, Status, download, download_async
from downloader.manifest import Manifest
from downloader.sources import read_urls
from downloader.testing import Rule, Server, body

T = TypeVar("T")


def outcome(results: list[Result], dest: Path) -> list[tuple[str, Status, str | None, int, int, str | None]]:
    """What a run gave, independent of the destination and of the order of completion."""
    return sorted((r.url, r.status, r.path and str(Path(r.path).relative_to(dest)), r.size, r.received, r.error)
                  for r in results)


async def ticking(during: Awaitable[T]) -> tuple[T, list[float]]:
    """Await ``during`` while a ticker task of the same loop notes the time every 10 ms."""
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        return await during, ticks
    finally:
        task.cancel()


def test_download_async_gives_what_download_gives(server: Server, engine: str, tmp_path: Path) -> None:
    """The same arguments, the same results: small and streamed bodies, a failure."""
    urls = [server.file_url(f"same-{engine}-{i}.bin", 20_000 + i) for i in range(6)]
    urls += [server.file_url(f"same-{engine}-big.bin", 3_000_000), server.url(f"/bytes/10/same-{engine}?status=404")]
    options = dict(engine=engine, concurrency=4, retries=0)

    expected = download(urls, dest=tmp_path / "sync", **options)  # type: ignore[arg-type]
    actual = asyncio.run(download_async(urls, dest=tmp_path / "async", **options))  # type: ignore[arg-type]

    assert outcome(expected, tmp_path / "sync") == outcome(actual, tmp_path / "async")
    assert body(f"same-{engine}-big.bin", 3_000_000) == (tmp_path / "async" / f"same-{engine}-big.bin").read_bytes()
    assert [Status.DOWNLOADED] * 7 + [Status.FAILED] == sorted((r.status for r in actual), key=lambda s: s.value == "failed")


def test_the_callers_loop_goes_on_during_a_download(server: Server, engine: str, tmp_path: Path) -> None:
    """A ticker task of the caller's loop advances while files download; the asyncio engine
    runs on that loop (its results are reported in the loop's thread, no thread of the run)."""
    urls = [server.file_url(f"tick-{engine}.bin", 400_000, Rule(rate=800_000))]
    urls += [server.file_url(f"tick-{engine}-{i}.bin", 30_000) for i in range(20)]
    threads: set[str] = set()

    async def main() -> tuple[object, list[float]]:
        run = AsyncRun(Config(dest=tmp_path, engine=engine),  # type: ignore[arg-type]
                       on_result=lambda _: threads.add(threading.current_thread().name))
        return await ticking(run(read_urls(urls)))

    summary, ticks = asyncio.run(main())

    assert 21 == getattr(summary, "downloaded")
    assert len(ticks) >= 10  # the slow file alone takes half a second: 50 ticks on a quiet machine
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 1.0
    if engine == "asyncio":
        assert {threading.main_thread().name} == threads
    assert not [t for t in threading.enumerate() if t.name == "downloader-run"]


def test_cancelling_keeps_a_part_that_the_next_run_resumes(server: Server, engine: str, tmp_path: Path) -> None:
    """Cancelling the awaiting task stops the run as Ctrl-C does: the part and its state stay,
    no final file appears, the manifest says pending; a second run fetches only the rest."""
    size = 2_000_000
    url = server.file_url(f"cancel-{engine}.bin", size, Rule(rate=1_000_000))
    part = tmp_path / f"cancel-{engine}.bin.part"
    config = Config(dest=tmp_path, engine=engine, manifest=tmp_path / "manifest.sqlite")  # type: ignore[arg-type]

    async def cancelled_midway() -> float:
        task = asyncio.create_task(download_async([url], config=config))
        while not (part.exists() and part.stat().st_size >= 200_000):
            assert not task.done(), task
            await asyncio.sleep(0.02)
        task.cancel()
        asked = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - asked

    stopping = asyncio.run(cancelled_midway())
    # The threads engine's workers, as after Ctrl-C, end at their next chunk: maybe just after.
    deadline = time.monotonic() + 10
    while any(t.name.startswith("fetch") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    kept = part.stat().st_size

    assert stopping < 5
    assert 200_000 <= kept < size
    assert (tmp_path / f"cancel-{engine}.bin.part.state").exists()
    assert not (tmp_path / f"cancel-{engine}.bin").exists()
    assert not [t for t in threading.enumerate() if t.name == "downloader-run"]
    with Manifest(tmp_path / "manifest.sqlite") as manifest:
        assert Status.PENDING is getattr(manifest.lookup(url), "status", None)

    [result] = asyncio.run(download_async([url], config=config))

    assert Status.DOWNLOADED is result.status
    assert size - kept == result.received
    assert body(f"cancel-{engine}.bin", size) == (tmp_path / f"cancel-{engine}.bin").read_bytes()


def test_two_runs_share_one_loop(server: Server, engine: str, tmp_path: Path) -> None:
    """Two download_async calls run at the same time on one loop, into two destinations."""
    size = 600_000
    urls = {name: server.file_url(f"pair-{engine}-{name}.bin", size, Rule(rate=1_000_000)) for name in "ab"}
    both_at_once = []

    async def watch() -> None:
        while True:
            both_at_once.append(all((tmp_path / n / f"pair-{engine}-{n}.bin.part").exists() for n in "ab"))
            await asyncio.sleep(0.01)

    async def main() -> list[list[Result]]:
        watcher = asyncio.create_task(watch())
        try:
            return await asyncio.gather(*(download_async([urls[n]], dest=tmp_path / n, engine=engine)  # type: ignore[arg-type]
                                          for n in "ab"))
        finally:
            watcher.cancel()

    results = asyncio.run(main())

    assert [[Status.DOWNLOADED]] * 2 == [[r.status for r in rs] for rs in results]
    assert any(both_at_once)
    for n in "ab":
        assert body(f"pair-{engine}-{n}.bin", size) == (tmp_path / n / f"pair-{engine}-{n}.bin").read_bytes()


@pytest.mark.parametrize("kind", ["bar", "lines"])
def test_progress_works_on_the_callers_loop(server: Server, engine: str, kind: str, tmp_path: Path) -> None:
    """The progress bar, or the plain lines, are drawn while the run goes on, and the last
    state is drawn at its end."""
    urls = [server.file_url(f"progress-{engine}-{kind}-{i}.bin", 50_000, Rule(rate=250_000)) for i in range(3)]
    stream = io.StringIO()
    config = Config(dest=tmp_path, engine=engine,  # type: ignore[arg-type]
                    progress=kind == "bar", progress_lines=0.05 if kind == "lines" else None)

    summary = asyncio.run(AsyncRun(config, stream=stream)(read_urls(urls)))

    assert 3 == summary.downloaded
    shown = stream.getvalue()
    assert ("files 3/3" if kind == "bar" else "files ") in shown


def test_more_processes_run_beside_the_loop(server: Server, tmp_path: Path) -> None:
    """processes=2 cannot run on the caller's loop: it runs in a worker thread, the loop goes on."""
    urls = [server.file_url(f"procs-{i}.bin", 30_000, Rule(rate=100_000)) for i in range(6)]

    results, ticks = asyncio.run(ticking(download_async(urls, dest=tmp_path, processes=2)))

    assert [Status.DOWNLOADED] * 6 == [r.status for r in results]
    assert len(ticks) >= 10
    assert body("procs-4.bin", 30_000) == (tmp_path / "procs-4.bin").read_bytes()


def test_the_package_exports_the_async_api() -> None:
    """Both names come from the package's lazy surface."""
    assert downloader.download_async is download_async
    assert "AsyncRun" in downloader.__all__ and "download_async" in downloader.__all__
