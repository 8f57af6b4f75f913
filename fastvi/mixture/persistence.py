"""How the mixtures are written and read: their entries in ``fastvi.io.registry``.

``fastvi.io`` knows the files (the ``fastvi-model`` format, the JSON trees of
checkpoints) and imports no estimator; this module, imported by ``fastvi.mixture``, tells
it which classes stand behind the names in those files:

* the classes a checkpoint may hold (the estimators, the VB prior and posterior), under
  their module's name and the one older checkpoints use;
* the classes of the ``fastvi-model`` format, and the hook that rebuilds a
  ``BayesianGaussianMixture``'s prior and posterior from the attributes read;
* the checks of a resumed fit's state (``state_checks``).
"""
from . import state_checks
from .base import BaseMixture
from .estimators import BayesianGaussianMixture, GaussianMixture
from .vb import Posterior, Prior
from ..io import registry
from ..io.model import FORMAT


def _restore_bayes(estimator):
    """The prior and posterior a loaded ``BayesianGaussianMixture`` predicts with, made of
    the very arrays and numbers the reader set as its attributes, as after ``fit``."""
    estimator._prior = Prior(estimator.weight_concentration_prior_type,
                             estimator.weight_concentration_prior_,
                             estimator.mean_precision_prior_, estimator.mean_prior_,
                             estimator.degrees_of_freedom_prior_, estimator.covariance_prior_)
    estimator._posterior = Posterior(estimator.weight_concentration_, estimator.mean_precision_,
                                     estimator.means_, estimator.degrees_of_freedom_,
                                     estimator.covariances_, estimator.precisions_cholesky_)


# Where the classes lived before the package was split by concern (fastvi 0.1.0,
# checkpoints written before issue 12): read under those names too.
registry.register_state_class(GaussianMixture, former_module="fastvi.mixture")
registry.register_state_class(BayesianGaussianMixture, former_module="fastvi.mixture")
registry.register_state_class(Prior, former_module="fastvi._vb")
registry.register_state_class(Posterior, former_module="fastvi._vb")
registry.register_model(GaussianMixture, FORMAT)
registry.register_model(BayesianGaussianMixture, FORMAT, restore=_restore_bayes)
registry.register_resume_check(BaseMixture, state_checks.check_resumed_state)
