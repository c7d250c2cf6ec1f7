"""The World protocol, checked on every world: index maps, sampling, rendering, datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from probe_disentangle.worlds import (
    WORLDS,
    ColourSprites,
    FactorLanguage,
    KFactorImages,
    KFactorTokens,
    Sprites,
    World,
    make_world,
)

WORLD_FACTORIES = {
    "sprites": Sprites,
    "colour_sprites": lambda: ColourSprites(num_hues=4),
    "sprites_aa": lambda: Sprites(antialias=True),
    "factor_language": FactorLanguage,
    "k_images": lambda: KFactorImages(5, 3),
    "k_tokens": lambda: KFactorTokens(4, [2, 3, 4, 5]),
    "k_tokens_plan": lambda: KFactorTokens(4, [2, 3, 4, 5], plan=True),
}


@pytest.fixture(params=sorted(WORLD_FACTORIES), scope="module")
def world(request: pytest.FixtureRequest) -> World:
    return WORLD_FACTORIES[request.param]()


def test_sizes_and_counts(world: World) -> None:
    assert len(world.factor_names) == len(world.factor_sizes) == world.num_factors
    assert len(set(world.factor_names)) == world.num_factors
    assert world.num_combinations == int(np.prod(world.factor_sizes))
    assert world.factors_num_values == list(world.factor_sizes)
    assert all(isinstance(s, int) and s >= 1 for s in world.factor_sizes)


def test_index_maps_are_c_order(world: World) -> None:
    rng = np.random.default_rng(0)
    n = world.num_combinations
    idx = np.concatenate([[0, 1, n - 1], rng.integers(0, n, 200)])
    factors = world.index_to_factors(idx)
    assert factors.dtype == np.int64 and factors.shape == (len(idx), world.num_factors)
    expected = np.stack(np.unravel_index(idx, world.factor_sizes), axis=1)
    np.testing.assert_array_equal(factors, expected)
    back = world.factors_to_index(factors)
    np.testing.assert_array_equal(back, np.ravel_multi_index(tuple(factors.T), world.factor_sizes))
    np.testing.assert_array_equal(back, idx)
    # the last factor varies fastest
    np.testing.assert_array_equal(world.index_to_factors(1)[0], [0] * (world.num_factors - 1) + [1])


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_index_round_trip_property(data: st.DataObject) -> None:
    world = KFactorTokens(6, [2, 3, 5, 7, 2, 4])
    row = [data.draw(st.integers(0, s - 1)) for s in world.factor_sizes]
    index = world.factors_to_index([row])
    assert 0 <= index[0] < world.num_combinations
    np.testing.assert_array_equal(world.index_to_factors(index)[0], row)


def test_range_checks_name_the_factor(world: World) -> None:
    with pytest.raises(ValueError, match="index must be in"):
        world.index_to_factors([world.num_combinations])
    with pytest.raises(ValueError, match="index must be in"):
        world.index_to_factors([-1])
    bad = np.zeros((2, world.num_factors), dtype=np.int64)
    last = world.num_factors - 1
    bad[1, last] = world.factor_sizes[last]
    name = world.factor_names[last]
    with pytest.raises(ValueError, match=rf"factor '{name}' \(column {last}\) must be in \[0, "):
        world.factors_to_index(bad)
    with pytest.raises(ValueError, match="must be in"):
        world.render(bad)
    with pytest.raises(ValueError, match="shape"):
        world.factors_to_index(np.zeros((2, world.num_factors + 1), dtype=np.int64))
    with pytest.raises(ValueError, match="whole numbers"):
        world.index_to_factors(np.array([0.5]))


def test_render_shape_dtype_range_and_determinism(world: World) -> None:
    factors = world.sample_factors(16, 3)
    obs = world.render(factors)
    assert obs.shape == (16, *world.observation_shape)
    if obs.dtype == np.float32:
        assert obs.min() >= 0.0 and obs.max() <= 1.0
    else:
        assert obs.dtype == np.int64
    np.testing.assert_array_equal(obs, world.render(factors))
    # one row at a time gives the same as the batch
    np.testing.assert_array_equal(obs[5], world.render(factors[5])[0])
    empty = np.zeros((0, world.num_factors), dtype=np.int64)
    assert world.render(empty).shape == (0, *world.observation_shape)


@pytest.mark.parametrize(
    "random_state",
    [7, np.random.RandomState(7), np.random.default_rng(7)],
    ids=["int", "RandomState", "Generator"],
)
def test_sample_factors_accepts_all_random_states(random_state: object) -> None:
    world = KFactorTokens(3, [2, 3, 4])
    f = world.sample_factors(500, random_state)
    assert f.shape == (500, 3) and f.dtype == np.int64
    for j, size in enumerate(world.factor_sizes):
        assert set(np.unique(f[:, j])) == set(range(size))
    with pytest.raises(TypeError, match="random_state"):
        world.sample_factors(3, "seed")


def test_sampling_is_reproducible_and_consistent(world: World) -> None:
    f1, o1 = world.sample(8, 11)
    f2, o2 = world.sample(8, 11)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(o1, world.render(f1))
    np.testing.assert_array_equal(world.sample_observations_from_factors(f1, np.random.RandomState(0)), o1)


def test_sample_with_fixed_keeps_fixed_and_varies_others(world: World) -> None:
    first, last = world.factor_names[0], world.num_factors - 1
    value_first = world.factor_sizes[0] - 1
    fixed = {first: value_first, last: 0}
    factors, obs = world.sample_with_fixed(64, fixed, np.random.RandomState(1))
    assert obs.shape == (64, *world.observation_shape)
    assert (factors[:, 0] == value_first).all() and (factors[:, last] == 0).all()
    free = [j for j in range(1, last) if world.factor_sizes[j] > 1]
    assert free and all(len(np.unique(factors[:, j])) > 1 for j in free)
    np.testing.assert_array_equal(obs, world.render(factors))
    with pytest.raises(ValueError, match="unknown factor"):
        world.sample_with_fixed(2, {"no_such_factor": 0}, 0)
    with pytest.raises(ValueError, match=rf"'{first}' must be an int in \[0, "):
        world.sample_with_fixed(2, {0: world.factor_sizes[0]}, 0)


def test_dataset_full_factorial_and_sample(world: World) -> None:
    full = world.dataset()
    assert len(full) == world.num_combinations
    obs, fac = full[len(full) - 1]
    assert isinstance(obs, torch.Tensor) and fac.dtype == torch.int64
    np.testing.assert_array_equal(fac.numpy(), np.asarray(world.factor_sizes) - 1)
    np.testing.assert_array_equal(obs.numpy(), world.render(fac.numpy())[0])
    part = world.dataset(num=10, random_state=5)
    assert len(part) == 10
    np.testing.assert_array_equal(part[3][1].numpy(), world.sample_factors(10, 5)[3])
    with pytest.raises(IndexError):
        part[10]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader(num_workers: int) -> None:
    world = ColourSprites(num_hues=3)
    data = world.dataset(num=40, random_state=0)
    # spawned workers receive the dataset serialised, so this also checks it travels to them
    context = "spawn" if num_workers else None
    loader = DataLoader(data, batch_size=16, shuffle=False, num_workers=num_workers, multiprocessing_context=context)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [16, 16, 8]
    obs = torch.cat([b[0] for b in batches])
    fac = torch.cat([b[1] for b in batches])
    assert obs.shape == (40, 3, 64, 64) and obs.dtype == torch.float32
    np.testing.assert_array_equal(fac.numpy(), data.factors)
    np.testing.assert_array_equal(obs.numpy(), world.render(data.factors))


def test_dataloader_tokens_with_workers() -> None:
    world = FactorLanguage()
    loader = DataLoader(world.dataset(num=12), batch_size=4, num_workers=2)
    tokens, factors = next(iter(loader))
    assert tokens.shape == (4, world.max_length) and tokens.dtype == torch.int64
    assert world.parse(tokens[0]) == world.factor_dict(factors[0].numpy())


def test_registry() -> None:
    assert isinstance(make_world("sprites"), Sprites)
    assert isinstance(make_world("k_factor_tokens", num_factors=3), KFactorTokens)
    expected = {"sprites", "colour_sprites", "factor_language", "k_factor_images", "k_factor_tokens"}
    assert set(WORLDS) >= expected
    with pytest.raises(ValueError, match="known worlds"):
        make_world("dsprites_real")


def test_sample_pairs_differ_in_exactly_one_factor(world: World) -> None:
    a, b = world.sample_pairs(600, np.random.default_rng(0))
    assert a.shape == b.shape == (600, world.num_factors)
    assert ((a != b).sum(1) == 1).all()  # one factor per pair, to a value it did not hold
    assert (b < np.asarray(world.factor_sizes)).all() and (b >= 0).all()
    assert len(np.unique((a != b).argmax(1))) == world.num_factors  # every factor gets changed
    a2, b2 = world.sample_pairs(600, np.random.RandomState(0))  # either kind of random source
    assert ((a2 != b2).sum(1) == 1).all()
    assert np.array_equal(world.sample_pairs(50, 7)[1], world.sample_pairs(50, 7)[1])
