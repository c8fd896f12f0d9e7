"""Admission of list entries, shared by both engines: paths, skips, duplicates.

Each entry is *admitted* before an engine spends a connection on it:

* an invalid entry, or one whose final file is already present, is settled at once;
* a URL whose output path is already being written by the same URL waits, parked,
  and takes that transfer's outcome when it ends (a duplicate is fetched once);
* a different URL aiming at a path in flight fails: it would overwrite the other.

Only transfers in flight are remembered (their paths, and the duplicates parked on
them), so memory does not grow with the length of the list; what must be remembered
beyond that lives on disk: a file finished earlier in the run is simply present.
The engine's window of slots counts parked jobs too, which bounds them.

A re-run of a long list is mostly lines whose file the manifest records as complete.
Those are decided in two steps that take no slot: :meth:`Dispatcher.with_done` asks
the manifest about a whole batch of entries in one query, and :meth:`Dispatcher.screen`
settles each done or invalid entry; only the rest are placed one by one.

``--dry-run`` decides through the same three calls (:mod:`downloader.dryrun`), with a
:class:`~downloader.manifest.ManifestPreview` that writes nothing for a manifest and a
``present`` that also counts the files the plan would have fetched by then.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from downloader import naming, storage
from downloader.config import Config
from downloader.core import Validators
from downloader.errors import DownloadError, InvalidJob, PartBusy, RetriesExhausted
from downloader.jobs import Job, Result, Status
from downloader.manifest import Done, ManifestError, Record
from downloader.progress import Events
from downloader.sources import Entry

__all__ = ["Admission", "Dispatcher", "Ledger", "Present", "Verdict", "failed_result", "skipped_as_recorded"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Ledger(Protocol):
    """What a :class:`Dispatcher` asks of a manifest: a :class:`~downloader.manifest.Manifest`,
    or for ``--dry-run`` a :class:`~downloader.manifest.ManifestPreview`, which writes nothing.

    Each method may raise :class:`~downloader.errors.ManifestError`.
    """

    @property
    def empty_at_open(self) -> bool: ...
    def done(self, urls: Iterable[str]) -> dict[str, Done]: ...
    def lookup(self, url: str) -> Record | None: ...
    def owner(self, path: str) -> str | None: ...
    def record(self, record: Record) -> None: ...


Present = Callable[[Job, Path], Result | None]
"""What the dispatcher asks of a job's final path: a skipped result when a complete file is
there, else None (:func:`downloader.storage.existing_result`)."""


class Verdict(enum.Enum):
    START = "start"
    """Fetch ``job`` into ``path``; call :meth:`Dispatcher.settle` with its result."""
    SETTLED = "settled"
    """The entry's result is already reported; free its slot."""
    PARKED = "parked"
    """A duplicate of a transfer in flight: keep its slot, settle() frees it."""


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    job: Job | None = None
    path: Path | None = None
    current: Validators | None = None
    """--sync: what we know of the file already at ``path``, for a conditional request."""


@dataclass(slots=True)
class _Claim:
    url: str
    origin: str | None
    parked: list[Job] = field(default_factory=list)
    job: Job | None = None


_SETTLED = Admission(Verdict.SETTLED)
_PARKED = Admission(Verdict.PARKED)


def skipped_as_recorded(job: Job, done: Done | Record, path: str) -> Result:
    """``job`` skipped because the manifest records its file at ``path`` as complete."""
    return Result(job.url, Status.SKIPPED, path, done.size or 0, 0, done.checksum, "already downloaded (manifest)",
                  job.origin, done.final_url, done.etag, done.last_modified, job=job)


def failed_result(url: str, error: DownloadError | str, origin: str | None = None, path: Path | None = None,
                  job: Job | None = None) -> Result:
    """A ``failed`` result carrying the error's reason; ``skipped`` when another run has the part."""
    status = Status.SKIPPED if isinstance(error, PartBusy) else Status.FAILED
    attempts = error.attempts if isinstance(error, RetriesExhausted) else 1
    return Result(url, status, str(path) if path else None, error=str(error), origin=origin, attempts=attempts, job=job)


