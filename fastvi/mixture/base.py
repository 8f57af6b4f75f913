"""The fit loop shared by the mixture estimators (after scikit-learn's ``BaseMixture``).

The base class owns validation, initialisation, the n_init restarts, warnings and the
online entry point ``partial_fit``; the passes over the data are ``fastvi.engine.loop``'s,
and every statistic and per-row output comes from the estimator's backend
(``fastvi.engine.backend``), never from a kernel called here.  A model fills in the hooks:

* ``_initialize_from_stats(stats)``: parameters from the statistics of the initial
  responsibilities;
* ``_kernel_params()``: the current parameters in the kernel's canonical form;
* ``_m_step(stats)``: new parameters from (summed or blended) statistics;
* ``_kl()``: KL(q(theta) || p(theta)), zero for maximum likelihood;
* ``_get_parameters()`` / ``_set_parameters(params)``.

``lower_bound_`` is per row.  For the batch algorithm it is the bound of the parameters
that entered the last pass, as in scikit-learn.

Why one module of 600-odd lines: it is the one base class, whose fit loop, restarts,
warm starts and ``partial_fit`` share the fit's state; the passes are already
``fastvi.engine.loop``'s, the initialisation ``fastvi.mixture.init``'s, the missing
values' ``fastvi.mixture.missing``'s and the memory sizes ``fastvi.mixture.sizes``'.
"""
import dataclasses
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from . import init as _init
from . import missing as _missing
from . import sizes as _sizes
from .gaussian import check_covariance_type, is_full
from ..data.checks import (InvalidParameterError, check_bool, check_finite_array,
                           check_integer, check_random_state, check_real,
                           check_sample_weight, validate_rows)
from ..engine import loop as _loop
from ..engine import steps as _steps
from ..engine.backend import KernelParams, get_backend, total_stats
from ..engine.truncation import FileSupports, MemorySupports, make_truncation
from ..io.checkpoint import resumed_checkpointer

__all__ = ["BaseMixture", "ConvergenceWarning", "NotFittedError"]


