"""Pictures of what a model learned: latent traversals, InfoGAN code grids, metric-vs-β plots,
heat maps (the mutual information of latents × factors).

Everything returns a ``uint8`` numpy image and, given a path, writes it as PNG with Pillow (no
plotting library). Traversal grids follow Higgins et al. 2017 (fig. 7) and Burgess et al. 2018
(fig. 2): one row per latent, the latent swept over a range of values while the others stay at
the posterior mean of one input; InfoGAN grids follow Chen et al. 2016 (fig. 2): one row per
value of a categorical code, the columns sweeping a continuous code.

References
----------
- Higgins et al. 2017, "β-VAE: Learning basic visual concepts with a constrained variational
  framework" (ICLR).
- Burgess et al. 2018, "Understanding disentangling in β-VAE" (arXiv:1804.03599).
- Chen et al. 2016, "InfoGAN" (NeurIPS).
"""

from __future__ import annotations

import io as _bytes_io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import losses
from .io import atomic_write_bytes

__all__ = [
    "colormap",
    "heat_map",
    "image_grid",
    "infogan_code_grid",
    "kl_order",
    "metric_vs_beta_plot",
    "save_png",
    "traversal_grid",
]

# tab10 colours, for plot lines
_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as err:  # pragma: no cover - Pillow is a core dependency
        raise ImportError("writing PNG files needs Pillow: pip install 'pillow>=9'") from err
    return Image, ImageDraw, ImageFont


