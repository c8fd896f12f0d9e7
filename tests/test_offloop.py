"""receive_off_loop: a plain-HTTP body read in a worker thread, against real local servers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import aiohttp
import pytest

from downloader.engines import offloop
from downloader.engines.offloop import receive_off_loop
from downloader.testing import Rule, Server, body

MODES = ("splice", "copy")
"""splice: on_bytes None (zero-copy path); copy: on_bytes hashes (recv_into path)."""


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Outcome:
    """What one call returned, and what its callbacks saw."""

    result: int | None
    counts: list[int]
    digest: str
    buffered: int
    """Body bytes aiohttp had received when it handed over."""


@dataclass
class Probe:
    """Callbacks that record what they are told; ``fail_after`` makes on_count raise."""

    hashed: bool
    fail_after: int | None = None
    counts: list[int] = field(default_factory=list)
    sha: hashlib._Hash = field(default_factory=hashlib.sha256)

    def on_count(self, n: int) -> None:
        self.counts.append(n)
        if self.fail_after is not None and sum(self.counts) >= self.fail_after:
            raise OverflowError("too large")

    def on_bytes(self, view: memoryview) -> None:
        self.sha.update(view)

    async def receive(self, response: aiohttp.ClientResponse, fd: int, position: int, length: int,
                      timeout: float = 5.0) -> int | None:
        """receive_off_loop with this probe's callbacks."""
        return await receive_off_loop(response, fd, position, length, timeout=timeout,
                                      on_bytes=self.on_bytes if self.hashed else None, on_count=self.on_count)


def _cancelled_after(fetching: Coroutine[Any, Any, Outcome], probe: Probe, *, counted: int = 0,
                     settle: float = 0.0) -> float:
    """Run ``fetching``, cancel it once ``counted`` bytes were told and ``settle`` seconds more
    have passed; the seconds the cancellation took to return."""
    async def run() -> float:
        task = asyncio.create_task(fetching)
        while sum(probe.counts) < counted:
            await asyncio.sleep(0.02)
        await asyncio.sleep(settle)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    return asyncio.run(run())


def _offloop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("offloop-")]


async def _fetch(url: str, path: Path, probe: Probe, *, position: int = 0, length: int | None = None,
                 timeout: float = 5.0, read_bufsize: int = 256 * 1024, settle: float = 0.0) -> Outcome:
    """GET ``url`` and hand the body to receive_off_loop, writing ``path`` at ``position``."""
    async with aiohttp.ClientSession(auto_decompress=False, read_bufsize=read_bufsize) as session:
        async with session.get(url) as response:
            if settle:
                await asyncio.sleep(settle)  # let aiohttp buffer, and pause, before the hand-over
            buffered = response.content.total_bytes
            fd = os.open(path, os.O_WRONLY | os.O_CREAT)
            try:
                total = response.content_length if length is None else length
                assert total is not None
                result = await probe.receive(response, fd, position, total, timeout)
            finally:
                os.close(fd)
            return Outcome(result, probe.counts, probe.sha.hexdigest(), buffered)


def test_whole_body_reaches_the_file(server: Server, tmp_path: Path, mode: str) -> None:
    """A 6 MiB body arrives whole, counted, and (when hashed) hashed."""
    size = 6 * 1024 * 1024 + 7
    path = tmp_path / "part"

    outcome = asyncio.run(_fetch(server.file_url("whole.bin", size), path, Probe(hashed=mode == "copy")))

    assert size == outcome.result == sum(outcome.counts)
    assert body("whole.bin", size) == path.read_bytes()
    if mode == "copy":
        assert hashlib.sha256(body("whole.bin", size)).hexdigest() == outcome.digest
    assert [] == _offloop_threads()


def test_bytes_aiohttp_buffered_and_its_parser_held_come_first(server: Server, tmp_path: Path, mode: str) -> None:
    """With a small read buffer and a pause before the hand-over, aiohttp holds part of the
    body (and its paused parser a tail): all of it is written first, in order."""
    size = 8 * 1024 * 1024
    path = tmp_path / "part"

    outcome = asyncio.run(_fetch(server.file_url("buffered.bin", size), path, Probe(hashed=mode == "copy"),
                                 read_bufsize=16 * 1024, settle=0.3))

    assert outcome.buffered > 0  # the hand-over really started with buffered bytes
    assert size == outcome.result
    assert body("buffered.bin", size) == path.read_bytes()


def test_written_at_position_and_nothing_before(server: Server, tmp_path: Path, mode: str) -> None:
    """A resumed part: bytes go at ``position``; the prefix already there is untouched."""
    size = 3 * 1024 * 1024
    path = tmp_path / "part"
    path.write_bytes(b"p" * 1000)

    outcome = asyncio.run(_fetch(server.file_url("pos.bin", size), path, Probe(hashed=mode == "copy"), position=1000))

    assert size == outcome.result
    assert b"p" * 1000 + body("pos.bin", size) == path.read_bytes()


