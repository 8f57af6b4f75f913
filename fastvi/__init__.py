"""fastvi: fast, streaming EM and variational Bayes for Gaussian mixtures, and amortized
variational inference (PPCA, VAE).

The estimators are scikit-learn estimators (``sklearn.mixture``'s API); the work is done by fused
Numba kernels (``fastvi.kernels``) that compute responsibilities and sufficient statistics
in one pass over each chunk of rows.

The package, layer by layer (each imports only the layers below it)::

    fastvi.cli        the command line
    fastvi.mixture    GaussianMixture, BayesianGaussianMixture   fastvi.amortized  VAE, PPCA, ...
    fastvi.io         model files and checkpoints (formats, not classes)
    fastvi.engine     the chunk loop and its backends
    fastvi.data       chunk sources, input checks, data files, atomic writes
    fastvi.kernels    the Numba kernels

The public names below are imported on first use (PEP 562), so ``import fastvi`` is quick
and a command that needs neither Numba nor scikit-learn loads neither.

Persistence runs one way: the estimators import ``fastvi.io`` and register their classes
with ``fastvi.io.registry``; ``fastvi.io`` imports no estimator.  So that reading a model
file or a checkpoint finds the classes before any estimator was imported, this package
(above every layer) gives the registry a provider that imports the estimators' packages.
"""
import importlib

from .io import registry as _registry

__version__ = "0.1.0"


def _import_estimators():
    """Import the packages that register with ``fastvi.io.registry`` (their
    ``persistence`` modules); the registry calls this before its first full lookup."""
    importlib.import_module("fastvi.mixture")
    importlib.import_module("fastvi.amortized.persistence")


_registry.add_provider(_import_estimators)

# public name -> the module that defines it
_PUBLIC = {
    "ArraySource": "fastvi.data.sources",
    "ConcatSource": "fastvi.data.sources",
    "HDF5Source": "fastvi.data.sources",
    "SufficientStats": "fastvi.engine.stats",
    "FitInterrupted": "fastvi.engine.loop",
    "ConvergenceWarning": "sklearn.exceptions",
    "NotFittedError": "sklearn.exceptions",
    "GaussianMixture": "fastvi.mixture.estimators",
    "BayesianGaussianMixture": "fastvi.mixture.estimators",
    "MixtureImputer": "fastvi.mixture.missing",
    "VAE": "fastvi.amortized",
    "PPCA": "fastvi.amortized",
    "MixtureEncoder": "fastvi.amortized",
    "Checkpointer": "fastvi.io.checkpoint",
    "load_checkpoint": "fastvi.io.checkpoint",
    "load": "fastvi.io.model",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value         # later lookups skip this hook
        return value
    raise AttributeError(f"module 'fastvi' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
