"""The diffusion demo: a probe in a sprites DDPM's h-space, measured by reading the images back.

One run, one report (with RAVEL interchange scores for the probe): a β-TCVAE probe fitted without labels on the host's own DDIM sampling
trajectories at ``mid_block`` (h-space, Kwon et al. 2023), only the early, high-noise share of
the schedule (Asyrp's edit window), a plain VAE head (β = 1), PCA directions (Haas et al. 2023),
random orthonormal directions (the chance row) and difference of means per factor value
(supervised by the readout's labels). Every steerer edits only inside the window and is scored on
the same starting noise with and without the edit (:func:`evaluate_image_steering`): success,
leakage, valid rate. The probe's codes are scored against the readout's factors of the sampled
images (MIG, DCI), the h-space vectors' linear decodability per timestep range is reported, and
a traversal grid per aligned latent shows one seed's image as that latent goes from low to high.

Labels come from the readout (``worlds/sprites_readout.py``) of each trajectory's final image:
the host's own samples are what the probe steers, so it learns on them (DDIM inversion of
rendered sprites, :func:`probe_disentangle.steering.ddim_invert`, gives true factors instead, at
the price of trajectories the sampler never visits). Only trajectories whose image the readout
accepts are labelled; a host with fewer than ``MIN_LABELLED`` of them is reported as not yet a
sprite model, with the traversal grid still drawn.

``probe-disentangle demo --host sprites_ddpm`` runs it with settings sized for 2 CPU cores (fewer
samples and DDIM steps than ``benchmarks/diffusion_steering.py``; the report states them).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .train import TrainConfig

__all__ = [
    "DiffusionDemoConfig",
    "MIN_LABELLED",
    "TARGETS",
    "TOLERANCE",
    "decodability_by_timestep",
    "load_diffusion_host",
    "run_diffusion_demo",
    "tiny_unet",
    "traversal_images",
]

# target levels per factor (shape, scale, orientation, x, y, hue) and how near counts as a hit
TARGETS = {0: [0, 1, 2], 1: [0, 5], 2: [5], 3: [6, 25], 4: [6, 25], 5: [0, 4]}
TOLERANCE = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2, 5: 0}
MIN_LABELLED = 20  # valid samples below which the host is "not yet a sprite model"
FLOOR = {"success": 0.9, "leakage": 0.05, "valid_rate": 0.95, "mig": 0.5, "factors": 4}


@dataclass
class DiffusionDemoConfig:
    """What the run samples, fits and steers. ``pipeline`` / ``checkpoint`` / ``tiny`` pick the host
    (default: the shipped ``zoo/sprites_ddpm``); the sampling counts are sized for 2 CPU cores."""

    out: str = "runs/demo_ddpm"
    pipeline: str | None = None  # an exported pipeline folder (None: the shipped zoo/sprites_ddpm)
    checkpoint: str | None = None  # a training checkpoint of examples/train_sprites_ddpm.py instead
    tiny: bool = False  # a small random UNet: the whole path, numbers without meaning
    hook: str = "mid_block"
    head: str = "mlp"  # "map": a conv encoder and a spatial broadcast decoder on the hook's [C, H, W] map
    conv_width: int = 32  # the map head's channels (encoder and decoder)
    fit_samples: int = 96  # sampling runs whose trajectories the probes learn on
    eval_samples: int = 12  # images per steered target
    steps: int = 10  # DDIM steps (η = 0)
    latents: int = 10
    beta: float = 6.0
    fit_steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    strength: float = 2.0
    window: float = 0.5  # early share of the schedule edited and fitted on (Asyrp)
    factors: Sequence[str] | None = None  # factors to steer (None: all six)
    baselines: Sequence[str] = ("vae_beta1", "pca", "random", "diff_means")
    traversal_values: int = 7
    timestep_bins: int = 2
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if sum(x is not None and x is not False for x in (self.pipeline, self.checkpoint, self.tiny)) > 1:
            raise ValueError("choose one host: pipeline=, checkpoint= or tiny=True")
        for name in ("fit_samples", "eval_samples", "steps", "latents", "fit_steps", "batch_size", "timestep_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.traversal_values < 2:
            raise ValueError(f"traversal_values must be ≥ 2, got {self.traversal_values}")
        if self.head not in ("mlp", "map"):
            raise ValueError(f"unknown head {self.head!r}; choose 'mlp' (vectors) or 'map' (the hook's [C, H, W] map)")
        unknown = sorted(set(self.baselines) - {"vae_beta1", "pca", "random", "diff_means"})
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; choose from vae_beta1, pca, random, diff_means")


def hook_map_shape(unet: nn.Module, hook: str, batch: tuple[Tensor, Tensor]) -> list[int]:
    """``[C, H, W]`` of the activation at ``hook`` for a UNet input ``(x_t, t)`` (one row is run)."""
    from .adapters import attach

    shapes: list[tuple[int, ...]] = []
    x, t = batch
    device = next(unet.parameters()).device
    with torch.no_grad(), attach(unet).hook(hook, lambda a: shapes.append(tuple(a.shape[1:]))):
        unet(x[:1].to(device), t[:1].to(device))
    if len(shapes) != 1 or len(shapes[0]) != 3:
        raise ValueError(f"head='map' needs a [B, C, H, W] activation at {hook!r}, got {shapes}: use head='mlp'")
    return list(shapes[0])


def tiny_unet(seed: int = 0) -> nn.Module:
    """A small random ``UNet2DModel`` (32×32 RGB) for smoke tests: the path end to end, no meaning."""
    from .diffusion import import_diffusers

    d = import_diffusers()
    torch.manual_seed(seed)
    return d.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8,
    ).eval()  # fmt: skip


def load_diffusion_host(cfg: DiffusionDemoConfig) -> tuple[nn.Module, Any, str]:
    """``(unet, DDIM scheduler, name)`` of the host ``cfg`` names."""
    from .diffusion import make_scheduler

    if cfg.tiny:
        return tiny_unet(cfg.seed), make_scheduler({"num_train_timesteps": 1000}, "ddim"), "tiny random UNet"
    if cfg.checkpoint:
        from . import io

        model = io.load(cfg.checkpoint)
        if not hasattr(model, "sampling_unet"):
            raise ValueError(
                f"{cfg.checkpoint} holds a {type(model).__name__}, not a DDPM checkpoint of "
                "examples/train_sprites_ddpm.py"
            )
        return model.sampling_unet(ema=True).eval(), model.scheduler("ddim"), str(cfg.checkpoint)
    from .zoo import SPRITES_DDPM_DIR, load_sprites_ddpm

    pipe = load_sprites_ddpm(cfg.pipeline)
    return pipe.unet.eval(), pipe.scheduler, str(cfg.pipeline or SPRITES_DDPM_DIR)


def decodability_by_timestep(
    acts: Tensor, timesteps: Tensor, labels: np.ndarray, names: Sequence[str], bins: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Per timestep range (``bins`` equal shares of the timesteps present, high noise first): the
    held-out accuracy of a linear classifier per factor on the vectors of that range (3:1 split by
    sample order). The ranges say where in the schedule each factor is already written."""
    from .metrics import linear_decodability

    t = timesteps.numpy()
    edges = np.quantile(t, np.linspace(0, 1, bins + 1))
    out = []
    for b in range(bins):
        hi, lo = edges[bins - b], edges[bins - b - 1]
        sel = (t <= hi) & (t >= lo) if b == bins - 1 else (t <= hi) & (t > lo)
        x, y = acts[torch.as_tensor(sel)].double().numpy(), labels[sel]
        present = t[sel]
        row: dict[str, Any] = {
            "t_min": int(present.min()) if len(present) else None,
            "t_max": int(present.max()) if len(present) else None,
            "n": int(sel.sum()),
        }
        n = len(x) * 3 // 4
        if n < 4 or len(x) - n < 1:
            row.update(dict.fromkeys(names))
        else:
            mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-8
            row.update(linear_decodability((x - mu) / sd, y, names, seed=seed, max_iter=300))
        out.append(row)
    return out


