"""Input checks with errors that say what was wrong and where."""
import numbers

import numpy as np

from .sources import DEFAULT_CHUNK_ROWS, as_source


def check_random_state(seed):
    """A ``numpy.random.Generator`` from None, an int, or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(2 ** 31))
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {seed!r}")


def check_data(X, dtype=None, n_features=None, estimator=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """The rows a model is fitted to or applied on, as a chunk source.

    An ndarray (or anything ``np.asarray`` takes), an h5py dataset or a chunk source.
    ``dtype`` None keeps float32 as float32 and makes everything else float64; chunks are
    checked for NaN and inf as they are read, and the error names the row.
    """
    source = as_source(X, chunk_rows, dtype)
    if n_features is not None and source.n_features != n_features:
        raise ValueError(f"{source.label} has {source.n_features} features, but {estimator} "
                         f"was fitted with {n_features} features")
    return source


def check_sample_weight(sample_weight, n_rows):
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not weights.sum() > 0:
        raise ValueError("sample_weight must not be all zero")
    return weights
