"""Train the shipped diffusion host: a small ``diffusers.UNet2DModel`` DDPM on colour sprites.

ε-prediction (Ho et al. 2020) on anti-aliased 32×32 RGB ``ColourSprites`` in [-1, 1], rendered on
the fly from the seed (batch i from ``default_rng([seed, i])``), trained by the package's
``Trainer``: a checkpoint after every chunk of ``--chunk`` steps, bit-identical resume on the CPU,
the GPU when one is visible (``--device auto``). SIGTERM / Ctrl-C stop after the current chunk's
checkpoint, so a run spans several sessions:

    OMP_NUM_THREADS=1 python examples/train_sprites_ddpm.py --out /work/ddpm_run --steps 60000
    OMP_NUM_THREADS=1 python examples/train_sprites_ddpm.py --out /work/ddpm_run --steps 60000 --resume
    python examples/train_sprites_ddpm.py --out /work/ddpm_run --export probe_disentangle/zoo/sprites_ddpm

``--export DIR`` writes the latest checkpoint's EMA UNet as a diffusers pipeline folder (diffusers'
own ``save_pretrained``) with ``card.json``: the recipe and the quality measured by
``benchmarks/sprites_ddpm_quality.py`` (DDIM, 50 steps, η = 0; ``--eval-samples`` of them).
``--sample N --grid PNG`` draws N DDIM samples from the latest checkpoint for a look.

A machine whose disk does not outlive the session carries the run on through the shipped folder:
export at the end of a session, and start the next one from it with a new seed (fresh batches)

    OMP_NUM_THREADS=1 python examples/train_sprites_ddpm.py --out /work/ddpm_run --steps 60000 \
        --init-from probe_disentangle/zoo/sprites_ddpm --seed 1

``--init-from`` loads the folder's UNet into both the trained and the EMA weights with a fresh
optimiser (Adam's moments rebuild within a few hundred steps; the LR warm-up runs again), and the
card's ``train.segments`` list grows by this run's segment, so the card states every step the
weights have seen. Within a segment, resume stays bit-identical (``--resume``).

``--decay-steps N`` holds the LR and then decays it linearly to 0 over the run's last N steps
(warmup-stable-decay). The learning rates up to a constant-LR checkpoint are unchanged, so a
session's segment can be resumed with ``--steps S --decay-steps N`` (S − N ≥ the checkpoint's step)
to end decayed before its export; the next segment warms up to the full LR again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

import torch

from probe_disentangle import io, registry
from probe_disentangle.constants import LATEST_FILE
from probe_disentangle.diffusion import (
    CARD_FILE,
    DDPMConfig,
    DDPMModel,
    SpriteImageStream,
    ddim_sample,
    deepen_unet,
    export_pipeline,
    load_ddpm_pipeline,
)
from probe_disentangle.train import TrainConfig, Trainer
from probe_disentangle.worlds.sprites import ColourSprites

# the recipe (chosen by benchmarks/ddpm_train_speed.py: the smallest candidate, 4.3 MB, ~40 images/s
# on one CPU thread; (64, 64, 128) and (32, 64, 128) × 2 layers train at about half that). The first
# 28k steps ran at layers_per_block=1 and plateaued at 0.85 valid; --layers-per-block 2 with
# --init-from grows that model (diffusion.deepen_unet: the same function to start with). The shipped
# model is that growth: 23 100 steps at 1 layer, then 7800 at 2; 0.905 valid with "trailing" DDIM
# steps, and it has plateaued too (0.875 at both 4800 and 7800 grown steps with "leading" ones).
MODEL = DDPMConfig(block_out_channels=(32, 64, 64), layers_per_block=1, attention=True, ema_decay=0.999)


def world() -> ColourSprites:
    return ColourSprites(image_size=32, antialias=True)


def latest_checkpoint(out: str) -> Path:
    latest = Path(out) / LATEST_FILE
    if not latest.is_file():
        raise SystemExit(f"no checkpoint in {out} (no {LATEST_FILE} file): train first")
    return Path(out) / latest.read_text().strip()


def load_checkpoint(out: str) -> tuple[DDPMModel, dict]:
    path = latest_checkpoint(out)
    model = io.load(path)
    meta = json.loads((path / "train_state.json").read_text())
    return model, {"checkpoint": path.name, "step": int(meta["step"]), "train_config": meta["train_config"]}


INIT_FILE = "init_from.json"  # in --out: the segments the initial weights had already trained


def init_from(model: DDPMModel, folder: str, out: str) -> None:
    """Start ``model`` (trained and EMA weights) from an exported pipeline folder's UNet, and note
    the folder's training segments in ``out`` so the export continues the list."""
    unet = load_ddpm_pipeline(folder).unet
    have, want = unet.config.layers_per_block, model.config.layers_per_block
    if have > want:
        raise SystemExit(f"{folder} has layers_per_block={have}; train it with --layers-per-block {have} or more")
    if have < want:  # grow it in place: the deeper UNet starts as the same function
        print(f"growing {folder} from layers_per_block={have} to {want} (deepen_unet)", flush=True)
        deepen_unet(unet, model.unet)
    else:
        model.unet.load_state_dict(unet.state_dict())
    if model.ema is not None:
        model.ema.load_state_dict(model.unet.state_dict())
    card = json.loads((Path(folder) / CARD_FILE).read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / INIT_FILE).write_text(json.dumps({"folder": str(folder), "segments": segments_of(card)}, indent=1))
    print(f"initialised from {folder} ({sum(g['steps'] for g in segments_of(card))} steps so far)", flush=True)


