"""ActivationStore: bounded shuffle buffer, exact statistics, disk cache."""

import pytest
import torch
from torch import nn

from probe_disentangle.adapters import attach
from probe_disentangle.store import ActivationStore, RunningStats


class Ident(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()

    def forward(self, x):
        return self.layer(x)


def _data(n_batches=10, rows=50, d=4):
    # row r of batch b holds the value b*rows + r in every dimension: easy to track
    return [torch.arange(b * rows, (b + 1) * rows, dtype=torch.float32)[:, None].repeat(1, d) for b in range(n_batches)]


def test_every_vector_served_once_and_shuffled():
    store = ActivationStore(attach(Ident()), "layer", _data(), batch_size=20, buffer_size=100, device="cpu")
    served = torch.cat(list(store))[:, 0]
    assert served.shape[0] >= 500 - 20  # only a final partial batch may be dropped
    assert served.unique().numel() == served.numel()  # no duplicates
    assert not torch.equal(served, served.sort().values)  # shuffled
    # the buffer mixes: the first served batch draws from more than one host batch
    first = served[:20]
    assert (first // 50).unique().numel() > 1
    assert store.vectors_seen == 500


def test_running_stats_equal_full_batch_statistics():
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 3, generator=g) * 3 + 1 for n in (5, 17, 1, 40)]
    st = RunningStats()
    for c in chunks:
        st.update(c)
    full = torch.cat(chunks).double()
    torch.testing.assert_close(st.mean, full.mean(0))
    torch.testing.assert_close(st.m2 / (st.n - 1), full.var(0))
    norm = st.normalizer()
    z = norm(torch.cat(chunks))
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.inverse(z), torch.cat(chunks), atol=1e-5, rtol=1e-5)


def test_disk_cache_round_trip_without_the_host(tmp_path):
    calls = []

    class Counting(Ident):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    data = _data(4)
    s1 = ActivationStore(
        attach(Counting()), "layer", data, batch_size=10, buffer_size=40, cache_dir=tmp_path, device="cpu"
    )
    first = s1.collect()
    assert len(calls) == 4 and (tmp_path / "manifest.json").is_file()
    s2 = ActivationStore(
        attach(Counting()), "layer", data, batch_size=10, buffer_size=40, cache_dir=tmp_path, device="cpu"
    )
    torch.testing.assert_close(s2.collect(), first)
    assert len(calls) == 4  # served from the memory-mapped shards
    s3 = ActivationStore(attach(Counting()), "layer", data, cache_dir=tmp_path, batch_size=10, buffer_size=40)
    s3.hook = "other"
    with pytest.raises(ValueError, match="another cache_dir"):
        s3.collect()


def test_normaliser_applied_to_batches_and_bad_buffer():
    store = ActivationStore(attach(Ident()), "layer", _data(), batch_size=25, buffer_size=100, device="cpu")
    norm = store.estimate_normalizer(max_vectors=500)
    batches = torch.cat(list(store))
    assert batches.mean().abs() < 0.1 and (batches.std() - 1).abs() < 0.1
    assert norm.mean.shape == (4,)
    with pytest.raises(ValueError, match="two batches"):
        ActivationStore(attach(Ident()), "layer", _data(), batch_size=64, buffer_size=100)


def test_too_little_data_is_a_clear_error():
    store = ActivationStore(attach(Ident()), "layer", _data(1, rows=10), batch_size=20, buffer_size=40, device="cpu")
    with pytest.raises(ValueError, match="fewer than one batch of 20"):
        list(store)


