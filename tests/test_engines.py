"""Behaviour of a whole download, the same table on both engines."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from downloader import Config, Job, Result, Status, download
from downloader.testing import Rule, Server, body, body_sha256


def fetch(jobs: list[str | Job], config: Config) -> dict[str, Result]:
    """Run the library API and index the results by URL (the last one wins for duplicates)."""
    return {r.url: r for r in download(jobs, config=config)}


def leftovers(dest: Path) -> list[str]:
    """Names of part and state files left in ``dest``."""
    return sorted(p.name for p in dest.rglob("*.part*"))


def test_many_small_files_arrive_byte_exact(server: Server, config: Config) -> None:
    """Two hundred small files all download, each byte for byte."""
    urls = [server.file_url(f"small-{i}.bin", 1000 + i) for i in range(200)]

    results = download(urls, config=dataclasses.replace(config, concurrency=32))

    assert [Status.DOWNLOADED] * 200 == [r.status for r in results]
    for i in range(200):
        assert body(f"small-{i}.bin", 1000 + i) == (config.dest / f"small-{i}.bin").read_bytes()
    assert [] == leftovers(config.dest)


def test_large_file_streams_byte_exact(server: Server, config: Config) -> None:
    """A file of tens of MB is streamed to disk and matches its digest."""
    size = 48 * 1024 * 1024 + 7
    url = server.file_url("large.bin", size)

    result = fetch([Job(url, checksum="sha256:" + body_sha256("large.bin", size))], config)[url]

    assert (Status.DOWNLOADED, size) == (result.status, result.size)
    assert body_sha256("large.bin", size) == hashlib.sha256((config.dest / "large.bin").read_bytes()).hexdigest()


def test_chunked_response_without_length(server: Server, config: Config) -> None:
    """A chunked body with no Content-Length is taken whole."""
    url = server.url("/bytes/700001/chunked.bin?chunked=1")

    result = fetch([url], config)[url]

    assert Status.DOWNLOADED == result.status
    assert body("chunked.bin", 700001) == (config.dest / "chunked.bin").read_bytes()


def test_empty_file(server: Server, config: Config) -> None:
    """A zero-byte file is created, not skipped or failed."""
    url = server.file_url("empty.bin", 0)

    result = fetch([url], config)[url]

    assert (Status.DOWNLOADED, b"") == (result.status, (config.dest / "empty.bin").read_bytes())


def test_rerun_skips_complete_files_without_touching_them(server: Server, config: Config) -> None:
    """A second run skips what the first finished and sends no request for it."""
    url = server.file_url("rerun.bin", 5000)
    fetch([url], config)
    before = len(server.requests("/bytes/5000/rerun.bin"))
    (config.dest / "rerun.bin").write_bytes(b"x" * 5000)  # a marker: must survive the re-run

    result = fetch([url], config)[url]

    assert Status.SKIPPED == result.status
    assert before == len(server.requests("/bytes/5000/rerun.bin"))
    assert b"x" * 5000 == (config.dest / "rerun.bin").read_bytes()


def test_out_field_places_file_in_subdirectory(server: Server, config: Config) -> None:
    """out= puts the file at that relative path, creating directories."""
    url = server.file_url("named.bin", 300)

    result = fetch([Job(url, out="sub/dir/renamed.bin")], config)[url]

    assert str(config.dest / "sub/dir/renamed.bin") == result.path
    assert body("named.bin", 300) == (config.dest / "sub/dir/renamed.bin").read_bytes()


def test_checksum_mismatch_leaves_no_file(server: Server, config: Config) -> None:
    """A wrong sha256 fails with both digests, and neither the final file nor a part remains."""
    url = server.file_url("badsum.bin", 4096)

    result = fetch([Job(url, checksum="sha256:" + "0" * 64)], config)[url]

    assert Status.FAILED == result.status
    assert "0" * 64 in str(result.error) and body_sha256("badsum.bin", 4096) in str(result.error)
    assert not (config.dest / "badsum.bin").exists()
    assert [] == leftovers(config.dest)


def test_checksum_mismatch_is_fetched_twice_then_fails(server: Server, config: Config) -> None:
    """A digest mismatch is retried once from zero (a stale cache may be to blame), not more."""
    url = server.file_url(f"{config.engine}-badsum-twice.bin", 2048)

    fetch([Job(url, checksum="sha256:" + "1" * 64)], config)

    assert 2 == len(server.requests(f"/bytes/2048/{config.engine}-badsum-twice.bin"))


def test_size_field_mismatch_fails_without_final_file(server: Server, config: Config) -> None:
    """size= that disagrees with the server fails the URL and creates no final file."""
    url = server.file_url("badsize.bin", 1000)

    result = fetch([Job(url, size=999)], config)[url]

    assert Status.FAILED == result.status
    assert "999" in str(result.error) and "1000" in str(result.error)
    assert not (config.dest / "badsize.bin").exists()


def test_size_field_mismatch_on_chunked_body(server: Server, config: Config) -> None:
    """With no Content-Length, size= is checked against the bytes received."""
    url = server.url("/bytes/1000/badsize-chunked.bin?chunked=1")

    result = fetch([Job(url, size=1234)], config)[url]

    assert Status.FAILED == result.status
    assert not (config.dest / "badsize-chunked.bin").exists()


def test_matching_size_and_sha256_pass(server: Server, config: Config) -> None:
    """size= and sha256= that match let the file through, and the digest is reported."""
    url = server.file_url("good.bin", 3333)
    digest = body_sha256("good.bin", 3333)

    result = fetch([Job(url, size=3333, checksum="sha256:" + digest)], config)[url]

    assert (Status.DOWNLOADED, "sha256:" + digest) == (result.status, result.checksum)


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_fail_at_once(server: Server, config: Config, status: int) -> None:
    """A 4xx other than 408/425/429 fails without a retry, with the status in the reason."""
    path = f"/bytes/10/{config.engine}-e{status}?status={status}"

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert f"HTTP {status}" in str(result.error)
    assert 1 == len(server.requests(path.split("?")[0]))


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_then_fail(server: Server, config: Config, status: int) -> None:
    """A 5xx is retried `retries` times and then fails with the status in the reason."""
    path = f"/bytes/10/{config.engine}-e{status}"
    server.set_rule(path, Rule(status=status))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert f"HTTP {status}" in str(result.error) and "3 attempts" in str(result.error)
    assert 3 == len(server.requests(path))


def test_connection_refused_fails_with_reason(config: Config) -> None:
    """Nothing listening: the URL fails with a connection error, and the run goes on."""
    url = "http://127.0.0.1:9/nothing.bin"

    result = fetch([url], dataclasses.replace(config, retries=0))[url]

    assert Status.FAILED == result.status
    assert "connect" in str(result.error).lower()


def test_stalled_body_times_out(server: Server, config: Config) -> None:
    """A server that stops sending mid-body trips the stall timeout, and the part stays."""
    path = f"/bytes/100000/{config.engine}-stall.bin"
    server.set_rule(path, Rule(stall_after=1000))

    result = fetch([server.url(path)], dataclasses.replace(config, timeout=0.5, retries=0))[server.url(path)]

    assert Status.FAILED == result.status
    assert "stall" in str(result.error).lower()
    assert not (config.dest / f"{config.engine}-stall.bin").exists()
    assert [f"{config.engine}-stall.bin.part", f"{config.engine}-stall.bin.part.state"] == leftovers(config.dest)


def test_duplicate_urls_are_fetched_once(server: Server, config: Config) -> None:
    """The same URL listed many times is requested once; the copies are skipped."""
    path = f"/bytes/200000/{config.engine}-dup.bin"
    url = server.url(path)

    results = download([url] * 5, config=config)

    assert 1 == len(server.requests(path))
    assert [Status.DOWNLOADED] + [Status.SKIPPED] * 4 == sorted((r.status for r in results), key=list(Status).index)


def test_different_urls_never_overwrite_one_path(server: Server, config: Config) -> None:
    """Two URLs that map to one output path while both are in flight: the second is refused."""
    slow = server.url("/bytes/1000/same.bin?delay=0.3")
    other = server.url("/bytes/2000/same.bin")

    results = fetch([slow, other], config)

    assert Status.DOWNLOADED == results[slow].status
    assert Status.FAILED == results[other].status and "already being written" in str(results[other].error)
    assert body("same.bin", 1000) == (config.dest / "same.bin").read_bytes()


def test_slow_responses_overlap(server: Server, config: Config) -> None:
    """Transfers run concurrently: eight 0.4 s responses take far less than 3.2 s."""
    urls = [server.url(f"/bytes/100/{config.engine}-slow{i}?delay=0.4") for i in range(8)]

    results = download(urls, config=config)

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert 8 == len({r.path for r in results})


def test_invalid_entries_fail_and_others_proceed(server: Server, config: Config) -> None:
    """An unsupported scheme fails by itself; the valid URL beside it downloads."""
    good = server.file_url("beside-bad.bin", 10)

    results = fetch(["ftp://example.org/x", good, Job(good + "?x=1", checksum="sha256:nothex")], config)

    assert Status.FAILED == results["ftp://example.org/x"].status
    assert "unsupported scheme 'ftp'" in str(results["ftp://example.org/x"].error)
    assert Status.FAILED == results[good + "?x=1"].status
    assert Status.DOWNLOADED == results[good].status


def test_redirect_is_followed(server: Server, config: Config) -> None:
    """A 302 leads to the file, which is saved under the requested URL's name."""
    target = server.file_url("redirect-target.bin", 1234)
    path = f"/bytes/1/{config.engine}-redirect.bin"
    server.set_rule(path, Rule(redirect=target))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body("redirect-target.bin", 1234) == (config.dest / f"{config.engine}-redirect.bin").read_bytes()


