"""Missing values (``missing="marginalize"``, issue 29): what a pass costs, what a fit gains.

Usage::

    python bench/missing.py [--n-samples 1000000] [--fit-rows 200000] [--repeats 5]
                            [--max-iter 100] [--covariance-type full] [--passes-only]
                            [--out bench/results/missing.json]

Data: ``benchmarks.common.mixture_data`` (16 features, 16 components with full
covariances, fixed seed), with entries removed completely at random ("random") or in
blocks of columns ("columns": the first columns absent from a run of rows, as when some
sources lack a field), 0%, 10% and 30% of the entries.

1. **Seconds per E-step pass** over ``--n-samples`` rows (K = 16, ``--covariance-type``,
   the statistics included), medians of ``--repeats``, against the complete-data pass in the same run.
   The issue's target: at 10% missing at random, at most 2x.
2. **Held-out log-likelihood** of complete test rows (20,000, drawn with the training
   rows) after fitting on ``--fit-rows`` training rows with holes: fastvi's
   ``missing="marginalize"``; scikit-learn's GaussianMixture on the rows with each hole
   replaced by its column mean; scikit-learn on the complete rows only (dropped rows).
   K = 16, full, ``max_iter`` passes, one initialisation (kmeans, seed 0) each.
   ``--passes-only`` leaves this part out.
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import median_seconds, mixture_data  # noqa: E402

N_FEATURES, N_COMPONENTS, N_TEST = 16, 16, 20_000
CASES = [("complete", 0.0), ("random", 0.1), ("random", 0.3), ("columns", 0.1),
         ("columns", 0.3)]


def with_holes(X, pattern, rate, seed=1):
    """``X`` with ``rate`` of its entries NaN: at random, or in blocks of columns (the
    first quarter of the columns missing from the first ``4 rate`` of the rows, or for
    30% half of the columns from the first 60% of the rows)."""
    holes = X.copy()
    if pattern == "random":
        holes[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    elif pattern == "columns":
        n_rows, n_features = X.shape
        columns = n_features // 4 if rate <= 0.125 else n_features // 2
        rows = int(round(rate * n_features / columns * n_rows))
        holes[:rows, :columns] = np.nan
    return holes


def pass_seconds(X, params, repeats):
    from fastvi.data.sources import ArraySource
    from fastvi.engine import local
    source = ArraySource(X, chunk_rows=65536)
    source.allow_nan = True
    return median_seconds(lambda: local.accumulate(source, params), repeats, warm_up=True)


def quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


def held_out(train, test, max_iter):
    """Mean log-likelihood per test row of the three fits, and their seconds."""
    from sklearn.mixture import GaussianMixture as SkMixture
    import fastvi
    out = {}
    start = time.perf_counter()
    ours = quiet(lambda: fastvi.GaussianMixture(
        N_COMPONENTS, missing="marginalize", max_iter=max_iter, random_state=0,
        init_params="kmeans").fit(train))
    out["fastvi marginalize"] = (ours.score(test), time.perf_counter() - start)
    filled = np.where(np.isnan(train), np.nanmean(train, axis=0), train)
    start = time.perf_counter()
    imputed = quiet(lambda: SkMixture(N_COMPONENTS, max_iter=max_iter,
                                      random_state=0).fit(filled))
    out["mean imputation + scikit-learn"] = (imputed.score(test), time.perf_counter() - start)
    complete = train[~np.isnan(train).any(axis=1)]
    if complete.shape[0] >= 10 * N_COMPONENTS:
        start = time.perf_counter()
        dropped = quiet(lambda: SkMixture(N_COMPONENTS, max_iter=max_iter,
                                          random_state=0).fit(complete))
        out[f"dropped rows + scikit-learn ({complete.shape[0]} rows)"] = (
            dropped.score(test), time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--fit-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--covariance-type", default="full",
                        choices=("full", "tied", "diag", "spherical"))
    parser.add_argument("--passes-only", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "missing.json"))
    args = parser.parse_args()
    import fastvi
    data = mixture_data(args.n_samples + N_TEST, N_FEATURES, N_COMPONENTS, "float64")
    test, X = data[:N_TEST], data[N_TEST:]
    model = quiet(lambda: fastvi.GaussianMixture(
        N_COMPONENTS, max_iter=5, random_state=0, missing="marginalize",
        covariance_type=args.covariance_type).fit(X[:100_000]))
    params = model._kernel_params()
    results = {"n_samples": args.n_samples, "fit_rows": args.fit_rows,
               "covariance_type": args.covariance_type,
               "repeats": args.repeats, "passes": {}, "held_out": {}}
    print(f"E-step pass, {args.n_samples} x {N_FEATURES}, K = {N_COMPONENTS} "
          f"{args.covariance_type}, "
          f"median of {args.repeats}")
    print("| missing | rows with holes | s/pass | x complete |\n|---|---|---|---|")
    complete_seconds = None
    for pattern, rate in CASES:
        holes = with_holes(X, pattern, rate)
        seconds = pass_seconds(holes, params, args.repeats)
        complete_seconds = complete_seconds or seconds
        incomplete = float(np.isnan(holes).any(axis=1).mean())
        name = "none" if rate == 0 else f"{rate:.0%} {pattern}"
        results["passes"][name] = {"seconds": seconds, "ratio": seconds / complete_seconds,
                                   "incomplete_rows": incomplete}
        print(f"| {name} | {incomplete:.0%} | {seconds:.3f} | "
              f"{seconds / complete_seconds:.2f} |", flush=True)
    held_out_cases = [] if args.passes_only else CASES[1:]
    if held_out_cases:
        print(f"\nheld-out log-likelihood per row of {N_TEST} complete rows; fits on "
              f"{args.fit_rows} rows, max_iter={args.max_iter}")
        print("| missing | fit | held-out | fit s |\n|---|---|---|---|")
    for pattern, rate in held_out_cases:
        train = with_holes(X[:args.fit_rows], pattern, rate)
        name = f"{rate:.0%} {pattern}"
        scores = held_out(train, test, args.max_iter)
        results["held_out"][name] = scores
        for fit, (score, seconds) in scores.items():
            print(f"| {name} | {fit} | {score:.4f} | {seconds:.1f} |", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
