"""A scale rehearsal of the Dask backend on one machine (issue 28): 10^8 rows in 10^4
chunks, made on the workers, against a local pass and against the design before, where
every chunk's statistics went back to the client.

Usage::

    python bench/dask_rehearsal.py [--n-samples 100000000] [--chunk-rows 10000]
                                   [--workers 8] [--covariance-type diag]
                                   [--repeats 1]

The rows are a ``fastvi.datasets.GeneratedSource`` with a generator block per chunk: each
worker makes a chunk from (seed, chunk index) when it reads it, so no file and no row
crosses the network.  One pass (medians of ``--repeats``) is the batch E-step over every chunk (``total_stats`` through the
backend, the statistics added in the tree), under fixed parameters, timed three ways:

* ``local``: this process, all cores as Numba threads (the rows made by its reader
  thread);
* ``dask``: a LocalCluster of ``--workers`` processes, 1 thread each; each task adds its
  runs of chunks on its worker and sends one sum a run;
* ``dask, a sum a chunk``: the same cluster with runs of one chunk (``largest_run`` = 1),
  the design before issue 28: every chunk's statistics to the client.

For the Dask passes: the bytes of the results that reach the client (pickled), the
tasks, the CPU seconds of this process (client and scheduler: a LocalCluster's scheduler
runs in it) and the peak of this process's Python allocations during a pass
(``tracemalloc``, a second pass).  Same bits: checked.
"""
import argparse
import os
import pickle
import sys
import time
import tracemalloc
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
import distributed  # noqa: E402  (dask, the library, before bench/ could shadow it)
import fastvi  # noqa: E402
from fastvi.datasets import GeneratedSource  # noqa: E402
from fastvi.engine import cluster as dask_cluster  # noqa: E402
from fastvi.engine.backend import total_stats  # noqa: E402

N_COMPONENTS = 16


class Counted(dask_cluster.DaskBackend):
    """A DaskBackend that counts the tasks it submits and the pickled bytes of what
    comes back to the client."""

    tasks = bytes_back = 0

    def reset(self):
        self.tasks, self.bytes_back = 0, 0

    def _result(self, future):
        value = super()._result(future)
        self.tasks += 1
        self.bytes_back += len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value


def one_pass(backend, source, params, repeats=1):
    """Median seconds and client CPU seconds of ``repeats`` passes; the statistics."""
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        stats = total_stats(backend, source, params)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    seconds, cpu = np.median(np.array(times), axis=0)
    return float(seconds), float(cpu), stats


def peak_bytes(backend, source, params):
    tracemalloc.start()
    try:
        total_stats(backend, source, params)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1,
                        help="passes timed per row of the table (medians)")
    parser.add_argument("--covariance-type", default="diag",
                        choices=("full", "tied", "diag", "spherical"))
    args = parser.parse_args()

    source = GeneratedSource(args.n_samples, 16, N_COMPONENTS, random_state=0,
                             covariance_type=args.covariance_type,
                             chunk_rows=args.chunk_rows, block_rows=args.chunk_rows)
    small = GeneratedSource(200_000, 16, N_COMPONENTS, random_state=0,
                            covariance_type=args.covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastvi.GaussianMixture(N_COMPONENTS, covariance_type=args.covariance_type,
                                       max_iter=1, random_state=0).fit(small)
    params = model._kernel_params()
    print(f"N={args.n_samples} D=16 K={N_COMPONENTS} {args.covariance_type}, generated "
          f"rows, {source.n_chunks} chunks of {args.chunk_rows}; local: {os.cpu_count()} "
          f"Numba threads; dask: {args.workers} worker processes x 1 thread, loopback",
          flush=True)
    with model._running():
        total_stats(fastvi.engine.local.LocalBackend(), small, params)        # compile
        local_s, local_cpu, local_stats = one_pass(fastvi.engine.local.LocalBackend(),
                                                   source, params, args.repeats)
    print(f"{'pass':24}{'s':>8}{'vs local':>10}{'tasks':>7}{'MB to client':>14}"
          f"{'client CPU s':>14}{'client peak MB':>16}{'same bits':>11}")
    print(f"{'local':24}{local_s:8.2f}{'':>10}{'':>7}{'':>14}{local_cpu:14.2f}", flush=True)
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, dashboard_address=None, host="127.0.0.1",
                                  env={"NUMBA_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        backend = Counted(client, timeout=3600)
        total_stats(backend, small, params)                                  # warm up
        for name, runs in (("dask", None), ("dask, a sum a chunk", 1)):
            original = dask_cluster._DaskPass.largest_run
            if runs is not None:
                dask_cluster._DaskPass.largest_run = lambda self, count: runs
            try:
                backend.reset()
                seconds, cpu, stats = one_pass(backend, source, params, args.repeats)
                tasks = backend.tasks // args.repeats
                sent = backend.bytes_back / args.repeats
                peak = peak_bytes(backend, source, params)
            finally:
                dask_cluster._DaskPass.largest_run = original
            same = all(np.array_equal(getattr(stats, key), getattr(local_stats, key))
                       for key in ("nk", "s1", "s2")) and stats.log_norm == local_stats.log_norm
            print(f"{name:24}{seconds:8.2f}{100 * (seconds / local_s - 1):9.1f}%{tasks:7d}"
                  f"{sent / 1e6:14.2f}{cpu:14.2f}{peak / 1e6:16.1f}{str(same):>11}",
                  flush=True)


if __name__ == "__main__":
    main()
