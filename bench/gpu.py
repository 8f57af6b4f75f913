"""The CUDA backend (``backend="cuda"``) on one GPU: its kernels, its passes, and its peers.

Usage::

    python bench/gpu.py --out DIR [--smoke] [--budget-seconds 330] [--repeats 3]

Writes ``DIR/gpu.json`` (every figure, the machine, each case's parameters, the time of
every repeat, medians, rows/s, derived ratios, or the case's error) and ``DIR/gpu.md``
(the same as Markdown tables, also printed at the end).  Both are rewritten after every
case, so a run cut short still leaves what it measured.  Exit status 1 when a case failed,
else 0 (a case skipped for time, or a peer that is not installed, is not a failure).

This module holds the command line, the cases and the run (budget, deadlines, watchdog)
and fastvi's own GPU cases; beside it (imported from this folder, whatever the working
directory): ``gpu_common.py`` (timing under a deadline, data, parameters), ``gpu_peers.py``
(PyTorch, scikit-learn, fastvi on the CPU), ``gpu_report.py`` (machine, derived figures,
``gpu.json`` and ``gpu.md``).

What is measured
----------------
Rows are float32, made on the host with ``numpy.random.default_rng`` (fixed seeds: a fixed
mixture of 16 unit Gaussians); the parameters are a random mixture of K components
(``fastvi.mixture.em.kernel_params`` of ``precision_cholesky``), means on data rows.
The kernels compute in float64 whatever the rows.  Every time is a median of
``--repeats`` after one untimed warm-up (which compiles), wall clock after the GPU is
synchronised; the split of a chunk's time between the kernels comes from CUDA events.

1. ``kernel``: the four kernels of one chunk (log rho, log-sum-exp and responsibilities,
   moments, the groups' reduction; the backend's own ``_Device`` buffers and launches) on
   rows already on the GPU, for D in {16, 64}, K in {16, 256}, diag and full.
2. ``end_to_end``: ``total_stats(get_backend("cuda"), ArraySource(X, chunk_rows), params)``
   over host rows, chunk_rows = 1,048,576: copies to pinned memory and to the GPU
   included.  N is 10M rows, or fewer when the case's share of the budget does not hold
   ``--repeats`` passes (the rate of a one-chunk warm-up pass decides; the rows used are
   recorded).  ``pass_setup_s``: what making the pinned and device buffers costs (once
   per fit: the backend keeps them from pass to pass).
   ``end_to_end_small_chunks``: the same for the first configuration with fastvi's
   default chunk_rows (65,536), against the 1M-row chunks.
   Derived (on the kernel case, from its CUDA events): for full, the FLOP/s of the log-rho
   kernel (``N K (D (D + 1) + 2 D)``: the triangular product, D (D + 1) / 2 multiply-adds,
   and the squared norm, D; 2 FLOP each) as a fraction of the GPU's FP32 and FP64
   (non-tensor) peaks; for diag, the bytes a chunk must move at least (``N D 4`` rows
   read, ``2 N K 8`` log rho written and read back) over its time, as a fraction of the
   memory bandwidth.  Peaks come from ``gpu_report.PEAKS`` by GPU name (null for a GPU not in it).
3. ``flash_gmm``: kernel alone for K = 1024, D = 128, diag, 1M rows, beside Flash-GMM's
   published figure (one E-step in 152 ms on an A100; quoted, not measured here).
4. ``streamed``: one pass through ``fastvi.data.sources.as_source`` of an h5py dataset
   (float32, chunked, written to the temporary folder and read once so it is in the page
   cache) of up to 100M rows, D = 16, K = 16, diag; the file has fewer rows when writing
   would take more than half the case's share of the budget (recorded).  Deleted after.
5. Peers on the same rows (the kernel case's chunk) and parameters, one E-step with
   statistics (responsibilities, N_k, s1, s2): ``torch_float32`` / ``torch_float64``, a
   plain PyTorch E-step (Mahalanobis terms by matmul, whitened by the Cholesky factors
   for full; ``torch.logsumexp``; statistics by matmul), ``sklearn`` (scikit-learn's
   array-API GaussianMixture on torch CUDA tensors: one ``fit`` with ``max_iter=1``
   divided by the E-steps it ran, M-steps included), and ``cpu`` (fastvi's local backend
   on a subset of at most 1M rows, scaled to rows/s; its statistics are also compared
   with the GPU's).  Ratios: fastvi's rows/s (kernel alone, and end to end) over each
   peer's.  A peer that does not import, or sees no GPU, is recorded as not available.

Time: the run is sized to end within ``--budget-seconds`` (330) on an H100.  Each case has
a share (``cap`` in ``CASES``) and a deadline, min(cap, what is left); a case stops its
repeats at its deadline (at least one), and once the budget is spent the remaining cases
are recorded as "skipped: out of time".  A watchdog ends the run (writing what it has,
exit status 1) if it goes on ``GRACE_SECONDS`` past the budget.

Cases run in the order of ``CASES`` (fastvi first, the peers last); on an H100 the whole
run should take about 230-280 s (an estimate: not yet run there).

``--smoke``: tiny sizes (N = 64, D = 3, K = 2, both covariance kinds, one repeat) that run
in numba-cuda's simulator in about 10 s: ``NUMBA_ENABLE_CUDASIM=1 python bench/gpu.py
--smoke --out DIR``; the simulator's blocks are shrunk to 32 threads (``SIMULATOR_LAUNCH``).
Peers then run on the CPU when torch is installed (no GPU in the simulator).

``SCIPY_ARRAY_API=1`` is set (unless already set) before anything imports SciPy, as
scikit-learn's array-API dispatch requires.
"""
import os
import sys

