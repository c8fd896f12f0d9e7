"""Where a job's file goes: its final path under the destination, never outside it."""

from __future__ import annotations

import hashlib
import unicodedata
import urllib.parse
from pathlib import Path, PurePosixPath

from downloader.errors import InvalidJob
from downloader.jobs import Job

__all__ = ["MAX_NAME_BYTES", "PART_SUFFIX", "STATE_SUFFIX", "STATE_TMP_ROOM", "name_from_url", "output_path"]

PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.state"
STATE_TMP_ROOM = 16
"""Bytes after STATE_SUFFIX for the state's temporary name (``.<pid>.tmp``)."""
# 255 bytes is the name limit of ext4, xfs, btrfs and NTFS; the part, its state file
# and the state's temporary file add suffixes to the final name, which leaves room.
MAX_NAME_BYTES = 255 - len(STATE_SUFFIX) - STATE_TMP_ROOM


def output_path(job: Job, dest: Path) -> Path:
    """The final path of ``job`` under ``dest``: ``out=`` when given, else from the URL.

    Raises:
        InvalidJob: ``out=`` is absolute, climbs out with ``..`` or holds control characters.
    """
    if job.out is None:
        return dest / name_from_url(job.url)
    problem = _unsafe_out(job.out)
    if problem:
        raise InvalidJob(job.url, f"{job.origin + ': ' if job.origin else ''}out={job.out!r} {problem}")
    parts = [_fit(p) for p in PurePosixPath(job.out).parts if p != "."]
    return dest.joinpath(*parts)


def name_from_url(url: str) -> str:
    """The last path segment of ``url``, percent-decoded and made safe as one file name.

    A URL without a usable segment (``/``, ``/dir/``) is named ``index-<hash>.html``,
    the hash taken over the whole URL so that different such URLs never share a name.
    """
    path = urllib.parse.urlsplit(url).path
    segment = urllib.parse.unquote(path.rsplit("/", 1)[-1], errors="replace")
    name = "".join("_" if _is_bad_char(c) or c in "/\\" else c for c in segment).strip()
    if name in ("", ".", ".."):
        digest = hashlib.sha256(url.encode()).hexdigest()[:10]
        return f"index-{digest}.html"
    return _fit(name)


def _unsafe_out(out: str) -> str | None:
    if any(_is_bad_char(c) for c in out):
        return "contains control characters"
    if "\\" in out:
        return "contains a backslash (use / between directories)"
    path = PurePosixPath(out)
    if path.is_absolute():
        return "is absolute; it must be relative to the destination"
    if ".." in path.parts:
        return "climbs out of the destination with '..'"
    if out.rsplit("/", 1)[-1] in ("", ".") or not path.parts:
        return "names a directory, not a file"
    return None


def _is_bad_char(c: str) -> bool:
    return unicodedata.category(c) == "Cc"  # C0, DEL and C1 controls


def _fit(name: str) -> str:
    """Shorten ``name`` to MAX_NAME_BYTES of UTF-8, keeping a short extension."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    tag = "-" + hashlib.sha256(name.encode()).hexdigest()[:8] + ("." + ext if ext else "")
    budget = MAX_NAME_BYTES - len(tag.encode())
    return stem.encode()[:budget].decode(errors="ignore") + tag
