"""adapters/diffusers_unet.py on tiny UNets built from configs (no downloads)."""

import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from probe_disentangle.adapters import DiffusersUNetAdapter, HookError, attach  # noqa: E402
from probe_disentangle.adapters.diffusers_unet import default_window, load_unet  # noqa: E402


def unet2d():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8,
    ).eval()  # fmt: skip


def unet_cond():
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=12, attention_head_dim=4,
    ).eval()  # fmt: skip


def test_attach_picks_the_adapter_for_unets_and_pipelines():
    u = unet2d()
    a = attach(u, "mid_block")
    assert isinstance(a, DiffusersUNetAdapter) and a.model is u
    pipe = diffusers.DDIMPipeline(unet=u, scheduler=diffusers.DDIMScheduler())
    b = attach(pipe, "up_blocks.1")
    assert isinstance(b, DiffusersUNetAdapter) and b.model is u and b.host is pipe
    assert "mid_block" in b.block_paths() and "down_blocks.0" in b.block_paths()


def test_a_bad_block_path_lists_the_valid_ones():
    with pytest.raises(HookError, match=r"valid block paths: .*mid_block"):
        attach(unet2d(), "mid_blok")


def test_collect_shapes_timestep_tagging_and_filtering():
    u = unet2d()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([10, 500, 900])
    acts = DiffusersUNetAdapter(u).collect((x, t), "mid_block")
    assert acts.vectors.shape == (3, 16 * 4 * 4) and acts.conditioning.flatten().tolist() == [10, 500, 900]
    pooled = DiffusersUNetAdapter(u, layout="pool").collect((x, t), "mid_block")
    assert pooled.vectors.shape == (3, 16)
    pos = DiffusersUNetAdapter(u, layout="positions").collect((x, t), "mid_block")
    assert pos.vectors.shape == (3 * 16, 16) and pos.conditioning[:16].eq(10).all()
    kept = DiffusersUNetAdapter(u, timesteps=[500, 900]).collect((x, t), "mid_block")
    assert kept.index[:, 0].tolist() == [1, 2] and kept.conditioning.flatten().tolist() == [500, 900]
    assert torch.equal(kept.vectors, acts.vectors[1:])
    scalar = DiffusersUNetAdapter(u).collect({"sample": x, "timestep": 7}, "mid_block")
    assert scalar.conditioning.flatten().tolist() == [7, 7, 7]
    with pytest.raises(HookError, match="kept nothing"):
        DiffusersUNetAdapter(u, timesteps=[1]).collect((x, t), "mid_block")


def test_record_during_ddim_sampling_tags_every_step():
    u = unet2d()
    sched = diffusers.DDIMScheduler(num_train_timesteps=100)
    sched.set_timesteps(4)
    a = DiffusersUNetAdapter(u, layout="pool")
    with a.record("mid_block", timesteps=[int(sched.timesteps[0])]) as rec:
        x = torch.randn(2, 3, 8, 8)
        for s in sched.timesteps:
            x = sched.step(u(x, s).sample, s, x).prev_sample
    acts = rec.activations()
    assert acts.vectors.shape == (2, 16) and acts.conditioning.flatten().eq(int(sched.timesteps[0])).all()
    assert a.live_hooks == 0


def test_edits_apply_only_in_the_window_and_hooks_are_removed():
    u = unet2d()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([100, 800])
    with torch.no_grad():
        before = u(x, t).sample
        a = DiffusersUNetAdapter(u)
        with a.edit("mid_block", lambda v: v + 1.0, window=default_window(1000)):
            edited = u(x, t).sample
        with a.edit("mid_block", lambda v: v + 1.0, window=(0, 50)):
            outside = u(x, t).sample
        with pytest.raises(RuntimeError, match="boom"), a.edit("mid_block", lambda v: v * 0):
            raise RuntimeError("boom")
        after = u(x, t).sample
    assert torch.equal(edited[0], before[0]) or torch.allclose(edited[0], before[0], atol=1e-5)
    assert not torch.allclose(edited[1], before[1])
    assert torch.equal(outside, before) and torch.equal(after, before)
    assert a.live_hooks == 0 and not u._forward_pre_hooks and not u.mid_block._forward_hooks
    assert default_window(1000) == (500, 999)


def test_unet2d_condition_model_and_pipeline_edit():
    u = unet_cond()
    x, t, enc = torch.randn(2, 4, 8, 8), torch.tensor([3, 3]), torch.randn(2, 5, 12)
    acts = attach(u, "mid_block").collect({"sample": x, "timestep": t, "encoder_hidden_states": enc}, "mid_block")
    assert acts.vectors.shape[0] == 2 and acts.conditioning.flatten().tolist() == [3, 3]
    with pytest.raises(HookError, match="valid block paths"):
        attach(u, "down_blocks.9")


def test_load_unet_from_a_local_folder_and_a_missing_diffusers(tmp_path, monkeypatch):
    u = unet2d()
    u.save_pretrained(tmp_path / "u")
    back = load_unet(tmp_path / "u")
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([5])
    with torch.no_grad():
        # same weights bit for bit; the outputs agree to float rounding (diffusers' from_pretrained may
        # lay tensors out differently, which changes the order of some reductions)
        assert all(torch.equal(p, q) for p, q in zip(back.state_dict().values(), u.state_dict().values(), strict=True))
        assert torch.allclose(back(x, t).sample, u(x, t).sample, atol=1e-5)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match=r"probe-disentangle\[diffusion\]"):
        load_unet(tmp_path / "u")


def test_collect_many_reads_several_blocks_from_one_forward_that_stops_after_the_deepest():
    u = unet2d()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([10, 500, 900])
    for adapter in (DiffusersUNetAdapter(u, layout="pool"), DiffusersUNetAdapter(u, timesteps=[500, 900])):
        calls: list[int] = []
        handle = u.up_blocks[1].register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
        try:
            acts = adapter.collect_many((x, t), ["up_blocks.0", "down_blocks.1"])
        finally:
            handle.remove()
        assert calls == [] and adapter.live_hooks == 0  # the block after the deepest one never ran
        for hook in ("up_blocks.0", "down_blocks.1"):
            one = adapter.collect((x, t), hook)
            assert torch.equal(acts[hook].vectors, one.vectors) and torch.equal(acts[hook].index, one.index)
            assert torch.equal(acts[hook].conditioning, one.conditioning)
