"""Fault injection: dropped, stalled, lying and changing servers, damaged state, a refusing disk; both engines.

Each test that ends with a file checks it byte for byte and, from the server's log,
that no more was fetched again than was missing (plus at most one chunk), or that a
restart fetched the whole file exactly once. Paths are unique per test and engine:
the server is shared by the whole session.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import resource
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader import DEFAULT_CHUNK_SIZE, Config, Job, Result, Status, download
from downloader.core import ResumeState
from downloader.naming import PART_SUFFIX, STATE_SUFFIX
from downloader.testing import LogEntry, Rule, Server, body, body_sha256, version_name

CHUNK = 256 * 1024
"""The chunk size of these tests: each re-fetch bound allows one chunk of slack."""

SIZES = [pytest.param(300_000, id="streamed"), pytest.param(20_000, id="small")]
"""A body streamed through the part with a state file, and one small enough to be stored in one trip."""


@pytest.fixture(params=["asyncio", "asyncio-offloop", "threads"])
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both engines, and the asyncio engine once more with every streamed body read off the
    event loop (engines/offloop.py; in a run only bodies of OFF_LOOP_MIN bytes are)."""
    if request.param == "asyncio-offloop":
        from downloader.engines import aio

        monkeypatch.setattr(aio, "OFF_LOOP_MIN", 1)
    return str(request.param)


@pytest.fixture
def engine(variant: str) -> str:
    return "threads" if variant == "threads" else "asyncio"


@pytest.fixture(scope="module")
def offloop_server() -> Iterator[Server]:
    """The off-loop variant's own server: its paths (named after the engine) and logs
    would otherwise mix with the plain asyncio variant's."""
    with Server() as running:
        yield running


@pytest.fixture
def server(variant: str, server: Server, offloop_server: Server) -> Server:
    return offloop_server if variant == "asyncio-offloop" else server


@pytest.fixture
def config(config: Config) -> Config:
    """The shared quick configuration, with 256 KiB chunks so that one chunk of slack stays small beside the files."""
    return dataclasses.replace(config, chunk_size=CHUNK)


@pytest.fixture(scope="module")
def twin() -> Iterator[Server]:
    """A second test server that serves the same files: asked for validators, so the tested server counts nothing."""
    with Server() as running:
        yield running


def fetch(jobs: list[str | Job], config: Config) -> dict[str, Result]:
    """Run the library API and index the results by URL."""
    return {r.url: r for r in download(jobs, config=config)}


def log_of(server: Server, path: str) -> list[LogEntry]:
    """The logged GETs for ``path``, once every request counted on arrival has been logged (aborted ones log late)."""
    deadline = time.monotonic() + 3.0
    while len(server.requests(path)) < server.counts[path] and time.monotonic() < deadline:
        time.sleep(0.01)
    return [e for e in server.requests(path) if e.method == "GET"]


def sent(entries: list[LogEntry]) -> int:
    """Body bytes the server sent in ``entries``."""
    return sum(e.bytes_sent for e in entries)


def saved_state(twin: Server, path: str, url: str) -> ResumeState:
    """The resume state a first run would have saved for ``path`` fetched as ``url`` (validators read from the twin)."""
    request = urllib.request.Request(twin.url(path), method="HEAD")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as response:
        size = int(path.split("/")[2])
        return ResumeState(url, response.headers["ETag"], response.headers["Last-Modified"], size)


def leave_part(config: Config, name: str, data: bytes, state: ResumeState | None = None,
               state_text: str | None = None) -> Path:
    """Put ``NAME.part`` (and its state) in the destination, as an interrupted earlier run would; the part's path."""
    config.dest.mkdir(parents=True, exist_ok=True)
    part = config.dest / (name + PART_SUFFIX)
    part.write_bytes(data)
    if state is not None:
        state_text = state.dumps()
    if state_text is not None:
        (config.dest / (name + STATE_SUFFIX)).write_text(state_text, encoding="utf-8")
    return part