def test_stops_at_length(server: Server, tmp_path: Path, mode: str) -> None:
    """Never more than ``length`` bytes are written, whatever the server has left."""
    path = tmp_path / "part"

    outcome = asyncio.run(_fetch(server.file_url("len.bin", 4 * 1024 * 1024), path, Probe(hashed=mode == "copy"),
                                 length=1024 * 1024 + 3))

    assert 1024 * 1024 + 3 == outcome.result == sum(outcome.counts)
    assert body("len.bin", 1024 * 1024 + 3) == path.read_bytes()


def test_early_close_returns_the_short_count(server: Server, tmp_path: Path, mode: str) -> None:
    """A server that drops the connection after 300,000 bytes: the count written, all in the file."""
    size = 4 * 1024 * 1024
    path = tmp_path / "part"
    url = server.file_url("drop.bin", size, Rule(drop_after=300_000))

    outcome = asyncio.run(_fetch(url, path, Probe(hashed=mode == "copy")))

    assert 300_000 == outcome.result == sum(outcome.counts)
    assert body("drop.bin", 300_000) == path.read_bytes()


def test_stall_raises_timeout_with_every_byte_written(server: Server, tmp_path: Path, mode: str) -> None:
    """No byte for ``timeout`` seconds: TimeoutError, after what did arrive reached the file."""
    size = 4 * 1024 * 1024
    path = tmp_path / "part"
    url = server.file_url("stall.bin", size, Rule(stall_after=700_000))
    probe = Probe(hashed=mode == "copy")
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        asyncio.run(_fetch(url, path, probe, timeout=0.5))

    assert time.monotonic() - started < 5
    assert 700_000 == sum(probe.counts)
    assert body("stall.bin", 700_000) == path.read_bytes()
    assert [] == _offloop_threads()


def test_an_error_from_on_count_stops_and_propagates(server: Server, tmp_path: Path, mode: str) -> None:
    """on_count raising (too large, too slow) ends the transfer with that error; the bytes
    it was told of are in the file, and no more."""
    size = 8 * 1024 * 1024
    path = tmp_path / "part"
    probe = Probe(hashed=mode == "copy", fail_after=2 * 1024 * 1024)

    with pytest.raises(OverflowError):
        asyncio.run(_fetch(server.file_url("big.bin", size), path, probe))

    told = sum(probe.counts)
    assert 2 * 1024 * 1024 <= told < size
    assert body("big.bin", told) == path.read_bytes()


def test_cancellation_stops_the_thread_and_leaves_exactly_the_counted_bytes(server: Server, tmp_path: Path,
                                                                           mode: str) -> None:
    """Cancelled mid-body of a slow server: the thread has ended when CancelledError comes
    out, and the file holds exactly the bytes reported, then never changes."""
    size = 20 * 1024 * 1024
    path = tmp_path / "part"
    url = server.file_url("slow.bin", size, Rule(rate=2_000_000))
    probe = Probe(hashed=mode == "copy")

    took = _cancelled_after(_fetch(url, path, probe), probe, counted=400_000)

    assert took < 1.0
    assert [] == _offloop_threads()
    told = sum(probe.counts)
    assert told < size
    assert body("slow.bin", told) == path.read_bytes()
    time.sleep(0.3)
    assert told == path.stat().st_size


def test_cancellation_stops_a_thread_that_never_waits(server: Server, tmp_path: Path, mode: str) -> None:
    """A consumer slower than the server always finds bytes waiting, so never polls:
    the thread still looks at its stop flag between reads."""
    size = 64 * 1024 * 1024
    path = tmp_path / "part"

    class Slow(Probe):
        def on_count(self, n: int) -> None:
            super().on_count(n)
            time.sleep(0.02)

    probe = Slow(hashed=mode == "copy")

    took = _cancelled_after(_fetch(server.file_url("fast.bin", size), path, probe), probe, settle=0.3)

    assert took < 0.5
    told = sum(probe.counts)
    assert 0 < told < size
    assert body("fast.bin", told) == path.read_bytes()


def test_cancellation_of_a_stalled_read_is_prompt(server: Server, tmp_path: Path) -> None:
    """A thread waiting on a silent socket notices the cancellation within a poll slice."""
    path = tmp_path / "part"
    url = server.file_url("silent.bin", 1024 * 1024, Rule(stall_after=100_000))
    probe = Probe(hashed=False)

    took = _cancelled_after(_fetch(url, path, probe, timeout=30), probe, counted=100_000, settle=0.2)

    assert took < 0.5
    assert [] == _offloop_threads()
    assert body("silent.bin", 100_000) == path.read_bytes()


