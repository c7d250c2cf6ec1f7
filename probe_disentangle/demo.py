"""The main job end to end, offline, on the shipped factor LM: fit a β-TCVAE probe on the
model's plan, measure it against the true factors, steer generations, compare with baselines
(a plain VAE head, PCA, difference of means), and write ``report.json``, ``report.md``, ``report.html`` (the
page people look at: :mod:`.report_html`) and the saved probe. Each phase says what it does; the
long ones (training, steering, interchange, traversals) show a progress bar with an ETA.

Where the probe reads. The shipped LM writes a plan (8 tags and a colon) and then the sentence;
each factor sits in its own tag, so the probe reads positions 1..9 as one vector (the adapter's
span layout) and an edit rewrites the whole plan. It reads at the first block's input: the
sentence copies the plan in block 0, so an edit after that is overridden by the copy (a probe at
``blocks.0.hook_resid_post`` steered 1 factor of 8, at ``blocks.1.hook_resid_post`` none, with
MIG ≥ 0.88 on every factor there). The demo still fits the same head at a middle layer and
reports its metrics and steering (``middle_hook``), and, with ``per_token``, the per-token head
a first attempt would use (every position; measured at the sentence's last word; at chance on
this host).

Next to set-to-value steering (success / leakage / parse rate), both span heads are scored by
interchange interventions (RAVEL's Cause / Isolate / Disentangle, :mod:`.steering.interchange`),
beside PCA and difference of means at the same hook: ``report["interchange"]``, one entry per
method (``middle_`` for the middle layer)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import io, report_html, steering
from .adapters import attach
from .constants import REPORT_HTML_FILE, REPORT_JSON_FILE, REPORT_MD_FILE, REPORT_TRAVERSAL_VALUES
from .metrics import linear_decodability
from .probe import Probe
from .progress import track
from .train import TrainConfig


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    # the probe: a Gaussian β-TCVAE head on the plan span at ``hook``, started from independent
    # subspace analysis ("isa"; None: a random start, which needs far more steps — set ``steps``
    # and ``joint_steps``, whose defaults follow ``init`` — and still spreads factors over latents). The β = 1 baseline and the middle-layer head share ``init``, ``init_steps``
    # (None: 600 for a Gaussian head, 300 for the joint one) and ``steps``.
    hook: str = "blocks.0.hook_resid_pre"
    init: str | None = "isa"
    init_steps: int | None = None  # steps to learn the ISA start (None: the head's default)
    steps: int | None = None  # None: 200 from ISA, 3000 from a random start
    beta: float = 6.0
    batch_size: int = 512
    lr: float = 1e-3
    restarts: int = 1  # fits per head, one chosen without labels (``fit_best_of``)
    n_train: int = 20_000
    n_eval: int = 2000
    n_steer: int = 40
    strength: float = (
        2.0  # PCA, difference-of-means and per-token edits (a plan head's latent is set to its value's mean)
    )
    seed: int = 0
    progress: bool = True
    steer_factors: Sequence[str] | None = None  # the factors to steer (None: all)
    # a categorical joint VAE head on the same vectors (a latent per factor, 6 values each; 0: skip;
    # None: 500 from ISA, 6000 from a random start)
    joint_steps: int | None = None
    # the plan-span β-TCVAE head again at a middle layer: metrics and steering there (None: skip;
    # off by default since the per-token head below is the middle-layer result: the span head there
    # reads the factors, MIG 0.89-0.97, but steers none of them, the sentence having copied the plan)
    middle_hook: str | None = None
    middle_n_steer: int = 10  # generations per value at the middle layer and for the per-token heads
    # a per-token β-TCVAE head (every position), the first thing one would try (off by default)
    per_token: bool = False
    per_token_hook: str = "blocks.1.hook_resid_post"
    per_token_steps: int = 800
    per_token_latents: int = 10
    per_token_n_train: int = 4000
    # RAVEL's interchange evaluation (Cause / Isolate / Disentangle) of the span heads at ``hook``
    # and ``middle_hook`` and of PCA and difference of means there: base/source pairs per factor (0: skip)
    n_interchange: int = 100
    # the headline: a per-token prefix-code head at a middle layer (every position read and edited),
    # its latents grouped into knobs without labels, beside the supervised per-(token, position)
    # difference of means at the same hook (None: skip)
    prefix_hook: str | None = "blocks.2.hook_resid_post"
    prefix_steps: int = 5000
    prefix_restarts: int = 1  # fits, the highest onset purity kept (the benchmark keeps the purest of 3)
    prefix_latents: int = 20
    prefix_n_train: int = 6000
    prefix_n_steer: int = 10  # generations per factor value

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = 3000 if self.init is None else 200
        if self.joint_steps is None:
            self.joint_steps = 6000 if self.init is None else 500


def _metrics(codes: np.ndarray, factors: np.ndarray, seed: int) -> dict[str, float]:
    """The metric suite (fast settings) on a 3:1 split of the held-out codes."""
    from . import metrics

    n = len(codes) * 3 // 4
    return metrics.evaluate(codes[:n], factors[:n], codes[n:], factors[n:], random_state=seed, fast=True)


def _mig(codes: np.ndarray, factors: np.ndarray) -> float:
    """MIG alone, on the same 3:1 split's first part as ``_metrics``."""
    from .metrics import mig

    n = len(codes) * 3 // 4
    return mig(codes[:n], factors[:n])["discrete_mig"]


def _entropy(x: np.ndarray) -> float:
    p = np.bincount(x) / len(x)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _per_factor_mig(codes: np.ndarray, factors: np.ndarray, names) -> dict[str, float]:
    mi = steering.mutual_information_matrix(codes, factors)
    srt = np.sort(mi, 0)[::-1]
    second = srt[1] if len(srt) > 1 else np.zeros_like(srt[0])  # one code: the gap is its MI
    return {name: float((srt[0, j] - second[j]) / _entropy(factors[:, j])) for j, name in enumerate(names)}


