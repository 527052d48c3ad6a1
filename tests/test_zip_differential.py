"""Differential fuzzing of safeload's zip readers against the real ones (issue 9).

Hypothesis mutates real archives (torch.save, np.savez with an object array,
np.savez_compressed, DataFrame.to_pickle to .zip): end-record and ZIP64 fields, the locator,
central and local header fields (offsets, sizes, lengths, flags, method),
entries duplicated under the same, a case-changed or a NUL-extended name with
or without the count and size following, bytes in front, bytes behind, a cut
tail. For each archive safeload calls `safe`, every member's bytes that a real
reader returns must be among the members safeload read:

- Python's `zipfile` (numpy.load, pandas.read_pickle), in this process: each
  entry of `infolist()`, read as far as it goes (CRC not checked: a loader
  unpickles what it is given before the check at the end);
- torch's `PyTorchStreamReader` (`torch._C.PyTorchFileReader`), in one
  subprocess for all the cases: every record it lists, and `data.pkl`.

"Among" means a prefix of a member's bytes: a reader that returns fewer
bytes (a stored member's smaller size) unpickles nothing the scan of the
longer bytes did not walk. Set SAFELOAD_ZIP_FUZZ_EXAMPLES=N for a longer run with
new random examples.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeload
from safeload import Verdict
from safeload._formats import zipread
from tests.hostile_containers import state_dict

EXAMPLES = int(os.environ.get("SAFELOAD_ZIP_FUZZ_EXAMPLES", "150"))
RANDOM = bool(os.environ.get("SAFELOAD_ZIP_FUZZ_EXAMPLES"))
"""A longer run explores new examples each time; the default run is the same every time."""

LOCAL, CENTRAL, END = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
END64, LOCATOR64 = b"PK\x06\x06", b"PK\x06\x07"

#: (signature, [(offset, struct format)]) of every field a mutation may set.
FIELDS: dict[bytes, list[tuple[int, str]]] = {
    END: [(4, "H"), (6, "H"), (8, "H"), (10, "H"), (12, "I"), (16, "I"), (20, "H")],
    END64: [(4, "Q"), (16, "I"), (20, "I"), (24, "Q"), (32, "Q"), (40, "Q"), (48, "Q")],
    LOCATOR64: [(4, "I"), (8, "Q"), (16, "I")],
    CENTRAL: [
        (6, "H"), (8, "H"), (10, "H"), (12, "H"), (20, "I"), (24, "I"), (28, "H"), (30, "H"),
        (32, "H"), (34, "H"), (38, "I"), (42, "I"),
    ],
    LOCAL: [(6, "H"), (8, "H"), (18, "I"), (22, "I"), (26, "H"), (28, "H")],
}  # fmt: skip


def _bases(tmp: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch.save(state_dict(), buf)
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(3), o=np.array([1, "x"], dtype=object))
    deflated = io.BytesIO()
    np.savez_compressed(deflated, o=np.array([1, "x"], dtype=object))
    path = tmp / "frame.pkl.zip"
    pd.DataFrame({"a": [1, 2]}).to_pickle(path)
    return {
        "torch": buf.getvalue(),
        "npz": npz.getvalue(),
        "npz-deflated": deflated.getvalue(),
        "pandas": path.read_bytes(),
    }


def _positions(raw: bytes | bytearray, sig: bytes) -> list[int]:
    out, i = [], raw.find(sig)
    while i >= 0:
        out.append(i)
        i = raw.find(sig, i + 1)
    return out


@st.composite
def _set_field(draw: st.DrawFn, raw: bytearray) -> None:
    sig = draw(st.sampled_from(sorted(FIELDS)))
    where = _positions(raw, sig)
    if not where:
        return
    pos = draw(st.sampled_from(where))
    offset, fmt = draw(st.sampled_from(FIELDS[sig]))
    if pos + offset + struct.calcsize(fmt) > len(raw):
        return
    (old,) = struct.unpack_from("<" + fmt, raw, pos + offset)
    top = (1 << (8 * struct.calcsize(fmt))) - 1
    value = draw(
        st.sampled_from([0, 1, old - 1, old + 1, old + 46, old - 46, old + 56, top, 0xFFFF])
        | st.integers(0, len(raw) + 64)
    )
    struct.pack_into("<" + fmt, raw, pos + offset, value & top)


@st.composite
def _duplicate_entry(draw: st.DrawFn, raw: bytearray) -> None:
    where = _positions(raw, CENTRAL)
    if not where:
        return
    pos = draw(st.sampled_from(where))
    if pos + 46 > len(raw):
        return
    nlen, xlen, clen = struct.unpack_from("<HHH", raw, pos + 28)
    entry = bytearray(raw[pos : pos + 46 + nlen + xlen + clen])
    name = bytes(entry[46 : 46 + nlen])
    new = draw(st.sampled_from([name, name.swapcase(), name + b"\0x", name[:-1]]))
    entry[46 : 46 + nlen] = new
    struct.pack_into("<H", entry, 28, len(new))
    locals_ = _positions(raw, LOCAL)
    if locals_ and draw(st.booleans()):
        struct.pack_into("<I", entry, 42, draw(st.sampled_from(locals_)))
    at = pos + 46 + nlen + xlen + clen
    raw[at:at] = entry
    grow = len(entry)
    for loc in _positions(raw, LOCATOR64):
        _bump(raw, loc + 8, "Q", grow, at_least=at)
    if draw(st.booleans()):  # the directory's size follows
        for end in _positions(raw, END):
            _bump(raw, end + 12, "I", grow)
        for rec in _positions(raw, END64):
            _bump(raw, rec + 40, "Q", grow)
    if draw(st.booleans()):  # the count follows
        for end in _positions(raw, END):
            _bump(raw, end + 8, "H", 1)
            _bump(raw, end + 10, "H", 1)
        for rec in _positions(raw, END64):
            _bump(raw, rec + 24, "Q", 1)
            _bump(raw, rec + 32, "Q", 1)


def _bump(raw: bytearray, pos: int, fmt: str, delta: int, at_least: int = 0) -> None:
    """Add `delta` to the field at `pos` (if it is inside the bytes and not below `at_least`)."""
    size = struct.calcsize(fmt)
    if pos + size > len(raw):
        return
    (value,) = struct.unpack_from("<" + fmt, raw, pos)
    if value >= at_least:
        struct.pack_into("<" + fmt, raw, pos, (value + delta) & ((1 << (8 * size)) - 1))


@st.composite
def _prepend(draw: st.DrawFn, raw: bytearray) -> None:
    k = draw(st.integers(1, max(1, len(raw))))
    front = draw(st.sampled_from([bytes(raw[:k]), b"\0" * (k % 97 + 1), b"junk" * (k % 13 + 1)]))
    raw[0:0] = front


@st.composite
def _append(draw: st.DrawFn, raw: bytearray) -> None:
    end = raw.rfind(END)
    tail = draw(
        st.sampled_from(
            [b"junk", END + bytes(8), bytes(raw[end:]) if end >= 0 else b"", bytes(raw[-60:])]
        )
    )
    raw.extend(tail)


@st.composite
def _cut(draw: st.DrawFn, raw: bytearray) -> None:
    del raw[len(raw) - draw(st.integers(1, 30)) :]


@st.composite
def _flip(draw: st.DrawFn, raw: bytearray) -> None:
    sig = draw(st.sampled_from([LOCAL, CENTRAL, END, END64, LOCATOR64]))
    where = _positions(raw, sig)
    if where:
        pos = draw(st.sampled_from(where)) + draw(st.integers(0, 60))
        if pos < len(raw):
            raw[pos] ^= 1 << draw(st.integers(0, 7))


_MUTATIONS: list[Callable[[bytearray], st.SearchStrategy[None]]] = [
    _set_field, _set_field, _set_field, _duplicate_entry, _duplicate_entry, _prepend, _append,
    _cut, _flip,
]  # fmt: skip


_BASES: dict[str, bytes] = {}
"""The real archives the mutations start from (made by the test)."""


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    base = draw(st.sampled_from(sorted(_BASES)))
    raw = bytearray(_BASES[base])
    for _ in range(draw(st.integers(1, 3))):
        draw(draw(st.sampled_from(_MUTATIONS))(raw))
    return base, bytes(raw)


# -- what safeload read, what the real readers return ---------------------------------------


def safeload_members(raw: bytes) -> list[bytes]:
    """The bytes of every member the locator scans (`zipread.merged` of the readers it asks)."""
    try:
        views = zipread.read_views(raw, 0, len(raw), torch=raw.startswith(LOCAL))
    except zipread.ZipError:
        return []
    archive, _notes = zipread.merged(views)
    out = []
    for m in archive.members:
        if m.error is not None:
            continue
        stored = raw[m.data_offset : m.data_offset + max(m.read_size, m.compressed_size)]
        if m.method == 8:
            try:
                out.append(zlib.decompressobj(-15).decompress(stored, 1 << 24))
            except zlib.error:
                continue
        else:
            out.append(stored)
    return out


def zipfile_members(raw: bytes) -> list[bytes]:
    """Every entry's bytes as `zipfile` returns them, up to where reading fails."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except Exception:
        return []
    out = []
    with zf:
        for info in zf.infolist():
            try:
                handle = zf.open(info)
            except Exception:
                continue
            handle._expected_crc = None  # type: ignore[attr-defined]
            chunks = []
            try:
                while chunk := handle.read(1 << 16):
                    chunks.append(chunk)
                    if sum(map(len, chunks)) > 1 << 24:
                        break
            except Exception:
                pass
            out.append(b"".join(chunks))
    return out


