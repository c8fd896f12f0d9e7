"""What goes on the wire: redirects, headers, credentials, proxies, TLS and size limits (both engines)."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader import Config, Job, Result, Status, download
from downloader.testing import Rule, Server, body


def fetch_one(url: str | Job, config: Config) -> Result:
    [result] = download([url], config=config)
    return result


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- redirects ----------------------------------------------------------------------------------


def test_redirect_chain_is_followed_and_the_final_url_recorded(server: Server, config: Config) -> None:
    """Two hops lead to the file; the result names the URL the body came from."""
    target = server.file_url(f"{config.engine}-chain-target.bin", 5000)
    middle = server.url(f"/bytes/1/{config.engine}-chain-middle")
    server.set_rule(f"/bytes/1/{config.engine}-chain-middle", Rule(redirect=target))
    first = server.url(f"/bytes/1/{config.engine}-chain.bin")
    server.set_rule(f"/bytes/1/{config.engine}-chain.bin", Rule(redirect=middle))

    result = fetch_one(first, config)

    assert (Status.DOWNLOADED, target) == (result.status, result.final_url)
    assert body(f"{config.engine}-chain-target.bin", 5000) == (config.dest / f"{config.engine}-chain.bin").read_bytes()


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x.bin", "file:///etc/passwd", "data:,hello"])
def test_redirect_to_another_scheme_fails(server: Server, config: Config, location: str) -> None:
    """A redirect to file:, ftp: or data: fails the URL at once, naming the scheme, and writes nothing."""
    path = f"/bytes/1/{config.engine}-scheme-{location.split(':')[0]}.bin"
    server.set_rule(path, Rule(redirect=location))

    result = fetch_one(server.url(path), config)

    assert Status.FAILED == result.status
    assert "unsupported scheme" in str(result.error)
    assert 1 == len(server.requests(path))
    assert [] == list(config.dest.iterdir())


def test_redirect_loop_costs_the_hop_limit(server: Server, config: Config) -> None:
    """A -> B -> A -> ... is followed up to max_redirects hops, then fails with the chain in the reason."""
    a, b = f"/bytes/1/{config.engine}-loop-a", f"/bytes/1/{config.engine}-loop-b"
    server.set_rule(a, Rule(redirect=server.url(b)))
    server.set_rule(b, Rule(redirect=server.url(a)))

    result = fetch_one(server.url(a), dataclasses.replace(config, max_redirects=3))

    assert Status.FAILED == result.status
    assert f"more than 3 redirects: {server.url(a)} -> {server.url(b)} -> {server.url(a)}" in str(result.error)
    assert (2, 2) == (len(server.requests(a)), len(server.requests(b)))


def test_too_many_redirects_fail(server: Server, config: Config) -> None:
    """More hops than max_redirects fail the URL, naming the limit."""
    for i in range(4):
        server.set_rule(f"/bytes/1/{config.engine}-hop{i}", Rule(redirect=server.url(f"/bytes/1/{config.engine}-hop{i + 1}")))

    result = fetch_one(server.url(f"/bytes/1/{config.engine}-hop0"), dataclasses.replace(config, max_redirects=2))

    assert Status.FAILED == result.status and "more than 2 redirects" in str(result.error)


def test_credentials_and_cookies_do_not_follow_a_redirect_to_another_host(server: Server, config: Config) -> None:
    """--user, -H Authorization and -H Cookie reach the URL's own host, never the host it redirects to."""
    target = f"http://localhost:{server.port}/bytes/100/{config.engine}-cred-target.bin"  # another host name
    path = f"/bytes/1/{config.engine}-cred.bin"
    server.set_rule(path, Rule(redirect=target))
    options = dataclasses.replace(config, user=("ann", "secret"), headers=(("Cookie", "session=1"), ("X-Trace", "7")))

    result = fetch_one(server.url(path), options)

    first, second = server.requests(path)[0], server.requests(f"/bytes/100/{config.engine}-cred-target.bin")[0]
    assert Status.DOWNLOADED == result.status
    assert (basic("ann", "secret"), "session=1", "7") == (first.headers.get("Authorization"), first.headers.get("Cookie"),
                                                         first.headers.get("X-Trace"))
    assert (None, None, "7") == (second.headers.get("Authorization"), second.headers.get("Cookie"), second.headers.get("X-Trace"))


def test_credentials_follow_a_redirect_on_the_same_host(server: Server, config: Config) -> None:
    """A redirect within the same host keeps the credentials."""
    path = f"/bytes/1/{config.engine}-samehost.bin"
    server.set_rule(path, Rule(redirect=server.file_url(f"{config.engine}-samehost-target.bin", 10)))

    fetch_one(server.url(path), dataclasses.replace(config, user=("ann", "pw")))

    assert basic("ann", "pw") == server.requests(f"/bytes/10/{config.engine}-samehost-target.bin")[0].headers.get("Authorization")


# -- headers ------------------------------------------------------------------------------------


