"""Interchange interventions (RAVEL's Cause / Isolate / Disentangle): known answers on toy hosts,
an oracle and a no-op on the shipped factor LM, seeded pairs, and clear errors."""

import contextlib

import numpy as np
import pytest
import torch

from probe_disentangle import Probe, VAEHead, VAEHeadConfig
from probe_disentangle import steering as S
from probe_disentangle.adapters import attach
from probe_disentangle.worlds.factor_language import FactorLanguage

PLAN_HOOK = "blocks.0.hook_resid_pre"


class Toy(torch.nn.Module):
    """A host whose hooked layer sees its input ``[B, d]`` unchanged and outputs it."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Identity()

    def forward(self, x):
        return self.layer(x)


def identity(x):
    return torch.as_tensor(x, dtype=torch.float32)


@pytest.fixture(scope="module")
def lm():
    pytest.importorskip("transformer_lens")
    from probe_disentangle.zoo import load_factor_lm

    return load_factor_lm()


def plan_oracle(model, world):
    """Swap the source's plan tag for the factor into the base: at the first block's input the
    activation of a tag is its token and position embedding, so this is the source's token."""
    d = model.cfg.d_model
    slots = torch.eye((world.num_factors + 1) * d)  # the span: 8 tags and the colon, d dims each
    adapter = attach(model, span=(1, world.num_factors + 2))
    return S.subspace_interchanger(adapter, PLAN_HOOK, [slots[f * d : (f + 1) * d] for f in range(world.num_factors)])


# ------------------------------------------------------------------ the shipped LM, end to end


def test_swapping_the_plan_tag_is_a_perfect_interchange(lm):
    model, world = lm
    res = S.evaluate_interchange(model, world, plan_oracle(model, world), n=24, seed=5)
    assert set(res["per_factor"]) == set(world.factor_names) and res["pairs"] == 24
    for name, r in res["per_factor"].items():
        assert (r["cause"], r["isolate"], r["disentangle"], r["parse_rate"]) == (1.0, 1.0, 1.0, 1.0), name
        assert r["pairs"] == 24
    assert res["mean"] == {"cause": 1.0, "isolate": 1.0, "disentangle": 1.0, "parse_rate": 1.0}
    assert 0.9 <= res["base_parse_rate"] <= 1.0


def test_no_intervention_scores_cause_zero_and_isolate_one(lm):
    model, world = lm
    res = S.evaluate_interchange(model, world, lambda f, src: contextlib.nullcontext(), factors=[1, 6], n=30, seed=2)
    assert list(res["per_factor"]) == ["colour", "polarity"]
    for r in res["per_factor"].values():
        # the same sampling seed reproduces every base, and every source differs from it in the factor
        assert r["cause"] == 0.0 and r["isolate"] == 1.0 and r["disentangle"] == 0.5 and r["parse_rate"] == 1.0
    assert res["mean"]["disentangle"] == 0.5
    # bases made once and passed in score exactly as bases made inside
    bases = S.base_generations(model, world, 30, seed=2)
    assert sum(len(r.keep) for r in bases) == 30 and all(r.seed >= 2 for r in bases)
    again = S.evaluate_interchange(model, world, lambda f, src: contextlib.nullcontext(), factors=[1, 6], bases=bases)
    assert again == res


def test_interchange_leaves_the_host_as_it_was(lm):
    model, world = lm
    toks = torch.as_tensor(world.render(world.sample_factors(4, np.random.default_rng(0))))
    before = model(toks)
    inter = plan_oracle(model, world)
    with inter(2, toks.flip(0)):
        changed = model(toks)
        with pytest.raises(ValueError, match="batch of 3 rows inside an interchange with 4 sources"):
            model(toks[:3])
    assert not torch.equal(changed, before)
    assert inter.adapter.live_hooks == 0
    assert torch.equal(model(toks), before)


# ------------------------------------------------------------------ known answers on toy hosts


def test_subspace_interchange_replaces_exactly_the_subspace():
    adapter = attach(Toy())
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 5, generator=g)  # not orthonormal: the projector handles any rows
    inter = S.subspace_interchanger(adapter, "layer", [basis, torch.eye(5)[4:]], read=identity)
    base, src = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    with inter(0, src):
        out = adapter.model(base)
    q, _ = torch.linalg.qr(basis.T)  # (5, 2) orthonormal basis of the span
    torch.testing.assert_close(out @ q, src @ q, atol=1e-5, rtol=1e-5)  # the source's component
    rest = torch.eye(5) - q @ q.T
    torch.testing.assert_close(out @ rest, base @ rest, atol=1e-5, rtol=1e-5)  # the base's remainder
    with inter(1, src):  # the last coordinate only
        out = adapter.model(base)
    torch.testing.assert_close(out, torch.cat([base[:, :4], src[:, 4:]], 1))
    assert adapter.live_hooks == 0


