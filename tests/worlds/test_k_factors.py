"""K-factor worlds: each factor owns its own region or token, for K from 2 to 64."""

from __future__ import annotations

import numpy as np
import pytest

from probe_disentangle.worlds import KFactorImages, KFactorTokens


@pytest.mark.parametrize("k", [2, 3, 10, 64])
@pytest.mark.parametrize("encoding", ["intensity", "position"])
def test_images_render_and_factors_stay_in_their_region(k: int, encoding: str) -> None:
    world = KFactorImages(k, 4, encoding=encoding)
    assert world.factor_names == tuple(f"f{i}" for i in range(k))
    base = world.sample_factors(1, k)
    img = world.render(base)
    assert img.shape == (1, 1, 64, 64) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    regions = [world.region(i) for i in range(k)]
    for i in range(k):
        other = base.copy()
        other[0, i] = (other[0, i] + 1) % world.factor_sizes[i]
        diff = np.abs(world.render(other) - img)[0, 0]
        rows, cols = regions[i]
        assert diff[rows, cols].sum() > 0
        outside = diff.copy()
        outside[rows, cols] = 0
        assert outside.sum() == 0, f"factor {i} changed pixels outside its region"
    # regions are disjoint
    owner = np.zeros((64, 64), dtype=int)
    for rows, cols in regions:
        owner[rows, cols] += 1
    assert owner.max() == 1


def test_intensity_is_linear_in_value() -> None:
    world = KFactorImages(4, 5)
    img = world.render([[0, 1, 2, 4]])[0, 0]
    levels = [img[world.region(i)].mean() for i in range(4)]
    np.testing.assert_allclose(levels, [0.0, 0.25, 0.5, 1.0])


def test_per_factor_value_counts() -> None:
    world = KFactorImages(3, [2, 5, 8], image_size=32)
    assert world.factor_sizes == (2, 5, 8) and world.observation_shape == (1, 32, 32)
    assert world.render(world.sample_factors(4, 0)).shape == (4, 1, 32, 32)


@pytest.mark.parametrize("k", [0, 1, 65, 100])
def test_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=r"num_factors must be in \[2, 64\]"):
        KFactorImages(k)
    with pytest.raises(ValueError, match=r"num_factors must be in \[2, 64\]"):
        KFactorTokens(k)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="at least 2 values"):
        KFactorTokens(3, [2, 1, 2])
    with pytest.raises(ValueError, match="num_values has 2 entries"):
        KFactorImages(3, [2, 2])
    with pytest.raises(ValueError, match="encoding='position' needs at most 7 values"):
        KFactorImages(64, 10, encoding="position")
    with pytest.raises(ValueError, match="encoding must be"):
        KFactorImages(4, encoding="colour")
    with pytest.raises(ValueError, match="too small"):
        KFactorImages(64, image_size=8)
    with pytest.raises(TypeError, match="num_factors must be an int"):
        KFactorTokens(2.0)


@pytest.mark.parametrize("k", [2, 64])
def test_tokens_each_factor_owns_its_position(k: int) -> None:
    world = KFactorTokens(k)
    assert world.vocab_size == 3 + 4 * k == len(world.vocab)
    base = world.sample_factors(1, 0)
    tokens = world.render(base)
    assert tokens.shape == (1, k + 2) and tokens.dtype == np.int64
    assert tokens[0, 0] == world.bos_id and tokens[0, -1] == world.eos_id
    np.testing.assert_array_equal(world.decode(tokens), base)
    for i in range(k):
        other = base.copy()
        other[0, i] = (other[0, i] + 1) % 4
        changed = np.flatnonzero(world.render(other)[0] != tokens[0])
        np.testing.assert_array_equal(changed, [i + 1])
    # every (factor, value) pair has its own token
    ids = {world.token_id(i, v) for i in range(k) for v in range(4)}
    assert len(ids) == 4 * k and min(ids) == 3 and max(ids) == world.vocab_size - 1
    assert world.vocab[world.token_id(k - 1, 2)] == f"f{k - 1}=2"


def test_token_decode_rejects_misplaced_tokens() -> None:
    world = KFactorTokens(3)
    tokens = world.render([[0, 1, 2]])
    tokens[0, [1, 2]] = tokens[0, [2, 1]]
    with pytest.raises(ValueError, match="well-formed"):
        world.decode(tokens)
    with pytest.raises(ValueError, match="must be in"):
        world.token_id(0, 4)


