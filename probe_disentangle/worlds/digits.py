"""scikit-learn's bundled 8×8 handwritten digits, as images in [0, 1] with their classes.

The 1,797 digits ship inside scikit-learn (``sklearn.datasets.load_digits`` reads a file in the
package), so nothing downloads. They are the InfoGAN world: the one known factor is the class,
and a 10-way categorical code should find it. Not a :class:`World`: the data are a fixed sample,
not a generator over a factor grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def digit_images() -> tuple[Tensor, np.ndarray]:
    """The 1,797 digits as float32 ``[N, 1, 8, 8]`` in [0, 1] (the raw 0–16 grey levels / 16) and their classes ``[N]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0, np.asarray(d.target, dtype=np.int64)
