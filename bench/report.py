"""Turn runs into the result table (plain text for the terminal, Markdown for README.md)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from measure import Measurement
from scenarios import Scenario, Verification

COLUMNS = ("tool", "scenario", "wall s", "CPU s", "peak RSS MiB", "files/s", "MB/s", "verified")
RIGHT_ALIGNED = frozenset({"wall s", "CPU s", "peak RSS MiB", "files/s", "MB/s"})


@dataclass(frozen=True)
class RunResult:
    """One tool run of one scenario."""

    measurement: Measurement
    verification: Verification | None
    """None when the run timed out (its output is not worth hashing)."""
    reported_rss_kib: tuple[int, ...] | None = None
    """Peak RSS of each process of the run as the tool reported it (its own first), when it did."""

    @property
    def processes_rss_kib(self) -> tuple[int, ...]:
        """Peak RSS of each process: as reported by the tool, else the launcher's figure."""
        return self.reported_rss_kib or (self.measurement.maxrss_kib,)

    @property
    def verified(self) -> bool:
        return self.measurement.completed and self.verification is not None and self.verification.ok

    def problem(self) -> str:
        """What went wrong, in a few words; "" when nothing did."""
        m, v = self.measurement, self.verification
        if m.timed_out:
            return f"timeout after {m.wall:.0f} s"
        parts = []
        if m.exit_code != 0:
            parts.append(f"exit {m.exit_code}")
        if v is not None and v.bad:
            parts.append(f"{len(v.bad)}/{v.checked} files bad")
            if v.extra:
                parts.append(f"{v.extra} unexpected files")
        return ", ".join(parts)


def summarize(tool: str, scenario: Scenario, runs: Sequence[RunResult], key: str = "") -> dict[str, str]:
    """One table row: medians over the runs that completed (exit 0, no timeout).

    When no run completed, the numbers are medians over the runs that failed, and
    the rates are left out, since the rate of a failed download means nothing. A
    run killed by the timeout has a wall time but no CPU time or peak RSS. ``key``
    (the tool's --tools key) is kept in the row for the ratios; no column shows it.
    """
    completed = [r for r in runs if r.measurement.completed]
    basis = completed or list(runs)
    reaped = [r for r in basis if not r.measurement.timed_out]
    wall = statistics.median(r.measurement.wall for r in basis)
    return {
        "key": key,
        "tool": tool,
        "scenario": scenario.name,
        "wall s": f"{wall:.2f}",
        "CPU s": f"{statistics.median(r.measurement.cpu for r in reaped):.2f}" if reaped else "-",
        "peak RSS MiB": rss_cell([r.processes_rss_kib for r in reaped]),
        "files/s": _rate(scenario.count / wall) if completed else "-",
        "MB/s": _rate(scenario.total_bytes / wall / 1e6) if completed else "-",
        "verified": _verified_cell(runs),
    }


def rss_cell(runs: Sequence[Sequence[int]]) -> str:
    """Peak RSS in MiB, the median over runs of each run's processes (KiB): ``45.9`` for
    one process; ``48.2 / 131.0 (3 procs)`` (the largest / the sum) for several."""
    if not runs:
        return "-"
    largest = statistics.median(max(processes) for processes in runs) / 1024
    if all(len(processes) == 1 for processes in runs):
        return f"{largest:.1f}"
    total = statistics.median(sum(processes) for processes in runs) / 1024
    count = max(len(processes) for processes in runs)
    return f"{largest:.1f} / {total:.1f} ({count} procs)"


