"""tar archives read as `tarfile` reads them for torch's legacy loader and pandas.

Each hostile archive is built byte by byte (headers written here, not by
`tarfile`'s writer, so that numeric forms, checksums, GNU and PAX records and
link members are exactly as chosen). Each one is proven under the real loader
(`torch.load(weights_only=False)` of a legacy tar, `pandas.read_pickle` of a
`.tar`) in a forked child in its own folder, where its payload creates a
canary; `safeload scan` must not call it safe and `safeload.load` must refuse
it without the canary appearing. A differential test mutates real legacy torch
and pandas tar archives and checks that whatever `tarfile` hands a loader was
scanned, or the verdict is not safe.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeload
from safeload import Policy, Verdict
from safeload.scan import scan_bytes, scan_file
from tests.hostile_containers import CANARY, legacy_tar, payload
from tests.limited import Job, run

pytestmark = pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")

BLOCK = 512
TORCH = "import torch\ntorch.load(path, weights_only=False)\n"
PANDAS = "import pandas\npandas.read_pickle(path)\n"


# -- byte-built tar --------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def base256(value: int, width: int) -> bytes:
    """tarfile's other numeric form: 0x80, then the value big-endian."""
    return b"\x80" + value.to_bytes(width - 1, "big")


def header(
    name: bytes,
    size: int,
    *,
    kind: bytes = b"0",
    linkname: bytes = b"",
    size_field: bytes | None = None,
    checksum: Callable[[int], bytes] = lambda s: b"%06o\x00 " % s,
) -> bytes:
    """One 512-byte ustar header, its checksum written by `checksum`."""
    buf = bytearray(BLOCK)
    buf[0 : len(name)] = name
    buf[100:108] = _octal(0o644, 8)
    buf[108:116] = _octal(0, 8)
    buf[116:124] = _octal(0, 8)
    buf[124:136] = size_field if size_field is not None else _octal(size, 12)
    buf[136:148] = _octal(0, 12)
    buf[156:157] = kind
    buf[157 : 157 + len(linkname)] = linkname
    buf[257:265] = b"ustar\x0000"
    buf[148:156] = b" " * 8
    buf[148:156] = checksum(sum(buf))
    return bytes(buf)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes, data: bytes, **kw: object) -> bytes:
    return header(name, len(data), **kw) + padded(data)  # type: ignore[arg-type]


def gnu_long(kind: bytes, value: bytes) -> bytes:
    """A GNU `././@LongLink` record setting the next member's name (L) or link (K)."""
    return member(b"././@LongLink", value + b"\x00", kind=kind)


def pax(records: dict[str, str]) -> bytes:
    body = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode()
        n = len(text)
        while len(str(n)) + len(text) != n:
            n = len(str(n)) + len(text)
        body += str(n).encode() + text
    return member(b"././@PaxHeader", body, kind=b"x")


END = bytes(2 * BLOCK)


def sparse_member(name: bytes, data: bytes) -> bytes:
    """An old-GNU sparse member ('S') whose one region is all of `data`: tarfile
    extracts it by its map, so it is no byte range of the archive."""
    buf = bytearray(header(name, len(data), kind=b"S"))
    buf[386:398] = _octal(0, 12)  # the region's offset
    buf[398:410] = _octal(len(data), 12)  # and length
    buf[483:495] = _octal(len(data), 12)  # the file's real size
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\x00 " % sum(buf)
    return bytes(buf) + padded(data)


# -- legacy torch members ---------------------------------------------------------------


def storages(views: bytes = b"", record: bytes | None = None, count_protocol: int = 2) -> bytes:
    """The count, one float storage of two elements, then the storage views pickle.

    A count pickled without PROTO (`K\x01.`, protocol 1) is a member that does
    not look like a pickle stream: read as a plain archive member, only its first
    pickle would count.
    """
    rec = record if record is not None else pickle.dumps((0, "cpu", torch.FloatStorage), 2)
    return (
        pickle.dumps(1, count_protocol)
        + rec
        + struct.pack("<q2f", 2, 1.5, 2.5)
        + (views or pickle.dumps([], 2))
    )


TENSORS = (
    pickle.dumps(1, 1)
    + pickle.dumps((1, 0, torch.FloatTensor), 2)
    + struct.pack("<i4xqqq", 1, 2, 1, 0)
)
TOP = pickle.dumps({"ok": 1}, 2)


def legacy(*first: bytes, store: bytes | None = None) -> bytes:
    """`first` members, then storages/tensors/pickle as torch < 0.4 wrote them."""
    return (
        b"".join(first)
        + member(b"storages", store if store is not None else storages())
        + member(b"tensors", TENSORS)
        + member(b"pickle", TOP)
        + END
    )


