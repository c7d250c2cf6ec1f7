"""Steerers fitted on labelled activations: a probe's latents or PCA directions aligned to factors
by mutual information (:class:`CodeSteerer`), difference of means per factor value, and its
per-position variant. Each is ``steerer(factor, value) -> context manager`` (see :mod:`.evaluate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapters import Adapter
from .evaluate import Steerer

# ------------------------------------------------------------------ alignment


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """MI (nats) between each code (histogram-discretised, as MIG) and each discrete factor: ``[k, F]``."""
    from sklearn.metrics import mutual_info_score

    k, F = codes.shape[1], factors.shape[1]
    mi = np.zeros((k, F))
    for i in range(k):
        edges = np.histogram(codes[:, i], bins)[1][:-1]
        disc = np.digitize(codes[:, i], edges)
        for j in range(F):
            mi[i, j] = mutual_info_score(factors[:, j], disc)
    return mi


def align(codes: np.ndarray, factors: np.ndarray) -> list[int]:
    """For each factor the code with the highest mutual information."""
    return mutual_information_matrix(codes, factors).argmax(0).tolist()


# ------------------------------------------------------------------ steerers


@dataclass
class CodeSteerer:
    """Steer by setting one code to the mean it takes for the target value (scaled by ``strength``
    around its overall mean), through an edit function on raw activation vectors.

    ``encode``: vectors → codes; ``edit(vectors, index, value)`` returns edited vectors.
    Built by :func:`probe_steerer` and :func:`pca_steerer`.
    """

    adapter: Adapter
    hook: str
    edit: Callable[[Tensor, int, Any], Tensor]
    targets: dict[tuple[int, int], tuple[int, Any]]  # (factor, value) -> (code index, target code or edit)

    def __call__(self, factor: int, value: int) -> contextlib.AbstractContextManager:
        idx, target = self.targets[(factor, value)]
        return self.adapter.edit(self.hook, lambda a: self.edit(a, idx, target))


def class_targets(
    codes: np.ndarray,
    factors: np.ndarray,
    alignment: Sequence[int],
    sizes: Sequence[int],
    strength: float,
    categorical: Sequence[int] = (),
) -> dict[tuple[int, int], tuple[int, Any]]:
    """(factor, value) → (code, target): the code's mean over the value's rows, pushed ``strength``
    times as far from the overall mean. For a categorical code (index in ``categorical``) a mean of
    category indices can name a third category, so the target is ``("nearest", categories)``:
    the categories whose rows mostly have the value, the edit choosing among them per input."""
    out = {}
    for f, i in enumerate(alignment):
        overall = codes[:, i].mean()
        for v in range(sizes[f]):
            rows = codes[factors[:, f] == v, i]
            if not len(rows):
                out[(f, v)] = (i, float(overall))
            elif i in categorical:
                # every category whose rows mostly have value v; the edit picks, per input, the one
                # that changes the activation least (a category can also hold another factor)
                col = np.round(codes[:, i])
                cands = [
                    float(c)
                    for c in np.unique(col)
                    if np.bincount(factors[col == c, f], minlength=sizes[f]).argmax() == v
                ]
                if not cands:
                    cats, counts = np.unique(np.round(rows), return_counts=True)
                    cands = [float(cats[counts.argmax()])]
                out[(f, v)] = (i, ("nearest", tuple(cands)))
            else:
                out[(f, v)] = (i, float(overall + strength * (rows.mean() - overall)))
    return out


def probe_steerer(
    probe, acts: Tensor, factors: np.ndarray, sizes: Sequence[int], strength: float = 2.0
) -> tuple[CodeSteerer, list[int]]:
    """A probe's latents, aligned to factors by MI on ``acts`` (final-position activations)."""
    codes = probe.encode(acts).cpu().numpy()
    alignment = align(codes, factors)
    targets = class_targets(codes, factors, alignment, sizes, strength, categorical=probe.categorical_codes)
    return CodeSteerer(probe.adapter, probe.hook, lambda a, i, t: probe.edit_vectors(a, {i: t}), targets), alignment


