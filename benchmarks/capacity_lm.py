"""How many factors steer from a middle layer? The LM half of the capacity study (issue 22, study 1).

For each K in ``--ks``:

- **Host.** A small transformer (the factor LM's recipe, ``examples/train_factor_lm.py``: 4 layers,
  d_model 64) is trained on ``KFactorTokens(K, plan=True)``: ``<bos> #f0=v0 … #fK-1=vK-1 : f0=v0 …
  fK-1=vK-1 <eos>``. The plan is sampled uniformly; the sentence repeats it, K + 1 positions later,
  so the host must carry every factor forward, and an edit inside it can change what it writes.
  Quality: parse rate and ``follows_plan`` of its own samples.
- **Heads.** At ``--hook`` (a middle layer), every position but BOS, the per-token prefix-code head
  (``heads/sequence.py``, the method that steers the factor LM at ``blocks.1``/``blocks.2``) with
  ``--latents-per-factor`` × K + 4 latents, one fit per seed, for each objective in ``--methods``:
  ``prefix_tcvae`` (β-TCVAE's decomposition, β = 4: the default head) and ``prefix_vae`` (β = 1:
  the plain ELBO). Each step sees ``--seqs-per-step`` whole sequences at every K (the head's TC is
  estimated over a batch's sequences: a fixed batch of vectors would shrink it as K grows). The prefix head has no FactorVAE or JointVAE form: those objectives are in the
  image half only. Knobs are found without labels (``find_knobs``: latents grouped by shared
  onset), then named by labels (``knob_targets``) for scoring only.
- **Scores.** Set-to-value steering on every position (``evaluate_steering``: ``--n-steer``
  generations per factor value, the same sampling seed with and without the edit): a factor steers
  *at the floor* when its success ≥ 0.9 and leakage ≤ 0.05 (issue 22). MIG and DCI over the knobs
  and over the raw latents at the position where each sentence first writes the factor. The
  restart a user would keep without labels is the one of highest onset purity; the table gives
  both the mean over seeds and that pick. Difference of means per (token, position), with labels
  (``diff_means``), is the supervised reference row.

Resumable per cell (method, K, seed): each finished cell is written to ``capacity_lm.json`` at once
and skipped by a rerun; a K's host is trained again (same seed, same weights up to the CPU's
arithmetic) only while one of its cells is missing, and kept in ``--host-dir`` within a session.

    python benchmarks/capacity_lm.py --ks 2,4,8 --out benchmarks/studies/capacity_lm
    python benchmarks/capacity_lm.py --smoke --out /tmp/cap_lm                     # a minute

Writes ``capacity_lm.json``, ``capacity_lm.md`` (table) and ``capacity_lm.png`` (factors at the floor
against K).
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

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.heads import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts
from probe_disentangle.heads.sequence import MAX_TABLE
from probe_disentangle.metrics import linear_decodability
from probe_disentangle.steering import find_knobs, knob_targets
from probe_disentangle.viz import metric_vs_beta_plot
from probe_disentangle.worlds.k_factors import KFactorTokens
from probe_disentangle.zoo import load_native_lm, save_native_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _cells import fill_cells  # noqa: E402
from _scripts import script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"prefix_tcvae": {"beta": 4.0}, "prefix_vae": {"beta": 1.0}}
REFERENCE = "diff_means"  # supervised, one cell per K (no seed: nothing random in it)
FLOOR = {"success": 0.9, "leakage": 0.05}


def recipe():
    return script("train_factor_lm", "examples")


def world_for(k: int, values: int) -> KFactorTokens:
    return KFactorTokens(k, values, plan=True)


def host_for(k: int, args, log=print):
    """The K-factor host: loaded from ``--host-dir`` when this session trained it, else trained."""
    world = world_for(k, args.values)
    folder = Path(args.host_dir) / f"K{k}_v{args.values}_s{args.host_steps}_seed{args.host_seed}"
    if (folder / "config.json").is_file():
        model, extra = load_native_lm(folder)
        return model.eval(), world, extra["host"]
    rec = recipe()
    model, fields, loss, seconds = rec.train_lm(
        world, args.host_steps, args.host_batch, args.host_lr, args.host_seed, log=lambda m: None
    )
    quality = rec.evaluate(model, world, n=args.host_eval, seed=1)
    host = {
        "K": k,
        "steps": args.host_steps,
        "seed": args.host_seed,
        "final_loss": round(float(loss), 4),
        # the loss of a host that copies perfectly: the plan's entropy spread over the predicted tokens
        "loss_floor": round(float(k * np.log(args.values) / (2 * k + 2)), 4),
        "seconds": round(seconds, 1),
        "parse_rate": quality["parse_rate"],
        "follows_plan": quality["follows_plan"],
        "max_tv_from_uniform": max(f["tv_from_uniform"] for f in quality["factors"].values()),
        "fields": {k_: v for k_, v in fields.items() if k_ != "model_name"},
    }
    save_native_lm(model, folder, {**fields, "model_name": f"kfactor_lm_K{k}"}, {"host": host})
    log(
        f"host K={k}: loss {host['final_loss']} (floor {host['loss_floor']}), parse {host['parse_rate']:.3f}, "
        f"follows plan {host['follows_plan']:.3f} ({host['seconds']} s)"
    )
    return model.eval(), world, host


def cell_key(method: str, k: int, seed: int | None) -> str:
    return f"{method}/K{k}" + ("" if seed is None else f"/s{seed}")


def _pce():
    return script("prefix_code_eval")


def _steering_cells(st: dict[str, Any], names: Sequence[str]) -> dict[str, list[float]]:
    """prefix_code_eval's [success, leakage, parse rate] per factor, rounded to 4 places for the JSON."""
    return {n: [round(v, 4) for v in cell] for n, cell in _pce().steering_cells(st, names).items()}


