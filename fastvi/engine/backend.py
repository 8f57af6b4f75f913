"""The contract between the chunk loop and the backends that compute chunk statistics.

The loop (``fastvi.engine.loop``) never calls a kernel.  For every chunk it needs, it asks
a backend for that chunk's sufficient statistics under fixed kernel parameters; for
per-row outputs (``predict``, ``predict_proba``, ``score_samples``) the estimators ask
the same backend.  A backend is chosen by name (``backend="local"``, the default) or
given as an instance; ``get_backend`` resolves either.  The CUDA and Dask backends are
one module each that subclasses ``Backend`` and registers its name in ``_REGISTERED``;
nothing in the loop or the algorithms changes.  ``"auto"`` is the CUDA backend where a
GPU is usable, else the local one.

What a backend promises
-----------------------
* **Per-chunk statistics, in the order asked.**  ``ChunkPass.stats(params, count)``
  yields ``(index, SufficientStats)`` for the next chunks of the pass, in the pass's
  order, each computed from zero for that chunk alone (centred on ``params.means``, the
  second moments mirrored, ``log_norm`` the sum of the rows' weighted log-normalisers,
  ``weight`` the rows' total weight).  A backend may compute them in any order, on any
  number of threads, processes or devices, but hands them back in chunk order.
* **Sums in one tree, by the caller.**  The loop adds the chunks' statistics pairwise,
  in the binary tree over chunk indices of ``fastvi.engine.reduce`` (its shape set by the
  number of chunks alone).  So two backends whose per-chunk arithmetic is the same (the
  local backend and a Dask backend running the same Numba kernel on the same chunking)
  give the same bits, and a result never depends on the number of threads or workers,
  nor on the order in which chunks arrive.  A backend whose arithmetic differs (a
  GPU's block size and fused multiply-adds) agrees to rounding, and with itself bit for
  bit.
* **Fixed parameters within a request.**  Every chunk of one ``stats`` (or ``sums``) call
  is computed under the ``params`` of that call.  The loop asks for one step at a time: a
  whole batch pass, a stochastic minibatch or a memoized batch of chunks (their
  parameters change after each).  A pass is opened with its whole chunk order, so a
  backend may read ahead in it.
* **Sums of runs.**  ``sums`` hands out the same statistics as sums over runs of chunks
  that are nodes of the step's tree (up to ``largest_run`` chunks); a backend may add a
  run's chunks where they were computed (a Dask worker), so only one value a run travels.
* **The truncated q.**  With a ``Search``, the E-step of chunk ``j`` of the pass (its
  position in the order) draws its random candidates from ``search.first_seed + j``
  (mod 2^63) and updates ``search.supports`` for the chunk's rows before the chunk's
  statistics are yielded; so the search, too, is the same on every backend.
* **Errors.**  A chunk whose log-normaliser is not finite raises the error of
  ``check_result`` (it names the rows; a NaN or inf in the data names the first bad row).

``fastvi.engine.local`` is the reference implementation.
"""
import contextlib
import importlib
from dataclasses import dataclass

import numpy as np

from ..data.checks import InvalidParameterError
from ..data.sources import ArraySource
from .reduce import PairwiseSum, aligned_runs, tree_sum
from .stats import SufficientStats
from .truncation import SUPPORT_DTYPE

# name -> "module:class" of the backends fastvi ships (imported when first asked for)
_REGISTERED = {"local": "fastvi.engine.local:LocalBackend",
               "dask": "fastvi.engine.cluster:DaskBackend",
               "cuda": "fastvi.engine.cuda:CudaBackend"}
# a name that resolves to a registered backend when asked: "auto" is "cuda" on a usable
# GPU, else "local" (fastvi.engine.cuda.auto_backend)
_CHOSEN = {"auto": "fastvi.engine.cuda:auto_backend"}


@dataclass
class KernelParams:
    """Components in the canonical form ``log rho_nk = c_k - 1/2 ||U_k^T (x_n - m_k)||^2``.

    ``factor`` is (K, D, D) upper-triangular for full/tied, (K, D) for diag/spherical.
    ``marginalize``: a NaN entry of a row is missing at random and is integrated out
    (``fastvi.kernels.missing``; the estimators' ``missing="marginalize"``); otherwise a
    NaN is an error.
    """

    c: np.ndarray
    means: np.ndarray
    factor: np.ndarray
    marginalize: bool = False

    @property
    def full(self):
        return self.factor.ndim == 3


