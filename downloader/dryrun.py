"""``--dry-run``: what a run would do with each list entry, decided by the run's own admission, with no request sent.

Each entry goes through the :class:`~downloader.dispatch.Dispatcher` that a run uses
(``with_done``, ``screen``, ``place``), so a dry run names the same paths, collision
names (``same~<hash>.bin``) included, and applies the same manifest rules. For an entry
the run would start, the part and its state on disk then say download or resume.

Nothing is written: the manifest is a :class:`~downloader.manifest.ManifestPreview`
(read without creating anything; the rows the run would write are kept aside), and no
part, state or directory is made. The plan is that of a run with one connection: each
transfer is taken as finished, successfully, before the next line, so that a later line
of the same URL, or without a manifest of another URL for the same path, is a skip.

Memory stays bounded over a long list: each claim is released as soon as its entry is
planned, and what must be remembered across the list (the rows the run would write,
the paths it would fill) lives in SQLite's temporary store, a couple of MiB in memory
and the rest in an unlinked temporary file, never in the destination.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from downloader import naming, storage
from downloader.config import Config
from downloader.core import ResumeState
from downloader.dispatch import Admission, Dispatcher, Verdict
from downloader.errors import InvalidJob
from downloader.jobs import Job, Result, Status
from downloader.manifest import ManifestPreview
from downloader.naming import PART_SUFFIX, STATE_SUFFIX
from downloader.sources import Entry

__all__ = ["Planned", "plan", "summarize"]


@dataclass(frozen=True, slots=True)
class Planned:
    """What would happen to one entry: download, resume, skip or fail."""

    action: str
    url: str
    path: Path | None
    size: int | None = None
    """Bytes the list announces (size=), when it does; for a skip, the size on record."""
    detail: str = ""

    def line(self) -> str:
        where = f" -> {self.path}" if self.path else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.action:<8} {self.url}{where}{extra}"


def plan(entries: Iterable[Entry], config: Config) -> Iterator[Planned]:
    """One Planned per entry, lazily (the list is never held); nothing is written anywhere.

    Raises:
        ManifestError: the manifest is there but is not one this version can read
            (raised when the first entry is asked for).
    """
    with ManifestPreview(config.manifest) as preview, _Filled() as filled:
        outcome = _Outcome()
        dispatcher = Dispatcher(config, outcome, preview if config.manifest is not None else None,
                                present=filled.present)
        for entry in entries:
            yield _plan_one(entry, dispatcher, outcome, filled, config)


def _plan_one(entry: Entry, dispatcher: Dispatcher, outcome: _Outcome, filled: _Filled, config: Config) -> Planned:
    """Admit ``entry`` as a run would; settle a start at once, as the transfer the plan expects."""
    ((entry, done),) = dispatcher.with_done([entry])
    job = dispatcher.screen(entry, done)
    if job is None:
        return _settled(outcome.take(), filled)
    admission = dispatcher.place(job)
    if admission.verdict is Verdict.SETTLED:
        return _settled(outcome.take(), filled)
    # Every claim is released before the next entry: nothing can be in flight to park on.
    assert admission.verdict is Verdict.START and admission.path is not None, admission
    planned = _start_plan(job, admission, config)
    dispatcher.settle(job, admission.path, _expected_result(job, planned))  # records what the run would
    outcome.take()
    if planned.action != "fail":
        filled.add(str(admission.path), job.url)
    return planned


def _settled(result: Result, filled: _Filled) -> Planned:
    """The Planned of an entry the dispatcher settled without a transfer."""
    path = Path(result.path) if result.path else None
    if result.status is Status.FAILED:
        return Planned("fail", result.url, path, None, result.error or "")
    by = filled.url_at(result.path) if result.path else None
    detail = _filled_by(by, result.url) if by is not None else result.error or ""
    return Planned("skip", result.url, path, result.size or None, detail)


def _expected_result(job: Job, planned: Planned) -> Result:
    """The result the plan expects of a started transfer: downloaded, unless it would fail at once."""
    if planned.action == "fail":
        return Result(job.url, Status.FAILED, str(planned.path), error=planned.detail, origin=job.origin, job=job)
    return Result(job.url, Status.DOWNLOADED, str(planned.path), job.size or 0, origin=job.origin, job=job)


def _start_plan(job: Job, admission: Admission, config: Config) -> Planned:
    """Download or resume, as the part and its state on disk say (what the transfer will find)."""
    path = admission.path
    assert path is not None
    part = path.with_name(path.name + PART_SUFFIX)
    try:
        have = _part_size(job, path, part)
        state = _state(job, path) if have and config.resume else None
    except InvalidJob as refusal:  # a link planted at the part or its state
        return Planned("fail", job.url, path, job.size, str(refusal))
    if state is not None:
        total = f" of {state.size}" if state.size is not None else ""
        return Planned("resume", job.url, path, job.size, f"{have} bytes{total} in the part")
    details = [f"restarting a part of {have} bytes"] if have else []
    if admission.current is not None:
        details.append("--sync: fetched only if the server has another version")
    return Planned("download", job.url, path, job.size, "; ".join(details))


def _part_size(job: Job, path: Path, part: Path) -> int:
    """Bytes in the part (0 when there is none). Raises InvalidJob for a link there, as the writer will."""
    try:
        found = os.lstat(part)
    except OSError:
        return 0
    if stat.S_ISLNK(found.st_mode):
        raise naming.link_refusal(path, part, job)
    return found.st_size


def _state(job: Job, path: Path) -> ResumeState | None:
    """The part's resume state as the transfer will read it, or None when it is missing or unusable."""
    state_file = path.with_name(path.name + STATE_SUFFIX)
    if state_file.is_symlink():
        raise naming.link_refusal(path, state_file, job)
    try:
        return ResumeState.loads(state_file.read_text(encoding="utf-8"), job.url)
    except (OSError, UnicodeDecodeError):
        return None


