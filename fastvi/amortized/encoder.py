"""An amortized E-step for a fitted Gaussian mixture: a softmax network q(z | x; xi) over
its components, whose amortization gap is exactly a mean KL divergence."""
import copy

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .nn import MLP, Adam
from ..data.checks import check_random_state, validate_rows
from .training import check_dtype, check_networks, logsumexp, minibatches, report


class MixtureEncoder(DensityMixin, BaseEstimator):
    """An amortized E-step for a Gaussian mixture: a softmax network q(z | x; xi) over its
    K components, trained to maximise the ELBO.

    The exact posterior (the responsibilities) is in the family of categorical q, so the
    approximation gap is zero and the amortization gap is exactly the mean
    KL(q(z | x; xi) || p(z | x)) = log p(x) - ELBO(q).

    For a row with log rho_k = log pi_k + log N(x | mu_k, Sigma_k) (the mixture's own
    E-step terms; ``c_k - 1/2 ||U_k^T (x - m_k)||^2`` of a Bayesian mixture) and
    q = softmax(a):

        ELBO = sum_k q_k (log rho_k - log q_k),   dELBO / da_j = q_j (f_j - ELBO),
        f_j = log rho_j - log q_j.

    A meta-estimator (like scikit-learn's ``SelectFromModel``): a fitted ``mixture`` is
    used as it is (prefit; ``fit`` copies it into ``mixture_`` and trains only the
    network); an unfitted one is cloned and fitted on ``X`` first.  ``clone`` of the
    encoder clones the mixture too, so in a ``Pipeline`` or ``GridSearchCV`` every fit
    fits its own mixture.

    Parameters
    ----------
    mixture : fastvi GaussianMixture or BayesianGaussianMixture, default=None
        Fitted or not; None is ``fastvi.GaussianMixture()`` (one component, its defaults).
        An unfitted mixture whose ``random_state`` is None gets one drawn from this
        encoder's ``random_state``, so a seeded encoder is reproducible.
    hidden : tuple of int, default=(64,)
    activation, batch_size, max_epochs, learning_rate, chunk_size, random_state, dtype,
    verbose : as ``VAE``

    Attributes
    ----------
    mixture_ : the fitted mixture whose E-step the network learns
    network_ : MLP (D -> hidden -> K logits)
    elbo_history_ : mean training ELBO per row of every epoch
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when ``fit`` was given a DataFrame whose
        column names are all strings
    """

    def __init__(self, mixture=None, *, hidden=(64,), activation="tanh", batch_size=128,
                 max_epochs=20, learning_rate=1e-3, chunk_size=65536, random_state=None,
                 dtype="float64", verbose=0):
        self.mixture = mixture
        self.hidden = hidden
        self.activation = activation
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.chunk_size = chunk_size
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    def __sklearn_is_fitted__(self):
        return hasattr(self, "network_")

    def _check_parameters(self):
        for name, low in (("batch_size", 1), ("max_epochs", 0), ("chunk_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        check_dtype(self.dtype)
        if self.mixture is not None and not hasattr(self.mixture, "_kernel_params"):
            raise TypeError("mixture must be a fastvi GaussianMixture or "
                            f"BayesianGaussianMixture (or None), got {self.mixture!r}")

    def _log_rho(self, X):
        """The mixture's (B, K) log rho, exactly (centred quadratic forms)."""
        params = self.mixture_._kernel_params()
        X = np.asarray(X, dtype=np.float64)
        log_rho = np.empty((X.shape[0], params.c.shape[0]))
        for k in range(params.c.shape[0]):    # one (B, D) difference at a time
            diff = X - params.means[k]
            projected = diff @ params.factor[k] if params.factor.ndim == 3 else (
                diff * params.factor[k])
            log_rho[:, k] = params.c[k] - 0.5 * np.sum(projected ** 2, axis=1)
        return log_rho

    def fit(self, X, y=None):
        """Fit the mixture if it is not fitted yet, then train the network on ``X``.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
            Checked as ``VAE.fit`` checks it.
        y : ignored

        Returns
        -------
        self : MixtureEncoder
        """
        self._check_parameters()
        from ..mixture import GaussianMixture
        mixture = GaussianMixture() if self.mixture is None else self.mixture
        source = validate_rows(self, X, reset=True, dtype=self.dtype,
                               chunk_rows=self.chunk_size)
        rng = check_random_state(self.random_state)
        try:
            check_is_fitted(mixture)
            prefit = True
        except NotFittedError:
            prefit = False
        if prefit:
            if mixture.n_features_in_ != self.n_features_in_:
                raise ValueError(f"X has {self.n_features_in_} features, but the fitted "
                                 f"mixture is expecting {mixture.n_features_in_} features "
                                 "as input.")
            self.mixture_ = copy.deepcopy(mixture)
        else:
            self.mixture_ = clone(mixture)
            if getattr(self.mixture_, "random_state", 0) is None:
                self.mixture_.random_state = int(rng.integers(2 ** 31))
            self.mixture_.fit(X)        # the user's X, which the mixture checks its own way
        n_components = self.mixture_.means_.shape[0]
        self._check_network(source, n_components)
        self.network_ = MLP((source.n_features, *self.hidden, n_components), self.activation,
                            rng, np.dtype(self.dtype))
        optimiser = Adam(self.network_.params, self.learning_rate)
        self.elbo_history_ = []
        for _ in range(self.max_epochs):
            total, rows = 0.0, 0
            for batch, _ in minibatches(source, rng, self.batch_size):
                elbo, grad = self._elbo_and_grad(batch)
                self.network_.backward(-grad / batch.shape[0])
                optimiser.step(self.network_.grads)
                total += elbo.sum()
                rows += batch.shape[0]
            self.elbo_history_.append(total / rows)
            if self.verbose:
                print(f"epoch {len(self.elbo_history_)}: ELBO {total / rows:.4f} per row")
        return self

    def _check_network(self, source, n_components):
        """Refuse a network whose training cannot fit in memory (``check_networks``),
        naming the larger of its widest layer and ``batch_size`` (clamped to a chunk's
        rows)."""
        hidden = tuple(int(w) for w in self.hidden)
        batch = min(self.batch_size, source.max_chunk_rows)
        sizes = [(batch, f"batch_size {self.batch_size}")]
        if hidden:
            sizes.append((max(hidden), f"hidden {hidden}"))
        check_networks({"network": (source.n_features, *hidden, n_components)}, sizes,
                       self.dtype)

    def _elbo_and_grad(self, X):
        logits = self.network_.forward(X).astype(np.float64)
        log_q = logits - logsumexp(logits)[:, None]
        q = np.exp(log_q)
        f = self._log_rho(X) - log_q
        elbo = np.sum(q * f, axis=1)
        return elbo, q * (f - elbo[:, None])

    def _q(self, X):
        logits = self.network_.forward(np.asarray(X, dtype=self.dtype)).astype(np.float64)
        return np.exp(logits - logsumexp(logits)[:, None])

    def _blocks(self, X, block_rows=4096):
        """Rows of ``X`` (array, dataset or source) in blocks, read chunk by chunk."""
        check_is_fitted(self)
        source = validate_rows(self, X, reset=False, dtype=self.dtype,
                               chunk_rows=self.chunk_size)
        for _, _, chunk in source.chunks():
            for start in range(0, chunk.shape[0], block_rows):
                yield chunk[start:start + block_rows]

    def predict_proba(self, X):
        """The network's q(z | x) over the mixture's components.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        q : ndarray (n_samples, n_components), rows summing to 1
        """
        return np.concatenate([self._q(rows) for rows in self._blocks(X)])

    def predict(self, X):
        """The most probable component of each row under the network's q.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        labels : ndarray (n_samples,), int64
        """
        return np.concatenate([np.argmax(self._q(rows), axis=1) for rows in self._blocks(X)])

    def _rows_elbo(self, rows):
        """(log sum_k rho_k, the network q's ELBO) of each row, exactly."""
        log_rho = self._log_rho(rows)
        q = self._q(rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            elbo = np.sum(np.where(q > 0, q * (log_rho - np.log(q)), 0.0), axis=1)
        return logsumexp(log_rho), elbo

    def score_samples(self, X):
        """The ELBO of each row with the network's q (exact, a sum over the components):
        a lower bound on the row's log p(x) under the mixture, below it by
        KL(q || responsibilities).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        elbo : ndarray (n_samples,), nats
        """
        return np.concatenate([self._rows_elbo(rows)[1] for rows in self._blocks(X)])

    def score(self, X, y=None):
        """The mean ELBO per row (``score_samples``): higher is better.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        y : ignored

        Returns
        -------
        score : float
        """
        return float(self.score_samples(X).mean())

    def gap_report(self, X):
        """Mean nats per row: log p(x), the exact posterior's ELBO (= log p(x)), the
        network's ELBO, and the gaps (approximation 0; amortization the mean KL).  For a
        Bayesian mixture ``log_px`` is log sum_k rho_nk, the row's ELBO term with the
        optimal q(z_n) under the fitted q(theta).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        dict with ``log_px``, ``elbo_best``, ``elbo_inference``, ``approximation_gap``,
        ``amortization_gap``
        """
        log_px, elbo = zip(*(self._rows_elbo(rows) for rows in self._blocks(X)))
        log_px, elbo = np.concatenate(log_px), np.concatenate(elbo)
        return report(log_px.mean(), log_px.mean(), elbo.mean())


__all__ = ["MixtureEncoder"]
