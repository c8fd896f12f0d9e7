"""Read a large plain-HTTP response body in a worker thread, straight from the socket into the part file.

Why: on the asyncio engine one event-loop thread does every socket read and all of
aiohttp's stream bookkeeping for every transfer, which caps a few large transfers
from a fast server at about a quarter of what the C tools reach. Once the headers
are judged, the rest of a Content-Length body is plain bytes on a TCP socket: a
worker thread can move them to the file with ``os.splice`` (socket -> pipe -> file,
no copy through Python) or ``recv_into`` one reused buffer, while the loop is free.

Why it is safe (the order matters, and all of steps 2-4 happen in one synchronous
stretch on the loop, with no ``await`` between them):

1. Only when nothing but the socket holds the rest of the body: plain TCP (no TLS
   object on the transport), a real socket, a Content-Length body, neither chunked
   nor content-encoded, aiohttp's stream without error and not at its end. Anything
   else answers None before a byte is consumed, and the caller reads on the loop.
2. The bytes aiohttp already holds are taken with the public ``read_nowait()`` until
   it answers nothing. Each read that empties aiohttp's buffer makes its
   StreamReader call ``protocol.resume_reading()``, which first re-feeds the bytes
   the HTTP parser had set aside while paused (its "tail") into the stream; so
   looping until empty collects those too, in order. ``resume_reading`` only
   re-registers the socket with the selector: no read happens until the loop runs.
3. Reading is paused (aiohttp's ``protocol.pause_reading()``, which also stops its
   sock_read timer, then the transport's own ``pause_reading()``), and checked with
   ``transport.is_reading()``. From here the loop never reads this socket: only
   aiohttp's StreamReader resumes it, and nothing reads that stream any more. If
   the check ever failed, the response is closed at once instead (which takes the
   socket out of the selector for good), before the thread starts.
4. The thread gets its own duplicates of the socket and of the file descriptor, so
   that neither number can be reused by another file even if aiohttp or the caller
   closes theirs meanwhile. The socket stays non-blocking (the flag is shared with
   the transport); the thread waits with ``poll`` in short slices, so a stall raises
   TimeoutError after ``timeout`` seconds and a cancelled task stops it promptly.
5. At the end, whatever happened, ``response.close()``: the connection, whose stream
   aiohttp no longer knows the position of, is closed, never put back in the pool.
   Until then it stays acquired, so the connector's limits still count it.
6. Before that, a check that steps 2-3 held: aiohttp's count of body bytes received
   (``content.total_bytes``) must not have moved while the thread read. If the loop
   had read the socket, the file would miss those bytes: RuntimeError, a bug to
   report, rather than a part that looks fine.

aiohttp internals relied on (aiohttp 3.14.5 when written): that only reads of
``response.content`` resume a paused protocol, that the parser's tail is re-fed by
``resume_reading`` (so draining collects it), that ``protocol.pause_reading()``
exists, and that ``content.total_bytes`` counts the body bytes fed. Each is guarded
at run time (a missing method or attribute skips only that courtesy or check, and
step 3 verifies the pause itself) and exercised by tests/test_offloop.py, which
checks files byte for byte after a deliberately paused parser.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import itertools
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

__all__ = ["COPY_CHUNK", "SPLICE_CHUNK", "receive_off_loop"]

SPLICE_CHUNK = 1 << 20
"""Bytes moved per splice, and the pipe's size (1 MiB: Linux's unprivileged maximum).
On loopback (bench/offloop_probe.py, 4 x 512 MiB from nginx) 64 KiB to 4 MiB were
within the machine's noise of each other; the largest pipe means the fewest calls."""
COPY_CHUNK = 1 << 20
"""Size of the one reused buffer of a transfer whose bytes are also hashed (256 KiB
to 4 MiB were within noise too); it bounds the memory of a transfer."""
_SLICE = 0.05
"""Seconds a waiting thread sleeps before it looks at its stop flag again."""
_NO_FILE_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV)
"""Errors of a splice into a file that the file system does not support that way."""
_names = itertools.count(1)

