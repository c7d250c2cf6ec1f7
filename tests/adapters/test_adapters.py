"""Adapters: reading matches a cache, editing is exact, hooks never outlive their context."""

import pytest
import torch
from torch import nn

from probe_disentangle.adapters import HookedTransformerAdapter, HookError, TorchModuleAdapter, attach

HOOK = "blocks.1.hook_resid_post"


def _n_forward_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_attach_picks_the_adapter_and_lists_close_matches(tiny_bridge):
    assert isinstance(attach(tiny_bridge, HOOK), HookedTransformerAdapter)
    assert isinstance(attach(nn.Linear(2, 2)), TorchModuleAdapter)
    with pytest.raises(HookError, match=r"did you mean \['blocks.1.hook_resid_post'"):
        attach(tiny_bridge, "blocks.1.hook_resid_pst")
    with pytest.raises(TypeError, match="nn.Module"):
        attach(object())


def test_collect_matches_run_with_cache_and_excludes_bos(tiny_bridge):
    toks = torch.randint(0, 20, (3, 7), generator=torch.Generator().manual_seed(1))
    acts = attach(tiny_bridge).collect(toks, HOOK)
    _, cache = tiny_bridge.run_with_cache(toks)
    torch.testing.assert_close(acts.vectors, cache[HOOK][:, 1:].reshape(-1, 32))
    assert acts.index[:, 1].min() == 1 and acts.index.shape == (18, 2)
    with_bos = HookedTransformerAdapter(tiny_bridge, exclude_bos=False).collect(toks, HOOK)
    assert with_bos.vectors.shape == (21, 32)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    masked = attach(tiny_bridge).collect({"tokens": toks, "attention_mask": mask}, HOOK)
    assert masked.vectors.shape[0] == 18 - 2
    # each vector's conditioning is its token id and position
    assert torch.equal(acts.conditioning, torch.stack([toks[:, 1:].reshape(-1), acts.index[:, 1]], 1))
    assert masked.conditioning.shape == (16, 2) and int(masked.conditioning[:, 1].max()) == 6


def test_forward_stops_after_the_hook_layer(tiny_bridge):
    a = attach(tiny_bridge)
    seen = []
    with a.hook("blocks.2.hook_resid_post", lambda x: seen.append(1)):
        out = a.forward(torch.zeros(1, 4, dtype=torch.long), stop_after="blocks.0.hook_resid_post")
    assert not seen  # the later block never ran
    assert out.shape == (1, 4, 32)  # TransformerLens' native stop_at_layer returns the residual
    seen_mod = []
    mod = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    am = attach(mod)
    with am.hook("2", lambda x: seen_mod.append(1)):
        assert am.forward(torch.zeros(2, 3), stop_after="0") is None
    assert not seen_mod


def test_edit_is_exact_and_nests(tiny_bridge):
    a = attach(tiny_bridge)
    toks = torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(2))
    base = tiny_bridge(toks)
    shift = torch.randn(32)
    with a.edit(HOOK, lambda v: v + shift):
        _, cache = tiny_bridge.run_with_cache(toks)
        with a.edit(HOOK, lambda v: v * 0):
            inner = a.collect(toks, HOOK)
        assert a.live_hooks == 1
    assert torch.all(inner.vectors == 0)  # inner edit runs after the outer one
    _, clean = tiny_bridge.run_with_cache(toks)
    torch.testing.assert_close(cache[HOOK][:, 1:], clean[HOOK][:, 1:] + shift)
    torch.testing.assert_close(cache[HOOK][:, 0], clean[HOOK][:, 0])  # BOS position untouched
    assert torch.equal(tiny_bridge(toks), base)


def test_hooks_removed_on_exceptions(tiny_bridge):
    a = attach(tiny_bridge)
    before = _n_forward_hooks(tiny_bridge)

    def boom(v):
        raise RuntimeError("inside the hook")

    with pytest.raises(RuntimeError, match="inside the hook"), a.edit(HOOK, boom):
        tiny_bridge(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(KeyError), a.edit(HOOK, lambda v: v):
        raise KeyError("user code")
    assert _n_forward_hooks(tiny_bridge) == before and a.live_hooks == 0


def test_torch_module_layouts():
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU())
    a = attach(conv)
    x = torch.randn(2, 2, 5, 5)
    acts = a.collect(x, "0")
    assert acts.vectors.shape == (2 * 25, 4)
    torch.testing.assert_close(acts.vectors[7], conv[0](x)[0, :, 1, 2])  # position 7 = (row 1, col 2)
    with a.edit("0", lambda v: v + 1.0):
        y = conv(x)
    torch.testing.assert_close(y, torch.relu(conv[0](x) + 1.0))

    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)

        def forward(self, input_ids, attention_mask=None):
            return self.emb(input_ids)

    t = attach(Tok())
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    got = t.collect({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}, "emb")
    assert got.vectors.shape == (5, 6)
    assert got.conditioning.tolist() == [[1, 0], [2, 1], [3, 2], [4, 0], [5, 1]]  # (token id, position)
    assert a.collect(x, "0").conditioning is None  # images: nothing to tell
    with pytest.raises(ValueError, match="layout"):
        TorchModuleAdapter(Tok(), layout="pixels")


def test_hf_model_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformer_lens")
    from probe_disentangle.adapters import load_transformer

    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=30, n_positions=16)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "gpt2-tiny")
    toks = torch.randint(0, 30, (2, 5), generator=torch.Generator().manual_seed(0))
    # the plain HF model through the torch-module adapter (dotted path; blocks return tuples)
    a = attach(hf, "transformer.h.0")
    hf_vecs = a.collect({"input_ids": toks}, "transformer.h.0").vectors
    assert hf_vecs.shape == (10, 16)
    # the same weights through TransformerLens
    bridge = load_transformer(str(tmp_path / "gpt2-tiny"), device="cpu")
    b = attach(bridge, "blocks.0.hook_resid_post")
    tl_vecs = HookedTransformerAdapter(bridge, exclude_bos=False).collect(toks, "blocks.0.hook_resid_post").vectors
    torch.testing.assert_close(tl_vecs, hf_vecs, rtol=1e-4, atol=1e-4)
    assert b.layer_of("blocks.0.hook_resid_post") == 0
