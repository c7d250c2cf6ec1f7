"""Difference of means per (token id, position): the supervised reference for per-token steering.

A per-token vector is mostly "which token, at which position"; what a factor adds to it depends
on both. :class:`TokenPositionMeans` keeps, from labelled sequences, the mean vector of every
(token id, position) and of every (token id, position, factor value). Steering to value v adds
``strength`` × (mean of v − mean) at every position but BOS; an interchange moves every position
from the value its vector is nearest to, to the source's value. Both edit prompt and generated
tokens, reading token ids and positions from the adapter (:meth:`~probe_disentangle.adapters.
Adapter.track_inputs`), so KV-cached steps are edited where full forwards are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..adapters import Adapter
from .evaluate import parse_all

__all__ = ["TokenPositionMeans", "positionwise_edit"]


def positionwise_edit(adapter: Adapter, hook: str, edit: Callable[[Tensor, Tensor, Tensor], Tensor]):
    """A context in which every forward's vectors at ``hook`` become ``edit(act, tokens, positions)``
    (``act [B, T, d]`` float, ``tokens``/``positions`` ``[B, T]``) at every position but BOS
    (position 0)."""

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        def fn(act: Tensor) -> Tensor:
            rec = records[-1]
            if rec.tokens.shape != act.shape[:2]:
                raise ValueError(
                    f"the host's input {tuple(rec.tokens.shape)} does not match the activation at {hook!r} "
                    f"{tuple(act.shape)}; a positionwise edit needs one vector per input token"
                )
            pos = rec.positions.to(act.device)
            out = edit(act.float(), rec.tokens.to(act.device), pos).to(act.dtype)
            return torch.where((pos > 0)[..., None], out, act)

        with adapter.track_inputs() as records, adapter.hook(hook, fn):
            yield

    return ctx()


class TokenPositionMeans:
    """Mean vectors per (token, position) and per (token, position, value) of each factor, from
    ``acts [N, T, d]``, conditioning ``cond [N, T, 2]`` (token id, position), ``mask [N, T]`` (the
    positions to count) and the sequences' ``factors [N, F]`` of ``sizes``."""

    def __init__(self, acts: Tensor, cond: Tensor, mask: Tensor, factors: np.ndarray, sizes: Sequence[int]) -> None:
        f = torch.as_tensor(np.asarray(factors)).long()
        if acts.ndim != 3 or cond.shape != (*acts.shape[:2], 2) or mask.shape != acts.shape[:2]:
            raise ValueError(
                f"acts [N, T, d], cond [N, T, 2] and mask [N, T] must agree, got {tuple(acts.shape)}, "
                f"{tuple(cond.shape)}, {tuple(mask.shape)}"
            )
        if f.shape != (len(acts), len(sizes)):
            raise ValueError(f"factors must be [{len(acts)}, {len(sizes)}], got {tuple(f.shape)}")
        a, c = acts[mask].float(), cond[mask].long()
        rows = torch.arange(len(acts))[:, None].expand(mask.shape)[mask]
        self.T, self.V, self.sizes = acts.shape[1], int(c[:, 0].max()) + 1, [int(s) for s in sizes]
        key = c[:, 0] * self.T + c[:, 1]
        n = torch.bincount(key, minlength=self.V * self.T).float()
        self.mean = torch.zeros(self.V * self.T, a.shape[1]).index_add_(0, key, a) / n.clamp_min(1)[:, None]
        self.value_mean: list[Tensor] = []
        self.value_seen: list[Tensor] = []
        for j, size in enumerate(self.sizes):
            k2 = key * size + f[rows, j]
            cnt = torch.bincount(k2, minlength=self.V * self.T * size).float()
            m = torch.zeros(self.V * self.T * size, a.shape[1]).index_add_(0, k2, a) / cnt.clamp_min(1)[:, None]
            self.value_mean.append(m.view(self.V * self.T, size, -1))
            self.value_seen.append((cnt > 0).view(self.V * self.T, size))

    def _keys(self, tokens: Tensor, positions: Tensor) -> Tensor:
        return tokens.long().clamp(0, self.V - 1) * self.T + positions.long().clamp(0, self.T - 1)

    def _check(self, factor: int) -> None:
        if not 0 <= factor < len(self.sizes):
            raise ValueError(f"factor {factor} out of range 0..{len(self.sizes) - 1}")

    def nearest_value(self, act: Tensor, tokens: Tensor, positions: Tensor, factor: int) -> Tensor:
        """``[B, T]``: the value of ``factor`` whose (token, position) mean each vector is nearest to
        (−1 where no value of that (token, position) was seen)."""
        self._check(factor)
        k = self._keys(tokens, positions)
        means, seen = self.value_mean[factor].to(act.device)[k], self.value_seen[factor].to(act.device)[k]
        dist = (act.float()[..., None, :] - means).pow(2).sum(-1).masked_fill(~seen, float("inf"))
        return torch.where(seen.any(-1), dist.argmin(-1), -1)

    def shift(self, act: Tensor, tokens: Tensor, positions: Tensor, factor: int, to: Tensor, frm: Tensor | None = None):
        """The vectors moved to value ``to`` (``[B]`` or ``[B, T]``) of ``factor``: + (mean of ``to`` −
        mean of ``frm``) per (token, position), ``frm`` None meaning the (token, position) mean (a
        steering push); 0 where either mean was never seen."""
        self._check(factor)
        k = self._keys(tokens, positions)
        means, seen = self.value_mean[factor].to(act.device)[k], self.value_seen[factor].to(act.device)[k]
        to = torch.as_tensor(to, device=act.device).long()
        to = to[:, None].expand(k.shape) if to.ndim == 1 else to.expand(k.shape)
        if (to < 0).any() or (to >= self.sizes[factor]).any():
            raise ValueError(f"values of factor {factor} must be in 0..{self.sizes[factor] - 1}")

        def pick(v: Tensor) -> tuple[Tensor, Tensor]:
            vv = v.clamp_min(0)
            m = means.gather(-2, vv[..., None, None].expand(*vv.shape, 1, means.shape[-1]))[..., 0, :]
            return m, seen.gather(-1, vv[..., None])[..., 0] & (v >= 0)

        target, ok = pick(to)
        if frm is None:
            origin = self.mean.to(act.device)[k]
        else:
            origin, ok2 = pick(torch.as_tensor(frm, device=act.device).long().expand(k.shape))
            ok = ok & ok2
        return act.float() + torch.where(ok[..., None], target - origin, 0.0)

    def steerer(self, adapter: Adapter, hook: str, strength: float = 2.0):
        """A :data:`~probe_disentangle.steering.Steerer`: every position but BOS pushed ``strength``
        × (mean of the value − mean) of its (token, position)."""

        @contextlib.contextmanager
        def steer(factor: int, value: int) -> Iterator[None]:
            self._check(factor)

            def edit(act: Tensor, tok: Tensor, pos: Tensor) -> Tensor:
                to = torch.full(tok.shape, int(value), device=act.device)
                return act + strength * (self.shift(act, tok, pos, factor, to) - act)

            with positionwise_edit(adapter, hook, edit):
                yield

        return steer

    def interchanger(self, adapter: Adapter, hook: str, world):
        """An :data:`~probe_disentangle.steering.Interchanger`: the source's value of the factor (read
        by the world's parser) replaces, at every position but BOS of base row i, the value that
        position is nearest to."""
        names = world.factor_names

        @contextlib.contextmanager
        def inter(factor: int, sources) -> Iterator[None]:
            self._check(int(factor))
            parsed = parse_all(world, np.asarray(sources))
            if any(p is None for p in parsed):
                raise ValueError("a source sentence does not parse; sources must be rendered by the world")
            src = torch.tensor([p[names[int(factor)]] for p in parsed])

            def edit(act: Tensor, tok: Tensor, pos: Tensor) -> Tensor:
                if len(act) != len(src):
                    raise ValueError(f"the host ran {len(act)} rows inside an interchange with {len(src)} sources")
                base = self.nearest_value(act, tok, pos, int(factor))
                return self.shift(act, tok, pos, int(factor), src.to(act.device), base)

            with positionwise_edit(adapter, hook, edit):
                yield

        return inter
