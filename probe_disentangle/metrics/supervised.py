"""Supervised disentanglement metrics: codes scored against the true generative factors.

Every metric follows google-research/disentanglement_lib (Locatello et al. 2019, "Challenging
Common Assumptions in the Unsupervised Learning of Disentangled Representations") in its
definition, defaults and result keys, so numbers are comparable with that literature. Inputs
are arrays instead of a dataset object:

- ``codes`` [N, k]: the representation (posterior means), floats.
- ``factors`` [N, F]: the true factors, discrete integer labels.
- ``codes_test`` / ``factors_test``: an optional held-out sample for the metrics that train a
  classifier (SAP, DCI, modularity/explicitness). disentanglement_lib draws a fresh test sample
  from the world; without one we hold out 20% of the given points, chosen by a permutation from
  ``random_state`` (see ``_utils.train_test``). Metrics without a classifier (MIG, IRS) use
  the training arrays only, as the reference does, and ignore a given test set.

Exact mode (the default) uses the reference's sklearn estimators and values; the speed comes
from vectorised mutual information and independent fits run in parallel threads. ``fast=True``
swaps in cheaper estimators; each docstring says what changes and how far values drift.

BetaVAE and FactorVAE scores need to sample new observations, so they take a ``world`` (the
protocol of ``probe_disentangle.worlds``: ``factor_sizes``, ``num_factors``,
``sample_factors(num, random_state)``, ``sample_observations_from_factors(factors,
random_state)``) and a ``representation_function(observations) -> [num, k]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import scipy.optimize
import scipy.stats

from ._utils import (
    N_JOBS,
    NUM_BINS,
    HistGradientBoosting,
    RandomStateLike,
    as_random_state,
    check_codes,
    check_codes_factors,
    discrete_entropy,
    histogram_discretize,
    mutual_info_matrix,
    parallel_map,
    randint,
    sklearn_seed,
    train_test,
)

__all__ = [
    "WorldLike",
    "beta_vae_score",
    "cluster_accuracy",
    "dci",
    "dci_scores_from_importance",
    "factor_vae_score",
    "irs",
    "linear_decodability",
    "mig",
    "modularity_explicitness",
    "posterior_mig",
    "sap",
]

FAST_MAX_TRAIN = 2000  # fast mode: training points per SAP / explicitness fit


class WorldLike(Protocol):
    """What BetaVAE/FactorVAE scores need from a world with known factors."""

    factor_sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int: ...

    def sample_factors(self, num: int, random_state: Any) -> np.ndarray: ...

    def sample_observations_from_factors(self, factors: np.ndarray, random_state: Any) -> np.ndarray: ...


def _quiet_fit(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with sklearn's ConvergenceWarning silenced (the reference's fits hit max_iter too)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


def _subsample(x: np.ndarray, y: np.ndarray, n_max: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n_max`` rows of (x, y), drawn without replacement (fast mode)."""
    if x.shape[0] <= n_max:
        return x, y
    idx = np.random.RandomState(seed).choice(x.shape[0], n_max, replace=False)
    return x[idx], y[idx]


# ---------------------------------------------------------------------------------------- MIG
def mig(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    num_bins: int = NUM_BINS,
) -> dict[str, float]:
    """Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    Each code is binned into ``num_bins`` equal-width bins; for each factor, the gap between the
    two largest code-factor mutual informations, divided by the factor's entropy, is averaged.
    1 means each factor is captured by one code alone. As disentanglement_lib's ``compute_mig``.
    Uses the training arrays only (test arrays and ``random_state`` are ignored; nothing is
    random). ``fast`` changes nothing: the vectorised estimator is already exact and fast.
    Returns ``{"discrete_mig"}``.
    """
    codes, factors, _, _ = check_codes_factors(codes, factors, codes_test, factors_test)
    m = mutual_info_matrix(histogram_discretize(codes, num_bins), factors)  # (k, F)
    return {"discrete_mig": float(np.mean(_gaps(m, factors)))}


