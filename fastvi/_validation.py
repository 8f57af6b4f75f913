"""Input checks with errors that say what was wrong and where.

In-memory input goes through scikit-learn's ``validate_data`` (object arrays of numbers are
converted, sparse matrices, complex and 1-D input refused, pandas column names recorded in
``feature_names_in_`` and checked), then becomes a chunk source.  h5py datasets and chunk
sources are never read whole: their shape and dtype are checked by the source, and the
feature count here, in scikit-learn's words.  NaN and inf are found chunk by chunk as the
rows are read (the error names the first bad row), not by a scan of the whole array.
"""
import numbers

import numpy as np
from sklearn.utils.validation import _check_sample_weight, validate_data

from .sources import DEFAULT_CHUNK_ROWS, ChunkSource, as_source

FLOAT_DTYPES = (np.float64, np.float32)


def check_random_state(seed):
    """A ``numpy.random.Generator`` from None, an int, a RandomState or a Generator.

    Kept instead of ``sklearn.utils.check_random_state``, which returns the legacy
    ``RandomState``: fastvi's streams (minibatch orders, the truncated search's seeds, the
    networks' draws) use the Generator API and are pickled with checkpoints as Generators.
    Everything scikit-learn accepts is accepted here too.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(2 ** 31))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator, "
                     f"got {seed!r}")


def _is_streamed(X):
    if isinstance(X, ChunkSource):
        return True
    try:
        import h5py
    except ImportError:     # pragma: no cover - h5py is a dependency
        return False
    return isinstance(X, h5py.Dataset)


def validate_rows(estimator, X, *, reset, dtype=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """The rows ``estimator`` is fitted to (``reset``) or applied on, as a chunk source.

    Sets ``n_features_in_`` (and, for a DataFrame, ``feature_names_in_``) when ``reset``;
    otherwise checks the feature count (and names) against them.  ``dtype`` None keeps
    float32 as float32 and makes everything else float64.
    """
    name = type(estimator).__name__
    if not _is_streamed(X):
        X = validate_data(estimator, X, reset=reset, ensure_all_finite=False,
                          dtype=list(FLOAT_DTYPES) if dtype is None else dtype)
        return as_source(X, chunk_rows, dtype)
    source = as_source(X, chunk_rows, dtype)
    if reset:
        estimator.n_features_in_ = source.n_features
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif source.n_features != estimator.n_features_in_:
        raise ValueError(f"X ({source.label}) has {source.n_features} features, but {name} "
                         f"is expecting {estimator.n_features_in_} features as input.")
    return source


def check_data(X, dtype=None, n_features=None, estimator=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """The rows of ``X`` as a chunk source, without an estimator to record them on (the
    command line's data, a model's held-out rows); ``n_features`` is checked if given."""
    source = as_source(X, chunk_rows, dtype)
    if n_features is not None and source.n_features != n_features:
        raise ValueError(f"X ({source.label}) has {source.n_features} features, but "
                         f"{estimator} is expecting {n_features} features as input.")
    return source


def check_sample_weight(sample_weight, n_rows):
    """Row weights as float64 (None stays None), with scikit-learn's checks: shape,
    finite, non-negative, not all zero."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, np.empty((n_rows, 0)), dtype=np.float64,
                                ensure_non_negative=True)
