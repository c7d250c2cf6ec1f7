"""The SAE baseline of issue 20: sparse autoencoders trained with SAELens on the factor LM's
per-token activations, aligned to factors by mutual information, steered by their decoder rows.

Per hook (``blocks.1.hook_resid_post``, ``blocks.2.hook_resid_post``): one vector per real token
(BOS and padding left out) of ``n_train`` seeded sentences, as ``benchmarks/per_token_heads.py``
collects them. SAELens's own trainer fits a TopK SAE and a standard (ReLU + L1) SAE on them
(``steering.sae.train_sae``; activations scaled to mean norm √d during training, folded back
into the weights). On ``n_eval`` held-out sentences, each factor is read at the position where
the sentence first writes it (``per_token_heads.first_written``):

- alignment: each factor's features by mutual information at that position
  (``steering.mutual_information_matrix``, ``steering.align_features``: exclusive, MI / H, up to
  as many features as the factor has values);
- MIG per factor at that position over all features (``per_token_heads.mig_at_positions``);
- DCI: per factor a gradient-boosted classifier (the project's ``fast`` DCI booster) on all
  features at that position gives the factor's importance column and its held-out accuracy;
  disentanglement / completeness from the importance matrix (``metrics.dci_scores_from_importance``);
- interchange (RAVEL Cause / Isolate / Disentangle, ``steering.evaluate_interchange``, ``n_pairs``
  seeded pairs per factor, the same bases for every row): the source is read at the position where
  it first writes the factor, and every position of the base is edited (full forwards). Rows:
  the feature swap a' = a + (f'_A − f_A)·D_A (the SAE's own intervention) and the subspace form
  a' = a + P_A(s − a) on the same decoder rows; difference of means read the same way is the
  supervised reference.

    python benchmarks/sae_baseline.py            # both hooks, the numbers in benchmarks/sae_baseline.md
    python benchmarks/sae_baseline.py --smoke    # seconds, for the test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.metrics import dci_scores_from_importance
from probe_disentangle.metrics._utils import HistGradientBoosting

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _scripts import script  # noqa: E402

HOOKS = ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post")


@dataclass
class Config:
    hooks: Sequence[str] = HOOKS
    n_train: int = 6000  # sentences whose every real token trains the SAEs
    n_eval: int = 2000  # held-out sentences: alignment, MIG, DCI
    n_pairs: int = 100  # interchange base/source pairs per factor
    d_sae: int = 256
    k: int = 16  # TopK's active features per vector
    l1: float = 5.0  # the standard SAE's L1 coefficient (SAELens's default)
    steps: int = 3000
    batch: int = 1024
    lr: float = 3e-4
    seed: int = 0
    no_reference: bool = False
    dci_stages: int = 100  # boosting stages of the DCI classifiers (the project's fast DCI: 100)
    factors: Sequence[int] | None = None  # factors to interchange (None: all)
    forms: Sequence[str] = ("features", "subspace", "positionwise")  # the SAE interchange rows


def first_written_reader(study, adapter, hook, world, factor: int):
    """Source tokens → each source's vector where it first writes ``factor``."""

    def read(tokens):
        parsed = steering.parse_all(world, np.asarray(tokens))
        if any(p is None for p in parsed):
            raise ValueError("a source sentence does not parse; sources must be rendered by the world")
        fac = np.array([[p[n] for n in world.factor_names] for p in parsed])
        pos = study.first_written(world, fac)[:, factor]
        return steering.sequence_vectors(adapter, hook, tokens, pos)

    return read


def positionwise_interchanger(sae, adapter, hook, feats: dict[int, list[int]]):
    """The feature swap position by position: every position p of the base (BOS kept) takes the
    source's features of the factor at its own position p, a'_p = a_p + (f'_{A,p} − f_{A,p})·D_A.
    Base and source share the world's layout (plan, colon, sentence), so position p plays the same
    role in both; this is the per-token form of RAVEL's interchange, where the one-vector form above
    gives every position the source's features read at a single position."""

    @contextlib.contextmanager
    def inter(factor: int, sources):
        sources = np.asarray(sources)
        n, idx = len(sources), feats[int(factor)]
        src = steering.sequence_activations(adapter, hook, sources)  # (n, T, d)
        with torch.no_grad():
            fs = sae.encode(src.flatten(0, 1)).view(n, src.shape[1], -1)[..., idx]  # (n, T, k)
            rows = sae.feature_directions[idx]  # (k, d)

        def fn(act):  # (n, t, d): a full forward over the first t positions
            if act.shape[0] != n:
                raise ValueError(f"the host ran {act.shape[0]} rows inside an interchange with {n} sources")
            t, d = act.shape[1], act.shape[2]
            if t < 2:
                return act
            a = act[:, 1:t].reshape(-1, d).float()
            with torch.no_grad():
                delta = (fs[:, 1:t].reshape(-1, len(idx)) - sae.encode(a)[:, idx]) @ rows
            out = act.clone()
            out[:, 1:t] = (a + delta).view(n, t - 1, d).to(act.dtype)
            return out

        with adapter.hook(hook, fn):
            yield

    return inter


