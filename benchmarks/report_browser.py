"""The HTML report in a real browser: headless Chromium renders it to a PNG screenshot, and every
picture the page inlines — the heat map and the traversal grids — must be found in the screenshot
where the browser put it, drawn (matching its own pixels at its drawn size) and not blank.

Without ``--page`` it first writes a report of the shipped sprites β-TCVAE (``zoo/sprites_beta_tcvae``):
the metrics of its codes of ``--num`` sprites against the true factors, the mutual information of its
10 latents × 5 factors, an image traversal (``report_html.image_traversals``) per factor's aligned
latent, a generated traversal (``report_html.generated_traversal``: the decoder from prior samples, as
a diffusion host's grid is made), a text traversal (its sentences carry markup that must stay text),
and PCA of the pixels as the baseline. ``--page runs/demo/report.html`` checks a page already written
(the demo's, or ``eval``'s). Each inlined PNG is decoded, scaled to the size the page draws it at
(nearest neighbour, as the page's ``image-rendering: pixelated``) and located in the screenshot by
least squares (FFT); it counts as found when the best match differs from it by at most
``--tolerance`` grey levels on average and the region's pixel standard deviation shows content.
Prints a table and writes ``benchmarks/results/report_browser.json``.

    python benchmarks/report_browser.py [--page FILE] [--num 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "report_browser.json"
WIDTH, HEIGHT = 1280, 4000


class _Images(HTMLParser):
    """Collects the attributes of every ``<img>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "img":
            self.found.append({k: v or "" for k, v in attrs})


def chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium`` package), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def sprites_report(path: Path, num: int, seed: int = 0) -> dict:
    """Write the sprites β-TCVAE's report to ``path``; returns what went on it."""
    import torch

    from probe_disentangle import metrics, report_html
    from probe_disentangle.steering import mutual_information_matrix
    from probe_disentangle.zoo import load_sprites_vae

    model, world = load_sprites_vae()
    factors, images = world.sample(num, np.random.RandomState(seed))
    x = torch.as_tensor(images).float()
    with torch.no_grad():
        codes = torch.cat([model.encode(x[i : i + 256])[0] for i in range(0, num, 256)]).numpy()
    names = list(world.factor_names)
    mi = mutual_information_matrix(codes, factors)
    aligned = {n: int(mi[:, j].argmax()) for j, n in enumerate(names)}
    flat = x.flatten(1).numpy()
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat[:1000], full_matrices=False)
    pca = flat @ vt[: codes.shape[1]].T
    n = num * 3 // 4
    ours = metrics.evaluate(codes[:n], factors[:n], codes[n:], factors[n:], fast=True)
    base = metrics.evaluate(pca[:n], factors[:n], pca[n:], factors[n:], fast=True)
    values = np.linspace(-2.5, 2.5, 7).tolist()
    traversals = report_html.image_traversals(model, x[:8], aligned, values, n_inputs=3)
    prior = torch.randn(3, codes.shape[1], generator=torch.Generator().manual_seed(seed))

    def generate(v: float) -> torch.Tensor:
        z = prior.clone()
        z[:, aligned["pos_x"]] = v
        with torch.no_grad():
            return model.decode_image(z)

    traversals.append(report_html.generated_traversal(generate, aligned["pos_x"], "pos_x (from the prior)", values))
    texts = ["a <b>red</b> circle", "a <b>red</b> square & more", "a blue square </table>"]
    traversals.append(report_html.Traversal("t", "text (markup must stay text)", [-1.0, 0.0, 1.0], texts=texts))
    keys = [k for k, v in ours.items() if isinstance(v, float)]
    report_html.write_report(
        path,
        "Sprites β-TCVAE (zoo): browser check",
        summary=f"{num} sprites encoded by the shipped ConvVAE (posterior means).",
        metrics=[report_html.metrics_table(ours, "Against the true factors")],
        mutual_information=mi,
        latent_labels=[f"z{i}" for i in range(codes.shape[1])],
        factor_labels=names,
        traversals=traversals,
        baselines=[
            report_html.Table(
                "The codes against PCA of the pixels",
                ("metric", "β-TCVAE", "PCA"),
                [(k, ours[k], base.get(k)) for k in keys],
            )
        ],  # fmt: skip
    )
    return {"factors": names, "aligned": aligned, "traversals": len(traversals)}


def screenshot(page: Path, png: Path, height: int = HEIGHT) -> float:
    """Render ``page`` with headless Chromium to ``png`` (``WIDTH`` × ``height``); returns the seconds taken."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
        cmd += [f"--user-data-dir={profile}", "--force-device-scale-factor=1", "--default-background-color=ffffffff"]
        cmd += [f"--screenshot={png}", f"--window-size={WIDTH},{height}", page.resolve().as_uri()]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - t0
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-1500:]}")
    return seconds


def inlined_images(page: str) -> list[dict]:
    """Every inlined PNG of the page: its class, its pixels drawn at the page's width × height."""
    parser = _Images()
    parser.feed(page)
    out = []
    for a in parser.found:
        prefix = "data:image/png;base64,"
        if not a.get("src", "").startswith(prefix):
            raise ValueError(f"an <img> of the page is not an inlined PNG: {a.get('src', '')[:60]!r}")
        cls, w, h = a.get("class", ""), a["width"], a["height"]
        img = Image.open(io.BytesIO(base64.b64decode(a["src"][len(prefix) :]))).convert("RGB")
        native = img.size
        drawn = np.asarray(img.resize((int(w), int(h)), Image.NEAREST), dtype=np.float64)
        out.append({"class": cls, "native": native, "drawn": drawn})
    return out


