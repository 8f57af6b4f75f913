"""Amortized variational inference for Gaussian latent-variable models: PPCA and the VAE.

The model: z ~ N(0, I_d), x | z ~ p(x | f(z; theta)), with f a linear map (probabilistic
PCA) or an MLP (a VAE decoder), and p Gaussian (a learned or fixed variance) or Bernoulli.
The variational family is the diagonal Gaussian q(z | psi), psi = (mu, log sigma), and
there are three ways to get psi for a row (the lecture's second half):

* ``"per_example"``: one psi_n per training row, its own parameters (the mean-field
  baseline), updated alternately with the decoder: stochastic variational EM;
* ``"amortized"``: an encoder psi = g(x; xi), linear or an MLP, trained jointly with the
  decoder (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014);
* ``"semi_amortized"``: the encoder's psi refined by ``refine_steps`` gradient steps per
  row before the decoder's gradient is taken (after Kim et al. 2018, without
  differentiating through the refinement).

All of them maximise the ELBO with reparameterised gradients, z = mu + sigma * eps, and
Adam, on minibatches read from the chunk sources (so an HDF5 dataset is streamed).
``gap_report`` splits log p(x) - ELBO(encoder) into the approximation gap and the
amortization gap (Cremer, Li & Duvenaud 2018).
"""
import contextlib
import copy
import time

import numpy as np
from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin, DensityMixin,
                          TransformerMixin, clone)
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from . import ppca
from ._nn import MLP, Adam
from ._validation import check_random_state, validate_rows
from .kernels import dense

INFERENCE = ("amortized", "per_example", "semi_amortized")
LIKELIHOODS = ("gaussian", "bernoulli")


class EpochState:
    """What a checkpoint of an amortized fit holds: the model with its optimiser states
    (pickled whole), the epochs done and the random generator."""

    def __init__(self, model, epochs, rng):
        self.model, self.epochs, self.rng = model, epochs, rng


class VAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A Gaussian latent-variable model with an MLP (or linear) decoder, fitted by
    amortized, per-example or semi-amortized variational inference.

    A scikit-learn transformer: ``transform`` gives the posterior means, ``score`` the
    mean ELBO per row (so ``GridSearchCV`` and ``cross_val_score`` select by it), and
    ``fit``, ``transform`` and the scores also take an ``h5py.Dataset`` or a fastvi chunk
    source, read chunk by chunk.

    Parameters
    ----------
    n_latent : int, default=2
        Dimension d of z.
    decoder_hidden, encoder_hidden : tuple of int, default=()
        Hidden-layer widths; () is a linear map.
    activation : {'tanh', 'relu', 'softplus'}, default='tanh'
    likelihood : {'gaussian', 'bernoulli'}, default='gaussian'
        Bernoulli needs rows in [0, 1].
    variance : 'learned' or float, default='learned'
        The Gaussian likelihood's variance sigma^2 (one for all features).
    inference : {'amortized', 'per_example', 'semi_amortized'}, default='amortized'
    refine_steps : int, default=10
        Gradient steps on psi per row: in semi-amortized training and inference (from
        the encoder's psi), and for new rows of a per-example model (from psi = 0).
    refine_learning_rate : float, default=0.01
    batch_size : int, default=128
    max_epochs : int, default=20
        Passes over the rows.
    learning_rate : float, default=1e-3
        Adam's step for the networks and the per-example psi.
    chunk_size : int, default=65536
        Rows read at a time; minibatches are drawn from a chunk in a random order, and
        the chunks are visited in a random order every epoch.
    random_state : int, Generator or None
    dtype : {'float64', 'float32'}, default='float64'
        Of the networks and the arithmetic.  ``transform`` and the scores return
        float64 whatever it is.
    n_jobs : int or None, default=None
        BLAS threads during ``fit`` (the matrix products are the work); None leaves the
        BLAS library's own setting.
    verbose : int, default=0
        1 prints one line per epoch.

    Attributes
    ----------
    decoder_, encoder_ : the networks (``encoder_`` is None for per-example inference)
    log_variance_ : float, the Gaussian likelihood's log sigma^2
    psi_ : (N, 2 d) per-example (mu, log sigma) of the training rows (per-example only)
    elbo_history_ : list of float, the mean training ELBO per row of every epoch (a
        one-sample estimate, averaged over the epoch's minibatches)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when ``fit`` was given a DataFrame whose
        column names are all strings
    """

    def __init__(self, n_latent=2, *, decoder_hidden=(), encoder_hidden=(), activation="tanh",
                 likelihood="gaussian", variance="learned", inference="amortized",
                 refine_steps=10, refine_learning_rate=0.01, batch_size=128, max_epochs=20,
                 learning_rate=1e-3, chunk_size=65536, random_state=None, dtype="float64",
                 n_jobs=None, verbose=0):
        self.n_latent = n_latent
        self.decoder_hidden = decoder_hidden
        self.encoder_hidden = encoder_hidden
        self.activation = activation
        self.likelihood = likelihood
        self.variance = variance
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

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        for name, low in (("n_latent", 1), ("batch_size", 1), ("max_epochs", 0),
                          ("refine_steps", 0), ("chunk_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.inference not in INFERENCE:
            raise ValueError(f"inference must be one of {INFERENCE}, got {self.inference!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, "
                             f"got {self.likelihood!r}")
        if self.variance != "learned" and not (isinstance(self.variance, (int, float))
                                               and self.variance > 0):
            raise ValueError(f"variance must be 'learned' or a number > 0, "
                             f"got {self.variance!r}")
        _check_dtype(self.dtype)
        for name in ("learning_rate", "refine_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "decoder_")

    @property
    def _n_features_out(self):
        """Columns of ``transform`` (for ``get_feature_names_out``: vae0, vae1, ...)."""
        check_is_fitted(self)
        return self.decoder_.sizes[0]

    def _source(self, X, reset):
        """``X`` checked (arrays as scikit-learn checks them) as a chunk source."""
        return validate_rows(self, X, reset=reset, dtype=self.dtype,
                             chunk_rows=self.chunk_size)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, checkpoint=None, resume=None):
        """Train the decoder and the inference (encoder or per-example psi) on ``X``.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
            Arrays (and DataFrames, whose string column names become
            ``feature_names_in_``) are checked as scikit-learn checks them; a dataset or
            a chunk source is streamed, never read whole.
        y : ignored
        checkpoint : callable, optional
            Called with the training state after every epoch, ``force=True`` (a
            ``fastvi.Checkpointer`` writes it atomically).
        resume : EpochState, optional
            A checkpointed state: training goes on from the epoch after it with the
            checkpointed model's parameters and settings, and ends as the uninterrupted
            fit would have.

        Returns
        -------
        self : VAE
        """
        self._check_parameters()
        source = self._source(X, reset=True)
        if resume is None:
            rng = check_random_state(self.random_state)
            self._build(source.n_features, source.n_rows, rng)
            self.elbo_history_ = []
            first_epoch = 0
        else:
            if resume.model.n_features_in_ != source.n_features:
                raise ValueError(f"the checkpoint was trained on {resume.model.n_features_in_}"
                                 f" features, {source.label} has {source.n_features}")
            psi = getattr(resume.model, "psi_", None)
            if psi is not None and psi.shape[0] != source.n_rows:
                raise ValueError(f"the checkpoint holds per-example psi for {psi.shape[0]} "
                                 f"rows, {source.label} has {source.n_rows}")
            names = self.__dict__.get("feature_names_in_")     # those of this X
            self.__dict__.update(resume.model.__dict__)
            self.__dict__.pop("feature_names_in_", None)
            if names is not None:
                self.feature_names_in_ = names
            rng, first_epoch = resume.rng, resume.epochs
        with _blas_threads(self.n_jobs):
            for epoch in range(first_epoch, self.max_epochs):
                started = time.perf_counter()
                total, rows = 0.0, 0
                for batch, rows_index in _minibatches(source, rng, self.batch_size):
                    if self.likelihood == "bernoulli":
                        _check_unit_interval(batch, rows_index, source.label)
                    total += self._train_step(batch, rows_index, rng)
                    rows += batch.shape[0]
                self.elbo_history_.append(-total / rows)
                if self.verbose:
                    print(f"epoch {epoch + 1}: ELBO {self.elbo_history_[-1]:.4f} per row "
                          f"({time.perf_counter() - started:.1f} s)")
                if checkpoint is not None:
                    checkpoint(EpochState(self, epoch + 1, rng), force=True)
        return self

    def _build(self, n_features, n_rows, rng):
        dtype = np.dtype(self.dtype)
        d = self.n_latent
        self.decoder_ = MLP((d, *self.decoder_hidden, n_features), self.activation, rng, dtype)
        self.log_variance_ = 0.0 if self.variance == "learned" else float(np.log(self.variance))
        self._decoder_opt = Adam(self.decoder_.params, self.learning_rate)
        self._log_variance_opt = Adam([np.zeros(1)], self.learning_rate)
        if self.inference == "per_example":
            self.encoder_ = None
            self.psi_ = np.zeros((n_rows, 2 * d), dtype=dtype)
            self._psi_m = np.zeros_like(self.psi_)
            self._psi_v = np.zeros_like(self.psi_)
            self._psi_count = np.zeros(n_rows, dtype=np.int64)
        else:
            self.encoder_ = MLP((n_features, *self.encoder_hidden, 2 * d), self.activation,
                                rng, dtype)
            self._encoder_opt = Adam(self.encoder_.params, self.learning_rate)

    def _loss(self, X, psi, eps):
        """Per-row negative ELBO (one sample per row) and d loss / d psi (B, 2d).

        The decoder's parameter gradients (sums over rows) are left in ``decoder_.grads``;
        the log-variance gradient is returned third.
        """
        d = self.n_latent
        mu, log_sigma, _, nll, grad_out, total_sq = self._decode(X, psi, eps)
        grad_log_variance = 0.0
        if self.likelihood == "gaussian":
            grad_log_variance = (0.5 * X.shape[0] * X.shape[1]
                                 - 0.5 * total_sq * np.exp(-self.log_variance_))
        grad_z = self.decoder_.backward(grad_out, need_input_grad=True)
        kl = np.empty(X.shape[0])
        dense.gaussian_kl(mu, log_sigma, kl)
        grad_psi = np.empty_like(psi)
        grad_mu, grad_log_sigma = np.empty_like(mu), np.empty_like(mu)
        dense.reparameterised_grads(mu, log_sigma, eps, grad_z, 1.0, grad_mu, grad_log_sigma)
        grad_psi[:, :d], grad_psi[:, d:] = grad_mu, grad_log_sigma
        return nll + kl, grad_psi, grad_log_variance

    def _decode(self, X, psi, eps):
        """One draw z = mu + sigma * eps per row through the decoder: (mu, log_sigma, z,
        nll (B,), dnll / d(decoder output), sum of squared residuals (Gaussian only))."""
        d = self.n_latent
        mu, log_sigma = np.ascontiguousarray(psi[:, :d]), np.ascontiguousarray(psi[:, d:])
        z = np.empty_like(mu)
        dense.reparameterise(mu, log_sigma, eps, z)
        out = self.decoder_.forward(z)
        nll, grad_out = np.empty(X.shape[0]), np.empty_like(out)
        total_sq = 0.0
        if self.likelihood == "gaussian":
            total_sq = dense.gaussian_nll(X, out, self.log_variance_, nll, grad_out)
        else:
            dense.bernoulli_nll(X, out, nll, grad_out)
        return mu, log_sigma, z, nll, grad_out, total_sq

    def _noise(self, rng, n_rows):
        return rng.standard_normal((n_rows, self.n_latent)).astype(self.dtype)

    def _train_step(self, X, rows, rng):
        """One minibatch; returns the sum of its rows' negative ELBO."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        n = X.shape[0]
        eps = self._noise(rng, n)
        if self.inference == "per_example":
            psi = self.psi_[rows]
            loss, grad_psi, grad_lv = self._loss(X, psi, eps)
            dense.adam_rows(self.psi_, grad_psi, self._psi_m, self._psi_v, rows,
                            self._psi_count, self.learning_rate, 0.9, 0.999, 1e-8)
        else:
            psi = self.encoder_.forward(X)
            loss, grad_psi, grad_lv = self._loss(X, psi, eps)
            self.encoder_.backward(grad_psi)
            self._encoder_opt.step([g / n for g in self.encoder_.grads])
            if self.inference == "semi_amortized":
                refined = self._refine(X, psi.copy(), self._draws(rng), self.refine_steps)
                _, _, grad_lv = self._loss(X, refined, self._noise(rng, n))
        self._decoder_opt.step([g / n for g in self.decoder_.grads])
        if self.variance == "learned":
            holder = np.array([self.log_variance_])
            self._log_variance_opt.params = [holder]
            self._log_variance_opt.step([np.array([grad_lv / n])])
            self.log_variance_ = float(holder[0])
        return float(loss.sum())

    def _draws(self, rng):
        """Independent draws: ``noise(n_rows)`` is a fresh (n_rows, d) eps from ``rng``."""
        return lambda n_rows: self._noise(rng, n_rows)

    def _refine(self, X, psi, noise, steps, draws=1, decay=0.0):
        """``steps`` gradient-descent steps on the rows' psi (decoder fixed), from ``psi``;
        ``noise(n_rows)`` gives the eps of every one-sample gradient.

        Plain gradient steps, as Kim et al. (2018) refine: Adam's normalised steps move a
        psi that is already near its optimum by about the learning rate in every
        coordinate, and made a good encoder's q worse.  ``draws`` averages that many
        one-sample gradients per step; ``decay`` > 0 shrinks the step as
        ``lr (1 + t / 20) ** -decay`` (a Robbins-Monro schedule, for the optimum psi*
        of the gap report rather than for a few refinement steps).
        """
        for t in range(steps):
            grad = np.zeros_like(psi)
            for _ in range(draws):
                grad += self._loss(X, psi, noise(X.shape[0]))[1]
            step = self.refine_learning_rate * (1.0 + t / 20.0) ** -decay
            psi -= (step / draws) * grad
        return psi

    # ------------------------------------------------------------------ inference
    def _psi(self, X, noise=None):
        """psi of new rows: the encoder's (amortized); the encoder's refined by
        ``refine_steps`` (semi-amortized); optimised from 0 by ``refine_steps``
        (per-example: rows passed here are treated as new, even training rows, whose
        trained psi is in ``psi_``).  The refinement's eps come from ``noise``; None is
        row-keyed draws from seed 0, so a row's psi does not depend on the other rows."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if self.inference == "amortized":
            return self.encoder_.forward(X)
        if noise is None:
            noise = _RowNoise(check_random_state(0), self.n_latent, self.dtype)
            noise.start(X)
        if self.inference == "semi_amortized":
            psi = self.encoder_.forward(X).copy()
        else:
            psi = np.zeros((X.shape[0], 2 * self.n_latent), dtype=self.dtype)
        return self._refine(X, psi, noise, self.refine_steps)

    def _per_block(self, X, fn, block_rows=1024):
        """``fn(rows)`` on blocks of at most ``block_rows`` rows of ``X`` (array, dataset or
        source, read chunk by chunk), its outputs concatenated: per-row results in
        bounded memory (the importance-weighted bound holds n_samples x rows weights)."""
        check_is_fitted(self)
        source = self._source(X, reset=False)
        outputs = []
        for _, _, chunk in source.chunks():
            chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
            for start in range(0, chunk.shape[0], block_rows):
                outputs.append(fn(chunk[start:start + block_rows]))
        if isinstance(outputs[0], tuple):
            return tuple(np.concatenate(parts) for parts in zip(*outputs))
        return np.concatenate(outputs)

    def _row_wise(self, random_state, fn):
        """``fn(rows, noise)`` per block, with draws keyed on each row (``_RowNoise``), so
        each row's value is a function of that row alone (not of the block it is in, nor
        of the other rows)."""
        noise = _RowNoise(check_random_state(random_state), self.n_latent, self.dtype)

        def block(rows):
            noise.start(rows)
            return fn(rows, noise)
        return block

    def transform(self, X):
        """The posterior means E_q[z] of the rows, under the fitted inference.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)

        Returns
        -------
        Z : ndarray (n_samples, n_latent), float64
        """
        return self._per_block(X, self._row_wise(0, lambda rows, noise: self._psi(
            rows, noise)[:, :self.n_latent].astype(np.float64)))

    def score_samples(self, X, n_samples=64, random_state=0):
        """The ELBO of each row under its q, a Monte Carlo mean over ``n_samples`` draws.

        The eps of z = mu + sigma * eps are drawn from a stream keyed on the row's
        values and ``random_state``: each row's value is an unbiased estimate of its
        ELBO that depends on that row alone, whatever other rows are in the call, and
        different rows get independent draws.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        n_samples : int, default=64
        random_state : int, Generator or None, default=0
            Of the draws (and of the refinement steps of semi-amortized and per-example
            inference).

        Returns
        -------
        elbo : ndarray (n_samples,), nats
        """
        def rows_elbo(rows, noise):
            psi = self._psi(rows, noise)
            return self._elbo(rows, psi, [noise(rows.shape[0]) for _ in range(n_samples)])
        return self._per_block(X, self._row_wise(random_state, rows_elbo))

    def _elbo(self, X, psi, noise):
        """Per-row ELBO, the mean over the draws of eps in the list ``noise``."""
        total = np.zeros(X.shape[0])
        for eps in noise:
            total -= self._loss(X, psi, eps)[0]
        return total / len(noise)

    def score(self, X, y=None):
        """The mean ELBO per row (``score_samples`` with its defaults): higher is better.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        y : ignored

        Returns
        -------
        score : float
        """
        return float(self.score_samples(X).mean())

    def _log_weights(self, X, psi, eps):
        """log p(x, z) - log q(z) of one draw z = mu + sigma * eps per row."""
        _, log_sigma, z, nll, _, _ = self._decode(X, psi, eps)
        eps64, z64 = eps.astype(np.float64), z.astype(np.float64)
        log_q = -0.5 * np.sum(eps64 ** 2, axis=1) - np.sum(log_sigma, axis=1)
        log_prior = -0.5 * np.sum(z64 ** 2, axis=1)       # the 2 pi terms cancel
        return -nll + log_prior - log_q

    def _iw_bound(self, X, psi, noise, n_samples):
        weights = np.stack([self._log_weights(X, psi, noise(X.shape[0]))
                            for _ in range(n_samples)])
        top = weights.max(axis=0)
        return top + np.log(np.mean(np.exp(weights - top), axis=0))

    def importance_weighted_bound(self, X, n_samples=1000, random_state=0):
        """log p(x) of each row estimated by the importance-weighted bound with
        ``n_samples`` draws from the row's q (Burda, Grosse & Salakhutdinov 2016): a
        lower bound that tightens as ``n_samples`` grows.

        The draws are keyed on each row, as in ``score_samples``: a row's value depends
        on that row alone.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        n_samples : int, default=1000
        random_state : int, Generator or None, default=0

        Returns
        -------
        log_px : ndarray (n_samples,), nats
        """
        return self._per_block(X, self._row_wise(random_state, lambda rows, noise: (
            self._iw_bound(rows, self._psi(rows, noise), noise, n_samples))))

    def gap_report(self, X, n_importance=1000, optimise_steps=200, n_samples=64,
                   random_state=0):
        """Mean nats per row on ``X``: log p(x), the ELBO with psi optimised per row, the
        ELBO of the fitted inference, and the two gaps (Cremer, Li & Duvenaud 2018).

        log p(x) is the importance-weighted bound with ``n_importance`` draws from the
        optimised q; psi* takes ``optimise_steps`` gradient steps per row from the
        inference's psi (4-draw gradients, decaying steps); the ELBOs average
        ``n_samples`` draws.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        n_importance, optimise_steps, n_samples : int
        random_state : int, Generator or None, default=0

        Returns
        -------
        dict with ``log_px``, ``elbo_best``, ``elbo_inference``, ``approximation_gap``
        (log_px - elbo_best), ``amortization_gap`` (elbo_best - elbo_inference)
        """
        # The report returns means over rows only, so it keeps drawing eps for each block
        # from one generator (its figures as before) instead of the row-keyed draws of
        # score_samples; psi and psi* are compared on common draws within a block.
        rng = check_random_state(random_state)
        fresh = self._draws(rng)

        def rows_report(rows):
            psi = self._psi(rows, fresh)
            best_psi = self._refine(rows, psi.copy(), fresh, optimise_steps, draws=4,
                                    decay=0.6)
            # psi* is the better of the two per row, judged on the *same* draws (a row-wise
            # maximum of independent estimates would be biased upwards); both ELBOs are
            # then estimated afresh, again on common draws, so rows where psi* = psi add
            # exactly nothing to the gap
            noise = [fresh(rows.shape[0]) for _ in range(n_samples)]
            better = self._elbo(rows, best_psi, noise) >= self._elbo(rows, psi, noise)
            best_psi = np.where(better[:, None], best_psi, psi)
            noise = [fresh(rows.shape[0]) for _ in range(n_samples)]
            given = self._elbo(rows, psi, noise)
            best = self._elbo(rows, best_psi, noise)
            return self._iw_bound(rows, best_psi, fresh, n_importance), best, given

        log_px, best, given = self._per_block(X, rows_report)
        return _report(log_px.mean(), best.mean(), given.mean())


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
        """(W (D, d), b, sigma^2) in Tipping & Bishop's layout, for ``fastvi.ppca``."""
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
        return self._per_block(X, lambda rows: ppca.log_marginal(rows, *self._model()),
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
            result = ppca.gaps(rows, *self._model(), psi[:, :d], psi[:, d:])
            return result["log_px"], result["elbo_best"], result["elbo_given"]

        log_px, best, given = self._per_block(X, rows_report, block_rows=65536)
        return _report(log_px.mean(), best.mean(), given.mean())


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
        _check_dtype(self.dtype)
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
        from .mixture import GaussianMixture
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
        self.network_ = MLP((source.n_features, *self.hidden, n_components), self.activation,
                            rng, np.dtype(self.dtype))
        optimiser = Adam(self.network_.params, self.learning_rate)
        self.elbo_history_ = []
        for _ in range(self.max_epochs):
            total, rows = 0.0, 0
            for batch, _ in _minibatches(source, rng, self.batch_size):
                elbo, grad = self._elbo_and_grad(batch)
                self.network_.backward(-grad / batch.shape[0])
                optimiser.step(self.network_.grads)
                total += elbo.sum()
                rows += batch.shape[0]
            self.elbo_history_.append(total / rows)
            if self.verbose:
                print(f"epoch {len(self.elbo_history_)}: ELBO {total / rows:.4f} per row")
        return self

    def _elbo_and_grad(self, X):
        logits = self.network_.forward(X).astype(np.float64)
        log_q = logits - _logsumexp(logits)[:, None]
        q = np.exp(log_q)
        f = self._log_rho(X) - log_q
        elbo = np.sum(q * f, axis=1)
        return elbo, q * (f - elbo[:, None])

    def _q(self, X):
        logits = self.network_.forward(np.asarray(X, dtype=self.dtype)).astype(np.float64)
        return np.exp(logits - _logsumexp(logits)[:, None])

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
        return _logsumexp(log_rho), elbo

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
        return _report(log_px.mean(), log_px.mean(), elbo.mean())


def _check_dtype(dtype):
    try:
        ok = np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(z):
    """SplitMix64's output function (Steele, Lea & Flood 2014, "Fast splittable
    pseudorandom number generators"), elementwise on a uint64 array (wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


class _RowNoise:
    """Monte Carlo draws of eps that are a function of each row alone.

    ``start(rows)`` hashes every row's bits (in the working dtype) with a seed drawn
    once from ``rng`` into a 64-bit key; the k-th call then gives each row the k-th
    standard normals of its own counter-based stream (SplitMix64 of key + i * golden
    gamma, two uniforms per normal by Box & Muller 1958).  So a row's estimate does
    not depend on which rows share its call or block, nor on their order (scikit-learn's
    subset and sample-order invariance), and distinct rows still get independent
    draws, so a mean over rows keeps the variance it had with fresh draws per row.
    (Common random numbers, the same eps for every row, would be row-wise too, but
    their errors are shared by all the rows and do not average out in the mean.)
    Identical rows get identical draws.
    """

    def __init__(self, rng, n_latent, dtype):
        self._seed = rng.integers(2 ** 63, dtype=np.uint64)
        self._n_latent, self._dtype = n_latent, np.dtype(dtype)
        self._keys, self._next = None, 0

    def start(self, rows):
        """Key the draws on the block ``rows`` (C-contiguous, the working dtype) and
        restart every row's stream."""
        rows = np.ascontiguousarray(rows)
        words = rows.view(np.uint64 if rows.dtype.itemsize == 8 else np.uint32)
        words = words.astype(np.uint64)
        columns = (np.arange(1, rows.shape[1] + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        folded = np.bitwise_xor.reduce(_mix64(words + columns), axis=1)
        self._keys = _mix64(folded ^ self._seed)
        self._next = 0

    def __call__(self, n_rows):
        assert n_rows == self._keys.shape[0]
        d = self._n_latent
        counters = np.arange(2 * d * self._next, 2 * d * (self._next + 1), dtype=np.uint64)
        bits = _mix64(self._keys[:, None] + (counters + np.uint64(1)) * _GOLDEN)
        uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
        u1, u2 = uniform[:, :d], uniform[:, d:]
        self._next += 1
        return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(self._dtype)


def _check_unit_interval(batch, rows, label):
    """A Bernoulli likelihood needs every value in [0, 1]; name the first row that is not."""
    bad = np.flatnonzero(np.any((batch < 0) | (batch > 1), axis=1))
    if bad.size:
        row = int(rows[bad[0]])
        raise ValueError(f"{label}: row {row} has values outside [0, 1] (min "
                         f"{batch[bad[0]].min():g}, max {batch[bad[0]].max():g}); "
                         "likelihood='bernoulli' needs data in [0, 1]")


def _minibatches(source, rng, batch_size):
    """One epoch of (rows, their global indices): the chunks in a random order, each
    cut into minibatches of about ``batch_size`` rows in a random order (rows ascending
    within a minibatch, so the reads stay sequential)."""
    for _, start, chunk in source.chunks(rng.permutation(len(source.chunk_bounds()))):
        for batch in np.array_split(rng.permutation(chunk.shape[0]),
                                    max(1, chunk.shape[0] // batch_size)):
            batch.sort()
            yield chunk[batch], start + batch


def _blas_threads(n_jobs):
    """BLAS threads for the networks' matrix products (None: as they are)."""
    if n_jobs is None:
        return contextlib.nullcontext()
    return threadpool_limits(int(n_jobs), user_api="blas")


def _logsumexp(a):
    top = a.max(axis=1)
    return top + np.log(np.sum(np.exp(a - top[:, None]), axis=1))


def _report(log_px, elbo_best, elbo_inference):
    log_px, elbo_best, elbo_inference = float(log_px), float(elbo_best), float(elbo_inference)
    return {"log_px": log_px, "elbo_best": elbo_best, "elbo_inference": elbo_inference,
            "approximation_gap": log_px - elbo_best,
            "amortization_gap": elbo_best - elbo_inference}


__all__ = ["PPCA", "VAE", "MixtureEncoder"]