class Dispatcher:
    """Decides, for each entry, whether an engine should fetch it. Thread-safe."""

    def __init__(self, config: Config, events: Events, manifest: Ledger | None = None, *,
                 present: Present = storage.existing_result) -> None:
        self._config = config
        self._manifest = manifest
        self._present = present
        self._dest = config.dest
        self._dest_prefix = os.path.join(str(config.dest), "")
        self._dest_text = str(config.dest / "_")[:-1]  # what str(dest / name) puts before name ("" for ".")
        self._events = events
        self._claims: dict[Path, _Claim] = {}
        self._lock = threading.Lock()
        # A manifest that started empty holds only what this run records: a URL or path
        # this filter has never seen has no row, and its two lookups per file are skipped.
        self._recorded = _Seen() if manifest is not None and manifest.empty_at_open else None

    @property
    def in_flight(self) -> int:
        """Jobs admitted but not yet settled (transfers and their parked duplicates)."""
        with self._lock:
            return sum(1 + len(claim.parked) for claim in self._claims.values())

    def with_done(self, entries: Sequence[Entry]) -> list[tuple[Entry, Done | None]]:
        """Each entry with what the manifest holds of its file when that is complete,
        asked for the whole batch in one query. Thread-safe.

        An answer may be a moment old when the entry is screened: a transfer of the same
        URL that ended meanwhile is then found by its file ("already present").
        """
        if self._config.sync:  # every file is asked about again: nothing is skipped unseen
            return [(entry, None) for entry in entries]
        # An invalid entry's URL is asked for too (one query either way); screen() ignores the answer.
        done = self._ask_done([entry.url for entry in entries])
        return [(entry, done.get(entry.url)) for entry in entries]

    def screen(self, entry: Entry, done: Done | None) -> Job | None:
        """Count ``entry`` as seen and settle it now if that takes no slot: an invalid
        entry, or one whose file the manifest records as complete (``done``, from
        :meth:`with_done`). Else the job, for :meth:`place`."""
        self._events.job_seen()
        if isinstance(entry, InvalidJob):
            self._settle_now(failed_result(entry.url, entry, entry.origin))
            return None
        if done is not None:
            # The manifest is trusted: a done file is skipped without touching the disk.
            self._events.result(self._recorded_result(entry, done))
            return None
        return entry

    def place(self, entry: Job) -> Admission:
        """Decide the path of a screened job: settled (present, refused), parked on a
        transfer of the same URL, or to start. The caller holds a slot for it."""
        record = self._lookup(entry.url)
        try:
            path = self._path_for(entry, record)
            # The file's own names are checked by the one lstat of existing_result and by
            # the writer's O_NOFOLLOW opens: no lstat here for what those calls see anyway.
            # A flat name from the URL is one safe component: no directory on the way.
            if entry.out is not None or self._config.layout != "flat" or (record is not None and record.path):
                naming.check_inside(self._dest, path, job=entry, names=False)
            # A transfer of this URL in flight takes the duplicate now: looked for before the
            # disk, which it could finish and leave between that look and the claims'.
            with self._lock:
                claim = self._claims.get(path)
                if claim is not None and claim.url == entry.url:
                    claim.parked.append(entry)
                    return _PARKED
            present = self._present(entry, path)
        except DownloadError as error:
            return self._settle_now(failed_result(entry.url, error, entry.origin, job=entry))
        current = _validators(path, record) if present is not None and self._config.sync else None
        with self._lock:
            claim = self._claims.get(path)
            if claim is None and (present is None or current is not None):
                self._claims[path] = _Claim(entry.url, entry.origin, job=entry)
                return Admission(Verdict.START, entry, path, current)
            if claim is not None and claim.url == entry.url:
                claim.parked.append(entry)
                return _PARKED
        if claim is not None:
            where = f" ({claim.origin})" if claim.origin else ""
            refusal = InvalidJob(entry.url, f"{path} is already being written by {claim.url}{where}; not overwriting it")
            return self._settle_now(failed_result(entry.url, refusal, entry.origin, path, entry))
        assert present is not None
        return self._settle_now(present)

    def settle(self, job: Job, path: Path, result: Result) -> int:
        """Report a transfer's result and those of its parked duplicates; how many parked ones."""
        # Recorded before the claim goes: another URL for this path, admitted meanwhile,
        # finds the owner in the one or the other and takes the collision name.
        self._remember(job, result.path or path, result.status, result)
        with self._lock:
            claim = self._claims.pop(path)
        self._events.result(result)
        for duplicate in claim.parked:
            self._events.result(_duplicate_result(duplicate, result))
        return len(claim.parked)

    def _settle_now(self, result: Result) -> Admission:
        self._events.result(result)
        if result.job is not None and result.status is Status.FAILED:
            self._remember(result.job, Path(result.path) if result.path else None, Status.FAILED, result)
        return _SETTLED

    def _path_for(self, job: Job, record: Record | None) -> Path:
        """The job's path: out=, else the one the manifest remembers, else a new one that no
        other URL owns (the collision name, deterministic, when the plain one is taken)."""
        if record is not None and record.path and job.out is None:
            return self._dest / record.path
        path = naming.output_path(job, self._dest, layout=self._config.layout)
        if self._manifest is None or job.out is not None:
            return path
        # The owner is a transfer in flight (not written to the manifest until it ends)
        # or a URL the manifest has.
        with self._lock:
            claim = self._claims.get(path)
        owner = claim.url if claim is not None else self._owner(self._relative(path))
        return path if owner in (None, job.url) else naming.collision_path(path, job.url)

    # The manifest is bookkeeping: if it fails (disk full, locked for too long), the run
    # goes on without it, said once in the log, rather than stopping every transfer.

    def _lookup(self, url: str) -> Record | None:
        return self._ask(lambda manifest: manifest.lookup(url), url)

    def _owner(self, path: str) -> str | None:
        return self._ask(lambda manifest: manifest.owner(path), path)

    def _ask(self, query: Callable[[Ledger], _T | None], key: str) -> _T | None:
        """``query(manifest)``, or None without asking when the manifest cannot hold ``key``."""
        if self._manifest is None or (self._recorded is not None and not self._recorded.may_hold(key)):
            return None
        try:
            return query(self._manifest)
        except ManifestError as error:
            self._drop_manifest(error)
            return None

    def _ask_done(self, urls: list[str]) -> dict[str, Done]:
        """Manifest.done(urls), asking only for URLs the manifest may hold."""
        if self._manifest is None:
            return {}
        if self._recorded is not None:  # read without the lock, as _ask does: a bit is only ever set
            urls = [url for url in urls if self._recorded.may_hold(url)]
        if not urls:
            return {}
        try:
            return self._manifest.done(urls)
        except ManifestError as error:
            self._drop_manifest(error)
            return {}

    def _drop_manifest(self, error: ManifestError) -> None:
        if self._manifest is not None:
            log.error("manifest disabled for the rest of this run: %s", error)
            self._manifest = None

    def record_in_flight(self) -> None:
        """Write the transfers still in flight to the manifest as ``pending`` (an interrupted run)."""
        with self._lock:
            claims = [(path, claim) for path, claim in self._claims.items() if claim.job is not None]
        for path, claim in claims:
            assert claim.job is not None
            self._remember(claim.job, path, Status.PENDING)

    def _recorded_result(self, job: Job, done: Done) -> Result:
        return skipped_as_recorded(job, done, self._under(done.path))

    def _under(self, relative: str) -> str:
        """``str(dest / relative)``, without a Path (3 us, once per line of a re-run) for a
        relative path that Path would not rewrite (no empty or ``.`` component)."""
        if relative and relative[0] != "/" and relative[-1] != "/" and "//" not in relative \
                and "./" not in relative and relative != "." and not relative.endswith("/."):
            return self._dest_text + relative
        return str(self._dest / relative)

    def _relative(self, path: Path | str) -> str:
        # String slicing, not Path.relative_to: this runs twice per file.
        text, prefix = str(path), self._dest_prefix
        return text[len(prefix):] if text.startswith(prefix) else text

    def _remember(self, job: Job, path: Path | str | None, status: Status, result: Result | None = None) -> None:
        """Queue the manifest row for ``job`` (batched by the manifest's writer thread)."""
        if self._manifest is None:
            return
        now = time.time()
        relative = self._relative(path) if path else ""
        if self._recorded is not None:
            with self._lock:
                self._recorded.add(job.url)
                self._recorded.add(relative)
        record = Record(
            url=job.url, path=relative, status=status,
            size=result.size if result else None, checksum=result.checksum if result else None,
            etag=result.etag if result else None, last_modified=result.last_modified if result else None,
            final_url=result.final_url if result else None, attempts=result.attempts if result else 0,
            error=result.error if result and result.status is Status.FAILED else None, first_seen=now, updated=now)
        try:
            self._manifest.record(record)
        except ManifestError as error:
            self._drop_manifest(error)


