"""pandas timestamps with dateutil time zones, as each python-dateutil pickles them.

python-dateutil <= 2.9 pickle a tz file as `dateutil.tz.tz.tzfile(None, filename)`
plus its state; python-dateutil >= 3 as `dateutil.tz._tzfile._unpickle(tzfile,
key, filename, data)`, which rebuilds the class without `__init__` (the
constructor opens the file a string argument names). The packs keep that class
as data only: handed to `_unpickle`, never called, rebuilt or given state.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pandas as pd
import picklebuild as pb
import pytest
from dateutil import tz as dtz

import safeload
from safeload import Verdict

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "generations" / "current" / "pandas"


def _rules(data: bytes) -> set[str]:
    return {f.rule for f in safeload.scan_bytes(data).findings if f.verdict is not None}


@pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")
def test_a_frame_with_a_dateutil_tz_file_scans_safe_and_loads(tmp_path: Path) -> None:
    zone = dtz.gettz("Asia/Tokyo")
    assert zone is not None and type(zone).__name__ == "tzfile"
    frame = pd.DataFrame({"when": pd.date_range("2021-03-27", periods=3, freq="12h", tz=zone)})
    path = tmp_path / "frame.pkl"
    frame.to_pickle(path)
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.SAFE, [(f.rule, f.message) for f in report.findings]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = safeload.load(path, require_signature=False)
    assert loaded.equals(pd.read_pickle(path))
    assert type(loaded["when"].dt.tz) is type(zone)


def test_the_dateutil_3_form_scans_safe() -> None:
    # saved by pandas 3.1.1 with python-dateutil 4.0.0 (tools/make_generation_fixtures.py)
    data = (FIXTURE / "tz-dateutil.pkl").read_bytes()
    assert b"dateutil.tz._tzfile" in data and b"_unpickle" in data
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE


def _tzfile_call(path: str) -> bytes:
    return pb.proto(2) + pb.glob("dateutil.tz._tzfile", "tzfile") + pb.sbu(path) + pb.tuple1()


def test_the_tz_file_class_is_data_only() -> None:
    # called with a path, its constructor opens it
    called = _tzfile_call("/etc/hostname") + pb.reduce() + pb.stop()
    assert "SL405" in _rules(called)
    # rebuilt without __init__ by a reconstructor and given state: out of scope too
    rebuilt = (
        pb.proto(2)
        + pb.glob("copyreg", "_reconstructor")
        + pb.glob("dateutil.tz._tzfile", "tzfile")
        + pb.glob("builtins", "object")
        + pb.none()
        + pb.tuple3()
        + pb.reduce()
        + pb.empty_dict()
        + pb.build()
        + pb.stop()
    )
    assert "SL405" in _rules(rebuilt)
    for data in (called, rebuilt):
        with pytest.raises(safeload.UnsafeFileError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            safeload.loads(data, require_signature=False)


def test_unpickle_with_the_class_opens_no_file() -> None:
    # what dateutil >= 3 writes, with a filename no loader may open: it is only stored
    pytest.importorskip("dateutil.tz._tzfile")
    data = (FIXTURE / "tz-dateutil.pkl").read_bytes()
    name = b"/usr/share/zoneinfo/Asia/Tokyo"
    assert data.count(name) == 1
    other = b"/nonexistent/zone/file/Asia/Tk"
    assert len(other) == len(name)
    data = data.replace(name, other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = safeload.loads(data, require_signature=False)
    assert loaded.equals(pickle.loads(data))
    assert loaded["when"].dt.tz._filename == other.decode()
