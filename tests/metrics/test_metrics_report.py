"""evaluate() flat keys, the table printer, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_testdata import make_codes, make_factors

from probe_disentangle.metrics import dci, evaluate, format_table, irs, mig, sap, unsupervised

EXPECTED_KEYS = {
    "mig.discrete_mig",
    "sap.SAP_score",
    "dci.disentanglement",
    "dci.completeness",
    "dci.informativeness_train",
    "dci.informativeness_test",
    "modularity_explicitness.modularity_score",
    "modularity_explicitness.explicitness_score_train",
    "modularity_explicitness.explicitness_score_test",
    "irs.IRS",
    "irs.avg_score",
    "irs.num_active_dims",
    "unsupervised.gaussian_total_correlation",
    "unsupervised.gaussian_wasserstein_correlation",
    "unsupervised.gaussian_wasserstein_correlation_norm",
    "unsupervised.mutual_info_score",
}


def test_evaluate_flat_dotted_keys(suite_results):
    r = suite_results["perfect"]["exact"]
    assert set(r) == EXPECTED_KEYS
    assert all(np.isscalar(v) for v in r.values())


def test_evaluate_subset_split_and_table():
    f = make_factors(600)
    c = make_codes("perfect", f)
    r = evaluate(c, f, metrics=["mig", "irs", "unsupervised"])
    assert set(r) == {k for k in EXPECTED_KEYS if k.split(".")[0] in ("mig", "irs", "unsupervised")}
    assert r["mig.discrete_mig"] == mig(c, f)["discrete_mig"]
    table = format_table(r, title="perfect")
    assert table.splitlines()[0] == "perfect"
    assert "mig.discrete_mig" in table and "irs.num_active_dims" in table
    assert f"{r['mig.discrete_mig']:.4f}" in table
    assert format_table(irs(c, f)).count("\n") >= 4  # a single metric's dict prints too (arrays inline)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(c, f, metrics=["nope"])


def test_split_is_seeded_and_used_without_test_arrays():
    f = make_factors(800)
    c = make_codes("rotated", f) + np.random.RandomState(0).randn(800, 3) * 0.5
    a = sap(c, f, random_state=0)["SAP_score"]
    assert a == sap(c, f, random_state=0)["SAP_score"]
    assert a == sap(c, f, random_state=np.int64(0))["SAP_score"]


def test_irs_returns_reference_keys():
    f = make_factors(500)
    c = np.concatenate([make_codes("perfect", f), np.zeros((500, 1))], axis=1)
    r = irs(c, f)
    assert set(r) == {"IRS", "disentanglement_scores", "avg_score", "num_active_dims"}
    assert r["num_active_dims"] == 3 and r["disentanglement_scores"].shape == (3,)
    assert r["IRS"] == r["avg_score"]


_U2 = np.random.default_rng(0).random((10, 2))
_U1 = _U2[:, :1] + 0.5


@pytest.mark.parametrize(
    ("codes", "factors", "match"),
    [
        (np.zeros((10, 2)), np.zeros((9, 1), dtype=int), "same number of points"),
        (np.full((10, 2), np.nan), np.arange(10)[:, None] % 2, "NaN"),
        (_U2, _U1, "integer labels"),
        (_U2[:, 0], np.arange(10)[:, None] % 2, "2-D"),
        (_U2, np.arange(10) % 2, "2-D"),
        (_U2, np.zeros((10, 1), dtype=int), "constant"),
        (np.array([["a", "b"]] * 10), np.arange(10)[:, None] % 2, "numeric"),
    ],
)
def test_bad_input_raises_with_fix(codes, factors, match):
    for fn in (mig, sap, irs, evaluate):
        with pytest.raises(ValueError, match=match):
            fn(codes, factors)


def test_bad_test_arrays_raise():
    f = make_factors(100)
    c = make_codes("perfect", f)
    with pytest.raises(ValueError, match="both"):
        dci(c, f, codes_test=c)
    with pytest.raises(ValueError, match="code dimensions"):
        dci(c, f, c[:, :2], f)
    with pytest.raises(ValueError, match="2-D"):
        unsupervised(c[:, 0])
