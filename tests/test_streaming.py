"""Chunk sources and the online algorithms: batch over HDF5, stochastic VB, memoized VB,
stepwise EM, partial_fit, checkpoints and resume."""
import warnings

import h5py
import numpy as np
import pytest

import fastvi
from conftest import blobs
from fastvi.engine import loop as _loop
from fastvi.data.sources import ConcatSource, HDF5Source, as_source


def quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return fit(*args, **kwargs)


def mixture_rows(n_rows=12000, seed=0):
    """Four overlapping clusters in 4-D: the online algorithms have something to do."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((4, 4))
    labels = rng.integers(0, 4, n_rows)
    return centres[labels] + rng.standard_normal((n_rows, 4)), labels


@pytest.fixture
def h5_file(tmp_path):
    X, _ = mixture_rows()
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X.astype(np.float32), chunks=(500, 4), compression="gzip")
        f.create_dataset("first", data=X[:6000].astype(np.float32), chunks=(500, 4))
        f.create_dataset("plain", data=X.astype(np.float32), chunks=(1500, 4))
        f.create_dataset("second", data=X[6000:].astype(np.float32), chunks=(500, 4),
                         compression="lzf")
    return path, X.astype(np.float32)


# ----------------------------------------------------------------------------- sources

def test_hdf5_source_reads_aligned_chunks_and_prefetches(h5_file):
    path, X = h5_file
    with HDF5Source(path, "/X", chunk_rows=1200) as source:
        assert source.chunk_rows == 1500            # rounded up to the HDF5 chunking (500)
        assert source.dtype == np.float32
        chunks = list(source.chunks())
        assert [start for _, start, _ in chunks] == list(range(0, 12000, 1500))
        np.testing.assert_array_equal(np.vstack([c for _, _, c in chunks]), X)
        order = [3, 0, 7]
        assert [index for index, _, _ in source.chunks(order)] == order


def test_concatenated_files_read_as_one(h5_file):
    path, X = h5_file
    parts = [HDF5Source(path, "/first", chunk_rows=1000), HDF5Source(path, "/second",
                                                                     chunk_rows=1000)]
    with ConcatSource(parts) as source:
        assert source.n_rows == 12000
        np.testing.assert_array_equal(np.vstack([c for _, _, c in source.chunks()]), X)


def test_source_errors_name_what_is_wrong(tmp_path, h5_file):
    path, _ = h5_file
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        HDF5Source(tmp_path / "missing.h5")
    with pytest.raises(KeyError, match="no dataset '/nope'.*/X"):
        HDF5Source(path, "/nope")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("one_d", data=np.zeros(10))
        f.create_dataset("three_d", data=np.zeros((2, 2, 2)))
        f.create_dataset("text", data=np.array([[b"a", b"b"]]))
        f.create_dataset("empty", shape=(0, 3), dtype="f8")
        f.create_dataset("integers", data=np.arange(12, dtype=np.int32).reshape(6, 2))
        nan = np.ones((1000, 2))
        nan[777, 1] = np.nan
        f.create_dataset("nan", data=nan)
    with pytest.raises(ValueError, match="one_d must be 2-D"):
        HDF5Source(tmp_path / "bad.h5", "/one_d")
    with pytest.raises(ValueError, match="three_d must be 2-D"):
        HDF5Source(tmp_path / "bad.h5", "/three_d")
    with pytest.raises(ValueError, match="text must hold numbers"):
        HDF5Source(tmp_path / "bad.h5", "/text")
    with pytest.raises(ValueError, match="integers holds int32 values.*float32 or float64"):
        HDF5Source(tmp_path / "bad.h5", "/integers")
    with pytest.raises(ValueError, match="empty has no rows"):
        HDF5Source(tmp_path / "bad.h5", "/empty")
    with HDF5Source(tmp_path / "bad.h5", "/nan", chunk_rows=300) as source:
        with pytest.raises(ValueError, match="row 777"):
            fastvi.GaussianMixture(2).fit(source)
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all" * 100)
    with pytest.raises(ValueError, match="junk.h5: not a readable HDF5 file"):
        HDF5Source(tmp_path / "junk.h5")
    with pytest.raises(ValueError, match="same number of features"):
        ConcatSource([as_source(np.zeros((5, 2))), as_source(np.zeros((5, 3)))])


def test_truncated_hdf5_file_is_a_clear_error(tmp_path, h5_file):
    path, _ = h5_file
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, KeyError), match="cut.h5"):
        with HDF5Source(cut, "/X", chunk_rows=500) as source:
            list(source.chunks())


# ----------------------------------------------------------------------------- batch

@pytest.mark.parametrize("cls", [fastvi.GaussianMixture, fastvi.BayesianGaussianMixture])
@pytest.mark.parametrize("name", ["/X", "/plain"])   # gzip-compressed; mapped without a copy
def test_batch_fit_over_hdf5_equals_in_memory_bit_for_bit(cls, name, h5_file):
    path, X = h5_file
    kwargs = dict(n_components=4, random_state=0, chunk_size=1500, max_iter=8, tol=0)
    memory = quiet(cls(**kwargs).fit, X)
    with HDF5Source(path, name, chunk_rows=1500) as source:
        assert (source._view(0, 1500) is not None) == (name == "/plain")
        streamed = quiet(cls(**kwargs).fit, source)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(memory, name))
    assert streamed.lower_bound_ == memory.lower_bound_


# ----------------------------------------------------------------------------- online

def converged_batch_vb(X):
    return fastvi.BayesianGaussianMixture(4, random_state=0, max_iter=500, tol=1e-8).fit(X)


def test_stochastic_vb_reaches_the_batch_elbo():
    X, _ = mixture_rows(20000)
    batch = converged_batch_vb(X)
    online = quiet(fastvi.BayesianGaussianMixture(4, random_state=0, algorithm="stochastic",
                                                  batch_size=1000, max_iter=4, tol=0).fit, X)
    target = batch.elbo(X)
    # within 1% of the converged batch ELBO after a few passes (the criterion)
    assert abs(online.elbo(X) - target) < 0.01 * abs(target)
    assert online.n_iter_ == 4


def test_memoized_elbo_never_decreases_after_the_first_pass():
    X, _ = mixture_rows(12000, seed=3)
    model = quiet(fastvi.BayesianGaussianMixture(6, random_state=1, algorithm="memoized",
                                                 batch_size=1000, max_iter=12, tol=0,
                                                 init_params="random").fit, X)
    bounds = np.array(model.lower_bounds_[1:])
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    assert bounds[-1] > bounds[0]
    # the memoized bound is the exact ELBO of the cached q(z): it cannot exceed the ELBO of
    # the optimal q(z) under the final q(theta)
    assert model.lower_bound_ * len(X) <= model.elbo(X) + 1e-9 * abs(model.elbo(X))


def test_memoized_bound_is_exact_after_a_batch_like_pass():
    """Unshuffled, with one chunk, memoized VB is batch VB: the same bounds and parameters."""
    X, _ = mixture_rows(3000, seed=4)
    kwargs = dict(n_components=3, random_state=0, max_iter=6, tol=0, chunk_size=5000)
    batch = quiet(fastvi.BayesianGaussianMixture(**kwargs).fit, X)
    memo = quiet(fastvi.BayesianGaussianMixture(algorithm="memoized", shuffle=False,
                                                **kwargs).fit, X)
    np.testing.assert_allclose(memo.means_, batch.means_, rtol=1e-10)
    # memoized reports the ELBO of (new q(theta), cached q(z)), batch the ELBO entering a pass
    # (optimal q(z)): each M-step raises the first, each E-step the second, so they
    # interleave exactly.
    memo_bounds, batch_bounds = np.array(memo.lower_bounds_), np.array(batch.lower_bounds_)
    slack = 1e-12 * np.abs(batch_bounds).max()
    assert np.all(batch_bounds[:-1] <= memo_bounds[:-1] + slack)
    assert np.all(memo_bounds[:-1] <= batch_bounds[1:] + slack)


def test_stepwise_em_approaches_the_batch_optimum():
    X, labels = blobs(n_per=4000, scale=1.0)
    batch = fastvi.GaussianMixture(3, random_state=0, tol=1e-10, max_iter=500).fit(X)
    online = quiet(fastvi.GaussianMixture(3, random_state=0, algorithm="stochastic",
                                          batch_size=500, max_iter=5, tol=0).fit, X)
    assert online.score(X) == pytest.approx(batch.score(X), abs=2e-3)
    order = np.argsort(online.means_[:, 0] * 10 + online.means_[:, 1])
    reference = np.argsort(batch.means_[:, 0] * 10 + batch.means_[:, 1])
    np.testing.assert_allclose(online.means_[order], batch.means_[reference], atol=0.05)


@pytest.mark.parametrize("cls", [fastvi.GaussianMixture, fastvi.BayesianGaussianMixture])
def test_partial_fit_over_chunks_approaches_the_batch_optimum(cls):
    X, _ = blobs(n_per=4000, scale=1.0)
    rng = np.random.default_rng(0)
    X = X[rng.permutation(len(X))]
    batch = cls(3, random_state=0, tol=1e-10, max_iter=500).fit(X)
    online = cls(3, random_state=0, total_samples=len(X))
    for _ in range(3):
        for start in range(0, len(X), 1000):
            online.partial_fit(X[start:start + 1000])
    assert online.score(X) == pytest.approx(batch.score(X), abs=5e-3)
    assert online.n_iter_ == 36


def test_validation_rows_are_monitored_and_decide_stochastic_convergence():
    X, _ = mixture_rows(12000)
    held_out, _ = mixture_rows(3000, seed=9)
    model = quiet(fastvi.BayesianGaussianMixture(4, random_state=0, algorithm="stochastic",
                                                 batch_size=1000, max_iter=50, tol=1e-4).fit,
                  X, X_val=held_out)
    assert model.converged_ and model.n_iter_ < 50
    assert len(model.validation_history_) == model.n_iter_
    assert abs(model.validation_history_[-1] - model.validation_history_[-2]) < 1e-4
    assert model.validation_history_[-1] == pytest.approx(model.score(held_out), rel=1e-12)


# ----------------------------------------------------------------------------- resume

class StopAfter:
    """A checkpoint callback that keeps the state after ``n`` chunks, then aborts."""

    def __init__(self, n):
        self.n = n
        self.seen = 0

    def __call__(self, state, force=False):
        self.seen += 1
        if self.seen == self.n:
            import pickle
            self.saved = pickle.loads(pickle.dumps(state))
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("algorithm", ["batch", "stochastic", "memoized"])
@pytest.mark.parametrize("stop_at", [1, 7, 13])
def test_resumed_fit_equals_uninterrupted_fit(algorithm, stop_at):
    X, _ = mixture_rows(6000, seed=2)
    kwargs = dict(n_components=4, random_state=0, algorithm=algorithm, batch_size=1000,
                  chunk_size=1000, max_iter=4, tol=0)
    whole = quiet(fastvi.BayesianGaussianMixture(**kwargs).fit, X)
    crash = StopAfter(stop_at)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fastvi.BayesianGaussianMixture(**kwargs).fit(X, checkpoint=crash)
    resumed = quiet(fastvi.BayesianGaussianMixture(**kwargs).fit, X, resume=crash.saved)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    assert resumed.lower_bound_ == whole.lower_bound_


def test_checkpointer_writes_atomically_and_loads(tmp_path):
    X, _ = mixture_rows(4000)
    path = tmp_path / "fit.ckpt"
    ckpt = fastvi.Checkpointer(path, every_chunks=2, every_seconds=None, meta={"who": "test"},
                               keep=True)       # a finished fit would remove it otherwise
    model = quiet(fastvi.GaussianMixture(3, random_state=0, algorithm="memoized",
                                         batch_size=500, max_iter=2, tol=0).fit,
                  X, checkpoint=ckpt)
    assert ckpt.writes >= 8
    state, meta = fastvi.load_checkpoint(path)
    assert meta == {"who": "test"} and state.n_pass == 2 and len(state.memo) == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt-")]
    np.testing.assert_array_equal(state.params[1], model.means_)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.ckpt: not a readable fastvi checkpoint"):
        fastvi.load_checkpoint(tmp_path / "junk.ckpt")


def test_expected_log_rho_sum_matches_the_naive_sum():
    """The memoized bound's linear term, against sum_n sum_k r_nk log rho_nk."""
    import naive
    X, _ = mixture_rows(500)
    model = fastvi.GaussianMixture(3, random_state=0, max_iter=3, tol=0)
    quiet(model.fit, X)
    params = model._kernel_params()
    log_rho = naive.log_rho_em(X, model.weights_, model.means_, model.covariances_, "full")
    _, resp = naive.responsibilities(log_rho)
    stats = fastvi.engine.local.accumulate(X, params)
    expected = float((resp * log_rho).sum())
    assert _loop.expected_log_rho_sum(stats, params) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize("shuffle", [True, False])
