"""Save and load: ``config.json`` (architecture, package version, config, checksums) beside
``*.safetensors`` weights. Loading never unpickles; writes are atomic (temp file, fsync, rename)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from . import __version__, registry
from .constants import CHECKSUM_FILES, CONFIG_FILE, WEIGHTS_FILE


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved models are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:  # the bare error names no file
            raise OSError(
                errno.ENOSPC,
                f"No space left on the device to write {path} ({len(data)} bytes); free some space or write elsewhere",
                str(path),
            ) from err
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes of CPU, contiguous, unshared copies of ``tensors``."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return safetensors_bytes(flat, metadata=metadata)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(obj: torch.nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``obj`` (a registered head or model) to ``directory``: weights first, config last.

    ``config.json`` records the architecture, the package version, the config and a SHA-256 of
    the weights file, so a truncated or altered file is caught by :func:`load`.
    """
    arch = getattr(obj, "architecture", None)
    if arch is None or not hasattr(obj, "config"):
        raise TypeError(f"{type(obj).__name__} is not a registered architecture; register it with registry.register")
    registry.get(arch)  # fails clearly if unknown
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = tensors_to_bytes(obj.state_dict(), metadata={"architecture": arch})
    atomic_write_bytes(directory / WEIGHTS_FILE, data)
    meta = {
        "architecture": arch,
        "probe_disentangle_version": __version__,
        "config": registry.config_to_dict(obj.config),
        "files": {WEIGHTS_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    if extra:
        meta.update(extra)
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved folder, with clear errors for missing or broken files."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; pass the folder that save() wrote")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass a folder written by probe_disentangle.save()")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); the file is truncated or was edited — save the model again"
        ) from err
    if not isinstance(meta, dict) or "architecture" not in meta or "config" not in meta:
        raise ValueError(
            f"{path} has no 'architecture'/'config' entries; it was not written by probe_disentangle.save()"
        )
    return meta


def load_tensors(
    path: str | os.PathLike, expected: dict[str, Any] | None = None, checksum_file: str | os.PathLike | None = None
) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking size and checksum against ``expected`` when given.

    ``checksum_file``: the file that recorded ``expected``, named in the error (None: the one that
    records it for this file name, ``CHECKSUM_FILES``; ``config.json`` for any other name).
    """
    path = Path(path)
    holder = checksum_file if checksum_file is not None else CHECKSUM_FILES.get(path.name, CONFIG_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; save the model again (the folder is incomplete)")
    if expected is not None:
        size = path.stat().st_size
        if "bytes" in expected and size != expected["bytes"]:
            raise ValueError(
                f"{path} has {size} bytes, {expected['bytes']} expected: the file is truncated or replaced — save the model again"
            )
        if "sha256" in expected and sha256_file(path) != expected["sha256"]:
            raise ValueError(
                f"{path} does not match the checksum in {holder}: the file was altered — save the model again"
            )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); save the model again") from err


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``module``, naming any missing, unexpected or mis-shaped entry."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]}); the files come from different models — save again"
        )
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"{source}: shape mismatch for {k!r}: file has {tuple(v.shape)}, the config builds {tuple(own[k].shape)}"
            )
    module.load_state_dict(tensors, strict=True)


def check_config_fits_weights(
    cls: type, config: Any, tensors: dict[str, torch.Tensor], weights: str | os.PathLike, config_path: str
) -> None:
    """Build ``cls(config)`` on the meta device (no memory) and compare its state-dict shapes with
    the weights read from ``weights``, so a config that was edited (or belongs to other weights)
    fails before :func:`load` allocates what it declares: a width of 10¹² would ask for terabytes."""
    header = {k: tuple(v.shape) for k, v in tensors.items()}
    try:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    except NotImplementedError:  # a module whose constructor computes on its tensors: no cheap check
        return
    missing, unexpected = sorted(set(own) - set(header)), sorted(set(header) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{config_path}: the config does not fit {weights} (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "the files come from different models — save again"
        )
    for k, shape in header.items():
        if own[k] != shape:
            raise ValueError(
                f"{config_path}: shape mismatch for {k!r}: file has {shape}, the config builds {own[k]}; "
                "the config was edited or belongs to other weights — save the model again"
            )


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild exactly what :func:`save` wrote: config → weights checked against it → module →
    weights (no code executed; nothing is allocated before the shapes are known to fit)."""
    meta = read_config(directory)
    cls, config_cls = registry.get(meta["architecture"])
    config = registry.config_from_dict(config_cls, meta["config"])
    expected = meta.get("files", {}).get(WEIGHTS_FILE)
    weights = Path(directory) / WEIGHTS_FILE
    tensors = load_tensors(weights, expected)
    check_config_fits_weights(cls, config, tensors, weights, str(Path(directory) / CONFIG_FILE))
    obj = cls(config)
    load_state_into(obj, tensors, str(weights))
    return obj.to(device).eval()
