"""Maximum-likelihood EM: the map from sufficient statistics to mixture parameters.

Bishop (2006), eq. 9.24-9.27, with scikit-learn's conventions: ``reg_covar`` is added to the
diagonal of every covariance, and ``10 * eps`` to every N_k so that an empty component
keeps finite parameters.

What ``Sigma_k = S_k + reg I`` maximises.  Since E_eps log N(x + eps | mu, Sigma) =
log N(x | mu, Sigma) - reg/2 tr(Sigma^-1) for eps ~ N(0, reg I), it is the exact M-step of
Q_reg(theta) = Q(theta) - reg/2 sum_k N_k tr(Sigma_k^-1), the expected complete-data
log-likelihood of the rows blurred by that noise; but the E-step and the reported bound
use the plain likelihood, so EM is not coordinate ascent on one objective.  The EM
inequality (L(theta') >= Q(theta') + H(r), with equality at theta) and Q_reg(theta') >=
Q_reg(theta) give, per row, L(theta') - L(theta) >= reg/2 sum_k (N_k / N)
(tr Sigma'_k^-1 - tr Sigma_k^-1) > -D/2 (Sigma_k >= reg I).  We keep scikit-learn's update
(its results, and our tests against it from the same start) and document that bound
(``GaussianMixture.lower_bound_``, tests/test_bounds.py) rather than switch to a MAP-EM
whose inverse-Wishart prior, independent of N_k, would give another update than
scikit-learn's.  With reg = 0 the bound never decreases.
"""
import numpy as np

from .gaussian import add_reg, log_det_cholesky, kernel_factor
from ..engine.backend import KernelParams

EPS_NK = 10 * np.finfo(np.float64).eps
LOG_2PI = np.log(2.0 * np.pi)


def m_step(stats, covariance_type, reg_covar):
    """Weights, means and covariances (scikit-learn shapes) from ``stats``."""
    nk, means, cov = stats.moments(nk_floor=EPS_NK)
    weights = nk / nk.sum()
    cov = add_reg(cov, covariance_type, reg_covar)
    if covariance_type == "tied":
        # sum_k N_k S_k / N plus the regulariser once (eq. 9.25 with one shared matrix).
        cov = np.einsum("k,kij->ij", nk, cov - reg_covar * np.eye(cov.shape[-1])) / nk.sum()
        cov.flat[:: cov.shape[0] + 1] += reg_covar
    elif covariance_type == "spherical":
        cov = cov.mean(axis=1)
    return weights, means, cov


def kernel_params(weights, means, prec_chol, covariance_type):
    """EM components in the kernel's canonical form: c_k = log pi_k + log|U_k| - D/2 log 2 pi."""
    n_components, n_features = means.shape
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    c = (log_weights + log_det_cholesky(prec_chol, covariance_type, n_components, n_features)
         - 0.5 * n_features * LOG_2PI)
    factor = kernel_factor(prec_chol, covariance_type, n_components, n_features)
    return KernelParams(c, np.ascontiguousarray(means, dtype=np.float64), factor)
