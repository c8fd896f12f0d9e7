"""Benchmark scenarios: what is served, how it is generated, and how a download is verified.

A scenario is a number of equally sized files fetched with one concurrency. Its
files are either generated on disk (random bytes, for nginx) or computed by the
package's builtin test server; either way every file is described by an
:class:`Entry` whose size and sha256 are known before any tool runs, so each
tool's output can be checked byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
WRITE_BLOCK = 8 * MiB
"""Generated files are written in blocks of this size, so the harness stays small in memory."""


@dataclass(frozen=True)
class Scenario:
    """``count`` files of ``size`` bytes, downloaded ``concurrency`` at a time."""

    name: str
    count: int
    size: int
    concurrency: int
    description: str
    delay: float = 0.0
    """Seconds the server waits before answering each request (builtin server only)."""
    builtin_only: bool = False
    """True when only the builtin server can serve it (nginx cannot delay answers)."""
    rate: int = 0
    """Bytes per second the server sends on each connection (builtin server only; 0 = no cap)."""
    split: int = 1
    """Connections a tool that can split one file (downloader --split, aria2c -x/-s) may use per file."""
    tools: frozenset[str] | None = None
    """The only tool keys that run in this scenario (None: every tool selected)."""
    repeats: int = 1
    """Each URL is this many times in the list (``hugelist``: run by bench/hugelist.py, not as the others)."""
    default: bool = True
    """Run when no --scenario is given."""

    @property
    def lines(self) -> int:
        """Lines of the URL list."""
        return self.count * self.repeats

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def file_names(self) -> list[str]:
        width = len(str(max(self.count - 1, 0)))
        return [f"f{i:0{width}d}.bin" for i in range(self.count)]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("small", 5000, 16 * KiB, 64, "5,000 files of 16 KiB, 64 at a time"),
        Scenario("large", 4, 512 * MiB, 4, "4 files of 512 MiB, 4 at a time"),
        Scenario("huge", 1, 2 * GiB, 1, "1 file of 2 GiB (the point is peak RSS)"),
        Scenario(
            "latency", 200, 1 * KiB, 200, "200 files of 1 KiB, each answered after 1 s, 200 at a time",
            delay=1.0, builtin_only=True,
        ),
        Scenario(
            "split", 1, 64 * MiB, 1, "1 file of 64 MiB from a server capping each connection at 8 MiB/s; "
            "tools that can split a file use 4 connections",
            builtin_only=True, rate=8 * MiB, split=4,
        ),
        Scenario(
            "cluster", 5000, 16 * KiB, 64, "5,000 files of 16 KiB, 64 at a time (as small), the downloader "
            "on a Dask LocalCluster (--dask local:2)", tools=frozenset({"downloader-asyncio-dask", "downloader-threads-dask", "curl",
                                                 "aria2c", "wget2"}),
        ),
        Scenario(
            "hugelist", 100_000, 16, 64, "a list of 10,000,000 lines: 100,000 URLs of 16 bytes, each 100 times; "
            "first run, then re-runs on the completed destination", builtin_only=True, repeats=100, default=False,
        ),
    )
}
OURS = "downloader"
"""Tool keys of this package's runs start with this."""


def with_lines(scenario: Scenario, lines: int) -> Scenario:
    """``scenario`` (one with ``repeats``) resized to a list of ``lines`` lines, and described so."""
    count = max(1, lines // scenario.repeats)
    description = (f"a list of {count * scenario.repeats:,} lines: {count:,} URLs of {scenario.size} bytes, "
                   f"each {scenario.repeats} times; first run, then re-runs on the completed destination")
    return replace(scenario, count=count, description=description)


@dataclass(frozen=True)
class Entry:
    """One file to download and what it must look like afterwards."""

    url: str
    name: str
    """Output path relative to the destination directory (the URL's last path segment)."""
    size: int
    sha256: str


def generate_files(scenario: Scenario, root: Path) -> list[tuple[str, int, str]]:
    """Write the scenario's files of random bytes under ``root``; return (name, size, sha256)."""
    root.mkdir(parents=True, exist_ok=True)
    return [(name, scenario.size, write_random_file(root / name, scenario.size)) for name in scenario.file_names()]


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` in blocks; return their hex sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            block = os.urandom(min(WRITE_BLOCK, remaining))
            out.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


_BUILTIN_HASHES = """\
import json, sys
from downloader.testing import body_sha256
print(json.dumps([body_sha256(name, size) for name, size in json.load(sys.stdin)]))
"""


def builtin_hashes(python: str, files: Sequence[tuple[str, int]], cwd: Path) -> list[str]:
    """sha256 of the builtin server's files, computed by ``downloader.testing`` in ``python``."""
    done = subprocess.run(
        [python, "-c", _BUILTIN_HASHES], input=json.dumps(list(files)), capture_output=True,
        text=True, cwd=cwd, check=True, timeout=600,
    )
    hashes: list[str] = json.loads(done.stdout)
    return hashes


@dataclass(frozen=True)
class Verification:
    """How a tool's output compares with the expected files."""

    checked: int
    bad: list[str] = field(default_factory=list)
    """One ``"name: problem"`` line per missing or wrong file."""
    extra: int = 0
    """Files in the destination that were not asked for (temporary or misnamed files)."""

    @property
    def ok(self) -> bool:
        return not self.bad


def verify(entries: Sequence[Entry], dest: Path, layout: Callable[[Entry], str] = lambda e: e.name) -> Verification:
    """Compare size and sha256 of every expected file under ``dest`` (hashing in parallel).

    ``layout`` says where a tool saved an entry, relative to ``dest``.
    """
    workers = len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(_problem_with(dest, layout), entries))
    bad = [f"{layout(entry)}: {problem}" for entry, problem in zip(entries, problems, strict=True) if problem]
    expected = {layout(entry) for entry in entries}
    # downloader's manifest (DEST/.downloader/) is bookkeeping, not a stray download.
    extra = sum(1 for path in dest.rglob("*") if path.is_file() and path.relative_to(dest).as_posix() not in expected
                and path.relative_to(dest).parts[0] != ".downloader")
    return Verification(checked=len(entries), bad=bad, extra=extra)


def _problem_with(dest: Path, layout: Callable[[Entry], str]) -> Callable[[Entry], str | None]:
    def check(entry: Entry) -> str | None:
        path = dest / layout(entry)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "missing"
        if size != entry.size:
            return f"size {size}, expected {entry.size}"
        with open(path, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != entry.sha256:
                return "sha256 differs"
        return None

    return check
