"""What the locator finds: the readings of a file, and what the file was read as.

A *reading* is one pickle stream that some loader would deserialize, with
the walk of it; the scanner judges readings and the guarded loader
deserializes exactly those bytes. A *note* is a container-level problem
(a corrupt zip, a polyglot, a decompression bomb) named by a rule name from
`rules/rules.toml`. Nothing here knows the policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .._machine.walker import StreamAnalysis


class Format(enum.Enum):
    """What a byte range was read as (the atoms of `FileReport.format`)."""

    PICKLE = "pickle"
    JOBLIB = "joblib"
    PYTORCH_ZIP = "pytorch-zip"
    PYTORCH_LEGACY = "pytorch-legacy"
    PYTORCH_TAR = "pytorch-tar"
    TORCHSCRIPT = "torchscript"
    """A PyTorch archive that `torch.load` hands to `torch.jit.load`."""
    NPY = "npy"
    NPY_OBJECT = "npy-object"
    NPZ = "npz"
    ZIP = "zip"
    TAR = "tar"
    JOBLIB_ZF = "joblib-zf"
    SEVEN_ZIP = "7z"
    LFS_POINTER = "lfs-pointer"
    SAFETENSORS = "safetensors"
    EMPTY = "empty"
    DATA = "data"
    """Bytes no loader deserializes (an archive member that is no pickle), in no
    format `recognize` knows."""
    # What a `not-a-pickle` file holds, recognized by content (`recognize`).
    JSON = "json"
    UBJSON = "ubjson"
    PROTOBUF = "protobuf"
    ONNX = "onnx"
    GGUF = "gguf"
    HDF5 = "hdf5"
    PNG = "png"
    JPEG = "jpeg"
    GIF = "gif"
    WEBP = "webp"
    TEXT = "text"
    NESTED = "nested"
    """A container nested too deep to be opened."""


class Compression(enum.Enum):
    """A compressed stream, as joblib and pandas recognise one."""

    GZIP = "gzip"
    BZ2 = "bz2"
    XZ = "xz"
    LZMA = "lzma"
    LZ4 = "lz4"
    ZSTD = "zstd"
    ZLIB = "zlib"
    DEFLATE = "deflate"
    """A deflated zip member (never a file's outer layer)."""


_TAR_SUFFIX = {Compression.GZIP: "gz"}


@dataclass(frozen=True)
class Compressed:
    """A compressed stream whose expanded bytes were read as `inner`."""

    compression: Compression
    inner: Shape

    def __str__(self) -> str:
        if not self.inner.readings:  # never expanded (corrupt, or no decompressor)
            return self.compression.value
        if self.inner.readings == (Format.TAR,):
            return "tar." + _TAR_SUFFIX.get(self.compression, self.compression.value)
        return f"{self.inner}+{self.compression.value}"


@dataclass(frozen=True)
class Shape:
    """Every reading of one byte range; two or more make it a polyglot."""

    readings: tuple[Format | Compressed, ...]

    def __str__(self) -> str:
        return "+".join(r.value if isinstance(r, Format) else str(r) for r in self.readings)

    @property
    def single(self) -> Format | Compressed | None:
        """The one reading, or None for a polyglot."""
        return self.readings[0] if len(self.readings) == 1 else None

    def innermost(self) -> Shape:
        """The shape under any compression layers (of a single reading)."""
        shape = self
        while isinstance(shape.single, Compressed):
            shape = shape.single.inner
        return shape


class ReadingKind(enum.Enum):
    """Which unpickler would read a stream, and so who owns its persistent ids."""

    PICKLE = "pickle"
    """`pickle.load`, `joblib.load`, `pandas.read_pickle`, `np.load(allow_pickle=True)`:
    no `persistent_load`, so any persistent id fails the load."""
    TORCH = "torch"
    """torch's unpickler: storage persistent ids are the format's own."""


@dataclass
class Reading:
    """One pickle stream a loader would deserialize, and its walk."""

    kind: ReadingKind
    location: str
    """`file[:member[:member]]`."""
    data: Any
    """The buffer holding the stream (the file, or an expanded member)."""
    start: int
    end: int
    analysis: StreamAnalysis
    base: int
    """Offset that offsets in this reading are reported relative to."""

    def view(self) -> memoryview:
        """The stream's bytes, without a copy."""
        return memoryview(self.data)[self.start : self.end]


@dataclass(frozen=True)
class Note:
    """A container-level finding: `rule` is a rule *name* from rules/rules.toml."""

    rule: str
    message: str
    location: str
    offset: int | None = None


@dataclass
class Located:
    """Everything the locator found in one file."""

    location: str
    size: int
    shape: Shape
    readings: list[Reading] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    expanded: dict[str, Any] = field(default_factory=dict)
    """Decompressed buffers by the location of their compressed range: the bytes the
    scan read, for the loader to read again (valid inside `locate`'s block)."""

    @property
    def pickles(self) -> int:
        """Pickle streams walked over all readings."""
        return sum(len(r.analysis.pickles) for r in self.readings)

    @property
    def opcodes(self) -> int:
        """Opcodes walked over all readings."""
        return sum(r.analysis.opcodes for r in self.readings)
