"""A causal world: a pendulum lit by the sun, and its shadow (after CausalVAE's pendulum data).

Four factors with a known causal graph: the pendulum's angle ``theta`` and the sun's angle
``light`` are independent causes; the shadow's ``shadow_length`` and ``shadow_position`` on the
ground are their effects (parallel light: a point ``q`` of the pendulum falls on the ground at
``q_x − (q_y − ground)·tan(light)``), each with its own exogenous noise (``noise`` × the effect's
range, uniform), so an intervention on an effect is a scene the world can show. ``GRAPH[i, j] = 1``
means factor i causes factor j.

Each object is drawn in its own colour channel (red: the rod and bob, green: the sun, blue: the
shadow), anti-aliased by supersampling, so :class:`PendulumReadout` reads every factor back from
an image on its own — the angle from the red centroid's direction from the pivot, the sun from
the green centroid, the shadow's length from its blue mass and its position from the blue
centroid — which is what scoring an intervention needs: after ``do(theta = v)`` the shadow must
move as the geometry says, after ``do(shadow_length = v)`` the pendulum and the sun must not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import RandomState, as_random_state

__all__ = ["FACTOR_NAMES", "GRAPH", "Pendulum", "PendulumReadout"]

FACTOR_NAMES = ("theta", "light", "shadow_length", "shadow_position")
GRAPH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.int64)

_PIVOT = (0.5, 0.80)
_ROD = 0.30
_BOB = 0.055
_ROD_HALF_WIDTH = 0.012
_SUN_X, _SUN_Y, _SUN_SWING, _SUN_R = 0.5, 0.93, 0.40, 0.055
_GROUND = 0.10
_SHADOW_HALF_WIDTH = 0.025
_MIN_SHADOW = 0.03


@dataclass
class Pendulum:
    """Pendulum scenes ``[N, 3, size, size]`` in [0, 1] with their factors.

    ``theta`` is uniform on ``theta_range`` degrees and ``light`` on ``light_range`` degrees; the
    shadow's length and position follow from the geometry plus uniform noise of ``noise`` × their
    ranges. ``levels`` equal-width bins per factor give the discrete factors the metrics take. The
    default ranges (pendulum and sun on one side) keep both mechanisms monotone in both causes, as
    a linear SCM can hold them; a pendulum swinging through the vertical under a sun crossing it
    makes the shadow's length |L sin θ + L cos θ tan φ|, which is not."""

    size: int = 32
    theta_range: tuple[float, float] = (5.0, 45.0)
    light_range: tuple[float, float] = (5.0, 30.0)
    noise: float = 0.1
    levels: int = 8
    supersample: int = 4

    factor_names = FACTOR_NAMES
    graph = GRAPH

    def __post_init__(self) -> None:
        if self.size < 16 or self.supersample < 1 or self.levels < 2:
            raise ValueError("size must be ≥ 16, supersample ≥ 1 and levels ≥ 2")
        (t0, t1), (l0, l1) = self.theta_range, self.light_range
        if not -60 <= t0 < t1 <= 60 or not -35 <= l0 < l1 <= 35:
            raise ValueError(
                "theta_range must lie in [-60, 60] and light_range in [-35, 35] degrees, low < high "
                "(the shadow stays in frame)"
            )
        if not 0 <= self.noise <= 0.5:
            raise ValueError(f"noise must be in [0, 0.5], got {self.noise}")
        lo, hi = self._effect_ranges()
        self._lo, self._hi = lo, hi

    # ---------------------------------------------------------------- the causal mechanism
    @staticmethod
    def shadow(theta: np.ndarray, light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free shadow (length, position) of the rod for angles in degrees: the projections of
        the pivot and of the bob centre along the light onto the ground."""
        t, s = np.radians(theta), np.tan(np.radians(light))
        px, py = _PIVOT
        bx, by = px + _ROD * np.sin(t), py - _ROD * np.cos(t)
        x0, x1 = px - (py - _GROUND) * s, bx - (by - _GROUND) * s
        return np.abs(x1 - x0), (x0 + x1) / 2

    def _effect_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        (t0, t1), (l0, l1) = self.theta_range, self.light_range
        g = np.meshgrid(np.linspace(t0, t1, 81), np.linspace(l0, l1, 81))
        length, pos = self.shadow(g[0].ravel(), g[1].ravel())
        lo = np.array([t0, l0, length.min(), pos.min()])
        hi = np.array([t1, l1, length.max(), pos.max()])
        return lo, hi

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per factor, the (low, high) of its values (effects: of the noise-free mechanism)."""
        return self._lo.copy(), self._hi.copy()

    def sample_values(self, n: int, random_state: RandomState = 0) -> np.ndarray:
        """``[n, 4]`` factor values (degrees, degrees, unit lengths) drawn from the SCM."""
        rng = as_random_state(random_state)
        theta = rng.uniform(*self.theta_range, n)
        light = rng.uniform(*self.light_range, n)
        length, pos = self.shadow(theta, light)
        span = self._hi - self._lo
        length = np.maximum(length + self.noise * span[2] * rng.uniform(-0.5, 0.5, n), _MIN_SHADOW)
        pos = pos + self.noise * span[3] * rng.uniform(-0.5, 0.5, n)
        return np.stack([theta, light, length, pos], 1)

    def discretise(self, values: np.ndarray) -> np.ndarray:
        """``levels`` equal-width bins of each factor's range (clipped): int64 ``[n, 4]``."""
        v = np.asarray(values, dtype=np.float64)
        frac = (v - self._lo) / (self._hi - self._lo)
        return np.clip((frac * self.levels).astype(np.int64), 0, self.levels - 1)

    def standardise(self, values: np.ndarray) -> np.ndarray:
        """Values mapped to [−1, 1] per factor (the ranges): labels for a label-conditioned head."""
        return 2 * (np.asarray(values, dtype=np.float64) - self._lo) / (self._hi - self._lo) - 1

    def unstandardise(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) + 1) / 2 * (self._hi - self._lo) + self._lo

    def sample(self, n: int, random_state: RandomState = 0) -> tuple[Tensor, np.ndarray]:
        """``(images [n, 3, size, size], values [n, 4])`` drawn from the SCM."""
        values = self.sample_values(n, random_state)
        return self.render(values), values

    # ---------------------------------------------------------------- rendering
    def _grid(self) -> tuple[Tensor, Tensor]:
        m = self.size * self.supersample
        c = (torch.arange(m, dtype=torch.float32) + 0.5) / m
        return c[None, :].expand(m, m), (1 - c)[:, None].expand(m, m)  # x right, y up (row 0 at the top)

    def render(self, values: np.ndarray) -> Tensor:
        """Images of arbitrary factor values ``[n, 4]`` (any combination, e.g. an intervened one)."""
        v = torch.as_tensor(np.asarray(values, dtype=np.float32))
        if v.ndim != 2 or v.shape[1] != 4:
            raise ValueError(f"values must be [n, 4] ({', '.join(FACTOR_NAMES)}), got {tuple(v.shape)}")
        x, y = (g[None] for g in self._grid())
        out = []
        for chunk in v.split(64):
            theta, light, length, pos = (c[:, None, None] for c in chunk.unbind(1))
            t = torch.deg2rad(theta)
            px, py = _PIVOT
            bx, by = px + _ROD * torch.sin(t), py - _ROD * torch.cos(t)
            red = (_segment_distance(x, y, px, py, bx, by) <= _ROD_HALF_WIDTH) | (
                (x - bx) ** 2 + (y - by) ** 2 <= _BOB**2
            )
            sx = _SUN_X + _SUN_SWING * torch.sin(torch.deg2rad(light))
            green = (x - sx) ** 2 + (y - _SUN_Y) ** 2 <= _SUN_R**2
            blue = ((x - pos).abs() <= length / 2) & ((y - _GROUND).abs() <= _SHADOW_HALF_WIDTH)
            img = torch.stack([red, green, blue], 1).float()
            out.append(torch.nn.functional.avg_pool2d(img, self.supersample))
        return torch.cat(out) if out else torch.zeros(0, 3, self.size, self.size)


