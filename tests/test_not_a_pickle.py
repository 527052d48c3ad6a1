"""Files that are not pickles: the `not-a-pickle` verdict (SL305).

A file is `not-a-pickle` when every loader that could be pointed at it would
fail before importing, calling or building anything, and no container reading
holds a pickle. The files here are made by the real libraries (an XGBoost model
saved with `save_model`, a scikit-learn model saved with joblib) or byte by byte
(a SentencePiece-like protobuf, a PNG), and the real loaders are run on them in
a subprocess to show that each fails before `find_class` is ever reached (the
`pickle.find_class` audit event, which CPython's C and Python unpicklers both
raise). Counter-tests show that a stream which imports something before it
breaks stays `invalid` or worse, and that the loaders do reach `find_class` there.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from hypothesis import given, settings
from hypothesis import strategies as st

import safeload
from safeload._cli import main
from safeload._formats import locate
from safeload.errors import UnsupportedFormatError
from safeload.report import Verdict
from tests.test_precommit import ROOT, manifest_hook

# -- files made for the tests ------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def sentencepiece_model() -> bytes:
    """A SentencePiece ModelProto as sentencepiece writes tokenizer.model: repeated
    pieces (piece = 1, score = 2 as float, type = 3), trainer_spec = 2 and
    normalizer_spec = 3 (sentencepiece_model.proto)."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"\u2581w{i}", -float(i), 1) for i in range(40)]
    out = b""
    for text, score, kind in pieces:
        body = (
            _field(1, 2, text.encode())
            + _field(2, 5, struct.pack("<f", score))
            + _field(3, 0, _varint(kind))
        )
        out += _field(1, 2, body)
    trainer = _field(1, 2, b"corpus.txt") + _field(3, 0, _varint(2)) + _field(4, 0, _varint(43))
    normalizer = _field(1, 2, b"nmt_nfkc") + _field(3, 0, _varint(1))
    return out + _field(2, 2, trainer) + _field(3, 2, normalizer)


def onnx_like_model() -> bytes:
    """ModelProto fields as torch.onnx.export writes them: ir_version, producer,
    graph (a node), opset_import."""
    node = _field(1, 2, b"x") + _field(2, 2, b"y") + _field(4, 2, b"Relu")
    graph = _field(1, 2, node) + _field(2, 2, b"main_graph")
    return (
        _field(1, 0, _varint(8))
        + _field(2, 2, b"pytorch")
        + _field(3, 2, b"2.13.0")
        + _field(7, 2, graph)
        + _field(8, 2, _field(2, 0, _varint(17)))
    )


