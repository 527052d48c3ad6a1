"""Run loads in forked children under memory and time limits, and say how each ended.

Hostile files are only ever loaded here, never in the test process. A helper
interpreter imports the ML libraries once; each job runs in a child forked
from it, in its own folder, with `path` bound, under an address-space limit
(`mem_mb` above what the child already maps) and an alarm (`seconds`). The
child reports `loaded`, or `raised` with the exception's type and message;
a child that dies says so with its signal (SIGSEGV/SIGBUS: a crash; SIGALRM:
still running when its time was up).

Codes for a job: `PLAIN` (pickle.loads, the loader the payload was written
for), `GUARDED` (safeload.loads), `FORCED` (safeload.loads with the scan's
judgment set aside, as if the scan had missed everything: only the loader's
own checks stand between the file and its payload).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_SERVER = r"""
import importlib, json, os, resource, signal, sys, time, traceback, warnings
sys.path.insert(0, sys.argv[1])
for module in sys.argv[2].split(","):
    if module:
        importlib.import_module(module)
import safeload

def mapped():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")

def run(job):
    warnings.simplefilter("ignore")
    os.chdir(job["cwd"])
    if job["forced"]:
        guarded = importlib.import_module("safeload.load._guarded")
        guarded.judge = lambda located, policy: []
    scope = {"path": job["path"], "safeload": safeload}
    if job["mem_mb"]:
        limit = mapped() + (job["mem_mb"] << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(job["seconds"])  # default action: the child dies of SIGALRM
    start = time.monotonic()
    try:
        exec(job["code"], scope)
    except BaseException as exc:
        return {"outcome": "raised", "type": type(exc).__name__, "message": str(exc)[:3000],
                "elapsed": time.monotonic() - start}
    finally:
        signal.alarm(0)
    return {"outcome": "loaded", "shown": str(scope.get("shown", ""))[:300],
            "result": repr(scope.get("result"))[:300], "elapsed": time.monotonic() - start}

for line in sys.stdin:
    job = json.loads(line)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = run(job)
        except BaseException:
            result = {"outcome": "crashed", "message": traceback.format_exc()[-2000:]}
        data = json.dumps(result).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print(json.dumps({"outcome": "killed", "signal": os.WTERMSIG(status)}), flush=True)
    else:
        print(b"".join(chunks).decode() or '{"outcome": "no result"}', flush=True)
"""

PLAIN = "import pickle\nwith open(path, 'rb') as f:\n    result = pickle.loads(f.read())\n"
#: The plain load, then what a user does next with the object (show it, drop it).
PLAIN_THEN_USE = PLAIN + "shown = repr(result)\ndel result\nimport gc\ngc.collect()\n"
GUARDED = "result = safeload.loads(open(path, 'rb').read(), require_signature=False)\n"


@dataclass(frozen=True)
class Job:
    """One load: `code` runs with `path` bound, under the limits."""

    path: Path
    code: str = PLAIN
    mem_mb: int = 0
    seconds: int = 10
    forced: bool = False


def run(jobs: list[Job], preload: tuple[str, ...] = ("numpy",)) -> list[dict[str, Any]]:
    """Each job in a fork of one helper interpreter; their results, in order."""
    lines = "".join(
        json.dumps(
            {
                "path": str(j.path),
                "cwd": str(j.path.parent),
                "code": j.code,
                "mem_mb": j.mem_mb,
                "seconds": j.seconds,
                "forced": j.forced,
            }
        )
        + "\n"
        for j in jobs
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", _SERVER, str(ROOT), ",".join(preload)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60 + sum(j.seconds for j in jobs),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(jobs), done.stderr[-4000:]
    return results


def crashed(result: dict[str, Any]) -> bool:
    """The process died of a memory fault."""
    return result.get("outcome") == "killed" and result["signal"] in (
        signal.SIGSEGV,
        signal.SIGBUS,
    )


def out_of_memory(result: dict[str, Any]) -> bool:
    """The load failed to allocate under its limit (numpy and torch word it their way)."""
    if result.get("outcome") != "raised":
        return False
    text = f"{result['type']} {result['message']}".lower()
    return result["type"] == "MemoryError" or "allocate" in text


def timed_out(result: dict[str, Any]) -> bool:
    """Still running when its time was up."""
    return result == {"outcome": "killed", "signal": signal.SIGALRM}


def refused(result: dict[str, Any], rule: str) -> bool:
    """The guarded loader refused it, naming `rule`."""
    return (
        result.get("outcome") == "raised"
        and result["type"] == "UnsafeFileError"
        and rule in result["message"]
    )
