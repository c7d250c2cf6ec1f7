"""The trainer: bit-identical resume, the non-finite guard, atomic checkpoints, schedules."""

import math

import pytest
import torch

from probe_disentangle import io
from probe_disentangle.heads import InfoGANHead, InfoGANHeadConfig, VAEHead, VAEHeadConfig
from probe_disentangle.losses import LossResult
from probe_disentangle.train import DeferredNonFiniteError, NonFiniteError, TrainConfig, Trainer, _lr_lambda


def _data(n=256, d=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g) @ torch.randn(3, d, generator=g)


def _head(objective="beta_tcvae", args=None):
    torch.manual_seed(1)
    return VAEHead(
        VAEHeadConfig(
            d_in=10, latent_dim=3, hidden=16, objective=objective, objective_args=args or {"dataset_size": 256}
        )
    )


def _cfg(**kw):
    base = dict(steps=30, batch_size=32, progress=False, log_every=5)
    base.update(kw)
    return TrainConfig(**base)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _head(),
        lambda: _head("factor_vae", {"disc_hidden": 8, "disc_depth": 1}),
        lambda: _head("capacity", {"c_steps": 20, "c_max": 3.0}),
        lambda: (
            torch.manual_seed(1),
            InfoGANHead(InfoGANHeadConfig(d_in=10, noise_dim=2, categorical=[3], continuous=1, hidden=16)),
        )[1],
    ],
    ids=["beta_tcvae", "factor_vae", "capacity", "infogan"],
)
def test_resume_is_bit_identical(make, tmp_path):
    x = _data()
    straight = make()
    r_straight = Trainer(straight, _cfg(lr_schedule="cosine", warmup_steps=5)).fit(x)
    first = make()
    Trainer(first, _cfg(lr_schedule="cosine", warmup_steps=5, checkpoint_dir=str(tmp_path))).fit(x, until=17)
    torch.manual_seed(999)  # resume must restore the RNG, whatever happened in between
    resumed = make()
    r_resumed = Trainer(resumed, _cfg(lr_schedule="cosine", warmup_steps=5, checkpoint_dir=str(tmp_path))).fit(
        x, resume=True
    )
    assert r_resumed.step == 30
    assert _same(straight, resumed)
    assert r_resumed.last == r_straight.last


def test_checkpoints_are_loadable_models_and_pruned(tmp_path):
    t = Trainer(_head(), _cfg(steps=20, checkpoint_every=5, keep_checkpoints=2, checkpoint_dir=str(tmp_path)))
    res = t.fit(_data())
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step_"))
    assert kept == ["step_00000015", "step_00000020"]
    assert (tmp_path / "latest").read_text() == "step_00000020"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert _same(io.load(res.checkpoint), t.model)


def test_nonfinite_input_stops_with_step_and_keeps_checkpoint(tmp_path):
    x = _data(64)
    bad = x.clone()
    bad[5, 3] = float("nan")
    batches = [x[:32], x[32:], x[:32], x[32:], bad]
    head = _head()
    t = Trainer(head, _cfg(steps=10, checkpoint_every=2, checkpoint_dir=str(tmp_path)))
    with pytest.raises(NonFiniteError, match=r"input batch at step 4.*step_00000004") as err:
        t.fit(batches)
    assert err.value.step == 4
    restored = io.load(err.value.checkpoint)
    assert _same(restored, head)  # nothing was updated with the bad batch


def test_deferred_guard_reports_the_window_and_saves_no_bad_checkpoint(tmp_path):
    # check_every = 4 (the CUDA default is 32): a NaN batch at step 5 is found at the check after
    # step 8, reported as the window 4..7, and no checkpoint is written from the bad parameters
    x = _data(64)
    bad = x.clone()
    bad[5, 3] = float("nan")
    batches = [x[:32], x[32:], x[:32], x[32:], x[:32], bad, x[:32], x[32:], x[:32]]
    head = _head()
    t = Trainer(head, _cfg(steps=12, checkpoint_every=4, checkpoint_dir=str(tmp_path), check_every=4))
    assert t.check_every == 4
    with pytest.raises(DeferredNonFiniteError, match=r"between steps 4 and 7.*step_00000004") as err:
        t.fit(batches)
    assert isinstance(err.value, NonFiniteError) and err.value.step == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step_")) == ["step_00000004"]
    restored = io.load(err.value.checkpoint)
    assert all(torch.isfinite(p).all() for p in restored.parameters())


