"""What each scanner says about hostile and genuine model files: safeload, picklescan,
fickling, modelscan and modelaudit, each run as its own CLI on every file.

    python bench/run_detection.py            # table on stdout, JSON with --json FILE
    python bench/run_detection.py --only safeload,picklescan

Hostile files are built byte by byte; each one's payload would only create a
file (a canary) or run `true`, and nothing here ever loads them. Genuine files
are saved by the real libraries (scikit-learn with joblib, PyTorch, pandas,
numpy, plain pickle). A scanner *flags* a file when its exit code says it found
a problem (an error exit is counted apart: it neither passes nor flags). The
peers are installed in their own venvs under bench/.venvs/ (git-ignored) on
first use. Counts, not timings, are the result: see bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _peers import MORE_PEERS, PEERS, Peer, ensure

HERE = Path(__file__).resolve().parent


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def call4(module: str, name: str, *args: bytes) -> bytes:
    """`module.name(*args)` at protocol 4 (STACK_GLOBAL, MARK ... TUPLE, REDUCE)."""
    return b"\x80\x04" + _s(module) + _s(name) + b"\x93(" + b"".join(args) + b"tR."


def call2(module: str, name: str, *args: bytes) -> bytes:
    """`module.name(*args)` at protocol 2 (GLOBAL)."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR."


