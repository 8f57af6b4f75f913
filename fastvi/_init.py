"""Initial responsibilities, computed on a bounded random sample of the rows.

Like scikit-learn, an initialisation method produces responsibilities and one M-step turns
them into parameters.  Unlike scikit-learn it never needs the whole data in memory: the
methods run on at most ``init_sample_size`` rows, and the statistics of the sample are
scaled up to the total weight of the data.  When the data fit in the sample, it is all the
data, in order.
"""
import numpy as np

from ._stats import SufficientStats

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def draw_sample(source, n_rows, rng, sample_weight=None):
    """At most about ``n_rows`` rows of a chunk source (float64) and their weights.

    All rows, in order, when they fit.  Otherwise an in-memory array is indexed directly;
    any other source is read once, chunk by chunk, keeping the same fraction of random rows
    of every chunk, so memory stays bounded by the sample and one chunk.
    """
    from .sources import ArraySource
    if source.n_rows <= n_rows:
        index = np.arange(source.n_rows)
        sample = np.vstack([chunk for _, _, chunk in source.chunks()])
    elif isinstance(source, ArraySource):
        index = np.sort(rng.choice(source.n_rows, n_rows, replace=False))
        sample = source.read_rows(index)
    else:
        parts, picked = [], []
        fraction = n_rows / source.n_rows
        for _, start, chunk in source.chunks():
            take = min(chunk.shape[0], int(round(fraction * chunk.shape[0])))
            rows = np.sort(rng.choice(chunk.shape[0], take, replace=False))
            parts.append(chunk[rows])
            picked.append(start + rows)
        sample, index = np.vstack(parts), np.concatenate(picked)
    sample = np.asarray(sample, dtype=np.float64)
    weights = None if sample_weight is None else np.asarray(sample_weight[index], dtype=np.float64)
    return sample, weights


def _nearest(sample, centres):
    """Index of the nearest centre of every row (squared Euclidean distance)."""
    dist = (-2.0 * sample @ centres.T + (centres ** 2).sum(axis=1))
    return np.argmin(dist, axis=1)


def _kmeans_plusplus(sample, n_components, rng):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with 2 + log K candidates per
    draw as in scikit-learn): D^2-weighted candidates, keep the one that lowers the
    potential most.  The greedy step avoids most of the plain method's split clusters."""
    n_rows = sample.shape[0]
    n_trials = 2 + int(np.log(n_components))
    centres = np.empty((n_components, sample.shape[1]))
    centres[0] = sample[rng.integers(n_rows)]
    closest = ((sample - centres[0]) ** 2).sum(axis=1)
    for k in range(1, n_components):
        total = closest.sum()
        if total > 0:
            candidates = rng.choice(n_rows, n_trials, p=closest / total)
        else:
            candidates = rng.integers(n_rows, size=n_trials)
        dist = ((sample[None, :, :] - sample[candidates][:, None, :]) ** 2).sum(axis=2)
        dist = np.minimum(closest[None, :], dist)
        best = int(np.argmin(dist.sum(axis=1)))
        centres[k] = sample[candidates[best]]
        closest = dist[best]
    return centres


def _lloyd(sample, centres, max_iter=100):
    """Lloyd's k-means iterations until the labels stop changing; empty clusters keep
    their centre."""
    labels = _nearest(sample, centres)
    for _ in range(max_iter):
        counts = np.bincount(labels, minlength=centres.shape[0])
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, sample)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        new_labels = _nearest(sample, centres)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def _one_hot(labels, n_components):
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def initial_resp(sample, n_components, init_params, rng):
    """Responsibilities (n_sample, K) of the sample rows by the named method.

    ``kmeans`` runs Lloyd's algorithm from greedy k-means++ seeds;
    ``k-means++`` and ``random_from_data`` pick centres (D^2-weighted, or uniformly) and give
    each sample row to its nearest centre; ``random`` draws uniform responsibilities.
    """
    if init_params == "kmeans":
        centres = _kmeans_plusplus(sample, n_components, rng)
        return _one_hot(_lloyd(sample, centres), n_components)
    if init_params == "k-means++":
        return _one_hot(_nearest(sample, _kmeans_plusplus(sample, n_components, rng)),
                        n_components)
    if init_params == "random_from_data":
        centres = sample[rng.choice(sample.shape[0], n_components, replace=False)]
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
