"""cluster_accuracy: a discrete code against class labels, up to a relabelling of the code's values."""

from __future__ import annotations

import numpy as np
import pytest

from probe_disentangle.metrics import cluster_accuracy


def test_a_relabelled_code_is_perfect_and_the_map_undoes_the_relabelling():
    labels = np.random.default_rng(0).integers(0, 10, 500)
    perm = np.random.default_rng(1).permutation(10)
    res = cluster_accuracy(perm[labels], labels)
    assert res["cluster_accuracy"] == 1.0
    assert res["assignment"] == {int(perm[c]): c for c in range(10)}


def test_known_confusion():
    # code 0 holds 3 of class 1 and 1 of class 0; code 1 holds 2 of class 0 and 2 of class 1.
    # Best map: 0 → 1, 1 → 0, matching 3 + 2 of 8 points; the greedy "majority per code" map
    # (0 → 1, 1 → 1 or 0) would not be one-to-one.
    codes = [0, 0, 0, 0, 1, 1, 1, 1]
    labels = [1, 1, 1, 0, 0, 0, 1, 1]
    res = cluster_accuracy(codes, labels)
    assert res["cluster_accuracy"] == pytest.approx(5 / 8)
    assert res["assignment"] == {0: 1, 1: 0}


def test_merged_classes_cost_the_smaller_one():
    # InfoGAN's usual failure: one code value for two digit classes (here 1s and 8s), another unused
    labels = np.repeat(np.arange(4), 25)
    codes = labels.copy()
    codes[labels == 3] = 1  # class 3 shares code 1 with class 1
    assert cluster_accuracy(codes, labels)["cluster_accuracy"] == pytest.approx(0.75)
    # a code with more values than classes: the unmatched values count as wrong
    more = np.arange(100) % 5
    assert cluster_accuracy(more, np.zeros(100, dtype=int))["cluster_accuracy"] == pytest.approx(0.2)


def test_integer_valued_floats_and_tensors_are_accepted():
    import torch

    assert cluster_accuracy(np.array([0.0, 1.0, 1.0]), [1, 0, 0])["cluster_accuracy"] == 1.0
    assert cluster_accuracy(torch.tensor([2, 2, 0]), torch.tensor([0, 0, 1]))["assignment"] == {0: 1, 2: 0}


@pytest.mark.parametrize(
    "codes,labels,match",
    [
        ([0, 1], [0, 1, 1], "one entry per point"),
        ([[0, 1]], [0, 1], "1-D"),
        ([], [], "non-empty"),
        ([0.5, 1.0], [0, 1], "integer labels"),
        ([0, -1], [0, 1], "≥ 0"),
        ([0, 3], [0, 1], "num_codes is 3"),
    ],
)
def test_bad_input_names_the_problem(codes, labels, match):
    with pytest.raises(ValueError, match=match):
        cluster_accuracy(codes, labels, num_codes=3)


def test_num_codes_maps_values_no_point_took():
    # code value 1 never occurs; with num_codes=3 it still takes the class left over
    res = cluster_accuracy([0, 0, 2, 2], [1, 1, 0, 2], num_codes=3)
    assert res["cluster_accuracy"] == pytest.approx(0.75)
    assert res["assignment"][0] == 1
    assert sorted(res["assignment"]) == [0, 1, 2] and sorted(res["assignment"].values()) == [0, 1, 2]
    assert set(cluster_accuracy([0, 0, 2, 2], [1, 1, 0, 2])["assignment"]) == {0, 1, 2}  # default: largest + 1
