"""Batch scans fanned out over a Dask cluster: `scan_many` (`safeload scan --engine dask`).

The client walks the sources with the local scan's discovery rules
(`_batch.walk`), submits files in small batches with a bounded number in
flight, and appends each file's result to a JSON Lines file as it arrives
(`_jsonl`). Nothing grows with the number of files on the client but the
resume index, so a night's run over a million files is bounded.

Workers are dask.distributed's: a worker that dies (the OOM killer, a node
lost) has its tasks rerun elsewhere by the scheduler. A task whose workers
die more than `allowed-failures` times fails with `KilledWorker`. The
scheduler blames every task the dead workers held, so the files of such a
task are scanned again at the end of the run, one at a time with nothing
else on the cluster; a file that still kills its workers then is reported
invalid (SL312 internal-error), never dropped. dask is imported only here, and only when a scan asks for it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._machine.walker import DEFAULT_MAX_OPCODES
from ..errors import ScanInputError
from ..policy import Policy
from ..report import FileReport, Verdict
from . import _jsonl
from ._batch import walk
from ._core import default_policy, scan_file
from ._judge import internal_error, structural, verdict_of

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["BatchProgress", "BatchSummary", "connect", "scan_many"]

BATCH_FILES = 32
"""Files per task: one scan of a small pickle takes about a millisecond, as long
as the scheduler's own cost of a task, so small files travel together."""

BATCH_BYTES = 8 << 20
"""A batch closes at this many bytes: a large checkpoint is a task of its own."""

IN_FLIGHT_PER_THREAD = 16
"""Tasks submitted ahead per worker thread: enough that no worker waits for the
client, few enough that the client holds a bounded number of futures."""

ALLOWED_FAILURES = 3
"""Worker deaths a task may see before it is given up (the LocalCluster
scheduler's `distributed.scheduler.allowed-failures`; a cluster given with
`client=` or `--scheduler` keeps its own setting)."""

NO_WORKERS_TIMEOUT = 300.0
"""Seconds a run waits for a cluster that has no worker left (an adaptive
cluster may scale up from none) before it stops, its results kept for --resume."""

WORKER_CHECK_EVERY = 2.0
"""Seconds between two checks that the cluster still has workers."""

ERRORS_KEPT = 100
"""Unreadable paths kept in the summary for the CLI to show; all are in the file."""


@dataclass(frozen=True)
class BatchProgress:
    """Passed to `scan_many`'s `progress` callback after each finished task."""

    files_done: int
    bytes_done: int
    files_found: int
    """Files found so far; final once `walk_done`."""
    bytes_found: int
    walk_done: bool
    resumed: int
    """Files skipped because the results file already holds them (counted as done)."""
    bytes_resumed: int
    elapsed: float


@dataclass
class BatchSummary:
    """What a `scan_many` run wrote: counts only (the results are in the JSON Lines file)."""

    jsonl: Path
    verdicts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))
    """Per verdict, over this run's files and the resumed ones."""
    files: int = 0
    resumed: int = 0
    bytes: int = 0
    bytes_resumed: int = 0
    skipped: int = 0
    errors: int = 0
    error_sample: dict[str, str] = field(default_factory=dict)
    """The first `ERRORS_KEPT` unreadable paths and why."""
    skip_reasons: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def safe(self) -> bool:
        """True when every file is safe and nothing failed to read."""
        return not self.errors and self.verdicts[Verdict.SAFE] == self.files


@dataclass(frozen=True)
class _Item:
    identity: _jsonl.Identity
    source: str
    """What the worker opens: the path or URL as given."""


@dataclass(frozen=True)
class _Skipped:
    path: str
    reason: str | None


@dataclass(frozen=True)
class _Unreadable:
    path: str
    reason: str


_Walked = _Item | _Skipped | _Unreadable


