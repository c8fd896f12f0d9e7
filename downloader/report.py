"""The JSON report: one record per URL, written as results arrive, then the summary.

The file is one JSON document, ``{"results": [...], "summary": {...}}``, streamed
record by record so that a run over millions of URLs never holds them in memory.
"""

from __future__ import annotations

import json
import threading
from typing import IO

from downloader.jobs import Result
from downloader.progress import Summary

__all__ = ["JsonReport"]


class JsonReport:
    """Writes results to ``stream`` as they come; :meth:`close` adds the summary."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._count = 0
        stream.write('{"results": [')

    def add(self, result: Result) -> None:
        with self._lock:
            self._stream.write(("\n  " if self._count == 0 else ",\n  ") + json.dumps(result.to_json()))
            self._count += 1

    def close(self, summary: Summary) -> None:
        with self._lock:
            self._stream.write('\n],\n"summary": ' + json.dumps(summary.to_json()) + "}\n")
            self._stream.close()