def test_memoized_on_rows_sorted_by_cluster_ends_as_well_as_batch(shuffle):
    """Before its first pass updated once, at its end, a memoized fit on rows sorted by
    cluster fitted its parameters to the first chunks it read: 16 clusters in 16 chunks
    ended with 14 components used and an adjusted Rand index of 0.73 (batch: 16, 0.998)."""
    from sklearn.metrics import adjusted_rand_score
    rng = np.random.default_rng(0)
    centres = 8.0 * rng.standard_normal((16, 4))
    labels = np.sort(rng.integers(0, 16, 16000))
    X = centres[labels] + rng.standard_normal((16000, 4))
    scores = {}
    # memoized in batches of one chunk and of 4; stochastic minibatches of 4 chunks
    for algorithm, batch_size, n_batches in (("batch", 1000, None), ("memoized", 1000, None),
                                             ("memoized", 1000, 4),
                                             ("stochastic", 4000, None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
            model = fastvi.BayesianGaussianMixture(
                n_components=16, algorithm=algorithm, chunk_size=1000,
                batch_size=batch_size, n_batches=n_batches, shuffle=shuffle,
                random_state=0, max_iter=100).fit(X)
        scores[algorithm, n_batches] = adjusted_rand_score(labels, model.predict(X))
        assert (model.weights_ > 1e-3).sum() == 16, algorithm
    batch = scores.pop(("batch", None))
    assert batch > 0.99 and min(scores.values()) >= batch - 0.01, scores


def test_the_repr_of_a_source_says_what_it_reads(tmp_path):
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.zeros((10_000, 3), "f4"), chunks=(1000, 3),
                         compression="gzip")
        f.create_dataset("flat", data=np.zeros((100, 2)))
    source = fastvi.HDF5Source(path, "/X", chunk_rows=2500)
    source.close()                                      # repr does not read the file
    assert repr(source) == (f"HDF5Source('{path}:/X', shape=(10000, 3), dtype=float32, "
                            "chunk_rows=3000, n_chunks=4, stored in HDF5 chunks of 1000 "
                            "rows, gzip)")
    assert repr(fastvi.HDF5Source(path, "/flat")).endswith(
        "shape=(100, 2), dtype=float64, chunk_rows=65536, n_chunks=1, stored contiguous)")
