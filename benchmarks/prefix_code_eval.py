"""The library's per-token prefix-code head on the shipped factor LM, scored two ways (issue 20).

Fits ``heads.PrefixCodeHead`` without labels on ``--n-train`` rendered sentences at ``--hook``
(every position but BOS), aligns latents to factors on held-out sentences (``group_targets``:
labels used only to name latents), then scores, with every position edited:

- set-to-value steering (``evaluate_steering``): success / leakage / parse per factor;
- RAVEL interchange (``evaluate_interchange`` with ``prefix_interchanger``): Cause / Isolate /
  Disentangle per factor, ``--n-interchange`` base/source pairs each.

    python benchmarks/prefix_code_eval.py --hook blocks.1.hook_resid_post --seed 0 --latents 20
    python benchmarks/prefix_code_eval.py --hook blocks.2.hook_resid_post --restarts 3
    python benchmarks/prefix_code_eval.py --smoke        # seconds: a tiny fit, for the test

``--restarts R`` fits head seeds seed..seed+R-1 on the same data and also reports each one's
held-out objective and total correlation (no labels), and which restart each would choose.

Prints a table and writes JSON (default ``benchmarks/results/prefix_code_<layer>_k<k>_s<seed>.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.heads import PrefixCodeConfig, PrefixCodeHead, PrefixFitConfig, fit_prefix_code, heldout_loss
from probe_disentangle.hosts import load_host


def _one(args, seed: int, model, world, adapter, train, held, f_eval) -> dict[str, Any]:
    """Fit one restart (head seed ``seed``, shared data), then score it: held-out objective and TC
    (label-free), steering and interchange (labels only to name latents and to score)."""
    names, pad = world.factor_names, world.tokenizer.pad_id
    acts, cond, mask = train
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # the head's initial weights come from its own seed, not the RNG's history
    cfg = PrefixCodeConfig(d_in=acts.shape[-1], vocab=world.vocab_size, n_pos=acts.shape[1], latent_dim=args.latents)
    head = PrefixCodeHead(cfg)
    fit = fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=args.steps, seed=seed))
    score = heldout_loss(head, *held)
    z = head.codes(*held)[:, -1]  # each sentence's code
    targets, groups = steering.group_targets(z, f_eval, world.factor_sizes, 1.0)
    steer = steering.prefix_steerer(adapter, args.hook, head, targets)
    st = steering.evaluate_steering(model, world, steer, list(range(len(names))), n=args.n_steer, seed=args.seed + 1)
    ic = steering.evaluate_interchange(
        model, world, steering.prefix_interchanger(adapter, args.hook, head, groups, pad), n=args.n_interchange
    )
    at_floor = [n for n in names if st[n]["success"] >= 0.9 and st[n]["leakage"] <= 0.05]
    ic_floor = [n for n in names if ic["per_factor"][n]["cause"] >= 0.9 and ic["per_factor"][n]["isolate"] >= 0.95]
    res = {
        "seed": seed,
        "fit": fit,
        "heldout": score,
        "groups": dict(zip(names, groups, strict=True)),
        "steering": {n: {m: st[n][m] for m in ("success", "leakage", "parse_rate")} for n in names},
        "interchange": ic,
        "steering_at_floor": at_floor,
        "interchange_at_floor": ic_floor,
        "seconds": time.perf_counter() - t0,
    }
    held_txt = ", ".join(f"{k} {v:.3f}" for k, v in score.items())
    print(f"{args.hook}, head seed {seed}, {args.latents} latents ({res['seconds']:.0f} s); held-out {held_txt}")
    print("| factor | steer success/leakage/parse | Cause | Isolate | latents |\n|---|---|---|---|---|")
    for j, n in enumerate(names):
        s, c = st[n], ic["per_factor"][n]
        print(
            f"| {n} | {s['success']:.2f}/{s['leakage']:.2f}/{s['parse_rate']:.2f} | {c['cause']:.2f} | "
            f"{c['isolate']:.2f} | {groups[j]} |"
        )
    m = ic["mean"]
    print(
        f"steering at floor {len(at_floor)}/{len(names)}; interchange at floor {len(ic_floor)}/{len(names)}; "
        f"mean Cause {m['cause']:.3f} Isolate {m['isolate']:.3f} Disentangle {m['disentangle']:.3f}\n"
    )
    return res


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hook", default="blocks.1.hook_resid_post")
    ap.add_argument("--seed", type=int, default=0, help="data and steering seed, and the first head seed")
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--latents", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--n-steer", type=int, default=20, help="generations per factor value")
    ap.add_argument("--n-interchange", type=int, default=50, help="base/source pairs per factor")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.n_train, args.n_eval, args.n_steer, args.n_interchange = 5, 200, 200, 2, 4
    if args.restarts < 1:
        raise SystemExit("--restarts must be >= 1")
    torch.manual_seed(args.seed)
    host = load_host("factor_lm")
    model, world = host.model, host.world
    adapter, pad = attach(model), world.tokenizer.pad_id
    rng = np.random.default_rng(args.seed)

    def read(f: np.ndarray):
        t = torch.as_tensor(world.render(f)).long()
        a = (t != pad).long()
        a[:, 0] = 1
        return steering.read_sequences(adapter, args.hook, t, a)

    f_train, f_eval = world.sample_factors(args.n_train, rng), world.sample_factors(args.n_eval, rng)
    train, held = read(f_train), read(f_eval)
    runs = [_one(args, args.seed + r, model, world, adapter, train, held, f_eval) for r in range(args.restarts)]
    choice = {}
    for key in ("loss", "tc"):  # label-free: the restart with the lowest held-out objective / TC
        pick = min(runs, key=lambda x: x["heldout"][key])
        choice[key] = pick["seed"]
        print(f"lowest held-out {key}: head seed {pick['seed']} ({len(pick['steering_at_floor'])}/8 steering at floor)")
    res = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "restarts": runs, "choice": choice}
    name = f"prefix_code_{args.hook.split('.')[1]}_k{args.latents}_s{args.seed}_r{args.restarts}.json"
    out = Path(args.out or f"benchmarks/results/{name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    main()
