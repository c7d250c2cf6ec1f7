"""BetaVAE and FactorVAE scores on a tiny fake world (the world protocol, built here)."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_testdata import FakeWorld

from probe_disentangle.metrics import beta_vae_score, factor_vae_score

SMALL = dict(batch_size=16, num_train=300, num_eval=200)


def _random_representation(seed: int = 0):
    rng = np.random.RandomState(seed)
    return lambda obs: rng.randn(len(obs), 4)


def test_beta_vae_perfect_and_random():
    world = FakeWorld()
    good = beta_vae_score(world, world.perfect_representation, random_state=0, **SMALL)
    assert good["train_accuracy"] > 0.95 and good["eval_accuracy"] > 0.95
    bad = beta_vae_score(world, _random_representation(), random_state=0, **SMALL)
    assert bad["eval_accuracy"] < 0.6  # chance is 1/3


def test_factor_vae_perfect_and_random():
    world = FakeWorld()
    good = factor_vae_score(world, world.perfect_representation, random_state=0, num_variance_estimate=1000, **SMALL)
    assert good["train_accuracy"] > 0.95 and good["eval_accuracy"] > 0.95
    assert good["num_active_dims"] == 3
    bad = factor_vae_score(world, _random_representation(), random_state=0, num_variance_estimate=1000, **SMALL)
    assert bad["eval_accuracy"] < 0.6


def test_factor_vae_prunes_collapsed_codes():
    world = FakeWorld()

    def with_dead_code(obs):
        z = world.perfect_representation(obs)
        return np.concatenate([z, np.full((len(obs), 1), 7.0), 1e-3 * z[:, :1]], axis=1)

    r = factor_vae_score(world, with_dead_code, random_state=0, num_variance_estimate=1000, **SMALL)
    assert r["num_active_dims"] == 3
    assert r["eval_accuracy"] > 0.95


def test_world_scores_are_reproducible_and_accept_generators():
    world = FakeWorld()
    a = beta_vae_score(world, world.perfect_representation, random_state=3, **SMALL)
    b = beta_vae_score(world, world.perfect_representation, random_state=3, **SMALL)
    assert a == b
    c = factor_vae_score(
        world, world.perfect_representation, random_state=np.random.RandomState(1), num_variance_estimate=500, **SMALL
    )
    assert c["eval_accuracy"] > 0.95


def test_fast_mode_close_on_perfect_world():
    world = FakeWorld()
    exact = factor_vae_score(world, world.perfect_representation, random_state=0, batch_size=16)
    fast = factor_vae_score(world, world.perfect_representation, random_state=0, batch_size=16, fast=True)
    for key in ("train_accuracy", "eval_accuracy"):
        assert abs(exact[key] - fast[key]) <= 0.05


def test_bad_world_and_representation_raise():
    with pytest.raises(ValueError, match="sample_factors"):
        beta_vae_score(object(), lambda x: x, **SMALL)
    world = FakeWorld()
    with pytest.raises(ValueError, match=r"\[num, k\]"):
        beta_vae_score(world, lambda obs: obs[:, 0], **SMALL)
