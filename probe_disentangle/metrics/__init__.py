"""Disentanglement metrics: codes against true factors (supervised) and codes alone (unsupervised).

Pure functions of arrays returning dicts, with disentanglement_lib's definitions, defaults and
result keys (Locatello et al. 2019). ``evaluate`` runs the array-based suite in one call;
``format_table`` prints its results.
Metrics with independent classifier fits (SAP, DCI, explicitness) run them in ``n_jobs``
threads, default ``N_JOBS`` (one per core); their values do not depend on ``n_jobs``.
"""

from ._utils import N_JOBS
from .report import METRICS, evaluate, format_table
from .supervised import (
    WorldLike,
    beta_vae_score,
    cluster_accuracy,
    dci,
    dci_scores_from_importance,
    factor_vae_score,
    irs,
    linear_decodability,
    mig,
    modularity_explicitness,
    posterior_mig,
    sap,
)
from .udr import udr
from .unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    mutual_info_score,
    unsupervised,
)

__all__ = [
    "METRICS",
    "N_JOBS",
    "WorldLike",
    "beta_vae_score",
    "cluster_accuracy",
    "dci",
    "dci_scores_from_importance",
    "evaluate",
    "factor_vae_score",
    "format_table",
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "irs",
    "linear_decodability",
    "mig",
    "modularity_explicitness",
    "posterior_mig",
    "mutual_info_score",
    "sap",
    "udr",
    "unsupervised",
]
