"""fastvi: fast, streaming EM and variational Bayes for Gaussian mixtures.

The estimators follow scikit-learn's ``sklearn.mixture`` API; the work is done by fused
Numba kernels (``fastvi.kernels``) that compute responsibilities and sufficient statistics
in one pass over each chunk of rows.
"""
import os

# Numba's OpenMP threads otherwise spin after every parallel region and starve the BLAS
# calls of the small per-minibatch updates (stochastic fits 2x-10x slower on 2 cores);
# full passes are as fast either way.  OpenMP reads it when the kernels first run, so it is
# set at import; a value the user chose is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._base import ConvergenceWarning, NotFittedError  # noqa: E402
from ._loop import FitInterrupted  # noqa: E402
from ._stats import SufficientStats  # noqa: E402
from .checkpoint import Checkpointer, load_checkpoint  # noqa: E402
from .sources import ArraySource, ConcatSource, HDF5Source  # noqa: E402
from .mixture import BayesianGaussianMixture, GaussianMixture  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ArraySource", "BayesianGaussianMixture", "Checkpointer", "ConcatSource",
           "ConvergenceWarning", "FitInterrupted", "GaussianMixture", "HDF5Source",
           "NotFittedError", "SufficientStats", "__version__", "load_checkpoint"]
