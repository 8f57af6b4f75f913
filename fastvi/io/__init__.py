"""Model files and checkpoints: what fastvi writes to be read back.

* ``model``: the mixtures' model-file schema, and ``load`` / ``save`` for every model;
* ``amortized``: the VAE and PPCA model files;
* ``names``: the ``feature_names_in_`` both kinds of model file keep;
* ``checkpoint``: checkpoints of a running fit (HDF5, no pickles) and ``Checkpointer``;
  ``tree``: the JSON trees they are made of;
* ``resume_checks``: a loaded state checked field by field before a fit resumes it, a
  tampered one refused (the checks of each kind of state are the estimators' own:
  ``fastvi.mixture.state_checks``, ``fastvi.amortized.state_checks``);
* ``registry``: what the estimators tell this package about themselves (their classes
  for checkpoints and model files, their resume checks).

Imports: ``fastvi.engine`` (whose state a checkpoint holds), ``fastvi.data`` (atomic
writes, file checks) and nothing above: this package knows HDF5 files and their formats,
not the estimators, which register with ``registry`` when their packages are imported
(and ``fastvi`` makes a lookup import them first).  The public names below are loaded on
first use, so that ``fastvi`` can reach ``registry`` without loading h5py.
"""
import importlib

# public name -> the module that defines it
_PUBLIC = {"Checkpointer": "checkpoint", "load_checkpoint": "checkpoint", "load": "model",
           "save": "model"}
# the submodules, reachable as attributes (fastvi.io.model.save) as when they were
# imported here eagerly
_SUBMODULES = ("amortized", "checkpoint", "model", "names", "registry", "resume_checks",
               "tree")

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value         # later lookups skip this hook
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBMODULES))
