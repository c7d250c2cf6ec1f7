"""Which hook of a sprites DDPM carries the factors? The whole activation interchanged, per hook.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_hooks.py --pipeline DIR [--samples 48] [--steps 10]
        [--hooks mid_block,up_blocks.0,up_blocks.1] [--out results/diffusion_hooks]

For each hook and window (the early half of the schedule, Asyrp's; and every step) the base run's
activation at the hook is replaced, at every UNet forward in the window, by the source run's at the
same step (``steering.activation_interchange``). Read back by the sprites readout: per factor
RAVEL's Cause (the image takes the source's value) and Isolate (it keeps the base's others), over
the triples whose three images are valid, and the interchanged images' valid rate. A factor the
whole activation does not carry cannot be steered at that hook by any head: this is the ceiling of
a probe there. ``--tiny`` runs a small random UNet (a smoke test: no meaning). Writes
``diffusion_hooks.json`` and ``diffusion_hooks.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from probe_disentangle.adapters.diffusers_unet import default_window
from probe_disentangle.demo_diffusion import TOLERANCE, tiny_unet
from probe_disentangle.diffusion import make_scheduler
from probe_disentangle.steering import activation_interchange, image_interchange_scores
from probe_disentangle.worlds.sprites import ColourSprites
from probe_disentangle.worlds.sprites_readout import SpritesReadout

WINDOWS = ("early", "all")


def measure(unet, sched, readout, hooks, samples: int, steps: int, seed: int) -> list[dict[str, Any]]:
    """One row per (hook, window): valid rate and Cause / Isolate per factor."""
    names = list(readout.factor_names)
    rows = []
    for hook in hooks:
        for name in WINDOWS:
            window = default_window(sched.config.num_train_timesteps) if name == "early" else None
            t0 = time.time()
            base, source, swapped = activation_interchange(
                unet, sched, hook, samples, steps, window, base_seed=seed + 1, source_seed=seed + 2
            )
            valid = float(readout.read((swapped + 1) / 2)["valid"].float().mean())
            scores = {
                n: image_interchange_scores(readout, base, source, swapped, f, TOLERANCE) for f, n in enumerate(names)
            }
            rows.append({"hook": hook, "window": name, "valid_rate": valid, "factors": scores,
                         "seconds": round(time.time() - t0, 1)})  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    head = "| hook | window | valid | " + " | ".join(f"{n} Cause/Isolate" for n in names) + " | valid triples |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for r in rows:
        cells = [f"{r['factors'][n]['cause']:.2f}/{r['factors'][n]['isolate']:.2f}" for n in names]
        pairs = r["factors"][names[0]]["valid_pairs"]
        lines.append(
            f"| `{r['hook']}` | {r['window']} | {r['valid_rate']:.2f} | " + " | ".join(cells) + f" | {pairs} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pipeline", help="an exported pipeline folder (e.g. probe_disentangle/zoo/sprites_ddpm)")
    src.add_argument("--tiny", action="store_true", help="a small random UNet: the path end to end, no meaning")
    ap.add_argument("--hooks", default="mid_block,up_blocks.0,up_blocks.1,down_blocks.1")
    ap.add_argument("--samples", type=int, default=48, help="base/source pairs")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (η = 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/diffusion_hooks")
    args = ap.parse_args(argv)
    world = ColourSprites(image_size=32, antialias=True)
    readout = SpritesReadout.for_world(world)
    if args.tiny:
        unet, sched, host = tiny_unet(args.seed), make_scheduler({"num_train_timesteps": 1000}), "tiny random UNet"
    else:
        from probe_disentangle.zoo import load_sprites_ddpm

        pipe = load_sprites_ddpm(args.pipeline)
        unet, sched, host = pipe.unet.eval(), pipe.scheduler, args.pipeline
    rows = measure(unet, sched, readout, args.hooks.split(","), args.samples, args.steps, args.seed)
    names = list(readout.factor_names)
    report = {"host": host, "samples": args.samples, "steps": args.steps, "seed": args.seed, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diffusion_hooks.json").write_text(json.dumps(report, indent=1))
    md = (
        f"Host {host}: the whole activation at each hook interchanged (base seed {args.seed + 1}, source seed "
        f"{args.seed + 2}, {args.samples} pairs, {args.steps} DDIM steps, η = 0); early = t ∈ "
        f"{list(default_window(sched.config.num_train_timesteps))}.\n\n" + markdown(rows, names)
    )
    (out / "diffusion_hooks.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
