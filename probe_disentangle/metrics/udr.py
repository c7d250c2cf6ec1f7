"""Unsupervised Disentanglement Ranking (UDR; Duan et al., ICLR 2020, "Unsupervised model selection
for variational disentangled representation learning").

The idea: disentangled solutions are alike across random seeds up to a permutation and sign of
their latents, entangled ones each mix the factors in their own way. For every ordered pair of
models ``(i, j)`` fitted with the same settings (different seeds) and encoded on the same inputs,
``R[a, b]`` is the strength of the dependence of latent ``b`` of model ``j`` on latent ``a`` of
model ``i`` (absolute Spearman rank correlation, or the absolute coefficients of a Lasso
regression of one code on the other, both standardised); latents whose mean KL to the prior is
at most ``kl_threshold`` carry nothing and are dropped from both sides. The pair's score is the
relative strength of the strongest entry per column and per row,
``½ (mean_b max_a R[a,b]² / Σ_a R[a,b] + mean_a max_b R[a,b]² / Σ_b R[a,b])``: 1 when each
informative latent depends on exactly one latent of the other model, near 0 for unrelated codes.
A model's UDR is the median of its scores against every other model (``UDR_A`` of the paper with
the median aggregation of disentanglement_lib's ``compute_udr_sklearn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._utils import check_codes

__all__ = ["correlation_matrix", "relative_strength", "udr"]

KL_THRESHOLD = 0.01  # nats: a latent whose mean KL is at most this is treated as unused (the paper's)
LASSO_ALPHA = 0.1


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=0)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def correlation_matrix(
    a: np.ndarray, b: np.ndarray, method: str = "spearman", random_state: int | None = 0
) -> np.ndarray:
    """``R [k_a, k_b]``: how strongly latent ``j`` of codes ``b`` depends on latent ``i`` of ``a``
    (same rows, the same inputs encoded by two models). ``"spearman"``: |rank correlation|;
    ``"lasso"``: |coefficients| of a Lasso (α = 0.1) predicting standardised ``b`` from
    standardised ``a``. A constant latent has no dependence (its row or column is 0)."""
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must encode the same inputs: {a.shape[0]} rows against {b.shape[0]}")
    if method == "spearman":
        ra, rb = _standardise(_rank(a)), _standardise(_rank(b))
        return np.abs(ra.T @ rb / a.shape[0])
    if method == "lasso":
        from sklearn.linear_model import Lasso

        model = Lasso(alpha=LASSO_ALPHA, random_state=random_state).fit(_standardise(a), _standardise(b))
        return np.abs(np.atleast_2d(model.coef_)).T
    raise ValueError(f"unknown correlation method {method!r}; use 'spearman' or 'lasso'")


def relative_strength(r: np.ndarray) -> float:
    """The pair score of a dependence matrix ``R [k_a, k_b]`` (non-negative): the mean over columns
    of ``max² / sum`` and over rows of the same, averaged. An all-zero row or column (a latent the
    other model does not see at all) scores 0, as in disentanglement_lib."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or (r < 0).any():
        raise ValueError(f"R must be a non-negative [k_a, k_b] matrix, got shape {r.shape}")

    def side(m: np.ndarray) -> float:
        s = m.sum(0)
        return float(np.mean(np.divide(m.max(0) ** 2, s, out=np.zeros_like(s), where=s > 0)))

    if r.size == 0:
        return 0.0
    return 0.5 * (side(r) + side(r.T))


def udr(
    models: Sequence[np.ndarray | Callable[[Any], Any]],
    inputs: Any = None,
    kl: Sequence[np.ndarray] | None = None,
    method: str = "spearman",
    kl_threshold: float = KL_THRESHOLD,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """UDR of each of ``models`` (≥ 2, the same settings with different seeds).

    Each model is its codes ``[N, k]`` (the posterior means of the same ``N`` inputs) or a
    callable mapping ``inputs`` to them (or to ``(mean, kl)`` with ``kl [N, k]`` the per-latent KL
    of each input's posterior to the prior). ``kl``: per model, the per-latent mean KL ``[k]``
    (or ``[N, k]``) used to drop unused latents; without it every latent counts.

    Returns ``model_scores`` (per model, the median of its pair scores against the others),
    ``pairwise`` (``[M, M]``, score of ``(i, j)`` in row i, column j; diagonal NaN) and
    ``informative`` (per model, the latents kept)."""
    if len(models) < 2:
        raise ValueError(f"UDR compares models with each other: pass at least 2, got {len(models)}")
    codes, kls = [], []
    for m, model in enumerate(models):
        if callable(model):
            if inputs is None:
                raise ValueError("models given as callables need inputs= to encode")
            got = model(inputs)
            if isinstance(got, tuple):
                got, k = got
                kls.append(np.asarray(k.detach().cpu() if hasattr(k, "detach") else k, dtype=np.float64))
            else:
                kls.append(None)
        else:
            got = model
            kls.append(None)
        codes.append(check_codes(got, f"models[{m}]"))
    if kl is not None:
        if len(kl) != len(models):
            raise ValueError(f"kl has {len(kl)} entries for {len(models)} models")
        kls = [np.asarray(k, dtype=np.float64) for k in kl]
    n = codes[0].shape[0]
    if any(c.shape[0] != n for c in codes):
        raise ValueError(f"every model must encode the same inputs: rows {[c.shape[0] for c in codes]}")
    keep = []
    for c, k in zip(codes, kls, strict=True):
        if k is None:
            keep.append(np.ones(c.shape[1], dtype=bool))
            continue
        k = k.mean(0) if k.ndim == 2 else k
        if k.shape != (c.shape[1],):
            raise ValueError(f"a model's kl must have one value per latent ({c.shape[1]}), got shape {k.shape}")
        keep.append(k > kl_threshold)
    m = len(codes)
    pair = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(m):
            if i != j:
                r = correlation_matrix(codes[i], codes[j], method, random_state)
                pair[i, j] = relative_strength(r[keep[i]][:, keep[j]])
    scores = [float(np.median(np.delete(pair[:, i], i))) for i in range(m)]
    return {
        "model_scores": scores,
        "pairwise": pair.tolist(),
        "informative": [np.flatnonzero(k).tolist() for k in keep],
        "method": method,
    }
