"""Independent subspace analysis: an unsupervised start for categorical heads.

When an activation is (close to) a sum of one vector per factor value — a plan's tags, a
template's slots — it lies in the affine span of the factors' value vectors, and the factors'
subspaces are statistically independent. Linear ICA separates that span into components that
each lie (mostly) inside one factor's subspace; grouping the components by their mutual
dependence recovers the subspaces (Cardoso 1998; Theis 2006), and the points inside one subspace
cluster at the factor's values. The codes this gives start a categorical head at a factorised
solution, where gradient training from a random start often settles on codes that spread one
factor over the spare values of several latents (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["IndependentSubspaces", "independent_subspaces", "isa_codes"]


@dataclass
class IndependentSubspaces:
    """``sources(x)`` are the ICA components of ``x`` ``[N, r]``; ``groups[i]`` is the subspace
    (0..n_groups − 1) component i belongs to."""

    mean: np.ndarray  # [D]
    unmixing: np.ndarray  # [r, D]: sources = (x − mean) @ unmixing.T
    groups: np.ndarray  # [r]

    def sources(self, x: Tensor | np.ndarray) -> np.ndarray:
        x = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
        return (x - self.mean) @ self.unmixing.T

    def subspace(self, x: Tensor | np.ndarray, g: int) -> np.ndarray:
        return self.sources(x)[:, self.groups == g]


def _rank(eigenvalues: np.ndarray, n_groups: int) -> int:
    """The number of components to keep: at the largest ratio gap between consecutive variances,
    after at least ``n_groups`` (signal dimensions stand well above the noise floor)."""
    lam = np.clip(eigenvalues, 1e-12 * max(eigenvalues[0], 1e-30), None)
    top = min(len(lam) - 1, 8 * n_groups)
    if top <= n_groups:
        return len(lam)
    ratios = lam[n_groups - 1 : top] / lam[n_groups : top + 1]
    return int(n_groups + np.argmax(ratios))


def _discrete_mi(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def independent_subspaces(
    x: Tensor | np.ndarray,
    n_groups: int,
    n_components: int | None = None,
    max_samples: int = 10_000,
    bins: int = 12,
    seed: int = 0,
    fun: str = "cube",
) -> IndependentSubspaces:
    """ICA on ``x`` ``[N, D]`` (PCA-whitened to ``n_components``, by default at the largest gap of
    the spectrum), then the components grouped into ``n_groups`` subspaces by average-linkage
    clustering of their pairwise mutual information (``bins`` quantile bins each)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.decomposition import PCA, FastICA

    x = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {x.shape}")
    if n_groups < 1:
        raise ValueError(f"n_groups must be ≥ 1, got {n_groups}")
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(x) < 10 * n_groups:
        raise ValueError(f"{len(x)} vectors are too few to find {n_groups} subspaces; pass ≥ {10 * n_groups}")
    mean = x.mean(0)
    if n_components is None:
        spectrum = PCA(n_components=min(x.shape), random_state=seed).fit(x - mean).explained_variance_
        n_components = _rank(spectrum, n_groups)
    if not n_groups <= n_components <= min(x.shape):
        raise ValueError(f"n_components must lie in {n_groups}..{min(x.shape)} (≥ n_groups), got {n_components}")
    ica = FastICA(
        n_components=n_components, whiten="unit-variance", fun=fun, random_state=seed, max_iter=1000, tol=1e-4
    )
    s = ica.fit_transform(x - mean)
    unmixing = ica.components_  # sources = (x − ica.mean_) @ components_.T, ica.mean_ ≈ 0 here
    mean = mean + ica.mean_
    edges = [np.quantile(s[:, i], np.linspace(0, 1, bins + 1)[1:-1]) for i in range(n_components)]
    q = np.stack([np.searchsorted(e, s[:, i]) for i, e in enumerate(edges)], 1)
    mi = np.zeros((n_components, n_components))
    for i in range(n_components):
        for j in range(i + 1, n_components):
            mi[i, j] = mi[j, i] = _discrete_mi(q[:, i], q[:, j])
    if n_groups == 1:
        groups = np.zeros(n_components, dtype=int)
    elif n_groups == n_components:
        groups = np.arange(n_components)
    else:
        distance = 1.0 - mi / max(mi.max(), 1e-12)
        np.fill_diagonal(distance, 0.0)
        groups = AgglomerativeClustering(n_clusters=n_groups, metric="precomputed", linkage="average").fit_predict(
            distance
        )
    return IndependentSubspaces(mean, unmixing, np.asarray(groups))


def isa_codes(
    x: Tensor | np.ndarray,
    sizes: Sequence[int],
    n_components: int | None = None,
    tolerance: float = 0.05,
    seed: int = 0,
) -> tuple[Tensor, IndependentSubspaces]:
    """Hard categorical codes ``[N, len(sizes)]`` for ``x``: one latent per independent subspace,
    its value the k-means cluster inside that subspace, with the fewest clusters (2..size) that
    leave at most ``tolerance`` of the subspace's variance unexplained (a two-valued factor gets
    two values, not ``size``)."""
    from sklearn.cluster import KMeans

    sizes = [int(v) for v in sizes]
    if not sizes or any(v < 2 for v in sizes):
        raise ValueError(f"sizes must be ≥ 2 each (the categories of each latent), got {sizes}")
    sub = independent_subspaces(x, len(sizes), n_components=n_components, seed=seed)
    s_all = sub.sources(x)
    fit_rows = np.random.default_rng(seed).permutation(len(s_all))[:10_000]
    codes = np.zeros((len(s_all), len(sizes)), dtype=np.int64)
    for g, size in enumerate(sizes):
        s = s_all[:, sub.groups == g]
        fit = s[fit_rows]
        total = ((fit - fit.mean(0)) ** 2).sum()
        km = None
        for k in range(2, size + 1):
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(fit)
            if km.inertia_ <= tolerance * total:
                break
        codes[:, g] = km.predict(s)
    return torch.as_tensor(codes), sub
