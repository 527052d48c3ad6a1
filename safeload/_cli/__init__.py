"""The `safeload` command: the only module that writes to stdout or stderr.

Exit codes: 0 every file is safe (or not-a-pickle), 1 some file is not (see
`--fail-on`, `--strict`), 2 usage, configuration or I/O error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import __version__
from .._formats import DEFAULT_MAX_EXPANSION, EXPANSION_FLOOR, MAX_EXPANDED
from .._machine.walker import DEFAULT_MAX_OPCODES
from .._names import canonical
from ..errors import SafeloadError
from ..policy import DEFAULT_MAX_LOAD_COST, LOAD_COST_FLOOR, Policy, Rule, UserConfig
from ..report import FileReport, ScanReport, Verdict
from ..scan import scan_bytes
from ..scan._batch import scan_paths
from .hooks import add_parser as add_hook_parser
from .render import FORMATS, text
from .sign import add_parsers as add_signing_parsers

if TYPE_CHECKING:
    from .demo import Demo

__all__ = ["entry", "main"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

STDIN = "<stdin>"
"""How standard input (`safeload scan -`) is named in reports."""

PROGRESS_MIN_FILES = 20
"""A progress bar is drawn (on a terminal) only for at least this many files."""

_FAILING = {
    "not-a-pickle": frozenset(
        {Verdict.NOT_A_PICKLE, Verdict.UNKNOWN, Verdict.INVALID, Verdict.DANGEROUS}
    ),
    "unknown": frozenset({Verdict.UNKNOWN, Verdict.INVALID, Verdict.DANGEROUS}),
    "dangerous": frozenset({Verdict.INVALID, Verdict.DANGEROUS}),
}
"""The verdicts each `--fail-on` level fails on (`policy.FAIL_ON_LEVELS`)."""


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: `sys.argv[1:]`) and return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(
            "safeload: error: a command is required (scan, rules, demo, keygen, sign, verify)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SafeloadError as exc:
        print(f"safeload: error: {exc.diagnostics()}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`safeload scan . | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("safeload: interrupted", file=sys.stderr)
        return 130


# -- argument parsing -----------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safeload",
        description="Keep pickle-based model files (pickle, joblib, PyTorch, numpy, pandas) "
        "safe to load. `scan` reads a file's opcodes and reports every global it would import "
        "or call, without running anything: safe (every global allowlisted), unknown, invalid "
        "or dangerous, or not-a-pickle for files no loader unpickles. `rules` lists the rules behind the findings and suggests allow entries "
        "for files you trust. `keygen`, `sign` and `verify` sign model files and check "
        "signatures (OpenSSF model-signing format); `check-signatures` checks many files "
        "against the keys a repository trusts (the safeload-verify hook). `demo` shows all "
        "three parts, including the guarded loader (`safeload.load` in Python), on a real "
        "scikit-learn model and hostile files.",
        epilog="Run `safeload COMMAND --help` for a command's options. Settings: [tool.safeload] "
        "in pyproject.toml. Exit codes: 0 success, 1 findings or not verified, 2 usage, "
        "configuration or I/O error.",
    )
    parser.add_argument("--version", action="version", version=f"safeload {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="scan files and directories",
        description="Scan files and directories (recursively). Named files are always scanned; "
        "in directories, files are chosen by extension and content.",
        epilog="exit codes: 0 all files safe or not-a-pickle, 1 a file is not safe (see "
        "--fail-on, --strict), 2 usage, configuration or I/O error",
    )
    scan.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        type=_path_or_url,
        help="file or directory; - reads standard input; or a URL (s3://, gs://, az://, hf://, "
        "https://, file://: read in ranges, needs safeload[remote])",
    )
    scan.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    scan.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report to FILE")
    scan.add_argument(
        "--fail-on",
        choices=sorted(_FAILING),
        default=None,
        help="'unknown' (default): fail on unknown, invalid and dangerous files, not on files "
        "that are no pickle at all (not-a-pickle: configs, tokenizers, text, images); "
        "'dangerous': fail only on dangerous or invalid files; 'not-a-pickle': also fail on "
        "not-a-pickle files (as --strict)",
    )
    scan.add_argument(
        "--strict",
        action="store_true",
        help="fail on every file that is not safe, not-a-pickle files included "
        "(--fail-on not-a-pickle)",
    )
    _policy_arguments(scan)
    scan.add_argument(
        "--max-opcodes",
        type=_positive,
        default=DEFAULT_MAX_OPCODES,
        metavar="N",
        help=f"opcodes analyzed per file before giving up (default: {DEFAULT_MAX_OPCODES})",
    )
    scan.add_argument(
        "--jobs",
        "-j",
        type=_positive,
        default=None,
        metavar="N",
        help="worker processes (default: one per core)",
    )
    scan.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="time one file's scan may take; each file is then scanned in a worker process, "
        "and a file over the limit is invalid (SL303) while the others are still scanned "
        "(default: no limit, or timeout under [tool.safeload])",
    )
    scan.add_argument(
        "--explain",
        action="store_true",
        help="for files that are not safe, show what loading them would run (fickling's decompiler)",
    )
    scan.add_argument(
        "--quiet", "-q", action="store_true", help="text format: list only files that are not safe"
    )
    scan.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files and folders matching GLOB in directory walks (relative path or "
        "name, e.g. 'tests/fixtures/*'); repeatable; adds to exclude under [tool.safeload]",
    )
    scan.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symlinked directories in directory walks (a link back to a folder "
        "already walked is skipped as a symlink loop); by default they are skipped",
    )
    scan.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        help="drop findings of RULE (ID or name, any case); refused for rules that make a "
        "file dangerous or invalid; repeatable",
    )
    scan.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="fail only on findings not recorded in FILE (written by --write-baseline)",
    )
    scan.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="record the current unknown findings in FILE and exit 0 unless a file is "
        "dangerous or invalid (those are never recorded)",
    )
    scan.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="'local' (default): worker processes on this machine; 'dask': fan the files out "
        "over a Dask cluster (pip install 'safeload[dask]'), one result line per file in "
        "--jsonl FILE as files finish, a progress bar on stderr (not with --quiet)",
    )
    scan.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="--engine dask: the Dask scheduler to use (tcp://host:8786); default: a local "
        "cluster of --jobs worker processes",
    )
    scan.add_argument(
        "--jsonl",
        type=Path,
        metavar="FILE",
        help="--engine dask: write each file's result (the JSON report's file object plus "
        "size, mtime_ns, etag and the policy's fingerprint) as one line of FILE",
    )
    scan.add_argument(
        "--resume",
        action="store_true",
        help="--engine dask: keep the lines already in --jsonl FILE and scan only files whose "
        "path, size and mtime or ETag match none of them under the same policy",
    )
    scan.add_argument(
        "--sniff",
        action="store_true",
        help="choose named files as in a directory walk (model extension or pickle/archive "
        "content) and skip the rest; for hooks that pass every changed file",
    )
    scan.set_defaults(handler=_cmd_scan)

    rules = commands.add_parser(
        "rules",
        help="list the rules, or suggest allow entries for trusted files",
        description="List every rule: ID, name, severity, summary. "
        "`safeload rules suggest FILE...` prints a rules file that allows the unknown globals "
        "of files you trust (never a dangerous one); use it with --rules FILE.",
    )
    rules.add_argument(
        "rule_ids",
        nargs="*",
        metavar="RULE",
        help="show the full entry of these rules (ID or name, e.g. SL101)",
    )
    rules.add_argument("--format", choices=("text", "json"), default="text")
    _policy_arguments(rules)
    rules.set_defaults(handler=_cmd_rules)

    demo = commands.add_parser(
        "demo",
        help="scan, sign and load a real scikit-learn model next to hostile files",
        description="Show the three parts on a real scikit-learn model: scan it and two hostile "
        "pickles (whose payloads would only create a canary file), sign and verify it (and "
        "refuse a tampered copy), and load it with the guarded loader (which refuses the "
        "tampered copy and the hostile files; the canary never appears).",
        epilog="exit codes: 0 everything behaved as shown, 1 a step did not",
    )
    demo.add_argument(
        "directory",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="keep the files in DIR (default: a temporary directory)",
    )
    demo.set_defaults(handler=_cmd_demo)
    add_signing_parsers(commands)
    add_hook_parser(commands)
    return parser


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NAME",
        help="treat global NAME (module.name or module:qual.name) as safe; repeatable",
    )
    parser.add_argument(
        "--rules",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="extra rules file (TOML: allow = [...] and [[rule]] tables); repeatable",
    )
    parser.add_argument(
        "--no-config", action="store_true", help="ignore [tool.safeload] in pyproject.toml"
    )
    parser.add_argument(
        "--max-load-cost",
        type=_load_cost,
        default=None,
        metavar="N",
        help="what constructing a file's objects may cost (estimated bytes allocated and "
        f"work), per byte of file (default: {DEFAULT_MAX_LOAD_COST:g}; never less than "
        f"{LOAD_COST_FLOOR >> 20} MiB); over it, SL309",
    )
    parser.add_argument(
        "--max-expansion",
        type=_expansion,
        default=None,
        metavar="N",
        help="decompressed bytes a file may produce per byte of file (default: "
        f"{DEFAULT_MAX_EXPANSION:g}; at least {EXPANSION_FLOOR >> 20} MiB, at most "
        f"{MAX_EXPANDED >> 30} GiB); over it, SL310",
    )


def _load_cost(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def _expansion(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number >= 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {value}")
    return number


def _path_or_url(value: str) -> Path | str:
    """A local path, or a URL kept as text (a Path would fold its `//`)."""
    scheme, sep, _rest = value.partition("://")
    if sep and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme):
        return value
    return Path(value)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def _policy(args: argparse.Namespace) -> tuple[Policy, UserConfig | None]:
    config = None if args.no_config else UserConfig.find(Path.cwd())
    policy = Policy.build(
        allow=args.allow,
        rule_files=args.rules,
        config=config,
        max_load_cost=args.max_load_cost,
        max_expansion=args.max_expansion,
    )
    return policy, config


# -- scan -----------------------------------------------------------------------


def _cmd_scan(args: argparse.Namespace) -> int:
    from .baseline import Baseline, ignorable, without

    policy, config = _policy(args)
    fail_on = (
        "not-a-pickle"
        if args.strict
        else args.fail_on or (config.fail_on if config else None) or "unknown"
    )
    if args.engine == "dask" or args.jsonl or args.resume or args.scheduler:
        from .batch import scan_on_cluster

        return scan_on_cluster(args, policy, config, _FAILING[fail_on])
    ignored = ignorable(policy, args.ignore)
    baseline = Baseline.read(args.baseline) if args.baseline else None
    urls = [p for p in args.paths if isinstance(p, str)]
    paths = [p for p in args.paths if isinstance(p, Path) and str(p) != "-"]
    piped = _scan_stdin(policy, args) if len(paths) + len(urls) != len(args.paths) else None
    report = scan_paths(
        paths,
        policy,
        max_opcodes=args.max_opcodes,
        jobs=args.jobs,
        progress=_progress_bar(sys.stderr) if sys.stderr.isatty() else None,
        exclude=[*(config.exclude if config else ()), *args.exclude],
        exclude_base=config.path.parent if config and config.path else None,
        sniff_named=args.sniff,
        timeout=args.timeout or (config.timeout if config else None),
        follow_symlinks=args.follow_symlinks,
    )
    if args.explain:
        report = _with_explanations(report, args.jobs, policy.max_expansion)
    if urls:
        from ..scan._remote import combine, scan_urls

        remote = scan_urls(
            urls,
            policy,
            max_opcodes=args.max_opcodes,
            exclude=[*(config.exclude if config else ()), *args.exclude],
        )
        report = combine(report, remote)
    if piped is not None:
        report = dataclasses.replace(report, files=(piped, *report.files))
    if args.write_baseline is not None:
        return _write_baseline(report, args.write_baseline)
    report, forgiven = without(report, ignored, baseline)
    to_terminal = args.output is None
    if args.format == "text":
        rendered = text.render(
            report,
            color=to_terminal and _use_color(sys.stdout),
            quiet=args.quiet,
            failing=_FAILING[fail_on],
            forgiven=forgiven,
        )
    elif args.format == "json":
        from .render import json

        rendered = json.render(report)
    else:
        from .render import sarif

        rendered = sarif.render(report, policy, root=source_root(Path.cwd()))
    if to_terminal:
        sys.stdout.write(rendered)
        sys.stdout.flush()
    else:
        try:
            args.output.write_text(rendered, encoding="utf-8")
        except OSError as exc:
            print(
                f"safeload: error: cannot write {args.output}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_ERROR
    # Errors go to stderr in every mode (the text report also lists them in place).
    for path, reason in report.errors.items():
        print(f"safeload: error: {path}: {reason}", file=sys.stderr)
    if not to_terminal:
        print(text.summary_line(report, forgiven), file=sys.stderr)
    return exit_code(report, fail_on)


def _write_baseline(report: ScanReport, path: Path) -> int:
    from .baseline import Baseline

    rendered, refused = Baseline.render(report, path)
    try:
        path.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        print(f"safeload: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    for file, reason in report.errors.items():
        print(f"safeload: error: {file}: {reason}", file=sys.stderr)
    print(f"wrote baseline {path}: {text.summary_line(report)}", file=sys.stderr)
    if refused:
        print(
            f"safeload: {text.plural(refused, 'dangerous or invalid finding')} not recorded "
            "(a baseline never accepts them)",
            file=sys.stderr,
        )
    return exit_code(report, "dangerous")


def source_root(start: Path) -> Path:
    """The enclosing git work tree (what SARIF URIs are relative to), else `start`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _scan_stdin(policy: Policy, args: argparse.Namespace) -> FileReport:
    data = sys.stdin.buffer.read()
    file = scan_bytes(data, policy, location=STDIN, max_opcodes=args.max_opcodes)
    if args.explain and not file.safe and file.verdict is not Verdict.NOT_A_PICKLE:
        from ..scan._explain import explain_data

        explained = explain_data(data, STDIN, max_expansion=policy.max_expansion)
        file = dataclasses.replace(file, explanation=explained)
    return file