os.environ.setdefault("SCIPY_ARRAY_API", "1")   # before SciPy is imported (sklearn peer)
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:                        # the sibling modules, from any folder
    sys.path.append(_HERE)

import argparse  # noqa: E402
import datetime  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from fastvi.data.sources import ArraySource, as_source  # noqa: E402
from fastvi.engine.backend import get_backend, total_stats  # noqa: E402
from gpu_common import (SEED_DATA, Case, Context, Unavailable, clock,  # noqa: E402
                        free_gpu_memory, gpu_pass, median, mixture_blocks, mixture_params,
                        one_line, reduced, repeated, rows_for, summarise, tag, timed_runs)
from gpu_peers import run_cpu, run_sklearn, run_torch  # noqa: E402
from gpu_report import (Recorder, case_line, derived_figures,  # noqa: E402
                        describe_machine, launch_constants)

# ------------------------------------------------------------------------ sizes and cases

SIZES = {
    "full": {
        "grid": [(d, k, cov) for d in (16, 64) for k in (16, 256) for cov in ("diag", "full")],
        "n_rows": 10_000_000,               # end to end
        "chunk_rows": 1 << 20,              # the pass's chunks; kernel alone runs one
        "small_chunk_rows": 65536,          # fastvi's default chunk_rows, for comparison
        "flash": {"n_features": 128, "n_components": 1024, "n_rows": 1_000_000},
        "stream": {"n_features": 16, "n_components": 16, "n_rows": 100_000_000,
                   "write_block": 1 << 22},
        "cpu_rows": 1 << 20,                # at most; fewer when the cap asks
    },
    "smoke": {
        "grid": [(3, 2, "diag"), (3, 2, "full")],
        "n_rows": 64,
        "chunk_rows": 32,                   # two chunks: both slots of the backend
        "small_chunk_rows": 16,
        "flash": {"n_features": 5, "n_components": 4, "n_rows": 64},
        "stream": {"n_features": 3, "n_components": 2, "n_rows": 128, "write_block": 64},
        "cpu_rows": 64,
    },
}
# --smoke in the simulator: fewer threads per block (a Python thread per CUDA thread);
# the kernels read these module constants at each launch (as the tests shrink them)
SIMULATOR_LAUNCH = {"ROW_THREADS": 32, "ENTRY_THREADS": 32, "REDUCE_THREADS": 32}

