"""Steering the shipped factor LM from a middle layer with per-token heads, against its baselines (issue 20).

Per hook (default ``blocks.1.hook_resid_post`` and ``blocks.2.hook_resid_post``), one run, one set
of data (``--n-train`` training / ``--n-eval`` held-out sentences, seed ``--seed``), every position
but BOS read and edited (prompt and generated tokens; full forwards), the same interchange bases
for every row (``--n-interchange`` base/source pairs per factor):

- ``prefix_code`` (unsupervised): ``--restarts`` fits of ``heads.PrefixCodeHead``; the one with the
  highest onset purity on unlabelled held-out sentences is kept (``heads.fit_prefix_code_restarts``).
  Its latents are grouped into knobs without labels (``steering.knobs.find_knobs``: latents that
  take their value at the same position). Labels are used afterwards only to name knobs and
  settings and to score. Every restart is scored too, so the choice can be checked, and each
  restart's UDR against the others (``metrics.udr``, Duan et al. 2020) is reported beside its purity.
- ``prefix_code_pairs`` (pair-supervised, its own row): the same head trained as Ada-GVAE on
  pairs of sentences that differ in one factor, which one not given (``--pair-restarts`` fits,
  the purest kept), scored the same way.
- ``token_position_diff_means`` (supervised reference): per (token id, position) the mean vector
  of each factor value; set-to-value adds ``--strength`` × (value mean − all mean); interchange
  moves each base position from the value it is nearest to, to the source's value.
- ``pca`` (unsupervised): principal directions of the position-centred vectors, aligned to factors
  by mutual information; interchange a'_p = a_p + P_A(s_p − a_p) at every position p.
- ``sae_topk`` (unsupervised): a TopK SAE trained by SAELens on the same vectors
  (``benchmarks/sae_baseline.py``), features aligned by mutual information, interchanged
  position by position by their decoder rows.

Scores: interchange Cause / Isolate / Disentangle per factor (RAVEL), set-to-value steering
success / leakage / parse (heads and difference of means), MIG and DCI at the position where each
sentence first writes the factor — for the head both over its raw latents and over its knobs
(each knob's setting as one discrete code).

    python benchmarks/prefix_code_eval.py                  # both hooks, the table in prefix_code_eval.md
    python benchmarks/prefix_code_eval.py --smoke          # seconds: tiny fits, for the test

Prints the tables and writes JSON (default ``benchmarks/results/prefix_code_eval_s<seed>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe_disentangle import losses, metrics, steering
from probe_disentangle.adapters import attach
from probe_disentangle.heads import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts
from probe_disentangle.hosts import load_host
from probe_disentangle.steering.knobs import find_knobs, knob_targets

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _scripts import script  # noqa: E402

HOOKS = ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post")
NAMES_AT_FLOOR = {"cause": 0.9, "isolate": 0.95}


# ------------------------------------------------------------------ scores shared by the rows


def mig_dci_first_written(codes_at: Sequence[np.ndarray], factors: np.ndarray, seed: int, stages: int):
    """Per-factor MIG of ``codes_at[j]`` (codes where each sentence first writes factor j) and DCI."""
    study, sae_bench = script("per_token_heads"), script("sae_baseline")
    mig = [float(study.per_factor_mig(np.asarray(c, dtype=np.float64), factors)[j]) for j, c in enumerate(codes_at)]
    return mig, sae_bench.dci_first_written([np.asarray(c, dtype=np.float64) for c in codes_at], factors, seed, stages)


def at_floor(ic: dict[str, Any]) -> list[str]:
    pf = ic["per_factor"]
    return [
        n for n, r in pf.items() if r["cause"] >= NAMES_AT_FLOOR["cause"] and r["isolate"] >= NAMES_AT_FLOOR["isolate"]
    ]


def steering_cells(st: dict[str, Any], names: Sequence[str]) -> dict[str, list[float]]:
    return {n: [st[n]["success"], st[n]["leakage"], st[n]["parse_rate"]] for n in names}


# ------------------------------------------------------------------ positionwise baselines


def pca_interchanger(adapter, hook: str, mean_p: Tensor, basis: dict[int, Tensor], pad_id: int):
    """a'_p = a_p + P_A(s_p − a_p) at every position p, s the source's vector at the same position
    (its last real one past its end), P_A the projector on factor A's principal directions."""

    @contextlib.contextmanager
    def inter(factor: int, sources) -> Iterator[None]:
        tokens = torch.as_tensor(np.asarray(sources)).long()
        attn = (tokens != pad_id).long()
        attn[:, 0] = 1
        src, _, _ = steering.read_sequences(adapter, hook, tokens, attn)
        last = attn.sum(1) - 1
        B = basis[int(factor)]  # [k, d], orthonormal rows
        P = B.T @ B

        def edit(act, tok, pos):
            p = torch.minimum(pos, last.to(pos.device)[:, None])
            s = src.to(act.device)[torch.arange(len(act), device=act.device)[:, None], p]
            return act + (s - act) @ P.to(act)

        with steering.positionwise_edit(adapter, hook, edit):
            yield

    return inter


