"""``JointVAEHead``: categorical and Gaussian latents with JointVAE's two capacities (Dupont 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import losses
from ..registry import register
from ..vae_family import Optimize, clamp_logvar, posterior_params
from ..vae_family import first as _first
from .common import AdditiveDecoder, _check_decoder, _check_width, _minibatch_steps, mlp


@dataclass
class JointVAEHeadConfig:
    """A VAE head with categorical latents (their cardinalities) beside ``continuous`` Gaussian
    ones, trained with JointVAE's two capacities (Dupont 2018). For factors that take a few
    discrete values (a word, a class, a tag), which one Gaussian latent holds poorly.
    ``c_disc_max`` defaults to Σ log V, all the categorical codes can hold. ``decoder="additive"``:
    a table per categorical latent and an MLP per Gaussian one, summed (:class:`AdditiveDecoder`).
    ``straight_through`` (default: with the additive decoder) decodes exact one-hot samples in
    training, with the relaxed sample's gradient, so a table learns the values it decodes later."""

    d_in: int
    categorical: list = field(default_factory=lambda: [6] * 8)
    continuous: int = 4
    hidden: int = 256
    depth: int = 2
    activation: str = "silu"
    temperature: float = 0.67
    gamma: float = 30.0
    c_cont_max: float = 5.0
    c_disc_max: float | None = None
    c_steps: int = 2000
    marginal_weight: float = 0.0
    decoder: str = "mlp"
    decoder_hidden: int = 32
    straight_through: bool | None = None

    def __post_init__(self) -> None:
        _check_decoder(self.decoder, self.decoder_hidden)
        if self.straight_through is None:  # a table decoder must learn from the one-hots it decodes
            self.straight_through = self.decoder == "additive"
        self.categorical = [int(c) for c in self.categorical]
        if any(c < 2 for c in self.categorical):
            raise ValueError(f"categorical latents need ≥ 2 values each, got {self.categorical}")
        if not self.categorical and self.continuous < 1:
            raise ValueError("a joint VAE head needs at least one categorical or continuous latent")
        if self.d_in < 1 or self.hidden < 1 or self.depth < 0 or self.continuous < 0 or self.temperature <= 0:
            raise ValueError("d_in and hidden must be ≥ 1, depth and continuous ≥ 0, temperature > 0")
        if self.c_disc_max is None:
            self.c_disc_max = float(sum(math.log(c) for c in self.categorical))