def swallowing(body: Callable[[bytes], bytes]) -> bytes:
    """A tar/pickle polyglot: the first member's name opens a BINBYTES that runs to
    the end of the archive, then STOP; its header's checksum is base-256, which
    the old `int(field, 8)` sniff refused, hiding the tar reading behind a
    harmless pickle (a bytes object)."""
    size = 0
    for _ in range(3):  # the length is inside the archive it measures
        first = member(b"B" + struct.pack("<I", size), b"", checksum=lambda s: base256(s, 8))
        archive = body(first)
        size = len(archive) - 5
    assert pickle.loads(archive + b".") == archive[5:]
    return archive + b"."


# -- the divergences --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    build: Callable[[Path], bytes]
    """The file's bytes (given its folder, for links to a local file)."""
    plain: str


def _local_payload(folder: Path) -> Path:
    local = folder / "local.pkl"
    local.write_bytes(payload())
    return local


CASES = (
    Case(
        "no-sys-info-second-storages-pickle",
        "model.pt",
        lambda d: legacy(store=storages(record=payload(), count_protocol=1)),
        TORCH,
    ),
    Case(
        "storages-views-pickle-only-member",
        "model.pt",
        lambda d: member(b"storages", storages(views=payload(), count_protocol=1)) + END,
        TORCH,
    ),
    Case(
        "duplicate-pickle-last-wins",
        "model.pt",
        lambda d: legacy()[: -len(END)] + member(b"pickle", payload()) + END,
        TORCH,
    ),
    Case(
        "tar-pickle-polyglot-base256-checksum",
        "model.pt",
        lambda d: swallowing(lambda first: legacy(first, store=storages(record=payload()))),
        TORCH,
    ),
    Case(
        "pandas-tar-pickle-polyglot",
        "frame.tar",
        lambda d: _pandas_polyglot(),
        PANDAS,
    ),
    Case(
        "pandas-tar-gz-pickle-polyglot",
        "frame.tar.gz",
        lambda d: gzip.compress(_pandas_polyglot()),
        PANDAS,
    ),
    Case(
        "symlink-storages-to-local-file",
        "model.pt",
        lambda d: (
            legacy()[: -len(END)]
            + member(b"storages", b"", kind=b"2", linkname=str(_local_payload(d)).encode())
            + END
        ),
        TORCH,
    ),
    Case(
        "hardlink-storages-to-local-file",
        "model.pt",
        lambda d: (
            legacy()[: -len(END)]
            + member(b"storages", b"", kind=b"1", linkname=str(_local_payload(d)).encode())
            + END
        ),
        TORCH,
    ),
    Case(
        "sparse-storages",
        "model.pt",
        lambda d: (
            legacy()[: -len(END)]
            + sparse_member(b"storages", storages(views=payload(), count_protocol=1))
            + END
        ),
        TORCH,
    ),
    Case(
        "gnu-longname-storages",
        "model.pt",
        lambda d: (
            gnu_long(b"L", b"storages")
            + member(b"decoy", storages(views=payload()))
            + member(b"tensors", TENSORS)
            + member(b"pickle", TOP)
            + END
        ),
        TORCH,
    ),
    Case(
        "pax-path-and-size-override",
        "model.pt",
        lambda d: _pax_override(),
        TORCH,
    ),
    Case(
        "base256-size-field",
        "model.pt",
        lambda d: (
            legacy()[: -len(END)]
            + member(
                b"storages",
                storages(views=payload()),
                size_field=base256(len(storages(views=payload())), 12),
            )
            + END
        ),
        TORCH,
    ),
)


def _pandas_polyglot() -> bytes:
    """One member (what pandas reads) holding the payload; the file is also a pickle."""
    size = 0
    for _ in range(3):
        name = b"B" + struct.pack("<I", size)
        archive = member(name, payload(), checksum=lambda s: base256(s, 8)) + END
        size = len(archive) - 5
    return archive + b"."


def _pax_override() -> bytes:
    """The ustar header says `decoy` of 0 bytes; the PAX record says `storages` of N."""
    body = storages(views=payload())
    return (
        pax({"path": "storages", "size": str(len(body))})
        + header(b"decoy", 0)
        + padded(body)
        + member(b"tensors", TENSORS)
        + member(b"pickle", TOP)
        + END
    )


