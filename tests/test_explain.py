"""`--explain`: fickling decompiles in a bounded child process and never decides a verdict."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

import safeload
from safeload.scan import _explain
from safeload.scan._explain import explain, explain_file


def binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def exec_payload(canary: Path) -> bytes:
    """builtins.exec("open(<canary>, 'w').write('ran')"), protocol 2, opcode by opcode."""
    source = f"open({str(canary)!r}, 'w').write('ran')"
    return b"\x80\x02cbuiltins\nexec\n" + binunicode(source) + b"\x85R."


def test_decompiles_a_hostile_pickle_without_running_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    text = explain(exec_payload(canary))
    assert "from builtins import exec" in text
    assert f"exec(\"open({str(canary)!r}, 'w').write('ran')\")" in text
    assert not canary.exists()


def test_decompiles_every_pickle_in_a_stream() -> None:
    data = pickle.dumps({"a": 1}) + pickle.dumps([2, 3], protocol=2)
    text = explain(data)
    assert "result0 = {'a': 1}" in text
    assert "# pickle 2 in the same stream" in text
    assert "result1 = [2, 3]" in text


def test_garbage_gives_a_reason_not_an_error() -> None:
    assert explain(b"\x80\x04not a pickle at all").startswith("(not decompiled: ")


def test_timeout() -> None:
    text = explain(pickle.dumps(list(range(1000))), timeout=0.001)
    assert text == "(not decompiled: fickling took longer than 0.001 s)"


def test_input_size_limit() -> None:
    data = pickle.dumps(b"x" * 2000)
    assert explain(data, max_input=1000) == (
        f"(not decompiled: {len(data)} bytes is over the 1000-byte limit)"
    )


def test_output_is_truncated() -> None:
    data = pickle.dumps({f"key{i}": i for i in range(2000)}, protocol=0)
    text = explain(data, max_output=500)
    body, _, tail = text.rpartition("\n")
    assert len(body) <= 500
    assert tail.startswith("... (") and tail.endswith(" more characters not shown)")


def test_resource_exhaustion_is_reported() -> None:
    text = explain(b"(" * 20000 + b".")
    assert text.startswith("(not decompiled: fickling failed: ")
    assert "limit" in text


def test_child_refuses_unpickling_and_processes() -> None:
    for event in ("pickle.find_class", "os.system", "subprocess.Popen", "exec"):
        with pytest.raises(RuntimeError, match="refused"):
            _explain._refuse(event, ())
    _explain._refuse("open", ())  # reading files is how the child imports fickling


def test_explanation_never_changes_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(exec_payload(tmp_path / "canary"))
    before = safeload.scan(path).files[0]
    assert before.verdict is safeload.Verdict.DANGEROUS
    assert before.explanation is None


def torch_zip_with(data_pkl: bytes) -> bytes:
    """A real torch.save archive whose data.pkl is replaced by `data_pkl`."""
    torch = pytest.importorskip("torch")
    saved = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, saved)
    out = io.BytesIO()
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, body)
    return out.getvalue()


def test_explains_the_pickle_inside_a_pytorch_zip(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "model.pt"
    path.write_bytes(torch_zip_with(exec_payload(canary)))
    report = safeload.scan(path).files[0]
    assert (report.verdict, report.format) == (safeload.Verdict.DANGEROUS, "pytorch-zip")
    text = explain_file(path)
    assert text.startswith("# archive/data.pkl\nfrom builtins import exec\n")
    assert not canary.exists()


def test_explains_exactly_the_readings_the_scan_judged(tmp_path: Path) -> None:
    canary = tmp_path / "c"
    plain = tmp_path / "m.pkl"
    plain.write_bytes(exec_payload(canary))
    assert explain_file(plain).startswith("from builtins import exec")
    # A gzipped pickle and a pickle inside a tar are read by the locator, as the scan reads them.
    packed = tmp_path / "m.pkl.gz"
    packed.write_bytes(gzip.compress(exec_payload(canary)))
    assert explain_file(packed).startswith("from builtins import exec")
    archive = tmp_path / "m.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(plain, arcname="inner/model.pkl")
    assert explain_file(archive).startswith("# inner/model.pkl\nfrom builtins import exec")
    assert explain_file(tmp_path / "gone.pkl").startswith("(not decompiled: cannot read the file: ")
    empty_zip = tmp_path / "e.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert explain_file(empty_zip) == (
        "(not decompiled: no pickle stream in this file, which reads as zip)"
    )
    assert not canary.exists()


def test_corrupt_zip_member_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(list(range(300))))
    data = bytearray(buf.getvalue())
    body = data.index(b"archive/data.pkl") + len(b"archive/data.pkl")
    data[body + 2 : body + 6] = b"\xff\xff\xff\xff"  # garbage inside the deflate stream
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(data))
    text = explain_file(path)
    # The scan reads what deflate gave before the garbage; fickling finds no whole pickle in it.
    assert text.startswith("# archive/data.pkl\n(not decompiled: fickling failed: ")
