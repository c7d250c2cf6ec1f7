"""The demo end to end with tiny settings: report keys, files, a loadable probe."""

import json

import pytest

from probe_disentangle.demo import DemoConfig, fit_best_of, run_demo

pytest.importorskip("transformer_lens")


def test_demo_writes_a_complete_report(tmp_path):
    cfg = DemoConfig(
        out=str(tmp_path / "demo"),
        steps=15,
        n_train=512,
        n_eval=400,
        n_steer=4,
        progress=False,
        plan_probe=True,
        plan_steps=20,
        plan_batch_size=128,
        plan_n_train=512,
        plan_n_steer=4,
        plan_restarts=2,
    )
    lines = []
    report = run_demo(cfg, log=lines.append)
    on_disk = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert on_disk["steering"].keys() == report["steering"].keys()
    for key in ("metrics", "steering", "baselines", "linear_probe_accuracy", "mig_per_factor", "traversals"):
        assert key in on_disk
    for factor, r in on_disk["steering"].items():
        assert {"success", "leakage", "parse_rate", "latent"} <= set(r), factor
        assert 0.0 <= r["success"] <= 1.0
    assert set(on_disk["baselines"]) == {"vae_beta1", "pca", "diff_means", "positional_diff_means"}
    assert (tmp_path / "demo" / "report.md").read_text().startswith("# probe_disentangle demo report")
    assert (tmp_path / "demo" / "probe" / "probe.json").is_file()
    plan = on_disk["plan_probe"]
    assert plan["span"] == [1, 10] and set(plan["steering"]) == set(on_disk["steering"])
    assert set(plan["baselines"]) == {"pca"} and 0.0 <= plan["mig"] <= 1.0
    assert (tmp_path / "demo" / "plan_probe" / "probe.json").is_file()
    assert plan["traversals"] and all(len(t["samples"]) == 6 for t in plan["traversals"])
    assert "through its values" in (tmp_path / "demo" / "report.md").read_text()
    restarts = plan["restarts"]
    assert restarts["seeds"] == [0, 1] and len(restarts["explained_variance"]) == 2
    assert (
        restarts["chosen"]
        == restarts["seeds"][restarts["explained_variance"].index(max(restarts["explained_variance"]))]
    )
    assert "## Plan probe" in (tmp_path / "demo" / "report.md").read_text()
    assert any("steering" in line for line in lines)


def test_fit_best_of_keeps_the_fit_that_reconstructs_best():
    class Fake:
        def __init__(self, ev):
            self.ev, self.fitted_with = ev, None

        def explained_variance(self, held_out):
            return self.ev

    evs = iter([0.2, 0.9, 0.5])
    best, scores = fit_best_of(
        lambda: Fake(next(evs)), lambda p, seed: setattr(p, "fitted_with", seed), None, [4, 5, 6]
    )
    assert scores == [0.2, 0.9, 0.5] and best.ev == 0.9 and best.fitted_with == 5
    with pytest.raises(ValueError, match="at least one seed"):
        fit_best_of(lambda: Fake(0.1), lambda p, s: None, None, [])
