"""benchmarks/pair_store.py: a smoke run fits every method through the paired store and resumes."""

import json

import pytest
from benchmark_module import load_benchmark


def test_pair_store_smoke_run_scores_every_method_and_keeps_done_cells(tmp_path):
    pytest.importorskip("transformer_lens")
    mod = load_benchmark("pair_store")
    argv = [
        "--out",
        str(tmp_path),
        "--seeds",
        "0",
        "--steps",
        "20",
        "--n-train",
        "600",
        "--n-eval",
        "300",
        "--batch-size",
        "128",
    ]
    argv += ["--hooks", "blocks.0.hook_resid_pre"]
    res = mod.main(argv)
    cells = res["cells"]
    assert sorted(k.split("|")[1] for k in cells) == sorted(mod.METHODS)
    for k, c in cells.items():
        assert 0 <= c["mig"] <= 1
        assert ("shared" in c) == ("ada_gvae" in k)  # the paired fits report Ada-GVAE's share
    t = res["throughput"]["blocks.0.hook_resid_pre"]
    assert t["single"] > 0 and t["paired"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "| blocks.0.hook_resid_pre | ada_gvae | pairs" in md and "paired / single" in md
    # a rerun keeps the cells already done (their seconds are not refitted)
    again = mod.main(argv)
    assert again["cells"] == json.loads((tmp_path / "results.json").read_text())["cells"] == cells
