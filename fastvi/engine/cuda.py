"""The CUDA backend: the E-step kernels of ``fastvi.kernels.cuda`` on an NVIDIA GPU.

``backend="cuda"`` computes every chunk's statistics, and every per-row output, on the
GPU; the fit loop, the M-steps and the algorithms stay on the CPU, unchanged (the
contract is ``fastvi.engine.backend``'s).  ``backend="auto"`` is this backend when a GPU
is usable, else the local one.

How a pass runs
---------------
The source's reader thread reads the next chunk while the GPU works (as for the local
backend).  Each chunk is copied into one of two page-locked (pinned) host buffers and
sent, asynchronously, on one of two CUDA streams; its four kernels (log rho,
log-sum-exp, moments, the groups' reduction) run on the same stream, and only the
statistics, (K + 1) x E float64 numbers, come back.  Within one request of several chunks
(a batch pass), chunk i + 1 is sent before the result of chunk i is awaited, so its copy
overlaps chunk i's kernels.  The parameters go to the GPU once per request.

Bits: a chunk's statistics are the same on every run and every GPU that runs the same
code (``fastvi.kernels.cuda.estep``: no atomics, sums in fixed order), and the loop adds
the chunks in order, so a CUDA fit repeats bit for bit.  They agree with the local
backend to rounding only (the sums run in another order).

What it does not run: the truncated q (``n_active``), whose search stays on the CPU;
``backend="cuda"`` with ``n_active`` raises one sentence saying so.
"""
import importlib

import numpy as np

from ..data.checks import InvalidParameterError
from .backend import Backend, ChunkPass, check_result, empty_outputs
from .local import compute_threads, largest_per_row, pair_entropy_loss, thread_count
from .stats import SufficientStats

TRUNCATED_REFUSAL = ("backend='cuda' does not run the truncated q (n_active): its search "
                     "runs on the CPU; use backend='local' (or leave n_active unset)")


# ----------------------------------------------------------------------------- availability

def _import_numba_cuda():
    """numba-cuda's package (``numba_cuda``), or None when it is not installed.  numba
    itself may still ship its old, deprecated ``numba.cuda``: fastvi does not use that."""
    try:
        return importlib.import_module("numba_cuda")
    except ImportError:
        return None


def _driver_error():
    """None when the CUDA driver starts (or the simulator is on), else its error."""
    from numba import cuda
    return cuda.cuda_error()


def _gpu_count():
    from numba import cuda
    return len(cuda.gpus)


def unavailable_reason():
    """None when ``backend="cuda"`` can run, else one sentence that says why not: no
    numba-cuda, no CUDA driver, or a driver that sees no GPU."""
    if _import_numba_cuda() is None:
        return ("backend='cuda' needs numba-cuda, which is not installed: "
                "pip install 'fastvi[cuda]' (or 'fastvi[cuda13]' for CUDA 13 drivers)")
    error = _driver_error()
    if error is not None:
        text = " ".join(str(error).split())
        if "cannot be found" in text or "libraries are found but" in text:
            return ("backend='cuda' found no CUDA driver on this machine (libcuda): install "
                    "an NVIDIA driver, or use backend='local'")
        if "NO_DEVICE" in text:
            return ("backend='cuda': the CUDA driver is installed but sees no GPU "
                    "(CUDA_ERROR_NO_DEVICE; check CUDA_VISIBLE_DEVICES); use backend='local'")
        return f"backend='cuda': the CUDA driver failed to start ({text}); use backend='local'"
    if _gpu_count() == 0:
        return ("backend='cuda': the CUDA driver is installed but sees no GPU (check "
                "CUDA_VISIBLE_DEVICES); use backend='local'")
    return None