# (kind, the configurations it runs on, cap: the seconds it may take on an H100, and
# the cap of the heavy configuration, full with D * D * K >= 2**20), in the order they
# run: fastvi first, then the peers, so that a short budget loses peers first.  The caps
# add up to more than the budget: most cases take a fraction of theirs (an estimate for
# an H100: 230-280 s in all); the budget cuts the tail if not.
CASES = (
    ("kernel", "grid", 8.0, 16.0),
    ("end_to_end", "grid", 12.0, 24.0),
    ("end_to_end_small_chunks", "first", 12.0, None),
    ("flash_gmm", "flash", 15.0, None),
    ("streamed", "stream", 60.0, None),
    ("torch_float32", "grid+flash", 6.0, 8.0),
    ("cpu", "grid+flash", 10.0, 12.0),
    ("torch_float64", "grid+flash", 6.0, 8.0),
    ("sklearn", "grid", 8.0, 12.0),
)

FLASH_GMM = {"seconds": 0.152, "gpu": "A100", "n_rows": 1_000_000, "n_features": 128,
             "n_components": 1024,
             "what": "Flash-GMM's published figure: one E-step, 1M x 128, K = 1024, "
                     "152 ms on an A100 (quoted, not measured here)"}

MIN_START_SECONDS = 3.0      # a case is not started with less of the budget left
GRACE_SECONDS = 15.0         # the watchdog ends the run this long past the budget


def build_cases(sizes):
    """The cases of the run, in order, from ``CASES`` and the sizes."""
    chunk = sizes["chunk_rows"]
    grid = [{"n_features": d, "n_components": k, "covariance_type": cov}
            for d, k, cov in sizes["grid"]]
    flash = {"n_features": sizes["flash"]["n_features"],
             "n_components": sizes["flash"]["n_components"], "covariance_type": "diag"}
    configs = {"grid": grid, "first": grid[:1], "flash": [flash],
               "stream": [dict(sizes["stream"], covariance_type="diag")]}
    cases = []
    for kind, where, cap, heavy_cap in CASES:
        for config in (c for part in where.split("+") for c in configs[part]):
            p = dict(config, dtype="float32", chunk_rows=chunk)
            if kind.startswith("end_to_end"):
                p["n_rows"] = sizes["n_rows"]
                if kind == "end_to_end_small_chunks":
                    p["chunk_rows"] = sizes["small_chunk_rows"]
            elif config is flash:                   # its own rows: one chunk
                p["n_rows"] = p["chunk_rows"] = sizes["flash"]["n_rows"]
            elif kind != "streamed":
                p["n_rows"] = chunk                 # one chunk (kernel, peers)
            if kind == "flash_gmm":
                p["reference"] = FLASH_GMM
            if kind == "cpu":
                p["n_rows"] = min(p["n_rows"], sizes["cpu_rows"])
            if kind.startswith("torch"):
                p["arithmetic"] = kind.split("_")[1]
            if config is flash:
                p["flash"] = True
            heavy = (p["covariance_type"] == "full"
                     and p["n_features"] ** 2 * p["n_components"] >= 1 << 20)
            cases.append(Case(f"{kind} {tag(p)}", kind, p,
                              heavy_cap if heavy and heavy_cap else cap))
    return cases


# -------------------------------------------------------------------- fastvi: the GPU

class DeviceChunk:
    """One chunk of rows already on the GPU, in the CUDA backend's own buffers
    (``fastvi.engine.cuda._Device``), and the parameters there; each call enqueues the
    backend's kernels on the chunk's stream and waits for them."""

    def __init__(self, X, params):
        from numba import cuda
        from fastvi.engine import cuda as engine
        from fastvi.kernels import cuda as cuda_kernels
        self.cuda, self.params, self.n = cuda, params, X.shape[0]
        self.device = engine._Device(cuda_kernels, ArraySource(X, X.shape[0]), False)
        self.slot = self.device.slots[0]
        self.stream = self.slot["stream"]
        self.on_device = engine._params_on_device(cuda, params)
        self.events = not engine.simulated()        # the simulator's events keep no time
        self.device.send(self.slot, X, None)
        self.stream.synchronize()
        self.host = None

    def statistics(self):
        """Wall seconds of the chunk's statistics: the four kernels and the (K + 1) x E
        result copied back (and, on a GPU, their own time from CUDA events)."""
        ev = [self.cuda.event(timing=True) for _ in range(2)] if self.events else None
        start = time.perf_counter()
        if ev:
            ev[0].record(self.stream)
        self.host, _ = self.device.statistics(self.slot, self.n, False, self.on_device,
                                              self.params.full)
        if ev:
            ev[1].record(self.stream)
        self.stream.synchronize()
        out = {"s": time.perf_counter() - start}
        if ev:
            out["gpu_s"] = self.cuda.event_elapsed_time(ev[0], ev[1]) / 1e3
        return out

    def split(self):
        """GPU seconds of the log-rho kernel alone and of the log-sum-exp kernel alone
        (CUDA events); {} in the simulator."""
        if not self.events:
            return {}
        ev = [self.cuda.event(timing=True) for _ in range(3)]
        ev[0].record(self.stream)
        lr = self.device.log_rho(self.slot, self.n, self.on_device, self.params.full)
        ev[1].record(self.stream)
        self.device.normalise(self.slot, lr, True)
        ev[2].record(self.stream)
        self.stream.synchronize()
        ms = self.cuda.event_elapsed_time
        return {"log_rho_s": ms(ev[0], ev[1]) / 1e3, "normalise_s": ms(ev[1], ev[2]) / 1e3}

    def stats(self):
        return self.device.unpack(self.host, self.params.means, self.params.full)[0]


