"""Per-token sequence heads (heads/sequence.py) and their steering (steering/sequence.py)."""

import pytest
import torch

from probe_disentangle import io
from probe_disentangle.adapters import attach, past_length
from probe_disentangle.heads import PrefixCodeConfig, PrefixCodeHead, PrefixFitConfig, fit_prefix_code
from probe_disentangle.heads.sequence import fit_prefix_code_restarts, heldout_loss, onset_purity
from probe_disentangle.steering import group_targets, prefix_codes, read_sequences, steer_sequences
from probe_disentangle.steering.knobs import find_knobs


def _head(**kw) -> PrefixCodeHead:
    torch.manual_seed(0)
    cfg = PrefixCodeConfig(**{"d_in": 16, "vocab": 8, "n_pos": 8, "latent_dim": 4, "hidden": 32, "emb": 4, **kw})
    return PrefixCodeHead(cfg).eval()


def _batch(B=3, T=6, d=16, vocab=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(B, T, d, generator=g)
    tok = torch.randint(0, vocab, (B, T), generator=g)
    cond = torch.stack([tok, torch.arange(T).expand(B, T)], -1)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, 0] = False
    return acts, cond, mask


def test_the_prefix_code_is_the_product_of_the_prior_and_the_evidence_so_far():
    head = _head()
    acts, cond, mask = _batch()
    m, prec = head.evidence(acts, cond, mask)
    mu, logvar, (P, H) = head.posteriors(acts, cond, mask)
    for t in range(acts.shape[1]):
        p = 1 + prec[:, : t + 1].sum(1)  # precisions add; the prior contributes 1
        assert torch.allclose(mu[:, t], (prec[:, : t + 1] * m[:, : t + 1]).sum(1) / p, atol=1e-6)
        assert torch.allclose(logvar[:, t], -p.log(), atol=1e-6)
    assert torch.equal(prec[:, 0], torch.zeros_like(prec[:, 0]))  # a masked position gives no evidence
    assert torch.allclose(P, prec.sum(1)) and torch.allclose(H, (prec * m).sum(1))


def test_a_sequence_read_in_pieces_gets_the_codes_and_edits_it_gets_read_whole():
    head = _head()
    acts, cond, mask = _batch(T=7)
    mu, lv, _ = head.posteriors(acts, cond, mask)
    _, _, state = head.posteriors(acts[:, :4], cond[:, :4], mask[:, :4])
    mu2, lv2, _ = head.posteriors(acts[:, 4:], cond[:, 4:], mask[:, 4:], state)
    assert torch.allclose(mu[:, 4:], mu2, atol=1e-6) and torch.allclose(lv[:, 4:], lv2, atol=1e-6)

    def setter(z):
        z = z.clone()
        z[..., 1] = 2.0
        return z

    whole, _ = head.edit(acts, cond, mask, setter)
    a, s = head.edit(acts[:, :4], cond[:, :4], mask[:, :4], setter)
    b, _ = head.edit(acts[:, 4:], cond[:, 4:], mask[:, 4:], setter, s)
    assert torch.allclose(whole, torch.cat([a, b], 1), atol=1e-6)


def test_an_edit_that_keeps_the_code_keeps_the_vectors_and_masked_positions_are_never_edited():
    head = _head()
    acts, cond, mask = _batch()
    same, _ = head.edit(acts, cond, mask, lambda z: z)
    assert torch.allclose(same, acts, atol=1e-6)

    def big(z):
        return z + 3.0

    moved, _ = head.edit(acts, cond, mask, big)
    assert torch.equal(moved[:, 0], acts[:, 0])  # BOS
    assert (moved[:, 1:] - acts[:, 1:]).abs().amax() > 1e-3