def png_image() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"\x00\xff\x00\x00\xff\x00\x00" * 2
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sklearn_model(path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.random.RandomState(0).rand(40, 3)
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0.5), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of file a model repository holds that is no pickle, by name."""
    import xgboost

    root = tmp_path_factory.mktemp("not_a_pickle")
    x = np.random.RandomState(0).rand(60, 4)
    booster = xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(x, x[:, 0] > 0.5)
    booster.save_model(root / "model.json")
    booster.save_model(root / "model.ubj")
    made = {
        "config.json": json.dumps({"model_type": "bert", "hidden_size": 768}, indent=2).encode(),
        "tokenizer.model": sentencepiece_model(),
        "model.onnx": onnx_like_model(),
        "README.md": b"# tiny-bert\n\nA model card: *what it does*, how it was trained.\n",
        "data.dat": b"name,label,score\n1,cat,0.5\n2,dog,0.25\n",
        "data.csv.gz": gzip.compress(b"name,label,score\n1,cat,0.5\n2,dog,0.25\n"),
        "random.bin": random.Random(7).randbytes(1 << 16),
        "image.png": png_image(),
        "photo.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
        "weights.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 0),
        "weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(56),
        "empty.pkl": b"",
    }
    for name, data in made.items():
        (root / name).write_bytes(data)
    return {p.name: p for p in root.iterdir()}


EXPECTED_FORMAT = {
    "config.json": "json",
    "model.json": "json",
    "model.ubj": "ubjson",
    "tokenizer.model": "protobuf",
    "model.onnx": "onnx",
    "README.md": "text",
    "data.dat": "text",
    "data.csv.gz": "text+gzip",
    "random.bin": "data",
    "image.png": "png",
    "photo.jpg": "jpeg",
    "weights.gguf": "gguf",
    "weights.h5": "hdf5",
    "empty.pkl": "empty",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMAT))
def test_files_that_are_no_pickle_are_not_a_pickle(files: dict[str, Path], name: str) -> None:
    report = safeload.scan_file(files[name])
    assert report.verdict is Verdict.NOT_A_PICKLE, report.findings
    assert report.format == EXPECTED_FORMAT[name]
    assert [f.rule for f in report.findings] == ["SL305"]
    (finding,) = report.findings
    assert finding.rule_name == "not-a-pickle" and finding.verdict is Verdict.NOT_A_PICKLE
    assert "not a pickle in any format" in finding.message
    assert report.pickles == 0  # no reading: nothing a loader deserializes


# -- the real loaders fail before building anything --------------------------------

_LOADERS = r"""
import io, json, pickle, sys, warnings
warnings.simplefilter("ignore")
import joblib, numpy, pandas, torch

found = []
sys.addaudithook(lambda event, args: found.append(list(map(str, args)))
                 if event == "pickle.find_class" else None)

def py_load(path):
    with open(path, "rb") as f:
        return pickle._Unpickler(f).load()

LOADERS = {
    "pickle.load": lambda p: pickle.load(open(p, "rb")),
    "pickle._Unpickler": py_load,
    "joblib.load": joblib.load,
    "numpy.load": lambda p: numpy.load(p, allow_pickle=True),
    "pandas.read_pickle": pandas.read_pickle,
    "torch.load": lambda p: torch.load(p, weights_only=False),
}
out = {}
for path in sys.argv[1:]:
    for name, load in LOADERS.items():
        found.clear()
        try:
            load(path)
            result = "loaded"
        except BaseException as exc:
            result = type(exc).__name__
        out[f"{path}|{name}"] = {"result": result, "find_class": list(found)}
