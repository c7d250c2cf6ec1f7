"""A checkpointed run SIGKILLed at random moments leaves no debris and no broken checkpoint.

A child trains with a checkpoint after every step and two kept, so it is almost always writing a
checkpoint, pruning one or moving ``latest``; it is killed at a seeded random moment 20 times, and
restarted (resuming) after each kill. After every kill each ``step_*`` folder loads with its train
state and ``latest`` names one of them; once the next start is under way, nothing the killed
runs left (``.tmp-*``, ``.trash-*``, temp files of ``latest``) survives.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

import pytest

from probe_disentangle import io
from probe_disentangle.constants import CHECKPOINT_META_FILE, CHECKPOINT_PREFIX, CHECKPOINT_STATE_FILE, LATEST_FILE
from probe_disentangle.train import remove_debris

sys.path.insert(0, str(Path(__file__).parent))
import checkpoint_kill_worker as worker  # noqa: E402

KILLS = 20


@pytest.fixture(scope="module")
def ctx():
    if sys.platform == "win32":
        pytest.skip("SIGKILL and the forkserver are POSIX")
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(["torch", "probe_disentangle.train", "checkpoint_kill_worker"])
    return c


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _broken(folder: Path) -> list[str]:
    """What is wrong with the checkpoint folder: step folders that do not load whole, a bad ``latest``."""
    bad = []
    steps = sorted(p for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    for p in steps:
        try:
            io.load(p)
            meta = json.loads((p / CHECKPOINT_META_FILE).read_text())
            assert (p / CHECKPOINT_STATE_FILE).is_file() and int(meta["step"]) == int(p.name[len(CHECKPOINT_PREFIX) :])
        except Exception as err:
            bad.append(f"{p.name}: {type(err).__name__}: {err}")
    latest = folder / LATEST_FILE
    if steps and not (latest.is_file() and (folder / latest.read_text().strip()) in steps):
        bad.append(f"{LATEST_FILE} does not name a checkpoint: {latest.read_text() if latest.is_file() else 'missing'}")
    return bad


def test_random_kills_leave_loadable_checkpoints_and_no_debris_after_the_next_start(ctx, tmp_path):
    folder = tmp_path / "run"
    rng = random.Random(0)
    bad, left, last_steps = [], 0, []
    for k in range(KILLS + 1):
        ready = ctx.Event()
        child = ctx.Process(target=worker.train_loop, args=(str(folder), ready), daemon=True)
        child.start()
        assert ready.wait(120), "the training child did not start"
        # this start has cleaned up: nothing a killed run left may remain (only the live child's own)
        stale = [n for n in _debris(folder) if not n.endswith(f"-{child.pid}") and f".{child.pid}." not in n]
        if stale:
            bad.append(f"start {k}: debris of a killed run survived: {stale}")
        if k == KILLS:
            child.terminate()
            child.join()
            break
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, 9)
        child.join()
        left += bool(_debris(folder))
        bad += [f"kill {k}: {b}" for b in _broken(folder)]
        last_steps.append(sorted(p.name for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))[-1])
    assert not bad, f"{len(bad)} problems after {KILLS} kills: {bad[:3]}"
    assert left >= 2, f"only {left} of {KILLS} kills left anything to clean; the test is not testing"
    assert len(set(last_steps)) > KILLS // 2, "the run did not advance between kills"
    remove_debris(folder)
    assert _debris(folder) == []


def test_remove_debris_takes_only_the_trainers_own_names_of_dead_writers(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    while io.pid_alive(dead):
        dead += 1
    names = [f".tmp-{CHECKPOINT_PREFIX}00000010-{dead}", f".trash-{CHECKPOINT_PREFIX}00000008-{dead}"]
    kept = [f".tmp-{CHECKPOINT_PREFIX}00000012-{os.getppid()}", ".tmp-mine", f"{CHECKPOINT_PREFIX}00000008", "notes"]
    for n in names + kept:
        (tmp_path / n).mkdir()
    (tmp_path / f".{LATEST_FILE}.{dead}.k_9zq2rx.tmp").write_text("step_")
    removed = remove_debris(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names + [f".{LATEST_FILE}.{dead}.k_9zq2rx.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