OnBytes = Callable[[memoryview], None]
"""Sees each piece written (valid during the call only); runs in the worker thread."""
OnCount = Callable[[int], None]
"""Told the size of each piece once it is in the file; runs in the worker thread."""


@dataclass(frozen=True, kw_only=True)
class _Job:
    """What the worker thread needs; it owns and closes ``sock`` and ``fd`` (duplicates)."""

    sock: socket.socket | None
    fd: int
    position: int
    length: int
    head: bytes
    timeout: float
    on_bytes: OnBytes | None
    on_count: OnCount
    stop: threading.Event


async def receive_off_loop(response: aiohttp.ClientResponse, fd: int, position: int, length: int, *,
                           timeout: float, on_bytes: OnBytes | None, on_count: OnCount) -> int | None:
    """Read the rest of ``response``'s body (``length`` bytes, Content-Length known, not chunked)
    in a worker thread straight from the socket into ``fd`` at ``position``; the bytes written.

    None, having read nothing, when this cannot be done (TLS, no socket, chunked, ...):
    the caller then reads on the loop as today. Otherwise the response is closed when
    this returns or raises, and its connection is never reused.

    Args:
        fd: the part, open for writing (not O_APPEND); written with pwrite/splice at
            explicit offsets, its own offset untouched. Never written after this returns.
        length: the most bytes to write; a server sending more is cut off there.
        timeout: seconds without a byte before TimeoutError (a stall) is raised.
        on_bytes: when given (to hash the body), bytes are copied through one reused
            buffer and each piece is shown to it; when None, they are spliced.
        on_count: told each piece's size once it is written; an exception it raises
            stops the transfer and propagates. Both callbacks run in the worker thread.

    Returns:
        The bytes written: ``length``, or fewer when the server closed (or reset) the
        connection early. Every byte received is in the file before anything is raised.

    Raises:
        TimeoutError: no byte for ``timeout`` seconds (a stall).
        OSError: from the file (disk full, ...); whatever on_count or on_bytes raise.
        asyncio.CancelledError: once the thread, told to stop, has ended.
        RuntimeError: aiohttp read the socket meanwhile (step 6 of the module docstring): a bug, the part is corrupt.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    transport = _plain_transport(response, fd, length)
    if transport is None:
        return None
    try:
        job = _claim(response, transport, fd, position, length, timeout, on_bytes, on_count)
        received = _received(response)
        try:
            return await _run_in_thread(job)
        finally:
            if _received(response) != received:  # step 6 of the module docstring
                raise RuntimeError("aiohttp read body bytes from the socket during an off-loop transfer: "
                                   "the part is corrupt; offloop's assumptions no longer hold")
    finally:
        response.close()


def _received(response: aiohttp.ClientResponse) -> int | None:
    """Body bytes aiohttp has received so far (None if it stops telling)."""
    total = getattr(response.content, "total_bytes", None)
    return total if isinstance(total, int) else None


def _plain_transport(response: aiohttp.ClientResponse, fd: int, length: int) -> asyncio.Transport | None:
    """The response's transport if the rest of its body may be read off the loop, else None."""
    content_length = response.content_length
    if content_length is None or not 0 <= length <= content_length:
        return None
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        return None
    if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return None  # aiohttp may be decompressing: its bytes and the socket's would differ
    content = response.content
    if content.exception() is not None or content.is_eof():
        return None  # broken (let the loop report it) or all already buffered
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
        return None  # pwrite and splice would ignore the position
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM or not hasattr(transport, "is_reading"):
        return None
    return transport


