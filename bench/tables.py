"""Tabular lists at scale: one list of N rows (10^6 by default) in every format, read and planned.

    .venv/bin/python bench/tables.py                          # 10^6 rows: list, CSV, JSON Lines, Parquet
    .venv/bin/python bench/tables.py --rows 100000 --fetch-rows 20000 --markdown bench/results/tables.md

The same rows (URL, out, md5 and size of a tiny file of the package's test server) are
written as our URL list, a CSV, a JSON Lines file and a Parquet file (pyarrow's default
row groups: one of up to 1 Mi rows). For each format, each measured in a fresh process
(bench/measure.py: wall time, CPU time, peak RSS):

1. **read**: ``downloader.read_table`` over the whole file, nothing else: rows per second
   and the peak RSS of the reading process (a Parquet read includes pyarrow's ~70 MiB of
   libraries);
2. **dry run**: ``downloader -i FILE --dry-run --no-manifest`` with the column options:
   every row planned through the run's own admission (paths, collisions), nothing fetched;
3. with ``--fetch-rows M``: a real run of the first M rows against the counting test
   server (bench/countserve.py) into an empty destination, the md5 of every file checked
   by the run itself (exit status 0), and the requests the server received.

The point is the peak RSS: it must not depend on N (run it with two values of --rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from measure import Measurement, run_measured
from servers import free_port, start_counting
from tools import REPO

sys.path.insert(0, str(REPO))
from downloader.testing import body  # noqa: E402 - after the path is set

FORMATS = ("list", "csv", "jsonl", "parquet")
SUFFIX = {"list": "txt", "csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
COLUMNS = ["--out-column", "out", "--checksum-column", "md5", "--size-column", "size"]
SIZE = 16
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
READ = """
import sys, time
from downloader.tables import read_table
path = sys.argv[1]
options = {} if path.endswith(".txt") else {"out_column": "out", "checksum_column": "md5", "size_column": "size"}
started = time.perf_counter()
rows = sum(1 for _ in read_table(path, **options))
print(rows, time.perf_counter() - started)
"""


def row(i: int, base: str) -> tuple[str, str, str, int]:
    name = f"f{i:07d}.bin"
    return f"{base}/bytes/{SIZE}/{name}", f"d{i % 1000:03d}/{name}", hashlib.md5(body(name, SIZE)).hexdigest(), SIZE


def write_files(work: Path, rows: int, base: str, formats: list[str], tag: str) -> dict[str, Path]:
    """Every format's file of ``rows`` rows, written a slice at a time."""
    paths = {fmt: work / f"{tag}.{SUFFIX[fmt]}" for fmt in formats}
    texts = {fmt: open(paths[fmt], "w", encoding="utf-8", newline="") for fmt in formats if fmt != "parquet"}
    writer = None
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("url", pa.string()), ("out", pa.string()), ("md5", pa.string()), ("size", pa.int64())])
        writer = pq.ParquetWriter(paths["parquet"], schema)
    if "csv" in texts:
        texts["csv"].write("url,out,md5,size\r\n")
    try:
        for start in range(0, rows, 100_000):
            chunk = [row(i, base) for i in range(start, min(rows, start + 100_000))]
            if "list" in texts:
                texts["list"].write("".join(f"{u}   out={o}   md5={m}   size={s}\n" for u, o, m, s in chunk))
            if "csv" in texts:
                texts["csv"].write("".join(f"{u},{o},{m},{s}\r\n" for u, o, m, s in chunk))
            if "jsonl" in texts:
                texts["jsonl"].write("".join(json.dumps({"url": u, "out": o, "md5": m, "size": s, "caption": "x"}) + "\n"
                                             for u, o, m, s in chunk))
            if writer is not None:
                import pyarrow as pa

                columns = list(zip(*chunk))
                writer.write_table(pa.table({"url": columns[0], "out": columns[1], "md5": columns[2],
                                             "size": pa.array(columns[3], pa.int64())}))
    finally:
        for text in texts.values():
            text.close()
        if writer is not None:
            writer.close()
    return paths


