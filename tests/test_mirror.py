"""Mirroring: layout, collisions, Content-Disposition, the manifest, --sync, status and politeness (both engines)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from downloader import Config, Job, Status, download
from downloader.cli import main
from downloader.manifest import Manifest, default_path
from downloader.testing import Rule, Server, body, version_name


@pytest.fixture
def mirror(config: Config) -> Config:
    """The test configuration with a manifest in the destination."""
    return dataclasses.replace(config, manifest=default_path(config.dest))


def statuses(results: list) -> dict[str, str]:
    return {r.url: r.status.value for r in results}


def test_mirror_layout_keeps_host_and_path(server: Server, mirror: Config) -> None:
    """--layout mirror writes DEST/host:port/path, like wget -x."""
    url = server.url(f"/bytes/100/{mirror.engine}/deep/file.bin")

    download([url], config=dataclasses.replace(mirror, layout="mirror"))

    expected = mirror.dest / f"127.0.0.1:{server.port}" / "bytes" / "100" / mirror.engine / "deep" / "file.bin"
    assert body(f"{mirror.engine}/deep/file.bin", 100) == expected.read_bytes()


def test_nightly_sync_fetches_only_what_changed(server: Server, mirror: Config) -> None:
    """Run twice with --sync against a server where two of five files changed: 304 for three, new bytes for two."""
    names = [f"{mirror.engine}-night-{i}.bin" for i in range(5)]
    urls = [server.file_url(name, 70_000 + i) for i, name in enumerate(names)]
    synced = dataclasses.replace(mirror, layout="mirror", sync=True)
    download(urls, config=synced)
    for name in names[:2]:
        server.set_rule(f"/bytes/{70_000 + names.index(name)}/{name}", Rule(version=1))
    before = len(server.log)

    results = download(urls, config=synced)

    second_run = list(server.log)[before:]
    assert sorted(["downloaded"] * 2 + ["unchanged"] * 3) == sorted(statuses(results).values())
    assert 5 == len(second_run)
    assert sorted([200, 200, 304, 304, 304]) == sorted(e.status for e in second_run)
    for i, name in enumerate(names):
        path = mirror.dest / f"127.0.0.1:{server.port}" / "bytes" / str(70_000 + i) / name
        assert body(version_name(name, 1 if i < 2 else 0), 70_000 + i) == path.read_bytes()


def test_rerun_skips_done_files_from_the_manifest_without_requests(server: Server, mirror: Config) -> None:
    """Without --sync, files the manifest says are done are skipped and no request is sent."""
    urls = [server.file_url(f"{mirror.engine}-once-{i}.bin", 1000) for i in range(4)]
    download(urls, config=mirror)
    before = len(server.log)

    results = download(urls, config=mirror)

    assert before == len(server.log)
    assert {"skipped"} == set(statuses(results).values())
    assert {"already downloaded (manifest)"} == {r.error for r in results}


def test_two_urls_for_one_name_never_overwrite_and_keep_their_names(server: Server, mirror: Config) -> None:
    """Two URLs ending in the same name: the second gets a deterministic collision name, the same on a re-run."""
    first = server.url(f"/bytes/100/{mirror.engine}-a/same.bin")
    second = server.url(f"/bytes/200/{mirror.engine}-b/same.bin")
    download([first], config=mirror)

    download([second], config=mirror)
    again = download([second, first], config=mirror)

    files = sorted(p.name for p in mirror.dest.iterdir() if p.name.startswith("same"))
    assert 2 == len(files) and "same.bin" in files
    assert body(f"{mirror.engine}-a/same.bin", 100) == (mirror.dest / "same.bin").read_bytes()
    other = next(name for name in files if name != "same.bin")
    assert body(f"{mirror.engine}-b/same.bin", 200) == (mirror.dest / other).read_bytes()
    assert {"skipped"} == {r.status.value for r in again}


def test_two_urls_for_one_name_in_one_run_one_after_the_other(server: Server, mirror: Config) -> None:
    """In one run with a fresh manifest and one transfer at a time, the second URL for a name
    (the first one already finished) still gets the collision name, not "already present"."""
    first = server.url(f"/bytes/100/{mirror.engine}-c/twice.bin")
    second = server.url(f"/bytes/200/{mirror.engine}-d/twice.bin")
    between = [server.file_url(f"{mirror.engine}-between-{i}.bin", 10) for i in range(10)]  # more than the admission window

    results = download([first, *between, second], config=dataclasses.replace(mirror, concurrency=1))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert [first] == [r.url for r in results[:1]]  # finished before the second was admitted
    assert body(f"{mirror.engine}-c/twice.bin", 100) == (mirror.dest / "twice.bin").read_bytes()
    [other] = [p for p in mirror.dest.iterdir() if p.name.startswith("twice~")]
    assert body(f"{mirror.engine}-d/twice.bin", 200) == other.read_bytes()


def test_content_disposition_names_the_file(server: Server, mirror: Config) -> None:
    """--content-disposition saves under the header's filename* (RFC 8187), and a re-run skips it."""
    path = f"/bytes/300/{mirror.engine}-download.php"
    server.set_rule(path, Rule(disposition="attachment; filename=\"fallback.bin\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"))
    named = dataclasses.replace(mirror, content_disposition=True)

    [result] = download([server.url(path)], config=named)
    [again] = download([server.url(path)], config=named)

    assert str(mirror.dest / "résumé.pdf") == result.path
    assert body(f"{mirror.engine}-download.php", 300) == (mirror.dest / "résumé.pdf").read_bytes()
    assert Status.SKIPPED == again.status


