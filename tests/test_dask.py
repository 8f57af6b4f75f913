"""The Dask backend (``fastvi.engine.cluster``) on a real two-process cluster.

A fit through ``DaskBackend`` is the single-process (local backend) fit for the same
chunking, bit for bit: every fitted attribute, ``lower_bound_``, ``lower_bounds_`` and
``n_iter_``; so are the per-row outputs.  Covered: both estimators; batch EM / VB-EM,
stochastic EM / VB, memoized; the truncated q; ``partial_fit``; sample weights; data in
memory, in one HDF5 file, in two (``ConcatSource``), as a dask array; chunks of several
kernel blocks; float32.  Then the failures: a worker killed mid-task, a transient read
error (``retries``), a file the workers cannot open, no client, a worker without fastvi,
a scheduler that does not answer, a cluster without workers, NaN rows read on a worker.

The cluster (two worker processes, one thread each) is started once for the module; its
client is not the default client (``set_as_default=False``), so ``backend="dask"`` finds
one only inside ``client.as_current()``.  The helpers the workers run are in
``tests/dask_helpers.py`` (the workers import it: they are spawned with this process's
``sys.path``).  The tests that kill a worker come last; they wait for the Nanny to
restart it.
"""
import contextlib
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
h5py = pytest.importorskip("h5py")

import fastvi                                        # noqa: E402
import dask_helpers                                  # noqa: E402
from conftest import blobs                           # noqa: E402
from fastvi.engine import cluster as dask_cluster    # noqa: E402
from fastvi.engine.backend import total_stats        # noqa: E402
from fastvi.engine.cluster import DaskBackend        # noqa: E402
from fastvi.engine.local import LocalBackend         # noqa: E402

CHUNK_ROWS = 150            # 600 rows: four chunks
GMM, BGMM = fastvi.GaussianMixture, fastvi.BayesianGaussianMixture
TRUNCATED = {"n_components": 6, "n_active": 2, "n_candidates": 4}

# a second scheduler (the cluster without workers) finds the first one's HTTP port taken
pytestmark = pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster, set_as_default=False)
    try:
        # the workers can import what the tests send them
        assert set(client.run(_import_helpers).values()) == {True}
        yield client
    finally:
        client.close()
        cluster.close()


def _import_helpers():
    import dask_helpers     # noqa: F401
    return True


def backend(client, **kwargs):
    """A Dask backend that gives up on a lost cluster in 60 s rather than 600."""
    return DaskBackend(client, **{"timeout": 60, **kwargs})


@pytest.fixture(scope="module")
def data():
    X, _ = blobs(n_per=200)
    weights = np.random.default_rng(3).integers(0, 3, X.shape[0]).astype(float)
    return X, weights


def write_h5(path, X, dtype=np.float64):
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X.astype(dtype), chunks=(75, X.shape[1]))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    """The 600 rows in one file (float64 and float32) and split over two files."""
    X, _ = data
    folder = tmp_path_factory.mktemp("dask")
    return {"hdf5": write_h5(folder / "all.h5", X),
            "float32": write_h5(folder / "all32.h5", X, np.float32),
            "parts": [write_h5(folder / "part0.h5", X[:300]),
                      write_h5(folder / "part1.h5", X[300:])]}


def open_source(files, kind, cls=fastvi.HDF5Source):
    if kind == "two-files":
        return fastvi.ConcatSource([cls(path, "/X", chunk_rows=CHUNK_ROWS)
                                    for path in files["parts"]])
    return cls(files["hdf5" if kind == "hdf5" else "float32"], "/X", chunk_rows=CHUNK_ROWS)


# ----------------------------------------------------------------------------- comparisons

@contextlib.contextmanager
def tasks_on(backend, prefix, at_least):
    """The calls inside ran at least ``at_least`` tasks named ``prefix`` on the cluster of
    ``backend`` (a DaskBackend; nothing is checked for another backend)."""
    if not isinstance(backend, DaskBackend):
        yield
        return
    with distributed.get_task_stream(backend.client) as stream:
        yield
    count = sum(str(task["key"]).startswith(prefix + "-") for task in stream.data)
    assert count >= at_least, f"{count} {prefix} tasks ran on the cluster"