def leftovers(dest: Path) -> list[str]:
    """Names of part and state files left in ``dest``."""
    return sorted(p.name for p in dest.rglob("*.part*"))


# -- 1. dropped connections -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [pytest.param(CHUNK, id="256k"), pytest.param(DEFAULT_CHUNK_SIZE, id="default")])
def test_drop_resumes_from_the_bytes_received(server: Server, config: Config, chunk: int) -> None:
    """A connection dropped after N bytes on the first two requests is resumed twice with Range and If-Range."""
    size, n = 1_000_000, 300_000
    name = f"{config.engine}-fault-drop-{chunk}.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(drop_after=n, times=2))
    config = dataclasses.replace(config, chunk_size=chunk)

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [None, f"bytes={n}-", f"bytes={2 * n}-"] == [e.range for e in entries]
    assert [200, 206, 206] == [e.status for e in entries]
    assert entries[1].if_range is not None and entries[1].if_range == entries[2].if_range
    assert sent(entries) <= size + config.chunk_size


def test_drop_on_the_last_bytes_fetches_only_the_rest(server: Server, config: Config) -> None:
    """A connection dropped 1000 bytes before the end costs one resumed request for those bytes."""
    size, n = 300_000, 299_000
    name = f"{config.engine}-fault-drop-late.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(drop_after=n, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [None, f"bytes={n}-"] == [e.range for e in entries]
    assert sent(entries) <= size + config.chunk_size


# -- 2. a server that ignores Range ---------------------------------------------------------------


def test_range_ignored_replaces_the_part(server: Server, twin: Server, config: Config) -> None:
    """A 200 answering a resume replaces the part (truncated, never appended to)."""
    size, have = 400_000, 150_000
    name = f"{config.engine}-fault-noranges.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size)[:have], saved_state(twin, path, server.url(path)))
    server.set_rule(path, Rule(ranges=False))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert (Status.DOWNLOADED, size) == (result.status, result.size)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(f"bytes={have}-", 200)] == [(e.range, e.status) for e in entries]
    assert size == sent(entries)
    assert [] == leftovers(config.dest)


# -- 3. the file changes between requests ----------------------------------------------------------


def test_changed_file_is_fetched_whole_in_its_new_version(server: Server, config: Config) -> None:
    """After a drop the file changes: If-Range fails, the 200 carries the new version, and only it is kept."""
    size, n = 500_000, 200_000
    name = f"{config.engine}-fault-mutate.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(mutate=True, drop_after=n, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(version_name(name, 1), size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(None, 200), (f"bytes={n}-", 200)] == [(e.range, e.status) for e in entries]
    assert entries[1].if_range is not None
    assert n + size == sent(entries)


# -- 4. statuses and Retry-After --------------------------------------------------------------------


def test_retry_after_is_honoured(server: Server, config: Config) -> None:
    """A 503 with Retry-After: 1 is retried after about a second, then succeeds."""
    size = 300_000
    name = f"{config.engine}-fault-retry-after.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(status=503, retry_after="1", times=1))

    started = time.monotonic()
    result = fetch([server.url(path)], config)[server.url(path)]
    elapsed = time.monotonic() - started

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    assert 0.9 <= elapsed < 3.0
    entries = log_of(server, path)
    assert [503, 200] == [e.status for e in entries]
    assert size == entries[1].bytes_sent


def test_retry_after_longer_than_max_wait_fails_at_once(server: Server, config: Config) -> None:
    """A Retry-After above max_wait fails the URL without waiting, after one request, saying why."""
    name = f"{config.engine}-fault-retry-after-long.bin"
    path = f"/bytes/300000/{name}"
    server.set_rule(path, Rule(status=429, retry_after="30"))

    started = time.monotonic()
    result = fetch([server.url(path)], dataclasses.replace(config, max_wait=10))[server.url(path)]
    elapsed = time.monotonic() - started

    assert Status.FAILED == result.status
    assert "HTTP 429" in str(result.error)
    assert "retry after 30 s" in str(result.error) and "max wait 10 s" in str(result.error)
    assert elapsed < 1.0
    assert 1 == len(log_of(server, path))
    assert not (config.dest / name).exists()


