"""Steer a sprites DDPM from h-space (``mid_block``) and score it by reading the images back.

One run, one table: a β-TCVAE probe fitted without labels on the host's own DDIM sampling
trajectories (the early, high-noise half of the schedule, Asyrp's window), a plain VAE head (β = 1),
PCA directions (Haas et al. 2023), random orthonormal directions (the chance row) and difference
of means per factor value (supervised by the readout's labels). Every steerer edits only inside
the window and is scored on the same starting noise with and without the edit: success (the
factor reads the target), leakage (another factor moved), valid rate (the readout accepts the
image), and the probe's MIG against the readout's factors of the sampled images.

    python benchmarks/diffusion_steering.py --checkpoint /work/ddpm_run/step_00009900 --out results/ds
    python benchmarks/diffusion_steering.py --pipeline probe_disentangle/zoo/sprites_ddpm --out results/ds

``--tiny`` runs the whole path on a small random UNet (a smoke test: its numbers mean nothing).
The run is :func:`probe_disentangle.demo_diffusion.run_diffusion_demo` with the benchmark's larger
settings (the demo's are sized for 5 minutes on 2 cores). Writes ``diffusion_steering.json``,
``report.md`` and ``traversals.png`` and prints the markdown report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probe_disentangle.demo_diffusion import DiffusionDemoConfig, run_diffusion_demo


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a training checkpoint folder (examples/train_sprites_ddpm.py)")
    src.add_argument("--pipeline", help="an exported pipeline folder (e.g. probe_disentangle/zoo/sprites_ddpm)")
    src.add_argument("--tiny", action="store_true", help="a small random UNet: the path end to end, no meaning")
    ap.add_argument("--hook", default="mid_block")
    ap.add_argument(
        "--head",
        default="mlp",
        choices=("mlp", "map"),
        help="map: conv encoder + spatial broadcast decoder on the hook's [C, H, W] map",
    )
    ap.add_argument("--conv-width", type=int, default=32, help="the map head's channels")
    ap.add_argument("--fit-samples", type=int, default=256, help="sampling runs the probe learns on")
    ap.add_argument("--eval-samples", type=int, default=64, help="images per steered target")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps (η = 0)")
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--fit-steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--strength", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=0.5, help="early share of the schedule edited (Asyrp)")
    ap.add_argument("--factors", default=None, help="comma-separated factor names to steer (default: all six)")
    ap.add_argument("--traversal-values", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/diffusion_steering")
    args = ap.parse_args(argv)
    cfg = DiffusionDemoConfig(
        out=args.out, pipeline=args.pipeline, checkpoint=args.checkpoint, tiny=args.tiny, hook=args.hook,
        fit_samples=args.fit_samples, eval_samples=args.eval_samples, steps=args.steps, latents=args.latents,
        fit_steps=args.fit_steps, batch_size=args.batch_size, strength=args.strength, window=args.window,
        factors=args.factors.split(",") if args.factors else None, traversal_values=args.traversal_values,
        seed=args.seed, head=args.head, conv_width=args.conv_width,
    )  # fmt: skip
    try:
        report = run_diffusion_demo(cfg)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    (Path(args.out) / "diffusion_steering.json").write_text(json.dumps(report, indent=1))
    print((Path(args.out) / "report.md").read_text())
    return report


if __name__ == "__main__":
    main()
