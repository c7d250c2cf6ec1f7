"""Run the array-based metric suite in one call, and print its results as a plain-text table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._utils import N_JOBS, RandomStateLike, check_codes_factors
from .supervised import dci, irs, mig, modularity_explicitness, sap
from .unsupervised import unsupervised

__all__ = ["METRICS", "evaluate", "format_table"]


def _unsupervised(
    codes: np.ndarray, factors: Any, codes_test: Any, factors_test: Any, random_state: Any, fast: bool
) -> dict[str, Any]:
    return unsupervised(codes, fast=fast)


# name -> function(codes, factors, codes_test, factors_test, random_state, fast) -> dict
PARALLEL = ("sap", "dci", "modularity_explicitness")  # the metrics that take n_jobs (independent fits)
METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "mig": mig,
    "sap": sap,
    "dci": dci,
    "modularity_explicitness": modularity_explicitness,
    "irs": irs,
    "unsupervised": _unsupervised,
}


def evaluate(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    random_state: RandomStateLike = 0,
    fast: bool = False,
    metrics: Sequence[str] | None = None,
    n_jobs: int | None = N_JOBS,
) -> dict[str, float]:
    """Score codes [N, k] against factors [N, F] with every array-based metric (or ``metrics``).

    Returns one flat dict of scalars with dotted keys, ``"<metric>.<key>"``, e.g.
    ``"mig.discrete_mig"``, ``"dci.disentanglement"``, ``"unsupervised.gaussian_total_correlation"``.
    Each metric gets the same arguments, so each value equals calling that metric alone; per-code
    arrays (``irs.disentanglement_scores``) are left out (call ``irs`` for them). Without test
    arrays the classifier metrics hold out the same 20% split (drawn from ``random_state``).
    ``fast=True`` selects every metric's fast mode (see their docstrings for the drift).
    BetaVAE/FactorVAE scores need a world and are not part of this suite. ``n_jobs`` (default
    ``N_JOBS`` = -1, one per core) is the number of threads for the independent fits of SAP, DCI
    and explicitness; the values do not depend on it.
    """
    names = list(METRICS) if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    codes, factors, codes_test, factors_test = check_codes_factors(codes, factors, codes_test, factors_test)
    out: dict[str, float] = {}
    for name in names:
        extra = {"n_jobs": n_jobs} if name in PARALLEL else {}
        result = METRICS[name](codes, factors, codes_test, factors_test, random_state=random_state, fast=fast, **extra)
        for key, value in result.items():
            if np.ndim(value) == 0:
                out[f"{name}.{key}"] = float(value) if not isinstance(value, (int, np.integer)) else int(value)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.4f}"
    if isinstance(value, str):
        return value
    if np.ndim(value) > 0:
        return "[" + ", ".join(_fmt(v) for v in np.ravel(value)) + "]"
    return str(value)


def format_table(results: dict[str, Any], title: str | None = None) -> str:
    """Render results as a two-column plain-text table, grouped by the metric prefix.

    Accepts the flat dict of ``evaluate`` (dotted keys) or one metric's own dict; values print
    with 4 decimals, ints as ints.
    """
    rows: list[tuple[str, str]] = []
    last_group = None
    for key in results:
        group, _, sub = key.partition(".")
        if not sub:
            group, sub = "", key
        label = f"{group}.{sub}" if group else sub
        if group != last_group and rows:
            rows.append(("", ""))
        last_group = group
        rows.append((label, _fmt(results[key])))
    width = max([len("metric")] + [len(r[0]) for r in rows])
    vwidth = max([len("value")] + [len(r[1]) for r in rows])
    rule = "-" * (width + 2 + vwidth)
    lines = [title] if title else []
    lines += [f"{'metric':<{width}}  {'value':>{vwidth}}", rule]
    lines += [f"{a:<{width}}  {b:>{vwidth}}" if a else "" for a, b in rows]
    return "\n".join(lines)