def test_not_found_fails_at_once(server: Server, config: Config) -> None:
    """A 404 fails after one request and leaves nothing behind."""
    name = f"{config.engine}-fault-404.bin"
    path = f"/bytes/300000/{name}"
    server.set_rule(path, Rule(status=404))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert "HTTP 404" in str(result.error)
    assert 1 == len(log_of(server, path))
    assert [] == sorted(p.name for p in config.dest.iterdir())


@pytest.mark.parametrize("status", [500, 502, 504, 408, 425, 429])
def test_transient_status_is_retried(server: Server, config: Config, status: int) -> None:
    """A transient status on the first request is retried, and the second request gets the file."""
    size = 300_000
    name = f"{config.engine}-fault-transient-{status}.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(status=status, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [status, 200] == [e.status for e in entries]
    assert size == entries[1].bytes_sent


# -- 5. a stalled body ------------------------------------------------------------------------------


def test_stall_is_retried_and_resumed(server: Server, config: Config) -> None:
    """A body that stalls after N bytes times out, and the retry resumes from N."""
    size, n = 600_000, 250_000
    name = f"{config.engine}-fault-stall.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(stall_after=n, times=1))

    result = fetch([server.url(path)], dataclasses.replace(config, timeout=0.5))[server.url(path)]

    assert (Status.DOWNLOADED, size - n) == (result.status, result.received)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [None, f"bytes={n}-"] == [e.range for e in entries]
    assert entries[1].if_range is not None
    assert sent(entries) <= size + config.chunk_size


# -- 6. a trickle -----------------------------------------------------------------------------------


def test_trickle_below_speed_limit_is_aborted(server: Server, config: Config) -> None:
    """A body slower than speed_limit for speed_time fails as too slow (no retries), and the part stays."""
    size = 300_000
    name = f"{config.engine}-fault-trickle.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(rate=2000))
    slow = dataclasses.replace(config, retries=0, speed_limit=100_000, speed_time=0.3)

    started = time.monotonic()
    result = fetch([server.url(path)], slow)[server.url(path)]
    elapsed = time.monotonic() - started

    assert Status.FAILED == result.status
    assert "too slow" in str(result.error)
    assert elapsed < 1.5
    part = (config.dest / (name + PART_SUFFIX)).read_bytes()
    assert 0 < len(part) < size
    assert body(name, size)[: len(part)] == part
    assert [name + PART_SUFFIX, name + STATE_SUFFIX] == leftovers(config.dest)
    assert 1 == len(log_of(server, path))


def test_small_body_trickle_is_aborted_in_time(server: Server, config: Config) -> None:
    """A small body (stored in one trip) slower than speed_limit is aborted after about speed_time, not once it has all come."""
    size = 2_000
    name = f"{config.engine}-fault-trickle-small.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(rate=1500))
    slow = dataclasses.replace(config, retries=0, speed_limit=100_000, speed_time=0.3)

    started = time.monotonic()
    result = fetch([server.url(path)], slow)[server.url(path)]
    elapsed = time.monotonic() - started

    assert Status.FAILED == result.status
    assert "too slow" in str(result.error)
    assert elapsed < 0.9
    assert not (config.dest / name).exists()


# -- 7. a lying Content-Length -------------------------------------------------------------------------


def test_content_length_longer_than_body_is_resumed(server: Server, config: Config) -> None:
    """A body shorter than its Content-Length is incomplete: the retry asks for the rest, and the file ends byte-exact."""
    size = 300_000
    name = f"{config.engine}-fault-long-length.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(length_delta=1000, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert (Status.DOWNLOADED, size) == (result.status, result.size)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert f"bytes={size}-" == entries[1].range
    assert entries[1].if_range is not None
    assert sent(entries) <= size + config.chunk_size


