"""The shipped factor LM and the steering-evaluation building blocks."""

import contextlib

import numpy as np
import pytest
import torch

from probe_disentangle import steering as S
from probe_disentangle.adapters import attach

pytest.importorskip("transformer_lens")


@pytest.fixture(scope="module")
def lm():
    from probe_disentangle.zoo import load_factor_lm

    return load_factor_lm()


def test_shipped_lm_writes_the_language(lm):
    model, world = lm
    seqs = S.generate_world(model, world, 300, seed=0)
    parsed = S.parse_all(world, seqs)
    assert np.mean([p is not None for p in parsed]) >= 0.98
    # each factor's values all appear with roughly uniform frequency
    for name, size in zip(world.factor_names, world.factor_sizes, strict=True):
        counts = np.bincount([p[name] for p in parsed if p is not None], minlength=size)
        assert counts.min() > 0.4 * counts.mean()


def test_sampling_is_seeded_and_aligned(lm):
    model, world = lm
    a = S.generate_world(model, world, 20, seed=5)
    assert np.array_equal(a, S.generate_world(model, world, 20, seed=5))
    assert not np.array_equal(a, S.generate_world(model, world, 20, seed=6))
    assert a.shape == (20, world.max_length) and (a[:, 0] == world.tokenizer.bos_id).all()


def test_final_position_activations_pick_the_last_word(lm):
    model, world = lm
    toks = world.render(world.sample_factors(6, np.random.default_rng(0)))
    adapter = attach(model)
    acts = S.final_position_activations(
        adapter, "blocks.1.hook_resid_post", toks, world.tokenizer.eos_id, world.tokenizer.pad_id
    )
    _, cache = model.run_with_cache(torch.as_tensor(toks))
    for r in range(6):
        last = int(np.nonzero(toks[r] == world.tokenizer.eos_id)[0][0]) - 1
        torch.testing.assert_close(acts[r], cache["blocks.1.hook_resid_post"][r, last])


def test_mutual_information_matrix_and_alignment():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 4, size=(3000, 2))
    codes = np.stack([rng.normal(size=3000), f[:, 1] + 0.01 * rng.normal(size=3000), f[:, 0] * 2.0], 1)
    mi = S.mutual_information_matrix(codes, f)
    assert mi.shape == (3, 2)
    assert mi[2, 0] == pytest.approx(np.log(4), abs=0.02) and mi[1, 1] == pytest.approx(np.log(4), abs=0.02)
    assert mi[0].max() < 0.05
    assert S.align(codes, f) == [2, 1]


def test_steerers_edit_as_defined():
    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Identity()

        def forward(self, x):
            return self.layer(x)

    adapter = attach(Host())
    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 2, (400, 1), generator=g).numpy()
    acts = torch.randn(400, 5, generator=g)
    acts[:, 0] += 3.0 * torch.as_tensor(f[:, 0])  # factor written along dimension 0
    dm = S.diff_means_steerer(adapter, "layer", acts, f, [2], strength=1.0)
    x = torch.zeros(3, 5)
    with dm(0, 1):
        out = adapter.model(x)
    want = acts[torch.as_tensor(f[:, 0] == 1)].mean(0) - acts.mean(0)
    torch.testing.assert_close(out, want.expand(3, 5))
    pca, alignment = S.pca_steerer(adapter, "layer", acts, f, [2], k=2, strength=1.0)
    assert alignment == [0]
    idx, target = pca.targets[(0, 1)]
    with pca(0, 1):
        out = adapter.model(acts[:4])
    pc = S.principal_directions(acts, 2)[idx]
    assert torch.allclose(pc.abs(), torch.eye(5)[0], atol=0.1)  # the factor's direction dominates
    torch.testing.assert_close((out - acts.mean(0)) @ pc, torch.full((4,), target), rtol=1e-4, atol=1e-4)


