"""``--dask``: a list run on a Dask cluster (LocalCluster, or a scheduler and a worker of their own).

The cluster of most tests is one LocalCluster of two worker processes shared by the
module; a test that kills one of its workers waits for the nanny to bring it back.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the --dask tests need the optional extra: "
                                                        "pip install 'downloader[dask]'")

from downloader import Config, Run, download  # noqa: E402 - after the skip
from downloader.cli import main  # noqa: E402
from downloader.jobs import Result, Status  # noqa: E402
from downloader.manifest import default_path, status_report  # noqa: E402
from downloader.sources import read_list, read_urls  # noqa: E402
from downloader.testing import Rule, Server, body  # noqa: E402

from conftest import local_dask  # noqa: E402

DASK = Path(sys.executable).with_name("dask")
COLLISION = re.compile(r"a~[0-9a-f]{8}\.bin")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Client of one LocalCluster with two single-threaded worker processes, shut down after the module."""
    with local_dask(2) as (client, _):
        yield client


def cluster_config(dest: Path, engine: str, **options: Any) -> Config:
    """A quick configuration with the destination's manifest, as the CLI would give."""
    quick: dict[str, Any] = {"concurrency": 8, "retries": 2, "timeout": 5.0, "backoff_base": 0.01, "backoff_cap": 0.05}
    return Config(dest=dest, engine=engine, progress=False, manifest=default_path(dest), **{**quick, **options})


