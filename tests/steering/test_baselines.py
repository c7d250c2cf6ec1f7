"""Baseline directions: PCA on vectors wider than tall (a flattened UNet map)."""

import torch

from probe_disentangle.steering import principal_directions


def test_principal_directions_of_wide_vectors_match_the_covariance_eigenvectors():
    """Known answer: with d > n the Gram route gives the covariance's top eigenvectors (up to
    sign), unit length; tall inputs take the covariance route itself."""
    torch.manual_seed(0)
    wide = torch.randn(6, 40) @ torch.diag(torch.linspace(3, 0.1, 40))
    got = principal_directions(wide, 3)
    x = (wide - wide.mean(0)).double()
    evals, evecs = torch.linalg.eigh(x.T @ x / 5)
    want = evecs[:, evals.argsort(descending=True)[:3]].T.float()
    assert got.shape == (3, 40)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3))
    torch.testing.assert_close((got * want).sum(1).abs(), torch.ones(3), atol=1e-5, rtol=0)
    tall = torch.randn(50, 4) * torch.tensor([4.0, 1.0, 0.5, 2.0])
    first = principal_directions(tall, 1)[0]
    assert int(first.abs().argmax()) == 0  # the widest axis