def test_a_file_that_refuses_splice_is_copied_instead(server: Server, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """When the file system cannot take a splice, the bytes already in the pipe are
    written by hand and the rest copied: nothing lost, nothing doubled."""
    size = 5 * 1024 * 1024
    path = tmp_path / "part"
    monkeypatch.setattr(offloop, "_splice_out", lambda pipe, fd, count, position: False)

    outcome = asyncio.run(_fetch(server.file_url("nosplice.bin", size), path, Probe(hashed=False)))

    assert size == outcome.result == sum(outcome.counts)
    assert body("nosplice.bin", size) == path.read_bytes()


def test_a_loop_that_still_reads_the_socket_is_caught(server: Server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Should aiohttp ever read the socket during the transfer (here: the pause is left
    out), the bytes it took are missing from the file: RuntimeError, not a short count."""
    path = tmp_path / "part"
    monkeypatch.setattr(offloop, "_stop_loop_reading", lambda response, transport: None)

    with pytest.raises(RuntimeError, match="no longer hold"):
        asyncio.run(_fetch(server.file_url("unpaused.bin", 8 * 1024 * 1024), path, Probe(hashed=False), timeout=0.5))


# -- when it must decline, having read nothing --------------------------------------


async def _declined(url: str, path: Path, *, settle: float = 0.0, flags: int = 0) -> tuple[int | None, bytes]:
    """Call receive_off_loop, then read the body on the loop as the caller would."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, ssl=False) as response:
            if settle:
                await asyncio.sleep(settle)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags)
            try:
                result = await receive_off_loop(response, fd, 0, response.content_length or 100,
                                                timeout=5, on_bytes=None, on_count=lambda n: None)
            finally:
                os.close(fd)
            return result, await response.read()


def test_declines_a_chunked_body(server: Server, tmp_path: Path) -> None:
    """Chunked: None, and the whole body is still there for the loop to read."""
    url = server.file_url("chunked.bin", 1_000_000, Rule(chunked=True))

    result, rest = asyncio.run(_declined(url, tmp_path / "part"))

    assert (None, body("chunked.bin", 1_000_000)) == (result, rest)
    assert b"" == (tmp_path / "part").read_bytes()


def test_declines_a_body_already_buffered(server: Server, tmp_path: Path) -> None:
    """A small body aiohttp has whole: None, nothing taken from it."""
    result, rest = asyncio.run(_declined(server.file_url("small.bin", 20_000), tmp_path / "part", settle=0.2))

    assert (None, body("small.bin", 20_000)) == (result, rest)


def test_declines_an_append_only_file(server: Server, tmp_path: Path) -> None:
    """O_APPEND would make pwrite and splice ignore the position: None."""
    url = server.file_url("append.bin", 2_000_000)

    result, rest = asyncio.run(_declined(url, tmp_path / "part", flags=os.O_APPEND))

    assert (None, body("append.bin", 2_000_000)) == (result, rest)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An HTTPS test server with a throw-away self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with Server(ssl_context=context) as running:
        yield running


def test_declines_tls(tls_server: Server, tmp_path: Path) -> None:
    """Over TLS the socket carries ciphertext: None, and the loop reads the body."""
    result, rest = asyncio.run(_declined(tls_server.file_url("tls.bin", 2_000_000), tmp_path / "part"))

    assert (None, body("tls.bin", 2_000_000)) == (result, rest)


# -- a raw server, for what the test server cannot do --------------------------------


class RawServer:
    """HTTP/1.1 on the test's own loop: every request gets ``announce`` as Content-Length
    and ``send`` body bytes (more than announced if asked), on a kept-alive connection."""

    def __init__(self, send: int, *, announce: int | None = None, headers: str = "") -> None:
        self.send = send
        self.announce = send if announce is None else announce
        self.headers = headers
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/raw.bin"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for handler in self.handlers:
            handler.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.announce}\r\n{self.headers}\r\n"
                writer.write(head.encode() + body("raw.bin", self.send))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()


def test_never_more_than_length_when_the_server_sends_more(tmp_path: Path, mode: str) -> None:
    """A server sending more than it announced: the file stops at the announced length."""
    path = tmp_path / "part"

    async def run() -> Outcome:
        async with RawServer(3_000_000, announce=2_000_000) as url:
            return await _fetch(url, path, Probe(hashed=mode == "copy"))

    outcome = asyncio.run(run())

    assert 2_000_000 == outcome.result == sum(outcome.counts)
    assert body("raw.bin", 2_000_000) == path.read_bytes()


def test_the_connection_is_not_reused(tmp_path: Path) -> None:
    """After an off-loop read the next request opens a new connection (while two
    ordinary requests share one: the server keeps connections alive)."""

    async def connections(first_off_loop: bool) -> int:
        raw = RawServer(2_000_000)
        async with raw as url:
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                async with session.get(url) as response:
                    if first_off_loop:
                        fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT)
                        try:
                            assert 2_000_000 == await receive_off_loop(response, fd, 0, 2_000_000, timeout=5,
                                                                       on_bytes=None, on_count=lambda n: None)
                        finally:
                            os.close(fd)
                        assert response.closed and response.connection is None
                    else:
                        await response.read()
                async with session.get(url) as response:
                    assert body("raw.bin", 2_000_000) == await response.read()
        return raw.connections

    assert 1 == asyncio.run(connections(first_off_loop=False))
    assert 2 == asyncio.run(connections(first_off_loop=True))


def test_declines_a_content_encoded_body(tmp_path: Path) -> None:
    """Content-Encoding: aiohttp may decompress what it buffered, so: None."""

    async def run() -> tuple[int | None, bytes]:
        async with RawServer(2_000_000, headers="Content-Encoding: br\r\n") as url:
            return await _declined(url, tmp_path / "part")

    assert (None, body("raw.bin", 2_000_000)) == asyncio.run(run())
