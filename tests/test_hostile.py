"""Hostile pickles, built byte by byte, one per technique class.

Every sample is assembled opcode by opcode with `tests/picklebuild.py` from
the recipes in the attack catalog (groups A-C, E) and the peer comparison's
appendix A (c01-c20, e01-e07; container cases are out of scope here).  Each
case asserts the exact set of rule IDs, the file verdict, the offset of the
key finding and, for calls with a constant command, that the command string
is kept in `Finding.arguments`.

A representative subset is also *proven real*: the same bytes are loaded by
CPython's own unpickler in a subprocess whose working directory is the test's
`tmp_path`, and the payload (which only creates a `canary` file there) must
run, while safeload must say the file is not safe.
"""

from __future__ import annotations

import io
import marshal
import pickle
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from picklebuild import (
    additems,
    append,
    binbytes,
    binget,
    binint,
    binint1,
    binint2,
    binpersid,
    binput,
    binstring,
    binunicode,
    build,
    calln,
    dup,
    empty_dict,
    empty_list,
    empty_tuple,
    ext1,
    ext2,
    ext4,
    frame,
    get,
    glob,
    inst,
    int_,
    list_,
    long4,
    long_,
    mark,
    memoize,
    newfalse,
    newobj,
    newobj_ex,
    newtrue,
    none,
    obj,
    persid,
    pop,
    pop_mark,
    proto,
    put,
    reduce,
    sbu,
    setitem,
    setitems,
    sglobal,
    short_binbytes,
    short_binstring,
    stack_global,
    stop,
    string,
    tuple1,
    tuple2,
    tuple3,
    tuple_,
    unicode_,
)

import safeload
from safeload import Verdict

CMD = "touch canary"
SRC = "open('canary', 'w').close()"
D, INV, U, S = Verdict.DANGEROUS, Verdict.INVALID, Verdict.UNKNOWN, Verdict.SAFE


class Key(bytes):
    """Marks the part of a sample whose offset the key finding must carry."""


def sample(*parts: bytes) -> tuple[bytes, int | None]:
    """Concatenate opcode parts; return the bytes and the offset of the `Key` part."""
    out = bytearray()
    key = None
    for part in parts:
        if isinstance(part, Key):
            key = len(out)
        out += part
    return bytes(out), key


def K(part: bytes) -> Key:
    return Key(part)


@dataclass
class Case:
    id: str
    parts: tuple[bytes, ...]
    rules: frozenset[str]
    verdict: Verdict
    key_rule: str
    key_global: str | None = None
    arg: str | None = None
    """A substring the key finding's rendered arguments must contain."""
    usage: str | None = None
    """A usage the key finding must list."""
    canary: str | None = None
    """How the real loader runs it: 'loads', 'load-loop' or 'load-file'."""
    pickles: int | None = None
    maybe_unknown: tuple[str, ...] = ()
    """Harmless-looking names that add SL401 unless an allow pack lists them."""
    unless_allowed: tuple[tuple[str, str], ...] = ()
    """(name, rule) pairs: the deny rule applies only while no allow pack lists the name."""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return sample(*self.parts)[0]

    @property
    def key_offset(self) -> int | None:
        return sample(*self.parts)[1]


def system(cmd: str = CMD) -> bytes:
    """`os.system(cmd)` as protocol-0 GLOBAL + MARK ... TUPLE REDUCE."""
    return calln(glob("os", "system"), string(cmd))


def c(id: str, *parts: bytes, rules: set[str], verdict: Verdict, key: str, **kw: object) -> Case:
    return Case(id, parts, frozenset(rules), verdict, key, **kw)  # type: ignore[arg-type]


def pop_pad(n: int) -> bytes:
    """`n` no-op pairs (NONE POP): opcode padding."""
    return (none() + pop()) * n


C01 = glob("os", "system") + mark() + string(CMD) + tuple_() + reduce() + stop()
C02 = proto(4) + sglobal("os", "system") + sbu(CMD) + tuple1() + reduce() + stop()
BENIGN = proto(2) + empty_dict() + binput(0) + sbu("a") + binint1(1) + setitem() + stop()