@pytest.mark.parametrize("check", ["size", "sha256"])
def test_content_length_shorter_than_body_fails_integrity(server: Server, config: Config, check: str) -> None:
    """A Content-Length 10 bytes short, with the list's size= or sha256=, fails with an integrity reason and no file."""
    size = 300_000
    name = f"{config.engine}-fault-short-length-{check}.bin"
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(length_delta=-10))
    expected = {"size": size, "sha256": body_sha256(name, size)}[check]
    job = Job(server.url(path), size=size) if check == "size" else Job(server.url(path), checksum="sha256:" + str(expected))

    result = fetch([job], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert str(expected) in str(result.error)
    assert ("size=" if check == "size" else "sha256 mismatch") in str(result.error)
    assert not (config.dest / name).exists()
    assert [] == leftovers(config.dest)
    assert 2 == len(log_of(server, path))  # a whole but wrong body is fetched once more, from zero, then given up


# -- 8. 416 answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_part_holding_the_whole_file_is_finished_on_416(server: Server, twin: Server, config: Config, size: int) -> None:
    """A part that already holds the whole file gets a 416 bytes */size and is finished without a body."""
    name = f"{config.engine}-fault-416-complete-{size}.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size), saved_state(twin, path, server.url(path)))

    result = fetch([Job(server.url(path), checksum="sha256:" + body_sha256(name, size))], config)[server.url(path)]

    assert (Status.DOWNLOADED, size, 0) == (result.status, result.size, result.received)
    assert "sha256:" + body_sha256(name, size) == result.checksum
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(f"bytes={size}-", 416, 0)] == [(e.range, e.status, e.bytes_sent) for e in entries]
    assert [] == leftovers(config.dest)


def test_416_on_a_partial_part_restarts(server: Server, twin: Server, config: Config) -> None:
    """A 416 to the resume of a partial part discards it; the whole file is fetched once, byte-exact."""
    size, have = 500_000, 120_000
    name = f"{config.engine}-fault-416-partial.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size)[:have], saved_state(twin, path, server.url(path)))
    server.set_rule(path, Rule(status=416, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert (Status.DOWNLOADED, size) == (result.status, result.received)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(f"bytes={have}-", 416), (None, 200)] == [(e.range, e.status) for e in entries]
    assert size == entries[1].bytes_sent


def test_part_longer_than_the_file_restarts(server: Server, twin: Server, config: Config) -> None:
    """A part longer than the file gets a 416 and is replaced by the file, fetched once."""
    size = 300_000
    name = f"{config.engine}-fault-416-longer.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size) + b"extra", saved_state(twin, path, server.url(path)))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(f"bytes={size + 5}-", 416), (None, 200)] == [(e.range, e.status) for e in entries]
    assert size == sent(entries)


# -- 9. a 206 of the wrong range ---------------------------------------------------------------------------


def test_shifted_content_range_restarts(server: Server, twin: Server, config: Config) -> None:
    """A 206 that starts elsewhere than asked is discarded; the file is fetched again from zero, byte-exact."""
    size, have = 500_000, 100_000
    name = f"{config.engine}-fault-shift.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size)[:have], saved_state(twin, path, server.url(path)))
    server.set_rule(path, Rule(range_shift=5, times=1))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert (Status.DOWNLOADED, size) == (result.status, result.received)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(f"bytes={have}-", 206), (None, 200)] == [(e.range, e.status) for e in entries]
    assert size == entries[1].bytes_sent


# -- 10. a redirect on a resumed request ---------------------------------------------------------------------


