"""What the amortized models' training shares: input checks, minibatches, BLAS threads,
and the gap report (Cremer, Li & Duvenaud 2018: approximation and amortization gaps)."""
import contextlib

import numpy as np

from ..data.memory import check_memory
from ..data.threads import limit_threads


def check_dtype(dtype):
    try:
        ok = np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")


def check_unit_interval(batch, rows, label):
    """A Bernoulli likelihood needs every value in [0, 1]; name the first row that is not."""
    bad = np.flatnonzero(np.any((batch < 0) | (batch > 1), axis=1))
    if bad.size:
        row = int(rows[bad[0]])
        raise ValueError(f"{label}: row {row} has values outside [0, 1] (min "
                         f"{batch[bad[0]].min():g}, max {batch[bad[0]].max():g}); "
                         "likelihood='bernoulli' needs data in [0, 1]")


def minibatches(source, rng, batch_size):
    """One epoch of (rows, their global indices): the chunks in a random order, each
    cut into minibatches of about ``batch_size`` rows in a random order (rows ascending
    within a minibatch, so the reads stay sequential)."""
    for _, start, chunk in source.chunks(rng.permutation(len(source.chunk_bounds()))):
        for batch in np.array_split(rng.permutation(chunk.shape[0]),
                                    max(1, chunk.shape[0] // batch_size)):
            batch.sort()
            yield chunk[batch], start + batch


def network_bytes(sizes, batch_rows, dtype):
    """Bytes of an ``MLP`` of widths ``sizes`` in training, as (weights, activations).

    Weights: every layer's weights and biases with their gradients and Adam's two moments
    (4 copies).  Activations of a minibatch of ``batch_rows``: each layer's input,
    pre-activation and output, and the backward pass's two gradients (5 arrays of
    ``batch_rows`` x width a layer).
    """
    itemsize = np.dtype(dtype).itemsize
    params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    activations = batch_rows * (sizes[0] + 5 * sum(sizes[1:]))
    return 4 * params * itemsize, activations * itemsize


def check_networks(networks, sizes, dtype):
    """Refuse (SizeError) networks whose training cannot fit in memory, before they are
    built, naming the largest of the sizes that set it.

    Parameters
    ----------
    networks : dict of str to tuple of int
        Each network's name (``"encoder"``) and widths, input first.
    sizes : list of (int, str)
        The sizes a user sets (the hidden and latent widths, the minibatch's rows), each
        with the parameter that sets it (``"n_latent (--latent) 2"``).  The first one is
        the minibatch's rows (``batch_size`` clamped to a chunk's rows); the largest one
        is named: lowering it lowers the need the most.
    dtype : dtype of the networks
    """
    batch = sizes[0][0]
    n_bytes = sum(sum(network_bytes(widths, batch, dtype)) for widths in networks.values())
    what = max(sizes, key=lambda size: size[0])[1]
    shapes = " and ".join(" -> ".join(map(str, widths)) for widths in networks.values())
    check_memory(n_bytes, what,
                 f"training the {' and the '.join(networks)} ({shapes}, "
                 f"{np.dtype(dtype).name}: the weights with their gradients and Adam "
                 f"moments, and the activations of a minibatch of {batch} rows)")


def blas_threads(n_jobs):
    """BLAS threads for the networks' matrix products (None: as they are)."""
    if n_jobs is None:
        return contextlib.nullcontext()
    return limit_threads(int(n_jobs), user_api="blas")


def logsumexp(a):
    top = a.max(axis=1)
    return top + np.log(np.sum(np.exp(a - top[:, None]), axis=1))


def report(log_px, elbo_best, elbo_inference):
    log_px, elbo_best, elbo_inference = float(log_px), float(elbo_best), float(elbo_inference)
    return {"log_px": log_px, "elbo_best": elbo_best, "elbo_inference": elbo_inference,
            "approximation_gap": log_px - elbo_best,
            "amortization_gap": elbo_best - elbo_inference}
