"""The Dask backend against the single-process engine: time per iteration, its overhead,
and the bytes that cross the network per iteration.

Usage::

    python bench/dask.py [--n-samples 10000000] [--workers 2] [--data DIR] [--repeats 3]
                         [--covariance-types full diag]

The data are a float32 HDF5 file (``fastvi.datasets.write_mixture_h5``, D = 16, K = 16,
made once in ``--data`` and reused, read from the page cache).  Each backend fits batch EM
from the same cheap initialisation for ``a`` and ``b`` iterations; the time per iteration
is ``(t_b - t_a) / (b - a)``, which removes the initialisation and start-up cost (medians
over ``--repeats``).  The single-process engine gets all the cores as Numba threads; the
cluster is a LocalCluster of ``--workers`` processes sharing the same cores (one Numba
thread each when there are as many workers as cores), on loopback.  Both fits end with the
same bits: the script checks.

Bytes per iteration are counted from what the tasks carry: the pickled kernel parameters
(broadcast to every worker once per iteration), each chunk's part of its task's arguments
(the file's row reader, the row range) and each chunk's statistics coming back.  No row
of the file crosses the network: each worker reads its own chunks by path.
"""
import argparse
import os
import pickle
import sys
import time
import warnings

# This file is named after the library it measures: take its folder off the path, or
# ``import dask`` (inside distributed) would import this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
import distributed  # noqa: E402,F401  (imports dask, the library, before bench/ is back)
import fastvi  # noqa: E402
sys.path.append(_HERE)
from benchmarks.common import (local_dask_backend, mixture_file, same_fit,  # noqa: E402
                               seconds_per_pass)

N_FEATURES, N_COMPONENTS = 16, 16
ITERS_A, ITERS_B = 1, 4


def fit(path, covariance_type, max_iter, backend):
    model = fastvi.GaussianMixture(N_COMPONENTS, covariance_type=covariance_type, tol=0.0,
                                   init_params="random_from_data", random_state=0,
                                   max_iter=max_iter, backend=backend)
    with fastvi.HDF5Source(path, "/X") as source, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(source)
        return time.perf_counter() - start, model


def per_iteration(path, covariance_type, backend, repeats):
    return seconds_per_pass(lambda passes: fit(path, covariance_type, passes, backend),
                            ITERS_A, ITERS_B, repeats)


def bytes_per_iteration(path, model, n_workers):
    """What one batch iteration sends and receives, from the pickled sizes: the kernel
    parameters broadcast to every worker, each task's chunk list (the file's row reader
    and the row ranges: about ``TASKS_PER_THREAD`` tasks per worker thread) and each run
    of chunks' statistics coming back (a worker adds its runs: ``ChunkPass.sums``)."""
    from fastvi.engine.cluster import TASKS_PER_THREAD
    from fastvi.engine.reduce import aligned_runs
    from fastvi.engine.stats import SufficientStats
    params = model._kernel_params()
    with fastvi.HDF5Source(path, "/X") as source:
        n_chunks, reader = source.n_chunks, source.remote_reader()
        per_chunk_out = len(pickle.dumps([(reader, 0, source.chunk_rows, None, None, 0)]))
    runs = aligned_runs(0, n_chunks, max(1, n_chunks // (TASKS_PER_THREAD * n_workers)))
    stats = SufficientStats.zeros(params.means, params.full)
    back = len(pickle.dumps((stats, [None])))
    sent = {"n_chunks": n_chunks, "n_runs": len(runs), "params": len(pickle.dumps(params)),
            "per_chunk_out": per_chunk_out, "per_run_back": back}
    sent["total"] = (n_workers * sent["params"] + n_chunks * per_chunk_out
                     + len(runs) * back)
    return sent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "data"))
    parser.add_argument("--covariance-types", nargs="+", default=["full", "diag"])
    args = parser.parse_args()

    os.makedirs(args.data, exist_ok=True)
    path = mixture_file(args.data, args.n_samples)
    cores = os.cpu_count()
    with local_dask_backend(args.workers) as (backend, threads):
        print(f"N={args.n_samples} D={N_FEATURES} K={N_COMPONENTS} float32 HDF5 (page "
              f"cache); local: {cores} Numba threads; dask: {args.workers} worker processes"
              f" x {threads} thread(s), loopback")
        print(f"{'cov':6}{'local s/it':>12}{'dask s/it':>12}{'overhead':>10}{'same bits':>11}"
              f"{'KiB/it':>9}")
        for covariance_type in args.covariance_types:
            local_s, local_model = per_iteration(path, covariance_type, "local", args.repeats)
            dask_s, dask_model = per_iteration(path, covariance_type, backend, args.repeats)
            same = same_fit(local_model, dask_model)
            sent = bytes_per_iteration(path, local_model, args.workers)
            print(f"{covariance_type:6}{local_s:12.3f}{dask_s:12.3f}"
                  f"{100 * (dask_s / local_s - 1):9.1f}%{str(same):>11}"
                  f"{sent['total'] / 1024:9.1f}", flush=True)
            print(f"      {sent['n_chunks']} chunks in {sent['n_runs']} runs; parameters "
                  f"{sent['params']} B to each worker, per chunk {sent['per_chunk_out']} B "
                  f"out, per run {sent['per_run_back']} B back", flush=True)


if __name__ == "__main__":
    main()
