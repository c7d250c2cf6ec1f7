"""The HTML report: known content on small synthetic inputs, escaping, inlined PNGs, no scripts."""

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from probe_disentangle import report_html, viz
from probe_disentangle.constants import REPORT_HEAT_CELL
from probe_disentangle.image_models import ConvVAE, ConvVAEConfig


def _images(page: str) -> list[tuple[np.ndarray, int, int, str]]:
    """Every inlined <img>: the decoded PNG, its drawn width and height, its class."""
    out = []
    for cls, uri, w, h in re.findall(
        r'<img class="([^"]+)" src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)"', page
    ):
        out.append((np.asarray(Image.open(io.BytesIO(base64.b64decode(uri)))), int(w), int(h), cls))
    return out


def _page(**overrides):
    names = ["shape", "scale", "x<pos>"]
    parts = dict(
        summary="a & b",
        metrics=[report_html.metrics_table({"mig.discrete_mig": 0.5, "count": 3, "skipped": "text"})],
        mutual_information=np.array([[1.0, 0.0, 0.1], [0.0, 0.7, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, 0.4]]),
        latent_labels=["z0", "z1", "z2", "z3"],
        factor_labels=names,
        traversals=[
            report_html.Traversal(
                1, "scale", [-1.0, 0.0, 1.0], texts=["a small cat", "a big cat", "a <b>huge</b> cat"]
            ),
            report_html.Traversal(0, "shape", [0.0, 1.0], image=np.zeros((10, 22, 3), np.uint8)),
        ],
        baselines=[report_html.Table("PCA", ("method", "MIG"), [("pca", 0.25), ("none", None)])],
    )
    parts.update(overrides)
    return report_html.render_report("Report <1>", **parts), names


def test_page_holds_every_part_escaped_and_without_scripts():
    page, names = _page()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert not re.search(r"<[^>]*\son\w+=", page)  # no event-handler attributes either
    # text is escaped: the title, a factor name and a generated sentence cannot inject markup
    assert "<title>Report &lt;1&gt;</title>" in page and "a &amp; b" in page
    assert "<b>huge</b>" not in page and "&lt;b&gt;huge&lt;/b&gt;" in page
    for text in ("z0", "z3", "shape", "scale", "x&lt;pos&gt;", "Baselines", "Mutual information", "0.500", "0.250"):
        assert text in page, text
    assert "skipped" not in page  # only numbers go in the metric table
    assert "a <mark>big</mark> cat" in page  # words that differ from the first value's sentence are marked
    # the heat map: a PNG laid out as viz.heat_map_layout says, drawn at its own size
    (hm, w, h, cls), (grid, gw, gh, gcls) = _images(page)
    lay = viz.heat_map_layout((4, 3), ["z0", "z1", "z2", "z3"], names, REPORT_HEAT_CELL, "MI (nats)")
    assert (
        cls == "heat-map" and hm.shape == (lay["height"], lay["width"], 3) and (w, h) == (lay["width"], lay["height"])
    )
    # the small grid is drawn at a whole-number scale (pixelated), at least as wide as the minimum
    assert gcls == "grid" and grid.shape == (10, 22, 3) and (gw, gh) == (22 * 4, 10 * 4)


def test_the_latent_read_for_each_factor_is_the_first_maximum():
    mi = np.array([[0.5, 0.1], [0.9, 0.2], [0.9, 0.0]])  # factor a: a tie between z1 and z2
    page = report_html.render_report("t", mutual_information=mi, factor_labels=["a", "b"])
    assert "<tr><td>a</td><td>z1</td><td>0.900</td><td>0.000</td></tr>" in page
    assert "<tr><td>b</td><td>z1</td><td>0.200</td><td>0.100</td></tr>" in page


def test_parts_left_empty_are_left_out():
    page = report_html.render_report("only a title")
    assert "<img" not in page and "<table" not in page and "only a title" in page