def fit(cls, X, backend="local", sample_weight=None, **kwargs):
    kwargs = {"n_components": 3, "covariance_type": "full", "chunk_size": CHUNK_ROWS,
              "batch_size": CHUNK_ROWS, "random_state": 0, "max_iter": 3, "tol": 0.0,
              **kwargs}
    with warnings.catch_warnings(), tasks_on(backend, "chunk_stats_task", kwargs["max_iter"]):
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return cls(backend=backend, **kwargs).fit(X, sample_weight=sample_weight)


def fit_both(cls, X, backend, sample_weight=None, **kwargs):
    return (fit(cls, X, "local", sample_weight, **kwargs),
            fit(cls, X, backend, sample_weight, **kwargs))


def fitted(model):
    return {name: value for name, value in vars(model).items()
            if name.endswith("_") and not name.startswith("_")}


def assert_same(a, b, name):
    """The same value, bit for bit (arrays: dtype, shape and bytes)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), name
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), name
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), name
        for i, (part_a, part_b) in enumerate(zip(a, b)):
            assert_same(part_a, part_b, f"{name}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (name, a, b)


def assert_same_fit(expected, got):
    """Every fitted attribute (``*_``) the same bits, ``lower_bound_``, ``lower_bounds_``
    and ``n_iter_`` included."""
    a, b = fitted(expected), fitted(got)
    assert a.keys() == b.keys()
    assert {"means_", "lower_bound_", "n_iter_"} <= a.keys()
    for name in sorted(a):
        assert_same(a[name], b[name], name)


def assert_same_sparse(a, b):
    assert a.shape == b.shape
    for part in ("indptr", "indices", "data"):
        assert_same(getattr(a, part), getattr(b, part), part)


def assert_same_outputs(expected, got, X, sparse=False):
    """predict, predict_proba, score_samples, score and top_responsibilities of ``got``
    (its backend) are those of ``expected`` (the local backend)."""
    with tasks_on(got.backend, "per_row_task", 5 + sparse):
        for method in ("predict", "predict_proba", "score_samples"):
            assert_same(getattr(expected, method)(X), getattr(got, method)(X), method)
        assert_same(expected.score(X), got.score(X), "score")
        assert_same(expected.top_responsibilities(X, 2), got.top_responsibilities(X, 2),
                    "top_responsibilities")
        if sparse:
            assert_same_sparse(expected.predict_proba(X, sparse=True),
                               got.predict_proba(X, sparse=True))


# ----------------------------------------------------------------------------- same bits

CASES = [(GMM, "batch", "full"), (GMM, "stochastic", "diag"), (GMM, "memoized", "spherical"),
         (BGMM, "batch", "full"), (BGMM, "stochastic", "tied"), (BGMM, "memoized", "diag")]


def _case_id(case):
    cls, algorithm, covariance_type = case
    return f"{cls.__name__}-{algorithm}-{covariance_type}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_a_fit_on_the_cluster_is_the_local_fit(case, weighted, data, client):
    cls, algorithm, covariance_type = case
    X, weights = data
    expected, got = fit_both(cls, X, backend(client), weights if weighted else None,
                             algorithm=algorithm, covariance_type=covariance_type)
    assert_same_fit(expected, got)
    if not weighted:
        assert_same_outputs(expected, got, X, sparse=algorithm == "batch")


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_one_two_or_three_workers_give_the_local_bits(n_workers, data):
    """Issue 28: the pairwise tree over the chunks (four here: ((0 + 1) + (2 + 3)), not
    left to right), a memoized fit with merges, stochastic steps and the initialisations
    give the local bits whatever the number of workers.  With 30 chunks a task adds runs
    of chunks on its worker (up to 7 on one worker, 2 on three: other runs, the same
    tree); memoized batches of 4 chunks and stochastic minibatches of 3 are computed
    together, on several workers, and added alike."""
    X, weights = data
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        on_cluster = backend(client)
        for cls, kwargs in [
                (GMM, dict(algorithm="batch", covariance_type="full", init_params="k-means||")),
                (GMM, dict(algorithm="batch", covariance_type="diag", chunk_size=20)),
                (BGMM, dict(algorithm="memoized", n_components=8, max_iter=5,
                            moves=("merge",), weight_concentration_prior=1e-3)),
                (BGMM, dict(algorithm="memoized", n_components=8, max_iter=4,
                            chunk_size=50, batch_size=50, n_batches=3,
                            moves=("merge", "birth"), weight_concentration_prior=1e-3)),
                (BGMM, dict(algorithm="stochastic", covariance_type="diag",
                            init_params="random")),
                (GMM, dict(algorithm="stochastic", covariance_type="tied", chunk_size=100,
                           batch_size=300))]:
            expected, got = fit_both(cls, X, on_cluster, weights, **kwargs)
            assert_same_fit(expected, got)


@pytest.mark.parametrize("algorithm", ["batch", "memoized"])
def test_merge_moves_on_the_cluster_are_the_local_ones(algorithm, data, client):
    X, weights = data
    expected, got = fit_both(BGMM, X, backend(client), weights, algorithm=algorithm,
                             n_components=8, max_iter=5, moves=("merge",),
                             weight_concentration_prior=1e-3)
    assert got.means_.shape[0] < 8 and any(move["accepted"] for move in got.history_)
    assert_same_fit(expected, got)


@pytest.mark.parametrize("algorithm", ["batch", "memoized"])
def test_birth_and_delete_moves_on_the_cluster_are_the_local_ones(algorithm, data, client):
    X, weights = data
    expected, got = fit_both(BGMM, X, backend(client), weights, algorithm=algorithm,
                             n_components=8, n_components_init=2, max_iter=4,
                             moves=("birth", "delete"))
    births = [move for move in got.history_ if move["move"] == "birth"]
    assert got.means_.shape[0] > 2 and births and births[0]["accepted"]
    assert got.history_ == expected.history_
    assert_same_fit(expected, got)


@pytest.mark.parametrize("cls, algorithm, extra", [
    (BGMM, "batch", {}),
    (BGMM, "memoized", {}),
    (GMM, "stochastic", {"covariance_type": "diag"}),
    (GMM, "batch", {"support_file": True}),
], ids=["BGMM-batch", "BGMM-memoized", "GMM-stochastic", "GMM-batch-support-file"])
def test_a_truncated_fit_on_the_cluster_is_the_local_fit(cls, algorithm, extra, data,
                                                         client, tmp_path):
    X, weights = data
    kwargs = {**TRUNCATED, **extra, "algorithm": algorithm}
    if extra.get("support_file"):
        # the supports in a file on the client (FileSupports): one file per fit
        expected = fit(cls, X, "local", weights, **{**kwargs, "support_file": str(tmp_path / "a.h5")})
        got = fit(cls, X, backend(client), weights,
                  **{**kwargs, "support_file": str(tmp_path / "b.h5")})
        with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
            assert_same(a["supports"][...], b["supports"][...], "supports")
    else:
        expected, got = fit_both(cls, X, backend(client), weights, **kwargs)
    assert_same_fit(expected, got)
    assert_same_outputs(expected, got, X, sparse=True)


@pytest.mark.parametrize("extra", [{"covariance_type": "full"}, TRUNCATED],
                         ids=["dense", "truncated"])
def test_tasks_of_several_chunks_give_the_same_bits(extra, data, client, monkeypatch):
    """With one task per worker thread, a pass of four chunks is two tasks of two chunks
    (each chunk's statistics from zero, the client adding them in chunk order); so are
    the per-row outputs."""
    X, weights = data

    def chunk_tasks(model):
        with distributed.get_task_stream(client) as stream:
            fit(BGMM, X, model, weights, **extra)
        return sum(str(task["key"]).startswith("chunk_stats_task-") for task in stream.data)

    one_chunk_each = chunk_tasks(backend(client))
    monkeypatch.setattr(dask_cluster, "TASKS_PER_THREAD", 1)
    assert chunk_tasks(backend(client)) * 2 == one_chunk_each
    expected, got = fit_both(BGMM, X, backend(client), weights, **extra)
    assert_same_fit(expected, got)
    assert_same_outputs(expected, got, X, sparse=True)


@pytest.mark.parametrize("cls, extra, weighted", [
    (GMM, {}, False),
    (BGMM, {"covariance_type": "diag"}, True),
    (BGMM, TRUNCATED, True),
], ids=["GMM", "BGMM-weighted", "BGMM-truncated-weighted"])
def test_partial_fit_on_the_cluster_is_the_local_one(cls, extra, weighted, data, client):
    X, weights = data
    kwargs = {"n_components": 3, "random_state": 0, "total_samples": 600, "chunk_size": 100,
              **extra}
    models = [cls(**kwargs), cls(backend=backend(client), **kwargs)]
    for model in models:
        for start in range(0, 600, 200):
            model.partial_fit(X[start:start + 200],
                              sample_weight=weights[start:start + 200] if weighted else None)
    assert_same_fit(*models)
    assert models[0].n_iter_ == 6           # two chunks a call: 100 rows each
    assert_same(models[0].predict_proba(X), models[1].predict_proba(X), "predict_proba")


@pytest.mark.parametrize("kind, cls, algorithm, extra, weighted", [
    ("hdf5", GMM, "batch", {}, True),
    ("hdf5", BGMM, "memoized", {}, False),
    ("float32", BGMM, "stochastic", {"covariance_type": "diag"}, True),
    ("two-files", GMM, "batch", {}, False),
    ("two-files", BGMM, "memoized", TRUNCATED, True),
], ids=["hdf5-GMM-batch-weighted", "hdf5-BGMM-memoized", "float32-BGMM-stochastic-weighted",
        "two-files-GMM-batch", "two-files-BGMM-memoized-truncated-weighted"])
def test_a_fit_of_files_read_by_the_workers_is_the_local_fit(kind, cls, algorithm, extra,
                                                            weighted, files, data, client):
    _, weights = data
    with open_source(files, kind) as source:
        assert source.chunk_bounds() == [(i, i + CHUNK_ROWS) for i in range(0, 600, CHUNK_ROWS)]
        expected, got = fit_both(cls, source, backend(client), weights if weighted else None,
                                 algorithm=algorithm, **extra)
        assert_same_fit(expected, got)
        if kind == "float32":
            assert got.means_.dtype == np.float32
        # the per-row outputs of the files' rows, read by the workers too
        assert_same_outputs(expected, got, source, sparse="n_active" in extra)


@pytest.mark.parametrize("kind", ["hdf5", "two-files"])
def test_the_initial_sample_is_read_on_the_workers(kind, files, data, client):
    """Issue 28: a sample of a file's rows (initialisation, birth proposals) is picked by
    the workers that read the chunks; only the drawn rows come back, the same rows as on
    one machine, and a fit from it gives the local bits."""
    X, _ = data
    on_cluster = backend(client)
    index = np.sort(np.random.default_rng(4).choice(X.shape[0], 50, replace=False))
    with open_source(files, kind) as source:
        with tasks_on(on_cluster, "sample_rows_task", 1):
            rows = on_cluster.sample_rows(source, index)
        np.testing.assert_array_equal(rows, X[index])
        with tasks_on(on_cluster, "sample_rows_task", 1):
            expected, got = fit_both(BGMM, source, on_cluster, init_sample_size=100,
                                     moves=("birth",), n_components=6, n_components_init=2)
        assert_same_fit(expected, got)


def test_a_generated_source_is_made_on_the_workers(client):
    """Issue 28's rehearsal source: each worker makes the chunks it reads (no row is
    scattered or streamed), and the fit is the local one."""
    from fastvi.datasets import GeneratedSource
    source = GeneratedSource(3000, 3, 3, covariance_type="diag", random_state=2,
                             chunk_rows=250)
    on_cluster = backend(client)
    expected, got = fit_both(GMM, source, on_cluster, init_sample_size=500,
                             chunk_size=250, batch_size=250)
    assert_same_fit(expected, got)
    assert source not in on_cluster._scattered          # nothing was scattered


def test_a_file_fit_is_the_in_memory_fit(files, data, client):
    """The same chunking gives the same bits whether the workers read a file, two files or
    a scattered array."""
    X, weights = data
    reference = fit(BGMM, X, "local", weights)
    for kind in ("hdf5", "two-files"):
        with open_source(files, kind) as source:
            assert_same_fit(reference, fit(BGMM, source, backend(client), weights))


@pytest.mark.parametrize("dtype, cls, algorithm", [
    (np.float64, BGMM, "batch"), (np.float32, GMM, "memoized")])
def test_chunks_of_several_kernel_blocks_and_float32(dtype, cls, algorithm, client):
    # 1500 rows in chunks of 600 (the kernel's blocks are 256 rows): 600, 600, 300
    X, _ = blobs(n_per=500, seed=4)
    X = X.astype(dtype)
    weights = np.random.default_rng(5).uniform(0.0, 2.0, X.shape[0])
    expected, got = fit_both(cls, X, backend(client), weights, algorithm=algorithm,
                             chunk_size=600, batch_size=600)
    assert_same_fit(expected, got)
    assert got.means_.dtype == dtype
    assert_same_outputs(expected, got, X)


def test_backend_dask_uses_the_current_client(data, client):
    X, weights = data
    expected = fit(GMM, X, "local", weights)
    with client.as_current(), tasks_on(backend(client), "chunk_stats_task", 4 * 3), \
            tasks_on(backend(client), "per_row_task", 5 * 4):
        got = fit(GMM, X, "dask", weights)          # four chunks a pass, three passes
        assert_same_fit(expected, got)
        assert_same_outputs(expected, got, X)       # four chunks a call


def test_a_task_runs_its_kernels_on_the_workers_numba_num_threads(data, client):
    """A LocalCluster's ``env=`` reaches a spawned worker after it imported the main
    module, so Numba may have read its thread count before; the task applies the
    environment's ``NUMBA_NUM_THREADS`` itself (every core for each of two workers
    oversubscribed this machine's two cores: a pass 2.5 times slower)."""
    X, _ = data
    params = fit(GMM, X)._kernel_params()
    chunk = [[(fastvi.ArraySource(X).remote_reader(), 0, 150, None, None, 0)]]
    args = (chunk, params, None, None, "X")
    assert client.submit(dask_helpers.kernel_threads_in_a_task, "1", *args,
                         pure=False).result() == 1


