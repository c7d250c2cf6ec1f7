"""benchmarks/per_token_heads.py: its pieces on known answers, and a smoke run that writes its table."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("per_token_heads", ROOT / "benchmarks" / "per_token_heads.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["per_token_heads"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _bench()


def test_first_written_finds_where_the_sentence_first_shows_each_factor(bench):
    from probe_disentangle.worlds.factor_language import FactorLanguage

    world = FactorLanguage(plan=True)
    names = list(world.factor_names)
    row = {"animal": 0, "colour": 0, "size": 1, "number": 0, "action": 0, "tense": 0, "polarity": 0, "place": 2}
    f = np.array([[row[n] for n in names]])
    # <bos> + 8 tags + ':' = positions 0..9; "a small red cat ran by the river yesterday ." from 10
    assert world.sentence(f[0]).split(": ")[1] == "a small red cat ran by the river yesterday ."
    pos = dict(zip(names, bench.first_written(world, f)[0].tolist(), strict=True))
    assert pos == {
        "number": 10,  # a / some
        "size": 11,
        "colour": 12,
        "animal": 13,
        "action": 14,  # ran
        "tense": 14,  # ran / runs / will
        "polarity": 14,  # ran / did
        "place": 15,  # by / in / on / under
    }
    f[0, names.index("polarity")] = 1  # "did not run": the verb moves two words on
    pos = dict(zip(names, bench.first_written(world, f)[0].tolist(), strict=True))
    assert (pos["polarity"], pos["tense"], pos["action"], pos["place"]) == (14, 14, 16, 17)


def test_ada_gvae_averages_the_latents_that_differ_least(bench):
    mu1 = torch.tensor([[0.0, 0.0, 0.0]])
    mu2 = torch.tensor([[0.1, 3.0, -0.1]])
    lv = torch.zeros(1, 3)
    m1, l1, m2, l2, shared = bench.ada_gvae_posteriors(mu1, lv, mu2, lv)
    # KL per latent = (μ1 − μ2)² / 2 = 0.005, 4.5, 0.005; threshold (4.5 + 0.005) / 2
    assert shared.tolist() == [[True, False, True]]
    assert torch.allclose(m1, torch.tensor([[0.05, 0.0, -0.05]]))
    assert torch.allclose(m2, torch.tensor([[0.05, 3.0, -0.05]]))
    assert torch.allclose(l1, lv) and torch.allclose(l2, lv)  # equal variances average to themselves
    _, l1, _, _, _ = bench.ada_gvae_posteriors(mu1, torch.tensor([[0.0, 0.0, 2.0]]), mu1, torch.zeros(1, 3))
    # KL(N(0, e²) ‖ N(0, 1)) = (e² − 1 − 2) / 2 is the largest: latent 2 not shared, 0 and 1 are
    assert torch.allclose(l1, torch.tensor([[0.0, 0.0, 2.0]]))


def test_normaliser_centres_per_token_and_position(bench):
    tokens = torch.tensor([1, 1, 2, 2, 1])
    pos = torch.tensor([1, 1, 1, 2, 2])
    acts = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [5.0, 5.0], [7.0, 7.0]])
    tp = bench.Normaliser("token_position", vocab=3, n_pos=3, d=2).fit(tokens, pos, acts)
    assert torch.allclose(tp.center(tokens, pos)[:3], torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 4.0]]))
    p = bench.Normaliser("position", vocab=3, n_pos=3, d=2).fit(tokens, pos, acts)
    assert torch.allclose(p.mean_p[1], torch.tensor([4 / 3, 4 / 3]))
    # an unseen (token, position) falls back to the position's mean
    assert torch.allclose(tp.center(torch.tensor([0]), torch.tensor([2])), torch.tensor([[6.0, 6.0]]))
    with pytest.raises(ValueError, match="unknown normalisation"):
        bench.Normaliser("tokens", 3, 3, 2)


def test_prefix_codes_are_causal_products_of_evidence(bench):
    torch.manual_seed(0)
    head = bench.PrefixCodeHead(bench.HeadConfig(latent_dim=3, hidden=8), vocab=5, n_pos=6, d=4)
    acts = torch.randn(2, 6, 4)
    tokens = torch.randint(0, 5, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 0] = False
    mu, lv = (t.detach() for t in head.posteriors(acts, tokens, mask))
    later = acts.clone()
    later[:, 4:] += 5.0
    mu2, lv2 = head.posteriors(later, tokens, mask)
    assert torch.allclose(mu[:, :4], mu2[:, :4]) and not torch.allclose(mu[:, 4:], mu2[:, 4:])
    assert torch.allclose(mu[:, 0], torch.zeros(2, 3)) and torch.allclose(lv[:, 0], torch.zeros(2, 3))  # the prior
    assert (lv[:, 1:] <= lv[:, :-1] + 1e-6).all()  # evidence only narrows the code
    masked = mask.clone()
    masked[:, 3] = False  # a masked position adds nothing
    mu3, _ = head.posteriors(acts, tokens, masked)
    assert torch.allclose(mu3[:, 3], mu3[:, 2])
    # setting a latent to the value it has changes nothing but float noise; BOS is never edited
    out = head.edit_sequence(acts, tokens, 0, float(mu[0, 5, 0]))
    assert torch.equal(out[:, 0], acts[:, 0])
    assert torch.allclose(out[0, 5], acts[0, 5], atol=1e-5) and not torch.allclose(out[0, 2], acts[0, 2])


def test_prefix_head_without_the_token_in_its_decoder(bench):
    torch.manual_seed(0)
    head = bench.PrefixCodeHead(bench.HeadConfig(latent_dim=3, hidden=8, dec_token=False), vocab=5, n_pos=6, d=4)
    assert head.norm.kind == "position" and head.tok_emb is None
    z, pos = torch.randn(4, 3), torch.arange(4)
    a, b = torch.zeros(4, dtype=torch.long), torch.full((4,), 3)
    assert torch.equal(head.decode(z, a, pos), head.decode(z, b, pos))  # the latents must say which token
    acts, tokens = torch.randn(2, 6, 4), torch.randint(0, 5, (2, 6))
    out = head.edit_sequence(acts, tokens, [0, 1], [1.0, -1.0])
    assert torch.equal(out[:, 0], acts[:, 0]) and not torch.allclose(out[:, 1:], acts[:, 1:])


def test_prefix_categorical_codes_and_edits(bench):
    torch.manual_seed(0)
    head = bench.PrefixCategoricalHead(bench.HeadConfig(latent_dim=2, hidden=8), vocab=5, n_pos=6, d=4, categories=3)
    acts = torch.randn(2, 6, 4)
    tokens = torch.randint(0, 5, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    codes = head.sequence_codes(acts, tokens, mask)
    assert codes.shape == (2, 6, 2) and set(codes.unique().tolist()) <= {0.0, 1.0, 2.0}
    current = int(codes[0, 5, 1])
    out = head.edit_sequence(acts, tokens, 1, current)
    assert torch.allclose(out[0, 5], acts[0, 5])  # the category it already has: no change
    assert torch.equal(out[:, 0], acts[:, 0])


def test_smoke_run_writes_its_table(tmp_path):
    out = tmp_path / "per_token.json"
    cmd = [sys.executable, "benchmarks/per_token_heads.py", "--smoke", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    (hook,) = res["hooks"]
    assert hook == "blocks.1.hook_resid_post"
    for method, entry in res["hooks"][hook].items():
        s = entry["summary"]
        assert 0 <= s["mean_success"] <= 1 and 0 <= s["mean_isolate"] <= 1, method
        assert set(entry["steering"]) == {"size", "number"}
    assert "mig_first_written" in res["hooks"][hook]["prefix_pairs"]
    assert "| method |" in done.stdout


def test_group_targets_set_every_latent_a_factor_owns(bench):
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, 4, 4000), rng.integers(0, 2, 4000)], 1)
    codes = np.stack(
        [
            (f[:, 0] % 2) * 2.0 + rng.normal(0, 0.05, 4000),  # factor 0 laid over latents 0 and 1
            (f[:, 0] // 2) * 2.0 + rng.normal(0, 0.05, 4000),
            f[:, 1] * 3.0 + rng.normal(0, 0.05, 4000),  # factor 1
            f[:, 1] * 0.01 + rng.normal(0, 0.001, 4000),  # collapsed, though informative
        ],
        1,
    )
    targets, groups = bench.group_targets(codes, f, (4, 2), strength=1.0)
    assert groups == [[0, 1], [2]]
    idx, val = targets[(0, 3)]  # value 3: latent 0 at 2, latent 1 at 2
    assert idx == [0, 1] and np.allclose(val, [2.0, 2.0], atol=0.01)
    idx, val = targets[(1, 0)]
    assert idx == [2] and np.allclose(val, [0.0], atol=0.01)
    _, val = bench.group_targets(codes, f, (4, 2), strength=2.0)[0][(1, 1)]
    mean = codes[:, 2].mean()
    assert np.allclose(val, [mean + 2 * (3.0 - mean)], atol=0.01)  # pushed twice as far from the mean
