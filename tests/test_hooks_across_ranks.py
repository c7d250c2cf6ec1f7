"""Hooks across ranks: fit_probes under torchrun (2 gloo processes) trains each hook's probe on one
rank, from every rank's shard of the data, bit-identical to the single-process fit_probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import hooks_worker as worker  # noqa: E402

from probe_disentangle import Probe, distributed, fit_probes, hook_folder  # noqa: E402
from probe_disentangle.hooks_across_ranks import owner_of  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hooks_across_ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for k in distributed.LAUNCH_VARIABLES:
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*cmd, worker.__file__, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_each_rank_trains_its_hooks_and_every_probe_equals_the_single_process_fit(run, one_thread):
    host = worker.Host().eval()
    single = fit_probes(host, worker.HEADS, worker.batches(), worker.train(), **worker.FIT)
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["hooks"] == ["l0", "l1"] and ranks[1]["hooks"] == ["l2"]  # hook i → rank i mod 2
    for h in worker.HOOKS:
        got = Probe.from_pretrained(run / "probes" / hook_folder(h), worker.Host().eval())
        want = single[h]
        sa, sb = got.head.state_dict(), want.head.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), h
        assert torch.equal(got.normalizer.mean, want.normalizer.mean) and torch.equal(
            got.reference_codes, want.reference_codes
        )


def test_the_host_ran_on_each_ranks_own_shard(run):
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 11 host batches per pass: 6 on rank 0, 5 on rank 1; a few passes (20 steps, a normaliser pass)
    assert all(r["forwards"] > 0 for r in ranks)
    assert 0 <= ranks[0]["forwards"] - ranks[1]["forwards"] <= ranks[0]["forwards"] // 6 + 1


def test_owner_of_known_answer():
    assert owner_of(["a", "b", "c", "d", "e"], 2) == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0}
    assert owner_of(["a"], 4) == {"a": 0}
