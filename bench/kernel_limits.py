"""How close the fused E-step kernels come to this machine's limits, measured in one run.

Usage::

    python bench/kernel_limits.py [--n-samples 1000000] [--n-features 16] [--n-components 16]
                                  [--repeats 5]

Four rates of the machine, each with the same number of threads as the kernels
(``NUMBA_NUM_THREADS``, and as many BLAS threads):

* GEMM: ``A @ B`` of two 3000 x 3000 float64 matrices (OpenBLAS), FLOP/s;
* read: a parallel Numba sum over a 1 GB float64 array, bytes/s (what a diagonal pass
  must at least do: read its rows once);
* copy: a parallel Numba copy of it (STREAM's "copy"), bytes/s counted read + write;
* exp: the kernels' own vectorised exp (``_exp_rows``) over N x K values in blocks,
  exponentials/s.

Then one full and one diagonal pass (statistics included) over N x D rows with K
components, float64 and float32, with what each reaches: for ``full`` its FLOP/s
(useful multiply-adds only: the triangular solve, D (D + 1) / 2 per row and component,
the squares, D, and the moments, D (D + 1) / 2 + D; 2 FLOP each) against the GEMM
rate; for ``diag`` its input bytes/s against the read rate and its exponentials/s
against the exp rate.  Medians of ``--repeats``.
"""
import argparse
import os
import sys

import numpy as np
from numba import get_num_threads, njit, prange

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import median_seconds, mixture_data  # noqa: E402

from fastvi.kernels import estep  # noqa: E402


@njit(parallel=True, nogil=True, fastmath=True)  # fastmath: a vectorised sum
def _parallel_sum(a):
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i]
    return total


@njit(parallel=True, nogil=True)
def _parallel_copy(a, b):
    for i in prange(a.shape[0]):
        b[i] = a[i]


@njit(parallel=True, nogil=True)
def _exp_blocks(z, out):
    """exp of z (n_blocks, K, B) by the kernels' own block exp, one block per task."""
    for b in prange(z.shape[0]):
        shift = np.zeros(z.shape[2])
        total = np.empty(z.shape[2])
        estep._exp_rows(z[b], shift, out[b], total, z.shape[2])


def machine_rates(n_values, n_components, repeats):
    import threadpoolctl
    rng = np.random.default_rng(0)
    with threadpoolctl.threadpool_limits(get_num_threads(), user_api="blas"):
        a, b = rng.standard_normal((3000, 3000)), rng.standard_normal((3000, 3000))
        gemm = 2 * 3000 ** 3 / median_seconds(lambda: a @ b, repeats, True)
    big = np.ones(1 << 27)  # 1 GiB
    out = np.empty_like(big)
    read = big.nbytes / median_seconds(lambda: _parallel_sum(big), repeats, True)
    copy = 2 * big.nbytes / median_seconds(lambda: _parallel_copy(big, out), repeats, True)
    big = out = None  # 2 GiB back before the exp test
    block = estep.BLOCK_ROWS
    n_blocks = max(1, n_values // (n_components * block))
    z = -rng.random((n_blocks, n_components, block)) * 30.0
    e = np.empty_like(z)
    exps = z.size / median_seconds(lambda: _exp_blocks(z, e), repeats, True)
    return gemm, read, copy, exps


def kernel_seconds(X, covariance_type, n_components, repeats):
    n, d = X.shape
    rng = np.random.default_rng(1)
    means = X[rng.choice(n, n_components, replace=False)].astype(np.float64)
    c = np.zeros(n_components)
    empty, labels = np.empty(0), np.empty((0, 1), dtype=np.int64)
    resp = np.empty((0, n_components))
    if covariance_type == "full":
        factor = np.broadcast_to(np.eye(d), (n_components, d, d)).copy()
        kernel, s2_shape = estep.estep_full, (n_components, d, d)
    else:
        factor = np.ones((n_components, d))
        kernel, s2_shape = estep.estep_diag, (n_components, d)

    def one_pass():
        nk, s1, s2 = np.zeros(n_components), np.zeros((n_components, d)), np.zeros(s2_shape)
        kernel(X, empty, c, means, factor, nk, s1, s2, empty, resp, labels)
    return median_seconds(one_pass, repeats, True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n, d, k = args.n_samples, args.n_features, args.n_components
    gemm, read, copy, exps = machine_rates(n * k, k, args.repeats)
    print(f"machine, {get_num_threads()} threads: GEMM {gemm / 1e9:.1f} GFLOP/s, read "
          f"{read / 1e9:.1f} GB/s, copy {copy / 1e9:.1f} GB/s, exp {exps / 1e9:.2f} G/s")
    flops_per_row_component = 2 * (d * (d + 1) // 2 + d + d * (d + 1) // 2 + d)
    print(f"N={n} D={d} K={k}, one pass with statistics (median of {args.repeats})")
    for dtype in ("float64", "float32"):
        X = mixture_data(n, d, k, dtype)
        seconds = kernel_seconds(X, "full", k, args.repeats)
        flops = flops_per_row_component * n * k / seconds
        print(f"full {dtype:8} {seconds:.4f} s  {flops / 1e9:6.1f} GFLOP/s = "
              f"{flops / gemm:5.1%} of GEMM")
        seconds = kernel_seconds(X, "diag", k, args.repeats)
        print(f"diag {dtype:8} {seconds:.4f} s  {X.nbytes / seconds / 1e9:6.2f} GB/s = "
              f"{X.nbytes / seconds / read:5.1%} of read; {n * k / seconds / 1e9:.2f} G exp/s "
              f"= {n * k / seconds / exps:5.1%} of the exp loop")


if __name__ == "__main__":
    main()
