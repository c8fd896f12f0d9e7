"""The run's options: one frozen :class:`Config`, passed down explicitly (no globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_CHUNK_SIZE", "Config", "EngineName"]

__version__ = "0.1.0"

EngineName = Literal["asyncio", "threads"]
"""The engines: asyncio (aiohttp) or threads (requests + requests-futures)."""

DEFAULT_CHUNK_SIZE = 512 * 1024
"""Bytes per read and write (at most: a read returns what has arrived). Measured against
nginx on 4 x 512 MiB: 1 MiB chunks cost both engines 8 MB more peak RSS (asyncio
reached 60 MiB, near the 64 MB bound) for 0-15 % more speed; 256 KiB ones meant more
system calls. aiohttp's read buffer is sized to match (at its 64 KiB default the
pause/resume churn doubled the system time). A small file still costs only
its own size. requests' iter_content defaults to 1 byte: never rely on it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """Everything a run needs to know. Validated on creation; change with ``dataclasses.replace``."""

    dest: Path = Path(".")
    """Output directory, created if missing."""
    engine: EngineName = "asyncio"
    """Which engine moves the bytes."""
    concurrency: int = 16
    """Simultaneous transfers; the connection pool is sized to match."""
    retries: int = 5
    """Retries after the first attempt of a URL."""
    timeout: float = 30.0
    """Seconds to connect, and seconds without a byte before a transfer counts as stalled."""
    speed_limit: int = 1024
    """Bytes per second below which a transfer counts as stalled, if it stays there for
    ``speed_time`` seconds (curl's --speed-limit/--speed-time); 0 turns the rule off."""
    speed_time: float = 60.0
    """Seconds a transfer may stay below ``speed_limit`` before it is aborted and retried."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Bytes per read from the socket and per write to the file."""
    backoff_base: float = 0.5
    """First retry waits up to this many seconds; each further retry doubles it (full jitter)."""
    backoff_cap: float = 30.0
    """No backoff wait is longer than this."""
    max_wait: float = 300.0
    """Longest Retry-After honoured; a server asking for more fails the URL at once."""
    resume: bool = True
    """Continue a ``.part`` left by an earlier run; False restarts every part."""
    progress: bool = False
    """Show the animated progress bar on stderr (the CLI does unless -q or stderr is no terminal)."""
    progress_lines: float | None = None
    """Print a plain progress line on stderr every this many seconds (a log file, CI, a batch
    job: the CLI does when stderr is no terminal); None: no lines."""
    user_agent: str = f"downloader/{__version__}"
    """The User-Agent header sent with every request."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers (-H), sent with every request; Authorization and Cookie
    among them are not sent to another host after a redirect."""
    user: tuple[str, str] | None = None
    """Basic credentials (--user) for each job's own host (not for other hosts it redirects to)."""
    netrc: tuple[tuple[str, str, str], ...] = ()
    """(host, login, password) from a netrc file: used for a host when --user does not apply."""
    proxies: tuple[tuple[str, str], ...] = ()
    """(scheme, proxy URL) pairs, as read from HTTP_PROXY/HTTPS_PROXY by the CLI."""
    no_proxy: str = ""
    """Hosts that bypass the proxies (NO_PROXY syntax)."""
    verify: bool = True
    """Verify TLS certificates (--insecure turns it off)."""
    ca_bundle: Path | None = None
    """A file of CA certificates to verify against instead of the system's."""
    max_redirects: int = 10
    """Redirect hops allowed per request; a URL may come back in a chain (login flows do)."""
    load_cookies: Path | None = None
    """A Netscape cookies.txt (curl -c, wget --save-cookies, browser exporters) to start the run's jar with."""
    save_cookies: Path | None = None
    """Where to write the run's jar at its end, session cookies too; needs ``processes=1``
    (each engine process has a jar of its own)."""
    max_filesize: int | None = None
    """Refuse bodies larger than this many bytes, announced or received."""
    layout: Literal["flat", "mirror"] = "flat"
    """flat: names in the destination; mirror: ``host[:port]/path`` under it, like wget -x."""
    content_disposition: bool = False
    """Name files after the server's Content-Disposition when it gives one (out= still wins)."""
    server_digest: bool = True
    """Check a body against a digest its server states (Repr-Digest, Digest, Content-MD5,
    x-goog-hash), and ask for one (Want-Repr-Digest) when the list gives no checksum."""
    checksum_files: tuple[Path, ...] = ()
    """Checksum files (``md5sum``/``sha256sum``/``b2sum`` output, BSD ``--tag`` lines, an archive's
    SHA256SUMS; :mod:`downloader.checksumfiles`): each digest goes to the job whose output name it
    names, unless the job has a checksum of its own. Read when a run starts, by the process
    that reads the list; a bad line raises :class:`~downloader.errors.ChecksumFileError`."""
    per_host: int | None = None
    """Simultaneous connections to one host (host:port). None means half of ``concurrency``
    (at least 1 and at least ``split``) while other hosts have connections, and all of the
    run's connections for a host that is alone: a mirror of many hosts shares them, a list
    of one host is not slowed (see :attr:`host_limit`, :attr:`host_ceiling`)."""
    limit_rate: int | None = None
    """Total bandwidth of the run in bytes per second; None means no limit."""
    split: int = 1
    """Connections one large file may be fetched over (ranged requests written in place)."""
    min_split_size: int = 20 * 1024 * 1024
    """Segments are at least this large: a file is split only when it is at least twice this."""
    manifest: Path | None = None
    """The SQLite manifest of what was fetched (the CLI defaults it to DEST/.downloader/manifest.sqlite)."""
    sync: bool = False
    """Re-check files already present with a conditional request: 304 keeps them, 200 replaces them."""
    processes: int | None = 1
    """Engine processes the list is spread over (``--processes``): each takes the entries whose
    placement hash names it, with its share of ``concurrency``; the calling process reads the list
    and gathers the results. None picks one per core (see :attr:`process_count`)."""
    shard: tuple[int, int] | None = None
    """``(K, N)``: take only shard K of N of the list (``--shard K/N``, see :mod:`downloader.sharding`)."""

    @property
    def process_count(self) -> int:
        """``processes``, or when it is None one per core, at most one per transfer; never more
        than an explicit ``per_host``, which is divided among the processes and must hold in total."""
        count = self.processes if self.processes is not None else default_processes(self.concurrency)
        return count if self.per_host is None else min(count, self.per_host)

    @property
    def host_limit(self) -> int:
        """Connections allowed per host: ``per_host``, or by default half of ``concurrency``
        (at least 1, and at least ``split``, so that one file can be split as asked)."""
        return self.per_host if self.per_host is not None else max(1, self.concurrency // 2, self.split)

    @property
    def host_ceiling(self) -> int | None:
        """Connections a host may borrow up to while no other host has one, under the default
        ``per_host``: every connection of the run (``concurrency`` x ``split``). None (no
        borrowing) when ``per_host`` is given."""
        return self.concurrency * self.split if self.per_host is None else None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", Path(self.dest))
        if isinstance(self.checksum_files, (str, os.PathLike)):
            object.__setattr__(self, "checksum_files", (self.checksum_files,))
        object.__setattr__(self, "checksum_files", tuple(Path(p) for p in self.checksum_files))
        for name in ("load_cookies", "save_cookies"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        _require(self.layout in ("flat", "mirror"), f"layout must be 'flat' or 'mirror', not {self.layout!r}")
        if self.engine not in ("asyncio", "threads"):
            raise ValueError(f"engine must be 'asyncio' or 'threads', not {self.engine!r}")
        _require(self.concurrency >= 1, f"concurrency must be at least 1, not {self.concurrency}")
        _require(self.retries >= 0, f"retries must be 0 or more, not {self.retries}")
        _require(self.progress_lines is None or self.progress_lines > 0,
                 f"progress_lines must be a positive number of seconds, not {self.progress_lines}")
        _require(self.timeout > 0, f"timeout must be more than 0 seconds, not {self.timeout}")
        _require(self.speed_limit >= 0, f"speed_limit must not be negative, not {self.speed_limit}")
        _require(self.speed_time > 0, f"speed_time must be more than 0 seconds, not {self.speed_time}")
        _require(self.chunk_size >= 1024, f"chunk_size must be at least 1024 bytes, not {self.chunk_size}")
        _require(self.backoff_base >= 0, f"backoff_base must not be negative, not {self.backoff_base}")
        _require(self.backoff_cap >= 0, f"backoff_cap must not be negative, not {self.backoff_cap}")
        _require(self.split >= 1, f"split must be at least 1, not {self.split}")
        _require(self.min_split_size >= 1, f"min_split_size must be at least 1 byte, not {self.min_split_size}")
        _require(self.per_host is None or self.per_host >= 1, f"per_host must be at least 1, not {self.per_host}")
        _require(self.limit_rate is None or self.limit_rate >= 1, f"limit_rate must be at least 1, not {self.limit_rate}")
        _require(self.max_redirects >= 0, f"max_redirects must not be negative, not {self.max_redirects}")
        _require(self.max_filesize is None or self.max_filesize >= 0, f"max_filesize must not be negative, not {self.max_filesize}")
        _require(self.processes is None or self.processes >= 1, f"processes must be at least 1, not {self.processes}")
        _require(self.save_cookies is None or self.processes == 1,
                 f"save_cookies needs processes=1, not {self.processes}: each engine process has a jar of its own")
        _require(self.shard is None or 1 <= self.shard[0] <= self.shard[1],
                 f"shard must be (K, N) with 1 <= K <= N, not {self.shard}")
        _require(self.max_wait >= 0, f"max_wait must not be negative, not {self.max_wait}")


def default_processes(concurrency: int) -> int:
    """Engine processes when none are asked for: one per core this process may run on, at most
    one per transfer (a process with no transfer of its own would only cost memory)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, concurrency))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
