"""Initialisation at large K (``fastvi.mixture.init``) against a naive NumPy reference.

The reference is the textbook computation: an N x K responsibility array (one-hot for
labels) and, for each component, its weighted mean and the weighted scatter of every row
about it.  fastvi sums each component's own rows (labels) or blocked GEMMs (soft
responsibilities), so the two agree to rounding; the labels of the nearest-centre search
agree exactly.  Then: the results do not depend on the thread count, and the hard methods
never make an N x K array.
"""
import tracemalloc

import numba
import numpy as np
import pytest

from fastvi.mixture import init as _init


def naive_stats(sample, resp, full, weights=None):
    """(nk, ref, s1, s2) of ``sample`` under dense ``resp`` (N, K), the textbook way."""
    w = np.ones(sample.shape[0]) if weights is None else weights
    wr = resp * w[:, None]
    nk = wr.sum(axis=0)
    ref = np.zeros((resp.shape[1], sample.shape[1]))
    s1 = np.zeros_like(ref)
    s2 = np.zeros((resp.shape[1],) + ((sample.shape[1],) * (2 if full else 1)))
    for k in range(resp.shape[1]):
        if nk[k] > 0:
            ref[k] = (wr[:, k] @ sample) / nk[k]
        diff = sample - ref[k]
        s1[k] = wr[:, k] @ diff
        s2[k] = np.einsum("n,ni,nj->ij", wr[:, k], diff, diff) if full else wr[:, k] @ diff ** 2
    return nk, ref, s1, s2


def one_hot(labels, n_components):
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def data(n_rows=9000, n_features=5, seed=0):
    """More rows than one block (BLOCK_ROWS), far from the origin (cancellation shows)."""
    rng = np.random.default_rng(seed)
    return 100.0 + rng.standard_normal((n_rows, n_features)) * rng.uniform(0.5, 3, n_features)


