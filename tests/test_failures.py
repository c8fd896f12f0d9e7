"""The failures of a run in its summary: kinds of reason, counts per kind and host, bounded output."""

from __future__ import annotations

import re
import tracemalloc

import pytest

from downloader.failures import OTHER, Failures, failure_kind
from downloader.jobs import Result, Status

HEX64 = "25c4d0f0859de08547d4cf49580cbe64c209ac261df9a62dc2ce87079a7f44a7"


@pytest.mark.parametrize("reason, kind", [
    # core.py and retry.py
    ("HTTP 404 Not Found", "HTTP 404 Not Found"),
    ("HTTP 500 Internal Server Error (gave up after 6 attempts)", "HTTP 500 Internal Server Error"),
    ("HTTP 503 Service Unavailable: server asks to retry after 9999 s, more than max wait 300 s",
     "HTTP 503 Service Unavailable: server asks to retry after N s, more than max wait N s"),
    ("HTTP 599", "HTTP 599"),
    ("HTTP 302 redirect not followed (no Location)", "HTTP 302 redirect not followed (no Location)"),
    ("HTTP 301 redirect not followed (http://h/b/c.bin)", "HTTP 301 redirect not followed (URL)"),
    ("connection closed after 1234 of 5678 bytes", "connection closed after N of M bytes"),
    ("connection closed after 9 of 10 bytes (gave up after 6 attempts)", "connection closed after N of M bytes"),
    ("received 1010 bytes, 1000 announced", "received N bytes, N announced"),
    ("size mismatch: expected 99 bytes, got 100", "size mismatch: expected N bytes, got N"),
    ("server announces 100 bytes, the list says size=99", "server announces N bytes, the list says size=N"),
    (f"sha256 mismatch: expected {'0' * 64}, got {HEX64}", "sha256 mismatch: expected HEX, got HEX"),
    ("md5 mismatch (the server's Content-MD5): expected 0123456789abcdef0123456789abcdef, got "
     "0123456789abcdef0123456789abcdee", "md5 mismatch (the server's Content-MD5): expected HEX, got HEX"),
    ("file of 2000000 bytes is larger than --max-filesize 150", "file of N bytes is larger than --max-filesize N"),
    ("redirect to an unsupported scheme 'ftp': ftp://x/y", "redirect to an unsupported scheme 'ftp': URL"),
    ("redirect from http://h/a without a Location", "redirect from URL without a Location"),
    ("more than 10 redirects: http://h/1 -> http://h/2 -> ... -> http://h/9", "more than N redirects"),
    ("invalid answer: invalid Content-Length: 'abc' is not a number",
     "invalid answer: invalid Content-Length: 'abc' is not a number"),
    ("invalid answer: invalid Content-Length: several values (5, 6)",
     "invalid answer: invalid Content-Length: several values (N, N)"),
    # attempt.py
    ("too slow: under 1024 bytes/s for 60 s (gave up after 6 attempts)", "too slow: under N bytes/s for N s"),
    ("body grew past --max-filesize 1048576 bytes", "body grew past --max-filesize N bytes"),
    ("the server twice answered with a range that cannot be used",
     "the server twice answered with a range that cannot be used"),
    # sources.py and naming.py: "FILE:LINE: " or "argument N: " first
    ("list.txt:7: unsupported scheme 'ftp' (only http and https)", "unsupported scheme 'ftp' (only http and https)"),
    ("/data/urls.txt:12: sha256 must be 64 hex digits, got 'xyz'", "sha256 must be N hex digits, got '...'"),
    ("<stdin>:3: unknown key 'colour' (known: out, sha256, size)", "unknown key 'colour' (known: out, sha256, size)"),
    ("argument 2: URL has no host", "URL has no host"),
    ("list.txt:9: line longer than 65536 bytes", "line longer than N bytes"),
    ("list.txt:10: line is not UTF-8 (invalid start byte)", "line is not UTF-8 (invalid start byte)"),
    ("list.txt:8: out='../../escape.bin' climbs out of the destination", "out='...' climbs out of the destination"),
    # tables.py: FILE:ROW as FILE:LINE
    ("list.csv:7: no URL", "no URL"),
    ("rows.jsonl:3: invalid JSON (Expecting value: line 1 column 1 (char 0))",
     "invalid JSON (Expecting value: line N column N (char N))"),
    # storage.py and dispatch.py: paths
    ("/tmp/out/a.bin is a directory", "PATH is a directory"),
    ("out/sub/a.bin exists with 12 bytes but the list says size=10; left untouched",
     "PATH exists with N bytes but the list says size=N; left untouched"),
    ("cannot write /tmp/out/a.bin.part: No space left on device", "cannot write PATH: No space left on device"),
    ("out/a.bin is already being written by http://h/x (list.txt:4); not overwriting it",
     "PATH is already being written by URL (list.txt:N); not overwriting it"),
    ("HTTP 404 Not Found (same URL as (list.txt:3))", "HTTP 404 Not Found"),
    # the engines: libraries' words become one kind
    ("connection failed: [Errno 111] Connection refused (gave up after 6 attempts)", "connection refused"),
    ("connection failed: Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed ('127.0.0.1', 9)]",
     "connection failed"),
    ("connection failed: _HTTPPool(host='127.0.0.1', port=9): Max retries exceeded with url: /r.bin (Caused by "
     "NewConnectionError(\"_HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: "
     "[Errno ...", "connection failed"),
    ("connection failed: [Errno 104] Connection reset by peer", "connection reset"),
    ("connection failed: Cannot connect to host nowhere.invalid:80 ssl:default [Name or service not known]",
     "host name not found"),
    ("connection failed: [Errno -2] Name or service not known", "host name not found"),
    ("connection failed: [Errno 113] No route to host", "no route to host"),
    ("connection failed: [Errno 101] Network is unreachable", "network unreachable"),
    ("connection failed: Cannot connect to host h:443 ssl:True [SSLCertVerificationError: (1, '[SSL: "
     "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)')]",
     "TLS certificate not accepted"),
    ("connect timeout: Connection timeout to host http://10.0.0.1:80/x", "connect timeout"),
    ("stalled: no data within the timeout (gave up after 6 attempts)", "stalled: no data within the timeout"),
    ("connection broken during the body: Response payload is not completed: <ContentLengthError: 400, "
     "message='Not enough data to satisfy content length header (received 1000 of 99000 bytes).'>",
     "connection broken during the body"),
    ("connection broken during the body: Connection broken: IncompleteRead(1000 bytes read, 98000 more expected)",
     "connection broken during the body"),
    ("server disconnected: Server disconnected", "server disconnected"),
    ("broken chunked body: invalid chunk size 'zz'", "broken chunked body: invalid chunk size 'zz'"),
    ("segment 3 ended 1048576 bytes short (gave up after 6 attempts)", "segment N ended N bytes short"),
    ("request failed: ClientError('boom at http://x/y')", "request failed: ClientError"),
    ("cannot fetch: InvalidURL('http://[::1/x')", "cannot fetch: InvalidURL"),
    # processes.py and cluster.py
    ("engine process 1 of 2 (pid 4242) died (killed by SIGKILL) while this URL was in flight, for the second "
     "time; not tried again", "engine process N of M (pid N) died (killed by SIGKILL) while this URL was in flight, "
                              "for the second time; not tried again"),
    ("the Dask cluster has had no worker for 60 s", "the Dask cluster has had no worker for N s"),
    ("", "no reason given"),
])
def test_failure_kind_takes_out_what_varies_per_file(reason: str, kind: str) -> None:
    """URLs, paths, digests, counts and line numbers go; statuses, errno words and the wording stay."""
    assert kind == failure_kind(reason)


