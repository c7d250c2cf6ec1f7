"""Train the shipped host: a small TransformerLens-native transformer on the factor language.

Reproducible from the seed; minutes on CPU. Writes ``probe_disentangle/zoo/factor_lm/``
(config.json + model.safetensors) and reports the parse rate of sampled sentences and how
closely each factor's sampled distribution matches the world's (uniform) one. By default the
sentences carry a plan prefix (see ``FactorLanguage(plan=True)``) so that the model holds every
factor in its hidden state before expressing it.

    python examples/train_factor_lm.py [--steps 3000] [--out probe_disentangle/zoo/factor_lm]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from probe_disentangle.steering import generate_world
from probe_disentangle.worlds.factor_language import FactorLanguage
from probe_disentangle.zoo import FACTOR_LM_DIR, bridge_config, save_native_lm


def model_fields(vocab_size: int, n_ctx: int, seed: int) -> dict:
    return dict(
        d_model=64,
        d_head=16,
        n_heads=4,
        n_layers=4,
        n_ctx=n_ctx,
        d_vocab=vocab_size,
        act_fn="gelu",
        seed=seed,
        model_name="factor_lm",
    )


def evaluate(model, world: FactorLanguage, n: int = 2000, seed: int = 1) -> dict:
    seqs = generate_world(model, world, n, seed)
    parsed = [world.parse(s) for s in seqs]
    ok = [p for p in parsed if p is not None]
    report = {"samples": n, "parse_rate": len(ok) / n, "factors": {}}
    if world.plan:  # how often the sentence does what its plan says
        plans = [world.parse_plan(s) for s in seqs]
        report["follows_plan"] = float(np.mean([p is not None and q == p for p, q in zip(plans, parsed, strict=True)]))
    for name, size in zip(world.factor_names, world.factor_sizes, strict=True):
        counts = np.bincount([p[name] for p in ok], minlength=size)
        freq = counts / max(1, counts.sum())
        chi2 = float(((counts - counts.sum() / size) ** 2 / (counts.sum() / size)).sum()) if ok else math.inf
        report["factors"][name] = {
            "freq": [round(float(f), 4) for f in freq],
            "tv_from_uniform": round(0.5 * float(np.abs(freq - 1 / size).sum()), 4),
            "chi2": round(chi2, 2),
            "dof": size - 1,
        }
    return report


ALL_ROWS = 1_000_000  # train on the whole factorial up to this many rows, else on sampled rows


def train_lm(
    world: FactorLanguage,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    on_step=None,
    log=print,
):
    """The shipped recipe: a native TransformerBridge (:func:`model_fields`) trained on every
    sentence of ``world`` with AdamW, 200 warm-up steps then a cosine decay over ``steps``.
    A world whose factorial has more than ``ALL_ROWS`` rows (the K-factor tokens at K ≥ 16) is
    sampled instead: fresh uniform factor rows for every batch, from ``seed``.
    ``on_step(step, model, loss)`` is called after each optimiser step (1-based; the model in
    train mode). Returns ``(model in eval mode, fields, last loss, seconds)``."""
    from transformer_lens import TransformerBridge

    torch.manual_seed(seed)
    every = world.num_combinations <= ALL_ROWS
    tokens = torch.from_numpy(world.render(world.all_factors())) if every else None  # (22500, T) every sentence once
    rows = np.random.default_rng(seed)
    fields = model_fields(world.vocab_size, int(world.max_length), seed)
    model = TransformerBridge.boot_native(bridge_config(fields))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    g = torch.Generator().manual_seed(seed)
    pad = world.tokenizer.pad_id
    t0 = time.time()
    model.train()
    for step in range(steps):
        if every:
            x = tokens[torch.randint(0, tokens.shape[0], (batch_size,), generator=g)]
        else:
            x = torch.from_numpy(world.render(world.sample_factors(batch_size, rows)))
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), ignore_index=pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step + 1, model, loss.item())
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:.0f}s")
    model.eval()
    return model, fields, loss.item(), time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-plan", dest="plan", action="store_false", help="train on sentences without the plan prefix")
    ap.add_argument("--out", default=str(FACTOR_LM_DIR))
    args = ap.parse_args()
    world = FactorLanguage(plan=args.plan)
    model, fields, loss, seconds = train_lm(
        world, args.steps, args.batch_size, args.lr, args.seed, log=lambda m: print(m, flush=True)
    )
    report = evaluate(model, world)
    print(json.dumps(report, indent=1))
    extra = {
        "vocab": world.tokenizer.vocab,
        "world": "factor_language",
        "plan": world.plan,
        "train": {**vars(args), "final_loss": loss, "seconds": round(seconds, 1)},
        "eval": report,
    }
    save_native_lm(model, args.out, fields, extra)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