ALLOW = ["torch.FloatTensor"]
"""torch < 0.4 pickled tensor types by name, and torch.FloatTensor is on no pack: the
cases are judged with it allowed, so that only the hidden payload can refuse them."""
GUARDED = (
    "from safeload.errors import SafeloadError\n"
    "try:\n"
    "    safeload.loads(open(path, 'rb').read(), require_signature=False, allow=ALLOW)\n"
    "    shown = 'loaded'\n"
    "except SafeloadError as exc:\n"
    "    shown = 'refused ' + type(exc).__name__ + ': ' + str(exc)\n"
)


@pytest.fixture(scope="module")
def proven(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, list[dict[str, Any]]]]:
    """Every case under its real loader and under safeload.loads, each in a forked child
    working in its own folder (`plain/`, `guarded/`), where a payload drops its canary."""
    root = tmp_path_factory.mktemp("tar-readers")
    jobs: list[Job] = []
    for case in CASES:
        folder = root / case.name
        raw = case.build(_folder(folder))
        for side, code in (("plain", case.plain), ("guarded", f"ALLOW = {ALLOW!r}\n{GUARDED}")):
            path = _folder(folder / side) / case.filename
            path.write_bytes(raw)
            jobs.append(Job(path, code=code, seconds=30))
    results = run(jobs, preload=("torch", "pandas"))
    return {c.name: (root / c.name, results[2 * i : 2 * i + 2]) for i, c in enumerate(CASES)}


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_tar_is_proven_and_refused(
    case: Case, proven: dict[str, tuple[Path, list[dict[str, Any]]]]
) -> None:
    folder, (plain, guarded) = proven[case.name]
    assert (folder / "plain" / CANARY).exists(), f"no canary under the real loader: {plain}"
    report = scan_file(folder / "guarded" / case.filename, Policy.build(allow=ALLOW))
    assert report.verdict is not Verdict.SAFE, report.findings
    assert guarded.get("shown", "").startswith("refused "), guarded
    assert not (folder / "guarded" / CANARY).exists()


def test_polyglot_reads_as_a_harmless_pickle_too() -> None:
    """The polyglot's pickle reading is a bytes object: only the tar reading is hostile."""
    raw = CASES[3].build(Path("."))
    assert type(pickle.loads(raw)) is bytes
    report = scan_bytes(raw, location="model.pt")
    assert report.verdict is Verdict.DANGEROUS
    assert report.format.startswith("pytorch-tar")
    assert any(f.location == "model.pt:storages" for f in report.findings)


def test_legacy_tar_without_sys_info_scans_every_storages_pickle() -> None:
    """Recognised by `storages` (what torch extracts first), not by `sys_info`."""
    raw = legacy(store=storages(views=payload(), count_protocol=1))
    report = scan_bytes(raw, location="m.pt")
    assert report.format == "pytorch-tar"
    assert report.verdict is Verdict.DANGEROUS
    dangerous = {f.location for f in report.findings if f.verdict is Verdict.DANGEROUS}
    assert dangerous == {"m.pt:storages"}


def test_links_name_the_member_and_target(tmp_path: Path) -> None:
    raw = legacy()[: -len(END)] + member(b"storages", b"", kind=b"2", linkname=b"/etc/passwd") + END
    report = scan_bytes(raw, location="m.pt")
    (finding,) = [f for f in report.findings if f.rule_name == "unsupported-container"]
    assert "symbolic link to '/etc/passwd'" in finding.message
    assert "'storages'" in finding.message


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K", b"0"])
@pytest.mark.parametrize("size", [1 << 40, (1 << 88) - 1])
def test_a_header_claiming_a_huge_record_is_corrupt_not_an_allocation(
    kind: bytes, size: int
) -> None:
    """tarfile reads a PAX or GNU record of the length its header claims in one call;
    through a buffered file that allocated it first (MemoryError, or gigabytes)."""
    raw = (
        header(b"././@LongLink", 0, kind=kind, size_field=base256(size, 12))
        + bytes(BLOCK)
        + member(b"a", b"hello")
        + END
    )
    report = scan_bytes(raw, location="m.tar")
    assert report.verdict is Verdict.INVALID
    rules = {f.rule_name for f in report.findings}
    assert "corrupt-container" in rules and "internal-error" not in rules, report.findings


# -- benign controls --------------------------------------------------------------------


