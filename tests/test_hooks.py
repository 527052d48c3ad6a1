"""The `safeload-verify` and (quiet) `safeload-scan` hooks under the real pre-commit.

A throwaway git repository trusts a team key through `[tool.safeload] trust`;
the hooks run as the manifest (.pre-commit-hooks.yaml) declares them, with the
installed `safeload` script. An unsigned model is refused, the same model
signed is accepted, and a signed model changed afterwards is refused with the
reason; the scan hook prints only the files that fail and one summary line.
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from tests.test_precommit import HOSTILE, commit, commits, manifest_hook, tool


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    git = tool("git")
    pre_commit = tool("pre-commit")
    safeload = tool("safeload")
    work = tmp_path / "repo"
    work.mkdir()
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "NO_COLOR": "1",
        "GIT": git,
    }
    env.pop("PRE_COMMIT", None)
    hooks = []
    for hook_id in ("safeload-scan", "safeload-verify"):
        hook = manifest_hook(hook_id)
        command, *flags = hook["entry"].split()[1:]
        hooks.append(
            {
                "id": hook["id"],
                "name": hook["name"],
                "entry": shlex.join([safeload, command, *flags]),
                "language": "system",
                "pass_filenames": True,
                "files": hook["files"],
            }
        )
    config = {"repos": [{"repo": "local", "hooks": hooks}]}
    (work / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    keys = work / "keys"
    keys.mkdir()
    subprocess.run(
        [safeload, "keygen", "--type", "ed25519", "--out", str(tmp_path / "team.key")],
        check=True,
        capture_output=True,
    )
    (keys / "team.pub").write_bytes((tmp_path / "team.key.pub").read_bytes())
    (work / "pyproject.toml").write_text('[tool.safeload]\ntrust = ["keys/team.pub"]\n')
    subprocess.run([git, "init", "-q", "-b", "main"], cwd=work, env=env, check=True)
    subprocess.run([pre_commit, "install"], cwd=work, env=env, check=True, capture_output=True)
    subprocess.run(
        [git, "add", ".pre-commit-config.yaml", "pyproject.toml", "keys"], cwd=work, env=env
    )
    env["SAFELOAD"] = safeload
    env["KEY"] = str(tmp_path / "team.key")
    return work, env


def sign(work: Path, env: dict[str, str], name: str, *flags: str) -> None:
    subprocess.run(
        [env["SAFELOAD"], "sign", name, "--key", env["KEY"], *flags],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )


def test_manifest_declares_the_verify_hook() -> None:
    hook = manifest_hook("safeload-verify")
    assert hook["entry"] == "safeload check-signatures"
    assert hook["pass_filenames"] is True
    assert hook["files"] == manifest_hook("safeload-scan")["files"]


def test_unsigned_refused_signed_accepted_tampered_refused(
    repo: tuple[Path, dict[str, str]],
) -> None:
    work, env = repo
    (work / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5]}))
    done = commit(work, env, "model.pkl")
    assert done.returncode != 0, done.stdout
    assert "model.pkl: NOT VERIFIED (no signature)" in done.stdout
    assert commits(work, env) == 0

    sign(work, env, "model.pkl")
    done = commit(work, env, "model.pkl", "model.pkl.sig")
    assert done.returncode == 0, done.stdout
    assert commits(work, env) == 1

    (work / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5, 9.5]}))
    done = commit(work, env, "model.pkl")
    assert done.returncode != 0, done.stdout
    assert "model.pkl: NOT VERIFIED (changed since it was signed)" in done.stdout
    assert commits(work, env) == 1


def test_key_the_repository_does_not_trust_is_refused(
    repo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    work, env = repo
    other = tmp_path / "other.key"
    subprocess.run(
        [env["SAFELOAD"], "keygen", "--type", "ed25519", "--out", str(other)],
        check=True,
        capture_output=True,
    )
    (work / "model.pkl").write_bytes(pickle.dumps([1.0]))
    sign(work, {**env, "KEY": str(other)}, "model.pkl")
    done = commit(work, env, "model.pkl", "model.pkl.sig")
    assert done.returncode != 0
    assert "model.pkl: NOT VERIFIED (signed by a key the repository does not trust)" in done.stdout


def test_quiet_scan_hook_prints_only_failing_files(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    names = [f"ok{i}.pkl" for i in range(5)]
    for name in names:
        (work / name).write_bytes(pickle.dumps({"name": name}))
        sign(work, env, name)
    (work / "evil.pkl").write_bytes(HOSTILE)
    sign(work, env, "evil.pkl", "--allow-unsafe")  # signed anyway: the scan hook still fails it
    done = commit(work, env, *names, *(n + ".sig" for n in names), "evil.pkl", "evil.pkl.sig")
    assert done.returncode != 0
    scan_part = done.stdout.split("safeload verify")[0]
    assert "evil.pkl: DANGEROUS" in scan_part
    assert not any(name in scan_part for name in names)  # safe files are not listed
    assert scan_part.count("summary: ") >= 1
    # the verify hook passed (all six are signed) and printed nothing
    assert "safeload verify (model files signed by trusted keys)" in done.stdout
    assert done.stdout.rstrip().endswith("Passed")
    assert "NOT VERIFIED" not in done.stdout
