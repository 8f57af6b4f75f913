"""Model files of the mixtures, and ``load`` / ``save`` for every model.

Model files (format_version 1)
------------------------------
A model is one HDF5 file.  Root attributes:

==================  ==========================================================
``format``          ``"fastvi-model"``
``format_version``  ``1``; a reader refuses files with a newer version
``fastvi_version``  the ``fastvi.__version__`` that wrote the file
``class``           ``"GaussianMixture"`` or ``"BayesianGaussianMixture"`` (the
                    class registered under that name by
                    ``fastvi.mixture.persistence``: ``fastvi.io.registry``)
``params``          JSON object of the constructor arguments (read from the
                    signature of ``__init__``).  Array-valued arguments that are
                    set (``means_init``, ``mean_prior``, ...) are stored as
                    datasets ``/param_arrays/<name>`` instead, and unset
                    ``*_init`` arrays are left out; a ``random_state`` that is
                    not an int or None is stored as null; ``backend`` is left
                    out (a loaded model runs on the local backend).
==================  ==========================================================

Datasets at the root, float64 unless said otherwise, with scikit-learn's shapes
(``covariances_`` is (K, D, D), (D, D), (K, D) or (K,) by ``covariance_type``):

* both classes: ``weights_`` (K,), ``means_`` (K, D), ``covariances_``,
  ``precisions_cholesky_`` (like ``covariances_``), and scalars ``converged_`` (bool),
  ``n_iter_`` (int64), ``lower_bound_``, ``n_features_in_`` (int64); and, for a model
  fitted on a DataFrame (with string column names), ``feature_names_in_`` (D,) UTF-8
  strings (optional: files without it load without names, and a reader that does not
  know it ignores it, so the format version stays 1);
* ``BayesianGaussianMixture`` also: ``mean_precision_`` (K,), ``degrees_of_freedom_``
  (K,), ``weight_concentration_`` (a (K,) dataset for a Dirichlet distribution, or a
  group holding datasets ``0`` and ``1``, the two (K,) Beta parameters of the
  stick-breaking weights, for a Dirichlet process), and the prior actually used:
  ``weight_concentration_prior_``, ``mean_precision_prior_``,
  ``degrees_of_freedom_prior_`` (scalars), ``mean_prior_`` (D,), ``covariance_prior_``
  ((D, D), (D,) or a scalar).

Every array is stored bit for bit, so a loaded model predicts and scores exactly as the
saved one did.  This module knows the format, not the classes: it asks
``fastvi.io.registry`` for the class of a ``class`` attribute, and a
``BayesianGaussianMixture``'s registered ``restore`` hook rebuilds its private state
from the attributes read here.  Files are written to a temporary name in the target directory and renamed
into place, so a reader never sees half a file.
"""
import inspect
import json
import numbers
import os
import warnings

import h5py
import numpy as np

from . import registry
from .names import read_feature_names, write_feature_names
from ..data.atomic import atomic_h5
from ..data.files import open_h5

FORMAT = "fastvi-model"
FORMAT_VERSION = 1
# the values of the ``class`` attribute this format defines (the classes behind them are
# registered by their package: ``fastvi.io.registry``)
CLASS_NAMES = ("GaussianMixture", "BayesianGaussianMixture")

_COMMON_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
_SCALARS = {"converged_": bool, "n_iter_": int, "lower_bound_": float,
            "n_features_in_": int}
_BAYES_ARRAYS = ("mean_precision_", "degrees_of_freedom_", "mean_prior_",
                 "covariance_prior_")
_BAYES_FLOATS = ("weight_concentration_prior_", "mean_precision_prior_",
                 "degrees_of_freedom_prior_")


# ----------------------------------------------------------------------------- models

def _estimator_classes():
    """The mixture classes of this format, by name, as their package registered them
    (importing ``fastvi.mixture`` first, through the registry's provider: Numba, which
    ``fastvi info`` never needs)."""
    return {name: entry.cls for name, entry in registry.model_entries(FORMAT).items()}