def _fmt(res) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in res.last.items() if k not in ("step", "lr"))


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo and return the report (also written to ``cfg.out``)."""
    from .zoo import load_factor_lm

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, world = load_factor_lm()
    if not getattr(world, "plan", False):
        raise ValueError("the demo needs a factor LM trained with a plan (examples/train_factor_lm.py --plan)")
    names = world.factor_names
    span = plan_span(world)
    log(
        f"host: shipped factor LM ({sum(p.numel() for p in model.parameters()):,} parameters); probe on the plan "
        f"(positions {span[0]}..{span[1] - 1} as one vector) at {cfg.hook}"
    )
    out = Path(cfg.out)
    n_heads = 2 + bool(cfg.joint_steps) + bool(cfg.middle_hook)
    log(
        f"phase 1: reading the host's activations and fitting {n_heads} heads × {cfg.restarts} restart(s) "
        f"({cfg.steps} steps each{f', the joint head {cfg.joint_steps}' if cfg.joint_steps else ''})"
    )
    toks = world.render(world.sample_factors(cfg.n_train, rng))
    batches = [torch.as_tensor(toks[i : i + 512]) for i in range(0, len(toks), 512)]
    # restarts are chosen on unlabelled held-out plans (reconstruction, then independence of codes)
    unlabelled = world.render(world.sample_factors(2000, rng))
    held_out = {
        h: steering.sequence_vectors(attach(model, span=span), h, unlabelled) for h in (cfg.hook, cfg.middle_hook) if h
    }
    f_eval = world.sample_factors(cfg.n_eval, rng)
    eval_tokens = world.render(f_eval)

    with tempfile.TemporaryDirectory() as cache:  # the host runs once per hook; every fit reads the cache
        heads = {"beta_tcvae": (lambda: plan_gaussian_probe(model, world, cfg.hook, cfg.n_train, beta=cfg.beta))}
        heads["vae_beta1"] = lambda: plan_gaussian_probe(model, world, cfg.hook, cfg.n_train, objective="beta_vae")
        if cfg.joint_steps:
            heads["joint_vae"] = lambda: plan_probe(model, world, cfg.hook, cfg.joint_steps, init=cfg.init)
        probes, restarts = {}, {}
        for name, make in heads.items():
            steps = cfg.joint_steps if name == "joint_vae" else cfg.steps
            probes[name], restarts[name] = _fit(
                cfg, make, steps, batches, cfg.hook, held_out[cfg.hook], cache, name, log
            )
        acts = steering.sequence_vectors(probes["beta_tcvae"].adapter, cfg.hook, eval_tokens)
        middle = None
        if cfg.middle_hook:
            make = lambda: plan_gaussian_probe(model, world, cfg.middle_hook, cfg.n_train, beta=cfg.beta)  # noqa: E731
            p, restarts["middle_beta_tcvae"] = _fit(
                cfg, make, cfg.steps, batches, cfg.middle_hook, held_out[cfg.middle_hook], cache, "beta_tcvae", log
            )
            middle = (p, steering.sequence_vectors(p.adapter, cfg.middle_hook, eval_tokens))

    probe = probes["beta_tcvae"]
    log(f"\nphase 2: metrics of the codes of {cfg.n_eval} held-out plans against the true factors")
    codes = probe.encode(acts).numpy()
    linear = linear_decodability(acts.numpy(), f_eval, names, cfg.seed)
    decodable = [n for n in names if linear[n] >= 0.95]
    report: dict[str, Any] = {
        "config": cfg.__dict__,
        "hook": cfg.hook,
        "span": list(span),
        "metrics": _metrics(codes, f_eval, cfg.seed),
        "mig_per_factor": _per_factor_mig(codes, f_eval, names),
        "linear_probe_accuracy": linear,
        "linearly_decodable_factors": decodable,
        "restarts": restarts,
        "mutual_information": {
            "latents": [f"z{i}" for i in range(codes.shape[1])],
            "factors": list(names),
            "nats": steering.mutual_information_matrix(codes, f_eval).round(4).tolist(),
        },
    }
    log("\nmetrics of the β-TCVAE head against the true factors (held-out plans):")
    for k, v in report["metrics"].items():
        if isinstance(v, float):
            log(f"  {k:<48} {v:.3f}")

    factors = _steered(cfg, names)
    sizes = world.factor_sizes
    # a head's latent is set to the mean it takes for the target value (strength 1: with ISA the
    # values are evenly spaced); PCA and difference of means push ``strength`` times as far
    steerers: dict[str, Any] = {
        m: steering.probe_steerer(p, acts, f_eval, sizes, strength=1.0) for m, p in probes.items()
    }
    steerers["pca"] = steering.pca_steerer(probe.adapter, cfg.hook, acts, f_eval, sizes, len(names), cfg.strength)
    steerers["diff_means"] = (
        steering.diff_means_steerer(probe.adapter, cfg.hook, acts, f_eval, sizes, cfg.strength),
        None,
    )
    results = {}
    log(
        f"\nphase 3: steering {len(factors)} factors with {len(steerers)} methods ({cfg.n_steer} generations "
        "per value), read back by the world's parser"
    )
    for m, (st, al) in track(steerers.items(), "steering", cfg.progress):
        results[m] = steering.evaluate_steering(model, world, st, factors, n=cfg.n_steer, seed=cfg.seed + 1)
        if al is not None:
            for j in factors:
                results[m][names[j]]["latent"] = int(al[j])
    report["steering"] = results.pop("beta_tcvae")
    report["baselines"] = {m: r for m, r in results.items() if m != "joint_vae"}
    pcs = steering.principal_directions(acts, len(names))
    method_codes = {m: p.encode(acts).numpy() for m, p in probes.items() if m != "beta_tcvae"}
    method_codes["pca"] = ((acts - acts.mean(0)) @ pcs.T).numpy()
    mig = {"beta_tcvae": report["mig_per_factor"]}
    mig.update({m: _per_factor_mig(c, f_eval, names) for m, c in method_codes.items()})
    overall = {m: _mig(c, f_eval) for m, c in method_codes.items()}
    report["baseline_mig"] = {m: overall[m] for m in ("pca", "vae_beta1")}
    report["baseline_mig_per_factor"] = {m: mig[m] for m in ("vae_beta1", "pca")}
    if "joint_vae" in probes:
        report["joint_vae"] = {
            "mig": overall["joint_vae"],
            "mig_per_factor": mig["joint_vae"],
            "steering": results["joint_vae"],
            "factors_at_floor": _at_floor_names(results["joint_vae"]),
        }
    table = {"beta_tcvae": report["steering"], **results}
    log("\nper factor: linear-probe accuracy; MIG and steering (success / leakage / parse rate) of each method")
    log("  factor   linear " + "".join(f"{m:>26}" for m in table))
    for n in names:
        cells = "".join((f"{mig[m][n]:>7.3f}" if m in mig else f"{'—':>7}") + _row(r, n) for m, r in table.items())
        log(f"  {n:<8} {linear[n]:>6.3f} {cells}")
    report["floors"] = _floors(report, decodable)
    f = report["floors"]
    log(
        f"\nfloors: MIG ≥ 0.5 on every linearly decodable factor ({len(decodable)} of {len(names)}): "
        f"min {_num(f['min_mig_on_decodable'])}; steered at ≥ 90 % success, ≤ 5 % leakage, ≥ 95 % parse rate: "
        f"{len(f['factors_at_floor'])} factors (PCA {len(f['pca_factors_at_floor'])}); MIG {report['metrics']['mig.discrete_mig']:.3f} "
        f"vs PCA {report['baseline_mig']['pca']:.3f} → {'met' if f['met'] else 'NOT met'}"
    )

    if cfg.n_interchange:
        log(f"\nphase 4: interchange interventions at {cfg.hook} ({cfg.n_interchange} base/source pairs per factor)")
        report["interchange"] = _interchange(cfg, model, world, probe, acts, f_eval, "", log)

    log("\nphase 5: traversals, one generation per value of each aligned latent")
    alignment = steerers["beta_tcvae"][1]
    report["traversals"] = _gaussian_traversals(
        probe, model, world, alignment, codes, factors, cfg.seed + 7, progress=cfg.progress
    )
    log("\nsteered generations: each latent from low to high, the same sampling seed")
    for t in report["traversals"]:
        log(f"  latent {t['latent']} (aligned with {t['factor']}):")
        for s in t["samples"]:
            log(f"    {s['value']:+.2f}  {s['text']}")
    if "joint_vae" in probes:
        j = report["joint_vae"]
        log(f"\njoint VAE head (categorical): MIG {j['mig']:.3f}, {len(j['factors_at_floor'])} factors at the floor")
        al = steerers["joint_vae"][1]
        j["traversals"] = _plan_traversals(
            probes["joint_vae"],
            model,
            world,
            al,
            (j["factors_at_floor"] or [names[k] for k in factors])[:2],
            cfg.seed + 7,
        )
        for t in j["traversals"]:
            log(f"  latent {t['latent']} (aligned with {t['factor']}) through its values:")
            for row in t["samples"]:
                log(f"    {row['value']:>2}  {row['text']}")
    if middle is not None:
        log(f"\nphase 6: the β-TCVAE head at the middle layer {cfg.middle_hook}")
        report["middle_layer"] = _middle_layer(cfg, model, world, *middle, f_eval, log)
        if cfg.n_interchange:
            report["interchange"].update(_interchange(cfg, model, world, *middle, f_eval, "middle_", log))
    if cfg.per_token:
        log(f"\nphase 7: per-token heads at {cfg.per_token_hook}")
        report["per_token"] = _per_token(cfg, model, world, rng, f_eval, out, log)
    if cfg.prefix_hook:
        log(f"\nphase 8: the headline, a per-token prefix-code head at {cfg.prefix_hook}, every position edited")
        report["per_token_prefix_code"] = _prefix_headline(cfg, model, world, rng, f_eval, out, log)
        report["headline"] = "per_token_prefix_code"
    else:
        report["headline"] = "plan span head"

    # the probe's model card states what the demo measured on it
    probe.metrics = {k: v for k, v in report["metrics"].items() if isinstance(v, (int, float))}
    probe.save_pretrained(out / "probe")
    if "joint_vae" in probes:
        probes["joint_vae"].save_pretrained(out / "joint_probe")
    report["seconds"] = round(time.time() - t0, 1)
    io.atomic_write_json(out / REPORT_JSON_FILE, report)
    io.atomic_write_bytes(out / REPORT_MD_FILE, _markdown(report, names).encode())
    page = html_report(report, names, out / REPORT_HTML_FILE)
    log(
        f"\nwrote {out / REPORT_JSON_FILE}, {out / REPORT_MD_FILE}, {page} ({page.stat().st_size / 1024:.0f} KiB) "
        f"and the probe in {out / 'probe'} ({report['seconds']} s)"
    )
    return report


def _fit(cfg: DemoConfig, make, steps: int, batches, hook: str, held_out, cache: str, name: str, log):
    """Fit ``cfg.restarts`` probes from ``make`` and keep one without labels (``fit_best_of``, on
    the ``held_out`` vectors)."""

    def fit(probe: Probe, seed: int) -> None:
        train = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, progress=cfg.progress, seed=seed)
        res = probe.fit(
            batches,
            train,
            buffer_size=cfg.n_train,
            normalizer_vectors=cfg.n_train,
            cache_dir=str(Path(cache) / hook),
            init=cfg.init,
            init_steps=cfg.init_steps,
        )
        started, r = "", probe.init_report or {}
        if "code_accuracy" in r:  # a categorical head takes the codes as its categories
            started = f" (from ISA codes: the encoder reproduced {r['code_accuracy']:.3f} of them)"
        elif "mean_error" in r:  # a Gaussian head learns them as evenly spaced means
            started = f" (from ISA codes: mean squared error of the latent means {r['mean_error']:.3f})"
        log(f"fitted {name} head at {hook}, seed {seed}: {_fmt(res)}{started}")

    seeds = [cfg.seed + r for r in range(cfg.restarts)]
    probe, scores = fit_best_of(make, fit, held_out, seeds)
    if len(seeds) > 1:
        for r in scores:
            log(
                f"  restart seed {r['seed']}: explained variance {r['explained_variance']:.3f}, mutual information "
                f"between codes {r['mutual_info']:.3f}" + (" (kept)" if r["chosen"] else "")
            )
    return probe, scores


def _steered(cfg: DemoConfig, names: Sequence[str]) -> list[int]:
    """Indices of the factors to steer: ``cfg.steer_factors`` or all."""
    if cfg.steer_factors is None:
        return list(range(len(names)))
    unknown = [n for n in cfg.steer_factors if n not in names]
    if unknown or not cfg.steer_factors:
        raise ValueError(f"steer_factors must name factors of the world {list(names)}, got {list(cfg.steer_factors)}")
    return [list(names).index(n) for n in cfg.steer_factors]


def _row(results: dict[str, Any], name: str) -> str:
    """Success, leakage and parse rate of one factor as log columns (dashes: not steered)."""
    if name not in results:
        return f"{'—':>7}{'—':>6}{'—':>6}"
    r = results[name]
    return f"{r['success']:>7.2f}{r['leakage']:>6.2f}{r['parse_rate']:>6.2f}"


def _floors(report: dict[str, Any], decodable: Sequence[str]) -> dict[str, Any]:
    """Issue 4's floors, read off the report: MIG ≥ 0.5 on every linearly decodable factor, ≥ 3
    factors at the steering floor, better than PCA on both."""
    at_floor = _at_floor_names(report["steering"])
    pca_at_floor = _at_floor_names(report["baselines"]["pca"])
    mins = min((report["mig_per_factor"][n] for n in decodable), default=None)  # None: nothing decodable
    mig_ok = mins is not None and mins >= 0.5
    better = report["metrics"]["mig.discrete_mig"] > report["baseline_mig"]["pca"] and len(at_floor) > len(pca_at_floor)
    return {
        "min_mig_on_decodable": mins,
        "factors_at_floor": at_floor,
        "pca_factors_at_floor": pca_at_floor,
        "better_than_pca": bool(better),
        "met": bool(mig_ok and len(at_floor) >= 3 and better),
    }


def _middle_layer(cfg: DemoConfig, model, world, probe: Probe, acts, f_eval, log) -> dict[str, Any]:
    """The same head at a middle layer: how well it reads the factors there, and whether an edit
    there still steers (on this host it does not: the sentence has copied the plan by then)."""
    names = world.factor_names
    codes = probe.encode(acts).numpy()
    linear = linear_decodability(acts.numpy(), f_eval, names, cfg.seed)
    mig = _per_factor_mig(codes, f_eval, names)
    st, al = steering.probe_steerer(probe, acts, f_eval, world.factor_sizes, strength=1.0)
    res = steering.evaluate_steering(model, world, st, _steered(cfg, names), n=cfg.middle_n_steer, seed=cfg.seed + 1)
    log(f"\nthe β-TCVAE head at the middle layer {cfg.middle_hook}: linear-probe accuracy, MIG, steering")
    for n in names:
        log(f"  {n:<8} {linear[n]:>6.3f} {mig[n]:>7.3f}{_row(res, n)}")
    return {
        "hook": cfg.middle_hook,
        "mig": _mig(codes, f_eval),
        "mig_per_factor": mig,
        "linear_probe_accuracy": linear,
        "steering": res,
        "factors_at_floor": _at_floor_names(res),
    }


def _interchange(cfg: DemoConfig, model, world, probe: Probe, acts, f_eval, prefix: str, log) -> dict[str, Any]:
    """RAVEL's interchange evaluation at the probe's hook for the probe (its MI-aligned latent per
    factor), PCA (one aligned principal direction per factor) and difference of means (the
    supervised reference), all reading the probe's span, on the same seeded base/source pairs."""
    names, sizes = world.factor_names, world.factor_sizes
    ad, hook = probe.adapter, probe.hook
    inter, latents = steering.probe_interchanger(probe, acts, f_eval)
    pca, pcs = steering.pca_interchanger(ad, hook, acts, f_eval, len(names))
    methods = {
        "beta_tcvae": (inter, {names[f]: v for f, v in latents.items()}),
        "pca": (pca, {n: [int(i)] for n, i in zip(names, pcs, strict=True)}),
        "diff_means": (steering.diff_means_interchanger(ad, hook, acts, f_eval, sizes), None),
    }
    out = {}
    bases = steering.base_generations(model, world, cfg.n_interchange, seed=cfg.seed + 2)  # shared by the methods
    for m, (it, al) in track(methods.items(), "interchange", cfg.progress):
        t = time.time()
        r = steering.evaluate_interchange(model, world, it, _steered(cfg, names), bases=bases)
        r = {"hook": hook, **r, "seconds": round(time.time() - t, 1)}
        if al is not None:
            r["latents"] = al
        out[prefix + m] = r
    log(
        f"\ninterchange at {hook} ({cfg.n_interchange} base/source pairs per factor): cause / isolate / "
        "parse rate per factor, and the mean disentangle"
    )
    log("  factor   " + "".join(f"{m:>20}" for m in out))
    for n in out[prefix + "beta_tcvae"]["per_factor"]:
        cells = "".join(
            f"{r['per_factor'][n]['cause']:>8.2f}{r['per_factor'][n]['isolate']:>6.2f}{r['per_factor'][n]['parse_rate']:>6.2f}"
            for r in out.values()
        )
        log(f"  {n:<8} {cells}")
    log("  mean D   " + "".join(f"{r['mean']['disentangle']:>20.3f}" for r in out.values()))
    return out


