"""The backend seam (``fastvi.engine.backend``): a fit through another backend is the
local fit, bit for bit.

Two test doubles keep the contract in different ways from the local backend:

* ``ReversedBackend`` computes the chunks of every request last-first (batch: the whole
  pass backwards) and hands them back in the order asked;
* ``ProcessBackend`` computes every chunk in another process (a pool of two, spawned),
  the chunks of a request concurrently, and collects them in order.

Both run the local kernels chunk by chunk, so their per-chunk arithmetic is the local
backend's, and the contract promises the same bits for the same chunking.
"""
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import fastvi
from conftest import blobs
from fastvi.data.sources import ArraySource
from fastvi.engine import local
from fastvi.engine.backend import Backend, ChunkPass, get_backend
from fastvi.engine.stats import SufficientStats

CHUNK_ROWS = 150            # 600 rows: four chunks


def chunk_stats(chunk, weights, params, search=None, start=0, seed=0):
    """One chunk's statistics from zero with the local kernels (a pool task)."""
    stats = SufficientStats.zeros(params.means, params.full)
    if search is None:
        log_norm = local.accumulate_chunk(chunk, params, weights, stats)
    else:
        log_norm = local.accumulate_truncated(chunk, params, weights, stats, search, start,
                                              seed)
    local.mirror_upper(stats)
    stats.log_norm = log_norm
    stats.weight = float(chunk.shape[0]) if weights is None else float(weights.sum())
    return stats


class _Pass(ChunkPass):
    def __init__(self, backend, source, order, sample_weight, search):
        self.backend, self.source, self.order = backend, source, list(order)
        self.sample_weight, self.search = sample_weight, search
        self.bounds = source.chunk_bounds()
        self.position = 0

    def stats(self, params, count=None):
        stop = len(self.order) if count is None else min(self.position + count, len(self.order))
        positions = list(range(self.position, stop))
        self.position = stop
        jobs = []
        for j in positions:
            start, end = self.bounds[self.order[j]]
            weights = None if self.sample_weight is None else self.sample_weight[start:end]
            seed = 0 if self.search is None else (self.search.first_seed + j) % (1 << 63)
            jobs.append((j, (self.source.read(start, end), weights, params, self.search,
                             start, seed)))
        results = self.backend.compute(jobs)
        for j in positions:
            yield self.order[j], results[j]


class ReversedBackend(Backend):
    """Every request's chunks computed last-first, handed back in order."""

    name = "reversed"

    def __init__(self):
        self.computed = []          # positions, in the order they were computed

    def compute(self, jobs):
        results = {}
        for j, args in reversed(jobs):
            self.computed.append(j)
            results[j] = chunk_stats(*args)
        return results

    def open_pass(self, source, order, sample_weight=None, search=None):
        return _Pass(self, source, order, sample_weight, search)

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        bounds = source.chunk_bounds()
        parts = {}
        for index in reversed(range(len(bounds))):
            start, stop = bounds[index]
            rows = ArraySource(source.read(start, stop), chunk_rows=max(stop - start, 1))
            parts[index] = local.per_row(rows, params, log_norm, resp, labels, top)
        return {key: np.concatenate([parts[i][key] for i in range(len(bounds))])
                for key in parts[0]}

    def neighbour_lists(self, params, truncation):
        return local.neighbour_lists(params, truncation)


class ProcessBackend(ReversedBackend):
    """Every chunk computed in a worker process, a request's chunks concurrently.  The
    truncated search is not offered: its supports live in this process."""

    name = "process"

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def compute(self, jobs):
        futures = {j: self.pool.submit(chunk_stats, *args) for j, args in jobs}
        return {j: future.result() for j, future in futures.items()}

    def open_pass(self, source, order, sample_weight=None, search=None):
        if search is not None:
            raise NotImplementedError("the process double has no truncated search")
        return super().open_pass(source, order, sample_weight, search)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def data():
    X, _ = blobs(n_per=200)
    weights = np.random.default_rng(3).integers(0, 3, X.shape[0]).astype(float)
    return X, weights


FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_",
          "lower_bounds_", "n_iter_", "converged_", "weight_concentration_",
          "mean_precision_", "degrees_of_freedom_")


def assert_same_fit(expected, got):
    for name in FITTED:
        if hasattr(expected, name):
            a, b = getattr(expected, name), getattr(got, name)
            if isinstance(a, tuple):
                for part_a, part_b in zip(a, b):
                    np.testing.assert_array_equal(part_a, part_b, err_msg=name)
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)


