"""A report people look at: one self-contained HTML page beside ``report.md`` / ``eval.json``.

The page holds the metric tables, the mutual information of latents × factors as a heat map
(:func:`viz.heat_map`), one traversal per aligned latent — the generated sentences per value for a
language model, an image grid (:func:`viz.traversal_grid`, :func:`viz.image_grid`) for image and
diffusion hosts — and the baselines. Every picture is a PNG inlined as a base64 ``data:`` URI, so
the file can be mailed or opened offline; there is no JavaScript, and every piece of text is
escaped (``html.escape``), so a sentence a model generated cannot inject markup.
"""

from __future__ import annotations

import base64
import html
import io as _bytes_io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__, viz
from .constants import REPORT_HEAT_CELL, REPORT_MAX_IMAGE_SCALE, REPORT_MIN_IMAGE_WIDTH
from .io import atomic_write_bytes

__all__ = [
    "Table",
    "Traversal",
    "generated_traversal",
    "image_traversals",
    "metrics_table",
    "png_data_uri",
    "render_report",
    "write_report",
]


@dataclass
class Table:
    """A table on the page: a title, column names, rows of cells (floats shown to 3 decimals,
    None as a dash) and an optional note under it."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: a row has {len(r)} cells for {len(self.columns)} columns {list(self.columns)}"
                )


@dataclass
class Traversal:
    """One latent swept over ``values``, the others held: either ``texts`` (one generation per
    value, same sampling seed) or ``image`` (a uint8 grid, one column per value)."""

    latent: int | str
    factor: str | None
    values: Sequence[float]
    texts: Sequence[str] | None = None
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.texts is None) == (self.image is None):
            raise ValueError(f"traversal of latent {self.latent}: give either texts or an image, not both or neither")
        if self.texts is not None and len(self.texts) != len(self.values):
            raise ValueError(
                f"traversal of latent {self.latent}: {len(self.texts)} texts for {len(self.values)} values; "
                "pass one generation per value"
            )


def metrics_table(metrics: Mapping[str, Any], title: str = "Metrics") -> Table:
    """The numbers of a metric dict (``{"mig.discrete_mig": 0.91, ...}``) as a two-column table."""
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return Table(title, ("metric", "value"), rows)


def png_data_uri(image: np.ndarray | Tensor) -> str:
    """A uint8 image (or floats in [0, 1]) ``[H, W]`` / ``[H, W, 3]`` as a ``data:image/png;base64`` URI."""
    from PIL import Image

    arr = viz._to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"an inlined image must be [H, W], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    buf = _bytes_io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(image: np.ndarray, alt: str, cls: str) -> str:
    """An ``<img>`` of ``image`` at a whole-number scale that makes a small grid at least
    ``REPORT_MIN_IMAGE_WIDTH`` wide (nearest-neighbour, so the pixels stay sharp)."""
    h, w = image.shape[:2]
    scale = max(1, min(REPORT_MAX_IMAGE_SCALE, REPORT_MIN_IMAGE_WIDTH // max(w, 1)))
    return (
        f'<img class="{cls}" src="{png_data_uri(image)}" width="{w * scale}" height="{h * scale}" '
        f'alt="{html.escape(alt)}">'
    )


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return html.escape(str(v))


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in t.rows)
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _marked(text: str, first: str) -> str:
    """``text`` escaped, its words that differ from ``first``'s word at the same place marked."""
    a, b = text.split(" "), first.split(" ")
    return " ".join(
        html.escape(w) if i < len(b) and w == b[i] else f"<mark>{html.escape(w)}</mark>" for i, w in enumerate(a)
    )


def _traversal(t: Traversal) -> str:
    what = f"latent {t.latent}" + (f" (aligned with {t.factor})" if t.factor else "")
    out = f'<section class="traversal"><h3>{html.escape(what)}</h3>'
    if t.texts is not None:
        rows = "".join(
            f'<tr><td class="num">{_value(v)}</td><td class="text">{_marked(s, t.texts[0])}</td></tr>'
            for v, s in zip(t.values, t.texts, strict=True)
        )
        out += f"<table><thead><tr><th>value</th><th>generated</th></tr></thead><tbody>{rows}</tbody></table>"
    else:
        cols = " ".join(_value(v) for v in t.values)
        out += _img(t.image, f"traversal of {what}", "grid") + f'<p class="note">columns: {cols}</p>'
    return out + "</section>"


def _value(v: Any) -> str:
    return f"{v:+.2f}" if isinstance(v, float) else html.escape(str(v))


_STYLE = """
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px 40px; color: #222; background: #fff;
       max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; margin-top: 28px; }
h3 { font-size: 15px; margin-bottom: 6px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 8px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-family: DejaVu Sans Mono, monospace; }
td.text { font-family: DejaVu Sans Mono, monospace; }
mark { background: #ffe08a; }
img { display: block; image-rendering: pixelated; margin: 6px 0; }
.note { font-size: 12px; color: #555; margin: 2px 0 10px; }
footer { margin-top: 32px; font-size: 11px; color: #777; }
"""