def _gaussian_traversals(
    probe: Probe,
    model,
    world,
    alignment,
    codes,
    factors: Sequence[int],
    seed: int,
    n: int = REPORT_TRAVERSAL_VALUES,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Per factor, its aligned latent set to ``n`` values from its lowest to its highest held-out
    code, one generation each from the same sampling seed: only that factor should change."""
    tok = world.tokenizer
    out = []
    for j in track(factors, "traversals", progress):
        name, i = world.factor_names[j], int(alignment[j])
        rows = []
        for v in np.linspace(codes[:, i].min(), codes[:, i].max(), n):
            with probe.steer(model, {i: float(v)}):
                s = steering.sample_tokens(model, 1, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, seed=seed)
            rows.append({"value": float(v), "text": tok.decode(s[0])})
        out.append({"latent": i, "factor": name, "samples": rows})
    return out


def _per_token(cfg: DemoConfig, model, world, rng, f_eval, out: Path, log) -> dict[str, Any]:
    """A β-TCVAE head (and a β = 1 one) on single-token activations (every position), measured
    and aligned at the sentence's last word, where every factor has been expressed: what one would
    try first. On this host it stays at chance (the plan is spread over 9 positions)."""
    names = world.factor_names
    toks = world.render(world.sample_factors(cfg.per_token_n_train, rng))
    batches = [torch.as_tensor(toks[i : i + 256]) for i in range(0, len(toks), 256)]
    train = TrainConfig(
        steps=cfg.per_token_steps, batch_size=256, lr=2e-3, lr_schedule="cosine", progress=cfg.progress, seed=cfg.seed
    )
    probes = {}
    for name, objective, beta in (("beta_tcvae", "beta_tcvae", cfg.beta), ("vae_beta1", "beta_vae", 1.0)):
        torch.manual_seed(cfg.seed)
        args = {"beta": beta}
        p = Probe(
            model,
            cfg.per_token_hook,
            head_config=dict(latent_dim=cfg.per_token_latents, hidden=128, objective=objective, objective_args=args),
        )
        res = p.fit(batches, train, buffer_size=8 * 256)
        probes[name] = p
        log(f"fitted per-token {name} head at {cfg.per_token_hook}: {_fmt(res)}")
    tok = world.tokenizer
    acts = steering.final_position_activations(
        probes["beta_tcvae"].adapter, cfg.per_token_hook, world.render(f_eval), tok.eos_id, tok.pad_id
    )
    codes = probes["beta_tcvae"].encode(acts).numpy()
    linear = linear_decodability(acts.numpy(), f_eval, names, cfg.seed)
    mig = _per_factor_mig(codes, f_eval, names)
    sizes = world.factor_sizes
    results = {
        m: steering.evaluate_steering(
            model,
            world,
            steering.probe_steerer(p, acts, f_eval, sizes, cfg.strength)[0],
            _steered(cfg, names),
            n=cfg.middle_n_steer,
            seed=cfg.seed + 1,
        )
        for m, p in probes.items()
    }
    log(
        f"\nper-token heads at {cfg.per_token_hook} (measured at the last word): linear-probe accuracy, MIG, steering β-TCVAE, β = 1"
    )
    for n in names:
        log(f"  {n:<8} {linear[n]:>6.3f} {mig[n]:>7.3f}" + "".join(_row(r, n) for r in results.values()))
    probes["beta_tcvae"].save_pretrained(out / "per_token_probe")
    return {
        "hook": cfg.per_token_hook,
        "position": "every token; measured at the sentence's last word",
        "metrics": _metrics(codes, f_eval, cfg.seed),
        "mig_per_factor": mig,
        "linear_probe_accuracy": linear,
        "steering": results["beta_tcvae"],
        "baselines": {"vae_beta1": results["vae_beta1"]},
    }


def _prefix_headline(cfg: DemoConfig, model, world, rng, f_eval, out: Path, log) -> dict[str, Any]:
    """The middle-layer result: a prefix-code head (heads/sequence.py) fitted without labels on
    every token vector at ``cfg.prefix_hook``, its latents grouped into knobs without labels
    (steering/knobs.py), steered and interchanged on every position; the supervised difference of
    means per (token, position) at the same hook is the reference row. Labels only name knobs
    and settings, and score."""
    from .heads import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts

    names, sizes, pad = world.factor_names, list(world.factor_sizes), world.tokenizer.pad_id
    hook, adapter = cfg.prefix_hook, attach(model)

    def read(f: np.ndarray):
        return steering.read_world_sequences(adapter, hook, world, f)

    f_train = world.sample_factors(cfg.prefix_n_train, rng)
    train, held = read(f_train), read(f_eval)
    t0 = time.time()
    hcfg = PrefixCodeConfig(
        d_in=train[0].shape[-1], vocab=world.vocab_size, n_pos=train[0].shape[1], latent_dim=cfg.prefix_latents
    )
    fit = PrefixFitConfig(steps=cfg.prefix_steps, seed=cfg.seed)
    head, restarts = fit_prefix_code_restarts(hcfg, *train, fit, cfg.prefix_restarts, held=held)
    fit_s = time.time() - t0
    codes = head.codes(*held)
    z = codes[:, -1].numpy()
    knobs = steering.find_knobs(z, onsets=head.onsets(*held).numpy())
    targets, groups, owner = steering.knob_targets(knobs, z, f_eval, sizes)
    chosen = next(r for r in restarts if r["chosen"])
    log(
        f"fitted without labels on {int(train[2].sum()):,} token vectors ({cfg.prefix_steps} steps, "
        f"{cfg.prefix_restarts} restart(s), kept seed {chosen['seed']}, onset purity {chosen['onset_purity']:.3f}; "
        f"{fit_s:.0f} s): {len(knobs)} knobs"
    )
    fw = steering.first_written(world, f_eval)
    rows = np.arange(len(f_eval))
    raw_at = [codes[rows, fw[:, j]].numpy() for j in range(len(names))]
    mig_raw = {n: _per_factor_mig(raw_at[j], f_eval, names)[n] for j, n in enumerate(names)}
    mig_knob = {
        n: _per_factor_mig(knobs.assign(raw_at[j]).astype(np.float64), f_eval, names)[n] for j, n in enumerate(names)
    }
    factors = _steered(cfg, names)
    reference = steering.TokenPositionMeans(*train, f_train, sizes)
    methods = {
        "prefix_code": (steering.prefix_steerer(adapter, hook, head, targets), None),
        "token_position_diff_means": (reference.steerer(adapter, hook, cfg.strength), None),
    }
    steer = {
        m: steering.evaluate_steering(model, world, st, factors, n=cfg.prefix_n_steer, seed=cfg.seed + 1)
        for m, (st, _) in track(methods.items(), "steering", cfg.progress)
    }
    inter = {}
    if cfg.n_interchange:
        bases = steering.base_generations(model, world, cfg.n_interchange, seed=cfg.seed + 2)
        inter = {
            "prefix_code": steering.evaluate_interchange(
                model, world, steering.prefix_interchanger(adapter, hook, head, groups, pad), factors, bases=bases
            ),
            "token_position_diff_means": steering.evaluate_interchange(
                model, world, reference.interchanger(adapter, hook, world), factors, bases=bases
            ),
        }
    tok = world.tokenizer
    traversals = []
    for j in factors:
        k = owner[j]
        samples = []
        for setting in range(len(knobs.settings[k])):
            with steering.steer_sequences(adapter, hook, head, knobs.setting_codes(k, setting)):
                seq = steering.sample_tokens(
                    model, 1, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, seed=cfg.seed + 7
                )
            samples.append({"value": setting, "text": tok.decode(seq[0])})
        traversals.append({"knob": k, "latents": knobs.groups[k], "factor": names[j], "samples": samples})
    at_floor = [
        names[j]
        for j in factors
        if inter
        and inter["prefix_code"]["per_factor"][names[j]]["cause"] >= 0.9
        and inter["prefix_code"]["per_factor"][names[j]]["isolate"] >= 0.95
    ]
    log(
        "  factor   knob  MIG@first raw / knobs   steering prefix / diff-means      interchange C/I prefix / diff-means"
    )
    for j in factors:
        n = names[j]
        ic = (
            "".join(
                f"{inter[m]['per_factor'][n]['cause']:>7.2f}{inter[m]['per_factor'][n]['isolate']:>5.2f}" for m in inter
            )
            if inter
            else ""
        )
        log(
            f"  {n:<8} {owner[j]:>4}  {mig_raw[n]:>9.3f} / {mig_knob[n]:.3f}  "
            + "".join(_row(steer[m], n) for m in steer)
            + ic
        )
    if inter:
        log(
            "  mean Disentangle: prefix_code "
            f"{inter['prefix_code']['mean']['disentangle']:.3f}, difference of means "
            f"{inter['token_position_diff_means']['mean']['disentangle']:.3f}; factors at Cause ≥ 0.9 and Isolate ≥ 0.95: "
            f"{len(at_floor)} of {len(factors)}"
        )
    folder = out / "per_token_head"
    extra = {"hook": hook, "model": "factor_lm", "kind": "sequence", "knobs": knobs.to_dict()}
    io.save(head, folder, extra=extra)
    log(f"  saved the head and its knobs to {folder} (probe-disentangle steer {folder} factor_lm --knob K=S)")
    return {
        "hook": hook,
        "supervision": "none: labels only name knobs and settings, and score",
        "position": "every token but BOS, prompt and generated alike",
        "restarts": [
            {k: r[k] for k in ("seed", "onset_purity", "chosen")} | {"heldout_loss": r["heldout"]["loss"]}
            for r in restarts
        ],
        "fit_seconds": round(fit_s, 1),
        "knobs": knobs.to_dict(),
        "factor_knob": {names[j]: owner[j] for j in range(len(names))},
        "mig_first_written": mig_raw,
        "mig_first_written_knobs": mig_knob,
        "mean_mig_first_written": float(np.mean(list(mig_raw.values()))),
        "mean_mig_first_written_knobs": float(np.mean(list(mig_knob.values()))),
        "steering": steer["prefix_code"],
        "reference_steering": steer["token_position_diff_means"],
        "interchange": inter.get("prefix_code"),
        "reference_interchange": inter.get("token_position_diff_means"),
        "factors_at_floor": at_floor,
        "traversals": traversals,
    }


def plan_span(world) -> tuple[int, int]:
    """The token positions of a planned world's plan: its tags and the colon (BOS is 0)."""
    return (1, world.num_factors + 2)


def plan_probe(model, world, hook: str, steps: int, marginal_weight: float = 1.0, init: str | None = None) -> Probe:
    """An unfitted joint VAE probe on a planned world's whole plan (tags and colon as one vector):
    one 6-valued categorical latent per factor slot, a linear additive decoder (a point in
    activation space per category of each latent, summed), capacities rising over 60 % of
    ``steps``. The settings the demo and ``examples/plan_span_probe.py`` share. With
    ``init="isa"`` (fit it with ``init="isa"`` too) the capacity starts at its maximum, Σ log V,
    and there is no marginal term: the start already holds one factor per latent, and a rising
    capacity or a push to use every value would first blur it.

    Why these: on this plan (CPU, 3000 steps, 4 seeds each) MIG was 0.63–0.85 with the linear
    additive decoder and no Gaussian latents, 0.20–0.73 with the MLP decoder and none, and
    0.20–0.52 with the MLP decoder and 4 Gaussian latents, which took information from the
    categorical ones; with 6000 steps (capacity rising over 3600) the linear additive head
    reached 0.85–0.93, every factor ≥ 0.77 in 2 of 3 seeds (benchmarks/RESULTS.md)."""
    return Probe(
        model,
        hook,
        architecture="joint_vae_head",
        head_config={
            "categorical": [6] * world.num_factors,
            "continuous": 0,
            "hidden": 256,
            "gamma": 30.0,
            "c_disc_max": None if init else 14.0,
            "c_steps": 1 if init else max(1, int(0.6 * steps)),
            "marginal_weight": 0.0 if init else marginal_weight,
            "decoder": "additive",
            "decoder_hidden": 0,
        },
        adapter_options={"span": plan_span(world)},
    )


def plan_gaussian_probe(
    model, world, hook: str, dataset_size: int, objective: str = "beta_tcvae", beta: float | None = None
) -> Probe:
    """An unfitted Gaussian probe on a planned world's whole plan: one latent per factor slot, an
    additive decoder (an MLP of width 32 per latent, summed: a latent traces a curve through its
    factor's values). ``objective="beta_tcvae"`` (β = 6 unless given, the TC term on 128 samples
    of each batch) is the demo's probe; ``"beta_vae"`` with β = 1 its plain-VAE baseline. Fit it
    with ``init="isa"``: from a random start a Gaussian β-TCVAE head reached MIG 0.38–0.52 here."""
    if objective == "beta_tcvae":
        args = {"beta": 6.0 if beta is None else beta, "dataset_size": dataset_size, "tc_batch": 128}
    else:
        args = {"beta": 1.0 if beta is None else beta}
    return Probe(
        model,
        hook,
        head_config={
            "latent_dim": world.num_factors,
            "objective": objective,
            "objective_args": args,
            "decoder": "additive",
            "decoder_hidden": 32,
        },
        adapter_options={"span": plan_span(world)},
    )


def fit_best_of(
    make: Callable[[], Probe],
    fit: Callable[[Probe, int], Any],
    held_out: torch.Tensor,
    seeds: Sequence[int],
    tolerance: float = 0.01,
) -> tuple[Probe, list[dict[str, float]]]:
    """Fit one probe per seed (``make()`` under ``torch.manual_seed(seed)``, then ``fit(probe, seed)``)
    and choose one without labels: among the fits whose explained variance on the ``held_out``
    activations is within ``tolerance`` of the best, the one whose codes depend least on each
    other there (mean pairwise discrete mutual information, Locatello et al.'s
    ``mutual_info_score``). Returns it and, per fit, its seed, both scores and whether it was chosen.

    Why both: with an additive decoder a fit that mixes factors in a latent cannot reconstruct
    exactly, so reconstruction rules out the worst fits; but a factor can also be spread over the
    spare values of several latents (a 5-valued colour as bits beside 2- and 3-valued factors) and
    still reconstruct exactly. Such a code is dependent across latents, which the true factors are
    not: on the plan (6000 steps, 4 seeds, all within 0.005 explained variance) this score ranked
    the fits exactly by MIG — 0.062, 0.072, 0.097, 0.101 for MIG 0.93, 0.92, 0.85, 0.69."""
    from .metrics import mutual_info_score

    if not seeds:
        raise ValueError("fit_best_of needs at least one seed")
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance}")
    probes, scores = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        probe = make()
        fit(probe, seed)
        mi = mutual_info_score(probe.encode(held_out))
        ev = float(probe.explained_variance(held_out))
        scores.append({"seed": seed, "explained_variance": ev, "mutual_info": mi, "chosen": False})
        probes.append(probe)
    top = max(s["explained_variance"] for s in scores)
    near = [i for i, s in enumerate(scores) if s["explained_variance"] >= top - tolerance]
    best = min(near, key=lambda i: scores[i]["mutual_info"])
    scores[best]["chosen"] = True
    return probes[best], scores


