"""benchmarks/capacity_lm_factor_gain.py: each factor's worth to a prefix head's reconstruction."""

import json

import numpy as np
from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("capacity_lm_factor_gain")


def test_factor_gain_known_answer():
    # the full 4 × 4 factorial, 250 times: each factor uniform within every value of the other,
    # so each explains exactly its own variance (1.25 each)
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    f = np.tile(grid, (250, 1))
    n, t_len = len(f), 3
    a = np.zeros((n, t_len, 2))
    a[:, :, 0] = f[:, :1] - 1.5  # f0 written at every position
    a[:, 2, 1] = f[:, 1] - 1.5  # f1 at the last one only
    tokens = np.zeros((n, t_len), dtype=np.int64)
    gain, share = _bench().factor_gain(a, tokens, f, 4)
    np.testing.assert_allclose(gain, [2.5, 0.5], rtol=1e-12)  # 1 + 1 + 1/2, and 1/2
    assert ((share > 0.01).sum(1) == [3, 1]).all()
    # an offset the token decides is centred away (tokens independent of the factors)
    tok = np.random.default_rng(0).integers(0, 2, (n, t_len))
    gain_tok, _ = _bench().factor_gain(a + 10.0 * tok[..., None], tok, f, 4)
    np.testing.assert_allclose(gain_tok, gain, atol=0.02)


def test_encoded_reads_the_study_cells():
    cells = {
        "prefix_tcvae/K2/s0": {"K": 2, "decodable": {"f0": 0.99, "f1": 0.4}},
        "prefix_tcvae/K4/s0": {"K": 4, "decodable": {"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": 1.0}},
        "diff_means/K2": {"K": 2},
    }
    assert _bench().encoded(cells, 2) == {"prefix_tcvae/K2/s0": [0]}


def test_smoke_on_a_tiny_host(tmp_path):
    out = tmp_path / "out"
    args = ["--ks", "2", "--host-steps", "60", "--host-eval", "20", "--n", "64", "--n-carry", "64"]
    res = _bench().main([*args, "--host-dir", str(tmp_path / "hosts"), "--out", str(out)])
    r = res["K2"]
    assert len(r["gain"]) == 2 and all(g >= 0 for g in r["gain"])
    assert set(r["carried"]) == {f"blocks.{i}.hook_resid_post" for i in range(4)}
    assert json.loads((out / "factor_gain.json").read_text())["K2"]["gain"] == r["gain"]
    assert "| gain |" in (out / "factor_gain.md").read_text()