def at_floor(cells: dict[str, list[float]]) -> list[str]:
    """Factors whose set-to-value steering reaches success ≥ 0.9 with leakage ≤ 0.05."""
    return [n for n, (s, leak, _) in cells.items() if s >= FLOOR["success"] and leak <= FLOOR["leakage"]]


class Context:
    """One K's host, world, adapter and read activations, shared by that K's cells."""

    def __init__(self, k: int, args, log=print) -> None:
        self.model, self.world, self.host = host_for(k, args, log)
        self.adapter = attach(self.model)
        rng = np.random.default_rng(args.data_seed)
        self.f_train = self.world.sample_factors(args.n_train, rng)
        self.f_eval = self.world.sample_factors(args.n_eval, rng)
        self.train = steering.read_world_sequences(self.adapter, args.hook, self.world, self.f_train)
        self.held = steering.read_world_sequences(self.adapter, args.hook, self.world, self.f_eval)
        self.first = steering.first_written(self.world, self.f_eval)


def _mig_dci(codes_at: Sequence[np.ndarray], factors: np.ndarray, seed: int, stages: int) -> tuple[float, float]:
    """Mean per-factor MIG of ``codes_at[j]`` (codes where each sentence first writes factor j)
    and the DCI disentanglement of the same codes (prefix_code_eval's scores)."""
    mig, dci = _pce().mig_dci_first_written(codes_at, factors, seed, stages)
    return float(np.mean(mig)), float(dci["disentanglement"])


def decodable(z: np.ndarray, factors: np.ndarray, names: Sequence[str], seed: int) -> dict[str, float]:
    """Per factor, the held-out accuracy of ``metrics.linear_decodability`` (a logistic regression
    fitted on the first 3/4 of the rows) on the standardised codes: whether the head's code holds the factor
    at all, which tells a factor the head never encoded from one it encoded but cannot steer."""
    x = (z - z.mean(0)) / (z.std(0) + 1e-8)
    return {
        n: None if acc is None else round(acc, 4) for n, acc in linear_decodability(x, factors, names, seed).items()
    }


