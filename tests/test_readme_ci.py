"""The README's GitHub Actions and GitLab CI jobs, run command by command.

Each job's shell commands (all but `pip install`: safeload is installed) run
in a throwaway git repository: with a signed benign model they all pass and
the SARIF log they write is valid; with an unsigned hostile model the scan
step fails (and still writes its log) and the signature step fails.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from tests.test_precommit import HOSTILE, tool

ROOT = Path(__file__).resolve().parent.parent


def readme_yaml(marker: str) -> object:
    """The YAML block of the README whose first line is the comment `marker`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(f"# {marker}\n")]
    return yaml.safe_load(block)


def github_commands() -> list[str]:
    workflow = readme_yaml(".github/workflows/safeload.yml")
    assert isinstance(workflow, dict)
    steps = workflow["jobs"]["models"]["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/checkout", "actions/setup-python", "github/codeql-action/upload-sarif"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action"))
    assert upload["if"] == "always()" and upload["with"]["sarif_file"] == "safeload.sarif"
    return [s["run"] for s in steps if "run" in s]


def gitlab_commands() -> list[str]:
    job = readme_yaml(".gitlab-ci.yml")
    assert isinstance(job, dict)
    assert job["safeload"]["artifacts"]["when"] == "always"
    return list(job["safeload"]["script"])


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    git = tool("git")
    safeload = tool("safeload")
    work = tmp_path / "repo"
    (work / "models").mkdir(parents=True)
    (work / "keys").mkdir()
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": f"{Path(safeload).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    key = tmp_path / "team.key"
    subprocess.run(
        [safeload, "keygen", "--type", "ed25519", "--out", str(key)],
        check=True,
        capture_output=True,
    )
    (work / "keys" / "team.pub").write_bytes((tmp_path / "team.key.pub").read_bytes())
    (work / "pyproject.toml").write_text('[tool.safeload]\ntrust = ["keys/team.pub"]\n')
    (work / "models" / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5]}))
    subprocess.run(
        [safeload, "sign", "models/model.pkl", "--key", str(key)],
        cwd=work,
        check=True,
        capture_output=True,
    )
    subprocess.run([git, "init", "-q", "-b", "main"], cwd=work, env=env, check=True)
    subprocess.run([git, "add", "."], cwd=work, env=env, check=True)
    return work, env


def run(commands: list[str], work: Path, env: dict[str, str]) -> list[tuple[int, str]]:
    codes = []
    for command in commands:
        if command.startswith("python -m pip install"):
            continue  # safeload is installed in this environment
        done = subprocess.run(
            command, shell=True, cwd=work, env=env, capture_output=True, text=True
        )
        codes.append((done.returncode, done.stdout + done.stderr))
    return codes


@pytest.mark.parametrize(
    ("commands", "sarif"),
    [(github_commands, "safeload.sarif"), (gitlab_commands, "gl-safeload.sarif")],
)
def test_ci_job_passes_a_signed_model_and_fails_a_hostile_one(
    commands: object, sarif: str, repo: tuple[Path, dict[str, str]]
) -> None:
    work, env = repo
    steps = commands()  # type: ignore[operator]
    assert [code for code, _ in run(steps, work, env)] == [0, 0]
    log = json.loads((work / sarif).read_text())
    assert log["version"] == "2.1.0" and log["runs"][0]["results"] == []

    (work / "models" / "evil.pkl").write_bytes(HOSTILE)
    subprocess.run([tool("git"), "add", "models/evil.pkl"], cwd=work, env=env, check=True)
    (scan, _scan_out), (check, check_out) = run(steps, work, env)
    assert scan == 1  # the job fails; the log is still written for the upload step
    assert check != 0  # xargs says 123 when the command it runs exits 1
    assert "models/evil.pkl: NOT VERIFIED (no signature)" in check_out
    log = json.loads((work / sarif).read_text())
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["SL101"]
