"""Dense-layer kernels for amortized inference: forward and backward passes, activations,
the reparameterised Gaussian ELBO terms, and Adam.

Every kernel works in place on float32 or float64 arrays (one dtype per call) and uses
``np.dot`` for the matrix products, which Numba hands to BLAS; ``activate`` uses NumPy's
SIMD ufuncs for tanh and softplus.  Shapes: a minibatch is
(B, n_in), a weight (n_in, n_out), a bias (n_out,).  Backward kernels take the gradient
of the loss with respect to a layer's output and return those with respect to its input
and parameters (the loss is a *sum* over the rows; callers scale).

Activations are indexed (``ACTIVATIONS``) so one compiled kernel serves all of them:
0 identity, 1 tanh, 2 relu, 3 softplus.
"""
import math

import numpy as np
from numba import njit


ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2, "softplus": 3}
# 'reassoc' lets the bias sums and elementwise loops vectorise; 'nnan'/'ninf' stay off.
# error_model="numpy": no ZeroDivisionError check, a branch that kept every loop with a
# division (Adam's update, the Bernoulli gradient) scalar.
_DENSE = dict(nogil=True, cache=True, fastmath={"nsz", "arcp", "contract", "reassoc"},
              error_model="numpy")


@njit(**_DENSE)
def dense_forward(X, W, b, pre):
    """pre = X W + b (the activation is applied by :func:`activate`).  The products are
    written into their output arrays (``np.dot``'s ``out``): ``pre[:, :] = np.dot(X, W)``
    made a temporary and copied it, a third of the layer's time on thin layers."""
    np.dot(X, W, pre)
    n_rows, n_out = pre.shape
    for t in range(n_rows):
        for j in range(n_out):
            pre[t, j] += b[j]


@njit(**_DENSE)
def _relu(pre, out):
    n_rows, n_out = pre.shape
    for t in range(n_rows):
        for j in range(n_out):
            a = pre[t, j]
            out[t, j] = a if a > 0.0 else 0.0


# tanh |x| ~ |x| P(x^2) / Q(x^2) on [0, 9.1], the rational function of degrees 11 / 10 with
# the least maximum relative error (4.1e-11), fitted by tests/data/fit_tanh.py, which also
# checks every float32 input; above 9.1 the float32 tanh is 1.0, and P/Q at 9.1 rounds to it.
_TANH_CLAMP = 9.1
_TANH_P = (0.9999999999592902, 0.14096314789030026, 0.004422088593491058,
           4.217403528915707e-05, 1.106015167613194e-07, 3.638411876383879e-11)
_TANH_Q = (1.0, 0.474296480778591, 0.029187582992369773, 0.0005000909201522357,
           2.5945757965801693e-06, 2.929830201736847e-09)


@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _tanh_one(x):
    """tanh of one float64 to ~4e-11 relative (see :func:`_tanh_float32`); LLVM inlines it."""
    ax = abs(x)
    ax = _TANH_CLAMP if ax > _TANH_CLAMP else ax    # NaN stays NaN
    u = ax * ax
    p0, p1, p2, p3, p4, p5 = _TANH_P
    q0, q1, q2, q3, q4, q5 = _TANH_Q
    p = ((((p5 * u + p4) * u + p3) * u + p2) * u + p1) * u + p0
    q = ((((q5 * u + q4) * u + q3) * u + q2) * u + q1) * u + q0
    return math.copysign(ax * p / q, x)


@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _tanh_float32(pre, out):
    """out = tanh(pre) for float32 arrays, computed in float64 in one vectorised loop.

    A rational approximation (``_TANH_P``, ``_TANH_Q``) whose relative error, 4.1e-11, is
    far below float32's rounding (6e-8): on every positive float32 input up to 20 (all of
    them, subnormals included: ``tests/data/fit_tanh.py``; tanh is odd, and above 20 the
    clamp gives the value at 20) the result is within 0.5007 ulp of the exact tanh, so
    correctly rounded but for inputs within 4e-11 of a rounding tie; NumPy's float32
    tanh is off by up to 1.3 ulp.  One division and two short Horner chains, where the
    exp form it replaced, (1 - e^-2|x|) / (1 + e^-2|x|), had the E-step exp's chain of
    13: 1.7 against 4.4 ns an element in one run here (NumPy's: 5.8).  The array is
    walked as four quarters in one loop, four independent chains per iteration (one chain
    per iteration left the core waiting on its latency, as in ``estep._exp_rows``).  NaN
    gives NaN, +-inf gives +-1, -0 gives -0.
    """
    a = pre.reshape(-1)
    o = out.reshape(-1)
    quarter = a.shape[0] // 4
    for i in range(quarter):
        x0 = _tanh_one(float(a[i]))
        x1 = _tanh_one(float(a[i + quarter]))
        x2 = _tanh_one(float(a[i + 2 * quarter]))
        x3 = _tanh_one(float(a[i + 3 * quarter]))
        o[i] = x0
        o[i + quarter] = x1
        o[i + 2 * quarter] = x2
        o[i + 3 * quarter] = x3
    for i in range(4 * quarter, a.shape[0]):
        o[i] = _tanh_one(float(a[i]))


