"""Per-token heads that steer the shipped factor LM from a middle layer (issue 20, research half).

One vector per token, every position read and edited (prompt and generated tokens alike), at
``blocks.1.hook_resid_post`` and ``blocks.2.hook_resid_post``. A per-token vector is mostly "which
token, at which position"; the eight factors are small directions beside that. The heads here know
the position (and optionally the token id) for free and spend their latents on the rest:

- ``raw``: a β-TCVAE head on the raw vectors (what a first user fits; the demo's ``per_token``).
- ``posnorm``: the same head after per-position mean removal and scaling.
- ``cvae_pos``: a conditional β-TCVAE, enc(x, p), dec(z, p), x the per-position-normalised vector;
  the edit is a' = a + s_p·(dec(z', p) − dec(z, p)).
- ``cvae_tokpos``: the same conditioned on (token id, position), normalised per (token, position).
- ``adagvae_pos``: the position-conditional head trained as Ada-GVAE (Locatello et al. 2020,
  "Weakly-supervised disentanglement without compromises", §4): pairs of sentences that differ in
  one factor (which one is not given); per pair, the latents whose posteriors differ least (KL
  below the midpoint of the pair's largest and smallest) are replaced by the pair's average.
  Pair-supervised, reported as its own row.

References in the same run (same data, same seeds): difference of means per position (supervised;
``positional_diff_means``), difference of means pooled over positions (``diff_means``), PCA on the
per-token vectors. No head sees factor labels while fitting; labels are used afterwards, as in
every disentanglement benchmark, to align latents to factors (mutual information) and to pick the
code each factor value takes (its class mean, pushed ``strength`` times from the overall mean).

Steering is scored by ``steering.evaluate_steering``: success (≈ RAVEL Cause), leakage
(1 − Isolate), parse rate; n generations per factor value, seeded, every position edited (full
forwards: the model is re-run on the whole prefix each step; the lone-BOS first step is left as is).
MIG is per factor at the position where the factor is first written in the sentence, and at the
plan's ':'.

    python benchmarks/per_token_heads.py                       # both hooks, all methods
    python benchmarks/per_token_heads.py --smoke               # seconds: tiny fits, for the test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from probe_disentangle import losses, steering
from probe_disentangle.adapters import Adapter, attach
from probe_disentangle.heads import mlp

HOOKS = ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post")
TOKEN_HOOK = "embed.hook_in"  # a TransformerLens model's token ids, as they enter the embedding
METHODS = (
    "token_position_diff_means",
    "positional_diff_means",
    "diff_means",
    "pca",
    "raw",
    "posnorm",
    "cvae_pos",
    "cvae_tokpos",
    "adagvae_pos",
    "prefix",
    "prefix_pairs",
    "prefix_cat",
    "prefix_pos",
)
PREFIX_HEADS = {  # method -> HeadConfig fields (the KL warm-up keeps latents from collapsing early at blocks.2)
    "prefix": {"kl_warmup": 0.3},
    "prefix_pairs": {"beta": 1.0, "kl_warmup": 0.3},
    "prefix_cat": {"beta": 1.0, "latent_dim": 10},
    "prefix_pos": {"kl_warmup": 0.3, "dec_token": False},
}
HEADS = {  # method -> (normalisation, conditioning, objective)
    "raw": ("none", "none", "beta_tcvae"),
    "posnorm": ("position", "none", "beta_tcvae"),
    "cvae_pos": ("position", "position", "beta_tcvae"),
    "cvae_tokpos": ("token_position", "token_position", "beta_tcvae"),
    "adagvae_pos": ("position", "position", "ada_gvae"),
}
SUPERVISION = {
    "token_position_diff_means": "supervised (factor labels)",
    "prefix": "none",
    "prefix_pairs": "pairs differing in one unnamed factor",
    "prefix_cat": "none",
    "prefix_pos": "none",
    "positional_diff_means": "supervised (factor labels)",
    "diff_means": "supervised (factor labels)",
    "pca": "none",
    "raw": "none",
    "posnorm": "none",
    "cvae_pos": "none",
    "cvae_tokpos": "none",
    "adagvae_pos": "pairs differing in one unnamed factor",
}


# ------------------------------------------------------------------ data


@dataclass
class TokenData:
    """Sentences and their activations at one hook: ``tokens [N, T]``, ``factors [N, F]``,
    ``acts [N, T, d]``, ``mask [N, T]`` (real tokens: not BOS, not padding)."""

    tokens: Tensor
    factors: np.ndarray
    acts: Tensor
    mask: Tensor


def collect(adapter: Adapter, hook: str, world, factors: np.ndarray) -> TokenData:
    """Render ``factors [N, F]`` as sentences and read every position's activation at ``hook``."""
    tokens = torch.as_tensor(world.render(factors)).long()
    acts = steering.sequence_activations(adapter, hook, tokens.numpy())
    mask = tokens != world.tokenizer.pad_id
    mask[:, 0] = False
    return TokenData(tokens, np.asarray(factors), acts, mask)


first_written = steering.first_written  # where each sentence first writes each factor (library code now)


# ------------------------------------------------------------------ the heads


