"""The VAE-family training logic shared by activation heads and image models: forward,
loss, optimisers and the training step (with FactorVAE's second optimiser)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from . import distributed, losses

LOGVAR_RANGE = (-15.0, 10.0)
"""Posterior log-variances are clamped here: beyond it exp(−logvar) overflows float32 inside
the pairwise densities of β-TCVAE (seen as a non-finite gradient after a few hundred steps on a
transformer's activations), and no useful posterior lies outside it."""


def clamp_logvar(logvar: Tensor) -> Tensor:
    return logvar.clamp(*LOGVAR_RANGE)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def posterior_params(encoder: nn.Sequential, x: Tensor) -> Tensor:
    """``encoder(x)`` with its last layer (the posterior's parameters) in float32 under autocast.

    In bf16 the means keep 8 bits: at |μ| = 2 that is an error of about 0.008, which the pairwise
    densities of β-TCVAE divide by the posterior's standard deviation (0.16 σ at σ = 0.05), so
    sharp posteriors would see noisy MI and TC estimates. The trunk keeps autocast's speed."""
    *trunk, last = encoder
    h = x
    for layer in trunk:
        h = layer(h)
    if not (isinstance(last, nn.Linear) and _autocast_on(h.device.type)):
        return last(h)
    with torch.autocast(h.device.type, enabled=False):
        bias = None if last.bias is None else last.bias.float()
        return nn.functional.linear(h.float(), last.weight.float(), bias)


def build_objective(name: str, args: dict, latent_dim: int) -> nn.Module:
    """``losses.build_objective`` for a model with ``latent_dim`` latents: the objectives that keep
    per-latent state (FactorVAE's discriminator, a β-TCVAE bank) are told the width."""
    args = dict(args)
    if name == "factor_vae" or (name == "beta_tcvae" and args.get("bank")):
        args.setdefault("latent_dim", latent_dim)
    return losses.build_objective(name, **args)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside the block (gradients still flow through it)."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


Optimize = Callable[[str, losses.LossResult], None]
"""``optimize(name, result)``: zero the named optimiser's grads, backpropagate ``result.total``
(the trainer checks every term is finite first, naming the bad one), clip and step."""


def first(batch) -> Tensor:
    """The input tensor of a batch that may be ``(x, labels, ...)``."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class VAEFamilyMixin:
    """forward / loss / optimisers / training step for a VAE with any ``losses.OBJECTIVES`` objective.

    The host class provides ``encode(x) -> (mu, logvar)``, ``decode(z)``, ``objective`` and
    ``_prepare(x)`` (input checks and dtype). FactorVAE adds a second optimiser for its
    discriminator (Kim & Mnih 2018, Algorithm 2). Shared by the MLP head (``heads.VAEHead``) and
    the image models (``image_models.ConvVAE``).
    """

    objective: nn.Module
    # every per-row random draw of the step goes through the data-parallel row helpers, so the
    # trainer may run it data-parallel (distributed.py)
    data_parallel_rows = True

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(reconstruction, mu, logvar, z): z is a reparameterised sample in training, mu in eval."""
        mu, logvar = self.encode(x)
        z = losses.reparameterize(mu, logvar, distributed.randn_rows(mu)) if self.training else mu
        return self.decode(z), mu, logvar, z

    def loss(self, x: Tensor, step: int = 0) -> losses.LossResult:
        """The objective's loss on one batch (no optimiser step); a pair-trained head
        (``config.pairs``) takes pairs ``[B, 2, ...]`` and gives the Ada-GVAE loss."""
        if self._paired():
            x, recon, mu, logvar, z, share = self._pair_forward(x)
            result = self.objective(x, recon, mu, logvar, z, step=step)
            result.terms["shared"] = share.float().mean()
            return result
        x = self._prepare(x)
        recon, mu, logvar, z = self(x)
        return self.objective(x, recon, mu, logvar, z, step=step)

    def _paired(self) -> bool:
        return bool(getattr(getattr(self, "config", None), "pairs", False))

    def _pair_forward(self, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Ada-GVAE (Locatello et al. 2020): both halves of each pair encoded, the latents whose
        posteriors differ least averaged (:func:`losses.ada_gvae_posteriors`), each half decoded
        from a sample of its own posterior. The two halves come back stacked as one batch of
        ``2B`` rows ``(x, recon, mu, logvar, z)`` — the objective then scores them as it scores
        any batch (the β-VAE objective makes this exactly Ada-GVAE) — with the share mask ``[B, k]``."""
        if not isinstance(pairs, Tensor) or pairs.ndim < 3 or pairs.shape[1] != 2:
            raise ValueError(
                f"a pair-trained head (pairs=True) takes batches of pairs [batch, 2, ...], got "
                f"{tuple(getattr(pairs, 'shape', ()))}: stream them from ActivationStore(pairs=True) "
                "(Probe.fit(pairs=True)), or build the head with pairs=False for single vectors"
            )
        x = self._prepare(torch.cat([pairs[:, 0], pairs[:, 1]]))
        mu, logvar = self.encode(x)
        b = pairs.shape[0]
        m1, l1, m2, l2, share = losses.ada_gvae_posteriors(mu[:b], logvar[:b], mu[b:], logvar[b:])
        mu, logvar = torch.cat([m1, m2]), torch.cat([l1, l2])
        z = losses.reparameterize(mu, logvar, distributed.randn_rows(mu)) if self.training else mu
        return x, self.decode(z), mu, logvar, z, share

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adam for the VAE; FactorVAE's discriminator gets its own Adam with β = (0.5, 0.9) (Kim & Mnih 2018)."""
        vae_params = [p for n, p in self.named_parameters() if not n.startswith("objective.")]
        opts = {"vae": torch.optim.Adam(vae_params, lr=lr)}
        if isinstance(self.objective, losses.FactorVAELoss):
            opts["disc"] = torch.optim.Adam(self.objective.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
        return opts

    def training_step(self, batch, step: int, optimize: Optimize) -> losses.LossResult:
        """One VAE update, then (FactorVAE) one discriminator update on the same batch's z.

        In a data-parallel step (``distributed.rows_of``) an objective whose rows are coupled sees
        the global batch's latents (mu, logvar, z all-gathered with autograd; x and recon stay
        local, as they enter only through the reconstruction's mean over rows), one that is a mean
        over rows sees this rank's rows, and FactorVAE's permutation shuffles the global batch's z:
        the update is the single-process one with the same global batch."""
        share = None
        if self._paired():
            x, recon, mu, logvar, z, share = self._pair_forward(first(batch))
        else:
            x = self._prepare(first(batch))
            recon, mu, logvar, z = self(x)
        factor = isinstance(self.objective, losses.FactorVAELoss)
        # the VAE's TC term backpropagates through D into z only: D's own weight gradients would
        # be discarded by its optimiser's zero_grad, so they are not computed
        with _frozen(self.objective.discriminator) if factor else contextlib.nullcontext():
            if distributed.active() is not None and not getattr(self.objective, "rows_additive", False):
                # only the latents travel: x and recon enter every objective through the
                # reconstruction's mean over rows, which the gradient average makes global
                result = self.objective(x, recon, *distributed.gather_rows(mu, logvar, z), step=step)
            else:
                result = self.objective(x, recon, mu, logvar, z, step=step)
            optimize("vae", result)
        if factor:
            permuted = None
            if distributed.active() is not None:
                permuted = distributed.local_rows(losses.permute_dims(distributed.gather_rows(z.detach())))
            disc = self.objective.discriminator_loss(z, permuted=permuted)
            optimize("disc", disc)
            result.terms.update(disc.terms)
        if share is not None:
            result.terms["shared"] = share.float().mean()
        return result
