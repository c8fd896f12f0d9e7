"""The command line: parse argv into a Config, run the library, print the summary, exit.

Exit status: 0 every URL downloaded or skipped; 1 one or more failed; 2 usage
error (unknown option, unreadable list file); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import os
import signal
import stat
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from downloader.amounts import parse_amount
from downloader.api import ListFilters, Run
from downloader.config import Config, __version__, default_processes
from downloader.cookies import CookiesFileError, read_file
from downloader.errors import ChecksumFileError, ClusterError, ListFormatError, ManifestError
from downloader.failures import Failures
from downloader.jobs import Result
from downloader.manifest import default_path, status_report
from downloader.progress import FileTotal, Summary
from downloader.report import FailedList, JsonReport
from downloader.sources import Entry, read_urls
from downloader.tables import FORMATS, Table, read_table

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
T = TypeVar("T")


class UsageError(Exception):
    """A problem with the command line itself: exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Download many URLs in parallel, streaming each body to disk.",
        epilog="List format: one URL per line, then optional out=PATH size=BYTES and a checksum (md5=, sha1=, sha256=, sha512=, blake2b=HEX or checksum=ALG:HEX); '#' starts a comment.",
    )
    parser.add_argument("urls", nargs="*", metavar="URL", help="URLs to download (besides those in -i lists)")
    parser.add_argument("-i", "--input-file", action="append", default=[], metavar="FILE",
                        help="read the URL list from FILE ('-' = standard input); may be repeated")
    parser.add_argument("-d", "--dest", default=".", metavar="DIR", help="output directory, created if missing (default: .)")
    parser.add_argument("-e", "--engine", choices=("asyncio", "threads"), default="asyncio", help="default: asyncio")
    parser.add_argument("-j", "--concurrency", type=_positive_int, default=16, metavar="N",
                        help="simultaneous transfers (default 16)")
    parser.add_argument("--retries", type=_count, default=5, metavar="N", help="retries after the first attempt (default 5)")
    parser.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="connect timeout and stall timeout: no byte for this long (default 30)")
    parser.add_argument("--max-wait", type=_seconds, default=300.0, metavar="SECONDS",
                        help="longest Retry-After to honour; a longer one fails the URL at once (default 300)")
    parser.add_argument("--speed-limit", type=_amount, default=1024, metavar="BYTES",
                        help="a transfer slower than this many bytes/s (k, M, G, T suffixes) for --speed-time counts as "
                             "stalled (default 1024; 0 = off)")
    parser.add_argument("--speed-time", type=_seconds, default=60.0, metavar="SECONDS",
                        help="how long a transfer may stay under --speed-limit (default 60)")
    parser.add_argument("--no-resume", action="store_true", help="restart every .part left by an earlier run")
    _add_list_options(parser)
    _add_scale_options(parser)
    _add_mirroring_options(parser)
    _add_request_options(parser)
    _add_output_options(parser)
    _add_checksum_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries, restarts and resumes")
    parser.add_argument("--report", metavar="FILE", help="write a JSON Lines report: one object per URL, then a summary")
    parser.add_argument("--dry-run", action="store_true",
                        help="read the list and print what would be downloaded, resumed, skipped or refused; fetch nothing")
    parser.add_argument("--failed", metavar="FILE", help="write the failed URLs in list format, to run again with -i")
    parser.add_argument("--version", action="version", version=f"downloader {__version__}")
    return parser


def _add_list_options(parser: argparse.ArgumentParser) -> None:
    lists = parser.add_argument_group("list formats")
    lists.add_argument("--input-format", choices=FORMATS, default="auto",
                       help="how every -i FILE is read: our URL list, or a table of CSV, TSV, JSON Lines or Parquet "
                            "rows; auto (default): by the name (.csv, .tsv/.tab, .jsonl/.ndjson/.json, .parquet/.pq, "
                            "each also .gz but Parquet), list otherwise and for '-'")
    lists.add_argument("--url-column", default="url", metavar="NAME", help="the column (or JSON key) of the URLs (default url)")
    lists.add_argument("--out-column", metavar="NAME", help="the column of the output paths, relative to DIR")
    lists.add_argument("--checksum-column", metavar="NAME",
                       help="the column of the checksums: ALG:HEX, or hex of the column's algorithm when it is named "
                            "md5, sha1, sha256, sha512 or blake2b, else of md5/sha1/sha256/sha512 by its length")
    lists.add_argument("--size-column", metavar="NAME", help="the column of the expected sizes in bytes")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar; errors and the summary only")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                        help="how progress is shown on stderr: an animated bar, a plain line every "
                             "--progress-interval seconds (for logs and CI), or nothing; auto (default): "
                             "the bar on a terminal, lines otherwise, nothing with -q")
    parser.add_argument("--progress-interval", type=_seconds, default=5.0, metavar="SECONDS",
                        help="seconds between two progress lines (default 5)")


