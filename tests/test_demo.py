"""The demo end to end with tiny settings: report keys, files, a loadable probe."""

import json

import numpy as np
import pytest
import torch

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
        plan_tcvae_steps=5,
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
    assert len(restarts["mutual_info"]) == 2 and all(m >= 0 for m in restarts["mutual_info"])
    assert restarts["chosen"] in restarts["seeds"]
    assert "## Plan probe" in (tmp_path / "demo" / "report.md").read_text()
    tc = plan["beta_tcvae"]  # the Gaussian β-TCVAE head on the same plan vectors, from ISA
    assert set(tc["mig_per_factor"]) == set(plan["mig_per_factor"]) and 0.0 <= tc["mig"] <= 1.0
    assert set(tc["steering"]) == set(plan["steering"]) and isinstance(tc["factors_at_floor"], list)
    assert (tmp_path / "demo" / "plan_probe_beta_tcvae" / "probe.json").is_file()
    assert "MIG β-TCVAE" in (tmp_path / "demo" / "report.md").read_text()
    assert any("steering" in line for line in lines)


def test_fit_best_of_reconstruction_first_then_the_most_independent_codes():
    g = torch.Generator().manual_seed(0)
    held_out = torch.randn(3000, 2, generator=g)
    a = torch.randint(0, 6, (3000,), generator=g).float()
    b = torch.randint(0, 6, (3000,), generator=g).float()

    class Fake:
        """Reports a set explained variance; its codes are two independent columns or a
        column and its copy (dependent: mutual information log 6)."""

        def __init__(self, ev, dependent):
            self.ev, self.dependent, self.fitted_with = ev, dependent, None

        def explained_variance(self, x):
            assert x is held_out
            return self.ev

        def encode(self, x):
            return torch.stack([a, a if self.dependent else b], 1)

    specs = iter([(0.5, False), (0.995, True), (0.99, False), (0.9, False)])
    best, scores = fit_best_of(
        lambda: Fake(*next(specs)), lambda p, seed: setattr(p, "fitted_with", seed), held_out, [4, 5, 6, 7]
    )
    # seeds 5 and 6 reconstruct within 0.01 of the best; 6's codes are independent, 5's are not
    assert best.fitted_with == 6 and [s["chosen"] for s in scores] == [False, False, True, False]
    assert [s["seed"] for s in scores] == [4, 5, 6, 7]
    assert scores[1]["mutual_info"] == pytest.approx(np.log(6), abs=0.01)
    assert scores[2]["mutual_info"] < 0.01
    # with no tolerance, reconstruction alone decides
    specs = iter([(0.5, False), (0.995, True), (0.99, False)])
    best, _ = fit_best_of(
        lambda: Fake(*next(specs)), lambda p, s: setattr(p, "fitted_with", s), held_out, [4, 5, 6], 0.0
    )
    assert best.fitted_with == 5
    with pytest.raises(ValueError, match="at least one seed"):
        fit_best_of(lambda: Fake(0.1, False), lambda p, s: None, held_out, [])
