"""Malformed answers from a raw socket server, on both engines: each ends as a result with a
reason (or downloaded, where the answer is valid HTTP), never as an internal error.

The server answers each request with the raw bytes of its path's case, then closes the
connection. Failures whose bytes cannot be resumed leave neither part nor file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader import Config, Result, Status, download
from downloader.naming import PART_SUFFIX

pytestmark = pytest.mark.timeout(10)

OK, FAIL, CUT, ANY = "ok", "fail", "cut", "any"
"""Expected outcomes: downloaded ``hello``; failed leaving nothing; failed and retried (a part may stay);
either downloaded ``hello`` or failed leaving nothing (the engines differ, see README)."""

_HEAD = b"HTTP/1.1 200 OK\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_BIG = b"%x\r\n" % 300_000 + b"x" * 300_000 + b"\r\n"
"""A valid chunk larger than a small body, so that a fault after it is met while streaming."""

CASES: dict[str, tuple[bytes, str]] = {
    "valid": (_HEAD + b"Content-Length: 5\r\n\r\nhello", OK),
    "valid-chunked": (_HEAD + _CHUNKED + b"\r\n2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\nX-Trailer: t\r\n\r\n", OK),
    "bad-status-line": (b"HTTP/1.1 abc\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "garbage": (b"\x00\x01\x02 garbage \xff\r\n\r\n", FAIL),
    "http-0.9": (b"hello", FAIL),
    "no-reason-phrase": (b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", OK),
    "http-1.0-until-close": (b"HTTP/1.0 200 OK\r\n\r\nhello", OK),
    "lf-line-ends": (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", OK),
    "http-2-status-line": (b"HTTP/2 200 OK\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "status-999": (b"HTTP/1.1 999 Weird\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "status-101": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", FAIL),
    "obs-fold": (_HEAD + b"X-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello", OK),
    "bare-cr-in-header": (_HEAD + b"X-A: a\rb\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "space-before-colon": (_HEAD + b"Content-Length : 5\r\n\r\nhello", ANY),
    "too-many-headers": (_HEAD + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"Content-Length: 5\r\n\r\nhello",
                         FAIL),
    "header-without-colon": (_HEAD + b"Content-Length: 5\r\nNoColonHere\r\n\r\nhello", FAIL),
    "long-header-line": (_HEAD + b"Set-Cookie: a=" + b"b" * 20_000 + b"\r\nContent-Length: 5\r\n\r\nhello", OK),
    "huge-header-line": (_HEAD + b"X-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "nul-in-header": (_HEAD + b"X-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "latin-1-header": (_HEAD + b"X-Name: caf\xe9\r\nContent-Length: 5\r\n\r\nhello", OK),
    "length-not-a-number": (_HEAD + b"Content-Length: abc\r\n\r\nhello", FAIL),
    "length-negative": (_HEAD + b"Content-Length: -5\r\n\r\nhello", FAIL),
    "length-plus": (_HEAD + b"Content-Length: +5\r\n\r\nhello", FAIL),
    "length-too-large": (_HEAD + b"Content-Length: 99999999999999999999999\r\n\r\nhello", FAIL),
    "length-list-differs": (_HEAD + b"Content-Length: 5, 6\r\n\r\nhello", FAIL),
    "length-twice-differs": (_HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", FAIL),
    "length-list-same": (_HEAD + b"Content-Length: 5, 5\r\n\r\nhello", FAIL),
    "length-twice-same": (_HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", FAIL),
    "length-and-chunked": (_HEAD + b"Content-Length: 3\r\n" + _CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n", FAIL),
    "chunk-size-bad": (_HEAD + _CHUNKED + b"\r\nzz\r\nhello\r\n0\r\n\r\n", CUT),
    "chunk-size-too-large": (_HEAD + _CHUNKED + b"\r\nffffffffffffffffff\r\nhello", CUT),
    "transfer-encoding-not-chunked": (_HEAD + b"Transfer-Encoding: gzip\r\n\r\nhello", OK),
    "chunk-without-crlf": (_HEAD + _CHUNKED + b"\r\n5\r\nhelloXX0\r\n\r\n", CUT),
    "chunked-truncated": (_HEAD + _CHUNKED + b"\r\n5\r\nhel", CUT),
    "chunked-no-last-chunk": (_HEAD + _CHUNKED + b"\r\n5\r\nhello\r\n", CUT),
    "chunk-size-bad-late": (_HEAD + _CHUNKED + b"\r\n" + _BIG + b"zz\r\nhello\r\n0\r\n\r\n", CUT),
    "chunk-without-crlf-late": (_HEAD + _CHUNKED + b"\r\n" + _BIG + b"5\r\nhelloXX0\r\n\r\n", CUT),
    "chunked-truncated-late": (_HEAD + _CHUNKED + b"\r\n" + _BIG + b"5\r\nhel", CUT),
    "body-longer": (_HEAD + b"Content-Length: 5\r\n\r\nhello, and more", ANY),
    "body-shorter": (_HEAD + b"Content-Length: 10\r\n\r\nhello", CUT),
    "closed-before-headers": (b"", FAIL),
    "closed-in-headers": (_HEAD + b"Content-Len", FAIL),
    "closed-after-headers": (_HEAD + b"Content-Length: 5\r\n\r\n", CUT),
    "100-then-200": (b"HTTP/1.1 100 Continue\r\n\r\n" + _HEAD + b"Content-Length: 5\r\n\r\nhello", OK),
    "102-then-200": (b"HTTP/1.1 102 Processing\r\n\r\n" + _HEAD + b"Content-Length: 5\r\n\r\nhello", OK),
    "103-then-200": (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n"
                     + _HEAD + b"Content-Length: 5\r\n\r\nhello", OK),
    "103-then-close": (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", FAIL),
    "206-bad-content-range": (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes x-y/z\r\n"
                              b"Content-Length: 5\r\n\r\nhello", FAIL),
}


class RawServer:
    """Answers each request on 127.0.0.1 with the raw bytes of its path's case, then closes."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                if not (data := connection.recv(4096)):
                    return
                head += data
            path = head.split(b" ", 2)[1].decode()
            with contextlib.suppress(OSError):  # the client may hang up first (huge headers)
                connection.sendall(CASES[path.rsplit("/", 1)[-1]][0])
                connection.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    with RawServer() as running:
        yield running


