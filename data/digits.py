"""Handwritten digits (UCI optdigits test set, 1,797 images) from scikit-learn's bundled copy."""

from __future__ import annotations

import numpy as np


def load() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 8, 8)`` as float, white ink on black in 0..16 (pixels per 4×4 block), and labels.

    The data ships inside scikit-learn, so nothing is fetched at run time.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)