def run_on(client: Any, config: Config, urls: list[str]) -> tuple[Any, list[Result]]:
    """Run ``urls`` (list lines) on the cluster; the summary and every result."""
    results: list[Result] = []
    lines = "".join(line + "\n" for line in urls).encode()
    summary = Run(config, on_result=results.append, dask=client)(read_list(io.BytesIO(lines), "list"))
    return summary, results


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``downloader args`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "downloader", *args], capture_output=True, text=True, timeout=timeout)


def files_in(dest: Path) -> list[str]:
    """Every name under ``dest`` but the bookkeeping directory."""
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")
                  if p.is_file() and ".downloader" not in p.relative_to(dest).parts)


# -- a whole list ---------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_two_thousand_files_arrive_byte_exact_each_fetched_once(cluster: Any, server: Server, engine: str,
                                                                 tmp_path: Path) -> None:
    """2,000 small files downloaded with ``download(dask=client)`` are each requested once and byte-exact."""
    names = {f"many-{engine}-{i}.bin": 100 + i % 97 for i in range(2000)}
    urls = [server.file_url(name, size) for name, size in names.items()]

    results = download(urls, dask=cluster, config=cluster_config(tmp_path, engine))

    assert 2000 == len(results)
    assert {Status.DOWNLOADED} == {result.status for result in results}
    assert {1} == {server.counts[f"/bytes/{size}/{name}"] for name, size in names.items()}
    assert all(body(name, size) == (tmp_path / name).read_bytes() for name, size in names.items())
    assert sorted(names) == files_in(tmp_path)


def test_duplicates_fetched_once_and_a_collision_named_as_a_local_run_names_it(cluster: Any, server: Server,
                                                                              engine: str, tmp_path: Path) -> None:
    """A duplicate line is fetched once, and a second URL named ``a.bin`` gets ``a~<8 hex>.bin`` as locally."""
    first, second = server.url(f"/bytes/100/{engine}-dup/a.bin"), server.url(f"/bytes/200/{engine}-dup/a.bin")
    others = [server.file_url(f"dup-{engine}-{i}.bin", 300) for i in range(20)]
    lines = [first, *others, first, second, others[3], second]

    summary, results = run_on(cluster, cluster_config(tmp_path / "cluster", engine), lines)
    counts = [server.counts[f"/bytes/{size}/{engine}-dup/a.bin"] for size in (100, 200)]
    local: list[Result] = []
    Run(cluster_config(tmp_path / "local", engine), on_result=local.append)(read_urls(lines))

    assert (summary.downloaded, summary.skipped, summary.failed) == (22, 3, 0)
    assert [1, 1] == counts
    assert 1 == len([r for r in results if r.url == second and r.status is Status.DOWNLOADED])
    assert files_in(tmp_path / "local") == files_in(tmp_path / "cluster")
    collided = [name for name in files_in(tmp_path / "cluster") if COLLISION.fullmatch(name)]
    assert 1 == len(collided)
    assert body(f"{engine}-dup/a.bin", 100) == (tmp_path / "cluster/a.bin").read_bytes()
    assert body(f"{engine}-dup/a.bin", 200) == (tmp_path / "cluster" / collided[0]).read_bytes()
    paths = {(r.url, Path(r.path).name) for r in results if r.path}
    assert paths == {(r.url, Path(r.path).name) for r in local if r.path}


def test_a_list_that_trickles_in_is_fetched_as_it_comes(cluster: Any, server: Server, engine: str,
                                                       tmp_path: Path) -> None:
    """Lines read slowly (a pipe that trickles) are fetched while the list is still being read."""
    urls = [server.file_url(f"trickle-{engine}-{i}.bin", 1000) for i in range(30)]
    early = urls[:15]
    fetched_while_reading: list[int] = []

    def trickle() -> Iterator[Any]:
        for url in read_urls(urls):
            yield url
            time.sleep(0.1)
        fetched_while_reading.append(sum(server.counts[url.removeprefix(server.base_url)] for url in early))

    summary = Run(cluster_config(tmp_path, engine), dask=cluster)(trickle())

    assert (30, 0) == (summary.downloaded, summary.failed)
    assert fetched_while_reading[0] >= 10, fetched_while_reading  # not held until a bucket fills or the list ends


# -- the manifest: status and re-runs -------------------------------------------------


def test_status_shows_the_merged_totals_of_the_whole_cluster_run(cluster: Any, server: Server, engine: str,
                                                                  tmp_path: Path) -> None:
    """``downloader status DEST`` counts every URL of every task of a cluster run, failures listed."""
    urls = [server.file_url(f"status-{engine}-{i}.bin", 500) for i in range(300)]
    missing = server.url(f"/bytes/10/status-{engine}-missing.bin?status=404")

    summary, _ = run_on(cluster, cluster_config(tmp_path, engine), [*urls, missing])
    report = status_report(tmp_path)

    assert (summary.downloaded, summary.failed) == (300, 1)
    assert report.splitlines()[0].startswith("downloaded 300, skipped 0, failed 1")
    assert report.splitlines()[0].endswith("(301 URLs)")
    assert missing in report.splitlines()[1]
    assert [] == sorted((tmp_path / ".downloader" / "tasks").iterdir())  # every task's records merged


def test_a_rerun_of_a_completed_list_sends_no_request(cluster: Any, server: Server, engine: str,
                                                      tmp_path: Path) -> None:
    """Run again on the cluster, a completed list is all skipped without one request to the server."""
    urls = [server.file_url(f"rerun-{engine}-{i}.bin", 700) for i in range(300)]
    run_on(cluster, cluster_config(tmp_path, engine), urls)
    before = sum(server.counts.values())

    summary, results = run_on(cluster, cluster_config(tmp_path, engine), urls)

    assert before == sum(server.counts.values())
    assert (summary.downloaded, summary.skipped, summary.failed) == (0, 300, 0)
    assert {Status.SKIPPED} == {result.status for result in results}


# -- failures of the cluster ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_run_loses_nothing(cluster: Any, server: Server, engine: str, tmp_path: Path) -> None:
    """SIGKILL to one worker mid-transfer: its task runs again, every file is exact, and little is fetched twice."""
    size, rate, count = 600_000, 600_000.0, 24  # a file takes a second
    names = [f"kill-{engine}-{i}.bin" for i in range(count)]
    urls = [server.file_url(name, size, Rule(rate=rate)) for name in names]
    served_before = server.bytes_sent()
    pids = list(cluster.run(os.getpid).values())
    victim = pids[0]

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 30
        while server.bytes_sent() - served_before < size and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        summary, _ = run_on(cluster, cluster_config(tmp_path, engine), urls)
    finally:
        killer.join()
        cluster.wait_for_workers(2, timeout=60)

    assert victim not in cluster.run(os.getpid).values()  # it was really killed (and replaced)
    assert (summary.downloaded + summary.skipped, summary.failed, summary.interrupted) == (count, 0, 0)
    assert summary.ok
    assert all(body(name, size) == (tmp_path / name).read_bytes() for name in names)
    assert sorted(names) == files_in(tmp_path)  # no part left, nothing else
    assert any(entry.range for name in names for entry in server.requests(f"/bytes/{size}/{name}"))  # resumed
    total = count * size
    refetched = server.bytes_sent() - served_before - total
    assert 0 <= refetched <= count * (rate / 10 + 2 * 256 * 1024), refetched


@pytest.mark.parametrize("per_host", [1, 3])
def test_per_host_holds_for_the_whole_cluster(cluster: Any, engine: str, per_host: int, tmp_path: Path) -> None:
    """With ``per_host=N`` the host never answers more than N requests at once, from all workers together."""
    with Server() as own:  # its own: no other test's request is counted
        urls = [own.file_url(f"polite-{engine}-{i}.bin", 20_000, Rule(rate=200_000)) for i in range(40)]

        summary, _ = run_on(cluster, cluster_config(tmp_path, engine, per_host=per_host, concurrency=16), urls)

        assert (40, 0) == (summary.downloaded, summary.failed)
        assert 1 <= own.peak_active <= per_host, own.peak_active


def test_limit_rate_holds_for_the_whole_cluster(cluster: Any, server: Server, engine: str, tmp_path: Path) -> None:
    """With ``limit_rate`` the whole cluster together receives no faster than that many bytes a second."""
    size, count, rate, chunk = 250_000, 32, 4_000_000, 16 * 1024
    urls = [server.file_url(f"rate-{engine}-{i}.bin", size) for i in range(count)]
    arrived: list[tuple[float, int]] = []
    done = threading.Event()

    def look() -> None:  # bytes on disk: the server's count would include what waits in socket buffers
        arrived.append((time.monotonic(), sum(size_of(p) for p in tmp_path.glob("rate-*"))))

    def watch() -> None:
        while not done.wait(0.02):
            look()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        summary, _ = run_on(cluster, cluster_config(tmp_path, engine, limit_rate=rate, chunk_size=chunk), urls)
    finally:
        done.set()
        watcher.join()
    look()  # the last look, once every file is in place

    assert (count, 0) == (summary.downloaded, summary.failed)
    first = next(when for when, got in arrived if got > 0)
    last = next(when for when, got in arrived if got == count * size)
    # Before the bucket paces it, each of the (at most 8) tasks may take a full bucket (a tenth
    # of a second of its share: a quarter of the rate here) and a chunk per transfer (8).
    ahead = 8 * (rate / 4 / 10 + 8 * chunk)
    assert last - first >= (count * size - ahead) / rate, last - first


def size_of(path: Path) -> int:
    """The size of ``path``, 0 when it was just renamed away (a part becoming its file)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# -- the command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a ``dask scheduler`` and its ``dask worker``, processes terminated after the module."""
    scheduler_file = tmp_path_factory.mktemp("scheduler") / "scheduler.json"
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
                                   str(scheduler_file), "--no-dashboard"], **quiet)]
    try:
        processes.append(subprocess.Popen([str(DASK), "worker", "--scheduler-file", str(scheduler_file),
                                           "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], **quiet))
        yield scheduler_address(scheduler_file)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def scheduler_address(scheduler_file: Path) -> str:
    """The scheduler's address from its file, once it is written."""
    import json

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (FileNotFoundError, ValueError, KeyError):
            time.sleep(0.1)
    raise AssertionError("the scheduler never wrote its file")


@pytest.mark.timeout(90)
def test_a_separate_scheduler_and_worker_run_a_cli_list(scheduler: str, server: Server, engine: str,
                                                        tmp_path: Path) -> None:
    """With a scheduler and a worker of their own, ``downloader --dask tcp://...`` downloads the list, exit 0."""
    names = [f"separate-{engine}-{i}.bin" for i in range(50)]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(name, 1234) + "\n" for name in names))

    done = cli("--dask", scheduler, "-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q")

    assert scheduler.startswith("tcp://127.0.0.1:")
    assert 0 == done.returncode, done.stderr
    assert "downloaded 50, skipped 0, failed 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert all(body(name, 1234) == (tmp_path / "out" / name).read_bytes() for name in names)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["asyncio", "threads"])
def test_ctrl_c_stops_a_local_cluster_run_and_keeps_its_parts(cluster: Any, server: Server, engine: str,
                                                              tmp_path: Path) -> None:
    """SIGINT to ``downloader --dask local:2`` mid-run exits 130 soon, parts kept; a re-run completes them exact."""
    size, count = 2_000_000, 12
    names = [f"sigint-{engine}-{i}.bin" for i in range(count)]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(name, size, Rule(rate=400_000)) + "\n" for name in names))
    dest = tmp_path / "out"
    argv = [sys.executable, "-m", "downloader", "--dask", "local:2", "-i", str(listing), "-d", str(dest),
            "-e", engine, "-q"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 200_000 for p in dest.glob("*.part")) and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, err = process.communicate(timeout=40)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    parts = {part.name: part.stat().st_size for part in dest.glob("*.part")}
    stateless = [name for name in parts if not (dest / f"{name}.state").is_file()]
    complete = [name for name in names if (dest / name).exists() and (dest / name).read_bytes() == body(name, size)]
    finals = [name for name in names if (dest / name).exists()]
    for name in names:
        server.set_rule(f"/bytes/{size}/{name}", Rule())  # the re-run at full speed

    again = cli("--dask", cluster.scheduler.address, "-i", str(listing), "-d", str(dest), "-e", engine, "-q")

    assert 130 == process.returncode, err
    assert took < 25, took
    assert finals == complete  # never an incomplete file under its final name
    assert [] == stateless  # each part kept with its state, to resume from
    assert 0 == again.returncode, again.stderr
    assert all(body(name, size) == (dest / name).read_bytes() for name in names)
    assert sorted(names) == files_in(dest)
    assert parts and all(0 < kept < size for kept in parts.values())  # the transfers in flight were stopped


@pytest.mark.parametrize("address, message", [
    ("local:0", "at least 1"),
    ("nonsense", "tcp://HOST:PORT"),
    ("ucx://127.0.0.1:1", "tcp://HOST:PORT"),
    ("tcp://127.0.0.1:1", "no Dask scheduler answers at tcp://127.0.0.1:1"),
])
def test_a_bad_address_is_a_usage_error(address: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--dask`` with no usable cluster there exits 2 and says why, before any request."""
    from downloader import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "_CONNECT_SECONDS", 2.0)  # the unreachable one fails sooner
    status = main(["--dask", address, "http://127.0.0.1:9/x.bin", "-d", str(tmp_path), "-q"])

    assert 2 == status
    assert message in capsys.readouterr().err


def test_a_bad_address_leaves_nothing_running(tmp_path: Path) -> None:
    """A run that cannot reach its cluster raises ClusterError and closes the manifest it opened."""
    from downloader.cluster import ClusterError, ClusterRun

    def writers() -> int:
        return sum(thread.name == "manifest-writer" for thread in threading.enumerate())

    before = writers()
    with pytest.raises(ClusterError, match="tcp://HOST:PORT"):
        ClusterRun(cluster_config(tmp_path, "asyncio"), "nonsense")

    assert before == writers()


def test_without_the_extra_dask_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Without ``distributed`` installed, ``--dask`` exits 2 naming the extra to install."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # find_spec() then answers None, as if absent

    status = main(["--dask", "local:2", "http://127.0.0.1:9/x.bin", "-d", str(tmp_path), "-q"])

    assert 2 == status
    assert "pip install 'downloader[dask]'" in capsys.readouterr().err


@pytest.mark.timeout(90)
def test_a_cluster_left_without_workers_fails_the_lines_instead_of_hanging(server: Server, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker gone for NO_WORKER_SECONDS: the lines in flight fail with that reason; the run ends."""
    import downloader.cluster as cluster_module

    monkeypatch.setattr(cluster_module, "NO_WORKER_SECONDS", 1.0)
    with local_dask(1) as (client, local):
        urls = [server.file_url(f"orphaned-{i}.bin", 2_000_000, Rule(rate=200_000)) for i in range(4)]
        stopper = threading.Timer(1.5, lambda: local.scale(0))
        stopper.start()

        summary, results = run_on(client, cluster_config(tmp_path / "out", "asyncio"), urls)

        stopper.join()
    assert 4 == summary.failed
    assert all("no worker for 1 s" in str(r.error) for r in results)
    assert not any((tmp_path / "out" / f"orphaned-{i}.bin").exists() for i in range(4))


@pytest.mark.timeout(90)
def test_the_cli_on_a_local_cluster_prints_only_its_summary(server: Server, engine: str, tmp_path: Path) -> None:
    """``--dask local:2`` without -v: the summary line and nothing of Dask's (no log line, no traceback)."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(f"quiet-{engine}-{i}.bin", 500) + "\n" for i in range(30)))

    done = cli("--dask", "local:2", "-i", str(listing), "-d", str(tmp_path / "out"), "-e", engine, "-q")

    assert 0 == done.returncode, done.stderr
    assert ["downloaded 30, skipped 0, failed 0"] == [line.split(";")[0] for line in done.stderr.splitlines()]