def _add_checksum_options(parser: argparse.ArgumentParser) -> None:
    sums = parser.add_argument_group("checksums")
    sums.add_argument("--checksums", action="append", default=[], metavar="FILE",
                      help="verify each URL against the digest FILE gives its output name: md5sum, sha1sum, "
                           "sha256sum, sha512sum or b2sum output, BSD --tag lines, MD5SUMS, SHA256SUMS, X.sha256; "
                           "may be repeated; a checksum in the list line wins; -v lists the names no URL matched")
    sums.add_argument("--no-server-digest", action="store_true",
                      help="do not check bodies against the digest their server states (Repr-Digest, Digest, "
                           "Content-MD5, x-goog-hash) nor ask for one (Want-Repr-Digest)")


def _add_mirroring_options(parser: argparse.ArgumentParser) -> None:
    mirror = parser.add_argument_group("naming and mirroring")
    mirror.add_argument("--layout", choices=("flat", "mirror"), default="flat",
                        help="flat: files in DIR; mirror: DIR/host[:port]/path like wget -x (default flat)")
    mirror.add_argument("--content-disposition", action="store_true",
                        help="name files as the server's Content-Disposition says (out= still wins)")
    mirror.add_argument("--sync", action="store_true",
                        help="re-check files already present: 304 keeps them (unchanged), 200 replaces them")
    mirror.add_argument("--manifest", metavar="PATH",
                        help="the SQLite manifest of what was fetched (default DIR/.downloader/manifest.sqlite)")
    mirror.add_argument("--no-manifest", action="store_true", help="keep no manifest")
    speed = parser.add_argument_group("large files")
    speed.add_argument("--split", type=_positive_int, default=1, metavar="N",
                       help="fetch one large file over N ranged connections, written in place (default 1)")
    speed.add_argument("--min-split-size", type=_positive_amount, default=20 * 1024 * 1024, metavar="BYTES",
                       help="smallest segment (default 20M; k, M, G, T suffixes): a file is split only when "
                            "at least twice this")
    polite = parser.add_argument_group("politeness")
    polite.add_argument("--per-host", type=_positive_int, metavar="N",
                        help="simultaneous connections to one host (default: half of -j while other "
                             "hosts have connections, all of -j for a host alone)")
    polite.add_argument("--limit-rate", type=_positive_amount, metavar="RATE",
                        help="total bandwidth cap, bytes per second with k, M, G, T suffixes (e.g. 500k, 20M)")


