"""The downloaders under test and the exact command line each one is given.

Every tool gets the same URL list, the same concurrency J, one connection per
file (no splitting a file into ranges), flat output names (the URL's last path
segment) in an empty destination directory, and no checksum checking of its own
(the harness verifies afterwards). Why each flag is there is said next to it and
in bench/README.md.
"""

from __future__ import annotations

import functools
import json
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
    engine: str | None = None
    """downloader's ``-e`` (None for the other tools)."""
    options: tuple[str, ...] = ()
    """downloader options beyond the common ones (``--processes 1``, ``--dask local:2``)."""
    needs_module: str | None = None
    """A module the tool's python must import for ``options`` to work (``distributed`` for --dask)."""
    scenarios: frozenset[str] | None = None
    """The only scenarios this tool runs in (None: every scenario)."""
    reported_rss: Callable[[Job], tuple[int, ...] | None] = lambda job: None
    """Peak RSS in KiB of each of the run's processes as the tool reports them (its own
    process first), or None: then the launcher's ``ru_maxrss`` is the figure."""

    def runs_in(self, scenario: str) -> bool:
        return self.scenarios is None or scenario in self.scenarios


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


REPORT_NAME = "report.jsonl"
"""downloader's --report, in the run's scratch directory: its summary line gives ``peak_rss``."""


def downloader_command(engine: str, options: Sequence[str] = ()) -> Callable[[list[str], Job], list[str]]:
    def command(prefix: list[str], job: Job) -> list[str]:
        # Plain URLs: the default output name is the URL's last path segment. No
        # size=/sha256= fields, so it does not verify anything the others don't.
        url_list = _write_lines(job.scratch / "urls.txt", (entry.url for entry in job.entries))
        # The defaults otherwise: a lone host may use every connection of the run.
        split = ["--split", str(job.split), "--min-split-size", "1M"] if job.split > 1 else []
        # The report is for peak_rss (every process of a --processes/--dask run). It costs
        # one JSON line per URL: little next to a download (hugelist, whose re-runs only
        # skip, goes without it).
        report = ["--report", str(job.scratch / REPORT_NAME)]
        return [*downloader_argv(prefix, url_list, job.dest, engine, job.concurrency, options), *split, *report]

    return command


def downloader_argv(prefix: Sequence[str], url_list: Path, dest: Path, engine: str, concurrency: int,
                    options: Sequence[str] = ()) -> list[str]:
    """The common part of every downloader command line."""
    return [*prefix, "-i", str(url_list), "-d", str(dest), "-e", engine, "-j", str(concurrency), "-q", *options]


def downloader_reported_rss(job: Job) -> tuple[int, ...] | None:
    """``peak_rss`` of the report's summary line, in KiB: the parent's, then each worker's.

    None when there is no report, no summary or no ``peak_rss`` (a downloader
    from before --processes): the launcher's ``ru_maxrss`` stands then.
    """
    summary = last_json_line(job.scratch / REPORT_NAME)
    peak = summary.get("peak_rss") if summary and summary.get("type") == "summary" else None
    if not isinstance(peak, dict) or not isinstance(peak.get("parent"), int):
        return None
    workers = [w for w in peak.get("workers") or [] if isinstance(w, int)]
    return tuple(round(size / 1024) for size in (peak["parent"], *workers))


def last_json_line(path: Path, tail: int = 64 * 1024) -> dict[str, object] | None:
    """The last line of a JSON Lines file, parsed (None if missing or not an object);
    reads only the file's last ``tail`` bytes."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail))
            lines = f.read().splitlines()
        value = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@functools.cache
def help_text(prefix: tuple[str, ...]) -> str:
    """``PREFIX --help``, to learn which options this build has."""
    try:
        done = subprocess.run([*prefix, "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def unavailable(tool: Tool, prefix: list[str]) -> str | None:
    """Why this build of an installed tool cannot run ``tool`` (an option it lacks, a
    module its python cannot import); None when it can."""
    text = help_text(tuple(prefix))
    missing = [option for option in tool.options if option.startswith("--") and option not in text]
    if missing:
        return f"{' '.join(prefix)} --help has no {', '.join(missing)} (not implemented yet?)"
    if tool.needs_module and not _can_import(python_of(prefix), tool.needs_module):
        return (f"{python_of(prefix)} cannot import {tool.needs_module} "
                f"(pip install 'dask[distributed]' into that environment)")
    return None


def python_of(prefix: Sequence[str]) -> str:
    """The python that runs a command prefix: the console script's ``#!`` line, or prefix[0]."""
    try:
        with open(prefix[0], "rb") as script:
            first = script.readline(1024)
    except OSError:
        return prefix[0]
    return first[2:].decode(errors="replace").strip() if first.startswith(b"#!") else prefix[0]


def _can_import(python: str, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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


DASK_CLUSTER = "local:2"
"""--dask: a distributed.LocalCluster of 2 worker processes, started by the downloader."""
DOWNLOADER_VARIANTS: tuple[tuple[str, str, tuple[str, ...], frozenset[str] | None], ...] = (
    # key suffix, name suffix, options, scenarios (None: all)
    ("", "", (), None),  # --processes left out: the automatic N (about the cores), when the option exists
    ("-p1", ", 1 process", ("--processes", "1"), None),
    ("-dask", f", dask {DASK_CLUSTER}", ("--dask", DASK_CLUSTER), frozenset({"cluster"})),
)


def downloader_tool(engine: str, key_suffix: str, name_suffix: str, options: tuple[str, ...],
                    scenarios: frozenset[str] | None) -> Tool:
    return Tool(
        f"downloader-{engine}{key_suffix}", f"downloader ({engine}{name_suffix})", locate_downloader,
        downloader_command(engine, options), downloader_version, engine=engine, options=options,
        needs_module="distributed" if "--dask" in options else None, scenarios=scenarios,
        reported_rss=downloader_reported_rss,
    )


TOOLS: tuple[Tool, ...] = (
    *(downloader_tool(engine, *variant) for variant in DOWNLOADER_VARIANTS for engine in ("asyncio", "threads")),
    Tool("curl", "curl --parallel", locate_binary("curl"), curl_command, first_line_of_version),
    Tool("aria2c", "aria2c", locate_binary("aria2c"), aria2c_command, first_line_of_version),
    Tool("wget2", "wget2", locate_binary("wget2"), wget2_command, first_line_of_version, wget2_layout),
)

ALIASES: dict[str, tuple[str, ...]] = {
    "downloader": tuple(tool.key for tool in TOOLS if tool.engine),
    "downloader-default": ("downloader-asyncio", "downloader-threads"),
    "downloader-p1": ("downloader-asyncio-p1", "downloader-threads-p1"),
    "downloader-dask": ("downloader-asyncio-dask", "downloader-threads-dask"),
    "asyncio": tuple(tool.key for tool in TOOLS if tool.engine == "asyncio"),
    "threads": tuple(tool.key for tool in TOOLS if tool.engine == "threads"),
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
