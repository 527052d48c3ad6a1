"""`safeload demo`: the three parts of safeload on a real scikit-learn model.

1. scan: the model (saved by `joblib.dump`) and two hostile pickles are
   scanned; the model is safe, the hostile files are dangerous. One calls
   `builtins.exec` on source that creates a canary file, the other calls
   `numpy.lib.format.open_memmap`, which creates the same canary file.
2. sign and verify: a new Ed25519 key signs the model; the signature
   verifies; a copy with one byte changed is refused.
3. guarded load: `safeload.load` loads the signed model (which then predicts),
   and refuses the tampered copy and both hostile files.

Nothing a hostile file names is ever run, so the canary never appears; the
demo checks that, and every other step, and says which one did not behave.
Without scikit-learn the model is a plain dict saved by pickle.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..policy import Policy
from ..report import ScanReport, Verdict
from ..scan import scan_file

__all__ = ["CANARY_NAME", "Demo", "Step", "hostile_memmap", "hostile_pickle", "run"]

CANARY_NAME = "CANARY-payload-ran.txt"


@dataclass(frozen=True)
class Step:
    """One thing the demo did, what happened, and whether that is what it shows."""

    part: str
    what: str
    outcome: str
    behaved: bool


@dataclass
class Demo:
    """What the demo wrote, what the scan said, and every step."""

    directory: Path
    benign: Path
    hostile: tuple[Path, ...]
    canary: Path
    benign_kind: str
    report: ScanReport
    steps: list[Step] = field(default_factory=list)

    @property
    def behaved(self) -> bool:
        """True when every step did what the demo shows (and the canary never appeared)."""
        return all(s.behaved for s in self.steps) and not self.canary.exists()


def run(directory: Path, policy: Policy | None = None, *, short_names: bool = False) -> Demo:
    """Write the files into `directory` and run the three parts.

    `short_names` reports the files by name alone (for a temporary directory).
    """
    policy = policy or Policy.default()
    directory.mkdir(parents=True, exist_ok=True)
    canary = directory / CANARY_NAME
    benign = directory / "model.joblib"
    hostiles = (directory / "model-hostile.pkl", directory / "weights-hostile.pkl")
    kind, sample = _save_benign_model(benign)
    hostiles[0].write_bytes(hostile_pickle(canary))
    hostiles[1].write_bytes(hostile_memmap(canary))
    files = (benign, *hostiles)
    report = ScanReport(
        files=tuple(scan_file(p, policy, location=p.name if short_names else None) for p in files)
    )
    demo = Demo(directory, benign, hostiles, canary, kind, report)
    _scan_steps(demo)
    trust, tampered = _sign_steps(demo)
    _load_steps(demo, policy, trust, tampered, sample)
    return demo


def _save_benign_model(path: Path) -> tuple[str, Any]:
    """A real fitted model (and one input row to predict), saved as joblib.dump saves it."""
    try:
        import joblib  # type: ignore[import-untyped, unused-ignore]
        from sklearn.datasets import load_iris  # type: ignore[import-untyped, unused-ignore]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        state = {"weights": [0.25, -1.5, 3.0], "bias": 0.1, "labels": ("cat", "dog")}
        path.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        return "a plain Python dict (scikit-learn is not installed)", None
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    joblib.dump(model, path)
    return "a scikit-learn LogisticRegression fitted on iris", features[:1]


def _scan_steps(demo: Demo) -> None:
    by_path = {Path(f.path).name: f for f in demo.report.files}
    benign = by_path[demo.benign.name]
    demo.steps.append(
        Step(
            "scan", f"scan {demo.benign.name}", benign.verdict.value, benign.verdict is Verdict.SAFE
        )
    )
    for hostile in demo.hostile:
        file = by_path[hostile.name]
        rules = ", ".join(sorted({f.rule for f in file.findings}))
        demo.steps.append(
            Step(
                "scan",
                f"scan {hostile.name}",
                f"{file.verdict.value} ({rules})",
                file.verdict is Verdict.DANGEROUS,
            )
        )


def _sign_steps(demo: Demo) -> tuple[Any, Path]:
    from ..errors import SignatureError
    from ..sign import TrustStore, sign, verify
    from ..sign._keys import generate_key, load_signer

    keys = demo.directory / "keys"
    keys.mkdir(exist_ok=True)
    key = keys / "demo.key"
    for stale in (key, keys / "demo.key.pub"):
        stale.unlink(missing_ok=True)
    generate_key("ed25519", key)
    signature = sign(demo.benign, [load_signer(key)])
    demo.steps.append(Step("sign", f"sign {demo.benign.name}", f"wrote {signature.name}", True))
    trust = TrustStore.load(keys=[keys / "demo.key.pub"])
    try:
        verify(demo.benign, trust)
        demo.steps.append(Step("sign", f"verify {demo.benign.name}", "signature valid", True))
    except SignatureError as exc:
        demo.steps.append(Step("sign", f"verify {demo.benign.name}", f"refused: {exc}", False))
    tampered_dir = demo.directory / "tampered"
    tampered_dir.mkdir(exist_ok=True)
    tampered = tampered_dir / demo.benign.name
    shutil.copyfile(demo.benign, tampered)
    shutil.copyfile(signature, tampered_dir / signature.name)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    tampered.write_bytes(bytes(data))
    what = f"verify tampered/{tampered.name} (one bit changed)"
    try:
        verify(tampered, trust)
        demo.steps.append(Step("sign", what, "signature valid (it should not be)", False))
    except SignatureError as exc:
        demo.steps.append(Step("sign", what, f"refused: {type(exc).__name__}", True))
    return trust, tampered


def _load_steps(demo: Demo, policy: Policy, trust: Any, tampered: Path, sample: Any) -> None:
    from ..errors import SafeloadError, UnsafeFileError
    from ..load import load

    try:
        model = load(demo.benign, trust=trust, policy=policy)
        outcome = f"loaded {type(model).__name__}"
        if sample is not None:
            outcome += f"; predict(first iris flower) = {model.predict(sample)[0]}"
        demo.steps.append(Step("load", f"safeload.load({demo.benign.name})", outcome, True))
    except Exception as exc:  # shown, not raised: the demo reports what did not behave
        demo.steps.append(
            Step("load", f"safeload.load({demo.benign.name})", f"refused: {exc}", False)
        )
    try:
        load(tampered, trust=trust, policy=policy)
        demo.steps.append(Step("load", "safeload.load(tampered copy)", "loaded", False))
    except SafeloadError as exc:
        demo.steps.append(
            Step("load", "safeload.load(tampered copy)", f"refused: {type(exc).__name__}", True)
        )
    except Exception as exc:
        demo.steps.append(
            Step("load", "safeload.load(tampered copy)", f"failed: {type(exc).__name__}", False)
        )
    for hostile in demo.hostile:
        what = f"safeload.load({hostile.name}, require_signature=False)"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # UnsignedLoadWarning: intended here
                load(hostile, policy=policy, require_signature=False)
            demo.steps.append(Step("load", what, "loaded", False))
        except UnsafeFileError as exc:
            names = sorted({f.global_name or f.rule for f in exc.findings if f.verdict})
            demo.steps.append(Step("load", what, f"refused: {', '.join(names)}", True))
        except SafeloadError as exc:
            demo.steps.append(Step("load", what, f"refused: {type(exc).__name__}", True))
        except Exception as exc:
            demo.steps.append(Step("load", what, f"failed: {type(exc).__name__}", False))
    ran = demo.canary.exists()
    demo.steps.append(
        Step(
            "load",
            f"canary {demo.canary.name}",
            "CREATED: a payload ran" if ran else "never created: no payload ran",
            not ran,
        )
    )


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


def hostile_memmap(canary: Path) -> bytes:
    """`numpy.lib.format.open_memmap(<canary>, 'w+', 'u1', (1,))`: writes a file, runs no code
    of its own; a name no allow pack lists and deny rule SL120 names."""
    return b"".join(
        [
            b"\x80\x04",  # PROTO 4
            _text("numpy.lib.format"),
            _text("open_memmap"),
            b"\x93",  # STACK_GLOBAL
            b"(",  # MARK
            _text(str(canary)),
            _text("w+"),
            _text("u1"),
            b"K\x01",  # BININT1 1
            b"\x85",  # TUPLE1: the shape
            b"t",  # TUPLE: the arguments
            b"R",  # REDUCE
            b".",  # STOP
        ]
    )
