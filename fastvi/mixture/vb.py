"""Variational Bayes EM for Gaussian mixtures: statistics -> q(theta), and the exact ELBO.

The model and the updates are Bishop (2006), section 10.2:

* weights: a Dirichlet distribution (eq. 10.39, 10.58), or a truncated Dirichlet process in
  stick-breaking form (Blei & Jordan 2006) with K Beta sticks, all random, as in
  scikit-learn;
* ``full``: a Normal-Wishart per component (eq. 10.40, 10.60-10.63);
* ``tied``: one Wishart shared by all components, mu_k | Lambda ~ N(m0, (beta0 Lambda)^-1);
  the exact mean-field update (scikit-learn uses a different heuristic for ``tied``);
* ``diag``: an independent Normal-Gamma per component and dimension;
* ``spherical``: a Normal-Gamma per component whose one precision is shared by the D
  dimensions.  (scikit-learn uses the Wishart digamma sum for diag/spherical as well, which
  is not the expectation under any Gamma posterior; so these two differ from it slightly.)

The posterior is stored as scikit-learn stores it: ``covariances`` is ``W^-1 / nu`` (full,
tied) or ``b / a`` (Gamma rate over shape; diag, spherical), the inverse of the expected
precision, so that ``E[Lambda_k] = U_k U_k^T`` with U the precision factor of ``covariances``.

The ELBO needs no responsibilities: with q(z_n) proportional to rho_n,
``ELBO = sum_n w_n log sum_k rho_nk - KL(q(theta) || p(theta))``.
"""
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, multigammaln

from .em import EPS_NK, LOG_2PI
from ..engine.backend import KernelParams
from .gaussian import (kernel_factor, log_det_cholesky, precision_cholesky,
                        precisions_from_cholesky)

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


@dataclass
class Prior:
    """p(theta): scikit-learn's parameter names, with its defaults filled in by ``default_prior``."""

    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray
    degrees_of_freedom_prior: float
    covariance_prior: np.ndarray


@dataclass
class Posterior:
    """q(theta).  ``weight_concentration`` is (K,) or a pair of (K,) Beta parameters."""

    weight_concentration: object
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


def default_prior(data_stats, covariance_type, n_components, weight_concentration_prior_type,
                  weight_concentration_prior=None, mean_precision_prior=None,
                  mean_prior=None, degrees_of_freedom_prior=None, covariance_prior=None,
                  reg_covar=0.0):
    """Fill in scikit-learn's defaults from one-component statistics of the whole data.

    ``reg_covar`` is added to the diagonal of ``covariance_prior`` (the default one is the
    data's covariance, ddof=1, as scikit-learn's): a constant column, or no more rows than
    features, makes the empirical covariance singular, and the Wishart (Gamma) prior must
    be proper for the exact ELBO (its normaliser has log|W_0|).  With the regulariser in
    the prior, once, every posterior scale W_k^-1 = W_0^-1 + N_k S_k + ... is positive
    definite and ``m_step`` stays the exact coordinate-ascent update, so the batch ELBO
    never decreases.  (scikit-learn adds ``reg_covar`` to every S_k instead, which is
    not the optimum of any bound and made the ELBO fall on real data.)
    """
    if weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
        raise ValueError(f"weight_concentration_prior_type must be one of {WEIGHT_PRIOR_TYPES}, "
                         f"got {weight_concentration_prior_type!r}")
    n_features = data_stats.ref.shape[1]
    total, mean, scatter = data_stats.moments()
    total = total[0]
    mean = mean[0]
    # np.cov's ddof=1, with sample weights read as frequencies; undefined for a total
    # weight <= 1 (one row, or fractional weights), where ddof=0 is used: dividing by
    # eps instead turned the scatter's rounding into a huge or indefinite prior.
    cov = scatter[0] * total / (total - 1.0) if total > 1.0 else scatter[0]
    if weight_concentration_prior is None:
        weight_concentration_prior = 1.0 / n_components
    if mean_precision_prior is None:
        mean_precision_prior = 1.0
    if mean_prior is None:
        mean_prior = mean
    if degrees_of_freedom_prior is None:
        degrees_of_freedom_prior = float(n_features)
    if covariance_prior is None:
        variances = np.diag(cov) if cov.ndim == 2 else cov
        covariance_prior = {"full": cov, "tied": cov, "diag": variances,
                            "spherical": variances.mean()}[covariance_type]
    mean_prior = np.asarray(mean_prior, dtype=np.float64)
    covariance_prior = np.array(covariance_prior, dtype=np.float64)
    if covariance_prior.ndim == 2:
        covariance_prior.flat[::n_features + 1] += reg_covar
    else:
        covariance_prior += reg_covar
    _check_prior(covariance_type, n_features, weight_concentration_prior, mean_precision_prior,
                 mean_prior, degrees_of_freedom_prior, covariance_prior)
    return Prior(weight_concentration_prior_type, float(weight_concentration_prior),
                 float(mean_precision_prior), mean_prior, float(degrees_of_freedom_prior),
                 covariance_prior)


