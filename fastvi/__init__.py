"""fastvi: fast, streaming EM and variational Bayes for Gaussian mixtures, and amortized
variational inference (PPCA, VAE).

The estimators are scikit-learn estimators (``sklearn.mixture``'s API); the work is done by fused
Numba kernels (``fastvi.kernels``) that compute responsibilities and sufficient statistics
in one pass over each chunk of rows.
"""
from ._base import ConvergenceWarning, NotFittedError
from ._loop import FitInterrupted
from ._stats import SufficientStats
from .checkpoint import Checkpointer, load_checkpoint
from .io import load
from .sources import ArraySource, ConcatSource, HDF5Source
from .mixture import BayesianGaussianMixture, GaussianMixture
from .amortized import VAE
from .mixture_encoder import MixtureEncoder
from .ppca import PPCA

__version__ = "0.1.0"

__all__ = ["PPCA", "VAE", "MixtureEncoder", "ArraySource", "BayesianGaussianMixture",
           "Checkpointer", "ConcatSource", "ConvergenceWarning", "FitInterrupted",
           "GaussianMixture", "HDF5Source", "NotFittedError", "SufficientStats", "__version__",
           "load", "load_checkpoint"]
