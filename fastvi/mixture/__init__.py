"""Gaussian mixtures: the estimators and their maps from statistics to parameters.

* ``estimators``: ``GaussianMixture`` (EM) and ``BayesianGaussianMixture`` (VB-EM);
* ``base``: the estimator template they share (validation, initialisation, restarts,
  ``fit`` / ``partial_fit`` / prediction through the engine);
* ``em``, ``vb``: the M-steps and the kernel parameters of each model;
* ``gaussian``: covariance types and the forms of Gaussian parameters;
* ``init``: initial responsibilities (k-means, k-means++, random) on a bounded sample.
* ``persistence``, ``state_checks``: what ``fastvi.io`` is told about the mixtures (their
  classes in model files and checkpoints, the checks of a resumed fit's state).

Imports: ``fastvi.io`` (model files, checkpoints), ``fastvi.engine`` and ``fastvi.data``;
never a kernel (the engine's backend runs them).
"""
from .estimators import BayesianGaussianMixture, GaussianMixture
from . import persistence  # noqa: F401  (registers the classes with fastvi.io)

__all__ = ["BayesianGaussianMixture", "GaussianMixture"]
