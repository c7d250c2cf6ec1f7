"""benchmarks/developmental.py: a smoke run trains two checkpoints, measures each once, and resumes."""

import json

import pytest
from benchmark_module import load_benchmark


def test_the_developmental_smoke_run_measures_each_checkpoint_and_resumes(tmp_path, monkeypatch):
    pytest.importorskip("transformer_lens")
    mod = load_benchmark("developmental")
    run, out = tmp_path / "run", tmp_path / "out"
    res = mod.main(["--smoke", "--run", str(run), "--out", str(out)])
    rows = res["rows"]
    assert [r["step"] for r in rows] == [3, 6]
    names = ["animal", "colour", "size", "number", "action", "tense", "polarity", "place"]
    for r in rows:
        # known answer: the plan at the input is the tags' embeddings, linearly decodable from the start
        assert all(r["decodable_plan"][n] == 1.0 for n in names), r["decodable_plan"]
        assert set(r["steering"]) == set(names) and 0 <= r["parse_rate"] <= 1 and r["loss"] > 0
    assert res["first"]["animal"]["decodable"] == 3
    assert "per_token" not in rows[0] and rows[1]["per_token"]["onset_purity"] > 0  # --per-token-at 6 in the smoke
    if rows[1]["per_token"].get("interchange"):  # 6 steps in, the host rarely writes a parsable sentence
        assert rows[1]["per_token"]["interchange"]["pairs"] == 2
    assert (out / "developmental.png").stat().st_size > 0 and "| 6 |" in (out / "developmental.md").read_text()
    # a rerun measures nothing again, and the user's own folder of checkpoints reads the same way
    monkeypatch.setattr(mod, "measure", lambda *a, **k: pytest.fail("measured a checkpoint twice"))
    again = mod.main(["--smoke", "--run", str(run), "--out", str(out)])
    assert again["rows"] == rows
    again = mod.main(["--smoke", "--checkpoints", str(run), "--out", str(out)])
    assert [r["step"] for r in again["rows"]] == [3, 6]
    assert len(json.loads((out / "developmental.json").read_text())["rows"]) == 2
    with pytest.raises(SystemExit, match="no checkpoint folders"):
        mod.main(["--smoke", "--checkpoints", str(tmp_path), "--out", str(out)])