def test_clone_keeps_the_client_and_pickling_drops_it(data, client):
    """``clone`` (model selection, pipelines) copies the estimator, not the cluster: the
    clone's backend talks to the same client; a pickled backend (a saved model) has none
    and finds the current one when used."""
    import pickle
    from sklearn.base import clone
    X, _ = data
    model = GMM(n_components=3, chunk_size=CHUNK_ROWS, backend=backend(client, retries=1))
    copy = clone(model)
    assert copy.backend is not model.backend
    assert copy.backend.client is client and copy.backend.retries == 1
    assert_same_fit(fit(GMM, X), fit(GMM, X, copy.backend))
    restored = pickle.loads(pickle.dumps(model.backend))
    assert restored.client is None and restored.retries == 1


def test_the_backend_keeps_a_scattered_array_only_while_its_source_lives(data, client):
    """An in-memory array is scattered once per source and released with it: a backend
    used for many fits (``backend="dask"`` is one instance per process) does not keep
    every array it was given on the cluster."""
    import gc
    from fastvi.engine.backend import get_backend
    X, _ = data
    assert get_backend("dask") is get_backend("dask")
    shared = backend(client)
    source = fastvi.ArraySource(X, chunk_rows=CHUNK_ROWS)
    fit(GMM, source, shared)
    assert len(shared._scattered) == 1
    del source
    fit(GMM, X, shared)                       # the fit's own ArraySource, gone after it
    gc.collect()
    assert len(shared._scattered) == 0


