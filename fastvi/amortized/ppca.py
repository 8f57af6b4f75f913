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

INITS = ("closed_form", "random")


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
    return from_moments(X.mean(axis=0), np.cov(X, rowvar=False, bias=True), n_latent)


def from_moments(mean, cov, n_latent):
    """The ML estimate (T&B eq. 7-8) from the mean and the (biased) sample covariance:
    (W (D, d), b (D,), sigma2).

    With ``n_latent >= D`` the ML noise variance is 0 (the model is degenerate); it is
    floored, as it is for data of rank below ``n_latent``, at 1e-6 of the mean
    eigenvalue (relative, so that data of any scale get the same start; the smallest
    positive float for constant data), so that log sigma^2 stays finite; W then has zero
    columns past the D-th.  Each eigenvector's sign is fixed (its largest entry
    positive, as scikit-learn's ``svd_flip``), so the start, and the fit from it, do not
    depend on the LAPACK build.
    """
    n_features = cov.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]
    largest = eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(n_features)]
    eigenvectors = eigenvectors * np.where(largest < 0, -1.0, 1.0)
    kept = min(n_latent, n_features)
    sigma2 = float(eigenvalues[kept:].mean()) if kept < n_features else 0.0
    sigma2 = max(sigma2, 1e-6 * float(eigenvalues.mean()), np.finfo(float).tiny)
    W = np.zeros((n_features, n_latent))
    W[:, :kept] = eigenvectors[:, :kept] * np.sqrt(np.maximum(eigenvalues[:kept] - sigma2,
                                                              0.0))
    return W, np.asarray(mean, dtype=np.float64), sigma2


def streamed_moments(source, progress=None):
    """The mean (D,) and the biased covariance (D, D) of a chunk source's rows, in one
    pass in float64.  Each chunk's sums are taken about the first chunk's mean (a shift
    that keeps the covariance from cancelling catastrophically when the mean is large
    against the spread), then merged.  ``progress`` is called with each chunk's rows."""
    shift, count = None, 0
    for _, _, chunk in source.chunks():
        rows = np.asarray(chunk, dtype=np.float64)
        if shift is None:
            shift = rows.mean(axis=0)
            total = np.zeros_like(shift)
            outer = np.zeros((shift.size, shift.size))
        centred = rows - shift
        total += centred.sum(axis=0)
        outer += centred.T @ centred
        count += rows.shape[0]
        if progress is not None:
            progress(rows.shape[0])
    offset = total / count
    return shift + offset, outer / count - np.outer(offset, offset)


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
    ``variance`` (fixed: ``()``, ``'gaussian'``, ``'learned'``), plus ``init``:

    init : {'closed_form', 'random'}, default='closed_form'
        Where training starts.  ``'closed_form'``: one extra pass over ``X`` (streamed,
        chunk by chunk) for its mean and covariance, and the decoder set to Tipping &
        Bishop's maximum-likelihood solution (eq. 7-8: W = U_d (L_d - sigma^2 I)^1/2,
        b the mean, sigma^2 the mean of the discarded eigenvalues); a linear encoder set
        to the exact posterior's linear map (mean M^-1 W^T (x - b), eq. 6) with the best
        diagonal variances sigma^2 / M_ii (exact here: with R = I, M is diagonal), and
        per-example psi to each row's best diagonal q (a second pass).  That is the
        optimum of the ELBO for a linear encoder (the amortization gap is zero there),
        so the epochs only move it by Adam's noise.  An encoder with hidden layers
        starts at random (it cannot represent the map exactly) beside the closed-form
        decoder.  ``'random'``: the VAE's Glorot start, to watch the optimiser find the
        solution (from a random start the default schedule stops far from it: log p(x)
        2-3 nats per row short on 20,000 rows of 4 features, and an amortization gap
        anywhere from 0.01 to 100 nats, depending on the seed).

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
    # the default of ``init`` for a model pickled or checkpointed before it existed
    # (such a model was trained from the random start, and a resumed fit does not start
    # again)
    init = "closed_form"

    def __init__(self, n_latent=2, *, encoder_hidden=(), activation="tanh",
                 inference="amortized", refine_steps=10, refine_learning_rate=0.01,
                 batch_size=128, max_epochs=20, learning_rate=1e-3, chunk_size=65536,
                 random_state=None, dtype="float64", n_jobs=None, verbose=0,
                 init="closed_form"):
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
        self.init = init

    def _check_parameters(self):
        super()._check_parameters()
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    def _initialise(self, source, callback=None):
        """Start from the closed-form solution (``init='closed_form'``; see the class's
        docstring): the decoder from one streamed pass of moments, a linear encoder from
        the exact posterior, per-example psi from each row's best diagonal q (a second
        pass); each pass's chunks reported to ``callback`` (``VAE.fit``'s ``init``
        records)."""
        if self.init != "closed_form":
            return

        def progress(step):
            if callback is None:
                return lambda n_rows: None
            return lambda n_rows: callback({"event": "init", "step": step, "rows": n_rows})
        d = self.n_latent
        mean, cov = streamed_moments(source, progress("moments"))
        W, b, sigma2 = from_moments(mean, cov, d)
        # Adam's steps in the data's units (its RMS spread s): W and b move by about
        # learning_rate * s, the encoder's weights (latent per data unit) by
        # learning_rate / s, as if the rows were standardised; otherwise rows of spread
        # 1e-3 or 1e3 would be pushed off the solution by steps far larger than it
        scale = float(np.sqrt(max(np.trace(cov) / cov.shape[0], 1e-300)))
        self._decoder_opt.scales = [scale, scale]
        if self.encoder_ is not None:
            # the first layer's weights alone are per data unit (a hidden layer's are not)
            self._encoder_opt.scales = [1.0 / scale] + [1.0] * (2 * self.encoder_.n_layers - 1)
        dtype = self.decoder_.dtype
        # in place: the optimisers hold these very arrays
        self.decoder_.params[0][...] = W.T
        self.decoder_.params[1][...] = b
        self.log_variance_ = float(np.log(sigma2))
        M = W.T @ W + sigma2 * np.eye(d)
        log_sigma = 0.5 * np.log(sigma2 / np.diag(M))
        if self.encoder_ is not None and self.encoder_.n_layers == 1:
            mean_map = np.linalg.solve(M, W.T).T             # (D, d): x -> M^-1 W^T x
            weights, bias = self.encoder_.params
            weights[:, :d], weights[:, d:] = mean_map, 0.0
            bias[:d], bias[d:] = -b @ mean_map, log_sigma
        if self.encoder_ is None:
            psi_done = progress("psi")
            for _, start, chunk in source.chunks():
                means, _ = posterior(chunk, W, b, sigma2)
                rows = slice(start, start + chunk.shape[0])
                self.psi_[rows, :d] = means.astype(dtype)
                self.psi_[rows, d:] = log_sigma.astype(dtype)
                psi_done(chunk.shape[0])

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