def _add_scale_options(parser: argparse.ArgumentParser) -> None:
    scale = parser.add_argument_group("scale-out")
    scale.add_argument("--processes", type=_positive_int, metavar="N",
                       help="spread the list over N engine processes, each with its share of -j "
                            f"(default: one per core, at most -j; here {default_processes(16)} for -j 16)")
    scale.add_argument("--shard", type=_shard, metavar="K/N",
                       help="fetch only shard K of N of the list (a stable hash of each output path): "
                            "N machines running K = 1..N split one list with no coordinator")
    scale.add_argument("--dask", metavar="ADDRESS",
                       help="run on a Dask cluster: tcp://HOST:PORT of a running scheduler, or local[:N] for a "
                            "LocalCluster of N worker processes; DEST must be a path every worker sees "
                            "(needs pip install 'downloader[dask]')")


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    requests_ = parser.add_argument_group("requests")
    requests_.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                           help="extra request header; may be repeated (not sent to other hosts after a redirect "
                                "when it is Authorization or Cookie)")
    requests_.add_argument("--user-agent", metavar="TEXT", help=f"User-Agent header (default downloader/{__version__})")
    requests_.add_argument("--user", metavar="USER:PASSWORD", help="Basic credentials for each URL's own host")
    requests_.add_argument("--netrc-file", metavar="FILE", help="credentials per host (default ~/.netrc when present)")
    requests_.add_argument("--no-proxy", action="store_true", help="ignore HTTP_PROXY, HTTPS_PROXY and NO_PROXY")
    requests_.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    requests_.add_argument("--ca-bundle", metavar="FILE", help="verify TLS certificates against the CAs in FILE")
    requests_.add_argument("--max-redirects", type=_count, default=10, metavar="N",
                           help="redirect hops allowed, whatever URLs repeat (default 10)")
    requests_.add_argument("--load-cookies", metavar="FILE",
                           help="start with the cookies of a Netscape cookies.txt (curl -c, wget --save-cookies)")
    requests_.add_argument("--save-cookies", metavar="FILE",
                           help="write the run's cookies to FILE at the end, session cookies too "
                                "(one engine process: --processes defaults to 1, not with --dask)")
    requests_.add_argument("--max-filesize", type=_amount, metavar="BYTES",
                           help="refuse bodies larger than this, announced or received (suffixes k, M, G, T)")


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv``; None means this process's own arguments, and that the
    process ends when this returns (the console script and ``python -m downloader``)."""
    if argv is None:
        return _before_exit(main(sys.argv[1:]))
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on an unknown option or a bad value
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="downloader: %(message)s")
    with contextlib.ExitStack() as files:
        try:
            if not args.urls and not args.input_file:
                raise UsageError("no URLs: give URLs as arguments or a list with -i FILE")
            lists = _open_lists(args, files)
            config = _config(args)
            dask = _dask(args.dask, verbose=args.verbose)
            outputs = _Outputs(_open(args.report, "report", JsonReport, files),
                               _open(args.failed, "failed list", FailedList, files), args.report, args.failed)
        except UsageError as error:
            parser.print_usage(sys.stderr)
            print(f"downloader: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        if args.dry_run:
            return _dry_run(config, _entries(args.urls, lists))
        return _run(config, _entries(args.urls, lists), outputs, dask, _total(args.urls, args.input_file, lists))


@dataclasses.dataclass
class _Outputs:
    """The files a run writes besides the downloads, and the failures for the summary."""

    report: JsonReport | None
    failed: FailedList | None
    report_name: str | None = None
    failed_name: str | None = None
    failures: Failures = dataclasses.field(default_factory=Failures)

    def add(self, result: Result) -> None:
        if self.report is not None:
            self.report.add(result)
        if self.failed is not None:
            self.failed.add(result)
        self.failures.add(result)

    def close(self, summary: Summary, peak_rss: dict[str, object]) -> None:
        if self.report is not None:
            self.report.close(summary, peak_rss=peak_rss, failure_groups=self.failures.to_json())
        if self.failed is not None:
            self.failed.close()


def _before_exit(status: int) -> int:
    """Take every object out of the garbage collector's sight as the process is about to end.

    The interpreter's shutdown collects garbage over every object before freeing the
    modules: 50-80 ms once aiohttp or requests is loaded, for memory the system takes back
    at exit anyway. Frozen objects are still freed by reference counting, files closed and
    atexit handlers run; only cycles left unreachable now are not collected. Never called
    when main() is given argv (tests, a program of its own that goes on afterwards).
    """
    gc.freeze()
    return status


def status_main(argv: list[str]) -> int:
    """``downloader status [DEST]``: counts per status and the failures, from the manifest."""
    parser = argparse.ArgumentParser(prog="downloader status", description=status_main.__doc__)
    parser.add_argument("dest", nargs="?", default=".", metavar="DEST", help="the destination of earlier runs (default .)")
    parser.add_argument("--manifest", metavar="PATH", help="read this manifest instead of DEST's")
    parser.add_argument("--limit", type=_count, default=50, metavar="N", help="failures to list (default 50)")
    args = parser.parse_args(argv)
    try:
        print(status_report(Path(args.manifest) if args.manifest else Path(args.dest), limit=args.limit))
    except ManifestError as error:
        print(f"downloader status: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _dry_run(config: Config, entries: Iterator[Entry]) -> int:
    """Print one line per entry and a total; exit 1 when some entry would fail."""
    from downloader import dryrun

    try:
        filters = ListFilters(config)
    except ChecksumFileError as error:
        print(f"downloader: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    entries = iter(filters(entries))

    def printed() -> Iterator[dryrun.Planned]:
        for item in dryrun.plan(entries, config):
            print(item.line())
            yield item

    try:
        counts, known, unknown = dryrun.summarize(printed())
    except ManifestError as error:  # raised before the first line is planned
        print(f"downloader: error: {error} (--no-manifest plans without it)", file=sys.stderr)
        return EXIT_USAGE
    filters.log_outcome()
    total = f"{known} bytes announced by size=" + (f", {unknown} of unknown size" if unknown else "")
    print(", ".join(f"{action} {count}" for action, count in counts.items()) + f"; {total}")
    return EXIT_FAILED if counts["fail"] else EXIT_OK


def _run(config: Config, entries: Iterator[Entry], outputs: _Outputs, dask: str | None = None,
         total: FileTotal | None = None) -> int:
    try:
        run = Run(config, on_result=outputs.add, stream=sys.stderr, dask=dask, total=total)
    except ManifestError as error:
        print(f"downloader: error: {error} (--no-manifest runs without it)", file=sys.stderr)
        return EXIT_USAGE
    except (ClusterError, ChecksumFileError) as error:
        print(f"downloader: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _terminate_like_ctrl_c()
    try:
        summary = run(entries)
    except KeyboardInterrupt:
        # A second Ctrl-C while the summary is written ends the process at once.
        signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
        summary = run.summary()
        _finish(run, summary, outputs)
        _exit_now_if_workers_linger()
        return EXIT_INTERRUPTED
    _finish(run, summary, outputs)
    return EXIT_OK if summary.ok else EXIT_FAILED


def _finish(run: Run, summary: Summary, outputs: _Outputs) -> None:
    outputs.close(summary, run.peak_rss())
    print(summary.line(), file=sys.stderr)
    for line in outputs.failures.lines(failed_file=outputs.failed_name, report_file=outputs.report_name):
        print(line, file=sys.stderr)
    sys.stderr.flush()


def _total(urls: list[str], names: list[str], lists: list[Table]) -> FileTotal | None:
    """How many entries the run will see, for the progress: the URL arguments at once, and each
    list file's entries counted in the background, as its format allows. Unknown with a list that
    can be read only once (standard input, a pipe)."""
    from downloader.listcount import Counter, ListCount, count_rows

    counters: list[Counter] = []
    for name, table in zip(names, lists):
        if name == "-" or not _regular_file(name):
            return None
        counters.append(functools.partial(count_rows, name, table.format))
    return ListCount(counters, known=len(urls))


def _regular_file(name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name).st_mode)
    except OSError:
        return False


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (kill, systemd, docker stop) stops the run as gracefully as Ctrl-C does, and
    so does SIGINT even when the shell started us ignoring it (a background job of a script)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_now_if_workers_linger() -> None:
    """After Ctrl-C, worker threads blocked on a socket would delay the exit: end now.

    Parts and their state are already safe on disk (state before the first byte,
    the final name only by rename), so nothing is lost by not waiting.
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)


