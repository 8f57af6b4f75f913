"""fastvi against scikit-learn: seconds per EM / VB-EM iteration on the same data, one run.

Usage::

    python bench/compare_sklearn.py [--n-samples 1000000] [--n-features 16] [--n-components 16]
                                    [--repeats 3] [--covariance-types full diag]
                                    [--dtypes float64 float32] [--models em vb]
    python bench/compare_sklearn.py --whole-fit 10 [--init-params random_from_data kmeans]

Each model is fitted from a cheap initialisation (``random_from_data``) with ``tol=0`` for
``a`` and for ``b`` iterations; the time per iteration is ``(t_b - t_a) / (b - a)``, which
removes the initialisation and start-up cost from both sides.  The median over
``--repeats`` runs is reported with the ratio scikit-learn / fastvi.  scikit-learn always
gets float64 (it converts float32 to float64 itself for these models).

``--whole-fit N``: whole EM fits of N iterations instead, initialisation included (see
``whole_fits``).
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import mixture_data  # noqa: E402

import fastvi  # noqa: E402
from sklearn import mixture as sk  # noqa: E402

ITERS_A, ITERS_B = 1, 4


def fit_seconds(make, X, max_iter):
    model = make(max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X)
        return time.perf_counter() - start


def per_iteration(make, X, repeats):
    fit_seconds(make, X[:5000], 1)                 # compile / warm caches outside the timing
    times = []
    for _ in range(repeats):
        t_a = fit_seconds(make, X, ITERS_A)
        t_b = fit_seconds(make, X, ITERS_B)
        times.append((t_b - t_a) / (ITERS_B - ITERS_A))
    return float(np.median(times))


def factories(model, covariance_type, n_components):
    common = dict(covariance_type=covariance_type, tol=0.0, init_params="random_from_data",
                  random_state=0)
    if model == "em":
        return (lambda it: fastvi.GaussianMixture(n_components, max_iter=it, **common),
                lambda it: sk.GaussianMixture(n_components, max_iter=it, **common))
    return (lambda it: fastvi.BayesianGaussianMixture(n_components, max_iter=it, **common),
            lambda it: sk.BayesianGaussianMixture(n_components=n_components, max_iter=it, **common))


def whole_fits(args):
    """``--whole-fit N``: fits of N iterations, initialisation included, from each
    library's own ``init_params`` (fastvi initialises on at most ``init_sample_size``
    rows, 100,000 by default; scikit-learn on all of them); one fit each, with the final
    mean log-likelihood per row of each (a faster fit that ends worse shows it)."""
    print(f"{'cov':5} {'init':17} {'fastvi s':>9} {'sklearn s':>10} {'ratio':>7} "
          f"{'fastvi ll/row':>14} {'sklearn ll/row':>15}")
    X = mixture_data(args.n_samples, args.n_features, args.n_components, "float64")
    for covariance_type in args.covariance_types:
        for init_params in args.init_params:
            common = dict(covariance_type=covariance_type, tol=0.0, init_params=init_params,
                          random_state=0, max_iter=args.whole_fit)
            ours = fastvi.GaussianMixture(args.n_components, **common)
            theirs = sk.GaussianMixture(args.n_components, **common)
            fit_seconds(lambda it: fastvi.GaussianMixture(args.n_components, **{
                **common, "max_iter": 1}), X[:5000], 1)                  # compile
            seconds = []
            for model in (ours, theirs):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    model.fit(X)
                    seconds.append(time.perf_counter() - start)
            print(f"{covariance_type:5} {init_params:17} {seconds[0]:9.2f} {seconds[1]:10.2f} "
                  f"{seconds[1] / seconds[0]:6.1f}x {ours.score(X):14.5f} "
                  f"{theirs.score(X):15.5f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", nargs="+", default=["full", "diag"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--models", nargs="+", default=["em", "vb"])
    parser.add_argument("--whole-fit", type=int, default=0, metavar="N_ITER",
                        help="time whole EM fits of N_ITER iterations, initialisation "
                             "included, instead of the time per iteration")
    parser.add_argument("--init-params", nargs="+", default=["random_from_data", "kmeans"])
    args = parser.parse_args(argv)
    import numba
    import threadpoolctl
    print(f"N={args.n_samples} D={args.n_features} K={args.n_components}, "
          f"{numba.get_num_threads()} Numba threads, BLAS: "
          f"{[i['internal_api'] + ' ' + str(i['num_threads']) for i in threadpoolctl.threadpool_info()]}")
    if args.whole_fit:
        return whole_fits(args)
    print(f"{'model':5} {'cov':5} {'dtype':8} {'fastvi s/it':>12} {'sklearn s/it':>13} {'ratio':>7}")
    sk_cache = {}
    for model in args.models:
        for covariance_type in args.covariance_types:
            ours, theirs = factories(model, covariance_type, args.n_components)
            key = (model, covariance_type)
            if key not in sk_cache:
                X64 = mixture_data(args.n_samples, args.n_features, args.n_components, "float64")
                sk_cache[key] = per_iteration(theirs, X64, args.repeats)
            for dtype in args.dtypes:
                X = mixture_data(args.n_samples, args.n_features, args.n_components, dtype)
                t_ours = per_iteration(ours, X, args.repeats)
                t_theirs = sk_cache[key]
                print(f"{model:5} {covariance_type:5} {dtype:8} {t_ours:12.4f} {t_theirs:13.4f} "
                      f"{t_theirs / t_ours:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
