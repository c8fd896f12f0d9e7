"""The asyncio engine: aiohttp, every transfer a task on one event loop, file I/O through aiofiles."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import http_exceptions

from downloader.attempt import Attempt, Finish, Send, Split, Write
from downloader.config import Config
from downloader.cookies import CookieStore, run_cookies
from downloader.core import Request, Validators, proxy_for
from downloader.engines import offloop
from downloader.engines.aiopart import AsyncPart, save_segments, uncancelled, write_segment
from downloader.dispatch import Admission, Dispatcher, Verdict, failed_result
from downloader.errors import (BodyIncomplete, ConnectError, DownloadError, HTTPStatusError, InvalidJob, MalformedResponse,
                               StallTimeout, TransferError)
from downloader.jobs import Job, Result
from downloader.politeness import AsyncPoliteness, host_key, note_response, settings_for
from downloader.progress import Events
from downloader.retry import RetryState
from downloader.sources import Entry
from downloader.storage import Part, Segments, local_error

__all__ = ["run", "run_async"]

log = logging.getLogger(__name__)
_READ_BATCH = 256  # list entries read, and looked up in the manifest, at a time
OFF_LOOP_MIN = 8 * 1024 * 1024
"""Bodies of at least this many bytes are read off the event loop (a thread each)."""
_MAX_LINE = 65536  # longest status or header line accepted (http.client's limit)
_SCREEN_BATCHES = 16  # most batches screened per hop to the reader thread: a Ctrl-C waits for them


def run(entries: Iterator[Entry], config: Config, events: Events, dispatcher: Dispatcher) -> None:
    """Fetch every entry with up to ``config.concurrency`` transfers on an event loop of its own."""
    asyncio.run(run_async(entries, config, events, dispatcher))


@dataclass(frozen=True, slots=True)
class _Context:
    """What every transfer of the run shares."""

    session: aiohttp.ClientSession
    config: Config
    events: Events
    politeness: AsyncPoliteness
    cookies: CookieStore
    """The run's jar, the same as the threads engine's (aiohttp's own refuses IP-address hosts)."""


async def run_async(entries: Iterator[Entry], config: Config, events: Events, dispatcher: Dispatcher) -> None:
    """Fetch every entry with up to ``config.concurrency`` transfers on the running event loop.

    Cancelled, it returns (raising the CancelledError) once every transfer has stopped,
    each leaving its part on disk, and once the list's reader thread has ended: nothing
    of the run is left working on the loop or in a thread.
    """
    # Up to four admitted jobs per connection: a job waiting for its host's slot or for
    # a retry costs a task, not a connection (the connector holds those to -j), so a
    # paused host does not idle the others. A parked duplicate keeps its own slot.
    slots = asyncio.Semaphore(4 * config.concurrency)
    politeness = AsyncPoliteness(**settings_for(config))
    with run_cookies(config) as cookies:
        async with _session(config) as session, asyncio.TaskGroup() as tasks:
            context = _Context(session, config, events, politeness, cookies)
            async with contextlib.aclosing(_screened(entries, dispatcher)) as screened:
                async for jobs in screened:
                    for job in jobs:
                        await slots.acquire()
                        admission = dispatcher.place(job)
                        if admission.verdict is Verdict.SETTLED:
                            slots.release()
                        elif admission.verdict is Verdict.START:
                            tasks.create_task(_run_one(context, admission, dispatcher, slots))


async def _screened(entries: Iterator[Entry], dispatcher: Dispatcher) -> AsyncGenerator[list[Job], None]:
    """The jobs to place, read and screened in a thread, one call ahead of the loop.

    In the thread: a slow stdin never blocks the transfers, and the lines that take no
    slot (invalid, or done by the manifest: every line of a re-run) are settled there,
    so the loop hears only of the jobs it must place, after up to _SCREEN_BATCHES
    batches (the hop to the loop per batch of 256, and the GIL passed back and forth,
    cost a third of a re-run's time). Such results may therefore be reported before
    those of earlier lines still waiting for a slot.
    """
    def screen() -> tuple[list[Job], bool]:
        """Jobs to place from the next batches, and whether the list goes on."""
        jobs: list[Job] = []
        for _ in range(_SCREEN_BATCHES):
            batch = list(itertools.islice(entries, _READ_BATCH))
            jobs.extend(job for entry, done in dispatcher.with_done(batch)
                        if (job := dispatcher.screen(entry, done)) is not None)
            if len(batch) < _READ_BATCH:
                return jobs, False
            if jobs:
                break
        return jobs, True

    loop = asyncio.get_running_loop()
    following = loop.run_in_executor(None, screen)
    try:
        more = True
        while more:
            jobs, more = await following
            if more:
                following = loop.run_in_executor(None, screen)
            yield jobs
    finally:
        # Not cancelled: the thread would go on screening, into the dispatcher of a run
        # that has ended (and an asyncio.run no longer waits for it on a caller's loop).
        with contextlib.suppress(Exception):  # an error of its own is on its way up already
            await uncancelled(following)


@contextlib.asynccontextmanager
async def _session(config: Config) -> AsyncIterator[aiohttp.ClientSession]:
    # No total timeout (bodies may take hours); connect and stall timeouts instead.
    # read_bufsize: aiohttp pauses the socket above this much unread data; at its
    # 64 KiB default the pause/resume churn cost twice the system time on large files.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeout, sock_read=config.timeout)
    # Each transfer may open up to --split connections; per-host caps are politeness's.
    connector = aiohttp.TCPConnector(limit=config.concurrency * config.split, limit_per_host=0, ttl_dns_cache=300,
                                     ssl=_tls(config))
    # Header lines up to 64 KiB, as http.client (the threads engine) reads them: aiohttp's
    # 8 KiB refuses long Set-Cookie or Link headers that real servers send.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     read_bufsize=config.chunk_size, max_line_size=_MAX_LINE,
                                     max_field_size=_MAX_LINE,
                                     trust_env=False, raise_for_status=False,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:  # cookies: the run's CookieStore
        yield session


def _tls(config: Config) -> ssl.SSLContext | bool:
    """Certificate checking as configured: off, against a CA bundle, or the system's."""
    if not config.verify:
        return False
    if config.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(config.ca_bundle))
    return True


