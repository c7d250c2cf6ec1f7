"""benchmarks/prefix_code_eval.py: a smoke run writes every factor's steering and interchange scores."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_prefix_code_eval_smoke_run_reports_every_factor(tmp_path, capsys):
    pytest.importorskip("transformer_lens")
    spec = importlib.util.spec_from_file_location("prefix_code_eval", ROOT / "benchmarks" / "prefix_code_eval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["prefix_code_eval"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    res = mod.main(["--smoke", "--restarts", "2", "--out", str(out)])
    assert [r["seed"] for r in res["restarts"]] == [0, 1] and set(res["choice"]) == {"loss", "tc"}
    saved = json.loads(out.read_text())["restarts"][1]
    names = ["animal", "colour", "size", "number", "action", "tense", "polarity", "place"]
    assert list(saved["steering"]) == names and list(saved["interchange"]["per_factor"]) == names
    assert saved["interchange"]["pairs"] == 4 and all(0 <= v <= 1 for v in saved["interchange"]["mean"].values())
    assert all(len(g) >= 1 for g in saved["groups"].values()) and saved["heldout"]["loss"] > 0
    assert "| place |" in capsys.readouterr().out
