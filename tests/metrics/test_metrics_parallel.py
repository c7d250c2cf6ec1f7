"""The metrics' thread pool: results never depend on the number of workers, dearest fits start first."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from metrics_testdata import make_factors, standardise

from probe_disentangle.metrics import N_JOBS, dci, evaluate, modularity_explicitness, sap
from probe_disentangle.metrics._utils import HistGradientBoosting, default_n_jobs, parallel_map


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    f = make_factors(n, seed=seed)
    mix = np.array([[1.0, 0.3, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0], [0.2, 0.0, 1.0, 0.0]])
    return standardise(f) @ mix + 0.4 * np.random.RandomState(seed + 1).randn(n, 4), f


def test_parallel_map_starts_dearest_first_and_keeps_item_order():
    calls = []
    lock = threading.Lock()

    def fn(x):
        with lock:
            calls.append(x)
        return x * 10

    assert parallel_map(fn, [0, 1, 2, 3], n_jobs=1, costs=[1.0, 5.0, 3.0, 0.5]) == [0, 10, 20, 30]
    assert calls == [1, 2, 0, 3]  # longest first
    calls.clear()
    assert parallel_map(fn, [0, 1, 2, 3], n_jobs=2, costs=[1.0, 5.0, 3.0, 0.5]) == [0, 10, 20, 30]
    assert sorted(calls) == [0, 1, 2, 3]
    assert parallel_map(fn, range(5), n_jobs=2) == [0, 10, 20, 30, 40]


def test_parallel_map_and_n_jobs_reject_bad_arguments():
    with pytest.raises(ValueError, match="one entry per item"):
        parallel_map(abs, [1, 2], costs=[1.0])
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        default_n_jobs(3, 0)
    with pytest.raises(TypeError, match="n_jobs must be an int"):
        default_n_jobs(3, 2.5)
    assert N_JOBS == -1
    assert default_n_jobs(3, 8) == 3  # never more workers than fits
    assert default_n_jobs(100, -1) == default_n_jobs(100, None) >= 1


def test_metric_values_identical_for_one_and_two_workers():
    """Exact and fast mode, every metric with a thread pool: n_jobs = 1 and 2 give the same floats."""
    c, f = _noisy(300, seed=30)
    ct, ft = _noisy(150, seed=40)
    for fast in (False, True):
        one = evaluate(c, f, ct, ft, random_state=0, fast=fast, n_jobs=1)
        two = evaluate(c, f, ct, ft, random_state=0, fast=fast, n_jobs=2)
        assert one == two, fast
        assert one["dci.informativeness_test"] > 0.5  # the fits did learn something
    for fn in (sap, dci, modularity_explicitness):  # the split drawn from random_state, too
        assert fn(c, f, n_jobs=1, random_state=3) == fn(c, f, n_jobs=2, random_state=3), fn.__name__


def test_hist_booster_keeps_its_training_scores():
    """dci(fast=True) reads training accuracy from the fit: it must equal a second pass over the trees."""
    c, f = _noisy(400, seed=50)
    for j in range(f.shape[1]):
        model = HistGradientBoosting(n_estimators=20).fit(c, f[:, j])
        np.testing.assert_array_equal(model.train_decision_, model.decision_function(c))
        np.testing.assert_array_equal(model.labels(model.train_decision_), model.predict(c))
