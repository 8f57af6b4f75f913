"""Amortized inference: an inference network f(x; xi) in place of per-row parameters.

* ``vae``: the variational autoencoder (Gaussian encoder, MLP decoder) and the gap
  estimators (amortization and approximation gaps, Cremer, Li & Duvenaud 2018);
* ``ppca``: probabilistic PCA, where every gap has a closed form;
* ``encoder``: ``MixtureEncoder``, an amortized q(z | x) for a Gaussian mixture;
* ``nn``: the small MLPs and Adam on the dense-layer kernels.

Imports: ``fastvi.kernels.dense``, ``fastvi.data``, and ``fastvi.mixture`` (the mixture
an encoder amortizes); ``save`` alone reaches up, lazily, to ``fastvi.io``.
"""
from .encoder import MixtureEncoder
from .ppca import PPCA
from .vae import VAE

__all__ = ["MixtureEncoder", "PPCA", "VAE"]