def test_a_dask_array_is_computed_on_the_cluster(data, client):
    da = pytest.importorskip("dask.array")
    X, weights = data
    Xd = da.from_array(X, chunks=(100, 3))          # rechunked to the fit's 150 rows
    expected, got = fit_both(BGMM, Xd, backend(client), weights, covariance_type="diag")
    assert_same_fit(expected, got)
    assert_same_fit(fit(BGMM, X, "local", weights, covariance_type="diag"), got)


def test_a_second_fit_on_the_cluster_gives_the_same_bits(files, data, client):
    """Determinism: the same fit twice, the chunks finishing in whatever order they do
    (an array, batch: the same backend and its scattered copy again; two files,
    stochastic: a new backend)."""
    X, weights = data
    shared = backend(client)
    kwargs = {**TRUNCATED, "algorithm": "batch", "max_iter": 2}
    first = fit(BGMM, X, shared, weights, **kwargs)
    assert_same_fit(first, fit(BGMM, X, shared, weights, **kwargs))
    kwargs = {**TRUNCATED, "algorithm": "stochastic", "max_iter": 2}
    with open_source(files, "two-files") as source:
        first = fit(BGMM, source, shared, weights, **kwargs)
        assert_same_fit(first, fit(BGMM, source, backend(client), weights, **kwargs))