def mib(m: Measurement) -> str:
    return f"{max((m.maxrss_kib, *m.sampled_rss_kib)) / 1024:.1f}"


def measure_read(path: Path, work: Path, timeout: float) -> dict[str, str]:
    m = run_measured([sys.executable, "-c", READ, str(path)], timeout=timeout, log_path=work / "read.log",
                     env=ENV, sample_rss=True)
    rows, seconds = (work / "read.log").read_text().split()[-2:] if m.completed else ("0", "1")
    return {"step": "read", "wall s": f"{m.wall:.2f}", "rows/s": f"{int(rows) / float(seconds):,.0f}",
            "peak RSS MiB": mib(m), "ok": "yes" if m.completed else f"NO (exit {m.exit_code})"}


def measure_dry_run(fmt: str, path: Path, rows: int, work: Path, timeout: float) -> dict[str, str]:
    argv = [sys.executable, "-m", "downloader", "-i", str(path), "--dry-run", "--no-manifest", "-d", str(work / "dest")]
    log = work / "dry-run.log"
    m = run_measured(argv + ([] if fmt == "list" else COLUMNS), timeout=timeout, log_path=log,
                     env=ENV, sample_rss=True)
    last = log.read_text().splitlines()[-1] if log.exists() else ""
    ok = m.completed and last.startswith(f"download {rows},")
    log.unlink(missing_ok=True)
    return {"step": "dry run", "wall s": f"{m.wall:.2f}", "rows/s": f"{rows / m.wall:,.0f}", "peak RSS MiB": mib(m),
            "ok": "yes" if ok else f"NO (exit {m.exit_code}: {last[:60]})"}


def measure_fetch(fmt: str, path: Path, rows: int, work: Path, status: Path, timeout: float) -> dict[str, str]:
    dest = work / "fetched"
    shutil.rmtree(dest, ignore_errors=True)
    before = int(status.read_text().split()[0])
    argv = [sys.executable, "-m", "downloader", "-i", str(path), "-q", "--no-manifest", "-d", str(dest)]
    m = run_measured(argv + ([] if fmt == "list" else COLUMNS), timeout=timeout, log_path=work / "fetch.log",
                     env=ENV, sample_rss=True)
    time.sleep(0.2)
    requests = int(status.read_text().split()[0]) - before
    files = sum(1 for p in dest.rglob("*.bin"))
    shutil.rmtree(dest, ignore_errors=True)
    ok = m.completed and files == requests == rows
    return {"step": f"fetch {rows:,}", "wall s": f"{m.wall:.2f}", "rows/s": f"{rows / m.wall:,.0f}",
            "peak RSS MiB": mib(m), "ok": "yes" if ok else f"NO (exit {m.exit_code}, {files} files, {requests} requests)"}


def table(results: list[dict[str, str]]) -> str:
    columns = ["format", "step", "wall s", "rows/s", "peak RSS MiB", "ok"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in results]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fetch-rows", type=int, default=0, help="rows of the real run (0: none)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    work = Path(tempfile.mkdtemp(prefix="bench-tables-", dir=args.workdir))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: list[dict[str, str]] = []
    try:
        print(f"writing {args.rows:,} rows in {', '.join(formats)} into {work} ...")
        paths = write_files(work, args.rows, base, formats, "rows")
        for fmt in formats:
            for measured in (measure_read(paths[fmt], work, args.timeout),
                             measure_dry_run(fmt, paths[fmt], args.rows, work, args.timeout)):
                results.append({"format": fmt, **measured})
                print(f"  {fmt:<8} {measured}")
        if args.fetch_rows:
            few = write_files(work, args.fetch_rows, base, formats, "few")
            server, status = start_counting(sys.executable, REPO, work / "server", port)
            try:
                for fmt in formats:
                    measured = measure_fetch(fmt, few[fmt], args.fetch_rows, work, status, args.timeout)
                    results.append({"format": fmt, **measured})
                    print(f"  {fmt:<8} {measured}")
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(results)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{args.rows:,} rows\n\n{text}\n")
    return 0 if all(r["ok"] == "yes" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
