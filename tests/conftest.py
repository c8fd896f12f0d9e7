"""Shared fixtures: one local test server per session, and the engine parameter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from downloader import Config
from downloader.testing import Server

ENGINES = ("asyncio", "threads")


@pytest.fixture(scope="session", autouse=True)
def no_proxy_from_the_environment() -> Iterator[None]:
    """Tests talk to 127.0.0.1 directly: proxy variables of the machine are removed for the session."""
    import os

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The deterministic test server on 127.0.0.1, shared by every test."""
    with Server() as running:
        yield running


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each behaviour test runs once per engine: both must pass the same table."""
    return str(request.param)


@pytest.fixture
def config(engine: str, tmp_path: Path) -> Config:
    """A quick configuration for the engine under test: short timeouts and backoff."""
    return Config(dest=tmp_path / "out", engine=engine, concurrency=8, retries=2, timeout=5.0,
                  backoff_base=0.01, backoff_cap=0.05, progress=False)


@contextlib.contextmanager
def local_dask(workers: int) -> Iterator[tuple[Any, Any]]:
    """(client, cluster) of a LocalCluster of ``workers`` single-threaded worker processes on
    127.0.0.1, shut down at the end. Needs the optional extra downloader[dask]."""
    import distributed

    local = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=":0")
    client = distributed.Client(local)
    try:
        client.wait_for_workers(workers, timeout=60)
        yield client, local
    finally:
        client.close(timeout=20)
        local.close(timeout=20)