def _json_value(value):
    """A JSON-able form of a scalar constructor argument, or raise TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (type, np.dtype)):
        return np.dtype(value).name              # dtype=np.float32 -> "float32"
    raise TypeError(type(value).__name__)


def get_params(estimator):
    """Constructor arguments of ``estimator``, from the signature of its ``__init__``.

    Returns
    -------
    params : dict
        JSON-able values by name (arrays, and ``*_init`` arguments that are None,
        excluded).
    arrays : dict
        Array-valued arguments that are set (None ones are left out).
    """
    params, arrays = {}, {}
    signature = inspect.signature(type(estimator).__init__)
    for name, parameter in signature.parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL,
                                                parameter.VAR_KEYWORD):
            continue
        if name == "backend":
            continue            # where a fit ran, not what it found: a loaded model is local
        value = getattr(estimator, name, parameter.default)
        if value is None and name.endswith("_init"):
            continue            # unset initial arrays: the constructor's default restores them
        if name == "moves" and value is not None:
            params[name] = [str(move) for move in ((value,) if isinstance(value, str)
                                                   else value)]
            continue
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays[name] = np.asarray(value)
            continue
        try:
            params[name] = _json_value(value)
        except TypeError:
            # A Generator as random_state cannot be stored; it only matters for refitting.
            params[name] = None
    return params, arrays


def _check_fitted(estimator):
    if not hasattr(estimator, "means_"):
        raise ValueError(f"cannot save an unfitted {type(estimator).__name__}; call fit first")


def save_model(path, estimator, attrs=None):
    """Write a fitted estimator to an HDF5 model file (schema in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The model file; replaced atomically if it exists.
    estimator : GaussianMixture or BayesianGaussianMixture
        A fitted estimator.
    attrs : dict, optional
        More root attributes: what wrote the file (``fastvi demo`` marks its model so that
        a later demo may replace it, and no other file).
    """
    from .. import __version__
    name = type(estimator).__name__
    if registry.model_entry(estimator)[0] != FORMAT:
        raise TypeError(f"save_model takes a fastvi GaussianMixture or "
                        f"BayesianGaussianMixture, got {name}")
    _check_fitted(estimator)
    params, arrays = get_params(estimator)
    with atomic_h5(path, "the model") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["fastvi_version"] = __version__
        f.attrs["class"] = name
        f.attrs["params"] = json.dumps(params, sort_keys=True)
        f.attrs.update(attrs or {})
        for key, value in arrays.items():
            f.create_dataset(f"param_arrays/{key}", data=value)
        for key in _COMMON_FITTED:
            f.create_dataset(key, data=np.asarray(getattr(estimator, key)))
        for key, kind in _SCALARS.items():
            f.create_dataset(key, data=kind(getattr(estimator, key)))
        write_feature_names(f, estimator)
        if name == "BayesianGaussianMixture":
            _save_bayes(f, estimator)


def _save_bayes(f, estimator):
    concentration = estimator.weight_concentration_
    if isinstance(concentration, tuple):
        group = f.create_group("weight_concentration_")
        for i, part in enumerate(concentration):
            group.create_dataset(str(i), data=np.asarray(part))
    else:
        f.create_dataset("weight_concentration_", data=np.asarray(concentration))
    for key in _BAYES_ARRAYS:
        f.create_dataset(key, data=np.asarray(getattr(estimator, key)))
    for key in _BAYES_FLOATS:
        f.create_dataset(key, data=float(getattr(estimator, key)))


def _attr_str(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_header(f, path):
    """Check the root attributes of an open model file; return (class name, params).

    Raises
    ------
    ValueError
        Not a fastvi model file, a newer format version, or an unknown class.
    """
    if _attr_str(f.attrs.get("format", "")) != FORMAT:
        raise ValueError(f"{path!r} is not a fastvi model file (no format={FORMAT!r} "
                         "attribute)")
    version = f.attrs.get("format_version")
    if not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"{path!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has format_version {int(version)}, written by fastvi "
                         f"{_attr_str(f.attrs.get('fastvi_version', '?'))}; this fastvi "
                         f"reads format_version <= {FORMAT_VERSION}: upgrade fastvi")
    name = _attr_str(f.attrs.get("class", ""))
    if name not in CLASS_NAMES:
        raise ValueError(f"{path!r} holds an unknown model class {name!r}")
    try:
        params = json.loads(_attr_str(f.attrs["params"]))
    except (KeyError, ValueError):
        raise ValueError(f"{path!r} has a missing or invalid 'params' attribute") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path!r} has an invalid 'params' attribute (not a JSON object)")
    return name, params


def _read(f, key, path):
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise ValueError(f"model file {path!r}: lacks the dataset {key!r}")
    try:
        return f[key][()]
    except OSError as exc:
        raise OSError(f"model file {path!r}: cannot read {key}: {exc}") from None


def _read_scalar(f, key, path, kind):
    value = np.asarray(_read(f, key, path))
    if value.shape != () or value.dtype.kind not in "biuf":
        raise ValueError(f"model file {path!r}: {key} must be a number, got shape "
                         f"{value.shape} of {value.dtype}")
    return kind(value)


class _ModelChecker:
    """Checks of the arrays of a model file against the parameters it stores, so that a
    corrupt or hand-edited file is refused when it is loaded, naming the file and the
    dataset, rather than predicting NaN or another width's labels."""

    def __init__(self, path, n_components, n_features, covariance_type, live_at_most=False):
        self.path = path
        self.K, self.D = n_components, n_features
        self.covariance_type = covariance_type
        self.live_at_most = live_at_most

    def _fail(self, message):
        raise ValueError(f"model file {self.path!r}: {message}")

    def covariance_shape(self):
        K, D = self.K, self.D
        return {"full": (K, D, D), "tied": (D, D), "diag": (K, D),
                "spherical": (K,)}[self.covariance_type]

    def array(self, key, value, shape, positive=False):
        """A finite floating array of ``shape`` (all > 0 if ``positive``)."""
        value = np.asarray(value)
        if value.dtype.kind != "f":
            self._fail(f"{key} holds {value.dtype} values, expected floating point")
        if value.shape != shape:
            self._fail(f"{key} has shape {value.shape}, expected {shape} (n_components="
                       f"{self.K}, n_features_in_={self.D}, covariance_type="
                       f"{self.covariance_type!r})")
        if not np.isfinite(value).all():
            self._fail(f"{key} contains NaN or infinity")
        if positive and not (value > 0).all():
            self._fail(f"{key} has values <= 0, expected positive ones")
        return value

    def common(self, fitted):
        if self.live_at_most:
            # merge moves: the live components, between 1 and n_components of them
            live = np.shape(fitted["weights_"])
            if len(live) == 1 and 1 <= live[0] <= self.K:
                self.K = live[0]
        weights = self.array("weights_", fitted["weights_"], (self.K,))
        # float32 models store float32 weights: their sum is 1 to about 1e-7 per term.
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-4:
            self._fail(f"weights_ must be >= 0 and sum to 1, got sum "
                       f"{float(weights.sum())!r} and minimum {float(weights.min())!r}")
        self.array("means_", fitted["means_"], (self.K, self.D))
        shape = self.covariance_shape()
        self.array("covariances_", fitted["covariances_"], shape)
        self.array("precisions_cholesky_", fitted["precisions_cholesky_"], shape)


def _model_checker(path, params, n_features):
    """A ``_ModelChecker`` for the stored parameters, which are checked first: a corrupt
    ``covariance_type`` or ``n_components`` is the file's fault, not the data's."""
    covariance_type = params.get("covariance_type", "full")
    if covariance_type not in ("full", "tied", "diag", "spherical"):
        raise ValueError(f"model file {path!r}: covariance_type {covariance_type!r} is not "
                         "one of 'full', 'tied', 'diag', 'spherical' (its params attribute "
                         "is corrupt)")
    n_components = params.get("n_components", 1)
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"model file {path!r}: n_components {n_components!r} is not an "
                         "integer >= 1 (its params attribute is corrupt)")
    if n_features < 1:
        raise ValueError(f"model file {path!r}: n_features_in_ is {n_features}, expected "
                         "an integer >= 1")
    return _ModelChecker(path, n_components, n_features, covariance_type,
                         live_at_most=bool(params.get("moves")))


