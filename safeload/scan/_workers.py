"""Worker processes for batch scans that survive their workers.

`concurrent.futures.ProcessPoolExecutor` breaks as a whole when one worker
dies (the OOM killer, a crash in native code): every file still queued fails
with `BrokenProcessPool`, and nothing says which file killed it. Here each
worker takes one file at a time, so the parent always knows which file a
worker holds: a worker that dies, or overruns the per-file time limit and is
killed, costs a report for that one file and is replaced; every other file
is still scanned.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

Task = Callable[[Path], Any]
"""What a worker does with one file; its result must pickle."""

TEST_KILL_ENV = "_SAFELOAD_TEST_KILL_WORKER_ON"
"""Test-only: a worker scanning a file of this name kills itself (SIGKILL), as the
OOM killer would. Read in the worker, so it works with any start method."""


@dataclass(frozen=True)
class Lost:
    """A file whose worker never returned a result."""

    path: Path
    reason: str
    timed_out: bool


def run(
    files: Sequence[Path],
    task: Task,
    *,
    workers: int,
    timeout: float | None,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
) -> Iterator[Any]:
    """`task(path)` for each file as it finishes, or a `Lost` naming the file.

    `initializer(*initargs)` runs once in each worker before its first file.
    """
    queue: deque[Path] = deque(files)
    context = multiprocessing.get_context()
    pool = [_Worker(context, task, initializer, initargs) for _ in range(min(workers, len(files)))]
    try:
        while queue or any(w.busy for w in pool):
            for worker in pool:
                if worker.busy is None and queue:
                    worker.give(queue.popleft())
            busy = [w for w in pool if w.busy is not None]
            ready = set(
                wait([x for w in busy for x in w.waitables()], _next_deadline(busy, timeout))
            )
            for index, worker in enumerate(pool):
                if worker.busy is None:
                    continue
                outcome = worker.outcome(ready, timeout)
                if outcome is None:
                    continue  # still working
                yield outcome
                if isinstance(outcome, Lost):
                    worker.kill()
                    pool[index] = _Worker(context, task, initializer, initargs)
    finally:
        for worker in pool:
            worker.stop()


def _next_deadline(busy: list[_Worker], timeout: float | None) -> float | None:
    if timeout is None or not busy:
        return None
    now = time.monotonic()
    return max(0.0, min(w.started + timeout for w in busy) - now)


class _Worker:
    """One worker process and the file it holds."""

    def __init__(
        self,
        context: Any,
        task: Task,
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
    ) -> None:
        parent, child = context.Pipe()
        self.conn: Connection = parent
        self.process = context.Process(
            target=_serve, args=(child, task, initializer, initargs), daemon=True
        )
        self.process.start()
        child.close()
        self.busy: Path | None = None
        self.started = 0.0

    def give(self, path: Path) -> None:
        self.busy = path
        self.started = time.monotonic()
        try:
            self.conn.send(path)
        except OSError:
            pass  # it died between two files: `outcome` reports it for this one

    def waitables(self) -> list[Any]:
        return [self.conn, self.process.sentinel]

    def outcome(self, ready: set[Any], timeout: float | None) -> Any | Lost | None:
        """The result for the file held, a `Lost`, or None while it is still at work."""
        path = self.busy
        assert path is not None
        if self.conn in ready or self.conn.poll():
            try:
                result = self.conn.recv()
            except (EOFError, OSError):
                pass  # the process ended without an answer: its exit code says why
            else:
                self.busy = None
                return result
        if self.process.sentinel in ready or not self.process.is_alive():
            self.process.join(1)
            self.busy = None
            return Lost(path, _death(self.process.exitcode), timed_out=False)
        if timeout is not None and time.monotonic() - self.started >= timeout:
            self.busy = None
            return Lost(path, f"scanning took longer than the limit of {timeout:g} s", True)
        return None

    def stop(self) -> None:
        """End it: an idle worker is asked to leave, a busy one is killed."""
        if self.busy is None and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
        return f"the worker process scanning it was killed by {name}{hint}"
    return f"the worker process scanning it exited with code {code}"


def _serve(
    conn: Connection, task: Task, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> None:
    """A worker's loop: a path in, its result out, until told to stop (None)."""
    # Interrupts belong to the parent, which stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    initializer(*initargs)
    doomed = os.environ.get(TEST_KILL_ENV)
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if path is None:
            return
        if doomed is not None and path.name == doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        conn.send(task(path))
