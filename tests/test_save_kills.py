"""A save killed at any moment leaves the previous save or the new one, whole.

A child process saves two versions in turn over the same folder and is SIGKILLed at a seeded
random moment; each time the folder must load and equal one version exactly (no unloadable
folder, no hybrid of two saves). Children are forked from a forkserver that has torch loaded,
so 100 kills per save path take seconds.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

import pytest
import torch

from probe_disentangle import Probe, io

sys.path.insert(0, str(Path(__file__).parent))
import save_kill_worker as worker  # noqa: E402

KILLS = 100


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _version_of_head(folder: Path, versions) -> int | None:
    loaded = io.load(folder)
    return next((i for i, v in enumerate(versions) if _equal_state(loaded, v)), None)


def _version_of_probe(folder: Path, versions, host) -> int | None:
    loaded = Probe.from_pretrained(folder, host)
    for i, v in enumerate(versions):
        if (
            _equal_state(loaded.head, v.head)
            and torch.equal(loaded.normalizer.mean, v.normalizer.mean)
            and torch.equal(loaded.normalizer.std, v.normalizer.std)
            and torch.equal(loaded.reference_codes, v.reference_codes)
        ):
            return i
    return None  # loads, but is no single version: a hybrid


def _save(obj, folder: Path) -> None:
    io.save(obj, folder) if isinstance(obj, torch.nn.Module) else obj.save_pretrained(folder)


def _scratch(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


@pytest.fixture(scope="module")
def ctx():
    if sys.platform == "win32":
        pytest.skip("SIGKILL and the forkserver are POSIX")
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(["torch", "probe_disentangle.probe", "save_kill_worker"])
    return c


@pytest.mark.parametrize("kind", ["io", "probe"])
def test_kills_during_saves_leave_the_old_or_the_new_save(kind, ctx, tmp_path):
    host = worker.Host()
    if kind == "io":
        versions = [worker.head(0), worker.head(1)]

        def version(folder):
            return _version_of_head(folder, versions)
    else:
        versions = [worker.probe(0, host), worker.probe(1, host)]

        def version(folder):
            return _version_of_probe(folder, versions, host)

    folder = tmp_path / "m"
    _save(versions[0], folder)
    t0 = time.perf_counter()
    for _ in range(3):
        _save(versions[1], tmp_path / "t")
    save_s = (time.perf_counter() - t0) / 3  # to spread the kills over a few saves, not to assert on
    rng = random.Random(0)
    bad, seen, mid_save = [], [0, 0], 0
    for k in range(KILLS):
        ready = ctx.Event()
        child = ctx.Process(target=worker.save_loop, args=(kind, str(folder), ready), daemon=True)
        child.start()
        assert ready.wait(60), "the saving child did not start"
        time.sleep(rng.uniform(0, 4 * save_s))
        os.kill(child.pid, 9)
        child.join()
        mid_save += bool(_scratch(folder))
        try:
            v = version(folder)
        except Exception as err:  # an unloadable folder is exactly what must never happen
            bad.append(f"kill {k}: {type(err).__name__}: {err}")
            continue
        if v is None:
            bad.append(f"kill {k}: loads but matches no single save (a hybrid)")
        else:
            seen[v] += 1
    assert not bad, f"{len(bad)} of {KILLS} kills broke the save: {bad[:3]}"
    assert sum(seen) == KILLS
    assert mid_save >= KILLS // 10, f"only {mid_save} kills landed inside a save; the test is not testing"
    # the next save removes what the killed writers left
    _save(versions[1], folder)
    assert _scratch(folder) == [] and version(folder) == 1


def test_a_swap_caught_between_its_two_renames_resolves_to_a_whole_version(tmp_path, monkeypatch):
    """Where the file system cannot exchange two folders, a save renames twice; a kill between
    the renames leaves no folder, and loading puts the complete new one in place."""
    a, b = worker.head(0), worker.head(1)
    folder = tmp_path / "m"
    io.save(a, folder)
    monkeypatch.setattr(io, "_exchange", lambda x, y: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if str(src) == str(folder):  # the second rename: old aside; "die" just after it
            real_rename(src, dst)
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        io.save(b, folder)
    monkeypatch.setattr(io.os, "rename", real_rename)
    assert not folder.exists() and any(n.endswith(".ready") for n in _scratch(folder))
    assert _equal_state(io.load(folder), b)  # the complete new version, renamed into place
    assert folder.is_dir()


def test_a_save_refuses_to_replace_a_folder_holding_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        io.save(worker.head(0), folder)
    with pytest.raises(FileExistsError, match="notes.txt"):
        worker.probe(0).save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        io.save(worker.head(0), tmp_path / "file")


def test_leftovers_of_a_live_writer_are_kept_and_of_a_dead_one_removed(tmp_path):
    folder = tmp_path / "m"
    io.save(worker.head(0), folder)
    live = tmp_path / f".m.{os.getppid()}.abcd1234.partial"
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    dead = tmp_path / f".m.{dead_pid}.abcd1234.partial"
    live.mkdir()
    dead.mkdir()
    (tmp_path / f".m.{dead_pid}.00ff00ff.old").mkdir()
    io.save(worker.head(1), folder)
    assert live.exists() and not dead.exists() and _scratch(folder) == [live.name]
