"""Heads on spatial maps (``heads/spatial.py``): a conv encoder and a spatial broadcast decoder
behind the same flattened-vector interface as every head."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from probe_disentangle.heads.spatial import BroadcastDecoder, MapDecoder, check_map_shape, conv_encoder
from probe_disentangle.heads.vae import VAEHead, VAEHeadConfig
from probe_disentangle.registry import config_from_dict, config_to_dict


def _blobs(xs: torch.Tensor, side: int = 16, y: float = 8.0) -> torch.Tensor:
    """One Gaussian blob per map ``[N, 1·side·side]`` centred at column ``xs`` and row ``y``."""
    u = torch.arange(side).float()
    gx = torch.exp(-((u[None, :] - xs[:, None]) ** 2) / 4)  # [N, W]
    gy = torch.exp(-((u - y) ** 2) / 4)  # [H]
    return (gy[None, :, None] * gx[:, None, :]).reshape(len(xs), -1)


def test_map_shape_must_hold_d_in_and_spatial_parts_need_it() -> None:
    assert check_map_shape([4, 8, 8], 256) == (4, 8, 8)
    with pytest.raises(ValueError, match="holds 128 values but d_in is 256"):
        check_map_shape([2, 8, 8], 256)
    with pytest.raises(ValueError, match=r"\[channels, height, width\]"):
        check_map_shape([16, 16], 256)
    with pytest.raises(ValueError, match="pass map_shape"):
        VAEHeadConfig(d_in=256, decoder="broadcast")
    with pytest.raises(ValueError, match="pass map_shape"):
        VAEHeadConfig(d_in=256, encoder="conv")
    with pytest.raises(ValueError, match="unknown encoder"):
        VAEHeadConfig(d_in=256, encoder="transformer", map_shape=[4, 8, 8])


def test_broadcast_decoder_puts_x_along_the_width_and_y_along_the_height() -> None:
    """With the convolutions set to pass one coordinate channel through, the output is that
    coordinate: x grows along the width, y along the height, each over [−1, 1], on a rectangle."""
    for channel, dim in ((0, 1), (1, 0)):  # coords channel 0 is x, 1 is y
        dec = BroadcastDecoder(latent_dim=3, side=(4, 6), convs=1, width=1, up_widths=[], out_channels=1)
        conv, out = dec.net[0], dec.net[2]
        with torch.no_grad():
            conv.weight.zero_(), conv.bias.fill_(2.0), out.bias.fill_(-2.0), out.weight.fill_(1.0)
            conv.weight[0, 3 + channel, 1, 1] = 1.0  # centre tap of the chosen coordinate
        m = dec(torch.randn(2, 3))[0, 0]  # [4, 6]; +2 keeps the ReLU open
        ramp = torch.linspace(-1, 1, m.shape[dim])
        want = ramp[None, :].expand_as(m) if dim == 1 else ramp[:, None].expand_as(m)
        torch.testing.assert_close(m, want)


def test_heads_on_maps_read_and_write_flat_vectors_and_save_as_json() -> None:
    cfg = VAEHeadConfig(d_in=3 * 12 * 20, latent_dim=5, encoder="conv", decoder="broadcast", map_shape=(3, 12, 20))
    assert cfg.map_shape == [3, 12, 20]  # a list: what JSON gives back
    head = VAEHead(cfg)
    x = torch.randn(7, 3 * 12 * 20)
    mu, logvar = head.encode(x)
    assert mu.shape == logvar.shape == (7, 5)
    assert head.decode(mu).shape == (7, 3 * 12 * 20)
    again = config_from_dict(VAEHeadConfig, json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg
    enc = conv_encoder((3, 12, 20), 4, width=8)
    assert [type(m) for m in enc][:2] == [nn.Unflatten, nn.Conv2d]  # ≥ one stride-2 conv
    assert enc(x).shape == (7, 4)
    assert MapDecoder(5, (3, 12, 20), width=8, depth=1)(mu).shape == (7, 720)


def test_a_broadcast_head_moves_the_object_its_latent_encodes() -> None:
    """Known answer: maps of one blob whose only factor is its column. After a short fit the most
    used latent reads the column, and decoding one blob's code with that latent set to another
    blob's value draws the blob at the other column, not two faint blobs."""
    torch.manual_seed(0)
    xs = torch.rand(512) * 9 + 3  # columns 3-12 of 16
    maps = _blobs(xs)
    head = VAEHead(
        VAEHeadConfig(
            d_in=256,
            latent_dim=3,
            encoder="conv",
            decoder="broadcast",
            map_shape=[1, 16, 16],
            conv_width=16,
            hidden=64,
            depth=2,
            objective="beta_vae",
            objective_args={"beta": 0.5},
        )
    )
    opt = torch.optim.Adam(head.parameters(), 3e-3)
    for step in range(250):
        idx = torch.randint(0, len(maps), (32,))
        loss = head.loss(maps[idx] * 4, step).total  # × 4: a Gaussian likelihood that notices the blob
        opt.zero_grad(), loss.backward(), opt.step()
    head.eval()
    with torch.no_grad():
        mu, _ = head.encode(_blobs(torch.tensor([4.0, 11.0])) * 4)
        k = int(head.encode(maps * 4)[0].std(0).argmax())
        z = mu[:1].clone()
        z[0, k] = mu[1, k]
        moved = head.decode(z).reshape(16, 16)
    column = moved.sum(0)
    assert abs(int(column.argmax()) - 11) <= 1, column
    assert float(column[:7].max()) < 0.25 * float(column.max())  # nothing left at the old place