def test_config_and_input_errors_name_the_fix():
    with pytest.raises(ValueError, match="centre='position'"):
        PrefixCodeConfig(d_in=768, vocab=50257, n_pos=1024)
    PrefixCodeConfig(d_in=768, vocab=50257, n_pos=1024, centre="position")  # fine
    with pytest.raises(ValueError, match="centre must be one of"):
        PrefixCodeConfig(centre="token")
    with pytest.raises(ValueError, match="group_size must divide latent_dim=12"):
        PrefixCodeConfig(group_size=5)
    head = _head()
    acts, cond, mask = _batch()
    with pytest.raises(ValueError, match="larger n_pos"):
        head.codes(torch.randn(1, 9, 16), torch.stack([torch.zeros(1, 9).long(), torch.arange(9)[None]], -1), mask)
    with pytest.raises(ValueError, match=r"\[batch, positions, 16\]"):
        head.codes(acts[..., :8], cond, mask)
    with pytest.raises(ValueError, match="vocab"):
        head.codes(acts, cond + torch.tensor([8, 0]), mask)


def _toy_world(n=600, T=6, d=16, vocab=8, seed=0):
    """Two binary factors: the first is written at position 2, the second at position 4; each adds
    its own direction to every vector from there on. Token and position set the rest."""
    g = torch.Generator().manual_seed(seed)
    E, Pm, U = torch.randn(vocab, d, generator=g), torch.randn(T, d, generator=g), torch.randn(2, d, generator=g)
    f = torch.randint(0, 2, (n, 2), generator=g)
    tok = torch.randint(0, vocab, (n, T), generator=g)
    pos = torch.arange(T).expand(n, T)
    sign = 2 * f.float() - 1
    acts = E[tok] + Pm[pos] + 0.05 * torch.randn(n, T, d, generator=g)
    acts = acts + (pos >= 2)[..., None] * sign[:, :1, None] * U[0] + (pos >= 4)[..., None] * sign[:, 1:, None] * U[1]
    mask = torch.ones(n, T, dtype=torch.bool)
    mask[:, 0] = False
    return acts, torch.stack([tok, pos], -1), mask, f


def _corr(a, b):
    a, b = a - a.mean(), b.float() - b.float().mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def test_a_label_free_fit_finds_each_factor_from_where_it_is_written():
    acts, cond, mask, f = _toy_world()
    head = _head(centre="position")
    fit = PrefixFitConfig(steps=800, batch_size=256, lr=3e-3, kl_warmup=0.2)
    out = fit_prefix_code(head, acts, cond, mask, fit)
    assert out["steps"] == 800 and out["loss"] == out["loss"]
    z = head.codes(acts, cond, mask)
    last = [[abs(_corr(z[:, -1, i], f[:, j])) for j in range(2)] for i in range(4)]
    best = [max(range(4), key=lambda i, j=j: last[i][j]) for j in range(2)]
    assert best[0] != best[1]
    assert all(last[best[j]][j] > 0.97 for j in range(2)), last
    # each factor's latent stays at the prior until the position that writes it (2 and 4), then holds it
    std = [[float(z[:, t, best[j]].std()) for t in range(6)] for j in range(2)]
    assert max(std[0][:2]) < 0.1 and min(std[0][2:]) > 0.5, std
    assert max(std[1][:4]) < 0.15 and min(std[1][4:]) > 0.5, std
    # the held-out objective, a label-free restart score: reproducible, and far lower than before the fit
    held = [x[600:] for x in _toy_world(n=800)[:3]]  # the same world (its matrices are drawn first), new rows
    before = heldout_loss(_head(centre="position"), *held)
    after = heldout_loss(head, *held)
    assert after == heldout_loss(head, *held)
    assert after["recon"] < 0.5 * before["recon"], (before, after)
    targets, groups = group_targets(z[:, -1], f, [2, 2])
    assert best[0] in groups[0] and best[1] in groups[1] and set(targets) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # without labels: each factor's latent takes its value where the factor is written (its onset),
    # and the knobs grouped by onset each hold one factor, their settings its two values
    on = head.onsets(acts, cond, mask)
    assert on.shape == (600, 4) and on.dtype == torch.long
    assert (on[:, best[0]] == 2).float().mean() > 0.9 and (on[:, best[1]] == 4).float().mean() > 0.9
    kn = find_knobs(z[:, -1], onsets=on)
    owner = [next(i for i, g in enumerate(kn.groups) if best[j] in g) for j in range(2)]
    assert owner[0] != owner[1]
    a = kn.assign(z[:, -1])
    for j in range(2):
        assert len(kn.settings[owner[j]]) == 2 and abs(_corr(torch.as_tensor(a[:, owner[j]]).float(), f[:, j])) > 0.97


