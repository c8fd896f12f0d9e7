"""The downloaders under test and the exact command line each one is given.

Every tool gets the same URL list, the same concurrency J, one connection per
file (no splitting a file into ranges), flat output names (the URL's last path
segment) in an empty destination directory, and no checksum checking of its own
(the harness verifies afterwards). Why each flag is there is said next to it and
in bench/README.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scenarios import Entry

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    """One tool run: what to fetch, where to, and how many at a time."""

    entries: Sequence[Entry]
    dest: Path
    scratch: Path
    """A directory outside ``dest`` for the tool's input file."""
    concurrency: int
    split: int = 1
    """Connections per file for the tools that can split one (1: no splitting)."""


@dataclass(frozen=True)
class Tool:
    """A downloader under test: how to find it, run it and name its version."""

    key: str
    """The name for --tools."""
    name: str
    """The name in the table."""
    locate: Callable[[], list[str] | None]
    """The command prefix that runs the tool, or None when it is not installed."""
    command: Callable[[list[str], Job], list[str]]
    """Write the tool's input file into ``job.scratch`` and return its full command line."""
    version: Callable[[list[str]], str]
    layout: Callable[[Entry], str] = lambda entry: entry.name
    """Where the tool saves ``entry``, relative to the destination (by default: flat)."""


# -- downloader (this package) -------------------------------------------------


def locate_downloader() -> list[str] | None:
    """The ``downloader`` console script next to sys.executable (or in the repo's .venv),
    else ``python -m downloader`` when that python can import the package's CLI."""
    for candidate in (Path(sys.executable).parent / "downloader", REPO / ".venv" / "bin" / "downloader"):
        if candidate.is_file():
            return [str(candidate)]
    probe_code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('downloader.__main__') is None)"
    probe = subprocess.run([sys.executable, "-c", probe_code], capture_output=True)
    return [sys.executable, "-m", "downloader"] if probe.returncode == 0 else None


def downloader_command(engine: str) -> Callable[[list[str], Job], list[str]]:
    def command(prefix: list[str], job: Job) -> list[str]:
        # Plain URLs: the default output name is the URL's last path segment. No
        # size=/sha256= fields, so it does not verify anything the others don't.
        url_list = _write_lines(job.scratch / "urls.txt", (entry.url for entry in job.entries))
        # The defaults otherwise: a lone host may use every connection of the run.
        split = ["--split", str(job.split), "--min-split-size", "1M"] if job.split > 1 else []
        return [*prefix, "-i", str(url_list), "-d", str(job.dest), "-e", engine, "-j", str(job.concurrency),
                "-q", *split]

    return command


def downloader_version(prefix: list[str]) -> str:
    """The package version is not in the CLI contract, so name the commit instead."""
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "downloader"])
    return f"downloader @ {head}{' + uncommitted changes' if dirty else ''}"


# -- curl ------------------------------------------------------------------------


def curl_command(prefix: list[str], job: Job) -> list[str]:
    config = _write_lines(
        job.scratch / "curl.config",
        (f'url = "{entry.url}"\noutput = "{job.dest / entry.name}"' for entry in job.entries),
    )
    return [
        *prefix,
        "-q",  # first argument: do not read ~/.curlrc
        "--parallel", "--parallel-max", str(min(job.concurrency, 300)),  # curl caps it at 300
        "--parallel-immediate",  # open J connections at once instead of waiting to see if one can multiplex
        "-K", str(config),
        "--create-dirs",
        "-s", "-S",  # silent, but do print errors
        "--no-progress-meter",  # curl 7.88 shows the --parallel progress meter even with -s
        "--fail",  # an HTTP error is a failed transfer (exit 22), not a saved error page
    ]


# -- aria2c --------------------------------------------------------------------