# fmt: off
CASES: list[Case] = [
    # ---- A1 classic primitives -------------------------------------------------
    c("A1-os-system-proto2", proto(2), K(glob("os", "system")), sbu(CMD), tuple1(), reduce(),
      stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, usage="called",
      canary="loads"),
    c("A1-posix-system", proto(2), K(glob("posix", "system")), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="posix.system", arg=CMD),
    c("A1-subprocess-check-output", proto(2), K(glob("subprocess", "check_output")), sbu("sh"),
      sbu("-c"), sbu(CMD), tuple3(), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="subprocess.check_output"),
    c("A1-builtins-exec", proto(2), K(glob("builtins", "exec")), sbu(SRC), tuple1(), reduce(),
      stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="builtins.exec", arg="canary",
      canary="loads"),
    c("A1-builtin-eval-proto0", K(glob("__builtin__", "eval")), mark(), string(SRC), tuple_(),
      reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="builtins.eval", arg="canary",
      canary="loads"),
    c("A1-builtins-open", proto(2), K(glob("builtins", "open")), sbu("canary"), sbu("w"), tuple2(),
      reduce(), stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="builtins.open", canary="loads"),
    # ---- A2 interpreter-in-a-box gadgets ---------------------------------------
    c("A2-runpy-run-code", proto(2), K(glob("runpy", "_run_code")), sbu(SRC), empty_dict(),
      tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="runpy._run_code", arg="canary"),
    c("A2-code-runcode-dotted", proto(4), sbu("code"), sbu("InteractiveInterpreter.runcode"),
      K(stack_global()), empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="code:InteractiveInterpreter.runcode",
      arg="canary"),
    c("A2-code-runsource-dotted", proto(4), sbu("code"), sbu("InteractiveInterpreter.runsource"),
      K(stack_global()), empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="code:InteractiveInterpreter.runsource"),
    c("A2-cprofile-run", proto(2), K(glob("cProfile", "run")), sbu(SRC), tuple1(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="cProfile.run", arg="canary",
      canary="loads"),
    c("A2-profile-Profile-run", proto(4), sbu("profile"), sbu("Profile.run"), K(stack_global()),
      empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="profile:Profile.run"),
    c("A2-trace-Trace-run", proto(4), sbu("trace"), sbu("Trace.run"), K(stack_global()),
      empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="trace:Trace.run", arg="canary"),
    c("A2-timeit", proto(2), K(glob("timeit", "timeit")), sbu(""), sbu(SRC), tuple2(), reduce(),
      stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="timeit.timeit", arg="canary"),
    c("A2-bdb-Bdb-run", proto(4), sbu("bdb"), sbu("Bdb.run"), K(stack_global()), empty_dict(),
      sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="bdb:Bdb.run"),
    c("A2-pdb-run", proto(2), K(glob("pdb", "run")), sbu(SRC), tuple1(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="pdb.run"),
    c("A2-doctest-debug-script", proto(2), K(glob("doctest", "debug_script")), sbu(SRC), newtrue(),
      tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="doctest.debug_script"),
    c("A2-idlelib-autocomplete", proto(4), sbu("idlelib.autocomplete"),
      sbu("AutoComplete.get_entity"), K(stack_global()), empty_dict(), sbu(SRC), tuple2(), reduce(),
      stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="idlelib.autocomplete:AutoComplete.get_entity"),
    c("A2-idlelib-pyshell", proto(4), sbu("idlelib.pyshell"), sbu("ModifiedInterpreter.runcommand"),
      K(stack_global()), empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="idlelib.pyshell:ModifiedInterpreter.runcommand"),
    c("A2-lib2to3-make-label", proto(4), sbu("lib2to3.pgen2.pgen"),
      sbu("ParserGenerator.make_label"), K(stack_global()), none(), empty_dict(), sbu('""+' + SRC),
      tuple3(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="lib2to3.pgen2.pgen:ParserGenerator.make_label"),
    c("A2-ensurepip-run-pip", proto(2), K(glob("ensurepip", "_run_pip")), sbu(SRC), tuple1(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="ensurepip._run_pip"),
    c("A2-numpy-runstring", proto(2), K(glob("numpy.testing._private.utils", "runstring")),
      sbu(SRC), empty_dict(), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="numpy.testing._private.utils.runstring"),
    c("A2-f2py-getlincoef", proto(2), K(glob("numpy.f2py.crackfortran", "getlincoef")), sbu(SRC),
      empty_list(), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="numpy.f2py.crackfortran.getlincoef"),
    c("A2-interpreters-run-string", proto(2), K(glob("_interpreters", "run_string")), binint1(0),
      sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="_interpreters.run_string"),
    # ---- A3 hidden subprocess ----------------------------------------------------
    c("A3-pty-spawn-obj", mark(), K(glob("pty", "spawn")), string(CMD), obj(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pty.spawn"),
    c("A3-posixsubprocess-fork-exec", proto(2), K(glob("_posixsubprocess", "fork_exec")),
      empty_tuple(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="_posixsubprocess.fork_exec"),
    c("A3-spawnv-passfds", proto(2), K(glob("multiprocessing.util", "spawnv_passfds")), mark(),
      sbu("/bin/sh"), mark(), sbu("/bin/sh"), sbu("-c"), sbu(CMD), tuple_(), empty_tuple(),
      tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="multiprocessing.util.spawnv_passfds"),
    c("A3-asyncio-unix-subprocess", proto(4), sbu("asyncio.unix_events"),
      sbu("_UnixSubprocessTransport._start"), K(stack_global()), mark(), empty_dict(), sbu(CMD),
      newtrue(), none(), none(), none(), binint1(0), tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101",
      key_global="asyncio.unix_events:_UnixSubprocessTransport._start", arg=CMD),
    c("A3-uuid-command-stdout", proto(2), K(glob("uuid", "_get_command_stdout")), sbu("sh"),
      sbu("-c"), tuple2(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="uuid._get_command_stdout"),
    c("A3-osx-support", proto(2), K(glob("_osx_support", "_read_output")), sbu(CMD), tuple1(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="_osx_support._read_output", arg=CMD),
    c("A3-aix-support", proto(2), K(glob("_aix_support", "_read_cmd_output")), sbu(CMD), tuple1(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="_aix_support._read_cmd_output", arg=CMD),
    c("A3-imap4-stream", proto(2), K(glob("imaplib", "IMAP4_stream")), sbu(CMD), tuple1(), reduce(),
      stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="imaplib.IMAP4_stream", arg=CMD),
    c("A3-pyrepl-pipe-pager", proto(2), K(glob("_pyrepl.pager", "pipe_pager")), sbu(""), sbu(CMD),
      tuple2(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="_pyrepl.pager.pipe_pager"),
    c("A3-script-helper", proto(2), K(glob("test.support.script_helper", "assert_python_ok")),
      sbu("-c"), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101",
      key_global="test.support.script_helper.assert_python_ok"),
    c("A3-pydoc-pipepager", proto(2), K(glob("pydoc", "pipepager")), sbu(""), sbu(CMD), tuple2(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pydoc.pipepager", arg=CMD),
    c("A3-pip-main", proto(2), K(glob("pip", "main")), mark(), sbu("install"), sbu("evil"), list_(),
      tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pip.main"),
    c("A3-venv-create", proto(2), K(glob("venv", "create")), mark(), sbu("venv"), newfalse(),
      newfalse(), newtrue(), newfalse(), sbu("$(" + CMD + ")"), tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="venv.create"),
    c("A3-webbrowser-open", proto(2), K(glob("webbrowser", "open")), sbu("http://x.invalid"),
      tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="webbrowser.open"),
    c("A3-torch-compile-file", proto(2), K(glob("torch._inductor.codecache", "compile_file")),
      sbu(""), sbu(""), mark(), sbu("sh"), sbu("-c"), sbu(CMD), list_(), tuple3(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="torch._inductor.codecache.compile_file"),
    c("A3-torch-collect-env-run", proto(2), K(glob("torch.utils.collect_env", "run")), sbu(CMD),
      tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="torch.utils.collect_env.run", arg=CMD),
    c("A3-mlflow-entry-point", proto(2),
      K(glob("mlflow.projects.backend.local", "_run_entry_point")), mark(), sbu(CMD), sbu("."),
      sbu(""), sbu(""), tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101",
      key_global="mlflow.projects.backend.local._run_entry_point", arg=CMD),
]
# fmt: on

INNER = C01  # a complete protocol-0 os.system pickle, nested as bytes


def _code_bytes() -> bytes:
    return marshal.dumps(compile(SRC, "<payload>", "exec"))


# fmt: off
CASES += [
    # ---- A4 getattr / import equivalents -----------------------------------------
    c("A4-pkgutil-resolve-name", proto(2), K(glob("pkgutil", "resolve_name")), sbu("os:system"),
      tuple1(), reduce(), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL103", "SL205"}, verdict=D, key="SL103", key_global="pkgutil.resolve_name",
      arg="os:system", canary="loads"),
    c("A4-pydoc-locate-methodcaller", proto(2), K(glob("operator", "methodcaller")), sbu("system"),
      sbu(CMD), tuple2(), reduce(), glob("pydoc", "locate"), sbu("os"), tuple1(), reduce(),
      tuple1(), reduce(), stop(),
      rules={"SL103", "SL104", "SL205"}, verdict=D, key="SL104", key_global="operator.methodcaller",
      arg=CMD, canary="loads"),
    c("A4-import-getattribute-dotted", proto(4), sbu("builtins"), sbu("object.__getattribute__"),
      K(stack_global()), sbu("builtins"), sbu("__import__"), stack_global(), sbu("os"), tuple1(),
      reduce(), sbu("system"), tuple2(), reduce(), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL103", "SL104", "SL205"}, verdict=D, key="SL104",
      key_global="builtins:object.__getattribute__", canary="loads"),
    c("A4-importlib-import-module", proto(2), K(glob("importlib", "import_module")), sbu("os"),
      tuple1(), reduce(), stop(),
      rules={"SL103"}, verdict=D, key="SL103", key_global="importlib.import_module", arg="'os'"),
    c("A4-getattr-folded", proto(2), glob("builtins", "getattr"), glob("pathlib", "os"),
      sbu("system"), tuple2(), K(reduce()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101", "SL401"}, verdict=D, key="SL101", key_global="pathlib:os.system", arg=CMD,
      usage="called", canary="loads"),
    c("A4-getattr-computed-attr", proto(2), K(glob("builtins", "getattr")), glob("pathlib", "os"),
      glob("_codecs", "decode"), sbu("flfgrz"), sbu("rot13"), tuple2(), reduce(), tuple2(),
      reduce(), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL104", "SL401", "SL205"}, verdict=D, key="SL104", key_global="builtins.getattr",
      usage="called", canary="loads"),
    c("A4-getattr-stored", proto(2), K(glob("builtins", "getattr")), stop(),
      rules={"SL104"}, verdict=D, key="SL104", key_global="builtins.getattr", usage="stored"),
    c("A4-inspect-getattr-static", proto(2), K(glob("inspect", "getattr_static")), stop(),
      rules={"SL104"}, verdict=D, key="SL104", key_global="inspect.getattr_static"),
    c("A4-frozen-importlib", proto(2), K(glob("_frozen_importlib", "_call_with_frames_removed")),
      stop(),
      rules={"SL103"}, verdict=D, key="SL103",
      key_global="_frozen_importlib._call_with_frames_removed"),
    c("A4-imp", proto(2), K(glob("_imp", "create_builtin")), stop(),
      rules={"SL103"}, verdict=D, key="SL103", key_global="_imp.create_builtin"),
    c("A4-gc-get-referrers", proto(2), K(glob("gc", "get_referrers")), stop(),
      rules={"SL103"}, verdict=D, key="SL103", key_global="gc.get_referrers"),
    # c11: dict.get(vars(importlib.import_module('os')), 'system')(cmd), three STACK_GLOBALs
    c("c11-vars-dict-get", proto(4), sbu("builtins"), sbu("dict.get"), K(stack_global()),
      sglobal("builtins", "vars"), sglobal("importlib", "import_module"), sbu("os"), tuple1(),
      reduce(), tuple1(), reduce(), sbu("system"), tuple2(), reduce(), sbu(CMD), tuple1(), reduce(),
      stop(),
      rules={"SL103", "SL104", "SL205"}, verdict=D, key="SL104", key_global="builtins:dict.get",
      canary="loads"),
    # ---- A5 nested deserializers ------------------------------------------------------
    c("A5-pickle-loads", proto(2), K(glob("pickle", "loads")), binbytes(INNER), tuple1(), reduce(),
      stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pickle.loads", arg="system",
      canary="loads"),
    c("A5-cPickle-loads-no-proto", K(glob("cPickle", "loads")), mark(), binbytes(INNER), tuple_(),
      reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pickle.loads", arg="touch canary",
      canary="loads"),
    c("A5-underscore-pickle", proto(2), K(glob("_pickle", "loads")), binbytes(INNER), tuple1(),
      reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="_pickle.loads"),
    c("A5-pickle-private-loads", proto(2), K(glob("pickle", "_loads")), binbytes(INNER), tuple1(),
      reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pickle._loads"),
    c("A5-pickle-private-unpickler", proto(2), K(glob("pickle", "_Unpickler")), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pickle._Unpickler"),
    c("A5-numpy-load", proto(2), K(glob("numpy", "load")), sbu("other.bin"), none(), newtrue(),
      tuple3(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="numpy.load", arg="other.bin"),
    c("A5-joblib-load", proto(2), K(glob("joblib", "load")), sbu("other.bin"), tuple1(), reduce(),
      stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="joblib.load"),
    c("A5-pandas-read-pickle", proto(2), K(glob("pandas", "read_pickle")),
      sbu("https://x.invalid/p"), tuple1(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pandas.read_pickle"),
    c("A5-torch-load-pickle-module", proto(2), K(glob("torch", "load")), sbu("other.pt"), none(),
      glob("torch.serialization", "pickle"), tuple3(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="torch.load"),
    c("A5-torch-config-load", proto(4), sbu("torch.utils._config_module"),
      sbu("ConfigModule.load_config"), K(stack_global()), empty_dict(), binbytes(INNER), tuple2(),
      reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105",
      key_global="torch.utils._config_module:ConfigModule.load_config"),
    c("A5-datapipes-basichandlers", proto(2),
      K(glob("torch.utils.data.datapipes.utils.decoder", "basichandlers")), sbu("pickle"),
      binbytes(INNER), tuple2(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105",
      key_global="torch.utils.data.datapipes.utils.decoder.basichandlers"),
    c("A5-lib2to3-grammar-loads", proto(4), sbu("lib2to3.pgen2.grammar"), sbu("Grammar.loads"),
      K(stack_global()), empty_dict(), binbytes(INNER), tuple2(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="lib2to3.pgen2.grammar:Grammar.loads"),
    c("A5-dill-loads", proto(2), K(glob("dill", "loads")), binbytes(INNER), tuple1(), reduce(),
      stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="dill.loads"),
    # ---- A6 code objects ---------------------------------------------------------------
    c("A6-marshal-functiontype", proto(2), K(glob("types", "FunctionType")),
      glob("marshal", "loads"), binbytes(_code_bytes()), tuple1(), reduce(), empty_dict(), tuple2(),
      reduce(), empty_tuple(), reduce(), stop(),
      rules={"SL102", "SL105", "SL205"}, verdict=D, key="SL102", key_global="types.FunctionType",
      canary="loads"),
    c("A6-codetype-stack-global", proto(4), sbu("types"), sbu("CodeType"), K(stack_global()),
      stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="types.CodeType"),
    c("A6-cloudpickle-make-function", proto(2),
      K(glob("cloudpickle.cloudpickle", "_make_function")), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="cloudpickle.cloudpickle._make_function"),
    # ---- A7 kwargs smuggling through partial.__setstate__ (BUILD) -----------------------
    # partial(f) given the state (f, args, kwargs, dict) by BUILD, then called: read as
    # the call of f with the bound constants it is (os.system(CMD), SL101); any other
    # call of a built object is SL205 (tests/test_partial_calls.py)
    c("A7-partial-setstate", proto(2), glob("functools", "partial"), K(glob("os", "system")),
      tuple1(), reduce(), mark(), glob("os", "system"), sbu(CMD), tuple1(), empty_dict(),
      none(), tuple_(), build(), empty_tuple(), reduce(), stop(),
      rules={"SL101"}, unless_allowed=(("functools.partial", "SL102"),), verdict=D,
      key="SL101", key_global="os.system", arg=CMD, usage="called", canary="loads"),
    # ---- A8 ML-framework gadgets -------------------------------------------------------
    c("A8-dynamo-guardbuilder-get", proto(4), sbu("torch._dynamo.guards"), sbu("GuardBuilder.get"),
      K(stack_global()), empty_dict(), sbu(SRC), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="torch._dynamo.guards:GuardBuilder.get"),
    c("A8-shapeenv-guards", proto(4), sbu("torch.fx.experimental.symbolic_shapes"),
      sbu("ShapeEnv.evaluate_guards_expression"), K(stack_global()), empty_dict(), sbu(SRC),
      empty_list(), tuple3(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="torch.fx.experimental.symbolic_shapes:ShapeEnv.evaluate_guards_expression"),
    c("A8-jit-execwrapper", proto(2), K(glob("torch.jit.unsupported_tensor_ops", "execWrapper")),
      sbu(SRC), empty_dict(), empty_dict(), tuple3(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="torch.jit.unsupported_tensor_ops.execWrapper"),
    c("A8-bottleneck", proto(2), K(glob("torch.utils.bottleneck.__main__", "run_cprofile")),
      sbu(SRC), empty_dict(), tuple2(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102",
      key_global="torch.utils.bottleneck.__main__.run_cprofile"),
    c("A8-pandas-read-csv-exfil", proto(2), K(glob("pandas.io.parsers.readers", "read_csv")),
      sbu("https://x.invalid/?exfil"), tuple1(), reduce(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="pandas.io.parsers.readers.read_csv"),
    # ---- A9 side effects: files, network -------------------------------------------------
    c("A9-logging-filehandler-inst", mark(), string("canary"), K(inst("logging", "FileHandler")),
      stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="logging.FileHandler", arg="canary",
      usage="called", canary="loads"),
    c("A9-io-fileio", proto(2), K(glob("_io", "FileIO")), sbu("/etc/hosts"), sbu("r"), tuple2(),
      reduce(), stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="_io.FileIO", arg="/etc/hosts"),
    c("A9-distutils-write-file", proto(2), K(glob("distutils.file_util", "write_file")),
      sbu("x.pth"), empty_list(), tuple2(), reduce(), stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="distutils.file_util.write_file"),
    c("A9-shutil-rmtree", proto(2), K(glob("shutil", "rmtree")), sbu("/"), tuple1(), reduce(),
      stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="shutil.rmtree"),
    c("A9-urllib-request-urlopen", proto(2), K(glob("urllib.request", "urlopen")),
      sbu("http://x.invalid"), tuple1(), reduce(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="urllib.request.urlopen"),
    c("A9-urllib-urlretrieve-compat", K(glob("urllib", "urlretrieve")), mark(),
      string("http://x.invalid"), tuple_(), reduce(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="urllib.request.urlretrieve"),
    c("A9-urllib2-urlopen-compat", K(glob("urllib2", "urlopen")), mark(),
      string("http://x.invalid"), tuple_(), reduce(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="urllib.request.urlopen"),
    c("A9-ssl-dns-exfil", proto(2), K(glob("ssl", "get_server_certificate")), sbu("x.invalid"),
      binint2(443), tuple2(), tuple1(), reduce(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="ssl.get_server_certificate"),
    c("A9-linecache", proto(2), K(glob("linecache", "getline")), sbu("/etc/passwd"), binint1(1),
      tuple2(), reduce(), stop(),
      rules={"SL107"}, verdict=D, key="SL107", key_global="linecache.getline"),
    c("A9-site-addpackage", proto(2), K(glob("site", "addpackage")), sbu("site-dir"), sbu("x.pth"),
      none(), tuple3(), reduce(), stop(),
      rules={"SL103"}, verdict=D, key="SL103", key_global="site.addpackage"),
    # ---- A10 deferred execution ---------------------------------------------------------
    c("A10-atexit", proto(2), K(glob("atexit", "register")), glob("os", "system"), sbu(CMD),
      tuple2(), reduce(), stop(),
      rules={"SL109", "SL101"}, verdict=D, key="SL109", key_global="atexit.register", arg=CMD),
    c("A10-threading-timer", proto(2), K(glob("threading", "Timer")), binint1(1),
      glob("os", "system"), sbu(CMD), tuple1(), tuple3(), reduce(), stop(),
      rules={"SL109", "SL101"}, verdict=D, key="SL109", key_global="threading.Timer"),
    c("A10-thread-compat", K(glob("thread", "start_new_thread")), mark(), glob("os", "system"),
      mark(), string(CMD), tuple_(), tuple_(), reduce(), stop(),
      rules={"SL109", "SL101"}, verdict=D, key="SL109", key_global="_thread.start_new_thread"),
    c("A10-signal", proto(2), K(glob("signal", "signal")), binint1(14), glob("os", "system"),
      tuple2(), reduce(), stop(),
      rules={"SL109", "SL101"}, verdict=D, key="SL109", key_global="signal.signal"),
    c("A10-multiprocessing-process", proto(2), K(glob("multiprocessing", "Process")), stop(),
      rules={"SL109"}, verdict=D, key="SL109", key_global="multiprocessing.Process"),
    # ---- A11 / B6 BUILD on imported modules, classes and functions -----------------------
    c("B6-build-module-poison", proto(2), glob("json", "decoder"), empty_dict(), sbu("scanstring"),
      glob("os", "system"), setitem(), K(build()), pop(), glob("json.decoder", "scanstring"),
      sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL203", "SL101", "SL401"}, verdict=D, key="SL203", key_global="json.decoder",
      usage="state-rewrite", canary="loads"),
    c("A11-build-class-slotstate", proto(2), glob("collections", "OrderedDict"), none(),
      empty_dict(), sbu("__repr__"), glob("builtins", "eval"), setitem(), tuple2(), K(build()),
      stop(),
      rules={"SL203", "SL102"}, verdict=D, key="SL203", key_global="collections.OrderedDict"),
    c("A11-build-function", proto(2), glob("json", "dumps"), none(), empty_dict(), sbu("__code__"),
      glob("marshal", "loads"), binbytes(_code_bytes()), tuple1(), reduce(), setitem(), tuple2(),
      K(build()), stop(),
      rules={"SL203", "SL105", "SL401"}, verdict=D, key="SL203", key_global="json.dumps"),
]
# fmt: on

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch legacy magic number


def _long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _e3_frame_divergence() -> bytes:
    """E3 from fickling's test_frame_boundary_divergence: BINBYTES crosses its FRAME."""
    hidden = glob("os", "system") + unicode_(CMD) + tuple1() + reduce()
    tail = (hidden + mark()).ljust(261, b"N")
    return (
        proto(5)
        + none()
        + unicode_("a" * (8192 * 16 - 17))
        + pop()
        + mark()
        + frame(2)
        + b"B"
        + (0x107).to_bytes(4, "little")
        + b"\x00\x00"
        + tail
        + pop_mark()
        + stop()
    )


_E3 = _e3_frame_divergence()
_E3_CROSS = 8192 * 16 - 1  # the BINBYTES whose length runs past its 2-byte FRAME

# fmt: off
CASES += [
    # ---- B1 _compat_pickle names (protocol < 3, including no PROTO) ------------------
    c("B1-commands-getoutput-c06", K(glob("commands", "getoutput")), mark(), string(CMD), tuple_(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="subprocess.getoutput", arg=CMD,
      canary="loads"),
    c("B1-stack-global-compat-proto2", proto(2), sbu("commands"), sbu("getoutput"),
      K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="subprocess.getoutput", arg=CMD,
      canary="loads"),
    c("B1-builtin-reduce", K(glob("__builtin__", "reduce")), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="functools.reduce"),
    c("B1-no-mapping-at-proto3", proto(3), K(glob("__builtin__", "eval")), stop(),
      rules={"SL401"}, verdict=U, key="SL401", key_global="__builtin__.eval"),
    # ---- B2 dotted names (protocol >= 4) ------------------------------------------
    c("B2-pathlib-os-system-global", proto(4), K(glob("pathlib", "os.system")), unicode_(CMD),
      tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pathlib:os.system", arg=CMD,
      canary="loads"),
    # ---- B3 mid-stream PROTO switches --------------------------------------------
    c("B3-switch-to-2-for-compat", proto(4), none(), pop(), proto(2),
      K(glob("__builtin__", "exec")), sbu(SRC), tuple1(), reduce(), proto(4), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="builtins.exec", canary="loads"),
    c("B3-switch-to-4-for-dotted", none(), pop(), proto(4), K(glob("pathlib", "os.system")),
      unicode_(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pathlib:os.system", canary="loads"),
    c("B3-switch-to-3-disables-compat", proto(2), none(), pop(), proto(3),
      K(glob("cPickle", "loads")), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="cPickle.loads"),
    # ---- B4 private aliases and submodules -------------------------------------------
    c("B4-operator-private", proto(2), K(glob("_operator", "attrgetter")), stop(),
      rules={"SL104"}, verdict=D, key="SL104", key_global="_operator.attrgetter"),
    c("B4-asyncio-submodule", proto(2), K(glob("asyncio.base_events", "BaseEventLoop")), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="asyncio.base_events.BaseEventLoop"),
    # ---- B5 computed STACK_GLOBAL operands ------------------------------------------
    c("B5-e04-rot13-memoized", proto(4), sglobal("_codecs", "decode"), binput(0), sbu("bf"),
      sbu("rot13"), tuple2(), reduce(), binget(0), sbu("flfgrz"), sbu("rot13"), tuple2(), reduce(),
      K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL201", "SL401"}, verdict=D, key="SL201", canary="loads"),
    c("B5-operand-wrong-type", proto(4), sbu("os"), binint1(5), K(stack_global()), stop(),
      rules={"SL201"}, verdict=D, key="SL201"),
    c("B5-operand-from-memo-of-call", proto(4), sglobal("_codecs", "decode"), sbu("bf"),
      sbu("rot13"), tuple2(), reduce(), binput(1), pop(), binget(1), sbu("system"),
      K(stack_global()), stop(),
      rules={"SL201", "SL401"}, verdict=D, key="SL201"),
    c("B5-operand-module-attribute", proto(4), glob("os", "name"), sbu("system"), K(stack_global()),
      stop(),
      rules={"SL201", "SL401"}, verdict=D, key="SL201"),
    # ---- B7 extension codes -----------------------------------------------------
    c("B7-c20-ext1", proto(2), K(ext1(1)), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL202"}, verdict=D, key="SL202"),
    c("B7-ext2", proto(2), K(ext2(0x1234)), stop(),
      rules={"SL202"}, verdict=D, key="SL202"),
    c("B7-ext4", proto(2), K(ext4(0x12345678)), stop(),
      rules={"SL202"}, verdict=D, key="SL202"),
    # ---- C1 calls in non-REDUCE opcodes, mutations -------------------------------------
    c("C1-inst", mark(), string(CMD), K(inst("os", "system")), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, usage="called",
      canary="loads"),
    c("C1-obj", proto(1), mark(), K(glob("os", "system")), string(CMD), obj(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, usage="called",
      canary="loads"),
    c("C1-newobj-partial", proto(2), glob("functools", "partial"), glob("os", "system"),
      sbu(CMD), tuple2(), newobj(), empty_tuple(), K(reduce()), stop(),
      rules={"SL101", "SL205", "SL405"}, unless_allowed=(("functools.partial", "SL102"),), verdict=D,
      key="SL205", canary="loads"),
    c("C1-newobj-ex-partial", proto(4), glob("functools", "partial"), glob("os", "system"),
      sbu(CMD), tuple2(), empty_dict(), newobj_ex(), empty_tuple(), K(reduce()), stop(),
      rules={"SL101", "SL205", "SL405"}, unless_allowed=(("functools.partial", "SL102"),), verdict=D,
      key="SL205", canary="loads"),
    # usage of a global that no pack lists: instantiated, given state, stored
    c("C1-usage-instantiated", proto(2), K(glob("evilpkg.models", "Backdoor")), empty_tuple(),
      newobj(), stop(),
      rules={"SL401"}, verdict=U, key="SL401", key_global="evilpkg.models.Backdoor",
      usage="instantiated"),
    c("C1-usage-instantiated-ex", proto(4), K(glob("evilpkg.models", "Backdoor")), empty_tuple(),
      empty_dict(), newobj_ex(), stop(),
      rules={"SL401"}, verdict=U, key="SL401", key_global="evilpkg.models.Backdoor",
      usage="instantiated"),
    c("C1-usage-state", proto(2), K(glob("evilpkg.models", "Backdoor")), empty_tuple(), newobj(),
      empty_dict(), sbu("w"), binint1(1), setitem(), build(), stop(),
      rules={"SL401"}, verdict=U, key="SL401", key_global="evilpkg.models.Backdoor",
      usage="state"),
    c("C1-usage-stored", proto(2), empty_list(), K(glob("evilpkg.models", "Backdoor")), append(),
      stop(),
      rules={"SL401"}, verdict=U, key="SL401", key_global="evilpkg.models.Backdoor",
      usage="stored"),
    c("C1-append-into-sys-path", proto(2), glob("sys", "path"), sbu("/evil"), K(append()), stop(),
      rules={"SL204", "SL103"}, verdict=D, key="SL204", key_global="sys.path", usage="mutated"),
    c("C1-setitems-into-sys-path", proto(2), glob("sys", "path"), mark(), binint1(0), sbu("/evil"),
      K(setitems()), stop(),
      rules={"SL204", "SL103"}, verdict=D, key="SL204", key_global="sys.path"),
    c("C1-setitem-os-environ", proto(2), glob("os", "environ"), sbu("LD_PRELOAD"), sbu("/evil.so"),
      K(setitem()), stop(),
      rules={"SL204", "SL110"}, verdict=D, key="SL204", key_global="os.environ"),
    c("C1-additems-into-global", proto(4), glob("somepkg.registry", "HOOKS"), mark(), sbu("x"),
      K(additems()), stop(),
      rules={"SL204", "SL401"}, verdict=D, key="SL204", key_global="somepkg.registry.HOOKS"),
    # ---- C2 discarded call results ---------------------------------------------------
    c("C2-obj-result-popped", mark(), sbu("smtplib"), sbu("SMTP"), K(stack_global()),
      sbu("127.0.0.1"), obj(), pop(), none(), stop(),
      rules={"SL108"}, verdict=D, key="SL108", key_global="smtplib.SMTP", arg="127.0.0.1",
      usage="called"),
    # ---- C3 memo mis-attribution (c03, c04) -------------------------------------------
    c("C3-c03-memo-operands", proto(4), sbu("os"), binput(1), pop(), sbu("system"), binput(2),
      pop(), binget(1), binget(2), K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("C3-c04-dup-put", proto(4), sbu("os"), dup(), binput(1), pop(), pop(), binget(1),
      sbu("system"), K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("C3-dup-memoize", proto(4), sbu("os"), dup(), memoize(), pop(), pop(), sbu("system"), dup(),
      memoize(), pop(), pop(), binget(0), binget(1), K(stack_global()), sbu(CMD), tuple1(),
      reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    c("C3-reput", proto(4), sbu("os"), binput(5), pop(), sbu("system"), binput(6), pop(), binget(5),
      binput(0), pop(), binget(6), binput(1), pop(), binget(0), binget(1), K(stack_global()),
      sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    # ---- C4 memo decoys, missing keys, type confusion ------------------------------
    c("C4-decoy-text-memo", unicode_("os"), put(2), pop(), unicode_("system"), put(3), pop(),
      unicode_("torch"), put(0), pop(), unicode_("LongStorage"), put(1), pop(), get(2), get(3),
      K(stack_global()), unicode_(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("C4-missing-memo-key-after-payload", proto(2), K(glob("os", "system")), sbu(CMD), tuple1(),
      reduce(), pop(), binget(9), sbu("x"), stack_global(), stop(),
      rules={"SL101", "SL301"}, verdict=D, key="SL101", key_global="os.system", arg=CMD,
      canary="loads"),
    c("C4-type-confusion-after-payload", proto(2), K(glob("os", "system")), sbu(CMD), tuple1(),
      reduce(), pop(), binint1(5), binput(0), pop(), binget(0), sbu("x"), stack_global(), stop(),
      rules={"SL101", "SL201"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    # ---- C5 STACK_GLOBAL operands as byte strings (protocol 0 STRING etc.) -------------
    c("C5-string-operands", string("os"), string("system"), K(stack_global()), string(CMD),
      tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("C5-binstring-operands", proto(1), binstring(b"os"), short_binstring(b"system"),
      K(stack_global()), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system"),
    # ---- C6 stack-neutral injection into a benign pickle ------------------------------
    c("C6-injected-into-benign", proto(2), proto(2), K(glob("__builtin__", "exec")), mark(),
      glob("zlib", "decompress"), mark(), binbytes(zlib.compress(SRC.encode())), tuple_(), reduce(),
      tuple_(), reduce(), pop(), proto(2), empty_dict(), binput(0), sbu("a"), binint1(1), setitem(),
      stop(),
      rules={"SL102", "SL401"}, verdict=D, key="SL102", key_global="builtins.exec", canary="loads"),
    c("C6-legacy-prefix-eval", K(glob("__builtin__", "eval")), mark(), unicode_(SRC), tuple_(),
      reduce(), pop(), BENIGN,
      rules={"SL102"}, verdict=D, key="SL102", key_global="builtins.eval", arg="canary",
      canary="loads"),
    # ---- C7 obfuscated strings ----------------------------------------------------------
    c("C7-unicode-escapes", proto(4), b"V\\u006fs\n", b"V\\u0073ystem\n", K(stack_global()),
      sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    # ---- C8 persistent ids -----------------------------------------------------------
    c("C8-persid", proto(2), K(persid("storage")), stop(),
      rules={"SL402"}, verdict=U, key="SL402"),
    c("C8-binpersid-global", proto(2), K(glob("os", "system")), binpersid(), stop(),
      rules={"SL101", "SL402"}, verdict=D, key="SL101", key_global="os.system",
      usage="persistent-id"),
    c("C8-persid-result-called", proto(2), persid("x"), sbu(CMD), tuple1(), K(reduce()), stop(),
      rules={"SL402", "SL205"}, verdict=D, key="SL205"),
    # ---- E1 payload first, then garbage (c09) ---------------------------------------
    c("E1-truncated-binunicode-tail", K(glob("builtins", "exec")), mark(), binunicode(SRC),
      tuple_(), reduce(), b"X.",
      rules={"SL102", "SL302"}, verdict=D, key="SL102", key_global="builtins.exec", arg="canary",
      canary="loads"),
    c("E1-c09-ff-tail", K(glob("os", "system")), mark(), string(CMD), tuple_(), reduce(),
      b"\xff\xff\xff",
      rules={"SL101", "SL301"}, verdict=D, key="SL101", key_global="os.system", arg=CMD,
      canary="loads"),
    # ---- E2 genops-fatal but loadable prefixes ---------------------------------------
    c("E2-int-hex-prefix", int_("0x10"), pop(), K(glob("os", "system")), mark(), unicode_(CMD),
      tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("E2-int-octal-prefix", int_("0o10"), pop(), int_("010"), pop(), long_("0x10L"), pop(),
      K(glob("os", "system")), mark(), unicode_(CMD), tuple_(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    # ---- E3 frame boundary divergence ----------------------------------------------------
    c("E3-frame-divergence", _E3[:_E3_CROSS], K(_E3[_E3_CROSS:]),
      rules={"SL206"}, verdict=D, key="SL206"),
    # ---- E5 scanner-crash tail: huge LONG4 memoized, used as a STACK_GLOBAL operand -------
    c("E5-bigint-tail", proto(4), K(glob("os", "system")), sbu(CMD), tuple1(), reduce(), pop(),
      long4(b"\x7f" * 5000), memoize(), pop(), binget(0), sbu("x"), stack_global(), stop(),
      rules={"SL101", "SL201"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    # ---- E6 several pickles, data after STOP ----------------------------------------
    c("E6-c15-benign-then-malicious", BENIGN, C02[:14], K(C02[14:15]), C02[15:],
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="load-loop",
      pickles=2),
    c("E6-c16-junk-byte-between", BENIGN, b"\x00", C02[:14], K(C02[14:15]), C02[15:],
      rules={"SL101", "SL301", "SL304"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    c("E6-payload-then-garbage", C02[:14], K(C02[14:15]), C02[15:], b"garbage!",
      rules={"SL101", "SL302", "SL304"}, verdict=D, key="SL101", key_global="os.system", arg=CMD,
      canary="loads"),
    c("E6-seventh-pickle", BENIGN * 6, C02[:14], K(C02[14:15]), C02[15:],
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", canary="load-loop",
      pickles=7),
    c("E6-c13-legacy-torch-stack", proto(2), _long1(LEGACY_MAGIC), stop(), proto(2), binint2(1001),
      stop(), proto(2), empty_dict(), stop(), proto(2), K(glob("posix", "system")), sbu(CMD),
      tuple1(), reduce(), stop(), proto(2), empty_list(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="posix.system", arg=CMD,
      canary="load-loop", pickles=5),
    c("E6-benign-then-bad-trailer", BENIGN, K(b"\x01\x02junk"),
      rules={"SL301", "SL304"}, verdict=INV, key="SL304"),
    # ---- E10 encodings ---------------------------------------------------------------
    c("E10-global-not-utf8", proto(2), K(b"cos\xff\nsystem\n"), stop(),
      rules={"SL301"}, verdict=INV, key="SL301"),
    # PROTO first: without it, a MARK and an INST CPython refuses before find_class
    # is a stream no loader builds anything from, not-a-pickle (SL305).
    c("E10-inst-not-ascii", proto(2), mark(), K(b"ios\xc3\xa9\nsystem\n"), stop(),
      rules={"SL301"}, verdict=INV, key="SL301"),
    c("E10-surrogate-sbu-operand", proto(4), sbu("os"), b"\x8c\x03\xed\xa0\x80", K(stack_global()),
      stop(),
      rules={"SL401"}, verdict=U, key="SL401"),
    # ---- fail closed with partial findings ----------------------------------------------
    c("FC-unknown-opcode", proto(2), K(glob("os", "system")), b"\xfe", stop(),
      rules={"SL101", "SL301"}, verdict=D, key="SL101", key_global="os.system"),
    c("FC-bad-int-argument", proto(2), K(glob("os", "system")), int_("12x"), stop(),
      rules={"SL101", "SL301"}, verdict=D, key="SL101", key_global="os.system"),
    c("FC-stack-underflow", proto(2), K(glob("os", "system")), reduce(), stop(),
      rules={"SL101", "SL301"}, verdict=D, key="SL101", key_global="os.system"),
    c("FC-memo-miss-benign", proto(2), empty_dict(), pop(), K(binget(3)), stop(),
      rules={"SL301"}, verdict=INV, key="SL301"),
    c("FC-truncated-benign", proto(2), empty_dict(), K(binunicode("abc", declared=100)),
      rules={"SL302"}, verdict=INV, key="SL302"),
    c("FC-no-stop", proto(2), K(glob("os", "system")), sbu(CMD), tuple1(), reduce(),
      rules={"SL101", "SL302"}, verdict=D, key="SL101", key_global="os.system", arg=CMD,
      canary="loads"),
    # ---- peers appendix A, e-cases ---------------------------------------------------
    c("c01-proto0-global", K(C01[:10]), C01[10:],
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("c02-stack-global", C02[:14], K(C02[14:15]), C02[15:],
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD, canary="loads"),
    c("c05-cPickle-short-binbytes", proto(2), K(glob("cPickle", "loads")), short_binbytes(INNER),
      tuple1(), reduce(), stop(),
      rules={"SL105"}, verdict=D, key="SL105", key_global="pickle.loads", arg="touch canary",
      canary="loads"),
    c("e02-padding-then-c02", proto(4), pop_pad(1_500_000), sglobal("os", "system")[:-1],
      K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="os.system", arg=CMD),
    c("FC-frame-crossing", proto(4), frame(3), K(sbu("abcdef")), pop(), none(), stop(),
      rules={"SL206"}, verdict=D, key="SL206"),
    c("c07-pathlib-os-system-sg", proto(4), sbu("pathlib"), sbu("os.system"), K(stack_global()),
      sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="pathlib:os.system", arg=CMD,
      canary="loads"),
    c("c08-numpy-deep-dotted", proto(4), sbu("numpy"), sbu("testing._private.utils.os.system"),
      K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL101"}, verdict=D, key="SL101", key_global="numpy:testing._private.utils.os.system",
      arg=CMD),
    c("c10-timeit-proto0", K(glob("timeit", "timeit")), mark(),
      string("import os;os.system('touch canary');1/0"), tuple_(), reduce(), stop(),
      rules={"SL102"}, verdict=D, key="SL102", key_global="timeit.timeit", arg="touch canary",
      canary="loads"),
    c("e03-padding-then-computed", proto(4), pop_pad(1_500_000), sglobal("_codecs", "decode"),
      sbu("bf"), sbu("rot13"), tuple2(), reduce(), sglobal("_codecs", "decode"), sbu("flfgrz"),
      sbu("rot13"), tuple2(), reduce(), K(stack_global()), sbu(CMD), tuple1(), reduce(), stop(),
      rules={"SL201", "SL401"}, verdict=D, key="SL201"),
    c("e05-pathlib-write-text", proto(4), sbu("pathlib"), sbu("Path.write_text"), K(stack_global()),
      sglobal("pathlib", "Path"), sbu("canary"), tuple1(), reduce(), sbu("pwned"), tuple2(),
      reduce(), stop(),
      rules={"SL107"}, maybe_unknown=("pathlib.Path",), verdict=D, key="SL107",
      key_global="pathlib:Path.write_text", usage="called", canary="loads"),
    c("e07-numpy-builtins-dict-get", proto(4), sglobal("builtins", "dict.get"), sbu("numpy"),
      sbu("__builtins__"), K(stack_global()), sbu("eval"), tuple2(), reduce(), sbu(SRC), tuple1(),
      reduce(), stop(),
      rules={"SL104", "SL205"}, verdict=D, key="SL104", key_global="numpy.__builtins__",
      canary="loads"),
]
# fmt: on


_POLICY = safeload.policy.Policy.default()


def expected_rules(case: Case) -> frozenset[str]:
    extra = set()
    for name in case.maybe_unknown:
        module, qualname = safeload._names.parse_canonical(name)
        if not _POLICY.decide(module, qualname).allowed:
            extra.add("SL401")
    for name, rule in case.unless_allowed:
        module, qualname = safeload._names.parse_canonical(name)
        if not _POLICY.decide(module, qualname).allowed:
            extra.add(rule)
    return case.rules | extra


def _ids() -> list[str]:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return ids


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_hostile_sample(case: Case) -> None:
    data = case.data
    report = safeload.scan_bytes(data)
    got = {f.rule for f in report.findings}
    assert got == expected_rules(case), [
        (f.rule, f.global_name, f.message) for f in report.findings
    ]
    assert report.verdict is case.verdict
    assert not report.safe
    keys = [f for f in report.findings if f.rule == case.key_rule]
    assert keys, case.key_rule
    if case.key_global is not None:
        keys = [f for f in keys if f.global_name == case.key_global]
        assert keys, [(f.rule, f.global_name) for f in report.findings]
    key = keys[0]
    if case.key_offset is not None:
        assert key.offset == case.key_offset, (key.offset, case.key_offset, key.message)
    if case.arg is not None:
        assert any(case.arg in a for a in key.arguments), key.arguments
    if case.usage is not None:
        assert case.usage in key.usage, key.usage
    if case.pickles is not None:
        assert report.pickles >= case.pickles


# -- the samples are real: CPython's own loader runs the payload ----------------------

_LOADER = """
import pickle, sys
mode, path = sys.argv[1], sys.argv[2]
with open(path, "rb") as fh:
    if mode == "loads":
        try:
            pickle.loads(fh.read())
        except Exception:
            pass
    else:
        while True:  # 'load-loop' (every pickle in the file) and 'load-file' (the first)
            try:
                pickle.load(fh)
            except Exception:
                break
            if mode == "load-file":
                break
"""


def run_real_loader(data: bytes, mode: str, cwd: Path) -> None:
    """Load `data` with CPython's unpickler in a subprocess whose cwd is `cwd`."""
    sample_path = cwd / "sample.pkl"
    sample_path.write_bytes(data)
    subprocess.run(
        [sys.executable, "-I", "-c", _LOADER, mode, str(sample_path)],
        cwd=cwd,
        timeout=60,
        check=False,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


CANARY_CASES = [case for case in CASES if case.canary is not None]


def test_canary_subset_is_representative() -> None:
    """The proven-real subset spans every call and name-resolution technique class."""
    ids = {case.id for case in CANARY_CASES}
    wanted = {
        "A1-os-system-proto2",  # GLOBAL
        "c02-stack-global",  # STACK_GLOBAL
        "C1-inst",  # INST
        "C1-obj",  # OBJ
        "C1-newobj-partial",  # NEWOBJ
        "A7-partial-setstate",  # BUILD -> __setstate__
        "c01-proto0-global",  # protocol 0
        "A5-cPickle-loads-no-proto",  # _compat_pickle mapped
        "c07-pathlib-os-system-sg",  # dotted
        "E1-c09-ff-tail",  # payload then garbage
        "E6-c15-benign-then-malicious",  # benign then malicious
    }
    assert wanted <= ids
    assert len(ids) >= 30


@pytest.mark.parametrize("case", CANARY_CASES, ids=[case.id for case in CANARY_CASES])
def test_sample_really_runs(case: Case, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    assert case.canary is not None
    assert not canary.exists()
    run_real_loader(case.data, case.canary, tmp_path)
    assert canary.exists(), f"{case.id}: the real loader did not run the payload"
    assert not safeload.scan_bytes(case.data).safe


def test_e3_frame_divergence_runs_with_file_loader(tmp_path: Path) -> None:
    """E3 hides the payload from `pickle.loads` but `pickle.load(file)` runs it."""
    run_real_loader(_E3, "loads", tmp_path)
    assert not (tmp_path / "canary").exists()
    run_real_loader(_E3, "load-file", tmp_path)
    assert (tmp_path / "canary").exists()
    assert safeload.scan_bytes(_E3).verdict is Verdict.DANGEROUS


@pytest.mark.xfail(
    strict=True,
    reason="walker follows the buffered reading of a frame-crossing stream; the C file loader "
    "imports os.system from the hidden reading, which is not reported as a global",
)
def test_e3_hidden_global_is_reported() -> None:
    report = safeload.scan_bytes(_E3)
    assert "os.system" in {f.global_name for f in report.findings}


def test_scan_file_bin_extension_c14(tmp_path: Path) -> None:
    """c14: a plain pickle named `.bin` is scanned by content, not extension."""
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(C02)
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.DANGEROUS
    assert [f.rule for f in report.findings] == ["SL101"]


def test_zero_padding_is_only_noted() -> None:
    report = safeload.scan_bytes(BENIGN + b"\x00" * 4096)
    assert [f.rule for f in report.findings] == ["SL901"]
    assert report.findings[0].offset == len(BENIGN)
    assert report.verdict is Verdict.SAFE


def test_benign_control_is_safe() -> None:
    """The benign carrier used above is safe on its own (so the payloads make the difference)."""
    assert safeload.scan_bytes(BENIGN).safe
    assert safeload.scan_bytes(BENIGN * 6).safe


def test_opcode_budget_fails_closed() -> None:
    data = proto(4) + pop_pad(1000) + none() + stop()
    report = safeload.scan_bytes(data, max_opcodes=100)
    assert [f.rule for f in report.findings] == ["SL303"]
    assert report.verdict is Verdict.INVALID
    assert safeload.scan_bytes(data).safe


def test_budget_keeps_findings_before_the_limit() -> None:
    data = C02[:-1] + pop() + pop_pad(1000) + none() + stop()
    report = safeload.scan_bytes(data, max_opcodes=100)
    assert {f.rule for f in report.findings} == {"SL101", "SL303"}
    assert report.verdict is Verdict.DANGEROUS


# -- number lines only the C unpickler accepts -------------------------------------------
#
# `_pickle.c` parses INT/LONG/FLOAT/PUT/GET lines with C string functions, so
# `I1\x00junk` is the int 1 to it; and the 4300-digit limit of int() does not
# apply to power-of-two bases, so a 5000-digit hex INT loads.  The walker must
# read them the same way, or the payload behind them is never named.

NUL_PREFIXES = {
    "INT": b"I1\x00junk\n" + pop(),
    "LONG": b"L1\x00junk\n" + pop(),
    "FLOAT": b"F1.5\x00junk\n" + pop(),
    "PUT": none() + b"p0\x00junk\n" + pop(),
    "GET": none() + put(0) + pop() + b"g0\x00junk\n" + pop(),
    "INT-hex-5000-digits": int_("0x" + "f" * 5000) + pop(),
    "LONG-hex-5000-digits": long_("0x" + "f" * 5000 + "L") + pop(),
    "INT-octal-5000-digits": int_("0o" + "7" * 5000) + pop(),
    "INT-binary-20000-digits": int_("0b" + "1" * 20000) + pop(),
}


def _nul_sample(prefix: bytes) -> bytes:
    return prefix + glob("os", "system") + mark() + string(CMD) + tuple_() + reduce() + stop()


@pytest.mark.parametrize("op", sorted(NUL_PREFIXES))
def test_nul_text_argument_runs_in_cpython(op: str, tmp_path: Path) -> None:
    """CPython's C loader accepts the number line and runs the payload behind it."""
    data = _nul_sample(NUL_PREFIXES[op])
    run_real_loader(data, "loads", tmp_path)
    assert (tmp_path / "canary").exists()
    assert not safeload.scan_bytes(data).safe


@pytest.mark.parametrize("op", sorted(NUL_PREFIXES))
def test_nul_text_argument_payload_is_named(op: str) -> None:
    report = safeload.scan_bytes(_nul_sample(NUL_PREFIXES[op]))
    assert report.verdict is Verdict.DANGEROUS
    assert "os.system" in {f.global_name for f in report.findings}


# -- a joblib array whose raw bytes are opcodes to pickle.load ---------------------------


def _joblib_array_polyglot(payload: bytes) -> bytes:
    """A `NumpyArrayWrapper` for a uint8 array whose raw bytes are `payload`.

    `joblib.load` reads the array bytes straight from the file after the
    wrapper's BUILD (no alignment key in the state, so no padding byte), then
    unpickles the final STOP.  `pickle.load` / `pickle.loads` (and `numpy.load`'s
    pickle fallback) read the very same bytes as opcodes.
    """
    dtype = (
        sglobal("numpy", "dtype") + sbu("u1") + newfalse() + newtrue() + tuple3() + reduce()
        + mark() + binint1(3) + sbu("|") + none() + none() + none() + binint(-1) + binint(-1)
        + binint1(0) + tuple_() + build()
    )  # fmt: skip
    state = (
        empty_dict() + mark()
        + sbu("subclass") + sglobal("numpy", "ndarray")
        + sbu("shape") + binint1(len(payload)) + tuple1()
        + sbu("order") + sbu("C")
        + sbu("dtype") + dtype
        + sbu("allow_mmap") + newtrue()
        + setitems()
    )  # fmt: skip
    wrapper = sglobal("joblib.numpy_pickle", "NumpyArrayWrapper") + empty_tuple() + newobj()
    return proto(4) + wrapper + state + build() + payload + stop()


JOBLIB_POLYGLOT = _joblib_array_polyglot(C01)  # C01 ends with its own STOP


def test_joblib_polyglot_runs_under_pickle_load_only(tmp_path: Path) -> None:
    """The sample is real: pickle.loads runs the payload; joblib.load returns the array."""
    run_real_loader(JOBLIB_POLYGLOT, "loads", tmp_path)
    assert (tmp_path / "canary").exists()
    (tmp_path / "canary").unlink()
    sample = tmp_path / "model.joblib"
    sample.write_bytes(JOBLIB_POLYGLOT)
    code = (
        "import joblib, sys; a = joblib.load(sys.argv[1]); assert bytes(a) == sys.argv[2].encode()"
    )
    subprocess.run(
        [sys.executable, "-I", "-c", code, str(sample), C01.decode("ascii")],
        cwd=tmp_path,
        timeout=60,
        check=True,
        capture_output=True,
    )
    assert not (tmp_path / "canary").exists()


def test_joblib_polyglot_is_not_safe() -> None:
    """Both readings are walked: the plain-pickle one names the payload."""
    report = safeload.scan_bytes(JOBLIB_POLYGLOT)
    assert report.verdict is Verdict.DANGEROUS
    assert "os.system" in {f.global_name for f in report.findings}


def test_protocol0_pickle_after_junk_is_named() -> None:
    """An offset-aware loader runs a PROTO-less pickle after junk: it must be walked too."""
    report = safeload.scan_bytes(BENIGN + b"\x00" + C01)
    assert not report.safe
    assert "os.system" in {f.global_name for f in report.findings}


# -- E5: constructs that crash the scanner after a payload --------------------------------

_PAYLOAD_THEN = proto(4) + glob("os", "system") + sbu(CMD) + tuple1() + reduce() + pop()

SCANNER_CRASHES = {
    # STACK_GLOBAL with one non-string operand and one string that is not UTF-8
    "stack-global-bad-utf8-name": _PAYLOAD_THEN
    + none()
    + b"\x8c\x01\xfc"
    + stack_global()
    + stop(),
    "stack-global-bad-utf8-module": _PAYLOAD_THEN
    + b"\x8c\x01\xfc"
    + none()
    + stack_global()
    + stop(),
    # a joblib wrapper whose state has a key that is not UTF-8
    "joblib-state-key": _PAYLOAD_THEN.replace(proto(4), b"")
    + JOBLIB_POLYGLOT.replace(sbu("order"), b"\x8c\x05\xfcrder"),
    # a joblib wrapper whose dtype string is not UTF-8
    "joblib-dtype": _PAYLOAD_THEN.replace(proto(4), b"")
    + JOBLIB_POLYGLOT.replace(sbu("u1"), b"\x8c\x02\xfc1"),
}


@pytest.mark.parametrize("name", sorted(SCANNER_CRASHES))
def test_scanner_crash_samples_run_the_payload(name: str, tmp_path: Path) -> None:
    run_real_loader(SCANNER_CRASHES[name], "loads", tmp_path)
    assert (tmp_path / "canary").exists()


@pytest.mark.parametrize("name", sorted(SCANNER_CRASHES))
def test_scanner_does_not_crash(name: str) -> None:
    """Strings that are not UTF-8 are findings, never exceptions (E5: no verdict is fail-open)."""
    report = safeload.scan_bytes(SCANNER_CRASHES[name])
    assert report.verdict is Verdict.DANGEROUS
    assert "os.system" in {f.global_name for f in report.findings}


# -- pickle.py reads a line cut by EOF without its last byte, and imports it --------------

TRUNCATED_INST = {
    "name-cut": mark() + b"ios\nsystem",  # find_class('os', 'syste')
    "name-missing": mark() + b"ios\n",  # find_class('os', '')
    "module-cut": mark() + b"ios",  # find_class('o', '')
}


@pytest.mark.parametrize("name", sorted(TRUNCATED_INST))
def test_truncated_inst_imports_under_pure_python(name: str) -> None:
    """`pickle._Unpickler` (joblib, pandas) imports the module named by a cut INST line."""
    asked: list[tuple[str, str]] = []

    class Recording(pickle._Unpickler):  # type: ignore[name-defined,misc]
        def find_class(self, module: str, qualname: str) -> object:
            asked.append((module, qualname))
            raise pickle.UnpicklingError("stop")

    with pytest.raises(pickle.UnpicklingError):
        Recording(io.BytesIO(TRUNCATED_INST[name])).load()
    assert len(asked) == 1
    assert not safeload.scan_bytes(TRUNCATED_INST[name]).safe


@pytest.mark.parametrize("name", sorted(TRUNCATED_INST))
def test_truncated_inst_names_what_pure_python_imports(name: str) -> None:
    """Reported the way pickle.py reads the cut line, as GLOBAL lines are."""
    report = safeload.scan_bytes(TRUNCATED_INST[name])
    assert any(f.rule == "SL401" and f.global_name for f in report.findings)
