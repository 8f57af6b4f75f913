"""Gaussian mixtures: the estimators and their maps from statistics to parameters.

* ``estimators``: ``GaussianMixture`` (EM) and ``BayesianGaussianMixture`` (VB-EM);
* ``base``: the estimator template they share (validation, initialisation, restarts,
  ``fit`` / ``partial_fit`` / prediction through the engine);
* ``em``, ``vb``: the M-steps and the kernel parameters of each model;
* ``gaussian``: covariance types and the forms of Gaussian parameters;
* ``init``: initial responsibilities (k-means, k-means++, random) on a bounded sample.

Imports: ``fastvi.engine`` and ``fastvi.data``; never a kernel (the engine's backend runs
them).  ``save`` alone reaches up, lazily, to ``fastvi.io``.
"""
from .estimators import BayesianGaussianMixture, GaussianMixture

__all__ = ["BayesianGaussianMixture", "GaussianMixture"]