def _check_prior(covariance_type, n_features, gamma0, beta0, m0, nu0, cov0):
    for name, value in (("weight_concentration_prior", gamma0), ("mean_precision_prior", beta0)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if m0.shape != (n_features,):
        raise ValueError(f"mean_prior must have shape ({n_features},), got {m0.shape}")
    low = n_features - 1.0 if covariance_type in ("full", "tied") else 0.0
    if not nu0 > low:
        raise ValueError(f"degrees_of_freedom_prior must be > {low} for covariance_type="
                         f"{covariance_type!r}, got {nu0!r}")
    expected = {"full": (n_features, n_features), "tied": (n_features, n_features),
                "diag": (n_features,), "spherical": ()}[covariance_type]
    if cov0.shape != expected:
        raise ValueError(f"covariance_prior must have shape {expected} for covariance_type="
                         f"{covariance_type!r}, got {cov0.shape}")
    # The default covariance_prior is the data's covariance: singular for a constant
    # column or no more rows than features, so reg_covar = 0 cannot make a proper prior.
    advice = ("; increase reg_covar (the default covariance_prior is the data's covariance, "
              "singular for a constant column or no more rows than features)")
    if covariance_type in ("full", "tied"):
        try:
            precision_cholesky(cov0, "tied")
        except ValueError:
            raise ValueError(f"covariance_prior is not positive definite{advice}") from None
    elif not np.all(cov0 > 0):
        raise ValueError(f"covariance_prior must be positive{advice}")


def m_step(stats, covariance_type, prior):
    """q(theta) from the statistics (Bishop eq. 10.58-10.63 and their Gamma analogues): the
    exact coordinate-ascent update (the regulariser is in the prior, ``default_prior``)."""
    nk, xbar, S = stats.moments(nk_floor=EPS_NK)
    n_components, n_features = xbar.shape
    gamma0, beta0, m0 = (prior.weight_concentration_prior, prior.mean_precision_prior,
                         prior.mean_prior)
    nu0, cov0 = prior.degrees_of_freedom_prior, prior.covariance_prior

    if prior.weight_concentration_prior_type == "dirichlet_process":
        tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))     # sum_{j>k} N_j
        concentration = (1.0 + nk, gamma0 + tail)
    else:
        concentration = gamma0 + nk

    beta = beta0 + nk
    means = (beta0 * m0 + nk[:, None] * xbar) / beta[:, None]
    diff = xbar - m0
    shrink = beta0 * nk / beta                                   # beta0 N_k / (beta0 + N_k)
    if covariance_type in ("full", "tied"):
        scatter = nk[:, None, None] * S                          # N_k S_k
        nu, cov = _wishart_update(scatter, shrink, diff, nu0, cov0, nk, covariance_type)
        try:
            factor = precision_cholesky(cov, covariance_type)
        except ValueError:
            # N_k S_k is positive semi-definite, cov0 positive definite, so W_k^-1 is too;
            # but s2 / N_k - d d^T rounds to +-eps |S_k| in directions without spread (N < D,
            # duplicates), which can outweigh cov0 there when N_k is large (partial_fit's
            # total_samples) or the data far from unit scale.  Drop that rounding (the
            # negative eigenvalues of the scatter) and try once more.
            nu, cov = _wishart_update(_psd(scatter), shrink, diff, nu0, cov0, nk,
                                      covariance_type)
            factor = precision_cholesky(cov, covariance_type)
        return Posterior(concentration, beta, means, nu, cov, factor)
    scatter = nk[:, None] * S                                    # diagonals, clipped at 0
    nu = nu0 + nk
    if covariance_type == "diag":
        rate = 0.5 * cov0 + 0.5 * (scatter + shrink[:, None] * diff ** 2)
        cov = rate / (0.5 * nu[:, None])
    else:
        rate = (0.5 * n_features * cov0
                + 0.5 * (scatter.sum(axis=1) + shrink * (diff ** 2).sum(axis=1)))
        cov = rate / (0.5 * n_features * nu)
    return Posterior(concentration, beta, means, nu, cov, precision_cholesky(cov, covariance_type))


