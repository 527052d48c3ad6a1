"""The `safeload` command: exit codes, flags, config, output, and the real console script."""

from __future__ import annotations

import collections
import gzip
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from safeload import FileReport, ScanReport, Verdict, _cli
from safeload._cli import main

# posix.system('echo hi'), protocol 4, opcode by opcode.
SYSTEM = (
    b"\x80\x04"  # PROTO 4
    b"\x95\x1e\x00\x00\x00\x00\x00\x00\x00"  # FRAME 30
    b"\x8c\x05posix\x94"  # SHORT_BINUNICODE 'posix', MEMOIZE
    b"\x8c\x06system\x94"  # SHORT_BINUNICODE 'system', MEMOIZE
    b"\x93\x94"  # STACK_GLOBAL, MEMOIZE
    b"\x8c\x07echo hi\x94"  # SHORT_BINUNICODE 'echo hi', MEMOIZE
    b"\x85\x94"  # TUPLE1, MEMOIZE
    b"R\x94"  # REDUCE, MEMOIZE
    b"."  # STOP
)
SYSTEM_OFFSET = SYSTEM.index(b"\x93")

# mylib.models.TinyNet instantiated with NEWOBJ, protocol 2.
UNKNOWN = b"\x80\x02cmylib.models\nTinyNet\nq\x00)\x81q\x01."
UNKNOWN_NAME = "mylib.models.TinyNet"

# A protocol 2 list cut off in the middle.
TRUNCATED = b"\x80\x02]q\x00(K\x01K"