def load_model(path):
    """Read an estimator written by ``save_model``.

    Every array is checked against the stored parameters (``n_components``,
    ``n_features_in_``, ``covariance_type``): its shape, a floating dtype, finite values,
    weights that are >= 0 and sum to 1, positive Bayesian counts.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        Fitted, with the same parameters bit for bit: ``predict``, ``score_samples`` and
        (Bayesian) ``elbo`` give the results of the saved estimator.

    Raises
    ------
    ValueError
        Not a fastvi model file, a newer format, or a corrupt one: the message names the
        file and the dataset, and what was expected (``model file 'm.h5': means_ has
        shape (3, 5), expected (4, 2) ...``).
    """
    path = os.fspath(path)
    with open_h5(path, what="model") as f:
        name, params = read_header(f, path)
        entry = registry.model_entries(FORMAT).get(name)
        if entry is None:       # a name of the format that no package registered
            raise ValueError(f"{path!r} holds an unknown model class {name!r}")
        cls = entry.cls
        fitted = {key: np.asarray(_read(f, key, path)) for key in _COMMON_FITTED}
        for key, kind in _SCALARS.items():
            fitted[key] = _read_scalar(f, key, path, kind)
        checker = _model_checker(path, params, fitted["n_features_in_"])
        checker.common(fitted)
        names = read_feature_names(f, path, fitted["n_features_in_"])
        if "param_arrays" in f:
            params.update({key: f["param_arrays"][key][()] for key in f["param_arrays"]})
        accepted = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            # A model from a later 1.x fastvi with new options still loads, without them.
            warnings.warn(f"{path!r}: ignoring unknown parameters {unknown}", stacklevel=2)
        try:
            estimator = cls(**{k: v for k, v in params.items() if k in accepted})
        except TypeError as exc:
            raise ValueError(f"model file {path!r}: invalid params attribute ({exc})") from None
        if name == "BayesianGaussianMixture":
            _load_bayes(f, path, estimator, fitted, checker, entry.hooks["restore"])
        else:
            for key, value in fitted.items():
                setattr(estimator, key, value)
        if names is not None:
            estimator.feature_names_in_ = names
    return estimator