def test_real_legacy_tar_and_pandas_tars_are_safe_and_load(tmp_path: Path) -> None:
    # torch < 0.4 pickled tensor types by name; torch.FloatTensor is on no pack.
    policy = Policy.build(allow=["torch.FloatTensor"])
    path = tmp_path / "legacy.pt"
    legacy_tar(path, pickle.dumps([], 2), pickle.dumps({"ok": 1}, 2))
    assert scan_file(path, policy).verdict is Verdict.SAFE
    bare = tmp_path / "bare.pt"  # the same without sys_info: torch loads it as well
    bare.write_bytes(legacy())
    assert scan_file(bare, policy).verdict is Verdict.SAFE
    loaded = safeload.load(bare, require_signature=False, allow=["torch.FloatTensor"])
    assert loaded == torch.load(bare, weights_only=False) == {"ok": 1}
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})
    for suffix in ("tar", "tar.gz", "tar.bz2", "tar.xz"):
        target = tmp_path / f"frame.{suffix}"
        frame.to_pickle(target)
        assert scan_file(target).verdict is Verdict.SAFE, suffix
        pd.testing.assert_frame_equal(safeload.load(target, require_signature=False), frame)


# -- differential: whatever tarfile hands a loader was scanned ------------------------


def _benign_archives() -> list[tuple[bytes, int]]:
    """Real legacy torch and pandas tars, each with where its end-of-archive blocks start."""
    out = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (
            ("sys_info", pickle.dumps({"protocol_version": 1001}, 2)),
            ("storages", storages()),
            ("tensors", TENSORS),
            ("pickle", TOP),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out.append(buf.getvalue())
    buf = io.BytesIO()
    frame = pd.DataFrame({"a": [1, 2]})
    frame.to_pickle(buf, compression={"method": "tar", "archive_name": "frame.pkl"})
    out.append(buf.getvalue())
    out.append(legacy(gnu_long(b"L", b"sys_info") + member(b"x", b"")))
    return [(raw, _end_of_members(raw)) for raw in out]


def _end_of_members(raw: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        last = tf.getmembers()[-1]
        return last.offset_data + -(-last.size // BLOCK) * BLOCK


BENIGN = _benign_archives()
EVIL = payload()

_FIELDS = {"name": (0, 100), "size": (124, 12), "type": (156, 1), "chksum": (148, 8),
           "prefix": (345, 155), "linkname": (157, 100)}  # fmt: skip


def _fix_checksum(raw: bytearray, at: int) -> None:
    block = raw[at : at + BLOCK]
    if len(block) < BLOCK:
        return
    block[148:156] = b" " * 8
    raw[at + 148 : at + 156] = b"%06o\x00 " % sum(block)


def _members_tarfile_returns(raw: bytes) -> list[tuple[str, bytes]] | None:
    """What a loader gets: every regular member `tarfile` lists, with its bytes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
            out = []
            for info in tf.getmembers():
                if info.isreg():
                    f = tf.extractfile(info)
                    out.append((info.name, f.read() if f is not None else b""))
            return out
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    original, end = draw(st.sampled_from(BENIGN))
    raw = bytearray(original)
    blocks = len(raw) // BLOCK
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["field", "evil", "dup", "base256", "cut", "byte"]))
        at = draw(st.integers(0, blocks - 1)) * BLOCK
        if what == "field":
            field, (off, width) = draw(st.sampled_from(sorted(_FIELDS.items())))
            value = draw(st.binary(min_size=1, max_size=width))
            raw[at + off : at + off + len(value)] = value
            if field != "chksum" and draw(st.booleans()):
                _fix_checksum(raw, at)
        elif what == "evil":
            # a member's body becomes the payload (a loader may unpickle it)
            raw[at : at + len(EVIL)] = EVIL
        elif what == "dup":
            name = draw(st.sampled_from([b"pickle", b"storages", b"tensors", b"frame.pkl"]))
            # a second member of a name, after the last one (tarfile's getmember
            # and torch take the last)
            at = end if draw(st.booleans()) else at
            raw[at:at] = member(name, EVIL)
        elif what == "base256":
            size = draw(st.integers(0, 4 * BLOCK))
            raw[at + 124 : at + 136] = base256(size, 12)
            _fix_checksum(raw, at)
        elif what == "cut":
            del raw[draw(st.integers(0, len(raw))) :]
        else:
            i = draw(st.integers(0, max(0, len(raw) - 1)))
            if raw:
                raw[i] = draw(st.integers(0, 255))
    return bytes(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_differential_whatever_tarfile_returns_was_scanned(raw: bytes) -> None:
    report = scan_bytes(raw, location="m.tar")
    if report.verdict is not Verdict.SAFE:
        return
    members = _members_tarfile_returns(raw)
    if members is None:
        return  # torch and pandas read no tar here; the pickle reading was judged
    for name, data in members:
        # A member a loader may unpickle holds no payload, or the file is not safe.
        assert EVIL not in data, (name, report)
