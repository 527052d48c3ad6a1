"""The real pre-commit, in a throwaway git repository, runs `safeload scan` on committed models."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

from safeload.scan._batch import MODEL_SUFFIXES

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sysconfig.get_path("scripts")

# os.system('touch pwned') at protocol 2: GLOBAL, BINUNICODE, TUPLE1, REDUCE, STOP.
HOSTILE = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R."


def tool(name: str) -> str:
    found = shutil.which(name, path=SCRIPTS) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def manifest_hook(hook_id: str = "safeload-scan") -> dict:  # type: ignore[type-arg]
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == hook_id]
    return hook  # type: ignore[no-any-return]


def test_manifest() -> None:
    hook = manifest_hook()
    assert hook["entry"] == "safeload scan --quiet"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    assert hook["require_serial"] is False
    # The hook's regex and the directory walk agree on what a model file is called.
    for suffix in MODEL_SUFFIXES:
        assert re.search(hook["files"], f"models/net{suffix}"), suffix
        assert re.search(hook["files"], f"models/NET{suffix.upper()}"), suffix
    assert not re.search(hook["files"], "README.md")
    strict = manifest_hook("safeload-scan-all")
    assert strict["entry"] == "safeload scan --sniff --quiet"
    assert "files" not in strict


@pytest.fixture(params=["safeload-scan"])
def repo(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict[str, str]]:
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
    }
    env.pop("PRE_COMMIT", None)
    hook = manifest_hook(request.param)
    extra = hook["entry"].split()[2:]  # flags after `safeload scan`
    config = {
        "repos": [
            {
                "repo": "local",
                "hooks": [
                    {
                        "id": hook["id"],
                        "name": hook["name"],
                        "entry": shlex.join([safeload, "scan", *extra]),
                        "language": "system",
                        "pass_filenames": True,
                        **({"files": hook["files"]} if "files" in hook else {}),
                    }
                ],
            }
        ]
    }
    (work / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([git, "init", "-q", "-b", "main"], cwd=work, env=env, check=True)
    subprocess.run([pre_commit, "install"], cwd=work, env=env, check=True, capture_output=True)
    subprocess.run([git, "add", ".pre-commit-config.yaml"], cwd=work, env=env, check=True)
    env["GIT"] = git
    return work, env


def commit(work: Path, env: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    git = env["GIT"]
    subprocess.run([git, "add", *names], cwd=work, env=env, check=True)
    return subprocess.run(
        [git, "commit", "-m", f"add {' '.join(names)}"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # git shows hook output on stderr
        text=True,
        check=False,
    )


def commits(work: Path, env: dict[str, str]) -> int:
    done = subprocess.run(
        [env["GIT"], "rev-list", "--count", "HEAD"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    return int(done.stdout) if done.returncode == 0 else 0


def test_hook_passes_benign_and_blocks_hostile(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    (work / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5], "name": "net"}))
    done = commit(work, env, "model.pkl")
    assert done.returncode == 0, done.stdout
    assert "Passed" in done.stdout
    assert commits(work, env) == 1

    (work / "checkpoint.pt").write_bytes(HOSTILE)
    done = commit(work, env, "checkpoint.pt")
    assert done.returncode != 0
    assert "Failed" in done.stdout
    assert "checkpoint.pt: DANGEROUS" in done.stdout
    assert "SL101 command-execution [critical]" in done.stdout
    assert "os.system called with ('touch pwned',)" in done.stdout
    assert commits(work, env) == 1  # the commit was refused
    assert not (work / "pwned").exists()


def test_hook_skips_files_that_are_not_models(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    (work / "README.md").write_text("# models\n")
    done = commit(work, env, "README.md")
    assert done.returncode == 0, done.stdout
    assert "(no files to check)Skipped" in done.stdout


@pytest.mark.parametrize("repo", ["safeload-scan-all"], indirect=True)
def test_strict_hook_finds_pickles_by_content(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    (work / "README.md").write_text("# models\n")
    (work / "model.pkl").write_bytes(pickle.dumps([1.5, 2.5]))
    done = commit(work, env, "README.md", "model.pkl")
    assert done.returncode == 0, done.stdout
    assert "Passed" in done.stdout

    (work / "weights.txt").write_bytes(HOSTILE)  # a pickle under a name no regex expects
    done = commit(work, env, "weights.txt")
    assert done.returncode != 0
    assert "weights.txt: DANGEROUS" in done.stdout
    assert "SL101 command-execution [critical]" in done.stdout
    assert commits(work, env) == 1
