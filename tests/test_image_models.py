"""ConvVAE and InfoGAN: shapes, determinism, save/load, training on sprites and digits."""

import math

import numpy as np
import pytest
import torch

from probe_disentangle import io, losses
from probe_disentangle.image_models import DIGITS_TRAIN, ConvVAE, ConvVAEConfig, InfoGAN, InfoGANConfig, random_shift
from probe_disentangle.metrics import cluster_accuracy
from probe_disentangle.train import TrainConfig, Trainer
from probe_disentangle.worlds import ColourSprites, Sprites, digit_images

TINY_VAE = {"channels": [4, 4, 8, 8], "hidden": 16, "latent_dim": 3}
TINY_DISC = {"disc_hidden": 8, "disc_depth": 1}


def _vae(objective="beta_tcvae", seed=0, **kw):
    torch.manual_seed(seed)
    args = {"factor_vae": dict(TINY_DISC), "beta_tcvae": {"dataset_size": 1000}}.get(objective, {})
    args.update(kw.pop("objective_args", {}))
    return ConvVAE(ConvVAEConfig(**{**TINY_VAE, **kw}, objective=objective, objective_args=args))


def _gan(seed=0, **kw):
    torch.manual_seed(seed)
    base = {"image_size": 8, "width": 4, "hidden": 16, "q_hidden": 8, "noise_dim": 4, "categorical": [3]}
    return InfoGAN(InfoGANConfig(**{**base, **kw}))


@pytest.fixture(scope="module")
def sprites():
    _, x = Sprites().sample(32, 0)
    return torch.from_numpy(x)


@pytest.fixture(scope="module")
def digits():
    return digit_images()


def _fit(model, data, steps, lr, batch_size, seed=0, **kw):
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, progress=False, seed=seed, log_every=steps, **kw)
    return Trainer(model, cfg).fit(data)


# ------------------------------------------------------------------------------ ConvVAE


@pytest.mark.parametrize("channels,size", [(1, 64), (3, 64), (1, 32)])
def test_conv_vae_shapes(channels, size):
    m = _vae(in_channels=channels, image_size=size).eval()
    x = torch.rand(5, channels, size, size)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    assert m.decode(mu).shape == x.shape
    rec = m.reconstruct(x)
    assert rec.shape == x.shape and 0 <= rec.min() and rec.max() <= 1  # Bernoulli: probabilities
    out, mu2, _, z = m(x)
    assert out.shape == x.shape and torch.equal(z, mu2)  # eval: z is the posterior mean
    assert m.kl_per_latent(x).shape == (3,)


def test_encode_posteriors_batches_the_encoder_in_eval_mode():
    m = _vae().train()
    x = torch.rand(7, 1, 64, 64)
    means, logvars = m.encode_posteriors(x.numpy(), batch=3)  # arrays too, in batches of 3
    assert not m.training
    mu, logvar = m.encode(x)
    np.testing.assert_allclose(means, mu.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvars, logvar.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.encode_means(x, batch=3), means)


