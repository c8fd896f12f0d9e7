#!/usr/bin/env python3
"""Benchmark `downloader` against curl, aria2c and wget2 on the same URL lists.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python bench/run.py [--scenario NAME ...] [--tools a,b,...] [--repeat N]
                                  [--markdown FILE] [--server auto|nginx|builtin]

What is measured, for each scenario and each tool:

* wall seconds: from just before the tool's process is started until it is
  reaped, so start-up (e.g. Python's import time) counts, as a user would see it;
* CPU seconds: user + system time of that child process, and peak RSS: its
  ``ru_maxrss``; both come from ``os.wait4(pid)`` on the child itself (not
  ``RUSAGE_CHILDREN``, which would add up every tool run so far);
* files/s and MB/s (10^6 bytes) derived from the wall time;
* verified: after every run the size and sha256 of every file in the
  destination are compared with the source's. Failures, timeouts and wrong
  files are shown in the table, never dropped.

How: every server listens on 127.0.0.1 and is started by this script. nginx
(when installed) serves random files generated once per scenario into a temp
dir; the ``latency`` scenario, whose answers are delayed by 1 s, uses the
package's own test server (``python -m downloader.testing serve``), which is
also the fallback for everything when nginx is missing. Each tool downloads into
an empty directory that is deleted after the run; nothing else is dropped
(page caches stay warm: the served files are in memory for every tool alike).
With ``--repeat N`` the tools run in rotated order in each repetition and every
number in the table is the median over the N runs. Each run is killed after
``--timeout`` seconds and recorded as failed.

The tools' exact command lines are in bench/tools.py; bench/README.md says why.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run_measured  # noqa: E402
from report import RunResult, machine_summary, markdown_table, skipped_row, summarize, text_table, today  # noqa: E402
from scenarios import SCENARIOS, Entry, GiB, MiB, Scenario, builtin_hashes, generate_files, verify  # noqa: E402
from servers import RunningServer, find_nginx, install_nginx, start_builtin, start_nginx  # noqa: E402
from tools import REPO, Job, Tool, select_tools  # noqa: E402

DISK_MARGIN = 512 * MiB
TRASH_MIN_FREE = 8 * GiB
"""Deleting of many-file directories is deferred to the end only while this much disk is free."""
SLOW_FILE_CREATION = 250e-6
"""Seconds per 16 KiB file above which the harness warns that the filesystem dominates."""
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                        help="scenario to run (repeatable; default: all)")
    parser.add_argument("--tools", help="comma-separated tools: downloader-asyncio, downloader-threads, "
                        "curl, aria2c, wget2, or 'downloader' for both engines (default: all)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per tool; report medians")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--server", choices=("auto", "nginx", "builtin"), default="auto",
                        help="server for all but the latency scenario (default: nginx if installed)")
    parser.add_argument("--install", action="store_true", help="apt-get install nginx if missing (root only)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a tool run is killed")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the temp dir for served and downloaded files goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


@dataclass
class Servers:
    """Starts each server the first time a scenario needs it; stops them all on exit."""

    work: Path
    python: str
    nginx_binary: str | None
    stack: contextlib.ExitStack
    _running: dict[str, RunningServer] = field(default_factory=dict)

    def for_scenario(self, scenario: Scenario, choice: str) -> RunningServer:
        kind = "builtin" if scenario.builtin_only or choice == "builtin" or not self.nginx_binary else "nginx"
        if kind not in self._running:
            if kind == "nginx":
                assert self.nginx_binary
                server = start_nginx(self.nginx_binary, self.work / "www", self.work / "nginx")
            else:
                server = start_builtin(self.python, REPO, self.work / "builtin")
            self.stack.callback(server.stop)
            self._running[kind] = server
            print(f"server: {server.description} at {server.base_url}")
        return self._running[kind]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on kill as on Ctrl-C
    scenarios = [SCENARIOS[name] for name in (args.scenario or SCENARIOS)]
    tools = available_tools(select_tools(args.tools))
    if not tools:
        print("no tool to run")
        return 1
    nginx = resolve_nginx(args.server, args.install)
    rows: list[dict[str, str]] = []
    servers_used: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        args.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="downloader-bench-", dir=args.workdir))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        servers = Servers(work, package_python(), nginx, stack)
        try:
            for scenario in scenarios:
                rows += run_scenario(scenario, tools, servers, args, work, servers_used)
        except KeyboardInterrupt:
            print(f"\ninterrupted; stopping servers and removing {work}; finished scenarios only:")
            status = 130
        else:
            status = 0
    if rows:
        print()
        print(text_table(rows))
    if rows and args.markdown:
        write_markdown(args.markdown, rows, tools, servers_used, args.repeat, args.workdir)
    return status


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def available_tools(tools: Sequence[Tool]) -> list[tuple[Tool, list[str]]]:
    """Each tool that is installed, with the command prefix that runs it."""
    found = []
    for tool in tools:
        prefix = tool.locate()
        if prefix is None:
            print(f"note: {tool.name} is not installed; skipped")
        else:
            found.append((tool, prefix))
    return found


def resolve_nginx(choice: str, install: bool) -> str | None:
    if choice == "builtin":
        return None
    nginx = find_nginx() or (install_nginx() if install else None)
    if nginx is None:
        if choice == "nginx":
            raise SystemExit("nginx is not installed (try --install as root)")
        print("note: nginx is not installed; using the builtin server for every scenario")
    return nginx


def package_python() -> str:
    """The python that can import ``downloader.testing``: the repo's venv if there is one."""
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def run_scenario(scenario: Scenario, tools: Sequence[tuple[Tool, list[str]]], servers: Servers,
                 args: argparse.Namespace, work: Path, servers_used: dict[str, str]) -> list[dict[str, str]]:
    print(f"\n== {scenario.name}: {scenario.description}")
    try:
        server = servers.for_scenario(scenario, args.server)
    except (RuntimeError, OSError) as error:
        print(f"skipping {scenario.name}: no server: {error}")
        return [skipped_row(tool.name, scenario, "no server") for tool, _ in tools]
    served = scenario.total_bytes if server.kind == "nginx" else 0
    needed, free = served + scenario.total_bytes + DISK_MARGIN, shutil.disk_usage(work).free
    if free < needed:
        print(f"skipping {scenario.name}: needs {needed / 2**30:.1f} GiB free in {work}, has {free / 2**30:.1f}")
        return [skipped_row(tool.name, scenario, "not enough disk") for tool, _ in tools]
    servers_used[scenario.name] = server.description
    if scenario.count >= 100:
        warn_if_file_creation_is_slow(work)
    try:
        entries = prepare_entries(scenario, server, work / "www" / scenario.name)
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"skipping {scenario.name}: cannot prepare its files: {error}")
        return [skipped_row(tool.name, scenario, "no files") for tool, _ in tools]
    try:
        runs = run_rotated(scenario, entries, tools, args, work)
    finally:
        dispose(work / "www" / scenario.name, scenario, work)
    return [summarize(tool.name, scenario, runs[tool.key]) for tool, _ in tools]


