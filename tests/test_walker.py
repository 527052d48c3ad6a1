"""Semantics of the symbolic machine, checked against what CPython really does."""

from __future__ import annotations

import io
import pickle
import struct
import zoneinfo

import pytest

import safeload
from safeload._machine.walker import analyze


def sbu(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def rules_of(data: bytes, **kw: int) -> list[str]:
    report = safeload.scan_bytes(data, **kw)  # type: ignore[arg-type]
    return [f.rule for f in report.findings]


def names(data: bytes) -> list[str]:
    return [g.canonical for g in analyze(data).globals]


class Recorder(pickle.Unpickler):
    """CPython's C unpickler, asked which names it would import (nothing is)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.asked: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> object:
        self.asked.append((module, name))
        return Stub


class Stub:
    def __init__(self, *a: object, **k: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def test_no_proto_means_protocol_0_and_compat_mapping() -> None:
    data = b"c__builtin__\neval\n(S'1'\ntR."
    (g,) = analyze(data).globals
    assert (g.module, g.name, g.raw) == ("builtins", "eval", ("__builtin__", "eval"))
    assert rules_of(data) == ["SL102"]


def test_mapping_follows_the_current_protocol_mid_stream() -> None:
    # PROTO 4 first, then a switch to 2 right before a Python-2 name.
    data = b"\x80\x04N0\x80\x02ccPickle\nloads\n)R."
    (g,) = analyze(data).globals
    assert (g.module, g.name) == ("pickle", "loads")
    # At protocol 3 the same name is not mapped (and is unknown).
    data3 = b"\x80\x03ccPickle\nloads\n)R."
    (g3,) = analyze(data3).globals
    assert (g3.module, g3.name) == ("cPickle", "loads")
    assert rules_of(data3) == ["SL105"]  # the deny rule names cPickle too


def test_name_mapping_table_is_applied() -> None:
    (g,) = analyze(b"c__builtin__\nreduce\n.").globals
    assert (g.module, g.name) == ("functools", "reduce")


def test_dotted_name_is_reached_through_the_module() -> None:
    data = b"\x80\x04" + sbu("pathlib") + sbu("os.system") + b"\x93" + sbu("id") + b"\x85R."
    report = safeload.scan_bytes(data)
    (f,) = report.findings
    assert (f.rule, f.global_name, f.offset) == ("SL101", "pathlib:os.system", 22)
    assert f.usage == ("called",)
    assert f.arguments == ("('id',)",)
    assert report.verdict is safeload.Verdict.DANGEROUS


def test_allowing_the_module_does_not_allow_a_relay() -> None:
    policy = safeload.Policy.build(allow=["pathlib.PurePosixPath", "pathlib.os"])
    data = b"\x80\x04" + sbu("pathlib") + sbu("os.system") + b"\x93."
    assert [f.rule for f in safeload.scan_bytes(data, policy).findings] == ["SL101"]


def test_getattr_on_a_global_is_folded_into_the_dotted_name() -> None:
    data = pickle.dumps(zoneinfo.ZoneInfo._unpickle, protocol=2)
    assert b"getattr" in data
    gs = analyze(data).globals
    folded = [g for g in gs if g.kind == "getattr"]
    assert [g.canonical for g in folded] == ["zoneinfo:ZoneInfo._unpickle"]
    report = safeload.scan_bytes(data)
    assert all(f.global_name != "builtins.getattr" for f in report.findings)


def test_getattr_on_anything_else_is_attribute_access() -> None:
    # getattr(collections.OrderedDict(), 'clear') : the target is a call result.
    data = (
        b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)R"
        + b"X\x05\x00\x00\x00clear\x86R."
    )
    report = safeload.scan_bytes(data)
    assert [f.rule for f in report.findings] == ["SL104"]
    assert report.findings[0].global_name == "builtins.getattr"


def test_memo_tracks_the_stack_top_not_the_previous_argument() -> None:
    # 'os' DUP MEMOIZE POP POP ; 'system' DUP MEMOIZE POP POP ; GET 0 GET 1 STACK_GLOBAL
    data = (
        b"\x80\x04" + sbu("os") + b"2\x9400" + sbu("system") + b"2\x9400"
        b"h\x00h\x01\x93" + sbu("id") + b"\x85R."
    )
    r = Recorder(data)
    r.load()
    assert r.asked == [("os", "system")]
    assert names(data) == ["os.system"]


def test_computed_stack_global_operands_are_dangerous() -> None:
    rot = b"c_codecs\ndecode\n" + sbu("bf") + sbu("rot13") + b"\x86R"
    data = b"\x80\x04" + rot + sbu("system") + b"\x93."
    assert rules_of(data) == ["SL401", "SL201"]  # _codecs.decode is not allowed either


def test_wrong_type_operand_is_dangerous() -> None:
    data = b"\x80\x04K\x01" + sbu("system") + b"\x93."
    assert rules_of(data) == ["SL201"]


def test_build_on_a_global_and_setitem_into_a_global() -> None:
    build = b"\x80\x02cjson\ndecoder\n}X\n\x00\x00\x00scanstringcbuiltins\nrepr\nsb."
    assert "SL203" in rules_of(build)
    env = b"\x80\x02cos\nenviron\nX\x03\x00\x00\x00FOOX\x03\x00\x00\x00bars."
    assert "SL204" in rules_of(env)


def test_usage_kinds() -> None:
    data = b"\x80\x02ccollections\nOrderedDict\n)\x81}b."
    (g,) = analyze(data).globals
    assert g.uses == {"instantiated", "state"}
    (stored,) = analyze(b"\x80\x02ccollections\nOrderedDict\n.").globals
    assert stored.uses == {"stored"}


def test_every_pickle_in_a_stream_is_walked() -> None:
    evil = b"\x80\x04" + sbu("os") + sbu("system") + b"\x93" + sbu("id") + b"\x85R."
    data = pickle.dumps({"a": 1}) + evil
    assert rules_of(data) == ["SL101"]


def test_zero_padding_is_only_a_note() -> None:
    report = safeload.scan_bytes(pickle.dumps([1, 2]) + b"\x00" * 64)
    assert [(f.rule, f.verdict) for f in report.findings] == [("SL901", None)]
    assert report.verdict is safeload.Verdict.SAFE


def test_junk_then_payload_is_caught() -> None:
    evil = b"\x80\x04" + sbu("os") + sbu("system") + b"\x93" + sbu("id") + b"\x85R."
    data = pickle.dumps({"a": 1}) + b"\x01" + evil
    report = safeload.scan_bytes(data)
    rules = {f.rule for f in report.findings}
    assert {"SL304", "SL101"} <= rules
    assert report.verdict is safeload.Verdict.DANGEROUS


def test_payload_then_garbage_keeps_the_payload() -> None:
    data = b"cos\nsystem\n(S'id'\ntR\xff\xff"
    report = safeload.scan_bytes(data)
    assert [f.rule for f in report.findings] == ["SL101", "SL301"]


def test_truncated_stream() -> None:
    data = pickle.dumps(list(range(100)), protocol=4)[:-3]
    assert rules_of(data) == ["SL302"]


def test_frame_crossing_is_reported() -> None:
    body = b"N0" + b"C\x04abcd"  # the SHORT_BINBYTES runs 2 bytes past the frame
    frame = b"\x95" + struct.pack("<Q", 4)
    data = b"\x80\x04" + frame + body + b"0N."
    assert "SL206" in rules_of(data)
    # A well-formed framed pickle has no such finding.
    assert rules_of(pickle.dumps(list(range(10000)), protocol=5)) == []


@pytest.mark.parametrize(
    "string, memo",
    [
        (sbu("abc"), b"\x94"),
        (b"X\x03\x00\x00\x00abc", b"q\x00"),
        (b"X\x00\x00\x00\x00", b"r\0\0\0\0"),
    ],
    ids=["short-binunicode-memoize", "binunicode-binput", "binunicode-long-binput"],
)
def test_memo_write_right_after_a_frame_is_unframed(string: bytes, memo: bytes) -> None:
    # A frame ends with a string; its memo write follows, outside any frame. Every
    # unpickler reads that; the walker takes a string and its memo write in one
    # step, but not across the end of a frame.
    data = b"\x80\x04\x95" + struct.pack("<Q", len(string)) + string + memo + b"0N."
    for loader in (pickle.loads, lambda d: pickle._Unpickler(io.BytesIO(d)).load()):
        assert loader(data) is None
    assert rules_of(data) == []


def test_opcode_budget_fails_closed() -> None:
    data = pickle.dumps(list(range(1000)), protocol=4)
    report = safeload.scan_bytes(data, max_opcodes=100)
    assert [f.rule for f in report.findings] == ["SL303"]
    assert report.verdict is safeload.Verdict.INVALID


def test_extension_codes_are_never_safe() -> None:
    assert rules_of(b"\x80\x02\x82\x01" + b")R.") == ["SL202"]


def test_persistent_ids_are_not_safe_in_a_plain_pickle() -> None:
    report = safeload.scan_bytes(b"\x80\x02X\x01\x00\x00\x00xQ.")
    assert [f.rule for f in report.findings] == ["SL402"]
    assert report.verdict is safeload.Verdict.UNKNOWN


def test_shared_structure_is_not_expanded() -> None:
    # 64 levels of (x, x): 2**64 leaves when expanded, 64 nodes when shared.
    body = b"\x80\x04N" + b"2\x86" * 64 + b"."
    assert pickle.loads(body) is not None
    assert rules_of(body) == []


def test_deny_rules_win_over_allow_entries() -> None:
    with pytest.raises(safeload.PolicyError, match="SL101"):
        safeload.Policy.build(allow=["os.system"])
    with pytest.raises(safeload.PolicyError, match="SL101"):
        safeload.Policy.build(allow=["pathlib:os.system"])


def test_negative_text_memo_index_is_a_miss() -> None:
    # PROTO first: without it, a stream of constants that breaks is not-a-pickle (SL305)
    data = b"\x80\x02K\x01p0\n0g-1\n."
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)
    assert rules_of(data) == ["SL301"]


def test_stop_inside_a_frame_with_bytes_left_is_reported() -> None:
    frame = b"\x95" + struct.pack("<Q", 4)
    data = b"\x80\x04" + frame + b"N.N."
    assert "SL206" in rules_of(data)


def test_partial_is_judged_by_what_it_binds() -> None:
    import functools
    import os

    assert (
        safeload.scan_bytes(pickle.dumps(functools.partial(int, "7"))).verdict
        is safeload.Verdict.SAFE
    )
    bound = safeload.scan_bytes(pickle.dumps(functools.partial(os.system, "id")))
    assert [f.rule for f in bound.findings] == ["SL101"]
    # Calling a partial while unpickling is a call of a computed callable.
    called = b"\x80\x02cfunctools\npartial\ncbuiltins\nint\n\x85R)R."
    assert "SL205" in rules_of(called)


def test_dotted_paths_to_interpreter_internals_are_attribute_access() -> None:
    for qual in ("ndarray.__init__.__globals__", "__dict__", "dtype.__subclasses__"):
        data = b"\x80\x04" + sbu("numpy") + sbu(qual) + b"\x93."
        assert rules_of(data) == ["SL104"], qual
    exact = b"\x80\x04" + sbu("torch") + sbu("jit.unsupported_tensor_ops.os.system") + b"\x93."
    assert rules_of(exact) == ["SL101"]