def test_default_network_is_burgess_et_al():
    m = ConvVAE(ConvVAEConfig())
    convs = [l for l in m.encoder if isinstance(l, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert m.encoder[-1].out_features == 20 and m.encoder[-3].out_features == 256
    deconvs = [l for l in m.decoder_conv if isinstance(l, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in deconvs] == [64, 32, 32, 1]
    assert m.bernoulli and m.objective.reconstruction == "bernoulli"


def test_gaussian_decoder_outputs_means():
    m = _vae("beta_vae", objective_args={"reconstruction": "gaussian"}).eval()
    z = torch.randn(2, 3)
    assert torch.equal(m.decode_image(z), m.decode(z))
    assert not m.bernoulli


def test_bool_and_uint8_images_are_converted():
    m = _vae().eval()
    x = torch.rand(2, 1, 64, 64) > 0.5
    assert torch.equal(m.encode(x)[0], m.encode(x.float())[0])
    u8 = x.to(torch.uint8) * 255
    assert torch.allclose(m.encode(u8)[0], m.encode(x.float())[0])


def test_conv_vae_config_errors():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*4"):
        ConvVAEConfig(image_size=40)
    with pytest.raises(ValueError, match="unknown objective"):
        ConvVAEConfig(objective="gan")
    with pytest.raises(ValueError, match=r"\[batch, 1, 64, 64\].*\(2, 3, 64, 64\)"):
        _vae().encode(torch.rand(2, 3, 64, 64))


def test_conv_vae_determinism():
    x = torch.rand(4, 1, 64, 64)
    a, b = _vae(seed=3), _vae(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    a.eval()
    assert torch.equal(a.encode(x)[0], a.encode(x)[0])
    torch.manual_seed(1)
    r1 = a.train().loss(x).total
    torch.manual_seed(1)
    r2 = a.loss(x).total
    assert torch.equal(r1, r2)


@pytest.mark.parametrize("objective", sorted(losses.OBJECTIVES))
def test_every_objective_trains_a_step(objective, sprites):
    m = _vae(objective)
    res = _fit(m, sprites, steps=2, lr=1e-3, batch_size=8)
    assert all(np.isfinite(v) for v in res.last.values())
    expected = {"vae", "disc"} if objective == "factor_vae" else {"vae"}
    assert set(m.configure_optimizers(1e-3)) == expected
    if objective == "factor_vae":
        assert "disc_acc" in res.last


@pytest.mark.parametrize("objective", ["beta_tcvae", "factor_vae", "beta_vae"])
def test_short_training_lowers_the_loss(objective, sprites):
    m = _vae(objective)
    torch.manual_seed(0)
    _assert_training_halves_the_loss(m, sprites)


def _assert_training_halves_the_loss(m, sprites):
    m.eval()
    with torch.no_grad():
        before = m.loss(sprites).total.item()
    _fit(m, sprites, steps=40, lr=3e-3, batch_size=16)
    m.eval()
    with torch.no_grad():
        after = m.loss(sprites).total.item()
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("disc_dtype", ["float32", "bfloat16"])
def test_conv_vae_save_load_round_trip(tmp_path, sprites, disc_dtype):
    m = _vae("factor_vae", objective_args={"disc_dtype": disc_dtype})
    _fit(m, sprites, steps=2, lr=1e-3, batch_size=8)
    io.save(m, tmp_path / "m")
    back = io.load(tmp_path / "m")
    assert isinstance(back, ConvVAE) and back.config == m.config
    assert back.objective.discriminator.dtype == disc_dtype
    m.eval()
    assert torch.equal(back.encode(sprites)[0], m.encode(sprites)[0])
    assert torch.equal(back.reconstruct(sprites), m.reconstruct(sprites))
    z = back.encode(sprites)[0]
    assert torch.equal(back.objective.discriminator(z), m.objective.discriminator(z))


@pytest.mark.parametrize("side", [4, 16, 64])
def test_broadcast_decoder_shapes_and_coordinates(side):
    m = _vae(decoder="broadcast", broadcast_side=side, broadcast_width=8)
    assert not hasattr(m, "decoder_fc") and m.decode(torch.randn(5, 3)).shape == (5, 1, 64, 64)
    xy = m.decoder_broadcast.coords[0]
    assert xy.shape == (2, side, side) and "decoder_broadcast.coords" not in m.state_dict()
    lin = torch.linspace(-1, 1, side)
    assert torch.equal(xy[0], lin.expand(side, side)) and torch.equal(xy[1], lin[:, None].expand(side, side))


def test_broadcast_decoder_moves_an_edge_with_one_latent():
    """z tiled next to the coordinates: a ramp relu(x - z0) puts its edge where z0 says, in every row."""
    m = _vae(decoder="broadcast", broadcast_side=64, broadcast_convs=1, broadcast_width=1)
    conv, _, out = m.decoder_broadcast.net
    with torch.no_grad():
        conv.weight.zero_(), conv.bias.zero_(), out.bias.zero_(), out.weight.fill_(1.0)
        conv.weight[0, 3, 1, 1] = 1.0  # x coordinate (channels: z0, z1, z2, x, y)
        conv.weight[0, 0, 1, 1] = -1.0  # minus z0
        img = m.decode(torch.tensor([[-0.5, 3.0, -3.0], [0.5, 0.0, 0.0]]))[:, 0]
    lin = torch.linspace(-1, 1, 64)
    for i, edge in enumerate((-0.5, 0.5)):
        want = (lin - edge).clamp(min=0).expand(64, 64)
        assert torch.allclose(img[i, 1:-1, 1:-1], want[1:-1, 1:-1], atol=1e-6)  # the border sees padding


def test_broadcast_decoder_config_errors():
    for side in (0, 3, 24, 2):  # 2: 64 / 2 needs five up-samplings, the default decoder has four
        with pytest.raises(ValueError, match="broadcast_side"):
            ConvVAEConfig(decoder="broadcast", broadcast_side=side)
    with pytest.raises(ValueError, match="unknown decoder 'mlp'"):
        ConvVAEConfig(decoder="mlp")
    with pytest.raises(ValueError, match="broadcast_convs"):
        ConvVAEConfig(decoder="broadcast", broadcast_convs=0)


def test_broadcast_decoder_trains_saves_and_loads(tmp_path, sprites):
    m = _vae(decoder="broadcast", broadcast_width=8)
    _assert_training_halves_the_loss(m, sprites)
    io.save(m, tmp_path / "m")
    back = io.load(tmp_path / "m")
    assert back.config == m.config and back.config.decoder == "broadcast"
    assert torch.equal(back.reconstruct(sprites), m.reconstruct(sprites))


def test_colour_sprites_three_channels():
    _, x = ColourSprites(num_hues=3).sample(8, 0)
    m = _vae("beta_vae", in_channels=3)
    res = _fit(m, torch.from_numpy(x), steps=2, lr=1e-3, batch_size=4)
    assert np.isfinite(res.last["loss"])


# ------------------------------------------------------------------------------ InfoGAN


@pytest.mark.parametrize("size,channels", [(8, 1), (64, 1), (64, 3), (16, 3)])
def test_infogan_shapes(size, channels):
    m = _gan(image_size=size, channels=channels, continuous=2).eval()
    noise, cat, cont = m.sample_codes(6, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (6, 4) and cat.shape == (6, 1) and cont.shape == (6, 2)
    assert cat.max() < 3 and cont.abs().max() <= 1
    x = m.generate(noise, cat, cont)
    assert x.shape == (6, channels, size, size) and 0 <= x.min() and x.max() <= 1
    assert m.discriminate(x).shape == (6,)
    codes = m.encode(x)
    assert codes.shape == (6, 3) and set(codes[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    logits, mean, logvar = m.q(x)
    assert logits[0].shape == (6, 3) and mean.shape == logvar.shape == (6, 2)


def test_infogan_config_errors():
    with pytest.raises(ValueError, match="power of two"):
        InfoGANConfig(image_size=28)
    with pytest.raises(ValueError, match="≥ 2 values"):
        InfoGANConfig(categorical=[1])
    with pytest.raises(ValueError, match="at least one"):
        InfoGANConfig(categorical=[], continuous=0)
    m = _gan()
    with pytest.raises(ValueError, match="generate expects"):
        m.generate(torch.zeros(2, 5), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 2))


def test_digit_images_are_the_bundled_digits_in_unit_range(digits):
    from sklearn.datasets import load_digits

    x, y = digits
    raw = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 1  # grey levels 0–16 over 16
    assert torch.equal(x[5, 0] * 16, torch.tensor(raw.images[5], dtype=torch.float32))
    assert np.array_equal(y, raw.target) and np.bincount(y).min() >= 170  # ten near-balanced classes


def test_digits_config_is_chen_et_al_mnist_network_and_takes_overrides():
    c = InfoGANConfig.digits()
    assert (c.image_size, c.channels, c.noise_dim, c.categorical, c.continuous) == (8, 1, 62, [10], 2)
    assert (c.width, c.hidden, c.q_hidden, c.gen_lr_scale) == (64, 1024, 128, 5.0)
    assert InfoGANConfig.digits(noise_dim=16, lambda_cat=2.0).noise_dim == 16
    assert DIGITS_TRAIN == {"steps": 3000, "batch_size": 128, "lr": 2e-4, "grad_clip": None}
    with pytest.raises(ValueError, match="categorical codes need ≥ 2 values"):
        InfoGANConfig.digits(categorical=[1])


def test_code_probabilities_are_q_softmax_and_agree_with_encode(digits):
    m = _gan(categorical=[3, 4]).eval()
    x = digits[0][:10]
    probs = m.code_probabilities(x)
    assert [p.shape for p in probs] == [(10, 3), (10, 4)]
    assert all(torch.allclose(p.sum(-1), torch.ones(10)) and (p >= 0).all() for p in probs)
    codes = m.encode(x)
    assert torch.equal(codes[:, 0].long(), probs[0].argmax(-1)) and torch.equal(codes[:, 1].long(), probs[1].argmax(-1))
    logits = m.q(x)[0]
    assert torch.allclose(probs[1], torch.exp(logits[1] - logits[1].logsumexp(-1, keepdim=True)))


def test_lambda_real_raises_q_information_on_real_images_and_is_validated(digits):
    x = digits[0][:256]

    def real_mi(m):
        m.eval()
        with torch.no_grad():
            return float(losses.categorical_mi_on_data(m.q(x)[0][0]))

    plain, real = _gan(seed=3, categorical=[4]), _gan(seed=3, categorical=[4], lambda_real=5.0)
    res = _fit(real, x, steps=60, lr=3e-3, batch_size=32)
    _fit(plain, x, steps=60, lr=3e-3, batch_size=32)
    assert "info_real" in res.last and "info_real" not in _fit(_gan(), x[:16], steps=1, lr=1e-3, batch_size=8).last
    assert real_mi(real) > real_mi(plain) + 0.3 and real_mi(real) > 0.4 * math.log(4)  # 0.80 against 0.33 nats
    with pytest.raises(ValueError, match="lambda_real must be ≥ 0"):
        InfoGANConfig(lambda_real=-1.0)
    with pytest.raises(ValueError, match="only with a categorical code"):
        InfoGANConfig(categorical=[], continuous=2, lambda_real=1.0)


def test_random_shift_moves_each_image_by_its_own_offset_within_the_bound():
    x = torch.zeros(200, 2, 8, 8)
    x[:, :, 3, 4] = 1.0  # one lit pixel per channel
    x[:, 1, 3, 4] = 2.0
    moved = random_shift(x, 1, generator=torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and torch.equal(random_shift(x, 0), x)
    for img in moved:
        [(r0, c0)], [(r1, c1)] = img[0].nonzero().tolist(), img[1].nonzero().tolist()
        assert (r0, c0) == (r1, c1) and abs(r0 - 3) <= 1 and abs(c0 - 4) <= 1  # channels move together
        assert img[1].sum() == 2.0
    offsets = {tuple(img[0].nonzero()[0].tolist()) for img in moved}
    assert len(offsets) == 9  # all 3×3 offsets occur in 200 draws
    edge = torch.zeros(1, 1, 8, 8)
    edge[0, 0, 0, :] = 1.0  # a top row shifted up falls off: zeros fill in, nothing wraps
    assert all(
        random_shift(edge, 1, generator=torch.Generator().manual_seed(s)).sum() in (0.0, 7.0, 8.0) for s in range(20)
    )


def test_real_shift_pairs_views_and_is_validated(digits):
    m = _gan(seed=1, categorical=[4], lambda_real=2.0, real_shift=1)
    res = _fit(m, digits[0][:64], steps=3, lr=1e-3, batch_size=16)
    assert "info_real" in res.last and 0 <= res.last["info_real"] <= math.log(4) + 1e-5
    with pytest.raises(ValueError, match="real_shift must be in"):
        InfoGANConfig(image_size=8, real_shift=4)


def test_infogan_generator_lr_is_scaled():
    opts = _gan(gen_lr_scale=5.0).configure_optimizers(2e-4)
    assert opts["disc"].param_groups[0]["lr"] == pytest.approx(2e-4)
    assert opts["gen"].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_infogan_determinism_and_round_trip(tmp_path, digits):
    a, b = _gan(seed=5, continuous=1), _gan(seed=5, continuous=1)
    codes = a.sample_codes(4, generator=torch.Generator().manual_seed(1))
    a.eval()
    b.eval()
    assert torch.equal(a.generate(*codes), b.generate(*codes))
    x = digits[0][:16]
    _fit(a, x, steps=3, lr=1e-3, batch_size=8)
    io.save(a, tmp_path / "g")
    back = io.load(tmp_path / "g")
    assert back.config == a.config
    assert torch.equal(back.generate(*codes), a.generate(*codes))
    assert torch.equal(back.encode(x), a.encode(x))


def test_infogan_resume_is_bit_identical(tmp_path, digits):
    x = digits[0][:64]
    ref = _gan(continuous=1)
    _fit(ref, x, steps=4, lr=1e-3, batch_size=8)
    part = _gan(continuous=1)
    cfg = dict(checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=2)
    t = Trainer(part, TrainConfig(steps=4, batch_size=8, lr=1e-3, progress=False, **cfg))
    t.fit(x, until=2)
    resumed = _gan(seed=9, continuous=1)
    Trainer(resumed, TrainConfig(steps=4, batch_size=8, lr=1e-3, progress=False, **cfg)).fit(x, resume=True)
    sd, sd2 = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_infogan_q_recovers_the_code_of_generated_samples(digits):
    """After a short run, Q reads G's categorical code back far better than chance (1/5)."""
    m = _gan(categorical=[5], continuous=1, width=8, hidden=32)
    res = _fit(m, digits[0], steps=40, lr=1e-3, batch_size=16)
    assert {"disc", "gen", "info_cat", "info_cont", "info_q"} <= set(res.last)
    m.eval()
    noise, cat, cont = m.sample_codes(500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = m.encode(m.generate(noise, cat, cont))[:, 0].long()
    acc = (pred == cat[:, 0]).float().mean().item()
    assert acc > 0.6, acc


@pytest.mark.slow
def test_infogan_digits_categorical_code_matches_the_class(digits):
    """The issue's floor: ≥ 90 % code ↔ digit accuracy under the best assignment (see examples/digits_infogan.py).

    The library's digits recipe (``InfoGANConfig.digits``, ``DIGITS_TRAIN``: Chen et al.'s MNIST
    settings plus Q's shifted-pair term on real digits), 3,000 steps, ~4 minutes on one CPU
    thread. Over eight one-thread seeds it reaches a median of 90.3 % (72.8–94.8 %;
    ``benchmarks/infogan_digits.py``, benchmarks/RESULTS.md); this is seed 1, at 92.9 %, near
    that median. A GAN's run depends on the order of float sums, hence on the thread count, so
    the test pins one thread to check the same run everywhere.
    """
    x, y = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(1)
        m = InfoGAN(InfoGANConfig.digits())
        _fit(m, x, seed=1, **DIGITS_TRAIN)
    finally:
        torch.set_num_threads(threads)
    m.eval()
    with torch.no_grad():
        pred = m.encode(x)[:, 0].long().numpy()
    acc = cluster_accuracy(pred, y)["cluster_accuracy"]
    assert acc >= 0.90, acc


def test_beta_tcvae_bank_trains_saves_and_resumes_with_the_model(tmp_path):
    # the bank of past posteriors is part of the objective's state: a checkpointed run resumes
    # with it and a saved model loads it back
    torch.manual_seed(0)
    x = (torch.rand(40, 1, 64, 64) > 0.7).float()
    args = {"beta": 6.0, "dataset_size": 40, "bank": 12}
    m = ConvVAE(ConvVAEConfig(latent_dim=3, objective="beta_tcvae", objective_args=args))
    Trainer(m, TrainConfig(steps=3, batch_size=8, progress=False)).fit(x)
    assert m.objective.bank_state.tolist() == [12, 0]  # 24 posteriors through 12 slots
    assert m.objective.bank_mu.abs().sum() > 0
    io.save(m, tmp_path / "m")
    back = io.load(tmp_path / "m")
    assert back.config.objective_args == args  # latent_dim is filled in by the model, not stored
    for name in ("bank_mu", "bank_logvar", "bank_state"):
        assert torch.equal(getattr(back.objective, name), getattr(m.objective, name))


def test_factor_vae_step_leaves_the_discriminator_out_of_the_vae_backward():
    # D's weights get gradients from the discriminator step only; the VAE step's TC term still
    # reaches the encoder through D
    torch.manual_seed(0)
    m = ConvVAE(ConvVAEConfig(latent_dim=3, objective="factor_vae", objective_args={"gamma": 35.0})).train()
    disc = list(m.objective.discriminator.parameters())
    seen = {}

    def optimize(name, result):
        for p in m.parameters():
            p.grad = None
        result.total.backward()
        seen[name] = ([p.grad is None for p in disc], m.encoder[0].weight.grad is not None)

    m.training_step(torch.rand(8, 1, 64, 64), 0, optimize)
    assert all(seen["vae"][0]) and seen["vae"][1]
    assert not any(seen["disc"][0])
    assert all(p.requires_grad for p in disc)  # restored for its own optimiser