async def _run_one(context: _Context, admission: Admission, dispatcher: Dispatcher, slots: asyncio.Semaphore) -> None:
    job, path = admission.job, admission.path
    assert job is not None and path is not None
    try:
        result = await fetch(context, job, path, current=admission.current)
    except DownloadError as error:
        result = failed_result(job.url, error, job.origin, path, job)
    except Exception as error:  # a bug must not take the other transfers down with it
        log.exception("internal error while fetching %s", job.url)
        result = failed_result(job.url, f"internal error: {error!r}", job.origin, path, job)
    parked = dispatcher.settle(job, path, result)
    for _ in range(parked + 1):
        slots.release()


async def fetch(context: _Context, job: Job, path: Path, *, current: Validators | None = None) -> Result:
    """Download ``job`` to ``path``, retrying as the policy allows. Raises DownloadError."""
    retry = RetryState.from_config(context.config)
    while True:
        try:
            result = await _attempt(context, job, path, current)
            return result if retry.attempts == 1 else dataclasses.replace(result, attempts=retry.attempts)
        except DownloadError as error:
            retry = retry.increment(error)
            log.info("%s: %s; attempt %d in %.2f s", job.url, error, retry.attempts, retry.delay)
            await asyncio.sleep(retry.delay)


async def _attempt(context: _Context, job: Job, path: Path, current: Validators | None) -> Result:
    attempt = Attempt(job, context.config, current=current, cookies=context.cookies)
    part = AsyncPart(Part(path, job, context.config.dest))
    try:
        # Opened on the loop (a few metadata calls, cheaper than a hop to a thread); a
        # streamed body's writes and end go through aiofiles (engines/aiopart.py).
        step: Send | Split | Finish = attempt.begin(*part.open())
        while not isinstance(step, Finish):
            if isinstance(step, Split):
                step = await _split(context, attempt, part, step)
            else:
                step = await _exchange(context, attempt, part, step)
        return await part.conclude(attempt, step)
    finally:
        part.close(discard=attempt.spoiled)


