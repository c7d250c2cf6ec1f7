"""load_transformer: Hugging Face loading that runs no downloaded code and unpickles nothing unless asked."""

import pytest

pytest.importorskip("transformer_lens")

from probe_disentangle.adapters import hooked_transformer  # noqa: E402
from probe_disentangle.adapters.hooked_transformer import load_transformer  # noqa: E402


@pytest.fixture
def booted(monkeypatch):
    """Record what load_transformer passes on, instead of loading anything."""
    import transformer_lens

    calls = []
    monkeypatch.setattr(
        transformer_lens.TransformerBridge,
        "boot_transformers",
        staticmethod(lambda name, **kw: calls.append((name, kw)) or "model"),
    )
    return calls


@pytest.mark.parametrize(
    "kw",
    [
        {"trust_remote_code": True},
        {"weights_only": False},
        {"hf_config_overrides": {"trust_remote_code": True}},
        {"model_kwargs": {"weights_only": False}},
    ],
    ids=["trust_remote_code", "weights_only", "nested-trust", "nested-weights-only"],
)
def test_code_execution_and_unpickling_are_refused_without_the_opt_in(booted, kw):
    with pytest.raises(ValueError, match=r"allow_code_execution=True"):
        load_transformer("some/model", **kw)
    assert booted == []  # refused before anything was loaded
    assert load_transformer("some/model", allow_code_execution=True, **kw) == "model"
    assert booted == [("some/model", {"device": None, **kw})]


def test_safe_keyword_arguments_pass_through(booted):
    load_transformer("some/model", device="cpu", trust_remote_code=False, revision="main", weights_only=True)
    assert booted == [
        ("some/model", {"device": "cpu", "trust_remote_code": False, "revision": "main", "weights_only": True})
    ]
    assert "allow_code_execution" in (hooked_transformer.load_transformer.__doc__ or "")
