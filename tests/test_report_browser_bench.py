"""benchmarks/report_browser.py: headless Chromium draws the report's heat map and grids where the
page puts them, pixel for pixel; a page that hides one fails the check (slow; skipped without chromium)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "report_browser.py"


def _bench():
    spec = importlib.util.spec_from_file_location("report_browser", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_chromium_draws_the_heat_map_and_every_grid(tmp_path):
    bench = _bench()
    if bench.chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(SCRIPT), "--num", "600", "--keep", str(tmp_path), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["script_tags"] == 0 and result["heat_maps_found"] == 1
    assert result["grids_found"] == result["built"]["traversals"] - 1  # every image traversal; one is text
    for row in result["images"]:
        assert row["found"] and row["mean_abs_diff"] < 1.0 and row["std"] > 10, row
    # the same page with the heat map hidden: the check finds its place blank and fails
    page = (tmp_path / "report.html").read_text()
    hidden = tmp_path / "hidden.html"
    hidden.write_text(page.replace('<img class="heat-map"', '<img class="heat-map" style="visibility:hidden"'))
    tampered = bench.check(hidden, tmp_path / "hidden.png", tolerance=6.0)
    assert [r["class"] for r in tampered["images"]] == [r["class"] for r in result["images"]]  # still listed
    assert tampered["heat_maps_found"] == 0 and not tampered["all_found"]
    assert tampered["grids_found"] == result["grids_found"]
