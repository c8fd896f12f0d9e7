"""The threads engine: requests + requests-futures, one blocking transfer per worker thread."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import itertools
import logging
import ssl
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from requests_futures.sessions import FuturesSession

from downloader.attempt import Attempt, Finish, Send, Split, Write
from downloader.config import Config
from downloader.cookies import CookieStore, run_cookies
from downloader.core import Request, Validators, proxy_for
from downloader.dispatch import Admission, Dispatcher, Verdict, failed_result
from downloader.engines import strict
from downloader.errors import (BodyIncomplete, ConnectError, DownloadError, HTTPStatusError, InvalidJob, MalformedResponse,
                               StallTimeout, TransferError)
from downloader.jobs import Job, Result
from downloader.politeness import ThreadPoliteness, host_key, note_response, settings_for
from downloader.progress import Events
from downloader.retry import RetryState
from downloader.sources import Entry
from downloader.storage import Part, Segments, conclude, local_error

__all__ = ["run"]

log = logging.getLogger(__name__)


WORKERS_PER_TRANSFER = 4
_READ_BATCH = 256  # list entries read, and looked up in the manifest, per turn
_TURN_SECONDS = 0.2


class Interrupted(BaseException):
    """Raised inside a worker when the run is stopping; never reported as a result."""


def run(entries: Iterator[Entry], config: Config, events: Events, dispatcher: Dispatcher) -> None:
    """Fetch every entry with ``config.concurrency`` worker threads."""
    stop = threading.Event()
    # Four workers per transfer: a worker waiting for its host's slot or for a retry
    # holds no connection (``active`` counts those, -j of them), so a paused host does
    # not idle the others. At most two jobs per worker are admitted and not finished
    # (running or queued in the executor, whose own queue has no bound).
    size = 2 * WORKERS_PER_TRANSFER * config.concurrency
    slots = threading.BoundedSemaphore(size)
    politeness = ThreadPoliteness(stop=stop, interrupt=Interrupted, **settings_for(config))
    with _session(config) as session, run_cookies(config) as cookies:
        context = _Context(session, config, events, politeness, stop, threading.BoundedSemaphore(config.concurrency),
                           cookies)
        try:
            # In batches, as the asyncio engine reads: the manifest is asked once per batch.
            while batch := list(itertools.islice(entries, _READ_BATCH)):
                for entry, done in dispatcher.with_done(batch):
                    # Invalid lines and files the manifest has are settled without a slot.
                    if (job := dispatcher.screen(entry, done)) is None:
                        continue
                    _take(slots)
                    admission = dispatcher.place(job)
                    if admission.verdict is Verdict.SETTLED:
                        slots.release()
                    elif admission.verdict is Verdict.START:
                        session.executor.submit(_run_one, context, admission, dispatcher, slots)
            for _ in range(size):  # every slot back: every job settled
                _take(slots)
            session.executor.shutdown(wait=True)
        except BaseException:
            stop.set()
            session.executor.shutdown(wait=False, cancel_futures=True)
            raise


def _take(slots: threading.BoundedSemaphore) -> None:
    """Take a slot, waiting in short turns: an exception raised into this thread from outside
    (a Dask task being stopped) lands between them, never behind a wait without end."""
    while not slots.acquire(timeout=_TURN_SECONDS):
        pass


@dataclass(frozen=True, slots=True)
class _Context:
    """What every transfer of the run shares."""

    session: FuturesSession
    config: Config
    events: Events
    politeness: ThreadPoliteness
    stop: threading.Event
    active: threading.BoundedSemaphore
    """One per transfer talking to a server: -j of them, whatever the number of workers."""
    cookies: CookieStore
    """The run's jar (requests' own cookie handling is not used: _get goes to the adapter)."""


@contextlib.contextmanager
def _session(config: Config) -> Iterator[FuturesSession]:
    executor = ThreadPoolExecutor(max_workers=WORKERS_PER_TRANSFER * config.concurrency, thread_name_prefix="fetch")
    session = FuturesSession(executor=executor)
    # requests-futures only enlarges the pool above 10 workers; size it to match always,
    # and let our own retry policy, not urllib3's, decide about retries.
    pool = config.concurrency * config.split  # each transfer may open up to --split connections
    # Strict: 1xx answers skipped, unparsable headers refused (engines/strict.py).
    adapter = strict.StrictAdapter(pool_connections=config.concurrency, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # proxies and credentials come from Config, the same for both engines
    session.verify = str(config.ca_bundle) if config.ca_bundle and config.verify else config.verify
    if not config.verify:
        # Asked for explicitly (--insecure): urllib3 would warn once per request.
        # The filter is process-wide, as warnings filters are; the asyncio engine does not warn.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    try:
        yield session
    finally:
        session.close()


def _run_one(context: _Context, admission: Admission, dispatcher: Dispatcher, slots: threading.BoundedSemaphore) -> None:
    job, path = admission.job, admission.path
    assert job is not None and path is not None
    try:
        result = fetch(context, job, path, current=admission.current)
    except DownloadError as error:
        result = failed_result(job.url, error, job.origin, path, job)
    except Interrupted:
        return
    except Exception as error:  # a bug must not take the other transfers down with it
        log.exception("internal error while fetching %s", job.url)
        result = failed_result(job.url, f"internal error: {error!r}", job.origin, path, job)
    parked = dispatcher.settle(job, path, result)
    for _ in range(parked + 1):
        slots.release()


def fetch(context: _Context, job: Job, path: Path, *, current: Validators | None = None) -> Result:
    """Download ``job`` to ``path``, retrying as the policy allows. Raises DownloadError."""
    retry = RetryState.from_config(context.config)
    while True:
        try:
            result = _attempt(context, job, path, current)
            return result if retry.attempts == 1 else dataclasses.replace(result, attempts=retry.attempts)
        except DownloadError as error:
            retry = retry.increment(error)
            log.info("%s: %s; attempt %d in %.2f s", job.url, error, retry.attempts, retry.delay)
            if context.stop.wait(retry.delay):
                raise Interrupted from None


def _attempt(context: _Context, job: Job, path: Path, current: Validators | None) -> Result:
    attempt = Attempt(job, context.config, current=current, cookies=context.cookies)
    part = Part(path, job, context.config.dest)
    try:
        step: Send | Split | Finish = attempt.begin(*part.open())
        while not isinstance(step, Finish):
            if isinstance(step, Split):
                step = _split(context, attempt, part, step)
            else:
                step = _exchange(context, attempt, part, step)
        return conclude(attempt, part, step)
    finally:
        part.close(discard=attempt.spoiled)


def _exchange(context: _Context, attempt: Attempt, part: Part, send: Send) -> Send | Split | Finish:
    """Send one request and do what its answer says; the step after it."""
    if send.discard:
        part.discard()
    request, segments, tasks = send.request, None, None
    try:
        with _mapped_errors(attempt.job.url, part.part):
            with context.politeness.host(host_key(request.url)) as slot, context.active, \
                    _get(context.session, request, context.config) as response:
                note_response(slot, response.status_code, response.headers)
                step = attempt.answer(response.status_code, response.headers, response.raw.headers.getlist("Set-Cookie"))
                if isinstance(step, Write):
                    _write(response, attempt, part, step, context)
                    return attempt.ended()
                if not isinstance(step, Split):
                    return step
                segments = part.start_split(step.state)
                tasks = _start_segments(context, attempt, segments, skip=0)
                _stream_segment(response, segments, 0, context, tasks.halt)
    except BaseException:
        if segments is not None and tasks is not None:
            _abandon(segments, tasks)
        raise
    # The first answer's slot is given back before waiting for the other segments
    # (above, also when the first segment failed): a transfer never holds a slot
    # while it waits for another one.
    assert segments is not None and tasks is not None
    return attempt.split_ended(_settle(segments, tasks), segments.received)


def _split(context: _Context, attempt: Attempt, part: Part, step: Split) -> Send | Finish:
    """Continue the segments a killed run left (all of them from their own requests)."""
    segments = Segments(part, step.state)
    return attempt.split_ended(_settle(segments, _start_segments(context, attempt, segments, skip=None)),
                               segments.received)


def _write(response: requests.Response, attempt: Attempt, part: Part, step: Write, context: _Context) -> None:
    """Put the body in the part as ``step`` says: a small one at once, else as it streams."""
    if step.whole:
        part.store(step, _read_whole(response, attempt, step, context))
    else:
        part.ready(step, attempt.hasher)
        if step.total is not None:
            context.events.bytes_expected(step.total - step.offset)
        _receive(response, attempt, part, step, context)


def _read_whole(response: requests.Response, attempt: Attempt, step: Write, context: _Context) -> bytes:
    """A small body, kept in memory (it fits in one chunk) and fed as its pieces arrive."""
    assert step.total is not None
    total = step.total
    context.events.bytes_expected(total)
    pieces = []
    for piece in iter(lambda: response.raw.read1(total, decode_content=False), b""):
        attempt.feed(piece)
        context.events.bytes_received(len(piece))
        context.politeness.spend(len(piece))
        pieces.append(piece)
    return b"".join(pieces)


def _receive(response: requests.Response, attempt: Attempt, part: Part, step: Write, context: _Context) -> None:
    assert part.fd is not None
    # The part's own descriptor, locked and positioned by part.ready().
    with open(part.fd, "wb", closefd=False) as file:
        # The raw stream, undecoded: the bytes stored are the bytes the server sent.
        for chunk in _pieces(response, context.config.chunk_size):
            file.write(chunk)
            attempt.feed(chunk)
            context.events.bytes_received(len(chunk))
            context.politeness.spend(len(chunk))
            if context.stop.is_set():
                raise Interrupted


def _pieces(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body's bytes as they arrive, at most ``size`` at a time.

    read1 returns what has arrived (read() would hold up to a chunk in urllib3's buffer,
    and lose it to a stall instead of leaving it in the part). A chunked body is read by
    strict.read_chunked from the connection's buffered socket, which checks the framing
    urllib3 does not (its connection is then closed, not reused: urllib3 never saw the end).
    """
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)  # http.client's buffered socket
    if response.raw.chunked and fp is not None:
        return strict.read_chunked(fp, size)
    return iter(lambda: response.raw.read1(size, decode_content=False), b"")


