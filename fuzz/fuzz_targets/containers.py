"""Fuzz target: the container readers raise only their own errors, whatever the bytes.

The first byte picks the reader, the rest is its input:

0. `zipread.read_archive` (raises `ZipError`) and `zipread.overlapping`;
1. `numpy.read_header` (raises `NpyError`);
2. `safetensors.looks_like` and `validate` (return a problem, never raise);
3. the tar walk (`tar.scan_tar`: notes, never raises);
4. `compress.expand`, every compressor in turn (an error field, never raises);
5. PyTorch's legacy stacked pickles (`torch.scan_legacy_stacked`: notes);
6. the sniffers: `container_kind`, `scan._batch.sniff`, `tar.looks_like`.

Any other exception is a defect: the locator would turn it into a generic
`corrupt-container` note, but a length or offset read from the file was then
used before it was checked.
"""

from __future__ import annotations

from contextlib import ExitStack

from safeload._formats import compress, containers, safetensors, tar, zipread
from safeload._formats import numpy as npy
from safeload._formats import torch as torch_fmt
from safeload.scan._batch import sniff

READERS = 7
KINDS = (*(kind for _magic, kind in compress.MAGICS), "zlib", "deflate")
LIMIT = 16 << 20


def _ctx(stack: ExitStack) -> containers.Ctx:
    return containers.Ctx(max_opcodes=100_000, stack=stack)


def one(raw: bytes) -> None:
    if not raw:
        return
    which, data = raw[0] % READERS, raw[1:]
    end = len(data)
    if which == 0:
        try:
            archive = zipread.read_archive(data, 0, end)
        except zipread.ZipError:
            return
        zipread.overlapping(archive)
    elif which == 1:
        try:
            npy.read_header(data, 0, end)
        except npy.NpyError:
            return
    elif which == 2:
        if safetensors.looks_like(data[:1024], end):
            safetensors.validate(data, 0, end)
    elif which == 3:
        with ExitStack() as stack:
            tar.scan_tar(_ctx(stack), data, 0, end, "fuzz", 0)
    elif which == 4:
        with ExitStack() as stack:
            for kind in KINDS:
                try:
                    compress.expand(kind, data, 0, end, LIMIT, stack)
                except compress.Unavailable:
                    continue
    elif which == 5:
        if torch_fmt.is_legacy_stacked(data, 0, end):
            with ExitStack() as stack:
                torch_fmt.scan_legacy_stacked(_ctx(stack), data, 0, end, "fuzz")
    else:
        containers.container_kind(data[:1024], end)
        sniff(data[: 64 * 1024], end)
        tar.looks_like(data[:1024])
