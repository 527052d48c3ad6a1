"""Files that name only harmless-looking globals but attack through state, arguments or code.

Each technique is proven under the real loader in a subprocess (a canary
file, a crash signal, or time/memory over a threshold), then must get a
not-safe verdict under its own rule.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import scipy.stats as stats

import safeload
from safeload import Verdict

CANARY = "canary"


def proven(tmp_path: Path, data: bytes, loader: str = "pickle.loads(data)") -> bool:
    """Does loading `data` with the real loader create the canary (cwd = tmp_path)?"""
    (tmp_path / CANARY).unlink(missing_ok=True)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    code = f"import pickle, sys\ndata = open({str(path)!r}, 'rb').read()\n{loader}\n"
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return (tmp_path / CANARY).exists()


def guarded(tmp_path: Path, data: bytes) -> str:
    """The guarded loader on `data` in a subprocess (cwd = tmp_path): the refusal's
    class and message, or "loaded"."""
    (tmp_path / CANARY).unlink(missing_ok=True)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    code = (
        "import sys, warnings, safeload\n"
        "warnings.simplefilter('ignore')\n"
        "try:\n"
        f"    safeload.load({str(path)!r}, require_signature=False)\n"
        "    print('loaded')\n"
        "except safeload.SafeloadError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    return done.stdout


def _replace_unicode(data: bytes, old: str, new: str) -> bytes:
    """Swap one BINUNICODE string's text in a protocol-2 stream, fixing its length."""
    raw = old.encode()
    at = data.index(raw)
    assert data[at - 5 : at - 4] == b"X", "expected a BINUNICODE opcode"
    body = new.encode()
    return data[: at - 4] + struct.pack("<I", len(body)) + body + data[at + len(raw) :]


def stats_template_payload() -> bytes:
    """A frozen scipy.stats loguniform whose stored parser template also opens a file."""
    frozen = stats.loguniform(1e-3, 1.0)
    template = frozen.dist._parse_arg_template
    data = pickle.dumps(frozen, protocol=2)
    return _replace_unicode(data, template, template + f"\nopen({CANARY!r}, 'w').close()\n")


def test_scipy_stats_template_runs_code_from_the_state(tmp_path: Path) -> None:
    data = stats_template_payload()
    assert proven(tmp_path, data)
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.DANGEROUS
    hits = {f.global_name for f in report.findings if f.rule == "SL111"}
    assert hits == {
        "scipy.stats._distn_infrastructure.rv_continuous_frozen",
        "scipy.stats._continuous_distns.reciprocal_gen",
    }
    # A dangerous global never gets an --allow suggestion.
    assert not any("--allow" in (f.fix or "") for f in report.findings if f.rule == "SL111")
    refusal = guarded(tmp_path, data)
    assert refusal.startswith("UnsafeFileError") and "SL111" in refusal
    assert "allow=" not in refusal
    assert not (tmp_path / CANARY).exists()


def test_fitted_random_search_with_scipy_distributions_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV

    search = RandomizedSearchCV(
        LogisticRegression(max_iter=200),
        {"C": stats.loguniform(1e-3, 1e2)},
        n_iter=2,
        cv=2,
        random_state=0,
    ).fit([[0.0], [1.0], [2.0], [3.0]] * 3, [0, 1] * 6)
    report = safeload.scan_bytes(pickle.dumps(search))
    assert report.verdict is Verdict.DANGEROUS
    sl111 = [f for f in report.findings if f.rule == "SL111"]
    assert sl111 and "param_distributions = None" in (sl111[0].fix or "")
    # The fix the rule gives works.
    search.param_distributions = None
    assert safeload.scan_bytes(pickle.dumps(search)).verdict is not Verdict.DANGEROUS
