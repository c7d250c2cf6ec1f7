"""Disentanglement quality of ConvVAE objectives on the sprites world: β-VAE, β-TCVAE, FactorVAE.

For each objective and seed we train a ConvVAE (Burgess et al. 2018's encoder; by default the
spatial broadcast decoder, ``--decoder deconv`` for theirs) on rendered sprites with the shared
trainer, then score the posteriors of fresh sprites: MIG on the 4 factors
scale/orientation/x/y and on all 5 (Chen et al. 2018; disentanglement_lib's estimator on the
posterior means), MIG on the 4 with Chen et al.'s own sampled-posterior estimator (``pmig4``,
the one behind their ≈ 0.5 for β-TCVAE on dSprites), DCI disentanglement (Eastwood & Williams
2018), the FactorVAE score (Kim & Mnih 2018), the reconstruction loss (Bernoulli NLL per image,
nats, at the posterior mean) and the training throughput (images/s, training steps only).
Prints mean ± std and the median over seeds and writes JSON.

Runs can go in parallel processes (``--jobs``; on one GPU the small models share it well) and
can be bounded in time (``--time-budget`` seconds of training each; the steps reached are
reported). ``--save-dir`` keeps every trained model (io.save format) to pick one to ship.
An objective is a name with optional overrides: ``beta_tcvae:beta=10``.

    python benchmarks/image_quality.py                               # 3 objectives × 3 seeds (hours on CPU)
    python benchmarks/image_quality.py --device cuda --jobs 9 --batch-size 256 --steps 30000 --time-budget 300
    python benchmarks/image_quality.py --steps 50 --seeds 1 --num-train 2000 --num-eval 1000   # smoke run

Runs trained separately (one process per run, over several sessions, as ``run_cpu_sprites.sh``
does) make one table with ``--collect``: it reads every result JSON under the given folders and
keeps, for each (objective, seed), the row that trained the most steps.

    python benchmarks/image_quality.py --collect .ckpt/tab_* --out benchmarks/results/table.json

``--score DIR …`` scores saved models instead (a run's ``--save-dir`` folder, the zoo's sprites
model) on the same eval sprites, so that a model trained in an earlier session joins the table:

    python benchmarks/image_quality.py --score probe_disentangle/zoo/sprites_beta_tcvae --out .ckpt/zoo/scored.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from probe_disentangle import TrainConfig, Trainer, load, losses, metrics, save
from probe_disentangle.constants import LATEST_FILE
from probe_disentangle.image_models import ConvVAE, ConvVAEConfig
from probe_disentangle.io import read_config
from probe_disentangle.train import resolve_device
from probe_disentangle.worlds import Sprites

COLUMNS = ("mig4", "pmig4", "mig5", "dci_disentanglement", "factor_vae_score", "recon", "images_per_s", "steps")
DEFAULTS = {"beta_vae": {"beta": 4.0}, "beta_tcvae": {"beta": 6.0}, "factor_vae": {"gamma": 35.0}}
CHUNK = 250  # training steps between time checks


@torch.no_grad()
def reconstruction_nll(model: ConvVAE, images: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    """Mean Bernoulli negative log-likelihood per image (nats) at the posterior mean."""
    model.eval()
    total = 0.0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(device).float()
        logits = model.decode(model.encode(x)[0])
        total += float(losses.reconstruction_loss(logits, x, "bernoulli").sum())
    return total / len(images)


def parse_objective(spec: str) -> tuple[str, dict]:
    """``"beta_tcvae:beta=10,estimator=mws"`` -> ("beta_tcvae", {"beta": 10.0, "estimator": "mws"})."""
    name, _, rest = spec.partition(":")
    if name not in DEFAULTS:
        raise SystemExit(f"unknown objective {name!r}; choose from {sorted(DEFAULTS)}")
    args = dict(DEFAULTS[name])
    for item in filter(None, rest.split(";")):
        key, eq, val = item.partition("=")
        if not eq:
            raise SystemExit(f"objective override {item!r} in {spec!r} needs the form key=value")
        try:
            args[key] = float(val)
        except ValueError:
            args[key] = val
    return name, args


def run_label(spec: str, decoder: str) -> str:
    """The table's name for an objective with a decoder: the spec alone for the default deconv one."""
    return spec if decoder == "deconv" else f"{spec}@{decoder}"


def run_name(spec: str, seed: int) -> str:
    """A folder name for one (objective, seed) run."""
    return f"{spec.replace(':', '-').replace(';', '-').replace('=', '')}-seed{seed}"


