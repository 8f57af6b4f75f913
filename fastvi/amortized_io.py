"""Saving and loading the amortized models (``VAE``, ``PPCA``) as HDF5 files.

Schema (format ``fastvi-amortized``, version 1)::

    attrs: format, format_version, class ("VAE" | "PPCA"), params (JSON of the constructor
           arguments), n_features_in_, log_variance_, elbo_history_ (JSON)
    /decoder/W0, /decoder/b0, ...        the decoder's layers, input first
    /encoder/W0, ...                     the encoder's (absent for per-example inference)
    /psi                                 per-example (mu, log sigma) (per-example only)

Files are written whole or not at all (``fastvi.io.atomic_h5``).
"""
import inspect
import json

import h5py
import numpy as np

from ._nn import MLP
from .amortized import VAE
from .ppca import PPCA
from .checkpoint import estimator_params
from .io import atomic_h5

FORMAT = "fastvi-amortized"
FORMAT_VERSION = 1
_CLASSES = {"VAE": VAE, "PPCA": PPCA}


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


def load_amortized(path):
    """Read a model written by ``save_amortized``."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a fastvi amortized model (format "
                             f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        if int(f.attrs["format_version"]) > FORMAT_VERSION:
            raise ValueError(f"{path}: format version {int(f.attrs['format_version'])} is "
                             f"newer than this fastvi reads ({FORMAT_VERSION})")
        cls = _CLASSES[str(f.attrs["class"])]
        params = json.loads(f.attrs["params"])
        accepted = inspect.signature(cls.__init__).parameters
        model = cls(**{k: (tuple(v) if isinstance(v, list) else v)
                       for k, v in params.items() if k in accepted})
        model.n_features_in_ = int(f.attrs["n_features_in_"])
        model.log_variance_ = float(f.attrs["log_variance_"])
        model.elbo_history_ = json.loads(f.attrs["elbo_history_"])
        model.decoder_ = _network(f["decoder"], model.activation)
        model.encoder_ = _network(f["encoder"], model.activation) if "encoder" in f else None
        model.psi_ = f["psi"][()] if "psi" in f else None
    return model


def _network(group, activation):
    n_layers = len(group) // 2
    weights = [group[f"W{i}"][()] for i in range(n_layers)]
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    net = MLP(sizes, activation, np.random.default_rng(0), weights[0].dtype)
    net.params = [a for i in range(n_layers) for a in (weights[i], group[f"b{i}"][()])]
    net.grads = [np.zeros_like(p) for p in net.params]
    return net
