"""benchmarks/prefix_code_eval.py: a smoke run scores every restart and every baseline row on every factor."""

import json

import pytest
from benchmark_module import load_benchmark


def test_the_middle_layer_benchmark_smoke_run_reports_every_row_and_factor(tmp_path, capsys):
    pytest.importorskip("transformer_lens")
    from probe_disentangle.steering.sae import _install_tl4_shim  # noqa: E402

    _install_tl4_shim()  # SAELens 6 imports transformer-lens 3 paths
    pytest.importorskip("sae_lens")
    mod = load_benchmark("prefix_code_eval")
    out = tmp_path / "r.json"
    res = mod.main(["--smoke", "--restarts", "2", "--out", str(out)])
    names = ["animal", "colour", "size", "number", "action", "tense", "polarity", "place"]
    hook = "blocks.1.hook_resid_post"
    saved = json.loads(out.read_text())["results"][hook]
    assert set(saved) == {"prefix_code", "prefix_code_pairs", "token_position_diff_means", "pca", "sae_topk"}
    assert saved["prefix_code_pairs"]["supervision"].startswith("pairs")
    restarts = saved["prefix_code"]["restarts"]
    assert [r["seed"] for r in restarts] == [0, 1] and sum(r["chosen"] for r in restarts) == 1
    kept = max(restarts, key=lambda r: r["onset_purity"])  # the choice is the purest restart, no labels
    assert kept["chosen"] and saved["prefix_code"]["chosen"]["seed"] == kept["seed"]
    rows = (*restarts, saved["prefix_code_pairs"], saved["token_position_diff_means"], saved["pca"], saved["sae_topk"])
    for row in rows:
        ic = row["interchange"]
        assert list(ic["per_factor"]) == names and ic["pairs"] == 4
        assert all(0 <= v <= 1 for v in ic["mean"].values())
    for r in restarts:
        assert 0 <= r["udr"] <= 1  # UDR of each restart against the other
        assert list(r["mig_first_written_knobs"]) == names and 0 <= r["dci_knobs"]["disentanglement"] <= 1
        assert sorted(sum(r["knobs"]["groups"], [])) == sorted(set(sum(r["knobs"]["groups"], [])))
    assert list(saved["token_position_diff_means"]["steering"]) == names
    printed = capsys.readouterr().out
    assert f"## {hook}" in printed and "| token_position_diff_means |" in printed and "**kept**" in printed
    assert res["results"][hook]["pca"]["supervision"].startswith("none")
