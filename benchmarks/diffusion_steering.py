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
Writes ``diffusion_steering.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from probe_disentangle import Probe, io
from probe_disentangle.adapters.diffusers_unet import default_window
from probe_disentangle.diffusion import ddim_sample, import_diffusers, make_scheduler
from probe_disentangle.metrics import mig
from probe_disentangle.steering import (
    WindowedAdapter,
    diff_means_steerer,
    directions_steerer,
    evaluate_image_steering,
    principal_directions,
    probe_steerer,
    random_directions,
    sampling_trajectories,
    window_filter,
)
from probe_disentangle.train import TrainConfig
from probe_disentangle.worlds.sprites import ColourSprites
from probe_disentangle.worlds.sprites_readout import SpritesReadout

# target levels per factor (shape, scale, orientation, x, y, hue) and how near counts as a hit
TARGETS = {0: [0, 1, 2], 1: [0, 5], 2: [5], 3: [6, 25], 4: [6, 25], 5: [0, 4]}
TOLERANCE = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2, 5: 0}


def load_host(args):
    """(unet, DDIM scheduler) from a training checkpoint, an exported pipeline folder, or tiny."""
    if args.tiny:
        d = import_diffusers()
        torch.manual_seed(0)
        unet = d.UNet2DModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4, attention_head_dim=8,
        ).eval()  # fmt: skip
        return unet, make_scheduler({"num_train_timesteps": 1000}, "ddim")
    if args.checkpoint:
        model = io.load(args.checkpoint)
        return model.sampling_unet(ema=True).eval(), model.scheduler("ddim")
    from probe_disentangle.diffusion import load_ddpm_pipeline

    pipe = load_ddpm_pipeline(args.pipeline)
    return pipe.unet.eval(), pipe.scheduler


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a training checkpoint folder (examples/train_sprites_ddpm.py)")
    src.add_argument("--pipeline", help="an exported pipeline folder (e.g. probe_disentangle/zoo/sprites_ddpm)")
    src.add_argument("--tiny", action="store_true", help="a small random UNet: the path end to end, no meaning")
    ap.add_argument("--hook", default="mid_block")
    ap.add_argument("--fit-samples", type=int, default=256, help="sampling runs the probe learns on")
    ap.add_argument("--eval-samples", type=int, default=64, help="images per steered target")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps (η = 0)")
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--fit-steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--strength", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=0.5, help="early share of the schedule edited (Asyrp)")
    ap.add_argument("--factors", default=None, help="comma-separated factor names to steer (default: all six)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/diffusion_steering")
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(args.seed)
    unet, sched = load_host(args)
    world = ColourSprites(image_size=32, antialias=True)
    readout = SpritesReadout.for_world(world)
    window = default_window(sched.config.num_train_timesteps, args.window)

    # the host's own trajectories, labelled by reading the images they end in
    images, inputs, index = sampling_trajectories(
        unet, sched, args.fit_samples, steps=args.steps, seed=args.seed, keep=window_filter(window)
    )
    read = readout.read((images + 1) / 2)
    valid = read["valid"].numpy()
    labels = read["factors"].numpy()

    rows: dict[str, dict] = {}
    probes = {
        "beta_tcvae": {"objective": "beta_tcvae", "objective_args": {"beta": 6.0}},
        "vae_beta1": {"objective": "beta_vae", "objective_args": {"beta": 1.0}},
    }
    train = TrainConfig(steps=args.fit_steps, batch_size=args.batch_size, lr=1e-3, progress=False, seed=args.seed)
    fitted = {}
    for name, cfg in probes.items():
        probe = Probe(unet, args.hook, head_config={"latent_dim": args.latents, **cfg})
        probe.fit(inputs, train, normalizer_vectors=20_000)
        fitted[name] = probe
    adapter = fitted["beta_tcvae"].adapter
    acts = torch.cat([adapter.collect(b, args.hook).vectors for b in inputs]).float()
    keep = torch.as_tensor(valid[index.numpy()])
    acts_v, fac_v = acts[keep], labels[index.numpy()][keep.numpy()]
    report: dict = {
        "host": args.checkpoint or args.pipeline or "tiny random UNet",
        "hook": args.hook,
        "window": list(window),
        "ddim_steps": args.steps,
        "fit_samples": args.fit_samples,
        "fit_valid_rate": float(valid.mean()),
        "eval_samples": args.eval_samples,
        "vectors": int(acts.shape[0]),
        "d": int(acts.shape[1]),
    }
    if len(fac_v) < 20:
        report["note"] = f"only {len(fac_v)} labelled vectors (valid samples): the host is not yet a sprite model"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "diffusion_steering.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return report
    sizes = list(world.factor_sizes)
    windowed = WindowedAdapter(adapter, window)
    steerers = {}
    for name, probe in fitted.items():
        s, _ = probe_steerer(probe, acts_v, fac_v, sizes, args.strength)
        steerers[name] = dataclasses.replace(s, adapter=windowed)
        codes = probe.encode(acts_v).numpy()
        rows[name] = {"mig": float(mig(codes, fac_v)["discrete_mig"])}
    steerers["pca"], _ = directions_steerer(
        windowed, args.hook, acts_v, principal_directions(acts_v, args.latents), fac_v, sizes, args.strength
    )
    steerers["random"], _ = directions_steerer(
        windowed, args.hook, acts_v, random_directions(acts_v.shape[1], args.latents, args.seed), fac_v, sizes,
        args.strength,
    )  # fmt: skip
    steerers["diff_means"] = diff_means_steerer(windowed, args.hook, acts_v, fac_v, sizes, args.strength)

    def sample():
        return ddim_sample(unet, sched, args.eval_samples, steps=args.steps, seed=args.seed + 1)

    chosen = args.factors.split(",") if args.factors else list(world.factor_names)
    unknown = sorted(set(chosen) - set(world.factor_names))
    if unknown:
        raise SystemExit(f"unknown factors {unknown}; choose from {list(world.factor_names)}")
    targets = {world.factor_names.index(n): TARGETS[world.factor_names.index(n)] for n in chosen}
    for name, steer in steerers.items():
        res = evaluate_image_steering(sample, readout, steer, targets, TOLERANCE)
        rows.setdefault(name, {})["steering"] = res
        good = [f for f in chosen if res[f]["success"] >= 0.9 and res[f]["leakage"] <= 0.05]
        rows[name]["factors_at_floor"] = good
    report["rows"] = rows
    report["seconds"] = round(time.time() - t0, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "diffusion_steering.json").write_text(json.dumps(report, indent=1))
    names = chosen
    print(f"host {report['host']}, hook {args.hook}, window {window}, {args.steps} DDIM steps; "
          f"fit samples valid {report['fit_valid_rate']:.2f}")  # fmt: skip
    print("| steerer | MIG | " + " | ".join(f"{n} succ/leak/valid" for n in names) + " | at floor |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for name, r in rows.items():
        s = r["steering"]
        cells = [f"{s[n]['success']:.2f}/{s[n]['leakage']:.2f}/{s[n]['valid_rate']:.2f}" for n in names]
        m = f"{r['mig']:.2f}" if "mig" in r else "–"
        print(f"| {name} | {m} | " + " | ".join(cells) + f" | {len(r['factors_at_floor'])} |")
    print(f"({report['seconds']} s)")
    return report


if __name__ == "__main__":
    main()
