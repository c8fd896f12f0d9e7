"""The part as the asyncio engine drives it: :class:`~downloader.storage.Part`'s steps, awaited through aiofiles.

The rules stay in :mod:`downloader.storage`, one copy for both engines (what to
truncate, when to save the state, how to hash a prefix, rename without clobbering);
this face only decides where each step of a transfer runs:

* **On the event loop**: opening and locking the part, storing a small body (up to
  64 KiB, written in one call), finishing such a file, and closing. These are a
  handful of metadata calls, cheaper there than a hop to a thread and back (measured
  when they moved to the loop: 2,000 files of 16 KiB in 1.1-1.3 s instead of
  1.5-2.1 s; see the README's design notes for aiofiles' own figures).
* **Through aiofiles**: a streamed body's bytes, written by an aiofiles file over the
  part's descriptor (:class:`BodyWriter`: one write in its executor while the loop
  reads the next chunk), and every step of a streamed transfer that can take long on
  a slow disk: emptying the part and saving its state, hashing a resumed prefix,
  each ``--split`` segment's writes at their offsets and its table, and the checks
  and rename at the end. These steps are storage's methods run by aiofiles'
  ``aiofiles.os.wrap`` (its way of awaiting a blocking file-system call) as one call
  each, rather than one thread hop per system call inside them.

Bodies of 8 MiB and more are read off the loop by :mod:`downloader.engines.offloop`
(socket to file in a thread of their own), which aiofiles does not replace.

A file operation started in aiofiles' executor cannot be stopped by cancelling the
task that waits for it, so every wait here goes on to the operation's end and only
then lets the cancellation through: a cancelled transfer's part is closed, and its
lock released, only once no write to it is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from typing import TypeVar

import aiofiles
import aiofiles.os
import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncFileIO

from downloader.attempt import Attempt, Finish, Write
from downloader.checksums import Hasher
from downloader.core import ResumeState
from downloader.jobs import Result
from downloader.storage import Part, Segments, conclude

__all__ = ["AsyncPart", "BodyWriter", "save_segments", "uncancelled", "write_segment"]

T = TypeVar("T")

# storage's blocking steps as aiofiles coroutines (each runs in the loop's executor).
_discard = aiofiles.os.wrap(Part.discard)
_ready = aiofiles.os.wrap(Part.ready)
_start_split = aiofiles.os.wrap(Part.start_split)
_conclude = aiofiles.os.wrap(conclude)
_write_segment = aiofiles.os.wrap(Segments.write)
_save_segments = aiofiles.os.wrap(Segments.save)


class AsyncPart:
    """A :class:`~downloader.storage.Part` for the asyncio engine: the same steps, the slow
    ones as coroutines.

    :meth:`open`, :meth:`store` and :meth:`close` run on the loop; the others go through aiofiles.
    """

    def __init__(self, part: Part) -> None:
        self.part = part
        self._streamed = False
        """A body was (or is being) streamed into the part: its end goes through aiofiles too."""

    @property
    def name(self) -> str:
        """The part's file name (``NAME.part``)."""
        return self.part.part

    @property
    def fd(self) -> int | None:
        """The part's descriptor, open and locked from :meth:`open` to :meth:`close`."""
        return self.part.fd

    def open(self) -> tuple[int, ResumeState | None]:
        """:meth:`Part.open`, on the loop."""
        return self.part.open()

    def store(self, step: Write, body: bytes) -> None:
        """:meth:`Part.store`: a small body (at most 64 KiB) in one write, on the loop."""
        self.part.store(step, body)

    def close(self, *, discard: bool = False) -> None:
        """:meth:`Part.close`, on the loop: called once every write to the part has ended."""
        self.part.close(discard=discard)

    async def discard(self) -> None:
        """:meth:`Part.discard` (truncating a large part takes time)."""
        await uncancelled(_discard(self.part))

    async def ready(self, step: Write, hasher: Hasher | None) -> None:
        """:meth:`Part.ready`: empty the part and save its state, or hash the prefix it keeps."""
        self._streamed = True
        await uncancelled(_ready(self.part, step, hasher))

    def writer(self) -> BodyWriter:
        """A writer of the streamed body, from where :meth:`ready` left the part."""
        assert self.fd is not None
        return BodyWriter(self.fd)

    async def start_split(self, state: ResumeState) -> Segments:
        """:meth:`Part.start_split`: the part emptied and the segment table saved."""
        self._streamed = True
        return await uncancelled(_start_split(self.part, state))

    def continue_split(self, state: ResumeState) -> Segments:
        """The segments a killed run left, to continue."""
        self._streamed = True
        return Segments(self.part, state)

    async def conclude(self, attempt: Attempt, step: Finish) -> Result:
        """:func:`~downloader.storage.conclude`: check the part and give it its final name;
        on the loop for a small body stored whole, else through aiofiles."""
        if step.rehash or self._streamed:
            return await uncancelled(_conclude(attempt, self.part, step))
        return conclude(attempt, self.part, step)


async def write_segment(segments: Segments, index: int, chunk: bytes) -> int:
    """:meth:`Segments.write`: ``chunk`` at segment ``index``'s offset (``os.pwrite``: the
    segments of one part write at once, none moving a shared position), counted; the
    bytes taken."""
    return await uncancelled(_write_segment(segments, index, chunk))


async def save_segments(segments: Segments) -> None:
    """:meth:`Segments.save`: the table as it stands, beside the part."""
    await uncancelled(_save_segments(segments))


class BodyWriter:
    """A streamed body into the part: one write in flight while the next chunk is read.

    The file is an aiofiles file over a duplicate of the part's descriptor, which
    shares the part's lock and its position (set by :meth:`Part.ready`; the threads
    engine writes through the descriptor itself the same way). At most two chunks are
    held: the one being written and the one being read.
    """

    def __init__(self, fd: int) -> None:
        duplicate = os.dup(fd)
        try:
            raw = open(duplicate, "wb", buffering=0)  # no open(2): no truncation, the position as it is
        except BaseException:
            os.close(duplicate)
            raise
        self._file: AsyncFileIO = aiofiles.threadpool.wrap(raw)
        self._pending: asyncio.Future[None] | None = None

    async def write(self, chunk: bytes) -> None:
        """Wait for the previous write (raising its error), then start writing ``chunk``."""
        await self.drain()
        self._pending = asyncio.ensure_future(self._write_all(chunk))

    async def drain(self) -> None:
        """Wait for the write in flight; its OSError is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await uncancelled(pending)

    async def aclose(self) -> None:
        """Close the file once the write in flight has ended. Its error is dropped: a caller
        that wants it drains first, else another error is on its way up."""
        try:
            with contextlib.suppress(Exception):
                await self.drain()
        finally:
            await uncancelled(self._file.close())

    async def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:  # a write may take only part of it
            view = view[await self._file.write(view):]


async def uncancelled(operation: Awaitable[T]) -> T:
    """The outcome of ``operation``, awaited to its end even if this task is cancelled
    meanwhile; the cancellation is raised after that (the outcome then dropped).

    For work in a thread, which a cancellation would only stop waiting for: a file is
    never closed, nor its descriptor freed, under a write still running.
    """
    future: asyncio.Future[T] = asyncio.ensure_future(operation)
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            # shield(), not wait(): as sure, and cheaper once per chunk (wait() cost 2-15 us more).
            await asyncio.shield(future)
        except asyncio.CancelledError as error:
            if not future.cancelled():  # this task was cancelled, not the operation
                cancelled = error
    if cancelled is not None:
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation wins
        raise cancelled
    return future.result()
