"""The local backend: the fused Numba kernels on this machine's cores.

Chunks come from the source's prefetching reader (the next chunk is read in a thread
while the kernel works on the current one; the kernels release the GIL).  Each chunk's
statistics are accumulated from zero by one kernel call and handed back; the kernel sums
its row blocks in block order, so a chunk's statistics are the same bits for any number of
threads (``fastvi.kernels.estep``).  The contract is ``fastvi.engine.backend``'s.
"""
from contextlib import contextmanager

import numba
import numpy as np

from ..data.checks import InvalidParameterError, check_integer
from ..kernels import estep_diag, estep_full, estep_truncated, rank_table, search_arrays
from ..kernels.estep import BLOCK_ROWS
from ..kernels.entropy import pair_entropy_loss as entropy_kernel
from ..kernels.missing import estep_missing_diag, estep_missing_full, impute_missing
from ..data.limits import check_values
from ..data.sources import DEFAULT_CHUNK_ROWS, as_source
from ..data.threads import limit_threads
from .backend import Backend, ChunkPass, check_result, empty_outputs, total_stats
from .stats import SufficientStats
from .truncation import SUPPORT_DTYPE

_EMPTY1 = np.zeros(0)
_NO_LABELS = np.zeros((0, 1), dtype=np.int64)


def thread_count(n_jobs):
    """The Numba threads ``n_jobs`` asks for (-1: all), or InvalidParameterError."""
    n = numba.config.NUMBA_NUM_THREADS if n_jobs == -1 else check_integer("n_jobs", n_jobs)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise InvalidParameterError(f"n_jobs must be -1 or between 1 and "
                                    f"{numba.config.NUMBA_NUM_THREADS}, got {n_jobs!r}")
    return n


