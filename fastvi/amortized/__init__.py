"""Amortized inference: an inference network f(x; xi) in place of per-row parameters.

* ``vae``: the variational autoencoder (Gaussian encoder, MLP decoder) and the gap
  estimators (amortization and approximation gaps, Cremer, Li & Duvenaud 2018);
* ``ppca``: probabilistic PCA, where every gap has a closed form;
* ``encoder``: ``MixtureEncoder``, an amortized q(z | x) for a Gaussian mixture;
* ``nn``: the small MLPs and Adam on the dense-layer kernels.
* ``persistence``, ``state_checks``: what ``fastvi.io`` is told about these models (their
  classes in model files and checkpoints, the checks of a resumed fit's state).

Imports: ``fastvi.io`` (model files, checkpoints), ``fastvi.kernels.dense``,
``fastvi.data``, and, inside a function, ``fastvi.mixture`` (the mixture an encoder
amortizes).

The estimators are imported on first use (PEP 562), with ``persistence``: so ``fastvi
amortized gap`` on a VAE file can run ``nn`` and ``gaps`` without importing
scikit-learn (a second and more of imports); ``fastvi.io``'s registry imports
``persistence`` itself before it reads a file.
"""
import importlib

_PUBLIC = {"MixtureEncoder": ".encoder", "PPCA": ".ppca", "VAE": ".vae"}
# the submodules, reachable as attributes (fastvi.amortized.vae.VAE) as when the
# estimators were imported here eagerly; the estimators' modules register on first use
_SUBMODULES = ("encoder", "gaps", "nn", "persistence", "ppca", "state_checks",
               "training", "vae")
_ESTIMATOR_MODULES = ("encoder", "ppca", "vae")

__all__ = ["MixtureEncoder", "PPCA", "VAE"]


def __getattr__(name):
    if name in _PUBLIC:
        importlib.import_module(".persistence", __name__)   # registers with fastvi.io
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value         # later lookups skip this hook
        return value
    if name in _SUBMODULES:
        if name in _ESTIMATOR_MODULES:
            importlib.import_module(".persistence", __name__)
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBMODULES))
