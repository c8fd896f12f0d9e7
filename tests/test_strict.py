"""engines/strict.py: the threads engine's chunked reader checks every chunk's framing (RFC 9112 §7.1)."""

from __future__ import annotations

import io

import pytest

from downloader.engines.strict import ChunkedError, read_chunked


def _read(raw: bytes, size: int = 3) -> bytes:
    return b"".join(read_chunked(io.BufferedReader(io.BytesIO(raw)), size))


@pytest.mark.parametrize("raw, body", [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"2\r\nhe\r\n3;name=value\r\nllo\r\n0\r\nTrailer: x\r\n\r\n", b"hello"),
    (b"A \r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"0\r\n\r\n", b""),
])
def test_read_chunked_valid(raw, body):
    """Valid chunked bodies, extensions, trailers and whitespace before the CRLF are read whole."""
    assert body == _read(raw)


@pytest.mark.parametrize("raw, fault", [
    (b"zz\r\nhello\r\n0\r\n\r\n", "invalid chunk size b'zz'"),
    (b"-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size b'-5'"),
    (b"\r\nhello\r\n0\r\n\r\n", "invalid chunk size b''"),
    (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
    (b"5\r\nhel", "the body ended inside a chunk"),
    (b"5\r\nhello\r\n", "the body ended before its last chunk"),
    (b"5\r\nhello\r\n0\r\nTrailer: x", "the body ended in its trailer section"),
    (b"1" * 5000 + b"\r\n", "chunk size line too long"),
])
def test_read_chunked_broken(raw, fault):
    """Each break in the framing is a ChunkedError naming it."""
    with pytest.raises(ChunkedError) as caught:
        _read(raw)

    assert fault == str(caught.value)


class _Resetting(io.RawIOBase):
    """A socket file that gives one chunk's size line, then is reset by the peer."""

    def __init__(self) -> None:
        self._sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._sent:
            raise ConnectionResetError(104, "Connection reset by peer")
        self._sent = True
        buffer[:3] = b"5\r\n"
        return 3


def test_read_chunked_reset_is_a_chunked_error():
    """A reset during the body is the transfer's fault (retried), never the disk's."""
    with pytest.raises(ChunkedError, match="connection broken"):
        b"".join(read_chunked(io.BufferedReader(_Resetting()), 3))


def test_read_chunked_timeout_stays_a_timeout():
    """A stall reaches the engine as TimeoutError (its StallTimeout)."""
    class Stalled(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            raise TimeoutError("timed out")

    with pytest.raises(TimeoutError):
        b"".join(read_chunked(io.BufferedReader(Stalled()), 3))
