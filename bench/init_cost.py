"""What initialisation costs against one E-step pass over the same rows, at every K.

Usage::

    python bench/init_cost.py [--n-samples 200000] [--n-features 16]
                              [--n-components 16 64 256 1024] [--covariance-types diag full]
                              [--methods random_from_data k-means++ random] [--repeats 3]
                              [--baseline-src DIR [--baseline-repeats 1]]
                              [--init-sample-size ROWS]

For each K: the seconds of a fit with ``max_iter=0`` (drawing the sample, the method's
responsibilities, their statistics and the M-step: the whole initialisation) with
``init_sample_size`` = all rows (or ``--init-sample-size``: 100000 is the estimators'
default), against one dense E-step pass over those rows under the
initial parameters (the statistics included), and (``trunc s``) the initialisation of a
truncated fit (``n_active=8, n_candidates=32``) where K > 32.  Medians of ``--repeats``.
``kmeans`` (Lloyd's iterations to a fixed point, scikit-learn's KMeans) is left out by
default: it is many passes by design (``--methods kmeans`` runs it).

``--baseline-src DIR``: also time the initialisation of another checkout of fastvi (the
commit before a change), in a subprocess, for a before/after ratio in the same run
(``--baseline-repeats``, default 1: the old code took 45 s at K = 1024).
"""
import argparse
import json
import os
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import median_seconds, mixture_data  # noqa: E402

_INIT_SECONDS = """
import json, sys, time, warnings
import numpy as np
sys.path.insert(0, {bench!r})
from benchmarks.common import mixture_data
import fastvi
X = mixture_data({n}, {d}, 16, "float64")
with warnings.catch_warnings():          # load the kernels: a fresh process compiles them
    warnings.simplefilter("ignore")
    fastvi.GaussianMixture(4, covariance_type={cov!r}, max_iter=0).fit(X[:2000])
times = []
for _ in range({repeats}):
    model = fastvi.GaussianMixture({k}, covariance_type={cov!r}, init_params={method!r},
                                   max_iter=0, init_sample_size={n}, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X)
        times.append(time.perf_counter() - start)
print(json.dumps(float(np.median(times))))
"""


SAMPLE_ROWS = None       # --init-sample-size; None: all rows


def init_model(X, k, covariance_type, method, **kwargs):
    import fastvi
    model = fastvi.GaussianMixture(k, covariance_type=covariance_type, init_params=method,
                                   max_iter=0, init_sample_size=SAMPLE_ROWS or X.shape[0],
                                   random_state=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X)


def baseline_init_seconds(src, args, k, covariance_type, method):
    code = _INIT_SECONDS.format(bench=os.path.dirname(os.path.abspath(__file__)),
                                n=args.n_samples, d=args.n_features,
                                repeats=args.baseline_repeats,
                                k=k, cov=covariance_type, method=method)
    env = {**os.environ, "PYTHONPATH": src}
    # run in ``src``: ``python -c`` puts its working directory first on the path
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=src, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--covariance-types", nargs="+", default=["diag", "full"])
    parser.add_argument("--methods", nargs="+",
                        default=["random_from_data", "k-means++", "random"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", default=None)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--init-sample-size", type=int, default=None)
    args = parser.parse_args()
    global SAMPLE_ROWS
    SAMPLE_ROWS = args.init_sample_size
    from fastvi.engine.backend import total_stats
    from fastvi.engine.local import LocalBackend

    X = mixture_data(args.n_samples, args.n_features, 16, "float64")
    sample = "all rows" if SAMPLE_ROWS is None else f"{SAMPLE_ROWS} rows"
    print(f"N={args.n_samples} D={args.n_features}, init sample = {sample}; "
          f"{os.cpu_count()} threads; medians of {args.repeats}")
    header = f"{'cov':6}{'K':>6}{'method':>18}{'init s':>9}{'pass s':>9}{'init/pass':>10}"
    header += f"{'trunc s':>9}"     # the initialisation of a truncated fit (n_active=8)
    if args.baseline_src:
        header += f"{'before s':>10}{'speed-up':>9}"
    print(header)
    for covariance_type in args.covariance_types:
        for k in args.n_components:
            for method in args.methods:
                init_model(X, k, covariance_type, method)                  # compile
                init_s = median_seconds(lambda: init_model(X, k, covariance_type, method),
                                        args.repeats)
                model = init_model(X, k, covariance_type, method)
                params = model._kernel_params()
                source = model._validate_X(X, reset=False)
                with model._running():
                    total_stats(LocalBackend(), source, params)             # compile
                    pass_s = median_seconds(
                        lambda: total_stats(LocalBackend(), source, params), args.repeats)
                line = (f"{covariance_type:6}{k:6d}{method:>18}{init_s:9.3f}{pass_s:9.3f}"
                        f"{init_s / pass_s:10.2f}")
                if k > 32:
                    def truncated_init():
                        init_model(X, k, covariance_type, method, n_active=8,
                                   n_candidates=32)
                    truncated_init()                                        # compile
                    line += f"{median_seconds(truncated_init, args.repeats):9.3f}"
                else:
                    line += f"{'-':>9}"
                if args.baseline_src:
                    before = baseline_init_seconds(args.baseline_src, args, k,
                                                   covariance_type, method)
                    line += f"{before:10.3f}{before / init_s:8.1f}x"
                print(line, flush=True)


if __name__ == "__main__":
    main()
