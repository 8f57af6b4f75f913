"""Streaming benchmarks: HDF5 pass speed and memory, and stochastic VB's time to the ELBO.

Usage::

    python bench/streaming.py pass --n-samples 10000000 [--data DIR]
    python bench/streaming.py rss --n-samples 50000000 [--data DIR]
    python bench/streaming.py svb --n-samples 2000000 [--data DIR]

``pass``: one E-step pass (statistics included, K=16 full covariance) over a float32 HDF5
file already in the page cache, against the same pass over the rows in memory; medians of
``--repeats``.  ``rss``: peak resident memory of a one-pass batch fit streamed from HDF5, in
a fresh process.  ``svb``: batch VB-EM to convergence, and stochastic VB, each with the
exact ELBO per row recorded after every pass (the evaluation pass is not timed); prints both
time-to-ELBO curves and the time each needs to come within 1% of the converged batch ELBO.
Data files are generated once (``fastvi.datasets.write_mixture_h5``) and reused.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

import fastvi
from fastvi.engine import local
from fastvi import HDF5Source
from benchmarks.common import elbo_curve, mixture_file

N_FEATURES, N_COMPONENTS = 16, 16


def kernel_params_for(source):
    model = fastvi.GaussianMixture(N_COMPONENTS, init_params="random_from_data", max_iter=0,
                                   random_state=0, init_sample_size=20000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(source)
    return model._kernel_params()


def bench_pass(args):
    path = mixture_file(args.data, args.n_samples)
    with HDF5Source(path, "/X") as source:
        params = kernel_params_for(source)
        local.accumulate(source, params)
        streamed = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            local.accumulate(source, params)
            streamed.append(time.perf_counter() - start)
        X = np.vstack([chunk for _, _, chunk in source.chunks()])
        chunk_rows = source.chunk_rows
    in_memory = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        local.accumulate(X, params, chunk_rows=chunk_rows)
        in_memory.append(time.perf_counter() - start)
    t_h5, t_mem = np.median(streamed), np.median(in_memory)
    print(f"one E-step pass, N={args.n_samples:,} D={N_FEATURES} K={N_COMPONENTS} full, "
          f"float32, chunk {chunk_rows} rows, median of {args.repeats}")
    print(f"  HDF5 (page cache) {t_h5:.3f} s  {args.n_samples / t_h5:,.0f} rows/s")
    print(f"  in memory         {t_mem:.3f} s  {args.n_samples / t_mem:,.0f} rows/s")
    print(f"  HDF5 / in-memory speed: {t_mem / t_h5:.1%}")


_RSS_CHILD = """
import resource, sys, time, warnings
import fastvi
from fastvi import HDF5Source
from benchmarks.common import elbo_curve, mixture_file
warnings.simplefilter("ignore")
with HDF5Source(sys.argv[1], "/X") as source:
    start = time.perf_counter()
    fastvi.BayesianGaussianMixture(16, max_iter=1, tol=0, random_state=0).fit(source)
    seconds = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, seconds)
"""


def bench_rss(args):
    path = mixture_file(args.data, args.n_samples)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, path], capture_output=True,
                         text=True, check=True).stdout.split()
    rss_mb, seconds = float(out[0]), float(out[1])
    print(f"BayesianGaussianMixture(16, full), 1 pass after init and prior passes, streamed "
          f"from HDF5: N={args.n_samples:,} x {N_FEATURES} float32 "
          f"({args.n_samples * N_FEATURES * 4 / 2**30:.2f} GiB): peak RSS {rss_mb:.0f} MB, "
          f"{seconds:.1f} s")


def bench_svb(args):
    path = mixture_file(args.data, args.n_samples)
    curves = {}
    with HDF5Source(path, "/X") as source:
        for name, kwargs in (("batch", dict(algorithm="batch", max_iter=args.max_passes,
                                            tol=1e-6)),
                             ("stochastic", dict(algorithm="stochastic", max_iter=args.passes,
                                                 tol=0, batch_size=args.batch_size))):
            model = fastvi.BayesianGaussianMixture(N_COMPONENTS, random_state=0, **kwargs)
            curve = elbo_curve(model, source)
            curves[name] = curve
            print(f"{name}: {len(curve)} passes, final ELBO/row {curve[-1][1]:.5f}, "
                  f"{curve[-1][0]:.1f} s", flush=True)
    target = curves["batch"][-1][1]
    print(f"converged batch ELBO per row {target:.5f}; 1% of |ELBO| = {0.01 * abs(target):.4f}")
    reach = {}
    for name, curve in curves.items():
        hit = [t for t, elbo in curve if elbo >= target - 0.01 * abs(target)]
        reach[name] = hit[0] if hit else float("nan")
        print(f"  {name:10s} within 1% after {reach[name]:.2f} s")
    print(f"  batch time to converge {curves['batch'][-1][0]:.1f} s; stochastic reaches 1% in "
          f"{reach['stochastic'] / curves['batch'][-1][0]:.1%} of it")
    if args.curves:
        with open(args.curves, "w") as out:
            json.dump(curves, out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["pass", "rss", "svb"])
    parser.add_argument("--n-samples", type=int, default=10_000_000)
    parser.add_argument("--data", default="/tmp/fastvi-bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=65536)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--max-passes", type=int, default=300)
    parser.add_argument("--curves", help="write the time-to-ELBO curves as JSON")
    args = parser.parse_args(argv)
    os.makedirs(args.data, exist_ok=True)
    {"pass": bench_pass, "rss": bench_rss, "svb": bench_svb}[args.what](args)


if __name__ == "__main__":
    main()
