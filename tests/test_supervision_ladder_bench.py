"""benchmarks/supervision_ladder.py: the labelled subset holds k of every value; a smoke run writes every rung."""

import json

import numpy as np
import pytest
from benchmark_module import load_benchmark


def test_labelled_subset_holds_k_examples_of_every_factor_value():
    mod = load_benchmark("supervision_ladder")
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, 5, 500), rng.integers(0, 2, 500)], 1)
    for k in (1, 3):
        idx = mod.labelled_subset(f, [5, 2], k, seed=0)
        assert len(set(idx)) == len(idx)
        for j, size in enumerate((5, 2)):
            assert np.bincount(f[idx, j], minlength=size).min() >= k
        assert len(idx) <= 5 * k + 2 * k  # every kept row supplied a value still short of k
    with pytest.raises(ValueError, match="do not hold 400 examples"):
        mod.labelled_subset(f, [5, 2], 400, seed=0)


def test_the_ladder_smoke_run_writes_every_rung(tmp_path):
    pytest.importorskip("transformer_lens")
    mod = load_benchmark("supervision_ladder")
    res = mod.main(["--smoke", "--no-pairs", "--out", str(tmp_path)])
    rungs = [(r["rung"], r["k"]) for r in res["rows"]]
    assert ("labels", 1) in rungs and ("labels", None) in rungs
    for r in res["rows"]:
        if "error" not in r:
            assert 0 <= r["mean"]["disentangle"] <= 1 and len(r["per_factor"]) == 8
    saved = json.loads((tmp_path / "ladder_b2.json").read_text())
    assert len(saved["rows"]) == len(res["rows"]) and (tmp_path / "ladder_b2.md").is_file()
