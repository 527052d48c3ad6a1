"""Defects of the class behind issue 15, each proven with the real library where one reads it.

Lengths, counts and offsets read from a file are checked before arithmetic,
and text from a file is decoded as the real reader decodes it. Found by the
fuzzers (tests/fuzz_regressions/ keeps their inputs) or by reading the code;
each test fails on the code before its fix.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest
import torch

import safeload
from safeload import Policy, Verdict
from safeload._formats import numpy as npy
from tests.hostile_containers import stacked_pickles
from tests.picklebuild import glob, proto, reduce, sbu, stop, tuple1


def rules(report: safeload.FileReport) -> list[str]:
    return [f.rule for f in report.findings]


@pytest.mark.parametrize("text", ["1e\u00b2", "1e\u00b3\u2074", "1e\u0661\u0662"])
def test_a_fraction_exponent_of_unicode_digits(text: str) -> None:
    """`str.isdigit` takes '²', `int('²')` raises: the load-cost estimate crashed (SL312)
    once the scope of Fraction was lifted. Fraction itself reads only decimal digits."""
    data = proto(2) + glob("fractions", "Fraction") + sbu(text) + tuple1() + reduce() + stop()
    report = safeload.scan_bytes(data, Policy.build(allow=["fractions.Fraction"]))
    assert "SL312" not in rules(report)
    assert report.verdict is not Verdict.SAFE
    if text == "1e\u00b2":
        from fractions import Fraction

        with pytest.raises(ValueError):
            Fraction(text)


def test_an_npy_header_that_the_tokenizer_chokes_on_is_read_in_linear_time() -> None:
    """numpy's `_filter_header` fallback tokenizes the header; after a run of spaces an
    unreadable character made each space an error token and the rest rescanned:
    10 KB took 74 s. The first error token now ends the read (numpy fails there too)."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + " " * 12_000 + "`\n"
    raw = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header.encode("latin-1")
    started = time.monotonic()
    with pytest.raises(npy.NpyError):
        npy.read_header(raw, 0, len(raw))
    assert time.monotonic() - started < 2
    report = safeload.scan_bytes(raw + b"N.")
    assert report.verdict is Verdict.INVALID
    assert "SL308" in rules(report)


def test_python_2_long_suffixes_are_still_read() -> None:
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2L, 3L), }\n"
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    assert npy.read_header(raw, 0, len(raw)).shape == (2, 3)


def legacy_state_dict() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


@pytest.mark.parametrize("count", [-1, -(2**63), 2**62])
def test_a_legacy_torch_storage_count_out_of_range(count: int) -> None:
    """The raw storage's element count is an int64 from the file: a negative one moved the
    check backwards (struct.error reading at a negative offset); torch refuses both."""
    raw = bytearray(legacy_state_dict())
    end = stacked_pickles(bytes(raw))[-1][1]
    assert struct.unpack_from("<q", raw, end)[0] == 4
    struct.pack_into("<q", raw, end, count)
    with pytest.raises(RuntimeError):
        torch.load(io.BytesIO(bytes(raw)), weights_only=True)
    report = safeload.scan_bytes(bytes(raw))
    assert "SL312" not in rules(report)
    assert report.verdict is Verdict.INVALID
    assert "SL302" in rules(report)


def test_a_torch_zip_member_outside_the_archive_folder() -> None:
    """torch's reader checks at open that every name is under the first one's folder;
    safeload read the state dict anyway (found by tests/test_fuzz_loader.py)."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("elsewhere/notes.txt", b"hello")
    raw = out.getvalue()
    with pytest.raises(RuntimeError, match="not in a subdirectory"):
        torch.load(io.BytesIO(raw), weights_only=True)
    report = safeload.scan_bytes(raw)
    assert report.verdict is Verdict.INVALID
    assert any(f.rule == "SL308" and "elsewhere/notes.txt" in f.message for f in report.findings)
    with pytest.warns(safeload.UnsignedLoadWarning), pytest.raises(safeload.UnsafeFileError):
        safeload.loads(raw, require_signature=False)


def test_a_joblib_array_dtype_with_a_5000_digit_item_size() -> None:
    """The walker sizes a joblib array from its dtype's type string: `int('9' * 5000)`
    exceeds int()'s digit limit (ValueError, an internal error). numpy has no such
    dtype and joblib cannot load the file; the walk now fails closed at the dtype."""
    import joblib
    import numpy as np

    buf = io.BytesIO()
    joblib.dump(np.arange(3.0), buf)
    raw = buf.getvalue()
    at = raw.index(b"\x8c\x02f8")  # SHORT_BINUNICODE 'f8'
    text = ("f" + "9" * 5000).encode()
    forged = raw[:at] + b"X" + struct.pack("<I", len(text)) + text + raw[at + 4 :]
    with pytest.raises(Exception):  # noqa: B017 - any refusal: the point is the scan's
        joblib.load(io.BytesIO(forged))
    report = safeload.scan_bytes(forged)
    assert "SL312" not in rules(report)
    assert any(
        f.rule == "SL301" and "dtype cannot be derived" in f.message for f in report.findings
    )


def safetensors_file(shape: list[int], data: bytes = bytes(4)) -> bytes:
    import json

    header = json.dumps(
        {"t": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(data)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


def test_a_safetensors_shape_of_huge_sizes_is_refused_in_linear_time() -> None:
    """The element count was a product of every size, however large: 200 sizes of 4000
    digits (800 KB) took 20 s, quadratic in the header. The library multiplies in usize
    with overflow checks and refuses the file; so does the scan, at the first overflow."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    raw = safetensors_file([int("9" * 4000)] * 200)
    started = time.monotonic()
    report = safeload.scan_bytes(raw)
    assert time.monotonic() - started < 10
    assert any(f.rule == "SL308" and "overflows" in f.message for f in report.findings)
    with pytest.raises(SafetensorError):
        load(safetensors_file([2**40, 2**40]))
    overflow = safeload.scan_bytes(safetensors_file([2**40, 2**40]))
    assert any("overflows" in f.message for f in overflow.findings)


def test_a_safetensors_shape_that_fits_is_still_read() -> None:
    assert safeload.scan_bytes(safetensors_file([1])).verdict is Verdict.SAFE
    assert safeload.scan_bytes(safetensors_file([2**63, 0], b"")).verdict is Verdict.SAFE


def test_a_torch_zip_entry_on_another_disk() -> None:
    """miniz refuses an archive whose central-directory entry starts on a disk other than
    0 or 1 ('unsupported multidisk archive'); the guarded loader returned the state dict."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    raw = bytearray(buf.getvalue())
    entry = raw.index(b"PK\x01\x02")
    struct.pack_into("<H", raw, entry + 34, 4096)  # disk number start
    with pytest.raises(RuntimeError, match="multidisk"):
        torch.load(io.BytesIO(bytes(raw)), weights_only=True)
    assert safeload.scan_bytes(bytes(raw)).verdict is Verdict.INVALID