def test_recon_positions_reconstruct_and_edit_only_those_positions(tmp_path):
    """With ``recon_positions`` the reconstruction term is exactly the error at those positions
    (the others still give evidence), an edit writes only there, and the head saves and loads."""
    head = _head(recon_positions=[4, 2, 2])
    assert head.config.recon_positions == (2, 4)
    acts, cond, mask = _batch()
    mu, logvar, _ = head.posteriors(acts, cond, mask)
    z = mu + 0.3
    rec, _ = head._rec_and_consistency(acts, cond, mask, mu, logvar, z)
    err = 0.5 * (head.decode(z, cond) - head.target(acts, cond)).pow(2).sum(-1)
    torch.testing.assert_close(rec, err[:, [2, 4]].sum(1).mean())
    full, _ = _head()._rec_and_consistency(acts, cond, mask, mu, logvar, z)
    assert full > rec  # every position counts without it
    moved, _ = head.edit(acts, cond, mask, lambda z: z + 3.0)
    changed = (moved - acts).abs().amax(-1).amax(0) > 1e-4
    assert changed.tolist() == [False, False, True, False, True, False]
    assert not torch.equal(head.codes(acts, cond, mask)[:, 1], torch.zeros(3, 4))  # evidence at position 1 too
    io.save(head, tmp_path / "h")
    back = io.load(tmp_path / "h")
    assert back.config.recon_positions == (2, 4) and torch.equal(back.written, head.written)
    for bad in ([], [8], [-1]):
        with pytest.raises(ValueError, match="recon_positions must be a non-empty set of positions"):
            PrefixCodeConfig(n_pos=8, recon_positions=bad)


def test_other_positions_weight_down_weights_the_rest_and_edits_every_position(tmp_path):
    """``other_positions_weight`` w: the reconstruction term is the chosen positions' error plus
    w times the others' (a known sum), and an edit then writes every masked position."""
    head = _head(recon_positions=(2, 4), other_positions_weight=0.25)
    acts, cond, mask = _batch()
    mu, logvar, _ = head.posteriors(acts, cond, mask)
    z = mu + 0.3
    rec, _ = head._rec_and_consistency(acts, cond, mask, mu, logvar, z)
    err = 0.5 * (head.decode(z, cond) - head.target(acts, cond)).pow(2).sum(-1) * mask
    torch.testing.assert_close(rec, (err[:, [2, 4]].sum(1) + 0.25 * err[:, [1, 3, 5]].sum(1)).mean())
    moved, _ = head.edit(acts, cond, mask, lambda z: z + 3.0)
    changed = (moved - acts).abs().amax(-1).amax(0) > 1e-4
    assert changed.tolist() == [False, True, True, True, True, True]  # BOS (no mask) is never edited
    io.save(head, tmp_path / "h")
    back = io.load(tmp_path / "h")
    assert back.config.other_positions_weight == 0.25 and torch.equal(back.recon_w, head.recon_w)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        PrefixCodeConfig(n_pos=8, recon_positions=(2,), other_positions_weight=1.5)
    with pytest.raises(ValueError, match="needs recon_positions"):
        PrefixCodeConfig(n_pos=8, other_positions_weight=0.5)


