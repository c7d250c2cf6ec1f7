"""Knobs: a head's latents grouped, without labels, into one control per factor.

A VAE head often spends two or three latents on one categorical factor (five values on a circle
in a plane, say): each latent then carries much of the factor, and the metrics that ask for *one*
latent per factor (MIG) score it as entangled although the factor is a subspace of its own,
independent of the rest. :func:`find_knobs` recovers those subspaces from the codes alone, as
independent subspace analysis does (Cardoso 1998; Theis 2006). For a sequence head the cue is
where each latent takes its value: latents that get their evidence from the same token in most
sequences (their *onset*, :meth:`~probe_disentangle.heads.PrefixCodeHead.onsets`) are one knob.
Without onsets, latents that depend on each other (chance-corrected mutual information above a
threshold) are. The points inside a knob cluster at its settings (k-means, the fewest clusters
that explain the knob's variance).

A knob is what a user turns: :meth:`Knobs.setting_codes` gives the latents' values for a setting,
:meth:`Knobs.assign` reads which setting a code is at (one discrete number per knob: the code a
one-latent-per-factor metric should score). No factor label enters; :func:`knob_targets` uses
labels afterwards only to name knobs and settings for an evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..isa import _discrete_mi as _mi

__all__ = ["Knobs", "co_onset", "find_knobs", "knob_targets", "latent_dependence"]


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"codes must be [samples, latents], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("codes hold NaN or inf; check the head's fit before grouping its latents")
    return x


@dataclass
class Knobs:
    """``groups[i]``: the latents knob i moves; ``settings[i]`` ``[K_i, len(groups[i])]``: the
    values those latents take at each of the knob's K_i settings."""

    groups: list[list[int]]
    settings: list[np.ndarray]
    latent_dim: int

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.settings):
            raise ValueError(f"{len(self.groups)} groups but {len(self.settings)} settings tables")
        seen: set[int] = set()
        for g, s in zip(self.groups, self.settings, strict=True):
            if not g or any(not 0 <= i < self.latent_dim for i in g) or seen & set(g):
                raise ValueError(f"knob latents {g} must be non-empty, distinct and in 0..{self.latent_dim - 1}")
            seen |= set(g)
            if np.asarray(s).ndim != 2 or np.asarray(s).shape[1] != len(g) or len(s) < 1:
                raise ValueError(f"settings of knob {g} must be [K, {len(g)}], got {np.asarray(s).shape}")
        self.settings = [np.asarray(s, dtype=np.float64) for s in self.settings]

    def __len__(self) -> int:
        return len(self.groups)

    def assign(self, codes: Tensor | np.ndarray) -> np.ndarray:
        """``[N, n_knobs]`` int: per code and knob, the nearest setting."""
        c = _array(codes)
        if c.shape[1] != self.latent_dim:
            raise ValueError(f"codes have {c.shape[1]} latents, the knobs were found on {self.latent_dim}")
        out = np.zeros((len(c), len(self)), dtype=np.int64)
        for i, (g, s) in enumerate(zip(self.groups, self.settings, strict=True)):
            out[:, i] = ((c[:, g][:, None, :] - s[None]) ** 2).sum(-1).argmin(1)
        return out

    def setting_codes(self, knob: int, setting: int) -> dict[int, float]:
        """``{latent: value}`` that puts ``knob`` at ``setting`` (an edit for ``steer_sequences``)."""
        if not 0 <= knob < len(self):
            raise ValueError(f"knob {knob} out of range 0..{len(self) - 1}")
        if not 0 <= setting < len(self.settings[knob]):
            raise ValueError(f"knob {knob} has settings 0..{len(self.settings[knob]) - 1}, got {setting}")
        return {int(i): float(v) for i, v in zip(self.groups[knob], self.settings[knob][setting], strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "groups": [list(map(int, g)) for g in self.groups],
            "settings": [s.tolist() for s in self.settings],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Knobs:
        try:
            return cls([list(g) for g in d["groups"]], [np.asarray(s) for s in d["settings"]], int(d["latent_dim"]))
        except KeyError as e:
            raise ValueError(f"a knobs table needs 'groups', 'settings' and 'latent_dim'; {e} is missing") from None

    def save(self, path: str | Path) -> None:
        """JSON (no code runs on load), written atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Knobs:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _levels(x: np.ndarray, tolerance: float, max_levels: int = 12, iters: int = 30) -> np.ndarray:
    """A latent's own levels: 1-D k-means (Lloyd's, quantile start) with the fewest clusters that
    leave at most ``tolerance`` of its variance unexplained; returns each sample's level. Binning
    by clusters, not by quantiles, keeps the noise inside a cluster from counting as entropy."""
    total = ((x - x.mean()) ** 2).sum()
    labels = np.zeros(len(x), dtype=np.int64)
    for k in range(2, max_levels + 1):
        c = np.quantile(x, (np.arange(k) + 0.5) / k)
        for _ in range(iters):
            labels = np.abs(x[:, None] - c[None]).argmin(1)
            new = np.array([x[labels == i].mean() if (labels == i).any() else c[i] for i in range(k)])
            if np.allclose(new, c):
                break
            c = new
        if ((x - c[labels]) ** 2).sum() <= tolerance * total:
            break
    return np.unique(labels, return_inverse=True)[1]


def _entropy(a: np.ndarray) -> float:
    p = np.bincount(a) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def latent_dependence(codes: Tensor | np.ndarray, tolerance: float = 0.05, seed: int = 0) -> np.ndarray:
    """``[k, k]`` symmetric: each pair's mutual information, each latent discretised at its own
    levels (:func:`_levels`), minus its value with one latent shuffled (the estimator's bias under
    independence), over the smaller entropy. About 0 for independent latents, about 1 when one
    determines the other."""
    c = _array(codes)
    rng = np.random.default_rng(seed)
    q = np.stack([_levels(c[:, i], tolerance) for i in range(c.shape[1])], 1)
    h = np.array([_entropy(q[:, i]) for i in range(q.shape[1])])
    k = c.shape[1]
    dep = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            chance = _mi(q[:, i], rng.permutation(q[:, j]))
            dep[i, j] = dep[j, i] = (_mi(q[:, i], q[:, j]) - chance) / max(min(h[i], h[j]), 1e-12)
    return np.clip(dep, 0.0, None)


def co_onset(onsets: Tensor | np.ndarray) -> np.ndarray:
    """``[k, k]``: the fraction of sequences in which two latents have the same onset
    (:meth:`~probe_disentangle.heads.PrefixCodeHead.onsets`, ``[N, k]``)."""
    o = np.asarray(onsets.detach().cpu() if isinstance(onsets, Tensor) else onsets)
    if o.ndim != 2:
        raise ValueError(f"onsets must be [sequences, latents], got shape {o.shape}")
    return (o[:, :, None] == o[:, None, :]).mean(0)


def find_knobs(
    codes: Tensor | np.ndarray,
    threshold: float = 0.3,
    onsets: Tensor | np.ndarray | None = None,
    min_std: float = 0.1,
    max_settings: int = 12,
    tolerance: float = 0.05,
    max_samples: int = 10_000,
    seed: int = 0,
) -> Knobs:
    """Knobs of a head from its codes ``[N, k]`` (e.g. each held-out sequence's code), no labels.

    Latents whose std is at most ``min_std`` (collapsed to the prior mean) join no knob; the
    others are linked when their :func:`latent_dependence` exceeds ``threshold`` — or, given
    ``onsets`` ``[N, k]`` of the same sequences (a sequence head's
    :meth:`~probe_disentangle.heads.PrefixCodeHead.onsets`), when they take their value from the
    same position in more than half the sequences (:func:`co_onset`): a factor a VAE spreads
    over several nearly binary latents shares little information per pair but one onset. Each
    connected set is a knob. A knob's settings are k-means centres, the fewest (1..``max_settings``)
    that leave at most ``tolerance`` of its variance unexplained."""
    from sklearn.cluster import KMeans

    c = _array(codes)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if max_settings < 1 or not 0 < tolerance < 1:
        raise ValueError(f"max_settings must be >= 1 and tolerance in (0, 1), got {max_settings}, {tolerance}")
    if len(c) < 20:
        raise ValueError(f"{len(c)} codes are too few to group latents; pass a few hundred or more")
    if onsets is not None:
        o = np.asarray(onsets.detach().cpu() if isinstance(onsets, Tensor) else onsets)
        if o.shape != c.shape:
            raise ValueError(f"onsets must match the codes' shape {c.shape}, got {o.shape}")
    rng = np.random.default_rng(seed)
    if len(c) > max_samples:
        keep = rng.choice(len(c), max_samples, replace=False)
        c = c[keep]
        o = o[keep] if onsets is not None else None
    active = [i for i in range(c.shape[1]) if c[:, i].std() > min_std]
    if not active:
        raise ValueError(f"every latent's std is <= {min_std}: the head's codes carry nothing to group")
    if onsets is not None:
        linked = co_onset(o[:, active]) > 0.5
    else:
        linked = latent_dependence(c[:, active], tolerance, seed=seed) > threshold
    parent = list(range(len(active)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(active)):
        for j in range(i + 1, len(active)):
            if linked[i, j]:
                parent[root(i)] = root(j)
    comps: dict[int, list[int]] = {}
    for i in range(len(active)):
        comps.setdefault(root(i), []).append(active[i])
    groups = sorted(comps.values(), key=lambda g: g[0])
    settings = []
    for g in groups:
        x = c[:, g]
        total = ((x - x.mean(0)) ** 2).sum()
        centres = x.mean(0, keepdims=True)
        for k in range(2, max_settings + 1):
            if ((x - centres[((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)]) ** 2).sum() <= tolerance * total:
                break
            centres = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x).cluster_centers_
        settings.append(centres)
    return Knobs(groups, settings, c.shape[1])


def knob_targets(
    knobs: Knobs, codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, sizes: list[int]
) -> tuple[dict[tuple[int, int], tuple[list[int], list[float]]], list[list[int]], list[int]]:
    """Name knobs by factors for an evaluation (labels used here only): factor j's knob is the one
    whose setting shares the most information with it (relative to the factor's entropy); value
    v's target is the setting most codes of value v sit at. Returns targets ``{(j, v): (latents,
    values)}`` (as ``group_targets``), each factor's latents, and each factor's knob."""
    c = _array(codes)
    f = np.asarray(factors).astype(np.int64)
    if f.ndim != 2 or len(f) != len(c) or f.shape[1] != len(sizes):
        raise ValueError(f"factors must be [{len(c)}, {len(sizes)}], got {f.shape}")
    a = knobs.assign(c)
    owner = []
    for j in range(f.shape[1]):
        mi = [_mi(a[:, i], f[:, j]) for i in range(len(knobs))]
        owner.append(int(np.argmax(mi)))
    targets = {}
    for j, i in enumerate(owner):
        g = knobs.groups[i]
        for v in range(sizes[j]):
            at = a[f[:, j] == v, i]
            s = int(np.bincount(at, minlength=len(knobs.settings[i])).argmax()) if len(at) else 0
            targets[(j, v)] = (list(g), [float(x) for x in knobs.settings[i][s]])
    return targets, [list(knobs.groups[i]) for i in owner], owner
