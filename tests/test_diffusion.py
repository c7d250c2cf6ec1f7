"""probe_disentangle.diffusion: the DDPM objective, the trainable wrapper, the image stream, export/load."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from probe_disentangle import io  # noqa: E402
from probe_disentangle.diffusion import (  # noqa: E402
    DDPMConfig,
    DDPMModel,
    SpriteImageStream,
    ddim_sample,
    deepen_unet,
    epsilon_loss,
    export_pipeline,
    load_ddpm_pipeline,
    q_sample,
)
from probe_disentangle.train import TrainConfig, Trainer  # noqa: E402
from probe_disentangle.worlds.sprites import ColourSprites  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, num_train_timesteps=100)


def tiny(**kw) -> DDPMModel:
    torch.manual_seed(0)
    return DDPMModel(DDPMConfig(**{**TINY, **kw}))


def test_q_sample_known_answer():
    x0, noise = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), 1.0)
    ac = torch.tensor([0.64, 0.36])
    out = q_sample(x0, noise, torch.tensor([0, 1]), ac)
    assert torch.allclose(out[0], torch.full((1, 2, 2), 0.8 * 2 + 0.6 * 1))
    assert torch.allclose(out[1], torch.full((1, 2, 2), 0.6 * 2 + 0.8 * 1))
    with pytest.raises(ValueError, match="same shape"):
        q_sample(x0, noise[:1], torch.tensor([0, 1]), ac)


def test_epsilon_loss_is_the_mean_squared_error():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert float(epsilon_loss(a, b)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="shape"):
        epsilon_loss(a, b[:, :1])


def test_config_checks_name_the_problem():
    with pytest.raises(ValueError, match="norm_num_groups"):
        DDPMConfig(block_out_channels=(10, 16), norm_num_groups=4)
    with pytest.raises(ValueError, match="beta_schedule"):
        DDPMConfig(beta_schedule="cosine")
    with pytest.raises(ValueError, match="sample_size"):
        DDPMConfig(sample_size=30, block_out_channels=(8, 16, 16), norm_num_groups=4)
    unet = DDPMConfig().unet_kwargs()
    assert unet["down_block_types"][-1] == "AttnDownBlock2D" and unet["up_block_types"][0] == "AttnUpBlock2D"


def test_stream_batches_are_seeded_and_resume_at_their_position():
    world = ColourSprites(image_size=32, antialias=True)
    s = SpriteImageStream(world, 4, seed=3)
    it = iter(s)
    first = [next(it) for _ in range(3)]
    assert first[0].shape == (4, 3, 32, 32) and first[0].min() >= -1 and first[0].max() <= 1
    assert not torch.equal(first[0], first[1])
    t = SpriteImageStream(world, 4, seed=3)
    t.load_stream_state(s.stream_state())
    assert torch.equal(next(iter(t)), s.batch(3))
    assert torch.equal(t.batch(1), first[1])
    with pytest.raises(ValueError, match="seed"):
        SpriteImageStream(world, 4, seed=4).load_stream_state(s.stream_state())


def test_training_lowers_the_loss_updates_the_ema_and_round_trips(tmp_path):
    model = tiny(sample_size=8)
    x = torch.rand(64, 3, 8, 8) * 2 - 1
    before = [p.clone() for p in model.ema.parameters()]
    trainer = Trainer(model, TrainConfig(steps=16, batch_size=16, lr=3e-3, log_every=4, progress=False, device="cpu"))
    res = trainer.fit(x)
    assert res.history[-1]["mse"] < res.history[0]["mse"]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.ema.parameters(), strict=True))
    io.save(model, tmp_path / "m")
    back = io.load(tmp_path / "m")
    assert back.config == model.config
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="trains on images"):
        model.training_step(torch.zeros(2, 3, 4, 4), 0, lambda *a: None)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("layers", [2, 3])
def test_deepen_unet_starts_as_the_same_function_and_then_learns(attention, layers):
    """A deeper UNet loaded by deepen_unet predicts exactly what the trained one does (noise at every
    timestep), and the new blocks are not dead: their zero weights get a gradient at once, and after
    one step every parameter does."""
    shallow = tiny(sample_size=8, attention=attention).unet
    with torch.no_grad():  # a trained-looking source, far from any initialisation
        for p in shallow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    deep = tiny(sample_size=8, attention=attention, layers_per_block=layers).unet
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in shallow.parameters())
    x, t = torch.randn(4, 3, 8, 8), torch.tensor([0, 7, 50, 99])
    before = deep(x, t).sample
    assert deepen_unet(shallow, deep) is deep
    with torch.no_grad():
        want = shallow(x, t).sample
        assert (before - want).abs().max() > 0.1  # the fresh deep UNet was another function
        torch.testing.assert_close(deep(x, t).sample, want, rtol=0, atol=1e-6)
    opt = torch.optim.SGD(deep.parameters(), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        deep(x, t).sample.square().mean().backward()
        dead = [n for n, p in deep.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        if step == 0:  # the zeroed weights themselves learn first (what feeds them waits one step)
            assert dead and not [n for n in dead if n.endswith(("conv2.weight", "to_out.0.weight"))]
        opt.step()
    assert dead == []


def test_deepen_unet_names_what_it_cannot_grow():
    a, b = tiny(sample_size=8).unet, tiny(sample_size=8, block_out_channels=(8, 32), layers_per_block=2).unet
    with pytest.raises(ValueError, match="block_out_channels"):
        deepen_unet(a, b)
    with pytest.raises(ValueError, match="grows layers_per_block only"):
        deepen_unet(tiny(sample_size=8, layers_per_block=2).unet, a)


def test_resume_is_bit_identical_on_the_stream(tmp_path):
    world = ColourSprites(image_size=8, antialias=True)

    def run(until, resume):
        torch.manual_seed(0)
        cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, progress=False, device="cpu", checkpoint_dir=str(tmp_path))
        tr = Trainer(tiny(sample_size=8), cfg)
        tr.fit(SpriteImageStream(world, 4, seed=1), resume=resume, until=until, overwrite=not resume)
        return tr.model

    full = run(None, False)
    run(3, False)
    resumed = run(None, True)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_ddim_sampling_is_deterministic_and_export_load_round_trips(tmp_path):
    model = tiny(sample_size=8).eval()
    unet = model.sampling_unet()
    a = ddim_sample(unet, model.scheduler(), 3, steps=4, seed=5, batch_size=2)
    b = ddim_sample(unet, model.scheduler(), 3, steps=4, seed=5, batch_size=2)
    assert a.shape == (3, 3, 8, 8) and torch.equal(a, b) and a.abs().max() <= 1
    assert torch.allclose(a, ddim_sample(unet, model.scheduler(), 3, steps=4, seed=5), atol=1e-4)  # one batch
    export_pipeline(model, tmp_path / "pipe", {"quality": {"valid_fraction": 0.0}})
    files = sorted(p.name for p in (tmp_path / "pipe").iterdir())
    assert files == ["card.json", "model_index.json", "scheduler", "unet"]
    assert (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = load_ddpm_pipeline(tmp_path / "pipe")
    assert type(pipe).__name__ == "DDIMPipeline" and type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.card == {"quality": {"valid_fraction": 0.0}}
    c = ddim_sample(pipe.unet, pipe.scheduler, 3, steps=4, seed=5, batch_size=2)
    # the exported EMA UNet samples the same images (to float rounding: from_pretrained may lay the
    # same weights out differently, which reorders some reductions)
    assert torch.allclose(a, c, atol=1e-5)
    # DDIM starts from t = T − 1, pure noise as in training ("trailing"), and the export keeps it
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps.tolist() == [99, 74, 49, 24]  # T = 100 here; "leading": 75, 50, 25, 0
    export_pipeline(model, tmp_path / "pipe", {})  # a re-export replaces the folder
    with pytest.raises(FileNotFoundError, match="export_pipeline"):
        load_ddpm_pipeline(tmp_path)


def test_quality_benchmark_rejects_a_random_unet(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sprites_ddpm_quality import factor_table, measure_quality

    model = tiny(sample_size=32).eval()
    report = measure_quality(model.sampling_unet(), model.scheduler(), samples=8, steps=3, seed=0)
    assert report["samples"] == 8 and report["valid_fraction"] <= 0.25
    assert set(report["factors"]) == {"shape", "scale", "orientation", "pos_x", "pos_y", "hue"}
    # known answer: rendered factors spread uniformly have TV 0 on a balanced table, 1 - 1/K on a constant one
    world = ColourSprites(image_size=32, antialias=True)
    f = np.zeros((8, 6), dtype=int)
    f[:, 5] = np.arange(8)
    table = factor_table(f, world)
    assert table["hue"]["tv_from_uniform"] == 0.0
    assert table["scale"]["tv_from_uniform"] == pytest.approx(1 - 1 / 6, abs=1e-4)
    assert table["orientation"]["tv_from_uniform"] == pytest.approx(1 - 1 / 10, abs=1e-4)  # squares: period 10


def test_quality_benchmark_script_writes_json(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sprites_ddpm_quality

    io.save(tiny(sample_size=32), tmp_path / "ck")
    out = tmp_path / "q.json"
    argv = ["x", "--checkpoint", str(tmp_path / "ck"), "--samples", "4", "--steps", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    sprites_ddpm_quality.main()
    assert "valid" in capsys.readouterr().out and json.loads(out.read_text())["samples"] == 4


def test_the_shipped_ddpm_warns_while_it_is_still_training(tmp_path, monkeypatch):
    from probe_disentangle import zoo

    model = tiny(sample_size=8).eval()
    export_pipeline(model, tmp_path / "z", {"status": "in training: 0.25 of DDIM samples valid"})
    monkeypatch.setattr(zoo, "SPRITES_DDPM_DIR", tmp_path / "z")
    with pytest.warns(UserWarning, match="in training: 0.25"):
        zoo.load_sprites_ddpm()
    export_pipeline(model, tmp_path / "z", {"status": "shipped"})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.load_sprites_ddpm()