def run_head(ctx: Context, method: str, seed: int, args) -> dict[str, Any]:
    """Fit one prefix-code head, find its knobs without labels, name them, steer and score."""
    t0 = time.time()
    world, names, sizes = ctx.world, list(ctx.world.factor_names), list(ctx.world.factor_sizes)
    acts, cond, mask = ctx.train
    k = world.num_factors
    table = world.vocab_size * acts.shape[1] * acts.shape[-1]
    cfg = PrefixCodeConfig(
        d_in=acts.shape[-1],
        vocab=world.vocab_size,
        n_pos=acts.shape[1],
        latent_dim=args.latents_per_factor * k + 4,
        centre="token_position" if table <= MAX_TABLE else "position",
        recon_weight=args.recon_weight,
        recon_positions=recon_positions(k, args.recon_positions),
        other_positions_weight=args.other_positions_weight,
        **METHODS[method],
    )
    heads: list[Any] = []
    # a fixed number of sequences per step at every K: the code's TC is estimated over the batch's
    # sequences, and a fixed batch of vectors would hold ever fewer of them as K grows
    fit = PrefixFitConfig(steps=args.head_steps, batch_size=args.seqs_per_step * acts.shape[1], seed=seed)
    _, rows = fit_prefix_code_restarts(cfg, acts, cond, mask, fit, 1, held=ctx.held, keep=heads)
    head, row = heads[0], rows[0]
    fit_s = time.time() - t0
    codes = head.codes(*ctx.held)
    z = codes[:, -1].numpy()
    knobs = find_knobs(z, onsets=head.onsets(*ctx.held).numpy())
    targets, _, owner = knob_targets(knobs, z, ctx.f_eval, sizes)
    rows_i = np.arange(len(ctx.f_eval))
    raw_at = [codes[rows_i, ctx.first[:, j]].numpy() for j in range(k)]
    knob_at = [knobs.assign(c).astype(np.float64) for c in raw_at]
    mig_raw, dci_raw = _mig_dci(raw_at, ctx.f_eval, seed, args.dci_stages)
    mig_knob, dci_knob = _mig_dci(knob_at, ctx.f_eval, seed, args.dci_stages)
    st = steering.evaluate_steering(
        ctx.model,
        world,
        steering.prefix_steerer(ctx.adapter, args.hook, head, targets),
        list(range(k)),
        n=args.n_steer,
        seed=args.steer_seed,
    )
    cells = _steering_cells(st, names)
    return {
        "method": method,
        "K": k,
        "seed": seed,
        "latents": cfg.latent_dim,
        "centre": cfg.centre,
        "onset_purity": round(float(row["onset_purity"]), 4),
        "knobs": len(knobs),
        "factors_sharing_a_knob": int(k - len(set(owner))),
        "mig_knobs": mig_knob,
        "mig_raw": mig_raw,
        "dci_knobs": dci_knob,
        "dci_raw": dci_raw,
        "steering": cells,
        "decodable": decodable(z, ctx.f_eval, names, seed),  # from the sequence's final code
        "at_floor": len(at_floor(cells)),
        "parse_rate": float(np.mean([c[2] for c in cells.values()])),
        "fit_seconds": round(fit_s, 1),
        "seconds": round(time.time() - t0, 1),
        **_setting(args),
    }


def run_reference(ctx: Context, args) -> dict[str, Any]:
    """Difference of means per (token, position), from the labels: the supervised row."""
    t0 = time.time()
    world, names, sizes = ctx.world, list(ctx.world.factor_names), list(ctx.world.factor_sizes)
    acts, cond, mask = ctx.train
    tpm = steering.TokenPositionMeans(acts, cond, mask, ctx.f_train, sizes)
    st = steering.evaluate_steering(
        ctx.model,
        world,
        tpm.steerer(ctx.adapter, args.hook, args.strength),
        list(range(world.num_factors)),
        n=args.n_steer,
        seed=args.steer_seed,
    )
    cells = _steering_cells(st, names)
    return {
        "method": REFERENCE,
        "K": world.num_factors,
        "seed": None,
        "strength": args.strength,
        "steering": cells,
        "at_floor": len(at_floor(cells)),
        "parse_rate": float(np.mean([c[2] for c in cells.values()])),
        "seconds": round(time.time() - t0, 1),
        **_setting(args),
    }


SETTING = (
    "hook", "values", "host_steps", "head_steps", "seqs_per_step", "n_train", "n_steer", "latents_per_factor",
    "recon_weight", "recon_positions", "other_positions_weight",
)  # fmt: skip
# settings added after the first cells, which ran at these values
ADDED_LATER = {"recon_weight": 1.0, "recon_positions": "all", "other_positions_weight": 0.0}
RECON_POSITIONS = ("all", "sentence")


def recon_positions(k: int, which: str) -> tuple[int, ...] | None:
    """The positions the head reconstructs: ``all`` (None: every position but BOS), or ``sentence``:
    the K positions that predict the sentence's words (':' and the first K − 1 words), where the
    host reads out each factor once, so each factor counts about once per sequence instead of
    once per later position its plan tag reaches."""
    if which not in RECON_POSITIONS:
        raise SystemExit(f"--recon-positions must be one of {RECON_POSITIONS}, got {which!r}")
    return None if which == "all" else tuple(range(k + 1, 2 * k + 1))