@pytest.fixture
def config(config: Config) -> Config:
    """One retry, short backoff and timeouts: every case ends in well under a second or two."""
    return dataclasses.replace(config, retries=1, timeout=2.0, backoff_base=0.01, backoff_cap=0.02)


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_answer(case: str, engine: str, config: Config, raw_server: RawServer,
                          caplog: pytest.LogCaptureFixture) -> None:
    """Each answer ends as its expected result with a reason, and no traceback is logged."""
    url = f"http://127.0.0.1:{raw_server.port}/{engine}/{case}"
    caplog.set_level(logging.INFO, logger="downloader")

    [result] = download([url], config=config)

    expected = CASES[case][1]
    _check(result, expected, Path(result.path) if result.path else config.dest / case)
    tracebacks = [record.getMessage() for record in caplog.records
                  if record.name.startswith("downloader") and record.exc_info]
    assert [] == tracebacks
    assert "internal error" not in (result.error or "")


def _check(result: Result, expected: str, path: Path) -> None:
    if expected == OK or (expected == ANY and result.status is Status.DOWNLOADED):
        assert (Status.DOWNLOADED, None) == (result.status, result.error)
        assert b"hello" == path.read_bytes()
        return
    assert Status.FAILED == result.status
    assert result.error
    assert not path.exists()
    if expected == CUT:
        assert 2 == result.attempts  # retried like a cut body
    if expected in (FAIL, ANY):
        assert not Path(str(path) + PART_SUFFIX).exists()
