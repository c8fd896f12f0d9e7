"""Any checksum algorithm, and the digests servers state, end to end on both engines."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from downloader import Config, Job, Result, Status, download
from downloader.digests import server_digest
from downloader.testing import Rule, Server, body

SIZE = 200_000
"""Larger than one small body: the streamed path, hashed as it is written."""


def digest(algorithm: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def serve(server: Server, name: str, *headers: tuple[str, str], size: int = SIZE, **rule: object) -> str:
    path = f"/bytes/{size}/{name}"
    server.set_rule(path, Rule(headers=headers, **rule))  # type: ignore[arg-type]
    return server.url(path)


def fetch_one(job: str | Job, config: Config) -> Result:
    [result] = download([job], config=config)
    return result


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*") if p.is_file() and not p.name.startswith("manifest"))


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512", "blake2b"])
def test_each_list_algorithm_is_checked_and_recorded(server: Server, config: Config, algorithm: str) -> None:
    name = f"{config.engine}-alg-{algorithm}.bin"
    url = serve(server, name)
    expected = hashlib.new(algorithm, body(name, SIZE)).hexdigest()
    good = fetch_one(Job(url, checksum=f"{algorithm}:{expected}"), config)
    assert (Status.DOWNLOADED, f"{algorithm}:{expected}") == (good.status, good.checksum)

    bad_config = dataclasses.replace(config, dest=config.dest.parent / "bad")
    bad = fetch_one(Job(url, checksum=f"{algorithm}:{'0' * len(expected)}"), bad_config)
    assert Status.FAILED == bad.status and f"{algorithm} mismatch" in str(bad.error)
    assert not (bad_config.dest / name).exists()


@pytest.mark.parametrize(("header", "algorithm", "form"), [
    ("Repr-Digest", "sha256", "sha-256=:{}:"),
    ("Repr-Digest", "sha512", "sha-512=:{}:"),
    ("Digest", "sha256", "SHA-256={}"),
    ("Digest", "md5", "MD5={}"),
    ("Content-MD5", "md5", "{}"),
    ("Content-Digest", "sha256", "sha-256=:{}:"),
    ("x-goog-hash", "md5", "md5={}"),
])
@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
@pytest.mark.parametrize("size", [SIZE, 1000], ids=["streamed", "small"])
def test_a_server_digest_is_checked(server: Server, config: Config, header: str, algorithm: str, form: str,
                                    right: bool, size: int) -> None:
    """A right digest passes and is reported; a wrong one fails naming the header, and leaves no file."""
    name = f"{config.engine}-{header}-{algorithm}-{right}-{size}.bin"
    data = body(name, size) if right else b"something else"
    url = serve(server, name, (header, form.format(digest(algorithm, data))), size=size)
    result = fetch_one(url, dataclasses.replace(config, retries=0))
    if right:
        assert (Status.DOWNLOADED, f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}") == (
            result.status, result.checksum)
    else:
        assert Status.FAILED == result.status
        assert f"{algorithm} mismatch (the server's {header})" in str(result.error)
        assert [] == leftovers(config.dest)


def test_x_goog_hash_on_two_header_lines(server: Server, config: Config) -> None:
    """GCS sends crc32c and md5 as two x-goog-hash lines: the md5 one is found and checked."""
    name = f"{config.engine}-goog-two-lines.bin"
    url = serve(server, name, ("x-goog-hash", "crc32c=n03x6A=="), ("x-goog-hash", f"md5={digest('md5', b'x')}"))
    result = fetch_one(url, dataclasses.replace(config, retries=0))
    assert Status.FAILED == result.status and "x-goog-hash" in str(result.error)


def test_no_server_digest_turns_the_check_and_the_request_off(server: Server, config: Config) -> None:
    name = f"{config.engine}-no-server-digest.bin"
    url = serve(server, name, ("Repr-Digest", f"sha-256=:{digest('sha256', b'x')}:"))
    result = fetch_one(url, dataclasses.replace(config, server_digest=False))
    assert (Status.DOWNLOADED, None) == (result.status, result.checksum)
    sent = [entry.headers for entry in server.log if entry.path.endswith(name)]
    assert sent and not any("Want-Repr-Digest" in headers for headers in sent)


def test_want_repr_digest_is_sent_only_without_a_list_checksum(server: Server, config: Config) -> None:
    plain, summed = f"{config.engine}-want-plain.bin", f"{config.engine}-want-summed.bin"
    urls = [serve(server, plain), serve(server, summed)]
    download([urls[0], Job(urls[1], checksum="md5:" + hashlib.md5(body(summed, SIZE)).hexdigest())], config=config)
    asked = {entry.path.rsplit("/", 1)[1]: entry.headers.get("Want-Repr-Digest") for entry in server.log
             if entry.path.endswith((plain, summed))}
    assert {plain: "sha-256=10, sha-512=3", summed: None} == asked


def test_an_s3_style_etag_is_not_a_digest(server: Server, config: Config) -> None:
    """A multipart ETag ("<hex>-3") or any md5-looking ETag that is not the body's md5 passes."""
    name = f"{config.engine}-s3-etag.bin"
    multipart = serve(server, name, ("ETag", '"' + "0" * 32 + '-3"'), etag=False)
    single = serve(server, "single-" + name, ("ETag", '"' + "0" * 32 + '"'), etag=False)
    assert [Status.DOWNLOADED] * 2 == [fetch_one(url, config).status for url in (multipart, single)]


