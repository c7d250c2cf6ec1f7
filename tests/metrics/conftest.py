"""Fixtures for the metric tests (helpers live in metrics_testdata.py)."""

from __future__ import annotations

import pytest
from metrics_testdata import make_codes, make_factors

from probe_disentangle.metrics import evaluate


@pytest.fixture(scope="session")
def suite_results():
    """Exact and fast evaluate() for the three known-answer cases (computed once per session)."""
    out = {}
    train, test = make_factors(800, seed=0), make_factors(400, seed=1)
    for kind in ("perfect", "noise", "rotated"):
        c_tr, c_te = make_codes(kind, train, seed=2), make_codes(kind, test, seed=3)
        out[kind] = {
            "exact": evaluate(c_tr, train, c_te, test, random_state=0, fast=False),
            "fast": evaluate(c_tr, train, c_te, test, random_state=0, fast=True),
        }
    return out