def test_content_disposition_cannot_escape_or_clobber(server: Server, mirror: Config) -> None:
    """A traversal in Content-Disposition stays in the destination, and never replaces an existing file."""
    path = f"/bytes/50/{mirror.engine}-evil"
    server.set_rule(path, Rule(disposition='attachment; filename="../../../etc/victim.txt"'))
    mirror.dest.mkdir(parents=True)
    (mirror.dest / "victim.txt").write_bytes(b"keep me")

    [result] = download([server.url(path)], config=dataclasses.replace(mirror, content_disposition=True))

    assert Status.DOWNLOADED == result.status
    assert b"keep me" == (mirror.dest / "victim.txt").read_bytes()
    assert Path(result.path).parent == mirror.dest and Path(result.path).name.startswith("victim~")


def test_symlink_planted_in_the_destination_is_refused(server: Server, mirror: Config, tmp_path: Path) -> None:
    """A directory symlink leading outside the destination is never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    mirror.dest.mkdir(parents=True)
    (mirror.dest / "sub").symlink_to(outside)

    [result] = download([Job(server.file_url(f"{mirror.engine}-link.bin", 10), out="sub/x.bin")], config=mirror)

    assert Status.FAILED == result.status and "symlink" in str(result.error).lower()
    assert [] == list(outside.iterdir())


def test_status_after_an_interrupted_run(server: Server, engine: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`downloader status DEST` prints counts per status and the failures from the manifest."""
    good = server.file_url(f"status-{engine}.bin", 10)
    bad = server.url(f"/bytes/10/status-{engine}-404?status=404")
    main([good, bad, "-d", str(tmp_path), "-e", engine, "-q", "--retries", "0"])
    with Manifest(default_path(tmp_path)) as manifest:  # as a run killed mid-transfer leaves it
        from downloader.manifest import Record

        manifest.record(Record(f"{good}?pending", "p.bin", "pending", None, None, None, None, None, 0, None, 1.0, 1.0))
    capsys.readouterr()

    status = main(["status", str(tmp_path)])

    out = capsys.readouterr().out
    assert 0 == status
    assert "downloaded 1" in out and "failed 1" in out and "pending 1" in out
    assert f"{bad}: HTTP 404" in out


def test_throttled_host_does_not_slow_a_healthy_one(server: Server, mirror: Config) -> None:
    """A host answering 429 with Retry-After is paused alone; the other host's files all arrive meanwhile."""
    slow = f"/bytes/10/{mirror.engine}-throttled"
    server.set_rule(slow, Rule(status=429, retry_after="2", times=1))
    healthy = [f"http://localhost:{server.port}/bytes/20000/{mirror.engine}-healthy-{i}.bin" for i in range(12)]
    started = time.monotonic()

    results = download([server.url(slow), *healthy], config=dataclasses.replace(mirror, concurrency=4, per_host=2))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert time.monotonic() - started >= 1.9  # the throttled URL waited for its Retry-After
    assert results[-1].url == server.url(slow)  # and the healthy host finished first


@pytest.mark.parametrize("planted", ["", ".part"])
@pytest.mark.parametrize("size", [100, 200_000], ids=["small", "large"])
def test_symlink_planted_at_the_file_or_its_part_is_refused(server: Server, mirror: Config, tmp_path: Path,
                                                            planted: str, size: int) -> None:
    """A symlink at NAME or NAME.part, pointing outside, is refused with its name; its target keeps its bytes."""
    target = tmp_path / "target.txt"
    target.write_bytes(b"precious")
    mirror.dest.mkdir(parents=True)
    name = f"{mirror.engine}-{size}-planted.bin"
    (mirror.dest / f"{name}{planted}").symlink_to(target)

    [result] = download([server.file_url(name, size)], config=mirror)

    assert Status.FAILED == result.status
    assert f"{name}{planted} is a symlink" in str(result.error)
    assert b"precious" == target.read_bytes()


