"""Per-token heads whose code is read from a sequence's prefix (issue 20).

A per-token vector of a transformer is mostly "which token, at which position"; the factors of
what the sequence says are small directions beside that, and each is written at its own
position. :class:`PrefixCodeHead` gives every position a code that means the same thing
everywhere: each token's vector is Gaussian *evidence* about a code shared by its sequence (a
mean and a precision per latent, from enc(x_t, p_t)), and the code at position t is the product
of the prior N(0, 1) and the evidence of positions 1..t — a causal product of experts, so a
latent the prefix knows nothing about stays at the prior. The decoder dec(z, token, position)
reconstructs the vector from the code and what is known for free (the conditioning the adapter
provides: token id and position), so the latents need not hold either.

Because the code is a running sum of evidence, a KV-cached generation step carries two sums
``(P, H)`` per sequence and gives exactly the code a full forward of the whole prefix gives
(:meth:`PrefixCodeHead.posteriors` with ``state``).

Fitted without factor labels (:func:`fit_prefix_code`): one code sample per sequence, every
position reconstructed from it, the β-TCVAE decomposition (Chen et al. 2018) on the sequence's
posterior, and KL(q_T ‖ q_t) keeping each prefix code consistent with the sequence's. With
``pairs`` (sequences that differ in unnamed factors) it is Ada-GVAE (Locatello et al. 2020):
latents whose pair posteriors differ least are averaged (:func:`~probe_disentangle.losses.ada_gvae_share`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import losses
from ..registry import register
from .common import mlp

CENTRES = ("position", "token_position")
MAX_TABLE = 1 << 24  # floats in a (token, position) mean table: beyond this, centre per position


@dataclass
class PrefixCodeConfig:
    """Shape of a :class:`PrefixCodeHead` and its objective's weights.

    ``vocab`` and ``n_pos`` bound the conditioning (token ids, positions); ``centre`` is how the
    decoder's target is centred: per position, or per (token, position) — a table of
    ``vocab · n_pos · d_in`` floats, for small vocabularies only."""

    d_in: int = 64
    vocab: int = 64
    n_pos: int = 32
    latent_dim: int = 12
    hidden: int = 256
    emb: int = 16
    centre: str = "token_position"
    beta: float = 4.0  # weight of the total correlation (β-TCVAE); of the KL with pairs
    consistency: float = 1.0  # weight of KL(q_T ‖ q_t)
    recon_weight: float = 1.0  # 1/σ² of the Gaussian likelihood
    group_size: int = 1  # TC between consecutive groups of latents, not inside one (ISA-VAE prior)
    # positions whose vectors the decoder reconstructs and an edit writes (None: every position in
    # the mask); all masked positions still give evidence. Reconstructing only the positions where
    # a sequence writes its factors weighs each factor about once per sequence instead of once per
    # position that carries it (benchmarks/capacity_lm.py --recon-positions)
    recon_positions: tuple[int, ...] | None = None
    # with recon_positions: the weight of the other masked positions' reconstruction (0: dropped,
    # and never edited; in (0, 1]: down-weighted, and edited like the chosen ones). Weighting
    # instead of dropping keeps every reconstruction target while the chosen ones count more.
    other_positions_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.other_positions_weight <= 1.0:
            raise ValueError(
                f"PrefixCodeConfig.other_positions_weight must be in [0, 1], got {self.other_positions_weight}"
            )
        if self.other_positions_weight > 0 and self.recon_positions is None:
            raise ValueError(
                "PrefixCodeConfig.other_positions_weight needs recon_positions (the positions weighted 1); "
                "without them every position is reconstructed at weight 1"
            )
        if self.recon_positions is not None:
            self.recon_positions = tuple(sorted({int(p) for p in self.recon_positions}))
            bad = [p for p in self.recon_positions if not 0 <= p < self.n_pos]
            if not self.recon_positions or bad:
                raise ValueError(
                    f"PrefixCodeConfig.recon_positions must be a non-empty set of positions in [0, n_pos={self.n_pos}), "
                    f"got {bad or 'none'}; pass None to reconstruct every position"
                )
        for name in ("d_in", "vocab", "n_pos", "latent_dim", "hidden", "emb"):
            if getattr(self, name) < 1:
                raise ValueError(f"PrefixCodeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.centre not in CENTRES:
            raise ValueError(f"PrefixCodeConfig.centre must be one of {CENTRES}, got {self.centre!r}")
        if self.centre == "token_position" and self.vocab * self.n_pos * self.d_in > MAX_TABLE:
            raise ValueError(
                f"centre='token_position' needs a table of vocab·n_pos·d_in = "
                f"{self.vocab * self.n_pos * self.d_in:,} floats (limit {MAX_TABLE:,}); use centre='position'"
            )
        if self.group_size < 1 or self.latent_dim % self.group_size:
            raise ValueError(
                f"PrefixCodeConfig.group_size must divide latent_dim={self.latent_dim}, got {self.group_size}"
            )
        for name in ("beta", "consistency", "recon_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"PrefixCodeConfig.{name} must be finite and >= 0, got {getattr(self, name)}")


@dataclass
class PrefixFitConfig:
    """How :func:`fit_prefix_code` trains: Adam with a cosine schedule; ``batch_size`` vectors per
    step (sequences per step = batch_size // length); the KL terms' weight rises from 0 over the
    first ``kl_warmup`` fraction of the steps (keeps latents from collapsing early)."""

    steps: int = 5000
    batch_size: int = 512
    lr: float = 2e-3
    kl_warmup: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not (0 <= self.kl_warmup <= 1) or not (self.lr > 0):
            raise ValueError(f"kl_warmup must be in [0, 1] and lr > 0, got {self.kl_warmup}, {self.lr}")


State = tuple[Tensor, Tensor]  # evidence sums (precision P, precision-weighted mean H), each [B, k]


@register("prefix_code", PrefixCodeConfig)
class PrefixCodeHead(nn.Module):
    """Prefix codes ``[B, T, k]`` for sequences of vectors ``[B, T, d]`` with conditioning
    ``cond [B, T, 2]`` (token id, position). Positions where ``mask`` is False (BOS, padding)
    give no evidence and are not edited."""

    def __init__(self, config: PrefixCodeConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or PrefixCodeConfig()
        self.register_buffer("mean_p", torch.zeros(c.n_pos, c.d_in))
        self.register_buffer("scale_p", torch.ones(c.n_pos))  # the decoder's target (and the edit's) scale
        self.register_buffer("scale_enc", torch.ones(c.n_pos))  # the encoder's input: position-centred
        table = (c.vocab, c.n_pos) if c.centre == "token_position" else (0, 0)
        self.register_buffer("mean_tp", torch.zeros(*table, c.d_in))
        weight = torch.ones(c.n_pos)  # each position's reconstruction weight
        if c.recon_positions is not None:
            weight.fill_(c.other_positions_weight)
            weight[list(c.recon_positions)] = 1.0
        self.register_buffer("recon_w", weight, persistent=False)  # from the config, not saved
        self.register_buffer("written", weight > 0, persistent=False)  # the positions an edit writes
        self.pos_emb = nn.Embedding(c.n_pos, c.emb)
        self.tok_emb = nn.Embedding(c.vocab, c.emb)
        self.encoder = mlp(c.d_in + c.emb, 2 * c.latent_dim, c.hidden, 2)
        self.decoder = mlp(c.latent_dim + 2 * c.emb, c.d_in, c.hidden, 2)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ------------------------------------------------------------------ checks and statistics
    def check(self, acts: Tensor, cond: Tensor) -> None:
        """Shapes and ranges, with errors that name the fix."""
        c = self.config
        if acts.ndim != 3 or acts.shape[-1] != c.d_in:
            raise ValueError(f"activations must be [batch, positions, {c.d_in}], got {tuple(acts.shape)}")
        if cond.shape != (*acts.shape[:2], 2):
            raise ValueError(
                f"conditioning must be [batch, positions, 2] (token id, position) = {(*acts.shape[:2], 2)}, "
                f"got {tuple(cond.shape)}"
            )
        if cond.numel():
            tok, pos = cond[..., 0], cond[..., 1]
            if int(pos.max()) >= c.n_pos or int(pos.min()) < 0:
                raise ValueError(
                    f"position {int(pos.max())} is outside 0..{c.n_pos - 1}; fit a head with a larger n_pos"
                )
            if int(tok.max()) >= c.vocab or int(tok.min()) < 0:
                raise ValueError(f"token id {int(tok.max())} is outside 0..{c.vocab - 1}; set vocab to the host's")

    @torch.no_grad()
    def fit_statistics(self, vectors: Tensor, cond: Tensor) -> None:
        """Centring and scale from real vectors ``[M, d]`` and their conditioning ``[M, 2]``.

        The scale is one number per position (RMS per dimension of the centred vectors), floored
        at 5 % of the largest so a position the centring fixes exactly is not blown up."""
        c = self.config
        tok, pos = cond[:, 0].long(), cond[:, 1].long()
        cnt = torch.bincount(pos, minlength=c.n_pos).float()
        seen = cnt > 0
        sums = torch.zeros_like(self.mean_p).index_add_(0, pos, vectors.float())
        self.mean_p[seen] = sums[seen] / cnt[seen, None]
        if c.centre == "token_position":
            key = tok * c.n_pos + pos
            n = torch.bincount(key, minlength=c.vocab * c.n_pos).float()
            s = torch.zeros(c.vocab * c.n_pos, c.d_in).index_add_(0, key, vectors.float())
            flat = self.mean_p.repeat(c.vocab, 1).clone()  # unseen pairs: the position's mean
            ok = n > 0
            flat[ok] = s[ok] / n[ok, None]
            self.mean_tp.copy_(flat.view(c.vocab, c.n_pos, c.d_in))
        for buf, centred in ((self.scale_enc, self.mean_p[pos]), (self.scale_p, self.centre(cond))):
            resid = (vectors.float() - centred).pow(2).mean(1)
            sq = torch.zeros_like(buf).index_add_(0, pos, resid)
            scale = (sq[seen] / cnt[seen]).sqrt()
            buf[seen] = scale.clamp_min(0.05 * float(scale.max()))

    def centre(self, cond: Tensor) -> Tensor:
        tok, pos = cond[..., 0].long(), cond[..., 1].long()
        if self.config.centre == "token_position":
            return self.mean_tp[tok, pos]
        return self.mean_p[pos]

    def target(self, acts: Tensor, cond: Tensor) -> Tensor:
        """The decoder's target: the vector centred by what its conditioning predicts, scaled per position."""
        return (acts - self.centre(cond)) / self.scale_p[cond[..., 1].long(), None]

    # ------------------------------------------------------------------ codes
    def evidence(self, acts: Tensor, cond: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per position: the evidence mean and precision ``[B, T, k]`` (precision 0 where masked)."""
        pos = cond[..., 1].long()
        x = (acts - self.mean_p[pos]) / self.scale_enc[pos, None]
        m, lp = self.encoder(torch.cat([x, self.pos_emb(pos)], -1)).chunk(2, -1)
        prec = lp.clamp(-10, 8).exp() * mask[..., None].to(acts.dtype)
        return m, prec

    def posteriors(
        self, acts: Tensor, cond: Tensor, mask: Tensor, state: State | None = None
    ) -> tuple[Tensor, Tensor, State]:
        """Prefix posteriors (mean, log-variance) ``[B, T, k]`` and the evidence sums after the last
        position. ``state``: the sums of the positions before these (a KV-cached step), so that a
        sequence read in pieces gets the codes it gets read whole."""
        m, prec = self.evidence(acts, cond, mask)
        P = prec.cumsum(1)
        H = (prec * m).cumsum(1)
        if state is not None:
            P = P + state[0][:, None]
            H = H + state[1][:, None]
        Pt = 1 + P  # the prior N(0, 1) is one more expert
        return H / Pt, -Pt.log(), (P[:, -1], H[:, -1])

    @torch.no_grad()
    def onsets(self, acts: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        """``[B, k]`` long: per sequence and latent, the position whose vector gives the latent the
        most evidence (precision) — where the sequence tells the head that latent's value. Latents
        that learn their value from the same token are one factor's (:func:`~probe_disentangle.
        steering.knobs.find_knobs` groups them), found without labels."""
        self.check(acts, cond)
        return self.evidence(acts.float(), cond, mask)[1].argmax(1)

    def decode(self, z: Tensor, cond: Tensor) -> Tensor:
        tok, pos = cond[..., 0].long(), cond[..., 1].long()
        return self.decoder(torch.cat([z, self.tok_emb(tok), self.pos_emb(pos)], -1))

    @torch.no_grad()
    def codes(self, acts: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        """Posterior means ``[B, T, k]``: each position's code from the evidence up to it."""
        self.check(acts, cond)
        return self.posteriors(acts.float(), cond, mask)[0]

    @torch.no_grad()
    def edit(
        self, acts: Tensor, cond: Tensor, mask: Tensor, new_codes, state: State | None = None
    ) -> tuple[Tensor, State]:
        """a' = a + s_p·(dec(z', c) − dec(z, c)) at every position where ``mask`` holds (and, if set, in
        ``config.recon_positions`` or weighted by ``other_positions_weight`` > 0: the decoder learnt
        no others); z the prefix
        code, z' = ``new_codes(z)``, s_p the position's scale. What the head does not reconstruct
        stays in a'. Returns the edited vectors and the evidence sums (read from the unedited ones)."""
        self.check(acts, cond)
        x = acts.float()
        z, _, new_state = self.posteriors(x, cond, mask, state)
        delta = self.decode(new_codes(z), cond) - self.decode(z, cond)
        out = x + self.scale_p[cond[..., 1].long(), None] * delta
        where = mask & self.written[cond[..., 1].long()]
        return torch.where(where[..., None], out, x).to(acts.dtype), new_state

    # ------------------------------------------------------------------ objective
    def loss(
        self, acts: Tensor, cond: Tensor, mask: Tensor, n_data: float, kl_weight: float = 1.0
    ) -> dict[str, Tensor]:
        """Negative ELBO with the β-TCVAE decomposition on the sequence posterior, plus the
        consistency term; one code sample per sequence, decoded at every position."""
        mu, logvar, _ = self.posteriors(acts, cond, mask)
        z = _sequence_sample(mu, logvar)
        rec, cons = self._rec_and_consistency(acts, cond, mask, mu, logvar, z)
        if self.config.group_size > 1:
            parts = losses.grouped_tc_decomposition(z[:, -1], mu[:, -1], logvar[:, -1], n_data, self.config.group_size)
        else:
            parts = losses.tc_decomposition(z[:, -1], mu[:, -1], logvar[:, -1], n_data)
        reg = cons + parts["mi"] + self.config.beta * parts["tc"] + parts["dwkl"]
        return {
            "loss": self.config.recon_weight * rec + kl_weight * reg,
            "recon": rec,
            "regulariser": reg,
            "tc": parts["tc"].detach(),  # the sequence code's total correlation (a label-free restart score)
        }

    def _rec_and_consistency(
        self, acts: Tensor, cond: Tensor, mask: Tensor, mu: Tensor, logvar: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor]:
        m = mask.to(acts.dtype)
        m_rec = mask.to(acts.dtype) * self.recon_w[cond[..., 1].long()].to(acts.dtype)
        recon = self.decode(z, cond)
        rec = (0.5 * (recon - self.target(acts, cond)).pow(2).sum(-1) * m_rec).sum(1).mean()
        vT, vt = logvar[:, -1:].exp(), logvar.exp()
        kl_t = 0.5 * (logvar - logvar[:, -1:] + (vT + (mu[:, -1:] - mu).pow(2)) / vt - 1).sum(-1)
        cons = self.config.consistency * ((kl_t * m).sum(1) / m.sum(1).clamp_min(1)).mean()
        return rec, cons


def _sequence_sample(mu: Tensor, logvar: Tensor) -> Tensor:
    """One sample of the sequence's code (its last position's posterior), shared by all positions:
    a vector depends only on its prefix, so the decoder learns to ignore latents the prefix has
    not set."""
    eps = torch.randn(mu.shape[0], 1, mu.shape[-1], device=mu.device, dtype=mu.dtype)
    return (mu[:, -1:] + (0.5 * logvar[:, -1:]).exp() * eps).expand_as(mu)


def sequence_mask(tokens_mask: Tensor) -> Tensor:
    """Real positions minus the first (BOS carries nothing about the sequence)."""
    m = tokens_mask.bool().clone()
    m[:, 0] = False
    return m


def fit_prefix_code(
    head: PrefixCodeHead,
    acts: Tensor,
    cond: Tensor,
    mask: Tensor,
    fit: PrefixFitConfig | None = None,
    pairs: tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]] | None = None,
) -> dict[str, Any]:
    """Fit ``head`` on sequences ``acts [N, T, d]`` (conditioning ``[N, T, 2]``, ``mask [N, T]``).

    No factor labels. With ``pairs = ((acts_a, cond_a, mask_a), (acts_b, cond_b, mask_b))``,
    aligned sequences that differ in unnamed factors, the objective is Ada-GVAE on the sequence
    posteriors (shared latents averaged at every position; KL to the prior with weight β) and
    ``acts`` only sets the statistics. Returns the last step's losses and the seconds taken.
    ``fit.seed`` seeds the batches and code samples; the head's initial weights come from the
    global RNG when it was built (seed it first, ``torch.manual_seed``, for a reproducible restart)."""
    fit = fit or PrefixFitConfig()
    head.check(acts, cond)
    torch.manual_seed(fit.seed)
    g = torch.Generator().manual_seed(fit.seed)
    head.fit_statistics(acts[mask], cond[mask])
    sets = [(acts.float(), cond, mask)] if pairs is None else [(a.float(), c, m) for a, c, m in pairs]
    for a, c, _ in sets:
        head.check(a, c)
    n, T = sets[0][0].shape[:2]
    if any(len(s[0]) != n for s in sets):
        raise ValueError("the two halves of the pairs must hold the same number of sequences")
    opt = torch.optim.Adam(head.parameters(), lr=fit.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, fit.steps)
    per_step = min(n, max(2, fit.batch_size // (T * len(sets))))
    head.train()
    t0 = time.perf_counter()
    last: dict[str, Any] = {}
    for step in range(fit.steps):
        idx = torch.randint(0, n, (per_step,), generator=g)
        w = min(1.0, step / (fit.kl_warmup * fit.steps)) if fit.kl_warmup > 0 else 1.0
        if pairs is None:
            a, c, m = (x[idx] for x in sets[0])
            out = head.loss(a, c, m, float(n), w)
        else:
            out = _pair_loss(head, [tuple(x[idx] for x in s) for s in sets], w)
        loss = out["loss"]
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}; lower lr (now {fit.lr}) or beta")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = {k: float(v.detach()) for k, v in out.items()}
    head.eval()
    return {**last, "seconds": time.perf_counter() - t0, "sequences": n * len(sets), "steps": fit.steps}


def _pair_loss(head: PrefixCodeHead, batch: list[tuple[Tensor, Tensor, Tensor]], kl_weight: float) -> dict[str, Tensor]:
    (a1, c1, m1), (a2, c2, m2) = batch
    mu1, lv1, _ = head.posteriors(a1, c1, m1)
    mu2, lv2, _ = head.posteriors(a2, c2, m2)
    sh = losses.ada_gvae_share(mu1[:, -1], lv1[:, -1], mu2[:, -1], lv2[:, -1])[:, None, :]
    mu, lv = 0.5 * (mu1 + mu2), torch.log(0.5 * (lv1.exp() + lv2.exp()))
    rec = reg = 0.0
    for a, c, m, mu_i, lv_i in ((a1, c1, m1, mu1, lv1), (a2, c2, m2, mu2, lv2)):
        mu_s, lv_s = torch.where(sh, mu, mu_i), torch.where(sh, lv, lv_i)
        z = _sequence_sample(mu_s, lv_s)
        r, cons = head._rec_and_consistency(a, c, m, mu_s, lv_s, z)
        kl = losses.kl_normal_standard(mu_s[:, -1], lv_s[:, -1]).sum(1).mean()
        rec, reg = rec + r, reg + cons + head.config.beta * kl
    return {
        "loss": head.config.recon_weight * rec + kl_weight * reg,
        "recon": rec,
        "regulariser": reg,
        "shared": sh.float().mean(),
    }


@torch.no_grad()
def heldout_loss(
    head: PrefixCodeHead, acts: Tensor, cond: Tensor, mask: Tensor, batch: int = 256, seed: int = 0
) -> dict[str, float]:
    """The objective on held-out sequences (mean over batches of ``batch`` sequences, the code
    samples drawn from a fixed ``seed``): a label-free score to choose among restarts — lower is
    better — since no factor label enters it."""
    head.check(acts, cond)
    was = head.training
    head.eval()
    totals: dict[str, float] = {}
    n = len(acts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, n, batch):
            out = head.loss(acts[s : s + batch].float(), cond[s : s + batch], mask[s : s + batch], float(n))
            w = min(batch, n - s) / n
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + w * float(v)
    head.train(was)
    return totals


@torch.no_grad()
def onset_purity(head: PrefixCodeHead, acts: Tensor, cond: Tensor, mask: Tensor, min_std: float = 0.1) -> float:
    """A label-free restart score (higher is better): over the latents in use (sequence codes'
    std above ``min_std``), the mean fraction of sequences whose onset
    (:meth:`PrefixCodeHead.onsets`) is that latent's most common one. A latent that holds one
    factor takes its value where that factor is stated; one that mixes factors stated at
    different places takes it now here, now there. Meant for sequences that state each factor at
    a consistent position (a template, a plan, a prompt format)."""
    z = head.codes(acts, cond, mask)[:, -1]
    used = (z.std(0) > min_std).nonzero().flatten()
    if not len(used):
        return 0.0
    on = head.onsets(acts, cond, mask)[:, used]
    top = torch.stack([torch.bincount(on[:, i]).max() for i in range(on.shape[1])]).float()
    return float((top / len(on)).mean())


def fit_prefix_code_restarts(
    config: PrefixCodeConfig,
    acts: Tensor,
    cond: Tensor,
    mask: Tensor,
    fit: PrefixFitConfig | None = None,
    restarts: int = 3,
    held: tuple[Tensor, Tensor, Tensor] | None = None,
    pairs: tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]] | None = None,
    keep: list[PrefixCodeHead] | None = None,
) -> tuple[PrefixCodeHead, list[dict[str, Any]]]:
    """Fit ``restarts`` heads (seeds ``fit.seed + r``: initial weights, batches and samples) and keep
    the one with the highest :func:`onset_purity` on ``held`` (unlabelled sequences; default the
    training ones), ties broken by the lower held-out objective. No factor label is used. Returns
    the chosen head and, per restart, its seed, fit result, purity and held-out objective;
    ``keep``: a list that receives every restart's head, in order (to score them all)."""
    fit = fit or PrefixFitConfig()
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    held = held or (acts, cond, mask)
    heads, rows = [], []
    for r in range(restarts):
        seed = fit.seed + r
        torch.manual_seed(seed)
        head = PrefixCodeHead(config)
        result = fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(**{**fit.__dict__, "seed": seed}), pairs)
        heads.append(head)
        rows.append({"seed": seed, "fit": result, "onset_purity": onset_purity(head, *held)})
        rows[-1]["heldout"] = heldout_loss(head, *held, seed=seed)
    pick = max(range(restarts), key=lambda i: (rows[i]["onset_purity"], -rows[i]["heldout"]["loss"]))
    for i, row in enumerate(rows):
        row["chosen"] = i == pick
    if keep is not None:
        keep.extend(heads)
    return heads[pick], rows
