"""An Earthdata-style login on both engines, over three loopback hosts.

The data host (127.0.0.1) sends a request without its session cookie to the login host
(127.0.0.2), which checks Basic credentials (from a netrc file, for that host only) and
sends the client back to the data host's ``/callback`` with a code; the callback sets the
session cookie and redirects to the original data URL (a URL visited twice in one
chain), which now answers 200. A third host (127.0.0.3) must never see those cookies.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from downloader import Config, Result, Status
from downloader.api import Run
from downloader.cli import main
from downloader.cookies import read_file
from downloader.sources import Entry, read_urls

DATA, LOGIN, THIRD = "127.0.0.1", "127.0.0.2", "127.0.0.3"
SESSION, CODE = "s3cr3t-session", "XYZ"
GOOD = ((LOGIN, "ann", "pw"),)


class Hosts:
    """One aiohttp app on the same free port of three loopback addresses, in a thread; it logs
    every request as (address, path and query, headers)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> Hosts:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        for address in (DATA, LOGIN, THIRD):
            await web.TCPSite(self._runner, address, self.port).start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def seen(self, host: str) -> list[tuple[str, dict[str, str]]]:
        """(path and query, headers) of each request the host had."""
        return [(path, headers) for address, path, headers in self.log if address == host]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        address = request.transport.get_extra_info("sockname")[0] if request.transport else "?"
        self.log.append((address, request.path_qs, dict(request.headers)))
        if address == LOGIN:
            return self._authorize(request)
        if address == THIRD:
            return web.Response(body=b"third " + request.path.encode())
        return self._data(request)

    def _data(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/callback":
            if request.query.get("code") != CODE:
                return web.Response(status=400, text="bad code")
            answer = web.HTTPFound(request.query["state"])
            answer.set_cookie("session", SESSION, path="/", httponly=True)
            raise answer
        if request.path.startswith("/to-third/"):
            raise web.HTTPFound(self.url(THIRD, request.path.removeprefix("/to-third")))
        if request.cookies.get("session") != SESSION:
            back = urllib.parse.quote(self.url(DATA, request.path_qs), safe="")
            raise web.HTTPFound(self.url(LOGIN, f"/oauth/authorize?redirect={back}"))
        return web.Response(body=b"data " + request.path.encode())

    def _authorize(self, request: web.Request) -> web.StreamResponse:
        expected = "Basic " + base64.b64encode(b"ann:pw").decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="<html>Please log in</html>", content_type="text/html",
                                headers={"WWW-Authenticate": 'Basic realm="login"'})
        state = urllib.parse.quote(request.query["redirect"], safe="")
        raise web.HTTPFound(self.url(DATA, f"/callback?code={CODE}&state={state}"))


def _free_port() -> int:
    """A port free on the three addresses (tried on each)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((DATA, 0))
            port = int(probe.getsockname()[1])
        try:
            for address in (LOGIN, THIRD):
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on the three loopback addresses")


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with Hosts() as running:
        yield running


@pytest.fixture
def login_config(config: Config) -> Config:
    """One transfer at a time, the login host's credentials from a netrc table, no retries to hide a failure."""
    return dataclasses.replace(config, concurrency=1, retries=0, netrc=GOOD)


def one_after_another(first: str, second: str, done: threading.Event) -> Iterator[Entry]:
    """``first``, then (once ``done``) ``second``: the second transfer starts after the
    first one logged in. Invalid filler lines fill the engines' read batch of 256, so
    that the first URL is started while the list waits."""
    yield from read_urls([first] + [f"no-scheme-{i}" for i in range(300)])
    done.wait(20)
    yield from read_urls([second])


def run_in_order(config: Config, first: str, second: str) -> dict[str, Result]:
    """Both URLs in one run, the second started after the first ended; results by URL."""
    results: dict[str, Result] = {}
    done = threading.Event()

    def collect(result: Result) -> None:
        results[result.url] = result
        if result.url == first:
            done.set()

    Run(config, on_result=collect)(one_after_another(first, second, done))
    return {url: results[url] for url in (first, second)}