def test_retries_get_past_a_transient_read_error(files, data, client):
    """A task that raises is run again (``retries``) and gives the same bits; without
    retries the fit fails with the task's error."""
    X, _ = data

    def flaky(token):
        source = dask_helpers.FlakyHDF5Source(files["hdf5"], "/X", chunk_rows=CHUNK_ROWS)
        source.token = token            # each worker's first read with it fails
        return source

    with flaky("no retries") as source:
        with pytest.raises(OSError, match="transient read error"):
            fit(GMM, source, backend(client, retries=0))
    with flaky("two retries") as source:
        assert_same_fit(fit(GMM, X, "local"), fit(GMM, source, backend(client, retries=2)))


# ----------------------------------------------------------------------------- bad input

def test_a_file_the_workers_cannot_open_is_named(files, data, tmp_path, client):
    """The client opens the file, the workers cannot (here: it was moved after the source
    was opened): the error names the file and says where it must be, in bounded time."""
    X, _ = data
    one = write_h5(tmp_path / "moved.h5", X)
    parts = [write_h5(tmp_path / "first.h5", X[:300]), write_h5(tmp_path / "second.h5", X[300:])]
    for path, make in ((one, lambda: fastvi.HDF5Source(one, "/X", chunk_rows=CHUNK_ROWS)),
                       (parts[1], lambda: fastvi.ConcatSource(
                           [fastvi.HDF5Source(p, "/X", chunk_rows=CHUNK_ROWS) for p in parts]))):
        with make() as source:
            os.rename(path, path + ".gone")
            started = time.monotonic()
            with pytest.raises(OSError) as info:
                fit(GMM, source, backend(client, timeout=20))
            assert time.monotonic() - started < 20
        message = str(info.value)
        assert path in message and "every worker must see the file at this path" in message
        if path == parts[1]:
            assert "rows 0:" in message     # the second file's own rows