async def _exchange(context: _Context, attempt: Attempt, part: AsyncPart, send: Send) -> Send | Split | Finish:
    """Send one request and do what its answer says; the step after it."""
    if send.discard:
        await part.discard()
    request, segments, tasks = send.request, None, []
    try:
        with _mapped_errors(attempt.job.url, part.name):
            async with context.politeness.host(host_key(request.url)) as slot, \
                    _get(context.session, request, context.config) as response:
                note_response(slot, response.status, response.headers)
                step = attempt.answer(response.status, response.headers, response.headers.getall("Set-Cookie", []))
                if isinstance(step, Write):
                    await _write(response, attempt, part, step, context)
                    return attempt.ended()
                if not isinstance(step, Split):
                    return step
                segments = await part.start_split(step.state)
                tasks = _start_segments(context, attempt, segments, skip=0)
                await _stream_segment(response, segments, 0, context)
    except BaseException:
        if segments is not None:
            await _abandon(segments, tasks)
        raise
    # The first answer's slot is given back before waiting for the other segments
    # (above, also when the first segment failed): a transfer never holds a slot
    # while it waits for another one.
    assert segments is not None
    return attempt.split_ended(await _settle(segments, tasks), segments.received)


async def _split(context: _Context, attempt: Attempt, part: AsyncPart, step: Split) -> Send | Finish:
    """Continue the segments a killed run left (all of them from their own requests)."""
    segments = part.continue_split(step.state)
    return attempt.split_ended(await _settle(segments, _start_segments(context, attempt, segments, skip=None)),
                               segments.received)


async def _write(response: aiohttp.ClientResponse, attempt: Attempt, part: AsyncPart, step: Write,
                 context: _Context) -> None:
    """Put the body in the part as ``step`` says: a small one at once, else as it streams."""
    with _told_of_close(response):
        if step.whole:  # on the loop: one write of at most 64 KiB
            part.store(step, await _read_whole(response, attempt, step, context))
            return
        await part.ready(step, attempt.hasher)
        if step.total is not None:
            context.events.bytes_expected(step.total - step.offset)
        if not await _receive_off_loop(response, attempt, part, step, context):
            await _receive(response, attempt, part, step, context)


