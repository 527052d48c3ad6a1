"""Hostile container files: every way a payload hides inside a real model format.

The builders here make real files with the real libraries (torch, numpy,
joblib, pandas, tarfile, zipfile, the compressors) and put a payload that only
creates a `canary` file in the current directory somewhere a loader reads it.
`tests/test_containers.py` checks that the scanner finds each payload;
`tests/test_load_hostile.py` loads the whole corpus with the guarded loader
(`write_corpus`) and proves each payload real with the plain loader
(`Variant.plain`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import pickletools
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import torch

from tests.picklebuild import build as build_op
from tests.picklebuild import (
    empty_dict,
    empty_tuple,
    glob,
    mark,
    newfalse,
    newobj,
    proto,
    reduce,
    sbu,
    setitems,
    stop,
    tuple2,
)

CANARY = "canary"
OPENERS = ("builtins.open", "io.open")
"""How the payload's callable is named (the real pickler writes `open` as io.open)."""


def payload(canary: str = CANARY) -> bytes:
    """builtins.open(canary, 'w'): creates the canary file when unpickled."""
    return (
        proto(2) + glob("builtins", "open") + sbu(canary) + sbu("w") + tuple2() + reduce() + stop()
    )


class Evil:
    """Pickles as the payload above, written by the real pickler (inside real files)."""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (CANARY, "w")


# -- shared builders ---------------------------------------------------------------------


def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"w": torch.randn(8, 4), "b": torch.zeros(4), "i": torch.arange(5)}


def evil_torch_zip(directory: Path, name: str = "evil.pt") -> tuple[Path, bytes]:
    """A real `torch.save` zip archive whose data.pkl holds the payload."""
    path = directory / name
    torch.save({"w": torch.ones(2), "x": Evil()}, path)
    return path, path.read_bytes()


def torch_prefix(path: Path) -> str:
    """The archive folder torch.save chose (the file's stem)."""
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()[0].split("/")[0]


def stacked_pickles(raw: bytes) -> list[tuple[int, int]]:
    """Start/end of the 5 pickles of a legacy torch file."""
    spans = []
    pos = 0
    for _ in range(5):
        for op, _arg, at in pickletools.genops(raw[pos:]):
            if op.name == "STOP":
                spans.append((pos, pos + at + 1))
                pos = pos + at + 1
                break
    return spans


def tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def legacy_tar(path: Path, storage_views: bytes, top: bytes) -> None:
    """torch < 0.4's tar layout: one float storage of 2 elements and one tensor on it."""
    storages = (
        pickle.dumps(1, protocol=2)
        + pickle.dumps((0, "cpu", torch.FloatStorage), protocol=2)
        + struct.pack("<q2f", 2, 1.5, 2.5)
        + storage_views
    )
    tensors = (
        pickle.dumps(1, protocol=2)
        + pickle.dumps((1, 0, torch.FloatTensor), protocol=2)
        + struct.pack("<i4xqqq", 1, 2, 1, 0)
    )
    sys_info = {"protocol_version": 1001, "little_endian": True}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tar_member(tf, "sys_info", pickle.dumps(sys_info, protocol=2))
        tar_member(tf, "storages", storages)
        tar_member(tf, "tensors", tensors)
        tar_member(tf, "pickle", top)


def npy_bytes(header: str, body: bytes, version: int = 2) -> bytes:
    """An .npy file with this header text (padding included by the caller) and body."""
    raw = header.encode("latin1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + body
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(raw)) + raw + body


def evil_npy_bytes() -> bytes:
    """A real `np.save` of an object array holding the payload."""
    buf = io.BytesIO()
    np.save(buf, np.array([1, Evil()], dtype=object))
    return buf.getvalue()


