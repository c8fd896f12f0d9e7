"""--split: one large file over several ranged connections, written in place (both engines)."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from downloader import Config, Job, Status, download
from downloader.core import ResumeState
from downloader.storage import Segments
from downloader.testing import Rule, Server, body, body_sha256

SIZE = 6 * 1024 * 1024 + 11
MIN = 1024 * 1024


@pytest.fixture
def split(config: Config) -> Config:
    return dataclasses.replace(config, split=4, min_split_size=MIN, per_host=8)


def test_split_fetches_ranges_in_parallel_and_is_byte_exact(server: Server, split: Config) -> None:
    """A large file comes over four connections: the whole-file answer for the first segment, three ranges."""
    name = f"{split.engine}-split.bin"
    url = server.file_url(name, SIZE)

    [result] = download([Job(url, checksum="sha256:" + body_sha256(name, SIZE))], config=split)

    entries = server.requests(f"/bytes/{SIZE}/{name}")
    assert (Status.DOWNLOADED, SIZE) == (result.status, result.size)
    assert body(name, SIZE) == (split.dest / name).read_bytes()
    assert [None] + ["set"] * 3 == [e.range and "set" for e in entries]
    assert all(e.if_range for e in entries[1:])
    assert [] == [p.name for p in split.dest.iterdir() if p.name != name]


def test_small_files_and_unsplittable_answers_use_one_stream(server: Server, split: Config) -> None:
    """Below twice the minimum segment, or without Accept-Ranges, one connection does it all."""
    small = server.file_url(f"{split.engine}-nosplit-small.bin", 2 * MIN - 1)
    plain = server.file_url(f"{split.engine}-nosplit-plain.bin", SIZE, Rule(ranges=False))

    results = download([small, plain], config=split)

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert 1 == len(server.requests(f"/bytes/{2 * MIN - 1}/{split.engine}-nosplit-small.bin"))
    assert 1 == len(server.requests(f"/bytes/{SIZE}/{split.engine}-nosplit-plain.bin"))


def test_server_that_ignores_ranges_falls_back_to_one_stream(server: Server, split: Config) -> None:
    """A server advertising ranges but answering 200 to them: the split is dropped, one stream from zero."""
    name = f"{split.engine}-liar.bin"
    url = server.file_url(name, SIZE, Rule(ranges=False, accept_ranges="bytes"))

    [result] = download([url], config=split)

    assert Status.DOWNLOADED == result.status
    assert body(name, SIZE) == (split.dest / name).read_bytes()


def test_split_part_is_resumed_per_segment(server: Server, split: Config) -> None:
    """A part with a segment table (as a killed run leaves it) is continued segment by segment."""
    name = f"{split.engine}-resume-split.bin"
    url = server.file_url(name, SIZE)
    content = body(name, SIZE)
    quarter = SIZE // 4
    segments = tuple((i * quarter, (i + 1) * quarter if i < 3 else SIZE, 1000 * (i + 1)) for i in range(4))
    split.dest.mkdir(parents=True)
    with open(split.dest / (name + ".part"), "wb") as part:
        for start, _, done in segments:
            part.seek(start)
            part.write(content[start:start + done])
    etag = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=5).headers["ETag"]
    state = ResumeState(url, etag, None, SIZE, segments)
    (split.dest / (name + ".part.state")).write_text(state.dumps())
    before = server.bytes_sent(f"/bytes/{SIZE}/{name}")

    [result] = download([url], config=split)

    assert (Status.DOWNLOADED, SIZE - 10_000) == (result.status, result.received)
    assert content == (split.dest / name).read_bytes()
    assert SIZE - 10_000 == server.bytes_sent(f"/bytes/{SIZE}/{name}") - before


def test_sigkill_during_a_split_transfer_then_rerun(server: Server, engine: str, tmp_path: Path) -> None:
    """Killed mid-way, a split download resumes every segment and ends byte-exact, re-fetching little."""
    name = f"{engine}-split-kill.bin"
    size = 16 * 1024 * 1024
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(rate=4 * 1024 * 1024))
    argv = [sys.executable, "-m", "downloader", server.url(path), "-d", str(tmp_path), "-e", engine, "-q",
            "--split", "4", "--min-split-size", "1M", "--per-host", "8"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE)
    state = tmp_path / (name + ".part.state")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        saved = ResumeState.loads(state.read_text(), server.url(path)) if state.exists() else None
        if saved and saved.segments and sum(d for _, _, d in saved.segments) >= 6 * 1024 * 1024:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    assert not (tmp_path / name).exists()
    server.rules.pop(path)

    done = subprocess.run(argv, capture_output=True, timeout=60)

    assert 0 == done.returncode, done.stderr
    assert body(name, size) == (tmp_path / name).read_bytes()
    slack = 4 * (Segments.SAVE_EVERY + 2 * 1024 * 1024)
    assert server.bytes_sent(path) <= size + slack


def test_split_works_with_one_transfer_at_a_time(server: Server, split: Config) -> None:
    """-j 1 --split 4: the pool holds a connection per segment, so nothing waits on itself."""
    name = f"{split.engine}-split-j1.bin"

    [result] = download([server.file_url(name, SIZE)], config=dataclasses.replace(split, concurrency=1))

    assert Status.DOWNLOADED == result.status
    assert 4 == len(server.requests(f"/bytes/{SIZE}/{name}"))


@pytest.mark.timeout(30)
def test_more_split_files_than_host_slots_do_not_wait_on_each_other(server: Server, split: Config) -> None:
    """-j 4 --per-host 2 --split 4 with four large files: every transfer holding a slot while its
    segments wait for another would hang; the first answer's slot is given back instead."""
    names = [f"{split.engine}-crowded-{i}.bin" for i in range(4)]

    results = download([server.file_url(name, SIZE) for name in names],
                       config=dataclasses.replace(split, concurrency=4, per_host=2))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert all(body(name, SIZE) == (split.dest / name).read_bytes() for name in names)


@pytest.mark.timeout(30)
def test_first_segments_failing_while_others_wait_for_slots_do_not_hang(server: Server, split: Config) -> None:
    """-j 2 --per-host 2 --split 4, two files whose whole-file answers break early: each first
    segment fails while its other segments wait for a slot; the failed transfers give their slots
    back before waiting for them, and the retries complete both files byte-exact."""
    names = [f"{split.engine}-broken-first-{i}.bin" for i in range(2)]
    for name in names:
        server.set_rule(f"/bytes/{SIZE}/{name}", Rule(drop_after=300_000, times=1))

    results = download([server.file_url(name, SIZE) for name in names],
                       config=dataclasses.replace(split, concurrency=2, per_host=2, backoff_base=0.01))

    assert {Status.DOWNLOADED} == {r.status for r in results}
    assert all(body(name, SIZE) == (split.dest / name).read_bytes() for name in names)
