"""Saves killed mid-write: objects built the same way in the test and in the killed child, and the
child's loop. Imported by the forkserver (cheap children with torch already loaded), so it holds
no pytest code."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from probe_disentangle import Probe, io
from probe_disentangle.heads import VAEHead, VAEHeadConfig
from probe_disentangle.store import Normalizer

D_IN, LATENTS = 48, 6


class Host(nn.Module):
    """A stand-in host: the probe only needs a module at its hook."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(D_IN, D_IN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def head(version: int) -> VAEHead:
    torch.manual_seed(version)
    return VAEHead(VAEHeadConfig(d_in=D_IN, latent_dim=LATENTS, hidden=64, objective="beta_vae"))


def probe(version: int, host: nn.Module | None = None) -> Probe:
    """Probe ``version``: its head, normaliser and reference codes all differ from another version's."""
    p = Probe(host if host is not None else Host(), "layer", head=head(version))
    g = torch.Generator().manual_seed(100 + version)
    p.normalizer = Normalizer(torch.randn(D_IN, generator=g), torch.rand(D_IN, generator=g) + 0.5)
    p.reference_codes = torch.randn(64, LATENTS, generator=g)
    return p


def save_loop(kind: str, folder: str, ready) -> None:
    """Save version 1, then 0, then 1, … over ``folder`` until killed."""
    torch.set_num_threads(1)
    objs = [head(0), head(1)] if kind == "io" else [probe(0), probe(1)]
    ready.set()
    i = 1
    while True:
        if kind == "io":
            io.save(objs[i], folder)
        else:
            objs[i].save_pretrained(Path(folder))
        i = 1 - i
