"""Save and load: ``config.json`` (architecture, package version, config, checksums) beside
``*.safetensors`` weights. Loading never unpickles.

Writes are all-or-nothing. A file is written to a temporary name, synced and renamed over the
target (:func:`atomic_write_bytes`). A saved *folder* is written whole beside its target and
swapped in (:func:`atomic_folder`): with Linux's ``renameat2(RENAME_EXCHANGE)`` the swap is one
atomic step; elsewhere two renames, with the complete new folder named ``.ready`` first, so that
:func:`resolve_folder` (which every load calls) finds the whole old or the whole new version after
a kill at any moment. Scratch names carry the writer's pid; leftovers of dead writers are removed
by the next write to the same target.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from . import __version__, registry
from .constants import CHECKSUM_FILES, CONFIG_FILE, OLD_SUFFIX, PARTIAL_SUFFIX, READY_SUFFIX, TMP_SUFFIX, WEIGHTS_FILE

SAVED_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE})  # what save() writes: all a folder may hold to be overwritten


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running (a scratch file's writer still at work)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _scratch(target: Path, suffix: str) -> Path:
    """A scratch name beside ``target``: ``.{name}.{pid}.{token}{suffix}``."""
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"


def _scratch_siblings(target: Path, suffix: str) -> list[tuple[Path, int]]:
    """Scratch entries of ``target`` with ``suffix``, and the pid of the writer that made each."""
    # the token: hex from _scratch, or tempfile.mkstemp's [a-z0-9_] (atomic_write_bytes)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-z_]+{re.escape(suffix)}$")
    out = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            m = pattern.match(entry.name)
            if m:
                out.append((entry, int(m.group(1))))
    return sorted(out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_strays(target: str | os.PathLike) -> list[Path]:
    """Delete what killed writers left beside ``target`` (temp files, partial or old folders, an
    unswapped new folder) — only entries whose writer process is gone. Returns what it removed."""
    target = Path(target)
    removed = []
    for suffix in (TMP_SUFFIX, PARTIAL_SUFFIX, OLD_SUFFIX, READY_SUFFIX):
        for entry, pid in _scratch_siblings(target, suffix):
            if pid != os.getpid() and not pid_alive(pid):
                _remove(entry)
                removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_strays(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot (nothing moved)."""
    return _exchange(Path(a), Path(b))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, f"cannot swap {b} into place: {os.strerror(err)}", str(b))


def resolve_folder(target: str | os.PathLike) -> Path:
    """``target`` as a complete saved folder. A save killed between the two renames of the
    no-exchange fallback leaves no ``target`` but a complete ``.ready`` (new) or ``.old``
    (previous) version beside it: rename that into place. Elsewhere a no-op."""
    target = Path(target)
    if target.exists():
        return target
    target = Path(os.path.abspath(target))
    for suffix in (READY_SUFFIX, OLD_SUFFIX):  # the new version first: it was complete
        for entry, _ in reversed(_scratch_siblings(target, suffix)):
            with contextlib.suppress(OSError):  # another reader may have restored it first
                os.rename(entry, target)
                fsync_dir(target.parent)
            if target.exists():
                return target
    return target


def _check_replaceable(target: Path, allowed: Collection[str]) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(f"{target} exists and is not a folder (a file or a link); save to a folder path")
    if not target.is_dir():
        return
    foreign = sorted(p.name for p in target.iterdir() if p.name not in allowed and not p.name.endswith(TMP_SUFFIX))
    if foreign:
        raise FileExistsError(
            f"{target} holds files a save would not write ({foreign[:5]}); a save replaces the whole folder, "
            "so save to a new or empty folder (or move those files out)"
        )


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, allowed: Collection[str] = SAVED_FILES) -> Iterator[Path]:
    """Write a folder all-or-nothing: yield an empty scratch folder beside ``target``; when the
    block ends without error, the scratch folder replaces ``target`` whole (the old version is
    kept until the new one is complete, then removed). On error nothing changes.

    ``target`` may not exist, be empty, or hold only names in ``allowed`` (a previous save of the
    same kind): a folder holding anything else is refused rather than replaced.
    """
    target = Path(os.path.abspath(target))  # "." or "dir/" name the folder itself
    target.parent.mkdir(parents=True, exist_ok=True)
    resolve_folder(target)
    _check_replaceable(target, allowed)
    remove_strays(target)
    tmp = _scratch(target, PARTIAL_SUFFIX)
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder (made by the caller) is simply replaced
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            _remove(tmp)  # now the previous version
        else:  # two renames; a kill between them is resolved by resolve_folder
            ready, old = _scratch(target, READY_SUFFIX), _scratch(target, OLD_SUFFIX)
            os.rename(tmp, ready)
            os.rename(target, old)
            os.rename(ready, target)
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(target.parent)


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


def write_saved(
    obj: torch.nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``obj``'s weights and ``config.json`` into ``directory`` (not atomic by itself: for a
    fresh folder inside :func:`atomic_folder`). Returns the config metadata it wrote."""
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
    return meta


def save(obj: torch.nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``obj`` (a registered head or model) to ``directory``, all or nothing: a kill at any
    moment leaves the previous save or the new one, whole (:func:`atomic_folder`).

    ``config.json`` records the architecture, the package version, the config and a SHA-256 of
    the weights file, so a truncated or altered file is caught by :func:`load`. Tensors are saved
    in their own dtype; :func:`load` copies them into the module's parameters, so float64 weights
    in a file come back as the float32 parameters the config builds.
    """
    with atomic_folder(directory) as tmp:
        write_saved(obj, tmp, extra)
    return Path(directory)


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved folder, with clear errors for missing or broken files."""
    path = resolve_folder(directory) / CONFIG_FILE
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
    if not isinstance(meta["architecture"], str):
        raise ValueError(
            f"{path}: 'architecture' must be a name string (one of {registry.names()}), got {meta['architecture']!r}"
        )
    if not isinstance(meta["config"], dict):
        raise ValueError(
            f"{path}: 'config' must be a JSON object of config fields, got {type(meta['config']).__name__}"
        )
    if not isinstance(meta.get("files", {}), dict):
        raise ValueError(f"{path}: 'files' must map file names to their checksums; save the model again")
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
    weights (no code executed; nothing is allocated before the shapes are known to fit).
    ``device``: as :func:`~probe_disentangle.train.resolve_device` reads it ("cpu", "cuda", "auto")."""
    from .train import resolve_device  # the trainer imports this module

    device = resolve_device(device)
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
