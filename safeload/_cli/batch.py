"""`safeload scan --engine dask`: a batch scan on a Dask cluster, results in a JSON Lines file.

The report of a million files is never held or printed: every file's result
is a line of `--jsonl FILE`, and the terminal gets a progress bar and a
summary. Exit codes are the scan's: 0 clean, 1 findings, 2 usage or I/O.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ..errors import ScanInputError
from ..policy import Policy, UserConfig
from ..report import Verdict
from ..scan._dask import BatchProgress, BatchSummary, connect, scan_many

__all__ = ["scan_on_cluster"]

ERRORS_SHOWN = 20
"""Unreadable paths listed on stderr; the rest are error lines of the results file."""

REDRAW_EVERY = 0.2
"""Seconds between two redraws of the progress line."""

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def scan_on_cluster(
    args: argparse.Namespace,
    policy: Policy,
    config: UserConfig | None,
    failing: frozenset[Verdict],
) -> int:
    """Run `safeload scan` with `--engine dask` (or its options); the exit code."""
    problem = _usage_problem(args)
    if problem is not None:
        print(f"safeload: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    client = connect(args.scheduler) if args.scheduler else None
    draw = None if args.quiet or not sys.stderr.isatty() else progress_bar(sys.stderr)
    try:
        summary = scan_many(
            args.paths,
            policy,
            jsonl=args.jsonl,
            client=client,
            workers=args.jobs,
            resume=args.resume,
            max_opcodes=args.max_opcodes,
            exclude=[*(config.exclude if config else ()), *args.exclude],
            exclude_base=config.path.parent if config and config.path else None,
            sniff_named=args.sniff,
            follow_symlinks=args.follow_symlinks,
            progress=draw,
        )
    except OSError as exc:
        raise ScanInputError(f"{args.jsonl}: cannot write: {exc.strerror or exc}") from exc
    finally:
        if client is not None:
            client.close()
    if draw is not None:
        sys.stderr.write("\n")
    for path, reason in summary.error_sample.items():
        print(f"safeload: error: {path}: {reason}", file=sys.stderr)
    hidden = summary.errors - len(summary.error_sample)
    if hidden > 0:
        print(
            f'safeload: ... and {hidden} more unreadable paths (lines with "error" in '
            f"{summary.jsonl})",
            file=sys.stderr,
        )
    print(summary_line(summary), file=sys.stderr)
    if summary.errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if any(summary.verdicts[v] for v in failing) else EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.engine != "dask":
        return "--jsonl, --resume and --scheduler go with --engine dask"
    if args.jsonl is None:
        return "--engine dask writes one result line per file: give --jsonl FILE"
    unsupported = [
        flag
        for flag, given in (
            (f"--format {args.format}", args.format != "text"),
            ("--output", args.output is not None),
            ("--explain", args.explain),
            ("--baseline", args.baseline is not None),
            ("--write-baseline", args.write_baseline is not None),
            ("--ignore", bool(args.ignore)),
            ("--timeout", args.timeout is not None),
            ("- (standard input)", any(str(p) == "-" for p in args.paths)),
        )
        if given
    ]
    if unsupported:
        return (
            f"{', '.join(unsupported)}: not available with --engine dask, whose results are "
            "the lines of --jsonl FILE"
        )
    return None


def summary_line(summary: BatchSummary) -> str:
    """`2000 files in 4.1 s (488 files/s): 1700 safe, 300 dangerous; results in FILE`."""
    counts = ", ".join(f"{n} {v.value}" for v, n in summary.verdicts.items() if n)
    rate = summary.files / summary.elapsed if summary.elapsed > 0 else 0.0
    parts = [
        f"{summary.files} files in {summary.elapsed:.1f} s ({rate:.0f} files/s)"
        + (f": {counts}" if counts else "")
    ]
    if summary.resumed:
        parts.append(f"{summary.resumed} already in the results file (--resume)")
    if summary.errors:
        parts.append(f"{summary.errors} unreadable")
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped")
    return "; ".join(parts) + f"; results in {summary.jsonl}"


def progress_bar(stream: TextIO) -> Callable[[BatchProgress], None]:
    """Draws files and bytes done and the throughput on one line of `stream`."""
    last = [0.0]

    def draw(p: BatchProgress) -> None:
        now = time.monotonic()
        if now - last[0] < REDRAW_EVERY and not (p.walk_done and p.files_done == p.files_found):
            return
        last[0] = now
        total = f"{p.files_found}" if p.walk_done else f"{p.files_found}+"
        scanned = p.files_done - p.resumed
        rate = scanned / p.elapsed if p.elapsed > 0 else 0.0
        byte_rate = (p.bytes_done - p.bytes_resumed) / p.elapsed if p.elapsed > 0 else 0.0
        line = (
            f"scanning {p.files_done}/{total} files, {_size(p.bytes_done)}"
            f" | {rate:.0f} files/s, {_size(byte_rate)}/s"
        )
        if p.resumed:
            line += f" | {p.resumed} resumed"
        stream.write(f"\r{line}\x1b[K")
        stream.flush()

    return draw


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
