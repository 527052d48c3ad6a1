"""A generated model hub: thousands of small model files, benign and hostile mixed.

Shared by tests/test_dask_scan.py and bench/run_dask.py. Benign files are real
numpy, scikit-learn and joblib objects saved by their libraries; hostile ones
are byte-built pickles (payloads that would only touch a canary file, never run
here); zips hold either; some files have no model extension and are chosen by
their content, as in any directory scan.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
from picklebuild import glob, proto, reduce, sbu, stop, tuple1
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["build_tree", "hostile"]


def hostile(i: int) -> bytes:
    """A byte-built pickle that loaders would run: dangerous, unknown or invalid."""
    kind = i % 4
    if kind == 0:
        return (
            proto(2) + glob("os", "system") + sbu(f"touch canary{i}") + tuple1() + reduce() + stop()
        )
    if kind == 1:
        return proto(4) + glob("builtins", "eval") + sbu(f"{i}+1") + tuple1() + reduce() + stop()
    if kind == 2:  # a global no allowlist knows: unknown
        return (
            proto(2)
            + glob(f"vendor_pkg{i % 7}.layers", "Block")
            + sbu("x")
            + tuple1()
            + reduce()
            + stop()
        )
    # cut short before STOP: invalid
    return pickle.dumps({"i": i, "s": "abc"}, protocol=2)[:-3]


def _zip(member: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def build_tree(root: Path, files: int) -> None:
    """`files` model files in folders of 100, each kind in turn, plus non-model files."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    scaler = StandardScaler().fit(x)
    classifier = LogisticRegression().fit(x, y)
    for i in range(files):
        folder = root / f"part{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = i % 10
        if kind == 0:
            (folder / f"scaler{i}.pkl").write_bytes(pickle.dumps({"scaler": scaler, "i": i}))
        elif kind == 1:
            (folder / f"clf{i}.pickle").write_bytes(pickle.dumps((classifier, i), protocol=4))
        elif kind == 2:
            (folder / f"arr{i}.pkl").write_bytes(pickle.dumps(np.arange(i % 50, dtype=np.float32)))
        elif kind == 3:
            joblib.dump({"weights": np.full(8, i, dtype=np.int64)}, folder / f"w{i}.joblib")
        elif kind == 4:
            (folder / f"benign{i}.zip").write_bytes(_zip("archive/data.pkl", pickle.dumps([i])))
        elif kind == 5:
            (folder / f"evil{i}.zip").write_bytes(_zip("archive/data.pkl", hostile(i)))
        elif kind in (6, 7, 8):
            # No model extension: chosen by sniffing, as in a local directory scan.
            (folder / f"blob{i}").write_bytes(hostile(i))
        else:
            (folder / f"plain{i}.pkl").write_bytes(pickle.dumps({"n": i, "s": "x" * (i % 30)}))
    for j in range(5):
        (root / f"notes{j}.txt").write_text("not a model\n")