def simulated():
    """True when numba-cuda runs kernels in its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def gpu_usable():
    """True when a real GPU can run the kernels (the simulator does not count): what
    ``backend="auto"`` asks."""
    try:
        return _import_numba_cuda() is not None and not simulated() \
            and unavailable_reason() is None
    except Exception:       # a broken CUDA install: "auto" then means the CPU
        return False


def auto_backend():
    """The backend ``backend="auto"`` names: CUDA on a usable GPU, else local."""
    from .backend import get_backend
    return get_backend("cuda" if gpu_usable() else "local")


# ----------------------------------------------------------------------------- the backend

class CudaBackend(Backend):
    """The GPU (``backend="cuda"``).  Raises ``InvalidParameterError`` with one sentence
    when it cannot run (``unavailable_reason``)."""

    name = "cuda"

    def __init__(self):
        reason = unavailable_reason()
        if reason is not None:
            raise InvalidParameterError(reason)
        from ..kernels import cuda as kernels
        self._kernels = kernels
        self._devices = {}

    def open_pass(self, source, order, sample_weight=None, search=None, pairs=None,
                  proposal=None):
        if search is not None:
            raise InvalidParameterError(TRUNCATED_REFUSAL)
        device = self._device("pass", source, sample_weight is not None)
        return _CudaPass(device, source, order, sample_weight, pairs, proposal)

    def per_row(self, source, params, log_norm=False, resp=False, labels=False, top=0):
        device = self._device("rows", source, False)
        device.in_use = True
        try:
            return device.per_row(source, params, log_norm, resp, labels, top)
        finally:
            device.in_use = False

    def _device(self, use, source, weighted):
        """A ``_Device`` for ``source``: the last one made for this ``use`` ("pass" or
        "rows") when its shapes fit and no open pass holds it, else a new one (which is
        then kept).  Pinned memory is slow to allocate, and an EM fit opens a pass per
        iteration, a chunked predict calls ``per_row`` per chunk."""
        key = (max([stop - start for start, stop in source.chunk_bounds()] + [1]),
               source.n_features, np.dtype(source.dtype), weighted)
        kept = self._devices.get(use)
        if kept is not None and kept[0] == key and not kept[1].in_use:
            return kept[1]
        device = _Device(self._kernels, source, weighted)
        self._devices[use] = (key, device)
        return device

    def neighbour_lists(self, params, truncation):
        raise InvalidParameterError(TRUNCATED_REFUSAL)

    def check_n_jobs(self, n_jobs):
        thread_count(n_jobs)        # the CPU threads of the M-step and the moves

    def running(self, n_jobs):
        return compute_threads(n_jobs)


def _params_on_device(cuda, params):
    return tuple(cuda.to_device(np.ascontiguousarray(array, dtype=np.float64))
                 for array in (params.c, params.means, params.factor))


class _Device:
    """The GPU buffers of one pass or one per-row call.  Chunk i uses slot i % 2: a
    stream, a pinned host buffer and a device buffer for its rows and weights, and the
    kernels' work arrays (``_lr``, ``_work``: one set for the model, one for a birth or
    delete proposal, whose K differs), all sized for the source's largest chunk and kept
    from pass to pass."""

    def __init__(self, kernels, source, weighted):
        from numba import cuda
        self.cuda = cuda
        self.k = kernels
        self.estep = kernels.estep
        bounds = source.chunk_bounds()
        self.rows = max([stop - start for start, stop in bounds] + [1])
        self.n_features = n_features = source.n_features
        dtype = np.dtype(source.dtype)
        self.slots = [{"stream": cuda.stream(),
                       "x_host": cuda.pinned_array((self.rows, n_features), dtype=dtype),
                       "x": cuda.device_array((self.rows, n_features), dtype=dtype),
                       # (no zero-byte pinned allocation: cuMemHostAlloc refuses it)
                       "w_host": cuda.pinned_array(self.rows) if weighted else np.empty(0),
                       "w": cuda.device_array(self.rows if weighted else 0),
                       "lse": cuda.device_array(self.rows)} for _ in range(2)]
        self.in_use = False
        self.no_labels = cuda.device_array((0, 1), dtype=np.int64)
        self.no_top = cuda.device_array((0, 1))
        self._tables = {}

    def _lr(self, slot, n_components, n, full, role):
        """The slot's (K, n) array of log rho, then of the responsibilities: a view of
        one flat buffer, so that it is contiguous for every n; one buffer per ``role``
        (the model's, a proposal's), grown when K grows (moves change K between passes)."""
        key = ("lr", role)
        if key not in slot or slot[key].size < n_components * self.rows:
            slot.pop(key, None)
            self._check_memory(n_components, full)
            slot[key] = self.cuda.device_array(n_components * self.rows)
        return slot[key][:n_components * n].reshape(n_components, n)

    def _check_memory(self, n_components, full):
        """Raise one sentence, before allocating, when the work arrays of K components
        (both slots) would not fit in the GPU's free memory."""
        n_entries = self._entries(full)[0].shape[0]
        n_groups = -(-self.rows // self.estep.GROUP_ROWS)
        need = 2 * 8 * (n_components * self.rows + (n_groups + 1) * (n_components + 1)
                        * n_entries)
        free, _ = self.cuda.current_context().get_memory_info()
        if need > free:
            raise MemoryError(
                f"backend='cuda': chunks of {self.rows} rows with K = {n_components} need "
                f"{need / 1e9:.2f} GB of GPU memory and {free / 1e9:.2f} GB are free: lower "
                f"chunk_size (--chunk-size) or K")

    def _work(self, slot, n_components, full, role):
        """The slot's arrays for the statistics of K = ``n_components``: the groups'
        partials, their sum, and the pinned array that receives it; one set per ``role``
        (a proposal's statistics are received beside the model's, on the same stream),
        made again when K or the covariance form changes."""
        key = ("work", role)
        shape = (n_components + 1, self._entries(full)[0].shape[0])
        n_groups = -(-self.rows // self.estep.GROUP_ROWS)
        if key not in slot or slot[key]["partial"].shape != (n_groups,) + shape:
            slot.pop(key, None)
            slot[key] = {"partial": self.cuda.device_array((n_groups,) + shape),
                         "out": self.cuda.device_array(shape),
                         "host": self.cuda.pinned_array(shape)}
        return slot[key]

    def _entries(self, full):
        if full not in self._tables:
            self._tables[full] = tuple(self.cuda.to_device(table) for table in
                                       self.k.entry_tables(self.n_features, full))
        return self._tables[full]

    # -- the steps of a chunk, enqueued on its slot's stream

    def send(self, slot, chunk, weights):
        """Copy a chunk (and its weights) to the GPU, asynchronously."""
        n = chunk.shape[0]
        np.copyto(slot["x_host"][:n], chunk)
        slot["x"][:n].copy_to_device(slot["x_host"][:n], stream=slot["stream"])
        if weights is not None:
            np.copyto(slot["w_host"][:n], weights)
            slot["w"][:n].copy_to_device(slot["w_host"][:n], stream=slot["stream"])

    def log_rho(self, slot, n, device_params, full, role="main"):
        """The log rho of the chunk's n rows under ``device_params``; returns the
        device array (K, n) that holds them."""
        c, means, factor = device_params
        n_components = means.shape[0]
        lr = self._lr(slot, n_components, n, full, role)
        tile = self.estep.component_tile(n_components, self.n_features, full)
        kernel = self.k.log_rho_full if full else self.k.log_rho_diag
        threads = self.estep.ROW_THREADS
        shared = 8 * tile * self.estep.component_words(self.n_features, full)
        kernel[_blocks(n, threads), threads, slot["stream"], shared](
            slot["x"][:n], c, means, factor, tile, lr)
        return lr

    def normalise(self, slot, lr, want_resp, labels=None, top_v=None):
        """Log-sum-exp of each row into ``slot["lse"]``; the responsibilities over
        ``lr`` when ``want_resp``; the labels when ``labels`` is given."""
        n = lr.shape[1]
        threads = self.estep.ROW_THREADS
        self.k.normalise[_blocks(n, threads), threads, slot["stream"]](
            lr, want_resp, slot["lse"][:n],
            self.no_labels if labels is None else labels,
            self.no_top if top_v is None else top_v)

    def statistics(self, slot, n, weighted, device_params, full, role="main"):
        """Enqueue the E-step and moments of the chunk in ``slot`` under
        ``device_params``; returns ``(host, resp)``: the pinned array (K + 1, E) that
        receives the reduced statistics once the slot's stream is synchronised, and the
        device array (K, n) of the chunk's responsibilities (valid until the slot's next
        use)."""
        estep = self.estep
        n_components = device_params[1].shape[0]
        work = self._work(slot, n_components, full, role)
        resp = self.log_rho(slot, n, device_params, full, role)
        self.normalise(slot, resp, True)
        pair_i, pair_j = self._entries(full)
        n_entries = pair_i.shape[0]
        n_groups = -(-n // estep.GROUP_ROWS)
        partial = work["partial"][:n_groups]
        tile = estep.row_tile(self.n_features)
        threads = min(estep.ENTRY_THREADS, n_entries)
        weights = slot["w"][:n] if weighted else slot["w"][:0]
        self.k.moments[(n_components + 1, n_groups), threads, slot["stream"],
                       8 * tile * (self.n_features + 1)](
            slot["x"][:n], weights, resp, device_params[1], slot["lse"][:n],
            pair_i, pair_j, estep.GROUP_ROWS, tile, partial)
        threads = estep.REDUCE_THREADS
        self.k.reduce_groups[_blocks(work["out"].size, threads), threads, slot["stream"]](
            partial, work["out"])
        work["out"].copy_to_host(work["host"], stream=slot["stream"])
        return work["host"], resp

    def unpack(self, host, means, full):
        """``SufficientStats`` (upper triangle mirrored; no weight yet) from the reduced
        (K + 1, E) array, and the chunk's sum of weighted log-normalisers."""
        n_components, n_features = means.shape
        stats = SufficientStats.zeros(means, full)
        stats.nk[:] = host[:n_components, 0]
        stats.s1[:] = host[:n_components, 1:n_features + 1]
        second = host[:n_components, n_features + 1:]
        if full:
            upper = np.triu_indices(n_features)
            stats.s2[:, upper[0], upper[1]] = second
            stats.mirror_upper()
        else:
            stats.s2[:] = second
        return stats, float(host[n_components, 0])

    # -- per-row outputs

    def per_row(self, source, params, log_norm, resp, labels, top):
        out = empty_outputs(source.n_rows, params.means.shape[0], log_norm, resp, labels, top)
        if labels:
            device_labels = self.cuda.device_array((self.rows, int(labels)), dtype=np.int64)
            top_v = self.cuda.device_array((self.rows, int(labels)))
        device_params = _params_on_device(self.cuda, params)
        slot = self.slots[0]
        stream = slot["stream"]
        for _, start, chunk in source.chunks():
            n = chunk.shape[0]
            stop = start + n
            self.send(slot, chunk, None)
            lr = self.log_rho(slot, n, device_params, params.full)
            if top:
                values = lr.copy_to_host(stream=stream)
                stream.synchronize()
                out["top_index"][start:stop], out["top_resp"][start:stop] = \
                    top_responsibilities(values.T, int(top))
            if log_norm or resp or labels:
                self.normalise(slot, lr, resp, device_labels[:n] if labels else None,
                               top_v[:n] if labels else None)
                if log_norm:
                    slot["lse"][:n].copy_to_host(out["log_norm"][start:stop], stream=stream)
                if resp:
                    resp_t = lr.copy_to_host(stream=stream)
                if labels:
                    device_labels[:n].copy_to_host(out["labels"][start:stop], stream=stream)
            stream.synchronize()
            if resp:
                out["resp"][start:stop] = resp_t.T
        if labels == 1:
            out["labels"] = out["labels"][:, 0]
        return out


def _blocks(n, threads):
    return max(1, -(-n // threads))


def top_responsibilities(log_rho, n_top):
    """Each row's ``n_top`` largest ``log_rho`` (ties: the lower index first) as int32
    indices, and their responsibilities renormalised over them: what the local backend's
    exhaustive truncated kernel gives (``local.top_responsibilities``)."""
    n_top = min(n_top, log_rho.shape[1])
    top = largest_per_row(np.where(np.isnan(log_rho), -np.inf, log_rho), n_top)
    chosen = np.take_along_axis(log_rho, top, axis=1)
    shift = chosen[:, :1]
    shift = np.where(np.isfinite(shift), shift, 0.0)
    weights = np.exp(chosen - shift)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = weights / weights.sum(axis=1, keepdims=True)
    return top.astype(np.int32), q


class _CudaPass(ChunkPass):
    def __init__(self, device, source, order, sample_weight, pairs=None, proposal=None):
        self.source = source
        self.sample_weight = sample_weight
        self.pairs = pairs
        self.proposal = proposal
        self.device = device
        device.in_use = True            # until close(): no other pass shares its slots
        self.count = 0
        self._proposal_on_device = None
        # the reader runs one chunk ahead; check=False: check_result traces a non-finite
        # result to its row.  A chunk is copied into pinned memory at once, so the
        # reader may reuse its buffers.
        self._chunks = source.chunks(list(order), check=False, reuse=True)

    def stats(self, params, count=None):
        cuda = self.device.cuda
        on_device = _params_on_device(cuda, params)
        # the proposal is fixed for the pass: sent once, not with every one-chunk request
        if self.proposal is not None and self._proposal_on_device is None:
            self._proposal_on_device = _params_on_device(cuda, self.proposal)
        proposal = self._proposal_on_device
        pending = None
        taken = 0
        while count is None or taken < count:
            item = next(self._chunks, None)
            if item is None:
                break
            job = self._enqueue(item, params, on_device, proposal)
            taken += 1
            if pending is not None:     # chunk i + 1 is on its way: now wait for chunk i
                yield self._finish(pending, params)
            pending = job
        if pending is not None:
            yield self._finish(pending, params)

    def _enqueue(self, item, params, on_device, proposal):
        index, start, chunk = item
        device = self.device
        slot = device.slots[self.count % 2]
        self.count += 1
        n = chunk.shape[0]
        weights = (None if self.sample_weight is None
                   else np.ascontiguousarray(self.sample_weight[start:start + n],
                                             dtype=np.float64))
        device.send(slot, chunk, weights)
        job = {"index": index, "start": start, "n": n, "slot": slot, "weights": weights}
        job["host"], resp = device.statistics(slot, n, weights is not None, on_device,
                                              params.full)
        if self.pairs is not None:          # (K, n): the entropy kernel's own layout
            job["resp_t"] = resp.copy_to_host(stream=slot["stream"])
        if proposal is not None:
            job["proposal"], _ = device.statistics(slot, n, weights is not None, proposal,
                                                   self.proposal.full, role="proposal")
        return job

    def _finish(self, job, params):
        job["slot"]["stream"].synchronize()
        stats = self._complete(job["host"], params, job)
        if self.pairs is not None:
            stats.pair_loss = pair_entropy_loss(job["resp_t"].T, self.pairs, job["weights"])
        if "proposal" in job:
            stats.proposal = self._complete(job["proposal"], self.proposal, job)
        return job["index"], stats

    def _complete(self, host, params, job):
        stats, log_norm = self.device.unpack(host, params.means, params.full)
        weights, n = job["weights"], job["n"]
        # the rows are still in the slot's pinned buffer (it is reused two chunks later)
        check_result(self.source, job["start"], job["slot"]["x_host"][:n], log_norm)
        stats.log_norm = log_norm
        stats.weight = float(n) if weights is None else float(weights.sum())
        return stats

    def close(self):
        self._chunks.close()
        self.device.in_use = False