def test_redirect_carries_range_and_if_range(server: Server, twin: Server, config: Config) -> None:
    """A resumed request that is redirected asks the new location for the same range, with the same If-Range."""
    size, have = 500_000, 200_000
    target_name = f"{config.engine}-fault-redirect-target.bin"
    target = f"/bytes/{size}/{target_name}"
    name = f"{config.engine}-fault-redirect.bin"
    path = f"/bytes/{size}/{name}"
    state = saved_state(twin, target, server.url(path))  # the first run was redirected to the target too
    leave_part(config, name, body(target_name, size)[:have], state)
    server.set_rule(path, Rule(redirect=server.url(target)))

    result = fetch([server.url(path)], config)[server.url(path)]

    assert (Status.DOWNLOADED, size - have) == (result.status, result.received)
    assert body(target_name, size) == (config.dest / name).read_bytes()
    assert [(f"bytes={have}-", 302)] == [(e.range, e.status) for e in log_of(server, path)]
    entries = log_of(server, target)
    assert [(f"bytes={have}-", state.etag, 206)] == [(e.range, e.if_range, e.status) for e in entries]
    assert sent(entries) <= size - have + config.chunk_size


# -- 11. damaged or foreign state files ---------------------------------------------------------------------------


DAMAGED_STATES = {
    "empty": "",
    "truncated": '{"version": 1, "url": "http://',
    "not-an-object": "[1, 2, 3]",
    "unknown-version": '{"version": 2, "url": "%(url)s", "etag": "\\"x\\"", "last_modified": null, "size": %(size)d}',
    "other-url": '{"version": 1, "url": "%(url)s?other", "etag": "\\"x\\"", "last_modified": null, "size": %(size)d}',
    "negative-size": '{"version": 1, "url": "%(url)s", "etag": "\\"x\\"", "last_modified": null, "size": -1}',
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(DAMAGED_STATES))
def test_damaged_state_restarts_from_zero(server: Server, config: Config, kind: str, size: int) -> None:
    """A part beside a damaged or foreign state file is fetched again from zero, without a Range and without a crash."""
    name = f"{config.engine}-fault-state-{kind}-{size}.bin"
    path = f"/bytes/{size}/{name}"
    url = server.url(path)
    leave_part(config, name, b"\0" * 10_000, state_text=DAMAGED_STATES[kind] % {"url": url, "size": size})

    result = fetch([url], config)[url]

    assert (Status.DOWNLOADED, size) == (result.status, result.received)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(None, 200)] == [(e.range, e.status) for e in entries]
    assert size == sent(entries)
    assert [] == leftovers(config.dest)


@pytest.mark.parametrize("size", SIZES)
def test_state_that_is_not_utf8_restarts_from_zero(server: Server, config: Config, size: int) -> None:
    """A state file of binary garbage is ignored: the file is fetched from zero, and the garbage does not outlive it."""
    name = f"{config.engine}-fault-state-binary-{size}.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, b"\0" * 10_000)
    (config.dest / (name + STATE_SUFFIX)).write_bytes(b"\xff\xfe\x00garbage")

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.DOWNLOADED == result.status
    assert body(name, size) == (config.dest / name).read_bytes()
    assert [(None, size)] == [(e.range, e.bytes_sent) for e in log_of(server, path)]
    assert [] == leftovers(config.dest)


@pytest.mark.parametrize("size", SIZES)
def test_resume_disabled_restarts_a_valid_part(server: Server, twin: Server, config: Config, size: int) -> None:
    """resume=False fetches the whole file even beside a valid part and state, and leaves neither behind."""
    name = f"{config.engine}-fault-no-resume-{size}.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, body(name, size)[:10_000], saved_state(twin, path, server.url(path)))

    result = fetch([server.url(path)], dataclasses.replace(config, resume=False))[server.url(path)]

    assert (Status.DOWNLOADED, size) == (result.status, result.received)
    assert body(name, size) == (config.dest / name).read_bytes()
    entries = log_of(server, path)
    assert [(None, None, 200)] == [(e.range, e.if_range, e.status) for e in entries]
    assert size == sent(entries)
    assert [] == leftovers(config.dest)


