"""The ``fastvi`` command: one module per command group, ``main`` dispatching to them.

Imports: everything below it, lazily: ``fastvi info`` on a data file loads neither Numba
nor scikit-learn.
"""
from .main import main

__all__ = ["main"]
