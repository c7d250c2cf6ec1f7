"""Worlds with K independent factors (2 <= K <= 64), for "how many factors can be disentangled?".

``KFactorImages``: the image is cut into a grid of ``ceil(sqrt(K))`` columns of cells; factor
``i`` owns cell ``i`` (row-major) and nothing else. Its value sets either the grey level of a
patch filling the cell (``encoding="intensity"``, linear in the value) or the column of a
vertical bar inside the cell (``encoding="position"``). K = 64 fits 8 x 8 cells of 8 x 8
pixels in a 64 x 64 image. ``KFactorTokens``: the sequence ``<bos> t(0, v0) t(1, v1) ...
t(K-1, vK-1) <eos>`` in fixed factor order, where token ``t(i, v)`` is unique to factor ``i``
and value ``v``. In both forms factor ``i`` changes only its own region or token, so the
difficulty is set by K and the number of values alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from probe_disentangle.worlds.base import World

__all__ = ["MAX_FACTORS", "MIN_FACTORS", "KFactorImages", "KFactorTokens"]

MIN_FACTORS, MAX_FACTORS = 2, 64


def _factor_sizes(num_factors: int, num_values: int | Sequence[int]) -> tuple[int, ...]:
    """Validate K and the per-factor value counts; return ``factor_sizes``."""
    if isinstance(num_factors, bool) or not isinstance(num_factors, (int, np.integer)):
        raise TypeError(f"num_factors must be an int, got {type(num_factors).__name__}")
    if not MIN_FACTORS <= num_factors <= MAX_FACTORS:
        raise ValueError(f"num_factors must be in [{MIN_FACTORS}, {MAX_FACTORS}], got {num_factors}")
    if isinstance(num_values, (int, np.integer)):
        sizes = (int(num_values),) * int(num_factors)
    else:
        sizes = tuple(int(v) for v in num_values)
        if len(sizes) != num_factors:
            raise ValueError(f"num_values has {len(sizes)} entries but num_factors is {num_factors}")
    bad = [i for i, s in enumerate(sizes) if s < 2]
    if bad:
        raise ValueError(f"every factor needs at least 2 values; factor {bad[0]} has {sizes[bad[0]]}")
    return sizes


class KFactorImages(World):
    """K factors as ``[1, H, W]`` float32 images; factor ``i`` draws only inside its own cell.

    ``region(i)`` gives the cell's ``(row slice, column slice)``. Cells keep a one-pixel gap on
    their right and bottom edges when they are at least 4 pixels wide, so patches never touch.
    """

    def __init__(
        self,
        num_factors: int,
        num_values: int | Sequence[int] = 4,
        *,
        image_size: int = 64,
        encoding: str = "intensity",
    ) -> None:
        self.factor_sizes = _factor_sizes(num_factors, num_values)
        self.factor_names = tuple(f"f{i}" for i in range(num_factors))
        if encoding not in ("intensity", "position"):
            raise ValueError(f"encoding must be 'intensity' or 'position', got {encoding!r}")
        self.encoding = encoding
        self.image_size = int(image_size)
        self.grid_cols = math.ceil(math.sqrt(num_factors))
        self.grid_rows = math.ceil(num_factors / self.grid_cols)
        self.cell_h = self.image_size // self.grid_rows
        self.cell_w = self.image_size // self.grid_cols
        if min(self.cell_h, self.cell_w) < 2:
            raise ValueError(
                f"image_size={image_size} is too small for {num_factors} factors "
                f"({self.grid_rows} x {self.grid_cols} cells need at least 2 pixels each)"
            )
        gap = 1 if min(self.cell_h, self.cell_w) >= 4 else 0
        self.patch_h, self.patch_w = self.cell_h - gap, self.cell_w - gap
        if encoding == "position" and max(self.factor_sizes) > self.patch_w:
            raise ValueError(
                f"encoding='position' needs at most {self.patch_w} values per factor in "
                f"{self.patch_w}-pixel-wide patches, got {max(self.factor_sizes)}; use fewer values, "
                "a larger image_size or encoding='intensity'"
            )

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    def region(self, factor: int | str) -> tuple[slice, slice]:
        """The pixel rows and columns that factor ``factor`` may change."""
        i = self.factor_index(factor)
        r, c = divmod(i, self.grid_cols)
        top, left = r * self.cell_h, c * self.cell_w
        return slice(top, top + self.patch_h), slice(left, left + self.patch_w)

    def read(self, images: np.ndarray) -> np.ndarray:
        """The factors ``[N, K]`` an image shows, read from its cells: the nearest grey level of each
        patch's mean (``"intensity"``), or the column where the patch is brightest (``"position"``).
        ``read(render(f)) == f``; an image a model decoded reads as the values it looks closest
        to, so an edit's effect on every factor can be scored (steering success and leakage)."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != self.observation_shape:
            raise ValueError(f"images must be [N, {', '.join(map(str, self.observation_shape))}], got {x.shape}")
        out = np.empty((len(x), self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factor_sizes):
            rows, cols = self.region(i)
            patch = x[:, 0, rows, cols]
            if self.encoding == "intensity":
                out[:, i] = np.clip(np.rint(patch.mean((1, 2)) * (size - 1)), 0, size - 1)
            else:
                at = patch.mean(1).argmax(1)  # brightest column → nearest value's column
                out[:, i] = np.clip(np.rint(at * (size - 1) / (self.patch_w - 1)), 0, size - 1)
        return out

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n, k = factors.shape
        sizes = np.asarray(self.factor_sizes)
        # Per-factor patches (n, K, patch_h, patch_w)
        if self.encoding == "intensity":
            level = (factors / (sizes - 1)).astype(np.float32)  # value 0 -> black, last -> white
            patches = np.broadcast_to(level[:, :, None, None], (n, k, self.patch_h, self.patch_w))
        else:
            col = np.round(factors * (self.patch_w - 1) / (sizes - 1)).astype(np.int64)  # (n, K)
            bar = (np.arange(self.patch_w)[None, None, :] == col[:, :, None]).astype(np.float32)
            patches = np.broadcast_to(bar[:, :, None, :], (n, k, self.patch_h, self.patch_w))
        cells = np.zeros((n, self.grid_rows * self.grid_cols, self.cell_h, self.cell_w), dtype=np.float32)
        cells[:, :k, : self.patch_h, : self.patch_w] = patches
        # (n, rows*cols, ch, cw) -> (n, rows*ch, cols*cw), then pad to the image size
        grid = cells.reshape(n, self.grid_rows, self.grid_cols, self.cell_h, self.cell_w)
        grid = grid.transpose(0, 1, 3, 2, 4)
        grid = grid.reshape(n, self.grid_rows * self.cell_h, self.grid_cols * self.cell_w)
        out = np.zeros((n, 1, self.image_size, self.image_size), dtype=np.float32)
        out[:, 0, : grid.shape[1], : grid.shape[2]] = grid
        return out


class KFactorTokens(World):
    """K factors as token sequences ``[n, K + 2]`` int64: ``<bos> t(0, v0) ... t(K-1, vK-1) <eos>``.

    Ids 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``; ``t(i, v) = 3 + sum(sizes[:i]) + v``, so every
    (factor, value) pair has its own token and factor ``i`` always sits at position ``i + 1``.
    """

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, num_factors: int, num_values: int | Sequence[int] = 4) -> None:
        self.factor_sizes = _factor_sizes(num_factors, num_values)
        self.factor_names = tuple(f"f{i}" for i in range(num_factors))
        self._offsets = 3 + np.concatenate([[0], np.cumsum(self.factor_sizes)[:-1]]).astype(np.int64)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (self.num_factors + 2,)

    @property
    def vocab_size(self) -> int:
        """3 specials plus one token per (factor, value) pair."""
        return 3 + sum(self.factor_sizes)

    @property
    def vocab(self) -> list[str]:
        """Token strings by id: the specials, then ``"f{i}={v}"``."""
        words = ["<pad>", "<bos>", "<eos>"]
        for name, size in zip(self.factor_names, self.factor_sizes, strict=True):
            words += [f"{name}={v}" for v in range(size)]
        return words

    def token_id(self, factor: int | str, value: int) -> int:
        """The token that says ``factor`` has ``value``."""
        i = self.factor_index(factor)
        if not 0 <= value < self.factor_sizes[i]:
            raise ValueError(f"factor {self.factor_names[i]!r} must be in [0, {self.factor_sizes[i] - 1}], got {value}")
        return int(self._offsets[i] + value)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n = len(factors)
        out = np.empty((n, self.num_factors + 2), dtype=np.int64)
        out[:, 0] = self.bos_id
        out[:, 1:-1] = factors + self._offsets[None, :]
        out[:, -1] = self.eos_id
        return out

    def decode(self, tokens: np.ndarray | Sequence[int]) -> np.ndarray:
        """Factors ``[n, K]`` back from token rows ``[n, K + 2]``; ValueError if a token is misplaced."""
        arr = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        if arr.shape[1] != self.num_factors + 2:
            raise ValueError(f"token rows must have length {self.num_factors + 2}, got shape {arr.shape}")
        values = arr[:, 1:-1] - self._offsets[None, :]
        sizes = np.asarray(self.factor_sizes)[None, :]
        bad = (values < 0) | (values >= sizes)
        if bad.any() or (arr[:, 0] != self.bos_id).any() or (arr[:, -1] != self.eos_id).any():
            raise ValueError("tokens are not a well-formed K-factor sequence (wrong token for a position)")
        return values