def test_deferred_guard_reads_at_the_end_of_fit():
    # a bad last batch inside an unfinished window is still caught when fit returns
    x = _data(64)
    bad = x.clone()
    bad[0, 0] = float("inf")
    t = Trainer(_head(), _cfg(steps=3, check_every=100))
    with pytest.raises(DeferredNonFiniteError, match=r"between steps 0 and 2"):
        t.fit([x[:32], x[32:], bad])
    clean = Trainer(_head(), _cfg(steps=3, check_every=100))
    assert clean.fit([x[:32], x[32:], x[:32]]).step == 3


def test_check_every_defaults_by_device_and_is_validated():
    assert Trainer(_head(), _cfg(steps=1, device="cpu")).check_every == 1
    with pytest.raises(ValueError, match="check_every must be ≥ 1"):
        TrainConfig(check_every=0)


class _ExplodingHead(VAEHead):
    """Reports a NaN 'tc' term from step 3 on."""

    def training_step(self, batch, step, optimize):
        r = self.loss(batch, step)
        if step >= 3:
            r = LossResult(r.total + r.terms["tc"] * float("nan"), {**r.terms, "tc": r.terms["tc"] * float("nan")})
        optimize("vae", r)
        return r


def test_nonfinite_loss_names_the_term_and_leaves_parameters(tmp_path):
    torch.manual_seed(1)
    head = _ExplodingHead(VAEHeadConfig(d_in=10, latent_dim=3, hidden=16, objective_args={"dataset_size": 256}))
    t = Trainer(head, _cfg(steps=10, checkpoint_every=3, checkpoint_dir=str(tmp_path)))
    with pytest.raises(NonFiniteError, match=r"loss term 'tc' \(vae\) at step 3") as err:
        t.fit(_data())
    assert all(torch.isfinite(p).all() for p in head.parameters())
    assert err.value.checkpoint.endswith("step_00000003")
    assert _same(io.load(err.value.checkpoint), head)


def test_nonfinite_gradient_is_caught():
    head = _head("beta_vae", {"beta": 1.0})
    with torch.no_grad():
        head.decoder[-1].weight[0, 0] = 1e38  # finite weight whose gradient overflows
    x = _data() * 1e30
    with pytest.raises(NonFiniteError):
        Trainer(head, _cfg(steps=3, grad_clip=1.0)).fit(x)


def test_lr_schedules():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr_schedule="cosine")
    f = _lr_lambda(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)
    lin = _lr_lambda(TrainConfig(steps=100, lr_schedule="linear"))
    assert lin(50) == pytest.approx(0.5)
    assert _lr_lambda(TrainConfig(steps=100))(70) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="exp")


def test_lr_decay_steps_hold_then_decay():
    """Warmup–stable–decay: ramp over warmup, hold 1, then the schedule reaches 0 over the last decay_steps."""
    wsd = _lr_lambda(TrainConfig(steps=100, warmup_steps=10, decay_steps=20, lr_schedule="linear"))
    assert wsd(4) == pytest.approx(0.5) and wsd(10) == 1.0 and wsd(79) == 1.0 and wsd(80) == 1.0
    assert wsd(90) == pytest.approx(0.5) and wsd(95) == pytest.approx(0.25) and wsd(100) == pytest.approx(0.0)
    cos = _lr_lambda(TrainConfig(steps=100, decay_steps=40, lr_schedule="cosine"))
    assert cos(59) == 1.0 and cos(80) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="decay_steps needs"):
        TrainConfig(steps=100, decay_steps=10)
    with pytest.raises(ValueError, match="exceed steps"):
        TrainConfig(steps=100, warmup_steps=50, decay_steps=60, lr_schedule="linear")


def test_decay_steps_extend_a_resumed_run(tmp_path):
    """A run trained at a constant LR, resumed with a longer ``steps`` and a final decay, follows that
    decay from where it stopped and ends at LR 0."""
    x = _data(64)
    Trainer(_head(), _cfg(steps=12, checkpoint_dir=str(tmp_path))).fit(x)
    trainer = Trainer(_head(), _cfg(steps=20, decay_steps=8, lr_schedule="linear", checkpoint_dir=str(tmp_path)))
    sched = next(iter(trainer.schedulers.values()))
    trainer.fit(x, resume=True, until=16)
    assert trainer.step == 16 and sched.get_last_lr()[0] == pytest.approx(0.5 * trainer.config.lr)
    assert trainer.fit(x).step == 20 and sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        TrainConfig(checkpoint_every=5)