def test_backend_dask_without_a_client_says_so(data):
    X, _ = data
    with pytest.raises(ValueError):
        distributed.get_client()            # precondition: no default client here
    with pytest.raises(ValueError, match="found no Dask client"):
        fit(GMM, X, "dask")


def test_a_model_fitted_with_backend_dask_needs_a_client_to_predict(data, client):
    X, _ = data
    with client.as_current():
        model = fit(GMM, X, "dask")
    with pytest.raises(ValueError, match="found no Dask client"):
        model.predict(X)
    model.backend = "local"
    assert_same(fit(GMM, X).predict(X), model.predict(X), "predict")


def test_a_task_that_cannot_import_fastvi_is_named(data, client, monkeypatch):
    """The tasks' functions are looked up by name in fastvi.engine.cluster when they are
    submitted; replaced by ones that fail as on a worker without fastvi, the error says
    what to do."""
    X, _ = data
    model = fit(GMM, X, "local")
    monkeypatch.setattr(dask_cluster, "chunk_stats_task", dask_helpers.no_fastvi_task)
    monkeypatch.setattr(dask_cluster, "per_row_task", dask_helpers.no_fastvi_task)
    with pytest.raises(RuntimeError, match="install the same fastvi on every worker"):
        fit(GMM, X, backend(client, timeout=20))
    model.backend = backend(client, timeout=20)
    with pytest.raises(RuntimeError, match="install the same fastvi on every worker"):
        model.predict(X)


def test_a_worker_without_fastvi_installed_is_named(files, data, client):
    X, _ = data
    with fastvi.HDF5Source(files["hdf5"], "/X", chunk_rows=CHUNK_ROWS) as source:
        model = fit(GMM, source, "local")
        model.backend = backend(client, timeout=20)
        try:
            assert set(client.run(dask_helpers.hide_fastvi).values()) != {0}
            for call in (lambda: fit(GMM, source, backend(client, timeout=20)),
                         lambda: model.predict(source)):
                with pytest.raises(Exception) as info:
                    call()
                assert isinstance(info.value, RuntimeError), repr(info.value)
                assert "install the same fastvi on every worker" in str(info.value)
        finally:
            client.run(dask_helpers.show_fastvi)


def test_a_scheduler_that_does_not_answer_fails_quickly():
    """distributed's own error (the CLI words it; fastvi.cli): a connection timeout."""
    started = time.monotonic()
    with pytest.raises(OSError, match="Timed out trying to connect"):
        distributed.Client("tcp://127.0.0.1:1", timeout="1s")
    assert time.monotonic() - started < 15