def aria2c_command(prefix: list[str], job: Job) -> list[str]:
    url_list = _write_lines(job.scratch / "aria2.txt", (f"{entry.url}\n  out={entry.name}" for entry in job.entries))
    return [
        *prefix,
        "--no-conf",  # ignore ~/.aria2/aria2.conf
        "-i", str(url_list), "-d", str(job.dest),
        "-j", str(job.concurrency),  # --max-concurrent-downloads
        # One connection per file, no splitting, like the others; in the split scenario
        # as many connections per file as downloader --split gets.
        f"-x{job.split}", f"-s{job.split}", "--min-split-size=1M",
        "--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
        "--allow-overwrite=true", "--auto-file-renaming=false",
        "--file-allocation=none",  # default 'prealloc' writes every file twice
        "--auto-save-interval=0",  # no periodic .aria2 control-file writes
    ]


# -- wget2 -----------------------------------------------------------------------


def wget2_command(prefix: list[str], job: Job) -> list[str]:
    url_list = _write_lines(job.scratch / "wget2.txt", (entry.url for entry in job.entries))
    has_query = any("?" in entry.url for entry in job.entries)
    return [
        *prefix,
        "--no-config",  # ignore ~/.wget2rc
        "-i", str(url_list), "-P", str(job.dest),
        "--no-directories",  # flat names: 1.99.1 otherwise keeps the URL's directories (DEST/small/f1.bin)
        f"--max-threads={job.concurrency}",
        "-q", "--no-robots",
        "--no-ocsp", "--no-hsts", "--no-hpkp",  # otherwise it creates ~/.wget-ocsp* even for http://
        "--no-netrc", "--no-cookies",
        # Save .../f1.bin?delay=1 as f1.bin, not 'f1.bin?delay=1'. In 1.99.1 this option
        # also forces the URL's directories, whatever -nd or --cut-dirs say: see wget2_layout.
        *(["--cut-file-get-vars"] if has_query else []),
    ]


def wget2_layout(entry: Entry) -> str:
    """wget2 writes flat names, except with --cut-file-get-vars (URLs with a query): the URL's path."""
    return urlsplit(entry.url).path.lstrip("/") if "?" in entry.url else entry.name


# -- the table of tools ----------------------------------------------------------


def locate_binary(name: str) -> Callable[[], list[str] | None]:
    def locate() -> list[str] | None:
        found = shutil.which(name)
        return [found] if found else None

    return locate


def first_line_of_version(prefix: list[str]) -> str:
    """``curl 7.88.1``, ``aria2 version 1.36.0``, ``GNU Wget2 1.99.1``: the version line, trimmed."""
    line = _first_line([*prefix, "--version"]) or prefix[0]
    return line.split(" (")[0].split(" - ")[0]


TOOLS: tuple[Tool, ...] = (
    Tool("downloader-asyncio", "downloader (asyncio)", locate_downloader, downloader_command("asyncio"),
         downloader_version),
    Tool("downloader-threads", "downloader (threads)", locate_downloader, downloader_command("threads"),
         downloader_version),
    Tool("curl", "curl --parallel", locate_binary("curl"), curl_command, first_line_of_version),
    Tool("aria2c", "aria2c", locate_binary("aria2c"), aria2c_command, first_line_of_version),
    Tool("wget2", "wget2", locate_binary("wget2"), wget2_command, first_line_of_version, wget2_layout),
)

ALIASES: dict[str, tuple[str, ...]] = {
    "downloader": ("downloader-asyncio", "downloader-threads"),
    "asyncio": ("downloader-asyncio",),
    "threads": ("downloader-threads",),
    "aria2": ("aria2c",),
}


def select_tools(spec: str | None) -> list[Tool]:
    """Tools named in a comma-separated ``spec`` (keys or aliases), in table order; all if None."""
    if not spec:
        return list(TOOLS)
    wanted: set[str] = set()
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        keys = ALIASES.get(word, (word,))
        unknown = [k for k in keys if k not in {tool.key for tool in TOOLS}]
        if unknown:
            known = ", ".join([tool.key for tool in TOOLS] + list(ALIASES))
            raise SystemExit(f"unknown tool {word!r}; known: {known}")
        wanted.update(keys)
    return [tool for tool in TOOLS if tool.key in wanted]


def _write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(f"{line}\n")
    return path


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""
