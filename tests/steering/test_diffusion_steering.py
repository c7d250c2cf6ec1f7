"""steering/diffusion.py and Probe.steer(timesteps=) on tiny UNets built from configs (no downloads)."""

import numpy as np
import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")

from probe_disentangle import Probe  # noqa: E402
from probe_disentangle.diffusion import ddim_sample  # noqa: E402
from probe_disentangle.steering.diffusion import (  # noqa: E402
    WindowedAdapter,
    ddim_invert,
    evaluate_image_steering,
    sampling_trajectories,
    window_filter,
)
from probe_disentangle.train import TrainConfig  # noqa: E402


def unet2d():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8,
    ).eval()  # fmt: skip


class _Out:
    def __init__(self, sample):
        self.sample = sample


class ZeroEps(nn.Module):
    """A UNet stand-in that predicts ε = 0: DDIM then keeps x̂₀ fixed, a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.config = type("C", (), {"in_channels": 3, "sample_size": 4})()

    def forward(self, x, t):
        return _Out(torch.zeros_like(x) * self.w)


def scheduler():
    return diffusers.DDIMScheduler(num_train_timesteps=1000)


def test_ddim_inversion_with_a_zero_noise_model_is_the_closed_form_and_sampling_undoes_it():
    x0 = torch.rand(5, 3, 4, 4) * 2 - 1
    s = scheduler()
    xT, inputs, index = ddim_invert(ZeroEps(), s, x0, steps=10, batch_size=2)
    a_T = s.alphas_cumprod[int(s.timesteps[0])]
    assert torch.allclose(xT, a_T.sqrt() * x0, atol=1e-6)  # x_t = √ᾱ_t x₀ when ε̂ = 0
    ts = sorted({int(t[0]) for _, t in inputs})
    assert ts == sorted(int(t) for t in s.timesteps) and len(inputs) == 3 * 10  # 3 batches × 10 steps
    assert index.tolist() == ([0, 1] * 10) + ([2, 3] * 10) + [4] * 10
    back = ddim_sample(ZeroEps(), scheduler(), 5, steps=10, noise=xT)
    assert torch.allclose(back, x0.clamp(-1, 1), atol=1e-5)


def test_inversion_of_a_real_unet_follows_the_update_and_keeps_only_the_window():
    u = unet2d()
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    xT, inputs, index = ddim_invert(u, scheduler(), x0, steps=20, keep=window_filter((500, 999)))
    assert all(500 <= int(t[0]) <= 999 for _, t in inputs) and len(inputs) == 10 and len(index) == 30
    # two steps by hand: from the clean image (ᾱ = 1) to t₀, then to t₁, with the UNet's ε̂
    s = scheduler()
    two, _, _ = ddim_invert(u, s, x0, steps=2)
    t0, t1 = sorted(int(t) for t in s.timesteps)
    a0, a1 = s.alphas_cumprod[t0], s.alphas_cumprod[t1]
    with torch.no_grad():
        e = u(x0, torch.full((3,), t0)).sample
        x = a0.sqrt() * (x0 - 0 * e) + (1 - a0).sqrt() * e
        e = u(x, torch.full((3,), t1)).sample
        x = a1.sqrt() * (x - (1 - a0).sqrt() * e) / a0.sqrt() + (1 - a1).sqrt() * e
    assert torch.allclose(two, x, atol=1e-5)


def test_sampling_trajectories_are_the_sampling_loops_inputs_with_their_sample_rows():
    u = unet2d()
    images, inputs, index = sampling_trajectories(u, scheduler(), 5, steps=4, seed=3, batch_size=2)
    assert torch.equal(images, ddim_sample(u, scheduler(), 5, steps=4, seed=3, batch_size=2))
    assert len(inputs) == 3 * 4 and sum(len(x) for x, _ in inputs) == len(index) == 5 * 4
    assert index[:2].tolist() == [0, 1] and index[-1].item() == 4
    # the last sampling step's input, run once more, gives the image the loop made from it
    kept = sampling_trajectories(u, scheduler(), 5, steps=4, seed=3, batch_size=2, keep=window_filter((0, 300)))[1]
    assert {int(t[0]) for _, t in kept} <= set(range(0, 301)) and kept


def test_probe_fits_on_trajectories_and_steers_only_inside_the_window():
    u = unet2d()
    _, inputs, _ = sampling_trajectories(u, scheduler(), 16, steps=5, seed=0, batch_size=8)
    probe = Probe(u, "mid_block", head_config={"latent_dim": 3, "hidden": 32})
    probe.fit(inputs, TrainConfig(steps=3, batch_size=8, progress=False), normalizer_vectors=64)
    base = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    with probe.steer(u, {0: 3.0}, timesteps=(10_000, 20_000)):  # no step inside: bit-identical
        same = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    assert torch.equal(same, base)
    with probe.steer(u, {0: ("add", 0.0)}, timesteps=(0, 999)):  # an empty edit at every step: bit-identical
        same = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    assert torch.equal(same, base)
    with probe.steer(u, {0: 3.0}, timesteps=(500, 999)):
        early = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    with probe.steer(u, {0: 3.0}):
        every = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    assert not torch.equal(early, base) and not torch.equal(every, early)
    assert not u._forward_hooks and not u._forward_pre_hooks and not u.mid_block._forward_hooks
    with pytest.raises(ValueError, match="no(ne)?.*drop timesteps|drop timesteps"):
        with Probe(nn.Sequential(nn.Linear(4, 4)), "0", head=probe.head).steer(edits={0: 1.0}, timesteps=(0, 1)):
            pass


def test_windowed_adapter_limits_a_plain_steerer_and_refuses_hosts_without_timesteps():
    from probe_disentangle.adapters import attach

    u = unet2d()
    a = attach(u, "mid_block")
    base = ddim_sample(u, scheduler(), 2, steps=5, seed=9)
    w = WindowedAdapter(a, (10_000, 20_000))
    with w.edit("mid_block", lambda v: v + 5.0):
        assert torch.equal(ddim_sample(u, scheduler(), 2, steps=5, seed=9), base)
    with WindowedAdapter(a, None).edit("mid_block", lambda v: v + 5.0):
        assert not torch.equal(ddim_sample(u, scheduler(), 2, steps=5, seed=9), base)
    assert w.hook_names() == a.hook_names()  # the rest is the adapter's
    with pytest.raises(TypeError, match="knows no timesteps"):
        WindowedAdapter(attach(nn.Sequential(nn.Linear(2, 2)), "0"), (0, 1))


class FakeReadout:
    """Reads factor 0 from the mean brightness (3 levels), factor 1 from the red-minus-green sign;
    an image with a negative blue mean is not valid."""

    factor_names = ("shape", "scale")

    def read(self, images):
        m = images.mean(dim=(1, 2, 3))
        f0 = (m * 3).floor().clamp(0, 2).long()
        f1 = (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long()
        valid = images[:, 2].mean((1, 2)) >= 0.25
        return {"factors": torch.stack([f0, f1], 1), "valid": valid}


def test_image_steering_scores_success_leakage_and_validity_on_a_known_answer():
    torch.manual_seed(0)
    base = torch.zeros(10, 3, 4, 4)  # in [-1, 1]: brightness 0.5 → factor 0 = 1; red = green → 0
    state = {"shift": None}

    def sample():
        x = base.clone()
        if state["shift"] is not None:
            x = x + state["shift"]
        return x

    import contextlib

    @contextlib.contextmanager
    def steerer(f, v):
        if f == 0:  # a clean edit: brightness moves, red − green and validity stay
            state["shift"] = torch.full((10, 3, 4, 4), (v - 1) * 0.6)
            state["shift"][:, 2] = 0.0
            state["shift"][:, 0] += 0.0
        else:  # red up for value 1 in half the images, and every one of them brighter (a leak)
            s = torch.zeros(10, 3, 4, 4)
            s[:5, 0] = 1.0 if v == 1 else 0.0
            state["shift"] = s
        try:
            yield
        finally:
            state["shift"] = None

    out = evaluate_image_steering(sample, FakeReadout(), steerer, {0: [0, 2], 1: [1]})
    assert out["base_valid_rate"] == 1.0
    assert out["shape"]["success"] == 1.0 and out["shape"]["valid_rate"] == 1.0
    assert out["shape"]["leakage"] == 0.0
    assert out["scale"]["success"] == 0.5  # only half the images turned red
    assert np.isclose(out["scale"]["leakage"], 0.5)  # and those also got brighter: factor 0 moved


def test_image_steering_counts_rejected_images_as_failures_without_reading_their_orientation():
    """A steered image the readout rejects reads -1 for every factor (shape too): it is a failure
    and no leak, and its orientation is never scored (it has no shape to take a period from)."""
    import contextlib

    class SixFactorReadout:
        factor_names = ["shape", "scale", "orientation", "pos_x", "pos_y", "hue"]

        def read(self, images):
            valid = images[:, 0, 0, 0] < 0.9  # a bright corner: rejected
            f = torch.zeros(len(images), 6, dtype=torch.long)
            f[:, 2] = (images[:, 1, 0, 0] * 10).round().long()  # orientation level from green
            f[~valid] = -1
            return {"factors": f, "valid": valid}

    state = {"x": None}

    def sample():
        return torch.zeros(4, 3, 2, 2) - 1 if state["x"] is None else state["x"]

    @contextlib.contextmanager
    def steerer(f, v):
        x = torch.zeros(4, 3, 2, 2) - 1  # [-1, 1]: 0 after (x + 1) / 2
        x[:, 1] = 2 * v / 10 - 1  # green reads orientation v
        x[:2, 0] = 1.0  # the first two images rejected
        state["x"] = x
        try:
            yield
        finally:
            state["x"] = None

    out = evaluate_image_steering(sample, SixFactorReadout(), steerer, {2: [3], 1: [0]})
    assert out["orientation"]["success"] == 0.5 and out["orientation"]["valid_rate"] == 0.5
    assert out["orientation"]["leakage"] == 0.0  # the valid half moved orientation only
    assert out["scale"]["success"] == 0.5 and out["scale"]["leakage"] == 0.0  # orientation stayed at 0


def test_random_directions_are_seeded_orthonormal_and_steer_like_pca():
    from probe_disentangle.adapters import attach
    from probe_disentangle.steering import directions_steerer, random_directions

    d = random_directions(12, 4, seed=3)
    assert d.shape == (4, 12) and torch.allclose(d @ d.T, torch.eye(4), atol=1e-6)
    assert torch.equal(d, random_directions(12, 4, seed=3)) and not torch.equal(d, random_directions(12, 4, seed=4))
    # factor 0 lives on direction 2 exactly: the steerer aligns it and sets that projection only
    g = torch.Generator().manual_seed(0)
    f0 = torch.randint(0, 2, (400,), generator=g)
    acts = torch.randn(400, 12, generator=g) * 0.01 + (f0.float() * 4.0)[:, None] * d[2]
    host = nn.Sequential(nn.Identity())
    steer, alignment = directions_steerer(attach(host, "0"), "0", acts, d, f0.numpy()[:, None], [2], strength=1.0)
    assert alignment == [2]
    x = torch.zeros(3, 12)
    with steer(0, 1):
        y = host(x)
    proj = (y - acts.mean(0)) @ d.T
    target = ((acts[f0 == 1] - acts.mean(0)) @ d[2]).mean()
    assert torch.allclose(proj[:, 2], target.expand(3), atol=1e-5)
    assert torch.allclose((y - x) @ d[[0, 1, 3]].T, torch.zeros(3, 3), atol=1e-5)  # only direction 2 moved


def test_image_interchange_with_no_latent_is_the_base_and_a_swap_reaches_the_source():
    from probe_disentangle.steering.diffusion import image_interchange

    u = unet2d()
    _, inputs, _ = sampling_trajectories(u, scheduler(), 16, steps=5, seed=0, batch_size=8)
    probe = Probe(u, "mid_block", head_config={"latent_dim": 3, "hidden": 32})
    probe.fit(inputs, TrainConfig(steps=3, batch_size=8, progress=False), normalizer_vectors=64)
    base, source, same = image_interchange(probe, u, scheduler(), [], 3, 5, (500, 999), base_seed=1, source_seed=2)
    assert torch.equal(same, base) and torch.equal(base, ddim_sample(u, scheduler(), 3, steps=5, seed=1))
    assert torch.equal(source, ddim_sample(u, scheduler(), 3, steps=5, seed=2))
    _, _, swapped = image_interchange(probe, u, scheduler(), [0, 1, 2], 3, 5, (500, 999), base_seed=1, source_seed=2)
    assert not torch.equal(swapped, base)  # every latent of the source's codes moved the base run
    assert not u._forward_hooks and not u._forward_pre_hooks and not u.mid_block._forward_hooks
    # several factors on the same pairs: base and source drawn once, each swap equal to its own call
    from probe_disentangle.steering.diffusion import image_interchanges

    b2, s2, many = image_interchanges(probe, u, scheduler(), {"a": [0], "b": [1, 2]}, 3, 5, (500, 999), 1, 2)
    assert torch.equal(b2, base) and torch.equal(s2, source) and set(many) == {"a", "b"}
    for key, lat in (("a", [0]), ("b", [1, 2])):
        one = image_interchange(probe, u, scheduler(), lat, 3, 5, (500, 999), base_seed=1, source_seed=2)[2]
        assert torch.equal(many[key], one), key


def test_image_interchange_scores_known_answer():
    from probe_disentangle.steering.diffusion import image_interchange_scores

    # FakeReadout: factor 0 from brightness, factor 1 from red − green
    base = torch.zeros(4, 3, 4, 4)
    source = torch.zeros(4, 3, 4, 4) + 0.6  # brighter: factor 0 differs
    swapped = base.clone()
    swapped[:2] += 0.6  # two of four took the source's factor 0; none moved factor 1
    out = image_interchange_scores(FakeReadout(), base, source, swapped, factor=0)
    assert out == {"cause": 0.5, "isolate": 1.0, "disentangle": 0.75, "valid_pairs": 4}


def test_activation_interchange_known_answers_on_a_tiny_unet():
    """Interchanging the UNet's first layer at every step makes every forward of the interchanged
    run predict the source run's noise bit for bit (the images still differ: DDIM's update adds
    the base's own x_t); a window no timestep falls in gives the base run; no hook is left."""
    from probe_disentangle.demo_diffusion import tiny_unet
    from probe_disentangle.diffusion import ddim_sample, make_scheduler
    from probe_disentangle.steering import activation_interchange

    unet = tiny_unet(0)
    sched = make_scheduler({"num_train_timesteps": 1000}, "ddim")
    eps = []
    handle = unet.register_forward_hook(lambda m, a, out: eps.append(out.sample.clone()))
    try:  # the source run's 4 forwards, then the base's, then the interchanged run's
        base, source, swapped = activation_interchange(unet, sched, "conv_in", 3, 4, None, base_seed=1, source_seed=2)
    finally:
        handle.remove()
    assert len(eps) == 12 and all(torch.equal(eps[8 + i], eps[i]) for i in range(4))
    assert not torch.equal(eps[4], eps[0]) and not torch.equal(swapped, base)
    _, _, kept = activation_interchange(unet, sched, "mid_block", 3, 4, (2000, 3000), base_seed=1, source_seed=2)
    assert torch.equal(kept, base)
    _, _, mid = activation_interchange(unet, sched, "mid_block", 3, 4, (500, 999), base_seed=1, source_seed=2)
    assert not torch.equal(mid, base) and not torch.equal(mid, source)  # some steps swapped, not the last ones
    assert torch.equal(ddim_sample(unet, sched, 3, steps=4, seed=1, batch_size=3), base)  # no hook left
    assert not unet._forward_hooks and not unet._forward_pre_hooks
    with pytest.raises(ValueError):
        activation_interchange(unet, sched, "no_such_block", 3, 4, None, base_seed=1, source_seed=2)
