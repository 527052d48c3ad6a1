"""Guarded load speed and memory, side by side with the plain loaders.

    python bench/run_load_speed.py                  # 300-tree forest, 500 MB state dict, 2M dict
    python bench/run_load_speed.py --quick          # small files, seconds (smoke test)
    python bench/run_load_speed.py --only dict      # one case (repeatable: forest, torch, dict)

Every measurement runs in a fresh subprocess on the same page-cached file; each figure is
the best of `--repeat` interleaved runs. For every file:

* the plain loader: `joblib.load(path)`, `torch.load(path, weights_only=True)`, or
  `pickle.loads(data)` of bytes read before the clock starts;
* `hashlib.sha256` of the file (1 MiB reads), the floor of a signed load;
* `safeload.scan_file(path)`, to show what the scan alone costs;
* `safeload.load(path, require_signature=False)` (its warning silenced): read, scan, load;
* `safeload.load(path, trust=TrustStore.load(keys=[pub]))` with an Ed25519 signature made by
  `safeload.sign`: the same, with the digest of the held bytes computed on a second thread.

Targets: unsigned guarded load <= 1.2x the plain loader (joblib, torch) or 1.6x
`pickle.loads` (the dict: the scan is included); signed <= 1.3x max(plain load, sha256);
the guarded load's memory (peak RSS during the call minus RSS before it) <= the plain
loader's + the file's size. See bench/README.md for how to read the tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _measure import ChildResult, fill_sizes, run_child

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
TIMES = "\N{MULTIPLICATION SIGN}"
OPS = ("plain", "sha256", "scan", "guarded", "signed")
LIMITS = {"forest": 1.2, "torch": 1.2, "dict": 1.6}
SIGNED_LIMIT = 1.3
PLAIN = {
    "forest": "`joblib.load(path)`",
    "torch": "`torch.load(path, weights_only=True)`",
    "dict": "`pickle.loads(data)`",
}
LABELS = {
    "sha256": "`hashlib.sha256` of the file",
    "scan": "`safeload.scan_file(path)`",
    "guarded": "`safeload.load(path, require_signature=False)`",
    "signed": "`safeload.load(path, trust=...)` (Ed25519)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small files, for smoke tests")
    p.add_argument(
        "--only",
        choices=("forest", "torch", "dict"),
        action="append",
        help="run only this case; repeatable (default: all three)",
    )
    p.add_argument("--forest-trees", type=int, help="trees (default 300; 3 --quick)")
    p.add_argument("--forest-samples", type=int, help="training rows (default 30,000; 500 --quick)")
    p.add_argument("--torch-mb", type=int, help="state dict size in MiB (default 500; 8 --quick)")
    p.add_argument("--entries", type=int, help="dict entries (default 2,000,000; 20,000 --quick)")
    p.add_argument(
        "--protocol",
        type=int,
        action="append",
        choices=range(6),
        help="dict pickle protocol; repeat for several (default: 4 and 2)",
    )
    p.add_argument("--repeat", type=int, help="best of K interleaved runs (default 3; 1 --quick)")
    p.add_argument("--workdir", type=Path, help="where the files go (default bench/.work)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    defaults = {
        "forest_trees": (300, 3),
        "forest_samples": (30_000, 500),
        "torch_mb": (500, 8),
        "entries": (2_000_000, 20_000),
        "repeat": (3, 1),
    }
    fill_sizes(args, defaults)
    args.protocol = args.protocol or [4, 2]
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


# --- the files --------------------------------------------------------------------------


def make_forest(path: Path, samples: int, trees: int) -> None:
    """A RandomForestClassifier on random data, saved by `joblib.dump` (no compression)."""
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.random((samples, 8), dtype=np.float32)
    y = rng.integers(0, 2, samples)
    model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2).fit(x, y)
    joblib.dump(model, path)


def make_state_dict(path: Path, megabytes: int) -> None:
    """A state dict of 1024 x 1024 float32 tensors (4 MiB each), saved by `torch.save`."""
    import torch

    torch.manual_seed(0)
    layers = {}
    for i in range(_tensors(megabytes)):
        layers[f"layer{i}.weight"] = torch.randn(1024, 1024)
    torch.save(layers, path)


def _tensors(megabytes: int) -> int:
    return max(1, megabytes * MIB // (4 * MIB))


def make_dict(path: Path, entries: int, protocol: int) -> None:
    """`{f"key{i}": i for i in range(entries)}`, as `bench/_measure.py make` writes it."""
    import pickle

    path.write_bytes(pickle.dumps({f"key{i}": i for i in range(entries)}, protocol=protocol))


def _make(path: Path, kind: str, *params: int) -> None:
    """Write `path` in a child process (the parent stays small), unless it exists."""
    if path.is_file():  # deterministic content: reuse an earlier run's file
        return
    tmp = path.with_name(path.name + ".tmp")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import run_load_speed as r; "
        f"r.make_{kind}(__import__('pathlib').Path(sys.argv[2]), *map(int, sys.argv[3:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(HERE), str(tmp), *map(str, params)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"cannot write {path.name}: {done.stderr.strip()[-500:]}")
    tmp.replace(path)


# --- the child side ---------------------------------------------------------------------


def probe(op: str, kind: str, path: Path, pub: Path | None) -> dict[str, Any]:
    """Time one operation on `path` in this (fresh) process; see the module docstring."""
    import hashlib
    import pickle
    import warnings

    from _measure import _reset_peak, _status_kib

    setup = time.perf_counter()
    # The format's library is imported by both the plain and the guarded child, so that
    # neither pays for importing it inside the timed call.
    if kind == "forest":
        import joblib
        import sklearn.ensemble  # noqa: F401
    elif kind == "torch":
        import torch
    trust: Any = None
    if op in ("scan", "guarded", "signed"):
        import safeload
        from safeload.scan import default_policy

        default_policy()  # rules and allow packs: loaded once per process
        if op == "signed":
            assert pub is not None
            trust = safeload.TrustStore.load(keys=[pub])
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
    _warm(path)
    setup = time.perf_counter() - setup
    result: Any = None
    before = _status_kib("VmRSS")
    _reset_peak()
    # `pickle.loads` is given bytes read before the clock starts, but inside the memory
    # window: every loader's peak then counts the file's bytes it holds.
    data = path.read_bytes() if kind == "dict" and op == "plain" else b""
    start, cpu = time.perf_counter(), time.process_time()
    if op == "plain":
        if kind == "forest":
            result = joblib.load(path)
        elif kind == "torch":
            result = torch.load(path, weights_only=True)
        else:
            result = pickle.loads(data)
    elif op == "sha256":
        hasher = hashlib.sha256()
        with open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(MIB):
                hasher.update(chunk)
        result = hasher.digest()
    elif op == "scan":
        result = safeload.scan_file(path)
    elif op == "guarded":
        result = safeload.load(path, require_signature=False)
    elif op == "signed":
        result = safeload.load(path, trust=trust)
    else:
        raise SystemExit(f"unknown operation {op!r}")
    # The result stays alive: freeing a big object is not part of loading it.
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak, after = _status_kib("VmHWM"), _status_kib("VmRSS")
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "setup_seconds": setup,
        "rss_before": before * 1024,
        "rss_peak": peak * 1024,
        "rss_after": after * 1024,
        "memory": (peak - before) * 1024,
        "type": type(result).__name__,
    }
    if op == "scan":
        out.update(verdict=result.verdict.value, format=result.format, opcodes=result.opcodes)
    return out


def _warm(path: Path) -> None:
    """Read the file once, untimed, into one reused buffer (no RSS left behind).

    A file just written is in the page cache, but the kernel may drop cached pages at
    any time (the development VM runs DAMON with a `pageout` scheme): every measured
    read then starts from the page cache, as the ratios assume.
    """
    buffer = bytearray(MIB)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buffer):
            pass


def _tail(child: ChildResult) -> str:
    lines = (child.stderr or child.stdout).strip().splitlines()
    return lines[-1][:300] if lines else f"exit {child.returncode}"


def _run_probe(op: str, kind: str, path: Path, pub: Path) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", op, kind, str(path), str(pub)]
    child = run_child(argv, timeout=3600, ok_codes=(0,))
    if child.status != "ok":
        return {"status": "error", "detail": _tail(child)}
    return {"status": "ok", **json.loads(child.stdout.strip().splitlines()[-1])}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful run, with the least CPU time and the most memory of all."""
    good = [r for r in runs if r["status"] == "ok"]
    if not good:
        return runs[-1]
    best = dict(min(good, key=lambda r: r["seconds"]))
    best["rss_peak"] = max(r["rss_peak"] for r in good)
    best["memory"] = max(r["memory"] for r in good)
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in good)
    best["all_seconds"] = [round(r["seconds"], 4) for r in good]
    return best