def dci_first_written(
    codes_at: Sequence[np.ndarray], factors: np.ndarray, seed: int, stages: int = 100
) -> dict[str, float]:
    """DCI with factor j's importance column and accuracy from a booster fit on ``codes_at[j]``
    (the codes where each sentence first writes j); 20% held out (seeded)."""
    n = len(factors)
    perm = np.random.RandomState(seed).permutation(n)
    tr, te = perm[: int(0.8 * n)], perm[int(0.8 * n) :]
    imp, acc = [], []
    for j, codes in enumerate(codes_at):
        model = HistGradientBoosting(n_estimators=stages).fit(codes[tr], factors[tr, j])
        imp.append(np.abs(model.feature_importances_))
        acc.append(float(np.mean(model.predict(codes[te]) == factors[te, j])))
    out = dci_scores_from_importance(np.stack(imp, 1))
    out["informativeness_test"] = float(np.mean(acc))
    return out


def run_hook(cfg: Config, model, world, hook: str, log=print) -> dict[str, Any]:
    study = script("per_token_heads")
    names, sizes = list(world.factor_names), list(world.factor_sizes)
    adapter = attach(model, hook)
    rng = np.random.default_rng(cfg.seed)
    train = study.collect(adapter, hook, world, world.sample_factors(cfg.n_train, rng))
    held = study.collect(adapter, hook, world, world.sample_factors(cfg.n_eval, rng))
    acts, _, _, _ = study.flat_vectors(train)
    fw = study.first_written(world, held.factors)
    idx = np.arange(len(held.tokens))
    at_fw = [held.acts[idx, fw[:, j]] for j in range(len(names))]  # factor j's vectors [N, d]
    readers = {j: first_written_reader(study, adapter, hook, world, j) for j in range(len(names))}
    bases = steering.base_generations(model, world, cfg.n_pairs, seed=cfg.seed + 2)
    ents = steering.factor_entropies(held.factors)
    out: dict[str, Any] = {"training_vectors": len(acts)}
    saes = {
        "topk": ("topk", cfg.k, {}),
        "standard": ("standard", None, {"l1_coefficient": cfg.l1}),
    }
    for name, (arch, k, opts) in saes.items():
        t0 = time.perf_counter()
        sae = steering.train_sae(
            acts,
            cfg.d_sae,
            arch,
            k=k,
            steps=cfg.steps,
            lr=cfg.lr,
            seed=cfg.seed,
            batch_size=cfg.batch,
            options={"normalize_activations": "expected_average_only_in", **opts},
        )
        fit_s = time.perf_counter() - t0
        with torch.no_grad():
            flat = study.flat_vectors(held)[0]
            f = sae.encode(flat)
            fvu = float((sae.decode(f) - flat).pow(2).sum() / (flat - flat.mean(0)).pow(2).sum())
            codes_at = [sae.encode(a).numpy() for a in at_fw]
        mi = np.stack(
            [steering.mutual_information_matrix(c, held.factors[:, j : j + 1])[:, 0] for j, c in enumerate(codes_at)], 1
        )
        feats = steering.align_features(mi, sizes, ents)

        def code_fn(a, t, p, sae=sae):
            with torch.no_grad():
                return sae.encode(a).numpy()

        mig = study.mig_at_positions(code_fn, held, fw)
        dci = dci_first_written(codes_at, held.factors, cfg.seed, cfg.dci_stages)
        fit = {
            "architecture": arch,
            "saved_as": sae.config.architecture,
            "fvu_held_out": fvu,
            "l0": float((f > 0).float().sum(1).mean()),
            "dead_features": int(((f > 0).sum(0) == 0).sum()),
            "seconds": round(fit_s, 1),
        }
        for form in cfg.forms:
            t0 = time.perf_counter()
            if form == "positionwise":
                inter = positionwise_interchanger(sae, adapter, hook, feats)
            else:
                inter, _ = steering.sae_interchanger(sae, adapter, hook, read=readers, features=feats, form=form)
            ic = steering.evaluate_interchange(model, world, inter, cfg.factors, bases=bases)
            row = f"sae_{name}_{form}"
            out[row] = {
                "supervision": "none (labels only align features to factors)",
                "fit": fit,
                "features": {names[j]: v for j, v in feats.items()},
                "mig_first_written": dict(zip(names, map(float, mig), strict=True)),
                "mean_mig_first_written": float(np.mean(mig)),
                "dci": dci,
                "interchange": ic,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            m = ic["mean"]
            log(
                f"{hook} {row:<22} MIG {np.mean(mig):.3f}  DCI-D {dci['disentanglement']:.3f}  cause {m['cause']:.3f}  "
                f"isolate {m['isolate']:.3f}  D {m['disentangle']:.3f}  parse {m['parse_rate']:.3f}  (FVU {fvu:.3f}, "
                f"L0 {fit['l0']:.1f}, fit {fit_s:.0f} s)"
            )
    if cfg.no_reference:
        return out
    # the supervised reference, read and edited the same way (one vector per source)
    per = {
        j: steering.diff_means_interchanger(adapter, hook, at_fw[j], held.factors, sizes, read=readers[j])
        for j in range(len(names))
    }
    ic = steering.evaluate_interchange(model, world, lambda f, s: per[int(f)](f, s), cfg.factors, bases=bases)
    out["diff_means"] = {"supervision": "supervised (factor labels)", "interchange": ic}
    m = ic["mean"]
    log(f"{hook} {'diff_means':<22} cause {m['cause']:.3f}  isolate {m['isolate']:.3f}  D {m['disentangle']:.3f}")
    return out


def format_tables(results: dict[str, Any], names: Sequence[str]) -> str:
    lines = []
    for hook, rows in results["hooks"].items():
        lines.append(f"\n## {hook}\n")
        lines.append(
            "| method | "
            + " | ".join(names)
            + " | mean Cause | mean Isolate | mean Disentangle | parse | MIG | DCI D / C / I |"
        )
        lines.append("|---|" + "---|" * len(names) + "---|---|---|---|---|---|")
        for m, e in rows.items():
            if not isinstance(e, dict):
                continue
            ic = e["interchange"]
            pf = ic["per_factor"]
            cells = [f"{pf[n]['cause']:.2f}/{pf[n]['isolate']:.2f}" if n in pf else "–" for n in names]
            mig = f"{e['mean_mig_first_written']:.3f}" if "mean_mig_first_written" in e else "–"
            d = e.get("dci")
            dci = (
                f"{d['disentanglement']:.2f} / {d['completeness']:.2f} / {d['informativeness_test']:.2f}" if d else "–"
            )
            mm = ic["mean"]
            lines.append(
                f"| {m} | " + " | ".join(cells) + f" | {mm['cause']:.3f} | {mm['isolate']:.3f} | "
                f"{mm['disentangle']:.3f} | {mm['parse_rate']:.3f} | {mig} | {dci} |"
            )
    lines.append("\ncells: Cause / Isolate per factor; MIG and DCI at the position where each factor is first written")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Config()
    ap.add_argument("--hooks", nargs="+", default=list(HOOKS))
    for f in ("n_train", "n_eval", "n_pairs", "d_sae", "k", "steps", "batch", "seed", "dci_stages"):
        ap.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(d, f))
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--forms", nargs="+", default=list(d.forms), choices=list(d.forms))
    ap.add_argument("--no-reference", action="store_true", help="skip the difference-of-means row")
    ap.add_argument("--l1", type=float, default=d.l1)
    ap.add_argument("--out", default="runs/sae_baseline.json")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one hook (seconds), for the test")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = Config(
        **{k: getattr(args, k) for k in asdict(d) if k not in ("hooks", "factors", "forms", "no_reference")},
        hooks=args.hooks,
        forms=args.forms,
        no_reference=args.no_reference,
    )
    if args.smoke:
        cfg.hooks, cfg.n_train, cfg.n_eval, cfg.n_pairs = list(cfg.hooks)[:1], 60, 200, 4
        cfg.d_sae, cfg.k, cfg.steps, cfg.batch, cfg.dci_stages = 32, 4, 20, 128, 5
        cfg.factors = [2, 3]  # size, number
    from probe_disentangle.hosts import load_host

    host = load_host("factor_lm")
    results: dict[str, Any] = {"config": asdict(cfg), "hooks": {}}
    for hook in cfg.hooks:
        results["hooks"][hook] = run_hook(cfg, host.model, host.world, hook)
    print(format_tables(results, list(host.world.factor_names)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
