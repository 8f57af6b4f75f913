"""The fit loop shared by the mixture estimators (after scikit-learn's ``BaseMixture``).

The base class owns initialisation, the n_init restarts, the iterations, convergence and
warnings; a model fills in four hooks:

* ``_initialize_from_stats(stats)``: parameters from the statistics of the initial
  responsibilities;
* ``_kernel_params()``: the current parameters in the kernel's canonical form;
* ``_bound(stats)``: the lower bound per unit of weight from an E-step's statistics;
* ``_m_step(stats)``: new parameters from an E-step's statistics.

One iteration is one pass of the fused kernel over the chunks (E-step, statistics and the
bound together) followed by the M-step.  ``lower_bound_`` is the bound of the parameters
that entered the last iteration, as in scikit-learn.
"""
import warnings
from contextlib import contextmanager

import numba
import numpy as np

from . import _estep, _init
from ._gaussian import check_covariance_type, is_full
from ._validation import check_data, check_random_state, check_sample_weight


class ConvergenceWarning(UserWarning):
    """The fit stopped at ``max_iter`` before the bound changed by less than ``tol``."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


@contextmanager
def compute_threads(n_jobs):
    """Numba threads for the kernels during a call, restored afterwards."""
    previous = numba.get_num_threads()
    if n_jobs is not None:
        n = numba.config.NUMBA_NUM_THREADS if n_jobs == -1 else int(n_jobs)
        if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"n_jobs must be -1 or between 1 and "
                             f"{numba.config.NUMBA_NUM_THREADS}, got {n_jobs!r}")
        numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class BaseMixture:
    """Base class of the mixture estimators; see ``GaussianMixture`` for the parameters."""

    def __init__(self, n_components, covariance_type, tol, reg_covar, max_iter, n_init,
                 init_params, random_state, warm_start, verbose, verbose_interval, dtype,
                 chunk_size, init_sample_size, n_jobs):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        check_covariance_type(self.covariance_type)
        for name, low in (("n_components", 1), ("n_init", 1), ("max_iter", 0),
                          ("chunk_size", 1), ("init_sample_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("tol", "reg_covar"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.init_params not in _init.INIT_METHODS:
            raise ValueError(f"init_params must be one of {_init.INIT_METHODS}, "
                             f"got {self.init_params!r}")

    def _check_is_fitted(self):
        if not hasattr(self, "means_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 "call 'fit' with appropriate arguments first")

    def _validate_X(self, X, reset):
        n_features = None if reset else self.n_features_in_
        return check_data(X, dtype=self.dtype, n_features=n_features,
                          estimator=type(self).__name__)

    @property
    def _full_stats(self):
        return is_full(self.covariance_type)

    # ------------------------------------------------------------------ fit loop
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with the EM (or VB-EM) algorithm.

        Parameters
        ----------
        X : array-like or h5py.Dataset of shape (n_samples, n_features)
            The rows; a dataset is read chunk by chunk, never whole.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row: an integer weight counts like that many
            copies of the row.

        Returns
        -------
        self
        """
        self._check_parameters()
        X = self._validate_X(X, reset=not (self.warm_start and hasattr(self, "means_")))
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        if X.shape[0] < self.n_components and sample_weight is None:
            raise ValueError(f"Expected n_samples >= n_components but got "
                             f"n_components = {self.n_components}, n_samples = {X.shape[0]}")
        with compute_threads(self.n_jobs):
            self._fit(X, sample_weight)
        return self

    def _fit(self, X, sample_weight):
        do_init = not (self.warm_start and hasattr(self, "means_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        self.n_features_in_ = X.shape[1]
        self._prepare(X, sample_weight)
        best_bound, best_params, best_n_iter, best_converged = -np.inf, None, 0, False
        for init in range(n_init):
            if do_init:
                self._initialize(X, sample_weight, rng)
            bound = -np.inf if do_init else self.lower_bound_
            converged, n_iter = False, 0
            if self.verbose:
                print(f"Initialization {init}")
            for n_iter in range(1, self.max_iter + 1):
                previous = bound
                stats = _estep.accumulate(X, self._kernel_params(), sample_weight,
                                          self.chunk_size)
                bound = self._bound(stats)
                self._m_step(stats)
                change = bound - previous
                if self.verbose >= 2 and n_iter % self.verbose_interval == 0:
                    print(f"  Iteration {n_iter}\t bound {bound:.6f}\t change {change:.3e}")
                if abs(change) < self.tol:
                    converged = True
                    break
            if self.verbose:
                print(f"Initialization {init} {'converged' if converged else 'did not converge'}"
                      f" after {n_iter} iterations; bound {bound:.6f}")
            if bound > best_bound or best_params is None:
                best_bound, best_params = bound, self._get_parameters()
                best_n_iter, best_converged = n_iter, converged
        if not best_converged and self.max_iter > 0:
            warnings.warn(f"Best initialization did not converge in max_iter={self.max_iter} "
                          f"iterations (tol={self.tol}); increase max_iter or tol, or check the "
                          "data", ConvergenceWarning, stacklevel=3)
        self._set_parameters(best_params)
        self.n_iter_ = best_n_iter
        self.converged_ = best_converged
        self.lower_bound_ = best_bound

    def _prepare(self, X, sample_weight):
        """Work done once per fit before the restarts (the Bayesian model's priors)."""

    def _initialize(self, X, sample_weight, rng):
        """Parameters from initial responsibilities on a bounded sample of the rows."""
        sample, weights = _init.draw_sample(X, self.init_sample_size, rng, sample_weight)
        resp = self._initial_resp(sample, rng)
        stats = _init.stats_from_resp(sample, resp, self._full_stats, weights)
        total = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        if stats.weight != total:
            stats = stats.scale(total / stats.weight)
        self._initialize_from_stats(stats)

    def _initial_resp(self, sample, rng):
        return _init.initial_resp(sample, self.n_components, self.init_params, rng)

    def _data_stats(self, X, sample_weight):
        """One-component statistics of all rows (weighted mean and scatter), one pass."""
        # A zero precision factor makes every row's responsibility 1; centring on the first
        # row keeps the scatter free of cancellation.
        ref = np.asarray(X[:1], dtype=np.float64)
        n_features = ref.shape[1]
        factor = np.zeros((1, n_features, n_features) if self._full_stats else (1, n_features))
        params = _estep.KernelParams(np.zeros(1), ref, factor)
        return _estep.accumulate(X, params, sample_weight, self.chunk_size)

    # ------------------------------------------------------------------ prediction
    def _per_row(self, X, **what):
        self._check_is_fitted()
        X = self._validate_X(X, reset=False)
        with compute_threads(self.n_jobs):
            return _estep.per_row(X, self._kernel_params(), chunk_rows=self.chunk_size, **what)

    def score_samples(self, X):
        """Per-row log sum_k rho_nk: the log-likelihood for EM, the row's ELBO term for VB.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._per_row(X, log_norm=True)["log_norm"]

    def score(self, X, y=None):
        """Mean of ``score_samples`` over the rows."""
        return float(self.score_samples(X).mean())

    def predict(self, X):
        """Index of the most probable component of each row, shape (n_samples,)."""
        return self._per_row(X, labels=True)["labels"]

    def predict_proba(self, X):
        """Responsibilities, shape (n_samples, n_components)."""
        return self._per_row(X, resp=True)["resp"]

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``predict(X)`` under the fitted parameters."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def sample(self, n_samples=1):
        """Draw rows from the fitted mixture.

        Returns
        -------
        X : ndarray (n_samples, n_features)
        y : ndarray (n_samples,), the component of each row
        """
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        n_features = self.means_.shape[1]
        rows, labels = [], []
        for k, count in enumerate(counts):
            if self.covariance_type == "full":
                cov = self.covariances_[k]
            elif self.covariance_type == "tied":
                cov = self.covariances_
            elif self.covariance_type == "diag":
                cov = np.diag(self.covariances_[k])
            else:
                cov = self.covariances_[k] * np.eye(n_features)
            rows.append(rng.multivariate_normal(self.means_[k], cov, count))
            labels.append(np.full(count, k, dtype=np.int64))
        return np.vstack(rows), np.concatenate(labels)
