"""PPCA closed forms against independent computations (SciPy densities, direct KL
minimisation, Tipping & Bishop's stationarity conditions)."""
import numpy as np
import pytest
from scipy import optimize, stats

from fastvi.amortized import ppca


def ppca_data(n_rows=4000, n_features=5, n_latent=2, sigma2=0.3, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_features, n_latent))
    b = rng.standard_normal(n_features)
    Z = rng.standard_normal((n_rows, n_latent))
    X = Z @ W.T + b + np.sqrt(sigma2) * rng.standard_normal((n_rows, n_features))
    return X, W, b, sigma2


def test_log_marginal_is_the_gaussian_density():
    X, W, b, sigma2 = ppca_data(50)
    expected = stats.multivariate_normal(b, W @ W.T + sigma2 * np.eye(5)).logpdf(X)
    np.testing.assert_allclose(ppca.log_marginal(X, W, b, sigma2), expected, rtol=1e-12)


def test_exact_posterior_q_makes_the_elbo_equal_log_px():
    """With q the full posterior the ELBO is log p(x); with a diagonal q it is below, and
    the best diagonal q's ELBO is the maximum over diagonal Gaussians."""
    X, W, b, sigma2 = ppca_data(30)
    means, cov = ppca.posterior(X, W, b, sigma2)
    log_px = ppca.log_marginal(X, W, b, sigma2)
    # ELBO of a full-covariance q at the posterior, by the same closed form extended:
    # E||x - b - W z||^2 = ||x - b - W m||^2 + tr(W S W^T); KL to N(0, I).
    resid = X - b - means @ W.T
    exp_ll = (-0.5 * 5 * np.log(2 * np.pi * sigma2)
              - (np.sum(resid ** 2, axis=1) + np.trace(W @ cov @ W.T)) / (2 * sigma2))
    kl = 0.5 * (np.sum(means ** 2, axis=1) + np.trace(cov) - 2 - np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(exp_ll - kl, log_px, rtol=1e-10)

    best_means, best_log_sigma = ppca.best_diagonal_q(X, W, b, sigma2)
    best = ppca.elbo(X, W, b, sigma2, best_means, best_log_sigma)
    assert np.all(best < log_px)

    def negative_elbo(flat):
        return -ppca.elbo(X[:1], W, b, sigma2, flat[None, :2], flat[None, 2:])[0]
    found = optimize.minimize(negative_elbo, np.zeros(4), method="BFGS", tol=1e-12)
    assert -found.fun == pytest.approx(best[0], rel=1e-8)
    np.testing.assert_allclose(found.x[:2], best_means[0], atol=1e-5)
    np.testing.assert_allclose(found.x[2:], best_log_sigma[0], atol=1e-5)


def test_approximation_gap_is_the_kl_of_the_best_diagonal_q():
    X, W, b, sigma2 = ppca_data(20)
    result = ppca.gaps(X, W, b, sigma2, *ppca.best_diagonal_q(X, W, b, sigma2))
    means, cov = ppca.posterior(X, W, b, sigma2)
    _, log_sigma = ppca.best_diagonal_q(X, W, b, sigma2)
    q_var = np.exp(2 * log_sigma[0])
    precision = np.linalg.inv(cov)
    # KL(N(m, diag v) || N(m, S)) = 1/2 (tr(S^-1 diag v) - d + log|S| - sum log v)
    kl = 0.5 * (np.sum(np.diag(precision) * q_var) - 2 + np.linalg.slogdet(cov)[1]
                - np.sum(np.log(q_var)))
    np.testing.assert_allclose(result["log_px"] - result["elbo_best"], kl, rtol=1e-9)
    np.testing.assert_allclose(result["elbo_best"], result["elbo_given"], rtol=1e-14)


def test_maximum_likelihood_is_stationary_and_beats_the_truth():
    X, W_true, b_true, sigma2_true = ppca_data()
    W, b, sigma2 = ppca.maximum_likelihood(X, 2)
    assert ppca.log_marginal(X, W, b, sigma2).sum() >= ppca.log_marginal(
        X, W_true, b_true, sigma2_true).sum()
    # Tipping & Bishop eq. 7: the ML W satisfies S C^-1 W = W
    S = np.cov(X, rowvar=False, bias=True)
    C = W @ W.T + sigma2 * np.eye(5)
    np.testing.assert_allclose(S @ np.linalg.solve(C, W), W, atol=1e-10)
    assert sigma2 == pytest.approx(sigma2_true, rel=0.1)
    np.testing.assert_allclose(W @ W.T, W_true @ W_true.T, atol=0.25)
    with pytest.raises(ValueError, match="n_latent must be in"):
        ppca.maximum_likelihood(X, 5)
