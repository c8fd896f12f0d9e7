"""A deterministic local HTTP server shared by the tests, the demo and the benchmarks.

Every file it serves is computed, never stored: ``/bytes/<size>/<name>`` answers
``size`` bytes whose content depends only on ``name`` (see :func:`body`), so a
test can check a download byte for byte and a benchmark can serve gigabytes.

How a path behaves is a :class:`Rule`. Rules are table-driven: a rule registered
for a path with :meth:`Server.set_rule` wins; otherwise the rule is read from the
query string (``/bytes/100/a.bin?status=503&retry_after=1``), which keeps URL
lists self-describing. The server honours ``Range`` and ``If-Range`` the way RFC
9110 §14 says (206 with ``Content-Range``, 416 with ``bytes */size``), unless a
rule tells it to misbehave. Each request is logged (:attr:`Server.log`) so tests
can count what was fetched.

Run it by hand with ``python -m downloader.testing serve --port 8765``; ``make run``
uses ``python -m downloader.testing demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import hashlib
import random
import re
import ssl
import sys
import threading
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["LogEntry", "Rule", "Server", "body", "body_sha256", "iter_body", "version_name"]

# Content is a window into one pseudo-random pattern. Its length is prime so that
# no power-of-two offset error (a chunk too many, a chunk too few) maps a byte
# onto an equal byte.
_PATTERN_LEN = 1_048_573
_PATTERN = random.Random(20261124).randbytes(_PATTERN_LEN)
_PATTERN2 = _PATTERN + _PATTERN  # lets any window of up to one pattern length be one slice
_SERVE_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def version_name(name: str, version: int) -> str:
    """The content name of version ``version`` of a file served with ``Rule(mutate=True)``."""
    return name if version == 0 else f"{name}~v{version}"


def _shift(name: str) -> int:
    return zlib.crc32(name.encode()) % _PATTERN_LEN


def iter_body(name: str, start: int, end: int, chunk: int = _SERVE_CHUNK) -> Iterator[bytes]:
    """Yield bytes ``start`` to ``end`` (exclusive) of the file called ``name``."""
    chunk = min(chunk, _PATTERN_LEN)
    shift = _shift(name)
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        i = (pos + shift) % _PATTERN_LEN
        yield _PATTERN2[i : i + n]
        pos += n


def body(name: str, size: int) -> bytes:
    """The whole content of the ``size``-byte file called ``name``."""
    return b"".join(iter_body(name, 0, size))


def body_sha256(name: str, size: int) -> str:
    """Hex sha256 of :func:`body`, computed without holding the file in memory."""
    digest = hashlib.sha256()
    for piece in iter_body(name, 0, size, 1 << 20):
        digest.update(piece)
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Rule:
    """How the server answers one path. The defaults describe a well-behaved server."""

    status: int = 200
    """Answer this status with a short text body instead of the file (404, 500, ...)."""
    chunked: bool = False
    """Send the body with chunked transfer encoding and no Content-Length."""
    delay: float = 0.0
    """Seconds to wait before sending the response headers."""
    stall_after: int | None = None
    """Send this many body bytes, then hold the connection open without sending more."""
    ranges: bool = True
    """Honour Range requests; when False every GET answers 200 with the whole file."""
    etag: bool = True
    """Send a strong ETag (and honour it in If-Range)."""
    retry_after: str | None = None
    """Value of a Retry-After header sent with a non-200 status."""
    redirect: str | None = None
    """Answer 302 with this Location instead of the file."""
    times: int = 0
    """The faults (status, redirect, stall_after, drop_after, length_delta, range_shift)
    apply to the first ``times`` requests for the path only; 0 means to every request."""
    drop_after: int | None = None
    """Send this many body bytes, then close the connection."""
    rate: float | None = None
    """Send at most this many body bytes per second (a trickle; fractions allowed)."""
    mutate: bool = False
    """The file changes before every request: request n serves version n-1, with
    its own bytes, ETag and Last-Modified (see :func:`version_name`)."""
    length_delta: int = 0
    """Announce a Content-Length this many bytes off the body really sent."""
    range_shift: int = 0
    """Answer a Range request with a 206 starting this many bytes later than asked."""
    version: int = 0
    """Serve this version of the file (see :func:`version_name`): change it to change the file."""
    disposition: str | None = None
    """Value of a Content-Disposition header to send with the file."""
    accept_ranges: str | None = None
    """Send this Accept-Ranges value whatever ``ranges`` says (a server that lies about ranges)."""
    headers: tuple[tuple[str, str], ...] = ()
    """More headers to send with the file (a name may repeat: each is its own header line)."""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Rule:
        """Build a rule from query parameters named like the fields."""
        kwargs: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            if field.name not in query:
                continue
            raw = query[field.name]
            default = field.default
            if isinstance(default, bool):
                kwargs[field.name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, float) or field.name == "rate":
                kwargs[field.name] = float(raw)
            elif (isinstance(default, int) and not isinstance(default, bool)) or field.name in ("stall_after", "drop_after"):
                kwargs[field.name] = int(raw)
            else:
                kwargs[field.name] = raw
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass
class LogEntry:
    """One request as the server saw it and answered it.

    It is logged before the response starts, and ``bytes_sent`` counts each piece
    before it is written, so a client that has its bytes always finds them logged
    (a piece that fails to go out is counted anyway: an upper bound).
    """

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    bytes_sent: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    """All request headers as received (names as sent)."""
    target: str = ""
    """The request target as sent: a path, or an absolute URL when we are used as a proxy."""


class Server:
    """The test server, running its own event loop in a background thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Server() as server:
            url = server.url("/bytes/1000/a.bin")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_limit: int = 100_000,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.rules: dict[str, Rule] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        """Requests received per path (counted when they arrive, unlike the log)."""
        self.log: collections.deque[LogEntry] = collections.deque(maxlen=log_limit)
        self.active = 0
        """Requests being answered right now (all paths)."""
        self.peak_active = 0
        """The most requests ever answered at once; a test may reset it to 0."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- public helpers -------------------------------------------------------

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    def file_url(self, name: str, size: int, rule: Rule | None = None) -> str:
        """URL of the deterministic file ``name`` of ``size`` bytes, with an optional rule."""
        path = f"/bytes/{size}/{name}"
        if rule is not None:
            self.set_rule(path, rule)
        return self.url(path)

    def set_rule(self, path: str, rule: Rule) -> None:
        """Make ``path`` behave as ``rule`` says (overrides its query string)."""
        self.rules[path] = rule

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes sent so far, for one path or in total."""
        return sum(e.bytes_sent for e in list(self.log) if path is None or e.path == path)

    def requests(self, path: str) -> list[LogEntry]:
        """Logged requests for ``path``, oldest first."""
        return [e for e in list(self.log) if e.path == path]

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Server:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), daemon=True, name="test-server")
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start() in the caller's thread
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_get("/bytes/{size:\\d+}/{name:.+}", self._handle_bytes)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024, reuse_address=True,
                           ssl_context=self.ssl_context)
        await site.start()
        addresses = self._runner.addresses  # the real port when 0 was asked
        if addresses:
            self.port = addresses[0][1]

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still holding a stalled connection open are cancelled, not abandoned.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- the handler ---------------------------------------------------------

    async def _handle_bytes(self, request: web.Request) -> web.StreamResponse:
        # Counted on the server's one event-loop thread: no lock needed.
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        name = request.match_info["name"]
        rule = self.rules.get(request.path) or Rule.from_query(request.query)
        self.counts[request.path] += 1
        number = self.counts[request.path]
        faulty = rule.times == 0 or number <= rule.times
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if faulty and rule.redirect:
            return self._logged(request, web.Response(status=302, headers={"Location": rule.redirect}), 0)
        if faulty and rule.status != 200:
            headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
            if rule.status == 416:
                headers["Content-Range"] = f"bytes */{size}"
            text = f"status {rule.status} for {request.path}\n"
            return self._logged(request, web.Response(status=rule.status, text=text, headers=headers), len(text))
        version = number - 1 if rule.mutate else rule.version
        return await self._send_file(request, name, size, rule if faulty else _harmless(rule), version)

    async def _send_file(self, request: web.Request, name: str, size: int, rule: Rule, version: int) -> web.StreamResponse:
        name = version_name(name, version)
        etag = f'"{zlib.crc32(name.encode()):08x}-{size:x}"'
        headers: MutableMapping[str, str] = {"Last-Modified": formatdate(1_700_000_000 + version, usegmt=True), "Content-Type": "application/octet-stream"}
        if rule.etag:
            headers["ETag"] = etag
        if rule.ranges:
            headers["Accept-Ranges"] = "bytes"
        if rule.accept_ranges is not None:
            headers["Accept-Ranges"] = rule.accept_ranges
        if rule.disposition:
            headers["Content-Disposition"] = rule.disposition
        if rule.headers:
            headers = CIMultiDict(headers)
            for field, value in rule.headers:
                headers.add(field, value)
        if _not_modified(request, etag if rule.etag else None, headers["Last-Modified"]):
            return self._logged(request, web.Response(status=304, headers=headers), 0)
        span = _requested_span(request, size, rule, etag, headers["Last-Modified"]) if rule.ranges else None
        if span == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            return self._logged(request, web.Response(status=416, headers=headers), 0)
        start, end = span if isinstance(span, tuple) else (0, size)
        status = 206 if isinstance(span, tuple) else 200
        if status == 206:
            start = min(start + rule.range_shift, end)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        if rule.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = end - start + rule.length_delta
        entry = self._log(request, status, 0)
        await response.prepare(request)
        if request.method != "HEAD":
            await self._write_body(request, response, name, start, end, rule, entry)
        return response

    async def _write_body(self, request: web.Request, response: web.StreamResponse, name: str, start: int, end: int,
                          rule: Rule, entry: LogEntry) -> None:
        limits = [end] + [start + n for n in (rule.stall_after, rule.drop_after) if n is not None]
        stop = min(limits)
        piece_size = max(1, int(rule.rate / 10)) if rule.rate else _SERVE_CHUNK
        for piece in iter_body(name, start, stop, piece_size):
            entry.bytes_sent += len(piece)
            await response.write(piece)
            if rule.rate:
                await asyncio.sleep(len(piece) / rule.rate)
        if stop == end and rule.length_delta <= 0:
            await response.write_eof()
        elif rule.stall_after is not None and stop == start + rule.stall_after:
            await asyncio.sleep(3600)  # stalled: hold the connection without a byte
        elif request.transport is not None:
            request.transport.close()  # dropped, or fewer bytes than announced: cut the connection

    def _logged(self, request: web.Request, response: web.Response, sent: int) -> web.Response:
        self._log(request, response.status, sent)
        return response

    def _log(self, request: web.Request, status: int, sent: int) -> LogEntry:
        headers = request.headers
        entry = LogEntry(request.method, request.path, headers.get("Range"), headers.get("If-Range"), status, sent,
                         dict(headers), request.raw_path if request.raw_path.startswith("/") else str(request.url))
        self.log.append(entry)
        return entry


