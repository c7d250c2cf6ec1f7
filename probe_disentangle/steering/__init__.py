"""Steering evaluation: set-to-value success / leakage (:mod:`.evaluate`), steerers fitted on
labelled activations (:mod:`.baselines`), and RAVEL-style interchange interventions scored by
Cause / Isolate / Disentangle (:mod:`.interchange`). Every name is re-exported here."""

from .baselines import (
    CodeSteerer,
    align,
    class_mean_differences,
    class_targets,
    diff_means_steerer,
    mutual_information_matrix,
    pca_steerer,
    positional_diff_means_steerer,
    principal_directions,
    probe_steerer,
)
from .evaluate import (
    Steerer,
    evaluate_steering,
    factor_position_activations,
    final_position_activations,
    generate_world,
    hook_tensors,
    parse_all,
    position_activations,
    sample_tokens,
    sequence_activations,
    sequence_vectors,
)

__all__ = [
    "CodeSteerer",
    "Steerer",
    "align",
    "class_mean_differences",
    "class_targets",
    "diff_means_steerer",
    "evaluate_steering",
    "factor_position_activations",
    "final_position_activations",
    "generate_world",
    "hook_tensors",
    "mutual_information_matrix",
    "parse_all",
    "pca_steerer",
    "position_activations",
    "positional_diff_means_steerer",
    "principal_directions",
    "probe_steerer",
    "sample_tokens",
    "sequence_activations",
    "sequence_vectors",
]