def _print_row(row: dict) -> None:
    print(f"{row['objective']:<16} seed {row['seed']}: " + " ".join(f"{c}={row[c]:.4g}" for c in COLUMNS), flush=True)


def run_one(job: dict) -> dict:
    """Train and score one (objective, seed); a failure is reported in its row, not raised, so the
    other runs' results survive. Each row is also appended to ``<out>.jsonl`` as it finishes."""
    try:
        row = _run_one(job)
    except Exception as e:  # noqa: BLE001 - one diverged run must not lose the others
        label = run_label(job["spec"], job["args"].get("decoder", "deconv"))
        row = {"objective": label, "seed": job["seed"], "error": f"{type(e).__name__}: {e}"}
        row.update({c: math.nan for c in COLUMNS})
        print(f"{label:<16} seed {job['seed']}: FAILED {row['error']}", flush=True)
    with open(Path(job["args"]["out"]).with_suffix(".jsonl"), "a") as f:
        f.write(json.dumps(_finite(row)) + "\n")
    return row


def _run_one(job: dict) -> dict:
    args = job["args"]
    torch.set_num_threads(job["threads"])
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    world = Sprites()
    device = resolve_device(args["device"])
    train = torch.from_numpy(np.load(job["train"])).to(device)
    factors, ev = np.load(job["factors"]), torch.from_numpy(np.load(job["eval"]))
    name, objective_args = parse_objective(job["spec"])
    if name == "beta_tcvae":
        objective_args["dataset_size"] = len(train)
    seed = job["seed"]
    torch.manual_seed(seed)
    decoder = args.get("decoder", "deconv")
    label = run_label(job["spec"], decoder)
    model = ConvVAE(
        ConvVAEConfig(latent_dim=args["latent_dim"], objective=name, objective_args=objective_args, decoder=decoder)
    )
    ckpt = Path(args["checkpoint_dir"]) / run_name(label, seed) if args.get("checkpoint_dir") else None
    cfg = TrainConfig(
        steps=args["steps"],
        batch_size=args["batch_size"],
        lr=args["lr"],
        lr_schedule="linear" if args.get("decay_steps") else "constant",
        decay_steps=args.get("decay_steps", 0),
        device=str(device),
        seed=seed,
        progress=False,
        amp=args["amp"],
        amp_cpu=args.get("amp_cpu", False),
        checkpoint_dir=str(ckpt) if ckpt else None,
        keep_checkpoints=1,
    )
    trainer = Trainer(model, cfg)
    # a run with a checkpoint carries on from it: training adds up over several time-limited sessions
    resume = ckpt is not None and (ckpt / LATEST_FILE).is_file()
    if resume:
        trainer.fit(train, resume=True, until=0)  # loads the state; trains nothing
        print(f"{label:<16} seed {seed}: resumed at step {trainer.step}", flush=True)
    start = trainer.step
    t0 = time.perf_counter()
    budget = args["time_budget"] or math.inf
    while trainer.step < cfg.steps and time.perf_counter() - t0 < budget:
        trainer.fit(train, until=trainer.step + CHUNK)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    row = {
        "objective": label,
        "objective_args": objective_args,
        "decoder": decoder,
        "seed": seed,
        "steps": trainer.step,
        **score(model, world, factors, ev, seed, device, args["fvae_votes"]),
        # a run resumed at its last step trains nothing: no throughput to report
        "images_per_s": (trainer.step - start) * cfg.batch_size / secs if trainer.step > start else math.nan,
        "train_seconds": secs,
        "images_seen": trainer.step * cfg.batch_size,
    }
    if args["save_dir"]:
        save(
            model.cpu(),
            Path(args["save_dir"]) / run_name(label, seed),
            extra={"benchmark": {k: v for k, v in row.items() if k != "objective_args"}},
        )
    _print_row(row)
    return row