class _Seen:
    """The strings added so far, as a Bloom filter: "never added" is certain, "maybe" is not.

    Fixed memory (2 MiB) whatever the length of the list: about 2 % of false "maybe"s
    after a million URLs and their paths, each costing only the lookup it would have
    cost anyway. Not thread-safe for add(): the caller holds a lock.
    """

    _BITS = 1 << 24  # a power of two: positions are masked, not divided

    def __init__(self) -> None:
        self._bits = bytearray(self._BITS // 8)

    def add(self, text: str) -> None:
        bits = self._bits
        for position in self._positions(text):
            bits[position >> 3] |= 1 << (position & 7)

    def may_hold(self, text: str) -> bool:
        bits = self._bits
        for position in self._positions(text):
            if not bits[position >> 3] >> (position & 7) & 1:
                return False
        return True

    def _positions(self, text: str) -> tuple[int, int, int, int]:
        # Python's own string hash (SipHash, 64 bits, cached on the string; salted per
        # process, which is fine for a filter that lives in one) split in two halves,
        # combined as h1 + i * h2 (Kirsch and Mitzenmacher): as good as k hashes.
        value = hash(text)
        low, high, mask = value & 0xFFFF_FFFF, (value >> 32) & 0xFFFF_FFFF | 1, self._BITS - 1
        return low & mask, (low + high) & mask, (low + 2 * high) & mask, (low + 3 * high) & mask


def _validators(path: Path, record: Record | None) -> Validators:
    """What --sync asks with: the recorded ETag and Last-Modified, else the file's own mtime
    (none when the file is gone meanwhile, or only planned by a dry run: a plain GET)."""
    if record is not None and (record.etag or record.last_modified):
        return Validators(record.etag, record.last_modified)
    try:
        return storage.current_validators(path)
    except FileNotFoundError:
        return Validators()


def _duplicate_result(job: Job, first: Result) -> Result:
    where = f" ({first.origin})" if first.origin else ""
    if first.status is Status.FAILED:
        return replace(first, origin=job.origin, received=0, job=job, error=f"{first.error} (same URL as{where or ' another line'})")
    return replace(first, status=Status.SKIPPED, origin=job.origin, received=0, error=f"duplicate of{where or ' another line'}")
