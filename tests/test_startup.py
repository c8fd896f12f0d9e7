"""Start-up: a run imports what it uses and nothing else.

Each run is a real download in a fresh interpreter, which then prints the names
of every module it has loaded. The other engine's HTTP library, SQLite without a
manifest, Dask without --dask, multiprocessing with one process and tqdm without a
bar all cost start-up time (aiohttp alone is about 0.1 s) and must stay unloaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from downloader.testing import Server, body

_THE_OTHER_ENGINE = {"asyncio": {"requests", "urllib3", "requests_futures"}, "threads": {"aiohttp", "asyncio"}}
_ITS_OWN = {"asyncio": {"aiohttp"}, "threads": {"requests", "requests_futures"}}
_NEVER_HERE = {"distributed", "dask", "tqdm"}  # no --dask, no bar (-q)

_CLI = """
import sys
from downloader.cli import main
status = main(sys.argv[1:])
print(" ".join(sorted(sys.modules)))
sys.exit(status)
"""

_LIBRARY = """
import sys
from pathlib import Path
import downloader
url, dest, engine = sys.argv[1:]
[result] = downloader.download([url], dest=dest, engine=engine)
assert result.status is downloader.Status.DOWNLOADED, result
print(" ".join(sorted(sys.modules)))
"""


def loaded_by(driver: str, *args: str) -> set[str]:
    """The modules loaded by the end of ``driver`` run with ``args`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", driver, *args], capture_output=True, text=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
def test_a_cli_run_loads_only_its_engine(server: Server, engine: str, manifest: bool, tmp_path: Path) -> None:
    """-e asyncio never loads requests, -e threads never aiohttp; SQLite only for a manifest;
    one process loads no multiprocessing (the threads engine's requests-futures does)."""
    url = server.file_url(f"startup-{engine}-{manifest}.bin", 1000)
    options = ["-e", engine, "-q", "--processes", "1"] + ([] if manifest else ["--no-manifest"])

    modules = loaded_by(_CLI, url, "-d", str(tmp_path), *options)

    assert body(f"startup-{engine}-{manifest}.bin", 1000) == next(tmp_path.glob("startup-*.bin")).read_bytes()
    assert _ITS_OWN[engine] <= modules
    assert set() == modules & (_THE_OTHER_ENGINE[engine] | _NEVER_HERE)
    assert ("sqlite3" in modules) == manifest
    if engine == "asyncio":
        assert "multiprocessing" not in modules


def test_a_library_run_loads_only_its_engine(server: Server, engine: str, tmp_path: Path) -> None:
    """downloader.download() (no manifest unless asked for) loads its engine and no more."""
    url = server.file_url(f"startup-library-{engine}.bin", 1000)

    modules = loaded_by(_LIBRARY, url, str(tmp_path), engine)

    assert _ITS_OWN[engine] <= modules
    assert set() == modules & (_THE_OTHER_ENGINE[engine] | _NEVER_HERE | {"sqlite3"})


def test_importing_the_package_loads_no_engine() -> None:
    """``import downloader`` (as ``downloader.testing`` or a worker does) loads neither HTTP
    library nor the run machinery until a name needs them."""
    modules = loaded_by("import sys, downloader; print(' '.join(sorted(sys.modules)))")

    assert set() == modules & {"aiohttp", "requests", "sqlite3", "downloader.api", "downloader.dispatch"}


def test_the_command_freezes_its_objects_before_exit_and_main_with_argv_does_not(server: Server, tmp_path: Path) -> None:
    """The command (main() with no argv) spares the interpreter's shutdown its garbage collections
    over every object (gc.freeze); main(argv), called by a program that goes on, leaves the collector alone."""
    import gc

    from downloader.cli import main

    url = server.file_url("startup-freeze.bin", 100)
    command = "import gc, sys\nfrom downloader.cli import main\nstatus = main()\nprint(gc.get_freeze_count())\nsys.exit(status)"
    done = subprocess.run([sys.executable, "-c", command, url, "-d", str(tmp_path / "a"), "-q"],
                          capture_output=True, text=True, timeout=60)
    frozen_before = gc.get_freeze_count()

    status = main([url, "-d", str(tmp_path / "b"), "-q"])

    assert 0 == done.returncode, done.stderr
    assert int(done.stdout) > 0
    assert 0 == status
    assert frozen_before == gc.get_freeze_count()
