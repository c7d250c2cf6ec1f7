"""How much labelling buys: the supervision ladder on the factor LM's middle layer (issue 22, §2).

One host (the shipped factor LM), one hook (``--hook``), every position but BOS edited, the same
100 interchange bases for every row. Rungs:

- **no labels**: the per-token prefix-code head, fitted without labels (``--restarts`` fits, the
  purest kept, as ``benchmarks/prefix_code_eval.py``), its knobs found without labels. Naming a
  knob and its settings needs *some* labelled sentences; the rung is scored with ``k`` labelled
  sentences per factor value for that naming, k ∈ ``--ks`` (and with all ``--n-eval`` held-out
  sentences, "all").
- **pairs**: the same head trained as Ada-GVAE on sentence pairs that differ in one unnamed
  factor, named the same way.
- **labels**: difference of means per (token, position) estimated from k labelled sentences per
  factor value (``steering.TokenPositionMeans``), k ∈ ``--ks``, and from all training sentences.

Each row: factors at Cause ≥ 0.9 and Isolate ≥ 0.95, mean Cause / Isolate / Disentangle, parse rate.

    python benchmarks/supervision_ladder.py                      # blocks.2, k = 1, 5, 25
    python benchmarks/supervision_ladder.py --smoke              # seconds, for the test

Writes ``benchmarks/studies/supervision_ladder/ladder_<layer>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.heads import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts
from probe_disentangle.hosts import load_host
from probe_disentangle.io import atomic_write_json


def labelled_subset(factors: np.ndarray, sizes: Sequence[int], k: int, seed: int) -> np.ndarray:
    """Row indices holding at least ``k`` examples of every value of every factor (drawn greedily
    in a seeded order: each row is kept while it supplies a value still short of ``k``)."""
    order = np.random.default_rng(seed).permutation(len(factors))
    need = [np.full(s, k) for s in sizes]
    keep = []
    for i in order:
        if any(need[j][factors[i, j]] > 0 for j in range(len(sizes))):
            keep.append(i)
            for j in range(len(sizes)):
                need[j][factors[i, j]] -= 1
        if all((n <= 0).all() for n in need):
            break
    if not all((n <= 0).all() for n in need):
        raise ValueError(f"{len(factors)} sentences do not hold {k} examples of every factor value")
    return np.asarray(sorted(keep))


def score(ic: dict[str, Any]) -> dict[str, Any]:
    pf = ic["per_factor"]
    at = [n for n, r in pf.items() if r["cause"] >= 0.9 and r["isolate"] >= 0.95]
    return {"at_floor": at, "mean": ic["mean"], "per_factor": pf}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hook", default="blocks.2.hook_resid_post")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ks", default="1,5,25", help="labelled sentences per factor value")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--latents", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--n-interchange", type=int, default=100)
    ap.add_argument("--no-pairs", dest="pairs", action="store_false")
    ap.add_argument("--out", default="benchmarks/studies/supervision_ladder")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ks, args.restarts, args.steps, args.n_train, args.n_eval, args.n_interchange = "1", 1, 30, 300, 300, 4
    ks = [int(k) for k in args.ks.split(",")]
    t0 = time.time()
    torch.manual_seed(args.seed)
    host = load_host("factor_lm")
    model, world = host.model, host.world
    sizes, pad = list(world.factor_sizes), world.tokenizer.pad_id
    adapter = attach(model)
    rng = np.random.default_rng(args.seed)

    def read(f: np.ndarray):
        return steering.read_world_sequences(adapter, args.hook, world, f)

    f_train, f_eval = world.sample_factors(args.n_train, rng), world.sample_factors(args.n_eval, rng)
    train, held = read(f_train), read(f_eval)
    bases = steering.base_generations(model, world, args.n_interchange, seed=args.seed + 2)
    cfg = PrefixCodeConfig(
        d_in=train[0].shape[-1], vocab=world.vocab_size, n_pos=train[0].shape[1], latent_dim=args.latents
    )
    fit = PrefixFitConfig(steps=args.steps, seed=args.seed)
    heads: dict[str, Any] = {}
    heads["none"], _ = fit_prefix_code_restarts(cfg, *train, fit, args.restarts, held=held)
    if args.pairs:
        fa, fb = world.sample_pairs(args.n_train, np.random.default_rng(args.seed + 3))
        heads["pairs"], _ = fit_prefix_code_restarts(cfg, *train, fit, 1, held=held, pairs=(read(fa), read(fb)))
    rows: list[dict[str, Any]] = []
    for rung, head in heads.items():
        z = head.codes(*held)[:, -1].numpy()
        try:
            knobs = steering.find_knobs(z, onsets=head.onsets(*held).numpy())
        except ValueError as err:  # every latent at the prior (a too-short fit): no knob to name
            rows.append({"rung": rung, "k": None, "labelled_sentences": 0, "error": str(err)})
            print(f"{rung:<6}: no knobs ({err})")
            continue
        for k in [*ks, None]:
            idx = np.arange(len(f_eval)) if k is None else labelled_subset(f_eval, sizes, k, args.seed)
            _, groups, _ = steering.knob_targets(knobs, z[idx], f_eval[idx], sizes)
            inter = steering.prefix_interchanger(adapter, args.hook, head, groups, pad)
            r = score(steering.evaluate_interchange(model, world, inter, bases=bases))
            rows.append({"rung": rung, "k": k, "labelled_sentences": len(idx), **r})
            print(
                f"{rung:<6} k={k or 'all'} ({len(idx)} labelled): {len(r['at_floor'])}/8, D {r['mean']['disentangle']:.3f}"
            )
    for k in [*ks, None]:
        idx = np.arange(len(f_train)) if k is None else labelled_subset(f_train, sizes, k, args.seed)
        tpm = steering.TokenPositionMeans(*(x[idx] for x in train), f_train[idx], sizes)
        r = score(steering.evaluate_interchange(model, world, tpm.interchanger(adapter, args.hook, world), bases=bases))
        rows.append({"rung": "labels", "k": k, "labelled_sentences": len(idx), **r})
        print(f"labels k={k or 'all'} ({len(idx)} labelled): {len(r['at_floor'])}/8, D {r['mean']['disentangle']:.3f}")
    lines = [
        f"# The supervision ladder at `{args.hook}` (seed {args.seed}, {args.n_interchange} interchange pairs per factor)",
        "",
        "| rung | what the labels do | labelled sentences | factors at Cause ≥ 0.9, Isolate ≥ 0.95 | mean Cause | mean Isolate | mean Disentangle | parse |",
        "|---|---|---|---|---|---|---|---|",
    ]
    what = {"none": "name knobs and settings", "pairs": "name knobs and settings", "labels": "estimate the means"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['rung']} | – | – | no knobs: {r['error']} | – | – | – | – |")
            continue
        m = r["mean"]
        k = "all" if r["k"] is None else f"{r['k']} per value"
        lines.append(
            f"| {r['rung']} | {what[r['rung']]} | {r['labelled_sentences']} ({k}) | {len(r['at_floor'])} | "
            f"{m['cause']:.3f} | {m['isolate']:.3f} | {m['disentangle']:.3f} | {m['parse_rate']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layer = args.hook.split(".")[1]
    res = {"config": vars(args), "rows": rows, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(out / f"ladder_b{layer}.json", res)
    (out / f"ladder_b{layer}.md").write_text(text)
    return res


if __name__ == "__main__":
    main()