def scan_many(
    sources: Iterable[str | os.PathLike[str]],
    policy: Policy | None = None,
    *,
    jsonl: str | os.PathLike[str],
    client: Client | None = None,
    workers: int | None = None,
    resume: bool = False,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    exclude: Sequence[str] = (),
    exclude_base: Path | None = None,
    sniff_named: bool = False,
    follow_symlinks: bool = False,
    progress: Callable[[BatchProgress], None] | None = None,
) -> BatchSummary:
    """Scan files and directories on a Dask cluster, one JSON line per file in `jsonl`.

    `client` is a connected `distributed.Client`; without it a `LocalCluster`
    of `workers` processes (default: one per core, one thread each) is
    started for this run and closed after it. Directories are walked with the
    rules of `safeload.scan` (extensions and content sniffing, `exclude`,
    symlinks). With `resume`, files whose path, size and mtime (or ETag)
    match a line already in `jsonl` are not scanned again; otherwise `jsonl`
    is started anew. Never prints: `progress` gets a `BatchProgress`.
    """
    policy = policy or default_policy()
    out = Path(jsonl)
    fingerprint = _jsonl.policy_fingerprint(policy, max_opcodes)
    index = _jsonl.Index.read(out, fingerprint) if resume else _jsonl.Index()
    items = _items(
        sources,
        exclude=exclude,
        exclude_base=exclude_base,
        sniff_named=sniff_named,
        follow_symlinks=follow_symlinks,
    )
    with _jsonl.Writer(out, resume_from=index.valid_end if resume else None) as writer:
        run = _Run(out, policy, fingerprint, max_opcodes, writer, index, progress)
        if client is not None:
            run.drive(client, items)
        else:
            with _local_client(workers) as own:
                run.drive(own, items)
    return run.summary


def _distributed() -> Any:
    """dask.distributed, imported only when a scan asks for it (partly typed: used as Any)."""
    import importlib

    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ScanInputError(
            "scanning on a Dask cluster needs dask.distributed: pip install 'safeload[dask]'"
        ) from exc


def connect(address: str) -> Any:
    """A `distributed.Client` of the scheduler at `address` (`tcp://host:8786`)."""
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ScanInputError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc


class _local_client:
    """A LocalCluster for one run: processes, one thread each (scans hold the GIL)."""

    def __init__(self, workers: int | None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def __enter__(self) -> Any:
        import logging

        distributed = _distributed()  # first: says how to install it when it is missing
        import dask

        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
            self.cluster = distributed.LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port, no warning when 8787 is taken
                silence_logs=logging.ERROR,
            )
        self.client = distributed.Client(self.cluster)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close()


