"""``feature_names_in_`` in model files: the column names of the DataFrame a model was
fitted on, which scikit-learn's validation compares at ``predict`` (a DataFrame whose
columns differ gets its warning, as with the fitted model).

Both model formats (``fastvi-model``, ``fastvi-amortized``) store them the same way: an
optional dataset ``/feature_names_in_`` of D UTF-8 strings.  A model fitted on an array
has none, nor have files written before the names were kept; both load without names.
"""
import h5py
import numpy as np

KEY = "feature_names_in_"


def write_feature_names(f, model):
    """Store ``model.feature_names_in_`` (if it has them) in the open file ``f``."""
    names = getattr(model, KEY, None)
    if names is None:
        return
    f.create_dataset(KEY, data=[str(name) for name in names], dtype=h5py.string_dtype())


def read_feature_names(f, path, n_features):
    """The feature names stored in the open file ``f`` (None if it has none), as
    scikit-learn holds them: an object array of str.

    Raises
    ------
    ValueError
        Names that are not n_features strings in one row, naming the file.
    """
    if KEY not in f:
        return None
    dataset = f[KEY]
    if (not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1
            or h5py.check_string_dtype(dataset.dtype) is None):
        raise ValueError(f"model file {path!r}: {KEY} is not a one-dimensional dataset of "
                         "strings")
    if dataset.shape != (n_features,):
        raise ValueError(f"model file {path!r}: {KEY} has shape {dataset.shape}, expected "
                         f"({n_features},) (n_features_in_={n_features})")
    try:
        names = dataset.asstr()[()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"model file {path!r}: cannot read {KEY}: {exc}") from None
    return np.asarray(names.tolist(), dtype=object)