@contextlib.contextmanager
def _told_of_close(response: aiohttp.ClientResponse) -> Iterator[None]:
    """While the body is read, a closed connection ends the read with an error.

    aiohttp's parser, refusing a chunked body's framing, closes the connection without
    telling the body's stream: a read waiting then waits forever (no stall timeout runs
    once the connection is gone). The callback is removed after the body, so that a
    kept-alive connection holds no answer it served.
    """
    connection = response.connection
    closed = connection.protocol.closed if connection is not None and connection.protocol is not None else None
    if closed is None:
        yield
        return

    def ended(future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: the connection's own error is not ours to log
        if not response.content.is_eof():
            response.content.set_exception(aiohttp.ClientPayloadError("the connection closed during the body"))

    closed.add_done_callback(ended)
    try:
        yield
    finally:
        closed.remove_done_callback(ended)


async def _read_whole(response: aiohttp.ClientResponse, attempt: Attempt, step: Write, context: _Context) -> bytes:
    """A small body, kept in memory (it fits in one chunk) and fed as its pieces arrive."""
    assert step.total is not None
    context.events.bytes_expected(step.total)
    pieces = []
    async for piece in response.content.iter_chunked(step.total or 1):
        attempt.feed(piece)
        context.events.bytes_received(len(piece))
        await context.politeness.spend(len(piece))
        pieces.append(piece)
    return b"".join(pieces)


async def _receive_off_loop(response: aiohttp.ClientResponse, attempt: Attempt, part: AsyncPart, step: Write,
                            context: _Context) -> bool:
    """A large body read by a thread of its own, socket to part (engines/offloop.py): the
    event loop never touches its bytes (measured: 2-3x the speed of reading 4 x 512 MiB
    on the loop). False, having read nothing, when it cannot be (TLS, chunked, a rate limit)."""
    if step.total is None or step.total - step.offset < OFF_LOOP_MIN or context.politeness.bucket is not None:
        return False
    fd = part.fd
    assert fd is not None

    def counted(size: int) -> None:  # in the reading thread
        attempt.count(size)
        context.events.bytes_received(size)

    hasher = attempt.hasher
    written = await offloop.receive_off_loop(response, fd, step.offset, step.total - step.offset,
                                             timeout=context.config.timeout, on_count=counted,
                                             on_bytes=hasher.update if hasher is not None else None)
    return written is not None


async def _receive(response: aiohttp.ClientResponse, attempt: Attempt, part: AsyncPart, step: Write,
                   context: _Context) -> None:
    # Each chunk is written by aiofiles while the next one is read (measured: half the
    # wall time of awaiting each write, on 512 MiB from nginx), so at most two chunks
    # are held. A cancelled transfer waits for the write in flight to end before its
    # file and the part are closed.
    writer = part.writer()
    try:
        # auto_decompress=False: the bytes stored are the bytes the server sent.
        async for chunk in response.content.iter_chunked(context.config.chunk_size):
            await writer.write(chunk)
            attempt.feed(chunk)
            context.events.bytes_received(len(chunk))
            await context.politeness.spend(len(chunk))
        await writer.drain()
    except (aiohttp.ClientError, RuntimeError):
        # Keep what arrived before the break, so the next attempt resumes after it.
        if rest := _salvage(response):
            await writer.write(rest)
            attempt.feed(rest)
            context.events.bytes_received(len(rest))
        await writer.drain()
        raise
    finally:
        await writer.aclose()  # what was received reaches the part before any error goes up


def _start_segments(context: _Context, attempt: Attempt, segments: Segments, *,
                    skip: int | None) -> list[asyncio.Task[bool]]:
    """One task per pending segment but ``skip`` (the first answer's), each waiting for
    its own connection slot, so that none holds a slot while waiting for another."""
    context.events.bytes_expected(segments.missing())
    return [asyncio.create_task(_segment(context, attempt, segments, index))
            for index in segments.pending() if index != skip]


async def _abandon(segments: Segments, tasks: list[asyncio.Task[bool]]) -> None:
    """The first segment failed: stop the others, keeping what they got (the error on its way up wins)."""
    for task in tasks:
        task.cancel()
    with contextlib.suppress(BaseException):
        await _settle(segments, tasks)


async def _settle(segments: Segments, tasks: list[asyncio.Task[bool]]) -> bool:
    """Wait for the segments, save the table (what each got stays counted), and raise the
    first failure. False when the server will not serve the ranges."""
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await save_segments(segments)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return all(outcomes)


async def _segment(context: _Context, attempt: Attempt, segments: Segments, index: int) -> bool:
    start, end = segments.span(index)
    request = attempt.segment_request(start, end)
    with _mapped_errors(attempt.job.url, segments.part.part):
        async with context.politeness.host(host_key(request.url)) as slot, \
                _get(context.session, request, context.config) as response:
            note_response(slot, response.status, response.headers)
            if not attempt.segment_fits(request, response.status, response.headers, end, response.headers.getall("Set-Cookie", [])):
                return False
            await _stream_segment(response, segments, index, context)
    return True


async def _stream_segment(response: aiohttp.ClientResponse, segments: Segments, index: int, context: _Context) -> None:
    with _told_of_close(response):
        async for chunk in response.content.iter_chunked(context.config.chunk_size):
            taken = await write_segment(segments, index, chunk)
            context.events.bytes_received(taken)
            await context.politeness.spend(taken)
            if not segments.remaining(index):
                return  # segment 0 stops reading the whole-file answer at its end
    if segments.remaining(index):
        raise BodyIncomplete(segments.part.job.url, f"segment {index} ended {segments.remaining(index)} bytes short")


def _salvage(response: aiohttp.ClientResponse) -> bytes:
    """The bytes aiohttp had buffered when the connection broke.

    aiohttp raises a stored payload error before handing out data it already
    buffered, which would throw away up to a read buffer of received bytes and
    make the resume fetch them again. ``_read_nowait`` is private, so it is used
    defensively: when it is missing or fails, nothing is salvaged.
    """
    read_nowait = getattr(response.content, "_read_nowait", None)
    try:
        return bytes(read_nowait(-1)) if read_nowait is not None else b""
    except Exception:
        return b""


def _get(session: aiohttp.ClientSession, request: Request, config: Config) -> aiohttp.client._RequestContextManager:
    # Redirects are followed by core.follow_redirect, the same for both engines.
    proxy = proxy_for(request.url, dict(config.proxies), config.no_proxy) if config.proxies else None
    return session.get(request.url, headers=request.headers, allow_redirects=False, proxy=proxy)


@contextlib.contextmanager
def _mapped_errors(url: str, part: str) -> Iterator[None]:
    """Translate aiohttp, asyncio and OS errors into the package's own (the one border)."""
    try:
        yield
    except DownloadError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise ConnectError(url, f"connect timeout: {exc}") from exc
    except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
        raise StallTimeout(url, "stalled: no data within the timeout") from exc
    except aiohttp.TooManyRedirects as exc:
        raise HTTPStatusError(url, "too many redirects", 310, False) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlRedirectClientError) as exc:
        raise InvalidJob(url, f"cannot fetch: {exc!r}") from exc
    except (aiohttp.ClientPayloadError, http_exceptions.PayloadEncodingError) as exc:
        raise BodyIncomplete(url, f"connection broken during the body: {exc}") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise BodyIncomplete(url, f"server disconnected: {exc}") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientOSError) as exc:
        raise ConnectError(url, f"connection failed: {_connect_words(exc)}") from exc
    except (aiohttp.ClientResponseError, http_exceptions.HttpProcessingError) as exc:
        raise _refused_by_parser(url, exc.message) from exc
    except aiohttp.ClientError as exc:
        raise TransferError(url, f"request failed: {exc!r}") from exc
    except RuntimeError as exc:
        if not _raised_by_aiohttp(exc):
            raise
        # The stream of a body whose framing broke, once the parser closed the connection.
        raise BodyIncomplete(url, f"connection broken during the body: {exc}") from exc
    except OSError as exc:
        raise local_error(url, exc, part) from exc