def test_failure_kind_is_bounded() -> None:
    """A reason of any length gives a kind of at most 200 characters."""
    assert 200 == len(failure_kind("invalid answer: " + "x" * 100_000))


def failed(url: str, reason: str) -> Result:
    return Result(url, Status.FAILED, error=reason)


def test_groups_count_by_kind_and_host_most_frequent_first() -> None:
    """404s on two hosts are two groups; the other results are not counted."""
    failures = Failures()
    for i in range(3):
        failures.add(failed(f"http://a.example/{i}", "HTTP 404 Not Found"))
    failures.add(failed("http://b.example:8080/x", "HTTP 404 Not Found"))
    for i in range(5):
        failures.add(failed(f"https://b.example/{i}", f"connection closed after {i} of 10 bytes"))
    failures.add(Result("http://a.example/ok", Status.DOWNLOADED))

    groups = [(g.kind, g.host, g.count) for g in failures.groups()]

    assert [("connection closed after N of M bytes", "b.example", 5), ("HTTP 404 Not Found", "a.example", 3),
            ("HTTP 404 Not Found", "b.example:8080", 1)] == groups
    assert 9 == failures.total


def test_groups_beyond_the_cap_are_folded_into_other() -> None:
    """Distinct (kind, host) pairs past max_groups are counted in one "other" group, shown last."""
    failures = Failures(max_groups=3)
    for host in range(10):
        failures.add(failed(f"http://h{host}.example/a", "HTTP 404 Not Found"))
    failures.add(failed("http://h0.example/b", "HTTP 404 Not Found"))

    groups = [(g.kind, g.host, g.count) for g in failures.groups()]

    assert [("HTTP 404 Not Found", "h0.example", 2), ("HTTP 404 Not Found", "h1.example", 1),
            ("HTTP 404 Not Found", "h2.example", 1), (OTHER, "", 7)] == groups


