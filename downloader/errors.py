"""The package's own exceptions: every failure we raise on purpose, with what it concerns.

::

    DownloaderError                     root of every exception raised on purpose
    ├── DownloadError                   one URL failed; .url, .reason and str() = the reason
    │   ├── InvalidJob                  malformed list line, unsupported scheme, unsafe path (never retried)
    │   ├── LocalIOError                the disk refused (full, permission denied; never retried);
    │   │                               also OSError: .errno, .strerror, .filename when known
    │   ├── PartBusy                    another run is writing the same part (the URL is skipped)
    │   ├── Refused                     an option forbids it: --max-filesize, a redirect to another scheme (never retried)
    │   ├── MalformedResponse           the answer breaks HTTP/1.1 (RFC 9112): a bad status line or header,
    │   │                               an invalid or conflicting Content-Length (never retried)
    │   ├── TransferError               the bytes did not arrive; the retry policy decides
    │   │   ├── ConnectError            could not connect (also ConnectionError)
    │   │   ├── StallTimeout            no byte for `timeout` seconds (also TimeoutError)
    │   │   ├── BodyIncomplete          connection closed before the announced length
    │   │   └── HTTPStatusError         .status, .retry_after; retryable iff the status is
    │   ├── IntegrityError              size or sha256 mismatch after the body: .expected, .actual
    │   └── RetriesExhausted            .attempts; raised ``from`` the last TransferError
    ├── ManifestError                   the manifest cannot be used: .path, .reason
    ├── CookiesFileError                a --load-cookies file that is not one (names the file and line; also ValueError)
    ├── ChecksumFileError               a --checksums file that cannot be read, or a bad line of it (FILE:LINE; also ValueError)
    ├── ClusterError                    the Dask cluster cannot be used: bad address, no scheduler, no worker
    └── ListFormatError                 a list file unreadable in its format: no URL column, Parquet without pyarrow
                                        (also ValueError)

A :class:`DownloadError` ends one URL as a failed result; a run goes on. A
:class:`ManifestError` when the run starts, or a :class:`ClusterError`, stops it
before any transfer (a manifest failing later is only logged: the run goes on
without it).

Foreign exceptions (aiohttp, requests, OSError) are translated into this tree at
one border in each engine; nothing outside ``downloader.engines`` sees them.
Each exception keeps its data in ``args`` so that it pickles (results and errors
cross process pipes). The classes that are also OSErrors say nothing false in
``errno``, ``strerror`` and ``filename``: the system's values when known, else None.
"""

from __future__ import annotations

import os

__all__ = [
    "BodyIncomplete",
    "ChecksumFileError",
    "ClusterError",
    "CookiesFileError",
    "ConnectError",
    "DownloadError",
    "DownloaderError",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidJob",
    "ListFormatError",
    "LocalIOError",
    "MalformedResponse",
    "ManifestError",
    "PartBusy",
    "Refused",
    "RetriesExhausted",
    "StallTimeout",
    "TransferError",
]


class DownloaderError(Exception):
    """Root of every exception the package raises on purpose: ``except DownloaderError`` catches them all."""


class DownloadError(DownloaderError):
    """One URL failed; ``url`` names it and ``reason`` (also ``str()``) says why."""

    def __init__(self, url: str, reason: str, *args: object) -> None:
        # Not super().__init__: for the classes that are also OSErrors, OSError's own
        # __init__ would take (url, reason, ...) for (errno, strerror, filename).
        Exception.__init__(self, url, reason, *args)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[DownloadError], tuple[object, ...], dict[str, object]]:
        # The constructor's arguments, always: OSError's __reduce__ would rebuild them
        # from errno, strerror and filename.
        return type(self), self.args, dict(self.__dict__)


class InvalidJob(DownloadError, ValueError):
    """The job cannot be attempted: bad list line, unsupported scheme, unsafe output path."""

    def __init__(self, url: str, reason: str, origin: str | None = None) -> None:
        super().__init__(url, reason, origin)
        self.origin = origin


class LocalIOError(DownloadError, OSError):
    """Writing to the destination failed (disk full, permission denied, ...).

    Args:
        url: the download it concerns.
        reason: what failed, in words (``str()`` of the error).
        errno: the system's error number, when one is known; ``strerror`` is its text.
        filename: the path the system refused, when known.
    """

    def __init__(self, url: str, reason: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(url, reason, errno, filename)
        self.errno = errno
        self.strerror = None if errno is None else os.strerror(errno)
        self.filename = filename


class PartBusy(DownloadError):
    """Another process holds the lock on the part: this run leaves the file to it."""


class Refused(DownloadError):
    """The download is against an option or a rule: too large, redirected to another scheme, a loop."""


class MalformedResponse(DownloadError):
    """The server's answer is not valid HTTP/1.1 where its framing or headers are concerned
    (RFC 9112 §6.3: an invalid Content-Length is an unrecoverable error): never retried."""


class TransferError(DownloadError):
    """The bytes did not arrive; another attempt may succeed."""


class ConnectError(TransferError, ConnectionError):
    """No connection could be made (refused, reset before a response, DNS failure)."""


class StallTimeout(TransferError, TimeoutError):
    """No byte arrived for the configured timeout."""


class BodyIncomplete(TransferError):
    """The connection ended before the announced body length."""


class HTTPStatusError(TransferError):
    """The server answered a status we cannot use. ``retryable`` says whether to try again."""

    def __init__(self, url: str, reason: str, status: int, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(url, reason, status, retryable, retry_after)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class IntegrityError(DownloadError):
    """The completed body does not match the expected size or sha256."""

    def __init__(self, url: str, reason: str, expected: str, actual: str) -> None:
        super().__init__(url, reason, expected, actual)
        self.expected = expected
        self.actual = actual


class RetriesExhausted(DownloadError):
    """Every allowed attempt failed; the last error is the ``__cause__``."""

    def __init__(self, url: str, reason: str, attempts: int) -> None:
        super().__init__(url, reason, attempts)
        self.attempts = attempts


class ManifestError(DownloaderError):
    """The manifest cannot be used: not a database, a newer schema, not creatable, or its writer failed."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(os.fspath(path), reason)  # data in args, so that it pickles
        self.path = os.fspath(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"manifest {self.path}: {self.reason}"


class CookiesFileError(DownloaderError, ValueError):
    """A cookies file that cannot be read, or a line of it that is not a cookie: the message names
    the file (and the line). Raised when a run starts, before any transfer."""


class ChecksumFileError(DownloaderError, ValueError):
    """A checksum file (``--checksums``) that cannot be read, or a line of it that is not a digest:
    the message names the file and the line (``FILE:LINE``). Raised when a run starts, before
    any transfer."""


class ClusterError(DownloaderError):
    """The cluster cannot be used: a bad address, no scheduler there, or no worker."""


class ListFormatError(DownloaderError, ValueError):
    """A list file that cannot be read in its format at all: a table without the URL column
    (the message names the columns found), an unknown format, Parquet without pyarrow.
    Raised when the list is opened, before any row is read; a bad row is an :class:`InvalidJob`."""
