"""Amortized variational inference for Gaussian latent-variable models: the VAE.

(PPCA, the VAE with a linear decoder, is in ``fastvi.amortized.ppca``; the amortized
E-step of a mixture, ``MixtureEncoder``, in ``fastvi.amortized.encoder``.)

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

Why one module of 600-odd lines: it is the ``VAE`` class, whose fit, minibatch steps,
per-row psi and scores share its private state (the networks, their optimisers, psi and
its Adam moments); the report's stacked work is already ``fastvi.amortized.gaps``, the
training arithmetic ``fastvi.amortized.training``.  Cutting the class would spread one
estimator's state over files without a seam between them.
"""
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .nn import MLP, Adam, RowNoise
from .training import (blas_threads, check_dtype, check_networks, check_unit_interval,
                       minibatches, report)
from ..data import interrupts
from ..data.checks import check_random_state, validate_rows
from ..data.memory import array_bytes, check_memory, shape_text
from ..io.checkpoint import resumed_checkpointer
from ..kernels import dense

INFERENCE = ("amortized", "per_example", "semi_amortized")
LIKELIHOODS = ("gaussian", "bernoulli")


class EpochState:
    """What a checkpoint of an amortized fit holds: the model with its optimiser states
    (stored whole, as arrays and settings: see ``fastvi.io.checkpoint``), the epochs done
    and the random generator."""

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
        check_dtype(self.dtype)
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
    def fit(self, X, y=None, *, checkpoint=None, resume=None, callback=None):
        """Train the decoder and the inference (encoder or per-example psi) on ``X``.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
            Arrays (and DataFrames, whose string column names become
            ``feature_names_in_``) are checked as scikit-learn checks them; a dataset or
            a chunk source is streamed, never read whole.
        y : ignored
        checkpoint : callable or False, optional
            Called with the training state after every epoch, ``force=True`` (a
            ``fastvi.Checkpointer`` writes it atomically, and removes it when the fit
            ends unless made with ``keep=True``).
        resume : EpochState, optional
            A checkpointed state: training goes on from the epoch after it with the
            checkpointed model's parameters and settings, and ends as the uninterrupted
            fit would have.  A state read by ``fastvi.load_checkpoint`` goes on
            checkpointing to its file (and removes it at the end) unless ``checkpoint``
            says otherwise (False: no checkpoint).
        callback : callable, optional
            Called with a dict after every minibatch, ``{"event": "chunk", "pass": e,
            "rows": n, "elbo": ...}`` (``e`` the epochs done, ``n`` the minibatch's rows,
            ``elbo`` the epoch's mean training ELBO per row so far), and after every epoch,
            ``{"event": "pass", "pass": e + 1, "bound": ..., "seconds": ...}`` (the
            epoch's ELBO and time): the records of the mixtures' fit loop, so the CLI's
            progress bar and log read both.  A start computed from the data (PPCA's
            closed form) comes first, ``{"event": "init", "step": s, "rows": n}`` after
            every chunk of its passes (``s`` names the pass: "moments", then "psi" for
            per-example psi).

        Returns
        -------
        self : VAE
        """
        self._check_parameters()
        checkpoint = resumed_checkpointer(resume, checkpoint)
        source = self._source(X, reset=True)
        self._check_sizes(source)
        if resume is None:
            rng = check_random_state(self.random_state)
            self._build(source.n_features, source.n_rows, rng)
            with blas_threads(self.n_jobs):     # PPCA's start: a pass of GEMMs
                self._initialise(source, callback)
            self.elbo_history_ = []
            first_epoch = 0
        else:
            # a tampered or garbled state is refused first, naming its file: the kernels
            # do not check bounds
            from ..io.checkpoint import validate_state
            validate_state(resume, self, source)
            if resume.model.n_features_in_ != source.n_features:
                raise ValueError(f"the checkpoint was trained on {resume.model.n_features_in_}"
                                 f" features, {source.label} has {source.n_features}")
            psi = getattr(resume.model, "psi_", None)
            if psi is not None and psi.shape[0] != source.n_rows:
                raise ValueError(f"the checkpoint holds per-example psi for {psi.shape[0]} "
                                 f"rows, {source.label} has {source.n_rows}")
            names = self.__dict__.get("feature_names_in_")     # those of this X
            # how this call runs and prints is its own (validate_state checked that the
            # settings of the model agree); the rest is the checkpoint's model
            runtime = {key: self.__dict__[key] for key in ("n_jobs", "verbose")}
            self.__dict__.update(resume.model.__dict__)
            self.__dict__.update(runtime)
            self.__dict__.pop("feature_names_in_", None)
            if names is not None:
                self.feature_names_in_ = names
            rng, first_epoch = resume.rng, resume.epochs
        with blas_threads(self.n_jobs):
            for epoch in range(first_epoch, self.max_epochs):
                started = time.perf_counter()
                total, rows = 0.0, 0
                for batch, rows_index in minibatches(source, rng, self.batch_size):
                    if self.likelihood == "bernoulli":
                        check_unit_interval(batch, rows_index, source.label)
                    total += self._train_step(batch, rows_index, rng)
                    rows += batch.shape[0]
                    if callback is not None:
                        callback({"event": "chunk", "pass": epoch, "rows": batch.shape[0],
                                  "elbo": -total / rows})
                self.elbo_history_.append(-total / rows)
                seconds = time.perf_counter() - started
                if self.verbose:
                    print(f"epoch {epoch + 1}: ELBO {self.elbo_history_[-1]:.4f} per row "
                          f"({seconds:.1f} s)")
                if callback is not None:
                    callback({"event": "pass", "pass": epoch + 1,
                              "bound": self.elbo_history_[-1], "seconds": seconds})
                if checkpoint is not None:
                    # a signal while it is written waits for the whole file, as in the
                    # mixtures' fit loop (fastvi.data.interrupts)
                    with interrupts.held():
                        checkpoint(EpochState(self, epoch + 1, rng), force=True)
        if hasattr(checkpoint, "finish"):
            checkpoint.finish()     # a finished fit needs no checkpoint (unless ``keep``)
        return self

    def save(self, path):
        """Write the fitted model to an HDF5 model file, atomically (``fastvi.load`` reads
        it back; the schema is in ``fastvi.io.amortized``)."""
        from ..io.model import save
        save(self, path)

    def _check_sizes(self, source):
        """Refuse sizes whose training arrays cannot fit in memory, before ``_build``
        allocates them: the chunks (``chunk_size``), the networks (naming the largest of
        the widths and the minibatch's rows) and per-example psi (``n_latent``).  A
        minibatch is at most a chunk's rows: ``batch_size`` beyond them is clamped, not
        refused."""
        d, n_features = self.n_latent, source.n_features
        chunk = shape_text((source.max_chunk_rows, n_features), source.dtype)
        check_memory(source.buffer_bytes(), f"chunk_size (--chunk-size) {self.chunk_size}",
                     f"the chunks in memory at once (up to 3 of {chunk})")
        encoder, decoder = (tuple(int(w) for w in widths)
                            for widths in (self.encoder_hidden, self.decoder_hidden))
        networks = {"decoder": (d, *decoder, n_features)}
        if self.inference != "per_example":
            networks = {"encoder": (n_features, *encoder, 2 * d), **networks}
        batch = min(self.batch_size, source.max_chunk_rows)
        sizes = [(batch, f"batch_size (--batch-size) {self.batch_size}"),
                 (d, f"n_latent (--latent) {d}")] + [
            (max(hidden), f"{name} (--{name.replace('_', '-')}) {','.join(map(str, hidden))}")
            for name, hidden in (("encoder_hidden", encoder), ("decoder_hidden", decoder))
            if hidden]
        check_networks(networks, sizes, self.dtype)
        if self.inference == "per_example":
            psi = (source.n_rows, 2 * d)
            check_memory(3 * array_bytes(psi, self.dtype),
                         f"n_latent (--latent) {d} with per-example inference",
                         f"the rows' psi and its Adam moments (3 x {shape_text(psi, self.dtype)})")

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

    def _initialise(self, source, callback=None):
        """Set the built networks' starting point from the data (a subclass's hook: PPCA
        starts from its closed-form solution), a pass over the rows reported to
        ``callback`` as ``init`` records; the VAE keeps ``_build``'s random one."""

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
        return rng.standard_normal((n_rows, self.n_latent)).astype(self.dtype, copy=False)

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
            noise = RowNoise(check_random_state(0), self.n_latent, self.dtype)
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
        """``fn(rows, noise)`` per block, with draws keyed on each row (``RowNoise``), so
        each row's value is a function of that row alone (not of the block it is in, nor
        of the other rows)."""
        noise = RowNoise(check_random_state(random_state), self.n_latent, self.dtype)

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

    @staticmethod
    def _check_draws(n_rows, n_samples, name="n_samples"):
        """Refuse an importance-draw count whose log-weights cannot fit in memory
        (``gaps.check_draws``)."""
        from .gaps import check_draws
        check_draws(n_rows, n_samples, name)

    def _iw_bound(self, X, psi, noise, n_samples):
        self._check_draws(X.shape[0], n_samples)
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

    def gap_report(self, X, n_importance=1000, optimise_steps=100, n_samples=64,
                   random_state=0, precision="auto", callback=None, optimiser="control",
                   learning_rate=None):
        """Mean nats per row on ``X``: log p(x), the ELBO with psi optimised per row, the
        ELBO of the fitted inference, and the two gaps (Cremer, Li & Duvenaud 2018).

        log p(x) is the importance-weighted bound with ``n_importance`` draws from the
        optimised q; psi* takes ``optimise_steps`` gradient steps per row from the
        inference's psi; the ELBOs average ``n_samples`` draws.  The draws of a block of
        rows go through the decoder stacked, as GEMMs of thousands of rows
        (``fastvi.amortized.gaps``).

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource (n_samples, n_features)
        n_importance, optimise_steps, n_samples : int
        random_state : int, Generator or None, default=0
        precision : {'auto', 'float32', 'model'}, default='auto'
            The dtype the decoder runs in on the draws.  'auto': float32 (3x faster; its
            rounding is far below the Monte Carlo noise), except for Gaussian rows with a
            value beyond 1024 noise standard deviations, where x - f(z) would cancel;
            'model': the model's dtype.
        callback : callable, optional
            Called with the fraction (0 to 1) of a block's work done since the last
            call, as the work goes: a progress bar's step.
        optimiser : {'control', 'plain'}, default='control'
            psi*'s steps.  'control': 4 draws a step in antithetic pairs, a control
            variate on the log sigma gradient, the step falling linearly from
            ``learning_rate`` (default 0.04) to 0; 100 such steps end closer to psi*
            than 200 'plain' ones.  'plain' (the report's optimiser before
            'control', kept for its figures): 4 independent draws a step, the step
            ``learning_rate (1 + t / 20) ** -0.6``, ``learning_rate`` by default
            ``refine_learning_rate``.
        learning_rate : float, optional
            The optimiser's first step (see ``optimiser``).

        Returns
        -------
        dict with ``log_px``, ``elbo_best``, ``elbo_inference``, ``approximation_gap``
        (log_px - elbo_best), ``amortization_gap`` (elbo_best - elbo_inference)
        """
        # The report returns means over rows only, so it keeps drawing eps for each block
        # from one generator (its figures as before) instead of the row-keyed draws of
        # score_samples; psi and psi* are compared on common draws within a block.  The
        # work, the decoder on stacked draws, is in ``fastvi.amortized.gaps``.
        from .gaps import check_report_params, gap_report
        check_report_params(n_importance, optimise_steps, n_samples, precision, optimiser,
                            learning_rate)
        rng = check_random_state(random_state)

        def rows_report(rows):
            self._check_draws(rows.shape[0], n_importance, "n_importance (--importance)")
            return gap_report(self, rows, n_importance, optimise_steps, n_samples, rng,
                              precision, callback, optimiser, learning_rate)

        log_px, best, given = self._per_block(X, rows_report)
        return report(log_px.mean(), best.mean(), given.mean())


__all__ = ["VAE", "EpochState"]