def test_diff_means_interchange_moves_the_class_mean():
    adapter = attach(Toy())
    f = np.array([(a, b) for a in range(3) for b in range(3)] * 20)  # balanced: class means are exact
    means0 = torch.tensor([[0.0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]])  # factor 0's value means
    means1 = torch.tensor([[0.0, 0, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]])
    acts = means0[f[:, 0]] + means1[f[:, 1]]
    inter = S.diff_means_interchanger(adapter, "layer", acts, f, [3, 3], read=identity)
    base_f, src_f = np.array([[0, 1], [2, 2], [1, 0]]), np.array([[1, 0], [0, 1], [2, 2]])
    base, src = means0[base_f[:, 0]] + means1[base_f[:, 1]], means0[src_f[:, 0]] + means1[src_f[:, 1]]
    with inter(0, src):
        out = adapter.model(base + 0.1)  # a small offset outside the classes: kept
    torch.testing.assert_close(out, means0[src_f[:, 0]] + means1[base_f[:, 1]] + 0.1)
    with pytest.raises(ValueError, match="no rows with value"):
        S.diff_means_interchanger(adapter, "layer", acts[f[:, 0] < 2], f[f[:, 0] < 2], [3, 3], read=identity)


def test_pca_interchange_swaps_the_aligned_direction():
    adapter = attach(Toy())
    g = torch.Generator().manual_seed(1)
    f = torch.randint(0, 2, (500, 1), generator=g).numpy()
    acts = 0.1 * torch.randn(500, 4, generator=g)
    acts[:, 2] += 5.0 * torch.as_tensor(f[:, 0])  # the factor is the direction of largest variance
    inter, alignment = S.pca_interchanger(adapter, "layer", acts, f, k=2, read=identity)
    pc = S.principal_directions(acts, 2)[alignment[0]]
    assert abs(float(pc[2])) > 0.99
    base, src = acts[:3], acts[3:6]
    with inter(0, src):
        out = adapter.model(base)
    torch.testing.assert_close(out @ pc, src @ pc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out - (out @ pc)[:, None] * pc, base - (base @ pc)[:, None] * pc, atol=1e-5, rtol=1e-5)


def test_probe_interchange_sets_the_aligned_latent_to_the_source_code():
    torch.manual_seed(0)
    probe = Probe(Toy(), "layer", head=VAEHead(VAEHeadConfig(d_in=4, latent_dim=3, hidden=16)))
    g = torch.Generator().manual_seed(2)
    base, src = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    latents = {0: [2], 1: [0, 1]}
    inter, got = S.probe_interchanger(probe, base, np.zeros((5, 2), int), read=identity, latents=latents)
    assert got == latents
    codes = probe.encode(src)
    with inter(1, src):
        out = probe.adapter.model(base)
    want = torch.stack(
        [probe.edit_vectors(base[r : r + 1], {0: float(codes[r, 0]), 1: float(codes[r, 1])})[0] for r in range(5)]
    )
    torch.testing.assert_close(out, want)
    # per-row edits are row-by-row scalar edits; the wrong length is named
    torch.testing.assert_close(
        probe.edit_vectors(base, {2: codes[:, 2]})[1:2], probe.edit_vectors(base[1:2], {2: float(codes[1, 2])})
    )
    with pytest.raises(ValueError, match=r"one value per vector, \[5\]"):
        probe.edit_vectors(base, {2: codes[:3, 2]})
    # by default each factor takes the latent with the highest mutual information
    f = np.random.default_rng(0).integers(0, 2, size=(400, 1))
    acts = torch.randn(400, 4, generator=g)
    fc = probe.encode(acts)
    order = fc[:, 1].argsort()
    f[order.numpy(), 0] = np.arange(400) >= 200  # the factor is latent 1 thresholded
    _, aligned = S.probe_interchanger(probe, acts, f, read=identity)
    assert aligned == {0: [1]}


def test_interchange_scores_count_unparsed_outputs_as_failures():
    names = ["a", "b", "c"]
    bases = [{"a": 0, "b": 0, "c": 0}] * 4
    sources = np.array([[1, 1, 1]] * 4)
    outputs = [
        {"a": 1, "b": 0, "c": 0},  # cause and isolate
        {"a": 1, "b": 1, "c": 0},  # cause, b leaked
        {"a": 0, "b": 0, "c": 0},  # isolate only
        None,  # neither
    ]
    r = S.interchange_scores(names, 0, bases, sources, outputs)
    assert r == {"cause": 0.5, "isolate": 0.5, "disentangle": 0.5, "parse_rate": 0.75, "pairs": 4}
    with pytest.raises(ValueError, match="as many bases, sources and outputs"):
        S.interchange_scores(names, 0, bases, sources[:2], outputs)


