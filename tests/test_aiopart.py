"""The asyncio engine's file I/O through aiofiles (downloader/engines/aiopart.py)."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from typing import Any

import aiofiles.threadpool
import pytest
from aiofiles.threadpool.binary import AsyncFileIO

from downloader import Config, Status, download
from downloader.engines import aiopart
from downloader.engines.aiopart import BodyWriter, uncancelled
from downloader.testing import Rule, Server, body


def test_a_streamed_body_is_written_and_renamed_through_aiofiles(server: Server, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk of a streamed body is an aiofiles write; its checks and rename go through
    aiofiles too; a small body stays on the loop."""
    writers: list[int] = []
    concluded: list[str] = []
    write, conclude = AsyncFileIO.write, aiopart._conclude

    async def spied_write(self: AsyncFileIO, data: Any) -> int:
        writers.append(len(data))
        return await write(self, data)

    async def spied_conclude(*args: Any) -> Any:
        concluded.append(args[1].path.name)
        return await conclude(*args)

    monkeypatch.setattr(AsyncFileIO, "write", spied_write)
    monkeypatch.setattr(aiopart, "_conclude", spied_conclude)
    urls = [server.file_url("aio-streamed.bin", 2_000_000, Rule(chunked=True)), server.file_url("aio-small.bin", 5_000)]

    results = download(urls, config=Config(dest=tmp_path, chunk_size=256 * 1024))

    assert [Status.DOWNLOADED] * 2 == [r.status for r in results]
    assert body("aio-streamed.bin", 2_000_000) == (tmp_path / "aio-streamed.bin").read_bytes()
    assert len(writers) >= 2_000_000 // (256 * 1024)
    assert ["aio-streamed.bin"] == concluded


class _SlowFile(io.FileIO):
    """A file whose writes take a while, noting when each starts and ends and when it is closed."""

    events: list[str]

    def write(self, data: Any) -> int:
        self.events.append("write")
        time.sleep(0.3)
        self.events.append("written")
        return super().write(data)

    def close(self) -> None:
        if not self.closed:
            self.events.append("closed")
        super().close()


def test_a_cancelled_writer_closes_its_file_only_after_the_write_in_flight(tmp_path: Path) -> None:
    """Cancelling the transfer while a chunk is being written: the write ends, then the file
    is closed, then the cancellation goes on; the chunk is in the file."""
    events: list[str] = []
    fd = os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT, 0o644)

    async def transfer() -> None:
        writer = BodyWriter(fd)
        await writer._file.close()
        slow = _SlowFile(os.dup(fd), "wb")
        slow.events = events
        writer._file = aiofiles.threadpool.wrap(slow)
        try:
            await writer.write(b"x" * 1000)
            await writer.drain()
        finally:
            events.append("aclose")
            await writer.aclose()

    async def main() -> None:
        task = asyncio.create_task(transfer())
        while not events:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        os.close(fd)

    assert ["write", "written", "aclose", "closed"] == events
    assert b"x" * 1000 == (tmp_path / "part").read_bytes()


def test_uncancelled_waits_for_its_operation_then_raises_the_cancellation() -> None:
    """A cancelled wait for work in a thread goes on to the work's end, then is cancelled."""
    ended: list[float] = []

    def work() -> None:
        time.sleep(0.2)
        ended.append(time.monotonic())

    async def main() -> float:
        task = asyncio.create_task(uncancelled(asyncio.to_thread(work)))
        await asyncio.sleep(0.05)
        task.cancel()
        task.cancel()  # twice: still waits
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    returned = asyncio.run(main())

    assert ended and ended[0] <= returned
