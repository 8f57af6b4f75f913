"""scikit-learn-style Gaussian mixture estimators on the fused kernels."""
import numpy as np

from . import em as _em, init as _init, moves as _moves, vb as _vb
from .base import BaseMixture
from ..data.checks import InvalidParameterError, check_integer, check_sample_weight
from ..data.sources import ArraySource
from .gaussian import (covariances_from_precisions, n_parameters, precision_cholesky,
                        precisions_from_cholesky)

_COMMON_DOC = """
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    TOL_AND_REG
    max_iter : int, default=100
    n_init : int, default=1
        Number of initialisations; the best bound is kept.
    init_params : {'auto', 'kmeans', 'k-means++', 'k-means||', 'random', \
'random_from_data'}, default='auto'
        How initial responsibilities are drawn, on at most ``init_sample_size`` rows.
        ``k-means||`` is the scalable k-means++ of Bahmani et al. (2012): two rounds of
        oversampling by matrix products instead of K greedy steps, each row then given to
        its nearest seed; at large K it costs a small part of ``k-means++``.  ``'auto'``:
        ``k-means||`` from ``n_components`` = 256 on, else ``kmeans`` (Lloyd's
        iterations from k-means++ seeds, scikit-learn's default); never by where the
        rows are stored, so a file and an array give the same fit.
    random_state : int, numpy Generator or None
    warm_start : bool, default=False
        Start a new ``fit`` from the fitted parameters.
    verbose : int, default=0
        1 prints each initialisation, 2 also every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
    dtype : {None, 'float32', 'float64'}, default=None
        Working dtype of in-memory data: None keeps float32 as float32 and converts
        anything else to float64.  Accumulation is always in float64.
    chunk_size : int, default=65536
        Rows per kernel call.  Results are bit-identical for a given chunk size and seed,
        whatever the number of threads.
    init_sample_size : int, default=100000
        At most this many rows are used for initialisation.
    n_jobs : int or None, default=None
        Numba threads for the kernels (None: Numba's default, -1: all).
    algorithm : {'batch', 'stochastic', 'memoized'}, default='batch'
        How chunk statistics are combined: exact full passes (EM / VB-EM); stochastic
        (stepwise EM / stochastic VB, Hoffman et al. 2013); memoized (incremental EM /
        memoized VB, Hughes & Sudderth 2013).  ``max_iter`` counts passes over the data.
    batch_size : int or None, default=None
        Rows per minibatch for the online algorithms (None: ``chunk_size``).  Up to
        ``chunk_size``, a minibatch is one chunk of ``batch_size`` rows.  Larger, a
        stochastic minibatch is ``m = ceil(batch_size / chunk_size)`` chunks of
        ``ceil(batch_size / m)`` rows, computed together (in parallel on a Dask cluster)
        and added in the tree of ``fastvi.engine.reduce``; the step size is per minibatch.
    n_batches : int or None, default=None
        Memoized: the cache holds one set of statistics per batch of consecutive chunks
        (bnpy's ``nBatch``), and each step recomputes one batch, its chunks together (in
        parallel on a Dask cluster), then updates.  Each pass visits the batches in a new
        random order (``shuffle``).  None: one batch per chunk up to 64 chunks; beyond,
        64 batches, or fewer where 64 caches (with the tree above them) would take more
        than 256 MiB.  ``n_batches`` >= the number of chunks is one chunk each.
    learning_offset, learning_decay : float, default=10.0, 0.7
        tau >= 0 and kappa in (0.5, 1] of the step size ``rho_t = (t + tau)^-kappa``.
    shuffle : bool, default=True
        Visit the minibatches in a new random order every pass (online algorithms).
    total_samples : float, default=1e6
        The size of the stream that ``partial_fit`` stands for (its ``N``).
    n_active : int or None, default=None
        Truncated variational EM: each row's q(z_n) is restricted to its ``n_active`` (L)
        most probable components, ``q_n(k) = rho_nk / sum_{j in S_n} rho_nj`` on the
        support S_n (L = 1 is hard EM).  None is the exact dense E-step.
    n_candidates : int or None, default=None
        Components evaluated per row to find the support (G >= L): the row's previous
        support, the neighbours of its members, a few random ones (Forster & Lucke 2018;
        Hirschberger et al. 2022).  The work per row depends on G, not on K.  None (or
        >= K) evaluates all K components, so the top L are exact.  The supports are kept
        per row between passes: an (n_samples, L) int32 array in memory, or in
        ``support_file``.
    support_file : str or None, default=None
        An HDF5 file for the per-row supports of a truncated fit (data larger than
        memory); created at ``fit``, overwritten if it exists, needed until the fit (or a
        resumed fit) ends.  None keeps them in memory.
    missing : {'error', 'marginalize'}, default='error'
        What a NaN entry is.  ``'error'``: bad input, refused naming its row.
        ``'marginalize'``: a value missing at random, a latent variable (Ghahramani &
        Jordan 1994): the E-step uses each row's observed coordinates (the marginal
        density), the M-step the expected statistics E[x_m | x_o, z] and the conditional
        covariance, so EM stays exact and the VB bound stays the exact ELBO.  Chunks
        without NaN take the ordinary kernels at their speed and bits; a row with every
        entry missing adds nothing.  ``predict``, ``predict_proba``, ``score_samples``
        accept such rows, and ``impute`` fills them.  Not with ``n_active`` or
        ``backend="cuda"``.  See docs/missing.md.
    backend : str or Backend, default="local"
        What computes the chunk statistics and per-row outputs: ``"local"``, the fused
        Numba kernels on this machine's cores; ``"cuda"``, the kernels of
        ``fastvi.kernels.cuda`` on an NVIDIA GPU (``pip install 'fastvi[cuda]'``; the
        same results to rounding, bit for bit from run to run; not with ``n_active``;
        docs/gpu.md); ``"auto"``, the GPU when one is usable, else ``"local"``; or a
        ``fastvi.engine.backend.Backend`` instance (see that module for the contract
        every backend keeps)."""


