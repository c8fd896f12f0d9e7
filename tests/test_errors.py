"""The error tree: one root, attributes that tell the truth, and a pickle round trip for each class."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest

import downloader
from downloader import errors
from downloader.errors import (
    BodyIncomplete,
    ClusterError,
    ConnectError,
    CookiesFileError,
    DownloaderError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    InvalidJob,
    LocalIOError,
    ManifestError,
    PartBusy,
    Refused,
    RetriesExhausted,
    StallTimeout,
    TransferError,
)
from downloader.storage import local_error

URL = "http://h/x"

EXAMPLES: list[DownloaderError] = [
    DownloadError(URL, "went wrong"),
    InvalidJob(URL, "bad line", "urls.txt:3"),
    LocalIOError(URL, "cannot write /d/x: No space left on device", errno.ENOSPC, "/d/x"),
    LocalIOError(URL, "cannot write /d/x"),
    PartBusy(URL, "busy"),
    Refused(URL, "too large"),
    TransferError(URL, "lost"),
    ConnectError(URL, "connection refused"),
    StallTimeout(URL, "stalled"),
    BodyIncomplete(URL, "short"),
    HTTPStatusError(URL, "HTTP 503", 503, True, 2.5),
    IntegrityError(URL, "sha256 mismatch", "aa", "bb"),
    RetriesExhausted(URL, "gave up", 6),
    ManifestError(Path("/d/.downloader/manifest.sqlite"), "newer schema"),
    ClusterError("no worker"),
    CookiesFileError("cookies file /d/c.txt, line 2: expected 7 tab-separated fields"),
]


def _state(error: BaseException) -> tuple[object, ...]:
    """What must survive a pickle round trip: class, args, str, and the attributes it carries."""
    attributes = {name: getattr(error, name) for name in
                  ("url", "reason", "origin", "status", "retryable", "retry_after", "expected", "actual",
                   "attempts", "path", "errno", "strerror", "filename") if hasattr(error, name)}
    return type(error), error.args, str(error), attributes


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_every_error_survives_a_pickle_round_trip(error: DownloaderError) -> None:
    """Errors cross process pipes: class, args, message and attributes come back the same."""
    assert _state(error) == _state(pickle.loads(pickle.dumps(error)))


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_every_error_is_under_the_one_root(error: DownloaderError) -> None:
    """except DownloaderError catches every exception the package raises on purpose."""
    assert isinstance(error, DownloaderError)


def test_manifest_and_cluster_errors_are_not_download_errors() -> None:
    """ManifestError and ClusterError stop a run; they are not one URL's failure."""
    assert not issubclass(ManifestError, DownloadError) and not issubclass(ClusterError, DownloadError)


def test_every_error_class_is_in_the_tree_and_exported() -> None:
    """Each class of errors.py is drawn in its docstring and exported from the package."""
    names = [name for name in errors.__all__ if isinstance(getattr(errors, name), type)]

    assert [] == [name for name in names if name not in (errors.__doc__ or "")]
    assert [] == [name for name in names if getattr(downloader, name, None) is not getattr(errors, name)]


def test_manifest_error_is_still_importable_from_manifest() -> None:
    """``from downloader.manifest import ManifestError`` names the same class."""
    from downloader import cluster, manifest

    assert (ManifestError, ClusterError) == (manifest.ManifestError, cluster.ClusterError)


def test_local_io_error_is_an_os_error_that_tells_the_truth() -> None:
    """errno, strerror and filename are the system's; url, reason and str() are ours."""
    error = LocalIOError(URL, "cannot write /d/x: No space left on device", errno.ENOSPC, "/d/x")

    assert isinstance(error, OSError)
    assert (errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/x") == (error.errno, error.strerror, error.filename)
    assert (URL, "cannot write /d/x: No space left on device") == (error.url, error.reason)
    assert "cannot write /d/x: No space left on device" == str(error)


@pytest.mark.parametrize("error", [LocalIOError(URL, "cannot write"), ConnectError(URL, "refused"),
                                   StallTimeout(URL, "stalled")], ids=lambda error: type(error).__name__)
def test_os_error_fields_are_none_when_unknown(error: OSError) -> None:
    """Without a known errno, the OSError fields are None, never the URL or the reason."""
    assert (None, None, None) == (error.errno, error.strerror, error.filename)
    assert isinstance(error, OSError)


def test_local_error_passes_the_system_errno_and_path() -> None:
    """storage.local_error keeps the errno and the path the system refused."""
    system = OSError(errno.EACCES, os.strerror(errno.EACCES), "/d/sub/x.part")

    error = local_error(URL, system, Path("/d/sub"))

    assert (errno.EACCES, "/d/sub/x.part") == (error.errno, error.filename)
    assert f"cannot write /d/sub/x.part: {os.strerror(errno.EACCES)}" == str(error)