def test_iterable_data_and_tuple_batches():
    x = _data(96)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(96)), batch_size=32)
    res = Trainer(_head(), _cfg(steps=7)).fit(loader)  # cycles over the 3 batches
    assert res.step == 7 and math.isfinite(res.last["loss"])
    res = Trainer(_head(), _cfg(steps=4)).fit((x, torch.zeros(96)))
    assert res.step == 4


def test_resume_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(_head(), _cfg(checkpoint_dir=str(tmp_path))).fit(_data(), resume=True)
    Trainer(_head(), _cfg(steps=2, checkpoint_dir=str(tmp_path))).fit(_data())
    other = InfoGANHead(InfoGANHeadConfig(d_in=10, noise_dim=2, categorical=[3], continuous=1, hidden=16))
    with pytest.raises(ValueError, match="holds a 'vae_head'"):
        Trainer(other, _cfg(checkpoint_dir=str(tmp_path))).fit(_data(), resume=True)


def test_trainer_rejects_models_without_a_step():
    with pytest.raises(TypeError, match="training_step"):
        Trainer(torch.nn.Linear(2, 2))


def test_progress_bar_and_tensorboard(tmp_path):
    res = Trainer(_head(), _cfg(steps=3, progress=True)).fit(_data())
    assert res.step == 3
    pytest.importorskip("tensorboard")
    Trainer(_head(), _cfg(steps=3, tensorboard_dir=str(tmp_path / "tb"))).fit(_data())
    assert any((tmp_path / "tb").iterdir())


def test_fit_in_chunks_equals_one_call():
    """Time-limited jobs call fit(until=...) repeatedly: the result must not depend on the chunking
    (no reseeding, no fresh permutation between calls)."""
    x = _data()
    torch.manual_seed(0)
    straight = _head()
    torch.manual_seed(0)
    chunked = _head()
    r_straight = Trainer(straight, _cfg()).fit(x)
    t = Trainer(chunked, _cfg())
    for stop in (7, 8, 20):
        t.fit(x, until=stop)
        torch.manual_seed(123)  # global RNG disturbed between chunks, as other work would
        torch.randn(3)
    r_chunked = t.fit(x)
    assert r_chunked.step == r_straight.step == 30
    assert _same(straight, chunked)


def test_fit_steps_interleaved_with_own_rng_states_equal_separate_fits():
    """Trainer.fit_steps yields after each step and returns fit's result; two trainers stepped in
    turn, each with its own global RNG state between steps (as fit_probes drives them), end as
    each would alone. FactorVAE draws permutations from the global RNG every step."""
    x = _data()
    makes = (lambda: _head(), lambda: _head("factor_vae", {"disc_hidden": 8, "disc_depth": 1}))
    alone = []
    for make in makes:
        head = make()
        alone.append((head, Trainer(head, _cfg()).fit(x)))
    heads = [make() for make in makes]
    gens = [Trainer(h, _cfg()).fit_steps(x) for h in heads]
    states = [torch.get_rng_state()] * 2
    yielded, results = [[], []], [None, None]
    while None in results:
        for i, g in enumerate(gens):
            if results[i] is not None:
                continue
            torch.set_rng_state(states[i])
            try:
                yielded[i].append(next(g))
            except StopIteration as done:
                results[i] = done.value
            states[i] = torch.get_rng_state()
    assert yielded == [list(range(1, 31))] * 2
    for (head, r), h2, r2 in zip(alone, heads, results, strict=True):
        assert _same(head, h2) and r2.step == 30 and r2.last == r.last


def test_cpu_autocast_only_when_asked_and_losses_stay_float32():
    seen = []

    class Recording(VAEHead):
        def training_step(self, batch, step, optimize):
            seen.append(torch.is_autocast_enabled("cpu"))
            result = super().training_step(batch, step, optimize)
            seen.append(result.terms["recon"].dtype)
            return result

    x = _data()
    for amp_cpu in (False, True):
        seen.clear()
        torch.manual_seed(1)
        head = Recording(VAEHeadConfig(d_in=10, latent_dim=3, hidden=16, objective_args={"dataset_size": 256}))
        r = Trainer(head, _cfg(steps=150, device="cpu", amp_cpu=amp_cpu, log_every=1, lr=3e-3)).fit(x)
        assert seen[0] is amp_cpu and seen[1] == torch.float32  # bf16 matmuls, float32 loss terms
        assert all(p.dtype == torch.float32 for p in head.parameters())
        recon = [h["recon"] for h in r.history]
        assert sum(recon[-10:]) < 0.5 * sum(recon[:10])  # it trains, under bf16 autocast too