def test_bad_parts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="either texts or an image"):
        report_html.Traversal(0, None, [0.0])
    with pytest.raises(ValueError, match="one generation per value"):
        report_html.Traversal(0, None, [0.0, 1.0], texts=["one"])
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        report_html.Table("t", ("a", "b", "c"), [(1, 2)])
    with pytest.raises(ValueError, match="one label per row"):
        _page(latent_labels=["z0"])


def test_write_report_is_the_rendered_page(tmp_path):
    path = report_html.write_report(tmp_path / "r.html", "T", summary="s")
    assert path.read_text() == report_html.render_report("T", summary="s")


def test_heat_map_colours_each_cell_by_its_value():
    m = np.array([[0.0, 2.0], [1.0, np.nan], [0.5, 2.0]])
    rows, cols = ["a", "bb", "c"], ["first", "second"]
    img = viz.heat_map(m, rows, cols, cell=30, title="t")
    lay = viz.heat_map_layout(m.shape, rows, cols, 30, "t")
    assert img.shape == (lay["height"], lay["width"], 3) and img.dtype == np.uint8
    for i in range(3):
        for j in range(2):  # a corner pixel of each cell (the value is written at its centre)
            px = img[lay["top"] + i * 30 + 3, lay["left"] + j * 30 + 3]
            want = [200, 200, 200] if np.isnan(m[i, j]) else viz.colormap(m[i, j] / 2.0)
            assert px.tolist() == list(want), (i, j)
    assert viz.colormap(0.0).tolist() == [68, 1, 84] and viz.colormap(1.0).tolist() == [253, 231, 37]
    assert viz.colormap(np.array([-3.0, 7.0])).tolist() == [[68, 1, 84], [253, 231, 37]]  # clipped
    # the colour bar runs from vmax (top) to vmin (bottom)
    bar = img[lay["top"] : lay["top"] + 120, lay["bar_left"] + 5]
    assert bar[0].tolist() == viz.colormap(1.0).tolist() and bar[-1].tolist() == viz.colormap(0.0).tolist()
    with pytest.raises(ValueError, match="non-empty"):
        viz.heat_map(np.zeros((0, 2)), [], ["a", "b"])


def test_image_traversals_one_grid_per_aligned_latent():
    torch.manual_seed(0)
    cfg = ConvVAEConfig(in_channels=1, image_size=32, latent_dim=4, channels=[4, 4, 4, 4], hidden=8)
    model, x = ConvVAE(cfg), torch.rand(5, 1, 32, 32)
    ts = report_html.image_traversals(model, x, {"shape": 2, "scale": 0}, [-1.0, 0.0, 1.0], n_inputs=2)
    assert [(t.latent, t.factor) for t in ts] == [(2, "shape"), (0, "scale")]
    one_row = viz.traversal_grid(model, x, order=[2], values=[-1.0, 0.0, 1.0], index=1)
    assert ts[0].image.shape == (2 * 34, 3 * 34) and np.array_equal(ts[0].image[34:], one_row)
    with pytest.raises(ValueError, match="n_inputs"):
        report_html.image_traversals(model, x, {"shape": 2}, [0.0], n_inputs=6)


def test_generated_traversal_tiles_images_by_value():
    def generate(v):  # two images per value, brightness = the value
        return torch.full((2, 3, 4, 5), v)

    t = report_html.generated_traversal(generate, 3, "colour", [0.0, 0.5, 1.0])
    assert t.image.shape == (2 * 6, 3 * 7, 3) and t.values == [0.0, 0.5, 1.0]
    assert t.image[0, 0].tolist() == [0, 0, 0] and t.image[6, 7 * 2].tolist() == [255, 255, 255]
    assert t.image[0, 7].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="one shape for every value"):
        report_html.generated_traversal(lambda v: torch.zeros(int(v) + 1, 3, 4, 4), 0, None, [0.0, 1.0])
