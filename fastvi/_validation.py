"""Input checks with errors that say what was wrong and where."""
import numbers

import numpy as np

from ._estep import iter_chunks


def check_random_state(seed):
    """A ``numpy.random.Generator`` from None, an int, or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(2 ** 31))
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {seed!r}")


def _is_dataset(X):
    """Arrays that are read chunk by chunk rather than loaded (h5py datasets, memmaps)."""
    return hasattr(X, "shape") and hasattr(X, "dtype") and not isinstance(X, np.ndarray)


def check_data(X, dtype=None, name="X", n_features=None, estimator=None):
    """Validate the rows a model is fitted to or applied on.

    An ndarray (or anything ``np.asarray`` takes) is converted to a C-contiguous float32 or
    float64 array; an h5py dataset is kept as it is and read in chunks later.  ``dtype``
    None keeps float32 as float32 and makes everything else float64.
    """
    if not _is_dataset(X):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}; "
                         "reshape a single feature with X.reshape(-1, 1)")
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{name} must hold numbers, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {X.shape})")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {estimator} was fitted "
                         f"with {n_features} features")
    target = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64))
    if target not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if isinstance(X, np.ndarray):
        X = np.ascontiguousarray(X, dtype=target)
        _check_finite(X, name, 0)
    else:
        for start, chunk, _ in iter_chunks(X):
            _check_finite(chunk, name, start)
    return X


def _check_finite(chunk, name, first_row):
    finite = np.isfinite(chunk).all(axis=1)
    if not finite.all():
        row = first_row + int(np.argmin(finite))
        raise ValueError(f"{name} contains NaN or infinity (first at row {row})")


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
