"""VAE training throughput: fastvi's Numba/BLAS kernels against the same model in PyTorch.

Usage::

    python bench/vae_torch.py [--epochs 20] [--repeats 3] [--latent 8] [--hidden 256 256]
                              [--batch-size 128] [--threads 2] [--dtype float32]

The data are scikit-learn's bundled digits (1797 x 64, scaled to [0, 1]).  Both sides
train the same VAE: encoder 64 -> 256 -> 256 -> 2d (tanh), decoder d -> 256 -> 256 -> 64
(tanh), Bernoulli likelihood, one reparameterised sample per row, Adam (lr 1e-3),
minibatches of 128, float32, the same number of threads (PyTorch: ``set_num_threads``;
fastvi: BLAS threads, the matrix products being the work).  Reported: examples per
second over ``--epochs`` epochs after one warm-up epoch, the median of ``--repeats`` runs,
and the ratio.  PyTorch is optional (``pip install torch==2.13.0``): without it only
fastvi runs, with a message.
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


def torch_rate(X, args):
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
        params = list(encoder.parameters()) + list(decoder.parameters())
        return encoder, decoder, torch.optim.Adam(params, lr=1e-3)

    def train(epochs):
        encoder, decoder, optimiser = make()
        n = data.shape[0]
        elbo = 0.0
        for _ in range(epochs):
            order = torch.randperm(n)
            total = 0.0
            for start in range(0, n - args.batch_size + 1, args.batch_size):
                batch = data[order[start:start + args.batch_size]]
                psi = encoder(batch)
                mu, log_sigma = psi[:, :d], psi[:, d:]
                z = mu + torch.exp(log_sigma) * torch.randn_like(mu)
                logits = decoder(z)
                nll = nn.functional.binary_cross_entropy_with_logits(
                    logits, batch, reduction="none").sum(dim=1)
                kl = 0.5 * (mu ** 2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(dim=1)
                loss = (nll + kl).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * batch.shape[0]
            elbo = -total / n
        return elbo

    train(1)
    rates = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        elbo = train(args.epochs)
        rates.append(args.epochs * X.shape[0] / (time.perf_counter() - started))
    return float(np.median(rates)), elbo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--hidden", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    X = digits()
    print(f"digits {X.shape}, VAE 64-{args.hidden[0]}-{args.hidden[1]}-{args.latent}, "
          f"batch {args.batch_size}, {args.dtype}, {args.threads} threads, "
          f"{args.epochs} epochs, median of {args.repeats}")
    with threadpool_limits(args.threads, user_api="blas"):
        ours, our_elbo = fastvi_rate(X, args)
    print(f"fastvi   {ours:10.0f} examples/s   (last epoch ELBO {our_elbo:.2f} per row)")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed (pip install torch==2.13.0): no comparison")
        return
    theirs, their_elbo = torch_rate(X, args)
    print(f"PyTorch  {theirs:10.0f} examples/s   (last epoch ELBO {their_elbo:.2f} per row)")
    print(f"fastvi / PyTorch: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