@dataclass(slots=True)
class _Tasks:
    """The segments of one split file in flight, a thread each; ``halt`` stops them early."""

    pool: ThreadPoolExecutor
    futures: list[Future[bool]]
    halt: threading.Event


def _start_segments(context: _Context, attempt: Attempt, segments: Segments, *, skip: int | None) -> _Tasks:
    """One thread per pending segment but ``skip`` (the first answer's), each waiting for
    its own connection slot, so that none holds a slot while waiting for another."""
    context.events.bytes_expected(segments.missing())
    indices = [index for index in segments.pending() if index != skip]
    halt = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, len(indices)), thread_name_prefix="segment")
    futures = [pool.submit(_segment, context, attempt, segments, index, halt) for index in indices]
    return _Tasks(pool, futures, halt)


def _abandon(segments: Segments, tasks: _Tasks) -> None:
    """The first segment failed: stop the others, keeping what they got (the error on its way up wins)."""
    tasks.halt.set()
    with contextlib.suppress(BaseException):
        _settle(segments, tasks)


def _settle(segments: Segments, tasks: _Tasks) -> bool:
    """Wait for the segments, save the table (what each got stays counted), and raise the
    first failure. False when the server will not serve the ranges."""
    try:
        with tasks.pool:
            outcomes = [future.exception() or future.result() for future in tasks.futures]
    finally:
        segments.save()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return all(outcomes)