def activate(pre, activation, out):
    """out = activation(pre).  tanh: :func:`_tanh_float32` for float32, NumPy's ufunc for
    float64 (exact to the last bit or so; Numba's ``math.tanh`` is a scalar libm call);
    softplus: NumPy's ufunc."""
    if activation == 0:
        out[...] = pre
    elif activation == 1:
        if pre.dtype == np.float32 and out.dtype == np.float32:
            _tanh_float32(pre, out)
        else:
            np.tanh(pre, out=out)
    elif activation == 2:
        _relu(pre, out)
    else:
        # softplus(a) = log(1 + e^a), overflow-free
        np.logaddexp(0.0, pre, out=out)


@njit(**_DENSE)
def _activation_grad_row(pre_t, out_t, activation, g_t):
    """g_t *= the activation's derivative on one row (dL/d(out) -> dL/d(pre)); LLVM
    inlines it.  The derivative comes from the output where it can: tanh' = 1 - y^2,
    softplus' = sigmoid(a) = 1 - e^-y."""
    n_out = g_t.shape[0]
    if activation == 1:
        for j in range(n_out):
            g_t[j] *= 1.0 - out_t[j] * out_t[j]
    elif activation == 2:
        for j in range(n_out):
            g_t[j] = g_t[j] if pre_t[j] > 0.0 else 0.0
    elif activation == 3:
        for j in range(n_out):
            g_t[j] *= -math.expm1(-out_t[j])


@njit(**_DENSE)
def dense_backward(X, W, pre, out, activation, grad_out, grad_X, grad_W, grad_b):
    """Gradients of a layer: from dL/d(out) (B, n_out) to dL/dX (B, n_in), dL/dW, dL/db.

    ``grad_out`` is overwritten with dL/d(pre).  ``grad_X`` of shape (0, 0) skips the input
    gradient (the first layer does not need it).
    """
    n_rows, n_out = pre.shape
    # one pass over the rows: the activation's derivative, and the bias gradient added up
    # row by row (contiguous, so it vectorises; each column is still summed in row order,
    # in float64 whatever the dtype; a loop down each column had strided, scalar loads)
    bias_sum = np.zeros(n_out)
    for t in range(n_rows):
        g_t = grad_out[t]
        _activation_grad_row(pre[t], out[t], activation, g_t)
        for j in range(n_out):
            bias_sum[j] += g_t[j]
    for j in range(n_out):
        grad_b[j] = bias_sum[j]
    np.dot(X.T, grad_out, grad_W)
    if grad_X.shape[0] > 0:
        np.dot(grad_out, W.T, grad_X)


@njit(**_DENSE)
def dense_backward_input(W, pre, out, activation, grad_out, grad_X):
    """dL/dX (B, n_in) of a layer from dL/d(out), without the parameter gradients: the
    gap report's per-row optimisation of psi needs only the gradient in z, and dL/dW
    (a product as large as the forward one) and dL/db were a third of its work.
    ``grad_out`` is overwritten with dL/d(pre)."""
    for t in range(pre.shape[0]):
        _activation_grad_row(pre[t], out[t], activation, grad_out[t])
    np.dot(grad_out, W.T, grad_X)


@njit(**_DENSE)
def reparameterise(mu, log_sigma, eps, z):
    """z = mu + exp(log_sigma) * eps: a sample of the diagonal Gaussian q (Kingma &
    Welling 2014, eq. 10)."""
    n_rows, n_latent = mu.shape
    for t in range(n_rows):
        for i in range(n_latent):
            z[t, i] = mu[t, i] + math.exp(log_sigma[t, i]) * eps[t, i]


@njit(**_DENSE)
def gaussian_kl(mu, log_sigma, out):
    """out[t] = KL(N(mu_t, diag sigma_t^2) || N(0, I)) = 1/2 sum_i (mu^2 + sigma^2 - 1 -
    2 log sigma) (Kingma & Welling 2014, appendix B)."""
    n_rows, n_latent = mu.shape
    for t in range(n_rows):
        total = 0.0
        for i in range(n_latent):
            s = log_sigma[t, i]
            total += mu[t, i] * mu[t, i] + math.exp(2.0 * s) - 1.0 - 2.0 * s
        out[t] = 0.5 * total