def test_both_engines_send_the_same_headers(server: Server, tmp_path: Path) -> None:
    """The asyncio and threads engines send the same header names and values (bar transport ones)."""
    seen = {}
    for engine in ("asyncio", "threads"):
        path = f"/bytes/10/same-headers-{engine}.bin"
        config = Config(dest=tmp_path / engine, engine=engine, headers=(("X-One", "1"),), user_agent="ua/9")
        download([server.url(path)], config=config)
        headers = server.requests(path)[0].headers
        seen[engine] = {k.lower(): v for k, v in headers.items() if k.lower() not in ("connection", "host", "accept")}

    assert seen["asyncio"] == seen["threads"]
    # Want-Repr-Digest (RFC 9530): asked for since the list gives no checksum (Config.server_digest).
    assert {"accept-encoding": "identity", "user-agent": "ua/9", "x-one": "1",
            "want-repr-digest": "sha-256=10, sha-512=3"} == seen["threads"]


def test_netrc_credentials_are_used_for_their_host(server: Server, config: Config) -> None:
    """A netrc entry for the host supplies Basic credentials."""
    path = f"/bytes/10/{config.engine}-netrc.bin"

    fetch_one(server.url(path), dataclasses.replace(config, netrc=(("127.0.0.1", "bob", "pw2"),)))

    assert basic("bob", "pw2") == server.requests(path)[0].headers.get("Authorization")


# -- proxies ------------------------------------------------------------------------------------


def test_requests_go_through_the_configured_proxy(server: Server, config: Config) -> None:
    """With a proxy configured, the request goes to it with the absolute URL of an unreachable host."""
    url = f"http://proxied.invalid/bytes/321/{config.engine}-proxied.bin"

    result = fetch_one(url, dataclasses.replace(config, proxies=(("http", server.base_url),)))

    assert Status.DOWNLOADED == result.status
    assert url == server.requests(f"/bytes/321/{config.engine}-proxied.bin")[0].target


def test_no_proxy_hosts_bypass_the_proxy(server: Server, config: Config) -> None:
    """A host listed in no_proxy is reached directly."""
    path = f"/bytes/10/{config.engine}-bypass.bin"
    proxy_config = dataclasses.replace(config, proxies=(("http", "http://127.0.0.1:9"),), no_proxy="127.0.0.1")

    result = fetch_one(server.url(path), proxy_config)

    assert Status.DOWNLOADED == result.status


# -- size limit ---------------------------------------------------------------------------------


def test_max_filesize_refuses_an_announced_size(server: Server, config: Config) -> None:
    """A Content-Length above max_filesize fails at once; nothing is written."""
    url = server.file_url(f"{config.engine}-toolarge.bin", 200_000)

    result = fetch_one(url, dataclasses.replace(config, max_filesize=100_000))

    assert Status.FAILED == result.status and "max-filesize" in str(result.error)
    assert [] == list(config.dest.iterdir())


def test_max_filesize_stops_a_body_that_grows_past_it(server: Server, config: Config) -> None:
    """Without a Content-Length, the transfer stops once the bytes exceed max_filesize, and no part remains."""
    url = server.url(f"/bytes/3000000/{config.engine}-growing.bin?chunked=1")

    result = fetch_one(url, dataclasses.replace(config, max_filesize=1_000_000))

    assert Status.FAILED == result.status and "max-filesize" in str(result.error)
    assert [] == list(config.dest.iterdir())


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """An HTTPS test server with a self-signed certificate for 127.0.0.1, and the certificate's path."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with Server(ssl_context=context) as running:
        yield running, cert


def test_unverifiable_certificate_fails_by_default(tls_server: tuple[Server, Path], config: Config) -> None:
    """A self-signed certificate is refused unless told otherwise."""
    server, _ = tls_server

    result = fetch_one(server.file_url(f"{config.engine}-tls-default.bin", 100), dataclasses.replace(config, retries=0))

    assert Status.FAILED == result.status
    assert "certificate" in str(result.error).lower()


def test_insecure_skips_verification(tls_server: tuple[Server, Path], config: Config) -> None:
    """verify=False (--insecure) downloads from a server with a self-signed certificate."""
    server, _ = tls_server

    result = fetch_one(server.file_url(f"{config.engine}-tls-insecure.bin", 100), dataclasses.replace(config, verify=False))

    assert Status.DOWNLOADED == result.status


def test_ca_bundle_verifies_against_the_given_certificate(tls_server: tuple[Server, Path], config: Config) -> None:
    """ca_bundle (--ca-bundle) trusts the given certificate."""
    server, cert = tls_server

    result = fetch_one(server.file_url(f"{config.engine}-tls-bundle.bin", 100), dataclasses.replace(config, ca_bundle=cert))

    assert Status.DOWNLOADED == result.status
    assert body(f"{config.engine}-tls-bundle.bin", 100) == (config.dest / f"{config.engine}-tls-bundle.bin").read_bytes()
