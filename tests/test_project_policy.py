"""The guarded loader honours the project's `[tool.safeload]`, as its refusal message says."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import safeload

#: acme.models.Net() with state: a global on no allow pack.
UNKNOWN = b"(iacme.models\nNet\n(dp0\nVw\np1\nI1\nsb."


def load_unsigned(data: bytes) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        return safeload.loads(data, require_signature=False)


def test_tool_safeload_allow_applies_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "__init__.py").write_text("")
    (tmp_path / "acme" / "models.py").write_text(
        "class Net:\n    def __eq__(self, other):\n        return vars(self) == vars(other)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    monkeypatch.chdir(project / "sub")
    with pytest.raises(safeload.UnsafeFileError) as info:
        load_unsigned(UNKNOWN)
    assert "[tool.safeload] allow = ['acme.models.Net']" in str(info.value)
    (project / "pyproject.toml").write_text('[tool.safeload]\nallow = ["acme.models.Net"]\n')
    net = load_unsigned(UNKNOWN)
    assert type(net).__name__ == "Net" and vars(net) == {"w": 1}
    # A denied name in the project's table is a configuration error, not an allow.
    (project / "pyproject.toml").write_text('[tool.safeload]\nallow = ["os.system"]\n')
    with pytest.raises(safeload.PolicyError):
        load_unsigned(UNKNOWN)
