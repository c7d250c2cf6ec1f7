"""``InfoGANHead``: generator G(noise, codes) → activation, discriminator D, and a Q network on
D's trunk that recovers the codes (Chen et al. 2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import distributed, losses
from ..registry import register
from ..vae_family import Optimize
from ..vae_family import first as _first
from .common import _check_width, mlp


@dataclass
class InfoGANHeadConfig:
    """InfoGAN on activation vectors: categorical codes (their cardinalities) and continuous
    codes ~ Uniform(−1, 1), plus ``noise_dim`` incompressible noise."""

    d_in: int
    noise_dim: int = 16
    categorical: list = field(default_factory=lambda: [10])
    continuous: int = 2
    hidden: int = 256
    depth: int = 2
    lambda_cat: float = 1.0
    lambda_cont: float = 0.1

    def __post_init__(self) -> None:
        if any(int(c) < 2 for c in self.categorical):
            raise ValueError(f"categorical codes need ≥ 2 values each, got {self.categorical}")
        if not self.categorical and self.continuous < 1:
            raise ValueError("an InfoGAN head needs at least one categorical or continuous code")
        self.categorical = [int(c) for c in self.categorical]


@register("infogan_head", InfoGANHeadConfig)
class InfoGANHead(nn.Module):
    """G(noise, codes) → activation; D and Q share a trunk (Chen et al. 2016, sec. 5)."""

    data_parallel_rows = True  # the step's codes are drawn for the global batch (distributed.py)

    def __init__(self, config: InfoGANHeadConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.code_dim = sum(c.categorical) + c.continuous
        self.generator = mlp(c.noise_dim + self.code_dim, c.d_in, c.hidden, c.depth, "relu")
        self.trunk = mlp(c.d_in, c.hidden, c.hidden, max(c.depth - 1, 0), "leaky_relu")
        self.trunk_act = nn.LeakyReLU(0.2)
        self.d_head = nn.Linear(c.hidden, 1)
        self.q_head = nn.Linear(c.hidden, sum(c.categorical) + 2 * c.continuous)
        self.objective = losses.InfoGANLoss(c.lambda_cat, c.lambda_cont, cont_entropy=c.continuous * math.log(2.0))

    # codes ----------------------------------------------------------------------------------
    def sample_codes(self, n: int, device=None, generator: torch.Generator | None = None):
        """(noise [n, noise_dim], categorical indices [n, n_cat], continuous [n, continuous])."""
        c = self.config
        device = device or next(self.parameters()).device
        noise = torch.randn(n, c.noise_dim, generator=generator, device="cpu").to(device)
        cat = (
            torch.stack([torch.randint(k, (n,), generator=generator) for k in c.categorical], 1).to(device)
            if c.categorical
            else torch.zeros(n, 0, dtype=torch.long, device=device)
        )
        cont = (torch.rand(n, c.continuous, generator=generator) * 2 - 1).to(device)
        return noise, cat, cont

    def _code_vector(self, cat: Tensor, cont: Tensor) -> Tensor:
        parts = [nn.functional.one_hot(cat[:, i], k).to(cont.dtype) for i, k in enumerate(self.config.categorical)]
        return torch.cat(parts + [cont], dim=1)

    def generate(self, noise: Tensor, cat: Tensor, cont: Tensor) -> Tensor:
        """Activations ``[n, d_in]`` for the given noise and codes."""
        return self.generator(torch.cat([noise, self._code_vector(cat, cont)], dim=1))

    # discriminator / Q ----------------------------------------------------------------------
    def _features(self, x: Tensor) -> Tensor:
        return self.trunk_act(self.trunk(x))

    def discriminate(self, x: Tensor) -> Tensor:
        return self.d_head(self._features(x)).squeeze(-1)

    def q(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Q's (categorical logits per code, continuous mean, continuous logvar)."""
        out = self.q_head(self._features(x))
        logits, i = [], 0
        for k in self.config.categorical:
            logits.append(out[:, i : i + k])
            i += k
        mean, logvar = out[:, i : i + self.config.continuous], out[:, i + self.config.continuous :]
        return logits, mean, logvar.clamp(-10, 10)

    def encode(self, x: Tensor) -> Tensor:
        """Codes Q reads from activations: categorical argmax indices then continuous means, ``[B, n_codes]``."""
        x = _check_width(x, self.config.d_in, "InfoGANHead.encode")
        logits, mean, _ = self.q(x)
        cats = [lg.argmax(-1, keepdim=True).to(mean.dtype) for lg in logits]
        return torch.cat(cats + [mean], dim=1)

    # training -------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        d_params = [*self.trunk.parameters(), *self.d_head.parameters(), *self.q_head.parameters()]
        return {
            "disc": torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999)),
            "gen": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
        }

    def _info(self, fake: Tensor, cat: Tensor, cont: Tensor) -> losses.LossResult:
        logits, mean, logvar = self.q(fake)
        fake_logits = self.discriminate(fake)
        return self.objective.generator_loss(
            fake_logits, logits, [cat[:, i] for i in range(cat.shape[1])], mean, logvar, cont
        )

    def training_step(self, batch, step: int, optimize: Optimize) -> losses.LossResult:
        real = _check_width(_first(batch), self.config.d_in, "InfoGANHead")
        # in a data-parallel step: the global batch's codes, this rank's rows of them
        noise, cat, cont = distributed.local_rows(
            *self.sample_codes(distributed.global_rows(real.shape[0]), real.device)
        )
        fake = self.generate(noise, cat, cont)
        # D and Q step: tell real from fake, and recover the codes of (detached) fakes
        d = self.objective.discriminator_loss(self.discriminate(real), self.discriminate(fake.detach()))
        info_d = self._info(fake.detach(), cat, cont)
        q_term = (
            self.objective.lambda_cat * info_d.terms["info_cat"]
            + self.objective.lambda_cont * info_d.terms["info_cont"]
        )
        optimize("disc", losses.LossResult(d.total - q_term, {**d.terms, "info_q": q_term}))
        # G step: fool D and keep the codes recoverable
        g = self._info(fake, cat, cont)
        optimize("gen", g)
        terms = {**d.terms, **g.terms}
        return losses.LossResult(d.total + g.total, terms)