def _load_bayes(f, path, estimator, fitted, checker, restore):
    """Read and check a ``BayesianGaussianMixture``'s own datasets into ``estimator``;
    ``restore(estimator)`` (its package's hook) then rebuilds the prior and posterior it
    predicts with from these attributes."""
    K, D = checker.K, checker.D
    kind = estimator.weight_concentration_prior_type
    stick_breaking = isinstance(f.get("weight_concentration_"), h5py.Group)
    if kind not in ("dirichlet_process", "dirichlet_distribution") or (
            stick_breaking != (kind == "dirichlet_process")):
        raise ValueError(f"model file {path!r}: weight_concentration_prior_type {kind!r} "
                         f"does not match its weight_concentration_ (a "
                         f"{'group' if stick_breaking else 'dataset'})")
    if stick_breaking:
        group = f["weight_concentration_"]
        concentration = tuple(checker.array(f"weight_concentration_/{i}",
                                            _read(group, str(i), path), (K,), positive=True)
                              for i in range(2))
    else:
        concentration = checker.array("weight_concentration_",
                                      _read(f, "weight_concentration_", path), (K,),
                                      positive=True)
    prior_shape = {"full": (D, D), "tied": (D, D), "diag": (D,),
                   "spherical": ()}[checker.covariance_type]
    shapes = {"mean_precision_": (K,), "degrees_of_freedom_": (K,), "mean_prior_": (D,),
              "covariance_prior_": prior_shape}
    arrays = {key: checker.array(key, _read(f, key, path), shapes[key],
                                 positive=key in ("mean_precision_", "degrees_of_freedom_"))
              for key in _BAYES_ARRAYS}
    floats = {key: float(checker.array(key, _read(f, key, path), (), positive=True))
              for key in _BAYES_FLOATS}
    for key, value in {**fitted, **arrays, **floats}.items():
        setattr(estimator, key, value)
    estimator.weight_concentration_ = concentration
    restore(estimator)


