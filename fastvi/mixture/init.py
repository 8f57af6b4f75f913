"""Initial responsibilities, computed on a bounded random sample of the rows.

Like scikit-learn, an initialisation method produces responsibilities and one M-step turns
them into parameters.  Unlike scikit-learn it never needs the whole data in memory: the
methods run on at most ``init_sample_size`` rows, and the statistics of the sample are
scaled up to the total weight of the data.  When the data fit in the sample, it is all the
data, in order.

Every method takes the row weights, so an integer weight counts like that many copies of
the row; the k-means methods also see the sample in a canonical (lexicographic) order, so
their draws depend on the weighted rows, not on the order in which they are stored.

Cost at large K.  The hard methods give labels, not an N x K one-hot array, and their
statistics are summed per label (O(N D^2) whatever K); the nearest-centre search and the
dense (``random``) statistics go ``BLOCK_ROWS`` rows at a time, so memory is
``BLOCK_ROWS x K`` floats, and the blocks run on the fit's threads.  For K = 1024
centres on 200,000 x 16 rows (diag, ``random_from_data``) that made initialising 52 times
faster, to 0.8 of a dense pass (``bench/init_cost.py``, old and new code in one run).
"""
import concurrent.futures

import numpy as np

from ..data.threads import limit_threads
from ..engine.stats import SufficientStats

INIT_METHODS = ("auto", "kmeans", "k-means++", "k-means||", "random", "random_from_data")
AUTO_PARALLEL_K = 256           # "auto": k-means|| from this many components on
KMEANS_PARALLEL_ROUNDS = 2      # k-means|| oversampling rounds (Spark MLlib's default)
KMEANS_PARALLEL_FACTOR = 2.0    # rows drawn per round: factor x K in expectation


def draw_sample(source, n_rows, rng, sample_weight=None, backend=None):
    """At most ``n_rows`` rows of a chunk source (float64) and their weights.

    All rows, in order, when they fit.  Otherwise ``n_rows`` distinct row indices drawn
    uniformly from ``range(source.n_rows)``: the sample depends on the number of rows and
    the generator only, never on where the rows are stored (an array, an HDF5 dataset and
    its chunking, several files), so every storage gives the same fit.  The rows are read
    through ``backend`` (``Backend.sample_rows``; default the local one): an in-memory
    array is indexed directly; a file is read chunk by chunk, keeping the drawn rows of
    each, here or on the Dask workers, so only the sample reaches this process.
    """
    if backend is None:
        from ..engine.backend import get_backend
        backend = get_backend("local")
    if source.n_rows <= n_rows:
        index = np.arange(source.n_rows)
    else:
        index = np.sort(rng.choice(source.n_rows, n_rows, replace=False))
    sample = np.asarray(backend.sample_rows(source, index), dtype=np.float64)
    weights = None if sample_weight is None else np.asarray(sample_weight[index], dtype=np.float64)
    return sample, weights


BLOCK_ROWS = 2048       # rows of one block of the nearest-centre search and dense statistics


def _blocks(n_rows):
    return [(start, min(start + BLOCK_ROWS, n_rows)) for start in range(0, n_rows, BLOCK_ROWS)]


def _map_blocks(function, n_rows):
    """``[function(start, stop) for each block]``, in block order, on the fit's threads
    (Numba's thread count: ``n_jobs``).  Each block is computed on its own with
    single-threaded BLAS (the fit limits BLAS to one thread), so the results do not
    depend on the number of threads.  One block runs here, without a thread pool (a
    small fit's Lloyd iterations call this tens of times)."""
    blocks = _blocks(n_rows)
    if len(blocks) == 1:
        return [function(*blocks[0])]
    with concurrent.futures.ThreadPoolExecutor(_threads(len(blocks))) as pool:
        return list(pool.map(lambda block: function(*block), blocks))   # GEMMs drop the GIL


