"""The plan probe's steering floor on the shipped LM (slow: ~4 min on 2 CPU cores).

A joint VAE head on the whole plan (span layout at blocks.0.hook_resid_pre, linear additive
decoder, 6000 steps, 2 restarts chosen without labels) must steer at least 3 factors at ≥ 90 %
success, ≤ 5 % leakage and ≥ 95 % parse rate (issue 4's floor), more often than PCA on the same
vectors, with MIG ≥ 0.6. Measured 2026-11-28 with 3000 steps: seed 0 steers 5 factors (MIG
0.71), seed 1 steers 3 (MIG 0.70); with 6000 steps `demo --plan-probe` steers 6 (MIG 0.73).
This pins seed 0.
"""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformer_lens")


@pytest.mark.slow
def test_plan_probe_steers_three_factors(tmp_path):
    from probe_disentangle.demo import DemoConfig, _plan_probe
    from probe_disentangle.zoo import load_factor_lm

    cfg = DemoConfig(out=str(tmp_path), seed=0, progress=False)
    model, world = load_factor_lm()
    rng = np.random.default_rng(cfg.seed)
    report = _plan_probe(cfg, model, world, rng, Path(tmp_path), lambda s: None)
    assert len(report["factors_at_floor"]) >= 3, report["steering"]
    assert report["mig"] >= 0.6
    pca = report["baselines"]["pca"]
    ahead = [n for n in report["steering"] if report["steering"][n]["success"] > pca[n]["success"]]
    assert len(ahead) >= 3, (report["steering"], pca)
