"""VAE training throughput: fastvi's Numba/BLAS kernels against the same model in PyTorch
(eager and ``torch.compile``) and JAX (``jit``).

Usage::

    python bench/vae_torch.py [--epochs 20] [--repeats 3] [--latent 8] [--hidden 256 256]
                              [--batch-size 128] [--threads 2] [--dtype float32]
                              [--peers eager eager-glorot compile jax]

The data are scikit-learn's bundled digits (1797 x 64, scaled to [0, 1]).  Both sides
train the same VAE: encoder 64 -> 256 -> 256 -> 2d (tanh), decoder d -> 256 -> 256 -> 64
(tanh), Bernoulli likelihood, one reparameterised sample per row, Adam (lr 1e-3),
minibatches of 128, float32, the same number of threads (PyTorch: ``set_num_threads``;
fastvi: BLAS threads, the matrix products being the work).  Reported: examples per
second over ``--epochs`` epochs after one warm-up epoch, the median of ``--repeats`` runs,
and the ratio.  ``compile``: the loss (forward, and through AOTAutograd its backward) and
the Adam step each ``torch.compile``d (inductor, CPU), compiled in the warm-up epoch.
``eager-glorot``: PyTorch eager initialised as fastvi is (Glorot-uniform weights, zero
biases, from PyTorch's own random numbers) instead of ``nn.Linear``'s default, so that
its ELBO shows what the initialisation alone changes.
``jax``: the whole training step (forward, ``value_and_grad``, Adam) one ``jax.jit``
function, its noise from ``jax.random``; XLA's CPU threads are not settable from Python, so
JAX runs on every core (two on the machine of the README's figures, the same as the
others).  Every peer is optional (``pip install torch==2.13.0``, ``pip install jax``):
one that does not import is skipped with a message.

``--bound``: also time the step's matrix products alone (the same GEMM shapes and
count through NumPy's BLAS, nothing else), the rate no implementation on this BLAS can
beat.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

import fastvi


def digits():
    return (load_digits().data / 16.0).astype(np.float32)


def fastvi_rate(X, args):
    def fit(epochs):
        return fastvi.VAE(args.latent, decoder_hidden=tuple(args.hidden),
                          encoder_hidden=tuple(args.hidden), activation="tanh",
                          likelihood="bernoulli", batch_size=args.batch_size,
                          max_epochs=epochs, learning_rate=1e-3, dtype=args.dtype,
                          random_state=0, n_jobs=args.threads).fit(X)
    fit(1)                                   # compile the kernels
    rates = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        model = fit(args.epochs)
        rates.append(args.epochs * X.shape[0] / (time.perf_counter() - started))
    return float(np.median(rates)), model.elbo_history_[-1]


def torch_rate(X, args, compiled=False, glorot=False):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    data = torch.tensor(X, dtype=dtype)
    d, (h1, h2) = args.latent, args.hidden

    def make():
        encoder = nn.Sequential(nn.Linear(64, h1), nn.Tanh(), nn.Linear(h1, h2), nn.Tanh(),
                                nn.Linear(h2, 2 * d)).to(dtype)
        decoder = nn.Sequential(nn.Linear(d, h1), nn.Tanh(), nn.Linear(h1, h2), nn.Tanh(),
                                nn.Linear(h2, 64)).to(dtype)
        if glorot:  # fastvi's initialisation (its own random numbers, the same law)
            for layer in list(encoder) + list(decoder):
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        params = list(encoder.parameters()) + list(decoder.parameters())
        return encoder, decoder, torch.optim.Adam(params, lr=1e-3)

    def loss_of(encoder, decoder, batch, noise):
        psi = encoder(batch)
        mu, log_sigma = psi[:, :d], psi[:, d:]
        z = mu + torch.exp(log_sigma) * noise
        logits = decoder(z)
        nll = nn.functional.binary_cross_entropy_with_logits(
            logits, batch, reduction="none").sum(dim=1)
        kl = 0.5 * (mu ** 2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(dim=1)
        return (nll + kl).mean()

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def train(epochs):
        """Train ``epochs`` epochs; return the last one's ELBO and the seconds they took.
        Compiled, one more epoch first, untimed: each new model's modules and optimiser
        compile again (Dynamo guards on them), and that is compile time, not training."""
        encoder, decoder, optimiser = make()
        step = torch.compile(optimiser.step) if compiled else optimiser.step
        n = data.shape[0]
        elbo, started = 0.0, time.perf_counter()
        for epoch in range(epochs + int(compiled)):
            if compiled and epoch == 1:
                started = time.perf_counter()
            order = torch.randperm(n)
            total = 0.0
            for start in range(0, n - args.batch_size + 1, args.batch_size):
                batch = data[order[start:start + args.batch_size]]
                loss = loss_fn(encoder, decoder, batch,
                               torch.randn(batch.shape[0], d, dtype=dtype))
                optimiser.zero_grad()
                loss.backward()
                step()
                total += float(loss.detach()) * batch.shape[0]
            elbo = -total / n
        return elbo, time.perf_counter() - started

    train(1)
    rates = []
    for _ in range(args.repeats):
        elbo, seconds = train(args.epochs)
        rates.append(args.epochs * X.shape[0] / seconds)
    return float(np.median(rates)), elbo


def jax_rate(X, args):
    import jax
    import jax.numpy as jnp

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float32 if args.dtype == "float32" else jnp.float64
    d, (h1, h2) = args.latent, args.hidden
    sizes_enc, sizes_dec = (64, h1, h2, 2 * d), (d, h1, h2, 64)

    def init(key):
        params = []
        for sizes in (sizes_enc, sizes_dec):
            layers = []
            for n_in, n_out in zip(sizes[:-1], sizes[1:]):
                key, sub = jax.random.split(key)
                limit = np.sqrt(6.0 / (n_in + n_out))   # Glorot, as fastvi and PyTorch's
                layers.append((jax.random.uniform(sub, (n_in, n_out), dtype, -limit, limit),
                               jnp.zeros(n_out, dtype)))
            params.append(layers)
        return params

    def mlp(layers, h):
        for i, (W, b) in enumerate(layers):
            h = h @ W + b
            if i < len(layers) - 1:
                h = jnp.tanh(h)
        return h

    def loss_of(params, batch, noise):
        psi = mlp(params[0], batch)
        mu, log_sigma = psi[:, :d], psi[:, d:]
        logits = mlp(params[1], mu + jnp.exp(log_sigma) * noise)
        # Bernoulli negative log-likelihood with logits, stable: softplus(l) - x l
        nll = (jnp.logaddexp(0.0, logits) - batch * logits).sum(axis=1)
        kl = 0.5 * (mu ** 2 + jnp.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(axis=1)
        return (nll + kl).mean()

    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8

    @jax.jit
    def step(params, m, v, count, batch, key):
        noise = jax.random.normal(key, (batch.shape[0], d), dtype)
        loss, grads = jax.value_and_grad(loss_of)(params, batch, noise)
        count = count + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        scale = lr * jnp.sqrt(1 - b2 ** count) / (1 - b1 ** count)
        params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps),
                                        params, m, v)
        return params, m, v, count, loss

    data = jnp.asarray(X, dtype)
    rng = np.random.default_rng(0)

    def train(epochs):
        key = jax.random.PRNGKey(0)
        params = init(key)
        m = jax.tree_util.tree_map(jnp.zeros_like, params)
        v = jax.tree_util.tree_map(jnp.zeros_like, params)
        count = jnp.zeros((), dtype)
        n, elbo = data.shape[0], 0.0
        for _ in range(epochs):
            order = rng.permutation(n)
            losses = []
            for start in range(0, n - args.batch_size + 1, args.batch_size):
                key, sub = jax.random.split(key)
                params, m, v, count, loss = step(params, m, v, count,
                                                 data[order[start:start + args.batch_size]], sub)
                losses.append(loss)
            elbo = -float(jnp.mean(jnp.stack(losses)))
        return elbo

    train(1)
    rates = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        elbo = train(args.epochs)
        rates.append(args.epochs * X.shape[0] / (time.perf_counter() - started))
    return float(np.median(rates)), elbo


def gemm_bound(X, args):
    """Examples/s if a step did nothing but its matrix products (NumPy's BLAS, the same
    shapes: forward X W per layer, backward dY W^T and X^T dY, the first layer's dX
    skipped)."""
    d, (h1, h2) = args.latent, args.hidden
    B, dtype = args.batch_size, np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    layers = [(64, h1), (h1, h2), (h2, 2 * d), (d, h1), (h1, h2), (h2, 64)]
    mats = [(rng.standard_normal((B, a)).astype(dtype), rng.standard_normal((a, b)).astype(dtype),
             rng.standard_normal((B, b)).astype(dtype)) for a, b in layers]

    def step():
        for i, (x, W, dy) in enumerate(mats):
            x @ W
            x.T @ dy
            if i not in (0, 3):   # neither network needs dL/d(input) of its first layer
                dy @ W.T          # (the decoder's is dL/dz: it is needed; counted below)
        mats[3][2] @ mats[3][1].T

    n_steps = X.shape[0] // B
    step()
    started = time.perf_counter()
    for _ in range(args.epochs * n_steps):
        step()
    return args.epochs * n_steps * B / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--hidden", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--peers", nargs="*", default=["eager", "eager-glorot", "compile", "jax"],
                        choices=["eager", "eager-glorot", "compile", "jax"])
    parser.add_argument("--bound", action="store_true",
                        help="also time the step's matrix products alone")
    args = parser.parse_args(argv)
    X = digits()
    print(f"digits {X.shape}, VAE 64-{args.hidden[0]}-{args.hidden[1]}-{args.latent}, "
          f"batch {args.batch_size}, {args.dtype}, {args.threads} threads, "
          f"{args.epochs} epochs, median of {args.repeats}")
    with threadpool_limits(args.threads, user_api="blas"):
        ours, our_elbo = fastvi_rate(X, args)
    print(f"fastvi          {ours:10.0f} examples/s   (last epoch ELBO {our_elbo:.2f} per row)",
          flush=True)
    if args.bound:
        with threadpool_limits(args.threads, user_api="blas"):
            bound = gemm_bound(X, args)
        print(f"GEMMs alone     {bound:10.0f} examples/s   (fastvi reaches {ours / bound:.0%})",
              flush=True)
    runs = {"eager": ("PyTorch eager", "torch", lambda: torch_rate(X, args)),
            "eager-glorot": ("eager, Glorot", "torch", lambda: torch_rate(X, args, glorot=True)),
            "compile": ("torch.compile", "torch", lambda: torch_rate(X, args, compiled=True)),
            "jax": ("JAX jit", "jax", lambda: jax_rate(X, args))}
    for peer in args.peers:
        label, module, run = runs[peer]
        try:
            __import__(module)
        except ImportError:
            print(f"{label}: {module} is not installed (pip install "
                  f"{'torch==2.13.0' if module == 'torch' else 'jax'}): skipped")
            continue
        theirs, their_elbo = run()
        print(f"{label:15} {theirs:10.0f} examples/s   (last epoch ELBO {their_elbo:.2f} per "
              f"row)   fastvi / {label}: {ours / theirs:.2f}x", flush=True)


if __name__ == "__main__":
    main()
