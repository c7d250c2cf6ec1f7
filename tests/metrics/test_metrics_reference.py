"""Exact mode equals a plain loop-based re-statement of the disentanglement_lib definitions.

The reference below is written the slow, obvious way (one sklearn call per pair, [dims, points]
layout as in disentanglement_lib) so that it pins the vectorised and parallel code paths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from metrics_testdata import make_factors, standardise
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from probe_disentangle.metrics import dci, irs, mig, modularity_explicitness, sap, unsupervised

SEED = 0


# ---------------------------------------------------------------- reference, [dims, points] layout
def ref_discretize(target, num_bins=20):
    out = np.zeros_like(target)
    for i in range(target.shape[0]):
        out[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return out


def ref_mi(mus, ys):
    m = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = mutual_info_score(ys[j, :], mus[i, :])
    return m


def ref_entropy(ys):
    return np.array([mutual_info_score(y, y) for y in ys])


def ref_mig(mus, ys):
    m = ref_mi(ref_discretize(mus), ys)
    s = np.sort(m, axis=0)[::-1]
    return np.mean((s[0, :] - s[1, :]) / ref_entropy(ys))


def ref_sap(mus, ys, mus_test, ys_test):
    score = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            clf = LinearSVC(C=0.01, class_weight="balanced", random_state=SEED)
            clf.fit(mus[i, :, None], ys[j, :])
            score[i, j] = np.mean(clf.predict(mus_test[i, :, None]) == ys_test[j, :])
    s = np.sort(score, axis=0)
    return np.mean(s[-1, :] - s[-2, :])


def ref_dci(mus, ys, mus_test, ys_test):
    imp = np.zeros([mus.shape[0], ys.shape[0]])
    tr, te = [], []
    for j in range(ys.shape[0]):
        model = GradientBoostingClassifier(random_state=SEED).fit(mus.T, ys[j, :])
        imp[:, j] = np.abs(model.feature_importances_)
        tr.append(np.mean(model.predict(mus.T) == ys[j, :]))
        te.append(np.mean(model.predict(mus_test.T) == ys_test[j, :]))
    per_code = 1.0 - scipy.stats.entropy(imp.T + 1e-11, base=imp.shape[1])
    per_factor = 1.0 - scipy.stats.entropy(imp + 1e-11, base=imp.shape[0])
    d = np.sum(per_code * imp.sum(axis=1) / imp.sum())
    c = np.sum(per_factor * imp.sum(axis=0) / imp.sum())
    return {
        "disentanglement": d,
        "completeness": c,
        "informativeness_train": np.mean(tr),
        "informativeness_test": np.mean(te),
    }


def ref_modularity_explicitness(mus, ys, mus_test, ys_test):
    mi = ref_mi(ref_discretize(mus), ys)
    sq = np.square(mi)
    mx = np.max(sq, axis=1)
    mod = 1.0 - (np.sum(sq, axis=1) - mx) / (mx * (sq.shape[1] - 1.0))
    mod[mx == 0.0] = 0.0
    mean, std = mus.mean(axis=1), mus.std(axis=1)
    ztr = (mus - mean[:, None]) / std[:, None]
    zte = (mus_test - mean[:, None]) / std[:, None]
    etr, ete = [], []
    for j in range(ys.shape[0]):
        clf = LogisticRegression().fit(ztr.T, ys[j, :])
        mlb = MultiLabelBinarizer()
        etr.append(roc_auc_score(mlb.fit_transform(ys[j, :, None]), clf.predict_proba(ztr.T)))
        ete.append(roc_auc_score(mlb.fit_transform(ys_test[j, :, None]), clf.predict_proba(zte.T)))
    return {
        "modularity_score": np.mean(mod),
        "explicitness_score_train": np.mean(etr),
        "explicitness_score_test": np.mean(ete),
    }


def ref_irs(mus, ys, q=0.99):
    gen = ref_discretize(ys).T
    lat = mus[mus.var(axis=1) > 0.0].T
    max_dev = np.max(np.abs(lat - lat.mean(axis=0)), axis=0)
    cum = np.zeros([lat.shape[1], gen.shape[1]])
    for i in range(gen.shape[1]):
        values = np.unique(gen[:, i])
        for v in values:
            match = gen[:, i] == v
            diffs = np.abs(lat[match, :] - np.mean(lat[match, :], axis=0))
            cum[:, i] += np.quantile(diffs, q=q, axis=0)
        cum[:, i] /= len(values)
    scores = (1.0 - cum / max_dev[:, None]).max(axis=1)
    return np.average(scores, weights=max_dev), scores


def ref_unsupervised(mus):
    cov = np.cov(mus)
    tc = 0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1])
    wc = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None]))
    disc = ref_discretize(mus)
    mi = ref_mi(disc, disc)
    np.fill_diagonal(mi, 0)
    k = mus.shape[0]
    return {
        "gaussian_total_correlation": tc,
        "gaussian_wasserstein_correlation": np.real(wc),
        "gaussian_wasserstein_correlation_norm": np.real(wc) / np.trace(cov),
        "mutual_info_score": mi.sum() / (k * k - k),
    }


# ---------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def data():
    """A noisy, partly mixed representation: 4 codes (one pure noise), 3 factors, explicit test set."""
    f_tr, f_te = make_factors(700, seed=10), make_factors(300, seed=11)
    mix = np.array([[1.0, 0.3, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0], [0.2, 0.0, 1.0, 0.0]])

    def encode(f, seed):
        rng = np.random.RandomState(seed)
        return standardise(f) @ mix + 0.4 * rng.randn(len(f), 4)

    return encode(f_tr, 12), f_tr, encode(f_te, 13), f_te


def _close(ours, ref):
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-10), key


def test_mig_equals_reference(data):
    c, f, _, _ = data
    assert mig(c, f)["discrete_mig"] == pytest.approx(ref_mig(c.T, f.T), abs=1e-12)


def test_sap_equals_reference(data):
    c, f, ct, ft = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = ref_sap(c.T, f.T, ct.T, ft.T)
    assert sap(c, f, ct, ft, random_state=SEED)["SAP_score"] == pytest.approx(ref, abs=1e-12)


def test_dci_equals_reference(data):
    c, f, ct, ft = data
    _close(dci(c, f, ct, ft, random_state=SEED), ref_dci(c.T, f.T, ct.T, ft.T))


def test_modularity_explicitness_equals_reference(data):
    c, f, ct, ft = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = ref_modularity_explicitness(c.T, f.T, ct.T, ft.T)
    _close(modularity_explicitness(c, f, ct, ft, random_state=SEED), ref)


def test_irs_equals_reference(data):
    c, f, _, _ = data
    ref_avg, ref_scores = ref_irs(c.T, f.T)
    r = irs(c, f)
    assert r["IRS"] == pytest.approx(ref_avg, abs=1e-12)
    np.testing.assert_allclose(r["disentanglement_scores"], ref_scores, atol=1e-12)


def test_unsupervised_equals_reference(data):
    c = data[0]
    _close(unsupervised(c), ref_unsupervised(c.T))


def test_fast_dci_booster_equals_sklearn_on_discrete_codes():
    """On codes with few distinct values, the binned booster of dci(fast=True) is sklearn's model."""
    from probe_disentangle.metrics._utils import HistGradientBoosting

    f = make_factors(400, seed=20)
    c = standardise(f) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
    for j in range(f.shape[1]):
        ours = HistGradientBoosting().fit(c, f[:, j])
        ref = GradientBoostingClassifier(random_state=SEED).fit(c, f[:, j])
        raw_ref = ref.decision_function(c).reshape(len(c), -1)
        np.testing.assert_allclose(ours.decision_function(c), raw_ref, atol=1e-9)
        np.testing.assert_array_equal(ours.predict(c), ref.predict(c))