def run_kernel(ctx, case, deadline):
    """The four kernels of one chunk on rows already on the GPU."""
    p = case.params
    chunk = DeviceChunk(ctx.rows(p["n_features"], p["n_rows"]), ctx.params(p))
    try:
        runs, warm = repeated(ctx, chunk.statistics, deadline)
        out = summarise(runs, "s", p["n_rows"], ctx.repeats)
        out["warm_up_s"] = warm
        # the split runs two of the kernels again: after the timed repeats, as time allows
        runs += repeated(ctx, chunk.split, ctx.extend(deadline, warm), warm_up=False)[0]
        split = {key: median([run[key] for run in runs if key in run])
                 for key in ("gpu_s", "log_rho_s", "normalise_s")}
        if split["gpu_s"] is not None:
            split["moments_and_reduce_s"] = (split["gpu_s"] - split["log_rho_s"]
                                             - split["normalise_s"])
            out["rows_per_s_gpu_time"] = p["n_rows"] / split["gpu_s"]
        out["split_s"] = {k: v for k, v in split.items() if v is not None}
        stats = chunk.stats()
        ctx.fastvi_nk[tag(p)] = stats.nk.copy()
        out["nk_sum_over_rows"] = float(stats.nk.sum() / p["n_rows"])
        out["derived"] = derived_figures(p, p["n_rows"], split["gpu_s"] or out["median_s"],
                                         split["log_rho_s"], ctx.machine["peaks"])
        if "reference" in p:
            out["reference"] = p["reference"]
            out["time_over_reference"] = out["median_s"] / p["reference"]["seconds"]
        return out
    finally:
        del chunk
        free_gpu_memory()


def pass_setup_seconds(X, chunk_rows):
    """Seconds to make the buffers a pass of the backend makes before its first chunk
    (``_Device``: pinned host buffers and device arrays of two slots); each pass, i.e.
    each EM iteration, pays this."""
    from fastvi.engine import cuda as engine
    from fastvi.kernels import cuda as cuda_kernels
    seconds, device = clock(
        lambda: engine._Device(cuda_kernels, ArraySource(X, chunk_rows), False))
    del device
    free_gpu_memory()
    return seconds


def run_end_to_end(ctx, case, deadline):
    """``total_stats`` through ``backend="cuda"`` over host rows, N sized to the cap."""
    p = case.params
    chunk = p["chunk_rows"]
    X = ctx.rows(p["n_features"], p["n_rows"])
    params = ctx.params(p)
    warm_rows = min(p["n_rows"], chunk)
    warm, _ = gpu_pass(X[:warm_rows], chunk, params)
    n_rows = p["n_rows"] if ctx.smoke else rows_for(deadline, warm / warm_rows, ctx.repeats,
                                                    chunk, p["n_rows"])
    backend = get_backend("cuda")
    runs, _, stats = timed_runs(
        ctx, lambda: total_stats(backend, ArraySource(X[:n_rows], chunk), params), deadline)
    out = summarise(runs, "s", n_rows, ctx.repeats)
    out.update(warm_up_s=warm, warm_up_rows=warm_rows, n_rows_used=n_rows,
               pass_setup_s=pass_setup_seconds(X[:n_rows], chunk),
               n_rows_requested=p["n_rows"], nk_sum_over_rows=float(stats.nk.sum() / n_rows))
    if n_rows < p["n_rows"]:
        out["reduced"] = reduced(p["n_rows"], n_rows,
                                 f": {ctx.repeats} passes of all would not end within the "
                                 f"case's {case.cap:.0f} s share at the rate of a one-chunk "
                                 "warm-up pass")
    free_gpu_memory()
    return out


