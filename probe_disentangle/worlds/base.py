"""The ground-truth world protocol: data whose generative factors are known.

A world is a finite factorial of independent categorical factors plus a deterministic
renderer. The method names follow disentanglement_lib's ``GroundTruthData`` so metric code
written against that protocol (``sample_factors``, ``sample_observations_from_factors``,
``sample``) runs unchanged; the index helpers use C order (``np.ravel_multi_index``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

RandomState = np.random.RandomState | np.random.Generator | int | None

__all__ = ["RandomState", "World", "WorldDataset", "as_random_state", "randint"]


def as_random_state(random_state: RandomState) -> np.random.RandomState | np.random.Generator:
    """Return a numpy random source; ints seed a fresh ``Generator``, ``None`` uses OS entropy.

    RandomState and Generator objects are passed through untouched, so callers that thread one
    source through several calls (as disentanglement_lib does) get reproducible streams.
    """
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(None if random_state is None else int(random_state))
    raise TypeError(
        "random_state must be an int, None, np.random.RandomState or np.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def randint(random_state: RandomState, high: int | np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Uniform int64 draws in ``[0, high)`` from either kind of numpy random source."""
    rng = as_random_state(random_state)
    if isinstance(rng, np.random.Generator):
        out = rng.integers(0, high, size=size)
    else:
        out = rng.randint(0, high, size=size)
    return np.asarray(out, dtype=np.int64)


