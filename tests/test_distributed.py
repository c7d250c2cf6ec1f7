"""Data-parallel training: 2 processes on gloo, launched by torchrun on this machine (no cluster),
against the single-process run with the same global batch (tests/ddp_worker.py holds both)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker as worker  # noqa: E402

from probe_disentangle import Probe, distributed, io  # noqa: E402
from probe_disentangle.constants import LATEST_FILE  # noqa: E402
from probe_disentangle.store import RunningStats  # noqa: E402
from probe_disentangle.train import Trainer  # noqa: E402


def torchrun(scenario: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for k in distributed.LAUNCH_VARIABLES:
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [worker.__file__, scenario, str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def equal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_equal")
    run = torchrun("equal", out)
    assert run.returncode == 0, run.stderr[-4000:]
    return out, load_file(str(out / "equal.safetensors"))


@pytest.mark.parametrize("kind", worker.KINDS)
def test_fit_equals_single_process_with_the_same_global_batch(equal_run, kind):
    _, got = equal_run
    single = worker.fit(kind, data_parallel=False).state_dict()
    for k, v in single.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[f"{kind}.{k}"], v, rtol=0, atol=1e-6, msg=f"{kind} {k}")
    assert any(not torch.equal(v, worker.make(kind).state_dict()[k]) for k, v in single.items()), "nothing trained"


def test_normaliser_moments_reduced_exactly_across_ranks(equal_run):
    _, got = equal_run
    whole = RunningStats()
    whole.update(worker.stats_data())
    assert int(got["stats.n"]) == whole.n == 301
    torch.testing.assert_close(got["stats.mean"], whole.mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(got["stats.m2"], whole.m2, rtol=1e-12, atol=0)


def test_combine_moments_known_answer():
    x = worker.stats_data()
    parts = [x[:1], x[1:100], x[100:100], x[100:]]
    n, mean, m2 = distributed.combine_moments(
        (len(p), p.mean(0) if len(p) else None, ((p - p.mean(0)) ** 2).sum(0) if len(p) else None) for p in parts
    )
    assert n == 301
    torch.testing.assert_close(mean, x.mean(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(m2 / (n - 1), x.var(0), rtol=1e-12, atol=0)


def test_probe_fit_under_torchrun_saves_once_with_the_single_process_normaliser(equal_run):
    out, got = equal_run
    single = worker.probe_fit()
    torch.testing.assert_close(got["probe.mean"], single.normalizer.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["probe.std"], single.normalizer.std, rtol=0, atol=1e-6)
    loaded = Probe.from_pretrained(out / "probe", worker.Host())
    torch.testing.assert_close(loaded.normalizer.mean, got["probe.mean"])


def test_a_failing_rank_ends_the_job_with_its_error_and_the_checkpoint_stays(tmp_path):
    run = torchrun("fail", tmp_path)
    assert run.returncode != 0
    assert worker.FAIL_MESSAGE in run.stderr + run.stdout
    ckpt = tmp_path / "ckpt"
    assert (ckpt / LATEST_FILE).read_text().strip() == "step_00000006"
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".tmp-")]
    io.load(ckpt / "step_00000006")  # whole: config and weights check out
    # another world size is refused, naming the fix
    with pytest.raises(ValueError, match="--nproc-per-node 2"):
        Trainer(worker.make("beta_vae"), worker.config(checkpoint_dir=str(ckpt))).fit(worker.data(), resume=True)


def test_resume_after_sigkill_continues_bit_identically(equal_run, tmp_path):
    _, uninterrupted = equal_run
    killed = torchrun("kill", tmp_path)
    assert killed.returncode != 0
    assert (tmp_path / "ckpt" / LATEST_FILE).read_text().strip() == "step_00000006"
    resumed = torchrun("resume", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    got = load_file(str(tmp_path / "resume.safetensors"))
    for k, v in got.items():
        assert torch.equal(v, uninterrupted[f"beta_vae.{k}"]), k


def test_launch_env_and_its_errors():
    assert distributed.launch_env({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}
    assert distributed.launch_env(env) == distributed.LaunchEnv(1, 2, 1, "localhost", 29500)
    with pytest.raises(ValueError, match="MASTER_PORT"):
        distributed.launch_env({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(ValueError, match="must lie in"):
        distributed.launch_env({**env, "RANK": "2"})
    with pytest.raises(ValueError, match="divisible by the world size"):
        distributed.DataParallel(0, 3).local_batch(16)


def test_single_process_row_helpers_are_plain_and_trainer_refuses_without_a_group():
    x = torch.randn(4, 3)
    assert distributed.gather_rows(x) is x and distributed.local_rows(x) is x and distributed.global_rows(4) == 4
    torch.manual_seed(0)
    a = distributed.randn_rows(x)
    torch.manual_seed(0)
    assert torch.equal(a, torch.randn_like(x))
    with pytest.raises(ValueError, match="torchrun"):
        Trainer(worker.make("beta_vae"), worker.config(), data_parallel=True)


def test_rows_of_a_global_batch_without_a_group():
    """The slicing and the noise of rank r are rows [r·b, (r+1)·b) of the global draw."""
    dp = distributed.DataParallel(1, 2)
    like = torch.zeros(3, 2)
    torch.manual_seed(0)
    whole = torch.randn(6, 2)
    torch.manual_seed(0)
    with distributed.rows_of(dp):
        assert distributed.global_rows(3) == 6
        assert torch.equal(distributed.randn_rows(like), whole[3:])
        assert torch.equal(distributed.local_rows(torch.arange(6)), torch.arange(3, 6))
    assert distributed.active() is None


@pytest.mark.slow
def test_cli_fit_under_torchrun_saves_one_probe(tmp_path):
    pytest.importorskip("transformer_lens")
    out = tmp_path / "probe"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "probe_disentangle.cli", "fit", "factor_lm", "--hook", "blocks.1.hook_resid_post", "--out", str(out)]
    cmd += ["--steps", "6", "--batch-size", "128", "--latents", "3", "--sequences", "300", "--no-progress"]
    run = subprocess.run([*cmd, "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.count("fitted beta_tcvae head (3 latents)") == 1 and "on 2 processes" in run.stdout
    assert (out / "probe.json").is_file() and (out / "directions.safetensors").is_file()


@pytest.mark.slow
def test_probe_fit_resumes_every_ranks_data_position_after_sigkill(tmp_path):
    """Each rank's activation store streams its own shard: the checkpoint holds every rank's
    position, and the resumed fit ends bit-identical to one never interrupted."""
    full = torchrun("probe_full", tmp_path)
    assert full.returncode == 0, full.stderr[-4000:]
    assert torchrun("probe_kill", tmp_path).returncode != 0
    assert (tmp_path / "pckpt" / LATEST_FILE).read_text().strip() == "step_00000006"
    resumed = torchrun("probe_resume", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    a, b = load_file(str(tmp_path / "probe_full.safetensors")), load_file(str(tmp_path / "probe_resume.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    run = torchrun("nan", tmp_path)
    assert run.returncode != 0
    found = re.findall(r"non-finite input batch at step (\d+)", run.stderr + run.stdout)
    assert len(found) >= 2 and len(set(found)) == 1, run.stderr[-3000:]


def test_exit_process_flushes_stdio_and_ends_with_the_code():
    import subprocess
    import sys

    code = "from probe_disentangle import distributed; print('done', end=''); distributed.exit_process(3)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and run.stdout == "done"