def principal_directions(acts: Tensor, k: int) -> Tensor:
    """Top-``k`` principal directions ``[k, d]`` (exact, deterministic: eigenvectors of the covariance).

    Wider than tall (a flattened UNet map: d = 65 536 from a few hundred vectors) the d × d
    covariance would not fit in memory; the same directions come from the n × n Gram matrix:
    if ``x xᵀ u = λ u`` then ``xᵀ u`` is an eigenvector of ``xᵀ x`` with the same eigenvalue."""
    x = acts.double() - acts.double().mean(0)
    n, d = x.shape
    if d <= n:
        evals, evecs = torch.linalg.eigh(x.T @ x / max(1, n - 1))
        return evecs[:, evals.argsort(descending=True)[:k]].T.to(acts.dtype).contiguous()
    evals, u = torch.linalg.eigh(x @ x.T / max(1, n - 1))
    top = evals.argsort(descending=True)[:k]
    dirs = (x.T @ u[:, top]).T  # [k, d]
    return (dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-300)).to(acts.dtype).contiguous()


def pca_steerer(
    adapter: Adapter, hook: str, acts: Tensor, factors: np.ndarray, sizes: Sequence[int], k: int, strength: float = 2.0
) -> tuple[CodeSteerer, list[int]]:
    """The top-``k`` principal directions as codes; an edit moves the projection onto one of them."""
    return directions_steerer(adapter, hook, acts, principal_directions(acts, k), factors, sizes, strength)


def random_directions(d: int, k: int, seed: int = 0) -> Tensor:
    """``k`` random orthonormal directions ``[k, d]`` (QR of a seeded Gaussian matrix): the chance row."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q.T.float().contiguous()


def directions_steerer(
    adapter: Adapter,
    hook: str,
    acts: Tensor,
    directions: Tensor,
    factors: np.ndarray,
    sizes: Sequence[int],
    strength: float = 2.0,
) -> tuple[CodeSteerer, list[int]]:
    """Orthonormal ``directions`` ``[k, d]`` as codes (the projections of ``acts`` on them), aligned
    to factors by MI; an edit moves the projection onto one direction to the target value's."""
    dirs = directions.to(acts.dtype)
    mean = acts.mean(0)
    codes = ((acts - mean) @ dirs.T).numpy()
    alignment = align(codes, factors)
    targets = class_targets(codes, factors, alignment, sizes, strength)

    def edit(a: Tensor, i: int, t: float) -> Tensor:
        p = dirs[i].to(a)
        cur = (a - mean.to(a)) @ p
        return a + (t - cur)[:, None] * p

    return CodeSteerer(adapter, hook, edit, targets), alignment


def class_mean_differences(acts: Tensor, factors: np.ndarray, sizes: Sequence[int]) -> dict[tuple[int, int], Tensor]:
    """(factor, value) → mean of ``acts`` [N, ...] over rows with that value − mean over all rows."""
    mean = acts.mean(0)
    out = {}
    for f, size in enumerate(sizes):
        for v in range(size):
            sel = torch.as_tensor(factors[:, f] == v)
            out[(f, v)] = (acts[sel].mean(0) - mean) if sel.any() else torch.zeros_like(mean)
    return out


def diff_means_steerer(
    adapter: Adapter, hook: str, acts: Tensor, factors: np.ndarray, sizes: Sequence[int], strength: float = 2.0
) -> Steerer:
    """Add ``strength`` × (mean activation of the target value − mean of all) at every position."""
    vecs = class_mean_differences(acts, factors, sizes)

    def steer(factor: int, value: int):
        vec = strength * vecs[(factor, value)]
        return adapter.edit(hook, lambda a: a + vec.to(a))

    return steer


def positional_diff_means_steerer(
    adapter: Adapter, hook: str, seq_acts: Tensor, factors: np.ndarray, sizes: Sequence[int], strength: float = 2.0
) -> Steerer:
    """Difference of means *per position*: at position p add ``strength`` × (mean activation at p of
    the target value − mean at p). For worlds with a fixed layout, where a factor is written in a
    different direction at each position. Full-sequence forwards only (a KV-cached single-token
    step does not know its position and is left unedited)."""
    vecs = class_mean_differences(seq_acts, factors, sizes)  # each (T, d)

    def steer(factor: int, value: int):
        vec = strength * vecs[(factor, value)]

        def fn(act: Tensor) -> Tensor:
            T = act.shape[1]
            return act if T == 1 else act + vec[:T].to(act)

        return adapter.hook(hook, fn)

    return steer
