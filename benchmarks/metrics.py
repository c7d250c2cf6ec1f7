"""Benchmark the disentanglement metrics: exact vs fast mode vs a reference-style implementation.

Data: N = 10,000 training points (plus 5,000 held-out, as disentanglement_lib's configs draw),
k = 10 codes, F = 5 factors (sizes 3, 6, 10, 8, 5); codes are a noisy, permuted linear mix of
the standardised factors (5 informative codes, 5 pure-noise codes). "reference" is a serial,
loop-based re-statement of disentanglement_lib (one sklearn call per pair, [dims, points]
layout), so its timing stands in for the reference library on this machine and its values pin
exact mode. Fast-mode drift is also measured on the known-answer cases (perfect, noise,
rotated codes) at N = 2,000.

    python benchmarks/metrics.py                # full run (the reference DCI takes minutes)
    python benchmarks/metrics.py --skip-reference

Prints a table and writes benchmarks/results/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from probe_disentangle.metrics import (
    beta_vae_score,
    dci,
    factor_vae_score,
    irs,
    mig,
    modularity_explicitness,
    sap,
    unsupervised,
)

SIZES = (3, 6, 10, 8, 5)
SEED = 0
OUT = Path(__file__).resolve().parent / "results" / "metrics.json"


# ------------------------------------------------------------------------------------------ data
def make_data(n: int, seed: int, kind: str = "mix") -> tuple[np.ndarray, np.ndarray]:
    """Factors [n, F] and codes [n, k]; the mixing matrix and permutation are fixed (seed 123)."""
    rng = np.random.RandomState(seed)
    f = np.stack([rng.randint(0, s, n) for s in SIZES], axis=1)
    z = (f - (np.array(SIZES) - 1) / 2.0) / (np.array(SIZES) / np.sqrt(12.0))  # ~unit scale
    fixed = np.random.RandomState(123)
    mix = np.eye(5) + 0.2 * fixed.randn(5, 5)
    perm = fixed.permutation(10)
    if kind == "mix":
        codes = np.concatenate([z @ mix.T, np.zeros((n, 5))], axis=1) + 0.3 * rng.randn(n, 10)
        return codes[:, perm], f
    if kind == "perfect":
        return z[:, [3, 0, 4, 1, 2]] * np.array([0.5, 2.0, -1.0, 3.0, 1.5]), f
    if kind == "noise":
        return rng.randn(n, 10), f
    if kind == "rotated":
        q, _ = np.linalg.qr(fixed.randn(5, 5))
        return z @ q, f
    raise ValueError(kind)


class LinearWorld:
    """A world with the metric protocol: observations are a fixed random linear mix of the factors."""

    def __init__(self, factor_sizes=SIZES, obs_dim: int = 16):
        self.factor_sizes = tuple(factor_sizes)
        self.mixing = np.random.RandomState(7).randn(len(factor_sizes), obs_dim)
        self.unmix = np.linalg.pinv(self.mixing)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(0, s, size=num) for s in self.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return ((factors / (np.array(self.factor_sizes) - 1.0)) @ self.mixing).astype(np.float32)

    def sample_observations(self, num, random_state):
        return self.sample_observations_from_factors(self.sample_factors(num, random_state), random_state)

    def representation(self, obs):
        """Recovered factors with a little noise and a fixed rotation of two of them."""
        z = obs.astype(np.float64) @ self.unmix
        z[:, :2] = z[:, :2] @ np.array([[0.9, 0.44], [-0.44, 0.9]])
        return z + 0.02 * np.random.RandomState(len(obs)).randn(*z.shape)


# --------------------------------------------------------------- reference-style implementations
def ref_discretize(target, num_bins=20):
    out = np.zeros_like(target)
    for i in range(target.shape[0]):
        out[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return out


def ref_mi(mus, ys):
    return np.array([[mutual_info_score(ys[j], mus[i]) for j in range(ys.shape[0])] for i in range(mus.shape[0])])


def ref_mig(mus, ys):
    m = ref_mi(ref_discretize(mus), ys)
    s = np.sort(m, axis=0)[::-1]
    h = np.array([mutual_info_score(y, y) for y in ys])
    return {"discrete_mig": np.mean((s[0] - s[1]) / h)}


def ref_sap(mus, ys, mt, yt):
    score = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            clf = LinearSVC(C=0.01, class_weight="balanced", random_state=SEED).fit(mus[i, :, None], ys[j])
            score[i, j] = np.mean(clf.predict(mt[i, :, None]) == yt[j])
    s = np.sort(score, axis=0)
    return {"SAP_score": np.mean(s[-1] - s[-2])}


def ref_dci(mus, ys, mt, yt):
    imp = np.zeros([mus.shape[0], ys.shape[0]])
    tr, te = [], []
    for j in range(ys.shape[0]):
        model = GradientBoostingClassifier(random_state=SEED).fit(mus.T, ys[j])
        imp[:, j] = np.abs(model.feature_importances_)
        tr.append(np.mean(model.predict(mus.T) == ys[j]))
        te.append(np.mean(model.predict(mt.T) == yt[j]))
    d = np.sum((1 - scipy.stats.entropy(imp.T + 1e-11, base=imp.shape[1])) * imp.sum(1) / imp.sum())
    c = np.sum((1 - scipy.stats.entropy(imp + 1e-11, base=imp.shape[0])) * imp.sum(0) / imp.sum())
    return {
        "informativeness_train": np.mean(tr),
        "informativeness_test": np.mean(te),
        "disentanglement": d,
        "completeness": c,
    }


def ref_modularity(mus, ys, mt, yt):
    sq = np.square(ref_mi(ref_discretize(mus), ys))
    mx = sq.max(axis=1)
    mod = 1.0 - (sq.sum(axis=1) - mx) / (mx * (sq.shape[1] - 1.0))
    mod[mx == 0] = 0
    mean, std = mus.mean(axis=1), mus.std(axis=1)
    ztr, zte = (mus - mean[:, None]) / std[:, None], (mt - mean[:, None]) / std[:, None]
    etr, ete = [], []
    for j in range(ys.shape[0]):
        clf = LogisticRegression().fit(ztr.T, ys[j])
        mlb = MultiLabelBinarizer()
        etr.append(roc_auc_score(mlb.fit_transform(ys[j][:, None]), clf.predict_proba(ztr.T)))
        ete.append(roc_auc_score(mlb.fit_transform(yt[j][:, None]), clf.predict_proba(zte.T)))
    return {
        "modularity_score": np.mean(mod),
        "explicitness_score_train": np.mean(etr),
        "explicitness_score_test": np.mean(ete),
    }


def ref_irs(mus, ys, q=0.99):
    gen, lat = ref_discretize(ys).T, mus[mus.var(axis=1) > 0].T
    max_dev = np.max(np.abs(lat - lat.mean(axis=0)), axis=0)
    cum = np.zeros([lat.shape[1], gen.shape[1]])
    for i in range(gen.shape[1]):
        vals = np.unique(gen[:, i])
        for v in vals:
            g = lat[gen[:, i] == v]
            cum[:, i] += np.quantile(np.abs(g - g.mean(axis=0)), q=q, axis=0)
        cum[:, i] /= len(vals)
    scores = (1 - cum / max_dev[:, None]).max(axis=1)
    return {"IRS": np.average(scores, weights=max_dev), "num_active_dims": lat.shape[1]}


def ref_unsupervised(mus):
    cov = np.cov(mus)
    wc = np.real(2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])))
    disc = ref_discretize(mus)
    mi = ref_mi(disc, disc)
    np.fill_diagonal(mi, 0)
    k = mus.shape[0]
    return {
        "gaussian_total_correlation": 0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]),
        "gaussian_wasserstein_correlation": wc,
        "gaussian_wasserstein_correlation_norm": wc / np.trace(cov),
        "mutual_info_score": mi.sum() / (k * k - k),
    }


def ref_beta_vae(world, rep, rs, batch_size=64, num_train=10000, num_eval=5000):
    def batch(num):
        pts, labels = [], np.zeros(num, dtype=np.int64)
        for i in range(num):
            idx = rs.randint(world.num_factors)
            f1, f2 = world.sample_factors(batch_size, rs), world.sample_factors(batch_size, rs)
            f2[:, idx] = f1[:, idx]
            r1 = rep(world.sample_observations_from_factors(f1, rs))
            r2 = rep(world.sample_observations_from_factors(f2, rs))
            labels[i] = idx
            pts.append(np.mean(np.abs(r1 - r2), axis=0))
        return np.array(pts), labels

    x, y = batch(num_train)
    model = LogisticRegression(random_state=rs).fit(x, y)
    xe, ye = batch(num_eval)
    return {"train_accuracy": np.mean(model.predict(x) == y), "eval_accuracy": model.score(xe, ye)}


def ref_factor_vae(world, rep, rs, batch_size=64, num_train=10000, num_eval=5000, num_var=10000):
    gvar = np.var(rep(world.sample_observations(num_var, rs)), axis=0, ddof=1)
    active = np.sqrt(gvar) >= 0.05

    def votes(num):
        v = np.zeros((world.num_factors, gvar.shape[0]), dtype=np.int64)
        for _ in range(num):
            idx = rs.randint(world.num_factors)
            f = world.sample_factors(batch_size, rs)
            f[:, idx] = f[0, idx]
            lv = np.var(rep(world.sample_observations_from_factors(f, rs)), axis=0, ddof=1)
            v[idx, np.argmin(lv[active] / gvar[active])] += 1
        return v

    tv = votes(num_train)
    clf, cols = np.argmax(tv, axis=0), np.arange(tv.shape[1])
    ev = votes(num_eval)
    return {
        "train_accuracy": tv[clf, cols].sum() / tv.sum(),
        "eval_accuracy": ev[clf, cols].sum() / ev.sum(),
        "num_active_dims": int(active.sum()),
    }


# ------------------------------------------------------------------------------------------ run
def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = fn(*args, **kwargs)
    return time.perf_counter() - t, {k: float(v) for k, v in out.items() if np.ndim(v) == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow reference-style run")
    args = parser.parse_args()

    c, f = make_data(10_000, seed=1)
    ct, ft = make_data(5_000, seed=2)
    array_metrics = {
        "mig": (lambda fast: mig(c, f, fast=fast), lambda: ref_mig(c.T, f.T)),
        "sap": (lambda fast: sap(c, f, ct, ft, random_state=SEED, fast=fast), lambda: ref_sap(c.T, f.T, ct.T, ft.T)),
        "dci": (lambda fast: dci(c, f, ct, ft, random_state=SEED, fast=fast), lambda: ref_dci(c.T, f.T, ct.T, ft.T)),
        "modularity_explicitness": (
            lambda fast: modularity_explicitness(c, f, ct, ft, random_state=SEED, fast=fast),
            lambda: ref_modularity(c.T, f.T, ct.T, ft.T),
        ),
        "irs": (lambda fast: irs(c, f, fast=fast), lambda: ref_irs(c.T, f.T)),
        "unsupervised": (lambda fast: unsupervised(c, fast=fast), lambda: ref_unsupervised(c.T)),
    }
    world = LinearWorld()
    world_metrics = {
        "beta_vae_score": (
            lambda fast: beta_vae_score(world, world.representation, random_state=SEED, fast=fast),
            lambda: ref_beta_vae(world, world.representation, np.random.RandomState(SEED)),
        ),
        "factor_vae_score": (
            lambda fast: factor_vae_score(world, world.representation, random_state=SEED, fast=fast),
            lambda: ref_factor_vae(world, world.representation, np.random.RandomState(SEED)),
        ),
    }
    rows = []
    for group, metrics in (("array", array_metrics), ("world", world_metrics)):
        for name, (ours, ref) in metrics.items():
            t_exact, exact = timed(ours, False)
            t_fast, fast = timed(ours, True)
            t_ref, refv = (None, {}) if args.skip_reference else timed(ref)
            for key in exact:
                rows.append(
                    {
                        "group": group,
                        "metric": name,
                        "key": key,
                        "exact": exact[key],
                        "fast": fast.get(key),
                        "reference": refv.get(key),
                        "t_exact": t_exact,
                        "t_fast": t_fast,
                        "t_reference": t_ref,
                    }
                )
            print(
                f"done {name}: exact {t_exact:.2f}s fast {t_fast:.2f}s ref {t_ref if t_ref is None else round(t_ref, 2)}s",
                flush=True,
            )

    # fast-mode drift on the known-answer cases
    drift = {}
    for kind in ("perfect", "noise", "rotated"):
        c2, f2 = make_data(2_000, seed=3, kind=kind)
        c2t, f2t = make_data(1_000, seed=4, kind=kind)
        for name, fn in (
            ("mig", mig),
            ("sap", sap),
            ("dci", dci),
            ("modularity_explicitness", modularity_explicitness),
            ("irs", irs),
        ):
            _, e = timed(fn, c2, f2, c2t, f2t, random_state=SEED, fast=False)
            _, q = timed(fn, c2, f2, c2t, f2t, random_state=SEED, fast=True)
            for key in e:
                drift[f"{kind}.{name}.{key}"] = {"exact": e[key], "fast": q[key], "abs_diff": abs(q[key] - e[key])}

    # ------------------------------------------------------------------------------ report
    def per_metric(col):
        seen = {}
        for r in rows:
            if r["group"] == "array":
                seen[r["metric"]] = r[col]
        return seen

    suite = {
        col: sum(v for v in per_metric(col).values() if v is not None) for col in ("t_exact", "t_fast", "t_reference")
    }
    header = (
        f"{'metric.key':<52} {'exact':>9} {'fast':>9} {'ref':>9} {'|f-e|':>7} {'t_exact':>8} {'t_fast':>7} {'t_ref':>7}"
    )
    lines = [header, "-" * len(header)]
    last = None
    for r in rows:
        first = r["metric"] != last
        last = r["metric"]

        def fmt(v, w=9, d=4):
            return f"{'-':>{w}}" if v is None else f"{v:>{w}.{d}f}"

        times = (fmt(r["t_exact"], 8, 2) + fmt(r["t_fast"], 8, 2) + fmt(r["t_reference"], 8, 2)) if first else ""
        diff = None if r["fast"] is None else abs(r["fast"] - r["exact"])
        lines.append(
            f"{r['metric'] + '.' + r['key']:<52} {fmt(r['exact'])} {fmt(r['fast'])} {fmt(r['reference'])} "
            f"{fmt(diff, 7)}{times}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"array suite total (s): exact {suite['t_exact']:.2f}  fast {suite['t_fast']:.2f}  "
        f"reference {suite['t_reference']:.2f}"
    )
    if suite["t_reference"]:
        lines.append(
            f"speed-up vs reference: exact {suite['t_reference'] / suite['t_exact']:.1f}x  "
            f"fast {suite['t_reference'] / suite['t_fast']:.1f}x"
        )
    ref_diff = max(
        (abs(r["exact"] - r["reference"]) for r in rows if r["group"] == "array" and r["reference"] is not None),
        default=None,
    )
    if ref_diff is not None:
        lines.append(f"max |exact - reference| over array metrics: {ref_diff:.2e}")
    worst = max(drift.items(), key=lambda kv: kv[1]["abs_diff"])
    lines.append(f"known-answer cases (N=2000): max fast drift {worst[1]['abs_diff']:.4f} ({worst[0]})")
    mix_drift = max(abs(r["fast"] - r["exact"]) for r in rows if r["group"] == "array")
    lines.append(f"noisy linear mix (N=10000): max fast drift {mix_drift:.4f}")
    print("\n".join(lines))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "setup": {
                    "n_train": 10_000,
                    "n_test": 5_000,
                    "k": 10,
                    "factor_sizes": SIZES,
                    "cpus": os.cpu_count(),
                    "load_avg_1m_at_end": os.getloadavg()[0],
                    "python": platform.python_version(),
                },
                "rows": rows,
                "suite_seconds": suite,
                "known_answer_drift": drift,
            },
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
