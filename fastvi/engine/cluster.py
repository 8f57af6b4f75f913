"""The Dask backend: the local kernels on the workers of a ``dask.distributed`` cluster.

``backend="dask"`` (the current default client) or ``backend=DaskBackend(client)``.  A
task computes the statistics of runs of consecutive chunks, each chunk's on its own: a
pure function of (row reader, row ranges, weights, kernel parameters).  The worker reads
its own rows (an HDF5 file by its path, so no row passes through the client or the
scheduler; an in-memory array is scattered to every worker once per fit), runs the same
fused kernel as the local backend, adds each run's chunks in the tree of
``fastvi.engine.reduce`` (a run is a whole subtree: ``ChunkPass.sums``) and returns one
sum a run, which the loop adds in the same tree.  A ``dask.array`` is computed block by
block on the cluster, where its blocks stay.  A request of many chunks is cut into about
``TASKS_PER_THREAD`` tasks per worker thread: a task costs the cluster a few
milliseconds (client, scheduler and worker round trips), which one task per chunk would
pay hundreds of times a pass.  So a fit on a cluster is the local fit, bit for bit, for
the same chunking, however many workers, in whatever order they finish, and a task
recomputed on another worker after a failure (``retries``) gives the same bits.

* batch, and a memoized fit's first pass: every chunk of a pass is submitted at once (in
  runs), under the pass's parameters;
* stochastic and memoized: one step at a time (a minibatch, or a memoized batch of
  chunks: ``batch_size``, ``n_batches``), its chunks at once, since the parameters change
  after each (a memoized fit's per-batch cache stays on the client: K x D x D floats a
  batch, what the exact ELBO and the coordinate-ascent updates need there);
* the truncated q: a chunk's per-row supports travel with its task and come back updated,
  and the client keeps them (``MemorySupports`` or ``FileSupports`` as on one machine), so
  the tasks stay pure and retries safe (cost: 8 bytes a row and support slot per pass);
* per-row outputs (``predict``, ``predict_proba``, ``score_samples``): tasks of runs of
  chunks, as for a batch pass, the outputs gathered on the client in row order.

What the tasks share (the kernel parameters of a request, an in-memory array) is scattered
to every worker (``broadcast``).  That is not enough on its own: the Active Memory Manager
(on by default) drops the replicas that no waiting task needs, so while a stochastic
chunk's task runs its worker may hold the only copy, and a scattered value lost with its
worker cannot be recomputed (the scheduler cancels what needs it).  So the backend sends
the shared inputs again and resubmits the request's remaining tasks when one comes back
cancelled, up to ``retries`` times (``_in_order``); the tasks are pure, so the bits are
the same.

The client's M-steps run with one BLAS thread, as on the local backend, so the updates
are the same bits too.
"""
import asyncio
import concurrent.futures
import weakref

import numpy as np

from ..data.checks import InvalidParameterError, check_integer
from ..data.threads import limit_threads
from ..data.limits import check_values
from ..data.sources import ArraySource, DaskArraySource
from . import local
from .backend import Backend, ChunkPass, Search
from .reduce import tree_sum


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InvalidParameterError(
            "backend='dask' needs dask.distributed, which is not installed: "
            "pip install 'fastvi[dask]'") from None
    return distributed


TASKS_PER_THREAD = 4     # tasks per worker thread in a request of many chunks


class _Rows:
    """The label and finite check of a source, for ``check_result`` on a worker (NaN
    allowed when the parameters marginalise missing entries)."""

    def __init__(self, label, allow_nan=False):
        self.label = label
        self.allow_nan = allow_nan

    def check_finite(self, chunk, start):
        check_values(chunk, self.label, start, allow_nan=self.allow_nan)


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


