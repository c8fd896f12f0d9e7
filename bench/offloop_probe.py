"""Probe: 4 x 512 MiB from nginx on 127.0.0.1, the asyncio read on the loop against engines.offloop.

Each variant is a separate process, run in turns (round 1: every variant, round 2: the
same, starting one later, ...), so speed drifting on a shared machine and the previous
run's writeback hit them alike; the medians are printed.
Two figures each: the whole process (wall and CPU from wait4, startup included, as
the C tools are measured) and the transfer alone (timed inside the Python process).

    python bench/offloop_probe.py [--rounds 5] [--files 4] [--mib 512] [--variants loop,splice,...]

Variants: ``loop`` (aiohttp iter_chunked + os.pwrite on the loop), ``splice`` (off the
loop, zero-copy), ``copy`` (off the loop, recv_into), ``copy+sha256`` (recv_into and
hashing, as a download with sha256= would), a ``:BYTES`` suffix setting the splice
or copy size (``splice:262144``), and ``wget2`` / ``curl`` when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, find_nginx, start_builtin, start_nginx  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = "loop,loop+sha256,splice,copy,copy+sha256,wget2,curl"
CHUNK = 512 * 1024  # the engine's default chunk_size and read_bufsize


# -- one variant, in its own process ---------------------------------------------------


async def _download_all(urls: list[str], dest: Path, variant: str) -> list[str]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=len(urls))
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, read_bufsize=CHUNK) as session:
        return await asyncio.gather(*(_download(session, url, dest / url.rsplit("/", 1)[1], variant) for url in urls))


async def _download(session: object, url: str, path: Path, variant: str) -> str:
    """Fetch ``url`` into ``path``; the sha256 when the variant hashes, else ''."""
    import aiohttp

    from downloader.engines import offloop

    assert isinstance(session, aiohttp.ClientSession)
    kind, _, size = variant.partition(":")
    if size:
        offloop.SPLICE_CHUNK = offloop.COPY_CHUNK = int(size)
    sha = hashlib.sha256() if kind.endswith("+sha256") else None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        async with session.get(url) as response:
            assert response.status == 200 and response.content_length is not None
            if kind.startswith("loop"):
                await _on_loop(response, fd, sha)
            else:
                on_bytes = sha.update if sha is not None else (lambda view: None) if kind.startswith("copy") else None
                got = await offloop.receive_off_loop(response, fd, 0, response.content_length, timeout=30,
                                                     on_bytes=on_bytes, on_count=lambda n: None)
                assert got == response.content_length, (got, response.content_length)
    finally:
        os.close(fd)
    return sha.hexdigest() if sha is not None else ""


async def _on_loop(response: object, fd: int, sha: hashlib._Hash | None) -> None:
    import aiohttp

    assert isinstance(response, aiohttp.ClientResponse)
    position = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        view = memoryview(chunk)
        while view:
            n = os.pwrite(fd, view, position)
            view, position = view[n:], position + n
        if sha is not None:
            sha.update(chunk)


def child(args: argparse.Namespace) -> int:
    """Download, then print one JSON line: the transfer's own seconds and CPU seconds."""
    import aiohttp  # noqa: F401  imported before the clock starts

    import downloader.engines.offloop  # noqa: F401
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    digests = asyncio.run(_download_all(args.urls, Path(args.dest), args.variant))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "digests": digests}))
    return 0


# -- the parent: files, server, turns, table ---------------------------------------------


def make_files(root: Path, count: int, size: int) -> dict[str, str]:
    """``count`` files of ``size`` bytes in ``root``; name -> sha256."""
    from downloader.testing import iter_body

    digests = {}
    for i in range(count):
        name, sha = f"big{i}.bin", hashlib.sha256()
        with open(root / name, "wb") as out:
            for piece in iter_body(name, 0, size, 4 << 20):
                out.write(piece)
                sha.update(piece)
        digests[name] = sha.hexdigest()
    return digests


