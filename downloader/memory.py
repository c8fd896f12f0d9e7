"""Keep the process's footprint bounded while large bodies stream through it.

Each chunk read from a socket is a new bytes object of up to a chunk. glibc
keeps the memory of freed chunks in the arena of the thread that freed it, for
reuse, so with a few writer or worker threads the peak RSS of a large download
grew by 5 MiB per transfer and more (measured: 4 x 512 MiB with the threads engine,
59-70 MB peak; 48 MB when the freed memory is given back every 64 MiB, at no
measurable cost in speed). :func:`note_written` counts the bytes stored, by every
transfer together, and every :data:`RELEASE_EVERY` bytes asks the allocator to
return what it holds free (``malloc_trim``, about a microsecond when there is
little to return). Elsewhere than glibc there is no such call, and nothing is done.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

__all__ = ["RELEASE_EVERY", "note_written", "peak_rss", "release"]

def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (Linux counts it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


RELEASE_EVERY = 64 * 1024 * 1024
"""Bytes stored between two releases of freed memory."""

_since_release = 0
_trim: Callable[[int], int] | None = None
_looked_up = False


def note_written(n: int) -> None:
    """Count ``n`` more bytes stored; release freed memory every RELEASE_EVERY bytes.

    Called from several threads at once: the count is approximate (a lost addition
    only delays a release a little), which is all it needs to be.
    """
    global _since_release
    _since_release += n
    if _since_release >= RELEASE_EVERY:
        _since_release = 0
        release()


def release() -> None:
    """Ask the C allocator to give the memory it holds free back to the system (glibc only)."""
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        import ctypes  # only once a large body has come: start-up does not pay for it

        try:
            _trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
        except (OSError, AttributeError):
            _trim = None  # not glibc
    if _trim is not None:
        _trim(0)
