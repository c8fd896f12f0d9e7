"""Against a real server: resume rules with nginx's own Range, If-Range and ETag handling.

Skipped when nginx is not installed (.ci/run installs it when it can).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from downloader import Config, Job, Status, download
from downloader.core import ResumeState

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
SIZE = 3 * 1024 * 1024 + 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A throw-away nginx on 127.0.0.1 serving a temporary directory: (base URL, root)."""
    base = tmp_path_factory.mktemp("nginx")
    root = base / "www"
    root.mkdir()
    port = free_port()
    (base / "nginx.conf").write_text(f"""
daemon off; worker_processes 1; pid {base}/nginx.pid; error_log {base}/error.log;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; keepalive_requests 10000;
  client_body_temp_path {base}/tmp; proxy_temp_path {base}/tmp; fastcgi_temp_path {base}/tmp;
  uwsgi_temp_path {base}/tmp; scgi_temp_path {base}/tmp;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    process = subprocess.Popen([str(NGINX), "-c", str(base / "nginx.conf"), "-p", str(base)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.head(url + "/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.skip("nginx did not start")
    yield url, root
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def publish(root: Path, name: str, content: bytes) -> None:
    (root / name).write_bytes(content)


def leave_part(dest: Path, name: str, data: bytes, state: ResumeState) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name}.part").write_bytes(data)
    (dest / f"{name}.part.state").write_text(state.dumps())


@functools.cache
def content(seed: int) -> bytes:
    """SIZE deterministic bytes, different for each seed."""
    return (bytes(range(seed % 7, 251)) * (SIZE // 200 + 1))[:SIZE]


def test_plain_download_is_byte_exact(nginx: tuple[str, Path], config: Config) -> None:
    """A file from nginx arrives whole and exact."""
    url, root = nginx
    name = f"plain-{config.engine}.bin"
    publish(root, name, content(1))

    result = download([f"{url}/{name}"], config=config)[0]

    assert (Status.DOWNLOADED, content(1)) == (result.status, (config.dest / name).read_bytes())


def test_resume_with_nginx_etag_fetches_only_the_rest(nginx: tuple[str, Path], config: Config) -> None:
    """A part saved with nginx's ETag is continued by a 206: only the missing bytes are received."""
    url, root = nginx
    name = f"resume-{config.engine}.bin"
    publish(root, name, content(2))
    head = requests.head(f"{url}/{name}", timeout=5)
    have = 1_000_003
    leave_part(config.dest, name, content(2)[:have], ResumeState(f"{url}/{name}", head.headers["ETag"], None, SIZE))

    result = download([f"{url}/{name}"], config=config)[0]

    assert (Status.DOWNLOADED, SIZE - have) == (result.status, result.received)
    assert content(2) == (config.dest / name).read_bytes()


def test_changed_file_is_fetched_whole(nginx: tuple[str, Path], config: Config) -> None:
    """A part whose saved ETag nginx no longer has: If-Range fails, the 200 replaces the part."""
    url, root = nginx
    name = f"changed-{config.engine}.bin"
    publish(root, name, content(3))
    stale = ResumeState(f"{url}/{name}", '"0-0"', None, SIZE)
    leave_part(config.dest, name, content(4)[:500_000], stale)

    result = download([Job(f"{url}/{name}", size=SIZE)], config=config)[0]

    assert (Status.DOWNLOADED, SIZE) == (result.status, result.received)
    assert content(3) == (config.dest / name).read_bytes()


def test_complete_part_is_finished_from_a_416(nginx: tuple[str, Path], config: Config) -> None:
    """A part that already holds the whole file gets 416 'bytes */SIZE' and is finished without a body."""
    url, root = nginx
    name = f"whole-{config.engine}.bin"
    publish(root, name, content(5))
    head = requests.head(f"{url}/{name}", timeout=5)
    leave_part(config.dest, name, content(5), ResumeState(f"{url}/{name}", head.headers["ETag"], None, SIZE))

    result = download([f"{url}/{name}"], config=config)[0]

    assert (Status.DOWNLOADED, 0, SIZE) == (result.status, result.received, result.size)
    assert content(5) == (config.dest / name).read_bytes()
