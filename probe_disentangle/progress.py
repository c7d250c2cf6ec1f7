"""Progress bars with an ETA for long phases: the trainer's steps, the demo's steering, interchange
and traversal loops. One format everywhere, ``desc: 40%|████      | 4/10 [00:12<00:18, 3.0s/it]``
(elapsed < remaining), written to stderr and only on a terminal unless a ``file`` is given, so logs
and captured output stay clean."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def progress_bar(
    total: int,
    desc: str,
    enabled: bool = True,
    *,
    initial: int = 0,
    file: IO[str] | None = None,
    mininterval: float = 0.5,
):
    """A tqdm bar over ``total`` units with elapsed time and ETA, redrawn at most every
    ``mininterval`` seconds and cleared when closed. ``enabled=False`` gives a silent bar with the
    same methods (``update``, ``set_postfix``, ``close``); without ``file`` it draws on stderr when
    stderr is a terminal."""
    from tqdm import tqdm

    if total < 0:
        raise ValueError(f"total must be ≥ 0, got {total}")
    # a terminal that reports a 0 × 0 size (a bare pty) would get an empty line: draw 100 × 40 there
    sized = _columns(file or sys.stderr) > 0
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        bar_format=BAR_FORMAT,
        dynamic_ncols=sized,
        ncols=None if sized else 100,
        nrows=None if sized else 40,
        leave=False,
        file=file,
        disable=True if not enabled else (None if file is None else False),
        mininterval=mininterval,
        miniters=1,
    )


def _columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` writes to (0 when it reports none)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80  # not a terminal (a file, a StringIO): tqdm's own default applies


def track(
    items: Iterable[T],
    desc: str,
    enabled: bool = True,
    *,
    total: int | None = None,
    file: IO[str] | None = None,
    mininterval: float = 0.5,
) -> Iterator[T]:
    """Iterate over ``items`` with a :func:`progress_bar` (``total`` defaults to ``len(items)``)."""
    n = len(items) if total is None else total  # type: ignore[arg-type]
    bar: Any = progress_bar(n, desc, enabled, file=file, mininterval=mininterval)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
