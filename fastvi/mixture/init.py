"""Initial responsibilities, computed on a bounded random sample of the rows.

Like scikit-learn, an initialisation method produces responsibilities and one M-step turns
them into parameters.  Unlike scikit-learn it never needs the whole data in memory: the
methods run on at most ``init_sample_size`` rows, and the statistics of the sample are
scaled up to the total weight of the data.  When the data fit in the sample, it is all the
data, in order.

Every method takes the row weights, so an integer weight counts like that many copies of
the row; the k-means methods also see the sample in a canonical (lexicographic) order, so
their draws depend on the weighted rows, not on the order in which they are stored.
"""
import warnings

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ..engine.stats import SufficientStats

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def draw_sample(source, n_rows, rng, sample_weight=None):
    """At most ``n_rows`` rows of a chunk source (float64) and their weights.

    All rows, in order, when they fit.  Otherwise ``n_rows`` distinct row indices drawn
    uniformly from ``range(source.n_rows)``: the sample depends on the number of rows and
    the generator only, never on where the rows are stored (an array, an HDF5 dataset and
    its chunking, several files), so every storage gives the same fit.  An in-memory array
    is indexed directly; any other source is read once, chunk by chunk, keeping the drawn
    rows of each, so memory stays bounded by the sample and one chunk.
    """
    from ..data.sources import ArraySource
    if source.n_rows <= n_rows:
        index = np.arange(source.n_rows)
        sample = np.vstack([chunk for _, _, chunk in source.chunks()])
    else:
        index = np.sort(rng.choice(source.n_rows, n_rows, replace=False))
        if isinstance(source, ArraySource):
            sample = source.read_rows(index)
        else:
            parts = []
            for _, start, chunk in source.chunks():
                lo, hi = np.searchsorted(index, [start, start + chunk.shape[0]])
                parts.append(chunk[index[lo:hi] - start])
            sample = np.vstack(parts)
    sample = np.asarray(sample, dtype=np.float64)
    weights = None if sample_weight is None else np.asarray(sample_weight[index], dtype=np.float64)
    return sample, weights


def _nearest(sample, centres):
    """Index of the nearest centre of every row (squared Euclidean distance)."""
    dist = (-2.0 * sample @ centres.T + (centres ** 2).sum(axis=1))
    return np.argmin(dist, axis=1)


def _seed(rng):
    """An int seed for scikit-learn's k-means (it takes a RandomState, not a Generator)."""
    return int(rng.integers(2 ** 31 - 1))


def _kmeans_labels(sample, weights, n_components, rng, lloyd):
    """k-means++ centres (greedy, 2 + log K candidates per draw), then Lloyd's iterations
    to a fixed point when ``lloyd``: scikit-learn's ``kmeans_plusplus`` and ``KMeans``,
    with the row weights, on the rows in lexicographic order.

    scikit-learn's Lloyd adds its threads' partial sums in the order the threads finish,
    so its centres change in the last bits with the thread count; it runs on one thread
    here, which keeps fastvi's fits bit-identical for any ``n_jobs``.  ``tol=0`` stops at
    unchanged labels (its default tolerance is scaled by the unweighted variance, which
    would make a weighted fit differ from the fit on repeated rows).
    """
    order = np.lexsort(sample.T[::-1])
    rows = sample[order]
    w = np.ones(rows.shape[0]) if weights is None else weights[order]
    with threadpool_limits(1), warnings.catch_warnings():
        # fewer distinct rows than components: the empty components are handled (N_k floor)
        warnings.simplefilter("ignore", ConvergenceWarning)
        if lloyd:
            model = KMeans(n_components, init="k-means++", n_init=1, tol=0.0, max_iter=300,
                           random_state=_seed(rng)).fit(rows, sample_weight=w)
            sorted_labels = model.labels_
        else:
            centres, _ = kmeans_plusplus(rows, n_components, sample_weight=w,
                                         random_state=_seed(rng))
            sorted_labels = _nearest(rows, centres)
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    return labels


def _one_hot(labels, n_components):
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def initial_resp(sample, n_components, init_params, rng, weights=None):
    """Responsibilities (n_sample, K) of the sample rows by the named method.

    ``kmeans`` runs Lloyd's algorithm from greedy k-means++ seeds (weighted);
    ``k-means++`` picks the seeds and gives each sample row to its nearest one;
    ``random_from_data`` picks K distinct rows with probability proportional to their
    weight (a zero-weight row is never a centre) and gives each row to its nearest;
    ``random`` draws uniform responsibilities (the weights then enter the statistics).
    """
    if init_params in ("kmeans", "k-means++"):
        labels = _kmeans_labels(sample, weights, n_components, rng, init_params == "kmeans")
        return _one_hot(labels, n_components)
    if init_params == "random_from_data":
        p = None if weights is None else weights / weights.sum()
        if p is not None and np.count_nonzero(p) < n_components:
            raise ValueError(f"init_params='random_from_data' needs at least n_components = "
                             f"{n_components} rows of nonzero weight in the initialisation "
                             f"sample, got {np.count_nonzero(p)}")
        centres = sample[rng.choice(sample.shape[0], n_components, replace=False, p=p)]
        return _one_hot(_nearest(sample, centres), n_components)
    if init_params == "random":
        resp = rng.uniform(size=(sample.shape[0], n_components))
        return resp / resp.sum(axis=1, keepdims=True)
    raise ValueError(f"init_params must be one of {INIT_METHODS}, got {init_params!r}")


def stats_from_resp(sample, resp, full, sample_weight=None):
    """Statistics of the sample under given responsibilities, centred on their means."""
    wr = resp if sample_weight is None else resp * sample_weight[:, None]
    nk = wr.sum(axis=0)
    ref = (wr.T @ sample) / np.maximum(nk, np.finfo(float).tiny)[:, None]
    n_components, n_features = ref.shape
    stats = SufficientStats.zeros(ref, full)
    stats.nk[:] = nk
    for k in range(n_components):
        diff = sample - ref[k]
        weighted = wr[:, k:k + 1] * diff
        stats.s1[k] = weighted.sum(axis=0)
        stats.s2[k] = weighted.T @ diff if full else (weighted * diff).sum(axis=0)
    stats.weight = float(sample.shape[0] if sample_weight is None else sample_weight.sum())
    return stats
