"""Procedural dSprites-like worlds: geometry behaves as the factors say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probe_disentangle.worlds import ColourSprites, Sprites

SHAPE, SCALE, ORIENT, PX, PY = range(5)


@pytest.fixture(scope="module")
def sprites() -> Sprites:
    return Sprites()


def _one(world: Sprites, shape: int = 0, scale: int = 5, orient: int = 0, px: int = 16, py: int = 16) -> np.ndarray:
    return world.render([[shape, scale, orient, px, py]])[0, 0]


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(img.shape)
    return float((rows * img).sum() / img.sum()), float((cols * img).sum() / img.sum())


def test_factors_match_dsprites(sprites: Sprites) -> None:
    assert sprites.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert sprites.factor_sizes == (3, 6, 40, 32, 32)
    assert sprites.num_combinations == 737_280
    np.testing.assert_allclose(sprites.factor_values("scale"), np.linspace(0.5, 1.0, 6))
    orientations = sprites.factor_values("orientation")
    assert orientations[0] == 0.0 and orientations[-1] < 2 * math.pi
    np.testing.assert_allclose(np.diff(orientations), 2 * math.pi / 40)
    assert sprites.observation_shape == (1, 64, 64)


def test_binary_images(sprites: Sprites) -> None:
    images = sprites.render(sprites.sample_factors(200, 0))
    assert images.dtype == np.float32 and images.shape == (200, 1, 64, 64)
    assert set(np.unique(images)) == {0.0, 1.0}
    assert (images.reshape(200, -1).sum(1) > 20).all()  # every sprite is visible


def test_batch_equals_one_by_one(sprites: Sprites) -> None:
    factors = sprites.sample_factors(300, 1)  # spans several shape groups and chunks
    batch = sprites.render(factors)
    single = np.concatenate([sprites.render(f) for f in factors[:40]])
    np.testing.assert_array_equal(batch[:40], single)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_area_grows_with_scale(sprites: Sprites, shape: int) -> None:
    factors = [[shape, s, 3, 16, 16] for s in range(6)]
    areas = sprites.render(factors).sum(axis=(1, 2, 3))
    assert (np.diff(areas) > 0).all(), areas
    # area scales roughly with scale^2: (1.0 / 0.5)^2 = 4
    assert 3.0 < areas[-1] / areas[0] < 5.0


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_centre_of_mass_follows_position(sprites: Sprites, shape: int) -> None:
    xs = [_centre_of_mass(_one(sprites, shape, 3, 0, px=p, py=10))[1] for p in (0, 8, 16, 24, 31)]
    ys = [_centre_of_mass(_one(sprites, shape, 3, 0, px=10, py=p))[0] for p in (0, 8, 16, 24, 31)]
    assert (np.diff(xs) > 0).all(), xs  # pos_x moves right
    assert (np.diff(ys) > 0).all(), ys  # pos_y moves down
    # pos_x leaves the row of the centre of mass alone, and vice versa
    rows_when_x_moves = [_centre_of_mass(_one(sprites, shape, 3, 0, px=p, py=10))[0] for p in (0, 31)]
    assert abs(rows_when_x_moves[0] - rows_when_x_moves[1]) < 0.5


def test_sprites_stay_inside_the_image(sprites: Sprites) -> None:
    corners = [(px, py) for px in (0, 31) for py in (0, 31)]
    factors = [[s, 5, o, px, py] for s in range(3) for o in (0, 5, 15) for px, py in corners]
    images = sprites.render(factors)[:, 0]
    border = np.concatenate([images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]], axis=1)
    assert border.sum() == 0


def test_square_is_symmetric_under_quarter_turn(sprites: Sprites) -> None:
    for orient in (0, 3, 7):
        a = _one(sprites, 0, 5, orient, 12, 20)
        b = _one(sprites, 0, 5, orient + 10, 12, 20)  # + 2*pi/4
        assert np.abs(a - b).sum() <= 0.02 * a.sum()


def test_orientation_changes_ellipse_and_heart(sprites: Sprites) -> None:
    for shape in (1, 2):
        a = _one(sprites, shape, 5, 0)
        b = _one(sprites, shape, 5, 10)
        assert np.abs(a - b).sum() > 0.2 * a.sum()
    # an ellipse is symmetric under a half turn, a heart is not
    e0, e_half = _one(sprites, 1, 5, 4), _one(sprites, 1, 5, 24)
    assert np.abs(e0 - e_half).sum() <= 0.02 * e0.sum()
    h0, h_half = _one(sprites, 2, 5, 4), _one(sprites, 2, 5, 24)
    assert np.abs(h0 - h_half).sum() > 0.2 * h0.sum()


def test_shapes_differ(sprites: Sprites) -> None:
    images = [_one(sprites, s, 5, 2) for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(images[i] - images[j]).sum() > 0.1 * images[i].sum()


def test_antialias_grey_edges_same_area() -> None:
    binary, smooth = Sprites(), Sprites(antialias=True, supersample=4)
    factors = binary.sample_factors(50, 2)
    b, s = binary.render(factors), smooth.render(factors)
    assert s.dtype == np.float32 and s.min() >= 0.0 and s.max() <= 1.0
    assert ((s > 0) & (s < 1)).any()
    # same coverage up to edge sampling, and the same sprite where it is solid
    np.testing.assert_allclose(s.sum(axis=(1, 2, 3)), b.sum(axis=(1, 2, 3)), rtol=0.1)
    assert (b[s == 1.0] == 1.0).all() and (b[s == 0.0] == 0.0).all()


def test_colour_sprites() -> None:
    world = ColourSprites(num_hues=8)
    assert world.factor_names[-1] == "hue" and world.factor_sizes == (3, 6, 40, 32, 32, 8)
    assert world.observation_shape == (3, 64, 64)
    images = world.render([[2, 4, 7, 9, 20, h] for h in range(8)])
    assert images.shape == (8, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
    masks = images.max(axis=1) > 0
    assert (masks == masks[0]).all()  # hue changes colour only
    colours = images.reshape(8, 3, -1).max(axis=2)
    assert len({tuple(np.round(c, 3)) for c in colours}) == 8
    mono = Sprites().render([[2, 4, 7, 9, 20]])[0, 0] > 0
    np.testing.assert_array_equal(masks[0], mono)
    with pytest.raises(ValueError, match="num_hues"):
        ColourSprites(num_hues=0)


def test_render_binary_matches_thresholded_render_across_blocks():
    world = Sprites()
    factors = world.sample_factors(300, 0)
    binary = world.render_binary(factors, block=128)  # three blocks, the last partial
    assert binary.dtype == bool and binary.shape == (300, 1, 64, 64)
    np.testing.assert_array_equal(binary, world.render(factors) > 0.5)
    np.testing.assert_array_equal(world.sample(300, 0)[1] > 0.5, binary)  # same images as sample()
