"""Other scripts of ``benchmarks/`` and ``examples/`` as modules: neither folder is a package, and a
study reuses another's setting or a shipped model's recipe. One loader, so each script is
executed once per process and its dataclasses find their module (``sys.modules``).

A benchmark imports this file with its own folder on ``sys.path`` (so it works run as a script
and loaded by path from the tests)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _scripts import script  # noqa: E402
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("benchmarks", "examples")


def script(name: str, folder: str = "benchmarks") -> ModuleType:
    """``<folder>/<name>.py`` as the module ``name`` (executed on first use, then shared)."""
    if folder not in FOLDERS:
        raise ValueError(f"folder must be one of {FOLDERS}, got {folder!r}")
    path = ROOT / folder / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no script {path}; give the file's name without .py")
    mod = sys.modules.get(name)
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == path:
        return mod
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod
