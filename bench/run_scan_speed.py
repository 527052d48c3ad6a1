"""Scan speed and memory, side by side with pickle.loads, hashlib and peer scanners.

    python bench/run_scan_speed.py                      # 2,000,000 entries, protocols 4 and 2
    python bench/run_scan_speed.py --quick --no-peers   # 20,000 entries, seconds

Every measurement runs in a fresh subprocess on the same file. See bench/README.md for what
is measured and how to read the table; machines are noisy, so read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import PROBES, ChildResult, run_child
from _peers import PEERS, ensure

HERE = Path(__file__).resolve().parent
MEASURE = HERE / "_measure.py"
MIB = 1024 * 1024
TIMES = "\N{MULTIPLICATION SIGN}"

LABELS = {
    "loads": "`pickle.loads(data)`",
    "sha256": "`hashlib.sha256(data)`",
    "scan_bytes": "`safeload.scan_bytes(data)`",
    "scan_file": "`safeload.scan_file(path)`",
    "load": "`python -c 'pickle.load(f)'`",
    "safeload": "`safeload scan FILE`",
    "picklescan": "`picklescan --path FILE`",
    "fickling": "`fickling --check-safety FILE`",
}
LOAD_SNIPPET = "import pickle, sys\nwith open(sys.argv[1], 'rb') as f:\n    pickle.load(f)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, help="dict entries (default 2,000,000; 20,000 --quick)")
    p.add_argument(
        "--protocol",
        type=int,
        action="append",
        choices=range(6),
        help="pickle protocol; repeat for several (default: 4 and 2)",
    )
    p.add_argument("--quick", action="store_true", help="a small file, for smoke tests")
    p.add_argument("--no-peers", action="store_true", help="skip picklescan and fickling")
    p.add_argument("--repeat", type=int, default=1, help="best of K runs (peers run once)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="where the pickles go (default bench/.work)")
    p.add_argument("--venvs", type=Path, default=HERE / ".venvs", help="peer venvs")
    p.add_argument("--timeout", type=float, default=900.0, help="per peer run, in seconds")
    args = p.parse_args(argv)
    if args.entries is None:
        args.entries = 20_000 if args.quick else 2_000_000
    args.protocol = args.protocol or [4, 2]
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


# --- running ----------------------------------------------------------------------------


def _tail(child: ChildResult) -> str:
    lines = (child.stderr or child.stdout).strip().splitlines()
    return lines[-1][:200] if lines else f"exit {child.returncode}"


def _probe(op: str, path: Path) -> dict[str, Any]:
    child = run_child([sys.executable, str(MEASURE), "probe", op, str(path)], timeout=3600)
    if child.status != "ok" or child.returncode != 0:
        return {"status": "error", "detail": _tail(child)}
    return {"status": "ok", **json.loads(child.stdout)}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful run, with the least CPU time and the worst peak RSS of all."""
    good = [r for r in runs if r["status"] == "ok"]
    if not good:
        return runs[-1]
    best = dict(min(good, key=lambda r: r["seconds"]))
    for key in ("rss_peak", "peak_rss"):
        if key in best:
            best[key] = max(r[key] for r in good)
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in good)
    best["all_seconds"] = [round(r["seconds"], 4) for r in good]
    return best


def _end_to_end(argv: list[str], *, timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    try:
        child = run_child(argv, timeout=timeout, cwd=cwd)
    except OSError as exc:  # e.g. a peer venv without its script
        return {"status": "error", "detail": f"cannot start {Path(argv[0]).name}: {exc.strerror}"}
    out: dict[str, Any] = {
        "status": child.status,
        "returncode": child.returncode,
        "seconds": child.seconds,
        "cpu_seconds": child.cpu_seconds,
        "peak_rss": child.peak_rss,
    }
    if child.status != "ok":
        out["detail"] = _tail(child)
    out["_output"] = child.stdout + child.stderr
    return out


def _safeload_cli() -> list[str]:
    script = Path(sys.executable).parent / "safeload"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "safeload"]


