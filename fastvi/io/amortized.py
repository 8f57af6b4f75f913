"""Saving and loading the amortized models (``VAE``, ``PPCA``) as HDF5 files.

Schema (format ``fastvi-amortized``, version 1)::

    attrs: format, format_version, class ("VAE" | "PPCA"), params (JSON of the constructor
           arguments), n_features_in_, log_variance_, elbo_history_ (JSON)
    /decoder/W0, /decoder/b0, ...        the decoder's layers, input first
    /encoder/W0, ...                     the encoder's (absent for per-example inference)
    /psi                                 per-example (mu, log sigma) (per-example only)
    /feature_names_in_                   (D,) UTF-8 strings, for a model fitted on a
                                         DataFrame (optional: ``fastvi.io.names``)

Files are written whole or not at all (``fastvi.data.atomic.atomic_h5``).  This module
knows the format, not the classes: ``fastvi.amortized.persistence`` registers ``VAE`` and
``PPCA`` for it (``fastvi.io.registry``) with a ``network`` hook,
``network(sizes, activation, weights, biases)``, that makes a network of the layers read
and checked here.
"""
import inspect
import json

import h5py
import numpy as np

from . import registry
from .checkpoint import estimator_params
from .names import read_feature_names, write_feature_names
from ..data.atomic import atomic_h5
from ..data.files import check_regular_file

FORMAT = "fastvi-amortized"
FORMAT_VERSION = 1
# the values of the ``class`` attribute this format defines
CLASS_NAMES = ("VAE", "PPCA")


