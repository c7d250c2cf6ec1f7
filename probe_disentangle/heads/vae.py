"""``VAEHead``: an MLP encoder/decoder trained with any VAE-family objective of
:mod:`probe_disentangle.losses` (β-VAE, capacity annealing, β-TCVAE, FactorVAE, DIP-VAE)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import losses
from ..registry import register
from ..vae_family import VAEFamilyMixin, build_objective, clamp_logvar, posterior_params
from .common import AdditiveDecoder, _check_decoder, _check_width, _minibatch_steps, mlp
from .spatial import MapDecoder, check_map_shape, conv_encoder


@dataclass
class VAEHeadConfig:
    """An MLP VAE head on ``d_in``-dimensional activations.

    ``objective`` is one of ``losses.OBJECTIVES`` (beta_vae, capacity, beta_tcvae, factor_vae,
    dip_vae) and ``objective_args`` its keyword arguments (e.g. ``{"beta": 6, "dataset_size": N}``).
    ``decoder="additive"`` decodes with :class:`AdditiveDecoder` (a ``decoder_hidden``-wide MLP
    per latent, summed) instead of one MLP over all latents. ``pairs=True`` trains on pairs of
    vectors ``[B, 2, d_in]`` that differ in some factors, unnamed (Ada-GVAE, Locatello et al.
    2020; exactly so with ``objective="beta_vae"``; streamed by ``ActivationStore(pairs=True)``);
    it encodes single vectors as any head does.

    On spatial maps (a UNet block's output collected flattened, ``map_shape = [C, H, W]`` with
    ``C·H·W = d_in``), ``encoder="conv"`` reads the map with stride-2 convolutions of
    ``conv_width`` channels and ``decoder="broadcast"`` writes it with a spatial broadcast decoder
    (``depth`` convolutions of ``conv_width`` channels; :mod:`.spatial` says why an MLP decoder
    cannot move an object in a map). Inputs and outputs stay flattened vectors.
    """

    d_in: int
    latent_dim: int = 10
    hidden: int = 256
    depth: int = 2
    activation: str = "silu"
    objective: str = "beta_tcvae"
    objective_args: dict = field(default_factory=dict)
    decoder: str = "mlp"
    decoder_hidden: int = 32
    pairs: bool = False
    encoder: str = "mlp"
    map_shape: list[int] | None = None
    conv_width: int = 64

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.latent_dim < 1 or self.hidden < 1 or self.depth < 0:
            raise ValueError("d_in, latent_dim and hidden must be ≥ 1 and depth ≥ 0")
        if self.decoder != "broadcast":
            _check_decoder(self.decoder, self.decoder_hidden)
        if self.encoder not in ("mlp", "conv"):
            raise ValueError(f"unknown encoder {self.encoder!r}; choose 'mlp' or 'conv' (needs map_shape)")
        spatial = self.encoder == "conv" or self.decoder == "broadcast"
        if spatial and self.map_shape is None:
            raise ValueError(
                f"encoder={self.encoder!r}, decoder={self.decoder!r} read the activations as maps: pass "
                "map_shape=[C, H, W] of one map (C·H·W = d_in)"
            )
        if self.map_shape is not None:
            self.map_shape = list(check_map_shape(self.map_shape, self.d_in))
        if self.conv_width < 1:
            raise ValueError(f"conv_width must be ≥ 1, got {self.conv_width}")
        if self.decoder == "broadcast" and self.depth < 1:
            raise ValueError("decoder='broadcast' needs depth ≥ 1 (its 3×3 convolutions)")
        if self.objective not in losses.OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {sorted(losses.OBJECTIVES)}")


@register("vae_head", VAEHeadConfig)
class VAEHead(VAEFamilyMixin, nn.Module):
    """MLP VAE head: encode activations to a Gaussian posterior over ``latent_dim`` latents."""

    def __init__(self, config: VAEHeadConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.encoder == "conv":
            self.encoder = conv_encoder(tuple(c.map_shape), 2 * c.latent_dim, c.conv_width, c.hidden)
        else:
            self.encoder = mlp(c.d_in, 2 * c.latent_dim, c.hidden, c.depth, c.activation)
        if c.decoder == "broadcast":
            self.decoder = MapDecoder(c.latent_dim, tuple(c.map_shape), c.conv_width, c.depth)
        elif c.decoder == "additive":
            self.decoder = AdditiveDecoder(c.latent_dim, c.d_in, c.decoder_hidden)
        else:
            self.decoder = mlp(c.latent_dim, c.d_in, c.hidden, c.depth, c.activation)
        self.objective = build_objective(c.objective, c.objective_args, c.latent_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each ``[B, latent_dim]``."""
        x = _check_width(x, self.config.d_in, "VAEHead.encode")
        mu, logvar = posterior_params(self.encoder, x).chunk(2, dim=-1)
        return mu, clamp_logvar(logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Reconstructed activation ``[B, d_in]`` (logits for a Bernoulli objective)."""
        return self.decoder(z)

    def _prepare(self, x: Tensor) -> Tensor:
        x = _check_width(x, self.config.d_in, "VAEHead")
        return x

    def initialize_from_codes(
        self,
        x: Tensor,
        codes: Tensor,
        spread: float = 1.5,
        std: float = 0.05,
        steps: int = 600,
        lr: float = 3e-3,
        batch_size: int = 512,
        seed: int = 0,
    ) -> dict[str, float]:
        """Start training from categorical codes ``[N, m]`` of ``x`` (m ≤ latent_dim; e.g.
        :func:`probe_disentangle.isa.isa_codes`): latent j's posterior mean learns code j's values
        spaced evenly over [−spread, spread] with standard deviation ``std``, the decoder learns to
        reconstruct ``x`` from those targets, and latents beyond m learn 0. Returns the final
        squared error of the means against their targets and the reconstruction loss."""
        k = self.config.latent_dim
        x = _check_width(x, self.config.d_in, "VAEHead")
        codes = torch.as_tensor(codes).long().to(x.device)
        if codes.ndim != 2 or codes.shape[0] != len(x) or not 1 <= codes.shape[1] <= k:
            raise ValueError(f"codes must be [{len(x)}, m] with 1 ≤ m ≤ latent_dim = {k}, got {tuple(codes.shape)}")
        if bool((codes < 0).any()):
            raise ValueError("codes must be category indices ≥ 0")
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        x = x.float()
        half = (codes.amax(0) / 2).clamp_min(0.5)  # (V − 1) / 2 per code
        target = x.new_zeros(len(x), k)
        target[:, : codes.shape[1]] = (codes.float() - half) / half * spread

        def loss(idx: Tensor) -> Tensor:
            mu, logvar = self.encode(x[idx])
            fit = ((mu - target[idx]) ** 2).sum(1).mean() + ((logvar - 2 * math.log(std)) ** 2).mean()
            return fit + losses.reconstruction_loss(self.decode(target[idx]), x[idx]).mean() / self.config.d_in

        _minibatch_steps(self, self.parameters(), loss, len(x), steps, lr, batch_size, seed, x.device)
        with torch.no_grad():
            mu, _ = self.encode(x)
            return {
                "mean_error": float(((mu - target) ** 2).sum(1).mean()),
                "recon": float(losses.reconstruction_loss(self.decode(target), x).mean()),
            }