@torch.no_grad()
def traversal_images(
    probe: Any,
    unet: nn.Module,
    scheduler: Any,
    latents: Sequence[int],
    values: Tensor,
    window: tuple[int, int],
    steps: int,
    seed: int,
) -> Tensor:
    """``[len(latents), V, 3, H, W]`` in [-1, 1]: one seed's DDIM sample with latent ``latents[i]``
    set to ``values[i, v]`` at every UNet forward in ``window`` (row ``i`` of the grid)."""
    from .diffusion import ddim_sample

    rows = []
    for i, latent in enumerate(latents):
        row = []
        for v in values[i].tolist():
            with probe.steer(unet, {int(latent): float(v)}, timesteps=window):
                row.append(ddim_sample(unet, scheduler, 1, steps=steps, seed=seed))
        rows.append(torch.cat(row))
    return torch.stack(rows)


def _traversal_values(codes: np.ndarray, latents: Sequence[int], n: int) -> Tensor:
    """Per latent, ``n`` values from its 5th to its 95th percentile on the fitted vectors."""
    qs = np.linspace(0.05, 0.95, n)
    return torch.tensor(np.stack([np.quantile(codes[:, i], qs) for i in latents]), dtype=torch.float32)


def _mig_dci(codes: np.ndarray, factors: np.ndarray, seed: int) -> dict[str, float]:
    from .metrics import dci, mig

    n = len(codes) * 3 // 4
    out = {"mig": float(mig(codes, factors)["discrete_mig"])}
    if n >= 4 and len(codes) - n >= 1:
        d = dci(codes[:n], factors[:n], codes[n:], factors[n:], random_state=seed, fast=True)
        out.update({f"dci_{k}": float(v) for k, v in d.items() if k in ("disentanglement", "completeness")})
    return out