def test_the_normaliser_of_a_map_head_has_one_scale_per_channel() -> None:
    """Known answer: pooled statistics equal the channel's mean and std over every position and
    sample, computed directly; a probe with a map head fits with them."""
    from probe_disentangle.store import RunningStats

    torch.manual_seed(0)
    maps = torch.randn(50, 2, 3, 4) * torch.tensor([1.0, 5.0])[None, :, None, None] + torch.arange(12.0).reshape(3, 4)
    stats = RunningStats()
    stats.update(maps.flatten(1))
    pooled = stats.normalizer().pooled_over_positions([2, 3, 4])
    per_channel = maps.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(pooled.mean.reshape(2, 12), per_channel.mean(1, keepdim=True).expand(2, 12))
    # the pooled variance divides each position's sum by n − 1, as the per-position one does
    n = maps.shape[0]
    within = maps.var(0, unbiased=True).reshape(2, 12)
    between = (maps.mean(0).reshape(2, 12) - per_channel.mean(1, keepdim=True)) ** 2
    want = (within + between).mean(1, keepdim=True).sqrt().expand(2, 12)
    torch.testing.assert_close(pooled.std.reshape(2, 12), want)
    assert n == 50
    with pytest.raises(ValueError, match="holds 8 values but the vectors have 24"):
        stats.normalizer().pooled_over_positions([2, 2, 2])


def test_a_probe_with_a_map_head_pools_its_normaliser(tmp_path) -> None:
    from probe_disentangle import Probe
    from probe_disentangle.train import TrainConfig

    torch.manual_seed(0)
    host = nn.Sequential(nn.Linear(32, 32))  # its output read as [2, 4, 4] maps
    x = torch.randn(64, 32)
    probe = Probe(
        host,
        "0",
        head_config={
            "latent_dim": 2,
            "encoder": "conv",
            "decoder": "broadcast",
            "map_shape": [2, 4, 4],
            "conv_width": 4,
            "hidden": 8,
            "depth": 1,
        },
    )
    probe.fit([x], TrainConfig(steps=3, batch_size=16))
    std = probe.normalizer.std.reshape(2, 16)
    assert torch.equal(std, std[:, :1].expand(2, 16))  # one scale per channel
    probe.save_pretrained(tmp_path / "p")
    again = Probe.from_pretrained(tmp_path / "p", host)
    torch.testing.assert_close(again.encode(x[:4]), probe.encode(x[:4]))