def assert_stats_close(stats, expected, scale):
    nk, ref, s1, s2 = expected
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-12)
    np.testing.assert_allclose(stats.ref, ref, rtol=1e-12)
    np.testing.assert_allclose(stats.s1, s1, atol=1e-9 * scale)       # zero, to rounding
    np.testing.assert_allclose(stats.s2, s2, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("full", [True, False], ids=["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_statistics_of_labels_are_the_naive_ones(full, weighted):
    X = data()
    rng = np.random.default_rng(1)
    n_components = 7
    labels = rng.integers(0, n_components - 1, X.shape[0])       # the last one empty
    weights = rng.integers(0, 3, X.shape[0]).astype(float) if weighted else None
    stats = _init.stats_from_resp(X, labels, n_components, full, weights)
    expected = naive_stats(X, one_hot(labels, n_components), full, weights)
    assert stats.nk[-1] == 0 and not stats.s2[-1].any()
    assert_stats_close(stats, expected, X.shape[0])
    assert stats.weight == (X.shape[0] if weights is None else weights.sum())


@pytest.mark.parametrize("full", [True, False], ids=["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_statistics_of_soft_responsibilities_are_the_naive_ones(full, weighted):
    X = data()
    rng = np.random.default_rng(2)
    resp = rng.uniform(size=(X.shape[0], 6))
    resp /= resp.sum(axis=1, keepdims=True)
    weights = rng.uniform(0, 2, X.shape[0]) if weighted else None
    stats = _init.stats_from_resp(X, resp, 6, full, weights)
    assert_stats_close(stats, naive_stats(X, resp, full, weights), X.shape[0])


def test_the_nearest_centre_search_in_blocks_is_the_whole_argmin():
    X = data(n_rows=3 * _init.BLOCK_ROWS + 17)
    centres = X[np.random.default_rng(3).choice(X.shape[0], 40, replace=False)]
    whole = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(_init._nearest(X, centres), whole)


@pytest.mark.parametrize("method", ["random_from_data", "k-means++", "random"])
def test_initial_statistics_do_not_depend_on_the_thread_count(method):
    X = data()
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            resp = _init.initial_resp(X, 12, method, np.random.default_rng(4))
            labels = resp if isinstance(resp, np.ndarray) else np.zeros(0)
            stats = _init.stats_from_resp(X, resp, 12, True)
            results.append((labels, stats.nk, stats.ref, stats.s2))
    finally:
        numba.set_num_threads(previous)
    for one, many in zip(*results):
        assert one.tobytes() == many.tobytes()


@pytest.mark.parametrize("method", ["random_from_data", "k-means++"])
def test_hard_methods_make_no_n_by_k_array(method):
    """40,000 rows, K = 512: an N x K float64 array is 164 MB; the whole initialisation
    peaks under a quarter of that (a block is BLOCK_ROWS x K, one a thread)."""
    X = data(n_rows=40_000, n_features=4)
    n_components = 512
    tracemalloc.start()
    try:
        labels = _init.initial_resp(X, n_components, method, np.random.default_rng(5))
        _init.stats_from_resp(X, labels, n_components, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (X.shape[0],)
    assert peak < X.shape[0] * n_components * 8 / 4, peak


def test_random_responsibilities_are_drawn_per_block_from_their_own_streams():
    """``random`` draws each block of rows from its own stream, seeded by (one draw of the
    fit's generator, the block's index): the statistics are those of the blocks' draws,
    normalised per row, and the same for any number of threads and any order of blocks."""
    X = data(n_rows=3 * _init.BLOCK_ROWS + 17)
    resp = _init.initial_resp(X, 9, "random", np.random.default_rng(6))
    assert isinstance(resp, _init.UniformResp) and resp.shape == (X.shape[0], 9)
    seed = int(np.random.default_rng(6).integers(1 << 63))
    assert resp.seed == seed
    expected = np.vstack([np.random.default_rng([seed, b]).uniform(
        size=(min(_init.BLOCK_ROWS, X.shape[0] - b * _init.BLOCK_ROWS), 9)) for b in range(4)])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(resp.dense(), expected)
    np.testing.assert_array_equal(resp.block(2 * _init.BLOCK_ROWS, 3 * _init.BLOCK_ROWS),
                                  expected[2 * _init.BLOCK_ROWS:3 * _init.BLOCK_ROWS])
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(_init.stats_from_resp(X, resp, 9, False))
    finally:
        numba.set_num_threads(previous)
    assert_stats_close(results[0], naive_stats(X, expected, False), X.shape[0])
    for name in ("nk", "s1", "s2", "ref"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name))
    with pytest.raises(ValueError, match="whole blocks"):
        resp.block(5, 10)


def test_random_makes_no_n_by_k_array():
    """80,000 rows, K = 512: the N x K draw would be 328 MB; a few blocks a thread are
    drawn at a time."""
    X = data(n_rows=80_000, n_features=4)
    n_components = 512
    tracemalloc.start()
    try:
        resp = _init.initial_resp(X, n_components, "random", np.random.default_rng(7))
        _init.stats_from_resp(X, resp, n_components, False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.shape[0] * n_components * 8 / 4, peak


def kmeans_cost(sample, labels, n_components):
    centres = np.array([sample[labels == k].mean(axis=0) for k in range(n_components)])
    return float(((sample - centres[labels]) ** 2).sum(axis=1).mean())


def test_kmeans_parallel_finds_separated_clusters_as_kmeanspp_does():
    """k-means|| (Bahmani et al. 2012): on 64 separated clusters its seeds give a k-means
    cost no worse than greedy k-means++'s (both then take each row to its nearest seed),
    every component used; the same labels for the same seed, and for 1 or 2 threads."""
    rng = np.random.default_rng(0)
    centres = 6.0 * rng.standard_normal((64, 8))
    X = centres[rng.integers(0, 64, 12000)] + rng.standard_normal((12000, 8))
    labels = _init.initial_resp(X, 64, "k-means||", np.random.default_rng(1))
    greedy = _init.initial_resp(X, 64, "k-means++", np.random.default_rng(1))
    assert labels.shape == (12000,) and np.unique(labels).size == 64
    assert kmeans_cost(X, labels, 64) <= 1.05 * kmeans_cost(X, greedy, 64)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        again = _init.initial_resp(X, 64, "k-means||", np.random.default_rng(1))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(again, labels)


def test_kmeans_parallel_never_seeds_on_rows_of_zero_weight_and_sees_stored_order_not():
    """Rows of weight zero are never drawn (their d^2 counts for nothing); the rows are
    seen in lexicographic order, so storing them in another order changes nothing."""
    rng = np.random.default_rng(2)
    X = np.vstack([rng.standard_normal((300, 2)), 1e3 + rng.standard_normal((50, 2))])
    weights = np.r_[np.ones(300), np.zeros(50)]
    labels = _init.initial_resp(X, 4, "k-means||", np.random.default_rng(3), weights)
    stats = _init.stats_from_resp(X, labels, 4, True, weights)
    assert np.abs(stats.ref[stats.nk > 0]).max() < 10.0
    order = np.random.default_rng(4).permutation(X.shape[0])
    shuffled = _init.initial_resp(X[order], 4, "k-means||", np.random.default_rng(3),
                                  weights[order])
    np.testing.assert_array_equal(shuffled, labels[order])


def test_kmeans_parallel_with_fewer_distinct_rows_than_components_falls_back():
    X = np.repeat(np.eye(3), 20, axis=0)
    labels = _init.initial_resp(X, 5, "k-means||", np.random.default_rng(0))
    assert labels.shape == (60,) and set(np.unique(labels)) <= set(range(5))


@pytest.mark.parametrize("n_components, method", [(3, "kmeans"), (255, "kmeans"),
                                                  (256, "k-means||"), (1024, "k-means||")])
def test_auto_is_kmeans_until_256_components_then_kmeans_parallel(n_components, method):
    # the default: scikit-learn's kmeans, until Lloyd's iterations and greedy seeding cost
    # tens of passes' worth (issue 28); the storage never decides
    assert _init.resolve_init("auto", n_components) == method
    assert _init.resolve_init("random", n_components) == "random"


def test_the_default_init_at_large_k_is_the_kmeans_parallel_fit():
    import warnings
    import fastvi
    X = np.random.default_rng(0).normal(size=(3000, 2))
    fits = []
    for init in ("auto", "k-means||"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(fastvi.GaussianMixture(256, covariance_type="spherical",
                                               init_params=init, max_iter=1,
                                               random_state=0).fit(X))
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)


# ----------------------------------------------------------------------------- k-means
# fastvi's k-means++ seeds and Lloyd's iterations are its own (scikit-learn's argument
# checks and set-up were most of a small fit's initialisation); they keep
# scikit-learn's draws and rules, so the seeds and labels are those of its
# ``kmeans_plusplus`` and ``KMeans(tol=0)``, the independent reference here.  A change of
# scikit-learn's algorithm would show here first.

def _kmeans_datasets():
    from sklearn.datasets import load_iris, load_wine
    rng = np.random.default_rng(3)
    return {"iris": load_iris().data,            # one decimal: exact ties in distances
            "wine": load_wine().data,
            "gauss": rng.standard_normal((500, 3)),
            "four rows x 30": np.repeat(rng.standard_normal((4, 2)), 30, axis=0)}


def _weights(X, weighted, seed):
    if not weighted:
        return None
    w = np.random.default_rng(seed).integers(0, 4, X.shape[0]).astype(float)
    w[0] = 1.0                                    # never all zero
    return w


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_kmeans_plusplus_seeds_are_scikit_learns(weighted):
    from sklearn.cluster import kmeans_plusplus
    for name, X in _kmeans_datasets().items():
        for n_components in (1, 3, 10):
            for seed in range(3):
                w = _weights(X, weighted, seed)
                expected, _ = kmeans_plusplus(X, n_components, sample_weight=w,
                                              random_state=seed)
                got = _init._kmeans_plusplus(X, n_components, w, seed)
                np.testing.assert_array_equal(got, expected, err_msg=f"{name} K={n_components}")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_lloyd_labels_are_kmeans_labels(weighted):
    """From the same k-means++ seeds on the centred rows (as KMeans centres them)."""
    import warnings
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    for name, X in _kmeans_datasets().items():
        # 40: more than ONE_HOT_MAX_K, the sums by bincount
        for n_components in (2, 5, 10) + ((40,) if name == "gauss" else ()):
            for seed in range(3):
                w = _weights(X, weighted, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows
                    expected = KMeans(n_components, n_init=1, tol=0.0, random_state=seed
                                      ).fit(X, sample_weight=w).labels_
                centred = X - X.mean(axis=0)
                seeds = _init._kmeans_plusplus(centred, n_components, w, seed)
                np.testing.assert_array_equal(_init._lloyd(centred, w, seeds), expected,
                                              err_msg=f"{name} K={n_components} seed {seed}")


def test_lloyd_relocates_an_empty_component_as_kmeans_does():
    """A centre that no row is nearest to takes the farthest row (scikit-learn's rule),
    the row's weight leaving its component; with more blocks than one."""
    from sklearn.cluster import KMeans
    X = data(n_rows=5000, n_features=3, seed=1)
    w = np.random.default_rng(2).uniform(0.5, 2.0, X.shape[0])
    start = np.vstack([X[:3], X.mean(axis=0) + 1e4, X.mean(axis=0) - 1e4])   # two empty
    expected = KMeans(5, init=start, n_init=1, tol=0.0).fit(X, sample_weight=w).labels_
    mean = X.mean(axis=0)
    got = _init._lloyd(X - mean, w, start - mean)
    assert np.bincount(got, minlength=5).min() > 0          # the empty ones were filled
    np.testing.assert_array_equal(got, expected)
