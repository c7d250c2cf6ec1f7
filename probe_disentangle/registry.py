"""Architecture registry: name → (module class, config class). `load`, the CLI and docs read it."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import numbers
import types
import typing
from typing import Any

_REGISTRY: dict[str, tuple[type, type]] = {}
# modules whose import registers architectures; imported lazily by `get` / `names`
_PROVIDERS = ("probe_disentangle.heads", "probe_disentangle.image_models", "probe_disentangle.diffusion")


def _matches(value: Any, hint: Any) -> bool:
    """Does ``value`` fit the type annotation ``hint`` (the simple types configs use)?"""
    if hint is Any or hint is object:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(set(args)) != 1 or all(_matches(v, args[0]) for v in value)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return not isinstance(hint, type) or isinstance(value, hint)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_field_types(config: Any) -> None:
    """Refuse a config field whose value does not fit its annotation (``latent_dim=8.0``, an
    architecture name that is a list, ...), naming the field: otherwise the mistake surfaces as a
    raw error deep inside a layer constructor, or not at all."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name, Any)
        if not _matches(value, hint):
            raise TypeError(
                f"{type(config).__name__}.{f.name} must be {_describe(hint)}, got {value!r} ({type(value).__name__})"
            )


def register(name: str, config_class: type):
    """Class decorator: register ``cls`` under ``name`` with its config dataclass. Building the
    config then checks every field against its annotation (:func:`check_field_types`) before the
    config's own ``__post_init__`` checks."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"config class for {name!r} must be a dataclass")
    if not getattr(config_class, "_fields_checked", False):
        own = getattr(config_class, "__post_init__", None)

        @functools.wraps(own or (lambda self: None))
        def __post_init__(self) -> None:
            check_field_types(self)
            if own is not None:
                own(self)

        if own is None:  # the generated __init__ calls __post_init__ only if it existed then
            raise TypeError(f"config class for {name!r} needs a __post_init__ (its checks run there)")
        config_class.__post_init__ = __post_init__
        config_class._fields_checked = True

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
