"""Disentanglement quality of ConvVAE objectives on the sprites world: β-VAE, β-TCVAE, FactorVAE.

For each objective and seed we train the Burgess et al. 2018 ConvVAE on rendered sprites with
the shared trainer, then score the posterior means of fresh sprites: MIG on the 4 factors
scale/orientation/x/y and on all 5 (Chen et al. 2018), DCI disentanglement (Eastwood & Williams
2018), the FactorVAE score (Kim & Mnih 2018), the reconstruction loss (Bernoulli NLL per image,
nats, at the posterior mean) and the training throughput (images/s, training steps only). The
metrics come from ``probe_disentangle.metrics`` when it provides them; missing ones print as
"n/a". Prints mean ± std over seeds and writes JSON.

    python benchmarks/image_quality.py                               # 3 objectives × 3 seeds (hours on CPU)
    python benchmarks/image_quality.py --steps 50 --seeds 1 --num-train 2000 --num-eval 1000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from probe_disentangle import TrainConfig, Trainer, losses, metrics
from probe_disentangle.image_models import ConvVAE, ConvVAEConfig
from probe_disentangle.worlds import Sprites

COLUMNS = ("mig4", "mig5", "dci_disentanglement", "factor_vae_score", "recon", "images_per_s")


@torch.no_grad()
def reconstruction_nll(model: ConvVAE, images: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    """Mean Bernoulli negative log-likelihood per image (nats) at the posterior mean."""
    model.eval()
    total = 0.0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(device).float()
        logits = model.decode(model.encode(x)[0])
        total += float(losses.reconstruction_loss(logits, x, "bernoulli").sum())
    return total / len(images)


def run_one(objective: str, objective_args: dict, seed: int, data: dict, args) -> dict:
    world, train, factors, ev = data["world"], data["train"], data["factors"], data["eval"]
    torch.manual_seed(seed)
    model = ConvVAE(ConvVAEConfig(latent_dim=args.latent_dim, objective=objective, objective_args=dict(objective_args)))
    cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=seed, progress=False
    )
    trainer = Trainer(model, cfg)
    t0 = time.perf_counter()
    trainer.fit(train)
    secs = time.perf_counter() - t0
    device = trainer.device
    codes = model.encode_means(ev)
    four = [world.factor_index(n) for n in ("scale", "orientation", "pos_x", "pos_y")]
    return {
        "objective": objective,
        "objective_args": objective_args,
        "seed": seed,
        "mig4": metrics.mig(codes, factors[:, four])["discrete_mig"],
        "mig5": metrics.mig(codes, factors)["discrete_mig"],
        "dci_disentanglement": metrics.dci(codes, factors, random_state=seed, fast=True)["disentanglement"],
        "factor_vae_score": metrics.factor_vae_score(world, model.encode_means, random_state=seed)["eval_accuracy"],
        "recon": reconstruction_nll(model, ev, device),
        "images_per_s": args.steps * args.batch_size / secs,
        "train_seconds": secs,
    }


def _fmt(vals: list[float]) -> str:
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return "n/a"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.4g}"
    return f"{m:.4g} ± {statistics.stdev(vals):.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--latent-dim", type=int, default=10)
    ap.add_argument("--objectives", default="beta_vae,beta_tcvae,factor_vae")
    ap.add_argument("--beta-vae-beta", type=float, default=4.0)
    ap.add_argument("--tcvae-beta", type=float, default=6.0)
    ap.add_argument("--factor-gamma", type=float, default=35.0, help="Kim & Mnih 2018 use γ = 35 on dSprites")
    ap.add_argument("--num-train", type=int, default=20_000)
    ap.add_argument("--num-eval", type=int, default=5_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "image_quality.json"))
    args = ap.parse_args()

    settings = {
        "beta_vae": {"beta": args.beta_vae_beta},
        "beta_tcvae": {"beta": args.tcvae_beta, "dataset_size": args.num_train},
        "factor_vae": {"gamma": args.factor_gamma},
    }
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = sorted(set(objectives) - set(settings))
    if unknown:
        raise SystemExit(f"unknown objectives {unknown}; choose from {sorted(settings)}")

    world = Sprites()
    _, train = world.sample(args.num_train, 0)
    factors, ev = world.sample(args.num_eval, 1)
    data = {"world": world, "train": torch.from_numpy(train) > 0.5, "factors": factors, "eval": torch.from_numpy(ev)}

    runs = []
    for objective in objectives:
        for seed in range(args.seeds):
            r = run_one(objective, settings[objective], seed, data, args)
            runs.append(r)
            print(
                f"{objective:<11} seed {seed}: " + " ".join(f"{c}={r[c]:.4g}" for c in COLUMNS),
                flush=True,
            )

    header = f"{'objective':<11} | " + " | ".join(f"{c:>18}" for c in COLUMNS)
    print("\n" + header + "\n" + "-" * len(header))
    summary = {}
    for objective in objectives:
        rows = [r for r in runs if r["objective"] == objective]
        summary[objective] = {
            c: {"mean": _nan_mean([r[c] for r in rows]), "values": [r[c] for r in rows]} for c in COLUMNS
        }
        print(f"{objective:<11} | " + " | ".join(f"{_fmt([r[c] for r in rows]):>18}" for c in COLUMNS))

    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "args": vars(args),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite({"meta": meta, "summary": summary, "runs": runs}), indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")


def _nan_mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _finite(o):
    """``o`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


if __name__ == "__main__":
    main()