def test_login_then_the_same_host_with_the_cookie(hosts: Hosts, login_config: Config) -> None:
    """The chain data -> login -> callback -> the same data URL ends in its body; the next URL
    of the run goes straight to 200 with the cookie; the login host is asked once, with the
    netrc credentials that the data host never sees."""
    first, second = hosts.url(DATA, "/data/a.bin"), hosts.url(DATA, "/data/b.bin")

    results = run_in_order(login_config, first, second)

    assert [Status.DOWNLOADED] * 2 == [result.status for result in results.values()]
    assert b"data /data/a.bin" == (login_config.dest / "a.bin").read_bytes()
    assert b"data /data/b.bin" == (login_config.dest / "b.bin").read_bytes()
    [(_, authorize)] = hosts.seen(LOGIN)
    assert authorize["Authorization"].startswith("Basic ") and "Cookie" not in authorize
    data = hosts.seen(DATA)
    assert ["/data/a.bin", "/callback", "/data/a.bin", "/data/b.bin"] == [path.split("?")[0] for path, _ in data]
    assert [None, None, f"session={SESSION}", f"session={SESSION}"] == [headers.get("Cookie") for _, headers in data]
    assert all("Authorization" not in headers for _, headers in data)


def test_wrong_credentials_fail_with_the_401(hosts: Hosts, login_config: Config) -> None:
    """A login host refusing the credentials ends in a failed result naming HTTP 401, and no file."""
    config = dataclasses.replace(login_config, netrc=((LOGIN, "ann", "wrong"),))

    [result] = Run_one(config, hosts.url(DATA, "/data/a.bin"))

    assert Status.FAILED == result.status and "HTTP 401" in str(result.error)
    assert [] == [path for path in config.dest.iterdir() if not path.name.startswith(".")]


def test_no_credentials_for_the_login_host_fail_too(hosts: Hosts, login_config: Config) -> None:
    """Credentials for another host are not sent to the login host: 401 there as well."""
    config = dataclasses.replace(login_config, netrc=((DATA, "ann", "pw"),))

    [result] = Run_one(config, hosts.url(DATA, "/data/a.bin"))

    assert Status.FAILED == result.status and "HTTP 401" in str(result.error)
    [(_, authorize)] = hosts.seen(LOGIN)
    assert "Authorization" not in authorize


