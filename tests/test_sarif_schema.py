"""SARIF output validated against the OASIS SARIF 2.1.0 JSON schema (vendored test data).

Every verdict, a finding inside a container member, an unreadable path and
call arguments with quotes, newlines and escapes all give a log the schema
accepts; a log broken on purpose is rejected (the validator really checks).
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from safeload._cli import main

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_PATH = Path(__file__).parent / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"

HOSTILE = b"\x80\x02cposix\nsystem\nX\x07\x00\x00\x00echo hi\x85R."
UNKNOWN = b"\x80\x02cmylib.models\nTinyNet\n)\x81."
TRUNCATED = b"\x80\x02]q\x00(K\x01K"


class Popen:
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (subprocess.Popen, (["sh", "-c", 'echo "a\nb" \x1b[31m'], {"env": None}))


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def sarif_of(tmp_path: Path, capsys: pytest.CaptureFixture[str], *paths: str) -> dict[str, Any]:
    out = tmp_path / "out.sarif"
    main(["scan", "--no-config", "--format", "sarif", "-o", str(out), *paths])
    capsys.readouterr()
    return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_sarif_of_every_kind_of_result_is_valid(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    validator: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()  # the source root SARIF URIs are relative to
    files = {
        "safe.pkl": pickle.dumps({"w": [1.0]}),
        "hostile.pkl": HOSTILE,
        "unknown.pkl": UNKNOWN,
        "cut.pkl": TRUNCATED,
        "args.pkl": pickle.dumps(Popen(), protocol=4),
        "dir with space/naïve.pkl": HOSTILE,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner/data.pkl", HOSTILE)
    files["bundle.zip"] = buffer.getvalue()
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    log = sarif_of(tmp_path, capsys, *files, "missing.pkl")
    validator.validate(log)
    run = log["runs"][0]
    rules = {r["ruleId"] for r in run["results"]}
    assert {"SL101", "SL401"} <= rules
    assert any("inner/data.pkl" in r["message"]["text"] for r in run["results"])
    assert any("['sh', '-c'," in r["message"]["text"] for r in run["results"])
    assert run["invocations"][0]["executionSuccessful"] is False  # missing.pkl


def test_empty_scan_is_valid(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    validator: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    log = sarif_of(tmp_path, capsys, "ok.pkl")
    validator.validate(log)
    assert log["runs"][0]["results"] == []


def test_validator_rejects_a_broken_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    validator: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.pkl").write_bytes(HOSTILE)
    log = sarif_of(tmp_path, capsys, "hostile.pkl")
    validator.validate(log)
    log["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(log)
    log = sarif_of(tmp_path, capsys, "hostile.pkl")
    del log["runs"][0]["tool"]["driver"]["name"]  # required
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(log)
