"""benchmarks/sae_import.py: a smoke run (tiny SAEs built by SAELens) writes its JSON and table."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_sae_import_smoke_run_reports_every_architecture(tmp_path, capsys):
    pytest.importorskip("transformer_lens")
    from probe_disentangle.steering.sae import _install_tl4_shim

    _install_tl4_shim()
    pytest.importorskip("sae_lens")
    spec = importlib.util.spec_from_file_location("sae_import", ROOT / "benchmarks" / "sae_import.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sae_import"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "sae_import.json"
    res = mod.main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text())["config"]["d_sae"] == 64
    assert set(res["architectures"]) == {"standard", "topk", "jumprelu", "gated"}
    for row in res["architectures"].values():
        assert row["encode_max_abs_diff"] <= 1e-5 and row["decode_max_abs_diff"] <= 1e-5
        assert row["edit_bit_identical"] and row["round_trip_bit_identical"]
        assert row["edit_max_abs_diff_vs_saelens_edit"] <= 1e-5
        assert row["bytes"]["probe_files"]["README.md"] > 0 and row["encode_ms"]["ours"] > 0
    assert "| gated |" in capsys.readouterr().out