def _to_uint8(array: np.ndarray | Tensor) -> np.ndarray:
    """uint8 image: uint8 passes through, floats are read as [0, 1] and clipped."""
    if isinstance(array, Tensor):
        array = array.detach().cpu().numpy()
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    return (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(array: np.ndarray | Tensor, path: str | os.PathLike) -> Path:
    """Write an ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` image as PNG, atomically (temp file + os.replace).

    uint8 arrays are written as they are; float arrays are read as [0, 1] and clipped.
    """
    Image, _, _ = _pil()
    arr = _to_uint8(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"save_png expects [H, W], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    buf = _bytes_io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def image_grid(images: np.ndarray | Tensor, rows: int, cols: int, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """Tile ``rows·cols`` images ``[N, C, H, W]`` (row-major, values in [0, 1] or uint8) into one image.

    Each cell is followed by ``pad`` pixels of ``pad_value`` on its right and below, so the grid
    is ``(rows·(H + pad), cols·(W + pad))``, with a trailing channel axis of 3 for RGB.
    """
    arr = _to_uint8(images)
    if arr.ndim != 4 or arr.shape[0] != rows * cols or arr.shape[1] not in (1, 3):
        raise ValueError(f"image_grid expects [{rows * cols}, 1 or 3, H, W] images, got shape {arr.shape}")
    n, c, h, w = arr.shape
    grid = np.full((rows * (h + pad), cols * (w + pad), c), pad_value, dtype=np.uint8)
    cells = arr.transpose(0, 2, 3, 1)  # (N, H, W, C)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = cells[i]
    return grid[:, :, 0] if c == 1 else grid


class _eval_mode:
    """Put a module in eval mode inside the block and restore its previous mode after."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc) -> None:
        self.module.train(self.was_training)


def _decode_image(model: nn.Module, z: Tensor) -> Tensor:
    """Images for latents: ``model.decode_image`` when the model has one, else ``model.decode``."""
    fn = getattr(model, "decode_image", None)
    return fn(z) if fn is not None else model.decode(z)


def _as_batch(x: Tensor) -> Tensor:
    return x.unsqueeze(0) if x.ndim == 3 else x


@torch.no_grad()
def kl_order(model: nn.Module, x: Tensor, latents: Sequence[int] | None = None) -> list[int]:
    """``latents`` (default all) sorted by mean KL(q(z_k|x) || N(0, 1)) over ``x``, highest first.

    Latents a VAE does not use collapse to the prior and have KL ≈ 0 (Burgess et al. 2018), so
    this puts the informative ones on top. Ties keep the given order.
    """
    with _eval_mode(model):
        mu, logvar = model.encode(_as_batch(x))
    kl = losses.kl_normal_standard(mu, logvar).mean(0)
    cand = list(range(mu.shape[1])) if latents is None else [int(k) for k in latents]
    _check_latents(cand, mu.shape[1])
    return sorted(cand, key=lambda k: -float(kl[k]))


def _check_latents(latents: Sequence[int], k: int) -> None:
    bad = [j for j in latents if not 0 <= j < k]
    if bad:
        raise ValueError(f"latent indices {bad} out of range for a model with {k} latents")
    if not latents:
        raise ValueError("no latents to show; pass at least one latent index")


@torch.no_grad()
def traversal_grid(
    model: nn.Module,
    x: Tensor,
    latents: Sequence[int] | None = None,
    values: Tensor | Sequence[float] | None = None,
    order: str | Sequence[int] = "kl",
    path: str | os.PathLike | None = None,
    *,
    index: int = 0,
    pad: int = 2,
    pad_value: int = 128,
) -> np.ndarray:
    """Latent traversals of a VAE as one uint8 image (Higgins et al. 2017; Burgess et al. 2018).

    The base code is the posterior mean of ``x[index]``; row r sweeps one latent over ``values``
    (default ``torch.linspace(-2.5, 2.5, 9)``), one column per value. Rows: ``order="kl"`` sorts
    ``latents`` (default all) by their mean KL over ``x``, highest first (see :func:`kl_order`);
    ``order="index"`` keeps ``latents`` as given; a list of latent indices (e.g. the latent
    aligned with each factor) is used as it is. ``model`` needs ``encode(x) -> (mu, logvar)``
    and ``decode_image(z)`` (or ``decode(z)``) returning images in [0, 1]. The result is
    ``[rows·(H + pad), cols·(W + pad)]`` (with a trailing 3 for RGB); written as PNG to ``path``.
    """
    x = _as_batch(x)
    vals = torch.linspace(-2.5, 2.5, 9) if values is None else torch.as_tensor(values, dtype=torch.float32).flatten()
    if vals.numel() == 0:
        raise ValueError("values is empty; pass the latent values to sweep, e.g. torch.linspace(-2.5, 2.5, 9)")
    with _eval_mode(model):
        mu, _ = model.encode(x)
        K = mu.shape[1]
        if isinstance(order, str):
            if order == "kl":
                rows = kl_order(model, x, latents)
            elif order == "index":
                rows = list(range(K)) if latents is None else [int(k) for k in latents]
            else:
                raise ValueError(f"unknown order {order!r}; use 'kl', 'index' or a list of latent indices")
        else:
            rows = [int(k) for k in order]
        _check_latents(rows, K)
        if not -x.shape[0] <= index < x.shape[0]:
            raise ValueError(f"index {index} out of range for {x.shape[0]} input images")
        n_cols = vals.numel()
        z = mu[index].repeat(len(rows) * n_cols, 1)  # (rows·cols, K), row-major
        vals = vals.to(z)
        for r, k in enumerate(rows):
            z[r * n_cols : (r + 1) * n_cols, k] = vals
        images = _decode_image(model, z)
    grid = image_grid(images.clamp(0, 1), len(rows), n_cols, pad, pad_value)
    if path is not None:
        save_png(grid, path)
    return grid


@torch.no_grad()
def infogan_code_grid(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    rows: str = "categorical",
    categorical: int = 0,
    continuous: int = 0,
    values: Tensor | Sequence[float] | None = None,
    num_noise: int = 8,
    seed: int = 0,
    pad: int = 2,
    pad_value: int = 128,
) -> np.ndarray:
    """InfoGAN samples on a grid of code values, one noise vector throughout (Chen et al. 2016, fig. 2).

    ``rows="categorical"``: one row per value of categorical code ``categorical``; the columns
    sweep continuous code ``continuous`` over ``values`` (default ``linspace(-1, 1, 8)``).
    ``rows="continuous"``: the transpose — one row per value of the continuous code, one column
    per category. Without the other kind of code, the columns show ``num_noise`` noise draws.
    All other codes are held at category 0 / value 0. Returns the uint8 grid; writes PNG to ``path``.
    """
    cfg = model.config
    if rows not in ("categorical", "continuous"):
        raise ValueError(f"rows must be 'categorical' or 'continuous', got {rows!r}")
    has_cat, has_cont = bool(cfg.categorical), cfg.continuous > 0
    if rows == "categorical" and not has_cat:
        raise ValueError("this model has no categorical code; use rows='continuous'")
    if rows == "continuous" and not has_cont:
        raise ValueError("this model has no continuous code; use rows='categorical'")
    if has_cat and not 0 <= categorical < len(cfg.categorical):
        raise ValueError(f"categorical={categorical} out of range for {len(cfg.categorical)} categorical codes")
    if has_cont and not 0 <= continuous < cfg.continuous:
        raise ValueError(f"continuous={continuous} out of range for {cfg.continuous} continuous codes")
    vals = torch.linspace(-1, 1, 8) if values is None else torch.as_tensor(values, dtype=torch.float32).flatten()
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    cat_axis = list(range(cfg.categorical[categorical])) if has_cat else [0]
    cont_axis = vals.tolist() if has_cont else [0.0]
    # the axis of the other code, or noise draws when it does not exist
    if rows == "categorical":
        row_vals, col_vals, col_is_noise = cat_axis, cont_axis, not has_cont
    else:
        row_vals, col_vals, col_is_noise = cont_axis, cat_axis, not has_cat
    n_cols = num_noise if col_is_noise else len(col_vals)
    noise = torch.randn(n_cols if col_is_noise else 1, cfg.noise_dim, generator=g)
    n = len(row_vals) * n_cols
    cat = torch.zeros(n, len(cfg.categorical), dtype=torch.long)
    cont = torch.zeros(n, cfg.continuous)
    z = torch.empty(n, cfg.noise_dim)
    for r, rv in enumerate(row_vals):
        for c in range(n_cols):
            i = r * n_cols + c
            z[i] = noise[c] if col_is_noise else noise[0]
            cv = None if col_is_noise else col_vals[c]
            cat_v, cont_v = (rv, cv) if rows == "categorical" else (cv, rv)
            if has_cat and cat_v is not None:
                cat[i, categorical] = int(cat_v)
            if has_cont and cont_v is not None:
                cont[i, continuous] = float(cont_v)
    with _eval_mode(model):
        images = model.generate(z.to(device), cat.to(device), cont.to(device))
    grid = image_grid(images.clamp(0, 1), len(row_vals), n_cols, pad, pad_value)
    if path is not None:
        save_png(grid, path)
    return grid


# --------------------------------------------------------------------------------------------
# Line plots drawn with Pillow
# --------------------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (Heckbert 1990, "Nice numbers for graph labels")."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def metric_vs_beta_plot(
    betas: Sequence[float],
    values: Mapping[str, Sequence[float]],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    xlabel: str = "beta",
    ylabel: str = "metric",
    log_x: bool | None = None,
    size: tuple[int, int] = (640, 420),
) -> np.ndarray:
    """A line plot of metrics against β (one line per entry of ``values``) as an RGB uint8 image.

    Axes, ticks at each β, round y ticks, axis labels, a title and a legend, drawn with Pillow.
    ``log_x`` (default: when all β > 0 and they span a factor ≥ 10) spaces β logarithmically.
    NaN values are skipped. Written as PNG to ``path`` when given.
    """
    Image, ImageDraw, ImageFont = _pil()
    xs = [float(b) for b in betas]
    if not xs:
        raise ValueError("betas is empty")
    for name, ys in values.items():
        if len(ys) != len(xs):
            raise ValueError(f"values[{name!r}] has {len(ys)} entries but there are {len(xs)} betas")
    if log_x is None:
        log_x = min(xs) > 0 and max(xs) / min(xs) >= 10
    if log_x and min(xs) <= 0:
        raise ValueError("log_x needs every beta > 0")
    tx = [math.log10(v) for v in xs] if log_x else xs
    finite = [float(v) for ys in values.values() for v in ys if v is not None and math.isfinite(float(v))]
    f_lo, f_hi = min(finite, default=0.0), max(finite, default=1.0)
    head = 0.05 * (f_hi - f_lo)  # keep the extreme points off the frame
    yticks = _nice_ticks(f_lo - head, f_hi + head)
    y_lo, y_hi = yticks[0], yticks[-1]
    x_lo, x_hi = min(tx), max(tx)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    x_pad = 0.05 * (x_hi - x_lo)
    x_lo, x_hi = x_lo - x_pad, x_hi + x_pad

    W, H = size
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def text_size(s: str) -> tuple[int, int]:
        b = draw.textbbox((0, 0), s, font=font)
        return b[2] - b[0], b[3] - b[1]

    th = text_size("Ag")[1]
    names = list(values)
    legend_w = max((text_size(n)[0] for n in names), default=0) + 34 if names else 0
    left = 16 + th + max(text_size(_fmt(t))[0] for t in yticks)
    right, top, bottom = W - 16 - (legend_w + 10 if names else 0), 16 + (2 * th if title else th), H - (28 + 2 * th)
    if right - left < 50 or bottom - top < 50:
        raise ValueError(f"size {size} is too small for a plot")

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    # grid, axes, ticks and tick labels
    for t in yticks:
        y = py(t)
        draw.line([(left, y), (right, y)], fill=(230, 230, 230))
        draw.line([(left - 4, y), (left, y)], fill="black")
        w, h = text_size(_fmt(t))
        draw.text((left - 7 - w, y - h / 2 - 1), _fmt(t), fill="black", font=font)
    shown_right = -1e9
    for x, b in zip(tx, xs, strict=True):
        X = px(x)
        draw.line([(X, bottom), (X, bottom + 4)], fill="black")
        w, _ = text_size(_fmt(b))
        if X - w / 2 > shown_right + 4:  # skip labels that would overlap
            draw.text((X - w / 2, bottom + 7), _fmt(b), fill="black", font=font)
            shown_right = X + w / 2
    draw.rectangle([left, top, right, bottom], outline="black")
    # axis labels and title
    xl = xlabel + (" (log scale)" if log_x else "")
    w, _ = text_size(xl)
    draw.text(((left + right) / 2 - w / 2, H - 10 - th), xl, fill="black", font=font)
    w, h = text_size(ylabel)
    label = Image.new("RGB", (w + 4, h + 6), "white")
    ImageDraw.Draw(label).text((2, 1), ylabel, fill="black", font=font)
    label = label.rotate(90, expand=True)
    img.paste(label, (4, int((top + bottom) / 2 - label.size[1] / 2)))
    if title:
        w, _ = text_size(title)
        draw.text((W / 2 - w / 2, 8), title, fill="black", font=font)
    # lines and markers; NaN breaks the line
    for i, ys in enumerate(values.values()):
        colour = _COLOURS[i % len(_COLOURS)]
        seg: list[tuple[float, float]] = []
        for x, y in zip(tx, ys, strict=True):
            if y is None or not math.isfinite(float(y)):
                if len(seg) > 1:
                    draw.line(seg, fill=colour, width=2)
                seg = []
                continue
            p = (px(x), py(float(y)))
            seg.append(p)
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        if len(seg) > 1:
            draw.line(seg, fill=colour, width=2)
    # legend, right of the axes
    if names:
        lw, lh = legend_w, len(names) * (th + 6) + 6
        x0, y0 = right + 10, top
        draw.rectangle([x0, y0, x0 + lw, y0 + lh], fill="white", outline=(160, 160, 160))
        for i, n in enumerate(names):
            y = y0 + 6 + i * (th + 6) + th / 2
            colour = _COLOURS[i % len(_COLOURS)]
            draw.line([(x0 + 6, y), (x0 + 24, y)], fill=colour, width=2)
            draw.text((x0 + 30, y - th / 2 - 1), n, fill="black", font=font)
    arr = np.asarray(img, dtype=np.uint8).copy()
    if path is not None:
        save_png(arr, path)
    return arr


# --------------------------------------------------------------------------------------------
# Heat maps drawn with Pillow
# --------------------------------------------------------------------------------------------

# viridis (matplotlib's default colour map, perceptually uniform) at 0, 1/8, …, 1; linear in between
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)