def zip_of(name: str, body: bytes, method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr(name, body)
    return buf.getvalue()


def ndarray_wrapper_pickle(companion: str) -> bytes:
    """joblib < 0.10's NDArrayWrapper: `joblib.load` opens `companion` beside the file
    with `np.load(allow_pickle=True)`."""
    state = (
        empty_dict()
        + mark()
        + sbu("filename")
        + sbu(companion)
        + sbu("subclass")
        + glob("numpy", "ndarray")
        + sbu("allow_mmap")
        + newfalse()
        + setitems()
    )
    wrapper = glob("joblib.numpy_pickle_compat", "NDArrayWrapper") + empty_tuple() + newobj()
    return proto(2) + wrapper + state + build_op() + stop()


def _lz4(data: bytes) -> bytes:
    import lz4.frame  # type: ignore[import-untyped,unused-ignore]

    out: bytes = lz4.frame.compress(data)
    return out


def _zstd(data: bytes) -> bytes:
    import zstandard  # type: ignore[import-untyped,unused-ignore]

    out: bytes = zstandard.ZstdCompressor().compress(data)
    return out


TORCHSCRIPT_WRITER = """
import torch
from typing import Tuple

class Writer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.ones(1)

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        self.x = state[0]
        self.training = state[1]
        torch.save(self.x, "canary")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a + self.x

torch.jit.save(torch.jit.script(Writer()), OUT)
"""


def torchscript_setstate(path: Path) -> None:
    """A TorchScript archive whose `__setstate__` writes `canary` when `torch.load` runs it.

    TorchScript needs the class's source, so a script file beside `path` makes it.
    """
    script = path.parent / "make_torchscript.py"
    script.write_text(TORCHSCRIPT_WRITER.replace("OUT", repr(path.name)))
    subprocess.run([sys.executable, "-W", "ignore", str(script)], cwd=path.parent, check=True)
    script.unlink()


# -- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One hostile container file."""

    name: str
    filename: str
    build: Callable[[Path], None]
    """Writes the file at the given path (and any companion file beside it)."""
    plain: str
    """Python code that loads `path` (a str) with the plain loader: run with the
    working directory elsewhere, it must create the canary there."""
    proof_note: str = ""
    """Why `plain` is not the format's own loader, when it is not."""


def _torch_zip_data_pkl(path: Path) -> None:
    torch.save({"w": torch.ones(2), "x": Evil()}, path)


def _torch_zip_extra_member(path: Path) -> None:
    torch.save(state_dict(), path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{torch_prefix(path)}/extra/hook.pkl", payload())


def _torch_legacy(index: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if index == 3:  # the object pickle: the real pickler writes the payload
            torch.save(
                {"w": torch.ones(2), "x": Evil()}, path, _use_new_zipfile_serialization=False
            )
            return
        torch.save(state_dict(), path, _use_new_zipfile_serialization=False)
        raw = path.read_bytes()
        a, b = stacked_pickles(raw)[index]
        path.write_bytes(raw[:a] + payload() + raw[b:])

    return write


def _torch_legacy_tar_pickle(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tar_member(tf, "sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2))
        tar_member(tf, "storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2))
        tar_member(tf, "tensors", pickle.dumps(0, protocol=2))
        tar_member(tf, "pickle", payload())


def _torch_legacy_tar_storages(path: Path) -> None:
    legacy_tar(path, payload(), pickle.dumps({}, protocol=2))


def _npy_object(path: Path) -> None:
    np.save(path, np.array([1, Evil()], dtype=object))


def _npy_long_header(path: Path) -> None:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (20_000 - len(header)) + "\n"
    path.write_bytes(npy_bytes(header, payload()))


def _npy_structured_object(path: Path) -> None:
    header = "{'descr': [('a', '<i8'), ('b', '|O')], 'fortran_order': False, 'shape': (1,), }\n"
    path.write_bytes(npy_bytes(header, payload(), version=1))


_NUMERIC_NPY = npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': ()}\n", bytes(8))


def _npz(method: int, member: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", method) as zf:
            zf.writestr("ok.npy", _NUMERIC_NPY)
            zf.writestr(member, evil_npy_bytes())

    return write


def _joblib_after_array(compressor: str | None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        compress = (compressor, 3) if compressor else 0
        joblib.dump([np.arange(100.0), Evil()], path, compress=compress)

    return write


def _joblib_object_array(path: Path) -> None:
    joblib.dump({"a": np.arange(10), "o": np.array([1, Evil()], dtype=object)}, path)


def _joblib_legacy_zf(path: Path) -> None:
    from joblib.numpy_pickle_compat import write_zfile  # type: ignore[import-untyped]

    with open(path, "wb") as fh:
        write_zfile(fh, payload())


def _ndarray_wrapper(path: Path) -> None:
    (path.parent / "evil_array.npy").write_bytes(evil_npy_bytes())
    path.write_bytes(ndarray_wrapper_pickle("evil_array.npy"))


_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "zlib": zlib.compress,
    "zstd": _zstd,
    "lz4": _lz4,
}
_PANDAS_READS = {"gzip", "bz2", "xz", "zstd"}
"""Compressions `pandas.read_pickle` reads; joblib reads the others (and these)."""


def _compressed(name: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        # zstandard's reader has no readline, which protocol-0 GLOBAL needs: the payload
        # is pickled as pandas pickles frames, at protocol 5.
        body = pickle.dumps(Evil(), protocol=5) if name == "zstd" else payload()
        path.write_bytes(_COMPRESSORS[name](body))

    return write


def _tar_wrapped(mode: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
            tar_member(tf, "frame.pkl", payload())

    return write


def _tar_gz_two_members(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        tar_member(tf, "readme.txt", b"hello\n")
        tar_member(tf, "frame.pkl", payload())


def _nested_zip(path: Path) -> None:
    inner = zip_of("model.pkl", payload(), zipfile.ZIP_DEFLATED)
    path.write_bytes(zip_of("inner.zip", inner))


def _pickle_zip_polyglot(path: Path) -> None:
    benign = io.BytesIO()
    torch.save(state_dict(), benign)
    path.write_bytes(payload() + benign.getvalue())


def _zip_at_tail(trailer: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(pickle.dumps({"ok": 1}, protocol=2) + zip_of("m.pkl", payload()) + trailer)

    return write


def _tar_name_pickle(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        tar_member(tf, "cbuiltins\nopen\n(Vcanary\nVw\ntR.", b"data")


_TORCH = "import torch; torch.load(path, weights_only=False)"
_NUMPY = "import numpy as np; np.load(path, allow_pickle=True)"
_NPZ = "import numpy as np; np.load(path, allow_pickle=True)['o']"
_JOBLIB = "import joblib; joblib.load(path)"
_PICKLE = "import pickle; pickle.load(open(path, 'rb'))"


def _pandas(compression: str) -> str:
    return f"import pandas as pd; pd.read_pickle(path, compression={compression!r})"


VARIANTS: tuple[Variant, ...] = (
    Variant("torch-zip-data-pkl", "model.pt", _torch_zip_data_pkl, _TORCH),
    Variant(
        "torch-zip-extra-pkl-member",
        "model.pt",
        _torch_zip_extra_member,
        "import pickle, zipfile\npickle.loads(zipfile.ZipFile(path).read('model/extra/hook.pkl'))",
        "torch.load never reads an extra member; a tool that unpickles the archive's "
        ".pkl members does",
    ),
    *(Variant(f"torch-legacy-pickle-{i}", "legacy.pt", _torch_legacy(i), _TORCH) for i in range(5)),
    Variant("torch-legacy-tar-pickle", "old.pt", _torch_legacy_tar_pickle, _TORCH),
    Variant("torch-legacy-tar-storages", "old.pt", _torch_legacy_tar_storages, _TORCH),
    Variant("npy-object", "o.npy", _npy_object, _NUMPY),
    Variant("npy-long-header", "long.npy", _npy_long_header, _NUMPY),
    Variant("npy-structured-object-field", "s.npy", _npy_structured_object, _NUMPY),
    Variant("npz-member-stored", "z.npz", _npz(zipfile.ZIP_STORED, "o.npy"), _NPZ),
    Variant("npz-member-deflated", "z.npz", _npz(zipfile.ZIP_DEFLATED, "o.npy"), _NPZ),
    Variant(
        "npz-member-any-name",
        "z.npz",
        _npz(zipfile.ZIP_STORED, "o"),
        _NPZ,
        "numpy reads any member that starts with the .npy magic as an array",
    ),
    *(
        Variant(
            f"joblib-after-first-array-{c or 'none'}",
            "evil.joblib",
            _joblib_after_array(c),
            _JOBLIB,
        )
        for c in (None, "zlib", "gzip", "bz2", "xz", "lzma", "lz4")
    ),
    Variant("joblib-object-array", "evil.joblib", _joblib_object_array, _JOBLIB),
    Variant("joblib-legacy-zf", "old.pkl", _joblib_legacy_zf, _JOBLIB),
    Variant("joblib-ndarray-wrapper", "old.pkl", _ndarray_wrapper, _JOBLIB),
    *(
        Variant(
            f"compressed-pickle-{c}",
            f"evil.pkl.{c}",
            _compressed(c),
            _pandas(c) if c in _PANDAS_READS else _JOBLIB,
        )
        for c in _COMPRESSORS
    ),
    Variant("tar-wrapped", "evil.tar", _tar_wrapped("w"), _pandas("tar")),
    Variant("tar-gz-wrapped", "evil.tgz", _tar_wrapped("w:gz"), _pandas("tar")),
    Variant(
        "tar-gz-two-members",
        "evil.tgz",
        _tar_gz_two_members,
        "import pickle, tarfile\npickle.load(tarfile.open(path).extractfile('frame.pkl'))",
        "pandas reads only single-member archives; a tool that unpickles the member does",
    ),
    Variant(
        "nested-zip",
        "bundle.zip",
        _nested_zip,
        "import zipfile, pandas as pd\n"
        "open('inner.zip', 'wb').write(zipfile.ZipFile(path).read('inner.zip'))\n"
        "pd.read_pickle('inner.zip', compression='zip')",
        "pandas reads one level of zip: the inner archive is extracted first",
    ),
    Variant("pickle-zip-polyglot", "poly.pt", _pickle_zip_polyglot, _PICKLE),
    Variant("zip-at-tail", "poly.pkl", _zip_at_tail(b""), _pandas("zip")),
    Variant("zip-at-tail-then-junk", "poly.zip", _zip_at_tail(b"junk" * 10), _pandas("zip")),
    Variant("tar-first-name-pickle", "t.tar", _tar_name_pickle, _PICKLE),
    Variant("torchscript-setstate", "ts.pt", torchscript_setstate, _TORCH),
)


def write_corpus(directory: Path, names: Collection[str] | None = None) -> dict[str, Path]:
    """Write every variant (or those `names`) to `directory/<name>/<filename>`; returns
    the paths by name.

    Each file has a folder of its own, so that companions (the NDArrayWrapper's
    array file) sit beside it and nothing else does.
    """
    unknown = set(names or ()) - {v.name for v in VARIANTS}
    assert not unknown, f"no such variants: {unknown}"
    out = {}
    for variant in VARIANTS:
        if names is not None and variant.name not in names:
            continue
        folder = directory / variant.name
        folder.mkdir(parents=True)
        path = folder / variant.filename
        variant.build(path)
        out[variant.name] = path
    return out
