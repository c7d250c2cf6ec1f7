"""benchmarks/sae_baseline.py: a smoke run (tiny SAEs trained with SAELens) writes its JSON and table."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_sae_baseline_smoke_run_reports_every_row(tmp_path, capsys):
    pytest.importorskip("transformer_lens")
    from probe_disentangle.steering.sae import _install_tl4_shim

    _install_tl4_shim()
    pytest.importorskip("sae_lens")
    spec = importlib.util.spec_from_file_location("sae_baseline", ROOT / "benchmarks" / "sae_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sae_baseline"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "sae.json"
    res = mod.main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text())["config"]["d_sae"] == 32
    rows = res["hooks"]["blocks.1.hook_resid_post"]
    for row in ("sae_topk_features", "sae_topk_subspace", "sae_standard_features", "sae_standard_subspace"):
        e = rows[row]
        assert set(e["interchange"]["per_factor"]) == {"size", "number"} and e["interchange"]["pairs"] == 4
        assert len(e["mig_first_written"]) == 8
        assert 0 <= e["mean_mig_first_written"] <= 1 and 0 <= e["dci"]["disentanglement"] <= 1
        assert all(len(v) >= 1 for v in e["features"].values())
    assert rows["sae_topk_features"]["fit"]["l0"] <= 4 + 1e-6  # TopK: at most k active features
    assert rows["sae_standard_features"]["fit"]["saved_as"] == "standard"
    assert "diff_means" in rows and "| sae_topk_features |" in capsys.readouterr().out
