"""Where a list entry belongs: its shard of the list (``--shard K/N``) and its process of a run.

Everything that must be decided in one place goes to the same place: two lines
with the same URL, and two URLs that would be written to the same output path
(the collision rule gives the later one another name, which only a dispatcher
that sees both can do). Both have the same *placement key*: the output path
relative to the destination as it is named before any answer arrives (``out=``
when the line gives one, else from the URL by ``--layout``); a line that cannot be
named is placed by its URL.

The key's hash is BLAKE2b with an 8-byte digest over the key's UTF-8 bytes, read
as a big-endian unsigned 64-bit integer ``h``. Shard ``K`` of ``N`` takes the
entries with ``h mod N == K - 1``; within a run, process ``i`` of ``P`` takes those
with ``(h >> 32) mod P == i`` (other bits than the shard's, so that a shard's
entries still spread over every process). The hash does not depend on Python's
per-process hash seed, the machine or the order of the list, so N machines that run
the same command with K = 1..N split one list into disjoint shards that together
cover it exactly, with no coordinator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from downloader import naming
from downloader.errors import DownloadError, InvalidJob
from downloader.naming import Layout
from downloader.sources import Entry

__all__ = ["Shard", "in_shard", "placement_hash", "placement_key", "process_of"]

_HERE = Path(".")
_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard must be K/N with 1 <= K <= N, not {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/8"`` -> ``Shard(2, 8)``.

        Raises:
            ValueError: not of the form K/N with 1 <= K <= N.
        """
        match = _SHARD.fullmatch(text)
        if match is None:
            raise ValueError(f"shard must be K/N (e.g. 2/8), not {text!r}")
        return cls(int(match[1]), int(match[2]))

    def holds(self, value: int) -> bool:
        """Whether an entry whose placement hash is ``value`` belongs to this shard."""
        return value % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def placement_key(entry: Entry, layout: Layout = "flat") -> str:
    """The text that decides where ``entry`` goes (see the module docstring)."""
    if isinstance(entry, InvalidJob):
        return entry.url
    try:
        if entry.out is None and layout == "flat":  # the common case, without building a Path
            return naming.name_from_url(entry.url)
        return naming.output_path(entry, _HERE, layout=layout).as_posix()
    except (DownloadError, ValueError):  # an unsafe out= or an unmappable URL: the run reports it, wherever it goes
        return entry.url


def placement_hash(key: str) -> int:
    """The stable 64-bit hash of a placement key (BLAKE2b, 8 bytes, big-endian)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def process_of(value: int, processes: int) -> int:
    """The process (0-based, of ``processes``) that takes an entry whose placement hash is ``value``."""
    return (value >> 32) % processes


def in_shard(entries: Iterable[Entry], shard: Shard, layout: Layout = "flat") -> Iterator[Entry]:
    """The entries of ``shard``, lazily, in list order."""
    for entry in entries:
        if shard.holds(placement_hash(placement_key(entry, layout))):
            yield entry
