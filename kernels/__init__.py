"""Numba kernels of fastvi, installed as ``fastvi.kernels``.

Import them as ``from fastvi.kernels import estep_full``; never as a top-level ``kernels``
(a different PyPI package has that name).
"""
from .estep import BLOCK_ROWS, GROUP_BLOCKS, estep_diag, estep_full
from .truncated import estep_truncated, rank_table, search_arrays

__all__ = ["BLOCK_ROWS", "GROUP_BLOCKS", "estep_diag", "estep_full", "estep_truncated",
           "rank_table", "search_arrays"]
