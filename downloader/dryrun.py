"""``--dry-run``: what a run would do with each list entry, decided from the disk alone, no request sent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from downloader import naming, storage
from downloader.config import Config
from downloader.core import ResumeState
from downloader.errors import DownloadError, InvalidJob
from downloader.jobs import DONE_STATUSES
from downloader.manifest import Manifest
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
    """Bytes the list announces (size=), when it does."""
    detail: str = ""

    def line(self) -> str:
        where = f" -> {self.path}" if self.path else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.action:<8} {self.url}{where}{extra}"


def plan(entries: Iterable[Entry], config: Config) -> Iterator[Planned]:
    """One Planned per entry, lazily (the list is never held). An existing manifest is read, never created."""
    manifest = Manifest(config.manifest) if config.manifest is not None and config.manifest.is_file() else None
    try:
        yield from _plan(entries, config, manifest)
    finally:
        if manifest is not None:
            manifest.close()


def _plan(entries: Iterable[Entry], config: Config, manifest: Manifest | None) -> Iterator[Planned]:
    for entry in entries:
        if isinstance(entry, InvalidJob):
            yield Planned("fail", entry.url, None, detail=entry.reason)
            continue
        record = manifest.lookup(entry.url) if manifest is not None else None
        if record is not None and record.status in DONE_STATUSES and not config.sync:
            yield Planned("skip", entry.url, config.dest / record.path, record.size, "already downloaded (manifest)")
            continue
        try:
            path = naming.output_path(entry, config.dest, layout=config.layout)
            naming.check_inside(config.dest, path, job=entry)
            present = storage.existing_result(entry, path)
        except DownloadError as error:
            yield Planned("fail", entry.url, None, entry.size, str(error))
            continue
        if present is not None:
            yield Planned("skip", entry.url, path, present.size, "already present")
            continue
        yield _part_plan(entry.url, path, entry.size, config)


def _part_plan(url: str, path: Path, size: int | None, config: Config) -> Planned:
    part = path.with_name(path.name + PART_SUFFIX)
    try:
        have = part.stat().st_size
        state = ResumeState.loads(path.with_name(path.name + STATE_SUFFIX).read_text(encoding="utf-8"), url)
    except (OSError, UnicodeDecodeError):
        have, state = (part.stat().st_size if part.exists() else 0), None
    if have and state is not None and config.resume:
        total = f" of {state.size}" if state.size is not None else ""
        return Planned("resume", url, path, size, f"{have} bytes{total} in the part")
    detail = f"restarting a part of {have} bytes" if have else ""
    return Planned("download", url, path, size, detail)


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
