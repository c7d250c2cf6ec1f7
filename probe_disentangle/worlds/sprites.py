"""dSprites-like procedural sprites, rendered on the fly with no data download.

Factors follow dSprites (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset):
3 shapes (square, ellipse, heart) x 6 scales in [0.5, 1] x 40 orientations in [0, 2*pi)
x 32 x-positions x 32 y-positions = 737,280 binary 64x64 images. Each shape is an implicit
function ``f(u, v) <= 0`` in its own frame; rendering rotates and scales the pixel grid into
that frame for a whole batch at once (torch, vectorised), only inside a window around each
sprite, and writes the window back into the image. The heart is the sextic heart curve
``(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0``. ``ColourSprites`` adds a hue factor and three channels.

Conventions: image rows grow downwards; ``pos_x`` moves the sprite right and ``pos_y`` moves
it down; orientation rotates the shape frame by the angle (counter-clockwise on screen).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from probe_disentangle.worlds.base import World

__all__ = ["SHAPES", "ColourSprites", "Sprites"]

SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")

# Geometry in image units (the image spans [0, 1] on each axis).
_BASE_HALF_SIZE = 0.15  # half-extent of a scale-1 sprite's frame: 2 * 0.15 * 64 = 19.2 px wide
_CENTRE_LO, _CENTRE_HI = 0.22, 0.78  # sprite centres; every rotated sprite stays in the image
_ELLIPSE_ASPECT = 0.5  # minor / major semi-axis
# Heart curve spans x in [-1.139, 1.139], y in [-1, 1.236] (y up); map it onto u, v in [-1, 1].
_HEART_STRETCH = 1.139
_HEART_SHIFT = 0.118
# Elements per chunk of the batched computation: keeps temporaries cache-sized.
_CHUNK_ELEMENTS = 1 << 18


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean mask of points ``(u, v)`` (shape frame, all shapes within [-1, 1]^2) inside ``shape``."""
    if shape == 0:  # square
        return torch.maximum(u.abs(), v.abs()) <= 1.0
    if shape == 1:  # ellipse, major axis along u
        return u * u + (v * (1.0 / _ELLIPSE_ASPECT)) ** 2 <= 1.0
    # heart, point down on screen at orientation 0 (v grows downwards, the curve's y grows upwards)
    x = u * _HEART_STRETCH
    y = _HEART_SHIFT - v * _HEART_STRETCH
    x2 = x * x
    r = x2 + y * y - 1.0
    return r * r * r - x2 * y * y * y <= 0.0


class Sprites(World):
    """dSprites-like world: shape, scale, orientation, pos_x, pos_y -> binary ``[1, 64, 64]`` image.

    ``antialias=True`` averages ``supersample x supersample`` samples per pixel, giving grey
    edges in [0, 1]; the default renders exact binary {0, 1} images.
    """

    def __init__(self, *, antialias: bool = False, supersample: int = 4, image_size: int = 64) -> None:
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.antialias = bool(antialias)
        self.supersample = int(supersample) if antialias else 1
        self.image_size = int(image_size)
        self.shapes = SHAPES
        self.scales = np.linspace(0.5, 1.0, 6)
        self.orientations = np.arange(40) * (2.0 * math.pi / 40)
        self.positions = np.linspace(0.0, 1.0, 32)
        self.factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
        self.factor_sizes = (len(SHAPES), len(self.scales), len(self.orientations), 32, 32)
        # Square window (pixels) that holds any sprite: all shapes lie in [-1, 1]^2 of their frame.
        radius_px = math.sqrt(2.0) * _BASE_HALF_SIZE * float(self.scales.max()) * self.image_size
        self._window = min(self.image_size, math.ceil(2.0 * radius_px) + 4)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    def factor_values(self, factor: int | str) -> np.ndarray:
        """Scale, angle (radians) and position in [0, 1] behind each level; shape -> its index."""
        name = self.factor_names[self.factor_index(factor)]
        table = {
            "shape": np.arange(len(self.shapes)),
            "scale": self.scales,
            "orientation": self.orientations,
            "pos_x": self.positions,
            "pos_y": self.positions,
        }
        return table[name].copy()

    def _render(self, factors: np.ndarray) -> np.ndarray:
        return self._masks(factors[:, :5]).numpy()[:, None]

    def render_binary(self, factors: np.ndarray, block: int = 32_768) -> np.ndarray:
        """:meth:`render` thresholded at 0.5 into a bool array, in blocks: a dSprites-sized set
        (737 280) peaks at 3 GB instead of the 12 GB of one float32 render. Models convert per batch."""
        factors = self.check_factors(factors)
        out = np.empty((len(factors), *self.observation_shape), dtype=bool)
        for i in range(0, len(factors), block):
            out[i : i + block] = self._render(factors[i : i + block]) > 0.5
        return out

    @torch.no_grad()
    def _masks(self, factors: np.ndarray) -> torch.Tensor:
        """Sprite coverage ``[n, H, W]`` float32 for validated sprite factors ``[n, 5]``."""
        n = len(factors)
        size, win, ss = self.image_size, self._window, self.supersample
        out = torch.zeros(n, size * size, dtype=torch.float32)
        if n == 0:
            return out.view(0, size, size)
        shape = factors[:, 0]
        half = torch.from_numpy(_BASE_HALF_SIZE * self.scales[factors[:, 1]]).float()
        angle = torch.from_numpy(self.orientations[factors[:, 2]]).float()
        cx = torch.from_numpy(_CENTRE_LO + (_CENTRE_HI - _CENTRE_LO) * self.positions[factors[:, 3]]).float()
        cy = torch.from_numpy(_CENTRE_LO + (_CENTRE_HI - _CENTRE_LO) * self.positions[factors[:, 4]]).float()
        # Window origin (pixels), clamped into the image: the window always contains the sprite.
        ox = (torch.floor(cx * size).long() - win // 2).clamp_(0, size - win)
        oy = (torch.floor(cy * size).long() - win // 2).clamp_(0, size - win)
        # Sample offsets inside the window in image units: (pixel + (k + 0.5) / ss) / size, (win*ss,)
        offs = (torch.arange(win * ss, dtype=torch.float32) + 0.5) / (ss * size)
        # Flat pixel indices of each window in the image, (n, win*win)
        grid = torch.arange(win)
        flat = (oy[:, None, None] + grid[None, :, None]) * size + (ox[:, None, None] + grid[None, None, :])
        flat = flat.view(n, win * win)
        chunk = max(1, _CHUNK_ELEMENTS // (win * ss) ** 2)
        for shape_id in np.unique(shape):
            rows_all = torch.from_numpy(np.flatnonzero(shape == shape_id))
            for start in range(0, len(rows_all), chunk):
                rows = rows_all[start : start + chunk]
                m = len(rows)
                inv = 1.0 / half[rows]
                cos = (torch.cos(angle[rows]) * inv)[:, None, None]
                sin = (torch.sin(angle[rows]) * inv)[:, None, None]
                # Offsets of the samples from the sprite centre: dx (m, 1, win*ss), dy (m, win*ss, 1)
                dx = (ox[rows].float() / size - cx[rows])[:, None] + offs[None, :]
                dy = (oy[rows].float() / size - cy[rows])[:, None] + offs[None, :]
                dx, dy = dx[:, None, :], dy[:, :, None]
                # Rotate by -angle and scale into the shape frame, (m, win*ss, win*ss)
                u = cos * dx + sin * dy
                v = cos * dy - sin * dx
                cover = _inside(int(shape_id), u, v).to(torch.float32)
                if ss > 1:
                    cover = cover.view(m, win, ss, win, ss).mean(dim=(2, 4))
                target = rows[:, None] * (size * size) + flat[rows]  # (m, win*win) into out.view(-1)
                out.view(-1)[target.view(-1)] = cover.reshape(-1)
        return out.view(n, size, size)


class ColourSprites(Sprites):
    """Sprites with a hue factor: ``[3, 64, 64]`` RGB images, the sprite in one of ``num_hues`` hues.

    Hues are evenly spaced around the HSV circle at full saturation and value; the background
    stays black. Factors: shape, scale, orientation, pos_x, pos_y, hue.
    """

    def __init__(
        self, *, num_hues: int = 8, antialias: bool = False, supersample: int = 4, image_size: int = 64
    ) -> None:
        super().__init__(antialias=antialias, supersample=supersample, image_size=image_size)
        if num_hues < 1:
            raise ValueError(f"num_hues must be >= 1, got {num_hues}")
        self.hues = np.arange(num_hues) / num_hues
        self.palette = np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in self.hues], dtype=np.float32)
        self.factor_names = (*self.factor_names, "hue")
        self.factor_sizes = (*self.factor_sizes, num_hues)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def factor_values(self, factor: int | str) -> np.ndarray:
        """As for ``Sprites``; hue -> its position on the colour circle in [0, 1)."""
        if self.factor_names[self.factor_index(factor)] == "hue":
            return self.hues.copy()
        return super().factor_values(factor)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        mask = self._masks(factors[:, :5])  # (n, H, W)
        rgb = torch.from_numpy(self.palette[factors[:, 5]])  # (n, 3)
        return (mask[:, None, :, :] * rgb[:, :, None, None]).numpy()
