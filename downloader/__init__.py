"""downloader: a concurrent bulk downloader that streams many URLs to disk, safely.

>>> import downloader
>>> results = downloader.download(["https://example.org/a.csv"], dest="data")  # doctest: +SKIP
>>> results = await downloader.download_async(["https://example.org/a.csv"], dest="data")  # doctest: +SKIP

The names below are imported on first use (PEP 562): ``import downloader.testing`` or
``import downloader.config`` does not load the engines' machinery, and the command line
imports only what its run uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from downloader.config import DEFAULT_CHUNK_SIZE, Config, EngineName, __version__

if TYPE_CHECKING:
    from downloader.api import AsyncRun, Run, download, download_async
    from downloader.errors import (
        BodyIncomplete,
        ChecksumFileError,
        ClusterError,
        ConnectError,
        CookiesFileError,
        DownloadError,
        DownloaderError,
        HTTPStatusError,
        IntegrityError,
        InvalidJob,
        ListFormatError,
        LocalIOError,
        MalformedResponse,
        ManifestError,
        PartBusy,
        Refused,
        RetriesExhausted,
        StallTimeout,
        TransferError,
    )
    from downloader.jobs import DONE_STATUSES, Job, Result, Status
    from downloader.progress import Summary
    from downloader.tables import read_table

__all__ = [
    "AsyncRun",
    "BodyIncomplete",
    "ChecksumFileError",
    "ClusterError",
    "Config",
    "ConnectError",
    "CookiesFileError",
    "DEFAULT_CHUNK_SIZE",
    "DONE_STATUSES",
    "DownloadError",
    "DownloaderError",
    "EngineName",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidJob",
    "Job",
    "ListFormatError",
    "LocalIOError",
    "MalformedResponse",
    "ManifestError",
    "PartBusy",
    "Refused",
    "Result",
    "RetriesExhausted",
    "Run",
    "StallTimeout",
    "Status",
    "Summary",
    "TransferError",
    "__version__",
    "download",
    "download_async",
    "read_table",
]

_EXPORTED_FROM = {
    "api": ("AsyncRun", "Run", "download", "download_async"),
    "errors": ("BodyIncomplete", "ChecksumFileError", "ClusterError", "ConnectError", "CookiesFileError", "DownloadError", "DownloaderError",
               "HTTPStatusError", "IntegrityError", "InvalidJob", "ListFormatError", "LocalIOError", "MalformedResponse",
               "ManifestError", "PartBusy", "Refused", "RetriesExhausted",
               "StallTimeout", "TransferError"),
    "jobs": ("DONE_STATUSES", "Job", "Result", "Status"),
    "progress": ("Summary",),
    "tables": ("read_table",),
}
"""The submodule that defines each name exported lazily: imported when one of its names is first asked for."""
_LAZY = {name: module for module, names in _EXPORTED_FROM.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # asked once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
