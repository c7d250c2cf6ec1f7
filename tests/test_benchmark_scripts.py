"""benchmarks/_scripts.py: the one loader benchmarks use for each other and for examples/."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _scripts import script  # noqa: E402


def test_a_script_is_executed_once_and_shared():
    first = script("train_factor_lm", "examples")
    assert script("train_factor_lm", "examples") is first is sys.modules["train_factor_lm"]
    assert callable(first.train_lm) and Path(first.__file__).name == "train_factor_lm.py"


def test_bad_names_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="folder must be one of"):
        script("capacity_lm", "tests")
    with pytest.raises(FileNotFoundError, match="without .py"):
        script("capacity_lm.py")
    assert "capacity_lm.py" not in sys.modules
