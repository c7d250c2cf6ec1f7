"""Read the factors of a (generated) colour-sprite image back, or say "not a sprite".

The diffusion path needs for images what ``FactorLanguage.parse`` gives the transformer path.
The readout is analysis by synthesis: it fits the world's own renderer to the image and keeps
the best fit, so it is trained on nothing but rendered sprites (it *is* the renderer) and ships
no weights. Steps, batched over images:

1. hue: the mean colour of the bright pixels, nearest palette colour by angle; the per-pixel
   coverage is then the least-squares projection of the RGB pixel on that colour;
2. a first guess per shape hypothesis: the sprite is located by a box filter, its scale comes
   from its area (a table of template areas rendered at start-up), and every orientation of the
   shape's symmetry period is rendered at that scale, centred at the centroid less the
   template's centroid offset (only the heart's is not zero); the best fit is kept;
3. block coordinate descent on the grid of levels: render the neighbours of the current fit in
   position (x and y jointly, ±2 levels), then in scale and orientation jointly (±1 × ±2), and
   keep the one with the least squared RGB error; after the first sweep only the best shape is
   refined further; the hue is then re-chosen on the fitted mask;
4. validity, from the residual ``r = image − fit``: ``blob`` is the largest 3×3-mean residual
   norm anywhere (a second blob, a stray patch; white noise is averaged down by the mean), and
   ``smear`` the residual energy inside the fit's support (dilated by 4 px) over the fit's energy
   (blurs, smears, wrong colours), less the share that white noise measured on the background
   explains. Pixels within one pixel of the fit's edge count ``edge_weight`` times (0.25 for
   binary renders, where a sprite a fraction of a pixel off the grid flips whole edge pixels;
   1 for anti-aliased ones). Both statistics are divided by their limits in the config;
   ``score = 1 − max(blob, smear) / 2`` clipped to [0, 1], so ``valid`` is ``score ≥ 0.5``
   (and some foreground at all: blank images fail on area).

Binary renders at 32×32 are not fully identifiable: about 0.5 % of random factor rows render
to the same image as another row (a small heart at two orientations, a small heart and a small
square), and a sprite off the level grid is, after binarisation, often closest to a neighbour's
render. Anti-aliased renders (``ColourSprites(antialias=True)``) have neither problem; the
benchmark (``benchmarks/sprites_readout.py``) reports both.

Symmetric orientations: a square is the same set of points after a quarter turn and an ellipse
after a half turn, so their renders are identical (bit for bit) and no readout can tell them
apart. ``read`` returns orientation reduced modulo the shape's period in levels
(``ORIENTATION_PERIODS``: square 10, ellipse 20, heart 40), and :func:`orientation_error`
scores orientation modulo that period; the heart has no rotational symmetry and is scored on
the full circle.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probe_disentangle.registry import check_field_types
from probe_disentangle.worlds.base import RandomState, as_random_state, randint
from probe_disentangle.worlds.sprites import _BASE_HALF_SIZE, _CENTRE_HI, _CENTRE_LO, ColourSprites

__all__ = [
    "NON_SPRITE_KINDS",
    "ORIENTATION_PERIODS",
    "SpritesReadout",
    "SpritesReadoutConfig",
    "load_sprites_readout",
    "non_sprites",
    "orientation_error",
]

SHAPE, SCALE, ORIENT, POS_X, POS_Y, HUE = range(6)
# Levels after which a shape's render repeats exactly (40 levels = one turn): square, ellipse, heart.
ORIENTATION_PERIODS: tuple[int, ...] = (10, 20, 40)
NON_SPRITE_KINDS: tuple[str, ...] = ("blank", "noise", "two_blobs", "blur", "smear")


def _move_grid(**ranges: tuple[int, ...]) -> torch.Tensor:
    """Every combination of level offsets [K, 6] for the named factors, the null move first."""
    cols = {"pos_x": POS_X, "pos_y": POS_Y, "scale": SCALE, "orientation": ORIENT}
    axes = [torch.tensor(sorted(r, key=abs)) for r in ranges.values()]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).view(-1, len(axes))
    out = torch.zeros(len(mesh), 6, dtype=torch.int64)
    for j, name in enumerate(ranges):
        out[:, cols[name]] = mesh[:, j]
    return out


# the coordinate-descent blocks: position jointly, then scale and orientation jointly
_MOVES = (
    _move_grid(pos_x=(-2, -1, 0, 1, 2), pos_y=(-2, -1, 0, 1, 2)),
    _move_grid(scale=(-1, 0, 1), orientation=(-2, -1, 0, 1, 2)),
)
_MIN_COVERAGE = 0.25  # coverage below this does not count as foreground for the first guess
_SUPPORT_PX = 4  # the fit's support for the smear statistic: its pixels dilated by this many


@dataclass
class SpritesReadoutConfig:
    """The world the readout fits (must match the images' renderer) and its validity limits.

    The limits left at None take the value for the rendering (binary or anti-aliased), set from
    the 1st and 99th percentiles of the statistics measured on 300 images per kind: rendered
    sprites on the grid, a quarter level off it, or with pixel noise σ = 0.1 stay inside; the
    non-sprite kinds of :func:`non_sprites` fall outside (rates in ``benchmarks/sprites_readout.py``).
    """

    image_size: int = 32
    num_hues: int = 8
    antialias: bool = False
    supersample: int = 4
    # limit on the largest 3x3-mean residual norm (RGB, per pixel); None: 0.45 anti-aliased, 0.6 binary
    max_blob: float | None = None
    # limit on the support's residual energy / fit energy; None: 0.07 anti-aliased, 0.045 binary
    max_smear: float | None = None
    # weight of the residual within one pixel of the fit's edge; None: 1 anti-aliased, 0.25 binary
    edge_weight: float | None = None
    min_area_fraction: float = 0.4  # foreground area below this fraction of the smallest sprite's is blank
    iterations: int = 3  # coordinate-descent sweeps (the first over every shape)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.max_blob is None:
            self.max_blob = 0.45 if self.antialias else 0.6
        if self.max_smear is None:
            self.max_smear = 0.07 if self.antialias else 0.045
        if self.edge_weight is None:
            self.edge_weight = 1.0 if self.antialias else 0.25
        if not 0.0 <= self.edge_weight <= 1.0:
            raise ValueError(f"SpritesReadoutConfig.edge_weight must be in [0, 1], got {self.edge_weight}")
        if self.image_size < 8:
            raise ValueError(f"SpritesReadoutConfig.image_size must be >= 8, got {self.image_size}")
        if self.num_hues < 1:
            raise ValueError(f"SpritesReadoutConfig.num_hues must be >= 1, got {self.num_hues}")
        for name in ("max_blob", "max_smear", "min_area_fraction"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SpritesReadoutConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.iterations < 1:
            raise ValueError(f"SpritesReadoutConfig.iterations must be >= 1, got {self.iterations}")

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpritesReadoutConfig:
        """Build from :meth:`to_dict`'s output; unknown keys are refused, naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SpritesReadoutConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


def orientation_error(predicted: np.ndarray, true: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Orientation error in levels, modulo each shape's symmetry period (``ORIENTATION_PERIODS``).

    ``|predicted − true|`` on the circle of ``period`` levels: a square read at level 12 for a true
    level 2 has error 0 (a quarter turn is 10 levels).
    """
    predicted, true, shape = (np.asarray(a, dtype=np.int64) for a in (predicted, true, shape))
    if not predicted.shape == true.shape == shape.shape:
        raise ValueError(
            f"predicted, true and shape must have one shape, got {predicted.shape}, {true.shape}, {shape.shape}"
        )
    if shape.size and (shape.min() < 0 or shape.max() >= len(ORIENTATION_PERIODS)):
        raise ValueError(f"shape indices must be in [0, {len(ORIENTATION_PERIODS)}), got {shape.min()}..{shape.max()}")
    period = np.asarray(ORIENTATION_PERIODS)[shape]
    d = np.mod(predicted - true, period)
    return np.minimum(d, period - d)


def _check_images(images: object, size: int) -> torch.Tensor:
    """``images`` as float32 [N, 3, size, size] in [0, 1], or a clear error saying how to fix it."""
    if not isinstance(images, torch.Tensor):
        hint = " (wrap it: torch.from_numpy(array))" if isinstance(images, np.ndarray) else ""
        raise TypeError(f"images must be a torch.Tensor [N, 3, {size}, {size}], got {type(images).__name__}{hint}")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be floating point in [0, 1], got dtype {images.dtype}; "
            "convert 8-bit images with images.float() / 255"
        )
    if images.dim() == 3 and tuple(images.shape) == (3, size, size):
        raise ValueError(
            f"images must be a batch [N, 3, {size}, {size}], got one image {tuple(images.shape)}; use images[None]"
        )
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(
            f"images must be [N, 3, {size}, {size}] (RGB at the readout's image_size={size}), got {tuple(images.shape)}"
        )
    images = images.detach().to(device="cpu", dtype=torch.float32)
    if images.numel() == 0:
        return images
    if not torch.isfinite(images).all():
        bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"images hold NaN or inf (images {bad[:5]}{'...' if len(bad) > 5 else ''})")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; map a DDPM's [-1, 1] output "
            "with (x + 1) / 2 and clamp to [0, 1]"
        )
    return images


def _moments(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Area and centroid (pixels, x right / y down) of weights [N, S, S]."""
    size = w.shape[-1]
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    area = w.sum((1, 2))
    safe = area.clamp_min(1e-6)
    cx = (w * grid[None, None, :]).sum((1, 2)) / safe
    cy = (w * grid[None, :, None]).sum((1, 2)) / safe
    return {"area": area, "cx": cx, "cy": cy}


class SpritesReadout:
    """Factors of colour-sprite images ``[N, 3, S, S]`` (world factor indices) or "not a sprite".

    Build it for the world that rendered the training images (:meth:`for_world`), or from a
    :class:`SpritesReadoutConfig`; it needs no weights. :meth:`read` is the API the diffusion
    evaluation calls, mirroring ``FactorLanguage.parse``.
    """

    def __init__(self, config: SpritesReadoutConfig | None = None) -> None:
        self.config = config if config is not None else SpritesReadoutConfig()
        if not isinstance(self.config, SpritesReadoutConfig):
            raise TypeError(f"config must be a SpritesReadoutConfig, got {type(self.config).__name__}")
        c = self.config
        self.world = ColourSprites(
            num_hues=c.num_hues, antialias=c.antialias, supersample=c.supersample, image_size=c.image_size
        )
        self.factor_names = self.world.factor_names
        self._palette = torch.from_numpy(self.world.palette)  # (H, 3)
        self._build_tables()

    @classmethod
    def for_world(cls, world: ColourSprites, **limits: float | int) -> SpritesReadout:
        """A readout for images rendered by ``world`` (its size, hues and anti-aliasing)."""
        if not isinstance(world, ColourSprites):
            raise TypeError(f"world must be a ColourSprites (RGB sprites), got {type(world).__name__}")
        return cls(
            SpritesReadoutConfig(
                image_size=world.image_size,
                num_hues=len(world.hues),
                antialias=world.antialias,
                supersample=world.supersample if world.antialias else 4,
                **limits,
            )
        )

    # ---------------------------------------------------------------- start-up tables
    def _build_tables(self) -> None:
        """Render every (shape, scale, orientation) once at a central position: its area, its
        centroid's offset from the true centre (the first guess's tables)."""
        w = self.world
        n_shape, n_scale, n_orient = w.factor_sizes[:3]
        grid = np.stack(np.meshgrid(*(np.arange(k) for k in (n_shape, n_scale, n_orient)), indexing="ij"), -1)
        grid = grid.reshape(-1, 3)
        mid = w.factor_sizes[POS_X] // 2
        factors = np.concatenate([grid, np.full((len(grid), 2), mid)], axis=1)
        masks = w._masks(factors)  # (T, S, S)
        mom = _moments(masks * (masks > _MIN_COVERAGE))
        centre = self._centre_px(torch.tensor([mid]))[0]
        shape3 = (n_shape, n_scale, n_orient)
        self._area = mom["area"].view(shape3)
        self._offset_x = (mom["cx"] - centre).view(shape3)
        self._offset_y = (mom["cy"] - centre).view(shape3)
        self._min_area = float(masks.sum((1, 2)).min())

    def _centre_px(self, level: torch.Tensor) -> torch.Tensor:
        """Sprite centre (pixels) of a position level."""
        pos = torch.from_numpy(self.world.positions).float()[level]
        return (_CENTRE_LO + (_CENTRE_HI - _CENTRE_LO) * pos) * self.world.image_size

    def _level_of(self, centre_px: torch.Tensor) -> torch.Tensor:
        """Nearest position level to a centre in pixels."""
        n = self.world.factor_sizes[POS_X]
        t = (centre_px / self.world.image_size - _CENTRE_LO) / (_CENTRE_HI - _CENTRE_LO) * (n - 1)
        return t.round().clamp(0, n - 1).long()

    # ---------------------------------------------------------------- reading
    @torch.no_grad()
    def read(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Read images ``[N, 3, S, S]`` (float in [0, 1], any device; read on the CPU).

        Returns ``factors`` [N, 6] int64 (world levels in ``factor_names`` order, orientation
        reduced modulo the shape's symmetry period; every entry -1 where not valid), ``valid``
        [N] bool, ``score`` [N] float32 in [0, 1] (``valid`` ⇔ ``score >= 0.5``), ``fit`` [N, 6]
        the best fit even where not valid, and the two validity statistics ``blob`` and ``smear``
        (each divided by its limit; > 1 fails).
        """
        x = _check_images(images, self.config.image_size)
        n = len(x)
        if n == 0:
            empty = torch.zeros(0, 6, dtype=torch.int64)
            z = torch.zeros(0)
            return {"factors": empty, "valid": torch.zeros(0, dtype=torch.bool), "score": z, "fit": empty.clone(),
                    "blob": z.clone(), "smear": z.clone()}  # fmt: skip
        hue = self._first_hue(x)
        proj = self._projections(x)  # (N, H, S, S): <pixel, palette_h>
        fit = self._first_guess(proj, hue)  # (N, 3 shapes, 6)
        fit = self._descend(proj, fit)  # (N, 6)
        return self._judge(x, proj, fit)

    def _projections(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,kc->nkhw", x, self._palette)

    def _first_hue(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest palette colour (by angle) to the mean colour of the bright pixels."""
        bright = x.amax(1, keepdim=True)  # (N, 1, S, S)
        weight = bright * (bright > 0.5)
        weight = torch.where(weight.flatten(1).sum(1)[:, None, None, None] > 0, weight, bright)
        mean = (x * weight).sum((2, 3))  # (N, 3)
        cos = F.normalize(mean, dim=1) @ F.normalize(self._palette, dim=1).T
        return cos.argmax(1)

    def _first_guess(self, proj: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
        """Per image and shape hypothesis, factors [N, 3, 6] from area, centroid and an orientation sweep."""
        n, size = proj.shape[0], proj.shape[-1]
        pal2 = (self._palette**2).sum(1)  # (H,)
        cover = proj[torch.arange(n), hue] / pal2[hue][:, None, None]  # (N, S, S)
        cover = cover.clamp(0.0, 1.0)
        # locate: the densest box, then keep a window around it (drops far-away noise)
        radius = math.ceil(math.sqrt(2.0) * _BASE_HALF_SIZE * float(self.world.scales.max()) * size) + 2
        box = F.avg_pool2d(cover[:, None], 7, stride=1, padding=3)[:, 0]
        peak = box.flatten(1).argmax(1)
        py, px = peak // size, peak % size
        grid = torch.arange(size)
        near = ((grid[None, :, None] - py[:, None, None]).abs() <= radius) & (
            (grid[None, None, :] - px[:, None, None]).abs() <= radius
        )
        w = cover * (cover > _MIN_COVERAGE) * near
        mom = _moments(w)
        n_shape, n_scale, _ = self._area.shape
        out = torch.zeros(n, n_shape, 6, dtype=torch.int64)
        for s in range(n_shape):
            areas = self._area[s].mean(1)  # (scales,)
            scale = (mom["area"][:, None] - areas[None]).abs().argmin(1)  # (N,)
            # every orientation of the period, each centred by its template's centroid offset
            orient = torch.arange(ORIENTATION_PERIODS[s])[None].expand(n, -1)  # (N, P)
            cx = mom["cx"][:, None] - self._offset_x[s, scale[:, None], orient]
            cy = mom["cy"][:, None] - self._offset_y[s, scale[:, None], orient]
            cand = torch.stack(
                [torch.full_like(orient, s), scale[:, None].expand_as(orient), orient,
                 self._level_of(cx), self._level_of(cy), hue[:, None].expand_as(orient)], 2
            )  # fmt: skip
            best = self._errors(proj, cand).argmin(1)
            out[:, s] = cand[torch.arange(n), best]
        return out

    def _errors(self, proj: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Squared RGB error (up to the image's own energy) of candidates [N, K, 6]: [N, K]."""
        n, k, _ = cand.shape
        masks = self.world._masks(cand.reshape(-1, 6)[:, :5].numpy()).view(n, k, -1)  # (N, K, S*S)
        hue = cand[..., HUE]
        p = proj.flatten(2)[torch.arange(n)[:, None], hue]  # (N, K, S*S)
        pal2 = (self._palette**2).sum(1)[hue]  # (N, K)
        return pal2 * (masks**2).sum(2) - 2.0 * (masks * p).sum(2)

    def _descend(self, proj: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
        """Block coordinate descent on the level grid from the first guesses [N, G, 6]: position
        (x, y jointly, ±2 levels) then size and turn (scale ±1 × orientation ±2 jointly, as the two
        trade off on small sprites); returns [N, 6]."""
        n = len(fit)
        sizes = torch.tensor(self.world.factor_sizes)
        for sweep in range(self.config.iterations):
            if sweep == 1:  # keep the best shape hypothesis only
                best = self._errors(proj, fit).argmin(1)
                fit = fit[torch.arange(n), best][:, None]
            for moves in _MOVES:
                g, k = fit.shape[1], len(moves)
                cand = fit[:, :, None, :] + moves[None, None]  # (N, G, K, 6)
                cand[..., ORIENT] %= sizes[ORIENT]
                cand = torch.minimum(cand.clamp_min(0), sizes - 1)
                e = self._errors(proj, cand.view(n, g * k, 6)).view(n, g, k)
                pick = e.argmin(2)  # (N, G); the null move comes first, so ties keep the current fit
                fit = cand.gather(2, pick[:, :, None, None].expand(n, g, 1, 6))[:, :, 0]
        err = self._errors(proj, fit)
        best = err.argmin(1)
        fit = fit[torch.arange(n), best].clone()
        # hue re-chosen on the fitted mask
        masks = self.world._masks(fit[:, :5].numpy()).flatten(1)  # (N, S*S)
        pal2 = (self._palette**2).sum(1)  # (H,)
        e = pal2[None] * (masks**2).sum(1, keepdim=True) - 2.0 * torch.einsum("np,nkp->nk", masks, proj.flatten(2))
        fit[:, HUE] = e.argmin(1)
        return fit

    def _judge(self, x: torch.Tensor, proj: torch.Tensor, fit: torch.Tensor) -> dict[str, torch.Tensor]:
        """Validity statistics of the residual and the canonical factor rows."""
        c = self.config
        n, size = len(x), c.image_size
        masks = self.world._masks(fit[:, :5].numpy())  # (N, S, S)
        recon = masks[:, None] * self._palette[fit[:, HUE]][:, :, None, None]  # (N, 3, S, S)
        r2 = ((x - recon) ** 2).sum(1, keepdim=True)  # (N, 1, S, S)
        # pixels within one pixel of the fit's edge count edge_weight times: an off-grid sprite
        # moves its edge by a fraction of a pixel, which flips whole edge pixels when binary
        solid = (masks[:, None] > 0.5).float()
        band = F.max_pool2d(solid, 3, stride=1, padding=1) + F.max_pool2d(-solid, 3, stride=1, padding=1)
        r2 = r2 * (1.0 - (1.0 - c.edge_weight) * band)
        blob = F.avg_pool2d(r2, 3, stride=1, padding=1, count_include_pad=False).flatten(1).amax(1).sqrt()
        support = F.max_pool2d((masks[:, None] > 0).float(), 2 * _SUPPORT_PX + 1, stride=1, padding=_SUPPORT_PX)
        # white pixel noise is measured on the background (outside the support) and its expected
        # share taken off the support's residual energy: noise is not a smear
        inside = support.flatten(1).sum(1)
        outside = (size * size - inside).clamp_min(1.0)
        noise = (r2 * (1 - support)).flatten(1).sum(1) / outside  # per pixel, summed over RGB
        excess = ((r2 * support).flatten(1).sum(1) - noise * inside).clamp_min(0.0)
        smear = excess / (recon**2).flatten(1).sum(1).clamp_min(1e-6)
        blob, smear = blob / c.max_blob, smear / c.max_smear
        area = proj[torch.arange(n), fit[:, HUE]] / (self._palette[fit[:, HUE]] ** 2).sum(1)[:, None, None]
        area = area.clamp(0, 1).flatten(1).sum(1)
        has_sprite = area >= c.min_area_fraction * self._min_area
        score = (1.0 - 0.5 * torch.maximum(blob, smear)).clamp(0.0, 1.0) * has_sprite
        valid = (score >= 0.5) & has_sprite
        fit[:, ORIENT] = fit[:, ORIENT] % torch.tensor(ORIENTATION_PERIODS)[fit[:, SHAPE]]
        factors = torch.where(valid[:, None], fit, torch.full_like(fit, -1))
        return {"factors": factors, "valid": valid, "score": score.float(), "fit": fit, "blob": blob, "smear": smear}


def load_sprites_readout(**config: object) -> SpritesReadout:
    """A ready readout (no weights to load: it fits the renderer); keywords go to the config."""
    return SpritesReadout(SpritesReadoutConfig(**config))


def non_sprites(world: ColourSprites, kind: str, num: int, random_state: RandomState = 0) -> torch.Tensor:
    """Images [num, 3, S, S] in [0, 1] that are not one sprite, for testing a validity check.

    ``blank``: black, or a uniform dark grey up to 0.05; ``noise``: uniform noise, or Gaussian
    noise around 0.5 (σ 0.25), half each; ``two_blobs``: two sprites of random factors (and
    hues) at least 8 px apart, overlaid by maximum; ``blur``: a sprite blurred by a Gaussian of
    σ = 1.5 px; ``smear``: a sprite averaged over 6 positions along a random direction (a motion
    smear of 5 px).
    """
    if kind not in NON_SPRITE_KINDS:
        raise ValueError(f"unknown non-sprite kind {kind!r}; kinds are {list(NON_SPRITE_KINDS)}")
    if not isinstance(world, ColourSprites):
        raise TypeError(f"world must be a ColourSprites, got {type(world).__name__}")
    rng = as_random_state(random_state)
    gen = torch.Generator().manual_seed(int(randint(rng, 2**31 - 1, 1)[0]))
    size = world.image_size
    shape = (num, 3, size, size)
    if kind == "blank":
        level = torch.rand(num, 1, 1, 1, generator=gen) * 0.05 * (torch.arange(num) % 2)[:, None, None, None]
        return level.expand(shape).clone()
    if kind == "noise":
        uniform = torch.rand(shape, generator=gen)
        gauss = (0.5 + 0.25 * torch.randn(shape, generator=gen)).clamp(0, 1)
        return torch.where((torch.arange(num) % 2 == 0)[:, None, None, None], uniform, gauss)
    images = torch.from_numpy(world.render(world.sample_factors(num, rng)))
    if kind == "two_blobs":
        first = world.sample_factors(num, rng)
        second = world.sample_factors(num, rng)
        step = size * (_CENTRE_HI - _CENTRE_LO) / (world.factor_sizes[POS_X] - 1)  # pixels per level
        for _ in range(100):  # resample the second sprite's position until the two are apart
            d = np.hypot(first[:, POS_X] - second[:, POS_X], first[:, POS_Y] - second[:, POS_Y]) * step
            close = d < 8.0
            if not close.any():
                break
            second[close] = world.sample_factors(int(close.sum()), rng)
        a, b = torch.from_numpy(world.render(first)), torch.from_numpy(world.render(second))
        return torch.maximum(a, b)
    if kind == "blur":
        sigma, half = 1.5, 4
        t = torch.arange(-half, half + 1, dtype=torch.float32)
        k = torch.exp(-(t**2) / (2 * sigma**2))
        k = k / k.sum()
        flat = images.reshape(num * 3, 1, size, size)
        flat = F.conv2d(F.pad(flat, (half, half, 0, 0)), k.view(1, 1, 1, -1))
        flat = F.conv2d(F.pad(flat, (0, 0, half, half)), k.view(1, 1, -1, 1))
        return flat.view(shape).clamp(0, 1)
    # smear: average of the sprite shifted along a random direction, 6 samples over 5 px
    angle = torch.rand(num, generator=gen) * 2 * math.pi
    out = torch.zeros(shape)
    for i in range(6):
        dx, dy = torch.cos(angle) * (i - 2.5), torch.sin(angle) * (i - 2.5)
        theta = torch.zeros(num, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / size, -2 * dy / size
        grid = F.affine_grid(theta, list(shape), align_corners=False)
        out += F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False) / 6
    return out.clamp(0, 1)