def test_a_resume_is_checked_against_a_whole_file_digest(server: Server, config: Config) -> None:
    """A part from a broken transfer is resumed with a 206 that carries Repr-Digest: the
    prefix is hashed once and the whole file checked; a wrong digest then fails it."""
    name = f"{config.engine}-resume-digest.bin"
    size = 600_000
    good = ("Repr-Digest", f"sha-256=:{digest('sha256', body(name, size))}:")
    url = serve(server, name, good, size=size, drop_after=250_000, times=1)
    result = fetch_one(url, config)
    assert (Status.DOWNLOADED, 2) == (result.status, result.attempts)
    assert result.checksum == "sha256:" + hashlib.sha256(body(name, size)).hexdigest()
    ranges = [entry.range for entry in server.log if entry.path.endswith(name)]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")


def test_the_manifest_and_the_report_record_the_algorithm(server: Server, config: Config, tmp_path: Path) -> None:
    name = f"{config.engine}-report-alg.bin"
    url = serve(server, name, size=5000)
    md5 = hashlib.md5(body(name, 5000)).hexdigest()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{url} md5={md5}\n")
    report = tmp_path / "report.jsonl"
    command = [sys.executable, "-m", "downloader", "-i", str(listing), "-d", str(config.dest), "--engine",
               config.engine, "--report", str(report), "-q"]
    subprocess.run(command, check=True, timeout=60)
    [record] = [line for line in map(json.loads, report.read_text().splitlines()) if line.get("url") == url]
    assert "md5:" + md5 == record["checksum"]
    again = subprocess.run(command, check=True, timeout=60, capture_output=True, text=True)
    [skipped] = [line for line in map(json.loads, report.read_text().splitlines()) if line.get("url") == url]
    assert ("skipped", "md5:" + md5) == (skipped["status"], skipped["checksum"]), again.stderr


def test_server_digest_parsing_ignores_what_it_cannot_read() -> None:
    """The header parser alone: unknown algorithms, bad base64, wrong lengths and empty values."""
    good = digest("sha256", b"x")
    assert server_digest({"Repr-Digest": f"crc32=:AAAA:, sha-256=:{good}:"}, whole_body=False) == (
        "sha256", hashlib.sha256(b"x").hexdigest(), "Repr-Digest")
    assert server_digest({"Repr-Digest": f"sha-256={good}"}, whole_body=True) is None  # not a byte sequence
    assert server_digest({"Digest": "SHA-256=@@@"}, whole_body=True) is None
    assert server_digest({"Content-MD5": digest("md5", b"x")}, whole_body=False) is None
    assert server_digest({"Content-Digest": f"sha-256=:{good}:"}, whole_body=False) is None
    assert server_digest({"Content-MD5": hashlib.md5(b"x").hexdigest()}, whole_body=True) == (
        "md5", hashlib.md5(b"x").hexdigest(), "Content-MD5")
    assert server_digest({"ETag": '"' + hashlib.md5(b"x").hexdigest() + '"'}, whole_body=True) is None


@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
def test_a_split_file_is_checked_against_the_first_answer_digest(server: Server, config: Config, right: bool) -> None:
    """--split: the segments arrive out of order, so the part is hashed once at the end."""
    name = f"{config.engine}-split-digest-{right}.bin"
    size = 400_000
    data = body(name, size) if right else b"other"
    url = serve(server, name, ("Repr-Digest", f"sha-512=:{digest('sha512', data)}:"), size=size)
    split = dataclasses.replace(config, split=4, min_split_size=50_000, retries=0)
    result = fetch_one(url, split)
    ranges = [entry.range for entry in server.log if entry.path.endswith(name)]
    assert len([r for r in ranges if r]) >= 3  # it was split
    if right:
        assert (Status.DOWNLOADED, "sha512:" + hashlib.sha512(data).hexdigest()) == (result.status, result.checksum)
    else:
        assert Status.FAILED == result.status and "sha512 mismatch (the server's Repr-Digest)" in str(result.error)
