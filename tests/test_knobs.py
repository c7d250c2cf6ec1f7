"""Knobs: latents grouped without labels into one control per factor (steering.knobs)."""

import numpy as np
import pytest

from probe_disentangle.steering.knobs import Knobs, co_onset, find_knobs, knob_targets, latent_dependence


def _codes(n: int = 2000, seed: int = 0):
    """Three factors with known subspaces: A (5 values on a circle in latents 0, 1), B (2 values,
    latent 2), C (3 values in latents 3, 4, latent 3 only telling value 0 from the rest), a
    collapsed latent 5 and an independent Gaussian latent 6."""
    rng = np.random.default_rng(seed)
    f = np.stack([rng.integers(0, 5, n), rng.integers(0, 2, n), rng.integers(0, 3, n)], 1)
    z = np.zeros((n, 7))
    ang = 2 * np.pi * f[:, 0] / 5
    z[:, 0], z[:, 1], z[:, 2] = np.cos(ang), np.sin(ang), 2.0 * f[:, 1] - 1
    z[:, 3], z[:, 4] = np.where(f[:, 2] == 0, 1.0, -0.5), f[:, 2] - 1.0
    z[:, :5] += 0.05 * rng.standard_normal((n, 5))
    z[:, 5] = 0.01 * rng.standard_normal(n)
    z[:, 6] = rng.standard_normal(n)
    return z, f


def test_dependence_is_high_inside_a_subspace_and_near_zero_across():
    z, _ = _codes()
    dep = latent_dependence(z)
    assert dep.shape == (7, 7) and np.allclose(dep, dep.T)
    assert dep[0, 1] > 0.3 and dep[3, 4] > 0.3
    for i, j in [(0, 2), (1, 4), (2, 3), (0, 6), (2, 6)]:
        assert dep[i, j] < 0.05, (i, j, dep[i, j])


def test_find_knobs_recovers_the_subspaces_and_their_settings():
    z, f = _codes()
    kn = find_knobs(z)
    assert kn.groups[:3] == [[0, 1], [2], [3, 4]]
    assert [len(s) for s in kn.settings[:3]] == [5, 2, 3]
    assert 5 not in sum(kn.groups, [])  # the collapsed latent joins no knob
    a = kn.assign(z)
    for i, j in enumerate(range(3)):  # each knob's setting determines its factor exactly
        joint = np.zeros((len(kn.settings[i]), 5))
        np.add.at(joint, (a[:, i], f[:, j]), 1)
        assert (joint > 0).sum(1).max() == 1 and (joint > 0).sum(0)[: f[:, j].max() + 1].min() == 1


def test_knob_targets_name_each_factor_and_reach_its_values():
    z, f = _codes()
    kn = find_knobs(z)
    targets, groups, owner = knob_targets(kn, z, f, [5, 2, 3])
    assert groups == [[0, 1], [2], [3, 4]] and owner == [0, 1, 2]
    for v in range(5):  # the target of value v is the centre of the value-v cluster
        lat, vals = targets[(0, v)]
        want = z[f[:, 0] == v][:, lat].mean(0)
        assert np.abs(np.asarray(vals) - want).max() < 0.01
    assert kn.setting_codes(1, 0) == {2: pytest.approx(kn.settings[1][0, 0])}


def test_knobs_save_and_load_round_trip_as_json(tmp_path):
    z, _ = _codes(600)
    kn = find_knobs(z)
    kn.save(tmp_path / "knobs.json")
    back = Knobs.load(tmp_path / "knobs.json")
    assert back.groups == kn.groups and (back.assign(z) == kn.assign(z)).all()


def test_bad_input_names_the_problem():
    z, _ = _codes(600)
    with pytest.raises(ValueError, match="samples, latents"):
        find_knobs(z[:, 0])
    with pytest.raises(ValueError, match="NaN"):
        find_knobs(np.full((100, 3), np.nan))
    with pytest.raises(ValueError, match="too few"):
        find_knobs(z[:5])
    with pytest.raises(ValueError, match="std"):
        find_knobs(np.zeros((100, 3)))
    kn = find_knobs(z)
    with pytest.raises(ValueError, match="latents"):
        kn.assign(z[:, :3])
    with pytest.raises(ValueError, match="settings"):
        kn.setting_codes(0, 99)
    with pytest.raises(ValueError, match="distinct"):
        Knobs([[0], [0]], [np.zeros((1, 1)), np.zeros((1, 1))], 3)


def test_onsets_group_latents_that_share_little_information_pairwise():
    """Three indicator latents of one 5-valued factor (values 0, 1, 2 each lit, 3 and 4 none or two)
    depend only weakly pair by pair; their common onset groups them, a second factor's apart."""
    rng = np.random.default_rng(0)
    n = 2000
    f = np.stack([rng.integers(0, 5, n), rng.integers(0, 2, n)], 1)
    code = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=float)
    z = np.concatenate([code[f[:, 0]], (2.0 * f[:, 1:] - 1)], 1) + 0.02 * rng.standard_normal((n, 4))
    onsets = np.tile([3, 3, 3, 7], (n, 1))
    onsets[rng.random((n, 4)) < 0.1] = 5  # some noise in where the evidence peaks
    kn = find_knobs(z, onsets=onsets)
    assert kn.groups == [[0, 1, 2], [3]] and [len(s) for s in kn.settings] == [5, 2]
    _, groups, _ = knob_targets(kn, z, f, [5, 2])
    assert groups == [[0, 1, 2], [3]]
    assert co_onset(onsets)[0, 1] > 0.8 and co_onset(onsets)[0, 3] < 0.2
    with pytest.raises(ValueError, match="onsets must match"):
        find_knobs(z, onsets=onsets[:, :2])