def test_a_fit_that_reconstructs_only_where_factors_are_written_finds_both():
    """The toy world writes its factors at positions 2 and 4; reconstructing only those two
    positions still gives each factor its own latent (in twice the steps of a full fit: half the
    positions send the decoder gradient)."""
    acts, cond, mask, f = _toy_world()
    head = _head(centre="position", recon_positions=(2, 4))
    fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=1600, batch_size=256, lr=3e-3, kl_warmup=0.2))
    z = head.codes(acts, cond, mask)[:, -1]
    best = [max(abs(_corr(z[:, i], f[:, j])) for i in range(4)) for j in range(2)]
    owners = [max(range(4), key=lambda i, j=j: abs(_corr(z[:, i], f[:, j]))) for j in range(2)]
    assert owners[0] != owners[1] and min(best) > 0.95, best


def test_pair_training_runs_and_shares_latents():
    acts, cond, mask, f = _toy_world(n=200)
    b_acts, b_cond, _, _ = _toy_world(n=200, seed=1)
    head = _head(centre="position", beta=1.0)
    out = fit_prefix_code(
        head,
        acts,
        cond,
        mask,
        PrefixFitConfig(steps=20, batch_size=128),
        pairs=((acts, cond, mask), (b_acts, b_cond, mask)),
    )
    assert 0 < out["shared"] < 1


# ------------------------------------------------------------------ on real hosts


@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=40, n_positions=32)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_track_inputs_reports_positions_of_prompts_and_cached_steps(gpt2):
    adapter = attach(gpt2)
    prompt = torch.randint(1, 40, (2, 5))
    with adapter.track_inputs() as records:
        gpt2.generate(prompt, max_new_tokens=3, do_sample=False, use_cache=True, pad_token_id=0)
    assert [r.offset for r in records] == [0, 5, 6]
    assert records[0].positions[0].tolist() == [0, 1, 2, 3, 4] and records[1].positions.tolist() == [[5], [5]]
    assert adapter.live_hooks == 0
    assert past_length({}) is None and past_length({"cache_position": torch.tensor([7])}) == 7


def _fitted_gpt2_head(gpt2, hook="transformer.h.0"):
    adapter = attach(gpt2)
    tokens = torch.randint(1, 40, (40, 10), generator=torch.Generator().manual_seed(0))
    acts, cond, mask = read_sequences(adapter, hook, tokens)
    assert acts.shape == (40, 10, 32) and cond[..., 1].tolist()[0] == list(range(10))
    head = PrefixCodeHead(PrefixCodeConfig(d_in=32, vocab=40, n_pos=32, latent_dim=4, hidden=32, emb=4))
    fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=30, batch_size=200))
    return adapter, head


def _greedy_full(model, prompt, n):
    seq = prompt
    for _ in range(n):
        nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return seq


def test_gpt2_from_config_fit_steer_with_kv_cache_and_reload(gpt2, tmp_path):
    hook = "transformer.h.0"
    adapter, head = _fitted_gpt2_head(gpt2, hook)
    prompt = torch.randint(1, 40, (3, 4), generator=torch.Generator().manual_seed(1))
    edits = {0: 3.0, 2: -3.0}
    with torch.no_grad():
        plain = gpt2(prompt).logits
        with steer_sequences(adapter, hook, head, edits):
            steered = gpt2(prompt).logits
            cached = gpt2.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
            full = _greedy_full(gpt2, prompt, 6)
    assert (steered - plain).abs().amax() > 1e-4  # the edit reaches the output
    assert torch.equal(cached, full)  # KV-cached steps are edited exactly as full forwards are
    assert adapter.live_hooks == 0
    io.save(head, tmp_path / "head")
    again = io.load(tmp_path / "head")
    with torch.no_grad(), steer_sequences(adapter, hook, again, edits):
        assert torch.allclose(gpt2(prompt).logits, steered, atol=1e-6)
    codes = prefix_codes(adapter, hook, again, prompt)
    assert codes.shape == (3, 4, 4)


