"""Measure a child process: wall time, CPU time and peak RSS, plus the in-process probes.

Two halves:

* `run_child(argv, timeout=...)` (used by `run_scan_speed.py`) starts a process, reaps it
  with `os.wait4` and returns its wall and CPU time, exit status and peak RSS (`ru_maxrss`
  of that child alone). A timer kills it after `timeout` seconds: status "timeout".
* `python bench/_measure.py make|probe ...` is the child side. `make` writes the benchmark
  pickle; `probe OP FILE` reads the file, resets the kernel's RSS high-water mark, times one
  operation (wall and CPU time) and prints one JSON line: seconds, CPU seconds, RSS before,
  peak RSS during the operation and RSS after it (Linux `/proc/self/status`).

A child started with `vfork` inherits its parent's RSS high-water mark into `ru_maxrss`, so
`run_child` turns vfork off (the documented `subprocess._USE_VFORK` switch) and the parent
never loads the benchmark data itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Documented kill switch (Python 3.11+); a plain fork does not leak the parent's peak RSS.
subprocess._USE_VFORK = False  # type: ignore[misc]

PROBES = ("loads", "sha256", "scan_bytes", "scan_file")
"""In-process operations `probe` can time."""


@dataclass(frozen=True)
class ChildResult:
    """What one child process did."""

    status: str
    """`ok` (exit status 0 or 1), `error` (any other exit) or `timeout`."""
    returncode: int | None
    seconds: float
    """Wall time from start to reaping, interpreter start-up included."""
    cpu_seconds: float
    """User plus system CPU time of the child (steadier than wall time on a busy machine)."""
    peak_rss: int
    """Peak resident set size of the child, in bytes (`ru_maxrss`)."""
    stdout: str
    stderr: str


def fill_sizes(args: Any, defaults: dict[str, tuple[Any, Any]]) -> None:
    """Give each option left unset its full-run default, or its `--quick` one."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def run_child(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    ok_codes: tuple[int, ...] = (0, 1),
) -> ChildResult:
    """Run `argv` to completion (or `timeout`) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if timed_out.is_set():
        state = "timeout"
    elif proc.returncode in ok_codes:
        state = "ok"
    else:
        state = "error"
    cpu = usage.ru_utime + usage.ru_stime
    return ChildResult(state, proc.returncode, seconds, cpu, usage.ru_maxrss * 1024, stdout, stderr)


# --- child side -------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0; ignored where not allowed)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def make(path: Path, entries: int, protocol: int) -> None:
    """Write `{f"key{i}": i for i in range(entries)}` pickled with `protocol` to `path`."""
    import pickle

    data = pickle.dumps({f"key{i}": i for i in range(entries)}, protocol=protocol)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def probe(op: str, path: Path) -> dict[str, Any]:
    """Time one in-process operation on the file at `path`; see the module docstring."""
    import hashlib
    import pickle

    setup = time.perf_counter()
    data = b"" if op == "scan_file" else path.read_bytes()
    extra: dict[str, Any] = {}
    if op.startswith("scan_"):
        import safeload

        policy = safeload.Policy.default()
        extra["setup_seconds"] = time.perf_counter() - setup
    result: Any = None
    before = _status_kib("VmRSS")
    _reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    if op == "loads":
        result = pickle.loads(data)
    elif op == "sha256":
        result = hashlib.sha256(data).digest()
    elif op == "scan_bytes":
        result = safeload.scan_bytes(data, policy)
    elif op == "scan_file":
        result = safeload.scan_file(path, policy)
    else:
        raise SystemExit(f"unknown probe {op!r}")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _status_kib("VmHWM")
    after = _status_kib("VmRSS")
    if op.startswith("scan_"):
        extra.update(verdict=result.verdict.value, opcodes=result.opcodes, pickles=result.pickles)
    return {
        "op": op,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before": before * 1024,
        "rss_peak": peak * 1024,
        "rss_after": after * 1024,
        **extra,
    }


def main(argv: list[str]) -> int:
    """`make FILE ENTRIES PROTOCOL` or `probe OP FILE`."""
    if len(argv) == 4 and argv[0] == "make":
        make(Path(argv[1]), int(argv[2]), int(argv[3]))
        return 0
    if len(argv) == 3 and argv[0] == "probe" and argv[1] in PROBES:
        print(json.dumps(probe(argv[1], Path(argv[2]))))
        return 0
    print("usage: _measure.py make FILE ENTRIES PROTOCOL | probe OP FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
