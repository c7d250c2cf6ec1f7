"""Unsupervised scores: properties of the codes alone, no true factors needed.

As disentanglement_lib's ``unsupervised_metrics`` (Locatello et al. 2019, Sec. 5 and App. C):
statistics of the Gaussian with the codes' covariance, and the average discrete mutual
information between pairs of codes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._utils import NUM_BINS, check_codes, histogram_discretize, mutual_info_matrix

__all__ = ["gaussian_total_correlation", "gaussian_wasserstein_correlation", "mutual_info_score", "unsupervised"]


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation of N(0, cov): KL to the product of its marginals (Watanabe 1960).

    Closed form 0.5 * (sum_i log cov_ii - log det cov) = -0.5 * log det(corr); 0 iff cov is
    diagonal. As disentanglement_lib's ``gaussian_total_correlation``.
    """
    cov = np.asarray(cov, dtype=np.float64)
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag(cov)).

    For zero-mean Gaussians W2^2 = tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2); with
    B = diag(cov) this is 2 tr(cov) - 2 tr(sqrt(cov * diag(cov)[:, None])), the form used by
    disentanglement_lib's ``gaussian_wasserstein_correlation`` (Locatello et al. 2019, App. C).
    """
    cov = np.asarray(cov, dtype=np.float64)
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2.0 * np.trace(cov) - 2.0 * np.real(np.trace(root)))


def mutual_info_score(codes: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Mean discrete mutual information (nats, ``num_bins``-bin histograms) over ordered pairs of
    distinct codes of ``codes`` [N, k]; 0 for a single code. How much the codes depend on each
    other, with no factors needed (disentanglement_lib's ``mutual_info_score``)."""
    codes = check_codes(codes, "codes")
    k = codes.shape[1]
    disc = histogram_discretize(codes, num_bins)
    mi = mutual_info_matrix(disc, disc)
    np.fill_diagonal(mi, 0.0)
    return float(mi.sum() / (k * k - k)) if k > 1 else 0.0


def unsupervised(codes: np.ndarray, num_bins: int = NUM_BINS, fast: bool = False) -> dict[str, float]:
    """Unsupervised scores of codes [N, k] (Locatello et al. 2019, "Challenging Common Assumptions
    in the Unsupervised Learning of Disentangled Representations").

    - ``gaussian_total_correlation``: TC of a Gaussian with the codes' covariance (``np.cov``, ddof 1).
    - ``gaussian_wasserstein_correlation``: W2^2 between that Gaussian and its diagonal version;
      ``..._norm`` divides it by the total variance (trace).
    - ``mutual_info_score``: mean discrete mutual information (20-bin histograms) over ordered
      pairs of distinct codes; 0 for a single code (the reference divides 0 by 0).

    As disentanglement_lib's ``unsupervised_metrics``; a constant code gives an infinite or NaN
    total correlation there and here. ``fast`` changes nothing (already vectorised).
    """
    codes = check_codes(codes, "codes")
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = gaussian_total_correlation(cov)
        wc = gaussian_wasserstein_correlation(cov)
        wc_norm = wc / float(np.trace(cov))
    return {
        "gaussian_total_correlation": tc,
        "gaussian_wasserstein_correlation": wc,
        "gaussian_wasserstein_correlation_norm": float(wc_norm),
        "mutual_info_score": mutual_info_score(codes, num_bins),
    }