def test_a_cached_step_without_its_prompt_in_the_context_is_refused(gpt2):
    hook = "transformer.h.0"
    adapter, head = _fitted_gpt2_head(gpt2, hook)
    prompt = torch.randint(1, 40, (1, 4))
    with torch.no_grad():
        out = gpt2(prompt, use_cache=True)
        with steer_sequences(adapter, hook, head, {0: 1.0}), pytest.raises(RuntimeError, match="run the prompt inside"):
            gpt2(prompt[:, -1:], past_key_values=out.past_key_values, use_cache=True)
    assert adapter.live_hooks == 0
    with pytest.raises(ValueError, match="latent index 9"):
        with steer_sequences(adapter, hook, head, {9: 1.0}):
            pass


def test_transformer_lens_bridge_sequences_are_read_and_steered(tiny_bridge):
    adapter = attach(tiny_bridge)
    hook = "blocks.1.hook_resid_post"
    tokens = torch.randint(1, 20, (30, 8), generator=torch.Generator().manual_seed(0))
    acts, cond, mask = read_sequences(adapter, hook, tokens)
    assert acts.shape == (30, 8, 32) and torch.equal(cond[..., 0], tokens) and not mask[:, 0].any()
    head = PrefixCodeHead(PrefixCodeConfig(d_in=32, vocab=20, n_pos=16, latent_dim=3, hidden=16, emb=4))
    fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=10, batch_size=64))
    with torch.no_grad():
        plain = tiny_bridge(tokens[:2])
        with steer_sequences(adapter, hook, head, {1: 2.5}):
            steered = tiny_bridge(tokens[:2])
    assert (steered - plain).abs().amax() > 1e-5 and adapter.live_hooks == 0


def test_prefix_interchange_on_the_factor_lm_reads_sources_and_swaps_only_the_group():
    pytest.importorskip("transformer_lens")
    from probe_disentangle.hosts import load_host
    from probe_disentangle.steering import evaluate_interchange, prefix_interchanger, source_codes

    host = load_host("factor_lm")
    model, world = host.model, host.world
    adapter, hook = attach(model), "blocks.1.hook_resid_post"
    tokens = torch.from_numpy(world.sample(120, 0)[1]).long()
    attn = (tokens != world.tokenizer.pad_id).long()
    acts, cond, mask = read_sequences(adapter, hook, tokens, attn)
    assert not mask[tokens == world.tokenizer.pad_id].any()
    head = PrefixCodeHead(PrefixCodeConfig(d_in=acts.shape[-1], vocab=world.vocab_size, n_pos=tokens.shape[1]))
    fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=5, batch_size=256))
    codes = head.codes(acts, cond, mask)
    last = attn.sum(1) - 1  # the last real token of each sentence
    src = source_codes(adapter, hook, head, tokens[:7], world.tokenizer.pad_id)
    assert torch.allclose(src, codes[torch.arange(7), last[:7]], atol=1e-5)
    # swapping no latent reproduces every base exactly: Cause 0, Isolate 1
    none = prefix_interchanger(adapter, hook, head, [[] for _ in world.factor_names], world.tokenizer.pad_id)
    res = evaluate_interchange(model, world, none, factors=[0], n=6, seed=3)
    assert res["per_factor"]["animal"]["cause"] == 0.0 and res["per_factor"]["animal"]["isolate"] == 1.0
    some = prefix_interchanger(adapter, hook, head, [[0, 1]] * world.num_factors, world.tokenizer.pad_id)
    with pytest.raises(ValueError, match="one batch"), some(0, world.render(world.sample_factors(3, 0))):
        model(tokens[:2])
    with pytest.raises(ValueError, match="out of range"), some(99, tokens[:2]):
        pass
    assert adapter.live_hooks == 0


