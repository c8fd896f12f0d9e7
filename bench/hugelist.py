"""The ``hugelist`` scenario: one very long list, a first run, then re-runs on the completed destination.

The list (generated into the work dir at run time, one pass of the distinct URLs
written ``repeats`` times, so never held in memory) holds ``count`` distinct URLs
of tiny files from the builtin server, each ``repeats`` times, round-robin
(line n is URL n mod count): every copy after the first finds the file done.
Per engine:

1. **first run** into an empty destination, the downloader's defaults: wall
   time, time from fork to the first request the server sees (target: within
   2 s, i.e. the list is not read before fetching starts), peak RSS of every
   process, requests sent; then every file is verified byte for byte;
2. **re-run** with ``--processes 1`` (when the option exists) on the completed
   destination: wall time, lines/s (lines / wall; target: 50,000 in one
   process), peak RSS of every process, and that the server received no
   request; the files are verified again;
3. **re-run** with the defaults (the automatic number of processes), the same.

The server is bench/countserve.py (``downloader.testing``'s server, counting
requests and noting when the first came), restarted for each engine. No
``--report``: it would write one JSON line per list line (gigabytes, and about
a third more time on a re-run); peak RSS is sampled from /proc instead (VmHWM of
every process in the run's session, every 0.2 s, see measure.py). --repeat does
not apply: a first run happens once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from measure import Measurement, run_measured
from report import markdown_table, rss_cell, text_table
from scenarios import Entry, Scenario, builtin_hashes, verify
from servers import RunningServer, free_port, start_counting
from tools import REPO, TOOLS, Tool, downloader_argv, unavailable

FIRST_REQUEST_TARGET = 2.0
"""Seconds from start to the server's first request."""
RERUN_TARGET = 50_000
"""Lines per second of a re-run on a completed destination, in one process."""
COLUMNS = ("tool", "run", "wall s", "CPU s", "first request s", "lines/s", "peak RSS MiB", "requests", "verified",
           "target")
RIGHT_ALIGNED = frozenset({"wall s", "CPU s", "first request s", "lines/s", "peak RSS MiB", "requests"})
SETTLE = 0.1
"""Seconds to wait after a run before reading the server's counters (it writes them every 20 ms)."""


@dataclass(frozen=True)
class Context:
    """What a hugelist run needs from the harness."""

    work: Path
    python: str
    timeout: float
    env: Mapping[str, str]
    dispose: Callable[[Path], None]
    """Gets rid of a directory of many files (run.py's dispose)."""


@dataclass(frozen=True)
class Counters:
    """What the counting server has seen: requests so far and when the first came (monotonic; -1: none)."""

    requests: int
    first_request: float

    @classmethod
    def read(cls, status: Path) -> Counters:
        """The counters as of now (after SETTLE, so that the server has written what it saw)."""
        time.sleep(SETTLE)
        deadline = time.monotonic() + 10
        while not status.exists() and time.monotonic() < deadline:  # a server just started
            time.sleep(SETTLE)
        requests, first = status.read_text().split()
        return cls(int(requests), float(first))


def engines_of(tools: Sequence[Tool]) -> list[str]:
    """The engines of the selected downloader tools (--dask ones aside), in order."""
    return list(dict.fromkeys(tool.engine for tool in tools if tool.engine and "--dask" not in tool.options))


def run_hugelist(scenario: Scenario, tools: Sequence[tuple[Tool, list[str]]], context: Context) -> list[dict[str, str]]:
    """First run and re-runs for each engine among ``tools``; one row per run."""
    engines = engines_of([tool for tool, _ in tools])
    if not engines:
        print(f"skipping {scenario.name}: it runs the downloader only, and no downloader tool is selected")
        return []
    prefix = next(prefix for tool, prefix in tools if tool.engine)
    base = context.work / scenario.name
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    print(f"hashing {scenario.count:,} files and writing {scenario.lines:,} lines into {base / 'urls.txt'} ...")
    entries = make_entries(scenario, f"http://127.0.0.1:{port}", context.python)
    url_list = write_list(base / "urls.txt", entries, scenario.repeats)
    rows: list[dict[str, str]] = []
    try:
        for engine in engines:
            server, status = start_counting(context.python, REPO, base / "server", port)
            try:
                rows += run_engine(engine, prefix, scenario, entries, url_list, status, context)
            finally:
                server.stop()
    finally:
        url_list.unlink(missing_ok=True)
    return rows


def make_entries(scenario: Scenario, base_url: str, python: str) -> list[Entry]:
    names = scenario.file_names()
    hashes = builtin_hashes(python, [(name, scenario.size) for name in names], REPO)
    return [Entry(f"{base_url}/bytes/{scenario.size}/{name}", name, scenario.size, sha)
            for name, sha in zip(names, hashes, strict=True)]


def write_list(path: Path, entries: Sequence[Entry], repeats: int) -> Path:
    """Write every entry's URL, in order, ``repeats`` times over: one pass is held, never the list."""
    one_pass = "".join(f"{entry.url}\n" for entry in entries).encode()
    with open(path, "wb") as out:
        for _ in range(repeats):
            out.write(one_pass)
    return path


