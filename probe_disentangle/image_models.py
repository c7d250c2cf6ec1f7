"""Standalone image models trained with the shared objectives of :mod:`probe_disentangle.losses`.

``ConvVAE``: the convolutional encoder/decoder of Burgess et al. 2018 (appendix A.1) and
Locatello et al. 2019 (disentanglement_lib ``conv_encoder`` / ``deconv_decoder``): four 4×4
stride-2 convolutions with 32-32-64-64 channels and ReLU, a 256-unit dense layer, then the
2·K posterior parameters; the decoder mirrors it. Any VAE-family objective (β-VAE, capacity
annealing, β-TCVAE, FactorVAE, DIP-VAE) with a Bernoulli (logits, the default for binary
images) or Gaussian decoder.

``InfoGAN``: a DCGAN-style generator and discriminator whose trunk is shared with the Q network
that recovers the latent codes (Chen et al. 2016, appendix C.1), for 64×64 images (sprites) or
8×8 images (scikit-learn's bundled digits).

Both models define their own training step and never import the trainer: the trainer passes in
an ``optimize(name, loss)`` callback (see :mod:`probe_disentangle.heads`).

References
----------
- Burgess et al. 2018, "Understanding disentangling in β-VAE" (arXiv:1804.03599), app. A.1.
- Locatello et al. 2019, "Challenging common assumptions in the unsupervised learning of
  disentangled representations" (ICML), table 1 (the shared encoder/decoder).
- Chen et al. 2016, "InfoGAN: interpretable representation learning by information maximizing
  generative adversarial nets" (NeurIPS), sec. 5 and app. C.
- Radford et al. 2016, "Unsupervised representation learning with deep convolutional
  generative adversarial networks" (ICLR): the DCGAN layer pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses
from .heads.spatial import BroadcastDecoder
from .registry import register
from .vae_family import Optimize, VAEFamilyMixin, build_objective, clamp_logvar, posterior_params
from .vae_family import first as _first

__all__ = [
    "DIGITS_TRAIN",
    "ConvVAE",
    "ConvVAEConfig",
    "InfoGAN",
    "InfoGANConfig",
    "VAEFamilyMixin",
    "as_image_batch",
    "random_shift",
]


def as_image_batch(x: Tensor, channels: int, size: int, dtype: torch.dtype, what: str) -> Tensor:
    """Check ``x`` is ``[B, channels, size, size]`` and return it as float ``dtype``.

    Bool images become 0/1 and uint8 images are divided by 255, so binary sprites can be kept
    in memory as bool (8× smaller than float32) and converted per batch.
    """
    if x.ndim != 4 or tuple(x.shape[1:]) != (channels, size, size):
        raise ValueError(f"{what} expects images of shape [batch, {channels}, {size}, {size}], got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255.0
    return x.to(dtype)


def random_shift(x: Tensor, shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image ``[B, C, H, W]`` moved by its own random (dy, dx) ∈ [−shift, shift]², zeros filling in."""
    if shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy, dx = torch.randint(0, 2 * shift + 1, (2, b), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None]  # [B, 1, H, 1]
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :]  # [B, 1, 1, W]
    return padded[
        torch.arange(b, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows,
        cols,
    ]


def _check_power_of_two(size: int, lo: int, what: str) -> None:
    if size < lo or size & (size - 1):
        raise ValueError(f"{what} must be a power of two ≥ {lo}, got {size}")


# --------------------------------------------------------------------------------------------
# The VAE-family training logic shared by every model with encode/decode/objective
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Convolutional VAE
# --------------------------------------------------------------------------------------------

DECODERS = ("deconv", "broadcast")


@dataclass
class ConvVAEConfig:
    """A convolutional VAE on ``[C, S, S]`` images.

    Defaults are the Burgess et al. / disentanglement_lib network for 64×64 images. ``channels``
    are the widths of the stride-2 convolutions (each halves the side, so ``image_size`` must be
    divisible by 2**len(channels)); ``hidden`` the dense layer. ``objective`` is one of
    ``losses.OBJECTIVES`` and ``objective_args`` its keyword arguments, as in ``VAEHeadConfig``;
    ``reconstruction`` defaults to ``"bernoulli"`` (decoder outputs logits) — pass
    ``{"reconstruction": "gaussian"}`` for grey-level images. For β-TCVAE pass ``dataset_size``.

    ``decoder="broadcast"`` swaps the dense layers of the decoder for a spatial broadcast (Watters
    et al. 2019): z is tiled over a ``broadcast_side``² grid with two coordinate channels, passed
    through ``broadcast_convs`` 3×3 convolutions of ``broadcast_width`` channels, then up-sampled by
    the last transposed convolutions of the default decoder. Position becomes a shift of ramps over
    the coordinates, which favours one latent per axis; at side 16 it costs what the dense decoder does.
    """

    in_channels: int = 1
    image_size: int = 64
    latent_dim: int = 10
    channels: list = field(default_factory=lambda: [32, 32, 64, 64])
    hidden: int = 256
    objective: str = "beta_tcvae"
    objective_args: dict = field(default_factory=dict)
    decoder: str = "deconv"
    broadcast_side: int = 16
    broadcast_convs: int = 2
    broadcast_width: int = 64

    def __post_init__(self) -> None:
        self.channels = [int(c) for c in self.channels]
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose one of {DECODERS}")
        if self.decoder == "broadcast":
            side, n = self.broadcast_side, len(self.channels)
            ups = (self.image_size // side).bit_length() - 1 if side > 0 else -1
            if side < 1 or self.image_size % side or 2**ups != self.image_size // side or ups > n:
                raise ValueError(
                    f"broadcast_side {side} must be image_size {self.image_size} divided by a power of two "
                    f"≤ 2**{n} (one transposed convolution per halving), e.g. {self.image_size // 4}"
                )
            if self.broadcast_convs < 1 or self.broadcast_width < 1:
                raise ValueError("broadcast_convs and broadcast_width must be ≥ 1")
        if self.in_channels < 1 or self.latent_dim < 1 or self.hidden < 1:
            raise ValueError("in_channels, latent_dim and hidden must be ≥ 1")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of positive widths, got {self.channels}")
        n = len(self.channels)
        if self.image_size < 2**n or self.image_size % 2**n:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**{n} = {2**n} ({n} stride-2 convolutions)"
            )
        if self.objective not in losses.OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {sorted(losses.OBJECTIVES)}")


@register("conv_vae", ConvVAEConfig)
class ConvVAE(VAEFamilyMixin, nn.Module):
    """Conv encoder → Gaussian posterior over ``latent_dim`` latents → deconv decoder (Burgess et al. 2018)."""

    def __init__(self, config: ConvVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.channels)
        self._side = c.image_size // 2**n  # spatial side after the encoder's convolutions
        flat = c.channels[-1] * self._side**2
        enc: list[nn.Module] = []
        d = c.in_channels
        for w in c.channels:
            enc += [nn.Conv2d(d, w, 4, stride=2, padding=1), nn.ReLU()]
            d = w
        self.encoder = nn.Sequential(
            *enc, nn.Flatten(), nn.Linear(flat, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 2 * c.latent_dim)
        )
        widths = [*reversed(c.channels[:-1]), c.in_channels]  # 64 → 64, 32, 32, C for the default
        if c.decoder == "broadcast":
            ups = (c.image_size // c.broadcast_side).bit_length() - 1
            self.decoder_broadcast = BroadcastDecoder(
                c.latent_dim,
                c.broadcast_side,
                c.broadcast_convs,
                c.broadcast_width,
                widths[len(widths) - ups :],
                c.in_channels,
            )
        else:
            self.decoder_fc = nn.Sequential(
                nn.Linear(c.latent_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, flat), nn.ReLU()
            )
            dec: list[nn.Module] = []
            d = c.channels[-1]
            for i, w in enumerate(widths):
                dec.append(nn.ConvTranspose2d(d, w, 4, stride=2, padding=1))
                if i < len(widths) - 1:
                    dec.append(nn.ReLU())
                d = w
            self.decoder_conv = nn.Sequential(*dec)
        args = {"reconstruction": "bernoulli", **c.objective_args}
        self.objective = build_objective(c.objective, args, c.latent_dim)

    @property
    def bernoulli(self) -> bool:
        """True when the decoder outputs Bernoulli logits."""
        return self.objective.reconstruction == "bernoulli"

    def _prepare(self, x: Tensor) -> Tensor:
        c = self.config
        return as_image_batch(x, c.in_channels, c.image_size, self.encoder[0].weight.dtype, "ConvVAE")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each ``[B, latent_dim]``."""
        mu, logvar = posterior_params(self.encoder, self._prepare(x)).chunk(2, dim=-1)
        return mu, clamp_logvar(logvar)

    @torch.no_grad()
    def encode_posteriors(self, images, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances, each ``[N, K]`` (eval mode, in batches), of images as
        a tensor or array: what Chen et al.'s MIG estimator (``metrics.posterior_mig``) reads."""
        self.eval()
        images = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
        device = next(self.parameters()).device
        out = [self.encode(images[i : i + batch].to(device)) for i in range(0, len(images), batch)]
        return torch.cat([m for m, _ in out]).cpu().numpy(), torch.cat([v for _, v in out]).cpu().numpy()

    def encode_means(self, images, batch: int = 512) -> np.ndarray:
        """Posterior means ``[N, K]`` of images as a tensor or array: the codes the metrics score."""
        return self.encode_posteriors(images, batch)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output ``[B, C, S, S]``: Bernoulli logits, or Gaussian means."""
        c = self.config
        if c.decoder == "broadcast":
            return self.decoder_broadcast(z)
        h = self.decoder_fc(z).view(-1, c.channels[-1], self._side, self._side)  # (B, C_last, s, s)
        return self.decoder_conv(h)

    def decode_image(self, z: Tensor) -> Tensor:
        """Images for latents ``z``: pixel probabilities (Bernoulli) or means (Gaussian)."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.bernoulli else out

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of ``x``: probabilities for Bernoulli, means for Gaussian."""
        mu, _ = self.encode(x)
        return self.decode_image(mu)

    def kl_per_latent(self, x: Tensor) -> Tensor:
        """Mean over ``x`` of each latent's KL(q(z_k|x) || N(0, 1)), ``[latent_dim]``: which latents are used."""
        mu, logvar = self.encode(x)
        return losses.kl_normal_standard(mu, logvar).mean(0)


# --------------------------------------------------------------------------------------------
# InfoGAN
# --------------------------------------------------------------------------------------------


@dataclass
class InfoGANConfig:
    """InfoGAN on ``[channels, image_size, image_size]`` images in [0, 1].

    Codes: one categorical code per entry of ``categorical`` (its number of values) and
    ``continuous`` codes ~ Uniform(−1, 1), plus ``noise_dim`` incompressible noise. ``image_size``
    8 (scikit-learn digits: the generator starts at 2×2) or any power of two from 16 (starts at
    4×4; 64 for sprites). ``width`` is the channel width of the outermost convolution, doubled
    towards the inside; ``hidden`` the dense layer (1024 in Chen et al.'s MNIST network),
    ``q_hidden`` Q's own dense layer (128 in the paper). ``lambda_cat``/``lambda_cont`` weigh the
    mutual-information terms (the paper uses 1 for discrete codes, smaller for continuous ones).
    ``lambda_real`` > 0 also has Q maximise, on real images, the mutual information between them
    and its categorical codes (``losses.categorical_mi_on_data``: confident and balanced codes) or,
    with ``real_shift`` = s > 0, between the codes of each image and of a copy shifted by up to s
    pixels (``losses.paired_categorical_mi``: also the same code for both). Neither is in the
    paper; both are off by default and use no labels.
    The generator's learning rate is the trainer's ``lr`` × ``gen_lr_scale``: Chen et al. train D
    at 2e-4 and G at 1e-3 (app. C), hence the default 5.
    """

    image_size: int = 64
    channels: int = 1
    noise_dim: int = 62
    categorical: list = field(default_factory=lambda: [10])
    continuous: int = 2
    width: int = 64
    hidden: int = 1024
    q_hidden: int = 128
    lambda_cat: float = 1.0
    lambda_cont: float = 0.1
    lambda_real: float = 0.0
    real_shift: int = 0
    gen_lr_scale: float = 5.0

    def __post_init__(self) -> None:
        self.categorical = [int(c) for c in self.categorical]
        if not self.gen_lr_scale > 0:
            raise ValueError(f"gen_lr_scale must be > 0, got {self.gen_lr_scale}")
        if self.lambda_real < 0 or (self.lambda_real > 0 and not self.categorical):
            raise ValueError(f"lambda_real must be ≥ 0, and > 0 only with a categorical code; got {self.lambda_real}")
        if not 0 <= self.real_shift < self.image_size // 2:
            raise ValueError(f"real_shift must be in [0, image_size / 2), got {self.real_shift}")
        _check_power_of_two(self.image_size, 8, "image_size")
        if self.image_size > 256:
            raise ValueError(f"image_size must be at most 256, got {self.image_size}")
        if self.channels < 1 or self.width < 1 or self.hidden < 1 or self.q_hidden < 1 or self.noise_dim < 0:
            raise ValueError("channels, width, hidden and q_hidden must be ≥ 1 and noise_dim ≥ 0")
        if any(c < 2 for c in self.categorical):
            raise ValueError(f"categorical codes need ≥ 2 values each, got {self.categorical}")
        if not self.categorical and self.continuous < 1:
            raise ValueError("an InfoGAN needs at least one categorical or continuous code")
        if self.continuous < 0:
            raise ValueError(f"continuous must be ≥ 0, got {self.continuous}")

    @classmethod
    def digits(cls, **overrides) -> InfoGANConfig:
        """Chen et al.'s MNIST InfoGAN sized for the 8×8 digits (one 10-way code, two continuous codes, 62 noise
        dims), with Q also pairing each real digit with a copy shifted by up to a pixel (``lambda_real`` 1,
        ``real_shift`` 1): this lifts the code's match with the digit class from a median of 84.6 % to 90.3 %
        over eight seeds, though seeds still spread (72.8–94.8 %; benchmarks/RESULTS.md).
        ``lambda_real=0`` gives the paper's InfoGAN.

        Train it with :data:`DIGITS_TRAIN` on :func:`probe_disentangle.worlds.digit_images`.
        """
        recipe = {"image_size": 8, "channels": 1, "noise_dim": 62, "categorical": [10], "continuous": 2}
        return cls(**recipe | {"lambda_real": 1.0, "real_shift": 1} | overrides)


DIGITS_TRAIN: dict = {"steps": 3000, "batch_size": 128, "lr": 2e-4, "grad_clip": None}
"""Trainer settings of the digits InfoGAN: Chen et al.'s Adam rates (D and Q 2e-4, G 5× that), batch 128, no clipping."""


@register("infogan", InfoGANConfig)
class InfoGAN(nn.Module):
    """DCGAN-style G(noise, codes) → image; D and Q share a convolutional trunk (Chen et al. 2016, app. C.1).

    G: dense ``hidden`` → dense to a s×s map → stride-2 transposed convolutions (BatchNorm, ReLU)
    → sigmoid. D: stride-2 convolutions (LeakyReLU 0.1, BatchNorm after the first) → dense
    ``hidden`` → the real/fake logit; Q: a ``q_hidden`` layer on the same features → categorical
    logits, continuous means and log-variances.
    """

    def __init__(self, config: InfoGANConfig) -> None:
        super().__init__()
        self.config = c = config
        self._start = 2 if c.image_size == 8 else 4
        n = int(math.log2(c.image_size // self._start))  # stride-2 layers
        widths = [c.width * 2**i for i in range(n)]  # outermost first: w, 2w, 4w, ...
        self._inner = widths[-1]
        flat = self._inner * self._start**2
        self.code_dim = sum(c.categorical) + c.continuous
        # generator: (noise, codes) → (B, inner, s, s) → ... → (B, C, S, S)
        self.gen_fc = nn.Sequential(
            nn.Linear(c.noise_dim + self.code_dim, c.hidden),
            nn.BatchNorm1d(c.hidden),
            nn.ReLU(),
            nn.Linear(c.hidden, flat),
            nn.BatchNorm1d(flat),
            nn.ReLU(),
        )
        g: list[nn.Module] = []
        outs = [*reversed(widths[:-1]), c.channels]
        d = self._inner
        for i, w in enumerate(outs):
            g.append(nn.ConvTranspose2d(d, w, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                g += [nn.BatchNorm2d(w), nn.ReLU()]
            d = w
        self.gen_conv = nn.Sequential(*g)
        # discriminator trunk: (B, C, S, S) → features (B, hidden)
        t: list[nn.Module] = []
        d = c.channels
        for i, w in enumerate(widths):
            t.append(nn.Conv2d(d, w, 4, stride=2, padding=1))
            if i > 0:
                t.append(nn.BatchNorm2d(w))
            t.append(nn.LeakyReLU(0.1))
            d = w
        t += [nn.Flatten(), nn.Linear(flat, c.hidden), nn.BatchNorm1d(c.hidden), nn.LeakyReLU(0.1)]
        self.trunk = nn.Sequential(*t)
        self.d_head = nn.Linear(c.hidden, 1)
        self.q_net = nn.Sequential(
            nn.Linear(c.hidden, c.q_hidden),
            nn.BatchNorm1d(c.q_hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(c.q_hidden, sum(c.categorical) + 2 * c.continuous),
        )
        # differential entropy of Uniform(−1, 1)^K is K·log 2
        self.objective = losses.InfoGANLoss(c.lambda_cat, c.lambda_cont, cont_entropy=c.continuous * math.log(2.0))

    # codes ----------------------------------------------------------------------------------
    def sample_codes(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(noise [n, noise_dim] ~ N(0, I), categorical indices [n, n_cat] uniform, continuous [n, continuous] ~ U(−1, 1))."""
        c = self.config
        device = device or next(self.parameters()).device
        noise = torch.randn(n, c.noise_dim, generator=generator).to(device)
        if c.categorical:
            cat = torch.stack([torch.randint(k, (n,), generator=generator) for k in c.categorical], 1).to(device)
        else:
            cat = torch.zeros(n, 0, dtype=torch.long, device=device)
        cont = (torch.rand(n, c.continuous, generator=generator) * 2 - 1).to(device)
        return noise, cat, cont

    def _code_vector(self, cat: Tensor, cont: Tensor) -> Tensor:
        parts = [F.one_hot(cat[:, i].long(), k).to(cont.dtype) for i, k in enumerate(self.config.categorical)]
        return torch.cat([*parts, cont], dim=1)

    def generate(self, noise: Tensor, cat: Tensor, cont: Tensor) -> Tensor:
        """Images ``[n, C, S, S]`` in [0, 1] for noise ``[n, noise_dim]``, categorical indices ``[n, n_cat]``
        and continuous codes ``[n, continuous]``."""
        c = self.config
        if noise.shape[1] != c.noise_dim or cat.shape[1] != len(c.categorical) or cont.shape[1] != c.continuous:
            raise ValueError(
                f"generate expects noise [n, {c.noise_dim}], cat [n, {len(c.categorical)}], cont [n, {c.continuous}]; "
                f"got {tuple(noise.shape)}, {tuple(cat.shape)}, {tuple(cont.shape)}"
            )
        h = self.gen_fc(torch.cat([noise, self._code_vector(cat, cont.to(noise.dtype))], dim=1))
        h = h.view(-1, self._inner, self._start, self._start)  # (n, inner, s, s)
        return torch.sigmoid(self.gen_conv(h))

    # discriminator / Q ----------------------------------------------------------------------
    def _prepare(self, x: Tensor) -> Tensor:
        c = self.config
        return as_image_batch(x, c.channels, c.image_size, self.d_head.weight.dtype, "InfoGAN")

    def _split_q(self, out: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        logits, i = [], 0
        for k in self.config.categorical:
            logits.append(out[:, i : i + k])
            i += k
        k = self.config.continuous
        return logits, out[:, i : i + k], out[:, i + k :].clamp(-10, 10)

    def discriminate(self, x: Tensor) -> Tensor:
        """Real/fake logits ``[B]``."""
        return self.d_head(self.trunk(self._prepare(x))).squeeze(-1)

    def q(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Q's (categorical logits per code, continuous means, continuous log-variances)."""
        return self._split_q(self.q_net(self.trunk(self._prepare(x))))

    def code_probabilities(self, x: Tensor) -> list[Tensor]:
        """Q's posterior over each categorical code, ``[B, k]`` per code (softmax of its logits)."""
        return [lg.softmax(-1) for lg in self.q(x)[0]]

    def encode(self, x: Tensor) -> Tensor:
        """The codes Q reads from images: categorical argmax indices, then continuous means, ``[B, n_codes]``."""
        logits, mean, _ = self.q(x)
        cats = [lg.argmax(-1, keepdim=True).to(mean.dtype) for lg in logits]
        return torch.cat([*cats, mean], dim=1)

    # training -------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adam β = (0.5, 0.999) for D+Q at ``lr`` and for G at ``lr × gen_lr_scale`` (Radford et al. 2016; Chen et al. 2016 app. C)."""
        d_params = [*self.trunk.parameters(), *self.d_head.parameters(), *self.q_net.parameters()]
        g_params = [*self.gen_fc.parameters(), *self.gen_conv.parameters()]
        return {
            "disc": torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999)),
            "gen": torch.optim.Adam(g_params, lr=lr * self.config.gen_lr_scale, betas=(0.5, 0.999)),
        }

    def _heads(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        h = self.trunk(x)
        logits, mean, logvar = self._split_q(self.q_net(h))
        return self.d_head(h).squeeze(-1), logits, mean, logvar

    def training_step(self, batch, step: int, optimize: Optimize) -> losses.LossResult:
        """D+Q step (real vs. detached fakes, minus λ·L_I), then G step (fool D, minus λ·L_I) (Chen et al. 2016, eq. 6)."""
        real = self._prepare(_first(batch))
        noise, cat, cont = self.sample_codes(real.shape[0], real.device)
        fake = self.generate(noise, cat, cont)
        cats = [cat[:, i] for i in range(cat.shape[1])]
        # D and Q: tell real from fake, and recover the codes of the (detached) fakes
        real_h = self.trunk(real)
        real_logits = self.d_head(real_h).squeeze(-1)
        fake_logits, logits, mean, logvar = self._heads(fake.detach())
        d = self.objective.discriminator_loss(real_logits, fake_logits)
        info = self.objective.generator_loss(fake_logits, logits, cats, mean, logvar, cont)
        q_term = (
            self.objective.lambda_cat * info.terms["info_cat"] + self.objective.lambda_cont * info.terms["info_cont"]
        )
        extra = {}
        if self.config.lambda_real > 0:
            real_cat = self._split_q(self.q_net(real_h))[0]
            if self.config.real_shift > 0:
                moved = self._split_q(self.q_net(self.trunk(random_shift(real, self.config.real_shift))))[0]
                pairs = zip(real_cat, moved, strict=True)
                info_real = sum((losses.paired_categorical_mi(a, b) for a, b in pairs), q_term.new_zeros(()))
            else:
                info_real = sum((losses.categorical_mi_on_data(lg) for lg in real_cat), q_term.new_zeros(()))
            q_term = q_term + self.config.lambda_real * info_real
            extra = {"info_real": info_real.detach()}
        optimize("disc", losses.LossResult(d.total - q_term, {**d.terms, "info_q": q_term, **extra}))
        # G: fool D and keep the codes recoverable
        fake_logits, logits, mean, logvar = self._heads(fake)
        g = self.objective.generator_loss(fake_logits, logits, cats, mean, logvar, cont)
        optimize("gen", g)
        return losses.LossResult(d.total + g.total, {**d.terms, **g.terms, "info_q": q_term.detach(), **extra})
