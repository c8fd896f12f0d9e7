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


def summarize(tool: str, scenario: Scenario, runs: Sequence[RunResult]) -> dict[str, str]:
    """One table row: medians over the runs that completed (exit 0, no timeout).

    When no run completed, the numbers are medians over the runs that failed, and
    the rates are left out, since the rate of a failed download means nothing. A
    run killed by the timeout has a wall time but no CPU time or peak RSS.
    """
    completed = [r.measurement for r in runs if r.measurement.completed]
    basis = completed or [r.measurement for r in runs]
    reaped = [m for m in basis if not m.timed_out]
    wall = statistics.median(m.wall for m in basis)
    return {
        "tool": tool,
        "scenario": scenario.name,
        "wall s": f"{wall:.2f}",
        "CPU s": f"{statistics.median(m.cpu for m in reaped):.2f}" if reaped else "-",
        "peak RSS MiB": f"{statistics.median(m.maxrss_kib for m in reaped) / 1024:.1f}" if reaped else "-",
        "files/s": _rate(scenario.count / wall) if completed else "-",
        "MB/s": _rate(scenario.total_bytes / wall / 1e6) if completed else "-",
        "verified": _verified_cell(runs),
    }


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


def skipped_row(tool: str, scenario: Scenario, reason: str) -> dict[str, str]:
    row = {column: "-" for column in COLUMNS}
    row.update(tool=tool, scenario=scenario.name, verified=f"skipped: {reason}")
    return row


def text_table(rows: Sequence[dict[str, str]]) -> str:
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in COLUMNS}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(
            cells[c].rjust(widths[c]) if c in RIGHT_ALIGNED else cells[c].ljust(widths[c]) for c in COLUMNS
        ).rstrip()

    rule = "  ".join("-" * widths[c] for c in COLUMNS)
    return "\n".join([line({c: c for c in COLUMNS}), rule, *(line(row) for row in rows)])


def markdown_table(rows: Sequence[dict[str, str]], header: Sequence[str]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    align = "|" + "|".join("---:" if c in RIGHT_ALIGNED else "---" for c in COLUMNS) + "|"
    body = ["| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    return "\n".join([*header, "", head, align, *body, ""])


def ratio_lines(rows: Sequence[dict[str, str]], ours: str = "downloader") -> list[str]:
    """Per scenario, how fast each of our rows is next to every other tool of the same run:
    their median wall time over ours (the same work, so 2.00x means twice their speed),
    and our CPU seconds over theirs. Rows without a completed run are left out."""
    lines = []
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        done = [row for row in rows if row["scenario"] == scenario and row["files/s"] != "-"]
        mine = [row for row in done if row["tool"].startswith(ours)]
        others = [row for row in done if not row["tool"].startswith(ours)]
        if not mine or not others:
            continue
        parts = []
        for row in mine:
            speed = ", ".join(f"{float(o['wall s']) / float(row['wall s']):.2f}x {_short(o['tool'])}" for o in others)
            cpu = ", ".join(f"{_cpu_ratio(row, o)} {_short(o['tool'])}" for o in others)
            parts.append(f"{_engine(row['tool'])}: speed {speed}; CPU {cpu}")
        lines.append(f"- **{scenario}**: " + " | ".join(parts))
    return lines


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
