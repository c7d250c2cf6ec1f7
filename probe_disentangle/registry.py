"""Architecture registry: name → (module class, config class). `load`, the CLI and docs read it."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

_REGISTRY: dict[str, tuple[type, type]] = {}
# modules whose import registers architectures; imported lazily by `get` / `names`
_PROVIDERS = ("probe_disentangle.heads", "probe_disentangle.image_models")


def register(name: str, config_class: type):
    """Class decorator: register ``cls`` under ``name`` with its config dataclass."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"config class for {name!r} must be a dataclass")

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name][0] is not cls:
            raise ValueError(f"architecture {name!r} is already registered to {_REGISTRY[name][0].__name__}")
        _REGISTRY[name] = (cls, config_class)
        cls.architecture = name
        config_class.architecture = name
        return cls

    return deco


def _import_providers() -> None:
    for mod in _PROVIDERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:  # a real missing dependency inside the provider
                raise


def names() -> list[str]:
    """All registered architecture names."""
    _import_providers()
    return sorted(_REGISTRY)


def get(name: str) -> tuple[type, type]:
    """(class, config class) for ``name``; an unknown name lists the known ones."""
    _import_providers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; known architectures: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(config_class: type, data: dict[str, Any]) -> Any:
    """Build ``config_class`` from ``data``; unknown or missing fields raise a clear error."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(
            f"{config_class.__name__} has no fields {unknown}; the file was written by another version "
            "or edited by hand — remove those keys or upgrade probe_disentangle"
        )
    try:
        return config_class(**data)
    except TypeError as err:
        raise ValueError(f"cannot build {config_class.__name__} from the saved config: {err}") from err