def measure_file(
    path: Path, args: argparse.Namespace, peers: dict[str, Path | str]
) -> dict[str, Any]:
    """All measurements on one file."""
    inproc: dict[str, list[dict[str, Any]]] = {op: [] for op in PROBES}
    e2e: dict[str, list[dict[str, Any]]] = {"load": [], "safeload": []}
    load_argv = [sys.executable, "-c", LOAD_SNIPPET, str(path)]
    cli_argv = [*_safeload_cli(), "scan", str(path)]
    for _ in range(args.repeat):  # interleaved, so drift hits every measurement alike
        for op in PROBES:
            inproc[op].append(_probe(op, path))
        e2e["load"].append(_end_to_end(load_argv, timeout=3600))
        e2e["safeload"].append(_end_to_end(cli_argv, timeout=3600))
    result: dict[str, Any] = {
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "in_process": {op: _best(runs) for op, runs in inproc.items()},
        "end_to_end": {name: _best(runs) for name, runs in e2e.items()},
    }
    for name, where in peers.items():
        if isinstance(where, str):
            result["end_to_end"][name] = {"status": "unavailable", "detail": where}
            continue
        peer = PEERS[name]
        with tempfile.TemporaryDirectory() as cwd:  # fickling 0.1.12 writes into its cwd
            run = _end_to_end(peer.command(where, path), timeout=args.timeout, cwd=Path(cwd))
        if run["status"] != "timeout" and "_output" in run:
            run["verdict"] = peer.verdict(run["returncode"], run["_output"])
        result["end_to_end"][name] = run
    for runs in result["end_to_end"].values():
        runs.pop("_output", None)
    result["ratios"] = _ratios(result)
    return result


def _div(a: dict[str, Any], b: dict[str, Any], key: str = "seconds") -> float | None:
    if a.get("status") != "ok" or b.get("status") != "ok" or not b.get(key):
        return None
    return round(float(a[key]) / float(b[key]), 3)


