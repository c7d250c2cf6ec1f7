"""benchmarks/capacity_lm.py: the LM half of the capacity study, tiny and end to end, resumed."""

import json

import numpy as np
import pytest
from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("capacity_lm")


def test_smoke_study_trains_a_host_fits_heads_steers_and_resumes(tmp_path):
    bench = _bench()
    args = ["--smoke", "--out", str(tmp_path / "out"), "--host-dir", str(tmp_path / "hosts")]
    first = bench.main([*args, "--max-cells", "2"])
    assert first["new_cells"] == 2
    host = first["hosts"]["host/K2"]
    assert host["loss_floor"] == round(2 * __import__("math").log(4) / 6, 4)  # the plan's entropy per token
    assert 0 <= host["follows_plan"] <= 1 and (tmp_path / "hosts").is_dir()
    second = bench.main(args)
    assert second["new_cells"] == 1  # diff_means only: the two head cells are read back
    cells = json.loads((tmp_path / "out" / "capacity_lm.json").read_text())["cells"]
    assert set(cells) == {"prefix_tcvae/K2/s0", "prefix_vae/K2/s0", "diff_means/K2"}
    head = cells["prefix_tcvae/K2/s0"]
    assert head["latents"] == 2 * 2 + 4 and set(head["steering"]) == {"f0", "f1"}
    assert head["at_floor"] == len(bench.at_floor(head["steering"]))
    assert set(head["decodable"]) == {"f0", "f1"} and all(0 <= a <= 1 for a in head["decodable"].values())
    assert "| prefix_tcvae |" in (tmp_path / "out" / "capacity_lm.md").read_text()
    from PIL import Image

    assert Image.open(tmp_path / "out" / "capacity_lm.png").size == (640, 420)
    # the sentence's positions weighted 1, the others 0.5: the setting reaches the cell and the table
    weighted = ["--recon-positions", "sentence", "--other-positions-weight", "0.5", "--methods", "prefix_tcvae"]
    third = bench.main([*args[:1], "--out", str(tmp_path / "w"), *args[3:], *weighted])
    assert third["new_cells"] == 1 and third["cells"]["prefix_tcvae/K2/s0"]["other_positions_weight"] == 0.5
    assert "sentence positions (others weighted 0.5)" in (tmp_path / "w" / "capacity_lm.md").read_text()


def test_decodable_tells_an_encoded_factor_from_an_absent_one():
    import numpy as np

    rng = np.random.default_rng(0)
    f = rng.integers(0, 4, (800, 3))
    # f0 written on one code dimension (with noise), f1 spread over two, f2 nowhere
    z = np.c_[f[:, 0] + 0.05 * rng.normal(size=800), f[:, 1] + rng.normal(size=800) * 0.1, rng.normal(size=800)]
    z[:, 1], z[:, 2] = z[:, 1] + z[:, 2], z[:, 1] - z[:, 2]
    acc = _bench().decodable(z, f, ["f0", "f1", "f2"], seed=0)
    assert acc["f0"] == 1.0 and acc["f1"] >= 0.95 and acc["f2"] <= 0.35  # chance is 0.25


def test_sentence_positions_are_those_that_predict_each_factors_word():
    from probe_disentangle.worlds.k_factors import KFactorTokens

    bench = _bench()
    k = 5
    world = KFactorTokens(k, 4, plan=True)
    f = np.array([[0, 1, 2, 3, 0]])
    tokens = np.asarray(world.render(f))[0]
    words = [world.vocab[t] for t in tokens]
    pos = bench.recon_positions(k, "sentence")
    assert len(pos) == k
    assert [words[p + 1] for p in pos] == [f"f{j}={f[0, j]}" for j in range(k)]  # the next token is word j
    assert bench.recon_positions(k, "all") is None
    with pytest.raises(SystemExit, match="recon-positions"):
        bench.recon_positions(k, "plan")


def test_a_cell_from_before_a_setting_existed_ran_at_its_default():
    bench = _bench()
    setting = {"head_steps": 3000, "recon_weight": 1.0, "recon_positions": "all", "other_positions_weight": 0.0}
    assert bench.same_setting({"head_steps": 3000}, setting)
    assert not bench.same_setting({"head_steps": 3000}, {**setting, "other_positions_weight": 0.25})
    assert set(setting) <= set(bench.SETTING)
    assert not bench.same_setting({"head_steps": 3000}, {**setting, "recon_positions": "sentence"})
    assert not bench.same_setting({"head_steps": 3000}, {**setting, "recon_weight": 4.0})
    assert not bench.same_setting({"head_steps": 6000, "recon_weight": 1.0}, setting)


def test_floor_and_summary_known_answers():
    bench = _bench()
    steer = {"f0": [0.95, 0.0, 1.0], "f1": [0.95, 0.06, 1.0], "f2": [0.89, 0.0, 1.0], "f3": [0.9, 0.05, 0.9]}
    assert bench.at_floor(steer) == ["f0", "f3"]
    cells = {
        bench.cell_key("prefix_tcvae", 4, s): {
            "method": "prefix_tcvae", "K": 4, "at_floor": a, "onset_purity": p, "parse_rate": 1.0,
            "mig_knobs": 0.5, "mig_raw": 0.25, "dci_knobs": 0.5, "seed": s,
        }
        for s, (a, p) in enumerate([(1, 0.9), (4, 0.99), (2, 0.5)])
    }  # fmt: skip
    s = bench.summarise(cells, ["prefix_tcvae", "diff_means"], [4])
    row = s["prefix_tcvae"][4]
    assert row["at_floor"] == {"mean": 7 / 3, "min": 1, "max": 4}
    assert row["picked"] == {"seed": 1, "at_floor": 4, "onset_purity": 0.99}  # the purest restart, no labels
    assert s["diff_means"][4] is None


@pytest.mark.slow
def test_two_factor_host_follows_its_plan_and_a_prefix_head_steers_both_factors(tmp_path):
    """The study's K = 2 cells at the full setting (~3 minutes): the host writes what its plan
    says, difference of means steers both factors, and a β-TCVAE prefix head fitted without
    labels does too for one of two seeds (the study's three seeds: 2, 2 and 0 of 2)."""
    bench = _bench()
    out = bench.main(
        ["--ks", "2", "--seeds", "0,1", "--methods", "prefix_tcvae,diff_means", "--out", str(tmp_path / "o"),
         "--host-dir", str(tmp_path / "h")]
    )  # fmt: skip
    assert out["hosts"]["host/K2"]["follows_plan"] >= 0.95
    cells = out["cells"]
    assert cells["diff_means/K2"]["at_floor"] == 2
    assert max(cells[f"prefix_tcvae/K2/s{s}"]["at_floor"] for s in (0, 1)) == 2
