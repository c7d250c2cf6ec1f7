"""The larger map-head fit of RESULTS 2026-12-08 (second session): the shipped sprites DDPM (the grown UNet with
trailing DDIM steps), a β-TCVAE map head at up_blocks.1 on 384 sampling runs, 4000 fit steps; 1456 s on one
shared core.  OMP_NUM_THREADS=1 python benchmarks/studies/diffusion_map_head/larger/run.py OUT"""

import json
import sys

from probe_disentangle.demo_diffusion import DiffusionDemoConfig, run_diffusion_demo

out = sys.argv[1] if len(sys.argv) > 1 else "runs/diffusion_map_head_larger"
cfg = DiffusionDemoConfig(
    out=out, hook="up_blocks.1", head="map", fit_samples=384, eval_samples=12, steps=10, fit_steps=4000,
    batch_size=64, baselines=("random",),
)  # fmt: skip
report = run_diffusion_demo(cfg)
with open(f"{out}/diffusion_steering.json", "w") as f:
    json.dump(report, f, indent=1)
