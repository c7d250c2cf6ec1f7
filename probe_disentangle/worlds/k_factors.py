"""Worlds with K independent factors (2 <= K <= 64), for "how many factors can be disentangled?".

``KFactorImages``: the image is cut into a grid of ``ceil(sqrt(K))`` columns of cells; factor
``i`` owns cell ``i`` (row-major) and nothing else. Its value sets either the grey level of a
patch filling the cell (``encoding="intensity"``, linear in the value) or the column of a
vertical bar inside the cell (``encoding="position"``). K = 64 fits 8 x 8 cells of 8 x 8
pixels in a 64 x 64 image. ``KFactorTokens``: the sequence ``<bos> t(0, v0) t(1, v1) ...
t(K-1, vK-1) <eos>`` in fixed factor order, where token ``t(i, v)`` is unique to factor ``i``
and value ``v``. In both forms factor ``i`` changes only its own region or token, so the
difficulty is set by K and the number of values alone.

``KFactorTokens(K, plan=True)`` puts a plan first, as ``FactorLanguage(plan=True)`` does:
``<bos> #t(0, v0) ... #t(K-1, vK-1) : t(0, v0) ... t(K-1, vK-1) <eos>``. Unplanned tokens are
independent of their prefix, so an LM trained on them carries no factor forward and has nothing
to steer; with a plan, the model must hold every factor from its tag to the token K + 1
positions later, where a middle-layer edit can change what it writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from probe_disentangle.worlds.base import World
from probe_disentangle.worlds.factor_language import Tokenizer

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

    ``plan=True``: rows ``[n, 2K + 3]``, ``<bos> plan : sentence <eos>``, where the plan tag
    ``#t(i, v)`` (id ``4 + S + sum(sizes[:i]) + v``, ``S = sum(sizes)``) is unique to factor ``i``
    and value ``v``, ``:`` is id ``3 + S`` and the sentence is the unplanned row's tokens. ``parse``
    reads the sentence (the plan is skipped), ``parse_plan`` the plan.
    """

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, num_factors: int, num_values: int | Sequence[int] = 4, *, plan: bool = False) -> None:
        self.factor_sizes = _factor_sizes(num_factors, num_values)
        self.factor_names = tuple(f"f{i}" for i in range(num_factors))
        self._offsets = 3 + np.concatenate([[0], np.cumsum(self.factor_sizes)[:-1]]).astype(np.int64)
        self.plan = bool(plan)
        total = sum(self.factor_sizes)
        self.sep_id = 3 + total if self.plan else None
        self._plan_offsets = self._offsets + total + 1  # the tag of (i, v) sits S + 1 ids after t(i, v)
        self.tokenizer = Tokenizer(self.vocab)

    @property
    def length(self) -> int:
        """Tokens per row: ``K + 2``, or ``2K + 3`` with the plan."""
        return 2 * self.num_factors + 3 if self.plan else self.num_factors + 2

    @property
    def max_length(self) -> int:
        """The longest row, BOS and EOS included (what a generation needs)."""
        return self.length

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (self.length,)

    @property
    def vocab_size(self) -> int:
        """3 specials plus one token per (factor, value) pair; with the plan, ``:`` and a tag per pair."""
        return 3 + sum(self.factor_sizes) * (2 if self.plan else 1) + (1 if self.plan else 0)

    @property
    def vocab(self) -> list[str]:
        """Token strings by id: the specials, then ``"f{i}={v}"``; with the plan ``":"`` and ``"#f{i}={v}"``."""
        words = ["<pad>", "<bos>", "<eos>"]
        pairs = [f"{name}={v}" for name, size in zip(self.factor_names, self.factor_sizes, strict=True) for v in range(size)]
        return words + pairs + ([":"] + [f"#{w}" for w in pairs] if self.plan else [])

    def token_id(self, factor: int | str, value: int, *, tag: bool = False) -> int:
        """The token that says ``factor`` has ``value`` (``tag=True``: its plan tag)."""
        i = self.factor_index(factor)
        if not 0 <= value < self.factor_sizes[i]:
            raise ValueError(f"factor {self.factor_names[i]!r} must be in [0, {self.factor_sizes[i] - 1}], got {value}")
        if tag and not self.plan:
            raise ValueError("plan tags exist only with the plan; build the world with KFactorTokens(K, plan=True)")
        return int((self._plan_offsets if tag else self._offsets)[i] + value)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n, k = len(factors), self.num_factors
        out = np.empty((n, self.length), dtype=np.int64)
        out[:, 0] = self.bos_id
        if self.plan:
            out[:, 1 : k + 1] = factors + self._plan_offsets[None, :]
            out[:, k + 1] = self.sep_id
        out[:, -k - 1 : -1] = factors + self._offsets[None, :]
        out[:, -1] = self.eos_id
        return out

    def decode(self, tokens: np.ndarray | Sequence[int]) -> np.ndarray:
        """Factors ``[n, K]`` back from token rows ``[n, K + 2]`` (``[n, 2K + 3]`` with the plan,
        read from the sentence); ValueError if a token is misplaced."""
        arr = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        if arr.shape[1] != self.length:
            raise ValueError(f"token rows must have length {self.length}, got shape {arr.shape}")
        k = self.num_factors
        values = arr[:, -k - 1 : -1] - self._offsets[None, :]
        bad = (values < 0) | (values >= np.asarray(self.factor_sizes)[None, :])
        ends = (arr[:, 0] != self.bos_id) | (arr[:, -1] != self.eos_id)
        if self.plan:
            tags = arr[:, 1 : k + 1] - self._plan_offsets[None, :]
            bad |= (tags < 0) | (tags >= np.asarray(self.factor_sizes)[None, :])
            ends |= arr[:, k + 1] != self.sep_id
        if bad.any() or ends.any():
            raise ValueError("tokens are not a well-formed K-factor sequence (wrong token for a position)")
        return values

    def _row(self, tokens) -> list[int]:
        """One row of ids as a list, cut after its first ``<eos>`` (generations carry padding)."""
        if hasattr(tokens, "detach"):
            tokens = tokens.detach().cpu().numpy()
        ids = np.asarray(tokens)
        if ids.ndim != 1:
            raise TypeError(f"parse takes one row of token ids (1-D), got shape {ids.shape}")
        ids = ids.astype(np.int64).tolist()
        return ids[: ids.index(self.eos_id) + 1] if self.eos_id in ids else ids

    def _read(self, ids: Sequence[int], offsets: np.ndarray) -> dict[str, int] | None:
        if len(ids) != self.num_factors:
            return None
        values = np.asarray(ids, dtype=np.int64) - offsets
        if ((values < 0) | (values >= np.asarray(self.factor_sizes))).any():
            return None
        return {name: int(v) for name, v in zip(self.factor_names, values, strict=True)}

    def parse(self, tokens) -> dict[str, int] | None:
        """``{factor name: value}`` read from one row's sentence (a generation may carry padding
        after ``<eos>``), or None when it is not a well-formed sentence (a token for the wrong
        factor or position, a missing ``<eos>``). With the plan, the sentence is what follows the
        first ``:``; the plan's tags are not read."""
        ids = self._row(tokens)
        if len(ids) < 2 or ids[0] != self.bos_id or ids[-1] != self.eos_id:
            return None
        body = ids[1:-1]
        if self.plan:
            if self.sep_id not in body:
                return None
            body = body[body.index(self.sep_id) + 1 :]
        return self._read(body, self._offsets)

    def parse_plan(self, tokens) -> dict[str, int] | None:
        """The factors the plan asks for (``plan=True``), or None if the plan is malformed."""
        if not self.plan:
            raise ValueError("this KFactorTokens has no plan; build it with KFactorTokens(K, plan=True)")
        ids = self._row(tokens)
        k = self.num_factors
        if len(ids) < k + 2 or ids[0] != self.bos_id or ids[k + 1] != self.sep_id:
            return None
        return self._read(ids[1 : k + 1], self._plan_offsets)
