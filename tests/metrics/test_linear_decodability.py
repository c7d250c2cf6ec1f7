"""metrics.linear_decodability: what a linear readout finds of each factor, on a split the caller owns."""

import numpy as np
import pytest

from probe_disentangle.metrics import linear_decodability


def test_known_answers_a_coded_factor_a_missing_one_and_a_constant_one():
    rng = np.random.default_rng(0)
    n = 800
    f = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n), np.zeros(n, dtype=int)], 1)
    # the code holds factor 0 as one-hot columns (linearly separable) and nothing of factor 1
    codes = np.concatenate([np.eye(4)[f[:, 0]], rng.normal(size=(n, 3))], 1)
    acc = linear_decodability(codes, f, ["a", "b", "c"], seed=0)
    assert acc["a"] == 1.0
    assert abs(acc["b"] - 1 / 3) < 0.1  # chance on 200 held-out rows
    assert acc["c"] is None  # one value in the training rows: nothing to read
    assert set(linear_decodability(codes, f[:, :2])) == {"factor_0", "factor_1"}


def test_the_split_is_the_rows_order():
    """Rows before the cut train, rows after it are scored: labels flipped in the last quarter
    score 0 there, and half of the scored rows when the cut is at the middle."""
    x = np.tile(np.repeat([[0.0], [1.0]], 100, axis=0), (2, 1))  # 0, 1, 0, 1 in blocks of 100
    y = (x[:, 0] > 0.5).astype(int)
    y[300:] = 1 - y[300:]
    assert linear_decodability(x, y[:, None])["factor_0"] == 0.0
    assert linear_decodability(x, y[:, None], train_fraction=0.5)["factor_0"] == 0.5


def test_bad_input_names_the_problem():
    x, y = np.zeros((10, 2)), np.zeros((10, 1), dtype=int)
    with pytest.raises(ValueError, match="same n"):
        linear_decodability(x[:5], y)
    with pytest.raises(ValueError, match="one name per factor"):
        linear_decodability(x, y, ["a", "b"])
    with pytest.raises(ValueError, match="no training or no held-out"):
        linear_decodability(x, y, train_fraction=1.0)
