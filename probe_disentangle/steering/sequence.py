"""Reading and steering with per-token sequence heads (:class:`~probe_disentangle.heads.PrefixCodeHead`).

The head needs, besides each vector, its token id and position: the adapter's
:meth:`~probe_disentangle.adapters.Adapter.track_inputs` provides them for every forward, prompt
and KV-cached step alike. Steering edits every position but BOS; across a cached generation
the steerer carries each sequence's evidence sums, so a cached step is edited exactly as the
same position is in a full forward of the whole prefix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapters import Adapter, InputRecord
from ..heads.sequence import PrefixCodeHead, State
from .baselines import mutual_information_matrix

Targets = Mapping[tuple[int, int], tuple[list[int], list[float]]]


@torch.no_grad()
def read_sequences(
    adapter: Adapter, hook: str, tokens: Tensor, attention_mask: Tensor | None = None, batch: int = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """Every position's vector at ``hook`` for token sequences ``[N, T]``: ``acts [N, T, d]``,
    conditioning ``[N, T, 2]`` (token id, position), and the mask of positions a sequence head
    reads (real tokens, BOS excluded)."""
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise TypeError(
            f"tokens must be an integer tensor [sequences, positions], got {getattr(tokens, 'shape', tokens)}"
        )
    adapter.check_hook(hook)
    device = next(adapter.model.parameters()).device
    acts, conds = [], []
    for s in range(0, len(tokens), batch):
        seen: list[Tensor] = []
        kw: dict[str, Any] = {}
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask[s : s + batch].to(device)
        with adapter.track_inputs() as records, adapter.hook(hook, lambda a, seen=seen: seen.append(a.detach())):
            adapter.model(tokens[s : s + batch].to(device), **kw)
        rec = records[0]
        acts.append(seen[0].float().cpu())
        conds.append(torch.stack([rec.tokens, rec.positions], -1).long().cpu())
    mask = torch.ones(tokens.shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool().clone()
    mask[:, 0] = False
    return torch.cat(acts), torch.cat(conds), mask


def read_world_sequences(
    adapter: Adapter, hook: str, world, factors: np.ndarray, batch: int = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`read_sequences` of a world's sentences for ``factors [N, F]``: rendered, padding
    masked out (BOS kept in the attention mask, left out of the head's mask)."""
    tokens = torch.as_tensor(world.render(np.asarray(factors))).long()
    attn = (tokens != world.tokenizer.pad_id).long()
    attn[:, 0] = 1
    return read_sequences(adapter, hook, tokens, attn, batch=batch)


def _edit_fn(edits: Mapping[int, Any] | Callable[[Tensor], Tensor], k: int) -> Callable[[Tensor], Tensor]:
    """``{latent: value}`` sets, ``{latent: ("add", delta)}`` shifts (checked by the probe's own
    :func:`~probe_disentangle.probe.check_edits`); a function of the codes is used as is."""
    from ..probe import check_edits

    if callable(edits):
        return edits
    checked = check_edits(edits, k)
    if not checked:
        raise ValueError("edits is empty: give at least one {latent index: value}")
    for i, e in checked.items():
        if isinstance(e, Tensor) or (isinstance(e, tuple) and e[0] == "nearest"):
            raise ValueError(f"edit for latent {i}: a sequence head takes a value, ('set', v) or ('add', delta)")
    plan = [
        (i, float(e[1] if isinstance(e, tuple) else e), isinstance(e, tuple) and e[0] == "add")
        for i, e in checked.items()
    ]

    def fn(z: Tensor) -> Tensor:
        z2 = z.clone()
        for i, v, shift in plan:
            z2[..., i] = z2[..., i] + v if shift else torch.full_like(z2[..., i], v)
        return z2

    return fn


@contextlib.contextmanager
def steer_sequences(
    adapter: Adapter,
    hook: str,
    head: PrefixCodeHead,
    edits: Mapping[int, float] | Callable[[Tensor], Tensor],
) -> Iterator[None]:
    """Within the context every forward of the host has its vectors at ``hook`` edited at every
    position but BOS: a' = a + s·(dec(z', c) − dec(z, c)) with z the prefix code and z' = z with
    latents set (``{latent: value}``) or ``edits(z)``. A KV-cached step continues the evidence of
    the forwards before it (a fresh forward, from position 0, starts a new sequence)."""
    edit = _edit_fn(edits, head.latent_dim)
    head_device = next(head.parameters()).device
    state: dict[str, Any] = {"sums": None, "next": None}

    def _hook(act: Tensor) -> Tensor:
        rec: InputRecord = records[-1]
        B, T, _ = act.shape
        if rec.tokens.shape != (B, T):
            raise ValueError(
                f"the host's input {tuple(rec.tokens.shape)} does not match the activation at {hook!r} {tuple(act.shape)}; "
                "sequence steering needs a hook with one vector per input token"
            )
        offset = rec.offset
        sums: State | None = None
        if offset > 0:
            if state["sums"] is None or state["next"] != offset or state["sums"][0].shape[0] != B:
                raise RuntimeError(
                    f"a KV-cached step at position {offset} arrived without the forwards before it inside this "
                    "steering context; run the prompt inside the context too"
                )
            sums = state["sums"]
        cond = torch.stack([rec.tokens, rec.positions], -1).long().to(head_device)
        mask = rec.positions.to(head_device) > 0
        if rec.attention_mask is not None:
            mask &= rec.attention_mask[:, -T:].to(head_device).bool()
        new, sums = head.edit(act.to(head_device), cond, mask, edit, sums)
        state["sums"], state["next"] = sums, offset + T
        return new.to(act.device, act.dtype)

    with adapter.track_inputs() as records, adapter.hook(hook, _hook):
        yield


