"""--shard K/N and the placement hash: disjoint shards that cover a list exactly, stable across processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from downloader import Config, Job, download
from downloader.cli import main
from downloader.errors import InvalidJob
from downloader.sharding import Shard, in_shard, placement_hash, placement_key, process_of
from downloader.sources import read_urls
from downloader.testing import Server, body


def urls(count: int) -> list[str]:
    return [f"http://127.0.0.1:9/data/{i % 37}/file-{i}.bin" for i in range(count)]


@pytest.mark.parametrize("text, expected", [("1/1", Shard(1, 1)), ("2/8", Shard(2, 8)), (" 8 / 8 ", Shard(8, 8))])
def test_shard_parses_k_of_n(text: str, expected: Shard) -> None:
    """K/N parses with optional blanks."""

    assert expected == Shard.parse(text)


@pytest.mark.parametrize("text", ["0/4", "5/4", "1", "a/b", "1/0", "-1/2", "1/2/3", ""])
def test_shard_refuses_what_is_not_k_of_n(text: str) -> None:
    """K must lie in 1..N; anything else says what was given."""

    with pytest.raises(ValueError, match="shard must be K/N"):
        Shard.parse(text)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_are_disjoint_and_cover_the_list(count: int) -> None:
    """Every entry lands in exactly one of the N shards."""
    entries = list(read_urls(urls(2000)))

    taken = [[e.url for e in in_shard(entries, Shard(k, count))] for k in range(1, count + 1)]

    assert sorted(url for shard in taken for url in shard) == sorted(e.url for e in entries)
    assert all(len(shard) > 2000 / count / 2 for shard in taken)  # and spread, not all in one


def test_placement_hash_is_blake2b_of_the_output_name() -> None:
    """The documented hash: BLAKE2b-64 of the UTF-8 output path, big-endian; shard = h mod N."""
    key = placement_key(Job("https://example.org/dir/naïve.csv"))
    expected = int.from_bytes(hashlib.blake2b("naïve.csv".encode(), digest_size=8).digest(), "big")

    assert "naïve.csv" == key
    assert expected == placement_hash(key)
    assert Shard(expected % 3 + 1, 3).holds(placement_hash(key))


def test_lines_that_must_meet_share_a_shard_and_a_process() -> None:
    """The same URL, and different URLs naming the same file, are placed together."""
    same_name = [Job(f"http://host{i}.example/x/report.pdf") for i in range(20)]
    keys = {placement_key(job) for job in same_name}
    mirror = {placement_key(job, "mirror") for job in same_name}

    assert {"report.pdf"} == keys
    assert 20 == len(mirror)  # under --layout mirror they are different files
    assert "out/given.bin" == placement_key(Job("http://h/whatever", out="out/given.bin"))
    assert "bad://x" == placement_key(InvalidJob("bad://x", "unsupported"))
    assert 1 == len({process_of(placement_hash(k), 7) for k in keys})


def test_placement_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """Two interpreters with different PYTHONHASHSEED pick the same shard for every entry."""
    code = ("import json, sys; from downloader.sharding import *; from downloader.jobs import Job; "
            "print(json.dumps([placement_hash(placement_key(Job(u))) % 5 for u in sys.argv[1:]]))")
    picks = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code, *urls(200)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        picks.append(json.loads(done.stdout))

    assert picks[0] == picks[1]


def test_two_shards_download_a_list_between_them(server: Server, engine: str, tmp_path: Path) -> None:
    """Runs with --shard 1/2 and 2/2 into one destination fetch each URL once and every file."""
    names = [f"shard-{engine}-{i}.bin" for i in range(40)]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.file_url(name, 1000) + "\n" for name in names))
    dest = tmp_path / "out"

    codes = [main(["-i", str(listing), "-d", str(dest), "-e", engine, "-q", "--shard", f"{k}/2"]) for k in (1, 2)]

    assert [0, 0] == codes
    assert all(body(name, 1000) == (dest / name).read_bytes() for name in names)
    assert all(1 == server.counts[f"/bytes/1000/{name}"] for name in names)


def test_the_library_takes_a_shard(server: Server, tmp_path: Path) -> None:
    """download(shard=(K, N)) returns results for that shard's URLs only."""
    all_urls = [server.file_url(f"lib-shard-{i}.bin", 10) for i in range(30)]

    first = download(all_urls, dest=tmp_path, shard=(1, 3))
    rest = [download(all_urls, dest=tmp_path / f"s{k}", shard=(k, 3)) for k in (2, 3)]

    got = sorted(r.url for results in [first, *rest] for r in results)
    assert sorted(all_urls) == got


@pytest.mark.parametrize("value", ["0/2", "3/2", "x"])
def test_a_bad_shard_is_a_usage_error(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--shard outside 1..N exits 2 and says what K/N means."""
    with pytest.raises(SystemExit) as stop:
        main(["http://127.0.0.1:9/a", "-d", str(tmp_path), "--shard", value])

    assert 2 == stop.value.code
    assert "shard must be K/N" in capsys.readouterr().err


def test_config_checks_the_shard() -> None:
    """Config(shard=(K, N)) needs 1 <= K <= N."""
    with pytest.raises(ValueError, match="shard"):
        Config(shard=(3, 2))
