"""Probabilistic PCA in closed form: the model where every gap of amortized inference is exact.

The model (Tipping & Bishop 1999, "Probabilistic principal component analysis", JRSS B):

    z ~ N(0, I_d),    x | z ~ N(W z + b, sigma^2 I_D).

Its marginal, posterior and the best *diagonal* Gaussian q are all closed form, so the
approximation gap and the amortization gap of Cremer, Li & Duvenaud (2018, "Inference
suboptimality in variational autoencoders") can be computed exactly, and a fitted
encoder's gap checked against them.

* marginal: x ~ N(b, C), C = W W^T + sigma^2 I                     (T&B eq. 4)
* posterior: z | x ~ N(M^-1 W^T (x - b), sigma^2 M^-1),  M = W^T W + sigma^2 I  (eq. 6)
* maximum likelihood: b = mean, W = U_d (L_d - sigma^2 I)^1/2 (any rotation),
  sigma^2 = mean of the D - d smallest eigenvalues of the sample covariance  (eq. 7-8)
* ELBO of q = N(m, diag s^2):
  E_q[log p(x|z)] - KL(q || N(0, I)) with
  E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - (||x - b - W m||^2 + sum_i s_i^2 ||w_i||^2)
  / (2 sigma^2), w_i the i-th column of W.
* the best diagonal q (the KL(q || p(z|x)) minimiser over diagonal Gaussians, for a
  Gaussian p): its mean is the posterior mean and its variances the inverses of the
  diagonal of the posterior precision, s_i^2 = sigma^2 / M_ii.
"""
import numpy as np


def log_marginal(X, W, b, sigma2):
    """log p(x_n) for every row (N,)."""
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    C = W @ W.T + sigma2 * np.eye(n_features)
    chol = np.linalg.cholesky(C)
    diff = np.linalg.solve(chol, (X - b).T)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (n_features * np.log(2 * np.pi) + log_det + np.sum(diff ** 2, axis=0))


def posterior(X, W, b, sigma2):
    """The exact posterior: means (N, d) and the shared covariance (d, d)."""
    n_latent = W.shape[1]
    M = W.T @ W + sigma2 * np.eye(n_latent)
    means = np.linalg.solve(M, W.T @ (np.asarray(X, dtype=np.float64) - b).T).T
    return means, sigma2 * np.linalg.inv(M)


def best_diagonal_q(X, W, b, sigma2):
    """The diagonal Gaussian q closest to the posterior in KL(q || p): (means, log sigma),
    both (N, d)."""
    means, _ = posterior(X, W, b, sigma2)
    M = W.T @ W + sigma2 * np.eye(W.shape[1])
    log_sigma = 0.5 * np.log(sigma2 / np.diag(M))
    return means, np.broadcast_to(log_sigma, means.shape).copy()


def elbo(X, W, b, sigma2, means, log_sigma):
    """The ELBO of each row (N,) under q = N(means, diag exp(2 log_sigma)), in closed form."""
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    var = np.exp(2.0 * log_sigma)
    resid = X - b - means @ W.T
    column_norms = np.sum(W ** 2, axis=0)
    expected_ll = (-0.5 * n_features * np.log(2 * np.pi * sigma2)
                   - (np.sum(resid ** 2, axis=1) + var @ column_norms) / (2.0 * sigma2))
    kl = 0.5 * np.sum(means ** 2 + var - 1.0 - 2.0 * log_sigma, axis=1)
    return expected_ll - kl


def maximum_likelihood(X, n_latent):
    """Tipping & Bishop's closed-form ML estimate: (W (D, d), b (D,), sigma2).

    W's columns are the leading principal axes scaled by sqrt(lambda_i - sigma2) (the
    rotation R = I).
    """
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    if not 1 <= n_latent < n_features:
        raise ValueError(f"n_latent must be in [1, n_features - 1 = {n_features - 1}], "
                         f"got {n_latent!r}")
    b = X.mean(axis=0)
    cov = np.cov(X, rowvar=False, bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    sigma2 = float(eigenvalues[n_latent:].mean())
    W = eigenvectors[:, :n_latent] * np.sqrt(np.maximum(eigenvalues[:n_latent] - sigma2, 0.0))
    return W, b, sigma2


def gaps(X, W, b, sigma2, means, log_sigma):
    """Per-row log p(x), the best diagonal q's ELBO and the given q's ELBO, in nats:
    the approximation gap is ``log_px - elbo_best``, the amortization gap ``elbo_best -
    elbo_given`` (Cremer, Li & Duvenaud 2018)."""
    best_means, best_log_sigma = best_diagonal_q(X, W, b, sigma2)
    return {"log_px": log_marginal(X, W, b, sigma2),
            "elbo_best": elbo(X, W, b, sigma2, best_means, best_log_sigma),
            "elbo_given": elbo(X, W, b, sigma2, means, log_sigma)}
