"""How disentanglement develops during training (issue 22, §3: developmental interpretability).

Retrains the factor LM with the shipped recipe (``examples/train_factor_lm.py``: plan world, 4
layers of width 64, AdamW, warm-up then cosine, seed ``--seed``) and keeps checkpoints at
log-spaced steps (``--checkpoints-at``). At each checkpoint, on held-out sentences:

- the loss (next-token cross-entropy) and, from ``--n-generate`` sampled generations, the parse
  rate and how often the sentence follows its own plan;
- linear decodability of each factor (logistic regression, ¾ train / ¼ test) at the plan
  (positions 1..9 at ``blocks.0.hook_resid_pre``, the probe's vector: token embeddings, so
  decodable from the first step) and, per token, at ``blocks.2.hook_resid_post`` just before the
  sentence first writes the factor (the vector that must predict the factor's word from the plan);
- the demo's probe (plan-span β-TCVAE head started from independent subspace analysis, 200 steps,
  no labels): MIG per factor, and set-to-value steering success / leakage / parse per factor
  (``--n-steer`` generations per value);
- at the steps in ``--per-token-at``, the middle-layer per-token head (``heads.PrefixCodeHead`` at
  ``--middle-hook``, one restart, knobs): factors at the interchange floor, mean Disentangle, MIG
  at the first-written position over knobs.

A factor counts as *decodable* at the first checkpoint where its plan decodability is ≥ 0.95 and
as *steerable* at the first where the probe steers it at ≥ 0.9 success and ≤ 0.05 leakage; the
middle layer's decodability (≥ 0.95 just before the word) is reported beside them.

Resumable: each checkpoint's measurements go into ``developmental.json`` as they finish, and
a rerun measures only the checkpoints missing there (the training itself takes minutes and is
redone only when a checkpoint folder is missing). ``--checkpoints DIR`` measures a folder of the
user's own factor-LM checkpoints instead (subfolders written by ``zoo.save_native_lm``, whose
``config.json`` names their training ``step``, else their folder order).

    python benchmarks/developmental.py                 # train, measure, table + plot in benchmarks/studies/developmental/
    python benchmarks/developmental.py --smoke         # seconds, for the test

Writes ``developmental.json``, ``developmental.md`` (table) and ``developmental.png`` (plot).
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
import torch.nn.functional as F

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.demo import _per_factor_mig, plan_gaussian_probe, plan_span
from probe_disentangle.io import atomic_write_json
from probe_disentangle.metrics import linear_decodability
from probe_disentangle.train import TrainConfig
from probe_disentangle.viz import metric_vs_beta_plot
from probe_disentangle.worlds.factor_language import FactorLanguage
from probe_disentangle.zoo import load_native_lm, save_native_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _scripts import script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_AT = (5, 10, 20, 35, 50, 75, 100, 150, 200, 350, 500, 1000, 2000, 3000)


def train(out: Path, at: Sequence[int], seed: int, batch_size: int = 128, lr: float = 2e-3, log=print) -> list[Path]:
    """Train the factor LM for ``max(at)`` steps with the shipped recipe
    (``examples/train_factor_lm.py``'s ``train_lm``), saving a checkpoint at each step in ``at``
    (``out/step_NNNNN``). Returns the checkpoint folders."""
    folders = [out / f"step_{s:05d}" for s in at]
    if all((f / "config.json").is_file() for f in folders):
        return folders
    recipe = script("train_factor_lm", "examples")
    world = FactorLanguage(plan=True)
    fields = recipe.model_fields(world.vocab_size, int(world.render(world.all_factors()[:1]).shape[1]), seed)
    steps = max(at)

    def save(step: int, model, loss: float) -> None:
        if step in at:
            extra = {"vocab": world.tokenizer.vocab, "world": "factor_language", "plan": True, "step": step}
            extra["train"] = {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "loss": loss}
            save_native_lm(model, out / f"step_{step:05d}", fields, extra)
            log(f"checkpoint step {step}: loss {loss:.4f}")

    recipe.train_lm(world, steps, batch_size, lr, seed, on_step=save, log=lambda m: None)
    return folders


@torch.no_grad()
def heldout_loss(model, tokens: np.ndarray, pad: int, batch: int = 500) -> float:
    total, count = 0.0, 0
    for s in range(0, len(tokens), batch):
        x = torch.as_tensor(tokens[s : s + batch]).long()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), ignore_index=pad, reduction="sum"
        )
        total += float(loss)
        count += int((x[:, 1:] != pad).sum())
    return total / max(count, 1)


def measure(folder: Path, args, log=print) -> dict[str, Any]:
    """Everything the study reads off one checkpoint (see the module docstring)."""
    t0 = time.time()
    model, meta = load_native_lm(folder)
    world = FactorLanguage(plan=bool(meta.get("plan", True)))
    if meta.get("vocab") != world.tokenizer.vocab:
        raise ValueError(f"{folder} was not trained on the factor language's vocabulary; it cannot be read here")
    names, sizes, pad = world.factor_names, world.factor_sizes, world.tokenizer.pad_id
    rng = np.random.default_rng(args.seed)
    f_train, f_eval = world.sample_factors(args.n_train, rng), world.sample_factors(args.n_eval, rng)
    t_train, t_eval = world.render(f_train), world.render(f_eval)
    out: dict[str, Any] = {"step": int(meta.get("step", -1)), "folder": str(folder)}
    out["loss"] = heldout_loss(model, t_eval, pad)
    gen = steering.generate_world(model, world, args.n_generate, seed=args.seed + 5)
    parsed = [world.parse(s) for s in gen]
    out["parse_rate"] = float(np.mean([p is not None for p in parsed]))
    plans = [world.parse_plan(s) for s in gen]
    out["follows_plan"] = float(np.mean([p is not None and p == q for p, q in zip(plans, parsed, strict=True)]))
    span_adapter = attach(model, span=plan_span(world))
    plan_vecs = steering.sequence_vectors(span_adapter, args.hook, t_eval)
    out["decodable_plan"] = linear_decodability(plan_vecs.numpy(), f_eval, names, args.seed)
    acts, _, _ = steering.read_sequences(attach(model), args.middle_hook, torch.as_tensor(t_eval).long())
    fw = steering.first_written(world, f_eval)
    rows = np.arange(len(f_eval))
    # the vector just before the factor's first word: it must predict that word from the plan
    # (at the word itself the token would give the factor away)
    out["decodable_middle_before_word"] = {
        n: linear_decodability(acts[rows, fw[:, j] - 1].numpy(), f_eval, names, args.seed)[n]
        for j, n in enumerate(names)
    }
    torch.manual_seed(args.seed)
    probe = plan_gaussian_probe(model, world, args.hook, args.n_train)
    bs = min(512, args.n_train // 2)
    batches = [torch.as_tensor(t_train[i : i + bs]) for i in range(0, len(t_train), bs)]
    cfg = TrainConfig(steps=args.probe_steps, batch_size=bs, lr=1e-3, progress=False, seed=args.seed)
    probe.fit(batches, cfg, buffer_size=args.n_train, normalizer_vectors=args.n_train, init="isa")
    codes = probe.encode(plan_vecs).numpy()
    out["mig"] = _per_factor_mig(codes, f_eval, names)
    st, _ = steering.probe_steerer(probe, plan_vecs, f_eval, sizes, strength=1.0)
    res = steering.evaluate_steering(model, world, st, list(range(len(names))), n=args.n_steer, seed=args.seed + 1)
    out["steering"] = {n: {k: res[n][k] for k in ("success", "leakage", "parse_rate")} for n in names}
    if out["step"] in args.per_token_steps:
        out["per_token"] = per_token(model, world, args, f_train, f_eval)
    out["seconds"] = round(time.time() - t0, 1)
    m = np.mean
    log(
        f"step {out['step']:>5}: loss {out['loss']:.3f}, parse {out['parse_rate']:.2f}, follows plan "
        f"{out['follows_plan']:.2f}; decodable plan {m(list(out['decodable_plan'].values())):.2f} / middle "
        f"{m(list(out['decodable_middle_before_word'].values())):.2f}; MIG {m(list(out['mig'].values())):.2f}; "
        f"steered {sum(steerable(out, n) for n in names)}/8 ({out['seconds']} s)"
    )
    return out


def per_token(model, world, args, f_train: np.ndarray, f_eval: np.ndarray) -> dict[str, Any]:
    """The headline head at ``--middle-hook`` on this checkpoint: a prefix-code head fitted without
    labels (one restart, ``--per-token-fit-steps``), its knobs, MIG at the first-written position
    over knobs, and RAVEL interchange with every position edited (``--n-interchange`` pairs)."""
    from probe_disentangle.heads import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts

    names, sizes, pad = world.factor_names, list(world.factor_sizes), world.tokenizer.pad_id
    adapter = attach(model)

    def read(f: np.ndarray):
        return steering.read_world_sequences(adapter, args.middle_hook, world, f)

    train, held = read(f_train), read(f_eval)
    cfg = PrefixCodeConfig(d_in=train[0].shape[-1], vocab=world.vocab_size, n_pos=train[0].shape[1], latent_dim=20)
    fit = PrefixFitConfig(steps=args.per_token_fit_steps, seed=args.seed)
    head, rows = fit_prefix_code_restarts(cfg, *train, fit, 1, held=held)
    codes = head.codes(*held)
    try:
        knobs = steering.find_knobs(codes[:, -1].numpy(), onsets=head.onsets(*held).numpy())
    except ValueError as err:  # every latent still at the prior: nothing to steer with
        return {"onset_purity": rows[0]["onset_purity"], "knobs": 0, "error": str(err)}
    _, groups, _ = steering.knob_targets(knobs, codes[:, -1].numpy(), f_eval, sizes)
    fw = steering.first_written(world, f_eval)
    rows_i = np.arange(len(f_eval))
    mig = {
        n: _per_factor_mig(knobs.assign(codes[rows_i, fw[:, j]].numpy()).astype(np.float64), f_eval, names)[n]
        for j, n in enumerate(names)
    }
    out = {"onset_purity": rows[0]["onset_purity"], "knobs": len(knobs), "mig_knobs": mig}
    try:
        ic = steering.evaluate_interchange(
            model,
            world,
            steering.prefix_interchanger(adapter, args.middle_hook, head, groups, pad),
            n=args.n_interchange,
        )
    except ValueError as err:  # the checkpoint does not write parsable sentences yet
        return {**out, "interchange": None, "at_floor": [], "error": str(err)}
    at = [n for n, r in ic["per_factor"].items() if r["cause"] >= 0.9 and r["isolate"] >= 0.95]
    return {**out, "interchange": ic, "at_floor": at}


def steerable(row: dict[str, Any], name: str) -> bool:
    s = row["steering"][name]
    return s["success"] >= 0.9 and s["leakage"] <= 0.05


def first_steps(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, int | None]]:
    """Per factor: the first checkpoint step at which it is decodable (plan, ≥ 0.95) and steerable."""
    out = {}
    for n in names:
        dec = next((r["step"] for r in rows if r["decodable_plan"][n] >= 0.95), None)
        mid = next((r["step"] for r in rows if r["decodable_middle_before_word"][n] >= 0.95), None)
        st = next((r["step"] for r in rows if steerable(r, n)), None)
        out[n] = {"decodable": dec, "decodable_middle": mid, "steerable": st}
    return out


def markdown(rows: list[dict[str, Any]], names: Sequence[str]) -> str:
    lines = [
        "| step | loss | parse | follows plan | decodable (plan) | decodable (blocks.2, before the word) | MIG | factors steered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['loss']:.3f} | {r['parse_rate']:.2f} | {r['follows_plan']:.2f} | "
            f"{np.mean(list(r['decodable_plan'].values())):.2f} | "
            f"{np.mean(list(r['decodable_middle_before_word'].values())):.2f} | {np.mean(list(r['mig'].values())):.2f} | "
            f"{sum(steerable(r, n) for n in names)} of {len(names)} |"
        )
    pt = [r for r in rows if "per_token" in r]
    if pt:
        lines += [
            "",
            "The middle-layer per-token head (blocks.2, one restart, every position edited, 100 interchange pairs per factor):",
            "",
            "| step | onset purity | knobs | factors at Cause ≥ 0.9, Isolate ≥ 0.95 | mean Disentangle | MIG@first (knobs) |",
            "|---|---|---|---|---|---|",
        ]
        for r in pt:
            p = r["per_token"]
            if not p["knobs"] or p.get("interchange") is None:
                mig = f"{np.mean(list(p['mig_knobs'].values())):.3f}" if p.get("mig_knobs") else "–"
                lines.append(
                    f"| {r['step']} | {p['onset_purity']:.3f} | {p['knobs']} | – (no parsable base) | – | {mig} |"
                )
                continue
            lines.append(
                f"| {r['step']} | {p['onset_purity']:.3f} | {p['knobs']} | {len(p['at_floor'])} of {len(names)} | "
                f"{p['interchange']['mean']['disentangle']:.3f} | {np.mean(list(p['mig_knobs'].values())):.3f} |"
            )
    first = first_steps(rows, names)
    lines += [
        "",
        "| factor | first decodable at the plan (≥ 0.95) | first decodable at blocks.2 before its word (≥ 0.95) | "
        "first steerable (≥ 0.9 / ≤ 0.05) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {first[n]['decodable']} | {first[n]['decodable_middle']} | {first[n]['steerable']} |" for n in names
    ]
    return "\n".join(lines) + "\n"


def _checkpoint_folders(path: Path) -> list[Path]:
    found = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
    if not found:
        raise SystemExit(f"--checkpoints {path}: no checkpoint folders (with config.json) inside")
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/studies/developmental")
    ap.add_argument("--run", default="runs/developmental", help="where the retrained checkpoints are kept")
    ap.add_argument("--checkpoints", default="", help="measure this folder of checkpoints instead of training")
    ap.add_argument("--checkpoints-at", default=",".join(map(str, CHECKPOINTS_AT)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hook", default="blocks.0.hook_resid_pre")
    ap.add_argument("--middle-hook", default="blocks.2.hook_resid_post")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--n-generate", type=int, default=400)
    ap.add_argument("--n-steer", type=int, default=10, help="generations per factor value")
    ap.add_argument("--probe-steps", type=int, default=200)
    ap.add_argument(
        "--per-token-at",
        default="",
        help="checkpoint steps at which to fit and score the middle-layer per-token head too (minutes each)",
    )
    ap.add_argument("--per-token-fit-steps", type=int, default=5000)
    ap.add_argument("--n-interchange", type=int, default=100, help="per-token head: interchange pairs per factor")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.checkpoints_at, args.n_train, args.n_eval, args.n_generate, args.n_steer, args.probe_steps = (
            "3,6",
            400,
            200,
            20,
            1,
            5,
        )
        args.per_token_at, args.per_token_fit_steps, args.n_interchange = "6", 30, 2
    args.per_token_steps = {int(x) for x in args.per_token_at.split(",") if x.strip()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.checkpoints:
        folders = _checkpoint_folders(Path(args.checkpoints))
    else:
        at = sorted({int(s) for s in args.checkpoints_at.split(",")})
        folders = train(Path(args.run), at, args.seed)
    path = out / "developmental.json"
    state = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    for folder in folders:
        key = str(folder.resolve())
        row = state["rows"].get(key)
        if row is None or (row["step"] in args.per_token_steps and "per_token" not in row):
            state["rows"][key] = measure(folder, args)
            atomic_write_json(path, state)
    rows = sorted(state["rows"].values(), key=lambda r: (r["step"], r["folder"]))
    order = FactorLanguage(plan=True).factor_names  # the world's order (the saved JSON's keys are sorted)
    names = [n for n in order if n in rows[0]["decodable_plan"]] or list(rows[0]["decodable_plan"])
    text = markdown(rows, names)
    (out / "developmental.md").write_text(text)
    steps = [max(r["step"], 1) for r in rows]
    series = {
        "loss / loss at the first checkpoint": [r["loss"] / rows[0]["loss"] for r in rows],
        "decodable (plan)": [float(np.mean(list(r["decodable_plan"].values()))) for r in rows],
        "decodable (blocks.2, before the word)": [
            float(np.mean(list(r["decodable_middle_before_word"].values()))) for r in rows
        ],
        "MIG": [float(np.mean(list(r["mig"].values()))) for r in rows],
        "share of factors steered": [sum(steerable(r, n) for n in names) / len(names) for r in rows],
        "parse rate": [r["parse_rate"] for r in rows],
    }
    metric_vs_beta_plot(steps, series, out / "developmental.png", title="The factor LM during training",
                        xlabel="training step", ylabel="value", log_x=len(set(steps)) > 1 and max(steps) / min(steps) >= 10)  # fmt: skip
    print(text)
    return {"rows": rows, "first": first_steps(rows, names)}


if __name__ == "__main__":
    main()