def _rate(value: float) -> str:
    """About three significant digits: 12,345 / 123 / 12.3 / 1.23 / 0.123."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _verified_cell(runs: Sequence[RunResult]) -> str:
    failed = [r for r in runs if not r.verified]
    if not failed:
        extra = max((r.verification.extra for r in runs if r.verification), default=0)
        return "yes" if not extra else f"yes (+{extra} stray files)"
    problems = sorted({r.problem() for r in failed})
    share = f" in {len(failed)}/{len(runs)} runs" if len(runs) > 1 else ""
    return f"NO: {'; '.join(problems)}{share}"


def skipped_row(tool: str, scenario: Scenario, reason: str, key: str = "") -> dict[str, str]:
    row = {column: "-" for column in COLUMNS}
    row.update(key=key, tool=tool, scenario=scenario.name, verified=f"skipped: {reason}")
    return row


def text_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS,
               right_aligned: frozenset[str] = RIGHT_ALIGNED) -> str:
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(
            cells[c].rjust(widths[c]) if c in right_aligned else cells[c].ljust(widths[c]) for c in columns
        ).rstrip()

    rule = "  ".join("-" * widths[c] for c in columns)
    return "\n".join([line({c: c for c in columns}), rule, *(line(row) for row in rows)])


def markdown_table(rows: Sequence[dict[str, str]], header: Sequence[str], columns: Sequence[str] = COLUMNS,
                   right_aligned: frozenset[str] = RIGHT_ALIGNED) -> str:
    head = "| " + " | ".join(columns) + " |"
    align = "|" + "|".join("---:" if c in right_aligned else "---" for c in columns) + "|"
    body = ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join([*header, "", head, align, *body, ""])


def ratio_lines(rows: Sequence[dict[str, str]], ours: str = "downloader") -> list[str]:
    """Per scenario, how fast each of our rows is next to every other tool of the same run:
    their median wall time over ours (the same work, so 2.00x means twice their speed),
    and our CPU seconds over theirs; then, per engine, the default number of processes
    next to ``--processes 1`` the same way. Rows without a completed run are left out."""
    lines = []
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        done = [row for row in rows if row["scenario"] == scenario and row["files/s"] != "-"]
        mine = [row for row in done if row["tool"].startswith(ours)]
        others = [row for row in done if not row["tool"].startswith(ours)]
        if mine and others:
            parts = []
            for row in mine:
                speed = ", ".join(f"{float(o['wall s']) / float(row['wall s']):.2f}x {_short(o['tool'])}"
                                  for o in others)
                cpu = ", ".join(f"{_cpu_ratio(row, o)} {_short(o['tool'])}" for o in others)
                parts.append(f"{_engine(row['tool'])}: speed {speed}; CPU {cpu}")
            lines.append(f"- **{scenario}**: " + " | ".join(parts))
        scale = _scale_out_parts(done, ours)
        if scale:
            lines.append(f"- **{scenario}**, default processes over `--processes 1`: " + " | ".join(scale))
    return lines


def _scale_out_parts(done: Sequence[dict[str, str]], ours: str) -> list[str]:
    """Per engine with both rows: speed (1-process wall over default wall) and CPU (default over 1-process)."""
    by_key = {row.get("key", ""): row for row in done}
    parts = []
    for engine in ("asyncio", "threads"):
        default, single = by_key.get(f"{ours}-{engine}"), by_key.get(f"{ours}-{engine}-p1")
        if default and single:
            speed = float(single["wall s"]) / float(default["wall s"])
            parts.append(f"{engine}: speed {speed:.2f}x, CPU {_cpu_ratio(default, single)}")
    return parts


def _short(tool: str) -> str:
    return tool.split()[0]


def _engine(tool: str) -> str:
    return tool[tool.find("(") + 1:tool.find(")")] if "(" in tool else tool


def _cpu_ratio(row: dict[str, str], other: dict[str, str]) -> str:
    try:
        return f"{float(row['CPU s']) / float(other['CPU s']):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "-"


def machine_summary() -> str:
    """``nproc``, total memory and CPU model of this machine, on one line."""
    return f"nproc {len(os.sched_getaffinity(0))}, {_total_memory_gib():.1f} GiB RAM, CPU {_cpu_model()}"


def today() -> str:
    return datetime.date.today().isoformat()


def _total_memory_gib() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()
