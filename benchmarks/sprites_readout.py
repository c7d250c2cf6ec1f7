"""Accuracy and validity rates of the sprite readout (``probe_disentangle.worlds.sprites_readout``).

For each rendering (binary, the world's default, and anti-aliased) at 32×32: per-factor
accuracy on fresh rendered sprites, clean and under added Gaussian pixel noise (σ = 0.05, 0.1,
clamped to [0, 1]) and off-grid (positions, scales and orientations moved by a quarter level);
orientation is scored modulo the shape's symmetry period (exact and within one level).
"render-equivalent" counts a fit as right when it renders to the same image as the truth: at
32×32 binary some different factor rows render identically, and no readout can separate those.
Then the acceptance rate of rendered sprites and of each non-sprite kind. Prints a table and
writes ``benchmarks/results/sprites_readout.json``.

    OMP_NUM_THREADS=1 python benchmarks/sprites_readout.py [--num 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from probe_disentangle.worlds import ColourSprites
from probe_disentangle.worlds.sprites_readout import NON_SPRITE_KINDS, SpritesReadout, non_sprites, orientation_error

RESULTS = Path(__file__).resolve().parent / "results" / "sprites_readout.json"
FACTORS = ("shape", "scale", "pos_x", "pos_y", "hue")


def off_grid(world: ColourSprites, factors: np.ndarray, seed: int) -> torch.Tensor:
    """Render ``factors`` with every continuous factor moved by ±1/4 level (random sign per
    factor, the same for the batch: the renderer reads its level tables): nearest level unchanged."""
    rng = np.random.default_rng(seed)
    jit = copy.copy(world)
    sign = rng.choice([-1.0, 1.0], size=3)
    jit.positions = world.positions + sign[0] * 0.25 * (world.positions[1] - world.positions[0])
    jit.scales = world.scales + sign[1] * 0.25 * (world.scales[1] - world.scales[0])
    jit.orientations = world.orientations + sign[2] * 0.25 * (world.orientations[1] - world.orientations[0])
    return torch.from_numpy(jit.render(factors))


def score(world: ColourSprites, readout: SpritesReadout, factors: np.ndarray, images: torch.Tensor) -> dict:
    """Per-factor accuracy of the fit, render-equivalent accuracy, and the acceptance rate."""
    t0 = time.perf_counter()
    out = readout.read(images)
    seconds = time.perf_counter() - t0
    fit = out["fit"].numpy()
    row = {f"{name}": float((fit[:, i] == factors[:, i]).mean()) for i, name in enumerate(world.factor_names)
           if name in FACTORS}  # fmt: skip
    err = orientation_error(fit[:, 2], factors[:, 2], factors[:, 0])
    for i, name in ((1, "scale"), (3, "pos_x"), (4, "pos_y")):
        row[f"{name}_within_1"] = float((np.abs(fit[:, i] - factors[:, i]) <= 1).mean())
    row["orientation_exact"] = float((err == 0).mean())
    row["orientation_within_1"] = float((err <= 1).mean())
    same = (world.render(fit) == world.render(factors)).reshape(len(fit), -1).all(1)
    row["render_equivalent"] = float(same.mean())
    row["all_factors"] = float(((fit[:, [0, 1, 3, 4, 5]] == factors[:, [0, 1, 3, 4, 5]]).all(1) & (err == 0)).mean())
    row["accepted"] = float(out["valid"].float().mean())
    row["ms_per_image"] = 1e3 * seconds / len(fit)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="sprites (and non-sprites of each kind) per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    results = {"num": args.num, "seed": args.seed, "image_size": args.size, "renderings": {}}
    for antialias in (False, True):
        world = ColourSprites(image_size=args.size, antialias=antialias)
        readout = SpritesReadout.for_world(world)
        factors = world.sample_factors(args.num, args.seed)
        clean = torch.from_numpy(world.render(factors))
        gen = torch.Generator().manual_seed(args.seed)
        cells = {"clean": clean}
        for sigma in (0.05, 0.1):
            cells[f"noise_{sigma}"] = (clean + sigma * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
        cells["off_grid_quarter_level"] = off_grid(world, factors, args.seed)
        rows = {name: score(world, readout, factors, images) for name, images in cells.items()}
        rejected = {}
        for kind in NON_SPRITE_KINDS:
            out = readout.read(non_sprites(world, kind, args.num, args.seed + 1))
            rejected[kind] = float(1.0 - out["valid"].float().mean())
        name = "antialiased" if antialias else "binary"
        results["renderings"][name] = {"sprites": rows, "non_sprites_rejected": rejected}

        cols = [*FACTORS, "orientation_exact", "orientation_within_1", "pos_x_within_1", "render_equivalent"]
        cols += ["accepted", "ms_per_image"]
        print(f"\n{name} {args.size}x{args.size}, {args.num} sprites (seed {args.seed})")
        print(f"{'cell':<24}" + "".join(f"{c[:12]:>13}" for c in cols))
        for cell, row in rows.items():
            print(f"{cell:<24}" + "".join(f"{row[c]:>13.4f}" for c in cols))
        print("non-sprites rejected: " + ", ".join(f"{k} {v:.4f}" for k, v in rejected.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
