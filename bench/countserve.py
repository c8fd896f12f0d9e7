"""The package's test server, counting requests: ``countserve.py --port P --status FILE``.

Run with the package's python (it imports ``downloader.testing``). It serves what
``python -m downloader.testing serve`` serves and, besides, keeps the number of
requests received and the ``time.monotonic()`` of the first one, and writes
``requests first_request`` (``-1`` while there has been none) to FILE whenever
they change (checked every 20 ms; the file is replaced atomically). On Linux
``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every process, so the
harness can subtract the moment it started a tool. Used by the ``hugelist``
scenario (bench/hugelist.py): time to the first request, and proof that a
re-run sent none.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from aiohttp import web

from downloader.testing import Server

POLL = 0.02
"""Seconds between checks of the counters."""


class CountingServer(Server):
    """A :class:`downloader.testing.Server` that counts every request to ``/bytes/...``."""

    def __init__(self, port: int) -> None:
        super().__init__(port=port, log_limit=1)  # the log is not needed; the count is
        self.received = 0
        self.first_request = -1.0

    async def _handle_bytes(self, request: web.Request) -> web.StreamResponse:
        if self.first_request < 0:
            self.first_request = time.monotonic()
        self.received += 1
        return await super()._handle_bytes(request)


def write_status(server: CountingServer, status: Path, stop: threading.Event) -> None:
    """Write the counters to ``status`` whenever they change, until ``stop`` is set."""
    written: tuple[int, float] | None = None
    while True:
        now = (server.received, server.first_request)
        if now != written:
            temporary = status.with_suffix(".tmp")
            temporary.write_text(f"{now[0]} {now[1]!r}\n")
            os.replace(temporary, status)
            written = now
        if stop.wait(POLL):
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    with CountingServer(args.port) as server:
        writer = threading.Thread(target=write_status, args=(server, args.status, stop), daemon=True)
        writer.start()
        print(f"serving deterministic files on {server.base_url}/bytes/<size>/<name>; counts in {args.status}",
              flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        stop.set()
        writer.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