class GaussianMixture(BaseMixture):
    __doc__ = """Gaussian mixture fitted by maximum likelihood with EM.

    Parameters
    ----------""" + _COMMON_DOC.replace("TOL_AND_REG", """tol : float, default=1e-3
        Convergence threshold on the change of the per-row log-likelihood (scikit-learn's
        meaning and default).
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance estimate (scikit-learn's M-step,
        ``Sigma_k = S_k + reg_covar I``).  This update is the exact maximiser of the
        expected log-likelihood of rows blurred by N(0, reg_covar I) noise, not of the
        log-likelihood that the E-step and ``lower_bound_`` use, so with ``reg_covar >
        0`` the bound may fall; see ``lower_bound_``.""") + """
    weights_init, means_init, precisions_init : array-like, optional
        Initial parameters (scikit-learn's shapes); when all three are missing for a
        part, it comes from ``init_params``.

    Attributes
    ----------
    weights_ : (K,)
    means_ : (K, D)
    covariances_ : (K, D, D), (D, D), (K, D) or (K,) by ``covariance_type``
    precisions_ : like ``covariances_``
    precisions_cholesky_ : like ``covariances_``; upper-triangular U with U U^T = precision
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean (weighted) log-likelihood of the parameters entering the last iteration; with
        ``n_active`` set, the free energy of the truncated q (a lower bound on it).

        When it never decreases: with ``reg_covar=0`` the batch bound, and the memoized
        one after its first pass, never decrease (EM and incremental EM are coordinate
        ascent on it; Neal & Hinton 1998), up to rounding: 1e-12 of its size, plus about
        1e-15 times the data's distance from the origin in units of the smallest
        component standard deviation and times the covariances' condition number (so no
        promise holds once a covariance is singular to float precision, as
        ``reg_covar=0`` makes it on repeated rows).  With ``reg_covar > 0`` a batch pass from
        parameters theta to theta' changes it by at least ``reg_covar / 2 * sum_k pi_k
        (tr Sigma'_k^-1 - tr Sigma_k^-1)`` nats per row (pi_k: the share of the
        responsibilities under theta), which is above ``-reg_covar D / (2 lambda_min)``
        (lambda_min the smallest eigenvalue of the Sigma_k), and so above ``-D/2``: a
        negligible fall when ``reg_covar`` is far below the components' variances, a
        visible one when a component collapses onto a few repeated rows (7e-3 nats per
        row on six rows, three of them equal, with ``reg_covar=0.1``;
        ``tests/test_bounds.py``).  Memoized EM obeys the same inequality at each chunk
        step.  The stochastic bound is a noisy estimate and may fall.
    lower_bounds_ : list of float
        The bound of every iteration of the best initialisation (``lower_bound_`` last).
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when ``X`` was a DataFrame with string
        column names

    The float arrays are float32 when the data were (scikit-learn's convention); every
    statistic and update is computed in float64 and rounded once.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="auto", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, dtype=None, chunk_size=65536,
                 init_sample_size=100_000, n_jobs=None, algorithm="batch", batch_size=None,
                 learning_offset=10.0, learning_decay=0.7, shuffle=True, total_samples=1e6,
                 n_active=None, n_candidates=None, support_file=None, backend="local",
                 n_batches=None, missing="error"):
        super().__init__(n_components, covariance_type, tol, reg_covar, max_iter, n_init,
                         init_params, random_state, warm_start, verbose, verbose_interval,
                         dtype, chunk_size, init_sample_size, n_jobs, algorithm, batch_size,
                         learning_offset, learning_decay, shuffle, total_samples, n_active,
                         n_candidates, support_file, backend)
        self.n_batches = n_batches
        self.missing = missing
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # hooks ------------------------------------------------------------------
    def _initialize(self, X, sample_weight, rng):
        given = (self.weights_init, self.means_init, self.precisions_init)
        stats = None
        if any(part is None for part in given):
            stats = super()._initialize(X, sample_weight, rng)
        if self.weights_init is not None:
            self.weights_ = self._checked_init("weights_init", (self.n_components,))
            if not np.isclose(self.weights_.sum(), 1.0) or np.any(self.weights_ < 0):
                raise ValueError("weights_init must be non-negative and sum to 1")
        if self.means_init is not None:
            self.means_ = self._checked_init("means_init", (self.n_components, X.shape[1]))
        if self.precisions_init is not None:
            shape = self._parameter_shape(X.shape[1])
            precisions = self._checked_init("precisions_init", shape)
            self.covariances_ = covariances_from_precisions(precisions, self.covariance_type)
            self.precisions_cholesky_ = precision_cholesky(self.covariances_, self.covariance_type)
        # Statistics that no longer match the given parameters are not returned.
        return None if any(part is not None for part in given) else stats

    def _parameter_shape(self, n_features):
        k, d = self.n_components, n_features
        return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[
            self.covariance_type]

    def _checked_init(self, name, shape):
        value = np.array(getattr(self, name), dtype=np.float64)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        return value

    def _initialize_from_stats(self, stats):
        self._m_step(stats)

    def _kernel_params(self):
        return self._marked(_em.kernel_params(self.weights_, self.means_,
                                              self.precisions_cholesky_,
                                              self.covariance_type))

    def _m_step(self, stats):
        self.weights_, self.means_, self.covariances_ = _em.m_step(
            stats, self.covariance_type, self.reg_covar)
        self.precisions_cholesky_ = precision_cholesky(self.covariances_, self.covariance_type)

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params

    @property
    def precisions_(self):
        return precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    # model selection ----------------------------------------------------------
    def _n_parameters(self):
        return n_parameters(self.covariance_type, self.n_components, self.means_.shape[1])

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n_rows = X.shape[0]
        return -2.0 * self.score(X) * n_rows + self._n_parameters() * np.log(n_rows)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2.0 * self.score(X) * X.shape[0] + 2.0 * self._n_parameters()


class BayesianGaussianMixture(BaseMixture):
    __doc__ = """Gaussian mixture fitted by variational Bayes EM (Bishop 2006, section 10.2).

    The weights have a Dirichlet-distribution or a truncated Dirichlet-process
    (stick-breaking) prior; each component a Normal-Wishart prior (full), one shared
    Wishart (tied), or Normal-Gamma priors (diag, spherical).

    Parameters
    ----------""" + _COMMON_DOC.replace("TOL_AND_REG", """tol : float, default=1e-5
        Convergence threshold on the change of the per-row ELBO (nats per row).
        scikit-learn's ``tol=1e-3`` is on a total bound, which is 1e-3 / N per row: on
        small data (N = 569, breast cancer) about 2e-6, on a million rows 1e-9, which a
        streamed fit would never meet.  1e-5 per row stops within about 1e-6 nats per
        row of a fit to 1e-9 on small data and after a few dozen passes on large data.
    reg_covar : float, default=1e-6
        Added to the diagonal of ``covariance_prior`` (the inverse scale of the Wishart,
        or the Gamma rates), so that singular data (a constant column, fewer rows than
        features) still have a proper prior and positive definite posteriors.
        scikit-learn adds it to every component's covariance estimate instead, which is
        not the optimum of the ELBO: there the bound can fall.  Here every update is the
        exact coordinate-ascent step, so the batch ELBO, and the memoized one after its
        first pass, never decrease (see ``lower_bound_``).""") + """
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration_prior : float, default 1/n_components
    mean_precision_prior : float, default 1
    mean_prior : (D,), default the mean of the data
    degrees_of_freedom_prior : float, default D
    covariance_prior : (D, D), (D,) or float by covariance_type, default from the data's
        covariance (ddof=1), as in scikit-learn
    moves : sequence of {'merge', 'birth', 'delete'} or None, default None
        Moves that let a batch or memoized fit (local or Dask backend, dense q) escape
        optima where clusters are split between components, share one, or components
        are left with nothing to explain (Hughes & Sudderth 2013; Hughes, Kim & Sudderth
        2015).  Each is accepted only when it raises the exact ELBO; ``n_components`` is
        then a cap, and the fitted attributes have one row per live component, in their
        order.  A memoized fit moves from its second pass on.

        * ``'merge'``: each pass also sums the entropy that each candidate pair (each
          component with its two nearest) would lose; at its end the pairs that raise
          the ELBO are merged, best first, one merge per component per pass (the merged
          component takes the place of the first of its pair).
        * ``'birth'``: on a sample of 50,000 rows, the 8 components that are the most
          probable for most of its rows (and not tried yet) each get a small variational
          fit of up to 10 components to those rows; those whose fit beats one component
          are split (the first part in the component's place, the rest appended, within
          the cap).  The pass computes every chunk's statistics under the proposed
          components too, and at its end the proposal replaces the fit's statistics (and
          caches) if its exact ELBO is higher.
        * ``'delete'``: likewise, the component of least mass (below a tenth of the
          median component's, not tried yet) is removed and its rows go to the others.

        Births and deletes take turns, one proposal per pass and none in the pass after
        one (a pass with a proposal costs about two).  Every accepted move makes every
        component a target again.  The ELBO never decreases from pass to pass (a
        memoized fit's after its first), and a fit with births or deletes converges only
        once each kind has tried every target.
    n_components_init : int or None, default None
        With ``moves``: how many components the fit starts from (at most
        ``n_components``; default ``n_components``).  Births grow them.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : expected values
        under q, in scikit-learn's layout (``covariances_`` is the inverse of E[Lambda]).
    weight_concentration_ : (K,) or a pair of (K,) arrays (stick-breaking Beta parameters)
    mean_precision_ : (K,)
    degrees_of_freedom_ : (K,)
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_ : the prior actually used
        (``covariance_prior_`` includes ``reg_covar``)
    converged_, n_iter_ : as GaussianMixture
    lower_bound_ : float
        The exact evidence lower bound per unit of weight (nats per row),
        ``(sum_n w_n log sum_k rho_nk - KL(q(theta) || p(theta))) / sum_n w_n``, of the
        parameters entering the last iteration.  (scikit-learn reports a total without
        the constant terms.)  Batch VB, and memoized VB after its first pass (which only
        fills the cache), never decrease it, with or without ``reg_covar``, up to
        rounding: 1e-12 of its size, plus about 1e-15 times the data's distance from the
        origin in units of the smallest component standard deviation (float32 data at
        1e8 with a spread of 8 fell by 1e-9 of it).  The stochastic bound is a noisy
        estimate and may fall.
    lower_bounds_ : list of float
        The bound of every iteration of the best initialisation (``lower_bound_`` last).
    history_ : list of dict
        With ``moves``: every move tried, in order: ``pass``, ``move`` ('merge', 'birth'
        or 'delete'), ``components`` (a merge's positions, when applied in order, a
        rejected pair's at its pass's start; the positions split by a birth, with
        ``into``, how many components each became; the position deleted), ``gain`` (the
        ELBO's change in nats, not per row; for a rejected move the change it would have
        made), ``accepted``.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-5, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="auto",
                 weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, dtype=None,
                 chunk_size=65536, init_sample_size=100_000, n_jobs=None, algorithm="batch",
                 batch_size=None, learning_offset=10.0, learning_decay=0.7, shuffle=True,
                 total_samples=1e6, n_active=None, n_candidates=None, support_file=None,
                 backend="local", moves=None, n_components_init=None, n_batches=None,
                 missing="error"):
        super().__init__(n_components, covariance_type, tol, reg_covar, max_iter, n_init,
                         init_params, random_state, warm_start, verbose, verbose_interval,
                         dtype, chunk_size, init_sample_size, n_jobs, algorithm, batch_size,
                         learning_offset, learning_decay, shuffle, total_samples, n_active,
                         n_candidates, support_file, backend)
        self.n_batches = n_batches
        self.missing = missing
        self.moves = moves
        self.n_components_init = n_components_init
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior

    # hooks ------------------------------------------------------------------
    def _check_parameters(self):
        super()._check_parameters()
        self._moves()
        self._initial_components()

    def _moves(self):
        """``moves`` as a tuple of names, checked (InvalidParameterError)."""
        if self.moves is None:
            return ()
        names = (self.moves,) if isinstance(self.moves, str) else tuple(self.moves)
        for name in names:
            if name not in _moves.MOVES:
                raise InvalidParameterError(f"moves must be a sequence of {_moves.MOVES}, "
                                            f"got {self.moves!r}")
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"moves names a move twice: {self.moves!r}")
        if names and self.algorithm not in ("batch", "memoized"):
            raise InvalidParameterError(f"moves need algorithm='batch' or 'memoized' (the "
                                        f"exact statistics of a whole pass), got algorithm="
                                        f"{self.algorithm!r}")
        if names and self.n_active is not None:
            raise InvalidParameterError("moves do not work with a truncated q (n_active) yet")
        if names and self._backend().name not in ("local", "dask", "cuda"):
            raise InvalidParameterError(f"moves run on the 'local', 'dask' and 'cuda' "
                                        f"backends, got backend={self.backend!r}")
        return names

    def _initial_components(self):
        if self.n_components_init is None:
            return self.n_components
        check_integer("n_components_init", self.n_components_init, 1)
        if self.n_components_init > self.n_components:
            raise InvalidParameterError(
                f"n_components_init={self.n_components_init} is more than n_components="
                f"{self.n_components} (the cap that moves may grow the components to)")
        if not self._moves():
            raise InvalidParameterError("n_components_init needs moves (a fit without "
                                        "them keeps n_components components)")
        return self.n_components_init

    def _bound(self, stats, entropy):
        return _moves.bound(stats, entropy, self.covariance_type, self._prior)

    def _propose(self, kind, source, sample_weight, total_weight, rng, tried):
        """A birth or delete proposal (``ChunkLoop``): a dict with ``move``,
        ``components`` (the targets' positions), for births ``into`` (how many
        components each target becomes), and ``params`` (KernelParams); or None.
        Targets come from the positions not in ``tried``, and are appended to it."""
        params = self._kernel_params()
        if kind == "delete":
            mass = self._posterior.mean_precision - self._prior.mean_precision_prior
            k = _moves.delete_target(mass, tried)
            if k is None:
                return None
            tried.append(k)
            return {"move": "delete", "components": [k],
                    "params": self._marked(_moves.without(params, k))}
        sample, weights = _init.draw_sample(source, _moves.BIRTH_SAMPLE_ROWS, rng,
                                            sample_weight, self._backend())
        if self._marginalize:       # the split runs on rows filled by the current model
            sample = self._backend().impute(ArraySource(sample, self._chunk_rows()), params)
        resp = self._backend().per_row(ArraySource(sample, self._chunk_rows()), params,
                                       resp=True)["resp"]
        split, born = _moves.split_components(sample, resp, weights, self.n_components,
                                              self.covariance_type, self._prior, rng, tried)
        if split is None:
            return None
        return {"move": "birth", "components": [b["component"] for b in born],
                "into": [b["into"] for b in born],
                "params": self._marked(_moves.proposal_from_resp(
                    sample, split, weights, total_weight, self.covariance_type,
                    self._prior))}

    def _merge_candidates(self):
        return _moves.candidate_pairs(self._kernel_params())

    def _greedy_merges(self, stats, entropy, pairs, loss):
        return _moves.greedy_merges(stats, entropy, pairs, loss, self.covariance_type,
                                    self._prior)

    def _prepare(self, X, sample_weight):
        prior = _vb.default_prior(
            self._data_stats(X, sample_weight), self.covariance_type, self.n_components,
            self.weight_concentration_prior_type, self.weight_concentration_prior,
            self.mean_precision_prior, self.mean_prior, self.degrees_of_freedom_prior,
            self.covariance_prior, self.reg_covar)
        self._prior = prior
        self.weight_concentration_prior_ = prior.weight_concentration_prior
        self.mean_precision_prior_ = prior.mean_precision_prior
        self.mean_prior_ = prior.mean_prior
        self.degrees_of_freedom_prior_ = prior.degrees_of_freedom_prior
        self.covariance_prior_ = prior.covariance_prior

    def _initialize_from_stats(self, stats):
        self._m_step(stats)

    def _kernel_params(self):
        return self._marked(_vb.kernel_params(self._posterior, self.covariance_type,
                                              self._prior))

    def _kl(self):
        return _vb.kl_divergence(self._posterior, self.covariance_type, self._prior)

    def _m_step(self, stats):
        self._posterior = _vb.m_step(stats, self.covariance_type, self._prior)

    def _get_parameters(self):
        return self._posterior

    def _set_parameters(self, posterior):
        self._posterior = posterior
        self.weight_concentration_ = posterior.weight_concentration
        self.mean_precision_ = posterior.mean_precision
        self.means_ = posterior.means
        self.degrees_of_freedom_ = posterior.degrees_of_freedom
        self.covariances_ = posterior.covariances
        self.precisions_cholesky_ = posterior.precisions_cholesky
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = posterior.weight_concentration
            stick = a / (a + b)
            weights = stick * np.hstack((1.0, np.cumprod(b / (a + b))[:-1]))
        else:
            weights = posterior.weight_concentration
        self.weights_ = (weights / weights.sum()).astype(posterior.means.dtype, copy=False)

    @property
    def precisions_(self):
        return precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    def elbo(self, X, sample_weight=None):
        """The exact ELBO of the fitted q on ``X``, per unit of weight (nats per row), as
        ``lower_bound_``: ``(sum_n w_n score_samples(X)_n - KL(q(theta) || p(theta))) /
        sum_n w_n``.  Multiply by the total weight for the total ELBO."""
        log_norm = self.score_samples(X)
        weights = (np.ones(log_norm.shape[0]) if sample_weight is None
                   else check_sample_weight(sample_weight, log_norm.shape[0]))
        total = float(weights.sum())
        return (float(log_norm @ weights) - self._kl()) / total


__all__ = ["GaussianMixture", "BayesianGaussianMixture"]