def _connect_words(exc: Exception) -> str:
    """A failed connection in the system's words, as the threads engine says it (``[Errno 111]
    Connection refused``): asyncio's own text ("Connect call failed") hides which error it was."""
    system = getattr(exc, "os_error", None)
    if isinstance(system, OSError) and not isinstance(system, ssl.SSLError) and system.errno and system.errno > 0:
        return f"[Errno {system.errno}] {os.strerror(system.errno)}"
    return str(exc)


def _refused_by_parser(url: str, message: str) -> DownloadError:
    """The parser refused the answer: its chunked framing (retried like a cut body; when
    the headers and the broken chunk came in one read, aiohttp reports it here, its type
    lost, so the message tells), else its status line or headers (never retried)."""
    text = _parser_message(message)
    if "chunk" in text.lower():
        return BodyIncomplete(url, f"broken chunked body: {text}")
    return MalformedResponse(url, f"invalid answer: {text}")


def _parser_message(message: str) -> str:
    """aiohttp's parser message on one line, without its caret line."""
    lines = (line.strip() for line in message.splitlines())
    return " ".join(line for line in lines if line.strip("^ "))[:300]


def _raised_by_aiohttp(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is aiohttp's (a RuntimeError of ours is a bug)."""
    trace = exc.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace is not None and trace.tb_frame.f_globals.get("__name__", "").startswith("aiohttp.")