print(json.dumps(out))
"""


def run_loaders(paths: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADERS, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=paths[0].parent,
    )
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {(Path(k.split("|")[0]).name, k.split("|")[1]): v for k, v in raw.items()}


def test_every_loader_fails_on_them_before_find_class(files: dict[str, Path]) -> None:
    results = run_loaders([files[name] for name in sorted(EXPECTED_FORMAT)])
    assert len(results) == 6 * len(EXPECTED_FORMAT)
    for (name, loader), got in results.items():
        assert got["result"] != "loaded", (name, loader, got)
        assert got["find_class"] == [], (name, loader, got)


# -- counter-tests: what imports before it breaks is no "not-a-pickle" -------------

SYSTEM_THEN_JUNK = b"cos\nsystem\n(S'touch canary'\n\xff"
"""Protocol-0 text: GLOBAL os.system, then an unknown opcode before any call."""


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("text-global-then-junk.dat", SYSTEM_THEN_JUNK),
        # `}` is EMPTY_DICT (a JSON object's `{` is no opcode): what follows runs
        ("empty-dict-global.json", b"}" + SYSTEM_THEN_JUNK),
        # mtime=0: the bytes, and so the test ids pytest-xdist workers compare, are fixed
        ("gzip-global-then-junk.gz", gzip.compress(SYSTEM_THEN_JUNK, mtime=0)),
        ("persid-then-global.bin", b"Pid\n" + SYSTEM_THEN_JUNK),
    ],
)
def test_a_stream_that_imports_before_it_breaks_stays_dangerous(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.DANGEROUS, report.findings
    assert "SL101" in {f.rule for f in report.findings}
    assert "SL305" not in {f.rule for f in report.findings}


def test_the_loaders_do_reach_find_class_on_those(tmp_path: Path) -> None:
    """Proof that the counter-tests are real: pickle.load imports os.system from the
    text stream and after `}` (pandas.read_pickle from the gzip), then fails, and a
    loader fails at a persistent id before the GLOBAL behind it."""
    plain = tmp_path / "text.dat"
    plain.write_bytes(SYSTEM_THEN_JUNK)
    brace = tmp_path / "brace.json"
    brace.write_bytes(b"}" + SYSTEM_THEN_JUNK)
    zipped = tmp_path / "data.gz"
    zipped.write_bytes(gzip.compress(SYSTEM_THEN_JUNK))
    persid = tmp_path / "persid.bin"
    persid.write_bytes(b"Pid\n" + SYSTEM_THEN_JUNK)
    results = run_loaders([plain, brace, zipped, persid])
    system = [["os", "system"]]
    assert results[("text.dat", "pickle.load")] == {
        "result": "UnpicklingError",
        "find_class": system,
    }
    assert results[("brace.json", "pickle.load")]["find_class"] == system
    assert results[("data.gz", "pandas.read_pickle")]["find_class"] == system
    assert results[("persid.bin", "pickle.load")]["find_class"] == []
    assert not (tmp_path / "canary").exists()


def test_a_csv_whose_header_starts_with_an_import_opcode_stays_invalid(tmp_path: Path) -> None:
    """`id,...` is INST. The C unpickler looks for INST's MARK first and fails, but
    the pure-Python one (joblib.load's) imports module `d,label` first (a file of
    that name on sys.path would run), so the file is no inert text."""
    path = tmp_path / "table.dat"
    path.write_bytes(b"id,label\n1,cat\n2,dog\n")
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.INVALID
    assert "SL305" not in {f.rule for f in report.findings}
    got = run_loaders([path])
    assert got[("table.dat", "pickle.load")]["find_class"] == []
    assert got[("table.dat", "pickle._Unpickler")]["find_class"] == [["d,label", "1,cat"]]
    assert got[("table.dat", "joblib.load")]["find_class"] == [["d,label", "1,cat"]]


def test_a_json_brace_is_no_opcode_so_what_follows_never_runs(tmp_path: Path) -> None:
    """A JSON object's `{` is no opcode: pickle.loads fails at offset 0 whatever
    follows, so even a GLOBAL behind it is never reached."""
    data = b"{" + SYSTEM_THEN_JUNK
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.NOT_A_PICKLE
    (finding,) = report.findings
    assert finding.offset == 0 and "unknown opcode 0x7b" in finding.message
    path = tmp_path / "brace.json"
    path.write_bytes(data)
    got = run_loaders([path])
    assert all(r["find_class"] == [] and r["result"] != "loaded" for r in got.values())


def test_a_brace_then_a_complete_payload_is_still_found() -> None:
    """An offset-aware reader could start after the junk byte: a complete pickle
    found there is reported (trailing data), so the file is not waved through."""
    payload = b"cos\nsystem\n(S'touch canary'\ntR."
    report = safeload.scan_bytes(b"{" + payload)
    assert report.verdict is Verdict.DANGEROUS
    assert {"SL101", "SL304"} <= {f.rule for f in report.findings}


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"0", Verdict.NOT_A_PICKLE),  # JSON 0: POP on an empty stack
        (b"1", Verdict.NOT_A_PICKLE),  # POP_MARK with no MARK
        (b"true", Verdict.NOT_A_PICKLE),  # TUPLE with no MARK
        (b'"text"', Verdict.NOT_A_PICKLE),
        (b"I1\nI2\n", Verdict.NOT_A_PICKLE),  # constants, then the end of the data
        (b"I1\n.", Verdict.SAFE),  # a complete pickle of 1: a pickle, and safe
        (b"].", Verdict.SAFE),  # an empty list
    ],
)
def test_text_is_judged_by_what_pickle_loads_does(data: bytes, verdict: Verdict) -> None:
    report = safeload.scan_bytes(data)
    assert report.verdict is verdict, report.findings
    try:
        pickle.loads(data)
        loaded = True
    except Exception:
        loaded = False
    assert loaded is (verdict is Verdict.SAFE)


def test_a_damaged_pickle_that_declares_its_protocol_stays_invalid() -> None:
    """A truncated download of a data pickle builds nothing either, but its PROTO
    says it is a pickle: the user is told it is truncated, not that it is no pickle."""
    data = pickle.dumps({"weights": list(range(50))}, protocol=4)[:-20]
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.INVALID
    assert [f.rule for f in report.findings] == ["SL302"]


def test_a_zip_behind_junk_is_read_as_the_zip_alone(tmp_path: Path) -> None:
    """No pickle reading at offset 0 (every loader fails there): the tail zip is the
    file's one reading, judged by its members, and is no polyglot."""
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m.pkl", pickle.dumps({"ok": 1}, protocol=2))
    report = safeload.scan_bytes(b"# comment\n" + buf.getvalue())
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.format == "zip"


