"""``CausalVAEHead``: latents that are causally related concepts (Yang et al., CVPR 2021,
"CausalVAE: Disentangled Representation Learning via Neural Structural Causal Models").

The encoder gives a Gaussian posterior over exogenous factors ε (one scalar per concept); a linear
structural causal model turns them into the concepts, z = Aᵀz + ε, i.e. z = (I − Aᵀ)⁻¹ε (the
paper's causal layer, its Eq. 1), with A a learned weighted adjacency (``A[i, j]``: the weight of
concept i in concept j; the diagonal is fixed at 0). The decoder maps z back to the activation.

Objective (the paper's Eq. 9–11, with the linear SCM):

- reconstruction of x from z;
- β · [KL(q(ε|x) ‖ N(0, I)) + KL(q(z|x, u) ‖ p(z|u))], the concept prior conditioned on the labels
  u of the concepts, p(z_i|u_i) = N(u_i, ``prior_std``²) (the paper's label-conditioned prior;
  q(z) is the Gaussian push-forward of q(ε), its covariance taken diagonal here and passed
  through the SCM without gradient to A, which is fitted by the means: a variance term through
  the SCM would shrink every edge towards 0 — measured: 1.0 instead of 1.5 on a two-variable SCM);
- α · ‖u − Aᵀu‖²: the SCM must also explain the labels (the paper's l_u, linear);
- acyclicity: h(A) = tr(exp(A ∘ A)) − d, zero exactly when A is a DAG (NOTEARS, Zheng et al. 2018;
  the paper uses the same constraint in DAG-GNN's polynomial form), enforced by an augmented
  Lagrangian λ·h + ρ/2·h², the multiplier λ raised by ρ·h after every step (a buffer, so a
  resumed run carries it), plus an L1 penalty on A.

Labels come as the batch's second tensor, ``(x, u)`` with u ``[B, latent_dim]`` standardised
(e.g. to [−1, 1]); without labels the concept prior is N(0, I) and the SCM is not identifiable
(the paper's point: the causal concepts need that supervision).

``intervene(z, {i: v})`` is do(z_i = v) as a counterfactual: the exogenous noise of the encoding
is kept (abduction, ε = z − Aᵀz), the edges into i are cut and ε_i replaced by v, and the SCM is
solved again, so i's descendants move and its ancestors do not. ``Probe`` edits of this head go
through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import losses
from ..registry import register
from ..vae_family import clamp_logvar, posterior_params
from .common import AdditiveDecoder, _check_decoder, _check_width, mlp

__all__ = ["CausalVAEConfig", "CausalVAEHead", "acyclicity", "structural_hamming_distance"]


def acyclicity(a: Tensor) -> Tensor:
    """h(A) = tr(exp(A ∘ A)) − d: 0 iff the weighted graph A has no directed cycle, > 0 otherwise."""
    return torch.matrix_exp(a * a).diagonal().sum() - a.shape[0]


def structural_hamming_distance(learned, true) -> int:
    """Edges to add, remove or reverse to turn ``learned`` (0/1 ``[d, d]``) into ``true``; a reversed
    edge counts once."""
    import numpy as np

    a, b = np.asarray(learned).astype(bool), np.asarray(true).astype(bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"graphs must be [d, d] of the same size, got {a.shape} and {b.shape}")
    diff = a != b
    reversed_ = diff & diff.T & (a != a.T) & (b != b.T) & a
    return int(diff.sum() - reversed_.sum())


@dataclass
class CausalVAEConfig:
    """A CausalVAE head on ``d_in``-dimensional activations with ``latent_dim`` scalar concepts."""

    d_in: int
    latent_dim: int = 4
    hidden: int = 256
    depth: int = 2
    activation: str = "silu"
    beta: float = 1.0
    label_weight: float = 1.0  # α: ‖u − Aᵀu‖²
    prior_std: float = 1.0  # std of the label-conditioned concept prior N(u, prior_std²), the paper's
    dag_rho: float = 1.0  # augmented Lagrangian: ρ/2·h² and the multiplier's step
    dag_max_multiplier: float = 1e4
    sparsity: float = 1e-3  # L1 weight on A
    decoder: str = "mlp"
    decoder_hidden: int = 32

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.latent_dim < 2 or self.hidden < 1 or self.depth < 0:
            raise ValueError("d_in and hidden must be ≥ 1, latent_dim ≥ 2 (a graph needs two concepts), depth ≥ 0")
        if self.prior_std <= 0 or self.beta < 0 or self.label_weight < 0 or self.dag_rho < 0 or self.sparsity < 0:
            raise ValueError("prior_std must be > 0 and beta, label_weight, dag_rho, sparsity ≥ 0")
        _check_decoder(self.decoder, self.decoder_hidden)


@register("causal_vae_head", CausalVAEConfig)
class CausalVAEHead(nn.Module):
    """Encoder → exogenous ε → linear SCM z = Aᵀz + ε → decoder (see the module docstring)."""

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = mlp(c.d_in, 2 * c.latent_dim, c.hidden, c.depth, c.activation)
        if c.decoder == "additive":
            self.decoder = AdditiveDecoder(c.latent_dim, c.d_in, c.decoder_hidden)
        else:
            self.decoder = mlp(c.latent_dim, c.d_in, c.hidden, c.depth, c.activation)
        self.adjacency = nn.Parameter(torch.zeros(c.latent_dim, c.latent_dim))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(c.latent_dim))
        self.register_buffer("dag_multiplier", torch.zeros(()))

    # ---------------------------------------------------------------- the SCM
    @property
    def A(self) -> Tensor:
        """The weighted adjacency ``[d, d]`` (``A[i, j]``: weight of concept i in concept j)."""
        return self.adjacency * self.off_diagonal

    def _solve(self, a: Tensor) -> Tensor:
        """C = (I − Aᵀ)⁻¹, so z = C ε as columns, z = ε Cᵀ as rows."""
        eye = torch.eye(a.shape[0], device=a.device, dtype=a.dtype)
        return torch.linalg.inv(eye - a.T)

    def exogenous(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance of ε, each ``[B, latent_dim]``."""
        x = _check_width(x, self.config.d_in, "CausalVAEHead")
        mu, logvar = posterior_params(self.encoder, x).chunk(2, dim=-1)
        return mu, clamp_logvar(logvar)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and (diagonal) log-variance of the concepts z = (I − Aᵀ)⁻¹ε."""
        mu_e, logvar_e = self.exogenous(x)
        c = self._solve(self.A)
        return mu_e @ c.T, torch.log((logvar_e.exp() @ (c * c).T).clamp_min(1e-12))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def intervene(self, z: Tensor, values: dict[int, float | Tensor]) -> Tensor:
        """do(z_i = v) for every ``i: v`` of ``values``, as a counterfactual of the codes ``z``
        ``[B, d]``: the encoding's exogenous noise kept, edges into the intervened concepts cut,
        the SCM solved again (descendants move, ancestors do not)."""
        if not values:
            return z
        a = self.A.to(z.dtype)
        eps = z - z @ a  # abduction: z = Aᵀz + ε, as rows
        cut = a.clone()
        for i, v in values.items():
            cut[:, int(i)] = 0.0
            eps = eps.clone()
            eps[:, int(i)] = v.to(z) if isinstance(v, Tensor) else float(v)
        return eps @ self._solve(cut).T

    def propagate_edits(self, z: Tensor, z_edited: Tensor, edited: list[int]) -> Tensor:
        """What a ``Probe`` edit means for this head: the edited concepts as interventions."""
        return self.intervene(z, {i: z_edited[:, i] for i in edited})

    # ---------------------------------------------------------------- training
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = losses.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar, z

    def loss(self, batch, step: int = 0) -> losses.LossResult:
        """The objective on a batch ``x`` or ``(x, u)`` (no optimiser step)."""
        c = self.config
        x, u = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) and len(batch) > 1 else (batch, None)
        if isinstance(x, (tuple, list)):
            x = x[0]
        x = _check_width(x, c.d_in, "CausalVAEHead")
        mu_e, logvar_e = self.exogenous(x)
        a = self.A
        cmat = self._solve(a)
        eps = losses.reparameterize(mu_e, logvar_e) if self.training else mu_e
        z = eps @ cmat.T
        mu_z = mu_e @ cmat.T
        # the diagonal of C Σ_ε Cᵀ; A gets no gradient through it: a linear SCM's weights are the
        # regression of each concept on its parents, fitted by the means (the KL of ε, l_u), and a
        # variance term through C would shrink every edge towards 0
        cd = cmat.detach()
        var_z = (logvar_e.exp() @ (cd * cd).T).clamp_min(1e-12)
        rec = losses.reconstruction_loss(self.decode(z), x).mean()
        kl_e = losses.kl_normal_standard(mu_e, logvar_e).sum(1).mean()
        terms: dict[str, Tensor] = {"recon": rec, "kl_exogenous": kl_e}
        if u is not None:
            u = torch.as_tensor(u).to(x).reshape(len(x), -1)
            if u.shape[1] != c.latent_dim:
                raise ValueError(f"labels u must be [batch, {c.latent_dim}] (one per concept), got {tuple(u.shape)}")
            pv = c.prior_std**2
            kl_z = 0.5 * (var_z / pv + (mu_z - u) ** 2 / pv - 1 - torch.log(var_z / pv)).sum(1).mean()
            label = ((u - u @ a) ** 2).sum(1).mean()
            terms.update(kl_concepts=kl_z, label_scm=label)
        else:
            kl_z = losses.kl_normal_standard(mu_z, torch.log(var_z)).sum(1).mean()
            label = x.new_zeros(())
            terms["kl_concepts"] = kl_z
        h = acyclicity(a)
        dag = self.dag_multiplier * h + 0.5 * c.dag_rho * h * h + c.sparsity * a.abs().sum()
        terms["acyclicity"] = h
        total = rec + c.beta * (kl_e + kl_z) + c.label_weight * label + dag
        return losses.LossResult(total, terms)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vae": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_step(self, batch, step: int, optimize) -> losses.LossResult:
        """One update of everything, then the acyclicity multiplier's dual ascent λ ← λ + ρ·h(A)."""
        result = self.loss(batch, step)
        optimize("vae", result)
        with torch.no_grad():
            h = acyclicity(self.A)
            self.dag_multiplier.add_(self.config.dag_rho * h).clamp_(max=self.config.dag_max_multiplier)
        return result
