"""The signing commands' conventions: keygen's default key type, `--ignore-path` beside
PATH, `sign` scanning before it signs (`--allow-unsafe` recorded in the signature), and
`verify` saying "signature valid", never that a file is safe to load."""

from __future__ import annotations

import argparse
import base64
import io
import json
import pickle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from safeload._cli.sign import add_parsers, run
from safeload.errors import InvalidSignatureError, MalformedSignatureError
from safeload.sign import TrustStore, _statement, load_signer, sign, verify
from safeload.sign._keys import RECOMMENDED_KEY_TYPE
from tests.hostile_containers import payload
from tests.picklebuild import newobj, proto, sglobal, stop


def cli(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="safeload")
    add_parsers(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0), "", ""
    out, err = io.StringIO(), io.StringIO()
    return run(args, out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "team.key"
    assert cli("keygen", "--type", "ed25519", "--out", path)[0] == 0
    return path


def _statement_of(sig: Path) -> dict[str, object]:
    envelope = json.loads(sig.read_bytes())
    body = envelope.get("dsseEnvelope", envelope)
    statement: dict[str, object] = json.loads(base64.b64decode(body["payload"]))
    return statement


def _annotations(sig: Path) -> dict[str, str]:
    subject = _statement_of(sig)["subject"]
    assert isinstance(subject, list)
    annotations: dict[str, str] = subject[0]["annotations"]
    return annotations


# -- keygen ------------------------------------------------------------------------------


def test_keygen_defaults_to_the_recommended_type(tmp_path: Path) -> None:
    # docs/signing.md recommends ECDSA P-256: model_signing verifies it too.
    assert RECOMMENDED_KEY_TYPE == "ecdsa-p256"
    out_key = tmp_path / "default.key"
    code, _out, err = cli("keygen", "--out", out_key)
    assert (code, err) == (0, "")
    private = serialization.load_pem_private_key(out_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    assert (tmp_path / "default.key.pub").exists()


def test_keygen_help_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("keygen", "--type", "rsa", "--out", "x")[0] == 2
    assert "invalid choice: 'rsa'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser = argparse.ArgumentParser(prog="safeload")
        add_parsers(parser.add_subparsers(dest="command"))
        parser.parse_args(["keygen", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "ed25519, ecdsa-p256, hmac" in shown
    assert f"default: the recommended one, {RECOMMENDED_KEY_TYPE}" in shown


# -- --ignore-path -------------------------------------------------------------------------


def _model_dir(root: Path) -> Path:
    (root / "logs").mkdir(parents=True)
    (root / "model.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    (root / "config.json").write_text('{"layers": 2}')
    (root / "logs" / "run.txt").write_text("loss 0.1\n")
    (root / "notes.txt").write_text("scratch\n")
    return root


def test_ignore_path_before_path_does_not_swallow_it(tmp_path: Path, key: Path) -> None:
    model = _model_dir(tmp_path / "model")
    # Old spelling and new, repeated, before the positional PATH.
    code, out, err = cli(
        "sign", "--ignore-paths", "logs", "--ignore-path", "notes.txt", model, "--key", key
    )
    assert (code, err) == (0, ""), err
    statement = _statement_of(tmp_path / "model.sig")
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["serialization"]["ignore_paths"] == ["logs", "notes.txt"]
    assert {r["name"] for r in predicate["resources"]} == {"config.json", "model.pkl"}
    other = _model_dir(tmp_path / "other")
    assert (
        cli("sign", other, "--key", key, "--ignore-path", "logs", "--ignore-path", "notes.txt")[0]
        == 0
    )
    # verify takes several PATHs: the flag must leave both to it.
    pub = key.with_name("team.key.pub")
    code, out, err = cli("verify", "--ignore-path", "logs", model, other, "--key", pub)
    assert code == 0, err
    assert out.count("signature valid: ") == 2


def test_ignore_paths_takes_one_value_per_flag(tmp_path: Path, key: Path) -> None:
    """The old `--ignore-paths a b PATH` no longer eats PATH: `b` is an extra argument."""
    model = _model_dir(tmp_path / "model")
    assert cli("sign", "--ignore-paths", "logs", "notes.txt", model, "--key", key)[0] == 2
    assert not (tmp_path / "model.sig").exists()


# -- scan before sign -------------------------------------------------------------------


def test_sign_refuses_a_file_that_does_not_scan_safe(tmp_path: Path, key: Path) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(payload())
    code, out, err = cli("sign", evil, "--key", key)
    assert code == 1 and out == ""
    assert "refused to sign" in err and "evil.pkl: dangerous (" in err and "--allow-unsafe" in err
    assert not (tmp_path / "evil.pkl.sig").exists()


def test_sign_refuses_a_directory_with_one_unsafe_file(tmp_path: Path, key: Path) -> None:
    model = _model_dir(tmp_path / "model")
    (model / "logs" / "hook.pkl").write_bytes(payload())
    code, _, err = cli("sign", model, "--key", key)
    assert code == 1 and "logs/hook.pkl: dangerous" in err
    assert "model.pkl" not in err and "config.json" not in err  # safe / not-a-pickle pass
    assert not (tmp_path / "model.sig").exists()
    # Left out of the signature, it is not scanned either.
    assert cli("sign", model, "--key", key, "--ignore-path", "logs/hook.pkl")[0] == 0


def test_allow_unsafe_is_recorded_and_shown_by_verify(tmp_path: Path, key: Path) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(payload())
    code, out, err = cli("sign", evil, "--key", key, "--allow-unsafe")
    assert code == 0 and "wrote" in out and "--allow-unsafe" in err
    recorded = _annotations(tmp_path / "evil.pkl.sig")[_statement.ALLOW_UNSAFE]
    assert recorded.startswith("evil.pkl: dangerous (") and "SL" in recorded
    pub = key.with_name("team.key.pub")
    code, out, err = cli("verify", evil, "--key", pub)
    assert code == 0
    assert out.startswith(f"signature valid: {evil}")
    assert f"signed with --allow-unsafe over these scan results: {recorded}" in err
    code, out, _ = cli("verify", evil, "--key", pub, "--format", "json")
    (entry,) = json.loads(out)["results"]
    assert entry["allow_unsafe"] == recorded
    # The library sees it too.
    result = verify(evil, TrustStore.load(keys=[pub]))
    assert result.authenticated is not None
    assert result.authenticated.statement.allow_unsafe == recorded


def test_the_record_is_signed(tmp_path: Path, key: Path) -> None:
    """Removing the annotation from the statement breaks the signature."""
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(payload())
    assert cli("sign", evil, "--key", key, "--allow-unsafe")[0] == 0
    sig = tmp_path / "evil.pkl.sig"
    envelope = json.loads(sig.read_bytes())
    body = envelope.get("dsseEnvelope", envelope)
    statement = json.loads(base64.b64decode(body["payload"]))
    del statement["subject"][0]["annotations"][_statement.ALLOW_UNSAFE]
    body["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(envelope))
    with pytest.raises(InvalidSignatureError):
        verify(evil, TrustStore.load(keys=[key.with_name("team.key.pub")]))


def test_signatures_without_the_field_still_verify(tmp_path: Path, key: Path) -> None:
    """Every signature made before the field (and by other tools) has no such annotation."""
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    sign(model, load_signer(key))  # the library: it never scans, never records
    assert set(_annotations(tmp_path / "model.pkl.sig")) == {_statement.SIGNED_AT}
    result = verify(model, TrustStore.load(keys=[key.with_name("team.key.pub")]))
    assert result.authenticated is not None and result.authenticated.statement.allow_unsafe is None
    code, _out, err = cli("verify", model, "--key", key.with_name("team.key.pub"))
    assert code == 0 and "allow-unsafe" not in err
    # A statement with no annotations at all (model_signing's own) parses too.
    raw = _statement.build("model.pkl", {".": "00" * 32}, ())
    bare = json.loads(raw)
    del bare["subject"][0]["annotations"]
    assert _statement.parse(json.dumps(bare).encode(), "x").allow_unsafe is None


def test_a_record_that_is_not_text_is_malformed(tmp_path: Path) -> None:
    raw = json.loads(_statement.build("m", {".": "00" * 32}, (), allow_unsafe="m: unknown"))
    assert _statement.parse(json.dumps(raw).encode(), "x").allow_unsafe == "m: unknown"
    raw["subject"][0]["annotations"][_statement.ALLOW_UNSAFE] = ["m"]
    with pytest.raises(MalformedSignatureError):
        _statement.parse(json.dumps(raw).encode(), "x")


# -- verify's words ------------------------------------------------------------------------


def test_verify_says_signature_valid_and_never_safe(tmp_path: Path, key: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps({"w": 1}, protocol=4))
    assert cli("sign", model, "--key", key)[0] == 0
    code, out, err = cli("verify", model, "--key", key.with_name("team.key.pub"))
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.startswith(f"signature valid: {model}: subject 'model.pkl', 1 file")
    assert "not a safety verdict" in second and f"safeload scan {model}" in second
    assert "safe to load" not in out and not out.startswith("verified")


def test_sign_scans_with_the_projects_policy(
    tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class the project allows in [tool.safeload] signs, as `safeload scan` there says safe."""
    model = tmp_path / "model.pkl"
    # A NEWOBJ of a class on no allow pack: unknown (SL401) without the project's policy.
    model.write_bytes(proto(4) + sglobal("mynets", "Net") + b")" + newobj() + stop())
    code, _, err = cli("sign", model, "--key", key)
    assert code == 1 and "model.pkl: unknown (SL401)" in err
    (tmp_path / "pyproject.toml").write_text('[tool.safeload]\nallow = ["mynets.Net"]\n')
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("sign", model, "--key", key)
    assert (code, err) == (0, "")
