"""Model files and checkpoints: what fastvi writes to be read back.

* ``model``: the mixtures' model-file schema, and ``load`` / ``save`` for every model;
* ``amortized``: the VAE and PPCA model files;
* ``checkpoint``: checkpoints of a running fit (HDF5, no pickles) and ``Checkpointer``;
* ``resume_checks`` (with ``fit_state_checks`` and ``epoch_state_checks``): a loaded
  state checked field by field before a fit resumes it, a tampered one refused.

Imports: the estimators (whose files these are), the engine (whose state a checkpoint
holds) and ``fastvi.data`` (atomic writes).  Above the estimators: a model file is read by
building an estimator.
"""
from .checkpoint import Checkpointer, load_checkpoint
from .model import load, save

__all__ = ["Checkpointer", "load", "load_checkpoint", "save"]
