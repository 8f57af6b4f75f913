"""The report of ``bench/gpu.py``: the machine it ran on, the figures derived from the
cases (peaks, ratios), and ``gpu.json`` / ``gpu.md`` (rewritten after every case)."""
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import threading
import time

import numpy as np

from gpu_common import one_line, tag

# NVIDIA datasheet figures: FP32, FP64 (non-tensor) TFLOP/s, memory TB/s.  Matched by a
# fragment of the device name; PCIe and NVL boards (other clocks and memory) get null.
PEAKS = (
    ("H200", {"fp32_tflops": 67.0, "fp64_tflops": 34.0, "memory_tb_s": 4.8}),
    ("H100 80GB HBM3", {"fp32_tflops": 67.0, "fp64_tflops": 34.0, "memory_tb_s": 3.35}),
    ("H100 SXM", {"fp32_tflops": 67.0, "fp64_tflops": 34.0, "memory_tb_s": 3.35}),
)
PEER_KINDS = ("torch_float32", "torch_float64", "sklearn", "cpu")
PACKAGES = ("numpy", "numba", "numba-cuda", "cuda-python", "cuda-bindings", "torch",
            "scikit-learn", "scipy", "h5py", "cupy-cuda12x", "cupy-cuda13x", "cupy",
            "array-api-compat", "fastvi")
LAUNCH = ("ROW_THREADS", "ENTRY_THREADS", "REDUCE_THREADS", "GROUP_ROWS", "ROW_TILE",
          "SHARED_BYTES")


# ------------------------------------------------------------------- machine description

def _or_none(get):
    """``get()``, or None where it raises."""
    try:
        return get()
    except Exception:
        return None


def package_versions():
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def describe_gpu():
    """Name, SMs, compute capability, memory and driver/runtime versions as numba-cuda
    gives them; ``error`` where the driver does not start."""
    out = {}
    try:
        from numba import cuda
        from fastvi.engine import cuda as engine
        out["simulated"] = engine.simulated()
        out["unavailable"] = engine.unavailable_reason()
        if out["unavailable"] is not None:
            return out
        device = cuda.get_current_device()
        name = getattr(device, "name", None)
        out["name"] = (name.decode() if isinstance(name, bytes) else name) or (
            "numba-cuda simulator" if out["simulated"] else None)
        for key, attribute in (("sm_count", "MULTIPROCESSOR_COUNT"),
                               ("clock_khz", "CLOCK_RATE"),
                               ("memory_clock_khz", "MEMORY_CLOCK_RATE"),
                               ("memory_bus_bits", "GLOBAL_MEMORY_BUS_WIDTH")):
            out[key] = _or_none(lambda: int(getattr(device, attribute)))
        out["compute_capability"] = list(device.compute_capability)
        out["memory_bytes"] = _or_none(
            lambda: int(cuda.current_context().get_memory_info()[1]))
        for part in ("driver", "runtime"):
            module = f"numba.cuda.cudadrv.{part}"
            out[f"{part}_version"] = _or_none(
                lambda: list(getattr(importlib.import_module(module), part).get_version()))
    except Exception as exc:
        out["error"] = one_line(exc)
    return out


def nvidia_smi():
    """nvidia-smi's line for the GPU (board, driver, clocks, power limit), or None."""
    query = "name,driver_version,clocks.max.sm,clocks.max.mem,power.limit,memory.total"
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=15)
        return dict(zip(query.split(","), (v.strip() for v in done.stdout.split(",")))) \
            if done.returncode == 0 and done.stdout.strip() else None
    except Exception:
        return None


def peaks_for(name):
    if not name or "PCIe" in name or "NVL" in name:
        return None
    for fragment, peaks in PEAKS:
        if fragment in name:
            return dict(peaks, matched=fragment)
    return None


