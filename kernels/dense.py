"""Dense-layer kernels for amortized inference: forward and backward passes, activations,
the reparameterised Gaussian ELBO terms, and Adam.

Every kernel works in place on float32 or float64 arrays (one dtype per call) and uses
``np.dot`` for the matrix products, which Numba hands to BLAS.  Shapes: a minibatch is
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
_DENSE = dict(nogil=True, cache=True)


@njit(**_DENSE)
def dense_forward(X, W, b, activation, pre, out):
    """pre = X W + b; out = activation(pre).  ``pre`` is kept for the backward pass."""
    pre[:, :] = np.dot(X, W)
    n_rows, n_out = pre.shape
    for t in range(n_rows):
        for j in range(n_out):
            pre[t, j] += b[j]
    _activate(pre, activation, out)


@njit(**_DENSE)
def _activate(pre, activation, out):
    n_rows, n_out = pre.shape
    for t in range(n_rows):
        for j in range(n_out):
            a = pre[t, j]
            if activation == 0:
                out[t, j] = a
            elif activation == 1:
                out[t, j] = math.tanh(a)
            elif activation == 2:
                out[t, j] = a if a > 0.0 else 0.0
            else:
                # softplus(a) = log(1 + e^a) = max(a, 0) + log1p(e^-|a|), without overflow
                out[t, j] = max(a, 0.0) + math.log1p(math.exp(-abs(a)))


@njit(**_DENSE)
def dense_backward(X, W, pre, out, activation, grad_out, grad_X, grad_W, grad_b):
    """Gradients of a layer: from dL/d(out) (B, n_out) to dL/dX (B, n_in), dL/dW, dL/db.

    ``grad_out`` is overwritten with dL/d(pre).  ``grad_X`` of shape (0, 0) skips the input
    gradient (the first layer does not need it).
    """
    n_rows, n_out = pre.shape
    for t in range(n_rows):
        for j in range(n_out):
            a = pre[t, j]
            if activation == 1:
                y = out[t, j]
                grad_out[t, j] *= 1.0 - y * y
            elif activation == 2:
                if not a > 0.0:
                    grad_out[t, j] = 0.0
            elif activation == 3:
                # d softplus / da = sigmoid(a), written to stay finite for large |a|
                e = math.exp(-abs(a))
                grad_out[t, j] *= 1.0 / (1.0 + e) if a >= 0.0 else e / (1.0 + e)
    grad_W[:, :] = np.dot(X.T, grad_out)
    for j in range(n_out):
        total = 0.0
        for t in range(n_rows):
            total += grad_out[t, j]
        grad_b[j] = total
    if grad_X.shape[0] > 0:
        grad_X[:, :] = np.dot(grad_out, W.T)


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
            total += max(a, 0.0) + math.log1p(math.exp(-abs(a))) - x * a
            e = math.exp(-abs(a))
            sig = 1.0 / (1.0 + e) if a >= 0.0 else e / (1.0 + e)
            grad_logits[t, i] = sig - x
        out[t] = total


@njit(**_DENSE)
def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """One Adam update in place (Kingma & Ba 2015, Algorithm 1); ``step`` counts from 1."""
    flat_p = param.reshape(-1)
    flat_g = grad.reshape(-1)
    flat_m = m.reshape(-1)
    flat_v = v.reshape(-1)
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    for i in range(flat_p.shape[0]):
        g = flat_g[i]
        flat_m[i] = beta1 * flat_m[i] + (1.0 - beta1) * g
        flat_v[i] = beta2 * flat_v[i] + (1.0 - beta2) * g * g
        flat_p[i] -= lr * (flat_m[i] / c1) / (math.sqrt(flat_v[i] / c2) + eps)


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
