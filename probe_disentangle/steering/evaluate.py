"""Set-to-value steering evaluation on a world with a parser (the factor language), and the
generation / parse / activation readers every steering evaluation shares.

For each factor and target value, steer the host, generate, parse, and report

- ``success``: the generated sentence has the target value,
- ``leakage``: another factor differs from the unsteered generation with the same sampling seed,
- ``parse_rate``: the generated sentences parse at all.

Every method is a *steerer*: ``steerer(factor, value) -> context manager`` under which the host
generates steered text (built in :mod:`.baselines`). Baselines use the same generation, seeds and
strength as the probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapters import Adapter

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
    from ..hosts import generate

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


def sequence_activations(adapter: Adapter, hook: str, tokens: np.ndarray, batch: int = 512) -> Tensor:
    """Activations at every position: ``[N, T, d]`` (for position-aware baselines)."""
    return torch.cat([act.cpu().float() for _, act in hook_tensors(adapter, hook, tokens, batch)])


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
