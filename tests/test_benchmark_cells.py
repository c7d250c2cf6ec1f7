"""benchmarks/_cells.py: the studies' resume loop (fit what is missing or stale, save after each)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _cells import fill_cells  # noqa: E402


def _todo():
    return [(f"c{i}", i) for i in range(4)]


def test_only_missing_and_stale_cells_are_fitted_and_each_is_saved_at_once(tmp_path):
    path = tmp_path / "study.json"
    state = {"cells": {"c0": {"v": 0, "steps": 10}, "c1": {"v": -1, "steps": 5}}, "hosts": {"h": 1}}
    saved = []

    def fit(i):
        if path.is_file():  # what was on disk when this fit began
            saved.append(sorted(json.loads(path.read_text())["cells"]))
        return {"v": i * 10, "steps": 10}

    new = fill_cells(path, state, _todo(), current=lambda c: c["steps"] == 10, fit=fit)
    assert new == 3  # c0 is current; c1 is stale (other steps); c2, c3 are missing
    assert {k: c["v"] for k, c in state["cells"].items()} == {"c0": 0, "c1": 10, "c2": 20, "c3": 30}
    assert saved == [["c0", "c1"], ["c0", "c1", "c2"]]  # written after every cell, not only at the end
    assert json.loads(path.read_text()) == state  # the last write holds everything, other keys kept


def test_max_cells_and_report_only_stop_before_fitting(tmp_path):
    path = tmp_path / "study.json"
    state = {}
    calls = []
    fit = lambda i: calls.append(i) or {"v": i}  # noqa: E731
    assert fill_cells(path, state, _todo(), current=lambda c: True, fit=fit, max_cells=2) == 2
    assert calls == [0, 1] and sorted(state["cells"]) == ["c0", "c1"]
    assert fill_cells(path, state, _todo(), current=lambda c: True, fit=fit, report_only=True) == 0
    assert calls == [0, 1]
    assert fill_cells(path, state, _todo(), current=lambda c: True, fit=fit) == 2  # the rerun resumes
    assert calls == [0, 1, 2, 3]


def test_a_failing_fit_keeps_the_cells_before_it(tmp_path):
    path = tmp_path / "study.json"
    state = {"cells": {}}

    def fit(i):
        if i == 2:
            raise RuntimeError("killed")
        return {"v": i}

    with pytest.raises(RuntimeError, match="killed"):
        fill_cells(path, state, _todo(), current=lambda c: True, fit=fit, describe=lambda c: str(c["v"]))
    assert sorted(json.loads(path.read_text())["cells"]) == ["c0", "c1"]
