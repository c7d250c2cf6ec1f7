"""Shared helpers for the metrics: input checks, random sources, discretisation, mutual information.

The discretiser and the mutual-information estimator reproduce disentanglement_lib's
``utils._histogram_discretize`` and ``sklearn.metrics.mutual_info_score`` value for value, but
compute every (code, factor) pair at once from one sparse one-hot product instead of one
sklearn call per pair.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

RandomStateLike = int | np.random.RandomState | np.random.Generator | None

T = TypeVar("T")

NUM_BINS = 20  # disentanglement_lib: discretizer.num_bins = 20 in every metric config
TEST_FRACTION = 0.2  # held-out share when no test arrays are given

__all__ = [
    "NUM_BINS",
    "TEST_FRACTION",
    "RandomStateLike",
    "as_random_state",
    "check_codes",
    "check_codes_factors",
    "discrete_entropy",
    "histogram_discretize",
    "mutual_info_matrix",
    "N_JOBS",
    "default_n_jobs",
    "parallel_map",
    "randint",
    "sklearn_seed",
    "train_test",
]


# ------------------------------------------------------------------------------------ checks
def check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as a finite float64 [N, k] array or raise a ValueError saying how to fix it."""
    if hasattr(codes, "detach"):  # torch tensors: accept them, metrics work on numpy
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}; pass posterior means as floats")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [num_points, num_codes], got shape {arr.shape}; "
            "reshape with codes.reshape(len(codes), -1) (or codes[:, None] for a single code)"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 points and 1 code dimension, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]}); "
            "drop those points or fix the encoder before scoring"
        )
    return arr


