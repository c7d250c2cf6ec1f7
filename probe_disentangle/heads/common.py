"""Pieces every head shares: MLPs, the additive decoder, input checks, the minibatch loop of
``initialize_from_codes``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


def mlp(d_in: int, d_out: int, hidden: int, depth: int, act: str = "silu") -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden``, then a linear output."""
    acts = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}
    if act not in acts:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(acts)}")
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), acts[act]()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


DECODERS = ("mlp", "additive")


class AdditiveDecoder(nn.Module):
    """dec(z) = b + Σ_k f_k(z_k): one term per latent, so changing one latent moves the output by
    a vector that does not depend on the others. A steering edit of latent k is then the same
    change in every context, and a latent can no longer hide a mixture of two factors behind a
    decoder that entangles them (additive decoders make latents identifiable up to permutation
    and per-latent reparametrisation: Lachapelle et al. 2023). Categorical latents enter as
    one-hot groups through a table each (their first ``sum(onehot_sizes)`` input columns);
    every other input column is a scalar latent with its own MLP of width ``hidden``, or its own
    direction when ``hidden=0`` (then the decoder is linear: each latent a fixed vector, each
    category a fixed point, and one scalar latent cannot trace a curve through several factors'
    combinations)."""

    def __init__(self, n_scalar: int, d_out: int, hidden: int = 32, onehot_sizes: tuple[int, ...] = ()) -> None:
        super().__init__()
        if n_scalar < 0 or hidden < 0 or d_out < 1:
            raise ValueError("n_scalar and hidden must be ≥ 0, d_out ≥ 1")
        self.n_onehot = int(sum(onehot_sizes))
        self.n_scalar, self.hidden = n_scalar, hidden
        self.table = nn.Linear(self.n_onehot, d_out, bias=False) if self.n_onehot else None
        if hidden:
            self.w1 = nn.Parameter(torch.randn(n_scalar, hidden))
            self.b1 = nn.Parameter(torch.randn(n_scalar, hidden) * 0.5)
            self.w2 = nn.Parameter(torch.randn(n_scalar, hidden, d_out) / math.sqrt(hidden * max(1, n_scalar)))
        else:
            self.w2 = nn.Parameter(torch.randn(n_scalar, d_out) / math.sqrt(max(1, n_scalar)))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.n_onehot + self.n_scalar:
            raise ValueError(f"AdditiveDecoder expects [batch, {self.n_onehot + self.n_scalar}], got {tuple(z.shape)}")
        out = self.bias.expand(z.shape[0], -1)
        if self.table is not None:
            out = out + self.table(z[:, : self.n_onehot])
        if self.n_scalar and self.hidden:
            h = nn.functional.silu(z[:, self.n_onehot :, None] * self.w1 + self.b1)  # [B, K, hidden]
            out = out + torch.einsum("bkh,khd->bd", h, self.w2)
        elif self.n_scalar:
            out = out + z[:, self.n_onehot :] @ self.w2
        return out


def _check_decoder(decoder: str, decoder_hidden: int) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {list(DECODERS)}")
    if decoder_hidden < 0:
        raise ValueError(f"decoder_hidden must be ≥ 0 (0: one direction per latent), got {decoder_hidden}")


def _check_width(x: Tensor, d_in: int, what: str) -> Tensor:
    """``x`` checked as activation vectors ``[batch, d_in]`` of floats; float64 comes back as
    float32 (the heads' precision), integers are refused: they are token ids or labels, which
    belong to the host or the metrics, not to a head."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects activation vectors as a torch tensor [batch, {d_in}], got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"{what} expects activations of shape [batch, {d_in}], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{what} expects floating-point activations, got {x.dtype}; integer tensors are token ids or labels — "
            "run the host on them (Probe.fit) or cast real activations with .float()"
        )
    return x.float() if x.dtype == torch.float64 else x


def _minibatch_steps(
    module: nn.Module,
    params: Iterable[nn.Parameter],
    loss: Callable[[Tensor], Tensor],
    n: int,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> None:
    """``steps`` Adam steps on ``loss(idx)`` over seeded random minibatches of row indices
    ``0..n-1``, with ``module`` in training mode; left in eval mode. The fitting loop of the
    heads' ``initialize_from_codes``."""
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g).to(device)
        value = loss(idx)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    module.eval()
