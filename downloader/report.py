"""Reports for automation: JSON Lines per URL with a closing summary, and the failed URLs as a list.

``--report FILE`` writes one JSON object per line, as results arrive (never held
in memory)::

    {"type": "result", "url": ..., "status": "downloaded", "path": ..., "size": ..., ...}
    ...
    {"type": "summary", "downloaded": 3, "skipped": 1, "failed": 1, ...,
     "peak_rss": {"parent": BYTES, "workers": [BYTES, ...]},
     "failure_groups": [{"kind": "HTTP 404 Not Found", "host": "example.org", "count": 1}, ...]}

(the summary's extra fields are the command line's: see :mod:`downloader.failures` for the groups).

``--failed FILE`` writes the failed URLs in the list format (with their ``out=``,
checksum and ``size=`` fields), ready to run again with ``-i FILE``; a
malformed list line cannot be re-run and is written as a comment with its reason.
"""

from __future__ import annotations

import json
import threading
from typing import IO

from downloader.jobs import Job, Result, Status
from downloader.progress import Summary

__all__ = ["FailedList", "JsonReport", "list_line", "quoted"]


class JsonReport:
    """Writes results to ``stream`` as JSON Lines as they come; :meth:`close` adds the summary line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        line = json.dumps({"type": "result", **result.to_json()})
        with self._lock:
            self._stream.write(line + "\n")

    def close(self, summary: Summary, **extra: object) -> None:
        """Write the summary line (with ``extra`` fields, e.g. ``peak_rss``) and close the stream."""
        with self._lock:
            self._stream.write(json.dumps({"type": "summary", **summary.to_json(), **extra}) + "\n")
            self._stream.close()


class FailedList:
    """Writes each failed job back in the list format, for ``-i`` on the next run."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        stream.write("# URLs that failed; run them again with: downloader -i THIS_FILE\n")

    def add(self, result: Result) -> None:
        if result.status is not Status.FAILED:
            return
        reason = " ".join(str(result.error).split())
        line = list_line(result.job) if result.job else f"# {result.url}"
        with self._lock:
            self._stream.write(f"# {reason}\n{line}\n")

    def close(self) -> None:
        with self._lock:
            self._stream.close()


def list_line(job: Job) -> str:
    """``job`` as one line of a URL list; an ``out=`` with white space in it is quoted."""
    fields = [job.url]
    if job.out is not None:
        fields.append(f"out={quoted(job.out)}")
    if job.checksum is not None:
        algorithm, _, hexdigest = job.checksum.partition(":")
        fields.append(f"{algorithm}={hexdigest}")
    if job.size is not None:
        fields.append(f"size={job.size}")
    return "   ".join(fields)


def quoted(value: str) -> str:
    """``value`` as a list line writes it: as it is, or in double quotes when white space would
    cut it or it starts with a quote (see :mod:`downloader.sources`)."""
    if value.split() == [value] and not value.startswith('"'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