def _filled_by(by: str, url: str) -> str:
    return "a duplicate of an earlier line" if by == url else f"fetched earlier in the list by {by}"


class _Outcome:
    """The events of a dry run: the one result each entry settles with, nothing counted."""

    def __init__(self) -> None:
        self._result: Result | None = None

    def job_seen(self) -> None:
        pass

    def bytes_expected(self, count: int) -> None:
        pass

    def bytes_received(self, count: int) -> None:
        pass

    def result(self, result: Result) -> None:
        self._result = result

    def take(self) -> Result:
        result, self._result = self._result, None
        assert result is not None, "the dispatcher settled nothing"
        return result


class _Filled:
    """The paths the plan has filled so far, and by which URL, in a private temporary SQLite
    database (in memory up to its cache, then in an unlinked temporary file)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": a temporary database, deleted on close
        self._db.execute("PRAGMA cache_size = -2048")
        self._db.execute("CREATE TABLE filled (path TEXT PRIMARY KEY, url TEXT NOT NULL) WITHOUT ROWID")

    def add(self, path: str, url: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO filled (path, url) VALUES (?, ?)", (path, url))

    def url_at(self, path: str) -> str | None:
        row = self._db.execute("SELECT url FROM filled WHERE path = ?", (path,)).fetchone()
        return None if row is None else str(row[0])

    def present(self, job: Job, path: Path) -> Result | None:
        """What the run would find at ``path``: the file an earlier line filled, else what is on disk."""
        by = self.url_at(str(path))
        if by is None:
            return storage.existing_result(job, path)
        return Result(job.url, Status.SKIPPED, str(path), job.size or 0, error=_filled_by(by, job.url), origin=job.origin)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> _Filled:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def summarize(planned: Iterable[Planned]) -> tuple[dict[str, int], int, int]:
    """Counts per action, bytes announced by size= for what would be fetched, and entries without a size."""
    counts = {"download": 0, "resume": 0, "skip": 0, "fail": 0}
    known = unknown = 0
    for item in planned:
        counts[item.action] += 1
        if item.action in ("download", "resume"):
            if item.size is None:
                unknown += 1
            else:
                known += item.size
    return counts, known, unknown