def _gaps(mi: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Per factor: the gap between the two largest code-factor MIs [k, F], over the factor's entropy."""
    if mi.shape[0] < 2:  # one code: the gap is to an absent second code, i.e. to zero
        mi = np.vstack([mi, np.zeros_like(mi)])
    top = np.sort(mi, axis=0)[::-1]
    return (top[0] - top[1]) / discrete_entropy(factors)


def _sampled_entropies(coef: Any, z: Any, idx: np.ndarray, num_samples: int, rng: Any, budget: int) -> np.ndarray:
    """−E log q(z_j) per latent j, where q(z_j) = mean over the points ``idx`` of their Gaussian
    posteriors q(z_j|x_n), and z_j is one posterior sample of each of up to ``num_samples`` of them.

    ``coef`` [N, k, 3] holds each posterior's log-density as a quadratic in z (float64, exact), so
    the [points × samples] log-densities of a latent are one matrix product."""
    import torch

    rows = torch.from_numpy(idx).to(coef.device)
    pick = idx if idx.size <= num_samples else rng.choice(idx, num_samples, replace=False)
    zs = z[torch.from_numpy(pick).to(z.device)]  # [s, k]
    c = coef[rows]  # [n, k, 3]
    n, k = c.shape[:2]
    total = torch.zeros(k, dtype=torch.float64, device=coef.device)
    step = max(1, budget // n)
    for j in range(k):
        for s in range(0, zs.shape[0], step):
            zj = zs[s : s + step, j]
            logq = c[:, j] @ torch.stack([torch.ones_like(zj), zj, zj * zj])  # [n, s]
            total[j] -= (torch.logsumexp(logq, dim=0) - math.log(n)).sum()
    return (total / zs.shape[0]).cpu().numpy()


def posterior_mig(
    means: np.ndarray,
    logvars: np.ndarray,
    factors: np.ndarray,
    num_samples: int = 10_000,
    random_state: RandomStateLike = 0,
    budget: int = 1 << 24,
    device: str | None = None,
) -> dict[str, Any]:
    """MIG with Chen et al.'s own estimator (their ``disentanglement_metrics.py``), the one behind
    the paper's numbers (β-TCVAE ≈ 0.5 on dSprites): the mutual information between a latent
    *sampled* from its Gaussian posterior and each factor, I(z_j; v_k) = H(z_j) − H(z_j | v_k).
    Each entropy is a Monte Carlo average of −log q(z_j) over ``num_samples`` posterior samples,
    with q(z_j) the mixture of the posteriors of all points (for H(z_j | v_k = v): of the points
    with that value), weighted by the values' frequencies. On a full factor grid this is their
    estimator; on a random sample of a world it estimates the same quantities. The gap of the two
    largest, over the factor's entropy, is averaged over factors.

    ``means``, ``logvars`` [N, k]: the posteriors' parameters (not codes alone, unlike :func:`mig`);
    ``budget``: elements per chunk of the [points × samples] log-densities; ``device``: where
    to compute them (e.g. "cuda"; default CPU). Cost ∝ points × ``num_samples`` × latents.
    Returns ``{"posterior_mig", "per_factor" (gaps), "mutual_information" ([k][F], nats)}``.
    """
    import torch

    means, factors, _, _ = check_codes_factors(means, factors)
    logvars = check_codes(logvars, "logvars")
    if logvars.shape != means.shape:
        raise ValueError(f"logvars must match means, got {logvars.shape} and {means.shape}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
    rng = as_random_state(random_state)
    g = torch.Generator().manual_seed(int(randint(rng, 2**31, 1)[0]))
    mu = torch.from_numpy(means)
    logvar = torch.from_numpy(logvars)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=torch.float64)  # one per point
    inv_var = torch.exp(-logvar)
    # log N(z; μ, σ²) = c0 + c1 z + c2 z²
    coef = torch.stack([-0.5 * (math.log(2 * math.pi) + logvar + mu * mu * inv_var), mu * inv_var, -0.5 * inv_var], -1)
    coef, z = coef.to(device or "cpu"), z.to(device or "cpu")
    n = means.shape[0]
    marginal = _sampled_entropies(coef, z, np.arange(n), num_samples, rng, budget)
    mi = np.zeros((means.shape[1], factors.shape[1]))
    for f in range(factors.shape[1]):
        values, counts = np.unique(factors[:, f], return_counts=True)
        cond = sum(
            (c / n) * _sampled_entropies(coef, z, np.flatnonzero(factors[:, f] == v), num_samples, rng, budget)
            for v, c in zip(values, counts, strict=True)
        )
        mi[:, f] = marginal - cond
    gaps = _gaps(mi, factors)
    return {"posterior_mig": float(np.mean(gaps)), "per_factor": gaps.tolist(), "mutual_information": mi.tolist()}


# ---------------------------------------------------------------------------------------- SAP
def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    n_jobs: int | None = N_JOBS,
) -> dict[str, float]:
    """Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
    Disentangled Latent Concepts from Unlabeled Observations", Sec. 3).

    For every (code, factor) pair a one-feature ``LinearSVC(C=0.01, class_weight="balanced")``
    is trained and its test accuracy recorded; the score is the mean over factors of the gap
    between the two most predictive codes. Discrete factors (``continuous_factors=False``), as
    disentanglement_lib's ``compute_sap``; the k * F fits run in ``n_jobs`` parallel threads
    (default ``N_JOBS``: one per core; values identical for any ``n_jobs``). Without test
    arrays, 20% of the points are held out. ``fast`` changes nothing: the fits already take well
    under a second, and training on fewer points moves the score (C=0.01 regularises more when
    there are fewer points; 0.05 at 2000 of 8000). Returns ``{"SAP_score"}``.
    """
    from sklearn.svm import LinearSVC

    codes, factors, codes_test, factors_test = check_codes_factors(codes, factors, codes_test, factors_test)
    x_tr, y_tr, x_te, y_te = train_test(codes, factors, codes_test, factors_test, random_state)
    seed = sklearn_seed(random_state)
    k, num_f = x_tr.shape[1], y_tr.shape[1]

    def cell(ij: tuple[int, int]) -> float:
        i, j = ij
        x, y = x_tr[:, i : i + 1], y_tr[:, j]
        clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
        clf.fit(x, y)
        return float(np.mean(clf.predict(x_te[:, i : i + 1]) == y_te[:, j]))

    pairs = [(i, j) for i in range(k) for j in range(num_f)]
    scores = _quiet_fit(lambda: parallel_map(cell, pairs, n_jobs))
    score_matrix = np.asarray(scores).reshape(k, num_f)
    if k < 2:
        score_matrix = np.vstack([score_matrix, np.zeros_like(score_matrix)])
    top = np.sort(score_matrix, axis=0)
    return {"SAP_score": float(np.mean(top[-1] - top[-2]))}


# ---------------------------------------------------------------------------------------- DCI
def _entropy_score(p: np.ndarray) -> np.ndarray:
    """1 - entropy of each column of ``p`` (normalised to sum 1), in base = number of rows."""
    if p.shape[0] < 2:  # a single outcome: no spread possible, the score is perfect
        return np.ones(p.shape[1])
    return 1.0 - scipy.stats.entropy(p + 1e-11, base=p.shape[0])


def dci_scores_from_importance(importance: np.ndarray) -> dict[str, float]:
    """Disentanglement and completeness from an importance matrix [k codes, F factors].

    Disentanglement: per code, 1 - entropy (base F) of its importance over factors, weighted by
    the code's share of total importance. Completeness: per factor, 1 - entropy (base k) of its
    importance over codes, weighted by the factor's share. As disentanglement_lib's ``dci``.
    """
    imp = np.asarray(importance, dtype=np.float64)
    per_code = _entropy_score(imp.T)
    per_factor = _entropy_score(imp)
    weights = imp if imp.sum() != 0.0 else np.ones_like(imp)
    code_w = weights.sum(axis=1) / weights.sum()
    factor_w = weights.sum(axis=0) / weights.sum()
    return {
        "disentanglement": float(np.sum(per_code * code_w)),
        "completeness": float(np.sum(per_factor * factor_w)),
    }


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    n_jobs: int | None = N_JOBS,
) -> dict[str, float]:
    """Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018, "A Framework for
    the Quantitative Evaluation of Disentangled Representations").

    One ``GradientBoostingClassifier()`` (sklearn defaults, ``random_state`` from ours) per factor
    predicts it from all codes; its ``feature_importances_`` fill the importance matrix and its
    accuracies are the informativeness. As disentanglement_lib's ``compute_dci``; the per-factor
    fits run in ``n_jobs`` parallel threads (default ``N_JOBS`` = -1: one per core; the factors
    with most classes start first), with values identical for any ``n_jobs``. These fits are
    almost all of the suite's exact-mode time, and each must be sklearn's own fit to keep the
    reference's values, so exact mode gains at most the number of cores. Without test arrays,
    20% of the points are held out.

    ``fast=True`` runs the same boosting algorithm on binned codes (``_utils.HistGradientBoosting``:
    Friedman-MSE depth-3 trees, Newton leaves, 100 stages at learning rate 0.1, impurity
    importances; thresholds from <= 256 bins per code; class trees grown together from one
    histogram per level). Where a code takes <= 256 distinct values the fitted model equals
    sklearn's up to float rounding and tie-breaking between equally good splits; on continuous
    codes the binned thresholds move the values slightly. Drift against exact (benchmarks/metrics.py
    and the tests): <= 0.03 on disentanglement/completeness, <= 0.04 on informativeness. Returns ``{"disentanglement", "completeness",
    "informativeness_train", "informativeness_test"}``.
    """
    codes, factors, codes_test, factors_test = check_codes_factors(codes, factors, codes_test, factors_test)
    x_tr, y_tr, x_te, y_te = train_test(codes, factors, codes_test, factors_test, random_state)
    seed = sklearn_seed(random_state)
    num_f = y_tr.shape[1]

    def fit(j: int) -> tuple[np.ndarray, float, float]:
        if fast:
            model: Any = HistGradientBoosting().fit(x_tr, y_tr[:, j])
            pred_tr = model.labels(model.train_decision_)  # kept from the fit, no second pass
        else:
            from sklearn.ensemble import GradientBoostingClassifier

            model = GradientBoostingClassifier(random_state=seed).fit(x_tr, y_tr[:, j])
            pred_tr = model.predict(x_tr)
        imp = np.abs(model.feature_importances_)
        acc_tr = float(np.mean(pred_tr == y_tr[:, j]))
        acc_te = float(np.mean(model.predict(x_te) == y_te[:, j]))
        return imp, acc_tr, acc_te

    # a fit costs one tree per class and stage (one in all if binary): start the dearest first
    classes = [len(np.unique(y_tr[:, j])) for j in range(num_f)]
    results = parallel_map(fit, range(num_f), n_jobs, costs=[c if c > 2 else 1 for c in classes])
    importance = np.stack([r[0] for r in results], axis=1)  # (k, F)
    out = {
        "informativeness_train": float(np.mean([r[1] for r in results])),
        "informativeness_test": float(np.mean([r[2] for r in results])),
    }
    out.update(dci_scores_from_importance(importance))
    return out