def describe_model(path):
    """What ``fastvi info`` shows of a mixture model file, read from its attributes and
    datasets without building the estimator (nor importing it: no Numba, no
    scikit-learn).  The header and the common arrays are checked as ``load_model`` checks
    them, so a corrupt file is refused with the same message.

    Returns
    -------
    dict
        ``format_version``, ``fastvi_version``, ``class``, ``params`` (the stored JSON
        object), ``param_arrays`` (the names of the stored array parameters), and the
        fitted values ``weights_``, ``means_``, ``covariances_``,
        ``precisions_cholesky_``, ``converged_``, ``n_iter_``, ``lower_bound_``,
        ``n_features_in_``.
    """
    path = os.fspath(path)
    with open_h5(path, what="model") as f:
        name, params = read_header(f, path)
        fitted = {key: np.asarray(_read(f, key, path)) for key in _COMMON_FITTED}
        for key, kind in _SCALARS.items():
            fitted[key] = _read_scalar(f, key, path, kind)
        _model_checker(path, params, fitted["n_features_in_"]).common(fitted)
        arrays = f.get("param_arrays")
        return {"format_version": f.attrs["format_version"],
                "fastvi_version": f.attrs.get("fastvi_version", "?"), "class": name,
                "params": params, "param_arrays": sorted(arrays) if arrays else [],
                **fitted}


def is_model_file(path):
    """Whether ``path`` is an HDF5 file with ``format="fastvi-model"`` (no other checks)."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return _attr_str(f.attrs.get("format", "")) == FORMAT
    except OSError:
        return False


# ----------------------------------------------------------------------------- any model

def save(model, path):
    """Write a fitted fastvi model to ``path`` (atomically), whatever its class.

    Parameters
    ----------
    model : GaussianMixture, BayesianGaussianMixture, VAE or PPCA
        A fitted estimator.  Mixtures get the ``fastvi-model`` schema above, the
        amortized models the ``fastvi-amortized`` one (``fastvi.io.amortized``); a model
        fitted on a DataFrame keeps its ``feature_names_in_``.
    path : str or os.PathLike
        The model file; replaced atomically if it exists.

    Raises
    ------
    TypeError
        ``model`` is not a fastvi model.  A scikit-learn ``Pipeline`` is refused too, not
        searched for a fastvi step: a model file holds one estimator, and the other steps
        (scalers, ...) would be lost without a word.  A Pipeline is saved with
        ``joblib.dump`` or ``pickle`` (fastvi's estimators pickle), and its last step
        alone with ``pipe[-1].save(path)``.

    See Also
    --------
    load : reads any file this writes.
    """
    from .amortized import FORMAT as AMORTIZED, save_amortized
    format, _ = registry.model_entry(model)
    if format == FORMAT:
        save_model(path, model)
        return
    if format == AMORTIZED:
        save_amortized(model, os.fspath(path))
        return
    name = type(model).__name__
    if name == "Pipeline" and hasattr(model, "steps"):
        raise TypeError("fastvi.io.save takes a fastvi model, not a scikit-learn Pipeline: "
                        "save a Pipeline with joblib.dump or pickle (fastvi's estimators "
                        "pickle), or its fastvi step alone with pipe[-1].save(path)")
    raise TypeError(f"fastvi.io.save takes a GaussianMixture, BayesianGaussianMixture, "
                    f"VAE or PPCA, got {name}")


def load(path):
    """Read any fastvi model file, choosing the reader by its ``format`` attribute.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``save`` (or ``fastvi fit``, ``fastvi amortized fit``).

    Returns
    -------
    GaussianMixture, BayesianGaussianMixture, VAE or PPCA
        The fitted estimator, predicting as the saved one did.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a fastvi model file (its message names ``path``).
    """
    path = os.fspath(path)
    with open_h5(path, what="model") as f:
        kind = _attr_str(f.attrs.get("format", ""))
    if kind == FORMAT:
        return load_model(path)
    from .amortized import FORMAT as AMORTIZED, load_amortized
    if kind == AMORTIZED:
        return load_amortized(path)
    raise ValueError(f"{path!r} is not a fastvi model file (format attribute {kind!r}, "
                     f"expected {FORMAT!r} or {AMORTIZED!r})")
