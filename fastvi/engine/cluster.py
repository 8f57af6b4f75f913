"""The Dask backend: the local kernels on the workers of a ``dask.distributed`` cluster.

``backend="dask"`` (the current default client) or ``backend=DaskBackend(client)``.  A
chunk's statistics are one task, a pure function of (row reader, row range, weights,
kernel parameters): the worker reads its own rows (an HDF5 file by its path, so no row
passes through the client or the scheduler; an in-memory array is scattered to every
worker once per fit), runs the same fused kernel as the local backend and returns the
chunk's statistics, which the loop adds in chunk order.  A ``dask.array`` is computed
block by block on the cluster, where its blocks stay.  So a fit on a cluster is the
local fit, bit for bit, for the same chunking, however many workers, in whatever order
they finish, and a task recomputed on another worker after a failure (``retries``) gives
the same bits.

* batch: every chunk of a pass is submitted at once, under the pass's parameters;
* stochastic and memoized: one chunk at a time, since the parameters change after each
  (a memoized fit's per-chunk cache stays on the client: K x D x D floats a chunk, what
  the exact ELBO and the coordinate-ascent updates need there);
* the truncated q: a chunk's per-row supports travel with its task and come back updated,
  and the client keeps them (``MemorySupports`` or ``FileSupports`` as on one machine), so
  the tasks stay pure and retries safe (cost: 8 bytes a row and support slot per pass);
* per-row outputs (``predict``, ``predict_proba``, ``score_samples``): one task a chunk,
  the outputs gathered on the client in row order.

What the tasks share (the kernel parameters of a request, an in-memory array) is scattered
to every worker (``broadcast``), not to one: a worker lost mid-task does not take the only
copy with it, and the task runs again elsewhere.

The client's M-steps run with one BLAS thread, as on the local backend, so the updates
are the same bits too.
"""
import asyncio

import numpy as np

from ..data.checks import InvalidParameterError, check_integer
from ..data.sources import (ArraySource, ConcatSource, DaskArraySource, HDF5Source,
                            _check_finite)
from . import local
from .backend import Backend, ChunkPass, Search, check_result
from .stats import SufficientStats


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InvalidParameterError(
            "backend='dask' needs dask.distributed, which is not installed: "
            "pip install 'fastvi[dask]'") from None
    return distributed


class _Rows:
    """The label and finite check of a source, for ``check_result`` on a worker."""

    def __init__(self, label):
        self.label = label

    def check_finite(self, chunk, start):
        _check_finite(chunk, self.label, start)


class _ChunkSupports:
    """One chunk's supports on a worker: read and updated in place, sent back."""

    def __init__(self, rows, start):
        self.array, self.start = rows, start

    def rows(self, start, stop):
        return self.array[start - self.start:stop - self.start]

    def commit(self, start, rows):
        """``rows`` is a view of ``array``, already updated."""


def _read(reader, start, stop):
    """Rows ``start:stop``: from a ``RowReader``, or from a dask array's block that the
    cluster computed, given as ``(its first row, the block, the working dtype)``."""
    if isinstance(reader, tuple):
        first, block, dtype = reader
        return np.ascontiguousarray(block[start - first:stop - first], dtype=dtype)
    return reader.read(start, stop)


def chunk_stats_task(reader, start, stop, weights, params, truncation, neighbours, rows,
                     seed, label):
    """A chunk's statistics from zero, on a worker (the local backend's arithmetic).

    Returns ``(SufficientStats, rows)``: ``rows`` the chunk's updated supports (truncated
    q) or None."""
    chunk = _read(reader, start, stop)
    stats = SufficientStats.zeros(params.means, params.full)
    if truncation is None:
        log_norm = local.accumulate_chunk(chunk, params, weights, stats)
    else:
        supports = None if rows is None else _ChunkSupports(rows, start)
        search = Search(truncation, supports, neighbours, 0)
        log_norm = local.accumulate_truncated(chunk, params, weights, stats, search, start,
                                              seed)
    check_result(_Rows(label), start, chunk, log_norm)
    stats.mirror_upper()
    stats.log_norm = log_norm
    stats.weight = float(stop - start) if weights is None else float(weights.sum())
    return stats, rows


def per_row_task(reader, start, stop, params, what, label):
    """A chunk's per-row outputs (``local.per_row``), on a worker; a NaN or inf row is
    named as the local backend names it (the source's label, the row in the source)."""
    chunk = _read(reader, start, stop)
    _check_finite(chunk, label, start)
    return local.per_row(ArraySource(chunk, chunk_rows=max(stop - start, 1)), params, **what)


def _raise_if_fastvi_missing(exc):
    """A worker that cannot unpickle fastvi's objects (no fastvi, another version) reports
    a plain Exception wrapping the ImportError or AttributeError: say what to do."""
    text = f"{type(exc).__name__}: {exc}"
    if "fastvi" in text and any(sign in text for sign in (
            "No module named", "ImportError", "AttributeError", "cannot import")):
        raise RuntimeError(f"a Dask worker cannot run fastvi's tasks ({exc}): install the "
                           "same fastvi on every worker") from None