# --- measuring ----------------------------------------------------------------------------


def measure(kind: str, path: Path, pub: Path, repeat: int) -> dict[str, Any]:
    """Every operation on one file, `repeat` times interleaved, and the ratios."""
    runs: dict[str, list[dict[str, Any]]] = {op: [] for op in OPS}
    for _ in range(repeat):  # interleaved, so drift hits every operation alike
        for op in OPS:
            runs[op].append(_run_probe(op, kind, path, pub))
    rows = {op: _best(r) for op, r in runs.items()}
    size = path.stat().st_size
    result: dict[str, Any] = {"kind": kind, "file": path.name, "file_bytes": size, "ops": rows}
    if any(row["status"] != "ok" for row in rows.values()):
        result["ratios"] = {}
        return result
    plain, sha, guarded, signed = (rows[op] for op in ("plain", "sha256", "guarded", "signed"))
    floor = max(plain["seconds"], sha["seconds"])
    cpu_floor = max(plain["cpu_seconds"], sha["cpu_seconds"])
    result["ratios"] = {
        "guarded_over_plain": guarded["seconds"] / plain["seconds"],
        "guarded_cpu_over_plain": guarded["cpu_seconds"] / plain["cpu_seconds"],
        "scan_over_plain": rows["scan"]["seconds"] / plain["seconds"],
        "signed_over_floor": signed["seconds"] / floor,
        "signed_cpu_over_floor": signed["cpu_seconds"] / cpu_floor,
        "signed_over_guarded": signed["seconds"] / guarded["seconds"],
        "sha256_over_plain": sha["seconds"] / plain["seconds"],
        # Memory of the call itself: peak RSS during it minus RSS before it (imports and
        # policy loading excluded; the bytes `pickle.loads` is given included).
        "guarded_extra_peak_over_file": (guarded["memory"] - plain["memory"]) / size,
        "signed_extra_peak_over_file": (signed["memory"] - plain["memory"]) / size,
        # The same from whole-process peaks (a process that imported safeload is bigger).
        "guarded_extra_process_peak_over_file": (guarded["rss_peak"] - plain["rss_peak"]) / size,
    }
    result["limit"] = LIMITS[kind]
    result["signed_limit"] = SIGNED_LIMIT
    return result