def _segment(context: _Context, attempt: Attempt, segments: Segments, index: int, halt: threading.Event) -> bool:
    start, end = segments.span(index)
    request = attempt.segment_request(start, end)
    with _mapped_errors(attempt.job.url, segments.part.part):
        with context.politeness.host(host_key(request.url)) as slot:
            if halt.is_set():  # the first segment failed while this one waited for its slot
                raise Interrupted
            with _get(context.session, request, context.config) as response:
                note_response(slot, response.status_code, response.headers)
                if not attempt.segment_fits(request, response.status_code, response.headers, end, response.raw.headers.getlist("Set-Cookie")):
                    return False
                _stream_segment(response, segments, index, context, halt)
    return True


def _stream_segment(response: requests.Response, segments: Segments, index: int, context: _Context,
                    halt: threading.Event) -> None:
    for chunk in _pieces(response, context.config.chunk_size):
        taken = segments.write(index, chunk)
        context.events.bytes_received(taken)
        context.politeness.spend(taken)
        if context.stop.is_set() or halt.is_set():
            raise Interrupted
        if not segments.remaining(index):
            return  # segment 0 stops reading the whole-file answer at its end
    if segments.remaining(index):
        raise BodyIncomplete(segments.part.job.url, f"segment {index} ended {segments.remaining(index)} bytes short")