def same_setting(cell: dict[str, Any], setting: dict[str, Any]) -> bool:
    return all(cell.get(n, ADDED_LATER.get(n)) == v for n, v in setting.items())


def _setting(args) -> dict[str, Any]:
    return {name: getattr(args, name) for name in SETTING}


def summarise(cells: dict[str, dict], methods: Sequence[str], ks: Sequence[int]) -> dict[str, dict[int, Any]]:
    """Per method and K: factors at the floor (mean, min, max over seeds; and the seed of highest
    onset purity, the label-free pick), MIG over the knobs, and parse rate."""
    out: dict[str, dict[int, Any]] = {}
    for m in methods:
        out[m] = {}
        for k in ks:
            done = [c for c in cells.values() if c["method"] == m and c["K"] == k]
            if not done:
                out[m][k] = None
                continue
            floor = [c["at_floor"] for c in done]
            row: dict[str, Any] = {
                "seeds": len(done),
                "at_floor": {"mean": float(np.mean(floor)), "min": int(min(floor)), "max": int(max(floor))},
                "parse_rate": float(np.mean([c["parse_rate"] for c in done])),
            }
            if m != REFERENCE:
                pick = max(done, key=lambda c: c["onset_purity"])
                row["picked"] = {
                    "seed": pick["seed"],
                    "at_floor": pick["at_floor"],
                    "onset_purity": pick["onset_purity"],
                }
                row["mig_knobs"] = float(np.mean([c["mig_knobs"] for c in done]))
                row["mig_raw"] = float(np.mean([c["mig_raw"] for c in done]))
                row["dci_knobs"] = float(np.mean([c["dci_knobs"] for c in done]))
            out[m][k] = row
    return out


