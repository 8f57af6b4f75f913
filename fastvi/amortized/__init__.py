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
"""
from .encoder import MixtureEncoder
from .ppca import PPCA
from .vae import VAE
from . import persistence  # noqa: F401  (registers the classes with fastvi.io)

__all__ = ["MixtureEncoder", "PPCA", "VAE"]