def prefix_codes(adapter: Adapter, hook: str, head: PrefixCodeHead, tokens: Tensor, batch: int = 256) -> Tensor:
    """The head's codes ``[N, T, k]`` of token sequences ``[N, T]`` (position t: the evidence up to t)."""
    acts, cond, mask = read_sequences(adapter, hook, tokens, batch=batch)
    dev = next(head.parameters()).device
    return head.codes(acts.to(dev), cond.to(dev), mask.to(dev)).cpu()


def group_targets(
    codes: Tensor, factors: Tensor, sizes: list[int], strength: float = 1.0, min_share: float = 0.3
) -> tuple[dict[tuple[int, int], tuple[list[int], list[float]]], list[list[int]]]:
    """Latents grouped by factor after a label-free fit (labels used only here, to name latents):
    a latent belongs to the factor it shares most information with, relative to the factor's
    entropy, if that share is at least ``min_share``; a factor owning none takes its highest-MI
    latent; collapsed latents (std ≤ 0.1) join none. Each value's target is its class mean of
    the group's codes, pushed ``strength`` times from the group's overall mean."""
    c, f = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    mi = mutual_information_matrix(c, f)
    ent = np.array([_entropy(f[:, j]) for j in range(f.shape[1])])
    share = mi / np.maximum(ent, 1e-12)
    owner = share.argmax(1)
    active = c.std(0) > 0.1
    groups = []
    for j in range(f.shape[1]):
        g = [i for i in range(c.shape[1]) if active[i] and owner[i] == j and share[i, j] >= min_share]
        groups.append(g or [int(mi[:, j].argmax())])
    out = {}
    for j, g in enumerate(groups):
        overall = c[:, g].mean(0)
        for v in range(sizes[j]):
            rows = c[f[:, j] == v][:, g]
            t = overall + strength * (rows.mean(0) - overall) if len(rows) else overall
            out[(j, v)] = (list(g), [float(x) for x in t])
    return out, groups


def _entropy(x) -> float:
    p = np.bincount(np.asarray(x).astype(int)) / len(x)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def prefix_steerer(adapter: Adapter, hook: str, head: PrefixCodeHead, targets: Targets):
    """A :data:`~probe_disentangle.steering.Steerer` for ``evaluate_steering``: ``steerer(factor,
    value)`` sets the latents ``targets[(factor, value)]`` names to its values."""

    @contextlib.contextmanager
    def steer(factor: int, value: int) -> Iterator[None]:
        idx, vals = targets[(factor, value)]
        with steer_sequences(adapter, hook, head, dict(zip(idx, vals, strict=True))):
            yield

    return steer


def source_codes(
    adapter: Adapter, hook: str, head: PrefixCodeHead, tokens: Tensor, pad_id: int | None = None
) -> Tensor:
    """Each sequence's code ``[n, k]``: the prefix code after its last real token (``pad_id``
    positions give no evidence, so the last column holds it)."""
    tokens = torch.as_tensor(tokens).long()
    attn = None if pad_id is None else (tokens != pad_id).long()
    if attn is not None:
        attn[:, 0] = 1
    acts, cond, mask = read_sequences(adapter, hook, tokens, attn)
    dev = next(head.parameters()).device
    return head.codes(acts.to(dev), cond.to(dev), mask.to(dev))[:, -1].cpu()


def prefix_interchanger(
    adapter: Adapter, hook: str, head: PrefixCodeHead, groups: list[list[int]], pad_id: int | None = None
):
    """An :data:`~probe_disentangle.steering.Interchanger` for a prefix-code head: for factor f,
    the latents ``groups[f]`` of every position of base row i are set to source i's sequence code
    there (:func:`source_codes`); the other latents, and what the head does not reconstruct, stay
    the base's. Every forward inside must have one row per source (KV-cached steps included)."""

    @contextlib.contextmanager
    def interchange(factor: int, sources) -> Iterator[None]:
        if not 0 <= int(factor) < len(groups):
            raise ValueError(f"factor {factor} out of range: the groups cover factors 0..{len(groups) - 1}")
        g = torch.as_tensor(list(groups[int(factor)]), dtype=torch.long)
        src = source_codes(adapter, hook, head, torch.as_tensor(sources), pad_id)
        n = len(src)

        def swap(z: Tensor) -> Tensor:
            if z.shape[0] != n:
                raise ValueError(
                    f"the host ran a batch of {z.shape[0]} rows inside an interchange with {n} sources; "
                    "run the base inputs as one batch with row i paired with source i"
                )
            z2 = z.clone()
            if len(g):
                z2[..., g.to(z.device)] = src.to(z)[:, None, g.to(z.device)].expand(-1, z.shape[1], -1)
            return z2

        with steer_sequences(adapter, hook, head, swap):
            yield

    return interchange


def first_written(world, factors: np.ndarray) -> np.ndarray:
    """``[N, F]``: for each sequence and factor, the first position after a planned world's plan
    (after BOS otherwise) whose token would differ had the factor another value — where the
    sentence first writes the factor, the position issue 20's per-token MIG is read at."""
    factors = np.asarray(factors)
    base = world.render(factors)
    start = world.num_factors + 2 if getattr(world, "plan", False) else 1  # after BOS, plan and ':'
    out = np.full(factors.shape, base.shape[1] - 1)
    for f, size in enumerate(world.factor_sizes):
        for shift in range(1, size):
            other = factors.copy()
            other[:, f] = (other[:, f] + shift) % size
            diff = world.render(other)[:, start:] != base[:, start:]
            pos = np.where(diff.any(1), diff.argmax(1) + start, base.shape[1] - 1)
            out[:, f] = np.minimum(out[:, f], pos)
    return out
