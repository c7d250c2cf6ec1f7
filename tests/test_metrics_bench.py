"""benchmarks/metrics.py: a smoke run measures reference, exact and fast side by side and writes its JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the reference's 3200 gradient-boosting trees take ~15 s even at 600 points
def test_the_metrics_benchmark_smoke_run_reports_the_suite(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("metrics_bench", ROOT / "benchmarks" / "metrics.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["metrics_bench"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "metrics.json"
    res = mod.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["setup"]["n_train"] == 600 and len(saved["setup"]["load_avg_1m_per_repeat"]) == 1
    suite = res["suite"]
    assert set(suite["median_seconds"]) == {"reference", "exact", "fast"}
    assert suite["speedup_exact_median"] > 0 and len(suite["speedup_fast_per_repeat"]) == 1
    for row in res["rows"]:  # exact mode equals the reference-style suite where both report a key
        if row["reference"] is not None:
            assert row["exact"] == pytest.approx(row["reference"], abs=1e-10), row["key"]
        assert abs(row["fast"] - row["exact"]) <= 0.05, row["key"]
    assert "| **array suite** |" in capsys.readouterr().out