def test_sources_are_seeded_and_differ_from_the_base_in_the_factor():
    world = FactorLanguage(plan=True)
    base = world.sample_factors(400, np.random.default_rng(0))
    for f, size in enumerate(world.factor_sizes):
        src = S.sample_sources(world, base, f, seed=7)
        assert src.shape == base.shape and (src[:, f] != base[:, f]).all()
        assert np.array_equal(src, S.sample_sources(world, base, f, seed=7))
        assert not np.array_equal(src, S.sample_sources(world, base, f, seed=8))
        assert set(np.unique(src[:, f])) == set(range(size))  # every other value is used
        others = [j for j in range(world.num_factors) if j != f]
        assert (src[:, others] != base[:, others]).any(1).mean() > 0.5  # the rest is random, not the base's
    unknown = np.full_like(base[:5], -1)  # a base that did not parse: any source value will do
    assert S.sample_sources(world, unknown, 0, seed=1).min() >= 0


def test_bad_arguments_say_what_to_do(lm):
    model, world = lm
    inter = plan_oracle(model, world)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        S.evaluate_interchange(model, world, inter, n=0)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        S.base_generations(model, world, 0)
    with pytest.raises(ValueError, match="no parsed base generation"):
        S.evaluate_interchange(model, world, inter, bases=[])
    with pytest.raises(ValueError, match="factors must be indices"):
        S.evaluate_interchange(model, world, inter, factors=[8], n=4)
    toks = world.render(world.sample_factors(2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="factor 9 out of range"), inter(9, toks):
        pass
    with pytest.raises(ValueError, match="at least one source"), inter(0, toks[:0]):
        pass
    with pytest.raises(ValueError, match="drop the position"):
        S.vector_reader(inter.adapter, PLAN_HOOK, position=3)
    with pytest.raises(ValueError, match="pass position="):
        S.vector_reader(attach(model), PLAN_HOOK)
    with pytest.raises(ValueError, match=r"must be \[k, d\]"):
        S.subspace_interchanger(inter.adapter, PLAN_HOOK, [torch.zeros(64)])
    with pytest.raises(ValueError, match="cover factors 0..1"):
        S.subspace_interchanger(inter.adapter, PLAN_HOOK, {0: torch.eye(3), 2: torch.eye(3)})
    with pytest.raises(ValueError, match="at least one latent for each factor"):
        S.probe_interchanger(None, None, np.zeros((3, 2), int), read=identity, latents={0: [1]})
    with pytest.raises(ValueError, match="factor 8 out of range"):
        S.sample_sources(world, np.zeros((2, 8), int), 8, seed=0)


def test_a_position_reader_reads_that_token_of_every_source(lm):
    model, world = lm
    toks = torch.as_tensor(world.render(world.sample_factors(3, np.random.default_rng(4))))
    hook = "blocks.1.hook_resid_post"
    _, cache = model.run_with_cache(toks)
    torch.testing.assert_close(S.vector_reader(attach(model), hook, position=9)(toks), cache[hook][:, 9])
    span = S.vector_reader(attach(model, span=(1, 10)), hook)(toks)
    torch.testing.assert_close(span, cache[hook][:, 1:10].reshape(3, -1))


@pytest.mark.slow
def test_difference_of_means_interchanges_the_plan(lm):
    # the supervised reference at the first block's input, over the plan span: near the oracle
    model, world = lm
    adapter = attach(model, span=(1, world.num_factors + 2))
    f = world.sample_factors(2000, np.random.default_rng(0))
    acts = S.sequence_vectors(adapter, PLAN_HOOK, world.render(f))
    inter = S.diff_means_interchanger(adapter, PLAN_HOOK, acts, f, world.factor_sizes)
    res = S.evaluate_interchange(model, world, inter, n=100, seed=1)
    for name, r in res["per_factor"].items():
        assert r["cause"] >= 0.95 and r["isolate"] >= 0.95 and r["parse_rate"] >= 0.95, (name, r)


def test_a_per_token_interchange_edits_every_position_of_each_row_with_its_source(lm):
    model, world = lm
    hook = "blocks.1.hook_resid_post"
    adapter = attach(model)  # one vector per token
    rng = np.random.default_rng(3)
    base = torch.as_tensor(world.render(world.sample_factors(3, rng)))
    src = torch.as_tensor(world.render(world.sample_factors(3, rng)))
    basis = torch.eye(model.cfg.d_model)[:3]
    inter = S.subspace_interchanger(adapter, hook, [basis], read=S.vector_reader(adapter, hook, position=9))
    before = S.sequence_activations(adapter, hook, base)
    s = S.sequence_activations(adapter, hook, src)[:, 9]  # (3, d): each source at the plan's colon
    with inter(0, src):
        after = S.sequence_activations(adapter, hook, base)
    torch.testing.assert_close(after[:, 0], before[:, 0])  # BOS is kept, as every edit keeps it
    want = before[:, 1:].clone()
    want[..., :3] = s[:, None, :3]  # every later position of row i takes source i's coordinates
    torch.testing.assert_close(after[:, 1:], want)
