"""How many factors can be disentangled? MIG and DCI against K on the K-factor world (issue 22, study 1).

For each K in ``--ks`` (the image form of ``worlds/k_factors.py``: factor i sets the grey level of
its own cell, ``--values`` levels each), each objective in ``--methods`` and each seed, a VAE head
with ``K + --extra-latents`` latents is fitted on the flattened images (an identity host, so the
question is the objective's, not a host's), and its codes are scored on held-out scenes: MIG and
DCI disentanglement / completeness (fast settings). Where a method breaks is read off the table
and the plot (mean MIG over seeds per method against K; the spread over seeds in the table).

Resumable: every finished cell (method, K, seed) is written to the JSON at once and skipped by a
rerun, so the study runs in chunks (``--max-cells`` per call) across sessions:

    python benchmarks/capacity.py --out benchmarks/studies/capacity            # all cells
    python benchmarks/capacity.py --ks 2,4,8 --seeds 0 --max-cells 3          # a chunk
    python benchmarks/capacity.py --smoke --out /tmp/cap                       # seconds

Writes ``capacity.json`` (cells), ``capacity.md`` (table) and ``capacity.png`` (plot).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe_disentangle import TrainConfig, Trainer, VAEHead, VAEHeadConfig
from probe_disentangle.heads import JointVAEHead, JointVAEHeadConfig
from probe_disentangle.isa import isa_codes
from probe_disentangle.losses import DISC_DTYPES
from probe_disentangle.metrics import dci, mig
from probe_disentangle.viz import metric_vs_beta_plot
from probe_disentangle.worlds.k_factors import KFactorImages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cells import fill_cells  # noqa: E402

ISA_METHOD = "joint_vae_isa"  # the JointVAE head from an ISA start (categorical latents)
OBJECTIVES = {
    "beta_vae": {"beta": 4.0},
    "beta_tcvae": {"beta": 6.0},
    "factor_vae": {"gamma": 10.0},
}


def cell_key(method: str, k: int, seed: int) -> str:
    return f"{method}/K{k}/s{seed}"


def run_cell(method: str, k: int, seed: int, args) -> dict[str, Any]:
    """Fit one head and score it (MIG, DCI) on held-out scenes."""
    t0 = time.time()
    size = 32 if k <= 16 else 64
    world = KFactorImages(k, num_values=args.values, image_size=size)
    rng = np.random.default_rng(seed)
    f_train = world.sample_factors(args.n_train, rng)
    f_eval = world.sample_factors(args.n_eval, rng)
    x = torch.as_tensor(world.sample_observations_from_factors(f_train, rng)).float().flatten(1)
    x_eval = torch.as_tensor(world.sample_observations_from_factors(f_eval, rng)).float().flatten(1)
    # per-pixel standardisation, as a probe's normaliser does for activations: raw [0, 1] pixels
    # under a unit-variance Gaussian likelihood make reconstruction too weak a term (posterior collapse)
    mean, std = x.mean(0), x.std(0).clamp_min(0.05)
    x, x_eval = (x - mean) / std, (x_eval - mean) / std
    torch.manual_seed(seed)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)
    extra: dict[str, Any] = {}
    if method == ISA_METHOD:
        head, extra = _isa_joint_head(x, k, seed, args)
    else:
        obj_args = dict(OBJECTIVES[method])
        if method == "beta_tcvae":
            obj_args["dataset_size"] = args.n_train
        if method == "factor_vae":  # Kim & Mnih's 6×1000 discriminator; bf16 matmuls halve its CPU cost
            obj_args["disc_dtype"] = extra["disc_dtype"] = args.disc_dtype
        head = VAEHead(
            VAEHeadConfig(
                d_in=x.shape[1], latent_dim=k + args.extra_latents, hidden=args.hidden, objective=method,
                objective_args=obj_args,
            )
        )  # fmt: skip
    Trainer(head, cfg).fit(x)
    head.eval()
    with torch.no_grad():
        codes = head.encode(x_eval)
        codes = (codes if method == ISA_METHOD else codes[0]).numpy()
    n = len(codes) // 2
    d = dci(codes[:n], f_eval[:n], codes[n:], f_eval[n:], random_state=seed, fast=True)
    return {
        "method": method,
        "K": k,
        "seed": seed,
        "latents": k + args.extra_latents,
        "mig": float(mig(codes, f_eval)["discrete_mig"]),
        "dci_disentanglement": float(d["disentanglement"]),
        "dci_completeness": float(d["completeness"]),
        "steps": args.steps,
        "n_train": args.n_train,
        "seconds": round(time.time() - t0, 1),
        **extra,
    }


def _isa_joint_head(x: torch.Tensor, k: int, seed: int, args) -> tuple[JointVAEHead, dict[str, Any]]:
    """The JointVAE head from an ISA start (as ``Probe.fit(init="isa")`` makes it): K + extra
    categorical latents of ``--values`` categories, a linear additive decoder (a table per
    latent), started from the independent subspaces' cluster codes, the capacity at its maximum
    from step 1 and no marginal term (a rising capacity would first blur the start)."""
    cats = [args.values] * (k + args.extra_latents)
    head = JointVAEHead(
        JointVAEHeadConfig(
            d_in=x.shape[1], categorical=cats, continuous=0, hidden=args.hidden, c_steps=1, c_disc_max=None,
            marginal_weight=0.0, decoder="additive", decoder_hidden=0,
        )
    )  # fmt: skip
    codes, _ = isa_codes(x[: min(len(x), 10_000)], cats, seed=seed)
    report = head.initialize_from_codes(x[: len(codes)], codes, seed=seed)
    return head, {"init_code_accuracy": float(report.get("code_accuracy", float("nan")))}


def summarise(cells: dict[str, dict], methods: Sequence[str], ks: Sequence[int]) -> dict[str, dict[int, dict]]:
    """Per method and K: mean, min and max over the seeds done (None where no seed is)."""
    out: dict[str, dict[int, dict]] = {}
    for m in methods:
        out[m] = {}
        for k in ks:
            done = [c for c in cells.values() if c["method"] == m and c["K"] == k]
            if not done:
                out[m][k] = None
                continue
            row = {"seeds": len(done)}
            for key in ("mig", "dci_disentanglement"):
                v = [c[key] for c in done]
                row[key] = {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
            out[m][k] = row
    return out


def markdown(summary: dict[str, dict[int, dict]], ks: Sequence[int]) -> str:
    lines = [
        "| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for m, per_k in summary.items():
        cells = []
        for k in ks:
            r = per_k[k]
            if r is None:
                cells.append("–")
                continue
            g, d = r["mig"], r["dci_disentanglement"]
            cells.append(f"{g['mean']:.2f} [{g['min']:.2f}, {g['max']:.2f}] / {d['mean']:.2f} (n={r['seeds']})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: MIG mean [min, max over seeds] / DCI disentanglement mean (seeds done).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="2,4,8,16,32,64")
    ap.add_argument("--methods", default="beta_vae,beta_tcvae,factor_vae," + ISA_METHOD)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--values", type=int, default=4, help="levels per factor")
    ap.add_argument("--extra-latents", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--disc-dtype",
        default="bfloat16",
        choices=DISC_DTYPES,
        help="FactorVAE: the discriminator's matmul dtype (bfloat16: about 2x faster on a CPU with AVX512-BF16)",
    )
    ap.add_argument("--max-cells", type=int, default=0, help="stop after this many new cells (0: all)")
    ap.add_argument("--report-only", action="store_true", help="fit nothing: table and plot of the cells done")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="benchmarks/studies/capacity")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ks, args.seeds, args.n_train, args.n_eval, args.steps, args.hidden = "2,4", "0", 256, 200, 5, 16
    ks = [int(k) for k in args.ks.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - {*OBJECTIVES, ISA_METHOD})
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {sorted({*OBJECTIVES, ISA_METHOD})}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "capacity.json"
    state = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
    new = fill_cells(
        path,
        state,
        [(cell_key(m, k, s), (m, k, s)) for k in ks for m in methods for s in seeds],
        current=lambda old: (
            old["steps"] == args.steps
            and old["n_train"] == args.n_train
            and old.get("disc_dtype", args.disc_dtype) == args.disc_dtype
        ),
        fit=lambda spec: run_cell(*spec, args),
        report_only=args.report_only,
        max_cells=args.max_cells,
        describe=lambda c: f"MIG {c['mig']:.3f}, DCI {c['dci_disentanglement']:.3f} ({c['seconds']} s)",
    )
    # one table, one setting: cells fitted with other steps or data sizes stay in capacity.json, untabulated
    same = {
        key: c
        for key, c in state["cells"].items()
        if c["steps"] == args.steps
        and c["n_train"] == args.n_train
        and c.get("disc_dtype", args.disc_dtype) == args.disc_dtype
    }
    summary = summarise(same, methods, ks)
    other = len(state["cells"]) - len(same)
    note = (
        f"\nSettings: {args.n_train} scenes, {args.steps} steps, FactorVAE's discriminator in {args.disc_dtype}; {other} cell(s) at other settings are in capacity.json "
        "and not in this table.\n"
    )
    (out / "capacity.md").write_text(markdown(summary, ks) + note)
    series = {m: [summary[m][k]["mig"]["mean"] if summary[m][k] else float("nan") for k in ks] for m in methods}
    metric_vs_beta_plot(ks, series, out / "capacity.png", title="MIG against the number of factors K",
                        xlabel="K (factors)", ylabel="MIG (mean over seeds)", log_x=True)  # fmt: skip
    print(markdown(summary, ks))
    return {"cells": state["cells"], "summary": summary, "new_cells": new}


if __name__ == "__main__":
    main()