def segments_of(card: dict) -> list[dict]:
    """The training segments a card records (a card from before segments: its one run)."""
    train = card.get("train", {})
    if "segments" in train:
        return train["segments"]
    return [{"steps": int(train["step"]), "seed": train.get("train_config", {}).get("seed"), "init": None}]


def train(args: argparse.Namespace) -> None:
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        lr_schedule="linear" if args.decay_steps else "constant",
        decay_steps=args.decay_steps,
        grad_clip=1.0,
        device=args.device,
        seed=args.seed,
        log_every=50,
        checkpoint_dir=args.out,
        keep_checkpoints=2,
        progress=False,
    )
    torch.manual_seed(args.seed)
    if args.resume:  # the run's own architecture, whatever the flags say (the weights come next)
        model = io.load(latest_checkpoint(args.out))
    else:
        model = DDPMModel(dataclasses.replace(MODEL, layers_per_block=args.layers_per_block))
    if args.init_from and not args.resume:
        init_from(model, args.init_from, args.out)
    trainer = Trainer(model, cfg)
    stream = SpriteImageStream(world(), args.batch_size, seed=args.seed)
    stop = {"now": False}

    def request_stop(signum, frame):  # finish the chunk, write its checkpoint, then leave
        stop["now"] = True
        print(f"signal {signum}: stopping after this chunk's checkpoint", flush=True)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.resume:  # load the checkpoint (no steps yet); the chunks below carry on from it
        trainer.fit(stream, resume=True, until=0)
        print(f"resumed at step {trainer.step} from {trainer.last_checkpoint}", flush=True)
    t0 = time.time()
    print(f"device {trainer.device}; threads {torch.get_num_threads()}; out {args.out}", flush=True)
    while trainer.step < args.steps and not stop["now"]:
        begun = trainer.step
        res = trainer.fit(stream, until=trainer.step + args.chunk, overwrite=args.overwrite)
        args.overwrite = False  # later chunks carry on in memory
        losses = [h["mse"] for h in res.history if h["step"] > begun]
        mean = sum(losses) / max(1, len(losses))
        print(
            f"step {trainer.step:7d}  mse {mean:.5f}  lr {res.last.get('lr', 0):.2e}  "
            f"{(trainer.step - begun) * args.batch_size / max(1e-9, time.time() - t0):.1f} img/s  "
            f"checkpoint {res.checkpoint}",
            flush=True,
        )
        with open(Path(args.out) / "loss_curve.jsonl", "a") as f:
            f.write(json.dumps({"step": trainer.step, "mse": mean, "time": time.time()}) + "\n")
        t0 = time.time()