class _Run:
    """The client's side of one run: submit, collect, write, count."""

    def __init__(
        self,
        out: Path,
        policy: Policy,
        fingerprint: str,
        max_opcodes: int,
        writer: _jsonl.Writer,
        index: _jsonl.Index,
        progress: Callable[[BatchProgress], None] | None,
    ) -> None:
        self.summary = BatchSummary(jsonl=out)
        self.policy = policy
        self.fingerprint = fingerprint
        self.max_opcodes = max_opcodes
        self.writer = writer
        self.index = index
        self.progress = progress
        self.started = time.monotonic()
        self.found = 0
        self.bytes_found = 0
        self.walk_done = False
        self.window = 2
        self.checked = time.monotonic()
        """When the cluster's workers were last counted."""

    def drive(self, client: Any, items: Iterator[_Walked]) -> None:
        self.size_window(client.nthreads())
        # The policy reaches each worker once, with a plugin the scheduler also
        # gives to workers that join or are restarted during the run.
        from ._dask_worker import PolicyPlugin

        run = f"safeload-{os.urandom(8).hex()}"
        client.register_plugin(PolicyPlugin(run, self.policy), name=run)
        # Results are fetched in the background as tasks finish: asking for each
        # one after it is done would cost a round trip to the worker per task.
        pending = _distributed().as_completed(with_results=True, raise_errors=False)
        flight: dict[str, list[_Item]] = {}

        def submit(batch: list[_Item]) -> None:
            future = client.submit(
                _scan_batch,
                [item.source for item in batch],
                run,
                self.max_opcodes,
                pure=False,
                key=f"safeload-scan-{os.urandom(8).hex()}",
            )
            flight[future.key] = batch
            pending.add(future)

        def collect_one(alone: bool = False) -> None:
            self.wait(client, pending, len(flight))
            future, result = next(pending)
            batch = flight.pop(future.key)
            if future.status == "finished":
                self.finish(batch, result)
            elif alone:
                self.lost(batch[0], future.status, result)
            else:
                suspects.extend(batch)
            future.release()
            self.report()

        # Tasks whose workers kept dying. The scheduler blames every task a dead
        # worker held, not only the one that killed it, so each of these files
        # is scanned again at the end, alone on the cluster: only a file that
        # still kills its workers then is reported invalid (SL312).
        suspects: list[_Item] = []
        try:
            for batch in self.batches(items):
                submit(batch)
                while len(flight) >= self.window:
                    collect_one()
            self.walk_done = True
            while flight:
                collect_one()
            for item in suspects:
                submit([item])
                collect_one(alone=True)
        finally:
            client.unregister_worker_plugin(run)
        self.summary.elapsed = time.monotonic() - self.started
        self.report()

    def size_window(self, threads: dict[str, int]) -> None:
        """Tasks kept in flight: a few per worker thread, as the cluster grows or shrinks."""
        self.window = max(2, IN_FLIGHT_PER_THREAD * sum(threads.values()))

    def wait(self, client: Any, pending: Any, unfinished: int) -> None:
        """Until a result is ready; raise if the cluster keeps having no worker at all.

        A worker killed while its nanny starts it is not restarted, and a
        cluster whose last worker is gone would otherwise be waited for forever.
        """
        delay, empty_since = 0.001, None
        while True:
            now = time.monotonic()
            if now - self.checked >= WORKER_CHECK_EVERY:
                self.checked = now
                threads = client.nthreads()
                self.size_window(threads)
                empty_since = None if threads else empty_since or now
                if empty_since is not None and now - empty_since > NO_WORKERS_TIMEOUT:
                    raise ScanInputError(
                        f"the Dask cluster has had no worker for {NO_WORKERS_TIMEOUT:.0f} s; "
                        f"{unfinished} tasks were not finished. The results so far are in "
                        f"{self.summary.jsonl}: run again with --resume (resume=True)"
                    )
            if pending.has_ready():
                return
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    def batches(self, items: Iterator[_Walked]) -> Iterator[list[_Item]]:
        """Files still to scan, grouped; resumed, skipped and unreadable ones are counted here."""
        batch: list[_Item] = []
        size = 0
        for item in items:
            if isinstance(item, _Skipped):
                self.summary.skipped += 1
                if item.reason and len(self.summary.skip_reasons) < ERRORS_KEPT:
                    self.summary.skip_reasons[item.path] = item.reason
                continue
            if isinstance(item, _Unreadable):
                self.error(_jsonl.Identity(item.path, None), item.reason)
                continue
            self.found += 1
            self.bytes_found += item.identity.size or 0
            done = self.index.verdict(item.identity)
            if done is not None:
                self.summary.resumed += 1
                self.summary.files += 1
                self.summary.bytes += item.identity.size or 0
                self.summary.bytes_resumed += item.identity.size or 0
                self.summary.verdicts[done] += 1
                continue
            batch.append(item)
            size += item.identity.size or 0
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def finish(self, batch: list[_Item], result: list[_Result]) -> None:
        for item, one in zip(batch, result, strict=True):
            if isinstance(one, dict):
                self.file(_jsonl.file_line(one, item.identity, self.fingerprint), item.identity)
            elif isinstance(one, list):  # a URL's file (or the files under a prefix)
                for line in one:
                    identity = (
                        item.identity
                        if line["path"] == item.identity.path
                        else _jsonl.Identity(line["path"], line.get("size"))
                    )
                    self.file(_jsonl.file_line(line, identity, self.fingerprint), identity)
            else:
                self.error(item.identity, one)

    def file(self, line: dict[str, Any], identity: _jsonl.Identity) -> None:
        self.writer.write(line)
        self.summary.files += 1
        self.summary.bytes += identity.size or 0
        self.summary.verdicts[Verdict(line["verdict"])] += 1

    def error(self, identity: _jsonl.Identity, reason: str) -> None:
        self.writer.write(_jsonl.error_line(identity, reason))
        self.summary.errors += 1
        if len(self.summary.error_sample) < ERRORS_KEPT:
            self.summary.error_sample[identity.path] = reason

    def lost(self, item: _Item, status: str, result: Any) -> None:
        """A file whose task failed for good: invalid, with the reason (SL312)."""
        # An errored task's result is (type, exception, traceback); a cancelled one's the error.
        problem = result[1] if isinstance(result, tuple) and len(result) == 3 else result
        if isinstance(problem, BaseException):
            what = f"{type(problem).__name__}: {problem}"
        else:
            what = f"task {status}"
        message = (
            f"internal error while scanning this file on the cluster ({what}); nothing was verified"
        )
        finding = structural(self.policy, "internal-error", message, item.identity.path, None)
        report = FileReport(
            path=item.identity.path,
            verdict=verdict_of([finding]),
            format="unknown",
            findings=(finding,),
            size=item.identity.size or 0,
        )
        self.file(
            _jsonl.file_line(report.to_json(), item.identity, self.fingerprint), item.identity
        )

    def report(self) -> None:
        if self.progress is None:
            return
        self.progress(
            BatchProgress(
                files_done=self.summary.files,
                bytes_done=self.summary.bytes,
                files_found=self.found,
                bytes_found=self.bytes_found,
                walk_done=self.walk_done,
                resumed=self.summary.resumed,
                bytes_resumed=self.summary.bytes_resumed,
                elapsed=time.monotonic() - self.started,
            )
        )


