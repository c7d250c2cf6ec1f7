"""Training throughput of the sprites ConvVAE per objective, and what FactorVAE's discriminator costs.

1. FactorVAE's discriminator (Kim & Mnih's 6×1000 MLP) alone: forward + backward of a batch of
   128 (its own step: 64 samples and 64 permuted ones), in float32 and with ``dtype="bfloat16"``.
2. Whole training steps of the 64×64 ConvVAE (batch 64, the broadcast decoder or the dense one):
   β-VAE, β-TCVAE (MSS), FactorVAE with a float32 and a bf16 discriminator, in images/s.

Timings alternate the variants over ``--repeats`` rounds and keep each one's best round, so a
machine that is busy now and then biases no variant. One thread by default, as the CPU recipe runs.

    python benchmarks/image_train_speed.py --out benchmarks/results/image_train_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from probe_disentangle import TrainConfig, Trainer
from probe_disentangle.image_models import ConvVAE, ConvVAEConfig
from probe_disentangle.losses import FactorDiscriminator
from probe_disentangle.worlds import Sprites

OBJECTIVES = {
    "beta_vae": ("beta_vae", {"beta": 8.0}),
    "beta_tcvae": ("beta_tcvae", {"beta": 6.0}),
    "factor_vae": ("factor_vae", {"gamma": 35.0}),
    "factor_vae bf16 D": ("factor_vae", {"gamma": 35.0, "disc_dtype": "bfloat16"}),
}


def _mean_ms(fn, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1000 * (time.perf_counter() - t0) / iters


def discriminator_ms(latent_dim: int, iters: int, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` milliseconds for one forward + backward of 128 latents, per dtype."""
    torch.manual_seed(0)
    z = torch.randn(128, latent_dim)
    nets = {dt: FactorDiscriminator(latent_dim, dtype=dt) for dt in ("float32", "bfloat16")}
    best = dict.fromkeys(nets, float("inf"))
    for _ in range(repeats):
        for dt, d in nets.items():
            d(z).sum().backward()  # warm-up
            best[dt] = min(best[dt], _mean_ms(lambda d=d: d(z).sum().backward(), iters))
    return best


def train_images_per_s(decoder: str, steps: int, repeats: int, data: torch.Tensor) -> dict[str, float]:
    """Best-of-``repeats`` training throughput per objective (images/s, batch 64, Adam)."""
    trainers = {}
    for label, (name, args) in OBJECTIVES.items():
        torch.manual_seed(0)
        extra = {"dataset_size": len(data)} if name == "beta_tcvae" else {}
        model = ConvVAE(ConvVAEConfig(objective=name, objective_args={**args, **extra}, decoder=decoder))
        tr = Trainer(model, TrainConfig(steps=10**9, batch_size=64, lr=5e-4, progress=False, seed=0))
        tr.fit(data, until=3)  # warm-up: allocations, first Adam step
        trainers[label] = tr
    best = dict.fromkeys(trainers, 0.0)
    for _ in range(repeats):
        for label, tr in trainers.items():
            t0 = time.perf_counter()
            tr.fit(data, until=tr.step + steps)
            best[label] = max(best[label], steps * 64 / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--disc-iters", type=int, default=10, help="discriminator passes per timed round")
    ap.add_argument("--decoders", default="broadcast,deconv")
    ap.add_argument("--out", default="benchmarks/results/image_train_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    disc = discriminator_ms(10, iters=args.disc_iters, repeats=args.repeats)
    print(f"FactorVAE discriminator, forward + backward of 128 (ms), {args.threads} thread(s)")
    for dt, ms in disc.items():
        print(f"  {dt:<9} {ms:7.1f}")
    print(f"  bf16 speed-up {disc['float32'] / disc['bfloat16']:.2f}×")

    world = Sprites()
    data = torch.from_numpy(world.render_binary(world.sample_factors(4096, 0)))
    rows = []
    print(f"\n{'decoder':<10} {'objective':<18} {'images/s':>9} {'vs β-TCVAE':>11}")
    for decoder in filter(None, args.decoders.split(",")):
        rates = train_images_per_s(decoder, args.steps, args.repeats, data)
        for label, rate in rates.items():
            rows.append({"decoder": decoder, "objective": label, "images_per_s": rate})
            print(f"{decoder:<10} {label:<18} {rate:9.0f} {rate / rates['beta_tcvae']:10.2f}×")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or platform.machine()}
    out.write_text(json.dumps({"meta": meta, "discriminator_ms": disc, "training": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