def sample(args: argparse.Namespace) -> None:
    model, meta = load_checkpoint(args.out)
    unet = model.sampling_unet(ema=True).eval()
    x = ddim_sample(unet, model.scheduler("ddim"), args.sample, steps=args.ddim_steps, seed=args.seed)
    if args.grid:
        import math

        from probe_disentangle.viz import image_grid, save_png

        cols = math.ceil(math.sqrt(len(x)))
        save_png(image_grid((x + 1) / 2, math.ceil(len(x) / cols), cols), args.grid)
        print(f"wrote {args.grid} ({args.sample} samples of {meta['checkpoint']})")


VALID_FLOOR = 0.95  # share of DDIM samples the readout must accept before the host is shipped


def export(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from sprites_ddpm_quality import measure_quality

    model, meta = load_checkpoint(args.out)
    quality = measure_quality(
        model.sampling_unet(ema=True).eval(),
        model.scheduler("ddim"),
        args.eval_samples,
        steps=args.ddim_steps,
        seed=args.seed,
    )
    init = Path(args.out) / INIT_FILE
    before = json.loads(init.read_text()) if init.is_file() else {"folder": None, "segments": []}
    segment = {"steps": meta["step"], "seed": meta["train_config"]["seed"], "init": before["folder"]}
    meta = {**meta, "segments": [*before["segments"], segment]}
    meta["total_steps"] = sum(g["steps"] for g in meta["segments"])
    card = {
        "name": "sprites_ddpm",
        "world": {"name": "ColourSprites", "image_size": 32, "antialias": True, "range": "[-1, 1]"},
        "objective": "DDPM epsilon-prediction (Ho et al. 2020, eq. 14), weights = EMA",
        "model": registry.config_to_dict(model.config),
        "train": {**meta, "script": "examples/train_sprites_ddpm.py"},
        "sampling": f"DDIMScheduler from the saved DDPM scheduler config, {args.ddim_steps} steps, eta = 0",
        "quality": quality,
        # below the floor the folder only carries the run between sessions (--init-from)
        "status": "shipped"
        if quality["valid_fraction"] >= VALID_FLOOR
        else f"in training: {quality['valid_fraction']:.2f} of DDIM samples valid, below the {VALID_FLOOR} floor",
    }
    export_pipeline(model, args.export, card)
    print(json.dumps(quality, indent=1))
    print(f"wrote {args.export}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/sprites_ddpm", help="checkpoint folder")
    ap.add_argument("--steps", type=int, default=60_000, help="total steps of the run")
    ap.add_argument("--chunk", type=int, default=300, help="steps between checkpoints (~8 min on one CPU thread)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument(
        "--decay-steps",
        type=int,
        default=0,
        help="> 0: hold the LR, then decay it linearly to 0 over the run's last N steps (warmup-stable-decay); "
        "a constant-LR run can be resumed with it, so a session's segment ends decayed",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--layers-per-block",
        type=int,
        default=MODEL.layers_per_block,
        help="resnets per down block; above --init-from's it grows that model (ignored with --resume)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="carry on from the latest checkpoint in --out")
    ap.add_argument("--overwrite", action="store_true", help="delete an earlier run's checkpoints in --out")
    ap.add_argument("--init-from", default=None, help="start from an exported pipeline folder (weights only)")
    ap.add_argument("--export", default=None, help="write the latest checkpoint as a pipeline folder here")
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--sample", type=int, default=0, help="draw this many DDIM samples of the latest checkpoint")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--grid", default=None, help="PNG for --sample")
    args = ap.parse_args()
    if args.export:
        export(args)
    elif args.sample:
        sample(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
