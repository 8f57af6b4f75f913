"""Fixed-seed data sets for the benchmarks, made in one place (as numpy's benchmarks do)."""
import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def mixture_data(n_samples, n_features, n_components, dtype="float64", seed=0):
    """Rows from a mixture of ``n_components`` Gaussians with random full covariances.

    Component means are spread so clusters overlap a little, which is the hard (and
    honest) case for EM: responsibilities are not all 0 or 1.
    """
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((n_components, n_features))
    factors = rng.standard_normal((n_components, n_features, n_features)) / np.sqrt(n_features)
    factors += np.eye(n_features)
    labels = rng.integers(0, n_components, n_samples)
    X = np.empty((n_samples, n_features))
    for k in range(n_components):
        rows = labels == k
        X[rows] = means[k] + rng.standard_normal((rows.sum(), n_features)) @ factors[k].T
    return X.astype(dtype)
