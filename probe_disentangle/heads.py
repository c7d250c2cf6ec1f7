"""Lightweight disentangling heads for activation vectors ``[B, d]``.

``VAEHead``: an MLP encoder/decoder trained with any VAE-family objective of
:mod:`probe_disentangle.losses` (β-VAE, capacity annealing, β-TCVAE, FactorVAE, DIP-VAE).
``InfoGANHead``: generator G(noise, codes) → activation, discriminator D, and a Q network on
D's trunk that recovers the codes (Chen et al. 2016).

Each head defines its own training step (FactorVAE and InfoGAN alternate two optimisers) and
never imports the trainer: the trainer passes in an ``optimize(name, loss)`` callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import losses
from .registry import register
from .vae_family import Optimize, VAEFamilyMixin, build_objective, clamp_logvar, posterior_params
from .vae_family import first as _first


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


# --------------------------------------------------------------------------------------------
# VAE head
# --------------------------------------------------------------------------------------------


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


@dataclass
class VAEHeadConfig:
    """An MLP VAE head on ``d_in``-dimensional activations.

    ``objective`` is one of ``losses.OBJECTIVES`` (beta_vae, capacity, beta_tcvae, factor_vae,
    dip_vae) and ``objective_args`` its keyword arguments (e.g. ``{"beta": 6, "dataset_size": N}``).
    ``decoder="additive"`` decodes with :class:`AdditiveDecoder` (a ``decoder_hidden``-wide MLP
    per latent, summed) instead of one MLP over all latents.
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

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.latent_dim < 1 or self.hidden < 1 or self.depth < 0:
            raise ValueError("d_in, latent_dim and hidden must be ≥ 1 and depth ≥ 0")
        _check_decoder(self.decoder, self.decoder_hidden)
        if self.objective not in losses.OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {sorted(losses.OBJECTIVES)}")


@register("vae_head", VAEHeadConfig)
class VAEHead(VAEFamilyMixin, nn.Module):
    """MLP VAE head: encode activations to a Gaussian posterior over ``latent_dim`` latents."""

    def __init__(self, config: VAEHeadConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = mlp(c.d_in, 2 * c.latent_dim, c.hidden, c.depth, c.activation)
        if c.decoder == "additive":
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


# --------------------------------------------------------------------------------------------
# Joint (categorical + Gaussian) VAE head
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# InfoGAN head
# --------------------------------------------------------------------------------------------


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
        noise, cat, cont = self.sample_codes(real.shape[0], real.device)
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