def _at_floor(r: dict[str, float]) -> bool:
    """The issue's steering floor: success ≥ 90 %, leakage ≤ 5 %, parse rate ≥ 95 %."""
    return r["success"] >= 0.9 and r["leakage"] <= 0.05 and r["parse_rate"] >= 0.95


def _at_floor_names(results: dict[str, dict[str, float]]) -> list[str]:
    """The factors (in the results' order) whose steering meets the floor."""
    return [n for n, r in results.items() if _at_floor(r)]


def _plan_traversals(probe: Probe, model, world, alignment, factors, seed: int) -> list[dict[str, Any]]:
    """For each named factor, its aligned categorical latent set to each of its values in turn,
    one generation each from the same sampling seed: only that factor should change."""
    tok = world.tokenizer
    out = []
    for name in factors:
        latent = int(alignment[world.factor_names.index(name)])
        if latent not in probe.categorical_codes:
            continue  # a Gaussian latent has no values to list
        rows = []
        for v in range(probe.head.config.categorical[latent]):
            with probe.steer(model, {latent: float(v)}):
                s = steering.sample_tokens(model, 1, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, seed=seed)
            rows.append({"value": v, "text": tok.decode(s[0])})
        out.append({"latent": latent, "factor": name, "samples": rows})
    return out


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _cell(r: dict[str, float] | None) -> str:
    return " — |" if r is None else f" {r['success']:.2f} / {r['leakage']:.2f} / {r['parse_rate']:.2f} |"


