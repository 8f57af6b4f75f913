"""Fixed-seed data sets for the benchmarks, made in one place (as numpy's benchmarks do)."""
import contextlib
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


def seconds_per_pass(fit, passes_a, passes_b, repeats):
    """The median over ``repeats`` of ``(t(b passes) - t(a passes)) / (b - a)``, which
    removes initialisation and start-up; ``fit(passes)`` returns ``(seconds, model)``.
    One untimed ``fit(1)`` first (compile, warm the workers).  Returns ``(seconds,
    the last model of b passes)``."""
    fit(1)
    times, model = [], None
    for _ in range(repeats):
        t_a, _ = fit(passes_a)
        t_b, model = fit(passes_b)
        times.append((t_b - t_a) / (passes_b - passes_a))
    return float(np.median(times)), model


def same_fit(a, b, names=("weights_", "means_", "covariances_")):
    """Whether two fitted mixtures hold the same bits."""
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in names)


@contextlib.contextmanager
def local_dask_backend(workers):
    """A ``DaskBackend`` on a LocalCluster of ``workers`` single-thread processes on
    loopback, sharing this machine's cores (each worker's kernels on cores / workers Numba
    threads); yields ``(backend, threads per worker)``."""
    from distributed import Client, LocalCluster
    from fastvi.engine.cluster import DaskBackend
    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1",
                      env={"NUMBA_NUM_THREADS": str(threads)}) as cluster, \
            Client(cluster) as client:
        yield DaskBackend(client), threads
