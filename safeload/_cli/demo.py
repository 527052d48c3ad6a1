"""`safeload demo`: one benign model, one hostile pickle, one scan.

The benign file is a real scikit-learn model when scikit-learn is installed
(otherwise a plain Python object). The hostile file looks like a small
weights dict, but one value is built by calling `builtins.exec` on Python
source whose only effect is to create a canary file next to it. The scan
reports it without running it, so the canary never appears.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

from ..policy import Policy
from ..report import ScanReport
from ..scan import scan_file

__all__ = ["Demo", "hostile_pickle", "run"]

CANARY_NAME = "CANARY-payload-ran.txt"


@dataclass(frozen=True)
class Demo:
    """What the demo wrote and what the scan said about it."""

    directory: Path
    benign: Path
    hostile: Path
    canary: Path
    benign_kind: str
    report: ScanReport


def run(directory: Path, policy: Policy | None = None, *, short_names: bool = False) -> Demo:
    """Write the two files into `directory`, scan them, and return the result.

    `short_names` reports the files by name alone (for a temporary directory).
    """
    directory.mkdir(parents=True, exist_ok=True)
    canary = directory / CANARY_NAME
    benign = directory / "model-benign.pkl"
    hostile = directory / "model-hostile.pkl"
    data, kind = _benign_model()
    benign.write_bytes(data)
    hostile.write_bytes(hostile_pickle(canary))
    report = ScanReport(
        files=tuple(
            scan_file(p, policy, location=p.name if short_names else None)
            for p in (benign, hostile)
        )
    )
    return Demo(directory, benign, hostile, canary, kind, report)


def _benign_model() -> tuple[bytes, str]:
    try:
        from sklearn.datasets import load_iris  # type: ignore[import-untyped, unused-ignore]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        state = {"weights": [0.25, -1.5, 3.0], "bias": 0.1, "labels": ("cat", "dog")}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), "a plain Python dict"
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    return pickle.dumps(
        model, protocol=pickle.HIGHEST_PROTOCOL
    ), "a scikit-learn LogisticRegression"


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def hostile_pickle(canary: Path) -> bytes:
    """`{"weights": [0.5, -0.25], "note": exec(<create canary>)}`, opcode by opcode."""
    source = f"open({str(canary)!r}, 'w').write('written by unpickling model-hostile.pkl\\n')"
    return b"".join(
        [
            b"\x80\x04",  # PROTO 4
            b"}",  # EMPTY_DICT
            b"(",  # MARK
            _text("weights"),
            b"]",  # EMPTY_LIST
            b"(",  # MARK
            b"G" + struct.pack(">d", 0.5),  # BINFLOAT
            b"G" + struct.pack(">d", -0.25),
            b"e",  # APPENDS
            _text("note"),
            _text("builtins"),
            _text("exec"),
            b"\x93",  # STACK_GLOBAL -> builtins.exec
            _text(source),
            b"\x85",  # TUPLE1
            b"R",  # REDUCE: exec(source)
            b"u",  # SETITEMS
            b".",  # STOP
        ]
    )
