"""benchmarks/capacity.py: a tiny study end to end, resumed (finished cells are not refitted)."""

import json

from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("capacity")


def test_smoke_study_writes_cells_table_and_plot_and_resumes(tmp_path, capsys):
    bench = _bench()
    args = ["--smoke", "--methods", "beta_vae,beta_tcvae", "--out", str(tmp_path)]
    first = bench.main([*args, "--max-cells", "3"])
    assert first["new_cells"] == 3
    second = bench.main(args)
    assert second["new_cells"] == 1  # the 4th cell only: the first three are read back
    cells = json.loads((tmp_path / "capacity.json").read_text())["cells"]
    assert set(cells) == {"beta_vae/K2/s0", "beta_tcvae/K2/s0", "beta_vae/K4/s0", "beta_tcvae/K4/s0"}
    assert cells["beta_vae/K4/s0"]["latents"] == 6 and 0 <= cells["beta_vae/K4/s0"]["mig"] <= 1
    assert second["summary"]["beta_tcvae"][4]["seeds"] == 1
    assert "| beta_vae |" in (tmp_path / "capacity.md").read_text()
    from PIL import Image

    assert Image.open(tmp_path / "capacity.png").size == (640, 420)


def test_summary_spread_known_answer():
    bench = _bench()
    cells = {
        bench.cell_key("beta_vae", 8, s): {"method": "beta_vae", "K": 8, "mig": m, "dci_disentanglement": 0.5}
        for s, m in enumerate([0.2, 0.4, 0.9])
    }
    s = bench.summarise(cells, ["beta_vae", "factor_vae"], [8])
    assert s["beta_vae"][8]["mig"] == {"mean": 0.5, "min": 0.2, "max": 0.9}
    assert s["factor_vae"][8] is None


def test_isa_joint_vae_cell_starts_from_the_independent_subspaces(tmp_path):
    bench = _bench()
    res = bench.main(["--smoke", "--ks", "2", "--methods", bench.ISA_METHOD, "--out", str(tmp_path)])
    cell = res["cells"][bench.cell_key(bench.ISA_METHOD, 2, 0)]
    assert cell["latents"] == 4 and 0 <= cell["mig"] <= 1
    # K = 2 cells of 4 grey levels in an identity host: ISA finds them, the encoder learns its codes
    assert cell["init_code_accuracy"] > 0.9


def test_factor_vae_cells_record_their_discriminator_dtype_and_another_dtype_refits(tmp_path):
    bench = _bench()
    args = ["--smoke", "--methods", "factor_vae", "--out", str(tmp_path)]  # K = 2 and 4
    assert bench.main(args)["new_cells"] == 2
    cell = json.loads((tmp_path / "capacity.json").read_text())["cells"]["factor_vae/K2/s0"]
    assert cell["disc_dtype"] == "bfloat16" and 0 <= cell["mig"] <= 1  # the default: bf16 matmuls
    assert bench.main(args)["new_cells"] == 0
    again = bench.main([*args, "--disc-dtype", "float32"])
    assert again["new_cells"] == 2 and again["cells"]["factor_vae/K2/s0"]["disc_dtype"] == "float32"
    assert "discriminator in float32" in (tmp_path / "capacity.md").read_text()
