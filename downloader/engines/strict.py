"""HTTP/1.1 as strict as aiohttp's parser, for the threads engine's requests, urllib3 and http.client.

* interim answers (1xx: 100, 102, 103 Early Hints) are skipped, their headers read and
  dropped (RFC 9110 §15.2); http.client skips only 100;
* headers http.client could not parse (a line without a colon, cut short) fail the
  answer, where urllib3 only logs a warning, and so does invalid framing
  (:func:`downloader.core.framing_fault`), before urllib3 builds its response;
* a chunked body is read by :func:`read_chunked`, which checks the CRLF after each
  chunk's data (RFC 9112 §7.1), where urllib3 drops those two bytes unseen.

Errors are http.client's own ``HTTPException`` subclasses, so that they reach the engine's
one border (``threads._mapped_errors``) as urllib3 and requests wrap them.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from typing import Any, Protocol

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from downloader.core import framing_fault

__all__ = ["ChunkedError", "InvalidAnswer", "StrictAdapter", "read_chunked"]

_MAX_LINE = 4096  # a chunk size line, extensions included (urllib3 allows as much)
_MAX_TRAILERS = 100  # http.client's limits on header lines, kept for the trailer section
_MAX_TRAILER_LINE = 65536
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class InvalidAnswer(http.client.HTTPException):
    """The status line or the headers of an answer are not valid HTTP/1.1."""


class ChunkedError(http.client.HTTPException):
    """A chunked body's framing broke: a bad chunk size, no CRLF after a chunk, cut short."""


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, reading past interim answers and refusing broken headers."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            # 101 would switch protocols: never asked for, it stays the answer (and fails).
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim answer's, dropped

    def begin(self) -> None:
        super().begin()
        if self.msg.defects:
            raise InvalidAnswer(f"headers that cannot be parsed: {self.msg.defects[0]!r}")
        # Here, not only in core.judge: urllib3 raises for some of these while building its
        # response, past the point where http.client would close the connection.
        if fault := framing_fault(self.msg):
            raise InvalidAnswer(fault)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _FinalResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _FinalResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class StrictAdapter(HTTPAdapter):
    """requests' adapter whose connections give :class:`_FinalResponse` answers (SOCKS proxies aside)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.ProxyManager:
        manager: urllib3.ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _Reader(Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...
    def read(self, size: int = ..., /) -> bytes: ...
    def read1(self, size: int = ..., /) -> bytes: ...


def read_chunked(fp: _Reader, size: int) -> Iterator[bytes]:
    """The data of a chunked body from the buffered socket ``fp``, in pieces of at most
    ``size`` bytes as they arrive, its framing checked (RFC 9112 §7.1).

    Raises:
        ChunkedError: a bad chunk size line, no CRLF after a chunk's data, the body
            ended before its last chunk, or the connection broke (reset, TLS error).
        TimeoutError: no byte within the socket's timeout.
    """
    try:
        yield from _chunks(fp, size)
    except TimeoutError:
        raise
    except OSError as exc:  # the socket's, never the disk's: the caller writes outside
        raise ChunkedError(f"connection broken: {exc}") from exc


def _chunks(fp: _Reader, size: int) -> Iterator[bytes]:
    while length := _chunk_size(fp):
        while length:
            piece = fp.read1(min(length, size))
            if not piece:
                raise ChunkedError("the body ended inside a chunk")
            length -= len(piece)
            yield piece
        if fp.read(2) != b"\r\n":
            raise ChunkedError("chunk data not followed by CRLF")
    _skip_trailers(fp)


def _chunk_size(fp: _Reader) -> int:
    line = fp.readline(_MAX_LINE + 1)
    if not line.endswith(b"\n"):
        raise ChunkedError("chunk size line too long" if len(line) > _MAX_LINE else "the body ended before its last chunk")
    text = line.split(b";", 1)[0].strip(b" \t\r\n")
    if not _HEX.fullmatch(text):
        raise ChunkedError(f"invalid chunk size {text[:40]!r}")
    return int(text, 16)


def _skip_trailers(fp: _Reader) -> None:
    """Read the trailer section up to its empty line; its fields are not used."""
    for _ in range(_MAX_TRAILERS):
        line = fp.readline(_MAX_TRAILER_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return
        if not line.endswith(b"\n"):
            raise ChunkedError("the body ended in its trailer section")
    raise ChunkedError(f"more than {_MAX_TRAILERS} trailer lines")
