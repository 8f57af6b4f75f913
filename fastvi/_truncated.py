"""Variational EM with truncated posteriors: each row's q(z_n) lives on at most L components.

The kernel (``fastvi.kernels.truncated``) does the per-row search; this module holds the
settings (``Truncation``), the neighbour lists that steer the search, the per-row supports
that persist between passes, and the sparse responsibilities of ``predict_proba``.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ._estep import per_row
from ._validation import _is_integer
from .kernels import estep_truncated, rank_table, search_arrays

_EMPTY1 = np.zeros(0)
SUPPORT_DTYPE = np.int32


@dataclass(frozen=True)
class Truncation:
    """How a truncated E-step searches.

    n_active : L, the size of each row's support
    n_candidates : G, the components evaluated per row (clipped to K; K means all of
        them, in which case the top L are exact and no state is kept between passes)
    n_random : R of the G candidates drawn at random, the rest from the neighbour lists
    n_components : K
    """

    n_active: int
    n_candidates: int
    n_random: int
    n_components: int

    @property
    def exhaustive(self):
        """Every component is a candidate: exact top-L, no search and no stored supports."""
        return self.n_candidates >= self.n_components


def make_truncation(n_active, n_candidates, n_components):
    """The ``Truncation`` for an estimator's ``n_active`` / ``n_candidates``, or None (dense).

    ``n_candidates=None`` evaluates every component: an exact top-L truncation.  A quarter
    of the non-support candidates (at least one) are random, which lets a row escape a
    neighbourhood whose lists are stale or poor (Hirschberger et al. 2022 add random
    clusters to the search space for the same reason).
    """
    if n_active is None:
        if n_candidates is not None:
            raise ValueError("n_candidates needs n_active (the support size L); "
                             f"got n_candidates={n_candidates!r} with n_active=None")
        return None
    if not _is_integer(n_active) or not 1 <= n_active <= n_components:
        raise ValueError(f"n_active must be an integer in [1, n_components={n_components}], "
                         f"got {n_active!r}")
    if n_candidates is None:
        n_candidates = n_components
    if not _is_integer(n_candidates) or n_candidates < n_active:
        raise ValueError(f"n_candidates must be an integer >= n_active={n_active} (or None for "
                         f"all {n_components} components), got {n_candidates!r}")
    n_candidates = min(int(n_candidates), n_components)
    if n_candidates == n_active < n_components:
        raise ValueError(f"n_candidates={n_candidates} equals n_active: the candidates would "
                         "be the support alone and it would never change; give at least "
                         f"n_active + 1 = {n_active + 1} (or None for all components)")
    if n_candidates == n_components:
        n_random = 0
    else:
        n_random = min(max(1, (n_candidates - n_active) // 4), n_candidates - n_active)
    return Truncation(int(n_active), n_candidates, n_random, n_components)


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
    width = min(width, n_components)
    # the `width` largest per row (argpartition, O(K) a row), then those sorted; a
    # full sort of the K x K table took 50 ms a pass at K = 1024
    top = np.argpartition(-table, width - 1, axis=1)[:, :width]
    values = np.take_along_axis(-table, top, axis=1)
    order = np.lexsort((top, values), axis=1)          # by value, ties by index
    return np.ascontiguousarray(np.take_along_axis(top, order, axis=1), dtype=np.int64)


class MemorySupports:
    """Per-row supports held in memory: (n_rows, L) int32, -1 where a row has none yet."""

    def __init__(self, n_rows, n_active):
        self.array = np.full((n_rows, n_active), -1, dtype=SUPPORT_DTYPE)

    def rows(self, start, stop):
        return self.array[start:stop]

    def commit(self, start, rows):
        """``rows`` is a view, already updated in place."""


class FileSupports:
    """Per-row supports in an HDF5 file, for data larger than memory: dataset ``supports``
    (n_rows, L) int32, -1 where a row has none yet (the fill value, so nothing is written
    up front).  Each chunk's rows are read before its E-step and written back after it.

    A checkpoint stores only the path and reopens the file on resume.  The file may
    then hold supports newer than the checkpoint (chunks processed after it); they are
    valid supports all the same, so the resumed fit is correct, but it is not bit-identical
    to an uninterrupted one as it is with in-memory supports.
    """

    def __init__(self, path, n_rows, n_active, chunk_rows):
        import h5py
        self.path, self.n_rows, self.n_active = str(path), int(n_rows), int(n_active)
        with h5py.File(self.path, "w") as f:
            f.create_dataset("supports", shape=(self.n_rows, self.n_active),
                             dtype=SUPPORT_DTYPE, fillvalue=-1,
                             chunks=(max(1, min(int(chunk_rows), self.n_rows)), self.n_active))
        self._open()

    def _open(self):
        import h5py
        try:
            self._file = h5py.File(self.path, "r+")
            self._data = self._file["supports"]
        except (OSError, KeyError) as exc:
            raise ValueError(f"{self.path}: cannot reopen the supports file of this fit "
                             f"({exc}); it must stay in place until the fit ends") from None
        if self._data.shape != (self.n_rows, self.n_active):
            raise ValueError(f"{self.path}: /supports has shape {self._data.shape}, expected "
                             f"{(self.n_rows, self.n_active)}")

    def rows(self, start, stop):
        return self._data[start:stop]

    def commit(self, start, rows):
        self._data[start:start + rows.shape[0]] = rows

    def __getstate__(self):
        return {"path": self.path, "n_rows": self.n_rows, "n_active": self.n_active}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()


def _arrays(params):
    """The kernel's padded and expanded copies of ``params``, made once per parameters
    (a batch pass uses one ``KernelParams`` for all its chunks)."""
    cached = getattr(params, "_search_arrays", None)
    if cached is None:
        cached = search_arrays(params.means, params.factor)
        params._search_arrays = cached
    return cached


def accumulate_chunk(chunk, params, weights, stats, truncation, supports, start, neighbours,
                     seed):
    """The truncated E-step of one chunk into ``stats`` (upper triangle); return the sum
    of its log-normalisers over the supports.

    ``supports`` (``MemorySupports`` or None: fresh rows, as in ``partial_fit``) is updated
    for rows ``start:start + len(chunk)``.  Rows seen for the first time start from their
    exact top L (one dense evaluation, K per row, on the first pass only).
    """
    n_rows = chunk.shape[0]
    if supports is None or truncation.exhaustive:
        rows = np.full((n_rows, truncation.n_active), -1, dtype=SUPPORT_DTYPE)
    else:
        rows = supports.rows(start, start + n_rows)
    if not truncation.exhaustive and n_rows > 0 and rows[:, 0].min() < 0:
        rows[:] = per_row(chunk, params, labels=truncation.n_active)["labels"].reshape(rows.shape)
    q = np.empty(rows.shape)
    log_norm = estep_truncated(
        chunk, _EMPTY1 if weights is None else np.ascontiguousarray(weights, dtype=np.float64),
        params.c, params.means, params.factor, neighbours, truncation.n_candidates,
        truncation.n_random, seed, start, rows, q,
        stats.nk, stats.s1, stats.s2, _EMPTY1, arrays=_arrays(params))
    if supports is not None and not truncation.exhaustive:
        supports.commit(start, rows)
    return log_norm


def top_responsibilities(rows, params, n_active):
    """Each row's ``n_active`` most probable components and their renormalised
    responsibilities, most probable first: (support (n, L) int32, q (n, L)); every
    component is evaluated, exactly."""
    n_components, n_features = params.means.shape
    support = np.full((rows.shape[0], n_active), -1, dtype=SUPPORT_DTYPE)
    q = np.empty(support.shape)
    no_stats = (np.zeros(0), np.zeros((0, n_features)),
                np.zeros((0,) + params.factor.shape[1:]))
    estep_truncated(rows, _EMPTY1, params.c, params.means, params.factor,
                    np.zeros((n_components, 0), dtype=np.int64), n_components, 0, 0, 0,
                    support, q, *no_stats, _EMPTY1)
    return support, q


def sparse_resp(source, params, n_active):
    """The exact top-``n_active`` responsibilities of every row, renormalised, as CSR.

    Every component is evaluated (the search is for fitting; a prediction should not
    depend on where a walk started).  With ``n_active`` >= K the dense kernel gives the
    responsibilities chunk by chunk and only their nonzeros are kept.
    """
    n_components, n_features = params.means.shape
    if n_active >= n_components:
        blocks = [scipy.sparse.csr_matrix(per_row(chunk, params, resp=True)["resp"])
                  for _, _, chunk in source.chunks()]
        if not blocks:
            return scipy.sparse.csr_matrix((0, n_components))
        return scipy.sparse.vstack(blocks, format="csr")
    indices, data = [], []
    for _, _, chunk in source.chunks():
        support, q = top_responsibilities(chunk, params, n_active)
        indices.append(support)
        data.append(q)
    support = np.concatenate(indices) if indices else np.empty((0, n_active), SUPPORT_DTYPE)
    q = np.concatenate(data) if data else np.empty((0, n_active))
    keep = (support >= 0) & (q > 0.0)
    indptr = np.concatenate(([0], np.cumsum(keep.sum(axis=1))))
    matrix = scipy.sparse.csr_matrix((q[keep], support[keep], indptr),
                                     shape=(support.shape[0], n_components))
    matrix.sort_indices()
    return matrix