# -- the walker's decision mirrors CPython ------------------------------------------


class _Recording(pickle.Unpickler):
    """The C unpickler, recording every find_class (refused). Its persistent_load
    resolves every id, so it goes on where the plain loaders stop: what follows a
    persistent id must import nothing either."""

    seen: list[str]

    def find_class(self, module: str, name: str) -> Any:
        self.seen.append(f"{module}.{name}")
        raise pickle.UnpicklingError("refused")

    def persistent_load(self, pid: Any) -> Any:
        return None


class _PyRecording(pickle._Unpickler):
    """The same for the pure-Python unpickler (joblib's, pandas' fallback)."""

    seen: list[str]

    def find_class(self, module: str, name: str) -> Any:
        self.seen.append(f"{module}.{name}")
        raise pickle.UnpicklingError("refused")

    def persistent_load(self, pid: Any) -> Any:
        return None


def _reached(data: bytes) -> tuple[list[str], list[str]]:
    """The globals the C and the Python unpickler asked for before failing; an
    AssertionError if either loaded the bytes."""
    out = []
    for kind in (_Recording, _PyRecording):
        unpickler = kind(io.BytesIO(data))
        unpickler.seen = []
        try:
            unpickler.load()
        except Exception:
            pass
        else:
            raise AssertionError(f"{kind.__name__} loaded {data!r}")
        out.append(unpickler.seen)
    return out[0], out[1]


def _inert(data: bytes) -> bool:
    with locate(data) as located:
        return any(n.rule == "not-a-pickle" for n in located.notes) and not located.readings


_OPCODE_TEXT = st.text(
    alphabet="()0123FIJKLNPSVabcdeghijlopqrstu}]\n'.,:{[\" \x80\x81\x85\x93\x94\x95x7",
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_OPCODE_TEXT.map(lambda t: t.encode("latin-1")), st.binary(max_size=40)))
def test_not_a_pickle_only_when_cpython_fails_before_find_class(data: bytes) -> None:
    """Whenever the scan says not-a-pickle, both CPython unpicklers fail without
    reaching find_class, even when a persistent_load lets them read on."""
    if _inert(data):
        assert _reached(data) == ([], []), data


def test_every_single_byte_and_two_byte_prefix_agrees_with_cpython() -> None:
    for first in range(256):
        for data in (bytes([first]), bytes([first]) + b"\n", bytes([first, 0x2E])):
            if _inert(data):
                assert _reached(data) == ([], []), data


# -- CLI, hooks, loader ---------------------------------------------------------------

HF_REPO = ("config.json", "tokenizer.model", "README.md", "model.ubj")