def _params(model):
    """The constructor arguments, tuples as lists (JSON)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in estimator_params(model).items()}


def save_amortized(model, path):
    """Write a fitted ``VAE`` or ``PPCA`` to ``path``."""
    if not hasattr(model, "decoder_"):
        raise ValueError("only a fitted model can be saved")
    with atomic_h5(path, "the model") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["class"] = type(model).__name__
        f.attrs["params"] = json.dumps(_params(model))
        f.attrs["n_features_in_"] = model.n_features_in_
        f.attrs["log_variance_"] = model.log_variance_
        f.attrs["elbo_history_"] = json.dumps([float(v) for v in model.elbo_history_])
        for name, net in (("decoder", model.decoder_), ("encoder", model.encoder_)):
            if net is None:
                continue
            group = f.create_group(name)
            for i in range(net.n_layers):
                group[f"W{i}"] = net.params[2 * i]
                group[f"b{i}"] = net.params[2 * i + 1]
        if getattr(model, "psi_", None) is not None:
            f["psi"] = model.psi_
        write_feature_names(f, model)


def _open(path):
    """The model file ``path``, open for reading."""
    check_regular_file(path, "model")            # h5py would wait on a FIFO
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None


def _read_header(f, path):
    """The checked root attributes of an open amortized model file: (format_version,
    class name, params, n_features_in_, log_variance_, elbo_history_)."""
    if f.attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastvi amortized model (format "
                         f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
    try:
        version = int(f.attrs["format_version"])
        name = str(f.attrs["class"])
        params = json.loads(f.attrs["params"])
        n_features = int(f.attrs["n_features_in_"])
        log_variance = float(f.attrs["log_variance_"])
        history = json.loads(f.attrs["elbo_history_"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"model file {path!r}: a missing or invalid attribute "
                         f"({exc})") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is newer than this fastvi "
                         f"reads ({FORMAT_VERSION})")
    return version, name, params, n_features, log_variance, history


def _unbuilt(sizes, activation, weights, biases):
    """The ``network`` hook of ``describe_amortized``: the layers are checked, and no
    network is made."""
    return None


def _checked_header(f, path):
    """``_read_header``'s fields and ``n_latent``, checked as far as a model can be
    described or its networks read: a known class, n_latent an integer >= 1, a finite
    log-variance, a decoder group."""
    version, name, params, n_features, log_variance, history = _read_header(f, path)
    if name not in CLASS_NAMES:
        raise ValueError(f"model file {path!r} holds an unknown model class {name!r}")
    d = params.get("n_latent")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"model file {path!r}: n_latent {d!r} is not an integer >= 1 "
                         "(its params attribute is corrupt)")
    if not np.isfinite(log_variance):
        raise ValueError(f"model file {path!r}: log_variance_ is {log_variance}")
    if "decoder" not in f:
        raise ValueError(f"model file {path!r} lacks the group 'decoder'")
    return version, name, params, n_features, log_variance, history, d


def describe_amortized(path):
    """What ``fastvi info`` shows of an amortized model file, read from its attributes
    and datasets, without building the model (nor importing it: no Numba, no
    scikit-learn).

    Returns
    -------
    dict
        ``format_version``, ``class``, ``params`` (as stored), ``n_features_in_``,
        ``log_variance_``, ``elbo_history_``, ``encoder`` (whether it stores one) and
        ``psi_rows`` (the rows of per-example psi, or None).

    Raises
    ------
    ValueError
        Not a fastvi amortized model, a newer format, an unknown class, or a corrupt file:
        the layers are checked as ``load_amortized`` checks them, with its messages, and
        psi's shape and dtype (its values are not read: it has a row per example).
    """
    path = str(path)
    with _open(path) as f:
        version, name, params, n_features, log_variance, history, d = _checked_header(f, path)
        _network(f["decoder"], None, path, d, n_features, _unbuilt)
        if "encoder" in f:
            _network(f["encoder"], None, path, n_features, 2 * d, _unbuilt)
        psi = f.get("psi")
        if psi is not None:
            # _check_array's messages, from the dataset's metadata alone
            if not isinstance(psi, h5py.Dataset):
                raise ValueError(f"model file {path!r}: psi is not a dataset")
            if psi.dtype.kind != "f":
                raise ValueError(f"model file {path!r}: psi holds {psi.dtype} values, "
                                 "expected floating point")
            if psi.ndim != 2 or psi.shape[1] != 2 * d:
                raise ValueError(f"model file {path!r}: psi has shape {psi.shape}, expected "
                                 f"{(psi.shape[0] if psi.ndim else 0, 2 * d)}")
        return {"format_version": version, "class": name, "params": params,
                "n_features_in_": n_features, "log_variance_": log_variance,
                "elbo_history_": history, "encoder": "encoder" in f,
                "psi_rows": psi.shape[0] if isinstance(psi, h5py.Dataset) else None}


def read_networks(path, network):
    """The parts of a model file that its decoder's computations need, read and checked
    as ``load_amortized`` reads and checks them, without its class (no estimator is
    imported; ``fastvi amortized gap`` builds its report's model of them).

    Returns
    -------
    dict
        ``class``, ``params`` (as stored), ``n_features_in_``, ``log_variance_``,
        ``decoder`` and ``encoder`` (None if the file has none) made by ``network``.
    """
    path = str(path)
    with _open(path) as f:
        version, name, params, n_features, log_variance, history, d = _checked_header(f, path)
        activation = params.get("activation", "tanh")
        decoder = _network(f["decoder"], activation, path, d, n_features, network)
        encoder = (_network(f["encoder"], activation, path, n_features, 2 * d, network)
                   if "encoder" in f else None)
    return {"class": name, "params": params, "n_features_in_": n_features,
            "log_variance_": log_variance, "decoder": decoder, "encoder": encoder}


def load_amortized(path):
    """Read a model written by ``save_amortized``.

    The layers are checked against the stored ``n_latent`` and ``n_features_in_``
    (shapes that chain, floating and finite values), so a corrupt file is refused here,
    naming the file and the dataset.

    Raises
    ------
    ValueError
        Not a fastvi amortized model, a newer format, a corrupt file, or a named pipe or
        a device.
    """
    with _open(path) as f:
        version, name, params, n_features, log_variance, history = _read_header(f, path)
        entry = registry.model_entries(FORMAT).get(name) if name in CLASS_NAMES else None
        if entry is None:
            raise ValueError(f"model file {path!r} holds an unknown model class {name!r}")
        cls, network = entry.cls, entry.hooks["network"]
        accepted = inspect.signature(cls.__init__).parameters
        try:
            model = cls(**{k: (tuple(v) if isinstance(v, list) else v)
                           for k, v in params.items() if k in accepted})
        except (AttributeError, TypeError) as exc:
            raise ValueError(f"model file {path!r}: invalid params attribute ({exc})") from None
        if not np.isfinite(log_variance):
            raise ValueError(f"model file {path!r}: log_variance_ is {log_variance}")
        model.n_features_in_ = n_features
        model.log_variance_ = log_variance
        model.elbo_history_ = history
        d = int(model.n_latent)
        if "decoder" not in f:
            raise ValueError(f"model file {path!r} lacks the group 'decoder'")
        model.decoder_ = _network(f["decoder"], model.activation, path, d, n_features,
                                  network)
        model.encoder_ = (_network(f["encoder"], model.activation, path, n_features, 2 * d,
                                   network)
                          if "encoder" in f else None)
        model.psi_ = f["psi"][()] if "psi" in f else None
        if model.psi_ is not None:
            _check_array(path, "psi", model.psi_, (model.psi_.shape[0], 2 * d))
        names = read_feature_names(f, path, n_features)
        if names is not None:
            model.feature_names_in_ = names
    return model


def _check_array(path, key, value, shape):
    if value.dtype.kind != "f":
        raise ValueError(f"model file {path!r}: {key} holds {value.dtype} values, expected "
                         "floating point")
    if value.shape != tuple(shape):
        raise ValueError(f"model file {path!r}: {key} has shape {value.shape}, expected "
                         f"{tuple(shape)}")
    if not np.isfinite(value).all():
        raise ValueError(f"model file {path!r}: {key} contains NaN or infinity")


def _network(group, activation, path, n_in, n_out, network):
    """The network stored in ``group`` (``W0, b0, ...``), its layers checked to chain from
    ``n_in`` inputs to ``n_out`` outputs, made by the class's ``network`` hook."""
    n_layers = len(group) // 2
    names = [f"{kind}{i}" for i in range(n_layers) for kind in "Wb"]
    if n_layers == 0 or sorted(group) != sorted(names):
        raise ValueError(f"model file {path!r}: {group.name} holds {sorted(group)}, expected "
                         "layers W0, b0, W1, b1, ...")
    weights, biases, width = [], [], n_in
    for i in range(n_layers):
        W, b = group[f"W{i}"][()], group[f"b{i}"][()]
        out = n_out if i == n_layers - 1 else (W.shape[1] if W.ndim == 2 else -1)
        _check_array(path, f"{group.name}/W{i}", W, (width, out))
        _check_array(path, f"{group.name}/b{i}", b, (out,))
        weights.append(W)
        biases.append(b)
        width = out
    sizes = [n_in] + [w.shape[1] for w in weights]
    return network(sizes, activation, weights, biases)
