"""Stochastic and memoized fits on a Dask cluster: steps of one chunk against steps of
several (issue 28), and the local engine on the same settings.

Usage::

    python bench/dask_steps.py [--n-samples 2000000] [--workers 2] [--data DIR]
                               [--repeats 3] [--chunk-size 65536]
                               [--covariance-type diag]

A stochastic or memoized fit updates its parameters after every step, so a step's chunks
are one request and steps follow each other.  With one chunk a step (the only choice
before), one worker computes while the others wait, and every chunk pays the cluster's
round trip.  With ``batch_size`` > ``chunk_size`` a stochastic minibatch is several chunks,
and with ``n_batches`` a memoized step is a batch of several chunks, computed together on
the workers and added in the fixed tree.  Time per pass: ``(t(3 passes) - t(1 pass)) / 2``
(removes initialisation and start-up), medians over ``--repeats``; each Dask fit is checked
for the local fit's bits.  Data: the float32 HDF5 file of ``bench/dask.py`` (D = 16,
K = 16, read from the page cache).
"""
import argparse
import os
import sys
import time
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
import distributed  # noqa: E402,F401  (dask, the library, before bench/ is on the path)
import fastvi  # noqa: E402
sys.path.append(_HERE)
from benchmarks.common import (local_dask_backend, mixture_file, same_fit,  # noqa: E402
                               seconds_per_pass)

N_COMPONENTS = 16
PASSES_A, PASSES_B = 1, 3


COVARIANCE = "diag"      # --covariance-type


def fit(path, backend, passes, chunk_size, **settings):
    model = fastvi.BayesianGaussianMixture(
        N_COMPONENTS, covariance_type=COVARIANCE, tol=0.0, init_params="random_from_data",
        random_state=0, max_iter=passes, chunk_size=chunk_size, backend=backend, **settings)
    with fastvi.HDF5Source(path, "/X", chunk_rows=model._chunk_rows()) as source, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(source)
        return time.perf_counter() - start, model


def per_pass(path, backend, repeats, chunk_size, settings):
    return seconds_per_pass(lambda passes: fit(path, backend, passes, chunk_size, **settings),
                            PASSES_A, PASSES_B, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--data", default=os.path.join(_HERE, "data"))
    parser.add_argument("--covariance-type", default="diag",
                        choices=("full", "tied", "diag", "spherical"))
    args = parser.parse_args()
    global COVARIANCE
    COVARIANCE = args.covariance_type

    os.makedirs(args.data, exist_ok=True)
    path = mixture_file(args.data, args.n_samples)
    chunk = args.chunk_size
    n_chunks = -(-args.n_samples // chunk)
    cores = os.cpu_count()
    # (name, settings): one chunk a step, then several
    cases = [
        ("stochastic, 1 chunk a minibatch", dict(algorithm="stochastic", batch_size=chunk)),
        ("stochastic, 4 chunks a minibatch",
         dict(algorithm="stochastic", batch_size=4 * chunk)),
        ("memoized, 1 chunk a batch", dict(algorithm="memoized", n_batches=n_chunks)),
        ("memoized, 4 chunks a batch",
         dict(algorithm="memoized", n_batches=-(-n_chunks // 4))),
    ]
    with local_dask_backend(args.workers) as (backend, threads):
        print(f"N={args.n_samples} D=16 K={N_COMPONENTS} {COVARIANCE} VB, float32 HDF5 "
              f"(page cache), {n_chunks} chunks of {chunk}; local: {cores} Numba threads; "
              f"dask: {args.workers} worker processes x {threads} thread(s), loopback; "
              f"s/pass, medians of {args.repeats}")
        print(f"{'case':36}{'local':>9}{'dask':>9}{'dask/local':>12}{'same bits':>11}")
        for name, settings in cases:
            local_s, local_model = per_pass(path, "local", args.repeats, chunk, settings)
            dask_s, dask_model = per_pass(path, backend, args.repeats, chunk, settings)
            print(f"{name:36}{local_s:9.3f}{dask_s:9.3f}{dask_s / local_s:12.2f}"
                  f"{str(same_fit(local_model, dask_model)):>11}", flush=True)


if __name__ == "__main__":
    main()