@pytest.fixture
def hf_repo(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A tiny Hugging Face style repository: configs, a tokenizer, a model card, an
    XGBoost model and a real scikit-learn joblib model."""
    repo = tmp_path / "hf_model"
    repo.mkdir()
    for name in HF_REPO:
        (repo / name).write_bytes(files[name].read_bytes())
    sklearn_model(repo / "model.joblib")
    return repo


def _scan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["scan", "--no-config", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_scan_of_a_model_repository_passes(
    hf_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = sorted(str(p) for p in hf_repo.iterdir())
    code, report = _scan_json(capsys, *paths)
    assert code == 0
    verdicts = {Path(f["path"]).name: f["verdict"] for f in report["files"]}
    assert verdicts == {**dict.fromkeys(HF_REPO, "not-a-pickle"), "model.joblib": "safe"}
    assert report["version"] == 2
    assert report["summary"]["not-a-pickle"] == 4 and report["summary"]["safe"] == 1
    assert main(["scan", "--no-config", "--fail-on", "dangerous", *paths]) == 0
    assert main(["scan", "--no-config", "--strict", *paths]) == 1
    assert main(["scan", "--no-config", "--fail-on", "not-a-pickle", *paths]) == 1
    # the directory walk too (it picks tokenizer.model by its extension)
    assert main(["scan", "--no-config", str(hf_repo)]) == 0
    assert main(["scan", "--no-config", "--strict", str(hf_repo)]) == 1


def test_config_fail_on_not_a_pickle_makes_it_fail(
    hf_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (hf_repo / "pyproject.toml").write_text('[tool.safeload]\nfail-on = "not-a-pickle"\n')
    monkeypatch.chdir(hf_repo)
    assert main(["scan", "config.json"]) == 1
    (hf_repo / "pyproject.toml").write_text('[tool.safeload]\nfail-on = "never"\n')
    assert main(["scan", "config.json"]) == 2
    assert "not-a-pickle" in capsys.readouterr().err


def test_text_output_and_quiet(hf_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["scan", "--no-config", str(hf_repo / "tokenizer.model")]) == 0
    out = capsys.readouterr().out
    assert "tokenizer.model: NOT-A-PICKLE (protobuf)" in out
    assert "SL305 not-a-pickle" in out and "protobuf message" in out
    assert "summary: 1 file: 1 not-a-pickle" in out
    assert "fix:" not in out  # it does not fail: no fix to give
    assert main(["scan", "--no-config", "--quiet", str(hf_repo / "tokenizer.model")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "summary: 1 file: 1 not-a-pickle (0 skipped, 0 errors)"
    ]
    assert main(["scan", "--no-config", "--quiet", "--strict", str(hf_repo / "README.md")]) == 1
    out = capsys.readouterr().out
    assert "README.md: NOT-A-PICKLE (text)" in out
    assert "fix: Nothing to do for a file that is not meant to be a pickle" in out


def test_sarif_level_is_note(hf_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["scan", "--no-config", "--format", "sarif", str(hf_repo / "config.json")]) == 0
    log = json.loads(capsys.readouterr().out)
    (result,) = log["runs"][0]["results"]
    assert (result["ruleId"], result["level"]) == ("SL305", "note")


def test_baseline_and_ignore_may_forgive_it_under_strict(
    hf_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(hf_repo / name) for name in HF_REPO]
    baseline = hf_repo / "baseline.json"
    assert main(["scan", "--no-config", "--write-baseline", str(baseline), *paths]) == 0
    recorded = {e["rule"] for e in json.loads(baseline.read_text())["findings"]}
    assert recorded == {"SL305"}
    assert main(["scan", "--no-config", "--strict", "--baseline", str(baseline), *paths]) == 0
    assert main(["scan", "--no-config", "--strict", "--ignore", "not-a-pickle", *paths]) == 0


def _hook_files(hook_id: str, names: list[str]) -> list[str]:
    import re

    pattern = manifest_hook(hook_id).get("files")
    return [n for n in names if pattern is None or re.search(pattern, n)]


@pytest.mark.parametrize("hook_id", ["safeload-scan", "safeload-scan-all"])
def test_scan_hooks_pass_a_model_repository(hf_repo: Path, hook_id: str) -> None:
    """The hooks' own entries (from .pre-commit-hooks.yaml) on the files pre-commit
    would pass them: exit 0, nothing listed but the summary; with fail-on =
    "not-a-pickle" in the repository's config they fail and list the files."""
    hook = manifest_hook(hook_id)
    names = sorted(p.name for p in hf_repo.iterdir())
    passed = _hook_files(hook_id, names)
    assert "tokenizer.model" in passed
    command = [sys.executable, "-m", "safeload", *hook["entry"].split()[1:], *passed]
    done = subprocess.run(command, cwd=hf_repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if not line.startswith("summary:")] == []
    (hf_repo / "pyproject.toml").write_text('[tool.safeload]\nfail-on = "not-a-pickle"\n')
    done = subprocess.run(command, cwd=hf_repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "tokenizer.model: NOT-A-PICKLE (protobuf)" in done.stdout


def test_manifest_is_what_the_hook_test_reads() -> None:
    assert {h["id"] for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())} >= {
        "safeload-scan",
        "safeload-scan-all",
    }


@pytest.mark.parametrize("name", ["config.json", "tokenizer.model", "data.csv.gz", "empty.pkl"])
def test_guarded_loader_refuses_with_a_clear_error(files: dict[str, Path], name: str) -> None:
    with pytest.raises(UnsupportedFormatError) as caught:
        safeload.load(files[name], require_signature=False)
    message = str(caught.value)
    assert message.startswith(f"{files[name]}: refused to load: not a pickle in any format")
    assert "SL305 not-a-pickle" in message
    assert f"read as {EXPECTED_FORMAT[name]}" in message


def test_explain_skips_them(hf_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["scan", "--no-config", "--explain", str(hf_repo / "README.md")]) == 0
    assert "what loading it would run" not in capsys.readouterr().out


def test_empty_is_decided_alike_at_the_top_and_under_compression() -> None:
    for data, shape in ((b"", "empty"), (gzip.compress(b""), "empty+gzip")):
        report = safeload.scan_bytes(data)
        assert (report.verdict, report.format) == (Verdict.NOT_A_PICKLE, shape)
        assert [f.rule for f in report.findings] == ["SL305"]
    # inside a container that is read as one (an object .npy), a missing pickle is a
    # broken container, not a file that is no pickle
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - len(header) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
    report = safeload.scan_bytes(npy)
    assert report.verdict is Verdict.INVALID, report.findings
    assert "SL305" not in {f.rule for f in report.findings}


def test_worst_verdict_wins_and_not_a_pickle_ranks_between_safe_and_unknown() -> None:
    assert Verdict.worst([Verdict.SAFE, Verdict.NOT_A_PICKLE]) is Verdict.NOT_A_PICKLE
    assert Verdict.worst([Verdict.NOT_A_PICKLE, Verdict.UNKNOWN]) is Verdict.UNKNOWN
    # a gzipped CSV with bytes after its gzip stream: the trailing data is invalid
    report = safeload.scan_bytes(gzip.compress(b"name,score\n1,2\n") + b"junk")
    assert report.verdict is Verdict.INVALID
    assert {"SL305", "SL304"} <= {f.rule for f in report.findings}


def test_fail_on_levels_are_decided_alike_in_config_and_cli() -> None:
    from safeload._cli import _FAILING
    from safeload.policy import FAIL_ON_LEVELS

    assert set(_FAILING) == set(FAIL_ON_LEVELS)
    assert _FAILING["not-a-pickle"] == frozenset(Verdict) - {Verdict.SAFE}
    assert Verdict.NOT_A_PICKLE not in _FAILING["unknown"] | _FAILING["dangerous"]
