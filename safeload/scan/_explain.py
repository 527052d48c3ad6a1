"""`scan --explain`: a Python-like rendering of what a pickle would do.

fickling's decompiler turns the opcodes into readable Python. It only
*reads* the stream (it never unpickles), and it runs in a child process
under a time limit, a memory limit and an audit hook that refuses
unpickling, process creation and code compilation, so a decompiler bug
cannot hang or exhaust the scan. The explanation is for people: it never
changes a verdict.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MAX_INPUT",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_TIMEOUT",
    "explain",
    "explain_data",
    "explain_file",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds the decompiler may run."""
DEFAULT_MAX_INPUT = 16 * 1024 * 1024
"""Larger pickles are not decompiled (the output would not be read anyway)."""
DEFAULT_MAX_OUTPUT = 8000
"""Characters of decompiled text kept."""
MEMORY_LIMIT = 1024 * 1024 * 1024
"""Address-space limit of the decompiler process, in bytes."""


def explain(
    data: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_input: int = DEFAULT_MAX_INPUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> str:
    """Decompiled text for the pickle stream(s) in `data`, or why there is none."""
    if len(data) > max_input:
        return f"(not decompiled: {len(data)} bytes is over the {max_input}-byte limit)"
    limits = [str(MEMORY_LIMIT), str(timeout)]
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-W", "ignore", __file__, *limits],
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"(not decompiled: fickling took longer than {timeout:g} s)"
    except OSError as exc:
        return f"(not decompiled: cannot start the decompiler: {exc.strerror or exc})"
    text = done.stdout.decode("utf-8", "replace").rstrip()
    if done.returncode != 0:
        reason = (
            _last_line(done.stderr.decode("utf-8", "replace")) or f"exit code {done.returncode}"
        )
        if text:
            text = _truncate(text, max_output)
            return f"{text}\n(decompiling stopped early: {reason})"
        return f"(not decompiled: fickling failed: {reason})"
    if not text:
        return "(not decompiled: fickling found no complete pickle to decompile)"
    return _truncate(text, max_output)


_MAX_READINGS = 4


def explain_file(
    path: Path, *, timeout: float = DEFAULT_TIMEOUT, max_expansion: float | None = None
) -> str:
    """Decompiled text for every pickle a loader would read from the file at `path`.

    The pickles are the locator's readings, the same bytes the scan judged:
    inside zip, tar, npy and compressed containers too.
    """
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return explain_data(b"", str(path), timeout=timeout, max_expansion=max_expansion)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return explain_data(mapped, str(path), timeout=timeout, max_expansion=max_expansion)
    except OSError as exc:
        return f"(not decompiled: cannot read the file: {exc.strerror or exc})"


def explain_data(
    data: Any,
    location: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_expansion: float | None = None,
) -> str:
    """Decompiled text for every reading of `data` (a whole file's bytes), decompressed
    within the same expansion limit as the scan (`max_expansion`, default as `locate`)."""
    # Imported here: this file also runs as the decompiler's child script,
    # which must not import safeload.
    from .._formats import locate

    with locate(data, location, max_expansion=max_expansion) as located:
        readings = [
            (r.location, bytes(r.view()) if r.end - r.start <= DEFAULT_MAX_INPUT else None)
            for r in located.readings[:_MAX_READINGS]
        ]
        more = len(located.readings) - len(readings)
        shape = located.shape
    if not readings:
        return f"(not decompiled: no pickle stream in this file, which reads as {shape})"
    parts = []
    for where, stream in readings:
        text = (
            explain(stream, timeout=timeout)
            if stream is not None
            else f"(not decompiled: over the {DEFAULT_MAX_INPUT}-byte limit)"
        )
        member = where[len(location) + 1 :] if where.startswith(f"{location}:") else ""
        parts.append(f"# {member}\n{text}" if member else text)
    if more > 0:
        parts.append(f"# ... {more} more pickle streams not decompiled")
    return "\n".join(parts)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > 0 else limit
    return f"{text[:cut]}\n... ({len(text) - cut} more characters not shown)"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


_REFUSED_EVENTS = frozenset(
    {
        "pickle.find_class",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "ctypes.dlopen",
        "compile",
        "exec",
    }
)


def _refuse(event: str, args: tuple[object, ...]) -> None:
    if event in _REFUSED_EVENTS:
        raise RuntimeError(f"refused {event} while decompiling")


def _child(memory_limit: int, seconds: float) -> int:
    """Decompile the pickle on stdin to stdout; runs in the child process."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        cpu = int(seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass
    import ast
    import codecs
    import io

    from fickling import fickle

    for codec in ("ascii", "latin-1", "utf-8", "raw-unicode-escape", "unicode-escape"):
        codecs.lookup(codec)  # import the codecs pickletools needs before imports are refused
    sys.addaudithook(_refuse)
    data = sys.stdin.buffer.read()
    stacked = fickle.StackedPickle.load(io.BytesIO(data), fail_on_decode_error=False)
    var_id = 0
    for i, pickled in enumerate(stacked):
        interpreter = fickle.Interpreter(
            pickled, first_variable_id=var_id, result_variable=f"result{i}"
        )
        if i:
            sys.stdout.write(f"# pickle {i + 1} in the same stream\n")
        sys.stdout.write(ast.unparse(interpreter.to_ast()) + "\n")
        sys.stdout.flush()
        var_id = interpreter.next_variable_id
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), float(sys.argv[2])))