def warn_if_file_creation_is_slow(work: Path, count: int = 300) -> None:
    """Time creating ``count`` 16 KiB files in ``work``; warn when the filesystem makes that slow."""
    probe = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    for i in range(count):
        (probe / f"p{i}").write_bytes(bytes(16 * 1024))
    per_file = (time.perf_counter() - start) / count
    dispose(probe, SCENARIOS["small"], work)
    if per_file > SLOW_FILE_CREATION:
        print(f"WARNING: creating a file in {work} takes {per_file * 1e6:.0f} us right now (more than "
              f"{SLOW_FILE_CREATION * 1e6:.0f}); small-file results will mostly measure the filesystem. On ext4 "
              "without a journal this follows mass deletions for a few minutes: wait, or use --workdir /dev/shm.")


def prepare_entries(scenario: Scenario, server: RunningServer, served_dir: Path) -> list[Entry]:
    """Make the scenario's files available on ``server`` and describe each one."""
    names = scenario.file_names()
    if server.kind == "nginx":
        print(f"generating {scenario.count} files in {served_dir} ...")
        files = generate_files(scenario, served_dir)
        return [Entry(f"{server.base_url}/{scenario.name}/{name}", name, size, sha) for name, size, sha in files]
    query = f"?delay={scenario.delay:g}" if scenario.delay else f"?rate={scenario.rate}" if scenario.rate else ""
    hashes = builtin_hashes(package_python(), [(name, scenario.size) for name in names], REPO)
    return [
        Entry(f"{server.base_url}/bytes/{scenario.size}/{name}{query}", name, scenario.size, sha)
        for name, sha in zip(names, hashes, strict=True)
    ]


def run_rotated(scenario: Scenario, entries: Sequence[Entry], tools: Sequence[tuple[Tool, list[str]]],
                args: argparse.Namespace, work: Path) -> dict[str, list[RunResult]]:
    """Run every tool ``--repeat`` times, starting each repetition with the next tool."""
    runs: dict[str, list[RunResult]] = {tool.key: [] for tool, _ in tools}
    for rep in range(args.repeat):
        shift = rep % len(tools)
        for tool, prefix in [*tools[shift:], *tools[:shift]]:
            result = run_once(tool, prefix, scenario, entries, work, args.timeout, rep)
            runs[tool.key].append(result)
            report_run(tool, scenario, rep, args.repeat, result, work)
    return runs