def test_resume_continues_a_part_from_an_earlier_run(server: Server, config: Config) -> None:
    """A part with a saved validator is continued with Range and If-Range, not fetched again."""
    size, have = 300_000, 100_000
    path = f"/bytes/{size}/{config.engine}-resume.bin"
    name = f"{config.engine}-resume.bin"
    url = server.url(path)
    stalled = dataclasses.replace(config, timeout=0.5, retries=0)
    server.set_rule(path, Rule(stall_after=have))
    fetch([url], stalled)
    server.rules.pop(path)

    result = fetch([Job(url, checksum="sha256:" + body_sha256(name, size))], config)[url]

    assert (Status.DOWNLOADED, size - have) == (result.status, result.received)
    # The stalled request is logged when its handler is cancelled, which may come later.
    last = next(e for e in server.requests(path) if e.range)
    assert (f"bytes={have}-", 206) == (last.range, last.status)
    assert last.if_range is not None
    assert body(name, size) == (config.dest / name).read_bytes()


def test_part_of_a_changed_file_restarts(server: Server, config: Config) -> None:
    """A part whose saved ETag no longer matches is replaced by the whole new file."""
    name = f"{config.engine}-changed.bin"
    size = 50_000
    config.dest.mkdir(parents=True)
    (config.dest / (name + ".part")).write_bytes(b"stale" * 1000)
    state = '{"version": 1, "url": "%s", "etag": "\\"old\\"", "last_modified": null, "size": %d}'
    url = server.file_url(name, size)
    (config.dest / (name + ".part.state")).write_text(state % (url, size))

    result = fetch([url], config)[url]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    assert 200 == server.requests(f"/bytes/{size}/{name}")[-1].status


def test_every_entry_of_a_long_list_gets_a_result(server: Server, config: Config) -> None:
    """A list longer than the reader's batches loses no entry between batches: one result per job."""
    urls = [server.file_url(f"batch-{config.engine}-{i}.bin", 10) for i in range(1030)]

    results = download(urls, config=dataclasses.replace(config, concurrency=16))

    assert 1030 == len(results)
    assert {Status.DOWNLOADED} == {r.status for r in results}