def command(variant: str, urls: list[str], dest: Path, scratch: Path) -> list[str] | None:
    if variant == "wget2":
        found = shutil.which("wget2")
        listing = scratch / "wget2.txt"
        listing.write_text("".join(u + "\n" for u in urls))
        return None if found is None else [found, "--no-config", "-i", str(listing), "-P", str(dest), "--no-directories",
                          f"--max-threads={len(urls)}", "-q", "--no-robots", "--no-ocsp", "--no-hsts", "--no-hpkp",
                          "--no-netrc", "--no-cookies"]
    if variant == "curl":
        found = shutil.which("curl")
        config = scratch / "curl.config"
        config.write_text("".join(f'url = "{u}"\noutput = "{dest / u.rsplit("/", 1)[1]}"\n' for u in urls))
        return None if found is None else [found, "-q", "--parallel", "--parallel-max", str(len(urls)), "--parallel-immediate",
                          "-K", str(config), "-s", "-S", "--no-progress-meter", "--fail"]
    return [sys.executable, __file__, "--child", "--variant", variant, "--dest", str(dest), *urls]


def run_once(cmd: list[str], dest: Path, expected: dict[str, str], size: int) -> dict[str, float]:
    """One timed run into an empty ``dest``; checked, then emptied."""
    dest.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {process.returncode}")
    for name in expected:
        if (dest / name).stat().st_size != size:
            raise RuntimeError(f"{name}: {(dest / name).stat().st_size} bytes, not {size}")
    figures = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}
    if out.strip():
        inner = json.loads(out)
        figures |= {"inner_wall": inner["wall"], "inner_cpu": inner["cpu"]}
        if any(inner["digests"]) and inner["digests"] != list(expected.values()):
            raise RuntimeError("sha256 mismatch")
    shutil.rmtree(dest)
    return figures


def report(results: dict[str, list[dict[str, float]]], total: int) -> None:
    gb = total / 1e9
    reference = statistics.median(r["wall"] for r in results["wget2"]) if results.get("wget2") else None
    print(f"\n{'variant':<16}{'MB/s':>8}{'x wget2':>9}{'CPU s/GB':>10}{'user+sys s':>11}"
          f"{'| in-process MB/s':>18}{'CPU s/GB':>10}")
    for variant, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        ratio = f"{reference / wall:9.2f}" if reference else f"{'-':>9}"
        line = f"{variant:<16}{total / wall / 1e6:8.0f}{ratio}{cpu / gb:10.2f}{cpu:11.2f}"
        if "inner_wall" in runs[0]:
            inner_wall = statistics.median(r["inner_wall"] for r in runs)
            inner_cpu = statistics.median(r["inner_cpu"] for r in runs)
            line += f"{'| ':>4}{total / inner_wall / 1e6:14.0f}{inner_cpu / gb:10.2f}"
        print(line)
    print(f"\nmedians of {len(next(iter(results.values())))} rounds; MB = 10^6 bytes; "
          "whole-process figures include Python's start (imports), the in-process ones do not")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="splice")
    parser.add_argument("--dest")
    parser.add_argument("urls", nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    if args.child:
        return child(args)
    return probe(args)


def probe(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="offloop-probe-", dir=args.workdir))
    size = args.mib * 1024 * 1024
    server: RunningServer | None = None
    try:
        (work / "root").mkdir()
        expected = make_files(work / "root", args.files, size)
        nginx = find_nginx()
        server = start_nginx(nginx, work / "root", work / "nginx") if nginx else \
            start_builtin(sys.executable, REPO, work / "builtin")
        print(f"server: {server.description}; {args.files} x {args.mib} MiB; python {sys.version.split()[0]}")
        urls = [f"{server.base_url}/{name}" for name in expected]
        variants = [v for v in args.variants.split(",") if command(v, urls, work, work) is not None]
        results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for round_number in range(args.rounds + 1):  # round 0 warms the page cache and is not counted
            # Each round starts one variant later, so that none always follows the same one
            # (the previous run's deleted files may still be under writeback).
            shift = round_number % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                figures = run_once(command(variant, urls, work / "dest", work) or [], work / "dest", expected, size)
                if round_number:
                    results[variant].append(figures)
        report(results, args.files * size)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