# ------------------------------------------------------------------ one hook


def run_hook(args, model, world, hook: str, log=print) -> dict[str, Any]:
    study = script("per_token_heads")
    names, sizes, pad = list(world.factor_names), list(world.factor_sizes), world.tokenizer.pad_id
    adapter = attach(model)
    rng = np.random.default_rng(args.seed)

    def read(f: np.ndarray):
        return steering.read_world_sequences(adapter, hook, world, f)

    f_train, f_eval = world.sample_factors(args.n_train, rng), world.sample_factors(args.n_eval, rng)
    train, held = read(f_train), read(f_eval)
    fw = study.first_written(world, f_eval)
    rows = np.arange(len(f_eval))
    bases = steering.base_generations(model, world, args.n_interchange, seed=args.seed + 2)
    out: dict[str, Any] = {}

    # ---- the head: restarts, one kept without labels, each scored
    t0 = time.perf_counter()
    acts, cond, mask = train
    cfg = PrefixCodeConfig(
        d_in=acts.shape[-1],
        vocab=world.vocab_size,
        n_pos=acts.shape[1],
        latent_dim=args.latents,
        group_size=args.group_size,
    )
    fit = PrefixFitConfig(steps=args.steps, seed=args.seed)
    heads: list[Any] = []
    _, restarts = fit_prefix_code_restarts(cfg, acts, cond, mask, fit, args.restarts, held=held, keep=heads)
    fit_s = time.perf_counter() - t0

    def score(head, row) -> dict[str, Any]:
        codes = head.codes(*held)
        z = codes[:, -1].numpy()
        knobs = find_knobs(z, onsets=head.onsets(*held).numpy())
        targets, groups, owner = knob_targets(knobs, z, f_eval, sizes)
        raw_at = [codes[rows, fw[:, j]].numpy() for j in range(len(names))]
        knob_at = [knobs.assign(c).astype(np.float64) for c in raw_at]
        mig_raw, dci_raw = mig_dci_first_written(raw_at, f_eval, args.seed, args.dci_stages)
        mig_knob, dci_knob = mig_dci_first_written(knob_at, f_eval, args.seed, args.dci_stages)
        st = steering.evaluate_steering(
            model,
            world,
            steering.prefix_steerer(adapter, hook, head, targets),
            list(range(len(names))),
            n=args.n_steer,
            seed=args.seed + 1,
        )
        ic = steering.evaluate_interchange(
            model, world, steering.prefix_interchanger(adapter, hook, head, groups, pad), bases=bases
        )
        entry = {
            **{k: row[k] for k in ("seed", "onset_purity", "heldout", "chosen")},
            "fit_seconds": row["fit"]["seconds"],
            "knobs": knobs.to_dict(),
            "factor_knob": dict(zip(names, owner, strict=True)),
            "mig_first_written": dict(zip(names, mig_raw, strict=True)),
            "mig_first_written_knobs": dict(zip(names, mig_knob, strict=True)),
            "dci": dci_raw,
            "dci_knobs": dci_knob,
            "steering": steering_cells(st, names),
            "interchange": ic,
            "interchange_at_floor": at_floor(ic),
        }
        m = ic["mean"]
        log(
            f"{hook} prefix_code seed {row['seed']}{' (kept)' if row['chosen'] else ''}: purity {row['onset_purity']:.3f}, "
            f"{len(knobs)} knobs; at floor {len(entry['interchange_at_floor'])}/8; Cause {m['cause']:.3f} Isolate "
            f"{m['isolate']:.3f} D {m['disentangle']:.3f} parse {m['parse_rate']:.3f}; MIG@first raw "
            f"{np.mean(mig_raw):.3f} knobs {np.mean(mig_knob):.3f}"
        )
        return entry

    scored = [score(head, row) for row, head in zip(restarts, heads, strict=True)]
    if len(heads) > 1:  # UDR (Duan et al. 2020) over the restarts, another label-free score, beside purity
        post = [head.posteriors(*held)[:2] for head in heads]
        codes = [mu[:, -1].detach().numpy() for mu, _ in post]
        kls = [losses.kl_normal_standard(mu[:, -1], lv[:, -1]).mean(0).detach().numpy() for mu, lv in post]
        for entry, u in zip(scored, metrics.udr(codes, kl=kls)["model_scores"], strict=True):
            entry["udr"] = float(u)
    out["prefix_code"] = {
        "supervision": "none (labels only name knobs and settings, and score)",
        "restarts": scored,
        "fit_seconds_all_restarts": round(fit_s, 1),
        "chosen": next(e for e in scored if e["chosen"]),
    }

    # ---- the same head trained on pairs that differ in one unnamed factor (Ada-GVAE)
    if args.pair_restarts:
        fa, fb = world.sample_pairs(args.n_train, np.random.default_rng(args.seed + 3))
        pairs = (read(fa), read(fb))
        heads = []
        _, prow = fit_prefix_code_restarts(
            cfg, acts, cond, mask, fit, args.pair_restarts, held=held, pairs=pairs, keep=heads
        )
        kept = next(i for i, r in enumerate(prow) if r["chosen"])
        entry = score(heads[kept], prow[kept])
        out["prefix_code_pairs"] = {"supervision": "pairs (differ in one unnamed factor)", **entry}
        log(
            f"{hook} prefix_code_pairs: at floor {len(entry['interchange_at_floor'])}/8; D {entry['interchange']['mean']['disentangle']:.3f}"
        )

    # ---- difference of means per (token, position): supervised
    tpm = steering.TokenPositionMeans(acts, cond, mask, f_train, sizes)
    st = steering.evaluate_steering(
        model,
        world,
        tpm.steerer(adapter, hook, args.strength),
        list(range(len(names))),
        n=args.n_steer,
        seed=args.seed + 1,
    )
    ic = steering.evaluate_interchange(model, world, tpm.interchanger(adapter, hook, world), bases=bases)
    out["token_position_diff_means"] = {
        "supervision": "supervised (factor labels)",
        "strength": args.strength,
        "steering": steering_cells(st, names),
        "interchange": ic,
        "interchange_at_floor": at_floor(ic),
    }
    log(f"{hook} token_position_diff_means: at floor {len(at_floor(ic))}/8; D {ic['mean']['disentangle']:.3f}")

    # ---- PCA on position-centred vectors
    mean_p = torch.zeros(acts.shape[1], acts.shape[2]).index_add_(0, cond[mask][:, 1], acts[mask].float())
    mean_p /= torch.bincount(cond[mask][:, 1], minlength=acts.shape[1]).clamp_min(1)[:, None].float()
    centred = acts[mask].float() - mean_p[cond[mask][:, 1]]
    comps = steering.principal_directions(centred, args.latents)  # [k, d]
    pca_at = [((held[0][rows, fw[:, j]] - mean_p[fw[:, j]]) @ comps.T).numpy() for j in range(len(names))]
    mi = np.stack([steering.mutual_information_matrix(c, f_eval[:, j : j + 1])[:, 0] for j, c in enumerate(pca_at)], 1)
    ents = steering.factor_entropies(f_eval)
    feats = steering.align_features(mi, sizes, ents)
    basis = {j: torch.linalg.qr(comps[feats[j]].T)[0].T for j in feats}
    ic = steering.evaluate_interchange(model, world, pca_interchanger(adapter, hook, mean_p, basis, pad), bases=bases)
    mig, dci = mig_dci_first_written(pca_at, f_eval, args.seed, args.dci_stages)
    out["pca"] = {
        "supervision": "none (labels only align components)",
        "components": {names[j]: v for j, v in feats.items()},
        "mig_first_written": dict(zip(names, mig, strict=True)),
        "dci": dci,
        "interchange": ic,
        "interchange_at_floor": at_floor(ic),
    }
    log(f"{hook} pca: at floor {len(at_floor(ic))}/8; D {ic['mean']['disentangle']:.3f}; MIG@first {np.mean(mig):.3f}")

    # ---- a SAELens TopK SAE, position by position
    if args.sae:
        sae_bench = script("sae_baseline")
        flat = acts[mask].float()
        t1 = time.perf_counter()
        sae = steering.train_sae(
            flat,
            args.sae_width,
            "topk",
            k=args.sae_k,
            steps=args.sae_steps,
            lr=3e-4,
            seed=args.seed,
            batch_size=1024,
            options={"normalize_activations": "expected_average_only_in"},
        )
        with torch.no_grad():
            sae_at = [sae.encode(held[0][rows, fw[:, j]]).numpy() for j in range(len(names))]
        mi = np.stack(
            [steering.mutual_information_matrix(c, f_eval[:, j : j + 1])[:, 0] for j, c in enumerate(sae_at)], 1
        )
        feats = steering.align_features(mi, sizes, ents)
        ic = steering.evaluate_interchange(
            model, world, sae_bench.positionwise_interchanger(sae, adapter, hook, feats), bases=bases
        )
        mig, dci = mig_dci_first_written(sae_at, f_eval, args.seed, args.dci_stages)
        out["sae_topk"] = {
            "supervision": "none (labels only align features)",
            "width": args.sae_width,
            "k": args.sae_k,
            "fit_seconds": round(time.perf_counter() - t1, 1),
            "features": {names[j]: v for j, v in feats.items()},
            "mig_first_written": dict(zip(names, mig, strict=True)),
            "dci": dci,
            "interchange": ic,
            "interchange_at_floor": at_floor(ic),
        }
        log(
            f"{hook} sae_topk: at floor {len(at_floor(ic))}/8; D {ic['mean']['disentangle']:.3f}; MIG@first {np.mean(mig):.3f}"
        )
    return out


