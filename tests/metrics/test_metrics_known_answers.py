"""Known-answer tests: perfect codes score ~1, noise ~0, a rotation stays informative but entangled."""

from __future__ import annotations

import numpy as np
import pytest

from probe_disentangle.metrics import mig


def test_perfect_codes_score_one(suite_results):
    r = suite_results["perfect"]["exact"]
    assert r["mig.discrete_mig"] > 0.95
    assert r["dci.disentanglement"] > 0.95
    assert r["dci.completeness"] > 0.95
    assert r["dci.informativeness_test"] > 0.99
    assert r["modularity_explicitness.modularity_score"] > 0.95
    assert r["modularity_explicitness.explicitness_score_test"] > 0.95
    assert r["sap.SAP_score"] > 0.4  # a 1-D linear SVM cannot separate every level, but the gap is large
    assert r["irs.IRS"] > 0.95
    assert r["irs.num_active_dims"] == 3


def test_noise_codes_score_zero(suite_results):
    r = suite_results["noise"]["exact"]
    assert r["mig.discrete_mig"] < 0.05
    assert r["sap.SAP_score"] < 0.05
    assert r["dci.disentanglement"] < 0.1
    assert r["dci.informativeness_test"] < 0.5
    assert r["modularity_explicitness.explicitness_score_test"] < 0.6


def test_rotation_keeps_information_but_loses_disentanglement(suite_results):
    good, rot = suite_results["perfect"]["exact"], suite_results["rotated"]["exact"]
    assert rot["modularity_explicitness.explicitness_score_test"] > 0.95
    assert rot["dci.informativeness_test"] > 0.8
    assert rot["mig.discrete_mig"] < good["mig.discrete_mig"] - 0.5
    assert rot["dci.disentanglement"] < good["dci.disentanglement"] - 0.3
    assert rot["dci.completeness"] < good["dci.completeness"] - 0.3


def test_fast_mode_within_005_of_exact(suite_results):
    for kind, r in suite_results.items():
        assert r["exact"].keys() == r["fast"].keys()
        for key, exact in r["exact"].items():
            assert abs(r["fast"][key] - exact) <= 0.05, (kind, key, exact, r["fast"][key])


def test_mig_hand_computed():
    """Two balanced crossed binary factors; code 0 copies factor 0, code 1 is 'factor 0 or factor 1'.

    I(c0; f0) = ln 2, I(c0; f1) = 0, I(c1; f0) = I(c1; f1) = 1.5 ln 2 - 0.75 ln 3 and H(f) = ln 2, so
    the gaps are 1 - m/ln2 and m/ln2 (m = that shared value) and their mean is exactly 1/2.
    """
    f0 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    f1 = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    c1 = np.array([0, 0, 1, 1, 1, 1, 1, 1], dtype=float)
    codes = np.stack([f0.astype(float), c1], axis=1)
    factors = np.stack([f0, f1], axis=1)
    assert mig(codes, factors)["discrete_mig"] == pytest.approx(0.5, abs=1e-12)
    # with only the copy code the second-best MI is 0 for f0 and f1 is not captured at all: (1 + 0) / 2
    assert mig(codes[:, :1], factors)["discrete_mig"] == pytest.approx(0.5, abs=1e-12)
    assert mig(np.stack([f0, f1], 1).astype(float) * 3.0, factors)["discrete_mig"] == pytest.approx(1.0)
