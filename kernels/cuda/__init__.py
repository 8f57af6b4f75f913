"""CUDA kernels of fastvi (numba-cuda), installed as ``fastvi.kernels.cuda``.

Importing this package imports ``numba.cuda``; ``fastvi.kernels`` never imports it, so the
CPU path needs no numba-cuda.  The backend that drives these kernels is
``fastvi.engine.cuda``; they run under numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``)
as well, which is how the tests check them without a GPU.
"""
from . import estep
from .estep import entry_tables, log_rho_diag, log_rho_full, moments, normalise, reduce_groups

__all__ = ["entry_tables", "estep", "log_rho_diag", "log_rho_full", "moments", "normalise",
           "reduce_groups"]