def _segment_distance(x: Tensor, y: Tensor, ax: float, ay: float, bx: Tensor, by: Tensor) -> Tensor:
    """Distance of every point (x, y) to the segment from (ax, ay) to (bx, by) (broadcast)."""
    dx, dy = bx - ax, by - ay
    t = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return ((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2).sqrt()


class PendulumReadout:
    """Read the four factors of a pendulum image back, one object per channel (see the module).

    ``read(images)`` returns ``values [n, 4]`` and ``valid [n]``: every channel holds between
    ``min_mass`` and ``max_mass`` times the mass its object has in a rendered scene (a blank or
    smeared channel is not a scene)."""

    def __init__(self, world: Pendulum, min_mass: float = 0.5, max_mass: float = 1.6) -> None:
        self.world, self.min_mass, self.max_mass = world, min_mass, max_mass
        ref = world.render(np.array([[0.0, 0.0, 0.3, 0.5]]))[0].double().sum((1, 2))
        self._red_mass, self._green_mass = float(ref[0]), float(ref[1])
        self._blue_per_length = float(ref[2]) / 0.3

    def read(self, images: Tensor) -> dict[str, Tensor]:
        img = torch.as_tensor(images).double().clamp(0, 1)
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"images must be [n, 3, H, W] in [0, 1], got {tuple(img.shape)}")
        n, _, h, w = img.shape
        xs = ((torch.arange(w, dtype=torch.float64) + 0.5) / w)[None, None, :]
        ys = (1 - (torch.arange(h, dtype=torch.float64) + 0.5) / h)[None, :, None]
        mass = img.sum((2, 3)).clamp_min(1e-9)  # [n, 3]
        cx = (img * xs).sum((2, 3)) / mass
        cy = (img * ys).sum((2, 3)) / mass
        px, py = _PIVOT
        theta = torch.rad2deg(torch.atan2(cx[:, 0] - px, py - cy[:, 0]))
        light = torch.rad2deg(torch.asin(((cx[:, 1] - _SUN_X) / _SUN_SWING).clamp(-1, 1)))
        length = mass[:, 2] / self._blue_per_length
        values = torch.stack([theta, light, length, cx[:, 2]], 1)
        expect = torch.tensor([self._red_mass, self._green_mass], dtype=torch.float64)
        rel = mass[:, :2] / expect
        ok = ((rel >= self.min_mass) & (rel <= self.max_mass)).all(1) & (length >= _MIN_SHADOW / 2)
        return {"values": values.float(), "valid": ok}