@contextmanager
def compute_threads(n_jobs):
    """Numba threads for the kernels during a call, restored afterwards; BLAS limited to
    one thread meanwhile: the kernels are the parallel level, and OpenBLAS threads left
    spinning after the small M-step calls steal the cores from them (full-covariance
    passes 30-50% slower on 2 cores)."""
    previous = numba.get_num_threads()
    if n_jobs is not None:
        numba.set_num_threads(thread_count(n_jobs))
    try:
        with limit_threads(1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


class LocalBackend(Backend):
    """Numba threads on this machine (``backend="local"``, the default)."""

    name = "local"

    def open_pass(self, source, order, sample_weight=None, search=None, pairs=None,
                  proposal=None):
        return _LocalPass(source, order, sample_weight, search, pairs, proposal)

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        return per_row(source, params, log_norm, resp, labels, top)

    def neighbour_lists(self, params, truncation):
        return neighbour_lists(params, truncation)

    def check_n_jobs(self, n_jobs):
        thread_count(n_jobs)

    def running(self, n_jobs):
        return compute_threads(n_jobs)


class _LocalPass(ChunkPass):
    def __init__(self, source, order, sample_weight, search, pairs=None, proposal=None):
        self.source = source
        self.sample_weight = sample_weight
        self.search = search
        self.pairs = pairs
        self.proposal = proposal
        self.bounds = source.chunk_bounds()
        self.position = 0
        # the reader runs one chunk ahead in this order; check=False: a non-finite result
        # is traced to its row by check_result
        self._chunks = source.chunks(list(order), check=False, reuse=True)

    def stats(self, params, count=None):
        taken = 0
        while count is None or taken < count:
            item = next(self._chunks, None)
            if item is None:
                return
            index, start, chunk = item
            stats = self._chunk_stats(start, chunk, params)
            self.position += 1
            taken += 1
            yield index, stats

    def _chunk_stats(self, start, chunk, params):
        stop = start + chunk.shape[0]
        weights = None if self.sample_weight is None else self.sample_weight[start:stop]
        if self.search is None:
            return dense_chunk_stats(self.source, start, chunk, weights, params, self.pairs,
                                     self.proposal)
        seed = (self.search.first_seed + self.position) % (1 << 63)
        return truncated_chunk_stats(self.source, start, chunk, weights, params, self.search,
                                     seed)

    def close(self):
        self._chunks.close()        # stops the reader thread


# ----------------------------------------------------------------------------- dense kernels

def _readonly(array):
    """``array``, or a read-only view of it (no copy)."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def _dense(chunk, weights, params, nk, s1, s2, log_norm_out, resp_out, labels_out):
    """One call of the fused dense kernel (``estep_full`` or ``estep_diag``).

    Its inputs come in one layout each, so Numba compiles one specialisation per dtype of
    the rows: the rows and weights as read-only views (never copies), the parameters as
    read-only float64 (the kernel's first step copies them into padded float64 arrays, so
    a float32 model's parameters give the same bits).  Passed as they came, the callers'
    read-only flags and dtypes made 15 specialisations of ``estep_full`` in one run of the
    tests, each compiled on first use (seconds each, in every fresh install)."""
    kernel = estep_full if params.full else estep_diag
    c, means, factor = _float64_params(params)
    with _threads_for(chunk.shape[0], means.shape[0] * means.shape[1] ** (1 + params.full)):
        if params.marginalize and _has_holes(chunk):
            if not params.full:     # (the diagonal kernel with holes is as fast on the rest)
                return estep_missing_diag(_readonly(chunk), _readonly(weights), c, means,
                                          factor, nk, s1, s2, log_norm_out, resp_out,
                                          labels_out)
            return _dense_missing(chunk, weights, kernel, (c, means, factor), np.isnan(chunk),
                                  (nk, s1, s2), (log_norm_out, resp_out, labels_out))
        return kernel(_readonly(chunk), _readonly(weights), c, means, factor, nk, s1, s2,
                      log_norm_out, resp_out, labels_out)


# Multiply-adds per thread below which a kernel call is better on fewer threads: waking
# the OpenMP threads for a parallel region costs tens of microseconds on idle cores and
# milliseconds when another process holds them (iris, diag, K = 3 took 135 ms a fit on 2
# threads beside a busy process, 8 ms on one).  The kernels' results do not depend on the
# thread count (blocks add into slots in block order), so this changes only the time.
PARALLEL_WORK = 1_000_000


@contextmanager
def _threads_for(n_rows, work_per_row):
    """Run a kernel call on at most one thread per ``PARALLEL_WORK`` multiply-adds (and
    per block of rows), within the call's thread count; restored afterwards."""
    previous = numba.get_num_threads()
    wanted = max(1, min(previous, -(-n_rows // BLOCK_ROWS),
                        n_rows * work_per_row // PARALLEL_WORK))
    if wanted == previous:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _has_holes(chunk):
    """Whether ``chunk`` has a NaN: its sum is NaN exactly then (its values are finite and
    bounded, checked when read), one vectorised reduction instead of a scan of the rows."""
    return bool(np.isnan(np.add.reduce(chunk, axis=None)))


def _dense_missing(chunk, weights, kernel, arrays, holes, stats, outputs):
    """``_dense`` of a chunk with incomplete rows (``missing="marginalize"``), full
    factors: its complete rows through the fast kernel, then the incomplete ones, sorted
    by their pattern of holes (``by_pattern``), through
    ``kernels.missing.estep_missing_full``, each adding into the same statistics; the
    per-row outputs are scattered back.  (A chunk without NaN never comes here: it keeps
    the plain kernel's bits.)"""
    total = 0.0
    incomplete = holes.any(axis=1)
    complete = np.flatnonzero(~incomplete)
    for rows, run in ((complete, kernel), (by_pattern(holes, incomplete), estep_missing_full)):
        if rows.size == 0:
            continue
        taken = [out[rows] if out.shape[0] else out for out in outputs]
        total += run(_readonly(np.ascontiguousarray(chunk[rows])),
                     _readonly(weights[rows] if weights.shape[0] else weights),
                     *arrays, *stats, *taken)
        for out, part in zip(outputs, taken):
            if out.shape[0]:
                out[rows] = part
    return total


def by_pattern(holes, incomplete):
    """The incomplete rows' indices (``holes``: the chunk's NaN mask; ``incomplete``: its
    rows with any), those with the same holes together (a stable sort by the hole masks):
    the kernel then factors each pattern once per block and fills a run of rows of one
    pattern in vectorised loops (whole columns missing from a source, or the single and
    double holes of entries missing at random)."""
    index = np.flatnonzero(incomplete)
    holes = holes[index]
    if holes.shape[1] <= 62:        # the mask as an integer: a fast integer sort
        keys = holes @ (np.int64(1) << np.arange(holes.shape[1], dtype=np.int64))
    else:
        masks = np.packbits(holes, axis=1)
        keys = np.ascontiguousarray(masks).view(np.dtype((np.void, masks.shape[1]))).ravel()
    return index[np.argsort(keys, kind="stable")]


def _float64_params(params):
    """``c``, ``means``, ``factor`` as read-only float64 arrays (one specialisation)."""
    return tuple(_readonly(np.ascontiguousarray(array, dtype=np.float64))
                 for array in (params.c, params.means, params.factor))


def impute_rows(source, params):
    """Every row of ``source`` with its NaN entries replaced by E[x_m | x_o] under the
    mixture ``params`` (``kernels.missing.impute_missing``), in the source's dtype."""
    out = np.empty((source.n_rows, source.n_features))
    arrays = _float64_params(params)
    for _, start, chunk in source.chunks(check=False):
        check_values(chunk, source.label, start, allow_nan=True)
        impute_missing(_readonly(chunk), *arrays, out[start:start + chunk.shape[0]])
    return out.astype(source.dtype, copy=False)


def _weights_arg(weights):
    return _EMPTY1 if weights is None else np.ascontiguousarray(weights, dtype=np.float64)


def accumulate_chunk(chunk, params, weights, stats):
    """Add one chunk's statistics into ``stats`` (upper triangle); return its log-norm sum."""
    none = np.zeros((0, params.means.shape[0]))
    return _dense(chunk, _weights_arg(weights), params, stats.nk, stats.s1, stats.s2,
                  _EMPTY1, none, _NO_LABELS)


def accumulate_chunk_with_pairs(chunk, params, weights, stats, pairs):
    """``accumulate_chunk``, and ``stats.pair_loss``: the entropy losses of the merge
    candidates ``pairs`` over the chunk's rows (from its responsibilities, which the same
    kernel call gives)."""
    resp = np.empty((chunk.shape[0], params.means.shape[0]))
    log_norm = _dense(chunk, _weights_arg(weights), params, stats.nk, stats.s1, stats.s2,
                      _EMPTY1, resp, _NO_LABELS)
    stats.pair_loss = pair_entropy_loss(resp, pairs, weights)
    return log_norm


def dense_chunk_stats(source, start, chunk, weights, params, pairs=None, proposal=None):
    """A chunk's statistics from zero under ``params`` (a backend's contract), with the
    merge candidates' ``pair_loss`` when ``pairs`` is given and, when ``proposal``
    (KernelParams) is, the chunk's statistics under it in ``proposal``: what the local
    and the Dask backends compute for each chunk of a dense pass."""
    stats = SufficientStats.zeros(params.means, params.full)
    if pairs is not None:
        log_norm = accumulate_chunk_with_pairs(chunk, params, weights, stats, pairs)
    else:
        log_norm = accumulate_chunk(chunk, params, weights, stats)
    finish_stats(stats, source, start, chunk, weights, log_norm)
    if proposal is not None:
        stats.proposal = dense_chunk_stats(source, start, chunk, weights, proposal)
    return stats


def truncated_chunk_stats(source, start, chunk, weights, params, search, seed):
    """``dense_chunk_stats`` for a truncated q: the chunk's statistics from zero by the
    truncated E-step (``accumulate_truncated``, which updates ``search.supports``)."""
    stats = SufficientStats.zeros(params.means, params.full)
    log_norm = accumulate_truncated(chunk, params, weights, stats, search, start, seed)
    return finish_stats(stats, source, start, chunk, weights, log_norm)


def finish_stats(stats, source, start, chunk, weights, log_norm):
    """``stats`` completed: the log-normaliser checked (``check_result``) and set, the
    second moments mirrored, the weight of the rows."""
    check_result(source, start, chunk, log_norm)
    stats.mirror_upper()
    stats.log_norm = log_norm
    stats.weight = float(chunk.shape[0]) if weights is None else float(weights.sum())
    return stats


def pair_entropy_loss(resp, pairs, sample_weight=None):
    """The entropy of q(z) that merging each pair (j, k) of ``pairs`` would lose:

        L_jk = sum_n w_n [(r_nj + r_nk) log(r_nj + r_nk) - r_nj log r_nj - r_nk log r_nk],

    each >= 0 (and <= (N_j + N_k) log 2), 0 log 0 = 0; additive over chunks of rows, like
    the statistics (Hughes & Sudderth 2013, section 4.2: the merge's entropy term).  By
    the kernel ``fastvi.kernels.entropy``, which takes the responsibilities transposed.

    Parameters
    ----------
    resp : (n, K) ndarray, the rows' responsibilities
    pairs : (P, 2) array-like of int
    sample_weight : (n,) ndarray, optional

    Returns
    -------
    (P,) ndarray
    """
    resp_t = np.ascontiguousarray(np.asarray(resp, dtype=np.float64).T)
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    weights = (np.zeros(0) if sample_weight is None
               else np.ascontiguousarray(sample_weight, dtype=np.float64))
    return entropy_kernel(resp_t, pairs, weights)


def mirror_upper(stats):
    """Copy the accumulated upper triangle of full second moments into the lower one."""
    stats.mirror_upper()


def _no_stats(params):
    n_features = params.means.shape[1]
    return (np.zeros(0), np.zeros((0, n_features)), np.zeros((0,) + params.factor.shape[1:]))


def accumulate(X, params, sample_weight=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """One E-step pass of the local backend over ``X`` (array, dataset or chunk source):
    the statistics of all rows about ``params.means``, the chunks summed pairwise
    (``backend.total_stats``)."""
    return total_stats(LocalBackend(), as_source(X, chunk_rows), params, sample_weight)


def per_row(X, params, log_norm=False, resp=False, labels=False, top=0,
            chunk_rows=DEFAULT_CHUNK_ROWS):
    """Per-row outputs without statistics (``Backend.per_row``) of ``X`` (array, dataset
    or chunk source); ``top=L`` adds ``"top_index"`` (n, L) int32 and ``"top_resp"``
    (n, L), the exact top L."""
    source = as_source(X, chunk_rows)
    n_components = params.means.shape[0]
    out = empty_outputs(source.n_rows, n_components, log_norm, resp, labels, top)
    dense = log_norm or resp or labels
    for _, start, chunk in source.chunks(check=not params.marginalize):
        if params.marginalize:          # NaN is a missing entry here, whatever the source
            check_values(chunk, source.label, start, allow_nan=True)
        stop = start + chunk.shape[0]
        if dense:
            _dense(chunk, _EMPTY1, params, *_no_stats(params),
                   out["log_norm"][start:stop] if log_norm else _EMPTY1,
                   out["resp"][start:stop] if resp else np.zeros((0, n_components)),
                   out["labels"][start:stop] if labels else _NO_LABELS)
        if top and params.marginalize and _has_holes(chunk):
            out["top_index"][start:stop], out["top_resp"][start:stop] = \
                _top_of_dense(chunk, params, int(top))
        elif top:
            out["top_index"][start:stop], out["top_resp"][start:stop] = \
                top_responsibilities(chunk, params, int(top))
    if labels == 1:
        out["labels"] = out["labels"][:, 0]
    return out


# ----------------------------------------------------------------------------- truncated q

def neighbour_lists(params, truncation):
    """(K, H) neighbour lists: row c holds c, then the components most probable at m_c.

    ``log rho_j(m_c)`` (the E-step's own score of component j, at the mean of c) ranks
    the neighbours, so a row whose support holds c looks first at the components most
    likely to compete for the points of c.  NaN ranks last; the lists are deterministic.
    """
    n_components = params.means.shape[0]
    width = truncation.n_candidates - truncation.n_random
    if truncation.exhaustive or width == 0:
        return np.zeros((n_components, 0), dtype=np.int64)
    table = rank_table(params.means, params.c, params.means, params.factor, _arrays(params))
    table[np.isnan(table)] = -np.inf
    np.fill_diagonal(table, np.inf)
    return np.ascontiguousarray(largest_per_row(table, min(width, n_components)),
                                dtype=np.int64)


def largest_per_row(values, width):
    """The column indices of the ``width`` largest entries of each row of ``values`` (no
    NaN), largest first, ties by the lower index: argpartition (O(K) a row), then only
    those sorted; a full sort of a K x K table took 50 ms a pass at K = 1024."""
    top = np.argpartition(-values, width - 1, axis=1)[:, :width]
    ranked = np.take_along_axis(-values, top, axis=1)
    order = np.lexsort((top, ranked), axis=1)          # by value, ties by index
    return np.take_along_axis(top, order, axis=1)


def _arrays(params):
    """The kernel's padded and expanded copies of ``params``, made once per parameters
    (a batch pass uses one ``KernelParams`` for all its chunks)."""
    cached = getattr(params, "_search_arrays", None)
    if cached is None:
        cached = search_arrays(params.means, params.factor)
        params._search_arrays = cached
    return cached


def accumulate_truncated(chunk, params, weights, stats, search, start, seed):
    """The truncated E-step of one chunk into ``stats`` (upper triangle); return the sum
    of its log-normalisers over the supports.

    ``search.supports`` (or None: fresh rows, as in ``partial_fit``) is updated for rows
    ``start:start + len(chunk)``.  Rows seen for the first time start from their exact
    top L (one dense evaluation, K per row, on the first pass only).
    """
    truncation, supports = search.truncation, search.supports
    n_rows = chunk.shape[0]
    if supports is None or truncation.exhaustive:
        rows = np.full((n_rows, truncation.n_active), -1, dtype=SUPPORT_DTYPE)
    else:
        rows = supports.rows(start, start + n_rows)
    if not truncation.exhaustive and n_rows > 0 and rows[:, 0].min() < 0:
        rows[:] = _top_labels(chunk, params, truncation.n_active).reshape(rows.shape)
    q = np.empty(rows.shape)
    log_norm = estep_truncated(
        _readonly(chunk), _readonly(_weights_arg(weights)), params.c, params.means,
        params.factor,
        search.neighbours, truncation.n_candidates, truncation.n_random, seed, start, rows, q,
        stats.nk, stats.s1, stats.s2, _EMPTY1, arrays=_arrays(params))
    if supports is not None and not truncation.exhaustive:
        supports.commit(start, rows)
    return log_norm


def _top_labels(chunk, params, n_top):
    labels = np.empty((chunk.shape[0], n_top), dtype=np.int64)
    _dense(chunk, _EMPTY1, params, *_no_stats(params), _EMPTY1,
           np.zeros((0, params.means.shape[0])), labels)
    return labels


def _top_of_dense(rows, params, n_active):
    """``top_responsibilities`` from the dense responsibilities (rows that may have
    missing entries, which the truncated kernel does not marginalise)."""
    resp = np.empty((rows.shape[0], params.means.shape[0]))
    _dense(rows, _EMPTY1, params, *_no_stats(params), _EMPTY1, resp, _NO_LABELS)
    index = largest_per_row(resp, n_active)
    q = np.take_along_axis(resp, index, axis=1)
    total = q.sum(axis=1, keepdims=True)
    return index.astype(SUPPORT_DTYPE), np.divide(q, total, out=np.zeros_like(q),
                                                  where=total > 0)


def top_responsibilities(rows, params, n_active):
    """Each row's ``n_active`` most probable components and their renormalised
    responsibilities, most probable first: (support (n, L) int32, q (n, L)); every
    component is evaluated, exactly."""
    n_components = params.means.shape[0]
    support = np.full((rows.shape[0], n_active), -1, dtype=SUPPORT_DTYPE)
    q = np.empty(support.shape)
    estep_truncated(_readonly(rows), _readonly(_EMPTY1), params.c, params.means,
                    params.factor,
                    np.zeros((n_components, 0), dtype=np.int64), n_components, 0, 0, 0,
                    support, q, *_no_stats(params), _EMPTY1)
    return support, q
