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
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run_measured  # noqa: E402
from report import RunResult, machine_summary, markdown_table, skipped_row, summarize, text_table, today  # noqa: E402
from scenarios import MiB, SCENARIOS, Entry, Scenario, builtin_hashes, generate_files, verify  # noqa: E402
from servers import RunningServer, find_nginx, install_nginx, start_builtin, start_nginx  # noqa: E402
from tools import REPO, Job, Tool, select_tools  # noqa: E402

DISK_MARGIN = 512 * MiB
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
            print("\ninterrupted; stopping servers and removing", work)
            return 130
    print()
    print(text_table(rows))
    if args.markdown:
        write_markdown(args.markdown, rows, tools, servers_used, args.repeat)
    return 0


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
    entries = prepare_entries(scenario, server, work / "www" / scenario.name)
    try:
        runs = run_rotated(scenario, entries, tools, args, work)
    finally:
        shutil.rmtree(work / "www" / scenario.name, ignore_errors=True)
    return [summarize(tool.name, scenario, runs[tool.key]) for tool, _ in tools]


def prepare_entries(scenario: Scenario, server: RunningServer, served_dir: Path) -> list[Entry]:
    """Make the scenario's files available on ``server`` and describe each one."""
    names = scenario.file_names()
    if server.kind == "nginx":
        print(f"generating {scenario.count} files in {served_dir} ...")
        files = generate_files(scenario, served_dir)
        return [Entry(f"{server.base_url}/{scenario.name}/{name}", name, size, sha) for name, size, sha in files]
    query = f"?delay={scenario.delay:g}" if scenario.delay else ""
    hashes = builtin_hashes(package_python(), [(name, scenario.size) for name in names], REPO)
    return [
        Entry(f"{server.base_url}/bytes/{scenario.size}/{name}{query}", name, scenario.size, sha)
        for name, sha in zip(names, hashes)
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
    """One measured run of ``tool`` into an empty destination, verified and then deleted."""
    dest, scratch, logs = work / "dest", work / "scratch" / tool.key, work / "logs"
    for directory in (dest, scratch):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    logs.mkdir(exist_ok=True)
    argv = tool.command(prefix, Job(entries, dest, scratch, scenario.concurrency))
    log_path = logs / f"{scenario.name}-{tool.key}-{rep}.log"
    os.sync()  # write back the previous run's files now, not during this one
    measurement = run_measured(argv, timeout=timeout, log_path=log_path, env=child_env(), cwd=scratch)
    verification = None if measurement.timed_out else verify(entries, dest)
    shutil.rmtree(dest, ignore_errors=True)
    return RunResult(measurement, verification)


def child_env() -> dict[str, str]:
    """The harness's environment without proxy settings: every URL is on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def report_run(tool: Tool, scenario: Scenario, rep: int, repeat: int, result: RunResult, work: Path) -> None:
    m = result.measurement
    status = "verified" if result.verified else f"FAILED: {result.problem()}"
    print(f"  {tool.name:<22} run {rep + 1}/{repeat}: {m.wall:7.2f} s wall, {m.cpu:6.2f} s CPU, "
          f"{m.maxrss_kib / 1024:7.1f} MiB RSS, {status}")
    if result.verified:
        return
    if result.verification and result.verification.bad:
        print("    e.g. " + "; ".join(result.verification.bad[:3]))
    log = (work / "logs" / f"{scenario.name}-{tool.key}-{rep}.log").read_text(errors="replace").strip()
    if log:
        print("    output (end):\n" + "\n".join("      " + line for line in log[-1500:].splitlines()))


def write_markdown(path: Path, rows: Sequence[dict[str, str]], tools: Sequence[tuple[Tool, list[str]]],
                   servers_used: dict[str, str], repeat: int) -> None:
    """The table as Markdown, under a line saying when, on what machine and against which server."""
    by_server: dict[str, list[str]] = {}
    for scenario, description in servers_used.items():
        by_server.setdefault(description, []).append(scenario)
    server_text = "; ".join(f"{d} on 127.0.0.1 ({', '.join(s)})" for d, s in by_server.items()) or "none"
    runs = f"median of {repeat} runs" if repeat > 1 else "1 run each"
    versions = dict.fromkeys(tool.version(prefix) for tool, prefix in tools)  # ordered, no duplicates
    ran = [SCENARIOS[name] for name in dict.fromkeys(row["scenario"] for row in rows)]
    header = [
        f"Measured {today()} on {machine_summary()}; server: {server_text}; {runs}.",
        "",
        f"Tools: {'; '.join(versions)}. Scenarios: {'; '.join(f'{s.name} = {s.description}' for s in ran)}.",
    ]
    path.write_text(markdown_table(rows, header))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