def describe_machine():
    import numba
    gpu = describe_gpu()
    return {"gpu": gpu, "nvidia_smi": nvidia_smi(), "peaks": peaks_for(gpu.get("name")),
            "cpu_count": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": package_versions()}


def launch_constants():
    """The CUDA kernels' launch shapes (``fastvi.kernels.cuda.estep``), or the error."""
    try:
        from fastvi.kernels.cuda import estep
        return {name: getattr(estep, name) for name in LAUNCH}
    except Exception as exc:
        return {"error": one_line(exc)}


# ------------------------------------------------------------------------ derived figures

def derived_figures(p, n_rows, seconds, log_rho_seconds, peaks):
    """FLOP/s of the log-rho kernel (full) or bytes/s of the chunk (diag), and their
    fractions of the peaks (None where a peak or a time is unknown)."""
    D, K = p["n_features"], p["n_components"]

    def of_peak(rate, key, unit):
        return rate / (peaks[key] * unit) if peaks else None

    if p["covariance_type"] == "full":
        flops = n_rows * K * (D * (D + 1) + 2 * D)
        out = {"log_rho_flop": flops, "flop_count":
               "N K (D (D + 1) + 2 D): D (D + 1) / 2 + D multiply-adds, 2 FLOP each"}
        if log_rho_seconds:
            rate = flops / log_rho_seconds
            out.update(log_rho_flop_per_s=rate,
                       fraction_of_fp64_peak=of_peak(rate, "fp64_tflops", 1e12),
                       fraction_of_fp32_peak=of_peak(rate, "fp32_tflops", 1e12))
        return out
    moved = n_rows * D * 4 + 2 * n_rows * K * 8
    out = {"bytes_moved": moved,
           "byte_count": "N D 4 (rows read once) + 2 N K 8 (log rho written, read back)"}
    if seconds:
        out.update(bytes_per_s=moved / seconds,
                   fraction_of_bandwidth=of_peak(moved / seconds, "memory_tb_s", 1e12))
    if log_rho_seconds:
        rate = (n_rows * D * 4 + n_rows * K * 8) / log_rho_seconds
        out.update(log_rho_bytes_per_s=rate,
                   log_rho_fraction_of_bandwidth=of_peak(rate, "memory_tb_s", 1e12))
    return out


def derive_ratios(cases):
    """fastvi's rows/s over each peer's; the streamed pass against the in-memory one."""
    by_name = {case.name: case.result for case in cases}

    def rate(kind, p):
        return by_name.get(f"{kind} {tag(p)}", {}).get("rows_per_s")

    def over(mine, theirs):
        return mine / theirs if mine else None

    for case in cases:
        r, p = case.result, case.params
        if r.get("status") != "ok":
            continue
        if case.kind in PEER_KINDS:
            kernel = rate("flash_gmm" if p.get("flash") else "kernel", p)
            r["ratios"] = {
                "fastvi_kernel_over_peer": over(kernel, r["rows_per_s"]),
                "fastvi_end_to_end_over_peer": over(rate("end_to_end", p), r["rows_per_s"])}
        if case.kind in ("streamed", "end_to_end_small_chunks"):
            memory = rate("end_to_end", p)
            key = ("streamed_over_in_memory" if case.kind == "streamed"
                   else "small_chunks_over_large_chunks")
            r["ratios"] = {key: r["rows_per_s"] / memory if memory else None}


# ----------------------------------------------------------------------------- Markdown

def si(value, unit=""):
    if value is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def fmt(value, spec, scale=1, suffix=""):
    return "-" if value is None else f"{value * scale:{spec}}{suffix}"


def ms(value):
    return fmt(value, ".4g", 1e3)


def pct(value):
    return fmt(value, ".3g", 100, "%")


def ratio(value):
    return fmt(value, ".3g", 1, "x")


def status_text(r):
    if r.get("status") == "ok":
        return None
    return f"{r.get('status')}: {r.get('reason') or r.get('error') or ''}".strip()


def timing(r):
    """The case's median in ms, or why it has none."""
    return status_text(r) or ms(r.get("median_s"))


def table(title, header, rows):
    """A Markdown section: a heading and a table (``header`` and each row: cells)."""
    return (["", f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |" for row in rows])


def derived_text(p, d):
    if p["covariance_type"] == "full":
        return (f"log rho {si(d.get('log_rho_flop_per_s'), 'FLOP/s')}, "
                f"{pct(d.get('fraction_of_fp64_peak'))} of FP64, "
                f"{pct(d.get('fraction_of_fp32_peak'))} of FP32")
    return f"{si(d.get('bytes_per_s'), 'B/s')}, {pct(d.get('fraction_of_bandwidth'))} of bandwidth"


def peer_note(case):
    r = case.result
    note = status_text(r) or r.get("note") or (
        f"on {r['device']}" if r.get("device") not in (None, "cuda") else "")
    if case.kind == "cpu" and r.get("max_rel_diff_vs_gpu") is not None:
        note = (note + "; " if note else "") + f"stats vs GPU {r['max_rel_diff_vs_gpu']:.1e}"
    return note


def markdown(report, cases):
    m, sizes = report["machine"], report["sizes"]
    gpu = m["gpu"]
    facts = [f"{gpu[key]} {label}" for key, label in (
        ("sm_count", "SMs"), ("compute_capability", "compute capability"),
        ("driver_version", "driver"), ("runtime_version", "runtime (NVRTC)"))
        if gpu.get(key) is not None]
    device = (f"{gpu['name']} ({', '.join(facts)})" if gpu.get("name") else
              f"no GPU ({gpu.get('unavailable') or gpu.get('error')})")
    v = m["versions"]
    lines = [
        "# fastvi CUDA backend benchmark", "",
        f"Device: {device}; {m['cpu_count']} CPUs; numba {v['numba']}, numba-cuda "
        f"{v['numba-cuda']}, torch {v['torch']}, scikit-learn {v['scikit-learn']}.  "
        f"Peaks: {m['peaks'] or 'not known for this GPU'}.", "",
        f"Mode {report['mode']}; {report['started']}.  Rows float32 (arithmetic float64); "
        f"end to end over N = {sizes['n_rows']:,} host rows (or fewer: see 'rows') in "
        f"chunks of {sizes['chunk_rows']:,}; kernel alone and the peers on one chunk "
        f"({sizes['chunk_rows']:,} rows) already on the device.  Times are medians of "
        f"{report['repeats']} repeats after one warm-up; ms per pass or chunk.  "
        f"Budget {report['budget_seconds']:.0f} s, used {report['elapsed_s']:.0f} s."]
    by_name = {case.name: case.result for case in cases}
    rows = []
    for case in (c for c in cases if c.kind == "kernel"):
        k, p = case.result, case.params
        e = by_name.get(f"end_to_end {tag(p)}", {})
        split = k.get("split_s", {})
        rows.append([
            tag(p), timing(k), si(k.get("rows_per_s")),
            f"{ms(split.get('log_rho_s'))} / {ms(split.get('normalise_s'))} / "
            f"{ms(split.get('moments_and_reduce_s'))}",
            fmt(e.get("n_rows_used"), ","), timing(e), si(e.get("rows_per_s")),
            "-" if status_text(k) else derived_text(p, k.get("derived", {}))])
    lines += table("fastvi on the GPU",
                   ["config", "kernel ms", "kernel rows/s", "log rho / lse / moments ms",
                    "rows e2e", "e2e ms", "e2e rows/s", "derived"], rows)
    for case in cases:
        r, p = case.result, case.params
        ratios = r.get("ratios", {})
        if case.kind == "end_to_end_small_chunks":
            lines += table("End to end with fastvi's default chunk size",
                           ["config", "chunk rows", "rows", "ms", "rows/s",
                            "vs 1M-row chunks"],
                           [[tag(p), f"{p['chunk_rows']:,}", fmt(r.get("n_rows_used"), ","),
                             timing(r), si(r.get("rows_per_s")),
                             ratio(ratios.get("small_chunks_over_large_chunks"))]])
        if case.kind == "flash_gmm":
            lines += table("Flash-GMM's size (kernel alone)",
                           ["config", "rows", "ms", "rows/s", "reference",
                            "fastvi / reference time"],
                           [[tag(p), f"{p['n_rows']:,}", timing(r), si(r.get("rows_per_s")),
                             report["flash_gmm_reference"]["what"],
                             ratio(r.get("time_over_reference"))]])
        if case.kind == "streamed":
            lines += table("Streamed from HDF5 (page cache), end to end",
                           ["config", "rows", "file", "write s", "pass ms", "rows/s",
                            "vs in memory"],
                           [[tag(p), fmt(r.get("n_rows_used"), ","),
                             si(r.get("file_bytes"), "B"), fmt(r.get("write_s"), ".1f"),
                             timing(r), si(r.get("rows_per_s")),
                             ratio(ratios.get("streamed_over_in_memory"))]])
    lines += table(
        "Peers (same rows and parameters, one E-step with statistics)",
        ["config", "peer", "rows", "ms", "rows/s", "fastvi kernel / peer",
         "fastvi e2e / peer", "note"],
        [[tag(c.params), c.kind, fmt(c.result.get("n_rows_used", c.params["n_rows"]), ","),
          ms(c.result.get("median_s")), si(c.result.get("rows_per_s")),
          ratio(c.result.get("ratios", {}).get("fastvi_kernel_over_peer")),
          ratio(c.result.get("ratios", {}).get("fastvi_end_to_end_over_peer")),
          peer_note(c)] for c in cases if c.kind in PEER_KINDS])
    notes = [f"* {case.name}: {case.result['reduced']}" for case in cases
             if case.result.get("reduced")]
    bad = [f"* {case.name}: {status_text(case.result)}" for case in cases
           if case.result.get("status") in ("failed", "skipped")]
    if notes:
        lines += ["", "## Sizes reduced to fit the budget", ""] + notes
    if bad:
        lines += ["", "## Failed or skipped", ""] + bad
    return "\n".join(lines) + "\n"


def case_line(case):
    """One line of progress for a case that has run."""
    r = case.result
    if r["status"] != "ok":
        return status_text(r)
    parts = [f"median {ms(r.get('median_s'))} ms of {len(r.get('times_s', []))}",
             f"{si(r.get('rows_per_s'), 'rows/s')}"]
    if r.get("n_rows_used") is not None:
        parts.insert(0, f"{r['n_rows_used']:,} rows")
    if r.get("reduced"):
        parts.append("(reduced)")
    return ", ".join(parts)


# --------------------------------------------------------------------------------- files

class Recorder:
    """Writes gpu.json and gpu.md (after every case, and from the watchdog)."""

    def __init__(self, out, report, cases):
        self.out, self.report, self.cases = out, report, cases
        self.lock = threading.Lock()
        self.start = time.perf_counter()

    def write(self):
        with self.lock:
            derive_ratios(self.cases)
            self.report["elapsed_s"] = time.perf_counter() - self.start
            self.report["cases"] = [dict(name=c.name, kind=c.kind, cap_s=c.cap,
                                         params=c.params, **c.result) for c in self.cases]
            self.report["failed"] = sum(c.result.get("status") == "failed"
                                        for c in self.cases)
            text = markdown(self.report, self.cases)
            _atomic_write(os.path.join(self.out, "gpu.json"),
                          json.dumps(self.report, indent=1, default=_jsonable))
            _atomic_write(os.path.join(self.out, "gpu.md"), text)
            return text


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _atomic_write(path, text):
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
