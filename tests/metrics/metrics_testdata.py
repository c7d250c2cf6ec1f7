"""Data for the metric tests: factors, codes with known answers, and a tiny fake world (no fixtures here)."""

from __future__ import annotations

import numpy as np

SIZES = (2, 3, 4)  # small factor sizes keep the exact gradient-boosted DCI fits quick


def make_factors(n: int, sizes=SIZES, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return np.stack([rng.randint(0, s, n) for s in sizes], axis=1).astype(np.int64)


def standardise(f: np.ndarray) -> np.ndarray:
    return (f - f.mean(axis=0)) / f.std(axis=0)


# a fixed 3-D rotation that mixes every factor into every code (Helmert basis)
ROTATION = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(2), 1 / np.sqrt(6)],
        [1 / np.sqrt(3), -1 / np.sqrt(2), 1 / np.sqrt(6)],
        [1 / np.sqrt(3), 0.0, -2 / np.sqrt(6)],
    ]
)


def make_codes(kind: str, factors: np.ndarray, seed: int = 1) -> np.ndarray:
    """perfect: permuted, rescaled copy of the factors; noise: independent Gaussians; rotated: a rotation of perfect."""
    rng = np.random.RandomState(seed)
    z = standardise(factors)
    if kind == "perfect":
        perm = [2, 0, 1]
        return z[:, perm] * np.array([0.5, 3.0, -2.0]) + np.array([1.0, -4.0, 0.0])
    if kind == "noise":
        return rng.randn(factors.shape[0], 5)
    if kind == "rotated":
        return z @ ROTATION
    raise ValueError(kind)


class FakeWorld:
    """The world protocol on a tiny scale: observations = a fixed random linear mix of the factors."""

    def __init__(self, factor_sizes=(3, 4, 5), obs_dim: int = 8, seed: int = 0):
        self.factor_sizes = tuple(factor_sizes)
        rng = np.random.RandomState(seed)
        self.mixing = rng.randn(len(self.factor_sizes), obs_dim)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, num: int, random_state) -> np.ndarray:
        cols = [random_state.randint(0, s, size=num) for s in self.factor_sizes]
        return np.stack(cols, axis=1).astype(np.int64)

    def scaled(self, factors: np.ndarray) -> np.ndarray:
        return factors / (np.array(self.factor_sizes) - 1.0)

    def sample_observations_from_factors(self, factors: np.ndarray, random_state) -> np.ndarray:
        return (self.scaled(np.asarray(factors)) @ self.mixing).astype(np.float32)

    def perfect_representation(self, observations: np.ndarray) -> np.ndarray:
        """Undo the mixing: recovers the scaled factors exactly (a perfectly disentangled code)."""
        return observations.astype(np.float64) @ np.linalg.pinv(self.mixing)