def test_evaluate_steering_reports_chance_for_no_steering(lm):
    model, world = lm
    res = S.evaluate_steering(model, world, lambda f, v: contextlib.nullcontext(), [6], n=60, seed=3)
    r = res["polarity"]
    assert r["leakage"] == 0.0  # nothing changed: the same seed gives the same sentences
    assert r["parse_rate"] >= 0.95
    assert 0.3 < r["success"] < 0.7  # a 2-valued factor left alone hits each target about half the time


def test_factor_position_is_the_plan_colon(lm):
    model, world = lm
    toks = world.render(world.sample_factors(4, np.random.default_rng(1)))
    acts = S.factor_position_activations(attach(model), "blocks.1.hook_resid_post", world, toks)
    _, cache = model.run_with_cache(torch.as_tensor(toks))
    if world.plan:
        assert (toks[:, world.num_factors + 1] == world.tokenizer.token_id(":")).all()
        torch.testing.assert_close(acts, cache["blocks.1.hook_resid_post"][:, world.num_factors + 1])


def test_sequence_vectors_read_the_span_or_the_given_positions(lm):
    model, world = lm
    toks = torch.as_tensor(world.render(world.sample_factors(5, np.random.default_rng(2))))
    hook = "blocks.1.hook_resid_post"
    _, cache = model.run_with_cache(toks)
    act = cache[hook]
    pos = torch.tensor([1, 3, 0, 7, 2])
    torch.testing.assert_close(S.sequence_vectors(attach(model), hook, toks, pos, batch=2), act[torch.arange(5), pos])
    torch.testing.assert_close(S.sequence_vectors(attach(model), hook, toks), act[:, -1])
    spanned = attach(model, span=(2, 5))
    torch.testing.assert_close(S.sequence_vectors(spanned, hook, toks, batch=3), act[:, 2:5].reshape(5, -1))
    torch.testing.assert_close(S.factor_position_activations(spanned, hook, world, toks), act[:, 2:5].reshape(5, -1))
    with pytest.raises(ValueError, match="drop the positions"):
        S.sequence_vectors(spanned, hook, toks, pos)
    with pytest.raises(ValueError, match="one per sequence"):
        S.sequence_vectors(attach(model), hook, toks, pos[:3])
    with pytest.raises(ValueError, match="must lie in"):
        S.sequence_vectors(attach(model), hook, toks, pos + 100)


def test_positional_diff_means_steers_the_plan_lm(lm):
    # the factor LM writes each factor in a different direction at each position: a per-position
    # difference of means moves colour reliably (a known-good baseline for the probe to beat)
    model, world = lm
    if not world.plan:
        pytest.skip("needs the plan-prefixed LM")
    adapter = attach(model)
    f = world.sample_factors(1500, np.random.default_rng(0))
    seq = S.sequence_activations(adapter, "blocks.1.hook_resid_post", world.render(f))
    st = S.positional_diff_means_steerer(adapter, "blocks.1.hook_resid_post", seq, f, world.factor_sizes, strength=2.0)
    r = S.evaluate_steering(model, world, st, [1], n=40, seed=2)["colour"]
    assert r["success"] >= 0.9 and r["leakage"] <= 0.1 and r["parse_rate"] >= 0.9


def test_class_targets_use_the_mode_for_categorical_codes():
    from probe_disentangle.steering import class_targets

    # value 0 lands in categories 1 (60 %) and 4 (40 %): the mean index 2.2 would name category 2,
    # so the target is the set of categories that mean value 0
    codes = np.array([[1.0]] * 6 + [[4.0]] * 4 + [[3.0]] * 10)
    factors = np.array([[0]] * 10 + [[1]] * 10)
    cat = class_targets(codes, factors, [0], [2], strength=1.0, categorical=[0])
    assert cat == {(0, 0): (0, ("nearest", (1.0, 4.0))), (0, 1): (0, ("nearest", (3.0,)))}
    cont = class_targets(codes, factors, [0], [2], strength=2.0)
    overall = codes.mean()
    assert cont[(0, 0)] == (0, pytest.approx(overall + 2 * (2.2 - overall)))
