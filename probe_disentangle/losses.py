"""The core loss module: one set of disentangling objectives for image models and activation heads.

Pure tensor functions plus small objective classes. Every objective returns a :class:`LossResult`:
the scalar to minimise plus every named term (``recon``, ``kl``, ``mi``, ``tc``, ``dwkl``,
``capacity``, ``disc``, ``info``, ...) for logging. Inputs are ``[B, ...]`` batches of any shape
(images or activation vectors); latents are ``[B, K]``.

This module imports nothing from the rest of the package, except that on CUDA
:func:`log_qz` lazily imports the leaf module :mod:`probe_disentangle.kernels` (a fused Triton
kernel, itself importing nothing from the package); the blocked PyTorch path here is its
fallback and reference.

References
----------
- Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (Gaussian KL, reparameterisation).
- Higgins et al. 2017, "β-VAE: Learning basic visual concepts with a constrained variational
  framework" (ICLR).
- Burgess et al. 2018, "Understanding disentangling in β-VAE" (arXiv:1804.03599), eq. (8).
- Chen et al. 2018, "Isolating sources of disentanglement in VAEs" (NeurIPS), eqs. (2), (4),
  appendix C (MWS and MSS estimators).
- Kim & Mnih 2018, "Disentangling by factorising" (ICML), eq. (2) and Algorithm 2.
- Kumar et al. 2018, "Variational inference of disentangled latent concepts from unlabeled
  observations" (ICLR), eqs. (6)-(9) (DIP-VAE I and II).
- Chen et al. 2016, "InfoGAN" (NeurIPS), eqs. (4)-(6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "LossResult",
    "gaussian_log_density",
    "kl_normal_standard",
    "reconstruction_loss",
    "reparameterize",
    "permute_dims",
    "mss_log_weights",
    "log_qz",
    "log_qz_dense",
    "total_correlation",
    "tc_decomposition",
    "dip_covariance",
    "dip_penalty",
    "categorical_mi_lower_bound",
    "gaussian_mi_lower_bound",
    "BetaVAELoss",
    "CapacityLoss",
    "BetaTCVAELoss",
    "FactorVAELoss",
    "DIPVAELoss",
    "InfoGANLoss",
    "OBJECTIVES",
    "build_objective",
]


@dataclass
class LossResult:
    """The scalar to minimise and every named term, for logging."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Detached float values of ``total`` and every term."""
        out = {"loss": float(self.total.detach())}
        out.update({k: float(v.detach()) for k, v in self.terms.items()})
        return out


# --------------------------------------------------------------------------------------------
# Densities, KL, reconstruction
# --------------------------------------------------------------------------------------------


def gaussian_log_density(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mu, exp(logvar)) (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar))


def kl_normal_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-dimension KL(N(mu, exp(logvar)) || N(0, 1)), closed form (Kingma & Welling 2014, app. B).

    Returns ``[B, K]``; sum over dimensions and average over the batch for the ELBO term.
    """
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)


def reconstruction_loss(recon: Tensor, x: Tensor, distribution: str = "gaussian", sigma: float = 1.0) -> Tensor:
    """Negative log-likelihood of ``x`` under the decoder, summed over features: ``[B]``.

    ``gaussian``: N(x; recon, sigma² I) without the constant, i.e. ½‖x − recon‖² / sigma².
    ``bernoulli``: ``recon`` are logits; binary cross-entropy summed over features (the
    disentanglement_lib / Burgess et al. choice for binary images).
    """
    if recon.shape != x.shape:
        raise ValueError(f"reconstruction shape {tuple(recon.shape)} does not match input {tuple(x.shape)}")
    if distribution == "gaussian":
        per = 0.5 * (recon - x) ** 2 / sigma**2
    elif distribution == "bernoulli":
        per = F.binary_cross_entropy_with_logits(recon, x, reduction="none")
    else:
        raise ValueError(f"unknown reconstruction distribution {distribution!r}; use 'gaussian' or 'bernoulli'")
    return per.flatten(1).sum(1)


def kl_categorical_uniform(logits: Tensor) -> Tensor:
    """KL(Cat(softmax(logits)) || Uniform(V)) = Σ q log q + log V, per row: ``[B]``."""
    logq = torch.log_softmax(logits.float(), dim=-1)
    return (logq.exp() * logq).sum(-1) + math.log(logits.shape[-1])


def gumbel_softmax(logits: Tensor, temperature: float, hard: bool = False) -> Tensor:
    """A relaxed one-hot sample (Jang et al. 2017; Maddison et al. 2017): softmax((logits + g) / τ)
    with Gumbel noise g; differentiable in ``logits``. ``hard``: the exact one-hot of the same
    sample in the forward pass, the relaxed sample's gradient in the backward (straight-through)."""
    u = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    soft = torch.softmax((logits - torch.log(-torch.log(u))) / temperature, dim=-1)
    if not hard:
        return soft
    onehot = nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return onehot + soft - soft.detach()


