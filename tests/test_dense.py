"""Dense-layer kernels, the reparameterised ELBO terms and Adam, against finite differences
and plain NumPy."""
import numpy as np
import pytest
from scipy.special import expit

from fastvi.amortized.nn import MLP, Adam
from fastvi.kernels import dense

EPS = 1e-6


def central_difference(f, array, eps=EPS):
    """d f / d array by central differences, element by element (array changed in place
    and restored)."""
    grad = np.zeros_like(array)
    flat, flat_grad = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        flat_grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus", "identity"])
def test_mlp_gradients_match_finite_differences(activation):
    rng = np.random.default_rng(0)
    net = MLP([3, 5, 4, 2], activation, rng)
    X = rng.standard_normal((7, 3))
    R = rng.standard_normal((7, 2))

    def loss():
        return float(np.sum(net.forward(X) * R))

    loss()
    grad_X = net.backward(R, need_input_grad=True)
    analytic = [g.copy() for g in net.grads]
    for param, grad in zip(net.params, analytic):
        np.testing.assert_allclose(grad, central_difference(loss, param), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_X, central_difference(loss, X), rtol=1e-6, atol=1e-8)


def test_mlp_forward_is_the_numpy_formula():
    rng = np.random.default_rng(1)
    net = MLP([4, 6, 3], "tanh", rng)
    X = rng.standard_normal((5, 4))
    W1, b1, W2, b2 = net.params
    np.testing.assert_allclose(net.forward(X), np.tanh(X @ W1 + b1) @ W2 + b2, rtol=1e-12)
    net32 = MLP([4, 6, 3], "softplus", np.random.default_rng(1), dtype=np.float32)
    out = net32.forward(X)
    assert out.dtype == np.float32
    W1, b1, W2, b2 = (p.astype(np.float64) for p in net32.params)
    np.testing.assert_allclose(out, np.logaddexp(0, X @ W1 + b1) @ W2 + b2, rtol=1e-5)


def test_gaussian_nll_and_its_gradient():
    rng = np.random.default_rng(2)
    X, mean = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    log_var = 0.3
    out, grad = np.empty(6), np.empty((6, 4))
    total_sq = dense.gaussian_nll(X, mean, log_var, out, grad)
    var = np.exp(log_var)
    expected = 0.5 * (4 * np.log(2 * np.pi * var) + np.sum((X - mean) ** 2, axis=1) / var)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert total_sq == pytest.approx(np.sum((X - mean) ** 2))

    def loss():
        o, g = np.empty(6), np.empty((6, 4))
        dense.gaussian_nll(X, mean, log_var, o, g)
        return o.sum()
    np.testing.assert_allclose(grad, central_difference(loss, mean), rtol=1e-6)


def test_bernoulli_nll_and_its_gradient():
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(5, 3))
    logits = 3 * rng.standard_normal((5, 3))
    out, grad = np.empty(5), np.empty((5, 3))
    dense.bernoulli_nll(X, logits, out, grad)
    p = expit(logits)
    np.testing.assert_allclose(out, -np.sum(X * np.log(p) + (1 - X) * np.log1p(-p), axis=1),
                               rtol=1e-10)

    def loss():
        o, g = np.empty(5), np.empty((5, 3))
        dense.bernoulli_nll(X, logits, o, g)
        return o.sum()
    np.testing.assert_allclose(grad, central_difference(loss, logits), rtol=1e-6, atol=1e-9)


def test_reparameterised_gradients_match_finite_differences():
    """L(mu, log sigma) = f(mu + sigma * eps) + w KL(q || N(0, I)), f quadratic."""
    rng = np.random.default_rng(4)
    mu, log_sigma = rng.standard_normal((4, 3)), 0.3 * rng.standard_normal((4, 3))
    eps = rng.standard_normal((4, 3))
    A = rng.standard_normal((3, 3))
    weight = 0.7

    def loss():
        z = np.empty_like(mu)
        dense.reparameterise(mu, log_sigma, eps, z)
        kl = np.empty(4)
        dense.gaussian_kl(mu, log_sigma, kl)
        return float(np.sum((z @ A) * z) + weight * kl.sum())

    z = mu + np.exp(log_sigma) * eps
    grad_z = z @ (A + A.T)
    grad_mu, grad_log_sigma = np.empty_like(mu), np.empty_like(mu)
    dense.reparameterised_grads(mu, log_sigma, eps, grad_z, weight, grad_mu, grad_log_sigma)
    np.testing.assert_allclose(grad_mu, central_difference(loss, mu), rtol=1e-6)
    np.testing.assert_allclose(grad_log_sigma, central_difference(loss, log_sigma), rtol=1e-6,
                               atol=1e-9)


def test_gaussian_kl_is_the_closed_form():
    rng = np.random.default_rng(5)
    mu, log_sigma = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    out = np.empty(3)
    dense.gaussian_kl(mu, log_sigma, out)
    var = np.exp(2 * log_sigma)
    # KL of diagonal Gaussians, summed over independent coordinates
    expected = np.sum(-log_sigma + 0.5 * (var + mu ** 2) - 0.5, axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_adam_matches_the_algorithm_written_in_numpy():
    rng = np.random.default_rng(6)
    param = rng.standard_normal((3, 2))
    reference = param.copy()
    m, v = np.zeros_like(param), np.zeros_like(param)
    optimiser = Adam([param], learning_rate=0.01)
    for t in range(1, 6):
        grad = rng.standard_normal((3, 2))
        optimiser.step([grad])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        reference -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(param, reference, rtol=1e-12)


def test_adam_minimises_a_quadratic():
    param = np.array([3.0, -2.0])
    optimiser = Adam([param], learning_rate=0.05)
    for _ in range(2000):
        optimiser.step([2 * (param - np.array([1.0, 0.5]))])
    np.testing.assert_allclose(param, [1.0, 0.5], atol=1e-3)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP([2, 2], "sigmoid", np.random.default_rng(0))


def test_float32_tanh_is_correctly_rounded_but_near_ties():
    # the rational approximation's relative error, 4.1e-11, may move a result across a
    # rounding tie only within 4.1e-11 / 6e-8 = 0.0007 ulp of it (tests/data/fit_tanh.py)
    # the reference: float64 tanh (exact to ~1 ulp of float64, far below float32's)
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(50_000) * 4, 10.0 ** rng.uniform(-40, 1.3, 20_000),
                        -(10.0 ** rng.uniform(-40, 1.3, 20_000)),
                        [2.0 ** -12, -(2.0 ** -12), 2.0 ** -12 * (1 - 2 ** -20), 9.0, 9.09,
                         9.1, 9.11, -9.1, 20.0, 30.0]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    dense.activate(x.reshape(-1, 5), dense.ACTIVATIONS["tanh"], out.reshape(-1, 5))
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 0.5007


def test_float32_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 50.0], dtype=np.float32)
    out = np.empty_like(x)
    dense.activate(x, dense.ACTIVATIONS["tanh"], out)
    np.testing.assert_array_equal(out, np.tanh(x))           # NaN == NaN here
    assert np.signbit(out[1]) and np.signbit(out[6])
