"""Render rate of the procedural sprites (images/s) on the CPU threads torch is given.

Measures ``Sprites`` and ``ColourSprites``, binary and anti-aliased (4x4 supersampling), at
batch sizes 1, 64 and 1024, on random factor rows. Prints a table and writes
``benchmarks/results/sprites_render.json``.

    python benchmarks/sprites_render.py [--threads 2] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from probe_disentangle.worlds import ColourSprites, Sprites

RESULTS = Path(__file__).resolve().parent / "results" / "sprites_render.json"
BATCH_SIZES = (1, 64, 1024)


def images_per_second(world: Sprites, batch_size: int, seconds: float) -> dict[str, float]:
    """Render fresh random batches for at least ``seconds``; return the rate and per-batch time."""
    rng = np.random.default_rng(0)
    pool = [world.sample_factors(batch_size, rng) for _ in range(8)]
    world.render(pool[0])  # warm-up
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        factors = pool[len(times) % len(pool)]
        t0 = time.perf_counter()
        world.render(factors)
        times.append(time.perf_counter() - t0)
    total = float(np.sum(times))
    return {
        "images_per_s": batch_size * len(times) / total,
        "median_ms_per_batch": 1e3 * float(np.median(times)),
        "batches": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per cell")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for colour in (False, True):
        for antialias in (False, True):
            world = ColourSprites(antialias=antialias) if colour else Sprites(antialias=antialias)
            for batch_size in BATCH_SIZES:
                stats = images_per_second(world, batch_size, args.seconds)
                rows.append(
                    {
                        "world": type(world).__name__,
                        "channels": world.observation_shape[0],
                        "antialias": antialias,
                        "batch_size": batch_size,
                        **stats,
                    }
                )

    header = f"{'world':<14} {'antialias':>9} {'batch':>6} {'images/s':>10} {'ms/batch':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['world']:<14} {('4x4' if r['antialias'] else 'no'):>9} {r['batch_size']:>6} "
            f"{r['images_per_s']:>10,.0f} {r['median_ms_per_batch']:>9.2f}"
        )

    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "image_size": 64,
        "supersample": 4,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