# ----------------------------------------------------------------- modularity and explicitness
def _modularity(mi: np.ndarray) -> float:
    """Ridgeway & Mozer's modularity from a [k, F] mutual information matrix (mean over codes)."""
    sq = np.square(mi)
    top = sq.max(axis=1)
    if mi.shape[1] < 2:  # one factor: every code is trivially modular (if informative at all)
        return float(np.mean(np.where(top > 0, 1.0, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - top) / (top * (mi.shape[1] - 1.0))
    score = np.where(top == 0.0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro ROC-AUC of one-vs-rest indicators of ``y`` against the class probabilities.

    The reference one-hot encodes ``y`` with MultiLabelBinarizer (its observed classes); here the
    columns are the classifier's classes, and classes absent from ``y`` (possible in a small
    test split, where the reference would fail on a shape mismatch) are left out.
    """
    from sklearn.metrics import roc_auc_score

    onehot = (y[:, None] == classes[None, :]).astype(np.int64)
    keep = (onehot.sum(axis=0) > 0) & (onehot.sum(axis=0) < len(y))
    if not np.any(keep):
        return float("nan")
    return float(roc_auc_score(onehot[:, keep], proba[:, keep], average="macro"))


def modularity_explicitness(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    n_jobs: int | None = N_JOBS,
    num_bins: int = NUM_BINS,
) -> dict[str, float]:
    """Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
    With the F-Statistic Loss", Sec. 3).

    Modularity: per code, 1 minus the share of its squared mutual information (20-bin
    discretisation, training data) not on its best factor, normalised by (F - 1); averaged over
    codes. Explicitness: per factor, a ``LogisticRegression()`` (sklearn defaults) on the codes
    standardised with training mean/std, scored by macro one-vs-rest ROC-AUC of its class
    probabilities; averaged over factors. As disentanglement_lib's
    ``compute_modularity_explicitness``, except that a constant code is standardised with std 1
    instead of producing NaN. The F regressions run in ``n_jobs`` parallel threads (default
    ``N_JOBS``: one per core; values identical for any ``n_jobs``). Without test arrays, 20% of
    the points are held out (modularity uses the training part). ``fast=True`` fits each regression on at most 2000 points (drift
    < 0.01 on the known-answer cases). Returns ``{"modularity_score", "explicitness_score_train",
    "explicitness_score_test"}``.
    """
    from sklearn.linear_model import LogisticRegression

    codes, factors, codes_test, factors_test = check_codes_factors(codes, factors, codes_test, factors_test)
    x_tr, y_tr, x_te, y_te = train_test(codes, factors, codes_test, factors_test, random_state)
    seed = sklearn_seed(random_state)
    mi = mutual_info_matrix(histogram_discretize(x_tr, num_bins), y_tr)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z_tr, z_te = (x_tr - mean) / std, (x_te - mean) / std

    def fit(j: int) -> tuple[float, float]:
        x, y = z_tr, y_tr[:, j]
        if fast:
            x, y = _subsample(x, y, FAST_MAX_TRAIN, seed)
        clf = LogisticRegression().fit(x, y)
        return (
            _macro_auc(y_tr[:, j], clf.predict_proba(z_tr), clf.classes_),
            _macro_auc(y_te[:, j], clf.predict_proba(z_te), clf.classes_),
        )

    classes = [len(np.unique(y_tr[:, j])) for j in range(y_tr.shape[1])]  # a fit's cost grows with them
    scores = _quiet_fit(lambda: parallel_map(fit, range(y_tr.shape[1]), n_jobs, costs=classes))
    return {
        "modularity_score": _modularity(mi),
        "explicitness_score_train": float(np.mean([s[0] for s in scores])),
        "explicitness_score_test": float(np.mean([s[1] for s in scores])),
    }


# ---------------------------------------------------------------------------------------- IRS
def irs(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    diff_quantile: float = 0.99,
    num_bins: int = NUM_BINS,
) -> dict[str, Any]:
    """Interventional Robustness Score (Suter et al. 2019, "Robustly Disentangled Causal
    Mechanisms: Validating Deep Representations for Interventional Robustness").

    Per (code, factor): the ``diff_quantile`` quantile of |z - E[z | factor value]|, averaged over
    the factor's values and divided by the code's largest deviation from its mean; a code's score
    is 1 minus its smallest such ratio, and ``IRS`` is the average over active (non-constant)
    codes weighted by their largest deviation. Factors are first binned with the 20-bin
    histogram discretiser, as the reference does. As disentanglement_lib's ``compute_irs``;
    training arrays only, nothing random, ``fast`` changes nothing.

    Returns ``IRS`` (= ``avg_score``), ``disentanglement_scores`` (array, one per active code),
    and ``num_active_dims``. Deliberate difference: the reference reports
    ``np.sum(active_mus)`` (the sum of the active codes' values, a bug) as ``num_active_dims``;
    we report the count of active codes.
    """
    codes, factors, _, _ = check_codes_factors(codes, factors, codes_test, factors_test)
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must be in [0, 1], got {diff_quantile}")
    groups = histogram_discretize(factors, num_bins)
    active = codes[:, codes.var(axis=0) > 0.0]
    num_active = int(active.shape[1])
    if num_active == 0:
        return {"IRS": 0.0, "disentanglement_scores": np.zeros(0), "avg_score": 0.0, "num_active_dims": 0}
    max_dev = np.max(np.abs(active - active.mean(axis=0)), axis=0)  # (k_active,)
    cum = np.zeros((num_active, groups.shape[1]))
    for j in range(groups.shape[1]):
        values = np.unique(groups[:, j])
        for v in values:
            z = active[groups[:, j] == v]
            cum[:, j] += np.quantile(np.abs(z - z.mean(axis=0)), q=diff_quantile, axis=0)
        cum[:, j] /= len(values)
    irs_matrix = 1.0 - cum / max_dev[:, None]
    per_code = irs_matrix.max(axis=1)
    avg = float(np.average(per_code, weights=max_dev)) if max_dev.sum() > 0 else float(np.mean(per_code))
    return {"IRS": avg, "disentanglement_scores": per_code, "avg_score": avg, "num_active_dims": num_active}


# --------------------------------------------------------------------- BetaVAE and FactorVAE
def _check_world(world: Any) -> int:
    for attr in ("num_factors", "sample_factors", "sample_observations_from_factors"):
        if not hasattr(world, attr):
            raise ValueError(
                f"world has no {attr!r}; pass an object with factor_sizes, num_factors, "
                "sample_factors(num, random_state) and sample_observations_from_factors(factors, random_state)"
            )
    return int(world.num_factors)


def _represent(
    world: Any,
    representation_function: Callable[[np.ndarray], np.ndarray],
    factors: np.ndarray,
    rng: Any,
    chunk: int,
) -> np.ndarray:
    """Render ``factors`` [n, F] and encode them, ``chunk`` rows at a time -> codes [n, k]."""
    out = []
    for s in range(0, factors.shape[0], chunk):
        obs = world.sample_observations_from_factors(factors[s : s + chunk], rng)
        z = np.asarray(representation_function(obs), dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != obs.shape[0]:
            raise ValueError(
                f"representation_function must return [num, k] for {obs.shape[0]} observations, got shape {z.shape}"
            )
        out.append(z)
    return check_codes(np.concatenate(out, axis=0), "representations")


def _points_per_chunk(batch_size: int, chunk_size: int) -> int:
    return max(1, chunk_size // max(1, batch_size))


def _beta_vae_points(
    world: Any,
    representation_function: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    num_points: int,
    rng: Any,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """BetaVAE training points: mean |z1 - z2| over ``batch_size`` pairs sharing one factor -> (x, label)."""
    num_f = int(world.num_factors)
    labels = randint(rng, num_f, num_points)
    feats = []
    step = _points_per_chunk(2 * batch_size, chunk_size)
    for s in range(0, num_points, step):
        lab = labels[s : s + step]
        p = len(lab)
        f1 = np.asarray(world.sample_factors(p * batch_size, rng)).reshape(p, batch_size, num_f)
        f2 = np.asarray(world.sample_factors(p * batch_size, rng)).reshape(p, batch_size, num_f).copy()
        rows = np.arange(p)
        f2[rows, :, lab] = f1[rows, :, lab]  # the chosen factor is shared within each pair
        both = np.concatenate([f1.reshape(-1, num_f), f2.reshape(-1, num_f)], axis=0)
        z = _represent(world, representation_function, both, rng, chunk_size)
        z1, z2 = z[: p * batch_size], z[p * batch_size :]
        feats.append(np.abs(z1 - z2).reshape(p, batch_size, -1).mean(axis=1))  # (p, k)
    return np.concatenate(feats, axis=0), labels


def beta_vae_score(
    world: WorldLike,
    representation_function: Callable[[np.ndarray], np.ndarray],
    random_state: RandomStateLike = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    fast: bool = False,
    chunk_size: int = 8192,
) -> dict[str, float]:
    """BetaVAE disentanglement score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual
    Concepts with a Constrained Variational Framework").

    Each point: pick a factor, draw ``batch_size`` pairs of factor vectors that agree on it,
    encode both, and take the mean absolute code difference; a ``LogisticRegression`` predicts
    the fixed factor from it. Returns ``{"train_accuracy", "eval_accuracy"}``. Defaults as
    disentanglement_lib's ``compute_beta_vae_sklearn`` with its study config (64 / 10000 / 5000).
    The pairs are sampled and encoded in large vectorised chunks (``chunk_size`` observations per
    ``representation_function`` call) instead of 64 at a time: same distribution, different
    random stream. ``fast=True`` uses num_train=2000, num_eval=1000 (drift = sampling noise,
    about 0.01 near perfect scores).
    """
    _check_world(world)
    if fast:
        num_train, num_eval = min(num_train, 2000), min(num_eval, 1000)
    rng = as_random_state(random_state)
    from sklearn.linear_model import LogisticRegression

    x_tr, y_tr = _beta_vae_points(world, representation_function, batch_size, num_train, rng, chunk_size)
    model = _quiet_fit(lambda: LogisticRegression(random_state=sklearn_seed(rng)).fit(x_tr, y_tr))
    train_acc = float(np.mean(model.predict(x_tr) == y_tr))
    x_ev, y_ev = _beta_vae_points(world, representation_function, batch_size, num_eval, rng, chunk_size)
    eval_acc = float(np.mean(model.predict(x_ev) == y_ev))
    return {"train_accuracy": train_acc, "eval_accuracy": eval_acc}


def _factor_vae_votes(
    world: Any,
    representation_function: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    num_points: int,
    rng: Any,
    global_var: np.ndarray,
    active: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    """Votes [F, k]: for each point, (fixed factor, code of least normalised variance) counted."""
    num_f = int(world.num_factors)
    votes = np.zeros((num_f, global_var.shape[0]), dtype=np.int64)
    labels = randint(rng, num_f, num_points)
    active_idx = np.flatnonzero(active)
    step = _points_per_chunk(batch_size, chunk_size)
    for s in range(0, num_points, step):
        lab = labels[s : s + step]
        p = len(lab)
        f = np.asarray(world.sample_factors(p * batch_size, rng)).reshape(p, batch_size, num_f).copy()
        rows = np.arange(p)
        f[rows, :, lab] = f[rows, 0, lab][:, None]  # fix the chosen factor across the batch
        z = _represent(world, representation_function, f.reshape(-1, num_f), rng, chunk_size)
        local = z.reshape(p, batch_size, -1).var(axis=1, ddof=1)  # (p, k)
        argmin = active_idx[np.argmin(local[:, active] / global_var[active], axis=1)]
        np.add.at(votes, (lab, argmin), 1)
    return votes


def factor_vae_score(
    world: WorldLike,
    representation_function: Callable[[np.ndarray], np.ndarray],
    random_state: RandomStateLike = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    fast: bool = False,
    chunk_size: int = 8192,
) -> dict[str, float]:
    """FactorVAE disentanglement score (Kim & Mnih 2018, "Disentangling by Factorising", Sec. 4).

    Codes are scaled by their global std (from ``num_variance_estimate`` samples); codes whose
    std is below ``prune_threshold`` are pruned as collapsed. Each point fixes one factor over a
    batch of ``batch_size`` and votes for the code with the least normalised variance; a
    majority-vote classifier maps codes to factors. Returns ``{"train_accuracy",
    "eval_accuracy", "num_active_dims"}``. Defaults as disentanglement_lib's
    ``compute_factor_vae`` with its study config (64 / 10000 / 5000 / 10000,
    ``prune_dims.threshold = 0.05``, an absolute threshold on the std, not relative to the max).
    Deliberate differences: ``num_active_dims`` is the number of kept codes (the reference
    returns ``len`` of its boolean mask, i.e. all codes), and the global variance uses
    ``sample_factors`` + ``sample_observations_from_factors`` (same distribution as the
    reference's ``sample_observations``). Sampling is vectorised as in ``beta_vae_score``.
    ``fast=True`` uses num_train=2000, num_eval=1000, num_variance_estimate=5000.
    """
    _check_world(world)
    if fast:
        num_train, num_eval = min(num_train, 2000), min(num_eval, 1000)
        num_variance_estimate = min(num_variance_estimate, 5000)
    rng = as_random_state(random_state)
    f = np.asarray(world.sample_factors(num_variance_estimate, rng))
    z = _represent(world, representation_function, f, rng, chunk_size)
    global_var = z.var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _factor_vae_votes(
        world, representation_function, batch_size, num_train, rng, global_var, active, chunk_size
    )
    classifier = np.argmax(train_votes, axis=0)  # (k,) factor predicted for each code
    cols = np.arange(train_votes.shape[1])
    train_acc = float(train_votes[classifier, cols].sum() / train_votes.sum())
    eval_votes = _factor_vae_votes(
        world, representation_function, batch_size, num_eval, rng, global_var, active, chunk_size
    )
    eval_acc = float(eval_votes[classifier, cols].sum() / eval_votes.sum())
    return {"train_accuracy": train_acc, "eval_accuracy": eval_acc, "num_active_dims": int(active.sum())}


def linear_decodability(
    codes: Any,
    factors: Any,
    names: Sequence[str] | None = None,
    seed: int = 0,
    max_iter: int = 1000,
    train_fraction: float = 0.75,
) -> dict[str, float | None]:
    """Per factor, the held-out accuracy of a multinomial logistic regression reading it from
    ``codes`` [n, d]: fit on the first ``train_fraction`` of the rows, scored on the rest (rows in
    the given order, so the caller owns the split). How much of a factor a linear readout finds,
    whichever latents hold it; the codes are used as given (standardise them first where scales
    differ: the fit is L2-regularised). ``None`` for a factor with one value in the training rows."""
    from sklearn.linear_model import LogisticRegression

    x, y = np.asarray(codes), np.asarray(factors)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(
            f"linear_decodability needs codes [n, d] and factors [n, k] with the same n, got {x.shape} and {y.shape}"
        )
    names = [f"factor_{j}" for j in range(y.shape[1])] if names is None else list(names)
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} names for {y.shape[1]} factors; pass one name per factor column")
    n = int(len(x) * train_fraction)
    if not 0 < n < len(x):
        raise ValueError(
            f"train_fraction={train_fraction} of {len(x)} rows leaves no training or no held-out rows; pass more rows"
        )
    out: dict[str, float | None] = {}
    for j, name in enumerate(names):
        if len(np.unique(y[:n, j])) < 2:
            out[name] = None
            continue
        clf = _quiet_fit(lambda j=j: LogisticRegression(max_iter=max_iter, random_state=seed).fit(x[:n], y[:n, j]))
        out[name] = float(clf.score(x[n:], y[n:, j]))
    return out


def _as_labels(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{what} must be a non-empty 1-D array of labels, got shape {arr.shape}; pass one label per point"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"{what} must hold integer labels, got dtype {arr.dtype}; pass class or code indices")
    if arr.min() < 0:
        raise ValueError(f"{what} must be ≥ 0, got {arr.min()}; relabel the values as 0, 1, 2, …")
    return arr.astype(np.int64)


def cluster_accuracy(codes: Any, labels: Any, num_codes: int | None = None) -> dict[str, Any]:
    """How often a discrete code names the class, under the best one-to-one map of code values to classes.

    The score of InfoGAN's categorical code on labelled digits (Chen et al. 2016 report 5 % error on
    MNIST): a code is only defined up to a relabelling of its values, so the Hungarian algorithm picks
    the relabelling with the most matches. A code with more values than there are classes leaves
    the unmatched values wrong. ``num_codes`` is the code's number of values (default: the largest
    seen + 1), so that values no point took still get a class in the map. Returns
    ``{"cluster_accuracy": float, "assignment": {code: class}}``.
    """
    codes, labels = _as_labels(codes, "codes"), _as_labels(labels, "labels")
    if codes.shape != labels.shape:
        raise ValueError(
            f"codes and labels must have one entry per point each, got {codes.size} and {labels.size}; "
            "pass the labels of exactly the points that were encoded"
        )
    if num_codes is None:
        num_codes = int(codes.max()) + 1
    elif codes.max() >= num_codes:
        raise ValueError(f"codes go up to {codes.max()} but num_codes is {num_codes}; pass the code's number of values")
    counts = np.zeros((num_codes, labels.max() + 1), dtype=np.int64)
    np.add.at(counts, (codes, labels), 1)
    rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
    return {
        "cluster_accuracy": float(counts[rows, cols].sum() / codes.size),
        "assignment": {int(r): int(c) for r, c in zip(rows, cols, strict=True)},
    }