def markdown(summary: dict[str, dict[int, Any]], hosts: dict[str, dict], ks: Sequence[int]) -> str:
    lines = ["| method | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    host_cells = []
    for k in ks:
        h = hosts.get(f"host/K{k}")
        host_cells.append("–" if h is None else f"follows plan {h['follows_plan']:.3f}, parse {h['parse_rate']:.3f}")
    lines.append("| host | " + " | ".join(host_cells) + " |")
    for m, per_k in summary.items():
        cells = []
        for k in ks:
            r = per_k[k]
            if r is None:
                cells.append("–")
                continue
            f = r["at_floor"]
            text = f"**{f['mean']:.1f}** [{f['min']}, {f['max']}] of {k}"
            if "picked" in r:
                text += f"; pick {r['picked']['at_floor']}; MIG {r['mig_knobs']:.2f} (raw {r['mig_raw']:.2f})"
            cells.append(text + f"; parse {r['parse_rate']:.2f} (n={r['seeds']})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: factors steered at the floor (success ≥ 0.9, leakage ≤ 0.05), mean [min, max over seeds] of K; "
        "pick: the seed of highest onset purity (label-free); MIG over the knobs (raw latents) at the position "
        "where each sentence first writes the factor; mean parse rate of the steered generations.",
    ]
    return "\n".join(lines) + "\n"


def add_host_args(ap: argparse.ArgumentParser) -> None:
    """The flags ``host_for`` reads (the world and the host's recipe), shared with the scripts
    that study the same hosts (capacity_lm_factor_gain.py)."""
    ap.add_argument("--values", type=int, default=4, help="values per factor")
    ap.add_argument("--hook", default="blocks.2.hook_resid_post")
    ap.add_argument("--host-steps", type=int, default=3000)
    ap.add_argument("--host-batch", type=int, default=128)
    ap.add_argument("--host-lr", type=float, default=2e-3)
    ap.add_argument("--host-seed", type=int, default=0)
    ap.add_argument("--host-eval", type=int, default=1000, help="host samples scored for parse rate / follows plan")
    ap.add_argument("--host-dir", default="runs/capacity_lm_hosts", help="trained hosts, reused within a session")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="2,4,8,16,32,64")
    ap.add_argument("--methods", default=",".join([*METHODS, REFERENCE]))
    ap.add_argument("--seeds", default="0,1,2", help="head seeds (initial weights, batches, samples)")
    add_host_args(ap)
    ap.add_argument("--head-steps", type=int, default=3000)
    ap.add_argument("--seqs-per-step", type=int, default=32, help="head batch: sequences per step (× length vectors)")
    ap.add_argument("--latents-per-factor", type=int, default=2)
    ap.add_argument(
        "--recon-weight", type=float, default=1.0, help="the head's 1/σ²: what a latent's reconstruction gain is worth"
    )
    ap.add_argument(
        "--recon-positions",
        default="all",
        choices=RECON_POSITIONS,
        help="which positions the head reconstructs: all, or the K that predict the sentence's words",
    )
    ap.add_argument(
        "--other-positions-weight",
        type=float,
        default=0.0,
        help="with --recon-positions sentence: the other positions' reconstruction weight (0: dropped)",
    )
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--n-steer", type=int, default=20, help="generations per factor value")
    ap.add_argument("--strength", type=float, default=2.0, help="difference of means: × (value mean − mean)")
    ap.add_argument("--dci-stages", type=int, default=50)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--steer-seed", type=int, default=1)
    ap.add_argument("--max-cells", type=int, default=0, help="stop after this many new cells (0: all)")
    ap.add_argument("--report-only", action="store_true", help="fit nothing: table and plot of the cells done")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="benchmarks/studies/capacity_lm")
    args = ap.parse_args(argv)
    if args.smoke:
        args.ks, args.seeds, args.host_steps, args.head_steps = "2", "0", 60, 20
        args.n_train, args.n_eval, args.n_steer, args.host_eval, args.dci_stages = 64, 64, 2, 50, 5
    ks = [int(k) for k in args.ks.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - {*METHODS, REFERENCE})
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {sorted({*METHODS, REFERENCE})}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "capacity_lm.json"
    state = json.loads(path.read_text()) if path.is_file() else {"hosts": {}, "cells": {}}
    setting = _setting(args)
    torch.set_grad_enabled(True)
    contexts: dict[int, Context] = {}  # the host and data of the K being fitted (one at a time)

    def fit(spec: tuple[str, int, int | None]) -> dict[str, Any]:
        m, k, s = spec
        if k not in contexts:
            contexts.clear()
            contexts[k] = Context(k, args)
            state["hosts"][f"host/K{k}"] = contexts[k].host
        return run_reference(contexts[k], args) if m == REFERENCE else run_head(contexts[k], m, s, args)

    runs = [(m, None) if m == REFERENCE else (m, s) for m in methods for s in ([None] if m == REFERENCE else seeds)]
    new = fill_cells(
        path,
        state,
        [(cell_key(m, k, s), (m, k, s)) for k in ks for m, s in runs],
        current=lambda old: same_setting(old, setting),
        fit=fit,
        report_only=args.report_only,
        max_cells=args.max_cells,
        describe=lambda c: f"{c['at_floor']} of {c['K']} factors at the floor ({c['seconds']} s)",
    )
    same = {key: c for key, c in state["cells"].items() if same_setting(c, setting)}
    summary = summarise(same, methods, ks)
    other = len(state["cells"]) - len(same)
    note = (
        f"\nSettings: hook {args.hook}, {args.values} values per factor, hosts {args.host_steps} steps, heads "
        f"{args.head_steps} steps of {args.seqs_per_step} of {args.n_train} sequences, {args.n_steer} steered generations per factor value, "
        f"{args.latents_per_factor} latents per factor, reconstruction weight {args.recon_weight} at "
        f"{args.recon_positions} positions (others weighted {args.other_positions_weight}); "
        f"{other} cell(s) at other settings are in capacity_lm.json and not in this table.\n"
    )
    (out / "capacity_lm.md").write_text(markdown(summary, state["hosts"], ks) + note)
    series = {
        m: [summary[m][k]["at_floor"]["mean"] / k if summary[m][k] else float("nan") for k in ks] for m in methods
    }
    metric_vs_beta_plot(ks, series, out / "capacity_lm.png", title="Factors steered at the floor, as a share of K",
                        xlabel="K (factors)", ylabel="share of factors at the floor", log_x=True)  # fmt: skip
    print(markdown(summary, state["hosts"], ks))
    return {"cells": state["cells"], "hosts": state["hosts"], "summary": summary, "new_cells": new}


if __name__ == "__main__":
    main()
