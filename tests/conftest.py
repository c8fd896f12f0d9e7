"""Shared fixtures: one local test server per session, and the engine parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader import Config
from downloader.testing import Server

ENGINES = ("asyncio", "threads")


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