def test_a_few_failures_are_all_listed() -> None:
    """Up to 20 failures: the groups, then every failure as ``URL: reason``, as before."""
    failures = Failures()
    failures.add(failed("http://h/a", "HTTP 404 Not Found"))
    failures.add(failed("http://h/b", "connection failed: [Errno 111] Connection refused"))
    failures.add(failed("http://h/c", "HTTP 404 Not Found"))

    lines = failures.lines(failed_file=None)

    assert ["failed: 3 files, by reason and host:",
            "  2  HTTP 404 Not Found  on h",
            "  1  connection refused  on h",
            "failed URLs:",
            "  http://h/a: HTTP 404 Not Found",
            "  http://h/b: connection failed: [Errno 111] Connection refused",
            "  http://h/c: HTTP 404 Not Found"] == lines


def test_no_failure_no_lines() -> None:
    assert [] == Failures().lines(failed_file="f.txt")


def hundred_thousand_failures(failures: Failures, start: int = 0, stop: int = 100_000) -> None:
    """60 % 404s on one host, 30 % refused on another, 10 % cut bodies over 2,000 hosts (2,002 groups)."""
    for i in range(start, stop):
        if i % 10 < 6:
            failures.add(failed(f"http://127.0.0.1:8000/f{i}.bin", "HTTP 404 Not Found"))
        elif i % 10 < 9:
            failures.add(failed(f"http://127.0.0.2:9000/f{i}.bin",
                                "connection failed: [Errno 111] Connection refused (gave up after 6 attempts)"))
        else:
            failures.add(failed(f"http://host{i // 10 % 2000}.example/f{i}", f"connection closed after {i} of {i * 2} bytes"))


def test_a_hundred_thousand_failures_stay_readable() -> None:
    """100,000 failures over 2,002 (kind, host) pairs: 44 lines, the most frequent groups first;
    the last line says where the others are listed."""
    failures = Failures()
    hundred_thousand_failures(failures)

    lines = failures.lines(failed_file="failed.txt", report_file="report.jsonl")
    without = failures.lines(failed_file=None)

    assert lines[:4] == ["failed: 100000 files, by reason and host:",
                         "  60000  HTTP 404 Not Found                    on 127.0.0.1:8000",
                         "  30000  connection refused                    on 127.0.0.2:9000",
                         "      5  connection closed after N of M bytes  on host0.example"]
    assert "   9910  in 981 more groups (all in --report report.jsonl)" == lines[21]
    assert "the first 20 failed URLs:" == lines[22]
    assert all(re.fullmatch(r"  http://\S+: .+", line) for line in lines[23:43])
    assert "  ... and 99980 more: see --failed failed.txt" == lines[43] and 44 == len(lines)
    assert "   9910  in 981 more groups" == without[21]
    assert "  ... and 99980 more: run with --failed FILE to list them all" == without[-1]


def test_failures_take_bounded_memory() -> None:
    """Past the cap of 1,000 groups and the first 20 failures, more failures take no more memory."""
    def cut_bodies(start: int, stop: int) -> None:  # each reason its own, over 2,000 hosts
        for i in range(start, stop):
            failures.add(failed(f"http://host{i % 2000}.example/f{i}", f"connection closed after {i} of {i * 2} bytes"))

    failures = Failures()
    failure_kind.cache_clear()
    cut_bodies(0, 5_000)
    tracemalloc.start()
    try:
        cut_bodies(5_000, 7_000)  # the kinds' cache turns over: what it held was allocated before tracing
        before = tracemalloc.get_traced_memory()[0]
        cut_bodies(7_000, 12_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert 12_000 == failures.total
    assert 1001 == len(failures.groups())  # 1,000 pairs, and "other"
    assert (OTHER, "", 6_000) == (failures.groups()[-1].kind, failures.groups()[-1].host, failures.groups()[-1].count)
    assert 20 == len(failures.first())
    assert grown < 20_000, grown


def test_the_report_gets_every_group() -> None:
    """to_json: kind, host and count of each group, most frequent first."""
    failures = Failures()
    failures.add(failed("http://h/a", "HTTP 404 Not Found"))
    failures.add(failed("http://h/b", "HTTP 404 Not Found"))
    failures.add(failed("not a url", "argument 1: URL has no host"))

    assert [{"kind": "HTTP 404 Not Found", "host": "h", "count": 2},
            {"kind": "URL has no host", "host": "", "count": 1}] == failures.to_json()


def test_long_kinds_are_clipped_and_reasons_kept_on_one_line() -> None:
    """The summary shows at most 80 characters of a kind; a reason over several lines is listed on one."""
    long = "invalid answer: " + "word " * 40
    failures = Failures()
    failures.add(failed("http://h/a", long))
    failures.add(failed("http://h/b", "server disconnected:\n  Server\r\n disconnected"))

    lines = failures.lines()

    assert f"  1  {long[:77]}...  on h" == lines[1]
    assert "  http://h/b: server disconnected: Server disconnected" == lines[-1]