def check_factors(factors: Any, name: str = "factors") -> np.ndarray:
    """Return ``factors`` as an int64 [N, F] array of discrete labels or raise a ValueError."""
    if hasattr(factors, "detach"):
        factors = factors.detach().cpu().numpy()
    arr = np.asarray(factors)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [num_points, num_factors], got shape {arr.shape}; "
            "use factors[:, None] for a single factor"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one factor column, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return arr.astype(np.int64, copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; factors must be discrete integer labels")
        if np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise ValueError(
            f"{name} must be discrete integer labels, got non-integral values (e.g. {arr[arr != np.round(arr)][0]!r}); "
            "discretise continuous factors first, e.g. np.digitize(f, np.histogram_bin_edges(f, 20)[1:-1])"
        )
    raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")


def check_codes_factors(
    codes: Any,
    factors: Any,
    codes_test: Any = None,
    factors_test: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate the train (and optional test) arrays of a supervised metric; return clean copies.

    Each factor must take at least two values in the training data: a constant factor has zero
    entropy (MIG divides by it) and no classifier can be trained on it.
    """
    codes = check_codes(codes, "codes")
    factors = check_factors(factors, "factors")
    if codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"codes and factors must have the same number of points, got {codes.shape[0]} and "
            f"{factors.shape[0]}; pass the factors of exactly the points that were encoded, row for row"
        )
    for j in range(factors.shape[1]):
        if np.all(factors[:, j] == factors[0, j]):
            raise ValueError(
                f"factor {j} is constant ({factors[0, j]}) in the training data; it carries no information, "
                f"drop that column (factors[:, keep]) or sample more varied data"
            )
    if (codes_test is None) != (factors_test is None):
        raise ValueError("pass both codes_test and factors_test, or neither (then a split of the data is used)")
    if codes_test is not None:
        codes_test = check_codes(codes_test, "codes_test")
        factors_test = check_factors(factors_test, "factors_test")
        if codes_test.shape[0] != factors_test.shape[0]:
            raise ValueError(
                f"codes_test and factors_test must have the same number of points, got "
                f"{codes_test.shape[0]} and {factors_test.shape[0]}"
            )
        if codes_test.shape[1] != codes.shape[1]:
            raise ValueError(
                f"codes_test has {codes_test.shape[1]} code dimensions but codes has {codes.shape[1]}; "
                "encode both sets with the same model"
            )
        if factors_test.shape[1] != factors.shape[1]:
            raise ValueError(
                f"factors_test has {factors_test.shape[1]} factors but factors has {factors.shape[1]}; "
                "use the same factor columns for both sets"
            )
    return codes, factors, codes_test, factors_test


# ------------------------------------------------------------------------------ random sources
def as_random_state(random_state: RandomStateLike) -> np.random.RandomState | np.random.Generator:
    """Return a numpy random source: ints seed a ``RandomState`` (as disentanglement_lib uses); objects pass through."""
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.RandomState(None if random_state is None else int(random_state))
    raise TypeError(
        f"random_state must be an int, None, np.random.RandomState or np.random.Generator, got {type(random_state).__name__}"
    )


def randint(rng: np.random.RandomState | np.random.Generator, high: int, size: int | tuple[int, ...]) -> np.ndarray:
    """Uniform int64 draws in ``[0, high)`` from either kind of numpy random source."""
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, high, size=size, dtype=np.int64)
    return rng.randint(0, high, size=size).astype(np.int64, copy=False)


def sklearn_seed(random_state: RandomStateLike) -> int | None:
    """The ``random_state`` to hand to sklearn estimators: an int passes through, a random source draws one.

    Passing the caller's int straight through makes exact mode reproducible by anyone who builds
    the same sklearn estimator with the same ``random_state``.
    """
    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(randint(as_random_state(random_state), 2**31 - 1, 1)[0])


def train_test(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None,
    factors_test: np.ndarray | None,
    random_state: RandomStateLike,
    test_fraction: float = TEST_FRACTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train codes, train factors, test codes, test factors).

    disentanglement_lib always draws a fresh test sample from the world; with arrays only, we
    hold out ``test_fraction`` of the given points, chosen by a permutation drawn from
    ``np.random.RandomState(random_state)`` (or from the given random source).
    """
    if codes_test is not None and factors_test is not None:
        return codes, factors, codes_test, factors_test
    n = codes.shape[0]
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 2:
        raise ValueError(f"need more points to split off a test set, got {n}; pass codes_test/factors_test")
    rng = as_random_state(random_state)
    perm = rng.permutation(n)
    tr, te = perm[n_test:], perm[:n_test]
    for j in range(factors.shape[1]):
        if np.all(factors[tr, j] == factors[tr[0], j]):
            raise ValueError(
                f"factor {j} is constant in the training split; pass more points or explicit codes_test/factors_test"
            )
    return codes[tr], factors[tr], codes[te], factors[te]


# ----------------------------------------------------------------------------- discretisation
def histogram_discretize(x: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin each column of ``x`` [N, d] into ``num_bins`` equal-width bins; labels are 1..num_bins.

    Same as disentanglement_lib's ``_histogram_discretize`` (np.histogram edges, np.digitize on
    all but the last edge), on [N, d] instead of its transposed layout.
    """
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.int64)
    for i in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, i], num_bins)
        out[:, i] = np.digitize(x[:, i], edges[:-1])
    return out


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each column of an int [N, d] array to 0..L_j-1; return the labels and max L_j."""
    out = np.empty(labels.shape, dtype=np.int64)
    width = 1
    for j in range(labels.shape[1]):
        _, inv = np.unique(labels[:, j], return_inverse=True)
        out[:, j] = inv.reshape(-1)
        width = max(width, int(out[:, j].max()) + 1)
    return out, width


def _onehot(labels: np.ndarray, width: int) -> sp.csr_matrix:
    """Sparse one-hot [N, d * width] of relabelled [N, d] labels (column j * width + label)."""
    n, d = labels.shape
    cols = (labels + np.arange(d)[None, :] * width).ravel()
    rows = np.repeat(np.arange(n), d)
    return sp.csr_matrix((np.ones(n * d), (rows, cols)), shape=(n, d * width))


def _mi_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Mutual information (nats) of each contingency table in ``counts`` [a, A, b, B] -> [a, b].

    Term by term the formula of sklearn.metrics.mutual_info_score (terms below machine epsilon
    set to zero, a variable with one observed label gives 0, result clipped at 0).
    """
    pi = counts.sum(axis=3)  # (a, A, b) row marginals
    pj = counts.sum(axis=1)  # (a, b, B) column marginals
    nz = counts > 0
    c = np.where(nz, counts, 1.0)
    outer = pi[:, :, :, None] * pj[:, None, :, :]  # (a, A, b, B), exact in float64 for n < 2**26
    outer = np.where(nz, outer, 1.0)
    p = c / n
    log_outer = -np.log(outer) + np.log(float(n)) + np.log(float(n))
    terms = p * (np.log(c) - np.log(float(n))) + p * log_outer
    terms = np.where(nz & (np.abs(terms) >= np.finfo(np.float64).eps), terms, 0.0)
    mi = terms.sum(axis=(1, 3))
    single = ((pi > 0).sum(axis=1) <= 1) | ((pj > 0).sum(axis=2) <= 1)  # (a, b)
    mi[single] = 0.0
    return np.clip(mi, 0.0, None)


def mutual_info_matrix(a: np.ndarray, b: np.ndarray, max_cells: int = 1 << 22) -> np.ndarray:
    """Discrete mutual information between every column of ``a`` [N, da] and of ``b`` [N, db] -> [da, db].

    Equal (to float rounding) to ``sklearn.metrics.mutual_info_score(b[:, j], a[:, i])`` for every
    pair, as disentanglement_lib's ``discrete_mutual_info`` computes it one pair at a time. All
    contingency tables come from one sparse product onehot(a).T @ onehot(b), done in blocks of
    columns of ``a`` so that at most ``max_cells`` table cells exist at once.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b need the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    n = a.shape[0]
    la, wa = _relabel(np.asarray(a))
    lb, wb = _relabel(np.asarray(b))
    ob = _onehot(lb, wb)
    da, db = la.shape[1], lb.shape[1]
    out = np.empty((da, db))
    step = max(1, max_cells // (wa * db * wb))
    for s in range(0, da, step):
        e = min(da, s + step)
        oa = _onehot(la[:, s:e], wa)
        counts = np.asarray((oa.T @ ob).todense()).reshape(e - s, wa, db, wb)  # (a, A, b, B)
        out[s:e] = _mi_from_counts(counts, n)
    return out


def discrete_entropy(y: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of a discrete [N, F] array; equals mutual_info_score(y_j, y_j)."""
    y = np.asarray(y)
    h = np.zeros(y.shape[1])
    n = y.shape[0]
    for j in range(y.shape[1]):
        _, counts = np.unique(y[:, j], return_counts=True)
        if counts.size > 1:
            p = counts / n
            h[j] = float(-(p * np.log(p)).sum())
    return h


# ------------------------------------------------------------------------------------ parallel
N_JOBS = -1  # default workers for the metrics' independent fits: -1 = one per core (never more than fits)


def default_n_jobs(n_tasks: int, n_jobs: int | None = N_JOBS) -> int:
    """Workers to use: ``n_jobs`` (None or negative = one per core), never more than ``n_tasks``."""
    if n_jobs is not None and not isinstance(n_jobs, (int, np.integer)):
        raise TypeError(f"n_jobs must be an int (or None / -1 for one worker per core), got {type(n_jobs).__name__}")
    if n_jobs == 0:
        raise ValueError("n_jobs must be >= 1, or -1 / None for one worker per core; got 0")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_jobs is None or n_jobs < 0:
        n_jobs = cores
    return max(1, min(int(n_jobs), n_tasks))


def parallel_map(
    fn: Callable[[T], Any],
    items: Iterable[T],
    n_jobs: int | None = N_JOBS,
    costs: Sequence[float] | None = None,
) -> list[Any]:
    """``[fn(x) for x in items]`` on a thread pool (sklearn's tree and linear solvers release the GIL).

    Threads rather than processes: no pickling of the data, no worker start-up, and sklearn's
    estimators stay bit-identical to a serial run. ``costs`` (one estimate per item) starts the
    dearest items first, so that with fewer workers than items the last to finish is a cheap
    one (longest-processing-time-first scheduling); results keep the order of ``items`` whatever
    the number of workers or the order of the calls. Warnings raised in workers are silenced the
    same way the caller silenced them.
    """
    items = list(items)
    if costs is not None and len(costs) != len(items):
        raise ValueError(f"costs needs one entry per item, got {len(costs)} for {len(items)} items")
    order = list(range(len(items))) if costs is None else sorted(range(len(items)), key=lambda i: -costs[i])
    jobs = default_n_jobs(len(items), n_jobs)
    if jobs == 1:
        done = [fn(items[i]) for i in order]
    else:
        from joblib import Parallel, delayed

        with warnings.catch_warnings():
            done = Parallel(n_jobs=jobs, backend="threading", batch_size=1)(delayed(fn)(items[i]) for i in order)
    out: list[Any] = [None] * len(items)
    for i, result in zip(order, done, strict=True):
        out[i] = result
    return out


def as_list(x: str | Sequence[str] | None) -> list[str] | None:
    """Normalise a metric-name argument to a list (None stays None)."""
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


# ------------------------------------------------- histogram gradient boosting (fast DCI)
MAX_BINS = 256
_EPS = np.finfo(np.float64).eps


def bin_edges(x: np.ndarray, max_bins: int = MAX_BINS) -> list[np.ndarray]:
    """Per-column split thresholds: midpoints between distinct values, or between quantiles if too many.

    With at most ``max_bins`` distinct values per column the thresholds are exactly those sklearn's
    tree would consider, so binned splits partition the data the same way.
    """
    edges = []
    for i in range(x.shape[1]):
        vals = np.unique(x[:, i])
        if len(vals) > max_bins:
            vals = np.unique(np.quantile(x[:, i], np.linspace(0, 1, max_bins)))
        edges.append((vals[:-1] + vals[1:]) / 2.0)
    return edges


def apply_bins(x: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Bin index of every entry: the number of thresholds strictly below it (so bin <= t iff x <= edges[t])."""
    out = np.empty(x.shape, dtype=np.int64)
    for i, e in enumerate(edges):
        out[:, i] = np.searchsorted(e, x[:, i], side="left")
    return out


class HistGradientBoosting:
    """sklearn's GradientBoostingClassifier() algorithm on binned features, vectorised over classes.

    Same model as the default GradientBoostingClassifier: prior initialisation, 100 stages of
    one depth-3 regression tree per class (one in total if binary) fit to the negative gradient
    with the Friedman-MSE split criterion, Newton-step leaf values, learning rate 0.1, and the
    same impurity-based ``feature_importances_``. What differs: candidate thresholds are bin
    edges (identical to sklearn's when a code has <= 256 distinct values, quantile-based
    otherwise), ties between equally good splits go to the first feature instead of a random one,
    and all class trees of a stage are grown level by level with one histogram (np.bincount) per
    level. After ``fit``, ``train_decision_`` holds the raw scores of the training points (what
    ``decision_function`` would return for them), so training accuracy needs no second pass. Used
    by ``dci(fast=True)``.
    """

    def __init__(
        self, n_estimators: int = 100, learning_rate: float = 0.1, max_depth: int = 3, max_bins: int = MAX_BINS
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.max_bins = max_bins

    def fit(self, x: np.ndarray, y: np.ndarray) -> HistGradientBoosting:
        self.classes_, yi = np.unique(y, return_inverse=True)
        num_classes = len(self.classes_)
        if num_classes < 2:
            raise ValueError("need at least two classes to fit a classifier")
        n, k = x.shape
        self.edges_ = bin_edges(x, self.max_bins)
        xb = apply_bins(x, self.edges_)  # (n, k)
        xb_flat, row_base = xb.ravel(), np.arange(n)[:, None] * k  # xb[i, f] == xb_flat[row_base[i] + f]
        nb = max(len(e) for e in self.edges_) + 1
        self._nb = nb
        prior = np.clip(np.bincount(yi, minlength=num_classes) / n, _EPS, 1 - _EPS)
        binary = num_classes == 2
        n_trees = 1 if binary else num_classes
        onehot = (yi[:, None] == np.arange(num_classes)[None, :]).astype(np.float64)
        target = onehot[:, 1:] if binary else onehot  # (n, T)
        self._init = np.log(prior[1] / prior[0])[None] if binary else np.log(prior) - np.log(prior).mean()
        raw = np.repeat(self._init[None, :], n, axis=0)  # (n, T)
        heap = 2 ** (self.max_depth + 1)  # node ids 1.. in heap order; children of j are 2j, 2j+1
        self._feat = np.zeros((self.n_estimators, n_trees, heap), dtype=np.int64)
        self._thr = np.zeros((self.n_estimators, n_trees, heap), dtype=np.int64)
        self._split = np.zeros((self.n_estimators, n_trees, heap), dtype=bool)
        self._value = np.zeros((self.n_estimators, n_trees, heap))
        importance = np.zeros(k)
        t_idx = np.arange(n_trees)
        # one-hot of the bins, transposed: histograms of any per-sample weights are one product
        cols = (xb + (np.arange(k) * nb)[None, :]).ravel()
        onehot_t = sp.csr_matrix((np.ones(n * k), (cols, np.repeat(np.arange(n), k))), shape=(k * nb, n))  # (k * nb, n)
        ones = np.ones((n, 1))
        for m in range(self.n_estimators):
            if binary:
                prob = 1.0 / (1.0 + np.exp(-raw))
            else:
                e = np.exp(raw - raw.max(axis=1, keepdims=True))
                prob = e / e.sum(axis=1, keepdims=True)
            resid = target - prob  # negative gradient, (n, T)
            node = np.ones((n, n_trees), dtype=np.int64)  # heap id of each sample's node in each tree
            live = np.ones((n, n_trees), dtype=bool)  # sample sits in a node that may still split
            parent_split = np.ones((n_trees, 1), dtype=bool)
            tree_imp = np.zeros((n_trees, k))
            hs = hc = None
            for depth in range(self.max_depth):
                width = 2**depth
                local = node - width  # position within this level (meaningful where live)
                # histograms of residual sums and counts per (tree, node, feature, bin)
                if depth == 0:
                    h = onehot_t @ np.concatenate([resid, ones], axis=1)  # (k * nb, T + 1)
                    hs = h[:, :n_trees].T.reshape(n_trees, 1, k, nb)
                    hc = np.broadcast_to(h[:, n_trees].reshape(1, 1, k, nb), hs.shape)
                else:
                    half = width // 2  # left children only; right = parent - left
                    is_left = live & (local % 2 == 0)
                    colk = t_idx[None, :] * half + local // 2  # (n, T) column of the left child
                    w = np.zeros((n, 2 * n_trees * half))
                    r_i, t_i = np.nonzero(is_left)
                    w[r_i, colk[r_i, t_i]] = resid[r_i, t_i]
                    w[r_i, n_trees * half + colk[r_i, t_i]] = 1.0
                    h = onehot_t @ w  # (k * nb, 2 * T * half)
                    ls = h[:, : n_trees * half].T.reshape(n_trees, half, k, nb)
                    lc = h[:, n_trees * half :].T.reshape(n_trees, half, k, nb)
                    hs = np.stack([ls, hs - ls], axis=2).reshape(n_trees, width, k, nb)
                    hc = np.stack([lc, hc - lc], axis=2).reshape(n_trees, width, k, nb)
                sl, cl = np.cumsum(hs, axis=3)[..., :-1], np.cumsum(hc, axis=3)[..., :-1]  # left of threshold b
                s_tot, c_tot = hs[:, :, 0].sum(axis=2), hc[:, :, 0].sum(axis=2)  # (T, width)
                cl = np.rint(cl)  # counts are exact integers; remove float noise of the subtraction
                c_tot = np.rint(c_tot)
                sr, cr = s_tot[..., None, None] - sl, c_tot[..., None, None] - cl
                valid = (cl > 0) & (cr > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    proxy = np.where(valid, (cr * sl - cl * sr) ** 2 / (cl * cr), -np.inf)
                flat = proxy.reshape(n_trees * width, -1)
                pick = flat.argmax(axis=1)  # first best (feature, threshold) of each (tree, node)
                rows = np.arange(n_trees * width)
                has_split = np.isfinite(flat[rows, pick]).reshape(n_trees, width)
                best = pick.reshape(n_trees, width)
                # impurity of each node: a node whose residual is constant stays a leaf, as in sklearn
                key = (t_idx[None, :] * width + local)[live]
                sq = np.bincount(key, weights=(resid**2)[live], minlength=n_trees * width).reshape(n_trees, width)
                with np.errstate(divide="ignore", invalid="ignore"):
                    var = np.where(c_tot > 0, sq / c_tot - (s_tot / np.maximum(c_tot, 1)) ** 2, 0.0)
                parents = np.repeat(parent_split, 2, axis=1) if depth > 0 else parent_split
                do = parents & has_split & (var > _EPS) & (c_tot >= 2)
                bf, bt = best // (nb - 1), best % (nb - 1)
                ids = width + np.arange(width)
                self._feat[m][:, ids] = bf
                self._thr[m][:, ids] = bt
                self._split[m][:, ids] = do
                # impurity decrease of the chosen splits, for the importances
                s_l = sl.reshape(n_trees * width, -1)[rows, pick].reshape(n_trees, width)
                c_l = cl.reshape(n_trees * width, -1)[rows, pick].reshape(n_trees, width)
                with np.errstate(divide="ignore", invalid="ignore"):
                    dec = (s_l**2 / c_l + (s_tot - s_l) ** 2 / (c_tot - c_l) - s_tot**2 / c_tot) / n
                dec = np.where(do, dec, 0.0)
                np.add.at(tree_imp, (np.repeat(t_idx, width), bf.ravel()), dec.ravel())
                # route the samples of split nodes to their children (flat gathers: one take each)
                at = t_idx[None, :] * width + np.where(live, local, 0)  # (n, T) node of each sample
                split_here = live & do.ravel().take(at)
                go_right = xb_flat.take(row_base + bf.ravel().take(at)) > bt.ravel().take(at)
                node = np.where(split_here, 2 * node + go_right, node)
                live = split_here  # samples in nodes that stayed leaves keep their id
                parent_split = do
            # leaf values: Newton step, as sklearn's _update_terminal_regions
            size = n_trees * heap
            lk = (t_idx[None, :] * heap + node).ravel()
            num = np.bincount(lk, weights=resid.ravel(), minlength=size).reshape(n_trees, heap)
            den = np.bincount(lk, weights=(prob * (1.0 - prob)).ravel(), minlength=size).reshape(n_trees, heap)
            if not binary:
                num = num * (num_classes - 1) / num_classes
            with np.errstate(divide="ignore", invalid="ignore"):
                val = np.where(np.abs(den) < 1e-150, 0.0, num / den)
            self._value[m] = val
            raw += self.learning_rate * val[t_idx[None, :], node]
            importance += tree_imp.sum(axis=0)
        total = importance.sum()
        self.feature_importances_ = importance / total if total > 0 else importance
        self.train_decision_ = raw  # equals decision_function(x): same leaves, same sums in the same order
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (n, T) of new points."""
        xb = apply_bins(x, self.edges_)
        n, k = xb.shape
        n_trees, heap = self._feat.shape[1:]
        xb_flat, row_base = xb.ravel(), np.arange(n)[:, None] * k
        raw = np.repeat(self._init[None, :], n, axis=0)
        for m in range(self.n_estimators):
            split, feat, thr = self._split[m].ravel(), self._feat[m].ravel(), self._thr[m].ravel()
            base = np.arange(n_trees)[None, :] * heap  # flat offset of each tree's heap
            at = np.broadcast_to(base + 1, (n, n_trees))  # (n, T) flat id of each sample's node
            for _ in range(self.max_depth):
                right = xb_flat.take(row_base + feat.take(at)) > thr.take(at)
                at = np.where(split.take(at), 2 * at - base + right, at)  # child 2j (+1) of heap node j
            raw += self.learning_rate * self._value[m].ravel().take(at)
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.labels(self.decision_function(x))

    def labels(self, raw: np.ndarray) -> np.ndarray:
        """Class labels of raw scores (n, T), e.g. of ``train_decision_`` (no second pass over the trees)."""
        if raw.shape[1] == 1:
            return self.classes_[(raw[:, 0] > 0).astype(np.int64)]
        return self.classes_[np.argmax(raw, axis=1)]