def _items(
    sources: Iterable[str | os.PathLike[str]],
    *,
    exclude: Sequence[str],
    exclude_base: Path | None,
    sniff_named: bool,
    follow_symlinks: bool,
) -> Iterator[_Walked]:
    """Files to scan, with their identity; skipped and unreadable paths.

    Local paths are walked together (a file named twice is scanned once);
    URLs are listed by the remote scan and each file is read by a worker
    where it lives, through the public `safeload.scan`.
    """
    paths: list[Path] = []
    urls: list[str] = []
    for source in sources:
        text = os.fspath(source)
        if _URL.match(text):
            urls.append(text)
        else:
            paths.append(Path(text))
    for found in walk(
        paths,
        exclude=exclude,
        exclude_base=exclude_base,
        sniff_named=sniff_named,
        follow_symlinks=follow_symlinks,
    ):
        if found.kind == "skip":
            yield _Skipped(found.path, found.reason)
        elif found.kind == "error":
            yield _Unreadable(found.path, found.reason or "cannot read")
        else:
            yield _stat(found.path)
    if urls:
        yield from _listed(urls, exclude)


def _listed(urls: list[str], exclude: Sequence[str]) -> Iterator[_Walked]:
    """The files under URLs, listed here by the remote scan's rules, with size and ETag.

    Each file is then its own item: a bucket prefix is spread over the cluster,
    and `resume` knows an object by its size and version tag.
    """
    from . import _remote

    for url in urls:
        for entry in _remote._listing(url, exclude):
            if isinstance(entry, tuple):
                remote = entry[0]
                tag = remote.identity  # (size,) or (size, field, value)
                etag = f"{tag[1]}={tag[2]}" if len(tag) == 3 else None
                size = remote.size if remote.size >= 0 else None
                yield _Item(_jsonl.Identity(remote.url, size, None, etag), remote.url)
            elif entry.kind == "skip":
                yield _Skipped(entry.path, entry.reason)
            elif entry.kind == "error":
                yield _Unreadable(entry.path, entry.reason or "cannot read")
            else:
                yield _Item(_jsonl.Identity(entry.path, None), entry.path)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""`scheme://...`: a location for fsspec, not a local path."""


def _stat(path: str) -> _Item:
    try:
        st = os.stat(path)
    except OSError:
        # The worker's scan says why it cannot be read; never resumed.
        return _Item(_jsonl.Identity(path, None), path)
    return _Item(_jsonl.Identity(path, st.st_size, st.st_mtime_ns), path)


# -- on the workers ------------------------------------------------------------------


def _scan_batch(sources: list[str], run: str, max_opcodes: int) -> list[_Result]:
    """Each source's report objects, or why it could not be read (on a worker)."""
    from ._dask_worker import policy_of

    policy = policy_of(run)
    return [_scan_one(source, policy, max_opcodes) for source in sources]


_Result = dict[str, Any] | str | list[dict[str, Any]]
"""A file's report object, why it could not be read, or the files a URL led to."""


def _scan_one(source: str, policy: Policy, max_opcodes: int) -> _Result:
    try:
        if _URL.match(source):
            # The public scan reads a URL where it lives (and lists a prefix).
            from . import scan

            report = scan(source, policy, max_opcodes=max_opcodes)
            if report.errors:
                return "; ".join(report.errors.values())
            return [file.to_json() for file in report.files]
        return scan_file(source, policy, max_opcodes=max_opcodes).to_json()
    except ScanInputError as exc:
        text = exc.diagnostics()
        return text[len(source) + 2 :] if text.startswith(f"{source}: ") else text
    except Exception as exc:  # the last resort: one file's bug never stops the batch
        finding = internal_error(policy, exc, source)
        return FileReport(
            path=source, verdict=verdict_of([finding]), format="unknown", findings=(finding,)
        ).to_json()
