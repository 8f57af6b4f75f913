"""Truncated variational EM (``n_active`` L, ``n_candidates`` G) against the dense E-step.

Usage::

    python bench/truncated.py [--n-samples 1000000] [--n-features 16]
                              [--n-components 64 256 1024] [--covariance-types full diag]
                              [--settings 1,8 4,16 8,32] [--passes 10] [--json OUT.json]

For every K the data are ``fastvi.datasets.make_mixture`` (K true clusters, separation
4, float32, seed 0).  One k-means initialisation (on 100k rows) gives the starting
weights, means and precisions, and every fit (dense, then each (L, G)) runs ``--passes``
batch EM passes from it with ``tol=0``.

Reported per fit:

* ``s/pass``: the median wall time of passes 2..P (the pass callback's clock).  The first
  pass of a truncated fit also finds each row's exact top L with the dense kernel, so
  it is reported on its own (``first``);
* ``loglik``: the final model's exact mean log-likelihood per row, ``score(X)``, which
  evaluates every component (the same measure for dense and truncated fits);
* ``bound``: the fit's own last bound per row (the truncated free energy);
* ``speed-up``: dense s/pass over truncated s/pass, in the same run.
"""
import argparse
import json
import time
import warnings

import numpy as np

import fastvi
from fastvi.datasets import make_mixture


def timed_fit(n_components, covariance_type, start, X, passes, n_active=None,
              n_candidates=None):
    stamps = []

    def callback(record):
        if record["event"] == "pass":
            stamps.append(time.perf_counter())

    model = fastvi.GaussianMixture(n_components, covariance_type=covariance_type, tol=0,
                                   max_iter=passes, n_active=n_active,
                                   n_candidates=n_candidates, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        began = time.perf_counter()
        model.fit(X, callback=callback)
    durations = np.diff([began] + stamps)
    return {"first": float(durations[0]),
            "per_pass": float(np.median(durations[1:])) if passes > 1 else float("nan"),
            "loglik": model.score(X), "bound": model.lower_bound_}


def starting_point(n_components, covariance_type, X):
    init = fastvi.GaussianMixture(n_components, covariance_type=covariance_type, max_iter=0,
                                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        init.fit(X)
    return dict(weights_init=init.weights_, means_init=init.means_,
                precisions_init=init.precisions_)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--covariance-types", nargs="+", default=["full", "diag"])
    parser.add_argument("--settings", nargs="+", default=["1,8", "4,16", "8,32"],
                        help="L,G pairs")
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    settings = [tuple(int(v) for v in pair.split(",")) for pair in args.settings]

    # compile every kernel variant outside the timings
    warm = make_mixture(5000, args.n_features, 8, random_state=1)[0]
    for cov in args.covariance_types:
        start = starting_point(8, cov, warm)
        timed_fit(8, cov, start, warm, 2)
        timed_fit(8, cov, start, warm, 2, 2, 4)

    results = []
    print(f"N={args.n_samples} D={args.n_features} passes={args.passes} "
          "(s/pass: median of passes 2..P)")
    print(f"{'K':>5} {'cov':>5} {'L,G':>7} {'first s':>8} {'s/pass':>8} {'speed-up':>8} "
          f"{'loglik':>10} {'vs dense':>9} {'bound':>10}")
    for n_components in args.n_components:
        X = make_mixture(args.n_samples, args.n_features, n_components, random_state=0)[0]
        for cov in args.covariance_types:
            start = starting_point(n_components, cov, X)
            dense = timed_fit(n_components, cov, start, X, args.passes)
            rows = [("dense", dense)]
            for n_active, n_candidates in settings:
                rows.append((f"{n_active},{n_candidates}",
                             timed_fit(n_components, cov, start, X, args.passes, n_active,
                                       n_candidates)))
            for name, r in rows:
                r.update(K=n_components, covariance_type=cov, setting=name,
                         speedup=dense["per_pass"] / r["per_pass"],
                         loglik_rel=(r["loglik"] - dense["loglik"]) / abs(dense["loglik"]))
                print(f"{n_components:>5} {cov:>5} {name:>7} {r['first']:>8.3f} "
                      f"{r['per_pass']:>8.3f} {r['speedup']:>7.1f}x {r['loglik']:>10.4f} "
                      f"{100 * r['loglik_rel']:>+8.3f}% {r['bound']:>10.4f}", flush=True)
                results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_samples": args.n_samples, "n_features": args.n_features,
                       "passes": args.passes, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
