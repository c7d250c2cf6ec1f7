"""How far without labels? UDR and the other label-free scores against MIG (issue 22, study 2).

A sweep of VAE heads (β-VAE objective, each β × each seed) on the K-factor world's images
(flattened, per-pixel standardised: an identity host). Per model, label-free scores —
UDR (Duan et al. 2020: the median agreement with the other seeds of the same β,
:func:`probe_disentangle.metrics.udr`), the codes' Gaussian total correlation and mean pairwise
mutual information (:func:`metrics.unsupervised`), the held-out explained variance — and the
supervised MIG and DCI. Reported: the Spearman rank correlation of each label-free score with
MIG and with DCI over all models (what a user choosing a model without labels relies on; Duan
et al. report the same against supervised metrics on dSprites), and which model each score picks.

    python benchmarks/udr_selection.py --out benchmarks/studies/udr
    python benchmarks/udr_selection.py --smoke --out /tmp/udr     # seconds, for the test

Writes ``udr_selection.json`` and ``udr_selection.png`` (MIG, DCI and UDR against β, means over
seeds) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe_disentangle import TrainConfig, Trainer, VAEHead, VAEHeadConfig
from probe_disentangle.metrics import dci, mig, udr, unsupervised
from probe_disentangle.worlds.k_factors import KFactorImages

# label-free scores, and whether higher is better
LABEL_FREE = {"udr": True, "gaussian_total_correlation": False, "mutual_info_score": False, "explained_variance": True}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


@torch.no_grad()
def image_steering(
    head: VAEHead, world: KFactorImages, x_eval: torch.Tensor, f_eval: np.ndarray, mean, std, n_base: int = 200
) -> dict[str, float]:
    """Set-to-value steering of a head on the K-factor images, scored by reading the decoded image
    (:meth:`KFactorImages.read`). Each factor gets the latent with the most mutual information with
    it (labels align, as for the LM's steering); each of its values the mean of that latent over the
    held-out images showing it. For ``n_base`` held-out images and every (factor, value), the latent
    is set and the code decoded: success = the image now shows the value, leakage = another factor
    differs from the base's own reconstruction (so reconstruction errors are not counted as
    leakage). ``steer``: the fraction of edits that succeed without leakage, over every (factor, value)."""
    from probe_disentangle.steering.baselines import mutual_information_matrix

    mu = head.encode(x_eval)[0]
    mi = mutual_information_matrix(mu.numpy(), f_eval)
    base = mu[:n_base]

    def read(z: torch.Tensor) -> np.ndarray:
        img = (head.decode(z) * std + mean).reshape(len(z), *world.observation_shape)
        return world.read(img.numpy())

    ref = read(base)
    succ, leak, clean = [], [], []
    for i, size in enumerate(world.factor_sizes):
        j = int(mi[:, i].argmax())
        for v in range(size):
            z = base.clone()
            z[:, j] = mu[torch.as_tensor(f_eval[:, i] == v), j].mean()
            got = read(z)
            others = np.delete(got != ref, i, axis=1).any(1)
            ok = got[:, i] == v
            succ.append(ok.mean())
            leak.append(others.mean())
            clean.append((ok & ~others).mean())
    return {
        "steer": float(np.mean(clean)),
        "steer_success": float(np.mean(succ)),
        "steer_leakage": float(np.mean(leak)),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4, help="factors of the world")
    ap.add_argument("--betas", default="1,4,16")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--latents", type=int, default=6)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="benchmarks/studies/udr")
    args = ap.parse_args(argv)
    if args.smoke:
        args.betas, args.seeds, args.n_train, args.n_eval, args.steps, args.hidden = "1,8", 2, 256, 200, 5, 16
    t0 = time.time()
    world = KFactorImages(args.k, num_values=4, image_size=32)
    rng = np.random.default_rng(0)
    f_train, f_eval = world.sample_factors(args.n_train, rng), world.sample_factors(args.n_eval, rng)
    x = torch.as_tensor(world.sample_observations_from_factors(f_train, rng)).float().flatten(1)
    x_eval = torch.as_tensor(world.sample_observations_from_factors(f_eval, rng)).float().flatten(1)
    mean, std = x.mean(0), x.std(0).clamp_min(0.05)
    x, x_eval = (x - mean) / std, (x_eval - mean) / std
    models: list[dict[str, Any]] = []
    for beta in [float(b) for b in args.betas.split(",")]:
        group = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            head = VAEHead(VAEHeadConfig(d_in=x.shape[1], latent_dim=args.latents, hidden=args.hidden,
                                         objective="beta_vae", objective_args={"beta": beta}))  # fmt: skip
            Trainer(head, TrainConfig(steps=args.steps, batch_size=256, lr=1e-3, seed=seed, progress=False)).fit(x)
            head.eval()
            with torch.no_grad():
                mu, logvar = head.encode(x_eval)
                recon = head.decode(mu)
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
            codes = mu.numpy()
            n = len(codes) // 2
            ev = float(1 - ((x_eval - recon) ** 2).sum() / ((x_eval - x_eval.mean(0)) ** 2).sum())
            un = unsupervised(codes, fast=True)
            d = dci(codes[:n], f_eval[:n], codes[n:], f_eval[n:], random_state=seed, fast=True)
            group.append({
                **image_steering(head, world, x_eval, f_eval, mean, std),
                "beta": beta, "seed": seed, "codes": codes, "kl": kl.numpy(),
                "mig": float(mig(codes, f_eval)["discrete_mig"]), "dci": float(d["disentanglement"]),
                "gaussian_total_correlation": float(un["gaussian_total_correlation"]),
                "mutual_info_score": float(un["mutual_info_score"]), "explained_variance": ev,
            })  # fmt: skip
        scores = udr([g["codes"] for g in group], kl=[g["kl"] for g in group])["model_scores"]
        for g, s in zip(group, scores, strict=True):
            g["udr"] = float(s)
            del g["codes"], g["kl"]
        models.extend(group)
    corr = {
        name: {"mig": spearman([m[name] for m in models], [m["mig"] for m in models]),
               "dci": spearman([m[name] for m in models], [m["dci"] for m in models]),
               "steer": spearman([m[name] for m in models], [m["steer"] for m in models])}
        for name in LABEL_FREE
    }  # fmt: skip
    picks = {}
    for name, higher in LABEL_FREE.items():
        best = max(models, key=lambda m: m[name] if higher else -m[name])
        picks[name] = {"beta": best["beta"], "seed": best["seed"], "mig": best["mig"], "steer": best["steer"]}
    oracle = max(models, key=lambda m: m["mig"])
    report = {
        "config": vars(args),
        "models": models,
        "spearman": corr,
        "picks": picks,
        "best_mig": {"beta": oracle["beta"], "seed": oracle["seed"], "mig": oracle["mig"]},
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "udr_selection.json").write_text(json.dumps(report, indent=1))
    from probe_disentangle.viz import metric_vs_beta_plot

    betas = sorted({m["beta"] for m in models})
    series = {
        key: [float(np.mean([m[key] for m in models if m["beta"] == b])) for b in betas]
        for key in ("mig", "dci", "udr", "steer")
    }
    metric_vs_beta_plot(betas, series, out / "udr_selection.png", title="MIG, DCI, UDR and steering against beta (mean over seeds)",
                        ylabel="score")  # fmt: skip
    print(f"K = {args.k}, β ∈ {{{args.betas}}}, {args.seeds} seeds, {args.latents} latents, {args.steps} steps")
    print(
        "| β | seed | MIG | DCI | steer | UDR | Gaussian TC | code MI | explained var. |\n|---|---|---|---|---|---|---|---|---|"
    )
    for m in models:
        print(
            f"| {m['beta']:g} | {m['seed']} | {m['mig']:.3f} | {m['dci']:.3f} | {m['steer']:.3f} | {m['udr']:.3f} | "
            f"{m['gaussian_total_correlation']:.3f} | {m['mutual_info_score']:.3f} | {m['explained_variance']:.3f} |"
        )
    print(
        "\n| label-free score | Spearman with MIG | with DCI | with steering | picks (β, seed) → MIG, steer |"
        "\n|---|---|---|---|---|"
    )
    for name in LABEL_FREE:
        p, c = picks[name], corr[name]
        print(
            f"| {name} | {c['mig']:.2f} | {c['dci']:.2f} | {c['steer']:.2f} | ({p['beta']:g}, {p['seed']}) → "
            f"{p['mig']:.3f}, {p['steer']:.3f} |"
        )
    print(f"best MIG: (β {oracle['beta']:g}, seed {oracle['seed']}) {oracle['mig']:.3f}; {report['seconds']} s")
    return report


if __name__ == "__main__":
    main()
