"""Peer scanners, each installed in its own venv under `bench/.venvs/` on first use.

A venv counts as ready only once its `.installed` stamp names exactly the pinned
requirements, so an interrupted or outdated install is redone.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Peer:
    """A peer scanner: how to install it and how to run it on one file."""

    name: str
    requirements: tuple[str, ...]
    command: Callable[[Path, Path], list[str]]
    """`command(venv_bin, file)` -> argv."""
    verdict: Callable[[int | None, str], str]
    """`verdict(exit_code, stdout + stderr)` -> a short description of the peer's answer."""


def _picklescan_verdict(code: int | None, output: str) -> str:
    return {0: "clean (exit 0)", 1: "malicious (exit 1)", 2: "scan error (exit 2)"}.get(
        code if code is not None else -1, f"exit {code}"
    )


def _fickling_verdict(code: int | None, output: str) -> str:
    text = {0: "likely safe (exit 0)", 1: "unsafe (exit 1)", 2: "error (exit 2)"}.get(
        code if code is not None else -1, f"exit {code}"
    )
    if "resource limits exceeded" in output.lower():
        text += ", gave up: resource limits exceeded"
    return text


def _modelscan_verdict(code: int | None, output: str) -> str:
    # modelscan: 0 no issues, 1 issues found, 2 scan error, 3 nothing it supports, 4 usage
    return {
        0: "clean (exit 0)",
        1: "issues (exit 1)",
        2: "error (exit 2)",
        3: "not supported (exit 3)",
    }.get(code if code is not None else -1, f"exit {code}")


def _modelaudit_verdict(code: int | None, output: str) -> str:
    return {0: "clean (exit 0)", 1: "issues (exit 1)", 2: "error (exit 2)"}.get(
        code if code is not None else -1, f"exit {code}"
    )


PEERS: dict[str, Peer] = {
    "picklescan": Peer(
        "picklescan",
        ("picklescan==1.0.5",),
        lambda bindir, path: [str(bindir / "picklescan"), "--path", str(path)],
        _picklescan_verdict,
    ),
    "fickling": Peer(
        "fickling",
        # fickling 0.1.12's wheel imports typing_extensions without declaring it.
        ("fickling==0.1.12", "typing_extensions"),
        lambda bindir, path: [str(bindir / "fickling"), "--check-safety", str(path)],
        _fickling_verdict,
    ),
}

MORE_PEERS: dict[str, Peer] = {
    # Only the detection comparison (run_detection.py) runs these.
    "modelscan": Peer(
        "modelscan",
        ("modelscan==0.8.8",),
        lambda bindir, path: [str(bindir / "modelscan"), "-p", str(path)],
        _modelscan_verdict,
    ),
    "modelaudit": Peer(
        "modelaudit",
        ("modelaudit==0.2.54",),
        lambda bindir, path: [str(bindir / "modelaudit"), "scan", str(path)],
        _modelaudit_verdict,
    ),
}


def ensure(peer: Peer, root: Path, *, timeout: float = 900.0) -> tuple[Path | None, str]:
    """Install `peer` into `root/<name>` unless already there.

    Returns `(bin_dir, "")` when ready, or `(None, reason)` when it could not be installed;
    the caller records the reason instead of failing.
    """
    venv = root / peer.name
    bindir = venv / "bin"
    stamp = venv / ".installed"
    wanted = "\n".join(peer.requirements)
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return bindir, ""
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(bindir / "python"), "-m", "pip", "install", "--quiet", *peer.requirements],
    ]
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"install failed: {exc}"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return None, f"install failed: {lines[-1] if lines else f'exit {done.returncode}'}"
    stamp.write_text(wanted, encoding="utf-8")
    return bindir, ""