def run_once(tool: Tool, prefix: list[str], scenario: Scenario, entries: Sequence[Entry],
             work: Path, timeout: float, rep: int) -> RunResult:
    """One measured run of ``tool`` into an empty destination, verified and then disposed of."""
    dest, scratch, logs = work / "dest", work / "scratch" / tool.key, work / "logs"
    for directory in (dest, scratch):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    logs.mkdir(exist_ok=True)
    argv = tool.command(prefix, Job(entries, dest, scratch, scenario.concurrency, scenario.split))
    log_path = logs / f"{scenario.name}-{tool.key}-{rep}.log"
    os.sync()  # write back earlier files now, not during this run
    measurement = run_measured(argv, timeout=timeout, log_path=log_path, env=child_env(), cwd=scratch)
    verification = None if measurement.timed_out else verify(entries, dest, tool.layout)
    dispose(dest, scenario, work)
    return RunResult(measurement, verification)


def dispose(directory: Path, scenario: Scenario, work: Path) -> None:
    """Delete ``directory``, or, when it holds many small files, move it to work/trash.

    The trash is deleted when the harness exits. Reason: on ext4 without a journal
    (as on this project's machines), creating files within minutes of deleting
    thousands is several times slower (the inode allocator skips recently
    deleted inodes, ``recently_deleted()``), which would slow down every tool
    that runs after another tool's files were deleted.
    """
    if not directory.exists():
        return
    if scenario.count >= 100 and shutil.disk_usage(work).free > TRASH_MIN_FREE:
        trash = work / "trash"
        trash.mkdir(exist_ok=True)
        directory.rename(Path(tempfile.mkdtemp(dir=trash)) / directory.name)
    else:
        shutil.rmtree(directory, ignore_errors=True)


def child_env() -> dict[str, str]:
    """The harness's environment without proxy settings: every URL is on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def report_run(tool: Tool, scenario: Scenario, rep: int, repeat: int, result: RunResult, work: Path) -> None:
    """One progress line per run; for a failed run, a few bad files and the end of its output."""
    m = result.measurement
    status = "verified" if result.verified else f"FAILED: {result.problem()}"
    usage = "" if m.timed_out else f", {m.cpu:6.2f} s CPU, {m.maxrss_kib / 1024:7.1f} MiB RSS"
    print(f"  {tool.name:<22} run {rep + 1}/{repeat}: {m.wall:7.2f} s wall{usage}, {status}")
    if result.verified:
        return
    if result.verification and result.verification.bad:
        print("    e.g. " + "; ".join(result.verification.bad[:3]))
    log = (work / "logs" / f"{scenario.name}-{tool.key}-{rep}.log").read_text(errors="replace").strip()
    if log:
        print("    output (end):\n" + "\n".join("      " + line for line in log[-1500:].splitlines()))


def filesystem_of(path: Path) -> str:
    """``ext4 on /dev/vda``: the type and device of the mount that holds ``path``."""
    best = ("", "?", "?")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            device, mount_point, fstype = line.split()[:3]
            if path.resolve().is_relative_to(mount_point) and len(mount_point) >= len(best[0]):
                best = (mount_point, fstype, device)
    return f"{best[1]} on {best[2]}"


def write_markdown(path: Path, rows: Sequence[dict[str, str]], tools: Sequence[tuple[Tool, list[str]]],
                   servers_used: dict[str, str], repeat: int, workdir: Path) -> None:
    """The table as Markdown, under a line saying when, on what machine and against which server."""
    by_server: dict[str, list[str]] = {}
    for scenario, description in servers_used.items():
        by_server.setdefault(description, []).append(scenario)
    server_text = "; ".join(f"{d} on 127.0.0.1 ({', '.join(s)})" for d, s in by_server.items()) or "none"
    runs = f"median of {repeat} runs" if repeat > 1 else "1 run each"
    versions = dict.fromkeys(tool.version(prefix) for tool, prefix in tools)  # ordered, no duplicates
    ran = [SCENARIOS[name] for name in dict.fromkeys(row["scenario"] for row in rows)]
    header = [
        f"Measured {today()} on {machine_summary()}; server: {server_text}; "
        f"files written to {workdir} ({filesystem_of(workdir)}); {runs}.",
        "",
        f"Tools: {'; '.join(versions)}. Scenarios: {'; '.join(f'{s.name} = {s.description}' for s in ran)}.",
    ]
    path.write_text(markdown_table(rows, header))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