def _best_latents(mi: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> Table:
    """Per factor (a column of the heat map): the latent with the most information about it, that
    information and the gap to the runner-up (MIG's numerator, before dividing by H(factor))."""
    order = np.argsort(-mi, axis=0, kind="stable")  # a tie goes to the first latent, as argmax's does
    out = []
    for j, name in enumerate(cols):
        best = mi[order[0, j], j]
        gap = best - mi[order[1, j], j] if mi.shape[0] > 1 else None
        out.append((name, rows[order[0, j]], float(best), None if gap is None else float(gap)))
    return Table("The latent read for each factor", ("factor", "latent", "MI (nats)", "gap to the next latent"), out)


def render_report(
    title: str,
    *,
    summary: str = "",
    metrics: Sequence[Table] = (),
    mutual_information: np.ndarray | None = None,
    latent_labels: Sequence[str] = (),
    factor_labels: Sequence[str] = (),
    traversals: Sequence[Traversal] = (),
    baselines: Sequence[Table] = (),
) -> str:
    """The page as a string: ``summary`` (a paragraph), the ``metrics`` tables, the
    ``mutual_information`` matrix ``[latents, factors]`` (nats) as a heat map labelled by
    ``latent_labels`` × ``factor_labels``, the ``traversals`` and the ``baselines`` tables. A part
    left empty is left out."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if summary:
        parts.append(f"<p>{html.escape(summary)}</p>")
    if metrics:
        parts.append("<h2>Metrics</h2>" + "".join(_table(t) for t in metrics))
    if mutual_information is not None:
        mi = np.asarray(mutual_information, dtype=np.float64)
        rows = list(latent_labels) or [f"z{i}" for i in range(mi.shape[0])]
        cols = list(factor_labels) or [f"factor {j}" for j in range(mi.shape[1])]
        image = viz.heat_map(
            mi, rows, cols, vmin=0.0, cell=REPORT_HEAT_CELL, xlabel="factor", ylabel="latent", title="MI (nats)"
        )
        parts.append(
            "<h2>Mutual information: latents × factors</h2>"
            '<p class="note">Each cell: the mutual information (nats) between one latent, discretised in 20 bins '
            "as for MIG, and one true factor. A disentangled code has one bright cell per column.</p>"
            + _img(
                image,
                f"heat map of the mutual information of latents {', '.join(rows)} × factors {', '.join(cols)}",
                "heat-map",
            )
            + _table(_best_latents(mi, rows, cols))
        )
    if traversals:
        parts.append(
            "<h2>Traversals</h2>"
            '<p class="note">Each aligned latent from low to high, everything else held (the same sampling '
            "seed throughout); marked words differ from the first row's.</p>" + "".join(map(_traversal, traversals))
        )
    if baselines:
        parts.append("<h2>Baselines</h2>" + "".join(_table(t) for t in baselines))
    parts.append(f"<footer>written by probe_disentangle {html.escape(__version__)}</footer></body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str | os.PathLike, title: str, **parts: Any) -> Path:
    """Write :func:`render_report`'s page to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    atomic_write_bytes(path, render_report(title, **parts).encode("utf-8"))
    return path


@torch.no_grad()
def image_traversals(
    model: nn.Module,
    x: Tensor,
    alignment: Mapping[str, int],
    values: Sequence[float] | Tensor,
    n_inputs: int = 3,
) -> list[Traversal]:
    """For an image VAE (``encode`` / ``decode_image``, e.g. :class:`ConvVAE`): per factor its
    aligned latent swept over ``values`` from the posterior means of the first ``n_inputs``
    images of ``x`` — one row per input (:func:`viz.traversal_grid`), one column per value."""
    if not 1 <= n_inputs <= len(x):
        raise ValueError(f"n_inputs must be in 1..{len(x)} (the images given), got {n_inputs}")
    vals = torch.as_tensor(values, dtype=torch.float32).flatten()
    out = []
    for factor, latent in alignment.items():
        rows = [viz.traversal_grid(model, x, order=[int(latent)], values=vals, index=i) for i in range(n_inputs)]
        out.append(Traversal(int(latent), factor, vals.tolist(), image=np.concatenate(rows, 0)))
    return out


def generated_traversal(
    generate: Callable[[float], Tensor | np.ndarray],
    latent: int,
    factor: str | None,
    values: Sequence[float],
) -> Traversal:
    """A traversal of a generating host (a diffusion model steered by a probe): ``generate(v)``
    returns the images ``[n, C, H, W]`` in [0, 1] made with the latent set to ``v`` (the same
    seeds for every ``v``). One row per image, one column per value (:func:`viz.image_grid`)."""
    per_value = [torch.as_tensor(np.asarray(generate(float(v)))).float() for v in values]
    if not per_value:
        raise ValueError("values is empty; pass the latent values to sweep")
    n = per_value[0].shape[0]
    if any(p.ndim != 4 or p.shape != per_value[0].shape for p in per_value):
        raise ValueError(
            f"generate must return images [n, C, H, W] of one shape for every value, got {[tuple(p.shape) for p in per_value]}"
        )
    images = torch.stack(per_value, 1).flatten(0, 1)  # (n·values, C, H, W), row-major: one row per image
    grid = viz.image_grid(images.clamp(0, 1), n, len(values), pad=2, pad_value=255)
    return Traversal(latent, factor, [float(v) for v in values], image=grid)
