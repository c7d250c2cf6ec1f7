"""Probe.fit(resume=...): a killed probe fit carries on where its last checkpoint stood and ends
bit-identical (CPU) to one never interrupted, the normaliser, reference codes and the store's
position in the data included."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import probe_fit_worker as worker  # noqa: E402

from probe_disentangle import Probe, TrainConfig  # noqa: E402
from probe_disentangle.constants import PROBE_FIT_FILE  # noqa: E402


@pytest.fixture
def one_thread():
    """The child runs on one thread; so do the runs compared with it (thread counts change sums)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _assert_same_fit(a, ra, b, rb):
    sa, sb = a.head.state_dict(), b.head.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a.normalizer.mean, b.normalizer.mean) and torch.equal(a.normalizer.std, b.normalizer.std)
    assert torch.equal(a.reference_codes, b.reference_codes)
    assert ra.step == rb.step == worker.STEPS and ra.last == rb.last
    assert a.init_report == b.init_report


@pytest.fixture(scope="module")
def straight():
    """The uninterrupted fit, once for the module (on one thread)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for init in (None, "isa"):
            host = worker.Host()
            probe, result = worker.fit(host, None, init=init)
            out[init] = (probe, result, host.forwards)
        return out
    finally:
        torch.set_num_threads(n)


def test_sigkilled_probe_fit_resumes_bit_identical(straight, one_thread, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, str(Path(worker.__file__)), str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "latest").is_file():
            assert child.poll() is None, "the child ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.002)
        time.sleep(random.Random(25).uniform(0.0, 0.15))  # a seeded moment after the first checkpoint
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    killed_at = int((tmp_path / "latest").read_text().strip().split("_")[1])
    assert killed_at < worker.STEPS, "the child finished before it was killed; slow it down"
    probe, result = worker.fit(worker.Host(), tmp_path, resume=True)
    _assert_same_fit(probe, result, straight[None][0], straight[None][1])
    assert not list(tmp_path.glob(".tmp-step_*"))  # a checkpoint the kill cut short is cleared away


def test_a_failed_fit_resumes_bit_identical_without_rerunning_earlier_passes(straight, one_thread, tmp_path):
    # the host fails in its 60th forward (pass 5 of 14, after step 20); the resumed store skips the
    # passes done and reruns the host only over the current pass up to its position. With init="isa":
    # the initialisation is not rerun, and its report comes back with the normaliser
    with pytest.raises(RuntimeError, match="host failure"):
        worker.fit(worker.Host(fail_at=60), tmp_path, init="isa")
    assert (tmp_path / PROBE_FIT_FILE).is_file() and (tmp_path / "latest").read_text() == "step_00000020"
    host = worker.Host()
    probe, result = worker.fit(host, tmp_path, resume=True, init="isa")
    ref_probe, ref_result, ref_forwards = straight["isa"]
    _assert_same_fit(probe, result, ref_probe, ref_result)
    per_pass = len(worker.batches())
    assert host.forwards <= ref_forwards - 2 * per_pass  # replaying from the start would run them all again


def test_resume_needs_the_fit_state_and_a_fresh_fit_refuses_another_runs_folder(tmp_path):
    with pytest.raises(ValueError, match="resume needs train.checkpoint_dir"):
        Probe(worker.Host(), worker.HOOK).fit(worker.batches(), TrainConfig(steps=2, progress=False), resume=True)
    with pytest.raises(FileNotFoundError, match=r"probe_fit\.json is missing"):
        worker.fit(worker.Host(), tmp_path, resume=True)
    with pytest.raises(RuntimeError, match="host failure"):
        worker.fit(worker.Host(fail_at=40), tmp_path)
    with pytest.raises(FileExistsError, match="another run.*overwrite=True"):
        worker.fit(worker.Host(), tmp_path)
    probe = Probe(worker.Host(), "inp", head_config=dict(latent_dim=3, hidden=16))
    train = TrainConfig(steps=80, batch_size=32, progress=False, checkpoint_every=10, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"hook 'mid'.*'inp'.*same arguments"):
        probe.fit(worker.batches(), train, buffer_size=128, resume=True)