def _claim(response: aiohttp.ClientResponse, transport: asyncio.Transport, fd: int, position: int, length: int,
           timeout: float, on_bytes: OnBytes | None, on_count: OnCount) -> _Job:
    """Take what aiohttp buffered and stop the loop reading the socket; the thread's job.

    The descriptors are duplicated first, so that nothing can fail once bytes are taken.
    Synchronous on purpose: nothing may run on the loop between the drain and the pause.
    """
    file_fd = os.dup(fd)
    try:
        # Ours stays valid (and its number unused by other files) even if aiohttp closes its own.
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    except BaseException:
        os.close(file_fd)
        raise
    sock.setblocking(False)  # it already is (the flag is shared with the transport): never make it blocking
    head = _drain(response.content, length)
    reader: socket.socket | None = sock
    if response.content.is_eof() or len(head) >= length:
        sock.close()  # all there already: the socket is not read (aiohttp may even have pooled it, cleanly)
        reader = None
    else:
        _stop_loop_reading(response, transport)
    return _Job(sock=reader, fd=file_fd, position=position, length=length, head=head, timeout=timeout,
                on_bytes=on_bytes, on_count=on_count, stop=threading.Event())


def _drain(content: aiohttp.StreamReader, length: int) -> bytes:
    """Everything aiohttp holds of the body, up to ``length`` bytes.

    Reading until empty, not once: emptying the buffer makes aiohttp re-feed the bytes
    its paused parser set aside, synchronously, into the same buffer.
    """
    pieces: list[bytes] = []
    wanted = length
    while wanted > 0:
        piece = content.read_nowait(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def _stop_loop_reading(response: aiohttp.ClientResponse, transport: asyncio.Transport) -> None:
    """Make sure the event loop never reads this socket again (see the module docstring, step 3)."""
    protocol = response.connection.protocol if response.connection is not None else None
    if protocol is not None:
        try:
            protocol.pause_reading()  # aiohttp's flag, its parser, its sock_read timer
        except (AssertionError, AttributeError, RuntimeError):
            pass  # its bookkeeping is a courtesy: the transport is paused and checked below
    transport.pause_reading()
    if transport.is_reading():
        response.close()  # never expected; closing removes the socket from the selector


async def _run_in_thread(job: _Job) -> int:
    """Run ``job`` in its own thread and wait for the thread to end, even when cancelled.

    A cancellation sets the job's stop flag and keeps waiting (the thread stops within
    one read or ``_SLICE``), so ``fd`` is never written after this returns; then it
    is re-raised.
    """
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    thread = threading.Thread(target=_settle, args=(done, job), name=f"offloop-{next(_names)}", daemon=True)
    try:
        thread.start()
    except BaseException:
        _close(job)
        raise
    waiting = asyncio.wrap_future(done)
    cancelled: asyncio.CancelledError | None = None
    while not waiting.done():
        try:
            await asyncio.wait([waiting])  # wait() never cancels what it waits for
        except asyncio.CancelledError as exc:
            job.stop.set()
            cancelled = exc
    thread.join()  # it has only to return: its result is set after its last write and close
    if cancelled is not None:
        waiting.exception()  # seen: an error raised while stopping gives way to the cancellation
        raise cancelled
    return waiting.result()


def _settle(done: concurrent.futures.Future[int], job: _Job) -> None:
    """The thread's body: run the job, close its descriptors, then publish the outcome."""
    try:
        result = _receive(job)
    except BaseException as exc:  # handed over to the awaiting task, which raises it
        _close(job)
        done.set_exception(exc)
    else:
        _close(job)
        done.set_result(result)


def _close(job: _Job) -> None:
    os.close(job.fd)
    if job.sock is not None:
        job.sock.close()


def _receive(job: _Job) -> int:
    """Write the buffered head, then the rest from the socket; the bytes written."""
    head = job.head
    if head:
        _pwrite_all(job.fd, memoryview(head), job.position)
        if job.on_bytes is not None:
            job.on_bytes(memoryview(head))
        job.on_count(len(head))
    written = len(head)
    if job.sock is None or written >= job.length or job.stop.is_set():
        return written
    if job.on_bytes is None:
        spliced, supported = _splice_rest(job, written)
        written += spliced
        if supported or written >= job.length:
            return written
    return written + _copy_rest(job, written)


def _splice_rest(job: _Job, written: int) -> tuple[int, bool]:
    """Splice socket -> pipe -> file from ``written`` on: (bytes written, whether the
    file took splices; when not, the caller goes on by copying)."""
    assert job.sock is not None
    source = job.sock.fileno()
    poller = _poller(source)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        chunk = _widen(write_end, SPLICE_CHUNK)
        done = 0
        while written + done < job.length and not job.stop.is_set():
            n = _splice_in(source, write_end, min(chunk, job.length - written - done), poller, job)
            if n == 0:
                break
            if not _splice_out(read_end, job.fd, n, job.position + written + done):
                _pwrite_all(job.fd, memoryview(_read_exactly(read_end, n)), job.position + written + done)
                job.on_count(n)
                return done + n, False
            done += n
            job.on_count(n)
        return done, True
    finally:
        os.close(read_end)
        os.close(write_end)


def _splice_in(source: int, pipe: int, count: int, poller: select.poll, job: _Job) -> int:
    """Splice up to ``count`` bytes from the socket into the empty pipe; 0 at end of
    stream, on a reset, or when stopped."""
    while True:
        try:
            return os.splice(source, pipe, count, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            if not _wait_readable(poller, job):
                return 0
        except ConnectionError:
            return 0  # a reset is an early close: the caller reports the short count


def _splice_out(pipe: int, fd: int, count: int, position: int) -> bool:
    """Move all ``count`` bytes in the pipe into the file at ``position``; False (and
    the bytes left in the pipe) when the file system cannot take a splice."""
    moved = 0
    while moved < count:
        try:
            moved += os.splice(pipe, fd, count - moved, offset_dst=position + moved, flags=os.SPLICE_F_MOVE)
        except OSError as exc:
            if moved == 0 and exc.errno in _NO_FILE_SPLICE:
                return False
            raise
    return True


def _copy_rest(job: _Job, written: int) -> int:
    """recv_into one reused buffer and pwrite it, from ``written`` on; the bytes written."""
    assert job.sock is not None
    poller = _poller(job.sock.fileno())
    buffer = memoryview(bytearray(min(COPY_CHUNK, job.length - written)))
    done = 0
    while written + done < job.length and not job.stop.is_set():
        want = min(len(buffer), job.length - written - done)
        try:
            n = job.sock.recv_into(buffer[:want])
        except BlockingIOError:
            if not _wait_readable(poller, job):
                break
            continue
        except ConnectionError:
            break  # a reset is an early close: the caller reports the short count
        if n == 0:
            break
        piece = buffer[:n]
        _pwrite_all(job.fd, piece, job.position + written + done)
        if job.on_bytes is not None:
            job.on_bytes(piece)
        done += n
        job.on_count(n)
    return done


def _poller(fd: int) -> select.poll:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller


def _wait_readable(poller: select.poll, job: _Job) -> bool:
    """Wait until the socket has bytes (or its end, or an error) to read: True; or until
    the job is stopped: False. TimeoutError after ``job.timeout`` seconds of nothing."""
    deadline = time.monotonic() + job.timeout
    while not job.stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no data for {job.timeout:g} s")
        if poller.poll(min(left, _SLICE) * 1000):
            return True
    return False


def _widen(pipe: int, size: int) -> int:
    """Ask for a pipe of ``size`` bytes; the size it got (the default 64 KiB if refused)."""
    try:
        return fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        return fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ)


def _read_exactly(fd: int, count: int) -> bytes:
    pieces: list[bytes] = []
    while count > 0:
        piece = os.read(fd, count)
        if not piece:
            raise RuntimeError("the pipe held fewer bytes than spliced into it")
        pieces.append(piece)
        count -= len(piece)
    return b"".join(pieces)


def _pwrite_all(fd: int, view: memoryview, position: int) -> None:
    """Write all of ``view`` at ``position`` (a pwrite may take only part of it)."""
    while view:
        n = os.pwrite(fd, view, position)
        view, position = view[n:], position + n