def _interchange_markdown(results: dict[str, Any]) -> list[str]:
    """The interchange tables, one per hook: per factor cause / isolate / disentangle / parse rate of
    each method, and their means."""
    lines = [
        "",
        "## Interchange interventions (RAVEL: cause / isolate / disentangle / parse rate)",
        "",
        "Each pair: a base generation of the host and a source plan whose value of the factor differs; the "
        "method's features for the factor are replaced by the source's. Cause: the output takes the source's "
        "value; isolate: every other factor keeps the base's; an unparsable output fails both. `beta_tcvae` is "
        "the head's MI-aligned latent, `pca` one aligned principal direction, `diff_means` the supervised "
        "difference of class means.",
    ]
    hooks = dict.fromkeys(r["hook"] for r in results.values())
    for hook in hooks:
        methods = {m: r for m, r in results.items() if r["hook"] == hook}
        first = next(iter(methods.values()))
        lines += [
            "",
            f"At `{hook}`, {first['pairs']} pairs per factor (bases parse: {first['base_parse_rate']:.2f}):",
            "",
            "| factor | " + " | ".join(methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        for n in first["per_factor"]:
            lines.append(
                f"| {n} | "
                + " | ".join(
                    "{cause:.2f} / {isolate:.2f} / {disentangle:.2f} / {parse_rate:.2f}".format(**r["per_factor"][n])
                    for r in methods.values()
                )
                + " |"
            )
        lines.append(
            "| **mean** | "
            + " | ".join(
                "{cause:.2f} / {isolate:.2f} / {disentangle:.2f} / {parse_rate:.2f}".format(**r["mean"])
                for r in methods.values()
            )
            + " |"
        )
    return lines


def _headline_summary(part: dict[str, Any]) -> str:
    ic, ref = part.get("interchange"), part.get("reference_interchange")
    text = (
        f"Headline: a per-token prefix-code head at `{part['hook']}`, fitted without labels, every position but BOS "
        f"edited; {len(part['knobs']['groups'])} knobs found without labels. MIG at the first-written position "
        f"{part['mean_mig_first_written_knobs']:.3f} over knobs ({part['mean_mig_first_written']:.3f} over raw latents)."
    )
    if ic:
        text += (
            f" Interchange: {len(part['factors_at_floor'])} of {len(ic['per_factor'])} factors at Cause ≥ 0.9 and "
            f"Isolate ≥ 0.95; mean Disentangle {ic['mean']['disentangle']:.3f} (supervised difference of means per "
            f"(token, position): {ref['mean']['disentangle']:.3f}); parse rate {ic['mean']['parse_rate']:.3f}."
        )
    return text


def _headline_markdown(part: dict[str, Any], names) -> list[str]:
    ic, ref = part.get("interchange"), part.get("reference_interchange")
    lines = [
        "",
        f"## Headline: per-token head at the middle layer `{part['hook']}`",
        "",
        _headline_summary(part),
        "",
        "| factor | knob (latents) | MIG@first raw | MIG@first knobs | steering prefix_code | steering diff-means | "
        "Cause / Isolate prefix_code | Cause / Isolate diff-means |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        if n not in part["steering"]:
            continue
        k = part["factor_knob"][n]
        cells = [
            f"{k} ({', '.join(map(str, part['knobs']['groups'][k]))})",
            f"{part['mig_first_written'][n]:.3f}",
            f"{part['mig_first_written_knobs'][n]:.3f}",
            _steer_cell(part["steering"][n]),
            _steer_cell(part["reference_steering"][n]),
        ]
        for r in (ic, ref):
            cells.append(f"{r['per_factor'][n]['cause']:.2f} / {r['per_factor'][n]['isolate']:.2f}" if r else "–")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Knob traversals (one knob through its settings, the same sampling seed):"]
    for t in part["traversals"]:
        lines += ["", f"Knob {t['knob']} (latents {t['latents']}, named {t['factor']}):", ""]
        lines += [f"- setting {row['value']}: `{row['text']}`" for row in t["samples"]]
    lines += ["", "## The plan-span head at the input (the easy setting: each factor is still an input tag)"]
    return lines


def _markdown(report: dict[str, Any], names) -> str:
    span = report["span"]
    f = report["floors"]
    lines = ["# probe_disentangle demo report"]
    if report.get("per_token_prefix_code"):
        lines += _headline_markdown(report["per_token_prefix_code"], names)
    lines += [
        "",
        f"β-TCVAE head on the plan (positions {span[0]}..{span[1] - 1} as one vector) at `{report['hook']}`, "
        f"{report['seconds']} s.",
        "",
        f"Floors {'met' if f['met'] else 'NOT met'}: MIG ≥ 0.5 on every linearly decodable factor (min "
        f"{_num(f['min_mig_on_decodable'])}); {len(f['factors_at_floor'])} factors steered at ≥ 90 % success, ≤ 5 % "
        f"leakage, ≥ 95 % parse rate (PCA: {len(f['pca_factors_at_floor'])}); MIG "
        f"{report['metrics']['mig.discrete_mig']:.3f} vs PCA {report['baseline_mig']['pca']:.3f}.",
        "",
        "Baselines on the same vectors: `vae_beta1` is the same head with β = 1 from the same start, `pca` "
        "the top principal directions, `diff_means` the supervised difference of class means.",
        "",
        "## Metrics (β-TCVAE head, held-out plans)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["metrics"].items() if isinstance(v, float)]
    methods = {"beta_tcvae": report["steering"], **report["baselines"]}
    migs = {"beta_tcvae": report["mig_per_factor"], **report["baseline_mig_per_factor"]}
    if "joint_vae" in report:
        methods["joint_vae"] = report["joint_vae"]["steering"]
        migs["joint_vae"] = report["joint_vae"]["mig_per_factor"]
    lines += [
        "",
        "## Per factor: MIG and steering (success / leakage / parse rate)",
        "",
        "| factor | linear probe acc. | " + " | ".join(f"MIG {m}" for m in migs) + " | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * (len(migs) + len(methods)),
    ]
    for n in names:
        lines.append(
            f"| {n} | {report['linear_probe_accuracy'][n]:.3f} | "
            + " | ".join(f"{m[n]:.3f}" for m in migs.values())
            + " |"
            + "".join(_cell(m.get(n)) for m in methods.values())
        )
    lines += ["", "## Traversals (one latent from low to high, the same sampling seed)"]
    for t in report["traversals"]:
        lines += ["", f"Latent {t['latent']} (aligned with {t['factor']}):", ""]
        lines += [f"- {row['value']:+.2f}: `{row['text']}`" for row in t["samples"]]
    for t in report.get("joint_vae", {}).get("traversals", []):
        lines += ["", f"Joint VAE head, latent {t['latent']} (aligned with {t['factor']}) through its values:", ""]
        lines += [f"- {row['value']}: `{row['text']}`" for row in t["samples"]]
    if report.get("interchange"):
        lines += _interchange_markdown(report["interchange"])
    for key, title in (
        ("middle_layer", "The β-TCVAE head at a middle layer"),
        ("per_token", "Per-token head (measured at the last word)"),
    ):
        part = report.get(key)
        if not part:
            continue
        lines += [
            "",
            f"## {title}: `{part['hook']}`",
            "",
            "| factor | linear probe acc. | MIG | steering |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {part['linear_probe_accuracy'][n]:.3f} | {part['mig_per_factor'][n]:.3f} |"
            + _cell(part["steering"].get(n))
            for n in names
        ]
    return "\n".join(lines) + "\n"


def _steer_cell(r: dict[str, float] | None) -> str | None:
    return None if r is None else f"{r['success']:.2f} / {r['leakage']:.2f} / {r['parse_rate']:.2f}"


def html_report(report: dict[str, Any], names: Sequence[str], path: str | Path) -> Path:
    """The demo's report as one self-contained HTML page (:mod:`.report_html`) at ``path``: the
    metric table, the heat map of mutual information (latents × factors), the generated sentences
    of each aligned latent's traversal, and the baselines' MIG and steering per factor."""
    span, f = report["span"], report["floors"]
    summary = (
        f"β-TCVAE head on the plan (positions {span[0]}..{span[1] - 1} as one vector) at {report['hook']}, "
        f"{report.get('seconds', '?')} s. Floors {'met' if f['met'] else 'NOT met'}: MIG ≥ 0.5 on every linearly "
        f"decodable factor (min {_num(f['min_mig_on_decodable'])}); {len(f['factors_at_floor'])} factors steered "
        f"at ≥ 90 % success, ≤ 5 % leakage, ≥ 95 % parse rate (PCA: {len(f['pca_factors_at_floor'])})."
    )
    traversals = [
        report_html.Traversal(
            t["latent"], t["factor"], [r["value"] for r in t["samples"]], [r["text"] for r in t["samples"]]
        )
        for t in report["traversals"]
    ]
    traversals += [
        report_html.Traversal(
            f"{t['latent']} of the joint VAE head",
            t["factor"],
            [r["value"] for r in t["samples"]],
            [r["text"] for r in t["samples"]],
        )
        for t in report.get("joint_vae", {}).get("traversals", [])
    ]
    headline = report.get("per_token_prefix_code")
    if headline:
        summary = _headline_summary(headline) + " Below it, the plan-span head at the input: " + summary
        traversals = [
            report_html.Traversal(
                f"knob {t['knob']} (latents {', '.join(map(str, t['latents']))}) of the per-token head",
                t["factor"],
                [r["value"] for r in t["samples"]],
                [r["text"] for r in t["samples"]],
            )
            for t in headline["traversals"]
        ] + traversals
    methods = {"beta_tcvae": report["steering"], **report["baselines"]}
    migs = {"beta_tcvae": report["mig_per_factor"], **report["baseline_mig_per_factor"]}
    overall = {"beta_tcvae": report["metrics"]["mig.discrete_mig"], **report["baseline_mig"]}
    if "joint_vae" in report:
        methods["joint_vae"] = report["joint_vae"]["steering"]
        migs["joint_vae"] = report["joint_vae"]["mig_per_factor"]
        overall["joint_vae"] = report["joint_vae"]["mig"]
    baselines = [
        report_html.Table(
            "Each method: MIG and the factors steered at the floor",
            ("method", "MIG", "factors at the floor", "of steered"),
            [(m, overall.get(m), len(_at_floor_names(r)), len(r)) for m, r in methods.items()],
            "vae_beta1: the same head with β = 1 from the same start; pca: the top principal directions; "
            "diff_means: the supervised difference of class means.",
        ),
        report_html.Table(
            "Per factor: linear-probe accuracy, MIG and steering (success / leakage / parse rate)",
            ("factor", "linear probe", *(f"MIG {m}" for m in migs), *methods),
            [
                (
                    n,
                    report["linear_probe_accuracy"][n],
                    *(m[n] for m in migs.values()),
                    *(_steer_cell(m.get(n)) for m in methods.values()),
                )
                for n in names
            ],
        ),
    ]
    if report.get("interchange"):
        baselines.append(
            report_html.Table(
                "Interchange interventions (RAVEL), mean over the steered factors",
                ("method", "hook", "cause", "isolate", "disentangle", "parse rate"),
                [
                    (
                        m,
                        r["hook"],
                        r["mean"]["cause"],
                        r["mean"]["isolate"],
                        r["mean"]["disentangle"],
                        r["mean"]["parse_rate"],
                    )
                    for m, r in report["interchange"].items()
                ],
            )
        )
    if headline:
        ic, ref = headline.get("interchange"), headline.get("reference_interchange")

        def pair(r, n):
            return f"{r['per_factor'][n]['cause']:.2f} / {r['per_factor'][n]['isolate']:.2f}" if r else None

        baselines.insert(
            0,
            report_html.Table(
                f"Headline, per factor: the per-token head at {headline['hook']} (every position edited) and the "
                "supervised difference of means per (token, position)",
                (
                    "factor",
                    "knob",
                    "MIG@first raw",
                    "MIG@first knobs",
                    "steering prefix_code",
                    "steering diff-means",
                    "Cause / Isolate prefix_code",
                    "Cause / Isolate diff-means",
                ),
                [
                    (
                        n,
                        headline["factor_knob"][n],
                        headline["mig_first_written"][n],
                        headline["mig_first_written_knobs"][n],
                        _steer_cell(headline["steering"][n]),
                        _steer_cell(headline["reference_steering"][n]),
                        pair(ic, n),
                        pair(ref, n),
                    )
                    for n in names
                    if n in headline["steering"]
                ],
                "Knobs: latents grouped without labels by where they take their value; labels only name them.",
            ),
        )
    mi = report["mutual_information"]
    return report_html.write_report(
        path,
        "probe_disentangle demo report",
        summary=summary,
        metrics=[
            report_html.metrics_table(report["metrics"], "β-TCVAE head against the true factors (held-out plans)")
        ],
        mutual_information=np.asarray(mi["nats"]),
        latent_labels=mi["latents"],
        factor_labels=mi["factors"],
        traversals=traversals,
        baselines=baselines,
    )