@njit(**_DENSE)
def reparameterised_grads(mu, log_sigma, eps, grad_z, kl_weight, grad_mu, grad_log_sigma):
    """Gradients of the loss ``-log p(x|z) + kl_weight * KL`` with respect to (mu, log
    sigma) through z = mu + sigma * eps, given dL/dz of the reconstruction term.

    d/dmu = dL/dz + w mu;  d/dlog sigma = dL/dz * sigma * eps + w (sigma^2 - 1).
    """
    n_rows, n_latent = mu.shape
    for t in range(n_rows):
        for i in range(n_latent):
            sigma = math.exp(log_sigma[t, i])
            g = grad_z[t, i]
            grad_mu[t, i] = g + kl_weight * mu[t, i]
            grad_log_sigma[t, i] = g * sigma * eps[t, i] + kl_weight * (sigma * sigma - 1.0)


@njit(**_DENSE)
def gaussian_nll(X, mean, log_var, out, grad_mean):
    """Negative log-likelihood of rows under N(mean, exp(log_var) I), a scalar log_var:
    out[t] = D/2 log(2 pi) + D/2 log_var + ||x_t - mean_t||^2 / (2 var); grad_mean = dL/dmean.
    Returns sum_t ||x_t - mean_t||^2 (the gradient in log_var needs it)."""
    n_rows, n_features = X.shape
    inv_var = math.exp(-log_var)
    const = 0.5 * n_features * (math.log(2.0 * math.pi) + log_var)
    total_sq = 0.0
    for t in range(n_rows):
        sq = 0.0
        for i in range(n_features):
            r = mean[t, i] - X[t, i]
            sq += r * r
            grad_mean[t, i] = r * inv_var
        out[t] = const + 0.5 * sq * inv_var
        total_sq += sq
    return total_sq


@njit(**_DENSE)
def bernoulli_nll(X, logits, out, grad_logits):
    """Negative log-likelihood of rows in [0, 1] under Bernoulli(sigmoid(logits)):
    out[t] = sum_i softplus(l) - x l; grad_logits = sigmoid(l) - x."""
    n_rows, n_features = X.shape
    for t in range(n_rows):
        total = 0.0
        for i in range(n_features):
            a = logits[t, i]
            x = X[t, i]
            e = math.exp(-abs(a))
            total += max(a, 0.0) + math.log1p(e) - x * a
            sig = 1.0 / (1.0 + e) if a >= 0.0 else e / (1.0 + e)
            grad_logits[t, i] = sig - x
        out[t] = total


@njit(**_DENSE)
def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """One Adam update in place (Kingma & Ba 2015, Algorithm 1); ``step`` counts from 1.

    The arithmetic is in the parameters' dtype (float32 runs twice as many lanes).  One
    thread: Numba's worker threads beside BLAS's oversubscribed the two cores here and
    made a training step several times slower.
    """
    flat_p = param.reshape(-1)
    flat_g = grad.reshape(-1)
    flat_m = m.reshape(-1)
    flat_v = v.reshape(-1)
    one = flat_p.dtype.type(1.0)
    b1 = flat_p.dtype.type(beta1)
    b2 = flat_p.dtype.type(beta2)
    step_size = flat_p.dtype.type(lr / (1.0 - beta1 ** step))
    inv_c2 = flat_p.dtype.type(1.0 / (1.0 - beta2 ** step))
    tiny = flat_p.dtype.type(eps)
    for i in range(flat_p.shape[0]):
        g = flat_g[i]
        mi = b1 * flat_m[i] + (one - b1) * g
        vi = b2 * flat_v[i] + (one - b2) * g * g
        flat_m[i] = mi
        flat_v[i] = vi
        flat_p[i] -= step_size * mi / (np.sqrt(vi * inv_c2) + tiny)


@njit(**_DENSE)
def adam_rows(param, grad, m, v, rows, counts, lr, beta1, beta2, eps):
    """Adam on the given rows of a per-example parameter table (N, k), each row with its
    own step count ``counts[row]`` (a row is updated only when its example is in the
    minibatch, so a shared count would over-correct the bias of rarely seen rows)."""
    n_cols = param.shape[1]
    for t in range(rows.shape[0]):
        row = rows[t]
        counts[row] += 1
        c1 = 1.0 - beta1 ** counts[row]
        c2 = 1.0 - beta2 ** counts[row]
        for j in range(n_cols):
            g = grad[t, j]
            m[row, j] = beta1 * m[row, j] + (1.0 - beta1) * g
            v[row, j] = beta2 * v[row, j] + (1.0 - beta2) * g * g
            param[row, j] -= lr * (m[row, j] / c1) / (math.sqrt(v[row, j] / c2) + eps)
