"""Probabilistic PCA: the closed forms (where every gap of amortized inference is exact) and
the estimator `PPCA`, the VAE with a linear decoder fitted by amortized inference.

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
from sklearn.utils.validation import check_is_fitted

from .training import report
from .vae import VAE


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


class PPCA(VAE):
    """Probabilistic PCA, x = W z + b + noise (Tipping & Bishop 1999), fitted by
    variational inference: the VAE with a linear decoder and a learned variance, where
    every gap has a closed form.

    Parameters are those of ``VAE`` less ``decoder_hidden``, ``likelihood`` and
    ``variance`` (fixed: ``()``, ``'gaussian'``, ``'learned'``).

    Attributes
    ----------
    components_ : ndarray (n_latent, n_features)
        W^T, the transpose of Tipping & Bishop's W: row i maps z_i into the data space,
        in the layout of scikit-learn's ``PCA.components_`` (which has unit rows; these
        are scaled, and span the same principal subspace at the maximum likelihood).
    mean_ : ndarray (n_features,)
        b.
    noise_variance_ : float
        sigma^2.
    Others as ``VAE``.
    """

    # the model's fixed settings, read where the VAE reads its parameters (class
    # attributes, not constructor parameters: get_params and clone do not see them)
    decoder_hidden = ()
    likelihood = "gaussian"
    variance = "learned"

    def __init__(self, n_latent=2, *, encoder_hidden=(), activation="tanh",
                 inference="amortized", refine_steps=10, refine_learning_rate=0.01,
                 batch_size=128, max_epochs=20, learning_rate=1e-3, chunk_size=65536,
                 random_state=None, dtype="float64", n_jobs=None, verbose=0):
        self.n_latent = n_latent
        self.encoder_hidden = encoder_hidden
        self.activation = activation
        self.inference = inference
        self.refine_steps = refine_steps
        self.refine_learning_rate = refine_learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.chunk_size = chunk_size
        self.random_state = random_state
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.verbose = verbose

    @property
    def components_(self):
        check_is_fitted(self)
        return self.decoder_.params[0].astype(np.float64)     # the decoder's (d, D) W^T

    @property
    def mean_(self):
        check_is_fitted(self)
        return self.decoder_.params[1].astype(np.float64)

    @property
    def noise_variance_(self):
        check_is_fitted(self)
        return float(np.exp(self.log_variance_))

    def _model(self):
        """(W (D, d), b, sigma^2) in Tipping & Bishop's layout, for ``fastvi.amortized.ppca``."""
        return self.components_.T, self.mean_, self.noise_variance_

    def log_likelihood(self, X):
        """Exact log p(x) of each row under the fitted model (Tipping & Bishop 1999,
        eq. 4: x ~ N(b, W W^T + sigma^2 I)).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        log_px : ndarray (n_samples,), nats
        """
        return self._per_block(X, lambda rows: log_marginal(rows, *self._model()),
                               block_rows=65536)

    def gap_report(self, X):
        """Mean nats per row on ``X``: log p(x), the ELBO of the best diagonal q, the
        ELBO of the fitted inference, and the two gaps, all in closed form (no sampling,
        no optimisation; semi-amortized and per-example psi are refined on row-keyed
        draws from seed 0).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        dict with ``log_px``, ``elbo_best``, ``elbo_inference``, ``approximation_gap``
        (log_px - elbo_best), ``amortization_gap`` (elbo_best - elbo_inference)
        """
        d = self.n_latent

        def rows_report(rows):
            psi = self._psi(rows).astype(np.float64)
            result = gaps(rows, *self._model(), psi[:, :d], psi[:, d:])
            return result["log_px"], result["elbo_best"], result["elbo_given"]

        log_px, best, given = self._per_block(X, rows_report, block_rows=65536)
        return report(log_px.mean(), best.mean(), given.mean())