@register("joint_vae_head", JointVAEHeadConfig)
class JointVAEHead(nn.Module):
    """MLP VAE head with categorical and Gaussian latents. Codes (what :meth:`encode` returns and
    :meth:`decode` takes) are ``[B, n_cat + continuous]``: each categorical latent's most likely
    value (as a float index), then the Gaussian means, so an edit sets a category by its index."""

    def __init__(self, config: JointVAEHeadConfig) -> None:
        super().__init__()
        self.config = c = config
        self._n_logits = sum(c.categorical)
        self.encoder = mlp(c.d_in, 2 * c.continuous + self._n_logits, c.hidden, c.depth, c.activation)
        if c.decoder == "additive":
            self.decoder = AdditiveDecoder(c.continuous, c.d_in, c.decoder_hidden, tuple(c.categorical))
        else:
            self.decoder = mlp(self._n_logits + c.continuous, c.d_in, c.hidden, c.depth, c.activation)
        self.objective = losses.JointCapacityLoss(c.gamma, c.c_cont_max, c.c_disc_max, c.c_steps, c.marginal_weight)

    @property
    def latent_dim(self) -> int:
        return len(self.config.categorical) + self.config.continuous

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(mu ``[B, continuous]``, logvar, one logits tensor ``[B, V]`` per categorical latent)."""
        x = _check_width(x, self.config.d_in, "JointVAEHead")
        h = posterior_params(self.encoder, x)
        logits, gauss = h[:, : self._n_logits], h[:, self._n_logits :]
        mu, logvar = gauss.chunk(2, dim=-1)
        return mu, clamp_logvar(logvar), list(logits.split(self.config.categorical, dim=1))

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``[B, n_cat + continuous]``: argmax category indices, then Gaussian means."""
        mu, _, logits = self.posterior(x)
        cats = [lg.argmax(-1, keepdim=True).to(mu.dtype) for lg in logits]
        return torch.cat([*cats, mu], dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Activation ``[B, d_in]`` from codes (category indices are rounded and clamped)."""
        c = self.config
        n_cat = len(c.categorical)
        if codes.ndim != 2 or codes.shape[1] != n_cat + c.continuous:
            raise ValueError(f"codes must be [batch, {n_cat + c.continuous}], got {tuple(codes.shape)}")
        onehots = [
            nn.functional.one_hot(codes[:, i].round().long().clamp(0, v - 1), v).to(codes.dtype)
            for i, v in enumerate(c.categorical)
        ]
        return self.decoder(torch.cat([*onehots, codes[:, n_cat:]], dim=1))

    def loss(self, x: Tensor, step: int = 0) -> losses.LossResult:
        x = _check_width(x, self.config.d_in, "JointVAEHead")
        mu, logvar, logits = self.posterior(x)
        z = losses.reparameterize(mu, logvar) if self.training else mu
        sizes = self.config.categorical
        # one sample op for all latents when they share a cardinality (the step is op-bound)
        flat = [torch.stack(logits, 1)] if len(set(sizes)) == 1 else logits
        if self.training:
            soft = [losses.gumbel_softmax(lg, self.config.temperature, self.config.straight_through) for lg in flat]
        else:
            soft = [nn.functional.one_hot(lg.argmax(-1), lg.shape[-1]).to(mu.dtype) for lg in flat]
        recon = self.decoder(torch.cat([s.flatten(1) for s in soft] + [z], dim=1))
        return self.objective(x, recon, mu, logvar, logits, step=step)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vae": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_step(self, batch, step: int, optimize: Optimize) -> losses.LossResult:
        result = self.loss(_first(batch), step)
        optimize("vae", result)
        return result

    def initialize_from_codes(
        self, x: Tensor, codes: Tensor, steps: int = 300, lr: float = 3e-3, batch_size: int = 512, seed: int = 0
    ) -> dict[str, float]:
        """Start training from given categorical codes ``[N, n_cat]`` of ``x`` ``[N, d_in]`` (e.g.
        :func:`probe_disentangle.isa.isa_codes`): the encoder learns to predict them (cross-entropy)
        and the decoder to reconstruct ``x`` from their one-hots. A linear additive decoder is
        solved exactly (least squares). Returns the final accuracy and reconstruction loss."""
        c = self.config
        n_cat = len(c.categorical)
        x = _check_width(x, c.d_in, "JointVAEHead")
        codes = torch.as_tensor(codes).long().to(x.device)
        if codes.shape != (len(x), n_cat):
            raise ValueError(
                f"codes must be [{len(x)}, {n_cat}] (one column per categorical latent), got {tuple(codes.shape)}"
            )
        if bool((codes < 0).any()) or any(int(codes[:, i].max()) >= v for i, v in enumerate(c.categorical)):
            raise ValueError(f"codes must lie in 0..V−1 for the latents' cardinalities {c.categorical}")
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        x = x.float()
        onehot = torch.cat([nn.functional.one_hot(codes[:, i], v).float() for i, v in enumerate(c.categorical)], 1)
        exact = isinstance(self.decoder, AdditiveDecoder) and self.decoder.n_scalar == 0
        if exact:  # x ≈ b + onehot @ T: ridge least squares on the centred one-hots
            with torch.no_grad():
                oc = onehot - onehot.mean(0)
                gram = oc.T @ oc + 1e-3 * torch.eye(oc.shape[1], device=x.device)
                table = torch.linalg.solve(gram, oc.T @ (x - x.mean(0)))  # [Σ V, d]
                self.decoder.table.weight.copy_(table.T)
                self.decoder.bias.copy_(x.mean(0) - onehot.mean(0) @ table)
        params = list(self.encoder.parameters()) + ([] if exact else list(self.decoder.parameters()))

        def loss(idx: Tensor) -> Tensor:
            _, _, logits = self.posterior(x[idx])
            out = sum(nn.functional.cross_entropy(lg, codes[idx, i]) for i, lg in enumerate(logits))
            if not exact:
                out = out + losses.reconstruction_loss(self.decode_onehot(onehot[idx]), x[idx]).mean() / c.d_in
            return out

        _minibatch_steps(self, params, loss, len(x), steps, lr, batch_size, seed, x.device)
        with torch.no_grad():
            _, _, logits = self.posterior(x)
            acc = float(torch.stack([lg.argmax(-1) == codes[:, i] for i, lg in enumerate(logits)], 1).float().mean())
            rec = float(losses.reconstruction_loss(self.decode_onehot(onehot), x).mean())
        return {"code_accuracy": acc, "recon": rec}

    def decode_onehot(self, onehot: Tensor) -> Tensor:
        """Decode concatenated one-hots (and any Gaussian latents at 0)."""
        z = onehot.new_zeros(len(onehot), self.config.continuous)
        return self.decoder(torch.cat([onehot, z], dim=1))