def score(
    model: ConvVAE, world: Sprites, factors: np.ndarray, ev: torch.Tensor, seed: int, device: torch.device, votes: int
) -> dict:
    """The table's quality columns for a model on the eval sprites ``ev`` with true ``factors``."""
    codes, logvars = model.encode_posteriors(ev)
    four = [world.factor_index(n) for n in ("scale", "orientation", "pos_x", "pos_y")]
    return {
        "mig4": metrics.mig(codes, factors[:, four])["discrete_mig"],
        # Chen et al.'s own estimator (sampled posteriors): the one their ≈ 0.5 on dSprites used
        "pmig4": metrics.posterior_mig(codes, logvars, factors[:, four], random_state=seed, device=str(device))[
            "posterior_mig"
        ],
        "mig5": metrics.mig(codes, factors)["discrete_mig"],
        "dci_disentanglement": metrics.dci(codes, factors, random_state=seed, fast=True)["disentanglement"],
        "factor_vae_score": metrics.factor_vae_score(
            world,
            model.encode_means,
            random_state=seed,
            num_train=votes,
            num_eval=votes // 2,
            num_variance_estimate=votes,
        )["eval_accuracy"],
        "recon": reconstruction_nll(model, ev, device),
    }


def objective_spec(name: str, objective_args: dict) -> str:
    """The ``--objectives`` spec of a model's objective: its name, then the arguments that differ
    from the benchmark's defaults (the run's ``dataset_size`` and Bernoulli reconstruction aside)."""
    implied = {"dataset_size": None, "reconstruction": "bernoulli", **DEFAULTS.get(name, {})}
    extra = {k: v for k, v in objective_args.items() if k not in implied or (v != implied[k] and k != "dataset_size")}
    text = ";".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{name}:{text}" if text else name


def score_saved(folder: str, args: argparse.Namespace, world: Sprites, factors: np.ndarray, ev: torch.Tensor) -> dict:
    """A table row for a saved ConvVAE (a run's ``--save-dir`` model, a zoo model), scored as a
    trained run is. Its label, seed and steps come from the folder's benchmark record or model card."""
    try:
        model = load(folder)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--score {folder}: {e}") from None
    if not isinstance(model, ConvVAE):
        raise SystemExit(f"--score {folder}: holds a {type(model).__name__}; the table scores ConvVAE models")
    extra = read_config(folder)
    record = extra.get("benchmark") or extra.get("card", {}).get("training", {})
    cfg = model.config
    label = record.get("objective") or run_label(objective_spec(cfg.objective, cfg.objective_args), cfg.decoder)
    seed = int(record.get("seed", args.seed_offset))
    device = resolve_device(args.device)
    model.to(device)
    row = {
        "objective": label,
        "objective_args": cfg.objective_args,
        "decoder": cfg.decoder,
        "seed": seed,
        "steps": record.get("steps", math.nan),
        **score(model, world, factors, ev, seed, device, args.fvae_votes),
        "images_per_s": math.nan,  # trained elsewhere
        "images_seen": record.get("images_seen", math.nan),
        "scored_from": str(folder),
    }
    _print_row(row)
    return row


