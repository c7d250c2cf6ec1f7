"""The resume loop the studies share: a study is a JSON of cells (one fit each, keyed by what it
varies), filled in order and saved after every cell, so a killed run loses at most the cell in
flight and a rerun fits only what is missing or was fitted at another setting.

A study imports it as ``_scripts`` is imported (its own folder on ``sys.path``)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _cells import fill_cells  # noqa: E402
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from probe_disentangle.io import atomic_write_json


def fill_cells(
    path: str | Path,
    state: dict[str, Any],
    todo: Iterable[tuple[str, Hashable]],
    current: Callable[[dict], bool],
    fit: Callable[[Hashable], dict],
    *,
    report_only: bool = False,
    max_cells: int = 0,
    describe: Callable[[dict], str] | None = None,
) -> int:
    """Fit, in order, each ``(key, spec)`` of ``todo`` whose ``state["cells"][key]`` is missing or
    not ``current``: ``state["cells"][key] = fit(spec)``, then write ``state`` to ``path``
    atomically. Stops before the first fit when ``report_only``, or once ``max_cells`` (> 0) new
    cells are done. Returns the number of cells fitted."""
    cells = state.setdefault("cells", {})
    new = 0
    for key, spec in todo:
        old = cells.get(key)
        if old is not None and current(old):
            continue
        if report_only or (max_cells and new >= max_cells):
            break
        cells[key] = cell = fit(spec)
        new += 1
        atomic_write_json(path, state)
        if describe is not None:
            print(f"{key}: {describe(cell)}", flush=True)
    return new