def locate(shot: np.ndarray, template: np.ndarray, taken: list[tuple[int, int, int, int]]) -> tuple[int, int, float]:
    """Top-left (y, x) where ``template`` best matches ``shot`` (grey levels, least squares by
    FFT) without overlapping a ``taken`` box (y, x, h, w) — two identical grids are found in two
    places — and the mean absolute RGB difference there."""
    from scipy.signal import fftconvolve

    s, t = shot.mean(2), template.mean(2)
    th, tw = t.shape
    ones = np.ones_like(t)
    # Σ (S - T)² over each window = Σ S² − 2 Σ S·T + Σ T²
    ssd = fftconvolve(s**2, ones[::-1, ::-1], "valid") - 2 * fftconvolve(s, t[::-1, ::-1], "valid") + (t**2).sum()
    for by, bx, bh, bw in taken:  # windows overlapping a box already matched
        ssd[max(0, by - th + 1) : by + bh, max(0, bx - tw + 1) : bx + bw] = np.inf
    y, x = np.unravel_index(np.argmin(ssd), ssd.shape)
    diff = float(np.abs(shot[y : y + th, x : x + tw] - template).mean())
    return int(y), int(x), diff


def check(page_path: Path, png: Path, tolerance: float, height: int = HEIGHT) -> dict:
    """Screenshot the page and find each inlined image in it; returns the measurements."""
    page = page_path.read_text(encoding="utf-8")
    images = inlined_images(page)
    seconds = screenshot(page_path, png, height)
    shot = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    rows, boxes = [], []
    for i, im in enumerate(images):
        t = im["drawn"]
        h, w = t.shape[:2]
        row = {"index": i, "class": im["class"], "native": list(im["native"]), "drawn": [w, h]}
        if h > shot.shape[0] or w > shot.shape[1]:
            rows.append({**row, "found": False, "why": "larger than the screenshot"})
            continue
        y, x, diff = locate(shot, t, boxes)
        region = shot[y : y + h, x : x + w]
        found = diff <= tolerance and region.std() > 10
        if found:
            boxes.append((y, x, h, w))
        rows.append({**row, "at": [x, y], "mean_abs_diff": round(diff, 2), "std": round(float(region.std()), 1),
                     "found": bool(found)})  # fmt: skip
    white = float((shot.min(2) > 245).mean())
    return {
        "page": str(page_path),
        "page_bytes": page_path.stat().st_size,
        "script_tags": page.lower().count("<script"),
        "screenshot_seconds": round(seconds, 2),
        "screenshot": [int(shot.shape[1]), int(shot.shape[0])],
        "white_fraction": round(white, 3),
        "images": rows,
        "heat_maps_found": sum(r["found"] for r in rows if r["class"] == "heat-map"),
        "grids_found": sum(r["found"] for r in rows if r["class"] == "grid"),
        "all_found": all(r["found"] for r in rows) and any(r["class"] == "heat-map" for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="", help="check this HTML page (default: write the sprites report first)")
    ap.add_argument("--num", type=int, default=2000, help="sprites encoded for the sprites report")
    ap.add_argument("--tolerance", type=float, default=6.0, help="mean absolute difference allowed (grey levels)")
    ap.add_argument("--keep", default="", help="folder to keep the page and the screenshot in")
    ap.add_argument("--height", type=int, default=HEIGHT, help="window height: a picture below it is not found")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        built = None
        if args.page:
            page = Path(args.page)
            if not page.is_file():
                raise SystemExit(f"--page {page} does not exist; write one with `probe-disentangle demo` or eval")
        else:
            page = folder / "report.html"
            t0 = time.perf_counter()
            built = sprites_report(page, args.num)
            built["seconds"] = round(time.perf_counter() - t0, 1)
        result = check(page, folder / "screenshot.png", args.tolerance, args.height)
        if built:
            result["built"] = built
    print(f"page {result['page']}: {result['page_bytes'] / 1024:.0f} KiB, {result['script_tags']} <script> tags")
    print(f"screenshot {result['screenshot'][0]}×{result['screenshot'][1]} in {result['screenshot_seconds']} s, "
          f"{result['white_fraction']:.1%} white")  # fmt: skip
    print(f"{'#':>2} {'class':<9} {'native':>9} {'drawn':>9} {'at (x, y)':>12} {'diff':>6} {'std':>6}  found")
    for r in result["images"]:
        at = f"{r['at'][0]}, {r['at'][1]}" if "at" in r else "—"
        print(f"{r['index']:>2} {r['class']:<9} {'×'.join(map(str, r['native'])):>9} {'×'.join(map(str, r['drawn'])):>9} "
              f"{at:>12} {r.get('mean_abs_diff', float('nan')):>6.2f} {r.get('std', float('nan')):>6.1f}  {r['found']}")  # fmt: skip
    print(
        f"heat maps found: {result['heat_maps_found']}; grids found: {result['grids_found']}; all: {result['all_found']}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["all_found"] and result["script_tags"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