def uncovered(real: list[bytes], scanned: list[bytes]) -> list[bytes]:
    """Member bytes a real reader returned that are no prefix of anything safeload read."""
    return [b for b in real if b and not any(s.startswith(b) for s in scanned)]


_TORCH_READER = r"""
import base64, io, json, sys
import torch
out = []
for line in sys.stdin:
    raw = base64.b64decode(line)
    got = {}
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(raw))
    except Exception:
        out.append(got)
        continue
    try:
        names = list(reader.get_all_records())
    except Exception:
        names = []
    for name in set(names) | {"data.pkl"}:
        try:
            got[name] = base64.b64encode(bytes(reader.get_record(name))).decode()
        except Exception:
            pass
    out.append(got)
print(json.dumps(out))
"""


def torch_members(cases: list[bytes]) -> list[dict[str, bytes]]:
    """Every record torch's reader returns, for each archive (one subprocess for all)."""
    if not cases:
        return []
    done = subprocess.run(
        [sys.executable, "-I", "-c", _TORCH_READER],
        input="".join(base64.b64encode(c).decode() + "\n" for c in cases),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results: list[dict[str, str]] = json.loads(done.stdout.splitlines()[-1])
    return [{k: base64.b64decode(v) for k, v in r.items()} for r in results]


# -- the test -----------------------------------------------------------------------------


def test_real_readers_return_nothing_safeload_did_not_read(tmp_path: Path) -> None:
    bases = _bases(tmp_path)
    _BASES.update(bases)
    for raw in bases.values():
        assert safeload.scan_bytes(raw).verdict is Verdict.SAFE
    safe_cases: list[tuple[str, bytes]] = []
    seen: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated())
    def check(case: tuple[str, bytes]) -> None:
        base, raw = case
        verdict = safeload.scan_bytes(raw, location=base).verdict
        seen[verdict.value] = seen.get(verdict.value, 0) + 1
        if verdict is not Verdict.SAFE:
            return
        missed = uncovered(zipfile_members(raw), safeload_members(raw))
        assert not missed, (base, raw.hex(), missed)
        if raw.startswith(LOCAL):
            safe_cases.append(case)

    check()
    print(f"verdicts {seen}; {len(safe_cases)} safe archives read by torch's reader")
    # the mutations reach both outcomes: some archives stay safe, many do not
    assert seen.get("safe", 0) >= 5 and sum(seen.values()) - seen.get("safe", 0) >= 5, seen
    for (base, raw), records in zip(
        safe_cases, torch_members([r for _, r in safe_cases]), strict=True
    ):
        missed = uncovered(list(records.values()), safeload_members(raw))
        assert not missed, (base, raw.hex(), missed)


