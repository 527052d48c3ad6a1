"""Files saved by older library generations: scanned safe, loaded as today's
libraries load them, and the allow packs' record of those generations.

The fixture corpus tests/fixtures/generations/<generation>/ was saved by the
older releases themselves (tools/make_generation_fixtures.py run in one
virtualenv per generation, see tools/generations.py), with other objects,
data and writers than the pickles the packs are generated from
(tools/generation_enumerate.py): a fixture scanning safe is not true by
construction. `current` is today's pinned releases; `torch` is checkpoints
made with the installed torch (the only torch release installable here).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import pickle
import sys
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeload
from safeload import Verdict
from safeload._machine.walker import analyze
from safeload._names import map_name
from safeload.policy import Policy
from tools import gen_allow_packs as gen
from tools import generations

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "generations"
ALLOW = REPO / "rules" / "allow"
FILES = sorted(
    str(p.relative_to(FIXTURES))
    for p in FIXTURES.rglob("*")
    if p.is_file() and p.suffix in (".pkl", ".joblib", ".npy", ".pt", ".pth")
)


def _refused() -> dict[str, tuple[set[str], set[str], str]]:
    """File -> (rule IDs it must be refused by, further IDs it may show, why)."""
    data = tomllib.loads((FIXTURES / "refused.toml").read_text(encoding="utf-8"))
    out: dict[str, tuple[set[str], set[str], str]] = {}
    for group in data.get("refused", []):
        assert len(group["why"].split()) >= 8, group["files"]
        for rel in group["files"]:
            rules, also, why = out.get(rel, (set(), set(), ""))
            out[rel] = (rules | set(group["rules"]), also | set(group.get("also", [])), why)
    return out


REFUSED = _refused()
LOAD_REFUSED = {
    rel: group["why"]
    for group in tomllib.loads((FIXTURES / "refused.toml").read_text(encoding="utf-8")).get(
        "load-refused", []
    )
    for rel in group["files"]
}


def _pack_entries() -> dict[str, dict[str, Any]]:
    return {
        e["name"]: e
        for path in sorted(ALLOW.glob("*.toml"))
        for e in tomllib.loads(path.read_text(encoding="utf-8"))["pack"]["allow"]
    }


ENTRIES = _pack_entries()


# -- the fixture corpus ------------------------------------------------------------


def test_the_corpus_covers_every_generation_and_stays_small() -> None:
    folders = {rel.split("/", 1)[0] for rel in FILES}
    assert folders == {*generations.BY_NAME, *generations.LOCAL_FIXTURES}
    size = sum((FIXTURES / rel).stat().st_size for rel in FILES)
    assert size < 3_000_000, size
    for name in generations.BY_NAME:
        index = (FIXTURES / name / "index.json").read_text(encoding="utf-8")
        for pin in generations.BY_NAME[name].pins[:5]:  # the releases that saved them
            package, version = pin.split("==")
            assert f'"{package}": "{version}"' in index, (name, pin)
        # every estimator that fits on toy data, searches, pipelines, kernels
        sklearn_files = [r for r in FILES if r.startswith(f"{name}/sklearn/")]
        assert len(sklearn_files) > 150, name
        for wanted in ("column-pipeline", "grid-search", "randomized-search", "gp-kernels"):
            assert any(wanted in r for r in FILES if r.startswith(f"{name}/models/")), wanted
        for wanted in ("tz-pytz", "tz-dateutil", "tz-offset", "extension-dtypes"):
            assert f"{name}/pandas/{wanted}.pkl" in FILES, wanted
    for name in [*generations.BY_NAME, "current"]:
        # xgboost and lightgbm wrappers and raw boosters, pickled and joblib-dumped,
        # by the generation's own releases
        releases = json.loads((FIXTURES / name / "index.json").read_text(encoding="utf-8"))
        gen_ = generations.BY_NAME.get(name)
        pins = gen_.pins if gen_ is not None else generations.current_pins()
        for package in ("xgboost", "lightgbm"):
            pin = next(p for p in pins if p.startswith(package + "=="))
            assert releases["releases"][package] == pin.split("==")[1], (name, pin)
        for kind in ("xgb", "lgbm"):
            for what in ("classifier", "booster"):
                for ext in ("pkl", "joblib"):
                    assert f"{name}/boosting/{kind}-{what}.{ext}" in FILES, (name, kind)
            assert f"{name}/boosting/{kind}-regressor.joblib" in FILES, (name, kind)


@pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")
def test_old_boosters_load_and_predict_as_the_plain_loader_gives_them() -> None:
    import joblib
    import xgboost as xgb

    x = np.linspace(0.0, 1.0, 20).reshape(4, 5)
    for name in generations.BY_NAME:
        xgb_path = FIXTURES / name / "boosting" / "xgb-booster.pkl"
        lgbm_path = FIXTURES / name / "boosting" / "lgbm-classifier.joblib"
        with open(xgb_path, "rb") as fh:
            plain = pickle.load(fh)
        guarded = safeload.load(xgb_path, require_signature=False)
        assert np.array_equal(guarded.predict(xgb.DMatrix(x)), plain.predict(xgb.DMatrix(x)))
        plain = joblib.load(lgbm_path)
        guarded = safeload.load(lgbm_path, require_signature=False)
        assert np.array_equal(guarded.predict_proba(x), plain.predict_proba(x)), name


def test_refused_list_names_real_files() -> None:
    assert set(REFUSED) <= set(FILES)
    assert set(LOAD_REFUSED) <= set(FILES) - set(REFUSED)


@pytest.mark.parametrize("rel", FILES)
def test_fixture_scans_safe_or_is_refused_for_its_documented_reason(rel: str) -> None:
    report = safeload.scan_file(FIXTURES / rel)
    found = {f.rule for f in report.findings if f.verdict is not None}
    if rel not in REFUSED:
        assert report.verdict is Verdict.SAFE, [(f.rule, f.message) for f in report.findings]
        return
    rules, also, _why = REFUSED[rel]
    assert report.verdict is not Verdict.SAFE, f"{rel} scans safe now: remove it from refused.toml"
    assert rules <= found <= rules | also, (rel, found)


# -- loading with today's releases ---------------------------------------------------


def _plain_loader(rel: str) -> Callable[[Path], Any]:
    suffix = Path(rel).suffix
    if suffix == ".joblib":
        import joblib

        def load_joblib(path: Path) -> Any:
            with _registered_loss_alias():
                return joblib.load(path)

        return load_joblib
    if suffix == ".npy":
        import numpy as np

        return lambda p: np.load(p, allow_pickle=True)
    if suffix in (".pt", ".pth"):
        import torch

        return lambda p: torch.load(p, weights_only=False)

    def load(path: Path) -> Any:
        with open(path, "rb") as fh:
            return pickle.load(fh)

    return load


@contextlib.contextmanager
def _registered_loss_alias() -> Iterator[None]:
    """What importing scikit-learn 1.5-1.8 does, which wrote the `_loss` files: their
    loss module is registered in sys.modules as `_loss` too (today's is not)."""
    from sklearn._loss import _loss

    if "_loss" in sys.modules:
        yield
        return
    sys.modules["_loss"] = _loss
    try:
        yield
    finally:
        del sys.modules["_loss"]


_SCALARS = (int, str, bytes, bytearray, bool, complex, type(None), range, slice)


def _same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Structural equality of two loads of one file: values, dtypes, shapes and
    classes, recursing through containers and each object's reduce value.
    Object identity is not compared (the plain loader shares interned strings),
    nor are bytes no reader sees (a struct dtype's padding, torch storage keys)."""
    import numpy as np
    import torch

    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if (a.dtype, a.shape) != (b.dtype, b.shape):
            return False
        if a.dtype.names:  # field by field: padding bytes between fields are undefined
            return all(_same(a[n], b[n], seen) for n in a.dtype.names)
        if a.dtype.hasobject:
            return all(_same(x, y, seen) for x, y in zip(a.ravel(), b.ravel(), strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, torch.Tensor):
        if (a.dtype, a.shape, a.device, a.requires_grad) != (
            b.dtype,
            b.shape,
            b.device,
            b.requires_grad,
        ):
            return False
        if a.device.type == "meta":
            return True
        if a.is_quantized:
            return torch.equal(a.int_repr(), b.int_repr()) and a.q_scale() == b.q_scale()
        raw_a, raw_b = (t.detach().contiguous().view(-1).view(torch.uint8) for t in (a, b))
        return torch.equal(raw_a, raw_b) and _same(a.__dict__, b.__dict__, seen)
    if isinstance(a, np.random.RandomState):
        return _same(a.get_state(legacy=False), b.get_state(legacy=False), seen)
    if isinstance(a, (np.random.Generator, np.random.BitGenerator)):
        # the generator's state; a bit generator pickled without its seed
        # sequence gets a fresh one on every load (numpy < 1.25)
        bits_a = getattr(a, "bit_generator", a)
        return _same(bits_a.state, getattr(b, "bit_generator", b).state, seen)
    if type(a).__module__.startswith("pandas") and hasattr(a, "equals"):
        return bool(a.equals(b))
    if isinstance(a, (float, np.generic)):
        return bool(a == b) or bool(a != a and b != b)
    if isinstance(a, _SCALARS) or isinstance(a, (set, frozenset)):
        return bool(a == b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):  # dict.items: subclasses (scipy's dok) index otherwise
        items_a, items_b = list(dict.items(a)), list(dict.items(b))
        return _same(items_a, items_b, seen) and _same(
            getattr(a, "__dict__", None), getattr(b, "__dict__", None), seen
        )
    if isinstance(a, type) or (callable(a) and not hasattr(a, "__dict__")):
        return a is b or bool(a == b)
    try:
        reduced_a, reduced_b = a.__reduce_ex__(4), b.__reduce_ex__(4)
    except Exception:
        return repr(a) == repr(b)
    if isinstance(reduced_a, str) or isinstance(reduced_b, str):
        return reduced_a == reduced_b
    return reduced_a[0] is reduced_b[0] and _same(list(reduced_a[1:]), list(reduced_b[1:]), seen)


@pytest.mark.parametrize("rel", FILES)
def test_fixture_loads_as_the_plain_loader_loads_it(rel: str) -> None:
    path = FIXTURES / rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plain = _plain_loader(rel)(path)
        except Exception as exc:
            plain_error: Exception | None = exc
        else:
            plain_error = None
        if rel in REFUSED:
            with pytest.raises(safeload.errors.UnsafeFileError):
                safeload.load(path, require_signature=False)
            return
        if rel in LOAD_REFUSED:
            assert plain_error is None, rel
            assert safeload.scan_file(path).verdict is Verdict.SAFE, rel
            with pytest.raises(safeload.errors.UnsafeFileError):
                safeload.load(path, require_signature=False)
            return
        if plain_error is not None:
            # what today's libraries cannot read, safeload does not read either
            with pytest.raises(Exception):  # noqa: B017 - any of the loader's errors
                safeload.load(path, require_signature=False)
            return
        guarded = safeload.load(path, require_signature=False)
    assert _same(guarded, plain), rel


# -- what the packs record of the generations ------------------------------------------


def test_generation_records_match_their_pins() -> None:
    records = generations.recorded()
    assert [r["generation"] for r in records] == [*generations.BY_NAME, "current"]
    current = records.pop()
    if current["pins"] != list(generations.current_pins()):
        pytest.skip(f"recorded with {current['pins']}: python -m tools.generations names current")
    for record in records:
        gen_ = generations.BY_NAME[str(record["generation"])]
        assert record["pins"] == list(gen_.pins), "stale record: python -m tools.generations names"
        releases = record["releases"]
        assert isinstance(releases, dict)
        for pin in gen_.pins:
            package, version = pin.split("==")
            assert releases[package] == version, pin


def test_generations_reach_back_to_the_issue_minimums() -> None:
    oldest = generations.recorded()[0]["releases"]
    assert isinstance(oldest, dict)
    minimum = {
        "numpy": "1.21",
        "scipy": "1.7",
        "pandas": "1.3",
        "scikit-learn": "1.0",
        "joblib": "1.1",
        "xgboost": "1.6",
        "lightgbm": "3.3",
    }
    for package, version in minimum.items():
        assert oldest[package].startswith(version + "."), (package, oldest[package])


def test_old_names_record_the_releases_that_wrote_them() -> None:
    assert ENTRIES["sklearn.ensemble._gb_losses.BinomialDeviance"]["seen_in"] == [
        "scikit-learn 1.0.2",
        "scikit-learn 1.3.2",
    ]
    assert ENTRIES["numpy.core.multiarray._reconstruct"]["seen_in"] == [
        "numpy 1.21.6",
        "numpy 1.24.4",
    ]
    current = gen.versions()
    assert f"numpy {current['numpy']}" in ENTRIES["numpy._core.multiarray._reconstruct"]["seen_in"]


def test_old_and_other_spellings_take_exactly_their_new_names_scope() -> None:
    derived = {n: e for n, e in ENTRIES.items() if "alias_of" in e or "renamed_to" in e}
    assert len(derived) > 100
    for name, entry in derived.items():
        target = ENTRIES[entry.get("alias_of") or entry["renamed_to"]]
        assert (entry["use"], entry.get("calls")) == (target["use"], target.get("calls")), name
        assert target["audit"] in entry["audit"], name
    renamed = {n for n, e in derived.items() if "renamed_to" in e}
    assert "sklearn.metrics._dist_metrics.EuclideanDistance" in renamed
    current = {f"{k} {v}" for k, v in gen.versions().items()}
    for name in renamed:
        # allowed only because an older release really wrote it (or wrote its
        # numpy.core / numpy._core twin, which the packs always list in pairs)
        twins = {name} | {b for _, b in gen.numpy_aliases([name])}
        seen_in = {r for n in twins for r in ENTRIES[n].get("seen_in", [])}
        assert seen_in, name
        assert not seen_in & current, name


def test_the_loss_module_alias_is_mapped_to_the_module_it_stands_for() -> None:
    # scikit-learn 1.5-1.8 pickle sklearn._loss._loss under `_loss`, which resolves
    # only where scikit-learn registered it: the walk (and so the scan and the
    # loader, safeload._names.map_name) reads it as sklearn._loss._loss
    import joblib

    assert map_name("_loss", "CyHalfSquaredError", 4) == (
        "sklearn._loss._loss",
        "CyHalfSquaredError",
    )
    assert map_name("_loss", "CyHalfSquaredError", 2) == map_name("_loss", "CyHalfSquaredError", 4)
    assert map_name("_lossy", "x", 4) == ("_lossy", "x")
    assert "_loss" not in gen.load_renamed()[1]  # no pack entry under the alias is needed
    assert not any(n.startswith("_loss.") for n in ENTRIES)
    path = FIXTURES / "2024" / "sklearn" / "HistGradientBoostingClassifier.joblib"
    with pytest.raises(ModuleNotFoundError, match="_loss"):
        joblib.load(path)  # today's scikit-learn registers no `_loss`
    walk = analyze(joblib_pickle(path)).pickles[0]
    aliased = [g for g in walk.globals if g.raw is not None and g.raw[0] == "_loss"]
    assert aliased and {g.module for g in aliased} == {"sklearn._loss._loss"}
    assert safeload.scan_file(path).verdict is Verdict.SAFE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = safeload.load(path, require_signature=False)
    from sklearn._loss import _loss as real

    assert isinstance(model._loss.closs, real.CyHalfMultinomialLoss)


def joblib_pickle(path: Path) -> bytes:
    """The pickle stream of a zlib-compressed joblib file (the fixtures' writer)."""
    import zlib

    return zlib.decompress(path.read_bytes())


def test_same_object_spellings_are_found_by_resolving_them() -> None:
    found = gen.same_object_aliases(
        ["numpy.core._multiarray_umath.add", "numpy.bool_", "numpy.no_such_thing"],
        ["numpy.add", "numpy.bool", "numpy.subtract"],
    )
    assert {n: d.target for n, d in found.items()} == {
        "numpy.core._multiarray_umath.add": "numpy.add",
        "numpy.bool_": "numpy.bool",
    }


def test_a_renamed_entry_no_generation_shows_stops_the_generator(tmp_path: Path) -> None:
    table = tmp_path / "renamed.toml"
    table.write_text(
        'schema = 1\n[[renamed]]\nold = "sklearn.gone.Thing"\nnew = "sklearn.Thing"\n'
        'releases = "never"\nwhy = "an entry nobody needs"\n',
        encoding="utf-8",
    )
    seen = {"sklearn.Thing": gen.Seen({"instantiated"}, set(), {"a/b"})}
    with pytest.raises(SystemExit, match=r"no older generation pickles sklearn\.gone\.Thing"):
        gen.derived_names(seen, {"sklearn.Thing"}, renamed_path=table)


def test_an_old_spelling_its_new_names_check_does_not_cover_is_left_out() -> None:
    # allowing a spelling the new name's check does not list would skip the check
    new, old = "scipy.sparse._csr.csr_matrix", "scipy.sparse.csr.csr_matrix"
    derived = {old: gen.Derived("alias_of", new, "scipy 1.7")}
    seen = {new: gen.Seen({"instantiated", "state"}, set(), {"x"})}
    audit = gen.Audit(gen.load_audit())
    without = gen._derived_entry(old, derived, seen, audit, {new: "scipy-sparse-format"})
    assert isinstance(without, str) and "does not cover this spelling" in without
    checks = {new: "scipy-sparse-format", old: "scipy-sparse-format"}
    entry = gen._derived_entry(old, derived, seen, audit, checks)
    assert not isinstance(entry, str) and entry.check == "scipy-sparse-format"


def test_old_scipy_sparse_spellings_are_allowed_under_the_sparse_check() -> None:
    # scipy < 1.8 modules (scipy.sparse.csr) and 1.8-1.10 arrays (scipy.sparse._arrays)
    for name, key, target in (
        ("scipy.sparse.csr.csr_matrix", "alias_of", "scipy.sparse._csr.csr_matrix"),
        ("scipy.sparse._arrays.coo_array", "renamed_to", "scipy.sparse._coo.coo_array"),
    ):
        entry = ENTRIES[name]
        assert (entry[key], entry["check"]) == (target, "scipy-sparse-format"), name
        assert Policy.default().decide(*name.rsplit(".", 1)).allowed, name


def test_out_of_scope_old_forms_stay_refused() -> None:
    # Python 3.8-3.10 pickled Fraction as text; text is out of Fraction's scope
    data = b"\x80\x02cfractions\nFraction\nX\x04\x00\x00\x0022/7\x85R."
    assert pickle.loads(data) == pytest.approx(22 / 7)
    report = safeload.scan_bytes(data)
    assert report.verdict is not Verdict.SAFE
    assert "SL405" in {f.rule for f in report.findings}


def test_the_generator_and_the_fixture_script_share_no_code() -> None:
    fixtures = (REPO / "tools" / "make_generation_fixtures.py").read_text(encoding="utf-8")
    enumerate_ = (REPO / "tools" / "generation_enumerate.py").read_text(encoding="utf-8")
    for text, other in (
        (fixtures, "generation_enumerate"),
        (enumerate_, "make_generation_fixtures"),
    ):
        imports = [ln for ln in text.splitlines() if ln.lstrip().startswith(("import ", "from "))]
        for line in imports:
            assert other not in line and "tools" not in line and "safeload" not in line, line


# -- the torch pack next to torch's weights_only allowlist ------------------------------


def _explained(name: str, side: str, differences: list[dict[str, Any]]) -> list[int]:
    return [
        i
        for i, d in enumerate(differences)
        if d["side"] == side
        and (
            name in d.get("names", [])
            or any(fnmatch.fnmatchcase(name, p) for p in d.get("patterns", []))
        )
    ]


def test_every_difference_from_torchs_weights_only_allowlist_is_explained() -> None:
    from torch import _weights_only_unpickler as weights_only

    allowed = set(weights_only._get_allowed_globals())
    rebuild = {f"{f.__module__}.{f.__name__}" for f in weights_only._tensor_rebuild_functions()}
    assert rebuild <= allowed
    torch_pack = {n for n in ENTRIES if n.split(".")[0] == "torch"}
    data = tomllib.loads((REPO / "tools" / "torch_weights_only.toml").read_text(encoding="utf-8"))
    differences = data["difference"]
    used: set[int] = set()
    for name in sorted(allowed - set(ENTRIES)):
        hits = _explained(name, "weights-only", differences)
        assert len(hits) == 1, f"{name}: allowed by torch's weights_only; explain why not here"
        used |= set(hits)
    for name in sorted(torch_pack - allowed):
        hits = _explained(name, "pack", differences)
        assert len(hits) == 1, f"{name}: allowed here, not by weights_only; explain why"
        used |= set(hits)
    assert used == set(range(len(differences))), "entries that explain no difference"
    for entry in differences:
        assert len(entry["why"].split()) >= 8


def test_the_old_rebuild_function_is_allowed_in_its_scope() -> None:
    import torch

    entry = ENTRIES["torch._utils._rebuild_tensor"]
    assert (entry["use"], entry["calls"]) == (["called"], ["persistent,int,tuple,tuple"])
    path = FIXTURES / "torch" / "rebuild-tensor-v1.pth"
    assert b"_rebuild_tensor\n" in path.read_bytes()  # the torch 0.4.0 spelling, not _v2
    expected = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(torch.load(path, weights_only=True)["net.weight"], expected)
    assert safeload.scan_file(path).verdict is Verdict.SAFE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(safeload.load(path, require_signature=False)["net.weight"], expected)
    # outside its scope (a stream-built storage instead of a persistent id): not safe
    forged = b"\x80\x02ctorch._utils\n_rebuild_tensor\n(c__builtin__\nbytearray\n(K\x10tRK\x00K\x04\x85K\x01\x85tR."
    assert safeload.scan_bytes(forged).verdict is not Verdict.SAFE