def test_directory_in_place_of_the_state_fails_naming_it(server: Server, config: Config) -> None:
    """A directory where the state file goes fails the URL at once, naming that path, and leaves no temporary file."""
    size = 300_000
    name = f"{config.engine}-fault-state-dir.bin"
    path = f"/bytes/{size}/{name}"
    leave_part(config, name, b"\0" * 10_000)
    state = config.dest / (name + STATE_SUFFIX)
    state.mkdir()

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert f"cannot write {state}: " in str(result.error)
    assert 1 == len(log_of(server, path))
    assert [name + PART_SUFFIX, name + STATE_SUFFIX] == leftovers(config.dest)


# -- 12. local I/O errors ------------------------------------------------------------------------------------------


def test_unwritable_directory_fails_at_once(server: Server, config: Config) -> None:
    """An out= directory without write permission fails without a retry, naming the path."""
    name = f"{config.engine}-fault-readonly.bin"
    path = f"/bytes/300000/{name}"
    locked = config.dest / "locked"
    locked.mkdir(parents=True)
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("permissions do not stop this user from writing (root)")

        result = fetch([Job(server.url(path), out="locked/f.bin")], config)[server.url(path)]

        assert Status.FAILED == result.status
        assert str(locked) in str(result.error)
        assert len(log_of(server, path)) <= 1
    finally:
        locked.chmod(0o700)


def test_out_under_a_regular_file_fails_at_once(server: Server, config: Config) -> None:
    """out= below a path that is a regular file fails without a retry, naming the path."""
    name = f"{config.engine}-fault-under-file.bin"
    path = f"/bytes/300000/{name}"
    config.dest.mkdir(parents=True)
    (config.dest / "blocker").write_bytes(b"a file, not a directory")

    result = fetch([Job(server.url(path), out="blocker/sub/f.bin")], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert str(config.dest / "blocker") in str(result.error)
    assert len(log_of(server, path)) <= 1
    assert b"a file, not a directory" == (config.dest / "blocker").read_bytes()


def test_directory_in_place_of_the_part_fails_at_once(server: Server, config: Config) -> None:
    """A directory where the part goes fails without a request, naming the part."""
    name = f"{config.engine}-fault-part-dir.bin"
    path = f"/bytes/300000/{name}"
    (config.dest / (name + PART_SUFFIX)).mkdir(parents=True)

    result = fetch([server.url(path)], config)[server.url(path)]

    assert Status.FAILED == result.status
    assert str(config.dest / (name + PART_SUFFIX)) in str(result.error)
    assert [] == log_of(server, path)


def test_disk_refusing_mid_body_fails_at_once(server: Server, config: Config) -> None:
    """A write refused in the middle of the body (file too large) fails at once, naming the part, not retried."""
    size, limit = 800_000, 200_000
    name = f"{config.engine}-fault-efbig.bin"
    path = f"/bytes/{size}/{name}"
    config.dest.mkdir(parents=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        result = fetch([server.url(path)], config)[server.url(path)]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

    assert Status.FAILED == result.status
    assert str(config.dest / (name + PART_SUFFIX)) in str(result.error)
    assert 1 == len(log_of(server, path))
    assert not (config.dest / name).exists()


# -- 13. a part locked by another run ----------------------------------------------------------------------------------


def test_locked_part_is_skipped_and_untouched(server: Server, config: Config) -> None:
    """While another run holds the lock on the part, the URL is skipped and the part is left as it is."""
    size = 300_000
    name = f"{config.engine}-fault-locked.bin"
    path = f"/bytes/{size}/{name}"
    part = leave_part(config, name, b"another run's bytes")
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = fetch([server.url(path)], config)[server.url(path)]
    finally:
        os.close(fd)

    assert Status.SKIPPED == result.status
    assert "being written by another run" in str(result.error)
    assert b"another run's bytes" == part.read_bytes()
    assert [name + PART_SUFFIX] == leftovers(config.dest)
    assert [] == log_of(server, path)