def test_loaded_session_cookie_skips_the_login(hosts: Hosts, login_config: Config, tmp_path: Path) -> None:
    """With --load-cookies holding a valid session (a session cookie, as curl writes it) the login host is never asked."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n#HttpOnly_{DATA}\tFALSE\t/\tFALSE\t0\tsession\t{SESSION}\n")
    config = dataclasses.replace(login_config, load_cookies=cookies)

    [result] = Run_one(config, hosts.url(DATA, "/data/a.bin"))

    assert Status.DOWNLOADED == result.status
    assert [] == hosts.seen(LOGIN)
    assert [f"session={SESSION}"] == [headers.get("Cookie") for _, headers in hosts.seen(DATA)]


def test_saved_cookies_are_read_back_by_the_next_run(hosts: Hosts, login_config: Config, tmp_path: Path) -> None:
    """--save-cookies keeps the session cookie; a later run loading that file needs no login."""
    saved = tmp_path / "saved.txt"
    [first] = Run_one(dataclasses.replace(login_config, save_cookies=saved), hosts.url(DATA, "/data/a.bin"))
    later = dataclasses.replace(login_config, dest=tmp_path / "later", load_cookies=saved, netrc=())

    [second] = Run_one(later, hosts.url(DATA, "/data/a.bin"))

    assert (Status.DOWNLOADED, Status.DOWNLOADED) == (first.status, second.status)
    assert [SESSION] == [cookie.value for cookie in read_file(saved) if cookie.name == "session"]
    assert 1 == len(hosts.seen(LOGIN))


def test_cookies_never_reach_another_host(hosts: Hosts, login_config: Config) -> None:
    """After the login, neither a URL of 127.0.0.3 nor a redirect there from the data host carries the cookie."""
    first, second = hosts.url(DATA, "/data/a.bin"), hosts.url(DATA, "/to-third/t.bin")

    results = run_in_order(login_config, first, second)

    assert Status.DOWNLOADED == results[second].status
    assert f"session={SESSION}" == hosts.seen(DATA)[-1][1].get("Cookie")  # the hop that leads to the third host
    [(path, headers)] = hosts.seen(THIRD)
    assert "/t.bin" == path and "Cookie" not in headers


def test_cli_login_with_netrc_file_and_cookie_round_trip(hosts: Hosts, engine: str, tmp_path: Path) -> None:
    """The same flow from the command line: --netrc-file, --save-cookies, then --load-cookies."""
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {LOGIN} login ann password pw\n")
    netrc.chmod(0o600)
    saved = tmp_path / "cookies.txt"
    common = ["-q", "-e", engine, "--retries", "0", "--no-manifest"]

    first = main([*common, "-d", str(tmp_path / "one"), "--netrc-file", str(netrc), "--save-cookies", str(saved),
                  hosts.url(DATA, "/data/a.bin")])
    second = main([*common, "-d", str(tmp_path / "two"), "--load-cookies", str(saved), hosts.url(DATA, "/data/b.bin")])

    assert (0, 0) == (first, second)
    assert 1 == len(hosts.seen(LOGIN))
    assert b"data /data/b.bin" == (tmp_path / "two" / "b.bin").read_bytes()


def test_cli_bad_cookies_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cookies file with a broken line: exit 2, naming the file and the line."""
    bad = tmp_path / "bad.txt"
    bad.write_text("# Netscape HTTP Cookie File\n127.0.0.1 FALSE / FALSE 0 a b\n")

    status = main(["--load-cookies", str(bad), "-d", str(tmp_path / "out"), "http://127.0.0.1:1/x"])

    assert 2 == status
    assert f"cookies file {bad}, line 2" in capsys.readouterr().err


def test_cli_save_cookies_wants_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--save-cookies with --processes 2: exit 2 (each process would have a jar of its own)."""
    status = main(["--save-cookies", str(tmp_path / "c.txt"), "--processes", "2", "-d", str(tmp_path / "out"),
                   "http://127.0.0.1:1/x"])

    assert 2 == status
    assert "save_cookies needs processes=1" in capsys.readouterr().err


def Run_one(config: Config, url: str) -> list[Result]:  # noqa: N802 - reads as the Run it wraps
    """The result of a run of one URL."""
    results: list[Result] = []
    Run(config, on_result=results.append)(read_urls([url]))
    return results


def test_cli_save_cookies_into_a_missing_directory_is_a_usage_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--save-cookies", str(tmp_path / "nowhere" / "c.txt"), "-d", str(tmp_path / "out"),
                   "http://127.0.0.1:1/x"])

    assert 2 == status
    assert "cannot write cookies file" in capsys.readouterr().err


def test_cookies_file_that_cannot_be_written_at_the_end_is_logged(hosts: Hosts, login_config: Config, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A jar that cannot be saved (its directory gone by the end) is an error in the log; the results stand."""
    config = dataclasses.replace(login_config, save_cookies=tmp_path / "gone" / "c.txt")

    [result] = Run_one(config, hosts.url(DATA, "/data/a.bin"))

    assert Status.DOWNLOADED == result.status
    assert "cannot write cookies file" in caplog.text


def test_every_engine_process_loads_the_cookies(hosts: Hosts, login_config: Config, tmp_path: Path) -> None:
    """With processes=2 each engine process starts from the --load-cookies file: no login anywhere."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"{DATA}\tFALSE\t/\tFALSE\t0\tsession\t{SESSION}\n")
    config = dataclasses.replace(login_config, load_cookies=cookies, processes=2, concurrency=2)
    urls = [hosts.url(DATA, f"/data/p{i}.bin") for i in range(8)]
    results: list[Result] = []

    Run(config, on_result=results.append)(read_urls(urls))

    assert [Status.DOWNLOADED] * 8 == [result.status for result in results]
    assert [] == hosts.seen(LOGIN)