def _x(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{TIMES}"


def _row(label: str, row: dict[str, Any], ratio: str) -> str:
    if row["status"] != "ok":
        return f"| {label} | {row['status']}: {row.get('detail', '')} | | | | |"
    return (
        f"| {label} | {row['seconds']:.3f} | {ratio} | {row['cpu_seconds']:.3f} | "
        f"{row['rss_peak'] / MIB:.0f} MiB | {row['memory'] / MIB:.0f} MiB |"
    )


def _title(res: dict[str, Any]) -> str:
    kind = res["kind"]
    size = f"{res['file_bytes'] / MIB:.1f} MiB"
    if kind == "forest":
        return f"#### `RandomForestClassifier`, {res['trees']} trees, `joblib.dump`: {size}"
    if kind == "torch":
        return f"#### PyTorch zip state dict, {res['tensors']} float32 tensors: {size}"
    ops = res["ops"]["scan"].get("opcodes")
    what = f", {ops:,} opcodes" if ops else ""
    return f"#### {res['entries']:,}-entry dict, protocol {res['protocol']}: {size}{what}"


def to_markdown(report: dict[str, Any]) -> str:
    """The human-readable tables."""
    meta = report["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}, Python {meta['python']}, "
        f"safeload {meta['safeload']}; best of {meta['repeat']}; load average "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after.",
        "",
        "| file | guarded ÷ plain (target) "
        f"| signed ÷ max(plain, sha256) (target {SIGNED_LIMIT}{TIMES}) "
        "| CPU: guarded ÷ plain | extra memory ÷ file size (target <= 1) |",
        "|---|---:|---:|---:|---:|",
    ]
    for res in report["results"]:
        r = res["ratios"]
        if not r:
            lines.append(f"| {res['file']} | failed | | | |")
            continue
        lines.append(
            f"| {res['file']} | {_x(r['guarded_over_plain'])} ({res['limit']}{TIMES}) | "
            f"{_x(r['signed_over_floor'])} | {_x(r['guarded_cpu_over_plain'])} | "
            f"{r['guarded_extra_peak_over_file']:.2f} (signed "
            f"{r['signed_extra_peak_over_file']:.2f}) |"
        )
    lines.append("")
    for res in report["results"]:
        ops, r = res["ops"], res["ratios"]
        lines += [
            _title(res),
            "",
            "| operation | seconds | ratio | CPU s | process peak RSS | memory of the call |",
            "|---|---:|---:|---:|---:|---:|",
            _row(PLAIN[res["kind"]], ops["plain"], f"1.00{TIMES}"),
            _row(LABELS["sha256"], ops["sha256"], _x(r.get("sha256_over_plain"))),
            _row(LABELS["scan"], ops["scan"], _x(r.get("scan_over_plain"))),
            _row(LABELS["guarded"], ops["guarded"], _x(r.get("guarded_over_plain"))),
            _row(LABELS["signed"], ops["signed"], _x(r.get("signed_over_floor")) + " of max"),
            "",
        ]
    return "\n".join(lines)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=HERE
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "safeload": git.stdout.strip() if git.returncode == 0 else "unknown",
        "repeat": args.repeat,
        "load_before": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print Markdown; optionally write JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        op, kind, file, key_file = argv[1:5]
        print(json.dumps(probe(op, kind, Path(file), Path(key_file))))
        return 0
    args = parse_args(argv)
    work = args.workdir or HERE / ".work"
    work.mkdir(parents=True, exist_ok=True)
    key = work / "load-bench.key"
    if not key.is_file() or not work.joinpath("load-bench.key.pub").is_file():
        from safeload.sign import generate_key

        generate_key("ed25519", key, overwrite=True)
    pub = work / "load-bench.key.pub"
    cases: list[tuple[str, Path, dict[str, Any]]] = []
    only = args.only or ["forest", "torch", "dict"]
    if "forest" in only:
        path = work / f"forest{args.forest_trees}x{args.forest_samples}.joblib"
        _make(path, "forest", args.forest_samples, args.forest_trees)
        cases.append(("forest", path, {"trees": args.forest_trees}))
    if "torch" in only:
        path = work / f"state_dict{args.torch_mb}mib.pt"
        _make(path, "state_dict", args.torch_mb)
        cases.append(("torch", path, {"tensors": _tensors(args.torch_mb)}))
    if "dict" in only:
        for protocol in args.protocol:
            path = work / f"dict{args.entries}_p{protocol}.pkl"
            _make(path, "dict", args.entries, protocol)
            cases.append(("dict", path, {"entries": args.entries, "protocol": protocol}))
    from safeload.sign import load_signer, sign

    signer = load_signer(key)
    report: dict[str, Any] = {"meta": _meta(args), "results": []}
    for kind, path, extra in cases:
        sign(path, signer)  # the key may be new; signing is cheap next to the loads
        print(f"measuring {path.name} ...", file=sys.stderr, flush=True)
        result = measure(kind, path, pub, args.repeat)
        report["results"].append({**result, **extra})
        path.with_name(path.name + ".sig").unlink()
    report["meta"]["load_after"] = os.getloadavg()[0]
    print(to_markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
