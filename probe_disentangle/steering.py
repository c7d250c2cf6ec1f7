"""Steering evaluation on a world with a parser (the factor language).

Align latents to factors by mutual information on held-out activations; then, for each factor
and target value, steer the host, generate, parse, and report

- ``success``: the generated sentence has the target value,
- ``leakage``: another factor differs from the unsteered generation with the same sampling seed,
- ``parse_rate``: the generated sentences parse at all.

Baselines in the same report use the same generation, seeds and strength: difference-of-means
steering vectors per factor value, PCA directions, and any other probe (e.g. a plain VAE head).
Every method is a *steerer*: ``steerer(factor, value) -> context manager`` under which the host
generates steered text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .adapters import Adapter

Steerer = Callable[[int, int], contextlib.AbstractContextManager]


# ------------------------------------------------------------------ generation


@torch.no_grad()
def sample_tokens(
    model,
    n: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
    seed: int,
    temperature: float = 1.0,
    batch: int = 256,
) -> np.ndarray:
    """``n`` sequences from <bos>, sampled token by token with a seeded generator (same seed →
    same uniform draws, so steered and unsteered runs are comparable)."""
    from .hosts import generate

    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for s in range(0, n, batch):
        b = min(batch, n - s)
        bos = torch.full((b, 1), bos_id, dtype=torch.long, device=device)
        seq = generate(model, bos, max_length - 1, temperature=temperature, eos_id=eos_id, pad_id=pad_id, generator=g)
        out.append(torch.nn.functional.pad(seq, (0, max_length - seq.shape[1]), value=pad_id).cpu())
    return torch.cat(out).numpy()


def generate_world(model, world, n: int, seed: int) -> np.ndarray:
    tok = world.tokenizer
    return sample_tokens(model, n, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, seed)


def parse_all(world, seqs: np.ndarray) -> list[dict[str, int] | None]:
    return [world.parse(s) for s in seqs]


# ------------------------------------------------------------------ activations with labels


@torch.no_grad()
def hook_tensors(
    adapter: Adapter, hook: str, tokens, batch: int = 512, device: torch.device | str | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """(token batch ``[b, T]``, raw activation at ``hook`` ``[b, T, d]``) for each batch of
    sequences, the forward stopped after the hook."""
    for s in range(0, len(tokens), batch):
        t = torch.as_tensor(tokens[s : s + batch])
        store: list[Tensor] = []
        with adapter.hook(hook, store.append):
            adapter.forward(t if device is None else t.to(device), stop_after=hook)
        yield t, store[0]


def position_activations(adapter: Adapter, hook: str, tokens: np.ndarray, position: int, batch: int = 512) -> Tensor:
    """The activation at one fixed token position of each sequence (e.g. the end of a plan)."""
    return torch.cat([act[:, position].cpu().float() for _, act in hook_tensors(adapter, hook, tokens, batch)])


def sequence_vectors(
    adapter: Adapter,
    hook: str,
    tokens,
    positions=None,
    batch: int = 512,
    device: torch.device | str | None = None,
) -> Tensor:
    """One vector per sequence, in the layout the adapter's probes read: the concatenated span of
    a span adapter, else the activation at ``positions[i]`` (default: each sequence's last token)."""
    tokens = torch.as_tensor(tokens)
    span = getattr(adapter, "span", None)
    if span is not None and positions is not None:
        raise ValueError(f"this probe reads one vector per sequence from its span {tuple(span)}; drop the positions")
    if positions is not None:
        positions = torch.as_tensor(positions).long()
        if positions.shape != (len(tokens),):
            raise ValueError(f"positions must be [{len(tokens)}] (one per sequence), got {tuple(positions.shape)}")
        if bool((positions < 0).any()) or bool((positions >= tokens.shape[1]).any()):
            raise ValueError(f"positions must lie in 0..{tokens.shape[1] - 1} (the token columns)")
    out = []
    for s, (t, act) in zip(
        range(0, len(tokens), batch), hook_tensors(adapter, hook, tokens, batch, device), strict=True
    ):
        if span is not None:  # the adapter's own span layout (and its checks)
            out.append(adapter.to_vectors(act, t).vectors.cpu().float())
        else:
            pos = torch.full((len(t),), act.shape[1] - 1) if positions is None else positions[s : s + batch]
            out.append(act[torch.arange(len(t)), pos.to(act.device)].cpu().float())
    return torch.cat(out)


def factor_position_activations(adapter: Adapter, hook: str, world, tokens: np.ndarray) -> Tensor:
    """Where every factor is known: the span of a span probe; the plan's colon for a planned
    language; else the last word."""
    if getattr(adapter, "span", None) is not None:
        return sequence_vectors(adapter, hook, tokens)
    if getattr(world, "plan", False):
        return position_activations(adapter, hook, tokens, world.num_factors + 1)
    return final_position_activations(adapter, hook, tokens, world.tokenizer.eos_id, world.tokenizer.pad_id)


def final_position_activations(
    adapter: Adapter, hook: str, tokens: np.ndarray, eos_id: int, pad_id: int, batch: int = 512
) -> Tensor:
    """The activation at the last token before <eos> of each sequence: every factor is expressed there."""
    outs = []
    for t, act in hook_tensors(adapter, hook, tokens, batch):
        is_end = (t == eos_id) | (t == pad_id)
        last = torch.where(is_end.any(1), is_end.float().argmax(1) - 1, torch.full((t.shape[0],), t.shape[1] - 1))
        outs.append(act[torch.arange(t.shape[0]), last.to(act.device)].cpu().float())
    return torch.cat(outs)


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
    """Top-``k`` principal directions ``[k, d]`` (exact, deterministic: eigenvectors of the covariance)."""
    x = acts.double() - acts.double().mean(0)
    evals, evecs = torch.linalg.eigh(x.T @ x / max(1, x.shape[0] - 1))
    return evecs[:, evals.argsort(descending=True)[:k]].T.to(acts.dtype).contiguous()


def pca_steerer(
    adapter: Adapter, hook: str, acts: Tensor, factors: np.ndarray, sizes: Sequence[int], k: int, strength: float = 2.0
) -> tuple[CodeSteerer, list[int]]:
    """The top-``k`` principal directions as codes; an edit moves the projection onto one of them."""
    pcs = principal_directions(acts, k)  # (k, d) orthonormal rows
    mean = acts.mean(0)
    codes = ((acts - mean) @ pcs.T).numpy()
    alignment = align(codes, factors)
    targets = class_targets(codes, factors, alignment, sizes, strength)

    def edit(a: Tensor, i: int, t: float) -> Tensor:
        p = pcs[i].to(a)
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


def sequence_activations(adapter: Adapter, hook: str, tokens: np.ndarray, batch: int = 512) -> Tensor:
    """Activations at every position: ``[N, T, d]`` (for position-aware baselines)."""
    return torch.cat([act.cpu().float() for _, act in hook_tensors(adapter, hook, tokens, batch)])


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


# ------------------------------------------------------------------ evaluation


def evaluate_steering(
    model, world, steerer: Steerer, factors: Sequence[int], n: int = 100, seed: int = 1234
) -> dict[str, Any]:
    """Success, leakage and parse rate per factor (averaged over the factor's values)."""
    names = world.factor_names
    base = parse_all(world, generate_world(model, world, n, seed))
    out: dict[str, Any] = {}
    for f in factors:
        per_value = {}
        for v in range(world.factor_sizes[f]):
            with steerer(f, v):
                steered = parse_all(world, generate_world(model, world, n, seed))
            parsed = [p for p in steered if p is not None]
            success = np.mean([p[names[f]] == v for p in parsed]) if parsed else 0.0
            pairs = [(p, b) for p, b in zip(steered, base, strict=True) if p is not None and b is not None]
            leak = (
                np.mean([any(p[nm] != b[nm] for j, nm in enumerate(names) if j != f) for p, b in pairs])
                if pairs
                else 1.0
            )
            per_value[world.value_names[names[f]][v] if hasattr(world, "value_names") else str(v)] = {
                "success": float(success),
                "leakage": float(leak),
                "parse_rate": len(parsed) / n,
            }
        vals = list(per_value.values())
        out[names[f]] = {
            "success": float(np.mean([x["success"] for x in vals])),
            "leakage": float(np.mean([x["leakage"] for x in vals])),
            "parse_rate": float(np.mean([x["parse_rate"] for x in vals])),
            "per_value": per_value,
        }
    return out