# ------------------------------------------------------------------ tables


def _ic_cells(ic: dict[str, Any], names: Sequence[str]) -> list[str]:
    return [f"{ic['per_factor'][n]['cause']:.2f}/{ic['per_factor'][n]['isolate']:.2f}" for n in names]


def tables(results: dict[str, Any], names: Sequence[str]) -> str:
    lines = []
    for hook, res in results.items():
        lines += [
            f"\n## {hook}\n",
            "| row | supervision | "
            + " | ".join(names)
            + " | at floor | mean Cause | mean Isolate | mean Disentangle | parse | MIG@first | DCI D |",
            "|---|---|" + "---|" * len(names) + "---|---|---|---|---|---|---|",
        ]
        rows = []
        for e in res["prefix_code"]["restarts"]:
            label = f"prefix_code seed {e['seed']}" + (" **kept**" if e["chosen"] else "")
            mig = f"{np.mean(list(e['mig_first_written_knobs'].values())):.3f} (raw {np.mean(list(e['mig_first_written'].values())):.3f})"
            dci = f"{e['dci_knobs']['disentanglement']:.2f} (raw {e['dci']['disentanglement']:.2f})"
            udr = f", UDR {e['udr']:.3f}" if "udr" in e else ""
            rows.append((label, f"none; purity {e['onset_purity']:.3f}{udr}", e, mig, dci))
        if "prefix_code_pairs" in res:
            e = res["prefix_code_pairs"]
            mig = f"{np.mean(list(e['mig_first_written_knobs'].values())):.3f} (raw {np.mean(list(e['mig_first_written'].values())):.3f})"
            dci = f"{e['dci_knobs']['disentanglement']:.2f} (raw {e['dci']['disentanglement']:.2f})"
            rows.append(("prefix_code_pairs (Ada-GVAE)", f"pairs; purity {e['onset_purity']:.3f}", e, mig, dci))
        for key in ("token_position_diff_means", "pca", "sae_topk"):
            if key in res:
                e = res[key]
                mig = f"{np.mean(list(e['mig_first_written'].values())):.3f}" if "mig_first_written" in e else "–"
                dci = f"{e['dci']['disentanglement']:.2f}" if "dci" in e else "–"
                rows.append((key, e["supervision"].split(" ")[0], e, mig, dci))
        for label, sup, e, mig, dci in rows:
            m = e["interchange"]["mean"]
            lines.append(
                f"| {label} | {sup} | "
                + " | ".join(_ic_cells(e["interchange"], names))
                + f" | {len(e['interchange_at_floor'])} | {m['cause']:.3f} | {m['isolate']:.3f} | {m['disentangle']:.3f} | "
                f"{m['parse_rate']:.3f} | {mig} | {dci} |"
            )
        lines.append("\nset-to-value steering (success / leakage / parse):\n")
        lines.append("| row | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for label, _, e, _, _ in rows:
            if "steering" in e:
                lines.append(
                    f"| {label} | " + " | ".join("/".join(f"{x:.2f}" for x in e["steering"][n]) for n in names) + " |"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hooks", nargs="+", default=list(HOOKS))
    ap.add_argument("--seed", type=int, default=0, help="data, first head seed, steering and interchange seeds")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--pair-restarts", type=int, default=1, help="fits of the pair-supervised head (0: skip the row)")
    ap.add_argument("--latents", type=int, default=20)
    ap.add_argument("--group-size", type=int, default=1, help="the head's TC between groups of this many latents")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--n-steer", type=int, default=20, help="generations per factor value")
    ap.add_argument("--n-interchange", type=int, default=100, help="base/source pairs per factor")
    ap.add_argument("--strength", type=float, default=2.0, help="difference of means: × (value mean − mean)")
    ap.add_argument("--dci-stages", type=int, default=100)
    ap.add_argument("--no-sae", dest="sae", action="store_false", help="skip the SAELens SAE row")
    ap.add_argument("--sae-width", type=int, default=256)
    ap.add_argument("--sae-k", type=int, default=16)
    ap.add_argument("--sae-steps", type=int, default=3000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if args.smoke:
        args.hooks = args.hooks[:1]
        args.steps, args.n_train, args.n_eval, args.n_steer, args.n_interchange = 30, 200, 200, 2, 4
        args.sae_steps, args.dci_stages, args.latents = 20, 5, 8
    if args.restarts < 1:
        raise SystemExit("--restarts must be >= 1")
    torch.manual_seed(args.seed)
    host = load_host("factor_lm")
    model, world = host.model, host.world
    t0 = time.perf_counter()
    results = {hook: run_hook(args, model, world, hook) for hook in args.hooks}
    text = tables(results, world.factor_names)
    print(text)
    res = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out or f"benchmarks/results/prefix_code_eval_s{args.seed}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    main()
