"""Small data: fastvi beside scikit-learn where a fit takes milliseconds.

Usage::

    python bench/small.py [--datasets iris wine digits] [--covariance-types full tied diag
                          spherical] [--n-components 3 10] [--repeats 10]
                          [--model gmm|bgmm] [--no-grid] [--json bench/results/small.json]

Many users meet the library on small data first, in grid searches that fit it hundreds of
times, where fixed costs (validation, thread start-up, per-call set-up) and not the
kernels decide the time.  For each data set bundled with scikit-learn (iris 150 x 4, wine
178 x 13, digits 1797 x 64), each covariance type and each K: the median wall time of
``--repeats`` fits of ``fastvi.GaussianMixture`` and ``sklearn.mixture.GaussianMixture``
with the same settings (the defaults: kmeans initialisation, ``tol=1e-3`` on the mean
log-likelihood per row, which both libraries use, ``max_iter=100``, ``random_state=0``),
timed alternately so that a noisy machine slows both alike; then, per data set and
covariance type, one ``GridSearchCV`` over ``n_components`` in {2, 3, 5, 10} with 3
shuffled folds (12 fits and their held-out scores).  Each row says the iterations each
library ran and the log-likelihood it reached, so that the times compare the same work.
``--model bgmm`` compares the Bayesian mixtures instead (their bounds differ, see the
README, so their iteration counts may too).

Ratios are fastvi / scikit-learn: below 1 is faster.  Compare ratios of one run; the
machine's times move from run to run.
"""
import argparse
import json
import os
import time
import warnings

import numpy as np

DATASETS = ("iris", "wine", "digits")
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
GRID = (2, 3, 5, 10)


def load(name):
    from sklearn import datasets
    return getattr(datasets, f"load_{name}")().data


def estimators(model):
    import fastvi
    from sklearn import mixture
    if model == "bgmm":
        return {"fastvi": fastvi.BayesianGaussianMixture,
                "sklearn": mixture.BayesianGaussianMixture}
    return {"fastvi": fastvi.GaussianMixture, "sklearn": mixture.GaussianMixture}


def alternate(calls, repeats):
    """The median seconds of each of ``calls`` (name -> function), run in turn
    ``repeats`` times after one untimed round."""
    times = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def one_fit_rows(X, dataset, classes, covariance_types, ks, repeats):
    rows = []
    for cov in covariance_types:
        for k in ks:
            fitted = {}

            def fit(name):
                fitted[name] = classes[name](n_components=k, covariance_type=cov,
                                               random_state=0).fit(X)

            seconds = alternate({name: (lambda name=name: fit(name)) for name in classes},
                                repeats)
            rows.append({"data": dataset, "covariance_type": cov, "what": f"fit K={k}",
                         **{f"{name} s": seconds[name] for name in classes},
                         **{f"{name} iters": int(fitted[name].n_iter_) for name in classes},
                         **{f"{name} loglik": float(fitted[name].score(X))
                            for name in classes}})
    return rows


def grid_rows(X, dataset, classes, covariance_types, repeats):
    from sklearn.model_selection import GridSearchCV, KFold
    rows = []
    folds = KFold(3, shuffle=True, random_state=0)
    for cov in covariance_types:
        searches = {}

        def search(name):
            searches[name] = GridSearchCV(classes[name](covariance_type=cov, random_state=0),
                                          {"n_components": list(GRID)}, cv=folds).fit(X)

        seconds = alternate({name: (lambda name=name: search(name)) for name in classes},
                            max(1, repeats // 3))
        rows.append({"data": dataset, "covariance_type": cov,
                     "what": f"GridSearchCV K in {list(GRID)}, 3 folds",
                     **{f"{name} s": seconds[name] for name in classes},
                     **{f"{name} best K": int(searches[name].best_params_["n_components"])
                        for name in classes}})
    return rows


def table(rows):
    lines = ["| data | covariance | what | fastvi ms | scikit-learn ms | fastvi / sklearn "
             "| iterations (fastvi, sklearn) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row["fastvi s"] / row["sklearn s"]
        if "fastvi iters" in row:
            same = f"{row['fastvi iters']}, {row['sklearn iters']}"
        else:
            same = f"best K {row['fastvi best K']}, {row['sklearn best K']}"
        lines.append(f"| {row['data']} | {row['covariance_type']} | {row['what']} | "
                     f"{1e3 * row['fastvi s']:.2f} | {1e3 * row['sklearn s']:.2f} | "
                     f"{ratio:.2f}x | {same} |")
    ratios = [row["fastvi s"] / row["sklearn s"] for row in rows]
    lines.append(f"\n{len(rows)} rows; fastvi / scikit-learn: median {np.median(ratios):.2f}x,"
                 f" worst {max(ratios):.2f}x, best {min(ratios):.2f}x")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--covariance-types", nargs="+", default=list(COVARIANCE_TYPES),
                        choices=COVARIANCE_TYPES)
    parser.add_argument("--n-components", nargs="+", type=int, default=[3, 10])
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed fits per library and row (default 10; grid searches "
                             "a third as many, at least 1)")
    parser.add_argument("--model", choices=("gmm", "bgmm"), default="gmm")
    parser.add_argument("--no-grid", action="store_true", help="leave out the grid searches")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)    # both libraries, the same fits
    classes = estimators(args.model)
    rows = []
    for dataset in args.datasets:
        X = load(dataset)
        rows += one_fit_rows(X, dataset, classes, args.covariance_types, args.n_components,
                             args.repeats)
        if not args.no_grid:
            rows += grid_rows(X, dataset, classes, args.covariance_types, args.repeats)
        print(f"{dataset} done", flush=True)
    print(table(rows))
    if args.json:
        with open(args.json + ".tmp", "w") as handle:
            json.dump({"model": args.model, "repeats": args.repeats, "rows": rows}, handle,
                      indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