class JointCapacityLoss(nn.Module):
    """recon + γ·|KL_cont − C_cont(t)| + γ·|KL_disc − C_disc(t)| (Dupont 2018, JointVAE, eq. 7):
    separate capacities for the Gaussian and the categorical latents, each rising linearly over
    ``c_steps``. The discrete capacity is capped at Σ log V (what the codes can hold).
    ``marginal_weight`` adds w·KL(q̄(c) || uniform) for each categorical latent, q̄ the batch's mean
    posterior: the per-sample KL is blind to a value no input uses (two values merged), this term
    is not (our addition; 0 gives the paper's objective)."""

    def __init__(
        self,
        gamma: float = 30.0,
        c_cont_max: float = 5.0,
        c_disc_max: float = 10.0,
        c_steps: int = 2000,
        marginal_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if c_steps <= 0:
            raise ValueError("c_steps must be positive (the number of steps over which the capacities rise)")
        self.gamma, self.c_cont_max, self.c_disc_max, self.c_steps = gamma, c_cont_max, c_disc_max, c_steps
        self.marginal_weight = marginal_weight

    def forward(
        self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, logits: list[Tensor], step: int = 0
    ) -> LossResult:
        rec = reconstruction_loss(recon, x).mean()
        kl_cont = kl_normal_standard(mu, logvar).sum(1).mean() if mu.shape[1] else rec.new_zeros(())
        groups = _same_size_groups(logits)
        kl_disc = sum((kl_categorical_uniform(g).sum(-1).mean() for g in groups), rec.new_zeros(()))
        frac = min(1.0, step / self.c_steps)
        c_cont, c_disc = frac * self.c_cont_max, frac * self.c_disc_max
        total = rec + self.gamma * ((kl_cont - c_cont).abs() + (kl_disc - c_disc).abs())
        terms = {"recon": rec, "kl_cont": kl_cont, "kl_disc": kl_disc, "capacity_disc": rec.new_tensor(c_disc)}
        if self.marginal_weight and logits:
            # KL(q̄(c) || uniform) of the batch's mean posterior: a confident code that leaves a
            # value unused pays here, although its per-sample KL already meets the capacity
            marg = rec.new_zeros(())
            for g in groups:
                mean_q = torch.softmax(g.float(), -1).mean(0).clamp_min(1e-12)  # [n, V]
                marg = marg + kl_categorical_uniform(mean_q.log()).sum()
            total = total + self.marginal_weight * marg
            terms["kl_marginal"] = marg
        return LossResult(total, terms)


def _same_size_groups(logits: list[Tensor]) -> list[Tensor]:
    """The categorical latents' logits stacked by cardinality, ``[B, n_V, V]`` per size V: one
    softmax per size instead of one per latent (the step of a small head is op-bound)."""
    sizes: dict[int, list[Tensor]] = {}
    for lg in logits:
        sizes.setdefault(lg.shape[-1], []).append(lg)
    return [torch.stack(g, dim=1) for g in sizes.values()]


def reparameterize(mu: Tensor, logvar: Tensor, noise: Tensor | None = None) -> Tensor:
    """z = mu + exp(logvar / 2) · ε, ε ~ N(0, I) (Kingma & Welling 2014); ``noise``: ε drawn by
    the caller (a data-parallel step draws the global batch's and passes its rows)."""
    eps = torch.randn_like(mu) if noise is None else noise
    return mu + torch.exp(0.5 * logvar) * eps


def kl_normal_normal(mu1: Tensor, lv1: Tensor, mu2: Tensor, lv2: Tensor) -> Tensor:
    """Per-dimension KL(N(mu1, e^lv1) ‖ N(mu2, e^lv2)), closed form; ``[B, K]``."""
    return 0.5 * (lv2 - lv1 + (lv1.exp() + (mu1 - mu2).pow(2)) / lv2.exp() - 1)


def ada_gvae_share(mu1: Tensor, lv1: Tensor, mu2: Tensor, lv2: Tensor) -> Tensor:
    """Ada-GVAE's shared latents ``[B, K]`` (Locatello et al. 2020, §4): per pair, those whose
    KL(q1 ‖ q2) is below the midpoint of the pair's largest and smallest — the pair is assumed
    to differ in a few factors, and the latents that differ least are taken to hold the others."""
    kl = kl_normal_normal(mu1, lv1, mu2, lv2)
    tau = 0.5 * (kl.amax(1, keepdim=True) + kl.amin(1, keepdim=True))
    return kl < tau


def ada_gvae_posteriors(
    mu1: Tensor, lv1: Tensor, mu2: Tensor, lv2: Tensor, share: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Each half's posterior with the shared latents (``share``, default :func:`ada_gvae_share`)
    replaced by the pair's average (GVAE: the mean of the two means and of the two variances).
    Returns ``(mu1', lv1', mu2', lv2', share)``."""
    if share is None:
        share = ada_gvae_share(mu1, lv1, mu2, lv2)
    mu = 0.5 * (mu1 + mu2)
    lv = torch.logaddexp(lv1, lv2) - math.log(2.0)  # log of the mean variance
    return (
        torch.where(share, mu, mu1),
        torch.where(share, lv, lv1),
        torch.where(share, mu, mu2),
        torch.where(share, lv, lv2),
        share,
    )


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shuffle each latent dimension independently across the batch (Kim & Mnih 2018, Alg. 1).

    Each column keeps its values (so every marginal is unchanged) while the dependence between
    columns is destroyed: a sample from the product of the marginals of q(z).
    """
    B, K = z.shape
    keys = torch.rand(B, K, generator=generator, device="cpu").to(z.device)
    idx = keys.argsort(dim=0)  # (B, K): an independent permutation per column
    return torch.gather(z, 0, idx)


# --------------------------------------------------------------------------------------------
# Minibatch estimators of log q(z) (Chen et al. 2018, appendix C)
# --------------------------------------------------------------------------------------------


def _log_weight_triplet(batch_size: int, dataset_size: float, estimator: str) -> tuple[float, float, float]:
    """(log w_diag, log w_next, log w_other) of the importance-weight matrix.

    MSS: with M = B − 1, sample i's own posterior has weight 1/N (the diagonal), one other entry
    per row (here column (i + 1) mod B) the stratum weight (N − M)/(N·M), all others 1/M; each
    row sums to 1. MWS: every entry 1/B (see :func:`total_correlation` for the normaliser).
    """
    B, N = batch_size, float(dataset_size)
    if estimator == "mws":
        w = -math.log(B)
        return w, w, w
    if estimator != "mss":
        raise ValueError(f"unknown estimator {estimator!r}; use 'mss' or 'mws'")
    if B < 2:
        raise ValueError("the MSS estimator needs a batch of at least 2 samples; use a larger batch")
    if not N >= B:
        raise ValueError(
            f"dataset_size={dataset_size} is smaller than the batch size {B}; pass the number of "
            "training examples (or math.inf for an unbounded stream)"
        )
    M = B - 1
    log_diag = -math.log(N) if math.isfinite(N) else -math.inf
    if math.isfinite(N):
        strat = (N - M) / (N * M)
        log_next = math.log(strat) if strat > 0 else -math.inf
    else:
        log_next = -math.log(M)
    log_other = -math.log(M)
    if B == 2:  # the only other entry is the stratum entry
        log_other = -math.inf
    return log_diag, log_next, log_other


def mss_log_weights(batch_size: int, dataset_size: float) -> Tensor:
    """The dense ``[B, B]`` log importance-weight matrix of MSS (Chen et al. 2018, app. C.2).

    Diagonal log(1/N), entry (i, (i+1) mod B) log((N − M)/(N·M)), all others log(1/M), M = B − 1.
    (The widely copied reference code writes the 1/N weights into column 0 instead of the
    diagonal; see tests/test_losses.py.) For tests and the dense reference only.
    """
    d, n, o = _log_weight_triplet(batch_size, dataset_size, "mss")
    return _weight_rows(0, batch_size, batch_size, d, n, o, torch.device("cpu"), torch.float64)


def _weight_rows(start: int, stop: int, B: int, d: float, n: float, o: float, device, dtype) -> Tensor:
    """Rows [start, stop) of the log-weight matrix, ``[stop − start, B]``."""
    rows = torch.arange(start, stop, device=device)
    lw = torch.full((stop - start, B), o, device=device, dtype=dtype)
    local = rows - start
    if B > 1:
        lw[local, (rows + 1) % B] = n
    lw[local, rows] = d
    return lw


def _pair_log_density(zi: Tensor, mu: Tensor, logvar: Tensor, inv_var: Tensor) -> Tensor:
    """t[i, j, k] = log N(z_ik; mu_jk, var_jk) for a block of rows: ``[b, B, K]``."""
    return -0.5 * (LOG_2PI + logvar.unsqueeze(0) + (zi.unsqueeze(1) - mu.unsqueeze(0)) ** 2 * inv_var.unsqueeze(0))


def _block_rows(B: int, K: int, max_elements: int) -> int:
    return max(1, min(B, max_elements // max(1, B * K)))


def _weighted_block(zi, mu, lv_c, inv_var, start, B, weights):
    """For rows [start, start + b): (t + lw as [b, B, K] with the marginal weights folded in
    relative to ``lw_other``, joint scores Σ_k t + lw as [b, B], the offset ``lw_other``).

    Every entry of a row carries the weight ``lw_other`` except two, so rather than adding a
    [b, B, K] weight tensor we add the two corrections in place and the constant afterwards.
    """
    d, n, o = weights
    b = zi.shape[0]
    t = (zi.unsqueeze(1) - mu.unsqueeze(0)).square_().mul_(inv_var).add_(lv_c).mul_(-0.5)  # (b, B, K)
    lw = _weight_rows(start, start + b, B, d, n, o, zi.device, zi.dtype)  # (b, B)
    joint_scores = t.sum(-1).add_(lw)
    if math.isfinite(o):
        rows = torch.arange(b, device=zi.device)
        cols = rows + start
        t[rows, cols] += d - o
        if B > 1:
            t[rows, (cols + 1) % B] += n - o
        return t, joint_scores, o
    return t.add_(lw.unsqueeze(-1)), joint_scores, 0.0


class _BlockedLogQz(torch.autograd.Function):
    """Blocked log-sum-exps with a recomputing backward: memory O(b·B·K) for a row block b."""

    @staticmethod
    def forward(ctx, z, mu, logvar, lw_diag, lw_next, lw_other, max_elements):  # type: ignore[override]
        B, K = z.shape
        inv_var = torch.exp(-logvar)
        lv_c = logvar + LOG_2PI
        weights = (lw_diag, lw_next, lw_other)
        joint = z.new_empty(B)
        marg = z.new_empty(B, K)
        b = _block_rows(B, K, max_elements)
        for s in range(0, B, b):
            e = min(B, s + b)
            t, js, off = _weighted_block(z[s:e], mu, lv_c, inv_var, s, B, weights)
            marg[s:e] = torch.logsumexp(t, dim=1).add_(off)
            joint[s:e] = torch.logsumexp(js, dim=1)
        ctx.save_for_backward(z, mu, logvar, joint, marg)
        ctx.weights = weights
        ctx.max_elements = max_elements
        return joint, marg

    @staticmethod
    def backward(ctx, g_joint, g_marg):  # type: ignore[override]
        z, mu, logvar, joint, marg = ctx.saved_tensors
        B, K = z.shape
        if g_joint is None:
            g_joint = torch.zeros_like(joint)
        if g_marg is None:
            g_marg = torch.zeros_like(marg)
        inv_var = torch.exp(-logvar)
        lv_c = logvar + LOG_2PI
        gz = torch.empty_like(z)
        gmu = torch.zeros_like(mu)
        glv = torch.zeros_like(logvar)
        b = _block_rows(B, K, ctx.max_elements)
        for s in range(0, B, b):
            e = min(B, s + b)
            zi = z[s:e]
            t, js, off = _weighted_block(zi, mu, lv_c, inv_var, s, B, ctx.weights)
            # c = g_marg · softmax_j(marginal scores) + g_joint · softmax_j(joint scores)
            c = t.sub_((marg[s:e] - off).unsqueeze(1)).exp_().mul_(g_marg[s:e].unsqueeze(1))  # (b, B, K)
            c.add_(js.sub_(joint[s:e].unsqueeze(1)).exp_().mul_(g_joint[s:e].unsqueeze(1)).unsqueeze(-1))
            diff = zi.unsqueeze(1) - mu.unsqueeze(0)  # (b, B, K)
            c_dp = diff * inv_var
            c_dp.mul_(c)  # c · (z − μ) / σ²
            gz[s:e] = -c_dp.sum(1)
            gmu += c_dp.sum(0)
            glv += c_dp.mul_(diff).sum(0).mul_(0.5).sub_(c.sum(0).mul_(0.5))  # Σ c·(½(z − μ)²/σ² − ½)
        return gz, gmu, glv, None, None, None, None


def log_qz_dense(z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor]:
    """Reference: (log q(z_i) [B], log q(z_ik) [B, K]) from the full ``[B, B, K]`` tensor.

    This is what public implementations do; memory grows as B·B·K. Kept for tests and the
    benchmark.
    """
    t = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B, K)
    lw = log_w.to(t.dtype)
    joint = torch.logsumexp(t.sum(-1) + lw, dim=1)
    marg = torch.logsumexp(t + lw.unsqueeze(-1), dim=1)
    return joint, marg


def log_qz(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: float,
    estimator: str = "mss",
    backend: str = "auto",
    max_block_elements: int = 1 << 22,
) -> tuple[Tensor, Tensor]:
    """Minibatch estimates of log q(z_i) ``[B]`` and log q(z_ik) ``[B, K]`` (Chen et al. 2018, app. C).

    log q(z_i) ≈ log Σ_j w_ij q(z_i | x_j) with the MSS or MWS weights of
    :func:`_log_weight_triplet`. Memory never grows as B×B×K: ``backend="blocked"`` walks row
    blocks of at most ``max_block_elements`` pairwise terms and recomputes them in backward;
    ``backend="fused"`` uses the Triton kernel (CUDA); ``"auto"`` picks fused on CUDA when Triton
    is available, else blocked; ``"dense"`` is the B×B×K reference. Computed in float32 at least.
    """
    _check_latents(z, mu, logvar)
    B = z.shape[0]
    d, n, o = _log_weight_triplet(B, dataset_size, estimator)
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)
    if backend == "auto":
        backend = "blocked"
        if z.is_cuda:
            from . import kernels  # lazy: a leaf module, imports nothing else from the package

            if kernels.triton_available():
                backend = "fused"
    if backend == "fused":
        from . import kernels

        return kernels.mss_logsumexp_fused(z, mu, logvar, d, n, o)
    if backend == "blocked":
        return _BlockedLogQz.apply(z, mu, logvar, d, n, o, int(max_block_elements))
    if backend == "dense":
        lw = _weight_rows(0, B, B, d, n, o, z.device, dtype)
        return log_qz_dense(z, mu, logvar, lw)
    raise ValueError(f"unknown backend {backend!r}; use 'auto', 'blocked', 'fused' or 'dense'")


BANK_MAX_ELEMENTS = 1 << 26
"""Largest query × reference × latent tensor :func:`log_qz_bank` builds (256 MiB in float32)."""


def log_qz_bank(
    z: Tensor, mu: Tensor, logvar: Tensor, bank_mu: Tensor, bank_logvar: Tensor, dataset_size: float
) -> tuple[Tensor, Tensor]:
    """log q(z_i) ``[B]`` and log q(z_ik) ``[B, K]`` with past posteriors as extra references.

    The aggregate posterior is estimated from the batch's R = B + M posteriors, the batch's own
    and ``M`` kept from earlier batches (``bank_*``, treated as constants): sample i's own
    posterior weighs 1/N, each of the R − 1 others (N − 1)/(N·(R − 1)), so each row sums to 1 as
    in MSS, whose weights this becomes for M = 0 up to MSS's one stratum entry. A batch of 64
    with sharp posteriors leaves q(z) all but unsampled between its points, so the TC estimate
    barely sees how the latents depend on each other; thousands of references do.
    """
    _check_latents(z, mu, logvar)
    if bank_mu.ndim != 2 or bank_mu.shape != bank_logvar.shape or bank_mu.shape[1] != z.shape[1]:
        raise ValueError(
            f"bank_mu and bank_logvar must both be [M, {z.shape[1]}]; got {tuple(bank_mu.shape)}, "
            f"{tuple(bank_logvar.shape)}"
        )
    B, K = z.shape
    R = B + bank_mu.shape[0]
    if B * R * K > BANK_MAX_ELEMENTS:
        raise ValueError(
            f"the bank estimator would build a {B}×{R}×{K} tensor (> {BANK_MAX_ELEMENTS} elements); "
            "use a smaller bank or batch (or tc_batch to estimate on part of the batch)"
        )
    if R < 2:
        raise ValueError("the bank estimator needs at least 2 references; use a larger batch or bank")
    N = max(float(dataset_size), R)
    dtype = torch.promote_types(z.dtype, torch.float32)
    ref_mu = torch.cat([mu.to(dtype), bank_mu.to(dtype).detach()])
    ref_lv = torch.cat([logvar.to(dtype), bank_logvar.to(dtype).detach()])
    t = gaussian_log_density(z.to(dtype).unsqueeze(1), ref_mu.unsqueeze(0), ref_lv.unsqueeze(0))  # [B, R, K]
    lw = torch.full((B, R), math.log((N - 1) / (N * (R - 1))), device=z.device, dtype=dtype)
    idx = torch.arange(B, device=z.device)
    lw[idx, idx] = -math.log(N)
    return torch.logsumexp(t.sum(-1) + lw, dim=1), torch.logsumexp(t + lw.unsqueeze(-1), dim=1)


def _check_latents(z: Tensor, mu: Tensor, logvar: Tensor) -> None:
    if z.ndim != 2 or z.shape != mu.shape or z.shape != logvar.shape:
        raise ValueError(
            f"z, mu, logvar must all be [batch, latent] of one shape; got {tuple(z.shape)}, "
            f"{tuple(mu.shape)}, {tuple(logvar.shape)}"
        )


def tc_decomposition(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: float,
    estimator: str = "mss",
    subset: Tensor | None = None,
    bank: tuple[Tensor, Tensor] | None = None,
    **kw,
) -> dict[str, Tensor]:
    """β-TCVAE decomposition of the KL term (Chen et al. 2018, eq. 2), batch means.

    ``mi``  = E[log q(z|x) − log q(z)]                (index-code mutual information)
    ``tc``  = E[log q(z) − Σ_k log q(z_k)]            (total correlation)
    ``dwkl`` = E[Σ_k log q(z_k) − log p(z)]           (dimension-wise KL)
    so mi + tc + dwkl = E[log q(z|x) − log p(z)], the single-sample estimate of the KL term.
    ``z`` must be a sample of q(z|x) (reparameterised for gradients). ``subset`` (indices into the
    batch): estimate log q(z) and log q(z_k) on those rows only, as a batch of their own; the
    log q(z|x) and log p(z) means still use every row, so the three terms keep summing to the
    whole batch's KL estimate. ``bank`` = (means, log-variances) ``[M, K]`` of earlier batches'
    posteriors: estimate log q(z) and log q(z_k) with them as extra references
    (:func:`log_qz_bank`; the estimator's weights are then the bank's, not MSS/MWS).
    """
    rows = (z, mu, logvar) if subset is None else (z[subset], mu[subset], logvar[subset])
    if bank is not None and bank[0].shape[0] > 0:
        joint, marg = log_qz_bank(*rows, *bank, dataset_size)
    else:
        joint, marg = log_qz(*rows, dataset_size, estimator, **kw)
    dtype = joint.dtype
    z32, mu32, lv32 = z.to(dtype), mu.to(dtype), logvar.to(dtype)
    log_qz_x = gaussian_log_density(z32, mu32, lv32).sum(1)
    log_pz = gaussian_log_density(z32, torch.zeros_like(z32), torch.zeros_like(z32)).sum(1)
    joint_m, marg_m = joint.mean(), marg.sum(1).mean()
    return {
        "mi": log_qz_x.mean() - joint_m,
        "tc": joint_m - marg_m,
        "dwkl": marg_m - log_pz.mean(),
    }


def grouped_tc_decomposition(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: float, group_size: int, estimator: str = "mss"
) -> dict[str, Tensor]:
    """:func:`tc_decomposition` with the latents in consecutive groups of ``group_size``: the total
    correlation is *between groups*, KL(q(z) ‖ Π_g q(z_g)), and ``dwkl`` is Σ_g KL(q(z_g) ‖ p(z_g)).
    A factor that needs a plane (five values on a circle) then costs no TC inside its group, while
    spreading it over two groups still does — the independent-subspace prior of ISA-VAE
    (Stühmer et al. 2020) in β-TCVAE's estimator. ``group_size=1`` is :func:`tc_decomposition`.
    Dense ``[B, B, K]``: for the small batches of sequence heads."""
    _check_latents(z, mu, logvar)
    B, K = z.shape
    if group_size < 1 or K % group_size:
        raise ValueError(f"group_size must divide the {K} latents, got {group_size}")
    d, n, o = _log_weight_triplet(B, dataset_size, estimator)
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)
    t = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B, K)
    lw = _weight_rows(0, B, B, d, n, o, z.device, dtype)
    joint = torch.logsumexp(t.sum(-1) + lw, dim=1)
    marg = torch.logsumexp(t.view(B, B, K // group_size, group_size).sum(-1) + lw.unsqueeze(-1), dim=1)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    joint_m, marg_m = joint.mean(), marg.sum(1).mean()
    return {"mi": log_qz_x.mean() - joint_m, "tc": joint_m - marg_m, "dwkl": marg_m - log_pz.mean()}


def total_correlation(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: float, estimator: str = "mss", **kw
) -> Tensor:
    """Minibatch estimate of TC(z) = KL(q(z) || Π_k q(z_k)) (Chen et al. 2018, eq. 2 and app. C).

    ``estimator="mss"`` (minibatch stratified sampling) is the paper's MSS with the stratum weight
    on one off-diagonal entry per row and 1/N on the diagonal. ``"mws"`` (minibatch weighted
    sampling) weights every sample 1/B. The paper writes MWS as log q(z) ≈ −log(N·M) + log Σ_j
    q(z|x_j); its extra −log N per log-density is a constant offset that shifts TC by
    (K − 1)·log N, MI by +log N and DWKL by −K·log N (their sum is unchanged) and changes no
    gradient. We drop it so MWS and MSS read on one scale.
    """
    return tc_decomposition(z, mu, logvar, dataset_size, estimator, **kw)["tc"]


# --------------------------------------------------------------------------------------------
# DIP-VAE and InfoGAN terms
# --------------------------------------------------------------------------------------------


def dip_covariance(mu: Tensor, logvar: Tensor, kind: str = "i") -> Tensor:
    """Covariance of q(z) that DIP-VAE regularises (Kumar et al. 2018, eqs. 6-9).

    ``"i"``: Cov_p(x)[μ(x)]. ``"ii"``: E_p(x)[Σ(x)] + Cov_p(x)[μ(x)] (the covariance of the
    aggregate posterior). Biased (1/B) batch estimates, as in the paper.
    """
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if kind == "i":
        return cov
    if kind == "ii":
        return cov + torch.diag(torch.exp(logvar).mean(0))
    raise ValueError(f"unknown DIP-VAE kind {kind!r}; use 'i' or 'ii'")


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)² (Kumar et al. 2018, eq. 6)."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * (off**2).sum() + lambda_d * ((diag - 1.0) ** 2).sum()


def categorical_mi_lower_bound(logits: Tensor, codes: Tensor, prior: Tensor | None = None) -> Tensor:
    """InfoGAN's L_I for a categorical code: H(c) + E[log Q(c | x)] ≤ I(c; G(z, c)) (Chen et al. 2016, eq. 5).

    ``logits`` ``[B, C]`` from Q, ``codes`` ``[B]`` the sampled code values, ``prior`` the code's
    probabilities (uniform by default). Equals H(c) for a perfect Q, is below it otherwise.
    """
    C = logits.shape[-1]
    if prior is None:
        entropy = torch.tensor(math.log(C), device=logits.device, dtype=logits.dtype)
    else:
        p = prior.to(logits)
        entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()
    log_q = torch.log_softmax(logits, dim=-1).gather(-1, codes.long().unsqueeze(-1)).squeeze(-1)
    return entropy + log_q.mean()


def categorical_mi_on_data(logits: Tensor) -> Tensor:
    """The mutual information between inputs and Q's categorical code on a batch: H(E[p]) − E[H(p)] (nats).

    ``logits`` ``[B, C]``. Maximised (at log C) when every input gets one code value for sure and the
    values are used equally: the label-free clustering objective of Krause et al. 2010 (RIM) and
    Hu et al. 2017 (IMSAT), which ``InfoGANConfig.lambda_real`` adds on real images.
    """
    log_p = torch.log_softmax(logits, dim=-1)
    p = log_p.exp()
    conditional = -(p * log_p).sum(-1).mean()
    mean = p.mean(0)
    marginal = -(mean * torch.log(mean.clamp_min(1e-30))).sum()
    return marginal - conditional


def paired_categorical_mi(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """The mutual information between the categorical codes of two views of each input (nats).

    ``logits_a``, ``logits_b`` ``[B, C]`` for paired views (an image and a shifted copy, say). The
    joint of the two codes is the batch mean of p_a p_bᵀ, symmetrised; the MI is log C when both
    views of every input get the same code for sure and the values are used equally, 0 when the
    codes are independent. Invariant information clustering (Ji et al. 2019).
    """
    if logits_a.shape != logits_b.shape:
        raise ValueError(
            f"paired views need the same logits shape, got {tuple(logits_a.shape)} and {tuple(logits_b.shape)}"
        )
    joint = logits_a.softmax(-1).T @ logits_b.softmax(-1) / logits_a.shape[0]  # [C, C]
    joint = ((joint + joint.T) / 2).clamp_min(1e-30)
    marg_a, marg_b = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (joint * (joint.log() - marg_a.log() - marg_b.log())).sum()


def gaussian_mi_lower_bound(mean: Tensor, logvar: Tensor, codes: Tensor, code_entropy: Tensor | float) -> Tensor:
    """L_I for continuous codes with a factored-Gaussian Q: H(c) + E[Σ_k log N(c_k; mean_k, var_k)].

    ``code_entropy`` is the differential entropy of the code prior, e.g. K·log 2 for
    Uniform(−1, 1)^K or K/2·log(2πe) for N(0, I). A lower bound on I(c; x) (Chen et al. 2016).
    """
    return code_entropy + gaussian_log_density(codes, mean, logvar).sum(-1).mean()


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


class _VAEObjective(nn.Module):
    """Shared parts: reconstruction and analytic KL. Subclasses add their regulariser."""

    # True when the loss is a mean over the batch's rows of per-row terms, so a data-parallel step
    # may compute it on each rank's rows and average; False (the safe default) when the rows are
    # coupled (β-TCVAE's estimators, DIP-VAE's covariance, capacity's |KL − C| of the batch's KL):
    # the step then passes the global batch's mu, logvar and z, with this rank's x and recon, so
    # an objective may use x and recon only through the reconstruction's mean over rows
    rows_additive = False

    def __init__(self, reconstruction: str = "gaussian", sigma: float = 1.0) -> None:
        super().__init__()
        if reconstruction not in ("gaussian", "bernoulli"):
            raise ValueError(f"unknown reconstruction {reconstruction!r}; use 'gaussian' or 'bernoulli'")
        self.reconstruction = reconstruction
        self.sigma = sigma

    def _recon_kl(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        # in float32 under bf16 autocast too: sums over thousands of features lose digits in bf16
        rec = reconstruction_loss(recon.float(), x.float(), self.reconstruction, self.sigma).mean()
        kl = kl_normal_standard(mu.float(), logvar.float()).sum(1).mean()
        return rec, kl


class BetaVAELoss(_VAEObjective):
    """recon + β·KL(q(z|x) || p(z)) (Higgins et al. 2017, eq. 4); β = 1 is the plain VAE."""

    rows_additive = True

    def __init__(self, beta: float = 4.0, **kw) -> None:
        super().__init__(**kw)
        self.beta = beta

    def forward(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, z: Tensor, step: int = 0) -> LossResult:
        rec, kl = self._recon_kl(x, recon, mu, logvar)
        return LossResult(rec + self.beta * kl, {"recon": rec, "kl": kl})


class CapacityLoss(_VAEObjective):
    """recon + γ·|KL − C(t)|, C(t) rising linearly from 0 to ``c_max`` nats over ``c_steps`` (Burgess et al. 2018, eq. 8)."""

    def __init__(self, gamma: float = 1000.0, c_max: float = 25.0, c_steps: int = 100_000, **kw) -> None:
        super().__init__(**kw)
        if c_steps <= 0:
            raise ValueError("c_steps must be positive (the number of steps over which C rises to c_max)")
        self.gamma, self.c_max, self.c_steps = gamma, c_max, c_steps

    def capacity(self, step: int) -> float:
        return self.c_max * min(1.0, step / self.c_steps)

    def forward(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, z: Tensor, step: int = 0) -> LossResult:
        rec, kl = self._recon_kl(x, recon, mu, logvar)
        c = self.capacity(step)
        total = rec + self.gamma * (kl - c).abs()
        return LossResult(total, {"recon": rec, "kl": kl, "capacity": rec.new_tensor(c)})


class BetaTCVAELoss(_VAEObjective):
    """recon + α·MI + β·TC + γ·DWKL (Chen et al. 2018, eq. 4), MSS or MWS estimates.

    ``dataset_size`` is N, the number of training examples; it must be given and finite. (With
    N = ∞ the MSS weights drop each sample's own posterior, and then shrinking the posterior
    variances drives the TC estimate to −∞: seen on transformer activations as losses of 1e12.
    :meth:`probe_disentangle.Probe.fit` fills it in from the training run when it is missing.)

    ``tc_batch`` = M < B estimates log q(z) and log q(z_k) (the B×B×K part) on M samples drawn at
    random from the batch, which serve as both queries and references, exactly as a batch of M
    would; log q(z|x) and log p(z) still use the whole batch, so MI + TC + DWKL stays the batch's
    KL estimate. The cost of the estimator falls from B²K to M²K: a large batch keeps its cheap
    reconstruction and KL gradients without the quadratic price (a GPU head's pair term would
    otherwise dominate each step).

    ``bank`` = M > 0 keeps the posteriors (means and log-variances, detached) of the last M
    training samples and uses them as extra references for log q(z) and log q(z_k)
    (:func:`log_qz_bank`): small batches, as on a CPU, then estimate MI and TC from thousands of
    posteriors at a cost of B·(B + M)·K pair terms. It needs ``latent_dim``; the bank is saved
    with the model, so a resumed run carries on with it.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        dataset_size: float | None = None,
        estimator: str = "mss",
        tc_batch: int | None = None,
        bank: int = 0,
        latent_dim: int | None = None,
        **kw,
    ) -> None:
        super().__init__(**kw)
        if estimator not in ("mss", "mws"):
            raise ValueError(f"unknown estimator {estimator!r}; use 'mss' or 'mws'")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        if dataset_size is not None and not (math.isfinite(dataset_size) and dataset_size >= 1):
            raise ValueError(f"dataset_size must be a finite number of training examples, got {dataset_size}")
        self.dataset_size = None if dataset_size is None else float(dataset_size)
        self.estimator = estimator
        if tc_batch is not None and int(tc_batch) < 2:
            raise ValueError(f"tc_batch must be ≥ 2 samples (or None for the whole batch), got {tc_batch}")
        self.tc_batch = None if tc_batch is None else int(tc_batch)
        self.bank = int(bank)
        if self.bank < 0 or self.bank != bank:
            raise ValueError(f"bank must be a whole number of samples ≥ 0, got {bank}")
        if self.bank:
            if latent_dim is None or int(latent_dim) < 1:
                raise ValueError("a β-TCVAE bank needs latent_dim (the models pass it in objective_args)")
            self.register_buffer("bank_mu", torch.zeros(self.bank, int(latent_dim)))
            self.register_buffer("bank_logvar", torch.zeros(self.bank, int(latent_dim)))
            self.register_buffer("bank_state", torch.zeros(2, dtype=torch.long))  # (filled, next slot)

    def _bank(self) -> tuple[Tensor, Tensor] | None:
        if not self.bank:
            return None
        filled = int(self.bank_state[0])
        return self.bank_mu[:filled], self.bank_logvar[:filled]

    @torch.no_grad()
    def _push(self, mu: Tensor, logvar: Tensor) -> None:
        """Keep the newest posteriors (a ring of ``bank`` rows)."""
        mu, logvar = mu.detach()[-self.bank :], logvar.detach()[-self.bank :]
        n, start = mu.shape[0], int(self.bank_state[1])
        slots = (torch.arange(n, device=self.bank_mu.device) + start) % self.bank
        self.bank_mu[slots] = mu.to(self.bank_mu.dtype)
        self.bank_logvar[slots] = logvar.to(self.bank_logvar.dtype)
        self.bank_state[0] = min(self.bank, int(self.bank_state[0]) + n)
        self.bank_state[1] = (start + n) % self.bank

    def forward(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, z: Tensor, step: int = 0) -> LossResult:
        rec, kl = self._recon_kl(x, recon, mu, logvar)
        if self.dataset_size is None:
            raise ValueError(
                "β-TCVAE needs dataset_size, the number of training examples: pass objective_args="
                "{'dataset_size': N} (Probe.fit fills it in from the run)"
            )
        subset = None
        if self.tc_batch is not None and self.tc_batch < z.shape[0]:
            subset = torch.randperm(z.shape[0], device=z.device)[: self.tc_batch]
        parts = tc_decomposition(
            z, mu, logvar, max(self.dataset_size, z.shape[0]), self.estimator, subset=subset, bank=self._bank()
        )
        if self.bank and self.training and torch.is_grad_enabled():
            self._push(mu, logvar)  # after use: a sample is never its own bank reference
        total = rec + self.alpha * parts["mi"] + self.beta * parts["tc"] + self.gamma * parts["dwkl"]
        return LossResult(total, {"recon": rec, "kl": kl, **parts})


DISC_DTYPES = ("float32", "bfloat16")


class FactorDiscriminator(nn.Module):
    """MLP D(z) → logit that z came from q(z) rather than from Π_k q(z_k) (Kim & Mnih 2018, app.: 6×1000 LeakyReLU).

    ``dtype="bfloat16"`` runs its matmuls under bf16 autocast, whatever the model around it does:
    five 1000×1000 layers are most of a FactorVAE step on a small conv VAE, and bf16 runs them
    about 2× faster on a CPU with AVX512-BF16 (a 1/256 relative error in a density-ratio estimate).
    """

    def __init__(self, latent_dim: int, hidden: int = 1000, depth: int = 6, dtype: str = "float32") -> None:
        super().__init__()
        if dtype not in DISC_DTYPES:
            raise ValueError(f"discriminator dtype {dtype!r} is not one of {DISC_DTYPES}")
        self.dtype = dtype
        layers: list[nn.Module] = []
        d = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
            d = hidden
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        if self.dtype == "float32":
            return self.net(z).squeeze(-1)
        # weights stay float32 (so do Adam's moments); the matmuls run in bf16
        with torch.autocast(z.device.type, dtype=torch.bfloat16):
            return self.net(z).float().squeeze(-1)


class FactorVAELoss(_VAEObjective):
    """recon + KL + γ·TC, TC ≈ E[log D(z)/(1 − D(z))] = E[logit D(z)] (Kim & Mnih 2018, eq. 2).

    The discriminator is trained in its own optimiser step (:meth:`discriminator_loss`) to tell
    z ~ q(z) from :func:`permute_dims` samples. We permute a detached copy of the same batch
    rather than a second batch (Kim & Mnih use a second batch); the permuted samples are still
    draws from the product of marginals. ``disc_dtype="bfloat16"`` runs D's matmuls in bf16
    (:class:`FactorDiscriminator`).
    """

    rows_additive = True  # recon + KL + γ·mean logit D(z): each a mean over rows

    def __init__(
        self,
        gamma: float = 10.0,
        latent_dim: int = 10,
        disc_hidden: int = 1000,
        disc_depth: int = 6,
        disc_dtype: str = "float32",
        **kw,
    ):
        super().__init__(**kw)
        self.gamma = gamma
        self.discriminator = FactorDiscriminator(latent_dim, disc_hidden, disc_depth, disc_dtype)

    def forward(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, z: Tensor, step: int = 0) -> LossResult:
        rec, kl = self._recon_kl(x, recon, mu, logvar)
        tc = self.discriminator(z).mean()
        return LossResult(rec + kl + self.gamma * tc, {"recon": rec, "kl": kl, "tc": tc})

    def discriminator_loss(
        self, z: Tensor, generator: torch.Generator | None = None, permuted: Tensor | None = None
    ) -> LossResult:
        """Binary cross-entropy: q(z) samples labelled 1, permuted samples labelled 0. ``permuted``:
        the product-of-marginals samples when drawn by the caller (a data-parallel step permutes
        the global batch and passes its rows); by default ``permute_dims(z)``."""
        z = z.detach()
        real = self.discriminator(z)
        fake = self.discriminator(permute_dims(z, generator) if permuted is None else permuted.detach())
        disc = 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )
        acc = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
        return LossResult(disc, {"disc": disc, "disc_acc": acc})


class DIPVAELoss(_VAEObjective):
    """recon + KL + λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)² (Kumar et al. 2018).

    Defaults follow the paper: λ_d = 10·λ_od for DIP-VAE-I, λ_d = λ_od for DIP-VAE-II.
    """

    def __init__(self, kind: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None, **kw) -> None:
        super().__init__(**kw)
        if kind not in ("i", "ii"):
            raise ValueError(f"unknown DIP-VAE kind {kind!r}; use 'i' or 'ii'")
        self.kind = kind
        self.lambda_od = lambda_od
        self.lambda_d = lambda_d if lambda_d is not None else (10.0 * lambda_od if kind == "i" else lambda_od)

    def forward(self, x: Tensor, recon: Tensor, mu: Tensor, logvar: Tensor, z: Tensor, step: int = 0) -> LossResult:
        rec, kl = self._recon_kl(x, recon, mu, logvar)
        dip = dip_penalty(dip_covariance(mu, logvar, self.kind), self.lambda_od, self.lambda_d)
        return LossResult(rec + kl + dip, {"recon": rec, "kl": kl, "dip": dip})


class InfoGANLoss(nn.Module):
    """Non-saturating GAN losses with InfoGAN's mutual-information term (Chen et al. 2016, eq. 6).

    Generator (and Q) minimise −log D(G(ε, c)) − λ_cat·L_I(cat) − λ_cont·L_I(cont); the
    discriminator minimises the usual binary cross-entropy. ``info`` is the summed L_I.
    """

    def __init__(self, lambda_cat: float = 1.0, lambda_cont: float = 0.1, cont_entropy: float = 0.0) -> None:
        super().__init__()
        self.lambda_cat, self.lambda_cont, self.cont_entropy = lambda_cat, lambda_cont, cont_entropy

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> LossResult:
        disc = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return LossResult(disc, {"disc": disc})

    def generator_loss(
        self,
        fake_logits: Tensor,
        cat_logits: list[Tensor],
        cat_codes: list[Tensor],
        cont_mean: Tensor | None = None,
        cont_logvar: Tensor | None = None,
        cont_codes: Tensor | None = None,
    ) -> LossResult:
        gen = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        info_cat = sum(
            (categorical_mi_lower_bound(lg, c) for lg, c in zip(cat_logits, cat_codes, strict=True)), gen.new_zeros(())
        )
        info_cont = gen.new_zeros(())
        if cont_codes is not None and cont_codes.shape[-1] > 0:
            info_cont = gaussian_mi_lower_bound(cont_mean, cont_logvar, cont_codes, self.cont_entropy)
        total = gen - self.lambda_cat * info_cat - self.lambda_cont * info_cont
        return LossResult(
            total, {"gen": gen, "info": info_cat + info_cont, "info_cat": info_cat, "info_cont": info_cont}
        )


OBJECTIVES: dict[str, Callable[..., _VAEObjective]] = {
    "beta_vae": BetaVAELoss,
    "capacity": CapacityLoss,
    "beta_tcvae": BetaTCVAELoss,
    "factor_vae": FactorVAELoss,
    "dip_vae": DIPVAELoss,
}


def build_objective(name: str, **kwargs) -> _VAEObjective:
    """Build a VAE-family objective by name; unknown names or arguments raise a clear error."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for objective {name!r}: {err}") from err