def _get(session: FuturesSession, request: Request, config: Config) -> requests.Response:
    # Straight to the session's transport adapter (its pool, TLS settings and proxy
    # managers), here in this worker: FuturesSession.request would queue the call on the
    # executor we are running in, and Session.request merges cookies, environment, hooks
    # and redirects that this run does not use (redirects are core.follow_redirect's,
    # the same for both engines): measured 40 % of the CPU of a small file.
    proxy = proxy_for(request.url, dict(config.proxies), config.no_proxy) if config.proxies else None
    prepared = requests.Request("GET", request.url, headers=request.headers).prepare()
    response: requests.Response = session.get_adapter(request.url).send(
        prepared, stream=True, timeout=(config.timeout, config.timeout), verify=session.verify,
        proxies={"http": proxy, "https": proxy} if proxy else {})
    return response


@contextlib.contextmanager
def _mapped_errors(url: str, part: str) -> Iterator[None]:
    """Translate requests, urllib3, http.client and OS errors into the package's own (the one border)."""
    try:
        yield
    except DownloadError:
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
        raise _translated(url, exc) from exc
    except TimeoutError as exc:
        raise StallTimeout(url, "stalled: no data within the timeout") from exc
    except OSError as exc:
        raise local_error(url, exc, part) from exc


def _translated(url: str, exc: Exception) -> DownloadError:
    """The package's error for an exception of requests, urllib3 or http.client."""
    if isinstance(exc, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
        return ConnectError(url, f"connect timeout: {exc}")
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return StallTimeout(url, "stalled: no data within the timeout")
    if isinstance(exc, requests.TooManyRedirects):
        return HTTPStatusError(url, f"too many redirects: {exc}", 310, False)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema)):
        return InvalidJob(url, f"cannot fetch: {exc}")
    if (fault := _malformed(exc)) is not None:
        return MalformedResponse(url, f"invalid answer: {fault}")
    if isinstance(exc, strict.ChunkedError):
        return BodyIncomplete(url, f"broken chunked body: {exc}")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
                        http.client.IncompleteRead)):
        return BodyIncomplete(url, f"connection broken during the body: {_root(exc)}")
    if isinstance(exc, (requests.ConnectionError, urllib3.exceptions.HTTPError)):
        system = _system_error(exc)
        return ConnectError(url, f"connection failed: {system if system is not None else _root(exc)}")
    return TransferError(url, f"request failed: {exc}")


def _malformed(exc: BaseException) -> str | None:
    """What http.client found invalid in the status line or headers, wherever requests and
    urllib3 wrapped it (their args, causes and contexts); None when nothing was."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        error = todo.pop()
        seen.append(error)
        if isinstance(error, http.client.BadStatusLine) and not isinstance(error, http.client.RemoteDisconnected):
            return f"bad status line {error.args[0] if error.args else ''!r}"[:200]
        if isinstance(error, http.client.UnknownProtocol):
            return f"unknown protocol {error.args[0] if error.args else ''!r}"[:200]
        if isinstance(error, (strict.InvalidAnswer, http.client.LineTooLong,
                              urllib3.exceptions.InvalidHeader)) \
                or type(error) is http.client.HTTPException:  # "got more than 100 headers"
            return f"{error}"[:200] or type(error).__name__
        todo.extend(e for e in (*error.args, error.__cause__, error.__context__)
                    if isinstance(e, BaseException) and e not in seen)
    return None


def _system_error(exc: BaseException) -> OSError | None:
    """The system's error under requests' and urllib3's wrappers (``[Errno 111] Connection
    refused``), found in their args, reasons, causes and contexts; None when there is none
    (a TLS error's errno is not the system's)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        error = todo.pop()
        seen.append(error)
        if isinstance(error, OSError) and not isinstance(error, ssl.SSLError) and error.errno and error.strerror:
            return error
        todo.extend(e for e in (*error.args, getattr(error, "reason", None), error.__cause__, error.__context__)
                    if isinstance(e, BaseException) and e not in seen)
    return None


def _root(exc: BaseException) -> str:
    """The innermost cause's message: what actually went wrong."""
    while exc.__context__ is not None and exc.__cause__ is None and exc.args == ():
        exc = exc.__context__
    text = str(exc.args[0]) if exc.args else repr(exc)
    return text if len(text) < 200 else text[:200] + "..."
