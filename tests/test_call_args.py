"""Call arguments in findings: constant lists, tuples, dicts and sets show their contents.

Before, at protocol >= 2 a list argument was printed as the EMPTY_LIST that
starts it: `Popen(['touch', 'x'])` read `subprocess.Popen called with ([],)`.
The contents are bounded (8 items, then `...`; 200 characters) and escaped
(`repr`: control characters, ANSI escapes and bidi overrides never reach a
terminal raw), in text, JSON and SARIF alike.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest

from safeload import Policy, ScanReport
from safeload._cli.render import json as json_render
from safeload._cli.render import sarif, text
from safeload.scan import scan_bytes


class Call:
    """Pickles as `subprocess.Popen(*args)` (never called here: only dumped)."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (subprocess.Popen, self.args)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.default()


def message(args: tuple[object, ...], protocol: int, policy: Policy) -> str:
    report = scan_bytes(pickle.dumps(Call(*args), protocol=protocol), policy)
    (finding,) = [f for f in report.findings if f.global_name == "subprocess.Popen"]
    return finding.message


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
def test_list_argument_shows_its_items(protocol: int, policy: Policy) -> None:
    assert "called with (['touch', 'x'],)" in message((["touch", "x"],), protocol, policy)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_dict_set_tuple_and_nesting(protocol: int, policy: Policy) -> None:
    args = (["sh", "-c", "id"], {"env": {"A": "1"}, "cwd": "/"}, {7}, ("a", ["b"]))
    shown = message(args, protocol, policy)
    assert "['sh', '-c', 'id']" in shown
    assert "{'env': {'A': '1'}, 'cwd': '/'}" in shown
    assert "('a', ['b'])" in shown
    # a set is EMPTY_SET + ADDITEMS from protocol 4 on, builtins.set([...]) before
    assert ("{7}" if protocol >= 4 else "builtins.set([7])") in shown


def test_long_containers_are_bounded(policy: Policy) -> None:
    shown = message((list(range(50)), {f"k{i}": i for i in range(50)}), 4, policy)
    assert "[0, 1, 2, 3, 4, 5, 6, 7, ...]" in shown
    assert "8," not in shown.split("...")[0]
    long = message((["x" * 1000],), 4, policy)
    rendered = long.split("called with ")[1].split(": global")[0]
    assert len(rendered) <= 200 and rendered.endswith("...")


def test_arguments_are_escaped(policy: Policy) -> None:
    shown = message((["\x1b[2J", "a\nb", "\u202eevil"],), 4, policy)
    assert "\x1b" not in shown and "\n" not in shown and "\u202e" not in shown
    assert r"'\x1b[2J'" in shown and r"'a\nb'" in shown and r"'\u202eevil'" in shown


def test_protocol_0_list_is_not_shown_as_empty(policy: Policy) -> None:
    # LIST (protocol 0) pushes no constant whose items are kept: say so, never `[]`
    shown = message((["touch", "x"],), 0, policy)
    assert "([]," not in shown and "(<list>," in shown


def test_text_json_and_sarif_carry_the_arguments(policy: Policy, tmp_path: Path) -> None:
    data = pickle.dumps(Call(["touch", "canary"]), protocol=4)
    file = scan_bytes(data, policy, location="evil.pkl")
    report = ScanReport(files=(file,))
    wanted = "subprocess.Popen called with (['touch', 'canary'],)"
    assert wanted in text.render(report)
    (finding,) = json.loads(json_render.render(report))["files"][0]["findings"]
    assert wanted in finding["message"]
    (result,) = json.loads(sarif.render(report, policy, root=tmp_path))["runs"][0]["results"]
    assert wanted in result["message"]["text"]