def _fmt(vals: list[float]) -> str:
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return "n/a"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.4g}"
    return f"{m:.4g} ± {statistics.stdev(vals):.2g} (med {statistics.median(vals):.3g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument(
        "--decay-steps",
        type=int,
        default=0,
        help="decay the LR linearly to 0 over the last this many of --steps (0: constant LR)",
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (runs use seed-offset … +seeds−1)")
    ap.add_argument("--latent-dim", type=int, default=10)
    ap.add_argument(
        "--objectives",
        default="beta_vae,beta_tcvae,factor_vae",
        help="comma-separated; overrides after a colon, separated by ';': beta_tcvae:beta=10;bank=2048 "
        "(defaults: β-VAE β=4, β-TCVAE β=6 as Chen et al., FactorVAE γ=35 as Kim & Mnih on dSprites)",
    )
    ap.add_argument(
        "--decoder",
        default="broadcast",
        choices=["deconv", "broadcast"],
        help="ConvVAE decoder: a spatial broadcast (the table names these runs objective@broadcast), "
        "or Burgess et al.'s dense layers + transposed convolutions",
    )
    ap.add_argument("--num-train", type=int, default=20_000)
    ap.add_argument("--num-eval", type=int, default=5_000)
    ap.add_argument(
        "--fvae-votes",
        type=int,
        default=10_000,
        help="FactorVAE-score training votes (disentanglement_lib: 10000; eval uses half)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (off: fp32 with TF32)")
    ap.add_argument(
        "--amp-cpu", action="store_true", help="bf16 autocast on the CPU (about 2× faster where it has AVX512-BF16)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds of training per run (0: no limit)")
    ap.add_argument("--save-dir", default="", help="save every trained model here")
    ap.add_argument(
        "--checkpoint-dir",
        default="",
        help="checkpoint each run here (every 250 steps) and resume from it when present, so that "
        "time-limited sessions add up",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "image_quality.json"))
    ap.add_argument(
        "--collect",
        nargs="+",
        metavar="DIR",
        help="train nothing: tabulate the result JSONs under these folders (the longest run of "
        "each objective and seed)",
    )
    ap.add_argument(
        "--score",
        nargs="+",
        metavar="DIR",
        help="train nothing: score saved ConvVAE folders (a run's --save-dir model, the zoo's "
        "sprites model) on the runs' eval sprites; --collect can then table them with trained runs",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.collect:
        runs = collect(args.collect)
        specs = list(dict.fromkeys(r["objective"] for r in runs))
        _write(out, summarize(runs, specs), runs, {"collected_from": args.collect})
        return
    if args.score:
        world = Sprites()
        factors, ev = world.sample(args.num_eval, 1)  # the trained runs' eval sprites
        runs = [score_saved(d, args, world, factors, torch.from_numpy(ev)) for d in args.score]
        specs = list(dict.fromkeys(r["objective"] for r in runs))
        _write(out, summarize(runs, specs), runs, {"args": vars(args)})
        return
    specs = [o.strip() for o in args.objectives.split(",") if o.strip()]
    for spec in specs:
        parse_objective(spec)  # fail before rendering anything

    world = Sprites()
    t0 = time.perf_counter()
    train = world.render_binary(world.sample_factors(args.num_train, 0))
    factors, ev = world.sample(args.num_eval, 1)
    print(f"rendered {args.num_train + args.num_eval} sprites in {time.perf_counter() - t0:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: str(Path(tmp) / f"{k}.npy") for k in ("train", "factors", "eval")}
        np.save(paths["train"], train)
        np.save(paths["factors"], factors)
        np.save(paths["eval"], ev)
        del train
        threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs)) if args.jobs > 1 else torch.get_num_threads()
        jobs = [
            {"spec": spec, "seed": seed, "args": vars(args), "threads": threads, **paths}
            for spec in specs
            for seed in range(args.seed_offset, args.seed_offset + args.seeds)
        ]
        if args.jobs > 1:
            with mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
                runs = pool.map(run_one, jobs, chunksize=1)
        else:
            runs = [run_one(j) for j in jobs]

    _write(out, summarize(runs, [run_label(s, args.decoder) for s in specs]), runs, {"args": vars(args)})


def collect(folders: list[str]) -> list[dict]:
    """The scored rows in the result JSONs under ``folders``: per (objective, seed), the one with
    the most training steps (a run resumed over several chunks writes a row per chunk)."""
    best: dict[tuple[str, int], dict] = {}
    files = sorted(f for d in folders for f in Path(d).rglob("*.json"))
    for f in files:
        try:
            rows = json.loads(f.read_text()).get("runs", [])
        except (json.JSONDecodeError, AttributeError):
            continue  # not a result file (a saved model's config, say)
        for r in rows:
            if r.get("error") or r.get("steps") is None:
                continue
            key = (r["objective"], r["seed"])
            if key not in best or r["steps"] > best[key]["steps"]:
                best[key] = {**r, "source": str(f)}
    if not best:
        raise SystemExit(
            f"no scored runs in result JSONs under {folders}; point --collect at run_cpu_sprites.sh OUT folders"
        )
    return [best[k] for k in sorted(best)]


def summarize(runs: list[dict], specs: list[str]) -> dict:
    """Print the table (mean ± std and median over seeds per objective) and return it."""
    header = f"{'objective':<16} | " + " | ".join(f"{c:>26}" for c in COLUMNS)
    print("\n" + header + "\n" + "-" * len(header))
    summary = {}
    for spec in specs:
        rows = [r for r in runs if r["objective"] == spec]
        vals = {c: [math.nan if r.get(c) is None else r[c] for r in rows] for c in COLUMNS}
        summary[spec] = {c: {"mean": _nan_mean(v), "median": _nan_median(v), "values": v} for c, v in vals.items()}
        summary[spec]["seeds"] = [r["seed"] for r in rows]
        print(f"{spec:<16} | " + " | ".join(f"{_fmt(vals[c]):>26}" for c in COLUMNS))
    return summary


def _write(out: Path, summary: dict, runs: list[dict], extra_meta: dict) -> None:
    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **extra_meta,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite({"meta": meta, "summary": summary, "runs": runs}), indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")


def _nan_mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _nan_median(vals: list[float]) -> float | None:
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.median(vals) if vals else None


def _finite(o):
    """``o`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


if __name__ == "__main__":
    main()
