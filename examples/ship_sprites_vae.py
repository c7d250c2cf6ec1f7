"""Score a trained sprites β-TCVAE and ship it as ``probe_disentangle/zoo/sprites_beta_tcvae``.

The shipped model is trained by the benchmark's CPU recipe (β = 6, MSS, the spatial broadcast
decoder, batches of 64, Adam 5e-4, all 737 280 training sprites, 40 000 steps) with the LR decayed
linearly to 0 over the last 8 000 steps:

    OBJECTIVE=beta_tcvae SEED=0 STEPS=40000 DECAY=8000 OUT=.ckpt/bc_tcvae_s0 bash benchmarks/run_cpu_sprites.sh
    python examples/ship_sprites_vae.py .ckpt/bc_tcvae_s0/save/beta_tcvae@broadcast-seed0 --decay-steps 8000

This script scores the model on fresh sprites (the seed the benchmark scores on), finds which latent
holds each factor (largest posterior mutual information), and writes the model with that card into
the zoo (config JSON + safetensors, about 1.8 MB). ``zoo.load_sprites_vae`` loads it back offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from probe_disentangle import load, metrics, save
from probe_disentangle.image_models import ConvVAE
from probe_disentangle.io import read_config
from probe_disentangle.worlds import Sprites
from probe_disentangle.zoo import SPRITES_VAE_DIR

FOUR = ("scale", "orientation", "pos_x", "pos_y")


def card(model: ConvVAE, num_eval: int, seed: int) -> dict:
    """Measured quality and the factor → latent map, on ``num_eval`` fresh sprites."""
    world = Sprites()
    factors, images = world.sample(num_eval, seed)
    means, logvars = model.encode_posteriors(torch.from_numpy(images))
    four = [world.factor_index(n) for n in FOUR]
    post = metrics.posterior_mig(means, logvars, factors, random_state=seed)
    mi = np.asarray(post["mutual_information"])  # [latent, factor], nats
    latents = {}
    for f, name in enumerate(world.factor_names):
        order = np.argsort(-mi[:, f])
        latents[name] = {
            "latent": int(order[0]),
            "mi_nats": round(float(mi[order[0], f]), 4),
            "runner_up_mi_nats": round(float(mi[order[1], f]), 4),
            "factor_entropy_nats": round(float(np.log(world.factor_sizes[f])), 4),
        }
    with torch.no_grad():
        kl = model.kl_per_latent(torch.from_numpy(images[:2000]).float()).tolist()
    return {
        "eval": {"num_sprites": num_eval, "seed": seed},
        "mig4": metrics.mig(means, factors[:, four])["discrete_mig"],
        "posterior_mig4": float(np.mean([post["per_factor"][i] for i in four])),
        "posterior_mig_per_factor": {n: post["per_factor"][i] for i, n in enumerate(world.factor_names)},
        "mig5": metrics.mig(means, factors)["discrete_mig"],
        "dci_disentanglement": metrics.dci(means, factors, random_state=seed, fast=True)["disentanglement"],
        "kl_per_latent_nats": [round(v, 4) for v in kl],
        "factor_latents": latents,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a ConvVAE folder written by io.save (image_quality --save-dir)")
    ap.add_argument("--num-eval", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1, help="the sampling seed of the scored sprites")
    ap.add_argument("--decay-steps", type=int, default=8000, help="the recipe's final LR decay, for the card")
    ap.add_argument("--out", default=str(SPRITES_VAE_DIR))
    args = ap.parse_args()

    model = load(args.model)
    if not isinstance(model, ConvVAE) or model.config.objective != "beta_tcvae":
        raise SystemExit(
            f"{args.model} holds a {type(model).__name__} ({model.config.objective}); ship a β-TCVAE ConvVAE"
        )
    torch.set_grad_enabled(False)
    info = card(model.eval(), args.num_eval, args.seed)
    trained = read_config(args.model).get("benchmark", {})
    info["training"] = {k: trained[k] for k in ("steps", "images_seen", "seed") if k in trained}
    c = model.config
    info["training"]["recipe"] = (
        f"benchmarks/run_cpu_sprites.sh (β = {c.objective_args.get('beta', 6.0)}, "
        f"{c.objective_args.get('estimator', 'mss').upper()}, {c.decoder} decoder, batch 64, Adam 5e-4, "
        f"{c.objective_args.get('dataset_size', '?')} sprites, seed {trained.get('seed', '?')}) "
        f"with the LR decayed linearly to 0 over the last {args.decay_steps} steps"
    )
    save(model, Path(args.out), extra={"card": info})
    print(f"wrote {args.out}")
    for k in ("mig4", "posterior_mig4", "mig5", "dci_disentanglement"):
        print(f"{k:>22}: {info[k]:.3f}")
    for name, f in info["factor_latents"].items():
        print(f"{name:>22}: z{f['latent']} ({f['mi_nats']:.2f} of {f['factor_entropy_nats']:.2f} nats)")


if __name__ == "__main__":
    main()
