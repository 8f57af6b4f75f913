"""What the amortized models' training shares: input checks, minibatches, BLAS threads,
and the gap report (Cremer, Li & Duvenaud 2018: approximation and amortization gaps)."""
import contextlib

import numpy as np
from threadpoolctl import threadpool_limits


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


def blas_threads(n_jobs):
    """BLAS threads for the networks' matrix products (None: as they are)."""
    if n_jobs is None:
        return contextlib.nullcontext()
    return threadpool_limits(int(n_jobs), user_api="blas")


def logsumexp(a):
    top = a.max(axis=1)
    return top + np.log(np.sum(np.exp(a - top[:, None]), axis=1))


def report(log_px, elbo_best, elbo_inference):
    log_px, elbo_best, elbo_inference = float(log_px), float(elbo_best), float(elbo_inference)
    return {"log_px": log_px, "elbo_best": elbo_best, "elbo_inference": elbo_inference,
            "approximation_gap": log_px - elbo_best,
            "amortization_gap": elbo_best - elbo_inference}