def colormap(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Viridis colours (uint8 RGB, shape ``values.shape + (3,)``) of values in [0, 1] (clipped; NaN: grey)."""
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    t = np.clip(np.where(nan, 0.0, v), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_VIRIDIS) - 2)
    f = (t - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - f) + _VIRIDIS[lo + 1] * f
    rgb[nan] = 200.0
    return (rgb + 0.5).astype(np.uint8)


def heat_map_layout(
    shape: tuple[int, int], row_labels: Sequence[str], col_labels: Sequence[str], cell: int, title: str | None
) -> dict[str, int]:
    """Where :func:`heat_map` puts things: the cells' top-left corner (``left``, ``top``), the cell
    size, the colour bar's left edge (``bar_left``) and the image's ``width`` and ``height``.
    Public so that tests and the report's browser check can find every cell."""
    _, ImageDraw, ImageFont = _pil()
    from PIL import Image

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default()

    def width(s: str) -> int:
        b = draw.textbbox((0, 0), s, font=font)
        return b[2] - b[0]

    b = draw.textbbox((0, 0), "Ag", font=font)
    th = b[3] - b[1]
    R, C = shape
    row_w = max((width(s) for s in row_labels), default=0)
    col_w = max((width(s) for s in col_labels), default=0)  # column labels are written upwards
    left = 8 + th + 6 + row_w + 6  # y-axis label, row labels
    top = 8 + (th + 8 if title else 0)
    bar_left = left + C * cell + 16
    width_ = bar_left + 14 + 6 + max(width("0.000"), width(_fmt(0.0))) + 40
    height = max(top + R * cell + 6 + col_w + 6 + th + 8, top + 120 + 2 * th)
    return {"left": left, "top": top, "cell": cell, "bar_left": bar_left, "width": width_, "height": height}


def heat_map(
    matrix: np.ndarray | Tensor,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    cell: int = 36,
    annotate: bool = True,
) -> np.ndarray:
    """A matrix ``[R, C]`` as a heat map (uint8 RGB): one ``cell``-pixel square per entry coloured
    by viridis over [``vmin``, ``vmax``] (default the matrix's range; NaN grey), the value written
    in it (``annotate``), row labels left, column labels written upwards below, axis labels, a
    title and a colour bar with its scale on the right. Drawn with Pillow; PNG to ``path`` if given.
    """
    Image, ImageDraw, ImageFont = _pil()
    m = matrix.detach().cpu().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    m = m.astype(np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"heat_map expects a non-empty [rows, cols] matrix, got shape {m.shape}")
    if len(row_labels) != m.shape[0] or len(col_labels) != m.shape[1]:
        raise ValueError(
            f"{len(row_labels)} row labels and {len(col_labels)} column labels for a {m.shape[0]}×{m.shape[1]} "
            "matrix; pass one label per row and per column"
        )
    if cell < 4:
        raise ValueError(f"cell must be ≥ 4 pixels, got {cell}")
    finite = m[np.isfinite(m)]
    lo = float(finite.min()) if vmin is None and finite.size else (0.0 if vmin is None else float(vmin))
    hi = float(finite.max()) if vmax is None and finite.size else (1.0 if vmax is None else float(vmax))
    if not hi > lo:
        hi = lo + 1.0
    lay = heat_map_layout(m.shape, row_labels, col_labels, cell, title)
    left, top, R, C = lay["left"], lay["top"], m.shape[0], m.shape[1]
    colours = colormap((m - lo) / (hi - lo))
    arr = np.full((lay["height"], lay["width"], 3), 255, dtype=np.uint8)
    for i in range(R):
        for j in range(C):
            arr[top + i * cell : top + (i + 1) * cell, left + j * cell : left + (j + 1) * cell] = colours[i, j]
    bar_h = max(R * cell, 120)
    ramp = colormap(np.linspace(1.0, 0.0, bar_h))  # top: vmax
    arr[top : top + bar_h, lay["bar_left"] : lay["bar_left"] + 14] = ramp[:, None, :]
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def size(s: str) -> tuple[int, int]:
        b = draw.textbbox((0, 0), s, font=font)
        return b[2] - b[0], b[3] - b[1]

    for i in range(R):  # grid lines between cells
        draw.line([(left, top + i * cell), (left + C * cell - 1, top + i * cell)], fill="white")
    for j in range(C):
        draw.line([(left + j * cell, top), (left + j * cell, top + R * cell - 1)], fill="white")
    if annotate and cell >= 24:
        for i in range(R):
            for j in range(C):
                s = "nan" if not np.isfinite(m[i, j]) else f"{m[i, j]:.2f}"
                w, h = size(s)
                dark = colours[i, j].astype(int) @ np.array([299, 587, 114]) < 128_000  # luma < 128
                draw.text(
                    (left + j * cell + (cell - w) / 2, top + i * cell + (cell - h) / 2 - 1),
                    s,
                    fill="white" if dark else "black",
                    font=font,
                )
    for i, s in enumerate(row_labels):
        w, h = size(s)
        draw.text((left - 6 - w, top + i * cell + (cell - h) / 2 - 1), s, fill="black", font=font)
    for j, s in enumerate(col_labels):  # upwards, centred under the column
        w, h = size(s)
        lab = Image.new("RGB", (w + 2, h + 4), "white")
        ImageDraw.Draw(lab).text((1, 0), s, fill="black", font=font)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (int(left + j * cell + (cell - lab.size[0]) / 2), top + R * cell + 6))
    col_w = max(size(s)[0] for s in col_labels)
    if xlabel:
        w, _ = size(xlabel)
        draw.text((left + C * cell / 2 - w / 2, top + R * cell + 6 + col_w + 8), xlabel, fill="black", font=font)
    if ylabel:
        w, h = size(ylabel)
        lab = Image.new("RGB", (w + 4, h + 6), "white")
        ImageDraw.Draw(lab).text((2, 1), ylabel, fill="black", font=font)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (6, int(top + R * cell / 2 - lab.size[1] / 2)))
    if title:
        draw.text((left, 6), title, fill="black", font=font)
    bx = lay["bar_left"] + 14
    for v in (hi, (lo + hi) / 2, lo):  # the colour bar's scale
        y = top + (hi - v) / (hi - lo) * (bar_h - 1)
        draw.line([(bx, y), (bx + 3, y)], fill="black")
        _, h = size(_fmt(v))
        draw.text((bx + 6, y - h / 2 - 1), _fmt(round(v, 3)), fill="black", font=font)
    out = np.asarray(img, dtype=np.uint8).copy()
    if path is not None:
        save_png(out, path)
    return out