def exit_code(report: ScanReport, fail_on: str = "unknown") -> int:
    """2 if a path could not be read, 1 if a file fails `fail_on`, else 0."""
    if report.errors:
        return EXIT_ERROR
    failing = _FAILING[fail_on]
    return EXIT_FINDINGS if any(f.verdict in failing for f in report.files) else EXIT_OK


def _with_explanations(
    report: ScanReport, jobs: int | None, max_expansion: float | None = None
) -> ScanReport:
    from ..scan._explain import explain_file

    def one(file: FileReport) -> FileReport:
        if file.safe or file.verdict is Verdict.NOT_A_PICKLE:  # nothing a loader would run
            return file
        explained = explain_file(Path(file.path), max_expansion=max_expansion)
        return dataclasses.replace(file, explanation=explained)

    from concurrent.futures import ThreadPoolExecutor  # only here: it costs start-up

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        files = tuple(pool.map(one, report.files))
    return dataclasses.replace(report, files=files)


def _use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    width = 30

    def draw(done: int, total: int) -> None:
        if total < PROGRESS_MIN_FILES:
            return
        filled = width * done // total
        stream.write(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
        if done == total:
            stream.write("\r" + " " * (width + 32 + 2 * len(str(total))) + "\r")
        stream.flush()

    return draw


# -- rules ----------------------------------------------------------------------


def _cmd_rules(args: argparse.Namespace) -> int:
    policy, _config = _policy(args)
    if args.rule_ids[:1] == ["suggest"]:
        return _cmd_suggest(policy, [Path(p) for p in args.rule_ids[1:]])
    rules = sorted(policy.rules.values(), key=lambda r: r.id)
    if args.rule_ids:
        from .baseline import lookup

        rules = [lookup(policy, name) for name in args.rule_ids]
        if args.format == "text":
            sys.stdout.write("\n".join(_rule_entry(r) for r in rules))
            return EXIT_OK
    if args.format == "json":
        import json

        data = [
            {
                "id": r.id,
                "name": r.name,
                "severity": r.severity.value,
                "verdict": r.verdict.value if r.verdict else None,
                "summary": r.summary,
                "fix": r.fix,
                "source": r.source,
            }
            for r in rules
        ]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    name_width = max(len(r.name) for r in rules)
    for r in rules:
        verdict = r.verdict.value if r.verdict else "note"
        sys.stdout.write(
            f"{r.id:<8} {r.name:<{name_width}}  {r.severity.value:<8}  {verdict:<12}  {r.summary}\n"
        )
    return EXIT_OK


def _cmd_suggest(policy: Policy, paths: list[Path]) -> int:
    from ..scan._suggest import suggest
    from .render import rules_file

    if not paths:
        sys.stderr.write("safeload: rules suggest needs the files you trust: FILE...\n")
        return EXIT_ERROR
    report = scan_paths(paths, policy)
    for path, reason in report.errors.items():
        sys.stderr.write(f"safeload: {path}: {reason}\n")
    found = suggest(report)
    sys.stdout.write(rules_file.render(found, [str(p) for p in paths]))
    if report.errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if found.refused or found.unreadable else EXIT_OK


def _rule_entry(rule: Rule) -> str:
    verdict = rule.verdict.value if rule.verdict else "none (note)"
    lines = [
        f"{rule.id} {rule.name}",
        f"  severity: {rule.severity.value}; verdict: {verdict}; since {rule.since or '-'}",
        f"  what: {rule.summary}",
        f"  why: {rule.why}",
        f"  fix: {rule.fix}",
    ]
    if rule.globals:
        names = sorted(canonical(m, q) for m, q in rule.globals)
        lines.append(f"  globals: {', '.join(names)}")
    if rule.modules:
        lines.append(f"  modules (and submodules): {', '.join(sorted(rule.modules))}")
    return "\n".join(lines) + "\n"


# -- demo -----------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from .demo import run

    out = sys.stdout
    if args.directory is None:
        with tempfile.TemporaryDirectory(prefix="safeload-demo-") as tmp:
            demo = run(Path(tmp), short_names=True)
            code = _show_demo(demo, out)
        out.write(
            "(the demo files were in a temporary directory; `safeload demo DIR` keeps them)\n"
        )
        return code
    return _show_demo(run(args.directory), out)


def _show_demo(demo: Demo, out: TextIO) -> int:
    color = _use_color(out)
    out.write(
        f"safeload demo: {demo.benign.name} holds {demo.benign_kind}; "
        f"{' and '.join(h.name for h in demo.hostile)}\n"
        f"are hostile: loading them with pickle would create {demo.canary.name}.\n"
        "\n1. scan: read the opcodes, run nothing\n\n"
    )
    out.write(text.render(demo.report, color=color))
    titles = {"sign": "2. sign and verify", "load": "3. guarded load (safeload.load)"}
    part = "scan"
    for step in demo.steps:
        if step.part != part:
            part = step.part
            out.write(f"\n{titles[part]}\n")
        if step.part == "scan":
            continue
        mark = "ok " if step.behaved else "UNEXPECTED"
        out.write(f"  [{mark}] {step.what}: {step.outcome}\n")
    if demo.behaved:
        out.write("\ndemo: every step behaved as shown (exit 0)\n")
    else:
        failed = [s.what for s in demo.steps if not s.behaved]
        out.write(f"\ndemo: UNEXPECTED: {'; '.join(failed) or 'the canary exists'} (exit 1)\n")
    out.write(
        "scan files yourself: safeload scan PATH...   sign: safeload keygen / sign / verify\n"
    )
    return EXIT_OK if demo.behaved else EXIT_FINDINGS
