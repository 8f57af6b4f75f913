"""Small multilayer perceptrons and Adam on the dense-layer kernels (``fastvi.kernels.dense``).

An ``MLP`` is a list of dense layers, each ``activation(x W + b)``, the last one linear.
``forward`` keeps what ``backward`` needs; ``backward`` takes dL/d(output) and leaves the
parameter gradients in ``grads`` (same order as ``params``), returning dL/d(input) when
asked.  The loss is a sum over rows.
"""
import numpy as np

from ..kernels.dense import (ACTIVATIONS, activate, adam_step, dense_backward,
                             dense_backward_input, dense_forward)


class MLP:
    """Dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Parameters
    ----------
    sizes : sequence of int
        Widths, input first.  Two entries make one linear layer.
    activation : {'tanh', 'relu', 'softplus', 'identity'}
        Of the hidden layers; the output layer is linear.
    rng : numpy Generator
        Draws the initial weights: Glorot-uniform (Glorot & Bengio 2010), zero biases.
    dtype : float32 or float64
    """

    def __init__(self, sizes, activation, rng, dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = np.dtype(dtype)
        self.activations = [ACTIVATIONS[activation]] * (len(self.sizes) - 2) + [0]
        self.params = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            limit = np.sqrt(6.0 / (n_in + n_out))
            self.params.append(rng.uniform(-limit, limit, (n_in, n_out)).astype(self.dtype))
            self.params.append(np.zeros(n_out, dtype=self.dtype))
        self.grads = [np.zeros_like(p) for p in self.params]
        self._cache = None

    @classmethod
    def from_layers(cls, sizes, activation, weights, biases):
        """An MLP of ``sizes`` holding the given layers (the same arrays: a model read
        from a file predicts bit for bit as the saved one); the ``network`` hook of
        ``fastvi.io.amortized``."""
        net = cls(sizes, activation, np.random.default_rng(0), weights[0].dtype)
        net.params = [a for i in range(len(weights)) for a in (weights[i], biases[i])]
        net.grads = [np.zeros_like(p) for p in net.params]
        return net

    def __getstate__(self):
        """Pickled (and deep-copied) without the last ``forward``'s activations: every
        ``backward`` follows its own ``forward``, so they are never needed afterwards,
        and a fitted model's pickle would otherwise carry a minibatch of them."""
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def astype(self, dtype):
        """A copy whose weights are cast to ``dtype`` (a copy even in the same dtype: its
        own ``forward`` cache, for another thread)."""
        dtype = np.dtype(dtype)
        copy = object.__new__(MLP)
        copy.__dict__.update(self.__dict__)
        copy.dtype = dtype
        copy.params = [p.astype(dtype) for p in self.params]
        copy.grads = [np.zeros_like(p) for p in copy.params]
        copy._cache = None
        return copy

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def forward(self, X):
        """The output for rows ``X`` (B, sizes[0]); keeps the layer inputs for backward."""
        inputs, pres, outs = [], [], []
        h = np.ascontiguousarray(X, dtype=self.dtype)
        for layer in range(self.n_layers):
            W, b = self.params[2 * layer], self.params[2 * layer + 1]
            pre = np.empty((h.shape[0], W.shape[1]), dtype=self.dtype)
            out = np.empty_like(pre)
            dense_forward(h, W, b, pre)
            activate(pre, self.activations[layer], out)
            inputs.append(h)
            pres.append(pre)
            outs.append(out)
            h = out
        self._cache = (inputs, pres, outs)
        return h

    def backward(self, grad_output, need_input_grad=False):
        """Parameter gradients into ``grads`` from dL/d(output); dL/d(input) if asked."""
        inputs, pres, outs = self._cache
        grad = np.array(grad_output, dtype=self.dtype)   # a copy: the kernel overwrites it
        for layer in reversed(range(self.n_layers)):
            W = self.params[2 * layer]
            want = layer > 0 or need_input_grad
            grad_in = (np.empty((grad.shape[0], W.shape[0]), dtype=self.dtype) if want
                       else np.zeros((0, 0), dtype=self.dtype))
            dense_backward(inputs[layer], W, pres[layer], outs[layer], self.activations[layer],
                           grad, grad_in, self.grads[2 * layer], self.grads[2 * layer + 1])
            grad = grad_in
        return grad if need_input_grad else None

    def input_gradient(self, grad_output):
        """dL/d(input) from dL/d(output) of the last ``forward``, without the parameter
        gradients (``grads`` is left as it was): for optimising the input, as the gap
        report's psi* does with the decoder fixed."""
        inputs, pres, outs = self._cache
        grad = np.array(grad_output, dtype=self.dtype)   # a copy: the kernel overwrites it
        for layer in reversed(range(self.n_layers)):
            W = self.params[2 * layer]
            grad_in = np.empty((grad.shape[0], W.shape[0]), dtype=self.dtype)
            dense_backward_input(W, pres[layer], outs[layer], self.activations[layer], grad,
                                 grad_in)
            grad = grad_in
        return grad


class Adam:
    """Adam (Kingma & Ba 2015) over a list of parameter arrays, updated in place.

    ``scales`` (one per parameter array, default 1) multiply the learning rate: Adam's
    steps are about ``learning_rate`` in the parameter's own units whatever the gradient's
    scale, so a parameter measured in the data's units (PPCA's W and b) gets a step in
    those units, as if it were trained on standardised data.
    """

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.step_count = 0
        self.scales = [1.0] * len(params)

    def step(self, grads):
        self.step_count += 1
        # a state checkpointed before ``scales`` existed has none: all 1
        scales = getattr(self, "scales", None) or [1.0] * len(self.params)
        for p, g, m, v, scale in zip(self.params, grads, self.m, self.v, scales):
            adam_step(p, g, m, v, self.step_count, self.learning_rate * scale, self.beta1,
                      self.beta2, self.eps)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(z):
    """SplitMix64's output function (Steele, Lea & Flood 2014, "Fast splittable
    pseudorandom number generators"), elementwise on a uint64 array (wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


class RowNoise:
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
