"""Benchmark the disentanglement metrics: exact vs fast mode vs a reference-style implementation.

Data: N = 10,000 training points (plus 5,000 held-out, as disentanglement_lib's configs draw),
k = 10 codes, F = 5 factors (sizes 3, 6, 10, 8, 5); codes are a noisy, permuted linear mix of
the standardised factors (5 informative codes, 5 pure-noise codes). "reference" is a serial,
loop-based re-statement of disentanglement_lib (one sklearn call per pair, [dims, points]
layout), so its timing stands in for the reference library on this machine and its values pin
exact mode. Fast-mode drift is also measured on the known-answer cases (perfect, noise,
rotated codes) at N = 2,000.

Side by side: each repeat runs every metric three times in a row (reference, exact, fast; the
order rotates from repeat to repeat), so all three see the same load; the 1-minute load average
is recorded before and after each repeat. Times and speed-ups are medians over the repeats (a
suite's speed-up is taken per repeat, then the median). The BetaVAE/FactorVAE scores (not part
of the array suite) run in the first repeat only.

    python benchmarks/metrics.py                # full run: 3 repeats (the reference DCI takes minutes)
    python benchmarks/metrics.py --repeats 5 --n-jobs 2
    python benchmarks/metrics.py --skip-reference
    python benchmarks/metrics.py --quick        # smoke run: small data, one repeat, no world metrics

Prints tables (plain text and markdown) and writes benchmarks/results/metrics.json.
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
    N_JOBS,
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
MODES = ("reference", "exact", "fast")


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = fn(*args, **kwargs)
    return time.perf_counter() - t, {k: float(v) for k, v in out.items() if np.ndim(v) == 0}


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def array_suite(n_train: int, n_test: int, n_jobs: int | None):
    """name -> (ours(fast) -> dict, reference() -> dict) on the benchmark's data."""
    c, f = make_data(n_train, seed=1)
    ct, ft = make_data(n_test, seed=2)
    nj = {"n_jobs": n_jobs}
    return {
        "mig": (lambda fast: mig(c, f, fast=fast), lambda: ref_mig(c.T, f.T)),
        "sap": (
            lambda fast: sap(c, f, ct, ft, random_state=SEED, fast=fast, **nj),
            lambda: ref_sap(c.T, f.T, ct.T, ft.T),
        ),
        "dci": (
            lambda fast: dci(c, f, ct, ft, random_state=SEED, fast=fast, **nj),
            lambda: ref_dci(c.T, f.T, ct.T, ft.T),
        ),
        "modularity_explicitness": (
            lambda fast: modularity_explicitness(c, f, ct, ft, random_state=SEED, fast=fast, **nj),
            lambda: ref_modularity(c.T, f.T, ct.T, ft.T),
        ),
        "irs": (lambda fast: irs(c, f, fast=fast), lambda: ref_irs(c.T, f.T)),
        "unsupervised": (lambda fast: unsupervised(c, fast=fast), lambda: ref_unsupervised(c.T)),
    }


def world_suite():
    world = LinearWorld()
    return {
        "beta_vae_score": (
            lambda fast: beta_vae_score(world, world.representation, random_state=SEED, fast=fast),
            lambda: ref_beta_vae(world, world.representation, np.random.RandomState(SEED)),
        ),
        "factor_vae_score": (
            lambda fast: factor_vae_score(world, world.representation, random_state=SEED, fast=fast),
            lambda: ref_factor_vae(world, world.representation, np.random.RandomState(SEED)),
        ),
    }


def run_side_by_side(metrics, repeats: int, skip_reference: bool, log=print):
    """times[metric][mode] = [wall seconds per repeat], cpu[metric][mode] = [CPU seconds of all threads],
    values[metric][mode] = dict, loads = [(before, after)]."""
    modes = [m for m in MODES if not (skip_reference and m == "reference")]
    times = {name: {m: [] for m in modes} for name in metrics}
    cpu = {name: {m: [] for m in modes} for name in metrics}
    values: dict = {name: {} for name in metrics}
    loads = []
    for r in range(repeats):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        before = os.getloadavg()[0]
        for name, (ours, ref) in metrics.items():
            for mode in order:
                fn = ref if mode == "reference" else (lambda o=ours, m=mode: o(m == "fast"))
                c0 = time.process_time()
                t, v = timed(fn)
                cpu[name][mode].append(time.process_time() - c0)
                times[name][mode].append(t)
                values[name].setdefault(mode, v)  # every implementation is deterministic
            log(f"repeat {r} {name}: " + "  ".join(f"{m} {times[name][m][-1]:.2f}s" for m in order), flush=True)
        loads.append((before, os.getloadavg()[0]))
    return times, cpu, values, loads


