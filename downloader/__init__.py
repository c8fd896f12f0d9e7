"""downloader: a concurrent bulk downloader that streams many URLs to disk, safely.

>>> import downloader
>>> results = downloader.download(["https://example.org/a.csv"], dest="data")  # doctest: +SKIP
"""

from downloader.api import Run, download
from downloader.config import DEFAULT_CHUNK_SIZE, Config, EngineName, __version__
from downloader.errors import (
    BodyIncomplete,
    ClusterError,
    ConnectError,
    DownloadError,
    DownloaderError,
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
from downloader.jobs import DONE_STATUSES, Job, Result, Status
from downloader.progress import Summary

__all__ = [
    "BodyIncomplete",
    "ClusterError",
    "Config",
    "ConnectError",
    "DEFAULT_CHUNK_SIZE",
    "DONE_STATUSES",
    "DownloadError",
    "DownloaderError",
    "EngineName",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidJob",
    "Job",
    "LocalIOError",
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
]