def test_onset_purity_is_the_mean_share_of_each_latents_most_common_onset(monkeypatch):
    """Known answer: latent 0 always takes its evidence at position 2; latent 1 at 2 in half the
    sequences and at 4 in the other half; latent 2 gets none (unused). Purity = (1 + 0.5) / 2."""
    head = _head(latent_dim=3)
    acts, cond, mask = _batch(B=40, T=6)
    g = torch.Generator().manual_seed(0)
    m = torch.zeros(40, 6, 3)
    prec = torch.zeros(40, 6, 3)
    m[:, :, :2] = 3 * torch.randn(40, 1, 2, generator=g)
    prec[:, 2, 0] = 50.0
    prec[:20, 2, 1] = 50.0
    prec[20:, 4, 1] = 50.0
    prec[:, 1:, :2] += 0.01  # a little evidence everywhere
    monkeypatch.setattr(head, "evidence", lambda a, c, k: (m, prec))
    on = head.onsets(acts, cond, mask)
    assert (on[:, 0] == 2).all() and (on[:20, 1] == 2).all() and (on[20:, 1] == 4).all()
    assert onset_purity(head, acts, cond, mask) == pytest.approx(0.75)


def test_restarts_keep_the_purest_head_without_labels():
    acts, cond, mask, _ = _toy_world(n=300)
    cfg = PrefixCodeConfig(d_in=16, vocab=8, n_pos=8, latent_dim=4, hidden=32, emb=4, centre="position")
    fit = PrefixFitConfig(steps=60, batch_size=256, lr=3e-3, seed=5)
    head, rows = fit_prefix_code_restarts(cfg, acts, cond, mask, fit, restarts=3)
    assert [r["seed"] for r in rows] == [5, 6, 7] and sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["onset_purity"] == max(r["onset_purity"] for r in rows)
    assert onset_purity(head, acts, cond, mask) == pytest.approx(chosen["onset_purity"])
    torch.manual_seed(chosen["seed"])  # the chosen restart is reproducible from its seed
    again = PrefixCodeHead(cfg)
    fit_prefix_code(again, acts, cond, mask, PrefixFitConfig(steps=60, batch_size=256, lr=3e-3, seed=chosen["seed"]))
    assert torch.equal(again.codes(acts, cond, mask), head.codes(acts, cond, mask))
    with pytest.raises(ValueError, match="restarts"):
        fit_prefix_code_restarts(cfg, acts, cond, mask, fit, restarts=0)


def test_read_world_sequences_renders_masks_padding_and_matches_read_sequences():
    pytest.importorskip("transformer_lens")
    import numpy as np

    from probe_disentangle.hosts import load_host
    from probe_disentangle.steering import first_written, read_world_sequences

    host = load_host("factor_lm")
    model, world = host.model, host.world
    adapter, hook = attach(model), "blocks.1.hook_resid_post"
    f = world.sample_factors(30, np.random.default_rng(0))
    acts, cond, mask = read_world_sequences(adapter, hook, world, f)
    tokens = torch.as_tensor(world.render(f)).long()
    attn = (tokens != world.tokenizer.pad_id).long()
    ref = read_sequences(adapter, hook, tokens, attn)
    assert torch.equal(acts, ref[0]) and torch.equal(cond, ref[1]) and torch.equal(mask, ref[2])
    assert not mask[:, 0].any() and not mask[tokens == world.tokenizer.pad_id].any()
    fw = first_written(world, f)  # the first sentence position some other value of the factor would change
    start = world.num_factors + 2  # after BOS, the plan's tags and ':'
    for j, size in enumerate(world.factor_sizes):
        changed = np.zeros(tokens.shape, dtype=bool)
        for shift in range(1, size):
            other = f.copy()
            other[:, j] = (other[:, j] + shift) % size
            changed |= world.render(other) != world.render(f)
        for i in range(len(f)):
            assert changed[i, fw[i, j]] and not changed[i, start : fw[i, j]].any(), (i, j)
