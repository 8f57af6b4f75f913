"""Input checks with errors that say what was wrong and where.

In-memory input goes through scikit-learn's ``validate_data`` (object arrays of numbers are
converted, sparse matrices, complex and 1-D input refused, pandas column names recorded in
``feature_names_in_`` and checked), then becomes a chunk source.  h5py datasets and chunk
sources are never read whole: their shape and dtype are checked by the source, and the
feature count here, in scikit-learn's words.  NaN and inf are found chunk by chunk as the
rows are read (the error names the first bad row), not by a scan of the whole array.

scikit-learn is imported inside the two functions that call it: the rest of this module
(parameter checks, ``check_data``) serves commands that build no estimator, such as
``fastvi amortized gap`` on a model file, and its import is most of a second.
"""
import numbers

import numpy as np

from .sources import DEFAULT_CHUNK_ROWS, ChunkSource, as_source, is_dask_array

FLOAT_DTYPES = (np.float64, np.float32)


class InvalidParameterError(ValueError, TypeError):
    """A constructor or method argument of the wrong type or out of range.

    Both a ValueError and a TypeError, as scikit-learn's own ``InvalidParameterError``
    is, so code that catches either (scikit-learn's included) catches it; the message
    names the parameter, what it must be and what it was.
    """


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_integer(name, value, low=None, high=None, allow_none=False):
    """``value`` as an int in [low, high], or InvalidParameterError naming ``name``.

    Booleans are refused: ``n_components=True`` is a slip, not the integer 1.
    """
    if value is None and allow_none:
        return None
    if not _is_integer(value) or (low is not None and value < low) or (
            high is not None and value > high):
        none = " (or None)" if allow_none else ""
        raise InvalidParameterError(f"{name} must be an integer{_interval_text(low, high)}"
                                    f"{none}, got {value!r}")
    return int(value)


def check_real(name, value, low=None, high=None, low_open=False, high_open=False,
               allow_none=False):
    """``value`` as a finite float in the interval, or InvalidParameterError naming it.

    NaN and infinity are always refused: every real parameter of fastvi enters an update
    or a step size, where a non-finite value would turn the fit into NaN silently (or into
    a FloatingPointError far from its cause).
    """
    if value is None and allow_none:
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and np.isfinite(value))
    if ok:
        number = float(value)
        ok = not ((low is not None and (number <= low if low_open else number < low)) or
                  (high is not None and (number >= high if high_open else number > high)))
    if not ok:
        bounds = _interval_text(low, high, low_open, high_open)
        none = " (or None)" if allow_none else ""
        raise InvalidParameterError(f"{name} must be a finite number{bounds}{none}, "
                                    f"got {value!r}")
    return number


def check_bool(name, value):
    """``value`` as a bool (numpy bools too), or InvalidParameterError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_finite_array(name, value):
    """A user-given array parameter (``means_init``, ``mean_prior``, ...) as float64,
    refused with its name when it is not numeric or holds NaN or infinity."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be an array of numbers, got "
                                    f"{type(value).__name__}") from None
    if not np.all(np.isfinite(array)):
        raise InvalidParameterError(f"{name} contains NaN or infinity")
    return array


def _interval_text(low, high, low_open=False, high_open=False):
    """`` >= 1``, `` > 0``, `` in (0.5, 1]``: the words of a range in an error message."""
    if low is not None and high is not None:
        return (f" in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_random_state(seed):
    """A ``numpy.random.Generator`` from None, an int, a RandomState or a Generator.

    Kept instead of ``sklearn.utils.check_random_state``, which returns the legacy
    ``RandomState``: fastvi's streams (minibatch orders, the truncated search's seeds, the
    networks' draws) use the Generator API and are stored in checkpoints as Generator states.
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
    if isinstance(X, ChunkSource) or is_dask_array(X):
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
        from sklearn.utils.validation import validate_data
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
    from sklearn.utils.validation import _check_sample_weight
    return _check_sample_weight(sample_weight, np.empty((n_rows, 0)), dtype=np.float64,
                                ensure_non_negative=True)