def test_resolve_device_auto_cpu_and_clear_errors(monkeypatch):
    from probe_disentangle.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU is visible here; use 'cpu'"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        Trainer(_head(), _cfg(steps=1, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


# ------------------------------------------------------------------ checkpoints a run can trust


def _steps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("step_"))


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A folder holding step_00000050 and step_00000100 of an earlier, longer run."""
    folder = tmp_path_factory.mktemp("earlier")
    Trainer(_head(), _cfg(steps=100, checkpoint_every=50, checkpoint_dir=str(folder))).fit(_data())
    assert _steps(folder) == ["step_00000050", "step_00000100"]
    return folder


def _earlier_run(source, folder):
    import shutil

    shutil.copytree(source, folder, dirs_exist_ok=True)


def test_a_fresh_run_refuses_a_folder_holding_another_runs_checkpoints(earlier_run, tmp_path):
    _earlier_run(earlier_run, tmp_path)
    t = Trainer(_head(), _cfg(steps=30, checkpoint_every=10, checkpoint_dir=str(tmp_path)))
    with pytest.raises(FileExistsError, match=r"another run.*step_00000100.*resume=True.*overwrite=True"):
        t.fit(_data(), until=20)
    assert _steps(tmp_path) == ["step_00000050", "step_00000100"]  # nothing touched
    assert (tmp_path / "latest").read_text() == "step_00000100"


def test_overwrite_replaces_the_earlier_run_and_latest_always_loads(earlier_run, tmp_path):
    # the reproduction of issue 25: the new run's checkpoints sort before the old ones by name
    _earlier_run(earlier_run, tmp_path)
    t = Trainer(_head(), _cfg(steps=30, checkpoint_every=10, checkpoint_dir=str(tmp_path)))
    res = t.fit(_data(), until=20, overwrite=True)
    assert _steps(tmp_path) == ["step_00000010", "step_00000020"]
    latest = tmp_path / (tmp_path / "latest").read_text()
    assert latest.name == "step_00000020" and res.checkpoint == str(latest)
    assert _same(io.load(latest), t.model)
    again = Trainer(_head(), _cfg(steps=30, checkpoint_every=10, checkpoint_dir=str(tmp_path)))
    assert again.fit(_data(), resume=True).step == 30
    assert _steps(tmp_path) == ["step_00000020", "step_00000030"]


def test_resuming_from_an_earlier_checkpoint_never_prunes_what_it_writes(tmp_path):
    # keep_checkpoints=1, resumed from step 10 while step 20 of the same run is on disk: pruning
    # by name kept step 20 and deleted each new checkpoint as soon as it was written
    Trainer(_head(), _cfg(steps=20, checkpoint_every=10, keep_checkpoints=2, checkpoint_dir=str(tmp_path))).fit(_data())
    cfg = _cfg(steps=20, checkpoint_every=5, keep_checkpoints=1, checkpoint_dir=str(tmp_path))
    t = Trainer(_head(), cfg)
    res = t.fit(_data(), resume=str(tmp_path / "step_00000010"), until=15)
    latest = tmp_path / (tmp_path / "latest").read_text()
    assert latest.name == "step_00000015" and res.checkpoint == str(latest)
    assert _same(io.load(latest), t.model)
    assert _steps(tmp_path) == ["step_00000015", "step_00000020"]  # its own step 10 pruned, step 20 not its own
    assert Trainer(_head(), cfg).fit(_data(), resume=True).step == 20


def test_a_failed_checkpoint_write_leaves_no_temp_folder(tmp_path, monkeypatch):
    import errno

    t = Trainer(_head(), _cfg(steps=4, checkpoint_every=2, checkpoint_dir=str(tmp_path)))
    t.fit(_data(), until=2)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as err:
        t.fit(_data())
    assert err.value.errno == errno.ENOSPC and str(tmp_path) in str(err.value)  # the error names the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000002"]  # no .tmp-* left
    monkeypatch.undo()
    assert Trainer(_head(), _cfg(steps=4, checkpoint_dir=str(tmp_path))).fit(_data(), resume=True).step == 4


def test_a_tampered_train_state_names_train_state_json(tmp_path):
    Trainer(_head(), _cfg(steps=2, checkpoint_dir=str(tmp_path))).fit(_data())
    state = tmp_path / "step_00000002" / "train_state.safetensors"
    blob = bytearray(state.read_bytes())
    blob[-3] ^= 0xFF
    state.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"checksum in .*train_state\.json") as err:
        Trainer(_head(), _cfg(steps=4, checkpoint_dir=str(tmp_path))).fit(_data(), resume=True)
    assert "config.json" not in str(err.value)
