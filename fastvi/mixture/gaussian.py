"""Covariance / precision-factor conversions shared by EM and VB-EM.

Shapes follow scikit-learn: ``full`` (K, D, D), ``tied`` (D, D), ``diag`` (K, D),
``spherical`` (K,).  A precision factor ``U`` is upper triangular with ``U U^T`` equal to
the precision matrix (scikit-learn's ``precisions_cholesky_``), so the Mahalanobis term is
``||(x - m) U||^2``.
"""
import numpy as np
from scipy import linalg

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def check_covariance_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                         f"got {covariance_type!r}")


def is_full(covariance_type):
    """Whether the statistics keep whole (D, D) second moments."""
    return covariance_type in ("full", "tied")


def _factor_of_matrix(cov, what):
    try:
        chol = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise ValueError(f"{what} is not positive definite; increase reg_covar, use fewer "
                         "components, or check for duplicated or constant data") from None
    return linalg.solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T


def _factors_of_matrices(covariances):
    """Upper factors of K matrices at once (batched LAPACK; a Python loop over scipy
    calls cost 50 ms per M-step at K = 1024).  A failure is retried one by one, so the
    error names the component."""
    try:
        chol = np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        for k, cov in enumerate(covariances):
            _factor_of_matrix(cov, f"covariance of component {k}")
        raise
    identity = np.broadcast_to(np.eye(covariances.shape[1]), covariances.shape)
    # inv(L)^T; triu drops the rounding that the (pivoted) batched solve leaves below
    return np.triu(np.linalg.solve(chol, identity).transpose(0, 2, 1))


def precision_cholesky(covariances, covariance_type):
    """Upper-triangular precision factors from covariances (scikit-learn's layout)."""
    if covariance_type == "full":
        return _factors_of_matrices(np.asarray(covariances, dtype=np.float64))
    if covariance_type == "tied":
        return _factor_of_matrix(covariances, "the tied covariance")
    covariances = np.asarray(covariances, dtype=np.float64)
    if np.any(covariances <= 0.0):
        raise ValueError(f"{covariance_type} covariances must be positive; increase "
                         "reg_covar or check for constant data")
    return 1.0 / np.sqrt(covariances)


def covariances_from_precisions(precisions, covariance_type):
    """Covariances from user-given precisions (``precisions_init``)."""
    if covariance_type == "full":
        return np.stack([linalg.inv(p) for p in precisions])
    if covariance_type == "tied":
        return linalg.inv(precisions)
    return 1.0 / np.asarray(precisions, dtype=np.float64)


def precisions_from_cholesky(prec_chol, covariance_type):
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol ** 2


def log_det_cholesky(prec_chol, covariance_type, n_components, n_features):
    """log|U_k| = 1/2 log|precision_k| for each component, shape (K,)."""
    if covariance_type == "full":
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.full(n_components, np.log(np.diag(prec_chol)).sum())
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return n_features * np.log(prec_chol)


def kernel_factor(prec_chol, covariance_type, n_components, n_features):
    """The factor array the E-step kernel takes: (K, D, D) for full/tied, (K, D) else."""
    if covariance_type == "full":
        return np.ascontiguousarray(prec_chol, dtype=np.float64)
    if covariance_type == "tied":
        return np.ascontiguousarray(np.broadcast_to(prec_chol, (n_components,) + prec_chol.shape))
    if covariance_type == "diag":
        return np.ascontiguousarray(prec_chol, dtype=np.float64)
    return np.ascontiguousarray(np.repeat(prec_chol[:, None], n_features, axis=1))


def add_reg(cov, covariance_type, reg_covar):
    """Add ``reg_covar`` to the diagonal of per-component (K, D, D) or (K, D) moments."""
    cov = cov.copy()
    if is_full(covariance_type):
        idx = np.arange(cov.shape[-1])
        cov[:, idx, idx] += reg_covar
    else:
        cov += reg_covar
    return cov


def n_parameters(covariance_type, n_components, n_features):
    """Free parameters of the mixture, for BIC and AIC."""
    if covariance_type == "full":
        cov_params = n_components * n_features * (n_features + 1) / 2.0
    elif covariance_type == "diag":
        cov_params = n_components * n_features
    elif covariance_type == "tied":
        cov_params = n_features * (n_features + 1) / 2.0
    else:
        cov_params = n_components
    return int(cov_params + n_components * n_features + n_components - 1)