def _not_modified(request: web.Request, etag: str | None, last_modified: str) -> bool:
    """RFC 9110 §13.1.2-3: If-None-Match decides when present, else If-Modified-Since."""
    none_match = request.headers.get("If-None-Match")
    if none_match is not None:
        return etag is not None and (none_match.strip() == "*" or etag in [t.strip() for t in none_match.split(",")])
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return parsedate_to_datetime(since) >= parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return False


def _harmless(rule: Rule) -> Rule:
    """``rule`` without its faults, for requests past ``Rule.times``."""
    return dataclasses.replace(rule, stall_after=None, drop_after=None, length_delta=0, range_shift=0)


def _requested_span(request: web.Request, size: int, rule: Rule, etag: str,
                    last_modified: str) -> tuple[int, int] | str | None:
    """The byte span asked for by Range, ``"unsatisfiable"``, or None for the whole file.

    RFC 9110 §13.1.5: a Range whose If-Range validator does not match is ignored
    (the whole file is sent). §14.1.2: ``bytes=a-``, ``bytes=a-b`` and the suffix
    form ``bytes=-n``; a first position at or past the end is unsatisfiable (§15.5.17).
    """
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range not in ((etag if rule.etag else None), last_modified):
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # unparseable ranges are ignored, as the RFC allows
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


# -- command line: `serve` for benchmarks and manual use, `demo` for `make run` --


def _serve(port: int) -> int:
    with Server(port=port) as server:
        print(f"serving deterministic files on {server.base_url}/bytes/<size>/<name>", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def _demo(list_file: str, dest: str, port: int, extra: list[str]) -> int:
    from downloader.cli import main as cli_main

    with Server(port=port) as server:
        print(f"demo server on {server.base_url}; downloading {list_file} into {dest}/", file=sys.stderr)
        return cli_main(["-i", list_file, "-d", dest, *extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m downloader.testing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve deterministic files until interrupted")
    serve.add_argument("--port", type=int, default=8765)
    demo = commands.add_parser("demo", help="serve on --port, download --list into --dest, stop")
    demo.add_argument("--port", type=int, default=8765)
    demo.add_argument("--list", default="sample_urls.txt")
    demo.add_argument("--dest", default="downloads")
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        return _serve(args.port)
    return _demo(args.list, args.dest, args.port, extra)


if __name__ == "__main__":
    sys.exit(main())