def _wishart_update(scatter, shrink, diff, nu0, cov0, nk, covariance_type):
    """nu_k and E[Lambda_k]^-1 = W_k^-1 / nu_k (Bishop eq. 10.62-10.63; tied: one Wishart
    with all components' scatter)."""
    if covariance_type == "full":
        nu = nu0 + nk
        w_inv = cov0 + scatter + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :]
        return nu, w_inv / nu[:, None, None]
    nu = np.full(nk.shape[0], nu0 + nk.sum())
    w_inv = cov0 + scatter.sum(axis=0) + np.einsum("k,ki,kj->ij", shrink, diff, diff)
    return nu, w_inv / nu[0]


def _psd(matrices):
    """The nearest positive semi-definite matrices (negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh(0.5 * (matrices + matrices.transpose(0, 2, 1)))
    return np.einsum("kij,kj,klj->kil", vectors, np.maximum(values, 0.0), vectors)


def expected_log_weights(posterior, prior):
    """E[log pi_k] (Bishop eq. 10.66; stick-breaking: E[log v_k] + sum_{j<k} E[log(1-v_j)])."""
    if prior.weight_concentration_prior_type == "dirichlet_process":
        a, b = posterior.weight_concentration
        digamma_sum = digamma(a + b)
        log_stick = digamma(a) - digamma_sum
        log_rest = digamma(b) - digamma_sum
        return log_stick + np.hstack((0.0, np.cumsum(log_rest)[:-1]))
    alpha = posterior.weight_concentration
    return digamma(alpha) - digamma(alpha.sum())


def _shapes(posterior, covariance_type, n_features):
    """Gamma shapes a_k for diag (nu/2) and spherical (D nu/2)."""
    scale = n_features if covariance_type == "spherical" else 1
    return 0.5 * scale * posterior.degrees_of_freedom


def expected_log_det(posterior, covariance_type):
    """E[log |Lambda_k|] (Bishop eq. 10.65, and sum_d (psi(a) - log b_d) for Gamma)."""
    n_components, n_features = posterior.means.shape
    # log|E[Lambda_k]| = 2 log|U_k| with U the factor of the stored covariances.
    log_det_mean = 2.0 * log_det_cholesky(posterior.precisions_cholesky, covariance_type,
                                          n_components, n_features)
    nu = posterior.degrees_of_freedom
    if covariance_type in ("full", "tied"):
        # E log|L| = psi_D(nu/2) + D log 2 + log|W|, and log|W| = log|E[L]| - D log nu.
        psi = digamma(0.5 * (nu[:, None] - np.arange(n_features))).sum(axis=1)
        return psi + n_features * np.log(2.0) + log_det_mean - n_features * np.log(nu)
    a = _shapes(posterior, covariance_type, n_features)
    # E log lambda = psi(a) - log b, and log b = log a - log E[lambda].
    return n_features * (digamma(a) - np.log(a)) + log_det_mean


def kernel_params(posterior, covariance_type, prior):
    """c_k = E[log pi_k] + 1/2 E[log|Lambda_k|] - D/2 log 2 pi - D / (2 beta_k); U_k from E[Lambda_k]."""
    n_components, n_features = posterior.means.shape
    c = (expected_log_weights(posterior, prior) + 0.5 * expected_log_det(posterior, covariance_type)
         - 0.5 * n_features * LOG_2PI - 0.5 * n_features / posterior.mean_precision)
    factor = kernel_factor(posterior.precisions_cholesky, covariance_type, n_components, n_features)
    return KernelParams(c, np.ascontiguousarray(posterior.means), factor)


# ----------------------------------------------------------------------------- KL(q || p)

def _kl_dirichlet(alpha, alpha0):
    total = alpha.sum()
    return (gammaln(total) - gammaln(alpha).sum() - gammaln(alpha0 * alpha.size)
            + alpha.size * gammaln(alpha0) + ((alpha - alpha0) * (digamma(alpha) - digamma(total))).sum())


def _kl_beta(a, b, a0, b0):
    """sum_k KL(Beta(a_k, b_k) || Beta(a0, b0))."""
    psi_ab = digamma(a + b)
    return (gammaln(a + b) - gammaln(a) - gammaln(b) - gammaln(a0 + b0) + gammaln(a0)
            + gammaln(b0) + (a - a0) * (digamma(a) - psi_ab) + (b - b0) * (digamma(b) - psi_ab)).sum()


def _kl_gamma(a, b, a0, b0):
    """KL(Gamma(a, rate b) || Gamma(a0, rate b0)), elementwise."""
    return ((a - a0) * digamma(a) - gammaln(a) + gammaln(a0) + a0 * (np.log(b) - np.log(b0))
            + a * (b0 - b) / b)


def _kl_wishart(prec_chol, nu, cov0, nu0):
    """KL(W(W_k, nu_k) || W(W0, nu0)) of each component (K,), with E[Lambda_k] = nu_k W_k =
    U_k U_k^T and W0^-1 = cov0; ``prec_chol`` (K, D, D), ``nu`` (K,).

    All components at once, each with the arithmetic of one at a time (every sum runs
    along a contiguous row, as it did over one component's array; scipy's multigammaln
    written out the same way): a loop over the components cost 0.3 ms each, most of a
    birth move's small fits.

    The log-determinants come from the triangular factors (log|U U^T| = 2 sum log U_ii),
    not from ``slogdet`` of the product: when N < D or the data are far from unit scale
    E[Lambda] can have a condition number near 1/eps, and the product U U^T then loses
    its smallest eigenvalues to rounding (slogdet gave -inf, so KL = inf and an ELBO of
    -inf), while the factor keeps them.
    """
    n_components, n_features = nu.shape[0], cov0.shape[0]
    diagonal = np.ascontiguousarray(np.diagonal(prec_chol, axis1=1, axis2=2))
    log_det_w = 2.0 * np.log(diagonal).sum(axis=1) - n_features * np.log(nu)
    log_det_w0 = -2.0 * np.log(np.diag(np.linalg.cholesky(cov0))).sum()
    trace = ((prec_chol * (cov0 @ prec_chol)).reshape(n_components, -1).sum(axis=1)
             / nu)                                                # tr(W0^-1 W)
    psi = digamma(0.5 * (nu[:, None] - np.arange(n_features))).sum(axis=1)
    half = 0.5 * nu
    log_gamma = ((n_features * (n_features - 1) * 0.25) * np.log(np.pi)
                 + gammaln(np.stack([half - (j - 1.0) / 2 for j in range(1, n_features + 1)],
                                    axis=1)).sum(axis=1))        # multigammaln(nu / 2, D)
    return (0.5 * (nu - nu0) * psi + multigammaln(0.5 * nu0, n_features)
            - log_gamma + 0.5 * nu0 * (log_det_w0 - log_det_w)
            + 0.5 * nu * (trace - n_features))


def _float64(posterior):
    """The posterior in float64 (a float32 fit publishes float32 arrays, which ``elbo()``
    and a loaded model read)."""
    def f64(value):
        if isinstance(value, tuple):
            return tuple(np.asarray(v, dtype=np.float64) for v in value)
        return np.asarray(value, dtype=np.float64)
    return Posterior(*(f64(getattr(posterior, name)) for name in (
        "weight_concentration", "mean_precision", "means", "degrees_of_freedom",
        "covariances", "precisions_cholesky")))


def kl_divergence(posterior, covariance_type, prior):
    """KL(q(theta) || p(theta)) in nats: weights + Gaussian parts of the means + precisions."""
    posterior = _float64(posterior)
    n_components, n_features = posterior.means.shape
    gamma0, beta0, m0 = (prior.weight_concentration_prior, prior.mean_precision_prior,
                         prior.mean_prior)
    if prior.weight_concentration_prior_type == "dirichlet_process":
        kl = _kl_beta(*posterior.weight_concentration, 1.0, gamma0)
    else:
        kl = _kl_dirichlet(posterior.weight_concentration, gamma0)

    factor = posterior.precisions_cholesky
    diff = posterior.means - m0
    if covariance_type == "full":
        mahalanobis = (np.einsum("ki,kij->kj", diff, factor) ** 2).sum(axis=1)  # ||U^T d||^2
    elif covariance_type == "tied":
        mahalanobis = ((diff @ factor) ** 2).sum(axis=1)
    elif covariance_type == "diag":
        mahalanobis = ((factor * diff) ** 2).sum(axis=1)
    else:
        mahalanobis = factor ** 2 * (diff ** 2).sum(axis=1)
    # E_q(Lambda) KL(N(m, (beta Lambda)^-1) || N(m0, (beta0 Lambda)^-1))
    ratio = beta0 / posterior.mean_precision
    kl += 0.5 * (n_features * (ratio - 1.0 - np.log(ratio)) + beta0 * mahalanobis).sum()

    nu, cov0, nu0 = posterior.degrees_of_freedom, prior.covariance_prior, prior.degrees_of_freedom_prior
    if covariance_type == "full":
        kl += sum(_kl_wishart(factor, nu, cov0, nu0).tolist())    # in component order
    elif covariance_type == "tied":
        kl += _kl_wishart(factor[None], nu[:1], cov0, nu0)[0]
    else:
        a = _shapes(posterior, covariance_type, n_features)
        scale = n_features if covariance_type == "spherical" else 1
        a0 = 0.5 * scale * nu0
        b0 = 0.5 * scale * cov0
        if covariance_type == "diag":
            kl += _kl_gamma(a[:, None], a[:, None] * posterior.covariances, a0, b0).sum()
        else:
            kl += _kl_gamma(a, a * posterior.covariances, a0, b0).sum()
    return float(kl)