class Counting(Ident):
    """Counts the host's forwards."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_normaliser_and_collect_read_the_pass_training_then_carries_on():
    # a one-shot iterator: what the normaliser and collect read must still be trained on, and the
    # host must run once per batch, not again for the statistics
    host = Counting()
    store = ActivationStore(attach(host), "layer", iter(_data()), batch_size=20, buffer_size=100, device="cpu")
    store.estimate_normalizer(max_vectors=120)
    assert host.calls == 3  # 150 vectors read for 120
    head = store.collect(max_vectors=180)  # normalised, from the same pass: one more batch
    assert host.calls == 4 and head.shape == (180, 4)
    store.normalizer = None
    torch.testing.assert_close(store.collect(max_vectors=50)[:, 0], torch.arange(50.0))  # no host run
    assert host.calls == 4
    served = torch.cat(list(store))[:, 0]
    assert host.calls == 10  # each of the 10 batches ran once
    assert served.unique().numel() == served.numel() >= 480
    assert store.vectors_seen == 500


def test_a_later_pass_starts_the_data_again():
    host = Counting()
    store = ActivationStore(attach(host), "layer", _data(3), batch_size=25, buffer_size=50, device="cpu")
    first = torch.cat(list(store))
    second = torch.cat(list(store))
    assert host.calls == 6 and first.shape == second.shape == (150, 4)
    torch.testing.assert_close(store.collect(max_vectors=60)[:, 0], torch.arange(60.0))  # a new pass, paused
    assert host.calls == 8
    one_shot = ActivationStore(attach(Ident()), "layer", iter(_data(2)), batch_size=25, buffer_size=50, device="cpu")
    list(one_shot)
    with pytest.raises(ValueError, match="no activation vectors"):
        one_shot.collect(max_vectors=10)


def test_a_second_host_pass_without_a_cache_is_said_once(tmp_path, caplog):
    store = ActivationStore(attach(Ident()), "layer", _data(2), batch_size=25, buffer_size=50, device="cpu")
    with caplog.at_level("WARNING", logger="probe_disentangle.store"):
        list(store)
        assert not caplog.records  # one pass is what a store costs
        list(store), list(store)
    assert [r.getMessage().count("pass cache_dir=") for r in caplog.records] == [1]  # once, at pass 2
    caplog.clear()
    one_shot = ActivationStore(attach(Ident()), "layer", iter(_data(2)), batch_size=25, buffer_size=50, device="cpu")
    with caplog.at_level("WARNING", logger="probe_disentangle.store"):
        list(one_shot)
        with pytest.raises(ValueError, match="0 activation vectors"):  # a spent iterator runs nothing again
            list(one_shot)
    assert not caplog.records
    cached = ActivationStore(
        attach(Ident()), "layer", _data(2), batch_size=25, buffer_size=50, device="cpu", cache_dir=tmp_path / "c"
    )
    with caplog.at_level("WARNING", logger="probe_disentangle.store"):
        list(cached), list(cached)
    assert not caplog.records


def test_stream_state_resumes_mid_pass_without_rerunning_earlier_passes():
    class Counting(Ident):
        calls = 0

        def forward(self, x):
            Counting.calls += 1
            return super().forward(x)

    def store():
        return ActivationStore(attach(Counting()), "layer", _data(4), batch_size=20, buffer_size=60, device="cpu")

    a = store()
    passes = [list(a), list(a)]  # two passes: the generator carries on between them
    second = iter(a)
    head = [next(second) for _ in range(3)]
    state = a.stream_state()
    rest = list(second)
    assert len(passes[0]) == len(passes[1]) == len(head) + len(rest) and not torch.equal(passes[0][0], passes[1][0])
    Counting.calls = 0
    b = store()
    b.load_stream_state(state)
    resumed = list(b)  # the third pass from its 4th batch on: only that pass runs the host
    assert Counting.calls == 4
    assert len(resumed) == len(rest) and all(torch.equal(x, y) for x, y in zip(resumed, rest, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(list(b), list(a), strict=True))  # later passes agree too
    assert b.vectors_seen == a.vectors_seen
    with pytest.raises(ValueError, match="stream_state"):
        b.load_stream_state({"served": 1})


def _pair_data(n_batches=6, rows=40, d=3):
    # pair row r of batch b: a holds v = b*rows + r, b holds 1000 + v (every dimension)
    out = []
    for b in range(n_batches):
        v = torch.arange(b * rows, (b + 1) * rows, dtype=torch.float32)[:, None].repeat(1, d)
        out.append((v, v + 1000))
    return out


def test_pairs_stay_together_through_the_shuffle_the_cache_and_a_resume(tmp_path):
    def store(cache=None):
        return ActivationStore(
            attach(Ident()),
            "layer",
            _pair_data(),
            batch_size=16,
            buffer_size=64,
            device="cpu",
            pairs=True,
            cache_dir=cache,
        )

    s = store(tmp_path / "cache")
    batches = list(s)
    assert all(b.shape == (16, 2, 3) for b in batches)
    served = torch.cat(batches)
    assert torch.equal(served[:, 1] - served[:, 0], torch.full_like(served[:, 0], 1000.0))  # aligned
    a = served[:, 0, 0]
    assert a.unique().numel() == a.numel() >= 240 - 16 and not torch.equal(a, a.sort().values)
    assert s.vectors_seen == 240  # pairs
    torch.testing.assert_close(s.stats.mean, torch.full((3,), 119.5 + 500.0, dtype=torch.float64))  # both halves
    c = store(tmp_path / "cache")  # from the cache: the same pairs in the same order
    assert all(torch.equal(x, y) for x, y in zip(list(c), batches, strict=True))
    col = store().collect(50)
    assert col.shape == (50, 2, 3) and torch.equal(col[:, 0, 0], torch.arange(50.0))
    norm = store().estimate_normalizer(40)  # the first 40 pairs: 80 vectors
    torch.testing.assert_close(norm.mean, torch.full((3,), 519.5))
    r = store()
    it = iter(r)
    [next(it) for _ in range(4)]
    state, rest = r.stream_state(), list(it)
    r2 = store()
    r2.load_stream_state(state)
    assert all(torch.equal(x, y) for x, y in zip(list(r2), rest, strict=True))
    with pytest.raises(ValueError, match="single vectors"):
        ActivationStore(attach(Ident()), "layer", _data(), cache_dir=tmp_path / "cache", device="cpu").collect()


def test_pairs_bad_input_is_a_clear_error():
    x = torch.zeros(8, 3)
    with pytest.raises(TypeError, match=r"\(batch_a, batch_b\)"):
        ActivationStore(attach(Ident()), "layer", [x], batch_size=2, buffer_size=4, pairs=True).collect()
    with pytest.raises(ValueError, match="same length"):
        ActivationStore(attach(Ident()), "layer", [(x, x[:5])], batch_size=2, buffer_size=4, pairs=True).collect()