@pytest.mark.parametrize("part", [b"", b"x" * 1000], ids=["no-part", "part"])
def test_symlink_planted_at_the_state_is_never_written_through(server: Server, mirror: Config, tmp_path: Path,
                                                               part: bytes) -> None:
    """A symlink at NAME.part.state is refused when a part would be resumed with it, and otherwise
    replaced, not followed: its target keeps its bytes either way."""
    target = tmp_path / "target.txt"
    target.write_bytes(b"precious")
    mirror.dest.mkdir(parents=True)
    name = f"{mirror.engine}-state-planted-{len(part)}.bin"
    if part:
        (mirror.dest / f"{name}.part").write_bytes(part)
    (mirror.dest / f"{name}.part.state").symlink_to(target)

    [result] = download([server.file_url(name, 200_000)], config=mirror)

    assert b"precious" == target.read_bytes()
    if part:
        assert Status.FAILED == result.status and f"{name}.part.state is a symlink" in str(result.error)
    else:
        assert Status.DOWNLOADED == result.status
        assert body(name, 200_000) == (mirror.dest / name).read_bytes()


def slow_urls(server: Server, stem: str, count: int, *, delay: float) -> list[str]:
    """``count`` URLs of 100 bytes on the test server, each answered after ``delay`` seconds."""
    urls = []
    for i in range(count):
        path = f"/bytes/100/{stem}-{i}.bin"
        server.set_rule(path, Rule(delay=delay))
        urls.append(server.url(path))
    return urls


def test_default_per_host_lets_a_lone_host_use_every_connection(server: Server, mirror: Config) -> None:
    """Without --per-host, eight slow URLs of one host with -j 8 run all at once (not four, then four)."""
    urls = slow_urls(server, f"{mirror.engine}-lone", 8, delay=0.8)
    started = time.monotonic()

    results = download(urls, config=dataclasses.replace(mirror, concurrency=8, per_host=None))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert time.monotonic() - started < 1.5  # four at a time would take 1.6 s or more


def test_given_per_host_is_a_hard_cap_even_for_a_lone_host(server: Server, mirror: Config) -> None:
    """--per-host 2 holds one host to two connections even when it is alone: four 0.5 s URLs take two rounds."""
    urls = slow_urls(server, f"{mirror.engine}-capped", 4, delay=0.5)
    started = time.monotonic()

    results = download(urls, config=dataclasses.replace(mirror, concurrency=8, per_host=2))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert time.monotonic() - started >= 1.0


def test_limit_rate_caps_the_total_bandwidth(server: Server, mirror: Config) -> None:
    """--limit-rate 1M: 3 MiB over four transfers takes about 3 s less the first burst, never much less."""
    urls = [server.file_url(f"{mirror.engine}-rate-{i}.bin", 768 * 1024) for i in range(4)]
    started = time.monotonic()

    results = download(urls, config=dataclasses.replace(mirror, limit_rate=2 * 1024 * 1024))

    elapsed = time.monotonic() - started
    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert 1.2 <= elapsed <= 2.5, elapsed


def test_many_throttled_urls_do_not_starve_a_healthy_host(server: Server, mirror: Config) -> None:
    """Three URLs of a host answering 429 (Retry-After 1) come first in the list; the other host's files still
    all arrive before any of the throttled ones, which succeed after their pause."""
    throttled = []
    for i in range(3):
        path = f"/bytes/10/{mirror.engine}-busy-{i}"
        server.set_rule(path, Rule(status=429, retry_after="1", times=1))
        throttled.append(server.url(path))
    healthy = [f"http://localhost:{server.port}/bytes/5000/{mirror.engine}-calm-{i}.bin" for i in range(10)]

    results = download(throttled + healthy, config=dataclasses.replace(mirror, concurrency=2, per_host=2))

    order = [r.url for r in results]
    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert max(order.index(u) for u in healthy) < min(order.index(u) for u in throttled)


def test_a_failing_manifest_does_not_stop_the_downloads(server: Server, mirror: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the manifest cannot be written any more, the run goes on without it and every file arrives."""
    from downloader.manifest import ManifestError

    def broken(self: Manifest, record: object) -> None:
        raise ManifestError(self.path, "disk full")

    monkeypatch.setattr(Manifest, "record", broken)
    urls = [server.file_url(f"{mirror.engine}-nomanifest-{i}.bin", 100) for i in range(5)]

    results = download(urls, config=mirror)

    assert {Status.DOWNLOADED} == {r.status for r in results}
