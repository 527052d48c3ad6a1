"""Load many files in a subprocess, one forked child per file, and report what happened.

Hostile files are only ever loaded here, never in the test process. A helper
interpreter imports safeload and the ML libraries once; each job then runs in
a child forked from it, with its working directory set to the job's own
temporary folder (where a payload would create its `canary`), so one load can
neither see nor disturb another. The test checks the canaries afterwards.

A job is a dict:

- `{"kind": "safeload", "path", "cwd", "trust": [public key paths] | None,
  "force_safe": bool}`: `safeload.load(path, trust=..., require_signature=...)`
  (unsigned without `trust`). `force_safe` simulates a scanner bug: the
  scan's judgment is replaced by "no findings", so only the restricted
  unpickler stands between the file and its payload.
- `{"kind": "plain", "path", "cwd", "code"}`: `exec(code)` with `path` bound,
  the plain loader the payload was written for.

Each result says `outcome` ("loaded", "raised" or "crashed"), and for a
raise the exception's `type`, whether it is a `SafeloadError`/`UnsafeFileError`,
and its message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary"

_SERVER = r"""
import importlib, json, os, sys, warnings
sys.path.insert(0, sys.argv[1])
for module in sys.argv[2].split(","):  # imported once: every job runs in a fork
    if module:
        importlib.import_module(module)
import safeload
from safeload.errors import SafeloadError, UnsafeFileError

def describe(exc):
    return {
        "outcome": "raised",
        "type": type(exc).__name__,
        "safeload_error": isinstance(exc, SafeloadError),
        "unsafe": isinstance(exc, UnsafeFileError),
        "message": str(exc)[:4000],
    }

def run(job):
    warnings.simplefilter("ignore")
    if job["kind"] == "plain":
        try:
            exec(job["code"], {"path": job["path"]})
        except BaseException as exc:
            return describe(exc)
        return {"outcome": "loaded"}
    if job.get("force_safe"):
        import importlib
        guarded = importlib.import_module("safeload.load._guarded")
        guarded.judge = lambda located, policy: []  # a scanner that misses everything
    trust = None
    if job.get("trust"):
        trust = safeload.TrustStore.load(keys=job["trust"])
    try:
        obj = safeload.load(job["path"], trust=trust, require_signature=trust is not None)
    except BaseException as exc:
        return describe(exc)
    return {"outcome": "loaded", "repr": repr(obj)[:300]}

for line in sys.stdin:
    job = json.loads(line)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.chdir(job["cwd"])
            result = run(job)
        except BaseException as exc:
            result = {"outcome": "crashed", "message": repr(exc)}
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
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode() or json.dumps({"outcome": "crashed", "message": "no result"})
    print(text, flush=True)
"""


ML_LIBRARIES = ("joblib", "numpy", "pandas", "torch")


def run_jobs(
    jobs: list[dict[str, Any]], *, preload: tuple[str, ...] = ML_LIBRARIES, timeout: float = 600
) -> list[dict[str, Any]]:
    """Run `jobs` in one helper interpreter (a fork each); their results, in order.

    `preload` is imported before the first fork (a job may still import more):
    forking a process that holds torch costs more than forking one that does not.
    """
    for job in jobs:
        Path(job["cwd"]).mkdir(parents=True, exist_ok=True)
        job["path"] = str(job["path"])
        job["cwd"] = str(job["cwd"])
    done = subprocess.run(
        [sys.executable, "-I", "-c", _SERVER, str(ROOT), ",".join(preload)],
        input="".join(json.dumps(job) + "\n" for job in jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(jobs), done.stderr[-4000:]
    return results


def canary_in(cwd: str | Path) -> bool:
    return (Path(cwd) / CANARY).exists()


def run_on_cases(tmp_path: Path, script: str, cases: dict[str, bytes], timeout: int = 300) -> Any:
    """Run `script` (`python -c`) in a scratch folder of `tmp_path` on named byte cases.

    The script gets the repository root, the cases (JSON of name -> hex) and the
    path to write its JSON result to as argv[1:4]; the result is returned.
    """
    (tmp_path / "cases.json").write_text(json.dumps({k: v.hex() for k, v in cases.items()}))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    subprocess.run(
        [sys.executable, "-c", script, str(ROOT), "../cases.json", "../out.json"],
        cwd=scratch,
        check=True,
        timeout=timeout,
        capture_output=True,
    )
    return json.loads((tmp_path / "out.json").read_text())