def known_answer_drift(n_jobs):
    drift = {}
    for kind in ("perfect", "noise", "rotated"):
        c2, f2 = make_data(2_000, seed=3, kind=kind)
        c2t, f2t = make_data(1_000, seed=4, kind=kind)
        for name, fn, par in (
            ("mig", mig, False),
            ("sap", sap, True),
            ("dci", dci, True),
            ("modularity_explicitness", modularity_explicitness, True),
            ("irs", irs, False),
        ):
            kw = {"n_jobs": n_jobs} if par else {}
            _, e = timed(fn, c2, f2, c2t, f2t, random_state=SEED, fast=False, **kw)
            _, q = timed(fn, c2, f2, c2t, f2t, random_state=SEED, fast=True, **kw)
            for key in e:
                drift[f"{kind}.{name}.{key}"] = {"exact": e[key], "fast": q[key], "abs_diff": abs(q[key] - e[key])}
    return drift


def summarise(times, cpu, values, loads, group):
    """Rows per (metric, key) and the suite's per-repeat totals and speed-ups (wall clock; CPU seconds beside)."""
    rows = []
    for name in times:
        med = {m: _median(ts) for m, ts in times[name].items()}
        for key, exact in values[name]["exact"].items():
            rows.append(
                {
                    "group": group,
                    "metric": name,
                    "key": key,
                    "exact": exact,
                    "fast": values[name]["fast"].get(key),
                    "reference": values[name].get("reference", {}).get(key),
                    **{f"t_{m}": med.get(m) for m in MODES},
                    **{f"t_{m}_all": times[name].get(m) for m in MODES},
                    **{f"cpu_{m}": _median(cpu[name].get(m) or []) for m in MODES},
                }
            )
    n_rep = len(loads)
    per_repeat = {
        m: [sum(times[name][m][r] for name in times) for r in range(n_rep)] if m in next(iter(times.values())) else None
        for m in MODES
    }
    cpu_repeat = {
        m: [sum(cpu[name][m][r] for name in cpu) for r in range(n_rep)] if per_repeat[m] else None for m in MODES
    }
    suite = {
        "seconds_per_repeat": per_repeat,
        "median_seconds": {m: _median(v or []) for m, v in per_repeat.items()},
        "cpu_seconds_per_repeat": cpu_repeat,
        "median_cpu_seconds": {m: _median(v or []) for m, v in cpu_repeat.items()},
    }
    if per_repeat["reference"]:
        for m in ("exact", "fast"):
            ratios = [ref / ours for ref, ours in zip(per_repeat["reference"], per_repeat[m], strict=True)]
            suite[f"speedup_{m}_per_repeat"] = ratios
            suite[f"speedup_{m}_median"] = _median(ratios)
    return rows, suite


def _fmt(v, w=9, d=4):
    return f"{'-':>{w}}" if v is None else f"{v:>{w}.{d}f}"


def text_table(rows) -> list[str]:
    header = (
        f"{'metric.key':<52} {'exact':>9} {'fast':>9} {'ref':>9} {'|f-e|':>7} {'t_exact':>8} {'t_fast':>7} {'t_ref':>7}"
    )
    lines = [header, "-" * len(header)]
    last = None
    for r in rows:
        first = r["metric"] != last
        last = r["metric"]
        times = (_fmt(r["t_exact"], 8, 2) + _fmt(r["t_fast"], 8, 2) + _fmt(r["t_reference"], 8, 2)) if first else ""
        diff = None if r["fast"] is None else abs(r["fast"] - r["exact"])
        lines.append(
            f"{r['metric'] + '.' + r['key']:<52} {_fmt(r['exact'])} {_fmt(r['fast'])} {_fmt(r['reference'])} "
            f"{_fmt(diff, 7)}{times}"
        )
    return lines