def _sum_blocks(function, n_rows, block_input):
    """The sums, in block order, of the tuples ``function(start, stop, block_input(start,
    stop))`` over the blocks.  The blocks run on the fit's threads in waves of one block
    a thread, and ``block_input`` is called in block order in this thread (it may draw
    from a random generator), so memory is a few blocks, not N rows."""
    blocks = _blocks(n_rows)
    threads = _threads(len(blocks))
    totals = None
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for first in range(0, len(blocks), threads):
            jobs = [(start, stop, block_input(start, stop))
                    for start, stop in blocks[first:first + threads]]
            for part in pool.map(lambda job: function(*job), jobs):
                totals = list(part) if totals is None else [t + p for t, p in zip(totals, part)]
    return totals


def _threads(n_blocks):
    import numba
    return max(1, min(numba.get_num_threads(), n_blocks))


class UniformResp:
    """The ``random`` method's responsibilities (uniform draws, each row normalised),
    drawn a block of ``BLOCK_ROWS`` rows at a time as the statistics ask for them, with
    no N x K array kept (1.6 GB at 200,000 x 1024).

    Each block has a random stream of its own, seeded by (the fit's seed, the block's
    index): ``self.seed`` is one draw from the fit's generator.  So the blocks are drawn
    in parallel, in any order, on the threads that sum their statistics, with the same
    numbers however many threads there are (one N x K draw from one generator was 2.4 to
    2.9 dense passes' worth of time at large K).  ``dense()`` draws them all."""

    ndim = 2

    def __init__(self, rng, n_rows, n_components):
        self.seed = int(rng.integers(1 << 63))
        self.shape = (n_rows, n_components)

    def block(self, start, stop):
        """Rows ``start:stop``, one block (``start`` a multiple of ``BLOCK_ROWS``)."""
        if start % BLOCK_ROWS or stop - start > BLOCK_ROWS or stop > self.shape[0]:
            raise ValueError(f"UniformResp draws whole blocks of {BLOCK_ROWS} rows, "
                             f"not rows {start}:{stop}")
        stream = np.random.default_rng([self.seed, start // BLOCK_ROWS])
        resp = stream.uniform(size=(stop - start, self.shape[1]))
        resp /= resp.sum(axis=1, keepdims=True)
        return resp

    def dense(self):
        return np.vstack([self.block(start, stop) for start, stop in _blocks(self.shape[0])]
                         or [np.empty((0, self.shape[1]))])


def _nearest(sample, centres):
    """Index of the nearest centre of every row (squared Euclidean distance), a block of
    rows at a time: memory ``BLOCK_ROWS x K``, not N x K (``_nearest_candidates``)."""
    return _nearest_candidates(sample, centres)[0]


def _seed(rng):
    """The int seed of the k-means++ draws (a ``RandomState``'s, as scikit-learn's)."""
    return int(rng.integers(2 ** 31 - 1))


def _kmeans_labels(sample, weights, n_components, rng, lloyd):
    """k-means++ centres (greedy, 2 + log K candidates per draw: scikit-learn's
    ``kmeans_plusplus``), then, when ``lloyd``, Lloyd's iterations to unchanged labels
    (``_lloyd``), with the row weights, on the rows in lexicographic order.

    With ``lloyd`` the rows are first centred on their (unweighted) mean, as
    scikit-learn's ``KMeans`` centres them, so that the seeds and the labels are those
    that ``KMeans(tol=0)`` gave here before (its set-up and checks cost more than the
    iterations on small data).  BLAS runs on one thread and Lloyd's blocks are summed
    in block order, so the labels do not depend on ``n_jobs``.
    """
    order = np.lexsort(sample.T[::-1])
    rows = sample[order]
    w = None if weights is None else weights[order]
    if lloyd:
        rows = rows - rows.mean(axis=0)
    with limit_threads(1):
        centres = _kmeans_plusplus(rows, n_components, w, _seed(rng))
        sorted_labels = _lloyd(rows, w, centres) if lloyd else _nearest(rows, centres)
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    return labels


def _kmeans_plusplus(rows, n_components, weights, seed):
    """Greedy k-means++ centres (Arthur & Vassilvitskii 2007; the greedy variant, with
    2 + log K candidates a draw): the first centre a row drawn with probability in
    proportion to its weight; each next one the best of the candidates drawn in
    proportion to weight x squared distance to the nearest centre so far, the one that
    leaves the smallest weighted sum of squared distances.

    The draws of ``numpy.random.RandomState(seed)`` in the order, and the arithmetic in
    the shapes, of scikit-learn's ``kmeans_plusplus`` (fastvi called it before): the
    same centres, without its argument checks, the largest fixed cost of a small fit's
    initialisation (tests/test_init.py compares the two).
    """
    state = np.random.RandomState(seed)
    n_rows = rows.shape[0]
    w = np.ones(n_rows) if weights is None else weights
    n_trials = 2 + int(np.log(n_components))
    row_sq = np.einsum("ij,ij->i", rows, rows)
    first = state.choice(n_rows, p=w / w.sum())
    centres = np.empty((n_components, rows.shape[1]))
    centres[0] = rows[first]
    closest = _squared_distances(centres[:1], rows, row_sq)        # (1, N)
    potential = closest @ w
    for c in range(1, n_components):
        targets = state.uniform(size=n_trials) * potential
        candidates = np.searchsorted(np.cumsum(w * closest), targets)
        np.clip(candidates, None, n_rows - 1, out=candidates)      # rounding at the end
        d2 = _squared_distances(rows[candidates], rows, row_sq)
        np.minimum(closest, d2, out=d2)
        potentials = d2 @ w.reshape(-1, 1)
        best = np.argmin(potentials)
        potential, closest = potentials[best], d2[best]
        centres[c] = rows[candidates[best]]
    return centres


def _squared_distances(points, rows, row_sq):
    """Squared Euclidean distances (len(points), N) as ||p||^2 - 2 p.x + ||x||^2, at
    least 0 (scikit-learn's ``euclidean_distances``, ``squared=True``, in float64)."""
    d2 = -2 * (points @ rows.T)
    d2 += np.einsum("ij,ij->i", points, points)[:, None]
    d2 += row_sq[None, :]
    np.maximum(d2, 0, out=d2)
    return d2


LLOYD_MAX_ITER = 300    # as scikit-learn's KMeans
ONE_HOT_MAX_K = 32      # Lloyd's sums by a one-hot GEMM up to this many components


def _lloyd(rows, weights, centres, max_iter=LLOYD_MAX_ITER):
    """The labels of Lloyd's algorithm (Lloyd 1982) from ``centres``: each row to its
    nearest centre (the first on a tie), each centre to the weighted mean of its rows,
    until the labels stop changing (at most ``max_iter`` rounds; then the labels of the
    last centres).  A component left without weight takes the row farthest from its
    centre, one row per empty component in decreasing distance, the row's weight
    leaving the component it came from: scikit-learn's ``KMeans`` relocates so, and its
    labels are kept (tests/test_init.py).  Where every row sits on its centre (fewer
    distinct rows than components) an empty component keeps its centre, where it draws
    no row (scikit-learn moves it onto the heaviest component's; the labels agreed on
    the tests' duplicated rows).
    """
    w = np.ones(rows.shape[0]) if weights is None else weights
    weighted = rows * w[:, None]
    previous = None
    for _ in range(max_iter):
        labels, totals, mass = _assign(rows, weighted, w, centres)
        if previous is not None and np.array_equal(labels, previous):
            return labels
        empty = np.flatnonzero(mass == 0)
        if empty.size:
            distance = ((rows - centres[labels]) ** 2).sum(axis=1)
            if distance.max() > 0:
                farthest = np.argpartition(distance, -empty.size)[:-empty.size - 1:-1]
                for component, row in zip(empty, farthest):
                    totals[labels[row]] -= weighted[row]
                    mass[labels[row]] -= w[row]
                    totals[component], mass[component] = weighted[row], w[row]
        filled = mass > 0
        moved = centres.copy()
        moved[filled] = totals[filled] * (1.0 / mass[filled])[:, None]
        if np.array_equal(moved, centres):
            return labels           # no centre moved: the next labels are these
        centres, previous = moved, labels
    return _nearest(rows, centres)


def _assign(rows, weighted, w, centres):
    """One Lloyd round's pass: each row's nearest centre (as ``_nearest``), and per
    component the sum of its weighted rows and its weight, a block of rows at a time,
    the blocks' sums added in block order.  A block's sums by a one-hot GEMM up to
    ``ONE_HOT_MAX_K`` components, else by a bincount per feature (the one-hot array
    grows with K: at K = 128 it took 10 times a bincount's time)."""
    n_components = centres.shape[0]
    centre_sq = np.einsum("ij,ij->i", centres, centres)

    def block(start, stop):
        labels = _distance_terms(rows[start:stop], centres, centre_sq).argmin(axis=1)
        if n_components <= ONE_HOT_MAX_K:
            onehot = np.zeros((n_components, stop - start))
            onehot[labels, np.arange(stop - start)] = 1.0
            return labels, onehot @ weighted[start:stop], onehot @ w[start:stop]
        totals = np.empty((n_components, rows.shape[1]))
        for j in range(rows.shape[1]):
            totals[:, j] = np.bincount(labels, weights=weighted[start:stop, j],
                                       minlength=n_components)
        return labels, totals, np.bincount(labels, weights=w[start:stop],
                                           minlength=n_components)

    parts = _map_blocks(block, rows.shape[0])
    labels = np.concatenate([part[0] for part in parts])
    totals, mass = parts[0][1], parts[0][2]
    for _, block_totals, block_mass in parts[1:]:
        totals += block_totals
        mass += block_mass
    return labels, totals, mass


def _distance_terms(rows, centres, centre_sq):
    """The terms of each row's squared distance to each centre that depend on the centre,
    ``||c||^2 - 2 x.c`` (rows, K): one array in place; scaling by -2 is exact, so these
    are the bits of (-2 x) . c + ||c||^2, as scikit-learn's k-means computes them
    (``centre_sq`` by einsum, as its row_norms)."""
    dist = np.matmul(rows, centres.T)
    dist *= -2.0
    dist += centre_sq
    return dist


def _nearest_candidates(sample, centres, first=0, best=None, best_d2=None):
    """Each row's nearest of ``centres`` (indices offset by ``first``) and its squared
    Euclidean distance, by blocked GEMMs on the fit's threads (``||x||^2 - 2 x.c +
    ||c||^2``, clipped at 0); with ``best`` and ``best_d2`` (the nearest so far), the
    nearer of the two, the earlier on a tie.  Returns ``(best, best_d2)``."""
    centre_sq = np.einsum("ij,ij->i", centres, centres)

    def block(start, stop):
        rows = sample[start:stop]
        dist = _distance_terms(rows, centres, centre_sq)
        index = dist.argmin(axis=1)
        d2 = np.maximum(dist[np.arange(stop - start), index] + (rows ** 2).sum(axis=1), 0.0)
        return index + first, d2

    parts = _map_blocks(block, sample.shape[0])
    if not parts:
        return np.zeros(0, dtype=np.intp), np.zeros(0)
    index = np.concatenate([part[0] for part in parts])
    d2 = np.concatenate([part[1] for part in parts])
    if best is None:
        return index, d2
    nearer = d2 < best_d2
    return np.where(nearer, index, best), np.where(nearer, d2, best_d2)


def _byte_order(rows):
    """An order of ``rows`` (N, D) fixed by their contents alone: by their bytes, each
    row one opaque key, stably (identical rows keep their order)."""
    keys = np.ascontiguousarray(rows, dtype=np.float64)
    keys = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    return np.argsort(keys, kind="stable")


def _kmeans_parallel_labels(sample, weights, n_components, rng):
    """k-means|| (Bahmani, Moseley, Vattani, Kumar & Vassilvitskii 2012, "Scalable
    k-means++", Algorithm 2), weighted, on the rows in lexicographic order: one row drawn
    by weight; then ``KMEANS_PARALLEL_ROUNDS`` rounds, each drawing every row
    independently with probability ``min(1, l w_n d_n^2 / phi)`` (``l`` =
    ``KMEANS_PARALLEL_FACTOR x K``, ``d_n`` the distance to the candidates so far, ``phi``
    the weighted cost) and updating each row's nearest candidate by one blocked GEMM
    against the new ones; each candidate weighed by the rows nearest to it (step 7, from
    the same GEMMs); k-means++ on the weighted candidates (a few times K rows) picks the
    K centres; each row goes to the centre nearest its nearest candidate (known from the
    rounds: a search of the candidates, not of the N rows, against the K centres; every
    centre keeps at least its own row).  Bahmani et al. find that r = 5 rounds of
    l = 2K do as well as k-means++; Spark MLlib runs 2, as here: about 4 x K distances
    per row in all.  Where greedy k-means++ takes K sequential steps over the sample, this
    is a few passes of matrix products.  Too few candidates (fewer distinct rows than K):
    greedy k-means++ on the sample instead.

    The canonical order is that of the rows' bytes (``_byte_order``), not the
    lexicographic order of their values: any order that the rows alone fix will do, and
    at 100,000 x 16 it sorts in 0.03 s where ``np.lexsort`` took 0.19 s."""
    order = _byte_order(sample)
    rows = sample[order]
    w = np.ones(rows.shape[0]) if weights is None else weights[order]
    p = w / w.sum()
    picked = [int(rng.choice(rows.shape[0], p=p))]
    nearest, d2 = _nearest_candidates(rows, rows[picked])
    for _ in range(KMEANS_PARALLEL_ROUNDS):
        phi = float(w @ d2)
        if not phi > 0.0:
            break                                   # every row is a candidate's copy
        odds = KMEANS_PARALLEL_FACTOR * n_components * w * d2 / phi
        new = np.flatnonzero((rng.uniform(size=rows.shape[0]) < odds) & (d2 > 0.0))
        if new.size:
            nearest, d2 = _nearest_candidates(rows, rows[new], len(picked), nearest, d2)
            picked.extend(new.tolist())
    if len(picked) < n_components:
        return _kmeans_labels(sample, weights, n_components, rng, lloyd=False)
    # step 7: each candidate weighs what the rows nearest to it weigh
    weight = np.bincount(nearest, weights=w, minlength=len(picked))
    with limit_threads(1):
        centres = _kmeans_plusplus(rows[picked], n_components, weight, _seed(rng))
    # each row goes to the seed nearest its nearest candidate (a K x (a few K) search,
    # not N x K: the rows' nearest candidates are known from the rounds)
    labels = np.empty(rows.shape[0], dtype=np.intp)
    labels[order] = _nearest(rows[picked], centres)[nearest]
    return labels


def resolve_init(init_params, n_components):
    """The method that ``init_params`` names: ``"auto"`` is ``k-means||`` from
    ``AUTO_PARALLEL_K`` components on, where greedy seeding and Lloyd's iterations
    (``kmeans``) cost tens of passes' worth of distances, else ``kmeans`` (scikit-learn's
    default).  Never by where the rows are stored: a file and an array give the same fit."""
    if init_params != "auto":
        return init_params
    return "k-means||" if n_components >= AUTO_PARALLEL_K else "kmeans"


def initial_resp(sample, n_components, init_params, rng, weights=None):
    """Initial responsibilities of the sample rows by the named method: hard ones as
    labels, shape (n_sample,) (a one-hot row each, never made), ``random`` as a
    ``UniformResp`` (drawn block by block by ``stats_from_resp``).

    ``kmeans`` runs Lloyd's algorithm from greedy k-means++ seeds (weighted);
    ``k-means++`` picks the seeds and gives each sample row to its nearest one;
    ``k-means||`` picks them by k-means|| (``_kmeans_parallel_labels``: a few rounds of
    matrix products instead of K greedy steps) and gives each row to its nearest;
    ``random_from_data`` picks K distinct rows with probability proportional to their
    weight (a zero-weight row is never a centre) and gives each row to its nearest;
    ``random`` draws uniform responsibilities (the weights then enter the statistics),
    a block of rows at a time, each block from its own stream (``UniformResp``).
    """
    if init_params in ("kmeans", "k-means++"):
        return _kmeans_labels(sample, weights, n_components, rng, init_params == "kmeans")
    if init_params == "k-means||":
        return _kmeans_parallel_labels(sample, weights, n_components, rng)
    if init_params == "random_from_data":
        p = None if weights is None else weights / weights.sum()
        if p is not None and np.count_nonzero(p) < n_components:
            raise ValueError(f"init_params='random_from_data' needs at least n_components = "
                             f"{n_components} rows of nonzero weight in the initialisation "
                             f"sample, got {np.count_nonzero(p)}")
        centres = sample[rng.choice(sample.shape[0], n_components, replace=False, p=p)]
        return _nearest(sample, centres)
    if init_params == "random":
        return UniformResp(rng, sample.shape[0], n_components)
    raise ValueError(f"init_params must be one of {INIT_METHODS}, got {init_params!r}")


def stats_from_resp(sample, resp, n_components, full, sample_weight=None):
    """Statistics of the sample under its initial responsibilities (``initial_resp``:
    labels, a ``UniformResp`` or an (n_sample, K) array), centred on the components'
    weighted means."""
    w = np.ones(sample.shape[0]) if sample_weight is None else sample_weight
    if resp.ndim == 1:
        stats = _stats_from_labels(sample, resp, n_components, full, w)
    else:
        stats = _stats_from_dense(sample, resp, full, w)
    stats.weight = float(sample.shape[0] if sample_weight is None else sample_weight.sum())
    return stats


def _stats_from_labels(sample, labels, n_components, full, w):
    """Hard responsibilities: each component's statistics from its own rows only.  Rows
    of zero weight are left out, so their values (and so their labels) never change how
    the other rows' terms are grouped in the sums: they do not change a bit."""
    order = np.flatnonzero(w > 0)
    order = order[np.argsort(labels[order], kind="stable")]
    bounds = np.searchsorted(labels[order], np.arange(n_components + 1))
    stats = SufficientStats.zeros(np.zeros((n_components, sample.shape[1])), full)
    for k in range(n_components):
        rows = order[bounds[k]:bounds[k + 1]]
        x, wk = sample[rows], w[rows]
        nk = wk.sum()
        stats.nk[k] = nk
        stats.ref[k] = (wk @ x) / max(nk, np.finfo(float).tiny)
        diff = x - stats.ref[k]
        weighted = wk[:, None] * diff
        stats.s1[k] = weighted.sum(axis=0)
        stats.s2[k] = weighted.T @ diff if full else (weighted * diff).sum(axis=0)
    return stats


def _stats_from_dense(sample, resp, full, w):
    """Soft responsibilities, with GEMMs over blocks of rows: the weighted sums of the
    rows and of their squares (outer products for ``full``), less n_k times the means'
    (the data centred on their mean first, so the difference does not cancel)."""
    centre = (w @ sample) / max(w.sum(), np.finfo(float).tiny)
    n_features = sample.shape[1]

    def block_sums(start, stop, block_resp):
        x = sample[start:stop] - centre
        wr = block_resp * w[start:stop, None]
        squares = (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1) if full else x * x
        return wr.sum(axis=0), wr.T @ x, wr.T @ squares

    if isinstance(resp, UniformResp):       # each block drawn on the thread that sums it
        nk, first, second = _sum_blocks(
            lambda start, stop, _: block_sums(start, stop, resp.block(start, stop)),
            sample.shape[0], lambda start, stop: None)
    else:
        nk, first, second = _sum_blocks(block_sums, sample.shape[0],
                                        lambda start, stop: resp[start:stop])
    mean = first / np.maximum(nk, np.finfo(float).tiny)[:, None]
    stats = SufficientStats.zeros(mean + centre, full)
    stats.nk[:] = nk
    if full:
        second = second.reshape(-1, n_features, n_features)
        stats.s2[:] = second - nk[:, None, None] * mean[:, :, None] * mean[:, None, :]
    else:
        stats.s2[:] = second - nk[:, None] * mean ** 2
    return stats