def torch_zip(data_pkl: bytes) -> bytes:
    """A PyTorch zip archive holding `data_pkl` as archive/data.pkl."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


CANARY = "canary"
INNER = call2("os", "system", _u("true"))

HOSTILE: dict[str, tuple[str, bytes]] = {
    "os-system-p0.pkl": ("os.system, protocol 0", b"cos\nsystem\n(Vtrue\ntR."),
    "os-system-p2.pkl": ("os.system, protocol 2", call2("os", "system", _u("true"))),
    "posix-system-p4.pkl": ("posix.system, protocol 4", call4("posix", "system", _s("true"))),
    "exec-p4.pkl": ("builtins.exec of source", call4("builtins", "exec", _s("open('canary','w')"))),
    "popen-list.pkl": (
        "subprocess.Popen(['true'])",
        call4("subprocess", "Popen", b"](" + _s("true") + b"e"),
    ),
    "dotted-relay.pkl": (
        "os.system reached as pathlib.os.system",
        call4("pathlib", "os.system", _s("true")),
    ),
    "runpy.pkl": ("runpy.run_path", call4("runpy", "run_path", _s(CANARY))),
    "nested-pickle.pkl": (
        "pickle.loads of an inner os.system pickle",
        call4("_pickle", "loads", b"C" + bytes([len(INNER)]) + INNER),
    ),
    "pandas-to-pickle.pkl": (
        "pandas.to_pickle writes a file",
        call4("pandas", "to_pickle", b"K\x00", _s(CANARY)),
    ),
    "numpy-open-memmap.pkl": (
        "numpy.lib.format.open_memmap creates a file",
        call4("numpy.lib.format", "open_memmap", _s(CANARY), _s("w+"), _s("u1"), b"K\x01\x85"),
    ),
    "numpy-memmap.pkl": (
        "numpy.memmap creates a file",
        call4("numpy", "memmap", _s(CANARY), _s("u1"), _s("w+"), b"K\x00", b"K\x01\x85"),
    ),
    "torch-save.pkl": (
        "torch.serialization.save writes a file",
        call4("torch.serialization", "save", b"}", _s(CANARY)),
    ),
    "scipy-savemat.pkl": (
        "scipy.io.savemat writes a file",
        call4("scipy.io", "savemat", _s(CANARY), b"}"),
    ),
    "torch-zip-system.pt": (
        "os.system inside a PyTorch zip",
        torch_zip(call2("os", "system", _u("true"))),
    ),
}


def genuine(folder: Path) -> dict[str, str]:
    """Save real models; name -> what it is (files the libraries cannot make are left out)."""
    made: dict[str, str] = {}
    (folder / "dict.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5], "name": "net"}))
    made["dict.pkl"] = "a dict of floats and strings, pickle"
    # A model class of your own: safeload cannot vouch for it (unknown) until you allow it.
    module = types.ModuleType("mylab_models")
    exec(
        "class TinyNet:\n    def __init__(self):\n        self.weights = [0.5, 1.5]\n",
        module.__dict__,
    )
    sys.modules["mylab_models"] = module
    (folder / "custom-class.pkl").write_bytes(pickle.dumps(module.TinyNet()))
    made["custom-class.pkl"] = "an instance of your own class (mylab_models.TinyNet), pickle"
    try:
        import joblib  # type: ignore[import-untyped, unused-ignore]
        from sklearn.datasets import load_iris  # type: ignore[import-untyped, unused-ignore]
        from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped, unused-ignore]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]

        x, y = load_iris(return_X_y=True)
        joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "logreg.joblib")
        made["logreg.joblib"] = "scikit-learn LogisticRegression, joblib.dump"
        forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
        (folder / "forest.pkl").write_bytes(pickle.dumps(forest))
        made["forest.pkl"] = "scikit-learn RandomForestClassifier, pickle"
    except ImportError:
        pass
    try:
        import torch

        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        torch.save(net.state_dict(), folder / "state_dict.pt")
        made["state_dict.pt"] = "PyTorch state dict, torch.save"
    except ImportError:
        pass
    try:
        import numpy as np
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]

        frame = pd.DataFrame({"a": np.arange(5), "b": list("abcde")})
        frame.to_pickle(folder / "frame.pkl")
        made["frame.pkl"] = "pandas DataFrame, to_pickle"
        np.save(folder / "objects.npy", np.array([{"k": 1}, "x"], dtype=object), allow_pickle=True)
        made["objects.npy"] = "numpy object array, np.save"
    except ImportError:
        pass
    return made


def _safeload_verdict(code: int | None, output: str) -> str:
    return {0: "safe (exit 0)", 1: "flagged (exit 1)", 2: "error (exit 2)"}.get(
        code if code is not None else -1, f"exit {code}"
    )


SAFELOAD = Peer(
    "safeload", (), lambda _b, p: ["safeload", "scan", "--no-config", str(p)], _safeload_verdict
)
SAFELOAD_DANGEROUS = Peer(
    "safeload --fail-on dangerous",
    (),
    lambda _b, p: ["safeload", "scan", "--no-config", "--fail-on", "dangerous", str(p)],
    _safeload_verdict,
)
OURS = (SAFELOAD, SAFELOAD_DANGEROUS)

FLAGGED = 1
CLEAN = 0


def run_one(peer: Peer, bindir: Path | None, path: Path, timeout: float) -> dict[str, Any]:
    argv = peer.command(bindir or Path(), path)
    if peer in OURS:
        argv[0] = str(Path(sys.executable).parent / "safeload")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=path.parent, check=False
        )
        code: int | None = done.returncode
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        code, output = None, "timed out"
    seconds = time.perf_counter() - start
    outcome = "flagged" if code == FLAGGED else "clean" if code == CLEAN else "error"
    return {
        "code": code,
        "outcome": outcome,
        "verdict": peer.verdict(code, output),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scanners (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    scanners: dict[str, Peer] = {p.name: p for p in OURS} | PEERS | MORE_PEERS
    if args.only:
        scanners = {n: scanners[n] for n in args.only.split(",")}
    results: dict[str, Any] = {"hostile": {}, "genuine": {}, "scanners": {}}
    with tempfile.TemporaryDirectory(prefix="safeload-detection-") as tmp:
        folder = Path(tmp)
        for name, (_what, data) in HOSTILE.items():
            (folder / name).write_bytes(data)
        made = genuine(folder)
        bindirs: dict[str, Path | None] = {}
        for name, peer in scanners.items():
            if peer in OURS:
                bindirs[name] = None
                continue
            bindir, problem = ensure(peer, HERE / ".venvs")
            if bindir is None:
                print(f"{name}: not run ({problem})", file=sys.stderr)
                continue
            bindirs[name] = bindir
        for name in bindirs:
            results["scanners"][name] = list(scanners[name].requirements) or ["this checkout"]
        for kind, files in (
            ("hostile", {n: w for n, (w, _d) in HOSTILE.items()}),
            ("genuine", made),
        ):
            for file, what in files.items():
                row: dict[str, Any] = {"what": what}
                results[kind][file] = row
                for name, bindir in bindirs.items():
                    row[name] = run_one(scanners[name], bindir, folder / file, args.timeout)
    names = list(results["scanners"])
    print(render(results, names))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def render(results: dict[str, Any], names: list[str]) -> str:
    def count(kind: str, name: str, outcome: str) -> int:
        return sum(row[name]["outcome"] == outcome for row in results[kind].values())

    n_hostile, n_genuine = len(results["hostile"]), len(results["genuine"])
    lines = [
        "| scanner | hostile flagged | hostile passed | genuine passed | genuine flagged | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        errors = count("hostile", name, "error") + count("genuine", name, "error")
        lines.append(
            f"| {name} | {count('hostile', name, 'flagged')}/{n_hostile} "
            f"| {count('hostile', name, 'clean')} | {count('genuine', name, 'clean')}/{n_genuine} "
            f"| {count('genuine', name, 'flagged')} | {errors} |"
        )
    lines += ["", "| file | what | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    short: dict[str, Callable[[dict[str, Any]], str]] = {
        "flagged": lambda r: "flagged",
        "clean": lambda r: "passed",
        "error": lambda r: f"error ({r['code']})",
    }
    for kind in ("hostile", "genuine"):
        for file, row in results[kind].items():
            cells = [short[row[n]["outcome"]](row[n]) for n in names]
            lines.append(f"| `{file}` | {row['what']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
