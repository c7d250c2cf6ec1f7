"""Difference of means per (token, position) (steering.positionwise): known answers on a toy
world of vectors, and the edit on a Hugging Face GPT-2 built from a config."""

import numpy as np
import pytest
import torch

from probe_disentangle.adapters import attach
from probe_disentangle.steering import TokenPositionMeans, positionwise_edit


def _world(n=400, T=5, d=6, vocab=4, seed=0, u=1.0, w=1.0):
    """vector = E[token] + P[position] + u·U[value of factor 0] + w·W[value of factor 1] from position 2."""
    g = torch.Generator().manual_seed(seed)
    E, P, U, W = (torch.randn(*s, generator=g) for s in ((vocab, d), (T, d), (3, d), (2, d)))
    f = np.stack([torch.randint(0, 3, (n,), generator=g).numpy(), torch.randint(0, 2, (n,), generator=g).numpy()], 1)
    tok = torch.randint(0, vocab, (n, T), generator=g)
    pos = torch.arange(T).expand(n, T)
    ft = torch.as_tensor(f)
    acts = E[tok] + P[pos] + u * U[ft[:, 0]][:, None] + w * (pos >= 2)[..., None] * W[ft[:, 1]][:, None]
    mask = torch.ones(n, T, dtype=torch.bool)
    mask[:, 0] = False
    return acts, torch.stack([tok, pos], -1), mask, f, (U, W)


def test_means_nearest_values_and_shifts_are_exact_on_a_known_world():
    acts, cond, mask, f, (U, W) = _world(w=0.0)
    tpm = TokenPositionMeans(acts, cond, mask, f, [3, 2])
    tok, pos = cond[..., 0], cond[..., 1]
    sl = (slice(None), slice(1, None))  # BOS was never counted
    assert torch.equal(tpm.nearest_value(acts, tok, pos, 0)[sl], torch.as_tensor(f[:, 0])[:, None].expand(-1, 4))
    to = torch.as_tensor((f[:, 0] + 1) % 3)
    moved = tpm.shift(acts, tok, pos, 0, to, tpm.nearest_value(acts, tok, pos, 0))
    want = acts + (U[to] - U[torch.as_tensor(f[:, 0])])[:, None]
    assert torch.allclose(moved[sl], want[sl], atol=1e-5)
    # factor 1 is written from position 2 on: at position 1 its values share one mean, so a move is 0
    acts, cond, mask, f, (U, W) = _world(u=0.0)
    tpm, tok, pos = TokenPositionMeans(acts, cond, mask, f, [3, 2]), cond[..., 0], cond[..., 1]
    to1 = torch.as_tensor(1 - f[:, 1])
    moved1 = tpm.shift(acts, tok, pos, 1, to1, tpm.nearest_value(acts, tok, pos, 1))
    assert torch.allclose(moved1[:, 1], acts[:, 1], atol=1e-5)
    assert torch.allclose(moved1[:, 2:], (acts + (W[to1] - W[torch.as_tensor(f[:, 1])])[:, None])[:, 2:], atol=1e-5)
    # a push from the (token, position) mean: exactly U[v] − the mean of U over the sequences seen there
    acts, cond, mask, f, (U, W) = _world(w=0.0)
    tpm, tok, pos = TokenPositionMeans(acts, cond, mask, f, [3, 2]), cond[..., 0], cond[..., 1]
    push = tpm.shift(acts, tok, pos, 0, torch.zeros(len(acts), dtype=torch.long)) - acts
    key = tok[:, 3] * 5 + 3
    rows = key == key[0]
    mean_u = U[torch.as_tensor(f[:, 0])][rows].mean(0)
    assert torch.allclose(push[0, 3], U[0] - mean_u, atol=1e-5)


def test_unseen_cells_are_left_alone_and_bad_input_is_named():
    acts, cond, mask, f, _ = _world(n=50)
    tpm = TokenPositionMeans(acts, cond, mask, f, [3, 2])
    tok, pos = cond[..., 0], cond[..., 1]
    assert (tpm.nearest_value(acts, tok, pos, 0)[:, 0] == -1).all()  # BOS: no mean
    same = tpm.shift(acts, tok, pos, 0, torch.zeros(50, dtype=torch.long), tpm.nearest_value(acts, tok, pos, 0))
    assert torch.equal(same[:, 0], acts[:, 0])
    with pytest.raises(ValueError, match="factor 5 out of range"):
        tpm.nearest_value(acts, tok, pos, 5)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        tpm.shift(acts, tok, pos, 0, torch.full((50,), 3))
    with pytest.raises(ValueError, match="factors must be"):
        TokenPositionMeans(acts, cond, mask, f[:, :1], [3, 2])
    with pytest.raises(ValueError, match="must agree"):
        TokenPositionMeans(acts, cond[:, :2], mask, f, [3, 2])


def test_positionwise_edit_on_a_gpt2_edits_every_position_but_bos():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=30, n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    adapter = attach(model)
    hook = "transformer.h.0"
    ids = torch.randint(0, 30, (2, 6))
    seen = []
    with adapter.hook(hook, lambda a: seen.append(a.clone())):
        base = model(ids).logits
    with positionwise_edit(adapter, hook, lambda a, t, p: a), torch.no_grad():
        same = model(ids).logits
    assert torch.equal(same, base)
    got = []
    with positionwise_edit(adapter, hook, lambda a, t, p: a + p[..., None].float()):
        with adapter.hook("transformer.h.1", lambda a: got.append(a.clone())):
            moved = model(ids).logits
    assert not torch.allclose(moved, base)
    assert torch.allclose(moved[:, 0], base[:, 0])  # BOS (position 0) kept, and nothing before it changed