def run_engine(engine: str, prefix: list[str], scenario: Scenario, entries: Sequence[Entry], url_list: Path,
               status: Path, context: Context) -> list[dict[str, str]]:
    default = _tool(f"downloader-{engine}")
    single = _tool(f"downloader-{engine}-p1")
    single_missing = unavailable(single, prefix)
    if single_missing:
        print(f"note: {single.name}: {single_missing}; the re-run in one process is the default's")
    dest = context.work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    rows = [run_one(default, "first run", prefix, scenario, entries, url_list, dest, status, context)]
    if not single_missing:
        rows.append(run_one(single, "re-run", prefix, scenario, entries, url_list, dest, status, context))
    rows.append(run_one(default, "re-run", prefix, scenario, entries, url_list, dest, status, context,
                        one_process=bool(single_missing)))
    context.dispose(dest)
    return rows


def _tool(key: str) -> Tool:
    return next(tool for tool in TOOLS if tool.key == key)


def run_one(tool: Tool, run: str, prefix: list[str], scenario: Scenario, entries: Sequence[Entry], url_list: Path,
            dest: Path, status: Path, context: Context, one_process: bool = False) -> dict[str, str]:
    """One measured run of ``tool`` over the list into ``dest``; its row."""
    assert tool.engine
    logs = context.work / "logs"
    logs.mkdir(exist_ok=True)
    scratch = context.work / "scratch" / tool.key
    scratch.mkdir(parents=True, exist_ok=True)
    argv = downloader_argv(prefix, url_list, dest, tool.engine, scenario.concurrency, tool.options)
    before = Counters.read(status)
    timeout = context.timeout * max(1.0, scenario.lines / 1e6)
    m = run_measured(argv, timeout=timeout, log_path=logs / f"{scenario.name}-{tool.key}-{run.replace(' ', '-')}.log",
                     env=context.env, cwd=scratch, sample_rss=True)
    after = Counters.read(status)
    verification = None if m.timed_out else verify(entries, dest)
    requests = after.requests - before.requests
    row = hugelist_row(tool.name, run, scenario, m, requests, before, after)
    problems = [] if m.completed else [f"exit {m.exit_code}" if not m.timed_out else f"timeout after {m.wall:.0f} s"]
    if verification is None or verification.bad:
        problems.append("not checked" if verification is None else f"{len(verification.bad)}/{verification.checked} "
                        f"files bad, e.g. {verification.bad[0]}")
    if run == "re-run" and requests:
        problems.append(f"{requests:,} requests sent")
    row["verified"] = f"NO: {', '.join(problems)}" if problems else "yes"
    row["target"] = target_cell(run, m, scenario, before, after, one_process or "--processes" in tool.options)
    first = f", first request after {row['first request s']} s" if run == "first run" else ""
    print(f"  {tool.name:<32} {run:<9}: {m.wall:8.2f} s wall, {m.cpu:7.2f} s CPU{first}, "
          f"{row['lines/s']} lines/s, RSS {row['peak RSS MiB']} MiB, {requests:,} requests, {row['verified']}")
    return row


def hugelist_row(tool: str, run: str, scenario: Scenario, m: Measurement, requests: int,
                 before: Counters, after: Counters) -> dict[str, str]:
    first = _first_request_after(m, before, after)
    processes = m.sampled_rss_kib or ((m.maxrss_kib,) if not m.timed_out else ())
    return {
        "tool": tool,
        "run": run,
        "wall s": f"{m.wall:.2f}",
        "CPU s": f"{m.cpu:.2f}" if not m.timed_out else "-",
        "first request s": f"{first:.2f}" if first is not None else "-",
        "lines/s": f"{scenario.lines / m.wall:,.0f}" if m.completed else "-",
        "peak RSS MiB": rss_cell([processes]) if processes else "-",
        "requests": f"{requests:,}",
    }


def _first_request_after(m: Measurement, before: Counters, after: Counters) -> float | None:
    """Seconds from the run's fork to the server's first request, when this run sent the first one."""
    if before.requests or after.first_request < 0 or not m.started:
        return None
    return after.first_request - m.started


def target_cell(run: str, m: Measurement, scenario: Scenario, before: Counters, after: Counters,
                one_process: bool) -> str:
    """Whether the run meets its target (first request within 2 s; a one-process re-run at 50,000 lines/s)."""
    if run == "first run":
        first = _first_request_after(m, before, after)
        met = first is not None and first <= FIRST_REQUEST_TARGET
        return f"first request <= {FIRST_REQUEST_TARGET:g} s: {'met' if met else 'NOT met'}"
    if one_process:
        met = m.completed and scenario.lines / m.wall >= RERUN_TARGET
        return f">= {RERUN_TARGET:,} lines/s: {'met' if met else 'NOT met'}"
    return "-"


def hugelist_text(rows: Sequence[dict[str, str]]) -> str:
    return text_table(rows, COLUMNS, RIGHT_ALIGNED)


def hugelist_markdown(rows: Sequence[dict[str, str]], scenario: Scenario) -> str:
    intro = (f"**hugelist**: {scenario.description}; -j {scenario.concurrency}. Peak RSS sampled from /proc "
             "(largest / sum over the processes); requests: what the server received during the run; "
             f"targets: first request within {FIRST_REQUEST_TARGET:g} s, a re-run in one process at "
             f"{RERUN_TARGET:,} lines/s or more.")
    return markdown_table(rows, [intro], COLUMNS, RIGHT_ALIGNED)