@pytest.mark.parametrize("k", [2, 64])
def test_planned_tokens_carry_each_factor_from_its_tag_to_its_token(k: int) -> None:
    """With the plan, factor i is stated twice: its tag at position i + 1 and its token K + 1
    positions later; the two never share an id, and parse / parse_plan read each part."""
    world = KFactorTokens(k, plan=True)
    assert world.vocab_size == 4 + 8 * k == len(world.vocab) == len(world.tokenizer)
    assert world.max_length == 2 * k + 3 and world.vocab[world.sep_id] == ":"
    base = world.sample_factors(1, 0)
    tokens = world.render(base)
    assert tokens.shape == (1, 2 * k + 3) and tokens[0, k + 1] == world.sep_id
    np.testing.assert_array_equal(world.decode(tokens), base)
    for i in range(k):
        other = base.copy()
        other[0, i] = (other[0, i] + 1) % 4
        np.testing.assert_array_equal(np.flatnonzero(world.render(other)[0] != tokens[0]), [i + 1, i + k + 2])
    tags = {world.token_id(i, v, tag=True) for i in range(k) for v in range(4)}
    words = {world.token_id(i, v) for i in range(k) for v in range(4)}
    assert len(tags) == len(words) == 4 * k and not tags & words
    assert world.vocab[world.token_id(k - 1, 2, tag=True)] == f"#f{k - 1}=2"
    want = {f"f{i}": int(v) for i, v in enumerate(base[0])}
    assert world.parse(tokens[0]) == world.parse_plan(tokens[0]) == want
    # a generation: padding after <eos> is ignored; the sentence is read, not the plan
    padded = np.concatenate([tokens[0], [world.pad_id] * 3])
    assert world.parse(padded) == want
    off_plan = tokens[0].copy()
    off_plan[1] = world.token_id(0, (base[0, 0] + 1) % 4, tag=True)
    assert world.parse(off_plan) == want and world.parse_plan(off_plan)["f0"] == (base[0, 0] + 1) % 4


def test_planned_tokens_reject_malformed_rows() -> None:
    world = KFactorTokens(3, plan=True)
    good = world.render([[0, 1, 2]])[0]
    swapped = good.copy()
    swapped[[5, 6]] = swapped[[6, 5]]  # two sentence tokens out of order
    no_eos = good[:-1]
    tag_in_sentence = good.copy()
    tag_in_sentence[5] = world.token_id(0, 0, tag=True)
    for row in (swapped, no_eos, tag_in_sentence, good[good != world.sep_id]):
        assert world.parse(row) is None
    with pytest.raises(ValueError, match="well-formed"):
        world.decode(swapped[None])
    bad_plan = good.copy()
    bad_plan[1] = world.token_id(1, 0, tag=True)
    assert world.parse_plan(bad_plan) is None and world.parse(bad_plan) == {"f0": 0, "f1": 1, "f2": 2}
    with pytest.raises(ValueError, match="well-formed"):
        world.decode(bad_plan[None])
    with pytest.raises(TypeError, match="one row"):
        world.parse(world.render([[0, 1, 2]]))
    with pytest.raises(ValueError, match="no plan"):
        KFactorTokens(3).parse_plan(KFactorTokens(3).render([[0, 1, 2]])[0])
    with pytest.raises(ValueError, match="plan=True"):
        KFactorTokens(3).token_id(0, 0, tag=True)
    assert KFactorTokens(3).parse(KFactorTokens(3).render([[0, 1, 2]])[0]) == {"f0": 0, "f1": 1, "f2": 2}


@pytest.mark.parametrize("encoding", ["intensity", "position"])
@pytest.mark.parametrize("k", [2, 5, 16])
def test_images_read_back_their_factors(k: int, encoding: str) -> None:
    w = KFactorImages(k, num_values=4, image_size=32, encoding=encoding)
    f = w.sample_factors(300, np.random.default_rng(k))
    x = w.render(f)
    assert np.array_equal(w.read(x), f)
    noisy = x + np.random.default_rng(1).normal(0, 0.05, x.shape).astype(np.float32)  # a decoder's blur
    assert np.array_equal(w.read(noisy), f)
    assert np.array_equal(w.read(x[:, 0]), f)  # [N, H, W] too
    with pytest.raises(ValueError, match="images must be"):
        w.read(x[:, :, :16])