def run_diffusion_demo(cfg: DiffusionDemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit, measure and steer as the module says; writes ``report.json``, ``report.md``,
    ``report.html`` (self-contained: tables, MI heat map, image traversals) and ``traversals.png``
    (rows: aligned latents, low → high) under ``cfg.out`` and returns the report."""
    from . import Probe, viz
    from .adapters.diffusers_unet import default_window
    from .diffusion import ddim_sample
    from .steering import (
        WindowedAdapter,
        align,
        diff_means_steerer,
        directions_steerer,
        evaluate_image_steering,
        principal_directions,
        probe_steerer,
        random_directions,
        sampling_trajectories,
        window_filter,
    )
    from .worlds.sprites import ColourSprites
    from .worlds.sprites_readout import SpritesReadout

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    world = ColourSprites(image_size=32, antialias=True)
    names = list(world.factor_names)
    chosen = list(cfg.factors) if cfg.factors else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(f"unknown factors {unknown}; choose from {names}")
    unet, sched, host = load_diffusion_host(cfg)
    readout = SpritesReadout.for_world(world)
    window = default_window(sched.config.num_train_timesteps, cfg.window)
    log(f"[1/4] sampling {cfg.fit_samples} DDIM runs ({cfg.steps} steps) from {host}; keeping t in {window}")
    images, inputs, index = sampling_trajectories(
        unet, sched, cfg.fit_samples, steps=cfg.steps, seed=cfg.seed, keep=window_filter(window)
    )
    read = readout.read((images + 1) / 2)
    valid, labels = read["valid"].numpy(), read["factors"].numpy()
    log(f"      the readout accepts {valid.mean():.0%} of them as sprites")

    log(f"[2/4] fitting a β-TCVAE probe (β = {cfg.beta}) and the VAE baseline on {cfg.hook} vectors")
    heads = {"beta_tcvae": {"objective": "beta_tcvae", "objective_args": {"beta": cfg.beta}}}
    if "vae_beta1" in cfg.baselines:
        heads["vae_beta1"] = {"objective": "beta_vae", "objective_args": {"beta": 1.0}}
    n_inputs = sum(int(b[0].shape[0]) for b in inputs)
    if n_inputs == 0:
        raise ValueError(
            f"no UNet forward of {cfg.steps} DDIM steps falls in the window {window}: raise steps or window"
        )
    if cfg.head == "map":  # both heads read and write the map with shared convolutions (heads/spatial.py)
        shape = hook_map_shape(unet, cfg.hook, inputs[0])
        spatial = {"encoder": "conv", "decoder": "broadcast", "map_shape": shape, "conv_width": cfg.conv_width}
        heads = {name: {**head, **spatial} for name, head in heads.items()}
    batch = min(cfg.batch_size, n_inputs)  # a short run (a smoke test) has fewer vectors than a batch
    train = TrainConfig(steps=cfg.fit_steps, batch_size=batch, lr=cfg.lr, progress=cfg.progress, seed=cfg.seed)
    probes = {}
    # a few hundred vectors serve thousands of batches: without a cache every pass over them (one
    # per training step here) would rerun the UNet. With one the UNet runs once for both heads.
    with tempfile.TemporaryDirectory(prefix="probe_fit_cache_") as cache:
        for name, head in heads.items():
            probe = Probe(unet, cfg.hook, head_config={"latent_dim": cfg.latents, **head})
            probe.fit(inputs, train, normalizer_vectors=20_000, cache_dir=cache)
            probes[name] = probe
    adapter = probes["beta_tcvae"].adapter
    acts = torch.cat([adapter.collect(b, cfg.hook).vectors for b in inputs]).float()
    steps_of = torch.cat([b[1] for b in inputs])
    rows_index = index.numpy()
    keep = valid[rows_index]
    acts_v, fac_v, t_v = acts[torch.as_tensor(keep)], labels[rows_index][keep], steps_of[torch.as_tensor(keep)]
    codes_all = probes["beta_tcvae"].encode(acts).numpy()

    report: dict[str, Any] = {
        "host": host,
        "hook": cfg.hook,
        "window": list(window),
        "settings": {
            k: getattr(cfg, k)
            for k in (
                "fit_samples",
                "eval_samples",
                "steps",
                "latents",
                "beta",
                "fit_steps",
                "strength",
                "seed",
                "head",
                "conv_width",
            )
        },
        "fit_valid_rate": float(valid.mean()) if len(valid) else 0.0,
        "vectors": int(acts.shape[0]),
        "labelled_vectors": int(len(fac_v)),
        "d": int(acts.shape[1]),
        "rows": {},
    }
    enough = len(fac_v) >= MIN_LABELLED
    if enough:
        alignment = align(probes["beta_tcvae"].encode(acts_v).numpy(), fac_v)
    else:
        report["note"] = (
            f"only {len(fac_v)} labelled vectors (valid samples): the host is not yet a sprite model; "
            "the traversal grid shows the probe's most spread latents"
        )
        log("      " + report["note"])
        order = [int(i) for i in np.argsort(-codes_all.std(0))]
        alignment = [order[f % len(order)] for f in range(len(names))]
    report["alignment"] = {names[f]: int(alignment[f]) for f in range(len(names))}

    log(f"[3/4] traversals: {cfg.traversal_values} values per aligned latent, one seed")
    lat = list(dict.fromkeys(report["alignment"][n] for n in chosen))
    values = _traversal_values(codes_all, lat, cfg.traversal_values)
    grid = traversal_images(probes["beta_tcvae"], unet, sched, lat, values, window, cfg.steps, cfg.seed + 7)
    k, v = grid.shape[:2]
    viz.save_png(viz.image_grid(((grid.flatten(0, 1) + 1) / 2).clamp(0, 1), k, v), out / "traversals.png")
    report["traversals"] = {
        "png": "traversals.png",
        "latents": lat,
        "values": [[round(x, 3) for x in row] for row in values.tolist()],
    }
    tr_read = readout.read(((grid.flatten(0, 1) + 1) / 2).clamp(0, 1))
    tr_f = tr_read["factors"].numpy().reshape(k, v, -1)
    tr_ok = tr_read["valid"].numpy().reshape(k, v)
    report["traversals"]["read"] = [
        [{n: int(tr_f[i, j, g]) for g, n in enumerate(names)} if tr_ok[i, j] else None for j in range(v)]
        for i in range(k)
    ]

    if enough:
        sizes = list(world.factor_sizes)
        report["decodability"] = decodability_by_timestep(acts_v, t_v, fac_v, names, cfg.timestep_bins, cfg.seed)
        windowed = WindowedAdapter(adapter, window)
        steerers = {}
        for name, probe in probes.items():
            s, _ = probe_steerer(probe, acts_v, fac_v, sizes, cfg.strength)
            steerers[name] = dataclasses.replace(s, adapter=windowed)
            report["rows"][name] = _mig_dci(probe.encode(acts_v).numpy(), fac_v, cfg.seed)
        if "pca" in cfg.baselines:
            dirs = principal_directions(acts_v, cfg.latents)
            steerers["pca"], _ = directions_steerer(windowed, cfg.hook, acts_v, dirs, fac_v, sizes, cfg.strength)
            report["rows"]["pca"] = _mig_dci(((acts_v - acts_v.mean(0)) @ dirs.T).numpy(), fac_v, cfg.seed)
        if "random" in cfg.baselines:
            dirs = random_directions(acts_v.shape[1], cfg.latents, cfg.seed)
            steerers["random"], _ = directions_steerer(windowed, cfg.hook, acts_v, dirs, fac_v, sizes, cfg.strength)
        if "diff_means" in cfg.baselines:
            steerers["diff_means"] = diff_means_steerer(windowed, cfg.hook, acts_v, fac_v, sizes, cfg.strength)

        def sample() -> Tensor:
            return ddim_sample(unet, sched, cfg.eval_samples, steps=cfg.steps, seed=cfg.seed + 1)

        targets = {names.index(n): TARGETS[names.index(n)] for n in chosen}
        log(f"[4/4] steering {len(chosen)} factors with {len(steerers)} steerers, {cfg.eval_samples} images per target")
        for name, steer in steerers.items():
            res = evaluate_image_steering(sample, readout, steer, targets, TOLERANCE)
            row = report["rows"].setdefault(name, {})
            row["steering"] = res
            row["factors_at_floor"] = [n for n in chosen if _at_floor(res[n])]
        report["floors"] = _floors(report)
        report["interchange"] = _interchange(cfg, probes["beta_tcvae"], unet, sched, readout, report, chosen, window)
    if enough:
        from .steering import mutual_information_matrix

        report["mutual_information"] = mutual_information_matrix(
            probes["beta_tcvae"].encode(acts_v).numpy(), fac_v
        ).tolist()
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report, chosen))
    _html(report, chosen, names, grid, out / "report.html")
    log(f"wrote {out / 'report.md'} ({report['seconds']} s)")
    return report


def _interchange(cfg, probe, unet, sched, readout, report, chosen, window) -> dict[str, Any]:
    """RAVEL's Cause / Isolate per factor for the probe: its aligned latent set, at every step in
    the window, to a source sample's (``eval_samples`` base/source pairs, seeded)."""
    from .steering import image_interchange_scores, image_interchanges

    names = list(report["alignment"])
    out: dict[str, Any] = {}
    base, source, swapped = image_interchanges(  # the base and source runs are drawn once for every factor
        probe, unet, sched, {n: [report["alignment"][n]] for n in chosen}, cfg.eval_samples, cfg.steps, window,
        base_seed=cfg.seed + 1, source_seed=cfg.seed + 2,
    )  # fmt: skip
    for n in chosen:
        out[n] = image_interchange_scores(readout, base, source, swapped[n], names.index(n), TOLERANCE)
    out["mean"] = {k: float(np.mean([out[n][k] for n in chosen])) for k in ("cause", "isolate", "disentangle")}
    return out


def _html(report: dict[str, Any], chosen: Sequence[str], names: Sequence[str], grid: Tensor, path: Path) -> Path:
    """``report.html``: the steering table, the MI heat map, one image traversal per aligned latent."""
    from . import viz
    from .report_html import Table, Traversal, write_report

    s = report["settings"]
    summary = (
        f"Host {report['host']}, hook {report['hook']}, edits at t in {report['window']}; {s['steps']} DDIM steps, "
        f"{s['fit_samples']} fit samples (valid {report['fit_valid_rate']:.2f}), {s['eval_samples']} images per "
        f"target. {report.get('note', '')}"
    )
    tables = []
    if report["rows"]:
        cols = ["steerer", "MIG", "DCI dis."] + [f"{n} succ/leak/valid" for n in chosen] + ["at floor"]
        rows = []
        for name, r in report["rows"].items():
            st = r.get("steering", {})
            cells = [
                f"{st[n]['success']:.2f}/{st[n]['leakage']:.2f}/{st[n]['valid_rate']:.2f}" if n in st else None
                for n in chosen
            ]
            rows.append([name, r.get("mig"), r.get("dci_disentanglement"), *cells, len(r.get("factors_at_floor", []))])
        tables.append(Table(f"Steering from {report['hook']}", cols, rows))
    if report.get("decodability"):
        cols = ["t range", "n", *names]
        rows = [[f"{d['t_min']}–{d['t_max']}", d["n"], *[d.get(n) for n in names]] for d in report["decodability"]]
        tables.append(Table("Linear decodability per timestep range", cols, rows))
    if report.get("interchange"):
        ic = report["interchange"]
        rows = [[n, ic[n]["cause"], ic[n]["isolate"], ic[n]["disentangle"], ic[n]["valid_pairs"]] for n in chosen]
        rows.append(["mean", ic["mean"]["cause"], ic["mean"]["isolate"], ic["mean"]["disentangle"], None])
        tables.append(
            Table(
                "RAVEL interchange (β-TCVAE probe)", ["factor", "Cause", "Isolate", "Disentangle", "valid pairs"], rows
            )
        )
    tr = report["traversals"]
    by_latent = {}
    for f, lat in report["alignment"].items():
        by_latent.setdefault(lat, f)
    traversals = []
    for i, lat in enumerate(tr["latents"]):
        row = ((grid[i] + 1) / 2).clamp(0, 1)
        image = viz.image_grid(row, 1, row.shape[0], pad=2, pad_value=255)
        traversals.append(Traversal(lat, by_latent.get(lat), tr["values"][i], image=image))
    mi = report.get("mutual_information")
    return write_report(
        path,
        "probe_disentangle diffusion demo",
        summary=summary,
        metrics=tables,
        mutual_information=None if mi is None else np.asarray(mi),
        latent_labels=[f"z{i}" for i in range(len(mi))] if mi is not None else (),
        factor_labels=names,
        traversals=traversals,
    )


def _at_floor(r: dict[str, float]) -> bool:
    return (
        r["success"] >= FLOOR["success"] and r["leakage"] <= FLOOR["leakage"] and r["valid_rate"] >= FLOOR["valid_rate"]
    )


def _floors(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's floors on the shipped host, read off the report."""
    rows = report["rows"]
    probe = rows["beta_tcvae"]
    n = len(probe["factors_at_floor"])
    out = {
        "mig": probe["mig"],
        "mig_ok": probe["mig"] >= FLOOR["mig"],
        "factors_at_floor": n,
        "factors_ok": n >= FLOOR["factors"],
    }
    if "pca" in rows:
        out["beats_pca"] = probe["mig"] > rows["pca"]["mig"] and n > len(rows["pca"]["factors_at_floor"])
    out["met"] = out["mig_ok"] and out["factors_ok"] and out.get("beats_pca", True)
    return out


def _markdown(report: dict[str, Any], names: Sequence[str]) -> str:
    s = report["settings"]
    lines = [
        "# probe_disentangle diffusion demo",
        "",
        f"Host: {report['host']}; hook `{report['hook']}`; edits and fit vectors at t ∈ {report['window']} "
        f"(Asyrp's early window); {s['steps']} DDIM steps (η = 0), {s['fit_samples']} fit samples, "
        f"{s['eval_samples']} images per steered target, {s['latents']} latents, {s['fit_steps']} fit steps.",
        f"Fit samples the readout accepts: {report['fit_valid_rate']:.2f} "
        f"({report['labelled_vectors']} labelled vectors of {report['vectors']}, d = {report['d']}).",
        "",
    ]
    if "note" in report:
        lines += [f"**{report['note']}**", ""]
    if report["rows"]:
        lines += [
            "| steerer | MIG | DCI dis. | " + " | ".join(f"{n} succ/leak/valid" for n in names) + " | at floor |",
            "|---|---|---|" + "---|" * len(names) + "---|",
        ]
        for name, r in report["rows"].items():
            st = r.get("steering", {})
            cells = [
                f"{st[n]['success']:.2f}/{st[n]['leakage']:.2f}/{st[n]['valid_rate']:.2f}" if n in st else "–"
                for n in names
            ]
            mig = f"{r['mig']:.2f}" if "mig" in r else "–"
            d = f"{r['dci_disentanglement']:.2f}" if "dci_disentanglement" in r else "–"
            at = len(r.get("factors_at_floor", []))
            lines.append(f"| {name} | {mig} | {d} | " + " | ".join(cells) + f" | {at} |")
        lines.append("")
    if "floors" in report:
        f = report["floors"]
        lines += [
            f"Floors (MIG ≥ {FLOOR['mig']}, ≥ {FLOOR['factors']} factors with success ≥ {FLOOR['success']}, "
            f"leakage ≤ {FLOOR['leakage']}, valid ≥ {FLOOR['valid_rate']}, better than PCA): "
            f"{'met' if f['met'] else 'not met'} (MIG {f['mig']:.2f}, {f['factors_at_floor']} factors).",
            "",
        ]
    if report.get("interchange"):
        ic = report["interchange"]
        lines += ["RAVEL interchange of the β-TCVAE probe (its aligned latent set to a source sample's):", ""]
        lines += ["| factor | Cause | Isolate | Disentangle | valid pairs |", "|---|---|---|---|---|"]
        for n in names:
            if n in ic:
                r = ic[n]
                lines.append(
                    f"| {n} | {r['cause']:.2f} | {r['isolate']:.2f} | {r['disentangle']:.2f} | {r['valid_pairs']} |"
                )
        m = ic["mean"]
        lines += [f"| mean | {m['cause']:.2f} | {m['isolate']:.2f} | {m['disentangle']:.2f} | |", ""]
    if report.get("decodability"):
        dec = report["decodability"]
        lines += [f"Linear decodability of each factor from `{report['hook']}`, per timestep range:", ""]
        lines += ["| t range | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for row in dec:
            cells = [f"{row[n]:.2f}" if row.get(n) is not None else "–" for n in names]
            lines.append(f"| {row['t_min']}–{row['t_max']} | {row['n']} | " + " | ".join(cells) + " |")
        lines.append("")
    tr = report["traversals"]
    lines += [
        f"![traversals]({tr['png']}) rows: latents {tr['latents']} (aligned to {', '.join(names)}), "
        "columns: the latent from its 5th to its 95th percentile, one seed.",
        "",
        f"({report['seconds']} s)",
    ]
    return "\n".join(lines) + "\n"
