"""What to download (:class:`Job`) and how each download ended (:class:`Result`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["DONE_STATUSES", "Job", "Result", "Status"]


@dataclass(frozen=True, slots=True)
class Job:
    """One URL to fetch, with what the list says about it.

    Args:
        url: an http or https URL.
        out: output path relative to the destination; derived from the URL when None.
        checksum: expected digest of the whole file as ``ALG:HEX`` in lower case
            (``"sha256:9f86d0..."``; the algorithms of :data:`downloader.checksums.ALGORITHMS`).
        size: expected size in bytes.
        origin: where the job came from (``"urls.txt:12"``, ``"argument 2"``), for messages.
    """

    url: str
    out: str | None = None
    checksum: str | None = None
    size: int | None = None
    origin: str | None = None


class Status(enum.StrEnum):
    """How one job ended: the one list of statuses, for results, the manifest and the reports.

    A :class:`Result` is downloaded, skipped, unchanged or failed; ``pending`` is for the
    manifest only. The values are what reports and the manifest's rows hold.
    """

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"
    """--sync: the server said the file we have is current (304)."""
    FAILED = "failed"
    PENDING = "pending"
    """Manifest only: the transfer was in flight when its run was interrupted."""


DONE_STATUSES = frozenset({Status.DOWNLOADED, Status.UNCHANGED})
"""The statuses of a URL whose file is complete: a re-run skips it without looking (unless --sync)."""


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one job.

    Args:
        url: the job's URL (for a malformed list line, the line's text).
        status: downloaded, skipped or failed.
        path: the final path of the file, when one was decided.
        size: bytes of the file under its final name (0 when there is none).
        received: body bytes received in this run (part of ``size`` may come from an earlier run).
        checksum: digest of the file as ``ALG:HEX``, when one was computed (the list or the
            server gave one to check).
        error: why the job failed or was skipped, in words.
        origin: where the job came from.
        final_url: the URL the body came from, after redirects.
    """

    url: str
    status: Status
    path: str | None = None
    size: int = 0
    received: int = 0
    checksum: str | None = None
    error: str | None = None
    origin: str | None = None
    final_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1
    job: Job | None = field(default=None, repr=False, compare=False)
    """The job itself, when there was one (a malformed line has none): what --failed writes back."""

    @property
    def ok(self) -> bool:
        """True unless the job failed."""
        return self.status is not Status.FAILED

    def to_json(self) -> dict[str, object]:
        """A plain dict for the JSON report."""
        return {
            "url": self.url,
            "status": self.status.value,
            "path": self.path,
            "size": self.size,
            "received": self.received,
            "checksum": self.checksum,
            "error": self.error,
            "origin": self.origin,
            "final_url": self.final_url,
            "etag": self.etag,
            "last_modified": self.last_modified,
        }