@pytest.mark.parametrize("mutation", ["count", "concat", "locator"])
def test_the_oracles_see_a_divergence(mutation: str) -> None:
    """The check above can fail: on archives whose readers disagree, a reader that reads only
    the first directory (what safeload did before) misses what the real readers return."""
    from tests import hostile_zip as hz

    build = {
        "count": lambda: hz.count_below_directory(hz.NUMPY),
        "concat": lambda: hz.concat_shift(hz.PANDAS),
        "locator": lambda: hz.locator_elsewhere(hz.TORCH),
    }[mutation]
    raw = build()
    torch_view = zipread.read_torch(raw, 0, len(raw))
    only_torch = [raw[m.data_offset : m.data_offset + m.read_size] for m in torch_view.members]
    real: list[bytes] = zipfile_members(raw)
    if mutation == "locator":
        real = list(torch_members([raw])[0].values())
        zipfile_view = zipread.read_zipfile(raw, 0, len(raw))
        only_torch = [
            raw[m.data_offset : m.data_offset + m.read_size] for m in zipfile_view.members
        ]
    assert uncovered(real, only_torch)
    assert not uncovered(real, safeload_members(raw))
    assert safeload.scan_bytes(raw).verdict is not Verdict.SAFE


def test_torch_pick_is_the_entry_torch_reads() -> None:
    """Entries named data.pkl but for case (or exactly alike): torch's reader returns the one
    miniz's heap sort and binary search land on, and `zipread.torch_pick` computes the same."""
    import random

    from tests import hostile_zip as hz

    rng = random.Random(9)
    cases = []
    for _ in range(40):
        variants = [
            "".join(c.upper() if rng.random() < 0.5 else c for c in "archive/data.pkl").encode()
            for _ in range(rng.randint(2, 6))
        ]
        fillers = [f"archive/f{i}".encode() for i in range(rng.randint(0, 25))]
        names = variants + fillers + [b"archive/version"]
        rng.shuffle(names)
        entries = [
            hz.Entry(n, pickle.dumps(k) if n in variants else b"3\n") for k, n in enumerate(names)
        ]
        cases.append(hz.simple(entries))
    for raw, records in zip(cases, torch_members(cases), strict=True):
        view = zipread.read_torch(raw, 0, len(raw))
        pick = zipread.torch_pick(view, b"archive/data.pkl")
        assert pick is not None
        assert raw[pick.data_offset : pick.data_offset + pick.read_size] == records["data.pkl"]
        assert zipread.torch_lookup(view, b"archive/data.pkl")[0] is pick
