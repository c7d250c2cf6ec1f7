"""The sprite readout: known answers on rendered sprites, non-sprites rejected, clear errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from probe_disentangle.worlds import ColourSprites, Sprites
from probe_disentangle.worlds.sprites_readout import (
    NON_SPRITE_KINDS,
    ORIENTATION_PERIODS,
    SpritesReadout,
    SpritesReadoutConfig,
    load_sprites_readout,
    non_sprites,
    orientation_error,
)

KEPT = [0, 1, 3, 4, 5]  # shape, scale, pos_x, pos_y, hue: scored exactly


@pytest.fixture(scope="module")
def world() -> ColourSprites:
    return ColourSprites(image_size=32)


@pytest.fixture(scope="module")
def readout(world: ColourSprites) -> SpritesReadout:
    return SpritesReadout.for_world(world)


@pytest.fixture(scope="module")
def sprites(world: ColourSprites) -> tuple[np.ndarray, torch.Tensor]:
    factors = world.sample_factors(300, 7)
    return factors, torch.from_numpy(world.render(factors))


@pytest.fixture(scope="module")
def clean_read(readout: SpritesReadout, sprites: tuple[np.ndarray, torch.Tensor]) -> dict[str, torch.Tensor]:
    return readout.read(sprites[1])


def test_read_returns_the_documented_tensors(clean_read: dict[str, torch.Tensor]) -> None:
    assert clean_read["factors"].shape == (300, 6) and clean_read["factors"].dtype == torch.int64
    assert clean_read["fit"].shape == (300, 6) and clean_read["fit"].dtype == torch.int64
    assert clean_read["valid"].shape == (300,) and clean_read["valid"].dtype == torch.bool
    assert clean_read["score"].shape == (300,) and clean_read["score"].dtype == torch.float32
    assert ((clean_read["score"] >= 0) & (clean_read["score"] <= 1)).all()
    assert torch.equal(clean_read["valid"], clean_read["score"] >= 0.5)
    invalid = ~clean_read["valid"]
    assert (clean_read["factors"][invalid] == -1).all()
    assert torch.equal(clean_read["factors"][~invalid], clean_read["fit"][~invalid])


def test_known_answers_on_rendered_sprites(
    world: ColourSprites, sprites: tuple[np.ndarray, torch.Tensor], clean_read: dict[str, torch.Tensor]
) -> None:
    factors, _ = sprites
    fit = clean_read["fit"].numpy()
    # every fit renders to the image it was read from (exactly, bit for bit) for >= 99 %
    same = (world.render(fit) == world.render(factors)).reshape(len(fit), -1).all(1)
    assert same.mean() >= 0.99
    # the factor floors: >= 98 % on shape, scale, x, y, hue; orientation within one level
    for col in KEPT:
        assert (fit[:, col] == factors[:, col]).mean() >= 0.98, world.factor_names[col]
    err = orientation_error(fit[:, 2], factors[:, 2], factors[:, 0])
    assert (err <= 1).mean() >= 0.95
    assert clean_read["valid"].float().mean() >= 0.99


def test_orientation_is_reduced_modulo_the_symmetry_period(readout: SpritesReadout, world: ColourSprites) -> None:
    # a quarter turn of a square and a half turn of an ellipse render identically
    rows = np.array([[0, 5, 3, 16, 16, 2], [0, 5, 13, 16, 16, 2], [1, 5, 4, 10, 20, 0], [1, 5, 24, 10, 20, 0]])
    images = world.render(rows)
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[2], images[3])
    out = readout.read(torch.from_numpy(images))["factors"].numpy()
    assert out[:, 2].tolist() == [3, 3, 4, 4]
    heart = np.array([[2, 5, 30, 16, 16, 5]])
    assert readout.read(torch.from_numpy(world.render(heart)))["factors"].numpy().tolist() == heart.tolist()


def test_orientation_error_known_values() -> None:
    predicted = np.array([12, 0, 39, 39, 19])
    true = np.array([2, 9, 0, 0, 0])
    shape = np.array([0, 0, 1, 2, 2])
    # square: 12 vs 2 is a quarter turn (0); 0 vs 9 is one level the other way round (1);
    # ellipse: 39 vs 0 is 19 mod 20 -> 1; heart: 39 vs 0 -> 1, 19 vs 0 -> 19
    assert orientation_error(predicted, true, shape).tolist() == [0, 1, 1, 1, 19]
    assert ORIENTATION_PERIODS == (10, 20, 40)
    with pytest.raises(ValueError, match="one shape"):
        orientation_error(predicted, true[:2], shape)
    with pytest.raises(ValueError, match="shape indices"):
        orientation_error(predicted, true, np.array([0, 0, 1, 2, 3]))


def test_robust_to_mild_pixel_noise(
    world: ColourSprites, readout: SpritesReadout, sprites: tuple[np.ndarray, torch.Tensor]
) -> None:
    factors, images = sprites
    noise = 0.05 * torch.randn(images[:150].shape, generator=torch.Generator().manual_seed(0))
    noisy = (images[:150] + noise).clamp(0, 1)
    out = readout.read(noisy)
    fit = out["fit"].numpy()
    for col in KEPT:
        assert (fit[:, col] == factors[:150, col]).mean() >= 0.97, world.factor_names[col]
    assert out["valid"].float().mean() >= 0.97


def test_sprites_a_quarter_level_off_the_grid_are_accepted_and_read_within_one_level(world: ColourSprites) -> None:
    # the renderer reads its level tables, so shifted tables render every sprite off the grid
    jit = copy.copy(world)
    jit.positions = world.positions + 0.25 * (world.positions[1] - world.positions[0])
    jit.orientations = world.orientations - 0.25 * (world.orientations[1] - world.orientations[0])
    factors = world.sample_factors(150, 5)
    out = SpritesReadout.for_world(world).read(torch.from_numpy(jit.render(factors)))
    fit = out["fit"].numpy()
    assert out["valid"].float().mean() >= 0.95
    assert (fit[:, [0, 5]] == factors[:, [0, 5]]).mean() >= 0.97
    for col in (1, 3, 4):
        assert (np.abs(fit[:, col] - factors[:, col]) <= 1).mean() >= 0.97, world.factor_names[col]


@pytest.mark.parametrize("kind", NON_SPRITE_KINDS)
def test_each_non_sprite_kind_is_rejected(world: ColourSprites, readout: SpritesReadout, kind: str) -> None:
    images = non_sprites(world, kind, 60, 3)
    assert images.shape == (60, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    out = readout.read(images)
    # measured on 500 (benchmarks/sprites_readout.py): blank, noise, two blobs all rejected; a
    # σ = 1.5 px blur and a 5 px motion smear of the largest binary sprites slip through at a few %
    ceiling = {"blur": 0.05, "smear": 0.1}.get(kind, 0.0)
    assert out["valid"].float().mean() <= ceiling, kind
    assert (out["factors"][~out["valid"]] == -1).all()


def test_non_sprites_checks_its_arguments(world: ColourSprites) -> None:
    with pytest.raises(ValueError, match="unknown non-sprite kind 'fog'"):
        non_sprites(world, "fog", 2)
    with pytest.raises(TypeError, match="ColourSprites"):
        non_sprites(Sprites(), "noise", 2)
    assert torch.equal(non_sprites(world, "noise", 4, 1), non_sprites(world, "noise", 4, 1))


def test_anti_aliased_readout_reads_its_own_renders() -> None:
    world = ColourSprites(image_size=32, antialias=True)
    readout = SpritesReadout.for_world(world)
    assert readout.config.antialias and readout.config.max_blob == 0.45
    factors = world.sample_factors(40, 11)
    out = readout.read(torch.from_numpy(world.render(factors)))
    fit = out["fit"].numpy()
    err = orientation_error(fit[:, 2], factors[:, 2], factors[:, 0])
    assert (fit[:, KEPT] == factors[:, KEPT]).all() and (err == 0).all()
    assert out["valid"].all()


def test_other_image_sizes_work() -> None:
    world = ColourSprites(image_size=24, num_hues=4)
    readout = SpritesReadout.for_world(world)
    factors = world.sample_factors(30, 2)
    fit = readout.read(torch.from_numpy(world.render(factors)))["fit"].numpy()
    assert (world.render(fit) == world.render(factors)).reshape(30, -1).all(1).mean() >= 0.9


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (np.zeros((2, 3, 32, 32), np.float32), TypeError, r"torch.Tensor.*torch.from_numpy"),
        ([[0.0]], TypeError, "torch.Tensor"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "/ 255"),
        (torch.zeros(3, 32, 32), ValueError, r"images\[None\]"),
        (torch.zeros(2, 1, 32, 32), ValueError, r"\[N, 3, 32, 32\].*\(2, 1, 32, 32\)"),
        (torch.zeros(2, 3, 64, 64), ValueError, "image_size=32"),
        (torch.full((2, 3, 32, 32), -0.5), ValueError, r"\[0, 1\].*\(x \+ 1\) / 2"),
        (torch.full((2, 3, 32, 32), float("nan")), ValueError, "NaN or inf"),
    ],
)
def test_bad_input_gets_a_clear_error(readout: SpritesReadout, images: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        readout.read(images)


def test_empty_batch(readout: SpritesReadout) -> None:
    out = readout.read(torch.zeros(0, 3, 32, 32))
    assert out["factors"].shape == (0, 6) and out["valid"].shape == (0,)


def test_config_round_trips_through_json_and_checks_fields() -> None:
    config = SpritesReadoutConfig(image_size=24, antialias=True, max_smear=0.05)
    assert SpritesReadoutConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert load_sprites_readout(image_size=24).config.image_size == 24
    with pytest.raises(ValueError, match=r"unknown SpritesReadoutConfig keys \['size'\]"):
        SpritesReadoutConfig.from_dict({"size": 32})
    with pytest.raises(TypeError, match="image_size"):
        SpritesReadoutConfig(image_size=32.0)
    with pytest.raises(ValueError, match="max_smear must be > 0"):
        SpritesReadoutConfig(max_smear=0.0)
    with pytest.raises(ValueError, match=r"edge_weight must be in \[0, 1\]"):
        SpritesReadoutConfig(edge_weight=1.5)
    binary, smooth = SpritesReadoutConfig(), SpritesReadoutConfig(antialias=True)
    assert (binary.max_blob, binary.max_smear, binary.edge_weight) == (0.6, 0.045, 0.25)
    assert (smooth.max_blob, smooth.max_smear, smooth.edge_weight) == (0.45, 0.07, 1.0)
    with pytest.raises(TypeError, match="ColourSprites"):
        SpritesReadout.for_world(Sprites())
    with pytest.raises(TypeError, match="SpritesReadoutConfig"):
        SpritesReadout({"image_size": 32})


@pytest.mark.slow
def test_full_accuracy_floors_on_two_thousand_sprites() -> None:
    world = ColourSprites(image_size=32, antialias=True)
    readout = SpritesReadout.for_world(world)
    factors = world.sample_factors(2000, 123)
    for sigma in (0.0, 0.1):
        images = torch.from_numpy(world.render(factors))
        images = (images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
        out = readout.read(images)
        fit = out["fit"].numpy()
        for col in KEPT:
            assert (fit[:, col] == factors[:, col]).mean() >= 0.98
        assert (orientation_error(fit[:, 2], factors[:, 2], factors[:, 0]) <= 1).mean() >= 0.98
        assert out["valid"].float().mean() >= 0.99
    for kind in NON_SPRITE_KINDS:
        assert readout.read(non_sprites(world, kind, 500, 9))["valid"].float().mean() <= 0.01, kind
