"""The package's own exceptions: every failure we raise on purpose, with its URL.

::

    DownloadError                   root; .url and a readable str()
    ├── InvalidJob                  malformed list line, unsupported scheme, unsafe path (never retried)
    ├── LocalIOError                the disk refused (full, permission denied; never retried)
    ├── PartBusy                    another run is writing the same part (the URL is skipped)
    ├── Refused                     an option forbids it: --max-filesize, a redirect to another scheme (never retried)
    ├── TransferError               the bytes did not arrive; the retry policy decides
    │   ├── ConnectError            could not connect (also ConnectionError)
    │   ├── StallTimeout            no byte for `timeout` seconds (also TimeoutError)
    │   ├── BodyIncomplete          connection closed before the announced length
    │   └── HTTPStatusError         .status, .retry_after; retryable iff the status is
    ├── IntegrityError              size or sha256 mismatch after the body: .expected, .actual
    └── RetriesExhausted            .attempts; raised ``from`` the last TransferError

Foreign exceptions (aiohttp, requests, OSError) are translated into this tree at
one border in each engine; nothing outside ``downloader.engines`` sees them.
Each exception keeps its data in ``args`` so that it pickles.
"""

from __future__ import annotations

__all__ = [
    "BodyIncomplete",
    "ConnectError",
    "DownloadError",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidJob",
    "LocalIOError",
    "PartBusy",
    "Refused",
    "RetriesExhausted",
    "StallTimeout",
    "TransferError",
]


class DownloadError(Exception):
    """Root of every error raised on purpose; ``url`` names the download it concerns."""

    def __init__(self, url: str, reason: str, *args: object) -> None:
        super().__init__(url, reason, *args)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class InvalidJob(DownloadError, ValueError):
    """The job cannot be attempted: bad list line, unsupported scheme, unsafe output path."""

    def __init__(self, url: str, reason: str, origin: str | None = None) -> None:
        super().__init__(url, reason, origin)
        self.origin = origin


class LocalIOError(DownloadError, OSError):
    """Writing to the destination failed (disk full, permission denied, ...)."""


class PartBusy(DownloadError):
    """Another process holds the lock on the part: this run leaves the file to it."""


class Refused(DownloadError):
    """The download is against an option or a rule: too large, redirected to another scheme, a loop."""


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
