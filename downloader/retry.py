"""When to try a URL again, and how long to wait first (exponential backoff, full jitter).

Backoff: before retry ``n`` (1, 2, ...) wait a random time in
``[0, min(backoff_cap, backoff_base * 2 ** (n - 1))]`` ("full jitter"), unless the
server sent ``Retry-After``, which is honoured exactly up to ``max_wait`` seconds; a
longer demand fails the URL at once rather than sleeping for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Protocol

from downloader.config import Config
from downloader.errors import DownloadError, HTTPStatusError, IntegrityError, RetriesExhausted, TransferError

__all__ = ["RetryState"]


class _Uniform(Protocol):
    """What the backoff draws from: ``random.Random`` or the ``random`` module itself."""

    def uniform(self, a: float, b: float, /) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryState:
    """Attempts made at one URL so far; :meth:`increment` returns the next state or raises."""

    retries: int
    base: float
    cap: float
    max_wait: float
    attempts: int = 1
    """Attempts made, counting the first one."""
    integrity_retried: bool = False
    """A digest mismatch has already been retried once from zero."""
    delay: float = 0.0
    """Seconds to wait before the attempt this state stands for."""

    @classmethod
    def from_config(cls, config: Config) -> RetryState:
        return cls(config.retries, config.backoff_base, config.backoff_cap, config.max_wait)

    def increment(self, error: DownloadError, rng: _Uniform | None = None) -> RetryState:
        """The state for the next attempt after ``error``.

        Raises:
            DownloadError: ``error`` itself when it is not worth retrying.
            RetriesExhausted: no retries left (raised from ``error``).
        """
        if isinstance(error, IntegrityError):
            # A body that arrived whole but wrong is fetched once more from zero:
            # a cache or proxy may have served a stale copy. Twice wrong is final.
            if self.integrity_retried:
                raise error
            return replace(self, attempts=self.attempts + 1, integrity_retried=True, delay=0.0)
        if not isinstance(error, TransferError):
            raise error
        if isinstance(error, HTTPStatusError) and not error.retryable:
            raise error
        if self.attempts > self.retries:
            reason = f"{error.reason} (gave up after {self.attempts} attempts)"
            raise RetriesExhausted(error.url, reason, self.attempts) from error
        return replace(self, attempts=self.attempts + 1, delay=self._delay_after(error, rng or random))

    def _delay_after(self, error: TransferError, rng: _Uniform) -> float:
        if isinstance(error, HTTPStatusError) and error.retry_after is not None:
            retry_after = error.retry_after
            if retry_after > self.max_wait:
                reason = f"{error.reason}: server asks to retry after {retry_after:.0f} s, more than max wait {self.max_wait:.0f} s"
                raise HTTPStatusError(error.url, reason, error.status, False, retry_after) from error
            return retry_after
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempts - 1, 64))
        return rng.uniform(0.0, ceiling)