def fit_both(cls, X, backend, sample_weight=None, **kwargs):
    kwargs = {"n_components": 3, "covariance_type": "full", "chunk_size": CHUNK_ROWS,
              "batch_size": CHUNK_ROWS, "random_state": 0, "max_iter": 6, "tol": 0.0, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        expected = cls(**kwargs).fit(X, sample_weight=sample_weight)
        got = cls(backend=backend, **kwargs).fit(X, sample_weight=sample_weight)
    return expected, got


CASES = [(cls, algorithm, covariance_type)
         for cls in (fastvi.GaussianMixture, fastvi.BayesianGaussianMixture)
         for algorithm in ("batch", "stochastic", "memoized")
         for covariance_type in (("full", "diag") if cls is fastvi.GaussianMixture
                                 else ("tied", "spherical"))]


def _case_id(case):
    cls, algorithm, covariance_type = case
    return f"{cls.__name__}-{algorithm}-{covariance_type}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_a_fit_in_reverse_chunk_order_is_the_local_fit(case, weighted, data):
    cls, algorithm, covariance_type = case
    X, weights = data
    backend = ReversedBackend()
    expected, got = fit_both(cls, X, backend, weights if weighted else None,
                             algorithm=algorithm, covariance_type=covariance_type)
    assert_same_fit(expected, got)
    if algorithm == "batch":
        # the double really did compute each pass backwards
        assert backend.computed[:4] == [3, 2, 1, 0]
    for method in ("predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(expected, method)(X), getattr(got, method)(X),
                                      err_msg=method)


@pytest.mark.parametrize("algorithm", ["batch", "memoized"])
def test_a_truncated_fit_in_reverse_chunk_order_is_the_local_fit(algorithm, data):
    X, _ = data
    expected, got = fit_both(fastvi.BayesianGaussianMixture, X, ReversedBackend(),
                             algorithm=algorithm, n_components=6, n_active=2, n_candidates=4)
    assert_same_fit(expected, got)
    for sparse in (False, True):
        a = expected.predict_proba(X, sparse=sparse)
        b = got.predict_proba(X, sparse=sparse)
        np.testing.assert_array_equal(a.toarray() if sparse else a,
                                      b.toarray() if sparse else b)
    np.testing.assert_array_equal(expected.top_responsibilities(X, 2)[1],
                                  got.top_responsibilities(X, 2)[1])


def test_partial_fit_through_another_backend_is_the_local_one(data):
    X, _ = data
    models = [fastvi.GaussianMixture(3, random_state=0, total_samples=600),
              fastvi.GaussianMixture(3, random_state=0, total_samples=600,
                                     backend=ReversedBackend())]
    for model in models:
        for start in range(0, 600, 200):
            model.partial_fit(X[start:start + 200])
    assert_same_fit(*models)


@pytest.mark.parametrize("algorithm", ["batch", "stochastic", "memoized"])
def test_a_fit_computed_in_other_processes_is_the_local_fit(algorithm, data, pool):
    X, weights = data
    expected, got = fit_both(fastvi.BayesianGaussianMixture, X, ProcessBackend(pool), weights,
                             algorithm=algorithm, max_iter=4)
    assert_same_fit(expected, got)


def test_backend_names_and_errors():
    assert get_backend("local").name == "local"
    double = ReversedBackend()
    assert get_backend(double) is double
    with pytest.raises(ValueError,
                       match="backend must be one of \\('local', 'dask', 'cuda', 'auto'\\)"):
        fastvi.GaussianMixture(backend="gpu").fit(np.zeros((4, 2)))
    assert fastvi.GaussianMixture().get_params()["backend"] == "local"


def test_model_files_and_checkpoint_meta_do_not_hold_a_backend(data, tmp_path):
    """Where a fit ran is not part of the model: a model fitted through another backend
    saves and loads as a local model that predicts the same; a checkpoint's meta names
    the backend instead of holding it (an instance may hold a cluster's client)."""
    from fastvi.io.checkpoint import estimator_params
    X, _ = data
    model = fastvi.GaussianMixture(3, random_state=0, backend=ReversedBackend()).fit(X)
    model.save(tmp_path / "m.h5")
    loaded = fastvi.load(tmp_path / "m.h5")
    assert loaded.backend == "local"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert estimator_params(model)["backend"] == "reversed"
