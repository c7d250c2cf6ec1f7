"""Unsupervised scores against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from probe_disentangle.metrics import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    mutual_info_score,
    unsupervised,
)


def _cov(k: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    a = rng.randn(k, k)
    return a @ a.T + k * np.diag(rng.uniform(0.5, 2.0, k))


def test_total_correlation_matches_closed_form_on_gaussian_codes():
    cov = _cov()
    codes = np.random.RandomState(1).multivariate_normal(np.zeros(4), cov, size=200_000)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    expected = -0.5 * np.log(np.linalg.det(corr))
    r = unsupervised(codes)
    assert r["gaussian_total_correlation"] == pytest.approx(expected, abs=0.01)
    # on the sample covariance the identity is exact
    sample_corr = np.corrcoef(codes, rowvar=False)
    assert r["gaussian_total_correlation"] == pytest.approx(-0.5 * np.log(np.linalg.det(sample_corr)), abs=1e-10)


def test_total_correlation_and_wasserstein_zero_iff_diagonal():
    diag = np.diag([1.0, 2.0, 3.0])
    assert gaussian_total_correlation(diag) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_wasserstein_correlation(diag) == pytest.approx(0.0, abs=1e-9)
    cov = _cov(3)
    assert gaussian_total_correlation(cov) > 0.0
    assert gaussian_wasserstein_correlation(cov) > 0.0


def test_wasserstein_matches_general_gaussian_formula():
    """W2^2(N(0,A), N(0,B)) = tr A + tr B - 2 tr (B^1/2 A B^1/2)^1/2 with B = diag(A)."""
    a = _cov(3, seed=2)
    b = np.diag(np.diag(a))
    rb = scipy.linalg.sqrtm(b)
    expected = np.trace(a) + np.trace(b) - 2 * np.real(np.trace(scipy.linalg.sqrtm(rb @ a @ rb)))
    assert gaussian_wasserstein_correlation(a) == pytest.approx(expected, rel=1e-8)


def test_mutual_info_score_independent_vs_copied_codes():
    rng = np.random.RandomState(0)
    x = rng.randn(5000, 3)
    low = unsupervised(x)["mutual_info_score"]
    high = unsupervised(np.concatenate([x, x * 2.0 + 1.0], axis=1))["mutual_info_score"]
    assert low < 0.05
    assert high > 5 * low
    r = unsupervised(x)
    assert set(r) == {
        "gaussian_total_correlation",
        "gaussian_wasserstein_correlation",
        "gaussian_wasserstein_correlation_norm",
        "mutual_info_score",
    }


def test_mutual_info_score_known_answers():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 20_000).astype(float)
    b = rng.integers(0, 6, 20_000).astype(float)
    assert mutual_info_score(np.stack([a, a], 1)) == pytest.approx(np.log(6), abs=0.01)  # a copy: H = log 6
    assert mutual_info_score(np.stack([a, b], 1)) < 0.01  # independent
    assert mutual_info_score(a[:, None]) == 0.0  # a single code
    codes = np.stack([a, b, a], 1)
    assert mutual_info_score(codes) == pytest.approx(unsupervised(codes)["mutual_info_score"])
    # 2 of the 6 ordered pairs are copies
    assert mutual_info_score(codes) == pytest.approx(2 * np.log(6) / 6, abs=0.01)
