"""Fixed-seed data sets for the benchmarks, made in one place (as numpy's benchmarks do)."""
import functools
import os
import time

import numpy as np


@functools.lru_cache(maxsize=4)
def mixture_data(n_samples, n_features, n_components, dtype="float64", seed=0):
    """Rows from a mixture of ``n_components`` Gaussians with random full covariances.

    Component means are spread so clusters overlap a little, which is the hard (and
    honest) case for EM: responsibilities are not all 0 or 1.
    """
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((n_components, n_features))
    factors = rng.standard_normal((n_components, n_features, n_features)) / np.sqrt(n_features)
    factors += np.eye(n_features)
    labels = rng.integers(0, n_components, n_samples)
    X = np.empty((n_samples, n_features))
    for k in range(n_components):
        rows = labels == k
        X[rows] = means[k] + rng.standard_normal((rows.sum(), n_features)) @ factors[k].T
    return X.astype(dtype)


def mixture_file(folder, n_samples, n_features=16, n_components=16, warm=True):
    """The float32 HDF5 file of ``fastvi.datasets.write_mixture_h5`` (seed 0) in
    ``folder``, written on first use and reused; ``warm``: read it once, so a benchmark
    that follows reads from the page cache, not the disk."""
    from fastvi.datasets import write_mixture_h5
    path = os.path.join(folder, f"mixture_{n_samples}x{n_features}.h5")
    if not os.path.exists(path):
        start = time.perf_counter()
        write_mixture_h5(path, n_samples, n_features=n_features, n_components=n_components,
                         random_state=0)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s", flush=True)
    if warm:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    return path


def median_seconds(call, repeats, warm_up=False):
    """The median wall time of ``repeats`` calls of ``call()`` (one untimed call first
    when ``warm_up``)."""
    if warm_up:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def elbo_curve(model, source):
    """Fit ``model`` (a BayesianGaussianMixture) on ``source``; return its exact ELBO per
    row after every pass against wall time, [(seconds, elbo), ...].  Each ELBO is one more
    pass over ``source`` (the statistics under the pass's parameters, less the KL terms),
    left out of the clock."""
    import warnings
    from fastvi.engine import local
    curve, clock = [], {"excluded": 0.0, "start": None}

    def on_pass(record):
        if record["event"] != "pass":
            return
        pause = time.perf_counter()
        stats = local.accumulate(source, model._kernel_params())
        curve.append((pause - clock["start"] - clock["excluded"],
                      (stats.log_norm - model._kl()) / stats.weight))
        clock["excluded"] += time.perf_counter() - pause

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock["start"] = time.perf_counter()
        model.fit(source, callback=on_pass)
    return curve
