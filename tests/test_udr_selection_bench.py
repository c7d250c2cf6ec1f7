"""benchmarks/udr_selection.py at a tiny size: every model scored, the correlations and picks made."""

import json

from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("udr_selection")


def test_smoke_sweep_scores_every_model(tmp_path, capsys):
    bench = _bench()
    report = bench.main(["--smoke", "--out", str(tmp_path)])
    assert len(report["models"]) == 4 and {m["beta"] for m in report["models"]} == {1.0, 8.0}
    for m in report["models"]:
        assert 0.0 <= m["udr"] <= 1.0 and 0.0 <= m["mig"] <= 1.0 and 0.0 <= m["steer"] <= 1.0
    assert set(report["spearman"]) == set(bench.LABEL_FREE)
    assert all(-1.0 <= c["mig"] <= 1.0 and -1.0 <= c["steer"] <= 1.0 for c in report["spearman"].values())
    assert json.loads((tmp_path / "udr_selection.json").read_text())["picks"]["udr"]["beta"] in (1.0, 8.0)
    assert "| udr |" in capsys.readouterr().out
    assert (tmp_path / "udr_selection.png").stat().st_size > 1000


def test_spearman_known_answers():
    bench = _bench()
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert bench.spearman([1, 1, 1], [1, 2, 3]) == 0.0  # a constant score says nothing


class _OracleHead:
    """encode = the factors an image shows, decode = the rendered factors: steering is exact."""

    def __init__(self, world, mix: bool = False):
        self.world, self.mix = world, mix

    def encode(self, x):
        import torch

        f = torch.as_tensor(self.world.read(x.reshape(len(x), *self.world.observation_shape).numpy())).float()
        return f, torch.zeros_like(f)

    def decode(self, z):
        import numpy as np
        import torch

        f = z.round().clamp(0, 3).long().numpy()
        if self.mix:  # latent 0 also drags factor 1 with it: every edit of factor 0 leaks
            f[:, 1] = f[:, 0]
        return torch.as_tensor(self.world.render(np.asarray(f))).flatten(1)


def test_image_steering_known_answers():
    import numpy as np
    import torch

    from probe_disentangle.worlds.k_factors import KFactorImages

    bench = _bench()
    world = KFactorImages(3, num_values=4, image_size=32)
    f = world.sample_factors(400, np.random.default_rng(0))
    x = torch.as_tensor(world.render(f)).flatten(1)
    exact = bench.image_steering(_OracleHead(world), world, x, f, 0.0, 1.0)
    assert exact == {"steer": 1.0, "steer_success": 1.0, "steer_leakage": 0.0}
    mixed = bench.image_steering(_OracleHead(world, mix=True), world, x, f, 0.0, 1.0)
    assert mixed["steer_success"] < 1.0 and mixed["steer_leakage"] > 0.2 and mixed["steer"] < 0.8