class Normaliser(nn.Module):
    """Mean removal and scaling per position (``"position"``) or per (token, position) with the
    position's statistics where a (token, position) pair was never seen (``"token_position"``);
    ``"none"``: one global mean and scale. The scale is one number per position (the RMS per
    dimension of the centred vectors: unit variance per dimension on average, so the Gaussian
    reconstruction term outweighs β·KL as it does on standardised data), and an edit in
    normalised units maps back by one multiplication."""

    def __init__(self, kind: str, vocab: int, n_pos: int, d: int) -> None:
        super().__init__()
        if kind not in ("none", "position", "token_position"):
            raise ValueError(f"unknown normalisation {kind!r}; use 'none', 'position' or 'token_position'")
        self.kind = kind
        self.register_buffer("mean_p", torch.zeros(n_pos, d))
        self.register_buffer("scale_p", torch.ones(n_pos))
        self.register_buffer("mean_tp", torch.zeros(vocab, n_pos, d))
        self.register_buffer("seen_tp", torch.zeros(vocab, n_pos, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, tokens: Tensor, pos: Tensor, acts: Tensor) -> Normaliser:
        """Statistics from vectors ``acts [M, d]`` with their token ids and positions ``[M]``."""
        n_pos = self.mean_p.shape[0]
        if self.kind == "none":
            self.mean_p[:] = acts.mean(0)
            self.scale_p[:] = (acts - acts.mean(0)).pow(2).mean().sqrt()
            return self
        cnt = torch.bincount(pos, minlength=n_pos).float()
        sums = torch.zeros_like(self.mean_p).index_add_(0, pos, acts)
        seen = cnt > 0
        self.mean_p[seen] = sums[seen] / cnt[seen, None]
        if self.kind == "token_position":
            key = tokens * n_pos + pos
            V = self.mean_tp.shape[0]
            c = torch.bincount(key, minlength=V * n_pos).float()
            s = torch.zeros(V * n_pos, acts.shape[1]).index_add_(0, key, acts)
            ok = c > 0
            flat = self.mean_p.repeat(V, 1).clone()
            flat[ok] = s[ok] / c[ok, None]
            self.mean_tp[:] = flat.view(V, n_pos, -1)
            self.seen_tp[:] = ok.view(V, n_pos)
        resid = (acts - self.center(tokens, pos)).pow(2).mean(1)
        sq = torch.zeros_like(self.scale_p).index_add_(0, pos, resid)
        scale = (sq[seen] / cnt[seen]).sqrt()
        # a position whose vector the centring fixes exactly (a plan tag after BOS) keeps a floor,
        # so its float noise is not blown up to unit size
        self.scale_p[seen] = scale.clamp_min(0.05 * float(scale.max()))
        return self

    def center(self, tokens: Tensor, pos: Tensor) -> Tensor:
        if self.kind == "token_position":
            return self.mean_tp[tokens, pos]
        return self.mean_p[pos]

    def normalise(self, a: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        return (a - self.center(tokens, pos)) / self.scale_p[pos, None]


class ConditionalVAE(nn.Module):
    """A Gaussian VAE on per-token vectors ``x [M, d]``: enc(x, c) → (μ, log σ²), dec(z, c) → x̂,
    with c the learned embeddings of the token id and/or position (``cond``; ``"none"``: an
    ordinary MLP VAE). The latents need not spend themselves on what c already says."""

    def __init__(self, d: int, latent_dim: int, cond: str, vocab: int, n_pos: int, hidden: int = 256, emb: int = 16):
        super().__init__()
        if cond not in ("none", "position", "token_position"):
            raise ValueError(f"unknown conditioning {cond!r}; use 'none', 'position' or 'token_position'")
        self.cond, self.latent_dim = cond, latent_dim
        self.pos_emb = nn.Embedding(n_pos, emb) if cond != "none" else None
        self.tok_emb = nn.Embedding(vocab, emb) if cond == "token_position" else None
        width = (emb if cond == "position" else 2 * emb) if cond != "none" else 0
        self.encoder = mlp(d + width, 2 * latent_dim, hidden, 2)
        self.decoder = mlp(latent_dim + width, d, hidden, 2)

    def _c(self, tokens: Tensor, pos: Tensor) -> list[Tensor]:
        out = []
        if self.pos_emb is not None:
            out.append(self.pos_emb(pos))
        if self.tok_emb is not None:
            out.append(self.tok_emb(tokens))
        return out

    def encode(self, x: Tensor, tokens: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(torch.cat([x, *self._c(tokens, pos)], -1)).chunk(2, -1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        return self.decoder(torch.cat([z, *self._c(tokens, pos)], -1))


@dataclass
class HeadConfig:
    """One per-token head: normalisation, conditioning, objective and the fit's settings."""

    norm: str = "position"
    cond: str = "position"
    objective: str = "beta_tcvae"  # or "ada_gvae"
    latent_dim: int = 12
    hidden: int = 256
    beta: float = 4.0
    steps: int = 3000
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0
    recon_weight: float = 1.0  # 1/σ² of the Gaussian likelihood (prefix head)
    kl_warmup: float = 0.0  # fraction of the steps over which the KL terms' weight rises from 0 (prefix head)
    consistency: float = 1.0  # weight of KL(q_T ‖ q_t), the prefix codes' agreement with the sentence's (prefix head)
    # prefix head: the decoder sees the token id and reconstructs the per-(token, position)-centred
    # vector (True), or sees only the position and reconstructs the per-position-centred vector
    # (False: the latents must then say which token stands there, a plan tag included)
    dec_token: bool = True


class PerTokenHead(nn.Module):
    """Normaliser + conditional VAE: codes of per-token vectors and the edit that sets latents."""

    def __init__(self, cfg: HeadConfig, vocab: int, n_pos: int, d: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = Normaliser(cfg.norm, vocab, n_pos, d)
        self.vae = ConditionalVAE(d, cfg.latent_dim, cfg.cond, vocab, n_pos, cfg.hidden)

    @torch.no_grad()
    def codes(self, acts: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        """Posterior means ``[M, k]`` of vectors ``acts [M, d]``."""
        return self.vae.encode(self.norm.normalise(acts, tokens, pos), tokens, pos)[0]

    @torch.no_grad()
    def edit(self, acts: Tensor, tokens: Tensor, pos: Tensor, index: int, value: float) -> Tensor:
        """a' = a + s_p·(dec(z', c) − dec(z, c)), z' = z with latent ``index`` set to ``value``."""
        x = self.norm.normalise(acts, tokens, pos)
        z = self.vae.encode(x, tokens, pos)[0]
        z2 = z.clone()
        z2[:, index] = value
        delta = self.vae.decode(z2, tokens, pos) - self.vae.decode(z, tokens, pos)
        return acts + self.norm.scale_p[pos, None] * delta


def flat_vectors(data: TokenData) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """The real positions of ``data`` as ``(acts [M, d], tokens [M], positions [M], factors [M, F])``."""
    rows, pos = data.mask.nonzero(as_tuple=True)
    return data.acts[rows, pos], data.tokens[rows, pos], pos, data.factors[rows.numpy()]


ada_gvae_posteriors = losses.ada_gvae_posteriors  # the library's (Locatello et al. 2020, §4)


def fit_head(head: PerTokenHead, data: TokenData, pairs: tuple[TokenData, TokenData] | None = None) -> dict[str, float]:
    """Fit the normaliser on ``data``, then the VAE: β-TCVAE on single vectors, or Ada-GVAE on
    same-position vectors of ``pairs`` (sentences differing in one factor). No factor labels."""
    cfg = head.cfg
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    acts, tok, pos, _ = flat_vectors(data)
    head.norm.fit(tok, pos, acts)
    x = head.norm.normalise(acts, tok, pos)
    if cfg.objective == "ada_gvae":
        if pairs is None:
            raise ValueError("an Ada-GVAE head needs pairs: pass pairs=(TokenData, TokenData) of one-factor pairs")
        a, b = pairs
        both = a.mask & b.mask
        rows, ppos = both.nonzero(as_tuple=True)
        ta, tb = a.tokens[rows, ppos], b.tokens[rows, ppos]
        xa = head.norm.normalise(a.acts[rows, ppos], ta, ppos)
        xb = head.norm.normalise(b.acts[rows, ppos], tb, ppos)
        n = len(xa)
    elif cfg.objective == "beta_tcvae":
        n = len(x)
        objective = losses.BetaTCVAELoss(beta=cfg.beta, dataset_size=n)
    else:
        raise ValueError(f"unknown objective {cfg.objective!r}; use 'beta_tcvae' or 'ada_gvae'")
    opt = torch.optim.Adam(head.vae.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=g)
        if cfg.objective == "ada_gvae":
            c1, c2 = (ta[idx], ppos[idx]), (tb[idx], ppos[idx])
            mu1, lv1 = head.vae.encode(xa[idx], *c1)
            mu2, lv2 = head.vae.encode(xb[idx], *c2)
            mu1, lv1, mu2, lv2, shared = ada_gvae_posteriors(mu1, lv1, mu2, lv2)
            loss = 0.0
            for xi, mi, li, ci in ((xa[idx], mu1, lv1, c1), (xb[idx], mu2, lv2, c2)):
                rec = losses.reconstruction_loss(head.vae.decode(losses.reparameterize(mi, li), *ci), xi).mean()
                kl = losses.kl_normal_standard(mi, li).sum(1).mean()
                loss = loss + rec + cfg.beta * kl
            last = {"loss": float(loss.detach()) / 2, "shared": float(shared.float().mean())}
        else:
            xi, ci = x[idx], (tok[idx], pos[idx])
            mu, lv = head.vae.encode(xi, *ci)
            z = losses.reparameterize(mu, lv)
            res = objective(xi, head.vae.decode(z, *ci), mu, lv, z, step)
            loss = res.total
            last = {
                "loss": float(loss.detach()),
                "recon": float(res.terms["recon"].detach()),
                "kl": float(res.terms["kl"].detach()),
            }
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}; lower lr (now {cfg.lr}) or beta ({cfg.beta})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return {**last, "seconds": time.perf_counter() - t0, "vectors": float(n)}


# ------------------------------------------------------------------ a prefix code per token


class PrefixCodeHead(nn.Module):
    """Per-token codes that mean the same thing at every position: each token's vector gives
    Gaussian *evidence* about a code shared by its sentence (a precision and a mean per latent,
    from enc(x_t, p_t)), and the code at position t is the product of the prior N(0, 1) and the
    evidence of positions 1..t (a causal product of experts; a latent a token knows nothing about
    gets precision ≈ 0 there). The decoder dec(z_t, token_t, p_t) reconstructs the vector from the
    prefix code and what is known for free, so the latents need not hold the token or position.

    Fitted on whole sentences, one code sample per sentence (shared by its positions): the ELBO's
    reconstruction sums over positions, and the β-TCVAE decomposition (Chen et al. 2018, eq. 4)
    applies to the sentence's posterior (the code at its last position). No factor labels.
    The encoder reads the per-position-normalised vector (the token is visible: a plan tag is
    evidence); the decoder's target is the per-(token, position)-centred one.
    """

    def __init__(self, cfg: HeadConfig, vocab: int, n_pos: int, d: int, emb: int = 16) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.latent_dim
        self.enc_norm = Normaliser("position", vocab, n_pos, d)
        # the decoder's space (and the edit's)
        self.norm = Normaliser("token_position" if cfg.dec_token else "position", vocab, n_pos, d)
        self.pos_emb = nn.Embedding(n_pos, emb)
        self.tok_emb = nn.Embedding(vocab, emb) if cfg.dec_token else None
        self.encoder = mlp(d + emb, 2 * k, cfg.hidden, 2)
        self.decoder = mlp(k + (2 if cfg.dec_token else 1) * emb, d, cfg.hidden, 2)

    def fit_normalisers(self, data: TokenData) -> None:
        acts, tok, pos, _ = flat_vectors(data)
        self.enc_norm.fit(tok, pos, acts)
        self.norm.fit(tok, pos, acts)

    def posteriors(self, acts: Tensor, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Prefix posteriors (mean, log-variance) ``[B, T, k]`` of sentences ``acts [B, T, d]``;
        positions where ``mask`` is False give no evidence."""
        B, T, _ = acts.shape
        pos = torch.arange(T, device=acts.device).expand(B, T)
        x = self.enc_norm.normalise(acts, tokens, pos)
        m, lp = self.encoder(torch.cat([x, self.pos_emb(pos)], -1)).chunk(2, -1)
        prec = lp.clamp(-10, 8).exp() * mask[..., None]  # (B, T, k)
        P = 1 + prec.cumsum(1)
        H = (prec * m).cumsum(1)
        return H / P, -P.log()

    def decode(self, z: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        if self.tok_emb is None:
            return self.decoder(torch.cat([z, self.pos_emb(pos)], -1))
        return self.decoder(torch.cat([z, self.tok_emb(tokens), self.pos_emb(pos)], -1))

    @torch.no_grad()
    def sequence_codes(self, acts: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """Posterior means ``[B, T, k]``: each position's code from the evidence up to it."""
        return self.posteriors(acts, tokens, mask)[0]

    @torch.no_grad()
    def edit_sequence(
        self, acts: Tensor, tokens: Tensor, index: int | Sequence[int], value: float | Sequence[float]
    ) -> Tensor:
        """Every position but the first: a' = a + s·(dec(z', c) − dec(z, c)), z' = z with latent(s)
        ``index`` set to ``value``; z the prefix code, c the token and position."""
        B, T, d = acts.shape
        mask = torch.ones(B, T, dtype=torch.bool, device=acts.device)
        mask[:, 0] = False
        z = self.posteriors(acts, tokens, mask)[0]
        z2 = z.clone()
        z2[..., torch.as_tensor(index).reshape(-1)] = torch.as_tensor(value, dtype=z.dtype).reshape(-1)
        pos = torch.arange(T, device=acts.device).expand(B, T)
        delta = self.decode(z2, tokens, pos) - self.decode(z, tokens, pos)
        out = acts + self.norm.scale_p[pos, None] * delta
        return torch.cat([acts[:, :1], out[:, 1:]], 1)


def fit_prefix_head(
    head: PrefixCodeHead, data: TokenData, pairs: tuple[TokenData, TokenData] | None = None
) -> dict[str, float]:
    """Fit a :class:`PrefixCodeHead` on whole sentences (no factor labels): β-TCVAE, or with
    ``pairs`` (sentences that differ in one unnamed factor) Ada-GVAE: per pair the latents whose
    sentence posteriors differ least (:func:`ada_gvae_posteriors` on the last position) are
    averaged at every position, and each sentence reconstructs from its own sample."""
    cfg = head.cfg
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    head.fit_normalisers(data)
    N, T, _ = data.acts.shape
    pos = torch.arange(T).expand(N, T)
    sets = [data] if pairs is None else list(pairs)
    targets = [head.norm.normalise(x.acts, x.tokens, pos[: len(x.acts)]) for x in sets]
    n = len(sets[0].acts)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    batch = max(2, cfg.batch_size // (T * len(sets)))  # sentences per step: about batch_size vectors
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=g)
        post = [head.posteriors(x.acts[idx], x.tokens[idx], x.mask[idx]) for x in sets]
        w = min(1.0, step / (cfg.kl_warmup * cfg.steps)) if cfg.kl_warmup > 0 else 1.0
        if pairs is not None:
            (mu1, lv1), (mu2, lv2) = post
            *_, shared = ada_gvae_posteriors(mu1[:, -1], lv1[:, -1], mu2[:, -1], lv2[:, -1])
            sh = shared[:, None, :]
            mu, lv = 0.5 * (mu1 + mu2), torch.log(0.5 * (lv1.exp() + lv2.exp()))
            post = [
                (torch.where(sh, mu, mu1), torch.where(sh, lv, lv1)),
                (torch.where(sh, mu, mu2), torch.where(sh, lv, lv2)),
            ]
        rec = 0.0
        reg = 0.0
        for x, tgt, (mu, logvar) in zip(sets, targets, post, strict=True):
            eps = torch.randn(len(idx), 1, mu.shape[-1])  # one code sample per sentence
            # every position decodes the sentence's code (a vector depends only on its prefix, so
            # the decoder learns to ignore latents the prefix has not set); the prefix codes are
            # kept consistent with it by KL(q_T ‖ q_t), small where q_t is still broad
            z = (mu[:, -1:] + (0.5 * logvar[:, -1:]).exp() * eps).expand_as(mu)
            recon = head.decode(z, x.tokens[idx], pos[: len(idx)])
            m = x.mask[idx]
            rec = rec + (0.5 * (recon - tgt[idx]).pow(2).sum(-1) * m).sum(1).mean()
            vT, vt = logvar[:, -1:].exp(), logvar.exp()
            kl_t = 0.5 * (logvar - logvar[:, -1:] + (vT + (mu[:, -1:] - mu).pow(2)) / vt - 1).sum(-1)
            reg = reg + cfg.consistency * ((kl_t * m).sum(1) / m.sum(1).clamp_min(1)).mean()
            if pairs is None:
                parts = losses.tc_decomposition(z[:, -1], mu[:, -1], logvar[:, -1], float(n))
                reg = reg + parts["mi"] + cfg.beta * parts["tc"] + parts["dwkl"]
            else:
                reg = reg + cfg.beta * losses.kl_normal_standard(mu[:, -1], logvar[:, -1]).sum(1).mean()
        loss = cfg.recon_weight * rec + w * reg
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}; lower lr (now {cfg.lr}) or beta ({cfg.beta})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = {"loss": float(loss.detach()), "recon": float(rec.detach()), "regulariser": float(reg.detach())}
        if pairs is not None:
            last["shared"] = float(shared.float().mean())
    return {**last, "seconds": time.perf_counter() - t0, "sentences": float(n * len(sets))}


class PrefixCategoricalHead(nn.Module):
    """The prefix code with categorical latents: ``latent_dim`` latents of ``categories`` values each.
    Each token's vector gives logits as evidence per latent, the code at position t is the softmax
    of the summed evidence of positions 1..t (the product of categorical experts, uniform prior), and
    the decoder dec(y_t, token_t, p_t) reads a one-hot per latent (Gumbel-softmax while fitting: one
    sample of the sentence's code, decoded at every position, Jang et al. 2017; the prefix codes are
    held to it by KL(q_T ‖ q_t) as in :func:`fit_prefix_head`). A discrete factor then fits one latent without being
    laid out along a line. The objective: reconstruction + β·(KL of the sentence's posterior to
    uniform, i.e. the code's information) + γ·(KL of the batch's average posterior to uniform, which
    keeps every category in use). No factor labels."""

    def __init__(self, cfg: HeadConfig, vocab: int, n_pos: int, d: int, categories: int = 5, emb: int = 16) -> None:
        super().__init__()
        self.cfg, self.categories = cfg, categories
        m = cfg.latent_dim
        self.enc_norm = Normaliser("position", vocab, n_pos, d)
        self.norm = Normaliser("token_position", vocab, n_pos, d)
        self.pos_emb = nn.Embedding(n_pos, emb)
        self.tok_emb = nn.Embedding(vocab, emb)
        self.encoder = mlp(d + emb, m * categories, cfg.hidden, 2)
        self.decoder = mlp(m * categories + 2 * emb, d, cfg.hidden, 2)

    def fit_normalisers(self, data: TokenData) -> None:
        acts, tok, pos, _ = flat_vectors(data)
        self.enc_norm.fit(tok, pos, acts)
        self.norm.fit(tok, pos, acts)

    def logits(self, acts: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """Prefix logits ``[B, T, m, K]``: the evidence of positions 1..t summed (masked positions give none)."""
        B, T, _ = acts.shape
        pos = torch.arange(T, device=acts.device).expand(B, T)
        x = self.enc_norm.normalise(acts, tokens, pos)
        e = self.encoder(torch.cat([x, self.pos_emb(pos)], -1)).view(B, T, self.cfg.latent_dim, self.categories)
        return (e * mask[..., None, None]).cumsum(1)

    def decode(self, y: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        return self.decoder(torch.cat([y.flatten(-2), self.tok_emb(tokens), self.pos_emb(pos)], -1))

    @torch.no_grad()
    def sequence_codes(self, acts: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """The most likely category of each latent at each position ``[B, T, m]`` (float)."""
        return self.logits(acts, tokens, mask).argmax(-1).float()

    @torch.no_grad()
    def edit_sequence(self, acts: Tensor, tokens: Tensor, index: int, value: float) -> Tensor:
        """Every position but the first: latent ``index`` set to category ``value``, the others at
        their most likely category; a' = a + s·(dec(y', c) − dec(y, c))."""
        B, T, d = acts.shape
        mask = torch.ones(B, T, dtype=torch.bool, device=acts.device)
        mask[:, 0] = False
        y = nn.functional.one_hot(self.logits(acts, tokens, mask).argmax(-1), self.categories).float()
        y2 = y.clone()
        y2[..., index, :] = 0
        y2[..., index, int(value)] = 1
        pos = torch.arange(T, device=acts.device).expand(B, T)
        delta = self.decode(y2, tokens, pos) - self.decode(y, tokens, pos)
        out = acts + self.norm.scale_p[pos, None] * delta
        return torch.cat([acts[:, :1], out[:, 1:]], 1)


def fit_prefix_categorical(
    head: PrefixCategoricalHead, data: TokenData, gamma: float = 10.0, tau: tuple[float, float] = (1.0, 0.3)
) -> dict[str, float]:
    """Fit a :class:`PrefixCategoricalHead` on whole sentences (no factor labels); the Gumbel-softmax
    temperature falls geometrically from ``tau[0]`` to ``tau[1]``."""
    cfg = head.cfg
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    head.fit_normalisers(data)
    N, T, _ = data.acts.shape
    pos = torch.arange(T).expand(N, T)
    target = head.norm.normalise(data.acts, data.tokens, pos)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    batch = max(2, cfg.batch_size // T)
    K = head.categories
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step in range(cfg.steps):
        temp = tau[0] * (tau[1] / tau[0]) ** (step / max(1, cfg.steps - 1))
        idx = torch.randint(0, N, (min(batch, N),), generator=g)
        acts, tok, mask = data.acts[idx], data.tokens[idx], data.mask[idx]
        logits = head.logits(acts, tok, mask)  # (b, T, m, K)
        u = torch.rand(len(idx), 1, cfg.latent_dim, K).clamp(1e-9, 1 - 1e-9)
        # one Gumbel draw of the sentence's code, decoded at every position (as the Gaussian prefix head)
        y = torch.softmax((logits[:, -1:] - torch.log(-torch.log(u))) / temp, -1).expand_as(logits)
        recon = head.decode(y, tok, pos[: len(idx)])
        rec = (0.5 * (recon - target[idx]).pow(2).sum(-1) * mask).sum(1).mean()
        q = torch.softmax(logits[:, -1], -1)  # the sentence's posterior (b, m, K)
        info = (q * (q.clamp_min(1e-12).log() + math.log(K))).sum(-1).sum(-1).mean()
        qbar = q.mean(0)
        marginal = (qbar * (qbar.clamp_min(1e-12).log() + math.log(K))).sum()
        # KL(q_T ‖ q_t) per position: the prefix codes agree with the sentence's
        log_qt = torch.log_softmax(logits, -1)
        kl_t = (q[:, None] * (torch.log_softmax(logits[:, -1:], -1) - log_qt)).sum(-1).sum(-1)
        consistency = ((kl_t * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()
        w = min(1.0, step / (cfg.kl_warmup * cfg.steps)) if cfg.kl_warmup > 0 else 1.0
        loss = cfg.recon_weight * rec + w * (cfg.beta * info + cfg.consistency * consistency) + gamma * marginal
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}; lower lr (now {cfg.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = {"loss": float(loss.detach()), "recon": float(rec.detach()), "info": float(info.detach())}
    return {**last, "seconds": time.perf_counter() - t0, "sentences": float(N)}


# ------------------------------------------------------------------ steering with a head


def head_steerer(
    adapter: Adapter, hook: str, head: PerTokenHead, targets: dict[tuple[int, int], tuple[int, float]]
) -> steering.Steerer:
    """``steerer(factor, value)``: within the context every forward has its vectors at ``hook`` edited
    at every position but BOS (the token ids read at ``TOKEN_HOOK``, positions from the sequence)."""

    @contextlib.contextmanager
    def steer(factor: int, value: int) -> Iterator[None]:
        index, target = targets[(factor, value)]
        seen: list[Tensor] = []

        def edit(act: Tensor) -> Tensor:
            B, T, d = act.shape
            if T == 1:  # a lone BOS (full forwards): left as it is
                return act
            tokens = seen[-1].to(act.device)[:, :T]
            pos = torch.arange(T, device=act.device).expand(B, T)
            new = head.edit(act[:, 1:].reshape(-1, d), tokens[:, 1:].reshape(-1), pos[:, 1:].reshape(-1), index, target)
            return torch.cat([act[:, :1], new.view(B, T - 1, d).to(act.dtype)], 1)

        with adapter.hook(TOKEN_HOOK, seen.append), adapter.hook(hook, edit):
            yield

    return steer


def prefix_steerer(
    adapter: Adapter, hook: str, head: PrefixCodeHead, targets: dict[tuple[int, int], tuple[int, float]]
) -> steering.Steerer:
    """As :func:`head_steerer` for a :class:`PrefixCodeHead` (its codes need the whole prefix, which
    full forwards provide; a KV-cached step would carry the evidence sum along instead)."""

    @contextlib.contextmanager
    def steer(factor: int, value: int) -> Iterator[None]:
        index, target = targets[(factor, value)]
        seen: list[Tensor] = []

        def edit(act: Tensor) -> Tensor:
            if act.shape[1] == 1:  # a lone BOS (full forwards): left as it is
                return act
            tokens = seen[-1].to(act.device)[:, : act.shape[1]]
            return head.edit_sequence(act.float(), tokens, index, target).to(act.dtype)

        with adapter.hook(TOKEN_HOOK, seen.append), adapter.hook(hook, edit):
            yield

    return steer


def token_position_diff_means_steerer(
    adapter: Adapter, hook: str, data: TokenData, sizes: Sequence[int], strength: float = 2.0
) -> steering.Steerer:
    """Difference of means per (token, position), supervised: at a position holding token w add
    ``strength`` × (mean of the vectors of w there whose sentence has the target value − mean of
    all vectors of w there); 0 where that (token, position, value) was never seen."""
    acts, tok, pos, fac = flat_vectors(data)
    T = data.acts.shape[1]
    V = int(data.tokens.max()) + 1
    key = tok * T + pos
    count = torch.bincount(key, minlength=V * T).float()
    mean = torch.zeros(V * T, acts.shape[1]).index_add_(0, key, acts) / count.clamp_min(1)[:, None]
    deltas = {}
    for f, size in enumerate(sizes):
        for v in range(size):
            sel = torch.as_tensor(fac[:, f] == v)
            c = torch.bincount(key[sel], minlength=V * T).float()
            m = torch.zeros(V * T, acts.shape[1]).index_add_(0, key[sel], acts[sel]) / c.clamp_min(1)[:, None]
            deltas[(f, v)] = torch.where((c > 0)[:, None], m - mean, torch.zeros(()))

    @contextlib.contextmanager
    def steer(factor: int, value: int) -> Iterator[None]:
        seen: list[Tensor] = []

        def edit(act: Tensor) -> Tensor:
            B, Tn, _ = act.shape
            if Tn == 1:  # a lone BOS (full forwards): left as it is
                return act
            tokens = seen[-1].to(act.device)[:, :Tn].clamp(max=V - 1)
            k = tokens * T + torch.arange(Tn, device=act.device)
            out = act + strength * deltas[(factor, value)].to(act)[k]
            return torch.cat([act[:, :1], out[:, 1:]], 1)

        with adapter.hook(TOKEN_HOOK, seen.append), adapter.hook(hook, edit):
            yield

    return steer


def code_targets(
    codes: np.ndarray, factors: np.ndarray, sizes: Sequence[int], strength: float
) -> tuple[dict[tuple[int, int], tuple[int, float]], list[int]]:
    """Align each factor to its highest-MI latent and take each value's class mean as its target."""
    alignment = mi_matrix(codes, factors).argmax(0).tolist()
    return steering.class_targets(codes, factors, alignment, sizes, strength), alignment


def group_targets(
    codes: np.ndarray, factors: np.ndarray, sizes: Sequence[int], strength: float, min_share: float = 0.3
) -> tuple[dict[tuple[int, int], tuple[list[int], list[float]]], list[list[int]]]:
    """Gaussian latents grouped by factor: a latent belongs to the factor it shares most information
    with (MI / H(factor)) if that is at least ``min_share``; a factor with no latent takes its
    highest-MI one; latents whose codes barely vary (std ≤ 0.1: collapsed to the prior) join none. A 5-valued factor a VAE lays over two or three latents is then set by all of them:
    each to its class mean for the value, pushed ``strength`` times from its overall mean."""
    mi = mi_matrix(codes, factors)
    share = mi / np.array([_entropy(factors[:, j]) for j in range(factors.shape[1])])
    owner = share.argmax(1)
    active = codes.std(0) > 0.1  # a collapsed latent (posterior ≈ prior) holds nothing to set
    groups = []
    for f in range(factors.shape[1]):
        g = [i for i in range(codes.shape[1]) if active[i] and owner[i] == f and share[i, f] >= min_share]
        groups.append(g or [int(mi[:, f].argmax())])
    out = {}
    for f, g in enumerate(groups):
        overall = codes[:, g].mean(0)
        for v in range(sizes[f]):
            rows = codes[factors[:, f] == v][:, g]
            t = overall + strength * (rows.mean(0) - overall) if len(rows) else overall
            out[(f, v)] = (list(g), [float(x) for x in t])
    return out, groups


def category_targets(
    codes: np.ndarray, factors: np.ndarray, sizes: Sequence[int]
) -> tuple[dict[tuple[int, int], tuple[int, float]], list[int]]:
    """For categorical codes: each factor's highest-MI latent, and for each value the category most
    over-represented among its rows (largest P(category | value) − P(category))."""
    alignment = mi_matrix(codes, factors).argmax(0).tolist()
    out = {}
    for f, i in enumerate(alignment):
        col = codes[:, i].astype(int)
        prior = np.bincount(col, minlength=col.max() + 1) / len(col)
        for v in range(sizes[f]):
            sel = col[factors[:, f] == v]
            cond = np.bincount(sel, minlength=len(prior)) / max(1, len(sel))
            out[(f, v)] = (i, float(np.argmax(cond - prior)))
    return out, alignment


def known_positions(data: TokenData, world) -> Tensor:
    """``[N, T]`` mask of the positions from the plan's ':' to <eos>, where every factor is set."""
    start = world.num_factors + 1
    m = data.mask.clone()
    m[:, :start] = False
    return m


# ------------------------------------------------------------------ metrics


def mi_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``[k, F]`` MI (nats) of 20-bin histogram codes with discrete factors: the numbers of
    ``steering.mutual_information_matrix``, vectorised (``metrics._utils``)."""
    from probe_disentangle.metrics._utils import histogram_discretize, mutual_info_matrix

    return mutual_info_matrix(histogram_discretize(np.asarray(codes)), np.asarray(factors))


def per_factor_mig(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Per factor, (top − second code-factor MI) / H(factor), histogram MI as MIG (Chen et al. 2018)."""
    mi = mi_matrix(codes, factors)
    top = np.sort(mi, 0)[::-1]
    ent = np.array([_entropy(factors[:, j]) for j in range(factors.shape[1])])
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return (top[0] - second) / ent


def _entropy(x: np.ndarray) -> float:
    p = np.bincount(x) / len(x)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mig_at_positions(code_fn, data: TokenData, positions: np.ndarray) -> np.ndarray:
    """Per factor j, MIG of the codes read at ``positions[:, j]`` of each sentence (``code_fn``:
    (acts [M, d], tokens [M], positions [M]) → codes [M, k])."""
    N = len(data.tokens)
    out = []
    for j in range(data.factors.shape[1]):
        p = torch.as_tensor(positions[:, j]).long()
        rows = torch.arange(N)
        codes = code_fn(data.acts[rows, p], data.tokens[rows, p], p)
        out.append(per_factor_mig(np.asarray(codes), data.factors)[j])
    return np.asarray(out)


# ------------------------------------------------------------------ the study


@dataclass
class StudyConfig:
    hooks: Sequence[str] = HOOKS
    methods: Sequence[str] = METHODS
    n_train: int = 6000  # sentences for the heads' fits (and the references' means)
    n_eval: int = 2000  # held-out sentences for alignment, targets and MIG
    n_steer: int = 100  # generations per factor value
    strength: float = 2.0  # additive references, PCA and the single-latent heads (as the demo)
    head_strength: float = 1.0  # the Gaussian prefix heads: each latent set to its class mean
    steps: int = 5000
    latent_dim: int = 12
    beta: float = 4.0
    pca_k: int = 16
    seed: int = 0
    factors: Sequence[int] | None = None  # factors to steer (None: all)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method HeadConfig fields


def _summary(res: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    at = [n for n in names if n in res and res[n]["success"] >= 0.9 and res[n]["leakage"] <= 0.05]
    rows = [res[n] for n in names if n in res]
    cause = float(np.mean([r["success"] for r in rows]))
    isolate = float(np.mean([1 - r["leakage"] for r in rows]))
    return {
        "factors_at_floor": at,
        "n_at_floor": len(at),
        "mean_success": cause,
        "mean_isolate": isolate,
        "mean_disentangle": (cause + isolate) / 2,
        "mean_parse_rate": float(np.mean([r["parse_rate"] for r in rows])),
    }


def run_hook(cfg: StudyConfig, model, world, hook: str, log=print) -> dict[str, Any]:
    """Every method at one hook: fit (or compute), align, steer, measure."""
    names = world.factor_names
    sizes = world.factor_sizes
    steered = list(range(world.num_factors)) if cfg.factors is None else list(cfg.factors)
    adapter = attach(model, hook)
    rng = np.random.default_rng(cfg.seed)
    train = collect(adapter, hook, world, world.sample_factors(cfg.n_train, rng))
    held = collect(adapter, hook, world, world.sample_factors(cfg.n_eval, rng))
    fw = first_written(world, held.factors)
    colon = np.full_like(fw, world.num_factors + 1)
    known = known_positions(held, world)
    rows, kpos = known.nonzero(as_tuple=True)
    k_acts, k_tok, k_fac = held.acts[rows, kpos], held.tokens[rows, kpos], held.factors[rows.numpy()]
    vocab, n_pos, d = world.vocab_size, train.acts.shape[1], train.acts.shape[2]
    out: dict[str, Any] = {}
    for method in cfg.methods:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"supervision": SUPERVISION[method]}
        if method == "token_position_diff_means":
            st = token_position_diff_means_steerer(adapter, hook, train, sizes, strength=cfg.strength)
        elif method in PREFIX_HEADS:
            hc = HeadConfig(latent_dim=cfg.latent_dim, beta=cfg.beta, steps=cfg.steps, seed=cfg.seed, lr=2e-3)
            for k, v in {**PREFIX_HEADS[method], **cfg.overrides.get(method, {})}.items():
                setattr(hc, k, v)
            if method == "prefix_cat":
                head = PrefixCategoricalHead(hc, vocab, n_pos, d)
                entry["fit"] = fit_prefix_categorical(head, train)
            else:
                head = PrefixCodeHead(hc, vocab, n_pos, d)
                pairs = None
                if method == "prefix_pairs":
                    fa, fb = world.sample_pairs(cfg.n_train // 2, np.random.default_rng(cfg.seed + 7))
                    pairs = (collect(adapter, hook, world, fa), collect(adapter, hook, world, fb))
                entry["fit"] = fit_prefix_head(head, train, pairs)
            entry["head"] = asdict(hc)
            head.eval()
            seq_codes = head.sequence_codes(held.acts, held.tokens, held.mask)  # (N, T, k)
            codes = seq_codes[rows, kpos].numpy()
            if method == "prefix_cat":
                targets, alignment = category_targets(codes, k_fac, sizes)
            else:
                targets, alignment = group_targets(codes, k_fac, sizes, cfg.head_strength)
            entry["alignment"] = dict(zip(names, alignment, strict=True))
            idx = np.arange(len(held.tokens))
            entry["mig_first_written"] = {
                n: float(per_factor_mig(seq_codes[idx, fw[:, j]].numpy(), held.factors)[j]) for j, n in enumerate(names)
            }
            entry["mig_colon"] = dict(
                zip(
                    names,
                    per_factor_mig(seq_codes[:, world.num_factors + 1].numpy(), held.factors).tolist(),
                    strict=True,
                )
            )
            st = prefix_steerer(adapter, hook, head, targets)
        elif method == "positional_diff_means":
            st = steering.positional_diff_means_steerer(
                adapter, hook, train.acts, train.factors, sizes, strength=cfg.strength
            )
        elif method == "diff_means":
            acts, _, _, fac = flat_vectors(train)
            st = steering.diff_means_steerer(adapter, hook, acts, fac, sizes, strength=cfg.strength)
        elif method == "pca":
            acts, _, _, _ = flat_vectors(train)
            pcs = steering.principal_directions(acts, cfg.pca_k)
            mean = acts.mean(0)

            def pca_codes(a, t, p, pcs=pcs, mean=mean):
                return ((a - mean) @ pcs.T).numpy()

            st, _ = steering.pca_steerer(adapter, hook, k_acts, k_fac, sizes, cfg.pca_k, strength=cfg.strength)
            entry["mig_first_written"] = dict(zip(names, mig_at_positions(pca_codes, held, fw).tolist(), strict=True))
            entry["mig_colon"] = dict(zip(names, mig_at_positions(pca_codes, held, colon).tolist(), strict=True))
        else:
            norm, cond, objective = HEADS[method]
            hc = HeadConfig(
                norm=norm,
                cond=cond,
                objective=objective,
                latent_dim=cfg.latent_dim,
                beta=cfg.beta,
                steps=cfg.steps,
                seed=cfg.seed,
            )
            for k, v in cfg.overrides.get(method, {}).items():
                setattr(hc, k, v)
            head = PerTokenHead(hc, vocab, n_pos, d)
            pairs = None
            if objective == "ada_gvae":
                fa, fb = world.sample_pairs(cfg.n_train // 2, np.random.default_rng(cfg.seed + 7))
                pairs = (collect(adapter, hook, world, fa), collect(adapter, hook, world, fb))
            entry["fit"] = fit_head(head, train, pairs)
            entry["head"] = asdict(hc)
            head.eval()
            codes = head.codes(k_acts, k_tok, kpos).numpy()
            targets, alignment = code_targets(codes, k_fac, sizes, cfg.strength)
            entry["alignment"] = dict(zip(names, alignment, strict=True))
            entry["mig_first_written"] = dict(zip(names, mig_at_positions(head.codes, held, fw).tolist(), strict=True))
            entry["mig_colon"] = dict(zip(names, mig_at_positions(head.codes, held, colon).tolist(), strict=True))
            st = head_steerer(adapter, hook, head, targets)
        entry["steering"] = steering.evaluate_steering(model, world, st, steered, n=cfg.n_steer, seed=cfg.seed + 1)
        entry["summary"] = _summary(entry["steering"], names)
        if "mig_first_written" in entry:
            entry["summary"]["mean_mig_first_written"] = float(np.mean(list(entry["mig_first_written"].values())))
            entry["summary"]["mean_mig_colon"] = float(np.mean(list(entry["mig_colon"].values())))
        entry["seconds"] = time.perf_counter() - t0
        out[method] = entry
        s = entry["summary"]
        log(
            f"{hook} {method:<22} at floor {s['n_at_floor']}/{len(steered)}  success {s['mean_success']:.3f}  "
            f"isolate {s['mean_isolate']:.3f}  parse {s['mean_parse_rate']:.3f}  "
            f"MIG@first {s.get('mean_mig_first_written', float('nan')):.3f}  ({entry['seconds']:.0f} s)"
        )
    return out


def format_tables(results: dict[str, Any], names: Sequence[str]) -> str:
    """Per hook, per method, per factor: success / leakage / parse, MIG at the first-written position."""
    lines = []
    for hook, methods in results["hooks"].items():
        lines.append(f"\n## {hook}\n")
        lines.append("| method | supervision | " + " | ".join(names) + " | at floor | Disentangle | parse |")
        lines.append("|---|---|" + "---|" * len(names) + "---|---|---|")
        for m, e in methods.items():
            cells = []
            for n in names:
                r = e["steering"].get(n)
                if r is None:
                    cells.append("–")
                    continue
                mig = e.get("mig_first_written", {}).get(n)
                cells.append(
                    f"{r['success']:.2f}/{r['leakage']:.2f}/{r['parse_rate']:.2f}"
                    + ("" if mig is None else f" m{mig:.2f}")
                )
            s = e["summary"]
            lines.append(
                f"| {m} | {e['supervision']} | " + " | ".join(cells) + f" | {s['n_at_floor']} | "
                f"{s['mean_disentangle']:.3f} | {s['mean_parse_rate']:.3f} |"
            )
    lines.append("\ncells: success / leakage / parse rate, and mMIG at the first-written position (heads, PCA)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hooks", nargs="+", default=list(HOOKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--n-steer", type=int, default=100, help="generations per factor value")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--latent-dim", type=int, default=12)
    ap.add_argument("--beta", type=float, default=4.0)
    ap.add_argument("--strength", type=float, default=2.0, help="references, PCA, single-latent heads")
    ap.add_argument("--head-strength", type=float, default=1.0, help="Gaussian prefix heads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factors", nargs="+", default=None, help="factor names to steer (default: all)")
    ap.add_argument("--out", default="runs/per_token_heads.json")
    ap.add_argument("--smoke", action="store_true", help="tiny fits and few generations (seconds), for the test")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from probe_disentangle.hosts import load_host

    host = load_host("factor_lm")
    model, world = host.model, host.world
    names = list(world.factor_names)
    factors = None if args.factors is None else [names.index(f) for f in args.factors]
    cfg = StudyConfig(
        hooks=args.hooks,
        methods=args.methods,
        n_train=args.n_train,
        n_eval=args.n_eval,
        n_steer=args.n_steer,
        strength=args.strength,
        head_strength=args.head_strength,
        steps=args.steps,
        latent_dim=args.latent_dim,
        beta=args.beta,
        seed=args.seed,
        factors=factors,
    )
    if args.smoke:  # one hook, a method of each kind, tiny fits: the whole path in seconds
        cfg.n_train, cfg.n_eval, cfg.n_steer, cfg.steps = 120, 120, 2, 5
        cfg.hooks = list(cfg.hooks)[:1]
        if args.methods == list(METHODS):
            cfg.methods = ["token_position_diff_means", "cvae_pos", "prefix_pairs", "prefix_cat"]
        cfg.factors = cfg.factors or [names.index("size"), names.index("number")]
    results: dict[str, Any] = {"config": {k: v for k, v in asdict(cfg).items()}, "hooks": {}}
    for hook in cfg.hooks:
        results["hooks"][hook] = run_hook(cfg, model, world, hook)
    print(format_tables(results, [names[f] for f in (cfg.factors or range(len(names)))]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