def _as_int_array(values: np.ndarray | Sequence[int] | int, what: str) -> np.ndarray:
    """Convert to an int64 array, refusing non-integral floats instead of silently truncating."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    numeric = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if arr.dtype == np.bool_ or not numeric:
        if arr.size == 0:
            return arr.astype(np.int64)
        raise TypeError(f"{what} must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{what} must be whole numbers, got non-integral values")
    return arr.astype(np.int64, copy=False)


class World(ABC):
    """A finite factorial of independent factors with a deterministic renderer.

    Subclasses set ``factor_names`` and ``factor_sizes`` in ``__init__`` and implement
    ``_render`` on validated ``[n, F]`` int64 factors. Everything else (index maps, sampling,
    conditioning on fixed factors, torch datasets) is shared.
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    # ---------------------------------------------------------------- shape of the factorial
    @property
    def num_factors(self) -> int:
        """Number of generative factors F."""
        return len(self.factor_sizes)

    @property
    def num_combinations(self) -> int:
        """Size of the full factorial, the product of ``factor_sizes``."""
        return math.prod(self.factor_sizes)

    @property
    def factors_num_values(self) -> list[int]:
        """``factor_sizes`` as a list, the name disentanglement_lib's metrics use."""
        return list(self.factor_sizes)

    @property
    @abstractmethod
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one rendered observation, e.g. ``(C, H, W)`` or ``(T,)``."""

    def factor_index(self, factor: int | str) -> int:
        """Resolve a factor given by position or name to its position."""
        if isinstance(factor, str):
            if factor not in self.factor_names:
                raise ValueError(f"unknown factor {factor!r}; factors are {list(self.factor_names)}")
            return self.factor_names.index(factor)
        if isinstance(factor, (int, np.integer)) and not isinstance(factor, bool):
            if not 0 <= int(factor) < self.num_factors:
                raise ValueError(f"factor index {factor} out of range [0, {self.num_factors})")
            return int(factor)
        raise TypeError(f"a factor is named by int or str, got {type(factor).__name__}")

    def factor_values(self, factor: int | str) -> np.ndarray:
        """The physical value behind each level of ``factor`` (default: the levels themselves)."""
        return np.arange(self.factor_sizes[self.factor_index(factor)])

    # ---------------------------------------------------------------- validation and indexing
    def check_factors(self, factors: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Return ``factors`` as a validated ``[n, F]`` int64 array (a single ``[F]`` row is allowed).

        Raises ValueError naming the first factor with a value outside ``[0, size)``.
        """
        arr = _as_int_array(factors, "factors")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.num_factors:
            raise ValueError(
                f"factors must have shape [n, {self.num_factors}] (one column per factor "
                f"{list(self.factor_names)}), got shape {tuple(arr.shape)}"
            )
        for j, (name, size) in enumerate(zip(self.factor_names, self.factor_sizes, strict=True)):
            col = arr[:, j]
            bad = (col < 0) | (col >= size)
            if bad.any():
                raise ValueError(f"factor {name!r} (column {j}) must be in [0, {size - 1}], got {int(col[bad][0])}")
        return arr

    def index_to_factors(self, index: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Map flat indices ``[n]`` into the full factorial to factors ``[n, F]`` (C order)."""
        idx = _as_int_array(index, "index").reshape(-1)
        bad = (idx < 0) | (idx >= self.num_combinations)
        if bad.any():
            raise ValueError(
                f"index must be in [0, {self.num_combinations - 1}] (the factorial of "
                f"{dict(zip(self.factor_names, self.factor_sizes, strict=True))}), got {int(idx[bad][0])}"
            )
        cols = np.unravel_index(idx, self.factor_sizes, order="C")
        return np.stack(cols, axis=1).astype(np.int64, copy=False).reshape(len(idx), self.num_factors)

    def factors_to_index(self, factors: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Map factors ``[n, F]`` to flat indices ``[n]`` (C order, ``np.ravel_multi_index``)."""
        arr = self.check_factors(factors)
        return np.ravel_multi_index(tuple(arr.T), self.factor_sizes, order="C").astype(np.int64)

    def all_factors(self) -> np.ndarray:
        """The full factorial ``[num_combinations, F]`` in flat-index order."""
        return self.index_to_factors(np.arange(self.num_combinations))

    # ---------------------------------------------------------------- rendering
    @abstractmethod
    def _render(self, factors: np.ndarray) -> np.ndarray:
        """Render validated ``[n, F]`` int64 factors; subclasses implement this."""

    def render(self, factors: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Deterministic observations ``[n, *observation_shape]`` for factors ``[n, F]``."""
        return self._render(self.check_factors(factors))

    # ---------------------------------------------------------------- sampling (GroundTruthData)
    def sample_factors(self, num: int, random_state: RandomState) -> np.ndarray:
        """``num`` factor rows ``[num, F]`` int64, each factor uniform and independent."""
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        rng = as_random_state(random_state)
        out = np.empty((num, self.num_factors), dtype=np.int64)
        for j, size in enumerate(self.factor_sizes):
            out[:, j] = randint(rng, size, num)
        return out

    def sample_pairs(self, num: int, random_state: RandomState) -> tuple[np.ndarray, np.ndarray]:
        """``num`` pairs of factor rows ``(a, b)``, each ``[num, F]``, that differ in exactly one
        factor, chosen uniformly per pair, its new value uniform among the others: the weak
        supervision of Ada-GVAE (Locatello et al. 2020), where which factor differs is not told."""
        rng = as_random_state(random_state)
        a = self.sample_factors(num, rng)
        b = a.copy()
        which = randint(rng, self.num_factors, num)
        sizes = np.asarray(self.factor_sizes)
        rows = np.arange(num)
        b[rows, which] = (a[rows, which] + 1 + randint(rng, sizes[which] - 1, num)) % sizes[which]
        return a, b

    def sample_observations_from_factors(self, factors: np.ndarray, random_state: RandomState) -> np.ndarray:
        """Observations for ``factors``; the worlds here are deterministic, so this renders."""
        del random_state
        return self.render(factors)

    def sample(self, num: int, random_state: RandomState) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``num`` factor rows and their observations: ``(factors, observations)``."""
        rng = as_random_state(random_state)
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_observations(self, num: int, random_state: RandomState) -> np.ndarray:
        """Observations only, for code that does not need the factors."""
        return self.sample(num, random_state)[1]

    def sample_with_fixed(
        self, num: int, fixed: Mapping[int | str, int], random_state: RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample with the factors in ``fixed`` (by index or name) held at the given values.

        The other factors are drawn uniformly and independently. Used by the BetaVAE/FactorVAE
        scores and by traversal plots.
        """
        rng = as_random_state(random_state)
        factors = self.sample_factors(num, rng)
        for key, value in fixed.items():
            j = self.factor_index(key)
            size = self.factor_sizes[j]
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < size:
                raise ValueError(
                    f"fixed value for factor {self.factor_names[j]!r} must be an int in [0, {size - 1}], got {value!r}"
                )
            factors[:, j] = int(value)
        return factors, self.sample_observations_from_factors(factors, rng)

    # ---------------------------------------------------------------- torch
    def dataset(self, num: int | None = None, random_state: RandomState = 0) -> WorldDataset:
        """A map-style torch ``Dataset`` of ``(observation, factors)`` pairs.

        ``num=None`` covers the full factorial in flat-index order; otherwise a fixed sample of
        ``num`` factor rows drawn once from ``random_state``.
        """
        if num is None:
            return WorldDataset(self)
        return WorldDataset(self, self.sample_factors(num, random_state))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes, strict=True))
        return f"{type(self).__name__}({sizes})"


class WorldDataset(Dataset):
    """Map-style dataset over a world: the full factorial, or a fixed table of factor rows.

    Items are ``(observation, factors)`` tensors, rendered on access. ``__getitems__`` renders a
    whole batch in one call, which torch's ``DataLoader`` uses when present. Picklable, so it
    works with ``num_workers > 0``.
    """

    def __init__(self, world: World, factors: np.ndarray | None = None) -> None:
        self.world = world
        self.factors = None if factors is None else world.check_factors(factors)

    def __len__(self) -> int:
        return self.world.num_combinations if self.factors is None else len(self.factors)

    def _factors_at(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        idx = np.where(idx < 0, idx + n, idx)
        if ((idx < 0) | (idx >= n)).any():
            raise IndexError(f"dataset index out of range for a dataset of length {n}")
        if self.factors is None:
            return self.world.index_to_factors(idx)
        return self.factors[idx]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        factors = self._factors_at(indices)
        obs = torch.from_numpy(np.ascontiguousarray(self.world.render(factors)))
        fac = torch.from_numpy(factors)
        return [(obs[i], fac[i]) for i in range(len(factors))]