def test_a_cluster_without_workers_fails_within_the_timeout(files, data):
    """No worker to scatter the data or the parameters to, none to run a task: a
    TimeoutError about the workers within the backend's ``timeout``, not a hang (nor the
    client's own 5 s)."""
    X, _ = data
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as empty, \
            distributed.Client(empty, set_as_default=False, timeout="5s") as idle, \
            fastvi.HDF5Source(files["hdf5"], "/X", chunk_rows=CHUNK_ROWS) as source:
        for rows in (X, source):            # the array is scattered, the file is not
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="workers"):
                fit(GMM, rows, DaskBackend(idle, timeout=0.5))
            assert time.monotonic() - started < 2.5


def nan_file(tmp_path, X):
    Y = X.copy()
    Y[400, 1] = np.nan                      # in the third chunk (rows 300:450)
    return write_h5(tmp_path / "nan.h5", Y)


def local_error(call):
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_a_nan_row_read_by_a_worker_is_named(data, tmp_path, client):
    X, _ = data
    model = fit(GMM, X)
    path = nan_file(tmp_path, X)
    with fastvi.HDF5Source(path, "/X", chunk_rows=CHUNK_ROWS) as source:
        params = model._kernel_params()
        message = local_error(lambda: total_stats(LocalBackend(), source, params))
        assert message.startswith(f"{path}:/X contains NaN or infinity (first at row 400)")
        with pytest.raises(ValueError) as info:
            total_stats(backend(client), source, params)
        assert str(info.value) == message


def test_a_nan_row_in_per_row_outputs_is_named_as_locally(data, tmp_path, client):
    X, _ = data
    path = nan_file(tmp_path, X)
    local_model = fit(GMM, X)
    dask_model = fit(GMM, X)
    dask_model.backend = backend(client)
    with fastvi.HDF5Source(path, "/X", chunk_rows=CHUNK_ROWS) as source:
        for method in ("predict", "score_samples"):
            expected = local_error(lambda: getattr(local_model, method)(source))
            assert "first at row 400" in expected
            assert local_error(lambda: getattr(dask_model, method)(source)) == expected


# ----------------------------------------------------------------------------- lost workers

def worker_pids(client):
    return client.run(os.getpid)


def input_holders(client, before):
    """The workers holding each shared task input (the kernel parameters, a scattered
    array: every key but the chunk tasks' own) made since ``before`` (the keys the
    cluster held then)."""
    return [set(workers) for key, workers in client.who_has().items()
            if not str(key).startswith(("slow_chunk_stats_task-", "chunk_stats_task-",
                                        "per_row_task-")) and key not in before]


def kill_running_worker(client, before, sole_holder, stop):
    """SIGKILL the process of a worker while it runs a task; poll until there is one to
    kill or ``stop`` is set.  Returns the worker's address (None if none was killed).

    ``sole_holder``: first let the Active Memory Manager drop the replicas that no
    waiting task needs (one cycle; on a cluster it runs one every 2 s), then kill a
    worker that holds the only copy of a shared input if one does, else any running one
    (never one whose inputs' only copy is elsewhere).  Otherwise kill only a worker whose
    inputs are on the other worker too."""
    while not stop.is_set():
        running = [w for w, n in client.run(dask_helpers.executing).items() if n]
        if sole_holder and running:
            client.amm.run_once()
        holders = input_holders(client, before)
        if sole_holder:
            victims = [w for w in running if {w} in holders] or [
                w for w in running if not any(len(h) == 1 for h in holders)]
        else:
            victims = [w for w in running if all(h - {w} for h in holders)]
        if victims:
            os.kill(worker_pids(client)[victims[0]], signal.SIGKILL)
            return victims[0]
        time.sleep(0.005)
    return None