@dataclass
class Search:
    """What a truncated E-step needs besides the parameters (``fastvi.engine.truncation``).

    truncation : Truncation
    supports : MemorySupports, FileSupports or None (fresh rows: ``partial_fit``)
    neighbours : (K, H) int64, the neighbour lists of the pass
    first_seed : the seed of the random candidates of the pass's first chunk
    """

    truncation: object
    supports: object
    neighbours: np.ndarray
    first_seed: int


class ChunkPass:
    """One pass of a backend over ``order`` (chunk indices): ``stats`` hands out the
    statistics of its chunks, in that order.  Made by ``Backend.open_pass``."""

    def stats(self, params, count=None):
        """Yield ``(index, SufficientStats)`` for the next ``count`` chunks of the order
        (all that remain when None), computed under ``params``."""
        raise NotImplementedError

    def largest_run(self, count):
        """The most chunks this backend adds up itself in one run of ``sums``, in a request
        of ``count`` chunks (a power of two or not; the loop cuts runs that are nodes of the
        tree, at most this long).  Default: 1, each chunk on its own."""
        return 1

    def sums(self, params, sizes):
        """Yield, for consecutive runs of the next ``sum(sizes)`` chunks of the order, of
        ``sizes`` chunks each, the run's statistics: ``reduce.tree_sum`` of its chunks, as
        leaves 0, 1, ... of the run (a node of its step's tree, so the same bits as the
        loop's tree would add).  Runs longer than ``largest_run`` are not asked for."""
        chunks = self.stats(params, sum(sizes))
        for size in sizes:
            yield tree_sum({leaf: next(chunks)[1] for leaf in range(size)}, size)

    def close(self):
        """Release what the pass holds (reader threads, buffers, tasks)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Backend:
    """Computes chunk statistics and per-row outputs; see the module docstring for the
    promises.  Subclasses implement ``open_pass``, ``per_row`` and ``neighbour_lists``;
    ``sparse_resp``, ``running`` and ``check_n_jobs`` have defaults."""

    name = None

    def open_pass(self, source, order, sample_weight=None, search=None, pairs=None,
                  proposal=None):
        """A ``ChunkPass`` over the chunks ``order`` of ``source`` (a ChunkSource);
        ``sample_weight`` is the (n_rows,) weights of the whole source or None.  ``pairs``
        (P, 2), for merge moves: each chunk's statistics then carry ``pair_loss``, the
        pairs' ``local.pair_entropy_loss`` over its rows.  ``proposal`` (KernelParams),
        for birth and delete moves: each chunk's statistics then carry ``proposal``, the
        chunk's statistics under those parameters (the local and Dask backends; the loop
        passes either only when a fit has moves)."""
        raise NotImplementedError

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        """Per-row outputs of every row, no statistics: a dict with ``"log_norm"`` (n,),
        ``"resp"`` (n, K) and ``"labels"`` (n,), or (n, L) for ``labels=L > 1`` (the L
        most probable components, most probable first), as asked; ``top=L`` adds
        ``"top_index"`` (n, L) int32 and ``"top_resp"`` (n, L), each row's exact L most
        probable components and their responsibilities renormalised over them."""
        raise NotImplementedError

    def sparse_resp(self, source, params, n_active):
        """The exact top-``n_active`` responsibilities of every row, renormalised, as a
        ``scipy.sparse.csr_matrix`` (n, K) with sorted indices; no dense N x K array.

        Every component is evaluated (the search is for fitting; a prediction should not
        depend on where a walk started).  With ``n_active`` >= K the responsibilities are
        computed chunk by chunk and only their nonzeros kept.
        """
        import scipy.sparse
        n_components = params.means.shape[0]
        if n_active >= n_components:
            blocks = [scipy.sparse.csr_matrix(
                self.per_row(ArraySource(chunk, chunk.shape[0] or 1), params, resp=True)["resp"])
                for _, _, chunk in source.chunks()]
            if not blocks:
                return scipy.sparse.csr_matrix((0, n_components))
            return scipy.sparse.vstack(blocks, format="csr")
        out = self.per_row(source, params, top=n_active)
        support, q = out["top_index"], out["top_resp"]
        keep = (support >= 0) & (q > 0.0)
        indptr = np.concatenate(([0], np.cumsum(keep.sum(axis=1))))
        matrix = scipy.sparse.csr_matrix((q[keep], support[keep], indptr),
                                         shape=(support.shape[0], n_components))
        matrix.sort_indices()
        return matrix

    def impute(self, source, params):
        """Every row of ``source`` (n, D), in its dtype, with each NaN entry replaced by its
        conditional mean E[x_m | x_o] under the mixture ``params``.  Default: computed
        here, chunk by chunk, by the local kernel (``local.impute_rows``)."""
        from .local import impute_rows
        return impute_rows(source, params)

    def neighbour_lists(self, params, truncation):
        """(K, H) int64 neighbour lists that steer the truncated search
        (``fastvi.engine.truncation``)."""
        raise NotImplementedError

    def sample_rows(self, source, index):
        """The rows ``index`` (sorted, distinct row numbers) of ``source``, in that order,
        as read (the initialisation's and the birth moves' samples).  An in-memory array
        is indexed; any other source is read here chunk by chunk, keeping the drawn rows of
        each, so memory stays bounded by the sample and one chunk.  A backend whose workers
        read the data (Dask) picks the rows there: only the sample travels."""
        from ..data.sources import ArraySource
        if isinstance(source, ArraySource):
            return source.read_rows(index)
        parts = [np.empty((0, source.n_features), dtype=source.dtype)]
        for _, start, chunk in source.chunks():
            lo, hi = np.searchsorted(index, [start, start + chunk.shape[0]])
            parts.append(chunk[index[lo:hi] - start])
        return np.vstack(parts)

    def check_n_jobs(self, n_jobs):
        """Raise ``InvalidParameterError`` unless ``n_jobs`` (not None) is a thread count
        this backend can use."""

    def running(self, n_jobs):
        """A context manager around each call of an estimator (fit, predict, ...): sets
        up the threads (or devices, workers) ``n_jobs`` asks for, and restores them."""
        return contextlib.nullcontext()

    def __repr__(self):
        return f"{type(self).__name__}()"


_BY_NAME = {}       # name -> the one instance per process, so what a backend keeps for
                    # its sources (the Dask backend's scattered arrays) is kept once


def get_backend(backend):
    """The ``Backend`` for an estimator's ``backend`` parameter: a registered name (one
    instance per name and process) or an instance (returned as is)."""
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str) and backend in _CHOSEN:
        module, _, name = _CHOSEN[backend].partition(":")
        return getattr(importlib.import_module(module), name)()
    if isinstance(backend, str) and backend in _REGISTERED:
        if backend not in _BY_NAME:
            module, _, name = _REGISTERED[backend].partition(":")
            _BY_NAME[backend] = getattr(importlib.import_module(module), name)()
        return _BY_NAME[backend]
    names = tuple(_REGISTERED) + tuple(_CHOSEN)
    raise InvalidParameterError(f"backend must be one of {names} or a "
                                f"fastvi.engine.backend.Backend instance, got {backend!r}")


def empty_outputs(n_rows, n_components, log_norm=False, resp=False, labels=False, top=0):
    """The arrays ``Backend.per_row`` fills, as asked: ``"log_norm"`` (n,), ``"resp"``
    (n, K), ``"labels"`` (n, L) int64, ``"top_index"`` (n, L) int32, ``"top_resp"`` (n, L)."""
    out = {}
    if log_norm:
        out["log_norm"] = np.empty(n_rows)
    if resp:
        out["resp"] = np.empty((n_rows, n_components))
    if labels:
        out["labels"] = np.empty((n_rows, int(labels)), dtype=np.int64)
    if top:
        out["top_index"] = np.empty((n_rows, int(top)), dtype=SUPPORT_DTYPE)
        out["top_resp"] = np.empty((n_rows, int(top)))
    return out


def total_stats(backend, source, params, sample_weight=None):
    """The statistics of all rows of ``source`` under ``params``: the chunks' pairwise
    tree sum (``fastvi.engine.reduce``), as a batch pass adds them."""
    total = PairwiseSum()
    n_chunks = source.n_chunks
    with backend.open_pass(source, range(n_chunks), sample_weight) as chunk_pass:
        runs = aligned_runs(0, n_chunks, chunk_pass.largest_run(n_chunks))
        for (lo, hi), value in zip(runs, chunk_pass.sums(params, [hi - lo for lo, hi in runs])):
            total.add_block(lo, hi, value)
    summed = total.total()
    return SufficientStats.zeros(params.means, params.full) if summed is None else summed


def check_result(source, start, chunk, log_norm):
    """A chunk's sum of log-normalisers is finite unless a row is NaN or inf (the kernel
    carries NaN and -inf through), so the rows are scanned only when it is not."""
    if not np.isfinite(log_norm):
        source.check_finite(chunk, start)
        raise FloatingPointError(
            f"{source.label}: rows {start}:{start + chunk.shape[0]} have a non-finite "
            f"log-likelihood ({log_norm}) under the current parameters although the data are "
            "finite; a component may have collapsed (increase reg_covar) or the data may be "
            "far out of the float range of the parameters")
