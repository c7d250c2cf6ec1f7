"""Encoder and decoder for activations that are spatial maps ``[C, H, W]`` (a UNet block's
output), used by a head through ``map_shape``: the head still reads and writes flattened vectors
``[B, C·H·W]``, so stores, probes and steering hooks treat it like any other.

Why a head on a map needs them: an MLP decoder (or a difference of means) turns a latent into a
fixed vector added to the map, which draws a faint copy of an average object over the one already
there; it cannot move an object. The spatial broadcast decoder (Watters et al. 2019) tiles the
latents over the grid beside two coordinate channels and decodes every position with the same
small convolutions, so a latent that says "x = 0.3" can draw the object at x = 0.3, and
``dec(z') − dec(z)`` can take it out where it was and draw it where it goes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_map_shape(map_shape: list[int] | tuple[int, ...], d_in: int) -> tuple[int, int, int]:
    """``map_shape`` as ``(C, H, W)``, refused unless its product is ``d_in``."""
    shape = tuple(int(s) for s in map_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"map_shape must be [channels, height, width], each ≥ 1, got {list(map_shape)}")
    c, h, w = shape
    if c * h * w != d_in:
        raise ValueError(
            f"map_shape {list(shape)} holds {c * h * w} values but d_in is {d_in}: pass the shape of one "
            "collected map, e.g. a UNet block's output [C, H, W] collected with layout='flatten'"
        )
    return shape


def conv_encoder(map_shape: tuple[int, int, int], d_out: int, width: int = 64, hidden: int = 256) -> nn.Sequential:
    """Flattened maps ``[B, C·H·W]`` → ``[B, d_out]``: stride-2 3×3 convolutions (``width``
    channels, SiLU) until the grid is at most 8×8, then an MLP layer of ``hidden`` units. A
    ``Sequential`` whose last layer gives the posterior's parameters, as the MLP encoders do."""
    c, h, w = map_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    while max(h, w) > 8 or len(layers) == 1:
        layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.SiLU()]
        c, h, w = width, (h + 1) // 2, (w + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


class BroadcastDecoder(nn.Module):
    """Spatial broadcast decoder: z tiled on a ``side`` grid (an int for a square, or
    ``(height, width)``) with x/y coordinates in [-1, 1], ``convs`` 3×3 convolutions of ``width``
    channels, then transposed convolutions up to the output (Watters et al. 2019, up-sampled to
    stay cheap), or a 1×1 convolution to ``out_channels`` when ``up_widths`` is empty (the grid is
    the output). Images (:class:`~probe_disentangle.image_models.ConvVAE`) and heads on maps share it."""

    def __init__(
        self,
        latent_dim: int,
        side: int | tuple[int, int],
        convs: int,
        width: int,
        up_widths: list[int],
        out_channels: int,
    ) -> None:
        super().__init__()
        h, w = (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))
        yy, xx = torch.meshgrid(torch.linspace(-1.0, 1.0, h), torch.linspace(-1.0, 1.0, w), indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)  # (1, 2, h, w)
        layers: list[nn.Module] = []
        d = latent_dim + 2
        for _ in range(convs):
            layers += [nn.Conv2d(d, width, 3, padding=1), nn.ReLU()]
            d = width
        for i, u in enumerate(up_widths):
            layers.append(nn.ConvTranspose2d(d, u, 4, stride=2, padding=1))
            if i < len(up_widths) - 1:
                layers.append(nn.ReLU())
            d = u
        if not up_widths:  # the grid is the output: a 1×1 conv to its channels
            layers.append(nn.Conv2d(d, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        b, k = z.shape
        h, w = self.coords.shape[-2:]
        grid = torch.cat([z[:, :, None, None].expand(b, k, h, w), self.coords.to(z.dtype).expand(b, 2, h, w)], 1)
        return self.net(grid)


class MapDecoder(nn.Module):
    """``[B, latent_dim]`` → flattened maps ``[B, C·H·W]``: a :class:`BroadcastDecoder` over the
    map's own grid (``depth`` convolutions of ``width`` channels, then 1×1 to ``C``)."""

    def __init__(self, latent_dim: int, map_shape: tuple[int, int, int], width: int = 64, depth: int = 3) -> None:
        super().__init__()
        c, h, w = map_shape
        self.broadcast = BroadcastDecoder(latent_dim, (h, w), depth, width, [], c)

    def forward(self, z: Tensor) -> Tensor:
        return self.broadcast(z).flatten(1)
