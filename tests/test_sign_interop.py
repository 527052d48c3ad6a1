"""Interoperability with the real OpenSSF `model-signing` package (pinned in the test extra).

* `model_signing verify key` accepts safeload ECDSA P-256 signatures (file and directory);
* `safeload verify` accepts `model_signing sign key` bundles: single-file resource `"."`,
  path-component resource order, shard manifests with a float `shard_size`;
* `check_bytes` checks bytes held in memory against those bundles, shard manifests included;
* Ed25519 signatures are safeload-only: model-signing 1.1.1 cannot verify them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from safeload.sign import (
    DigestMismatchError,
    MissingFileError,
    TrustStore,
    UnsignedFileError,
    authenticate,
    generate_key,
    load_signer,
    locate_signature,
    read_signature,
    sign,
    verify,
)

model_signing = pytest.importorskip("model_signing", reason="needs the test extra")


def model_signing_cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def ecdsa_key(tmp_path: Path) -> tuple[Path, Path]:
    info = generate_key("ecdsa-p256", tmp_path / "keys" / "signing.key")
    assert info.public is not None
    return info.private, info.public


@pytest.fixture(autouse=True)
def _keys_dir(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    for name, content in {
        "a/b": b"one",  # a/b before a-b/x in path-component order, after it in code points
        "a-b/x": b"two",
        "weights.bin": os.urandom(5000),
        "nested/deep/config.json": b"{}",
        "empty": b"",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(os.urandom(4096))
    return path


# -- safeload signs, model_signing verifies ----------------------------------------------


def test_model_signing_verifies_safeload_single_file(
    ecdsa_key: tuple[Path, Path], model_file: Path
) -> None:
    private, public = ecdsa_key
    sig = sign(model_file, load_signer(private))
    done = model_signing_cli(
        "verify", "key", model_file, "--signature", sig, "--public_key", public
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    done = model_signing_cli(
        "verify", "key", model_file, "--signature", sig, "--public_key", public
    )
    assert done.returncode != 0  # it really checks the digest


def test_model_signing_verifies_safeload_directory(
    ecdsa_key: tuple[Path, Path], model_dir: Path
) -> None:
    private, public = ecdsa_key
    sig = sign(model_dir, load_signer(private))
    done = model_signing_cli("verify", "key", model_dir, "--signature", sig, "--public_key", public)
    assert done.returncode == 0, done.stdout + done.stderr
    # The Python API agrees, and catches a file added after signing.
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public)
    config.verify(model_dir, sig)
    (model_dir / "added.pkl").write_bytes(b"N.")
    with pytest.raises(ValueError, match=re.escape("added.pkl")):
        config.verify(model_dir, sig)


def test_model_signing_verifies_signature_kept_inside_directory(
    ecdsa_key: tuple[Path, Path], model_dir: Path
) -> None:
    private, public = ecdsa_key
    inner = model_dir / "model.sig"
    sign(model_dir, load_signer(private), signature=inner)
    done = model_signing_cli(
        "verify", "key", model_dir, "--signature", inner, "--public_key", public
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ed25519_is_safeload_only(tmp_path: Path, model_file: Path) -> None:
    info = generate_key("ed25519", tmp_path / "keys" / "ed.key")
    assert info.public is not None
    sig = sign(model_file, load_signer(info.private))
    assert verify(model_file, TrustStore.load(keys=[info.public])).algorithm == "ed25519"
    done = model_signing_cli(
        "verify", "key", model_file, "--signature", sig, "--public_key", info.public
    )
    assert done.returncode != 0  # model-signing 1.1.1 supports EC keys only


# -- model_signing signs, safeload verifies ----------------------------------------------


def test_safeload_verifies_model_signing_single_file(
    ecdsa_key: tuple[Path, Path], model_file: Path
) -> None:
    private, public = ecdsa_key
    sig = model_file.with_name("model.pkl.sig")
    done = model_signing_cli(
        "sign", "key", model_file, "--private_key", private, "--signature", sig
    )
    assert done.returncode == 0, done.stdout + done.stderr
    statement = _statement(sig)
    assert [r["name"] for r in statement["predicate"]["resources"]] == ["."]
    result = verify(model_file, TrustStore.load(keys=[public]))
    assert (result.algorithm, result.files) == ("ecdsa-p256", (".",))
    model_file.write_bytes(b"replaced")
    with pytest.raises(DigestMismatchError):
        verify(model_file, TrustStore.load(keys=[public]))


def test_safeload_verifies_model_signing_directory(
    ecdsa_key: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    private, public = ecdsa_key
    sig = tmp_path / "model.sig"
    done = model_signing_cli("sign", "key", model_dir, "--private_key", private, "--signature", sig)
    assert done.returncode == 0, done.stdout + done.stderr
    names = [r["name"] for r in _statement(sig)["predicate"]["resources"]]
    assert names.index("a/b") < names.index("a-b/x")  # model-signing's path-component order
    trust = TrustStore.load(keys=[public])
    assert set(verify(model_dir, trust).files) == set(names)
    (model_dir / "nested" / "deep" / "config.json").unlink()
    with pytest.raises(MissingFileError, match=re.escape("config.json")):
        verify(model_dir, trust)
    (model_dir / "nested" / "deep" / "config.json").write_bytes(b"{}")
    (model_dir / "new.bin").write_bytes(b"!")
    with pytest.raises(UnsignedFileError, match=re.escape("new.bin")):
        verify(model_dir, trust)


def test_safeload_honours_model_signing_git_setting(
    ecdsa_key: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    """Git files are skipped only when the signature's ignore list says so."""
    private, public = ecdsa_key
    (model_dir / ".gitattributes").write_text("*.bin filter=lfs\n")
    sig = tmp_path / "model.sig"
    done = model_signing_cli(
        "sign", "key", model_dir, "--private_key", private, "--signature", sig,
        "--no-ignore-git-paths",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    trust = TrustStore.load(keys=[public])
    assert ".gitattributes" in verify(model_dir, trust).files
    (model_dir / ".gitattributes").write_text("changed\n")
    with pytest.raises(DigestMismatchError, match=re.escape(".gitattributes")):
        verify(model_dir, trust)


def test_safeload_verifies_model_signing_shards(
    ecdsa_key: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    private, public = ecdsa_key
    sig = tmp_path / "model.sig"
    hashing = model_signing.hashing.Config().use_shard_serialization(shard_size=1024)
    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
    config.set_hashing_config(hashing).sign(model_dir, sig)
    serialization = _statement(sig)["predicate"]["serialization"]
    assert serialization["method"] == "shards"
    assert isinstance(serialization["shard_size"], float)  # written as a JSON float
    trust = TrustStore.load(keys=[public])
    assert "weights.bin" in verify(model_dir, trust).files
    weights = model_dir / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[4500] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match=re.escape("weights.bin")):
        verify(model_dir, trust)


def test_check_bytes_on_model_signing_bundles(
    ecdsa_key: tuple[Path, Path], model_file: Path
) -> None:
    """A `model_signing sign key` bundle, authenticated without touching the model file."""
    private, public = ecdsa_key
    sig = model_file.with_name("model.pkl.sig")
    done = model_signing_cli(
        "sign", "key", model_file, "--private_key", private, "--signature", sig
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = locate_signature(model_file)
    assert (found.signature, found.name) == (sig, ".")
    auth = authenticate(read_signature(sig), TrustStore.load(keys=[public]), where=sig)
    data = model_file.read_bytes()
    auth.check_bytes(data)
    auth.start_check(data, "model.pkl").result()
    with pytest.raises(DigestMismatchError):
        auth.check_bytes(data[:-1])


def test_check_bytes_on_model_signing_shards(
    ecdsa_key: tuple[Path, Path], model_dir: Path, tmp_path: Path
) -> None:
    """Shard manifests come from model-signing's Python API: its 1.1.1 CLI has no shard option."""
    private, public = ecdsa_key
    trust = TrustStore.load(keys=[public])
    hashing = model_signing.hashing.Config().use_shard_serialization(shard_size=1024)
    signing = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
    signing.set_hashing_config(hashing)
    single = tmp_path / "single.bin"
    single.write_bytes(os.urandom(2500))
    signing.sign(single, single.with_name("single.bin.sig"))
    signing.sign(model_dir, tmp_path / "model.sig")

    inside = [model_dir / name for name in ("weights.bin", "a/b", "nested/deep/config.json")]
    for path in (single, *inside):
        found = locate_signature(path)
        auth = authenticate(read_signature(found.signature), trust, where=found.signature)
        assert (auth.method, auth.shard_size) == ("shards", 1024)
        data = path.read_bytes()
        auth.check_bytes(data, found.name)
        auth.start_check(data, found.name).result()
        wrong = [data[:-1], data + b"\0", data + bytes(1024), b"\x00" + data[1:]]
        if len(data) > 1024:
            wrong.append(data[:1024])
        for held in wrong:
            if held == data:
                continue
            with pytest.raises(DigestMismatchError):
                auth.check_bytes(held, found.name)
            with pytest.raises(DigestMismatchError):
                auth.start_check(held, found.name).result()
    auth = authenticate(read_signature(tmp_path / "model.sig"), trust, where="model.sig")
    with pytest.raises(MissingFileError):  # model-signing lists no shards for an empty file
        auth.check_bytes(b"", "empty")


def test_safeload_cli_key_files_work_with_model_signing(
    ecdsa_key: tuple[Path, Path], model_file: Path
) -> None:
    """safeload's PEM key files are standard: model_signing signs with the private one."""
    private, _ = ecdsa_key
    sig = model_file.with_name("model.pkl.sig")
    done = model_signing_cli(
        "sign", "key", model_file, "--private_key", private, "--signature", sig
    )
    assert done.returncode == 0, done.stdout + done.stderr
    hint = json.loads(sig.read_text())["verificationMaterial"]["publicKey"]["hint"]
    assert hint == load_signer(private).key_id


def _statement(sig: Path) -> dict[str, object]:
    import base64

    envelope = json.loads(sig.read_text())["dsseEnvelope"]
    result: dict[str, object] = json.loads(base64.b64decode(envelope["payload"]))
    return result
