"""Training speed of candidate sprite-DDPM UNets (images/s, one thread by default) and their size.

    OMP_NUM_THREADS=1 python benchmarks/ddpm_train_speed.py [--steps 6] [--batch-size 64] [--out speed.json]

Each candidate trains ``--steps`` steps (after one warm-up step) of the ε-prediction loss on rendered
anti-aliased 32×32 colour sprites with AdamW; the table gives parameters, safetensors MB and images/s.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from probe_disentangle.diffusion import DDPMConfig, DDPMModel, SpriteImageStream
from probe_disentangle.worlds.sprites import ColourSprites

CANDIDATES = {
    "c32-64-64_l1": DDPMConfig(block_out_channels=(32, 64, 64), layers_per_block=1),
    "c64-64-128_l1": DDPMConfig(block_out_channels=(64, 64, 128), layers_per_block=1),
    "c32-64-128_l2": DDPMConfig(block_out_channels=(32, 64, 128), layers_per_block=2),
}


def measure(cfg: DDPMConfig, steps: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = DDPMModel(cfg)
    opt = model.configure_optimizers(2e-4)["unet"]
    stream = iter(SpriteImageStream(ColourSprites(image_size=32, antialias=True), batch_size, seed=0))
    params = sum(p.numel() for p in model.unet.parameters())

    def step(i: int) -> float:
        out = model.loss(next(stream))
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        model.update_ema(i)
        return float(out.total.detach())

    step(0)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    dt = time.perf_counter() - t0
    return {"params": params, "mb": round(params * 4 / 2**20, 2), "images_per_s": round(steps * batch_size / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {name: measure(cfg, args.steps, args.batch_size) for name, cfg in CANDIDATES.items()}
    print(f"{'config':16s} {'params':>9s} {'MB':>6s} {'img/s':>7s}   (threads={args.threads}, batch={args.batch_size})")
    for name, r in rows.items():
        print(f"{name:16s} {r['params']:9d} {r['mb']:6.2f} {r['images_per_s']:7.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "batch_size": args.batch_size, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