def _config(args: argparse.Namespace) -> Config:
    dest = Path(args.dest)
    try:
        if not args.dry_run:  # a dry run writes nothing, not even the destination
            dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create destination {dest}: {exc.strerror or exc}") from exc
    try:
        return Config(dest=dest, engine=args.engine, concurrency=args.concurrency, retries=args.retries,
                      timeout=args.timeout, max_wait=args.max_wait, resume=not args.no_resume,
                      speed_limit=args.speed_limit, speed_time=args.speed_time,
                      **_progress_options(args), **_request_options(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _progress_options(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields for --progress: the bar on a terminal, plain lines in a log, nothing with -q."""
    mode = args.progress
    if mode == "auto":
        mode = "none" if args.quiet else "bar" if sys.stderr.isatty() else "lines"
    return {"progress": mode == "bar", "progress_lines": args.progress_interval if mode == "lines" else None}


def _request_options(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields for headers, credentials, proxies and TLS: the environment is read here only."""
    options: dict[str, Any] = {
        "headers": tuple(_header(text) for text in args.header),
        "user": _credentials(args.user) if args.user else None,
        "netrc": _netrc(args.netrc_file),
        "verify": not args.insecure,
        "max_redirects": args.max_redirects,
        "max_filesize": args.max_filesize,
        "layout": args.layout,
        "content_disposition": args.content_disposition,
        "server_digest": not args.no_server_digest,
        "checksum_files": tuple(Path(name) for name in args.checksums),
        "sync": args.sync,
        "per_host": args.per_host,
        "split": args.split,
        "min_split_size": args.min_split_size,
        "manifest": None if args.no_manifest else Path(args.manifest) if args.manifest else default_path(Path(args.dest)),
        "limit_rate": args.limit_rate,
        "processes": args.processes,
        "shard": args.shard,
        **_cookie_options(args),
    }
    if args.user_agent is not None:
        options["user_agent"] = args.user_agent
    if args.ca_bundle is not None:
        if not os.path.isfile(args.ca_bundle):
            raise UsageError(f"cannot read CA bundle {args.ca_bundle}")
        options["ca_bundle"] = Path(args.ca_bundle)
    if not args.no_proxy:
        found = urllib.request.getproxies_environment()
        options["proxies"] = tuple((k, v) for k, v in found.items() if k in ("http", "https", "all"))
        options["no_proxy"] = found.get("no", "")
    return options


def _cookie_options(args: argparse.Namespace) -> dict[str, Any]:
    """--load-cookies (read once here, so that a bad file is a usage error) and --save-cookies."""
    options: dict[str, Any] = {}
    if args.load_cookies is not None:
        try:
            read_file(Path(args.load_cookies))
        except CookiesFileError as exc:
            raise UsageError(str(exc)) from exc
        options["load_cookies"] = Path(args.load_cookies)
    if args.save_cookies is not None:
        if args.dask is not None:
            raise UsageError("--save-cookies cannot be used with --dask: each worker has a jar of its own")
        options["save_cookies"] = Path(args.save_cookies)
        if not options["save_cookies"].parent.is_dir():
            raise UsageError(f"cannot write cookies file {args.save_cookies}: no directory {options['save_cookies'].parent}")
        if args.processes is None:
            options["processes"] = 1  # one jar for the run, the one saved
    return options


def _dask(address: str | None, *, verbose: bool) -> str | None:
    """``--dask``: the address as given, once the optional extra is known to be installed."""
    if address is None:
        return None
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise UsageError("--dask needs the optional extra: pip install 'downloader[dask]'")
    if not address.strip():
        raise UsageError("--dask wants tcp://HOST:PORT or local[:N]")
    import distributed  # noqa: F401 - imported here so that its logging set-up comes before ours

    if not verbose:  # Dask's own chatter (ports, workers starting and stopping) only with -v
        logging.getLogger("distributed").setLevel(logging.ERROR)
    return address.strip()


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
        raise UsageError(f"-H wants 'Name: value', got {text!r}")
    return name, value.strip()


def _credentials(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise UsageError("--user wants USER:PASSWORD")
    return user, password


def _netrc(name: str | None) -> tuple[tuple[str, str, str], ...]:
    path = Path(name) if name else Path.home() / ".netrc"
    if name is None and not path.is_file():
        return ()
    import netrc

    try:
        parsed = netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError) as exc:
        raise UsageError(f"cannot read netrc file {path}: {exc}") from exc
    return tuple((host, login or "", password or "") for host, (login, _, password) in parsed.hosts.items())


def _entries(urls: list[str], lists: list[Table]) -> Iterator[Entry]:
    return itertools.chain(read_urls(urls), *lists)


def _open_lists(args: argparse.Namespace, files: contextlib.ExitStack) -> list[Table]:
    """Every -i list, opened in its format (a table's header read: a missing column is a usage error)."""
    lists = [_open_list(name, args, files) for name in args.input_file]
    named = [f"--{role}-column" for role in ("out", "checksum", "size") if getattr(args, f"{role}_column") is not None]
    if args.url_column != "url":
        named.insert(0, "--url-column")
    if named and not any(table.format != "list" for table in lists):
        raise UsageError(f"{', '.join(named)} apply to tabular lists (CSV, TSV, JSON Lines, Parquet), and no -i file "
                         "is read as one: name them .csv, .tsv, .jsonl or .parquet, or give --input-format")
    return lists


def _open_list(name: str, args: argparse.Namespace, files: contextlib.ExitStack) -> Table:
    source: str | IO[bytes] = sys.stdin.buffer if name == "-" else name
    try:
        return files.enter_context(read_table(
            source, format=args.input_format, url_column=args.url_column, out_column=args.out_column,
            checksum_column=args.checksum_column, size_column=args.size_column,
            name="<stdin>" if name == "-" else name))
    except ListFormatError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read list {name}: {exc.strerror or exc}") from exc


def _open(name: str | None, what: str, kind: Callable[[IO[str]], T], files: contextlib.ExitStack) -> T | None:
    if name is None:
        return None
    try:
        return kind(files.enter_context(open(name, "w", encoding="utf-8")))
    except OSError as exc:
        raise UsageError(f"cannot write {what} {name}: {exc.strerror or exc}") from exc


def _amount(text: str) -> int:
    """Bytes with an optional k, M, G or T suffix (powers of 1024): ``'500k'`` -> 512000."""
    return _parsed_amount(text, minimum=0)


def _positive_amount(text: str) -> int:
    """As :func:`_amount`, at least 1: a rate or a segment size of nothing means nothing."""
    return _parsed_amount(text, minimum=1)


def _parsed_amount(text: str, *, minimum: int) -> int:
    try:
        return parse_amount(text, minimum=minimum)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's message as it is
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(text: str) -> tuple[int, int]:
    from downloader.sharding import Shard

    try:
        shard = Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return shard.index, shard.count


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