def markdown_tables(rows, suite, loads, setup) -> str:
    """The per-metric time table and the suite summary, as markdown."""
    out = [
        f"N = {setup['n_train']} train + {setup['n_test']} test, k = 10, F = 5; {setup['repeats']} repeats, "
        f"n_jobs = {setup['n_jobs']} ({setup['cpus']} CPUs); load average (1 min) before/after each repeat: "
        + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in loads),
        "",
        "| metric | reference (s) | exact (s) | fast (s) | exact × | fast × | max \\|exact − ref\\| | max \\|fast − exact\\| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen = []
    for r in rows:
        if r["metric"] not in seen:
            seen.append(r["metric"])
    for name in seen:
        rs = [r for r in rows if r["metric"] == name]
        r0 = rs[0]
        ref_d = [abs(r["exact"] - r["reference"]) for r in rs if r["reference"] is not None]
        fast_d = [abs(r["fast"] - r["exact"]) for r in rs if r["fast"] is not None]

        def ratio(m, r0=r0):
            return "-" if not r0["t_reference"] or not r0[f"t_{m}"] else f"{r0['t_reference'] / r0[f't_{m}']:.1f}"

        out.append(
            f"| {name} | {_fmt(r0['t_reference'], 0, 2)} | {_fmt(r0['t_exact'], 0, 2)} | {_fmt(r0['t_fast'], 0, 2)} "
            f"| {ratio('exact')} | {ratio('fast')} | {max(ref_d, default=float('nan')):.1e} "
            f"| {max(fast_d, default=float('nan')):.4f} |"
        )
    med = suite["median_seconds"]
    line = (
        f"| **array suite** | {_fmt(med['reference'], 0, 2)} | {_fmt(med['exact'], 0, 2)} | {_fmt(med['fast'], 0, 2)} "
    )
    if "speedup_exact_median" in suite:
        line += f"| **{suite['speedup_exact_median']:.2f}** | **{suite['speedup_fast_median']:.1f}** | | |"
    else:
        line += "| - | - | | |"
    out.append(line)
    if "speedup_exact_per_repeat" in suite:
        out.append("")
        out.append(
            "Suite speed-up per repeat: exact "
            + ", ".join(f"{x:.2f}" for x in suite["speedup_exact_per_repeat"])
            + "; fast "
            + ", ".join(f"{x:.1f}" for x in suite["speedup_fast_per_repeat"])
            + " (ratios of sums over metrics; the suite row's times are medians of those sums)."
        )
    cpu = suite["median_cpu_seconds"]
    out.append("")
    out.append(
        "CPU seconds of all threads per suite (median): "
        + ", ".join(f"{m} {_fmt(cpu[m], 0, 1)}" for m in MODES)
        + "; DCI alone: "
        + ", ".join(f"{m} {_fmt(next(r for r in rows if r['metric'] == 'dci')[f'cpu_{m}'], 0, 1)}" for m in MODES)
        + "."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow reference-style run")
    parser.add_argument("--skip-world", action="store_true", help="skip the BetaVAE / FactorVAE scores")
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side repeats (medians are reported)")
    parser.add_argument("--n-jobs", type=int, default=N_JOBS, help="threads for SAP/DCI/explicitness (-1: per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 + 300 points, 1 repeat, no world")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    n_train, n_test = (600, 300) if args.quick else (10_000, 5_000)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be >= 1")

    metrics = array_suite(n_train, n_test, args.n_jobs)
    times, cpu, values, loads = run_side_by_side(metrics, repeats, args.skip_reference)
    rows, suite = summarise(times, cpu, values, loads, "array")
    world_rows = []
    if not (args.skip_world or args.quick):
        w_times, w_cpu, w_values, w_loads = run_side_by_side(world_suite(), 1, args.skip_reference)
        world_rows, _ = summarise(w_times, w_cpu, w_values, w_loads, "world")
    drift = {} if args.quick else known_answer_drift(args.n_jobs)

    setup = {
        "n_train": n_train,
        "n_test": n_test,
        "k": 10,
        "factor_sizes": SIZES,
        "repeats": repeats,
        "n_jobs": args.n_jobs,
        "cpus": os.cpu_count(),
        "load_avg_1m_per_repeat": loads,
        "python": platform.python_version(),
    }
    lines = text_table(rows + world_rows)
    lines.append("-" * len(lines[0]))
    med = suite["median_seconds"]
    lines.append(
        f"array suite median total (s): exact {med['exact']:.2f}  fast {med['fast']:.2f}  "
        f"reference {_fmt(med['reference'], 0, 2)}"
    )
    if "speedup_exact_median" in suite:
        lines.append(
            f"speed-up vs reference (median of {repeats} side-by-side repeats): exact "
            f"{suite['speedup_exact_median']:.2f}x  fast {suite['speedup_fast_median']:.1f}x"
        )
        ref_diff = max(abs(r["exact"] - r["reference"]) for r in rows if r["reference"] is not None)
        lines.append(f"max |exact - reference| over array metrics: {ref_diff:.2e}")
    if drift:
        worst = max(drift.items(), key=lambda kv: kv[1]["abs_diff"])
        lines.append(f"known-answer cases (N=2000): max fast drift {worst[1]['abs_diff']:.4f} ({worst[0]})")
    mix_drift = max(abs(r["fast"] - r["exact"]) for r in rows)
    lines.append(f"noisy linear mix (N={n_train}): max fast drift {mix_drift:.4f}")
    lines.append(f"load average (1 min) before/after each repeat: {loads}")
    md = markdown_tables(rows, suite, loads, setup)
    print("\n".join(lines))
    print()
    print(md)

    result = {
        "setup": setup,
        "rows": rows + world_rows,
        "suite": suite,
        "known_answer_drift": drift,
        "markdown": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