def wait_for_restart(client, before):
    """Two workers again, one a new process, for the tests that follow.  The Nanny
    restarts the killed worker; when it does not (once in a CI run: the cluster was left
    with one worker for 60 s), the cluster is asked for its two workers again."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.wait_for_workers(2, timeout=30)
        except TimeoutError:             # distributed's WorkerStartTimeoutError is one
            restart_missing_workers(client.cluster)
            continue
        pids = worker_pids(client)
        if len(pids) == 2 and set(pids.values()) != set(before.values()):
            return
        time.sleep(0.1)
    raise AssertionError("the killed worker did not come back")


def restart_missing_workers(cluster):
    """Forget the cluster's closed Nannies and let it start their workers again (its spec
    still lists them; ``scale`` starts what the spec has and the cluster has not)."""
    for name, nanny in list(cluster.workers.items()):
        if nanny.status.name in ("closed", "closing", "failed"):
            del cluster.workers[name]
    cluster.scale(len(cluster.worker_spec))


def fit_killing_a_worker(client, source, sole_holder, **kwargs):
    """The fit of ``source`` on the cluster, a worker killed in it (from the first chunk
    on, by a thread: ``kill_running_worker``)."""
    kwargs = {"n_components": 3, "random_state": 0, "tol": 0.0, **kwargs}
    pids, before = worker_pids(client), set(client.who_has())
    stop, outcome = threading.Event(), []

    def kill():
        try:
            outcome.append(kill_running_worker(client, before, sole_holder, stop))
        except BaseException as exc:            # raised in the test, below
            outcome.append(exc)

    killer = threading.Thread(target=kill, daemon=True)

    def callback(record):
        if record["event"] == "chunk" and not killer.is_alive() and not outcome:
            killer.start()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
            got = GMM(backend=backend(client, retries=2), **kwargs).fit(source,
                                                                       callback=callback)
    finally:
        stop.set()
        if killer.ident is not None:
            killer.join()
        if outcome and isinstance(outcome[0], str):
            wait_for_restart(client, pids)
    assert outcome, "the fit ended before its first chunk"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    assert outcome[0] is not None, "no worker was killed: none ran a task as asked"
    assert outcome[0] not in worker_pids(client)
    return got


def test_a_worker_killed_mid_task_is_survived_with_the_same_bits(files, client,
                                                                 monkeypatch):
    """Batch: every chunk of a pass is submitted at once; the process of a worker running
    a chunk's task is killed while the other worker holds the pass's inputs too.  Its
    tasks (running, queued, and finished ones whose results it held) are run again on the
    other worker and on the restarted one: the fit completes and is the local fit."""
    monkeypatch.setattr(dask_cluster, "chunk_stats_task", dask_helpers.slow_chunk_stats_task)
    with fastvi.HDF5Source(files["hdf5"], "/X", chunk_rows=75) as source:
        expected = fit(GMM, source, "local", max_iter=3)
        got = fit_killing_a_worker(client, source, sole_holder=False, max_iter=3)
    assert_same_fit(expected, got)


@pytest.mark.parametrize("kind", ["hdf5", "array"])
def test_a_worker_killed_while_it_holds_the_only_copy_of_an_input_is_survived(
        kind, files, data, client, monkeypatch):
    """Stochastic: one chunk at a time, each under new parameters.  While a chunk's task
    runs, the Active Memory Manager runs a cycle (``client.amm.run_once()``: what it does
    every 2 s by default, so during any chunk that takes longer) and may leave a shared
    input (the parameters; an in-memory array) on that worker alone; then the worker is
    killed.  The scheduler cannot recompute a scattered value: it cancels the task, and
    the backend scatters the inputs again and resubmits it; the fit is the local fit."""
    monkeypatch.setattr(dask_cluster, "chunk_stats_task", dask_helpers.slow_chunk_stats_task)
    X, _ = data
    kwargs = {"algorithm": "stochastic", "batch_size": 75, "max_iter": 1}
    with fastvi.HDF5Source(files["hdf5"], "/X", chunk_rows=75) as source:
        rows = source if kind == "hdf5" else X
        expected = fit(GMM, rows, "local", **kwargs)
        got = fit_killing_a_worker(client, rows, sole_holder=True, **kwargs)
    assert_same_fit(expected, got)


def test_missing_entries_marginalised_on_the_workers_give_the_local_bits(tmp_path, client):
    """missing="marginalize" (issue 29): the workers read rows with NaN from a file, run
    the same kernels, and the fit, its per-row outputs and impute are the local ones."""
    X, _ = blobs(n_per=200)
    X = X.copy()
    X[np.random.default_rng(29).random(X.shape) < 0.2] = np.nan
    X[5] = np.nan
    path = write_h5(tmp_path / "holes.h5", X)
    kwargs = {"missing": "marginalize", "max_iter": 3}
    with fastvi.HDF5Source(path, "/X", chunk_rows=CHUNK_ROWS) as source:
        for cls, extra in ((GMM, {}), (BGMM, {"algorithm": "memoized"})):
            here, there = fit_both(cls, source, backend(client), **kwargs, **extra)
            assert_same_fit(here, there)
            for method in ("score_samples", "predict_proba"):
                np.testing.assert_array_equal(getattr(there, method)(source),
                                              getattr(here, method)(source))
            np.testing.assert_array_equal(there.impute(source), here.impute(source))
