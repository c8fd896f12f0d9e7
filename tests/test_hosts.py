"""Host identity: one answer, default port filled in, for credentials, connection slots and mirror directories."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from downloader import politeness
from downloader.core import RequestOptions, request_headers
from downloader.hosts import host_key, host_label, same_origin
from downloader.jobs import Job
from downloader.naming import output_path
from downloader.politeness import HostPolicy


@pytest.mark.parametrize(("url", "expected"), [
    ("http://Example.COM/a", "example.com:80"),
    ("http://example.com:80/b", "example.com:80"),
    ("HTTPS://example.com/", "example.com:443"),
    ("https://example.com:8443/x?y", "example.com:8443"),
    ("http://user:pw@Host.test:8080/", "host.test:8080"),
    ("http://[::1]:8080/", "[::1]:8080"),
    ("http://[::1]/", "[::1]:80"),
    ("http://h:0/", "h:0"),
], ids=str)
def test_host_key(url: str, expected: str) -> None:
    """A host is host:port, lower-cased, the scheme's default port filled in; the scheme itself is not part of it."""
    assert expected == host_key(url)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://Example.COM/a", "example.com"),
    ("http://example.com:80/b", "example.com"),
    ("https://example.com:443/", "example.com"),
    ("https://example.com:80/", "example.com:80"),
    ("http://example.com:443/", "example.com:443"),
    ("http://[::1]:8080/", "[::1]:8080"),
    ("http://[::1]:80/", "[::1]"),
], ids=str)
def test_host_label_leaves_out_the_default_port(url: str, expected: str) -> None:
    """The mirror directory's form is the host key without the scheme's own default port."""
    assert expected == host_label(url)


@pytest.mark.parametrize(("url", "other", "expected"), [
    ("http://h/", "http://h:80/x", True),
    ("http://H/", "http://h/", True),
    ("https://h/", "https://h:443/", True),
    ("https://h/", "http://h/", False),
    ("http://h:443/", "https://h/", False),
    ("http://h/", "http://h:8080/", False),
    ("http://h/", "http://g/", False),
], ids=str)
def test_same_origin(url: str, other: str, expected: bool) -> None:
    """Same origin means same scheme, host and port, with default ports filled in."""
    assert expected == same_origin(url, other)


def test_bad_port_is_a_value_error() -> None:
    """A port that is not a number is refused by each helper with ValueError."""
    for helper in (host_key, host_label):
        with pytest.raises(ValueError):
            helper("http://h:port/")


@pytest.mark.parametrize(("target", "sent"), [
    ("http://h:80/next", True),
    ("http://h/next", True),
    ("https://h/next", False),
    ("https://h:80/next", False),
    ("http://h:8080/next", False),
], ids=str)
def test_credentials_follow_the_same_host_with_its_default_port(target: str, sent: bool) -> None:
    """--user and -H Authorization go to http://h:80/ as to http://h/, never to https://h/ or another port."""
    options = RequestOptions(headers=(("Cookie", "c=1"),), user=("me", "secret"))

    headers = request_headers(target, origin="http://h/start", options=options)

    assert (sent, sent) == ("Authorization" in headers, "Cookie" in headers)


def test_politeness_counts_default_port_and_none_as_one_host() -> None:
    """A slot taken for http://h/ is the one http://h:80/ would need: per-host 1 makes the second wait."""
    policy = HostPolicy(1)

    first = policy.try_acquire(politeness.host_key("http://h/a"), now=0.0)
    second = policy.try_acquire(politeness.host_key("http://h:80/b"), now=0.0)

    assert (None, math.inf) == (first, second)


def test_mirror_directory_is_the_host_label(tmp_path: Path) -> None:
    """http://h/ and http://h:80/ share one mirror directory; another port gets its own."""
    paths = [output_path(Job(url), tmp_path, layout="mirror") for url in
             ("http://host.test/x", "http://host.test:80/x", "http://host.test:8080/x")]

    assert [tmp_path / "host.test/x", tmp_path / "host.test/x", tmp_path / "host.test:8080/x"] == paths
