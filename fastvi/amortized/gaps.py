"""The VAE's gap report (Cremer, Li & Duvenaud 2018): log p(x) by the importance-weighted
bound, the ELBO of the per-row optimum psi*, the ELBO of the fitted inference.

Its work is the decoder run on many draws of z for every row: ``optimise_steps`` gradient
steps of 4 draws (psi*), 2 x 64 draws for each of the two ELBOs, ``n_importance`` draws for
the bound.  Here the draws of a block of rows are stacked, ``S`` draws of ``B`` rows as one
(S B, d) matrix through the decoder (its dense layers are then GEMMs of S B rows, not S
calls of B), the ELBOs and the bound run the decoder forward only, and psi*'s steps take
the gradient in z alone (``Network.input_gradient``: the decoder's own parameter
gradients, a third of a backward pass, are not needed).  The draws come from the
generator in the same order and the same numbers as one (B, d) call per draw would take
them, so the report is the one the per-draw code gave, to rounding (tests/test_gaps.py).
psi*'s steps are ``optimise_control``'s by default (antithetic pairs and a control
variate: 100 of them end nearer psi* than 200 of ``optimise``'s plain steps did).  The
networks run by NumPy (``Network``), not by ``kernels.dense``'s Numba kernels, so that
``fastvi amortized gap`` on a model file (``FileVAE``) loads no Numba.

Precision: with ``precision='auto'`` the decoder runs in float32 on the draws (a float32
copy of its weights; psi, the log-weights' sums and the report stay float64), which is
3x faster than float64 here (twice the GEMM lanes and tanh's).  Its rounding, ~6e-8 of a value, is far below the Monte Carlo noise of the
report (~1e-3 nats): on the README's VAE the float32 and float64 reports of the same
draws agreed to 2e-8 nats.  It would not be for Gaussian rows far from the origin
against the noise, where x - f(z) cancels: 'auto' keeps the model's dtype for a block
with a value beyond ``FLOAT32_RANGE`` noise standard deviations.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .training import logsumexp
from ..data.checks import InvalidParameterError, check_integer, check_real
from ..data.memory import array_bytes, check_memory, shape_text
from ..data.threads import available_cores, limit_threads

STACK_ROWS = 4096        # rows of z per decoder call: larger blocks left the L2 cache
PART_ROWS = 256          # a block is cut into parts of at least these rows, one a thread
FLOAT32_RANGE = 1024.0   # |x| / sigma up to which 'auto' runs the decoder in float32
PRECISIONS = ("auto", "float32", "model")
# kernels.dense.ACTIVATIONS' codes (tests/test_gaps.py checks they agree)
ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2, "softplus": 3}
OPTIMISE_STEPS = 100     # psi*'s steps (optimise_control's), gap_report's default
CONTROL_LEARNING_RATE = 0.04   # optimise_control's first step (tests/test_gaps.py)


def evaluation_dtype(model, X, precision):
    """The dtype the decoder runs in for the rows ``X`` (see the module's docstring;
    ``precision`` checked by ``check_report_params``)."""
    if precision == "model" or model.decoder_.dtype == np.float32:
        return model.decoder_.dtype
    if precision == "float32" or model.likelihood == "bernoulli":
        return np.dtype(np.float32)
    sigma = float(np.exp(0.5 * model.log_variance_))
    return (np.dtype(np.float32) if np.max(np.abs(X)) <= FLOAT32_RANGE * sigma
            else model.decoder_.dtype)


def check_report_params(n_importance, optimise_steps, n_samples, precision, optimiser,
                        learning_rate):
    """Refuse the report's arguments before any of its work, each error naming the
    argument: draws at least 1 (a bound or an ELBO of no draws is no estimate), steps at
    least 0 (0: psi* is the inference's psi)."""
    check_integer("n_importance", n_importance, low=1)
    check_integer("optimise_steps", optimise_steps, low=0)
    check_integer("n_samples", n_samples, low=1)
    if precision not in PRECISIONS:
        raise InvalidParameterError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if optimiser not in OPTIMISERS:
        raise InvalidParameterError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
    if learning_rate is not None:
        check_real("learning_rate", learning_rate, low=0.0, low_open=True)


def check_draws(n_rows, n_samples, name="n_samples"):
    """Refuse an importance-draw count whose log-weights (every draw's, for a block of
    rows, held and then stacked) cannot fit in memory, before the block's work."""
    shape = (n_samples, n_rows)
    check_memory(2 * array_bytes(shape), f"{name} {n_samples}",
                 f"the importance log-weights of a block of rows "
                 f"(2 x {shape_text(shape)})")


class Network:
    """A network's layers (``MLP``'s ``params`` and ``activations``) in ``dtype``, run by
    NumPy: ``forward`` keeps each layer's output for ``input_gradient`` (one per thread).

    The report runs its networks here, not on ``kernels.dense``'s Numba kernels: the
    same products (np.dot), the activations as NumPy's ufuncs (its float32 tanh, within
    1.3 ulp, took 60% of the time of fastvi's correctly rounded one here; the report's
    Monte Carlo noise is 1e-3 nats), and ``fastvi amortized gap`` then loads no Numba
    (its import and its first calls were most of a second of the command's start)."""

    def __init__(self, params, activations, dtype):
        self.dtype = np.dtype(dtype)
        self.params = [np.ascontiguousarray(p, dtype=self.dtype) for p in params]
        self.activations = list(activations)
        self._outputs = None

    @classmethod
    def of(cls, net, dtype):
        """The network of an ``MLP`` (or a ``Network``) in ``dtype``."""
        return cls(net.params, net.activations, dtype)

    def forward(self, h):
        outputs = []
        for layer, activation in enumerate(self.activations):
            out = np.dot(h, self.params[2 * layer])
            out += self.params[2 * layer + 1]
            if activation == 1:
                np.tanh(out, out=out)
            elif activation == 2:
                np.maximum(out, 0, out=out)
            elif activation == 3:
                out = np.logaddexp(out.dtype.type(0), out)    # softplus, overflow-free
            outputs.append(out)
            h = out
        self._outputs = outputs
        return h

    def input_gradient(self, grad):
        """dL/d(input) from dL/d(output) of the last ``forward`` (the derivatives from
        the outputs, as ``kernels.dense``: tanh' = 1 - y^2, relu' = [y > 0], softplus' =
        1 - e^-y)."""
        for layer in reversed(range(len(self.activations))):
            y, activation = self._outputs[layer], self.activations[layer]
            if activation == 1:         # in place, into y: no longer needed
                np.multiply(y, y, out=y)
                np.subtract(y.dtype.type(1), y, out=y)
                grad = np.multiply(grad, y, out=y)
            elif activation == 2:
                grad = grad * (y > 0)
            elif activation == 3:
                grad = grad * -np.expm1(-y)
            grad = np.dot(grad, self.params[2 * layer].T)
        self._outputs = None
        return grad


def gaussian_kl(psi, d):
    """KL(q || N(0, I)) of every row's q (as ``kernels.dense.gaussian_kl``)."""
    mu, log_sigma = psi[:, :d], psi[:, d:]
    return 0.5 * np.sum(mu * mu + np.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma, axis=1)


class Part:
    """Rows ``X`` (b, D) of a block, with their own float copy of the decoder (its forward
    keeps activations for the backward: one per thread), and the decoder's terms of S
    stacked draws z = mu + sigma * eps (draw-major: rows s b .. (s+1) b - 1 are draw s)."""

    def __init__(self, model, X, dtype):
        self.model, self.X = model, np.ascontiguousarray(X, dtype=dtype)
        self.decoder = Network.of(model.decoder_, dtype)
        self._tiled = {}

    def rows(self, n_draws):
        """``X`` repeated ``n_draws`` times (cached: the same block is scored many times)."""
        if n_draws not in self._tiled:
            self._tiled[n_draws] = np.tile(self.X, (n_draws, 1))
        return self._tiled[n_draws]

    def decode(self, psi, eps):
        """(z (S b, d), the negative log-likelihood of every draw (S, b), dnll/d(output)),
        the likelihood's terms as ``kernels.dense.gaussian_nll`` and ``bernoulli_nll``
        compute them (each row's sum of squares in the decoder's dtype)."""
        model = self.model
        d, n_rows = model.n_latent, self.X.shape[0]
        n_draws = eps.shape[0] // n_rows
        mu, sigma = psi[:, :d], np.exp(psi[:, d:])
        z = (eps.reshape(n_draws, n_rows, d) * sigma + mu).reshape(-1, d)
        out = self.decoder.forward(np.ascontiguousarray(z, dtype=self.decoder.dtype))
        X = self.rows(n_draws)
        if model.likelihood == "gaussian":
            log_var = float(model.log_variance_)
            inv_var = np.exp(-log_var)
            residual = out - X
            nll = (0.5 * X.shape[1] * (np.log(2.0 * np.pi) + log_var)
                   + 0.5 * inv_var * np.einsum("ij,ij->i", residual, residual))
            residual *= residual.dtype.type(inv_var)
            grad_out = residual
        else:
            e = np.exp(-np.abs(out))
            nll = (np.maximum(out, 0) + np.log1p(e) - X * out).sum(axis=1, dtype=np.float64)
            grad_out = np.where(out >= 0, 1 / (1 + e), e / (1 + e)) - X
        return z, nll.reshape(n_draws, n_rows), grad_out

    def nll_sum(self, psi, eps):
        return self.decode(psi, eps)[1].sum(axis=0)

    def loss_gradient(self, psi, eps, control=False):
        """d(-ELBO)/d psi (b, 2 d), summed over the stacked draws ``eps`` (S b, d): per
        draw, d/dmu = dL/dz + mu, d/dlog sigma = dL/dz * sigma * eps + sigma^2 - 1 (as
        ``kernels.dense.reparameterised_grads``).  With ``control``, d/dlog sigma less
        eps^2 - 1 (mean 0, so the gradient stays unbiased): the control variate of the
        draw's term sigma^2 H eps^2 for a locally quadratic -log p(x, z) of Hessian H,
        whose coefficient sigma^2 H is 1 at the best diagonal q of a Gaussian posterior
        (its variances are 1 / diag H); near psi* it removes most of the noise of the
        log sigma steps."""
        d, n_rows = self.model.n_latent, self.X.shape[0]
        n_draws = eps.shape[0] // n_rows
        _, _, grad_out = self.decode(psi, eps)
        grad_z = self.decoder.input_gradient(grad_out).reshape(n_draws, n_rows, d)
        mu, sigma = psi[:, :d], np.exp(psi[:, d:])
        eps = eps.reshape(n_draws, n_rows, d)
        grad = np.empty_like(psi)
        grad[:, :d] = grad_z.sum(axis=0) + n_draws * mu
        grad[:, d:] = (grad_z * eps).sum(axis=0) * sigma + n_draws * (sigma * sigma - 1.0)
        if control:
            eps64 = eps.astype(np.float64, copy=False)
            grad[:, d:] -= (eps64 * eps64).sum(axis=0) - n_draws
        return grad

    def control_gradient(self, psi, eps):
        return self.loss_gradient(psi, eps, control=True)

    def log_weights(self, psi, eps):
        """log p(x, z) - log q(z) of stacked draws (S, b) (the 2 pi terms cancel)."""
        d, n_rows = self.model.n_latent, self.X.shape[0]
        z, nll, _ = self.decode(psi, eps)
        n_draws = nll.shape[0]
        eps64 = eps.astype(np.float64, copy=False).reshape(n_draws, n_rows, d)
        z64 = z.astype(np.float64, copy=False).reshape(n_draws, n_rows, d)
        log_q = -0.5 * np.einsum("sbi,sbi->sb", eps64, eps64) - np.sum(psi[:, d:], axis=1)
        return -nll - 0.5 * np.einsum("sbi,sbi->sb", z64, z64) - log_q


class Stack:
    """A block of rows cut into ``n_parts`` parts of consecutive rows, each run on its own
    thread (the kernels and BLAS release the GIL); the draws are taken for the whole
    block, as before, and each part gets its rows' columns of them, so the numbers do
    not depend on the parts.  Single-threaded BLAS in every part beat BLAS's own threads
    on these thin products (K = d, N = 16) on 2 cores, the more so beside other work."""

    def __init__(self, model, X, dtype, n_parts=1):
        self.model, self.n_rows = model, X.shape[0]
        bounds = np.linspace(0, self.n_rows, n_parts + 1).astype(int)
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self.parts = [Part(model, X[rows], dtype) for rows in self.slices]
        self.pool = ThreadPoolExecutor(n_parts) if n_parts > 1 else None
        self.progress, self.work = None, 1.0

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()

    def submit(self, method, psi, eps):
        """Start ``part.method(psi[rows], eps[rows])`` on every part, the draw-major
        ``eps`` (S B, d) cut by rows; ``collect`` gives the results.  The caller draws the
        next eps while the parts work (the generator, one stream, runs on its thread)."""
        if self.pool is None:
            return [getattr(self.parts[0], method)(psi, eps)]
        d = self.model.n_latent
        eps = eps.reshape(-1, self.n_rows, d)
        return [self.pool.submit(getattr(part, method), psi[rows],
                                 np.ascontiguousarray(eps[:, rows]).reshape(-1, d))
                for part, rows in zip(self.parts, self.slices)]

    @staticmethod
    def collect(pending, axis=0):
        """The parts' results of ``submit``, joined along ``axis`` (rows)."""
        return np.concatenate([item if isinstance(item, np.ndarray) else item.result()
                               for item in pending], axis=axis)

    def _groups(self, method, psi, draws, n_draws, axis):
        """``method`` on ``n_draws`` draws, in groups of up to ``STACK_ROWS`` rows of z,
        each group's draws taken while the one before is computed."""
        per_call = max(1, STACK_ROWS // self.n_rows)
        counts = [min(per_call, n_draws - start) for start in range(0, n_draws, per_call)]
        eps = draws(counts[0] * self.n_rows)
        for i, count in enumerate(counts):
            pending = self.submit(method, psi, eps)
            if i + 1 < len(counts):
                eps = draws(counts[i + 1] * self.n_rows)
            yield self.collect(pending, axis)
            self.tick(count)

    def tick(self, forwards):
        """Report ``forwards`` decoder passes of the block done (a gradient step counts
        as two per draw: its backward costs about a forward)."""
        if self.progress is not None:
            self.progress(forwards / self.work)

    def kl(self, psi):
        return gaussian_kl(psi, self.model.n_latent)

    def elbo(self, psi, draws, n_draws):
        """Each row's ELBO, the mean over ``n_draws`` draws of eps from ``draws`` (one
        reparameterised sample each; the KL to the prior in closed form)."""
        total = np.zeros(self.n_rows)
        for nll_sum in self._groups("nll_sum", psi, draws, n_draws, axis=0):
            total -= nll_sum
        return total / n_draws - self.kl(psi)

    def iw_bound(self, psi, draws, n_samples):
        """The importance-weighted bound (Burda, Grosse & Salakhutdinov 2016) with
        ``n_samples`` draws from q(psi): log mean_k w_k per row."""
        weights = np.concatenate(list(self._groups("log_weights", psi, draws, n_samples,
                                                   axis=1)))
        return logsumexp(weights.T) - np.log(n_samples)


OPTIMISERS = ("control", "plain")


def optimise(stack, psi, draws, steps, learning_rate, n_draws=4, decay=0.6):
    """psi* by ``steps`` gradient steps from ``psi`` (the decoder fixed), each the mean of
    ``n_draws`` one-sample gradients, the step ``learning_rate (1 + t / 20) ** -decay``
    (a Robbins-Monro schedule); plain steps, as ``VAE._refine`` takes them.  The report's
    optimiser before ``optimise_control`` (``optimiser='plain'``)."""
    n_rows = stack.n_rows
    if steps == 0:
        return psi
    eps = draws(n_draws * n_rows)
    for t in range(steps):
        pending = stack.submit("loss_gradient", psi, eps)
        if t + 1 < steps:
            eps = draws(n_draws * n_rows)       # the next step's, while the parts work
        psi -= (learning_rate * (1.0 + t / 20.0) ** -decay / n_draws) * stack.collect(pending)
        stack.tick(2 * n_draws)
    return psi


def optimise_control(stack, psi, draws, steps, learning_rate, n_draws=4):
    """psi* by ``steps`` gradient steps from ``psi`` (the decoder fixed), with less noise
    per draw than ``optimise``'s: each step's ``n_draws`` draws are antithetic pairs
    (eps, -eps: the odd part of the gradient's noise, all of d/dmu's for a linear
    decoder, cancels), d/dlog sigma carries the control variate eps^2 - 1
    (``Part.loss_gradient``), and the step ``learning_rate (1 - t / steps)`` falls
    linearly to 0 (large steps first, for an encoder's psi far from psi*; small ones
    last, so the noise of the final psi is small).  Measured against the best diagonal
    q (a linear decoder) and a long run (the README's VAE), 100 such steps of 4 draws
    end closer to psi* than ``optimise``'s 200 steps (tests/test_gaps.py)."""
    n_rows, half = stack.n_rows, max(1, n_draws // 2)
    n_draws = 2 * half
    if steps == 0:
        return psi

    def pairs():
        eps = draws(half * n_rows)
        return np.concatenate([eps, -eps])
    eps = pairs()
    for t in range(steps):
        pending = stack.submit("control_gradient", psi, eps)
        if t + 1 < steps:
            eps = pairs()                       # the next step's, while the parts work
        psi -= (learning_rate * (1.0 - t / steps) / n_draws) * stack.collect(pending)
        stack.tick(2 * n_draws)
    return psi


def gap_report(model, X, n_importance, optimise_steps, n_samples, rng, precision="auto",
               progress=None, optimiser="control", learning_rate=None):
    """Per-row log p(x), ELBO(psi*) and ELBO(inference) of a block of rows ``X`` (in the
    model's dtype), the draws from ``rng``; see ``VAE.gap_report``.  ``progress`` is
    called with the fraction of the block's work done since its last call.  The
    arguments were checked by ``check_report_params``."""
    if learning_rate is None:
        learning_rate = (CONTROL_LEARNING_RATE if optimiser == "control"
                         else model.refine_learning_rate)
    fresh = model._draws(rng)
    psi = model._psi(X, fresh).astype(np.float64)
    n_parts = max(1, min(available_cores(), X.shape[0] // PART_ROWS))
    stack = Stack(model, X, evaluation_dtype(model, X, precision), n_parts)
    stack.progress = progress
    stack.work = float(2 * 4 * optimise_steps + 4 * n_samples + n_importance)
    steps = optimise_control if optimiser == "control" else optimise
    try:
        with limit_threads(1, user_api="blas"):
            best_psi = steps(stack, psi.copy(), fresh, optimise_steps, learning_rate)
            return _report(stack, psi, best_psi, fresh, n_importance, n_samples)
    finally:
        stack.close()


def _report(stack, psi, best_psi, fresh, n_importance, n_samples):
    # psi* is the better of the two per row, judged on the *same* draws (a row-wise
    # maximum of independent estimates would be biased upwards); both ELBOs are then
    # estimated afresh, again on common draws, so rows where psi* = psi add exactly
    # nothing to the gap
    common = Replay(fresh, n_samples * stack.n_rows)
    better = stack.elbo(best_psi, common, n_samples) >= stack.elbo(psi, common.again(),
                                                                   n_samples)
    best_psi = np.where(better[:, None], best_psi, psi)
    common = Replay(fresh, n_samples * stack.n_rows)
    given = stack.elbo(psi, common, n_samples)
    best = stack.elbo(best_psi, common.again(), n_samples)
    return stack.iw_bound(best_psi, fresh, n_importance), best, given


class Replay:
    """``n`` rows of draws taken once from ``draws`` and handed out in pieces, twice: the
    common random numbers of two ELBO estimates."""

    def __init__(self, draws, n):
        self._eps, self._at = draws(n), 0

    def __call__(self, n):
        piece = self._eps[self._at:self._at + n]
        self._at += n
        return piece

    def again(self):
        self._at = 0
        return self


class FileVAE:
    """The parts of a VAE model file that its gap report needs (the networks, the
    likelihood and its variance), read by ``fastvi.io.amortized.read_networks`` without
    the ``VAE`` class: ``fastvi amortized gap`` runs on it without importing
    scikit-learn, a second and more of its start.  Only amortized inference (the
    encoder's psi); ``gap_report`` gives ``VAE.gap_report``'s figures, the same draws in
    the same order, and hands rows it would have to check further (not a finite 2-D
    array of the model's features) and any other ``random_state`` than an int, None or
    a Generator to the ``VAE`` itself, for its checks and messages.
    """

    BLOCK_ROWS = 1024           # as VAE._per_block

    def __init__(self, path, parts):
        params = parts["params"]
        self.path = path
        self.n_latent = int(params["n_latent"])
        self.likelihood = params.get("likelihood", "gaussian")
        self.inference = params.get("inference", "amortized")
        self.dtype = np.dtype(params.get("dtype", "float64"))
        self.refine_learning_rate = params.get("refine_learning_rate", 0.01)
        self.n_features_in_ = parts["n_features_in_"]
        self.log_variance_ = parts["log_variance_"]
        self.decoder_, self.encoder_ = parts["decoder"], parts["encoder"]

    @classmethod
    def read(cls, path):
        """The file's ``FileVAE``, or None where the report needs the model's class (a
        PPCA, semi-amortized or per-example inference, parameters it does not know)."""
        from ..io.amortized import read_networks

        def network(sizes, activation, weights, biases):
            if activation not in ACTIVATIONS:
                raise ValueError(f"model file {path!r}: unknown activation {activation!r}")
            params = [a for pair in zip(weights, biases) for a in pair]
            return Network(params, [ACTIVATIONS[activation]] * (len(weights) - 1) + [0],
                           weights[0].dtype)
        parts = read_networks(path, network)
        params = parts["params"]
        if (parts["class"] != "VAE" or parts["encoder"] is None
                or params.get("inference", "amortized") != "amortized"
                or params.get("likelihood", "gaussian") not in ("gaussian", "bernoulli")
                or params.get("dtype", "float64") not in ("float32", "float64")
                or not isinstance(params.get("refine_learning_rate", 0.01), (int, float))):
            return None
        return cls(path, parts)

    def _noise(self, rng, n_rows):       # as VAE._noise
        return rng.standard_normal((n_rows, self.n_latent)).astype(self.dtype, copy=False)

    def _draws(self, rng):
        return lambda n_rows: self._noise(rng, n_rows)

    def _psi(self, X, noise=None):
        """The encoder's psi, as ``VAE._psi`` computes it: for a float32 tanh encoder, by
        ``kernels.dense`` (its tanh is not NumPy's), else by NumPy, which gives the same
        numbers (the same products, bias sums and ufuncs) without loading Numba."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if self.dtype == np.float32 and 1 in self.encoder_.activations:
            from .nn import MLP
            sizes = [X.shape[1]] + [W.shape[1] for W in self.encoder_.params[::2]]
            activation = [k for k, v in ACTIVATIONS.items() if v == 1][0]
            net = MLP.from_layers(sizes, activation, self.encoder_.params[::2],
                                  self.encoder_.params[1::2])
            return net.forward(X)
        return self.encoder_.forward(X)

    def gap_report(self, X, n_importance=1000, optimise_steps=OPTIMISE_STEPS, n_samples=64,
                   random_state=0, precision="auto", callback=None, optimiser="control",
                   learning_rate=None):
        """``VAE.gap_report`` (see there)."""
        from .training import report
        check_report_params(n_importance, optimise_steps, n_samples, precision, optimiser,
                            learning_rate)
        checked = (isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] > 0
                   and X.shape[1] == self.n_features_in_ and X.dtype.kind == "f"
                   and np.isfinite(X).all())
        seeded = (random_state is None or isinstance(random_state, np.random.Generator)
                  or (isinstance(random_state, (int, np.integer))
                      and not isinstance(random_state, bool)))
        if not (checked and seeded):
            from ..io.amortized import load_amortized
            return load_amortized(self.path).gap_report(
                X, n_importance, optimise_steps, n_samples, random_state, precision,
                callback, optimiser, learning_rate)
        rng = (random_state if isinstance(random_state, np.random.Generator)
               else np.random.default_rng(random_state))
        outputs = []
        for start in range(0, X.shape[0], self.BLOCK_ROWS):
            rows = np.ascontiguousarray(X[start:start + self.BLOCK_ROWS], dtype=self.dtype)
            check_draws(rows.shape[0], n_importance, "n_importance (--importance)")
            outputs.append(gap_report(self, rows, n_importance, optimise_steps, n_samples,
                                      rng, precision, callback, optimiser, learning_rate))
        log_px, best, given = (np.concatenate(parts) for parts in zip(*outputs))
        return report(log_px.mean(), best.mean(), given.mean())