def _use_worker_threads():
    """Run this task's kernels on ``NUMBA_NUM_THREADS`` of the worker's environment, when
    set.  Numba reads it once, when first imported, and a LocalCluster's ``env=`` is
    applied after a spawned worker has imported the main module: a script that imports
    numba at its top (through fastvi) gave its workers every core each, and two workers
    on 2 cores ran a pass 2.5 times slower.  ``set_num_threads`` is per thread, so this
    is the worker thread's own setting."""
    import os
    import numba
    wanted = os.environ.get("NUMBA_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) >= 1:
        numba.set_num_threads(min(int(wanted), numba.config.NUMBA_NUM_THREADS))


def _read_ahead(chunks):
    """Yield ``_read(reader, start, stop)`` for each ``(reader, start, stop, ...)`` of a
    task's run of chunks, in order, reading the next one in a thread meanwhile, as a local
    pass does (``fastvi.data.sources``): the kernels release the GIL, so the read of a
    chunk overlaps the E-step of the one before (on this machine a diagonal pass read
    without it took 50% longer than locally)."""
    with concurrent.futures.ThreadPoolExecutor(1, "fastvi-reader") as pool:
        pending = pool.submit(_read, *chunks[0][:3]) if chunks else None
        for i in range(len(chunks)):
            chunk = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(_read, *chunks[i + 1][:3])
            yield chunk


def _chunk_stats(chunk, start, weights, rows, seed, params, truncation, neighbours, label,
                 pairs=None, proposal=None):
    """A chunk's statistics from zero (the local backend's arithmetic) and its updated
    supports (truncated q) or None; with merge candidates ``pairs``, their entropy losses
    in ``pair_loss``; with a birth or delete ``proposal``, the chunk's statistics under it
    in ``proposal``."""
    if truncation is None:
        return local.dense_chunk_stats(_Rows(label, params.marginalize), start, chunk,
                                       weights, params, pairs, proposal), rows
    supports = None if rows is None else _ChunkSupports(rows, start)
    search = Search(truncation, supports, neighbours, 0)
    return local.truncated_chunk_stats(_Rows(label), start, chunk, weights, params, search,
                                       seed), rows


def chunk_stats_task(runs, params, truncation, neighbours, label, pairs=None,
                     proposal=None):
    """The statistics of runs of chunks, on a worker, each chunk's from zero on its own,
    then each run's chunks added here in the tree's order (``reduce.tree_sum`` over the
    run's leaves), so only one value a run goes back.

    ``runs``: a list of runs, each a list of ``(reader, start, stop, weights, rows,
    seed)``, one a chunk.  Returns a list of ``(SufficientStats, [rows, ...])``, one a run
    (``rows``: each chunk's updated supports, or None).  ``pairs``: merge candidates,
    whose entropy losses the statistics then carry; ``proposal``: a move's kernel
    parameters, under which the statistics are computed too (``proposal`` of each)."""
    _use_worker_threads()
    chunks = [chunk for run in runs for chunk in run]
    results = [_chunk_stats(rows_read, start, weights, rows, seed, params, truncation,
                            neighbours, label, pairs, proposal)
               for rows_read, (_, start, _, weights, rows, seed)
               in zip(_read_ahead(chunks), chunks)]
    out, first = [], 0
    for run in runs:
        part = results[first:first + len(run)]
        first += len(run)
        out.append((tree_sum({leaf: stats for leaf, (stats, _) in enumerate(part)},
                             len(part)), [rows for _, rows in part]))
    return out


def sample_rows_task(chunks):
    """The drawn rows of chunks, on a worker: ``(reader, start, stop, rows)`` each,
    ``rows`` the drawn row numbers within the chunk; a list of arrays, one a chunk."""
    return [chunk[rows] for chunk, (_, _, _, rows) in zip(_read_ahead(chunks), chunks)]


def per_row_task(chunks, params, what, label):
    """The per-row outputs (``local.per_row``) of a run of chunks, ``(reader, start,
    stop)`` each, on a worker: a list of dicts, one a chunk.  A NaN or inf row is named
    as the local backend names it (the source's label, the row in the source).
    ``what["sparse"]``: the responsibilities as a ``scipy.sparse.csr_matrix``."""
    _use_worker_threads()
    what = dict(what)
    sparse = what.pop("sparse", False)
    parts = []
    for chunk, (_, start, stop) in zip(_read_ahead(chunks), chunks):
        check_values(chunk, label, start, allow_nan=params.marginalize)
        out = local.per_row(ArraySource(chunk, chunk_rows=max(stop - start, 1)), params,
                            **what)
        if sparse:
            import scipy.sparse
            out["resp"] = scipy.sparse.csr_matrix(out["resp"])
        parts.append(out)
    return parts


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
        How many times a task that raised (a transient read error) is run again, and how
        many times a request whose shared inputs were lost with a worker is sent again.
        A task whose worker dies while running it is run again by the scheduler anyway
        (up to its ``distributed.scheduler.allowed-failures``, 3).  Every rerun gives
        the same bits.
    timeout : float or None, default=600
        Seconds to wait for one task's result before giving up with an error (a cluster
        whose workers died, or that has none), instead of waiting for ever.
    """

    name = "dask"

    def __init__(self, client=None, retries=2, timeout=600.0):
        self.client = client
        self.retries = check_integer("retries", retries, 0)
        self.timeout = timeout
        # source -> what its tasks read (scattered reader, computed blocks); an entry and
        # its data on the cluster go when the source does
        self._scattered = weakref.WeakKeyDictionary()

    def __repr__(self):
        return f"DaskBackend(client={self.client!r}, retries={self.retries})"

    def __getstate__(self):
        # a client does not pickle (a saved model): keep the settings
        return {"client": None, "retries": self.retries, "timeout": self.timeout}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scattered = weakref.WeakKeyDictionary()

    def __deepcopy__(self, memo):
        # ``clone`` deep-copies an estimator's parameters: a client is a handle on a
        # cluster, shared, not copied
        return DaskBackend(self.client, self.retries, self.timeout)

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
        return limit_threads(1, user_api="blas")

    def _readers(self, client, source, renew=False):
        """What the task of each chunk reads its rows from, by chunk index: a file's
        ``RowReader`` (opened by path on the worker); an in-memory array scattered once
        and shared (by its future); a dask array's block, computed on the cluster.
        ``renew``: scatter or compute again (the cluster lost them)."""
        if source.read_on_workers:
            reader = source.remote_reader()
            return lambda index: reader
        if renew or source not in self._scattered:
            if isinstance(source, DaskArraySource):
                self._scattered[source] = client.compute(source.blocks())
            else:
                self._scattered[source] = self._scatter(client, source.remote_reader())
        held = self._scattered[source]
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

    def _groups(self, client, count, weights=None):
        """``range(count)`` cut into consecutive runs, one task each: about
        ``TASKS_PER_THREAD`` tasks per worker thread, so a pass pays the cluster's cost
        per task (milliseconds) a few times per thread rather than once per chunk.
        ``weights``: the chunks each item stands for (runs of chunks), so that a task
        gets about its share of chunks, not of items."""
        if count <= 1:
            return [range(count)]
        threads = max(1, sum(client.nthreads().values()))
        if weights is None:
            size = -(-count // (TASKS_PER_THREAD * threads))
            return [range(i, min(i + size, count)) for i in range(0, count, size)]
        share = -(-int(sum(weights)) // (TASKS_PER_THREAD * threads))
        groups, first, held = [], 0, 0
        for i, weight in enumerate(weights):
            if held and held + weight > share:
                groups.append(range(first, i))
                first, held = i, 0
            held += weight
        groups.append(range(first, count))
        return groups

    def _in_order(self, client, source, params, submit, count, futures, weights=None):
        """Yield the results for ``i`` in ``range(count)``, in that order, from the tasks
        ``submit(run, readers, params_future)`` (one per run of ``_groups``; a task
        returns a list, one result per ``i`` of its run).  ``futures`` (a list, filled
        here) holds the tasks not yet consumed, for the caller to cancel.

        A task that comes back cancelled lost a shared input (the scattered parameters or
        array) with a worker that held the only copy: scatter them again and resubmit it
        and the tasks after it, at most ``retries`` times in all."""
        runs = self._groups(client, count, weights)
        readers, params_future = self._readers(client, source), self._scatter(client, params)
        futures[:] = [submit(run, readers, params_future) for run in runs]
        first, renewals = 0, 0
        while first < len(runs):
            try:
                results = self._result(futures[0])
            except concurrent.futures.CancelledError:
                if renewals == self.retries or client.status != "running":
                    raise               # (a scheduler gone: the caller says so)
                renewals += 1
                readers = self._readers(client, source, renew=True)
                params_future = self._scatter(client, params)
                futures[:] = [submit(run, readers, params_future) for run in runs[first:]]
                continue
            first += 1
            del futures[0]
            yield from results

    def open_pass(self, source, order, sample_weight=None, search=None, pairs=None,
                  proposal=None):
        return _DaskPass(self, source, order, sample_weight, search, pairs, proposal)

    def _per_chunk(self, source, params, what):
        """``per_row_task`` of every chunk of ``source``, in row order."""
        client, bounds = self.get_client(), source.chunk_bounds()

        def submit(run, readers, params_future):
            chunks = [(readers(index), *bounds[index]) for index in run]
            return client.submit(per_row_task, chunks, params_future, what, source.label,
                                 pure=False, retries=self.retries)

        return list(self._in_order(client, source, params, submit, len(bounds), []))

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        what = {"log_norm": log_norm, "resp": resp, "labels": labels, "top": top}
        parts = self._per_chunk(source, params, what)
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def sparse_resp(self, source, params, n_active):
        if n_active < params.means.shape[0]:
            return super().sparse_resp(source, params, n_active)
        # a dense model: each worker sends back its chunk's nonzeros, not N x K floats
        import scipy.sparse
        parts = self._per_chunk(source, params, {"resp": True, "sparse": True})
        if not parts:
            return scipy.sparse.csr_matrix((0, params.means.shape[0]))
        return scipy.sparse.vstack([part["resp"] for part in parts], format="csr")

    def neighbour_lists(self, params, truncation):
        # a K x K table of the parameters alone: no rows, computed on the client
        return local.neighbour_lists(params, truncation)

    def sample_rows(self, source, index):
        # files and dask arrays: each worker reads its chunks and sends back only the
        # drawn rows (an in-memory array is on the client already)
        if not (source.read_on_workers or isinstance(source, DaskArraySource)):
            return super().sample_rows(source, index)
        client, bounds = self.get_client(), source.chunk_bounds()
        picks = []                  # (chunk, its drawn rows), the chunks with any
        for chunk, (start, stop) in enumerate(bounds):
            lo, hi = np.searchsorted(index, [start, stop])
            if hi > lo:
                picks.append((chunk, index[lo:hi] - start))

        # A file's reader is scattered as the request's shared input (a chunk request
        # scatters its parameters): a worker that cannot unpickle fastvi's objects then
        # fails on the client with the error that names it, not in the worker's stream.
        file_reader = source.remote_reader() if source.read_on_workers else None

        def submit(items, readers, shared):
            chunks = [(readers(picks[i][0]) if file_reader is None else shared,
                       *bounds[picks[i][0]], picks[i][1]) for i in items]
            return client.submit(sample_rows_task, chunks, pure=False, retries=self.retries)

        parts = list(self._in_order(client, source, file_reader, submit, len(picks), []))
        empty = np.empty((0, source.n_features), dtype=source.dtype)
        return np.vstack([empty] + parts)


class _DaskPass(ChunkPass):
    def __init__(self, backend, source, order, sample_weight, search, pairs=None,
                 proposal=None):
        self.backend = backend
        self.pairs = pairs
        self.proposal = proposal
        self.client = backend.get_client()
        self.source = source
        self.order = list(order)
        self.bounds = source.chunk_bounds()
        self.sample_weight = sample_weight
        self.search = search
        self.position = 0
        self._futures = []

    def _chunk(self, j, readers):
        """The task's tuple of the chunk at position ``j`` of the pass (``chunk_stats_task``)."""
        search = self.search
        index = self.order[j]
        start, end = self.bounds[index]
        weights = (None if self.sample_weight is None
                   else np.ascontiguousarray(self.sample_weight[start:end], np.float64))
        rows, seed = None, 0
        if search is not None:
            seed = (search.first_seed + j) % (1 << 63)
            if search.supports is not None and not search.truncation.exhaustive:
                rows = np.array(search.supports.rows(start, end))
        return (readers(index), start, end, weights, rows, seed)

    def _search_args(self):
        search = self.search
        return (None, None) if search is None else (search.truncation, search.neighbours)

    def _submit(self, runs, readers, params_future):
        """The task of ``runs``, each a range of positions of the pass."""
        chunks = [[self._chunk(j, readers) for j in run] for run in runs]
        return self.client.submit(chunk_stats_task, chunks, params_future,
                                  *self._search_args(), self.source.label, self.pairs,
                                  self.proposal, pure=False, retries=self.backend.retries)

    def _commit_rows(self, j, rows):
        """A chunk's supports, updated on a worker, into the pass's supports."""
        if rows is not None:
            # in place for MemorySupports (a view), written to the file for FileSupports
            search = self.search
            start = self.bounds[self.order[j]][0]
            search.supports.rows(start, start + rows.shape[0])[:] = rows
            search.supports.commit(start, rows)

    def stats(self, params, count=None):
        first = self.position
        stop = len(self.order) if count is None else min(first + count, len(self.order))
        self.position = stop
        if stop == first:
            return
        results = self.backend._in_order(
            self.client, self.source, params,
            lambda items, readers, params_future: self._submit(
                [range(first + i, first + i + 1) for i in items], readers, params_future),
            stop - first, self._futures)
        for j, (stats, rows) in zip(range(first, stop), results):
            self._commit_rows(j, rows[0])
            yield self.order[j], stats

    def largest_run(self, count):
        """About ``TASKS_PER_THREAD`` runs per worker thread in a request of ``count``
        chunks, each added on its worker; one chunk a run under a truncated search (its
        supports come back chunk by chunk anyway)."""
        if self.search is not None:
            return 1
        threads = max(1, sum(self.client.nthreads().values()))
        return max(1, count // (TASKS_PER_THREAD * threads))

    def sums(self, params, sizes):
        first = self.position
        starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))) + first
        self.position = int(starts[-1])
        if not len(sizes):
            return

        results = self.backend._in_order(
            self.client, self.source, params,
            lambda items, readers, params_future: self._submit(
                [range(starts[i], starts[i + 1]) for i in items], readers, params_future),
            len(sizes), self._futures, weights=sizes)
        for i, (value, rows) in zip(range(len(sizes)), results):
            for j, chunk_rows in zip(range(starts[i], starts[i + 1]), rows):
                self._commit_rows(j, chunk_rows)
            yield value

    def close(self):
        for future in self._futures:
            future.cancel()
        self._futures.clear()


__all__ = ["DaskBackend", "chunk_stats_task", "per_row_task", "sample_rows_task"]