class BaseMixture(_missing.MissingValues, DensityMixin, BaseEstimator):
    """Base class of the mixture estimators; see ``GaussianMixture`` for the parameters.

    A scikit-learn estimator: ``get_params``/``set_params``, ``clone``, pipelines, model
    selection and ``check_estimator`` work; fitted attributes end in ``_``.
    """

    # An estimator read from a checkpoint written before ``backend`` (or ``n_batches``)
    # existed has no such attribute: it ran on the local backend (one chunk a batch).
    backend = "local"
    n_batches = None

    def __init__(self, n_components, covariance_type, tol, reg_covar, max_iter, n_init,
                 init_params, random_state, warm_start, verbose, verbose_interval, dtype,
                 chunk_size, init_sample_size, n_jobs, algorithm, batch_size, learning_offset,
                 learning_decay, shuffle, total_samples, n_active, n_candidates,
                 support_file, backend):
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
        self.algorithm = algorithm
        self.batch_size = batch_size
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.shuffle = shuffle
        self.total_samples = total_samples
        self.n_active = n_active
        self.n_candidates = n_candidates
        self.support_file = support_file
        self.backend = backend

    # ------------------------------------------------------------------ checks
    # Array parameters of either model that, when set, must hold finite numbers (their
    # shapes are checked where the number of features is known).
    _ARRAY_PARAMETERS = ("weights_init", "means_init", "precisions_init", "mean_prior",
                         "covariance_prior")

    def _check_parameters(self):
        """Every constructor argument's type and range, before any data are read: the
        errors name the parameter (``InvalidParameterError``, a ValueError)."""
        check_covariance_type(self.covariance_type)
        for name, low in (("n_components", 1), ("n_init", 1), ("max_iter", 0),
                          ("chunk_size", 1), ("init_sample_size", 1),
                          ("verbose_interval", 1)):
            check_integer(name, getattr(self, name), low)
        if not isinstance(self.verbose, (bool, np.bool_)):     # verbose=True is usual
            check_integer("verbose", self.verbose, 0)
        check_integer("batch_size", self.batch_size, 1, allow_none=True)
        check_integer("n_batches", self.n_batches, 1, allow_none=True)
        backend = self._backend()
        if self.n_jobs is not None:
            backend.check_n_jobs(self.n_jobs)
        check_real("tol", self.tol, 0)
        check_real("reg_covar", self.reg_covar, 0)
        check_real("learning_offset (tau)", self.learning_offset, 0)
        try:
            check_real("learning_decay", self.learning_decay, 0.5, 1.0, low_open=True)
        except ValueError:
            raise InvalidParameterError(
                "learning_decay (kappa) must be in (0.5, 1] for the stochastic step sizes "
                f"to converge, got {self.learning_decay!r}") from None
        check_real("total_samples", self.total_samples, 0, low_open=True)
        check_bool("warm_start", self.warm_start)
        check_bool("shuffle", self.shuffle)
        if self.algorithm not in _loop.ALGORITHMS:
            raise InvalidParameterError(f"algorithm must be one of {_loop.ALGORITHMS}, "
                                        f"got {self.algorithm!r}")
        if self.init_params not in _init.INIT_METHODS:
            raise InvalidParameterError(f"init_params must be one of {_init.INIT_METHODS}, "
                                        f"got {self.init_params!r}")
        for name in self._ARRAY_PARAMETERS:
            if getattr(self, name, None) is not None:
                check_finite_array(name, getattr(self, name))
        _missing.check_missing(self, backend.name, self._truncation() is not None)
        if self._truncation() is not None and backend.name == "cuda":
            from ..engine.cuda import TRUNCATED_REFUSAL
            raise InvalidParameterError(TRUNCATED_REFUSAL)

    def _truncation(self):
        """The truncated-q settings (``n_active``, ``n_candidates``), or None when dense."""
        return make_truncation(self.n_active, self.n_candidates, self.n_components)

    def _backend(self):
        """The ``Backend`` that ``backend`` names or is ("auto", marginalising: local)."""
        auto = isinstance(self.backend, str) and self.backend == "auto" and self._marginalize
        return get_backend("local" if auto else self.backend)

    def _running(self):   # the backend, set up for one call (threads as n_jobs asks)
        return self._backend().running(self.n_jobs)

    def _check_is_fitted(self):
        check_is_fitted(self, "means_")

    def _validate_X(self, X, reset, chunk_rows=None):
        source = validate_rows(self, X, reset=reset, dtype=self.dtype,
                               chunk_rows=chunk_rows or self._chunk_rows())
        source.allow_nan = self._marginalize        # NaN: a missing entry, or an error
        return source

    def _chunk_rows(self):
        """Rows per chunk: the minibatch size for the online algorithms, or for a
        stochastic minibatch larger than ``chunk_size``, its share of it
        (``_minibatch_chunks``)."""
        if self.algorithm != "batch" and self.batch_size is not None:
            return -(-self.batch_size // self._minibatch_chunks())
        return self.chunk_size

    def _minibatch_chunks(self):
        """Chunks per stochastic minibatch: one, unless ``batch_size`` > ``chunk_size``."""
        if self.algorithm != "stochastic":
            return 1
        return _steps.minibatch_chunks(self.batch_size, self.chunk_size)

    def _step_chunks(self, source):
        """Chunks per step of the loop (``FitState.step_chunks``): a stochastic
        minibatch's, or a memoized batch's (``n_batches``, or its default)."""
        if self.algorithm == "stochastic":
            return self._minibatch_chunks()
        if self.algorithm != "memoized":
            return 1
        cache = _steps.stats_bytes(self.n_components, source.n_features, self._full_stats)
        return _steps.memoized_batch_chunks(self.n_batches, source.n_chunks, cache)

    @property
    def _full_stats(self):
        return is_full(self.covariance_type)

    # ------------------------------------------------------------------ fit loop
    def fit(self, X, y=None, sample_weight=None, *, X_val=None, callback=None,
            checkpoint=None, resume=None):
        """Estimate the parameters with the chosen algorithm (``algorithm``).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource of shape (n_samples, n_features)
            The rows; a dataset or source is read chunk by chunk, never whole.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row: an integer weight counts like that many
            copies of the row.
        X_val : array-like, h5py.Dataset or ChunkSource, optional
            Held-out rows: their mean log-normaliser (log-likelihood for EM) is recorded
            after every pass, and the stochastic algorithm converges on it.
        callback : callable, optional
            Called with a dict after every chunk (``{"event": "chunk", ...}``) and every
            pass (``{"event": "pass", "bound": ..., ...}``): progress bars and logs.
        checkpoint : callable or False, optional
            Called with the fit state between chunks (see ``fastvi.io.checkpoint``); a
            ``fastvi.Checkpointer`` removes its file when the fit ends, unless it was made
            with ``keep=True``: only an interrupted or crashed fit leaves one.
        resume : FitState, optional
            Go on from a checkpointed state instead of initialising.  A state read by
            ``fastvi.load_checkpoint`` goes on checkpointing to its file (and removes it
            at the end) unless ``checkpoint`` says otherwise (False: no checkpoint).

        Returns
        -------
        self
        """
        self._check_parameters()
        warm = self.warm_start and hasattr(self, "means_")
        source = self._validate_X(X, reset=not warm)
        self._working_dtype = source.dtype
        sample_weight = check_sample_weight(sample_weight, source.n_rows)
        if source.n_rows < self.n_components and sample_weight is None:
            raise ValueError(f"Expected n_samples >= n_components but got "
                             f"n_components = {self.n_components}, n_samples = {source.n_rows}")
        if sample_weight is not None and resume is None:
            # A zero weight removes a row: fewer weighted rows than components cannot be
            # initialised (as fewer rows cannot, above).
            n_weighted = int(np.count_nonzero(sample_weight))
            if n_weighted < self.n_components:
                raise ValueError(f"Expected at least n_components = {self.n_components} rows "
                                 f"of nonzero sample_weight, got {n_weighted}")
        checkpoint = resumed_checkpointer(resume, checkpoint)
        if checkpoint is not None and self.n_init > 1 and resume is None:
            raise ValueError("checkpoints hold one initialisation: use n_init=1 with a "
                             "checkpoint")
        # Now that the data's shape is known, before anything of its size is allocated.
        _sizes.check_fit(self, source)
        validation = None if X_val is None else self._validate_X(X_val, reset=False)
        _missing.record_missing(self, source)
        with self._running():
            self._fit(source, sample_weight, validation, callback, checkpoint, resume)
        if hasattr(checkpoint, "finish"):
            checkpoint.finish()     # a finished fit needs no checkpoint (unless ``keep``)
        return self

    def save(self, path):
        """Write the fitted model to an HDF5 model file, atomically (``fastvi.load`` reads
        it back; the schema is in ``fastvi.io``)."""
        from ..io.model import save
        save(self, path)

    def _loop(self, source, sample_weight, validation, callback, checkpoint, total_weight=None,
              max_passes=None, shuffle=None):
        return _loop.ChunkLoop(
            self, source, sample_weight,
            max_passes=self.max_iter if max_passes is None else max_passes, tol=self.tol,
            learning_offset=self.learning_offset, learning_decay=self.learning_decay,
            shuffle=self.shuffle if shuffle is None else shuffle, validation=validation,
            callback=callback, checkpoint=checkpoint, total_weight=total_weight,
            backend=self._backend(), moves=self._moves())

    def _moves(self):
        """A batch or memoized fit's moves (BayesianGaussianMixture's); none here."""
        return ()

    def _fit(self, source, sample_weight, validation, callback, checkpoint, resume):
        self._prepare(source, sample_weight)
        loop = self._loop(source, sample_weight, validation, self._reporter(callback), checkpoint)
        # Only a checkpointed fit pays the two chunk reads of the fingerprint.
        described = _loop.describe_data(source, sample_weight, self.n_components,
                                        fingerprint=checkpoint is not None or resume is not None)
        if resume is not None:
            _loop.check_resumable(resume, described, self.algorithm)
            # as many chunks a step as before (a memoized fit's caches are per batch)
            refusal = _steps.resume_refusal(resume.algorithm, resume.step_chunks,
                                            self._step_chunks(source), source.n_chunks)
            if refusal:
                raise _loop.ResumeMismatch(refusal)
            self._check_resumed_supports(resume)
            # a tampered or garbled state is refused here, naming its file: the loop and
            # the kernels (which do not check bounds) take it as it is
            from ..io.checkpoint import validate_state
            validate_state(resume, self, source)
            best = loop.run(resume)
        else:
            best = None
            warm = self.warm_start and hasattr(self, "means_")
            rng = check_random_state(self.random_state)
            for init in range(1 if warm else self.n_init):
                state = self._new_state(source, sample_weight, rng, warm)
                state.data = described
                if self.verbose:
                    print(f"Initialization {init}")
                state = loop.run(state)
                if self.verbose:
                    print(f"Initialization {init} "
                          f"{'converged' if state.converged else 'did not converge'} after "
                          f"{state.n_pass} passes; bound {state.bound:.6f}")
                if best is None or state.bound > best.bound:
                    best = state
        if not best.converged and self.max_iter > 0:
            which = "The best of the initializations" if self.n_init > 1 else "The fit"
            warnings.warn(f"{which} did not converge in max_iter={self.max_iter} passes "
                          f"(tol={self.tol}); increase max_iter or tol, or check the data",
                          ConvergenceWarning, stacklevel=3)
        self._set_parameters(best.params)
        self._publish_dtype()
        self.n_iter_ = best.n_pass
        self.converged_ = best.converged
        self.lower_bound_ = best.bound
        self.lower_bounds_ = [record["bound"] for record in best.history]
        if self._moves():
            self.history_ = [dict(move, **{"pass": record["pass"]})
                             for record in best.history for move in record.get("moves", ())]
        if validation is not None:
            self.validation_history_ = [record["validation"] for record in best.history]

    def _check_resumed_supports(self, state):
        """A resumed fit writes into the supports file its state names: only into the
        ``support_file`` this estimator was given (a checkpoint from elsewhere could name
        any HDF5 file with a ``/supports`` dataset)."""
        stored = getattr(state.supports, "path", None)
        if stored is None:
            return
        given = None if self.support_file is None else os.path.abspath(self.support_file)
        if given != os.path.abspath(stored):
            raise ValueError(f"the checkpoint keeps its supports in {stored!r}, but this "
                             f"estimator's support_file is {self.support_file!r}: give "
                             "support_file the file of the checkpointed fit")

    def _new_state(self, source, sample_weight, rng, warm):
        """An initialised FitState: fresh parameters, or the fitted ones for warm starts."""
        stats = None if warm else self._initialize(source, sample_weight, rng)
        state = _loop.FitState(self.algorithm, self._get_parameters(), rng=rng,
                               decider=self.lower_bound_ if warm else -np.inf,
                               step_chunks=self._step_chunks(source))
        self._start_search(state, rng, source.n_rows, inputs=_source_files(source))
        if self.algorithm == "stochastic":
            state.stats = self._running_stats(stats, source, sample_weight)
        return state

    def _start_search(self, state, rng, n_rows, inputs=()):
        """Supports and a seed for a truncated fit; nothing for a dense or exhaustive one
        (neither draws from ``rng``, so they keep the dense fit's random stream)."""
        truncation = self._truncation()
        if truncation is None or truncation.exhaustive:
            return
        state.search_seed = int(rng.integers(1 << 62))
        if n_rows is None:
            return
        if self.support_file is None:
            state.supports = MemorySupports(n_rows, truncation.n_active)
        else:
            state.supports = FileSupports(self.support_file, n_rows, truncation.n_active,
                                          inputs=inputs)

    def _running_stats(self, stats, source, sample_weight):
        """Where stochastic statistics start: the initialisation's, or one exact E-step
        when the parameters were given or fitted rather than drawn."""
        if stats is not None:
            return stats
        return total_stats(self._backend(), source, self._kernel_params(), sample_weight)

    def _reporter(self, callback):
        """The loop's callback: the user's, plus the verbose pass lines."""
        def report(record):
            if (self.verbose >= 2 and record["event"] == "pass"
                    and record["pass"] % self.verbose_interval == 0):
                extra = f"\t held-out {record['validation']:.6f}" if "validation" in record else ""
                print(f"  Pass {record['pass']}\t bound {record['bound']:.6f}{extra}")
            if callback is not None:
                callback(record)
        return report

    def _prepare(self, source, sample_weight):
        """Work done once per fit before the restarts (the Bayesian model's priors)."""

    def _publish_dtype(self):
        """Fitted float arrays in the working dtype of the data, as scikit-learn keeps
        float32 input's parameters float32; the statistics and every update were float64.
        The kernels read the published parameters (a loaded model file holds only
        those), so prediction is the same before and after a save."""
        self._set_parameters(_cast_floats(self._get_parameters(), self._working_dtype))

    def _kl(self):
        """KL(q(theta) || p(theta)); zero for maximum likelihood."""
        return 0.0

    def _mean_log_norm(self, source):
        """Mean log-normaliser per row of held-out rows under the current parameters."""
        stats = total_stats(self._backend(), source, self._kernel_params())
        return stats.log_norm / stats.weight

    def _initialize(self, source, sample_weight, rng):
        """Parameters from initial responsibilities on a bounded sample of the rows.

        Returns the sample's statistics scaled to the whole data (the stochastic
        algorithm starts its running statistics from them), or None when a model's
        user-given initial parameters replaced them.
        """
        sample, weights = _init.draw_sample(source, self.init_sample_size, rng, sample_weight,
                                            self._backend())
        rows, resp = self._initial_rows_and_resp(sample, rng, weights)   # (holes filled)
        stats = _init.stats_from_resp(rows, resp, self._initial_components(),
                                      self._full_stats, weights)
        _missing.add_hole_variances(stats, sample, rows, resp, weights)
        total = source.n_rows if sample_weight is None else float(sample_weight.sum())
        if stats.weight != total:
            stats = stats.scale(total / stats.weight)
        self._initialize_from_stats(stats)
        return stats

    def _initial_resp(self, sample, rng, weights=None):
        """The sample's initial responsibilities by ``init_params`` (``"auto"`` resolved)."""
        components = self._initial_components()
        method = _init.resolve_init(self.init_params, components)
        return _init.initial_resp(sample, components, method, rng, weights)

    def _initial_components(self):
        """Components a fit starts from (``n_components_init`` of a fit with moves)."""
        return self.n_components

    def _data_stats(self, X, sample_weight):
        """One-component statistics of all rows (weighted mean and scatter), one pass."""
        if self._marginalize and self.n_incomplete_rows_:      # available-case moments
            return _missing.available_case_stats(X, sample_weight, self._full_stats)
        # A zero precision factor makes every row's responsibility 1; centring on the first
        # row keeps the scatter free of cancellation.
        ref = np.asarray(X.read(0, 1), dtype=np.float64)
        n_features = ref.shape[1]
        factor = np.zeros((1, n_features, n_features) if self._full_stats else (1, n_features))
        params = KernelParams(np.zeros(1), ref, factor)
        stats = total_stats(self._backend(), X, params, sample_weight)
        if not np.isfinite(stats.s2).all():
            # This pass's log-likelihoods are 0, so check_result cannot see a row whose
            # square overflows (1e300): scan the rows to name it, not a singular prior.
            for _ in X.chunks():
                pass
        return stats

    def partial_fit(self, X, y=None, sample_weight=None):
        """One online step per chunk of ``X``: stepwise EM for the maximum-likelihood model
        (Cappe & Moulines 2009), stochastic VB for the Bayesian one (Hoffman et al. 2013).

        The first call initialises from ``X``.  Each step blends the chunk's statistics,
        scaled to ``total_samples`` rows, into running statistics with step size
        ``(t + learning_offset) ** -learning_decay``.

        Returns
        -------
        self
        """
        self._check_parameters()
        first = not hasattr(self, "_online_state")
        # one chunk a minibatch of batch_size rows (partial_fit's steps are its chunks)
        source = self._validate_X(X, reset=first, chunk_rows=self.batch_size)
        if first:
            self._working_dtype = source.dtype
        sample_weight = check_sample_weight(sample_weight, source.n_rows)
        total = float(self.total_samples)
        with self._running():
            if first:
                if source.n_rows < self.n_components:
                    raise ValueError(f"the first partial_fit needs at least n_components = "
                                     f"{self.n_components} rows, got {source.n_rows}")
                _sizes.check_fit(self, source, supports=False)
                _missing.record_missing(self, source)    # (of the first minibatch)
                self._prepare(source, sample_weight)
                rng = check_random_state(self.random_state)
                stats = self._running_stats(self._initialize(source, sample_weight, rng),
                                            source, sample_weight)
                self._online_state = _loop.FitState("stochastic", self._get_parameters(),
                                                    stats=stats.scale(total / stats.weight),
                                                    rng=rng)
                # the rows of a stream are not seen again: no supports are kept
                self._start_search(self._online_state, rng, None)
            state = self._online_state
            state.n_pass, state.converged, state.order = 0, False, None
            loop = self._loop(source, sample_weight, None, None, None, total_weight=total,
                              max_passes=1, shuffle=False)
            loop.run(state)
        self._set_parameters(state.params)
        self._publish_dtype()
        self.n_iter_ = state.step
        self.converged_ = False
        self.lower_bound_ = state.bound
        return self

    # ------------------------------------------------------------------ prediction
    def _per_row(self, X, **what):
        self._check_is_fitted()
        source = self._validate_X(X, reset=False)
        _sizes.check_outputs(source.n_rows, self.means_.shape[0],
                             f"{source.label} ({source.n_rows} rows)", **what)
        with self._running():
            return self._backend().per_row(source, self._kernel_params(), **what)

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

    def predict_proba(self, X, sparse=False):
        """Responsibilities, shape (n_samples, n_components).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource
        sparse : bool, default=False
            Return a ``scipy.sparse.csr_matrix``.  For a truncated model (``n_active`` =
            L) it holds each row's L most probable components, renormalised: the q that
            the truncated family takes with an exhaustive search.  For a dense model it
            holds the nonzero responsibilities.  Either way no dense N x K array is made.
        """
        if not sparse:
            return self._per_row(X, resp=True)["resp"]
        self._check_is_fitted()
        source = self._validate_X(X, reset=False)
        n_active = self.n_active if self.n_active is not None else self.means_.shape[0]
        with self._running():
            return self._backend().sparse_resp(source, self._kernel_params(), n_active)

    def top_responsibilities(self, X, n_top):
        """Each row's ``n_top`` most probable components and their responsibilities
        renormalised over them, most probable first (every component evaluated, exactly):
        the layout of large K, where ``predict_proba`` would be N x K.

        Returns
        -------
        index : ndarray of shape (n_samples, n_top), int32
        resp : ndarray of shape (n_samples, n_top)
        """
        self._check_is_fitted()
        # the live components: fewer than n_components after merge moves
        out = self._per_row(X, top=check_integer("n_top", n_top, 1, self.means_.shape[0]))
        return out["top_index"], out["top_resp"]

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


def _cast_floats(value, dtype):
    """``value`` (an array, a tuple of them or a dataclass of them) with every float array
    in ``dtype``; float64 is returned unchanged, bit for bit."""
    if isinstance(value, np.ndarray):
        return value.astype(dtype, copy=False) if value.dtype.kind == "f" else value
    if isinstance(value, tuple):
        return tuple(_cast_floats(part, dtype) for part in value)
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{
            field.name: _cast_floats(getattr(value, field.name), dtype)
            for field in dataclasses.fields(value)})
    return value


def _source_files(source):
    """The files a chunk source reads its rows from (HDF5 files, memory-mapped ``.npy``
    files): the paths a support file must not replace."""
    parts = getattr(source, "sources", None)
    if parts is not None:
        return [path for part in parts for path in _source_files(part)]
    dataset = getattr(source, "dataset", None)
    if dataset is not None and hasattr(dataset, "file"):
        return [dataset.file.filename]
    filename = getattr(getattr(source, "X", None), "filename", None)     # a numpy.memmap
    return [filename] if filename else []