class DaskBackend(Backend):
    """Chunk statistics computed as tasks on a Dask cluster (``backend="dask"``).

    Parameters
    ----------
    client : distributed.Client, optional
        The cluster's client; default: the current one (``distributed.get_client()``).
    retries : int, default=2
        How many times a task that failed (a worker lost mid-task) is run again on another
        worker; the result is the same bits.
    timeout : float or None, default=600
        Seconds to wait for one task's result before giving up with an error (a cluster
        whose workers died, or that has none), instead of waiting for ever.
    """

    name = "dask"

    def __init__(self, client=None, retries=2, timeout=600.0):
        self.client = client
        self.retries = retries
        self.timeout = timeout
        self._scattered = {}

    def __repr__(self):
        return f"DaskBackend(client={self.client!r}, retries={self.retries})"

    def __getstate__(self):
        # a client does not pickle (``clone`` deep-copies parameters): keep the settings
        return {"client": None, "retries": self.retries, "timeout": self.timeout}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scattered = {}

    def get_client(self):
        if self.client is not None:
            return self.client
        distributed = _distributed()
        try:
            return distributed.get_client()
        except ValueError:
            raise InvalidParameterError(
                "backend='dask' found no Dask client: connect one first "
                "(distributed.Client('tcp://scheduler:8786'), or Client(LocalCluster())), "
                "or pass backend=DaskBackend(client)") from None

    def check_n_jobs(self, n_jobs):
        check_integer("n_jobs", n_jobs)

    def running(self, n_jobs):
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1, user_api="blas")

    def _readers(self, client, source):
        """What the task of each chunk reads its rows from, by chunk index: a file's
        ``RowReader`` (opened by path on the worker); an in-memory array scattered once
        and shared (by its future); a dask array's block, computed on the cluster."""
        if isinstance(source, (HDF5Source, ConcatSource)):
            reader = source.remote_reader()
            return lambda index: reader
        key = id(source)
        if key not in self._scattered or self._scattered[key][0] is not source:
            if isinstance(source, DaskArraySource):
                held = client.compute(source.blocks())
            else:
                held = self._scatter(client, source.remote_reader())
            if len(self._scattered) >= 4:       # a fit's data and held-out rows, ...
                self._scattered.pop(next(iter(self._scattered)))
            self._scattered[key] = (source, held)
        held = self._scattered[key][1]
        if isinstance(source, DaskArraySource):
            bounds = source.chunk_bounds()
            return lambda index: (bounds[index][0], held[index], source.dtype.str)
        return lambda index: held

    def _result(self, future):
        try:
            return future.result(timeout=self.timeout)
        except (TimeoutError, asyncio.TimeoutError):     # one class from Python 3.11 on
            raise TimeoutError(f"no result from the Dask cluster in {self.timeout} s (are "
                               "its workers alive?)") from None
        except Exception as exc:
            _raise_if_fastvi_missing(exc)
            raise

    def _scatter(self, client, value):
        """``value`` on every worker (a lost worker then leaves other copies)."""
        try:
            return client.scatter(value, broadcast=True, hash=False, timeout=self.timeout)
        except Exception as exc:
            _raise_if_fastvi_missing(exc)
            raise

    def open_pass(self, source, order, sample_weight=None, search=None):
        return _DaskPass(self, source, order, sample_weight, search)

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        client = self.get_client()
        readers = self._readers(client, source)
        params_future = self._scatter(client, params)
        what = {"log_norm": log_norm, "resp": resp, "labels": labels, "top": top}
        futures = [client.submit(per_row_task, readers(index), start, stop, params_future,
                                 what, source.label, pure=False, retries=self.retries)
                   for index, (start, stop) in enumerate(source.chunk_bounds())]
        parts = [self._result(future) for future in futures]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def neighbour_lists(self, params, truncation):
        # a K x K table of the parameters alone: no rows, computed on the client
        return local.neighbour_lists(params, truncation)


class _DaskPass(ChunkPass):
    def __init__(self, backend, source, order, sample_weight, search):
        self.backend = backend
        self.client = backend.get_client()
        self.readers = backend._readers(self.client, source)
        self.label = source.label
        self.order = list(order)
        self.bounds = source.chunk_bounds()
        self.sample_weight = sample_weight
        self.search = search
        self.position = 0
        self._futures = []

    def stats(self, params, count=None):
        stop = len(self.order) if count is None else min(self.position + count,
                                                         len(self.order))
        positions = list(range(self.position, stop))
        self.position = stop
        if not positions:
            return
        client, search = self.client, self.search
        params_future = self.backend._scatter(client, params)
        submitted = []
        for j in positions:
            index = self.order[j]
            start, end = self.bounds[index]
            weights = (None if self.sample_weight is None
                       else np.ascontiguousarray(self.sample_weight[start:end], np.float64))
            truncation = neighbours = rows = None
            seed = 0
            if search is not None:
                truncation, neighbours = search.truncation, search.neighbours
                seed = (search.first_seed + j) % (1 << 63)
                if search.supports is not None and not truncation.exhaustive:
                    rows = np.array(search.supports.rows(start, end))
            future = client.submit(chunk_stats_task, self.readers(index), start, end, weights,
                                   params_future, truncation, neighbours, rows, seed,
                                   self.label, pure=False, retries=self.backend.retries)
            submitted.append((index, start, future))
        self._futures = [future for _, _, future in submitted]
        for index, start, future in submitted:
            stats, rows = self.backend._result(future)
            if rows is not None:
                # in place for MemorySupports (a view), written to the file for FileSupports
                search.supports.rows(start, start + rows.shape[0])[:] = rows
                search.supports.commit(start, rows)
            yield index, stats

    def close(self):
        for future in self._futures:
            future.cancel()
        self._futures = []


__all__ = ["DaskBackend", "chunk_stats_task", "per_row_task"]