def benign_bytes() -> bytes:
    return pickle.dumps(
        {"weights": [0.5, -1.25], "meta": collections.OrderedDict(name="net", layers=3)},
        protocol=pickle.HIGHEST_PROTOCOL,
    )


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """One file per verdict, in a cwd with no pyproject.toml above it that we control."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    out = {
        "safe": tmp_path / "benign.pkl",
        "dangerous": tmp_path / "hostile.pkl",
        "unknown": tmp_path / "custom.pkl",
        "invalid": tmp_path / "cut.pkl",
    }
    out["safe"].write_bytes(benign_bytes())
    out["dangerous"].write_bytes(SYSTEM)
    out["unknown"].write_bytes(UNKNOWN)
    out["invalid"].write_bytes(TRUNCATED)
    return out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["scan", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_safe_file_exits_0(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(files["safe"])]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{files['safe']}: SAFE (pickle, 1 pickle, ")
    assert out.splitlines()[-1] == "summary: 1 file: 1 safe (0 skipped, 0 errors)"


def test_dangerous_file_names_file_offset_global_rule_and_fix(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(files["dangerous"])]) == 1
    out = capsys.readouterr().out
    path = str(files["dangerous"])
    assert f"{path}: DANGEROUS (pickle, 1 pickle, " in out
    assert f"  {path} @ offset {SYSTEM_OFFSET}: SL101 command-execution [critical]" in out
    assert "posix.system called with ('echo hi',)" in out
    assert "    fix: Do not load this file." in out
    assert "    docs: safeload rules SL101" in out
    assert out.splitlines()[-1] == "summary: 1 file: 1 dangerous (0 skipped, 0 errors)"


def test_unknown_global_fix_is_the_exact_allow_flag(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(files["unknown"])]) == 1
    out = capsys.readouterr().out
    assert "SL401 unknown-global [medium]" in out
    assert f"--allow '{UNKNOWN_NAME}'" in out
    # Following the advice makes the file pass.
    assert main(["scan", "--allow", UNKNOWN_NAME, str(files["unknown"])]) == 0
    assert "1 safe" in capsys.readouterr().out


def test_fail_on_dangerous_relaxes_only_unknown(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {"safe": 0, "unknown": 0, "invalid": 1, "dangerous": 1}
    for verdict, code in expected.items():
        assert main(["scan", "--fail-on", "dangerous", str(files[verdict])]) == code, verdict
    expected_default = {"safe": 0, "unknown": 1, "invalid": 1, "dangerous": 1}
    for verdict, code in expected_default.items():
        assert main(["scan", str(files[verdict])]) == code, verdict
    capsys.readouterr()


def test_one_bad_file_among_many_fails(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, *(str(p) for p in files.values()))
    assert code == 1
    verdicts = {Path(f["path"]).name: f["verdict"] for f in report["files"]}
    assert verdicts == {
        "benign.pkl": "safe",
        "hostile.pkl": "dangerous",
        "custom.pkl": "unknown",
        "cut.pkl": "invalid",
    }
    assert [f["path"] for f in report["files"]] == sorted(f["path"] for f in report["files"])
    assert report["summary"]["files"] == 4
    assert report["summary"]["dangerous"] == 1


def test_json_contract(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, str(files["dangerous"]), str(files["safe"]))
    assert code == 1
    assert report["version"] == 2
    assert isinstance(report["summary"], dict)
    for f in report["files"]:
        assert isinstance(f["path"], str)
        assert f["verdict"] in ("safe", "not-a-pickle", "unknown", "dangerous", "invalid")
        assert isinstance(f["format"], str)
        for finding in f["findings"]:
            assert isinstance(finding["rule"], str)
            assert isinstance(finding["severity"], str)
            assert isinstance(finding["message"], str)
            assert isinstance(finding["location"], str)
            assert finding["offset"] is None or isinstance(finding["offset"], int)
            assert finding["global"] is None or isinstance(finding["global"], str)
    (hostile,) = [f for f in report["files"] if f["verdict"] == "dangerous"]
    (finding,) = hostile["findings"]
    assert (finding["rule"], finding["global"], finding["offset"]) == (
        "SL101",
        "posix.system",
        SYSTEM_OFFSET,
    )
    assert finding["location"] == str(files["dangerous"])


def test_missing_path_is_an_io_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = files["safe"].parent / "nope.pkl"
    assert main(["scan", str(files["safe"]), str(missing)]) == 2
    out = capsys.readouterr().out
    assert f"{missing}: ERROR: no such file or directory" in out
    # The readable file is still reported.
    assert f"{files['safe']}: SAFE" in out


def test_missing_path_json_reports_on_stderr(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = files["safe"].parent / "nope.pkl"
    assert main(["scan", "--format", "json", str(missing)]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["errors"] == {str(missing): "no such file or directory"}
    assert f"safeload: error: {missing}: no such file or directory" in captured.err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_io_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:  # pragma: no cover - CI runs as root here
    files["safe"].chmod(0)
    assert main(["scan", str(files["safe"])]) == 2
    assert "cannot read" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["scan"],
        ["scan", "--format", "xml", "x.pkl"],
        ["scan", "--fail-on", "never", "x.pkl"],
        ["scan", "--jobs", "0", "x.pkl"],
        ["scan", "--max-opcodes", "lots", "x.pkl"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("safeload ")
    assert main(["scan", "--help"]) == 0
    assert "--fail-on" in capsys.readouterr().out


def test_policy_errors_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--allow", "not a global!", str(files["safe"])]) == 2
    assert "safeload: error: --allow" in capsys.readouterr().err
    missing_rules = files["safe"].parent / "missing-rules.toml"
    assert main(["scan", "--rules", str(missing_rules), str(files["safe"])]) == 2
    assert f"cannot read rules file {missing_rules}" in capsys.readouterr().err
    bad = files["safe"].parent / "bad.toml"
    bad.write_text('[[rule]]\nid = "SL999"\nname = "mine"\nwhy = "x"\nglobals = ["a.b"]\n')
    assert main(["scan", "--rules", str(bad), str(files["safe"])]) == 2
    assert "reserved" in capsys.readouterr().err


def test_user_rules_file_adds_deny_rule_and_allow(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules = files["safe"].parent / "team-rules.toml"
    rules.write_text(
        "[[rule]]\n"
        'id = "ACME001"\n'
        'name = "tiny-net"\n'
        'severity = "critical"\n'
        'why = "TinyNet runs shell hooks on load."\n'
        'fix = "Use the ONNX export."\n'
        f'globals = ["{UNKNOWN_NAME}"]\n'
    )
    code, report = run_json(capsys, "--rules", str(rules), str(files["unknown"]))
    assert code == 1
    (finding,) = report["files"][0]["findings"]
    assert report["files"][0]["verdict"] == "dangerous"
    assert (finding["rule"], finding["severity"], finding["fix"]) == (
        "ACME001",
        "critical",
        "Use the ONNX export.",
    )
    allow_file = files["safe"].parent / "allow.toml"
    allow_file.write_text(f'allow = ["{UNKNOWN_NAME}"]\n')
    assert main(["scan", "--rules", str(allow_file), str(files["unknown"])]) == 0
    capsys.readouterr()


def test_pyproject_table_is_read_unless_no_config(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = files["safe"].parent / "pyproject.toml"
    pyproject.write_text(f'[tool.safeload]\nallow = ["{UNKNOWN_NAME}"]\n')
    assert main(["scan", str(files["unknown"])]) == 0
    assert main(["scan", "--no-config", str(files["unknown"])]) == 1
    pyproject.write_text('[tool.safeload]\nfail-on = "dangerous"\n')
    assert main(["scan", str(files["unknown"])]) == 0
    assert main(["scan", "--fail-on", "unknown", str(files["unknown"])]) == 1
    pyproject.write_text("[tool.safeload]\nallow = 3\n")
    assert main(["scan", str(files["safe"])]) == 2
    assert "tool.safeload.allow must be a list" in capsys.readouterr().err


def test_pyproject_exclude_applies_to_directory_walks_only(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fixtures = files["safe"].parent / "fixtures"
    fixtures.mkdir()
    (fixtures / "evil.pkl").write_bytes(SYSTEM)
    (files["safe"].parent / "pyproject.toml").write_text(
        '[tool.safeload]\nexclude = ["fixtures/*"]\n'
    )
    code, report = run_json(capsys, str(fixtures.parent / "fixtures"), str(files["safe"]))
    assert code == 0
    assert report["summary"]["skipped"] == 1
    # Named explicitly, the file is always scanned.
    assert main(["scan", str(fixtures / "evil.pkl")]) == 1
    capsys.readouterr()


def test_output_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    target = files["safe"].parent / "report.sarif"
    assert main(["scan", "--format", "sarif", "-o", str(target), str(files["dangerous"])]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "summary: 1 file: 1 dangerous" in captured.err
    sarif = json.loads(target.read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "SL101"
    unwritable = files["safe"].parent / "no-such-dir" / "report.json"
    assert main(["scan", "-o", str(unwritable), str(files["safe"])]) == 2
    assert f"cannot write {unwritable}" in capsys.readouterr().err


def test_quiet_lists_only_files_that_are_not_safe(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--quiet", str(files["safe"]), str(files["dangerous"])]) == 1
    out = capsys.readouterr().out
    assert str(files["safe"]) not in out
    assert f"{files['dangerous']}: DANGEROUS" in out
    assert "summary: 2 files: 1 safe, 1 dangerous" in out


def test_explain_decompiles_only_files_that_are_not_safe(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "--explain", str(files["dangerous"]), str(files["safe"]))
    assert code == 1
    by_verdict = {f["verdict"]: f for f in report["files"]}
    assert "explanation" not in by_verdict["safe"]
    explanation = by_verdict["dangerous"]["explanation"]
    assert "from posix import system" in explanation
    assert "system('echo hi')" in explanation
    assert main(["scan", "--explain", str(files["dangerous"])]) == 1
    out = capsys.readouterr().out
    assert "    | _var0 = system('echo hi')" in out


def test_text_has_no_colour_when_not_a_terminal(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["scan", str(files["dangerous"])])
    assert "\x1b[" not in capsys.readouterr().out


def test_directory_walk_counts_skipped(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["safe"].parent
    (root / "notes.txt").write_text("Nothing to see here.\n")
    (root / "weights").write_bytes(benign_bytes())  # no extension: found by content
    code, report = run_json(capsys, str(root))
    assert code == 1
    names = {Path(f["path"]).name for f in report["files"]}
    assert {"benign.pkl", "hostile.pkl", "custom.pkl", "cut.pkl", "weights"} == names
    assert report["summary"]["skipped"] == 2  # notes.txt and pyproject.toml


def test_jobs_give_the_same_report(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["safe"].parent
    for i in range(12):
        (root / f"copy{i}.pkl").write_bytes(SYSTEM if i % 3 == 0 else benign_bytes())
    serial = run_json(capsys, "--jobs", "1", str(root))
    parallel = run_json(capsys, "--jobs", "2", str(root))
    assert serial == parallel
    assert serial[1]["summary"]["files"] == 16


def test_rules_command_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    from safeload import Policy

    policy = Policy.default()
    assert main(["rules", "--no-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(policy.rules)
    sl101 = next(line for line in lines if line.startswith("SL101"))
    assert "command-execution" in sl101
    assert "critical" in sl101
    assert main(["rules", "--no-config", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in data} == set(policy.rules)


def _console_script() -> str:
    found = shutil.which("safeload", path=sysconfig.get_path("scripts"))
    assert found, "the safeload console script is not installed next to this Python"
    return found


def test_installed_console_script(files: dict[str, Path]) -> None:
    done = subprocess.run(
        [
            _console_script(),
            "scan",
            "--format",
            "json",
            str(files["safe"]),
            str(files["dangerous"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [f["verdict"] for f in report["files"]] == ["safe", "dangerous"]
    done = subprocess.run(
        [_console_script(), "scan", str(files["safe"])], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    done = subprocess.run(
        [_console_script(), "scan", "--bogus", str(files["safe"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr


def test_python_dash_m(files: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "safeload", "scan", str(files["dangerous"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "SL101 command-execution" in done.stdout


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_many_files() -> None:
    stream = FakeTerminal()
    draw = _cli._progress_bar(stream)
    for done in range(1, 6):
        draw(done, 5)
    assert stream.getvalue() == ""
    for done in range(1, 41):
        draw(done, 40)
    out = stream.getvalue()
    assert "\rscanning [" + "#" * 15 + "." * 15 + "] 20/40 files" in out
    assert "] 40/40 files" in out
    assert out.endswith("\r")  # the bar is wiped at the end


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _cli._use_color(FakeTerminal())
    assert not _cli._use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _cli._use_color(FakeTerminal())


def test_explain_reads_containers_as_the_scan_does(tmp_path: Path) -> None:
    packed = tmp_path / "model.pkl.gz"
    packed.write_bytes(gzip.compress(SYSTEM))
    report = ScanReport(files=(FileReport(str(packed), Verdict.DANGEROUS, "pickle+gzip", ()),))
    (explained,) = _cli._with_explanations(report, 1).files
    assert explained.explanation is not None
    assert "system('echo hi')" in explained.explanation


def test_max_opcodes_limit_makes_the_file_invalid(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "--max-opcodes", "3", str(files["safe"]))
    assert code == 1
    (file,) = report["files"]
    assert file["verdict"] == "invalid"
    assert [f["rule"] for f in file["findings"]] == ["SL303"]
    assert main(["scan", "--max-opcodes", "100000", str(files["safe"])]) == 0
    capsys.readouterr()


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_progress_bar_goes_to_a_terminal_stderr_only(tmp_path: Path) -> None:
    import pty

    for i in range(25):
        (tmp_path / f"m{i:02d}.pkl").write_bytes(benign_bytes())
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [_console_script(), "scan", "--jobs", "2", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            check=False,
        )
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO once the terminal side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"] 25/25 files" in seen
    assert "scanning [" not in done.stdout
    assert done.stdout.splitlines()[-1] == "summary: 25 files: 25 safe (0 skipped, 0 errors)"


def test_sarif_uris_are_relative_to_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".git").mkdir()
    models = tmp_path / "models" / "v1"
    models.mkdir(parents=True)
    (models / "evil.pkl").write_bytes(SYSTEM)
    monkeypatch.chdir(models)
    assert main(["scan", "--no-config", "--format", "sarif", "evil.pkl"]) == 1
    log = json.loads(capsys.readouterr().out)
    artifact = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "models/v1/evil.pkl", "uriBaseId": "%SRCROOT%"}
    assert _cli.source_root(tmp_path / "elsewhere") == tmp_path


def test_sniff_chooses_named_files_by_content(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["safe"].parent
    notes = root / "notes.md"
    notes.write_text("# Notes\nNothing here.\n")
    disguised = root / "weights.txt"
    disguised.write_bytes(SYSTEM)
    code, report = run_json(capsys, "--sniff", str(notes), str(disguised), str(files["safe"]))
    assert code == 1
    assert [Path(f["path"]).name for f in report["files"]] == ["benign.pkl", "weights.txt"]
    assert report["summary"]["skipped"] == 1
    assert report["skipped"] == [str(notes)]
    # Without --sniff a named text file is scanned, and is not a pickle: exit 0
    # unless --strict.
    assert main(["scan", str(notes)]) == 0
    assert "NOT-A-PICKLE (text)" in capsys.readouterr().out
    assert main(["scan", "--strict", str(notes)]) == 1
    assert "SL305" in capsys.readouterr().out


def test_signing_commands_are_wired_in(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["safe"].parent
    key = root / "team.key"
    assert main(["keygen", "--type", "ed25519", "--out", str(key)]) == 0
    assert main(["sign", str(files["safe"]), "--key", str(key)]) == 0
    capsys.readouterr()
    assert main(["verify", str(files["safe"]), "--key", f"{key}.pub"]) == 0
    assert capsys.readouterr().out.startswith(f"signature valid: {files['safe']}")
    files["safe"].write_bytes(benign_bytes() + b"\x00")
    assert main(["verify", str(files["safe"]), "--key", f"{key}.pub"]) == 1
    assert "not verified (digest mismatch)" in capsys.readouterr().err


def _terminal_writes(source: str) -> list[tuple[int, str]]:
    """Calls to print() and uses of sys.stdout / sys.stderr, outside any function named _child."""
    import ast

    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == "_child":
            return  # runs in a child process whose stdout is a pipe to the parent
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            found.append((node.lineno, "print()"))
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("stdout", "stderr")
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            found.append((node.lineno, f"sys.{node.attr}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_only_the_command_line_modules_write_to_the_terminal() -> None:
    package = Path(_cli.__file__).parent.parent
    terminal_modules = {"_cli/__init__.py", "_cli/sign.py", "_cli/hooks.py", "_cli/batch.py"}
    offenders = {
        str(path.relative_to(package)): writes
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).as_posix() not in terminal_modules
        and (writes := _terminal_writes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
    assert _terminal_writes("import sys\nprint(1)\nsys.stderr.write('x')\n") == [
        (2, "print()"),
        (3, "sys.stderr"),
    ]


def test_dash_reads_standard_input(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SYSTEM)))
    code, report = run_json(capsys, "--explain", "-", str(files["safe"]))
    assert code == 1
    assert [(f["path"], f["verdict"]) for f in report["files"]] == [
        ("<stdin>", "dangerous"),
        (str(files["safe"]), "safe"),
    ]
    stdin_file = report["files"][0]
    assert stdin_file["findings"][0]["location"] == "<stdin>"
    assert stdin_file["findings"][0]["offset"] == SYSTEM_OFFSET
    assert "system('echo hi')" in stdin_file["explanation"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(benign_bytes())))
    assert main(["scan", "-"]) == 0
    assert capsys.readouterr().out.startswith("<stdin>: SAFE (pickle, 1 pickle, ")


def test_rules_shows_one_full_entry(capsys: pytest.CaptureFixture[str]) -> None:
    from safeload._cli import main

    assert main(["rules", "SL101"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SL101 command-execution\n")
    assert "why: " in out and "fix: " in out and "os.system" in out
    assert main(["rules", "command-execution"]) == 0
    assert capsys.readouterr().out == out
    assert main(["rules", "SL999"]) == 2
