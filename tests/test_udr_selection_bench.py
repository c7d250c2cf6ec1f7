"""benchmarks/udr_selection.py at a tiny size: every model scored, the correlations and picks made."""

import json

from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("udr_selection")


def test_smoke_sweep_scores_every_model(tmp_path, capsys):
    bench = _bench()
    report = bench.main(["--smoke", "--out", str(tmp_path)])
    assert len(report["models"]) == 4 and {m["beta"] for m in report["models"]} == {1.0, 8.0}
    for m in report["models"]:
        assert 0.0 <= m["udr"] <= 1.0 and 0.0 <= m["mig"] <= 1.0
    assert set(report["spearman"]) == set(bench.LABEL_FREE)
    assert all(-1.0 <= c["mig"] <= 1.0 for c in report["spearman"].values())
    assert json.loads((tmp_path / "udr_selection.json").read_text())["picks"]["udr"]["beta"] in (1.0, 8.0)
    assert "| udr |" in capsys.readouterr().out
    assert (tmp_path / "udr_selection.png").stat().st_size > 1000


def test_spearman_known_answers():
    bench = _bench()
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert bench.spearman([1, 1, 1], [1, 2, 3]) == 0.0  # a constant score says nothing