def _ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Annotate every row with its ratios; return the headline ones."""
    ip, ee = result["in_process"], result["end_to_end"]
    loads = ip["loads"]
    loaded = loads["rss_after"] - loads["rss_before"] if loads.get("status") == "ok" else 0
    result["loaded_bytes"] = loaded
    for row in ip.values():
        row["over_loads"] = _div(row, loads)
        row["cpu_over_loads"] = _div(row, loads, "cpu_seconds")
        if row.get("status") == "ok" and loaded > 0:
            extra = row["rss_peak"] - row["rss_before"]
            row["extra_peak_over_loaded"] = round(extra / loaded, 3)
    for name, row in ee.items():
        row["over_load"] = _div(row, ee["load"])
        row["cpu_over_load"] = _div(row, ee["load"], "cpu_seconds")
        if name in PEERS:
            row["over_safeload"] = _div(row, ee["safeload"])
            row["cpu_over_safeload"] = _div(row, ee["safeload"], "cpu_seconds")
            row["over_scan_file"] = _div(row, ip["scan_file"])
    headline = {
        "scan_bytes_over_loads": ip["scan_bytes"]["over_loads"],
        "scan_file_over_loads": ip["scan_file"]["over_loads"],
        "scan_file_cpu_over_loads": ip["scan_file"]["cpu_over_loads"],
        "cli_over_load": ee["safeload"]["over_load"],
    }
    for name in PEERS:
        if name in ee:
            headline[f"{name}_over_cli"] = ee[name]["over_safeload"]
            headline[f"{name}_cpu_over_cli"] = ee[name]["cpu_over_safeload"]
            headline[f"{name}_over_scan_file"] = ee[name]["over_scan_file"]
    return headline


# --- reporting --------------------------------------------------------------------------


def _x(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{TIMES}"


def _secs(row: dict[str, Any], key: str = "seconds") -> str:
    if row.get("status") == "ok":
        return f"{row[key]:.3f}"
    return f"{row.get('status')}: {row.get('detail', '')}".strip() if key == "seconds" else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---:"] * len(header)
    align[0] = "---"
    if header[-1] == "result":
        align[-1] = "---"
    return [f"| {' | '.join(cells)} |" for cells in (header, align, *rows)]


def to_markdown(report: dict[str, Any]) -> str:
    """The human-readable tables."""
    meta = report["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}, Python {meta['python']}, "
        f"safeload {meta['safeload']}; {meta['entries']:,}-entry `dict[str, int]`, "
        f"best of {meta['repeat']} (peers: one run).",
        "",
    ]
    for run in report["runs"]:
        ip, ee = run["in_process"], run["end_to_end"]
        ops = ip["scan_bytes"].get("opcodes")
        title = f"### Protocol {run['protocol']}: {run['file_bytes'] / MIB:.1f} MiB"
        lines += [f"{title}, {ops:,} opcodes" if ops else title, ""]
        lines.append(f"Loaded object: {run['loaded_bytes'] / MIB:.0f} MiB of RSS.\n")
        rows = []
        for op, row in ip.items():
            extra = (row["rss_peak"] - row["rss_before"]) / MIB if "rss_peak" in row else None
            rows.append(
                [
                    LABELS[op],
                    _secs(row),
                    _x(row.get("over_loads")),
                    _secs(row, "cpu_seconds"),
                    _x(row.get("cpu_over_loads")),
                    "n/a" if extra is None else f"{extra:.1f} MiB",
                    str(row.get("extra_peak_over_loaded", "n/a")),
                ]
            )
        head = ["in process", "seconds", "÷ `pickle.loads`", "CPU s", "CPU ÷ loads"]
        lines += _table([*head, "extra peak RSS", "÷ loaded size"], rows)
        rows = []
        for name, row in ee.items():
            peer = name in PEERS
            rss = f"{row['peak_rss'] / MIB:.0f} MiB" if "peak_rss" in row else "n/a"
            rows.append(
                [
                    LABELS[name],
                    _secs(row),
                    _x(row.get("over_load")),
                    _secs(row, "cpu_seconds"),
                    _x(row.get("over_safeload"), 1) if peer else "",
                    _x(row.get("cpu_over_safeload"), 1) if peer else "",
                    rss,
                    row.get("verdict")
                    or (f"exit {row['returncode']}" if "returncode" in row else ""),
                ]
            )
        head = ["end to end (fresh process)", "seconds", "÷ `pickle.load`", "CPU s"]
        lines += [
            "",
            *_table([*head, "peer ÷ safeload", "CPU: peer ÷ safeload", "peak RSS", "result"], rows),
        ]
        peers = [n for n in PEERS if n in ee]
        if peers:
            vs = ", ".join(f"{n} {_x(ee[n].get('over_scan_file'), 1)}" for n in peers)
            lines += ["", f"Peer ÷ in-process `scan_file`: {vs}."]
        lines.append("")
    return "\n".join(lines)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        safeload = version("safeload")
    except PackageNotFoundError:
        safeload = "not installed"
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=HERE
    )
    if git.returncode == 0:
        safeload += f" ({git.stdout.strip()})"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "safeload": safeload,
        "entries": args.entries,
        "repeat": args.repeat,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print markdown; optionally write JSON."""
    args = parse_args(argv)
    peers: dict[str, Path | str] = {}
    if not args.no_peers:
        for name, peer in PEERS.items():
            print(f"preparing {name} venv ...", file=sys.stderr, flush=True)
            bindir, why = ensure(peer, args.venvs)
            peers[name] = bindir if bindir is not None else why
    report: dict[str, Any] = {"meta": _meta(args), "runs": []}
    work = args.workdir or HERE / ".work"
    work.mkdir(parents=True, exist_ok=True)
    for protocol in args.protocol:
        path = work / f"dict{args.entries}_p{protocol}.pkl"
        if not path.is_file():  # deterministic content: reuse an earlier run's file
            make = [sys.executable, str(MEASURE), "make", str(path), str(args.entries)]
            made = run_child([*make, str(protocol)], timeout=3600, ok_codes=(0,))
            if made.status != "ok":
                print(f"cannot write {path.name}: {_tail(made)}", file=sys.stderr)
                return 2
        print(f"measuring protocol {protocol} ...", file=sys.stderr, flush=True)
        report["runs"].append({"protocol": protocol, **measure_file(path, args, peers)})
    print(to_markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