def write_h5(path, p, chunk_rows, write_deadline):
    """An HDF5 file of up to ``p["n_rows"]`` rows (float32, chunks of ``chunk_rows`` rows),
    written block by block until the rows or the time run out; returns rows, seconds."""
    import h5py
    start = time.perf_counter()
    written = 0
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("X", shape=(0, p["n_features"]),
                                        maxshape=(None, p["n_features"]), dtype="float32",
                                        chunks=(chunk_rows, p["n_features"]))
        for block in mixture_blocks(p["n_rows"], p["n_features"], SEED_DATA + 7,
                                    p["write_block"]):
            dataset.resize(written + block.shape[0], axis=0)
            dataset[written:written + block.shape[0]] = block
            written += block.shape[0]
            if time.perf_counter() > write_deadline:
                break
    return written, time.perf_counter() - start


def read_through(path):
    """Read the file once (into the page cache); seconds."""
    def read():
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    return clock(read)[0]


def run_streamed(ctx, case, deadline):
    """One pass of ``backend="cuda"`` over an HDF5 dataset through ``as_source``."""
    import h5py
    p = case.params
    chunk = p["chunk_rows"]
    start = time.perf_counter()
    handle, path = tempfile.mkstemp(prefix="fastvi_gpu_bench_", suffix=".h5")
    os.close(handle)
    try:
        # at most half the free disk
        room = shutil.disk_usage(os.path.dirname(path)).free // 2 // (4 * p["n_features"])
        wanted = dict(p, n_rows=int(min(p["n_rows"], max(chunk, room // chunk * chunk))))
        n_rows, write_s = write_h5(path, wanted, chunk, start + 0.5 * (deadline - start))
        read_s = read_through(path)
        size = os.path.getsize(path)
        out = {"path": path, "n_rows_used": n_rows, "n_rows_requested": p["n_rows"],
               "file_bytes": size, "write_s": write_s, "read_through_s": read_s,
               "read_through_bytes_per_s": size / read_s if read_s else None}
        if n_rows < p["n_rows"]:
            out["reduced"] = reduced(p["n_rows"], n_rows, ": " + (
                "the file may take at most half the free disk"
                if n_rows == wanted["n_rows"] < p["n_rows"] else
                f"writing stops at half the case's {case.cap:.0f} s share"))
        with h5py.File(path, "r") as h5:
            dataset = h5["X"]
            params = mixture_params(dataset[:min(n_rows, chunk)], p["n_components"],
                                    p["covariance_type"])
            source = as_source(dataset, chunk)
            out["source"] = f"{type(source).__name__}, chunk_rows {source.chunk_rows:,}"
            backend = get_backend("cuda")
            runs, _, stats = timed_runs(ctx, lambda: total_stats(backend, source, params),
                                        deadline)
        out.update(summarise(runs, "s", n_rows, ctx.repeats))
        out["nk_sum_over_rows"] = float(stats.nk.sum() / n_rows)
        return out
    finally:
        os.remove(path)
        free_gpu_memory()


RUNNERS = {"kernel": run_kernel, "end_to_end": run_end_to_end,
           "end_to_end_small_chunks": run_end_to_end, "flash_gmm": run_kernel,
           "streamed": run_streamed, "torch_float32": run_torch, "torch_float64": run_torch,
           "cpu": run_cpu, "sklearn": run_sklearn}


# ------------------------------------------------------------------------- the run

def progress(clock_start, text):
    print(f"[{time.perf_counter() - clock_start:6.1f} s] {text}", flush=True)


def run_case(ctx, case, clock_start, budget):
    """Run one case within its share and what is left of the budget; its result (or why
    it has none) goes to ``case.result``, whatever it raises."""
    if budget - (time.perf_counter() - clock_start) < MIN_START_SECONDS:
        case.result = {"status": "skipped", "reason": "out of time"}
        return
    started = time.perf_counter()
    try:
        if "n_rows" in case.params and case.kind != "streamed":
            ctx.rows(case.params["n_features"], ctx.largest_rows(case.params["n_features"]))
        deadline = time.perf_counter() + min(case.cap, budget - (time.perf_counter()
                                                                 - clock_start))
        case.result = dict(status="ok", **RUNNERS[case.kind](ctx, case, deadline))
        if time.perf_counter() > deadline + 1.0:
            case.result["over_deadline_s"] = time.perf_counter() - deadline
    except Unavailable as why:
        case.result = {"status": "not available", "reason": str(why)}
    except Exception as exc:                     # recorded; the run goes on
        case.result = {"status": "failed", "error": one_line(exc)}
        traceback.print_exc(file=sys.stderr)
    case.result["case_s"] = time.perf_counter() - started
    try:
        free_gpu_memory()           # the case's frames are gone: its buffers can go
    except Exception:
        pass


def start_watchdog(seconds, recorder, report, current):
    """After ``seconds``: mark the running case failed, write what there is, exit 1."""
    def watchdog():
        case = current.get("case")
        if case is not None and not case.result:
            case.result = {"status": "failed",
                           "error": f"killed by the watchdog: the run went {GRACE_SECONDS:.0f}"
                                    " s past its budget"}
        report["watchdog"] = "the run was ended by the watchdog"
        recorder.write()
        print("watchdog: over the budget; results written, exiting", flush=True)
        os._exit(1)

    timer = threading.Timer(seconds, watchdog)
    timer.daemon = True
    timer.start()
    return timer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one repeat (for numba-cuda's simulator)")
    parser.add_argument("--budget-seconds", type=float, default=330.0)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per case (default 3; 1 with --smoke)")
    args = parser.parse_args(argv)
    clock_start = time.perf_counter()
    repeats = args.repeats or (1 if args.smoke else 3)
    os.makedirs(args.out, exist_ok=True)
    mode = "smoke" if args.smoke else "full"
    sizes = SIZES[mode]
    machine = describe_machine()
    gpu = machine["gpu"]
    progress(clock_start, f"device: {gpu.get('name') or gpu.get('unavailable') or gpu}; "
                          f"{machine['cpu_count']} CPUs; peaks {machine['peaks']}")
    if args.smoke and gpu.get("simulated"):
        from fastvi.kernels.cuda import estep
        for name, value in SIMULATOR_LAUNCH.items():
            setattr(estep, name, value)
        machine["launch_shrunk_for_simulator"] = SIMULATOR_LAUNCH
    machine["launch"] = launch_constants()
    ctx = Context(sizes, repeats, args.smoke, machine, clock_start + args.budget_seconds)
    cases = build_cases(sizes)
    report = {"script": "bench/gpu.py", "mode": mode,
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "argv": sys.argv[1:], "budget_seconds": args.budget_seconds,
              "repeats": repeats, "sizes": sizes, "machine": machine,
              "timing": "wall clock after the stream or device is synchronised, median of "
                        "the repeats after one untimed warm-up; kernel split by CUDA events",
              "flash_gmm_reference": FLASH_GMM}
    recorder = Recorder(args.out, report, cases)
    current = {}
    timer = start_watchdog(args.budget_seconds + GRACE_SECONDS, recorder, report, current)
    progress(clock_start, f"{len(cases)} cases, budget {args.budget_seconds:.0f} s, "
                          f"{repeats} repeats")
    for case in cases:
        current["case"] = case
        run_case(ctx, case, clock_start, args.budget_seconds)
        progress(clock_start, f"{case.name}: {case_line(case)}")
        report["data_seconds"] = ctx.data_seconds
        recorder.write()
    current.pop("case")
    timer.cancel()
    text = recorder.write()
    print(text, flush=True)
    failed = report["failed"]
    progress(clock_start, f"done: {failed} failed; {args.out}/gpu.json, {args.out}/gpu.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
