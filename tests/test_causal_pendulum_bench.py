"""benchmarks/causal_pendulum.py end to end at a tiny size (shapes and the counterfactual's known answer)."""

import json

import numpy as np
from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("causal_pendulum")


def test_counterfactual_of_a_cause_moves_the_effects_by_the_mechanism():
    from probe_disentangle.worlds.pendulum import Pendulum

    bench, w = _bench(), Pendulum()
    base = w.sample_values(5, 0)
    cf = bench._counterfactual(w, base, 0, 10.0)
    length, pos = w.shadow(np.full(5, 10.0), base[:, 1])
    noise = base[:, 2:] - np.stack(w.shadow(base[:, 0], base[:, 1]), 1)
    assert np.allclose(cf[:, 0], 10.0) and np.allclose(cf[:, 1], base[:, 1])
    assert np.allclose(cf[:, 2:], np.stack([length, pos], 1) + noise)
    eff = bench._counterfactual(w, base, 2, 0.2)  # do(effect): the causes and the other effect stay
    assert np.allclose(eff[:, [0, 1, 3]], base[:, [0, 1, 3]]) and np.allclose(eff[:, 2], 0.2)


def test_smoke_run_writes_every_row(tmp_path, capsys):
    report = _bench().main(["--smoke", "--out", str(tmp_path)])
    assert set(report["rows"]) == {"causal_vae", "beta_vae", "beta_tcvae"}
    causal = report["rows"]["causal_vae"]
    assert np.array(causal["adjacency"]).shape == (4, 4) and 0 <= causal["shd"] <= 12
    for row in report["rows"].values():
        iv = row["interventions"]
        assert set(iv) == {"theta", "light", "shadow_length", "shadow_position", "mean"}
        assert all(0.0 <= v <= 1.0 for v in iv.values())
    assert json.loads((tmp_path / "causal_pendulum.json").read_text())["true_graph"][0] == [0, 0, 1, 1]
    assert "| causal_vae |" in capsys.readouterr().out
