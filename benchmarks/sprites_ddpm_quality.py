"""Sample quality of a sprites DDPM: the readout's valid fraction and each factor's distribution.

    OMP_NUM_THREADS=1 python benchmarks/sprites_ddpm_quality.py [--model probe_disentangle/zoo/sprites_ddpm]
        [--checkpoint /work/ddpm_run/step_NNNNNNNN] [--samples 500] [--steps 50] [--out quality.json]

N DDIM samples (50 steps, η = 0, a fixed seed) are read by ``worlds.sprites_readout`` for the
anti-aliased 32×32 world the host was trained on; reported: the valid fraction (floor ≥ 0.95 for the
shipped host), and per factor the sampled level frequencies among the valid samples and their total
variation from the world's uniform distribution, ``TV = ½ Σ |p − 1/K|`` (as the factor LM's card).
Orientation is scored modulo the shape's symmetry period (the readout reduces it so); its uniform
reference is therefore the mixture of uniforms over each shape's period.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from probe_disentangle.diffusion import ddim_sample
from probe_disentangle.worlds.sprites import ColourSprites
from probe_disentangle.worlds.sprites_readout import ORIENTATION_PERIODS, SpritesReadout


def factor_table(factors: np.ndarray, world: ColourSprites) -> dict:
    """Per factor: level frequencies of valid readouts ``[n, 6]`` and total variation from uniform."""
    out = {}
    for j, (name, size) in enumerate(zip(world.factor_names, world.factor_sizes, strict=True)):
        counts = np.bincount(factors[:, j], minlength=size).astype(float) if len(factors) else np.zeros(size)
        freq = counts / max(1.0, counts.sum())
        if name == "orientation":  # readout levels lie in [0, period of the sample's shape)
            ref = np.zeros(size)
            for shape, period in enumerate(ORIENTATION_PERIODS):
                share = float(np.mean(factors[:, 0] == shape)) if len(factors) else 1 / len(ORIENTATION_PERIODS)
                ref[:period] += share / period
        else:
            ref = np.full(size, 1.0 / size)
        out[name] = {
            "freq": [round(float(f), 4) for f in freq],
            "tv_from_uniform": round(0.5 * float(np.abs(freq - ref).sum()), 4) if len(factors) else 1.0,
        }
    return out


def measure_quality(unet, scheduler, samples: int = 500, steps: int = 50, seed: int = 0, batch_size: int = 64) -> dict:
    """Draw ``samples`` DDIM images from ``unet`` (η = 0, ``seed``) and score them with the readout."""
    world = ColourSprites(image_size=32, antialias=True)
    readout = SpritesReadout.for_world(world)
    t0 = time.time()
    x = ddim_sample(unet, scheduler, samples, steps=steps, eta=0.0, seed=seed, batch_size=batch_size)
    seconds = time.time() - t0
    read = readout.read((x + 1) / 2)
    valid = read["valid"].numpy()
    factors = read["factors"].numpy()[valid]
    return {
        "samples": samples,
        "ddim_steps": steps,
        "eta": 0.0,
        "seed": seed,
        "valid_fraction": round(float(valid.mean()) if samples else 0.0, 4),
        "mean_score": round(float(read["score"].mean()) if samples else 0.0, 4),
        "factors": factor_table(factors, world),
        "sampling_seconds": round(seconds, 1),
    }


def print_table(report: dict) -> None:
    print(f"samples {report['samples']}  DDIM {report['ddim_steps']} steps  eta 0  "
          f"valid {report['valid_fraction']:.3f}  mean score {report['mean_score']:.3f}")  # fmt: skip
    print(f"{'factor':12s} {'TV from uniform':>16s}")
    for name, row in report["factors"].items():
        print(f"{name:12s} {row['tv_from_uniform']:16.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a pipeline folder (default: the shipped sprites_ddpm)")
    ap.add_argument("--checkpoint", default=None, help="a trainer checkpoint folder instead (its EMA UNet)")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    args = ap.parse_args()
    if args.checkpoint:
        from probe_disentangle import io

        model = io.load(args.checkpoint)
        unet, scheduler = model.sampling_unet(ema=True).eval(), model.scheduler("ddim")
    else:
        from probe_disentangle.zoo import load_sprites_ddpm

        pipe = load_sprites_ddpm(args.model) if args.model else load_sprites_ddpm()
        unet, scheduler = pipe.unet, pipe.scheduler
    with torch.no_grad():
        report = measure_quality(unet, scheduler, args.samples, args.steps, args.seed)
    print_table(report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
