"""What the cases of ``bench/gpu.py`` share: the case record, timing under a deadline, the
data and parameters (made once per shape), and handing GPU memory back."""
import gc
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from fastvi.data.sources import ArraySource
from fastvi.engine.backend import get_backend, total_stats
from fastvi.mixture.em import kernel_params
from fastvi.mixture.gaussian import precision_cholesky

SEED_DATA, SEED_PARAMS = 0, 1


@dataclass
class Case:
    name: str
    kind: str
    params: dict
    cap: float
    result: dict = field(default_factory=dict)


class Unavailable(Exception):
    """A peer that cannot run here (not installed, no GPU): recorded, not a failure."""


def one_line(exc):
    """``Type: message`` on one line (at most 400 characters)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:400]


def tag(params):
    return f"D={params['n_features']} K={params['n_components']} {params['covariance_type']}"


def median(values):
    return float(np.median(values)) if values else None


# ------------------------------------------------------------------ timing and deadlines

def clock(call, sync=None):
    """``(seconds, value)`` of ``call()``, wall clock (``sync()`` before and after)."""
    if sync:
        sync()
    start = time.perf_counter()
    value = call()
    if sync:
        sync()
    return time.perf_counter() - start, value


def repeated(ctx, call, deadline, warm_up=True):
    """Run ``call()`` once untimed (``warm_up``: it compiles, allocates, initialises; the
    deadline moves by its time, within the budget), then up to ``ctx.repeats`` times
    while the deadline allows (at least once).  ``call`` returns a dict of measures
    (seconds); returns ``(list of those dicts, warm-up seconds or None)``."""
    warm = None
    if warm_up:
        warm = clock(call)[0]
        deadline = ctx.extend(deadline, warm)
    runs = []
    while len(runs) < ctx.repeats and (not runs or time.perf_counter() < deadline):
        runs.append(call())
    return runs, warm


def timed_runs(ctx, call, deadline, warm_up=False, sync=None):
    """``repeated`` of ``call`` timed by ``clock``: ``(runs [{"s": seconds}], warm-up
    seconds or None, what the last call returned)``."""
    last = []

    def one():
        seconds, value = clock(call, sync)
        last[:] = [value]
        return {"s": seconds}

    runs, warm = repeated(ctx, one, deadline, warm_up)
    return runs, warm, last[0]


def summarise(runs, key, n_rows, repeats):
    """times, median and rows/s of ``key`` over ``runs``; notes a cut by the deadline."""
    times = [run[key] for run in runs]
    out = {"times_s": times, "median_s": median(times),
           "rows_per_s": n_rows / median(times) if median(times) else None}
    if len(times) < repeats:
        out["note"] = f"deadline: {len(times)} of {repeats} repeats"
    return out


def rows_for(deadline, seconds_per_row, repeats, step, requested):
    """The most rows (a multiple of ``step``, at least ``step``, at most ``requested``)
    whose ``repeats`` passes fit before ``deadline`` at ``seconds_per_row`` (with 20%
    to spare)."""
    left = max(0.0, deadline - time.perf_counter())
    fit = int(left / (1.2 * repeats * max(seconds_per_row, 1e-12)))
    return int(min(requested, max(step, fit // step * step)))


def reduced(requested, used, why):
    """The note of a case that ran on fewer rows than asked (``why`` follows the rows)."""
    return f"N reduced from {requested:,} to {used:,} rows{why}"


def gpu_pass(X, chunk_rows, params):
    """Seconds of one pass of ``backend="cuda"`` over host rows; and its statistics."""
    backend = get_backend("cuda")
    return clock(lambda: total_stats(backend, ArraySource(X, chunk_rows), params))


def free_gpu_memory():
    """Hand back what dropped buffers held (numba frees them lazily; torch caches them)."""
    gc.collect()
    try:
        from numba import cuda
        cuda.current_context().deallocations.clear()
    except Exception:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ data and parameters

def mixture_blocks(n_rows, n_features, seed, block):
    """float32 rows of a fixed mixture of 16 unit Gaussians (means 2 N(0, 1)), ``block``
    rows at a time."""
    rng = np.random.default_rng(seed)
    centres = (2.0 * rng.standard_normal((16, n_features))).astype(np.float32)
    for start in range(0, n_rows, block):
        rows = np.empty((min(block, n_rows - start), n_features), dtype=np.float32)
        rng.standard_normal(dtype=np.float32, out=rows)
        rows += centres[rng.integers(0, 16, rows.shape[0])]
        yield rows


def mixture_rows(n_rows, n_features, seed=SEED_DATA, block=1 << 20):
    X = np.empty((n_rows, n_features), dtype=np.float32)
    start = 0
    for rows in mixture_blocks(n_rows, n_features, seed, block):
        X[start:start + rows.shape[0]] = rows
        start += rows.shape[0]
    return X


def mixture_params(X, n_components, covariance_type, seed=SEED_PARAMS):
    """KernelParams of a random mixture: Dirichlet weights, means on rows of ``X``, random
    covariances (full: A A^T / D + I / 2; diag: uniform in [0.5, 2])."""
    rng = np.random.default_rng(seed)
    n_features = X.shape[1]
    weights = rng.dirichlet(np.full(n_components, 3.0))
    pool = min(X.shape[0], 1 << 20)
    means = X[rng.choice(pool, n_components, replace=pool < n_components)].astype(np.float64)
    if covariance_type == "full":
        A = rng.standard_normal((n_components, n_features, n_features))
        cov = A @ A.transpose(0, 2, 1) / n_features + 0.5 * np.eye(n_features)
    else:
        cov = rng.uniform(0.5, 2.0, (n_components, n_features))
    return kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                         covariance_type)


class Context:
    """What the cases share: sizes, repeats, data (made once per shape), results."""

    def __init__(self, sizes, repeats, smoke, machine, budget_end):
        self.sizes, self.repeats, self.smoke, self.machine = sizes, repeats, smoke, machine
        self.budget_end = budget_end    # perf_counter() at which the budget is spent
        self.data_seconds = 0.0
        self._rows, self._params = {}, {}
        self.fastvi_nk = {}         # tag -> N_k of the kernel case's chunk (peers check it)

    def rows(self, n_features, n_rows):
        """The first ``n_rows`` rows of the data set of ``n_features`` (made once, at the
        largest size asked for first)."""
        X = self._rows.get(n_features)
        if X is None or X.shape[0] < n_rows:
            self._rows[n_features] = None       # free the smaller one first
            seconds, X = clock(lambda: mixture_rows(n_rows, n_features))
            self._rows[n_features] = X
            self.data_seconds += seconds
            print(f"    made {n_rows:,} x {n_features} rows in {seconds:.1f} s", flush=True)
        return X[:n_rows]

    def extend(self, deadline, seconds):
        """``deadline`` moved ``seconds`` later (for a warm-up), but not past the budget."""
        return min(deadline + seconds, self.budget_end)

    def params(self, p):
        key = (p["n_features"], p["n_components"], p["covariance_type"])
        if key not in self._params:
            X = self.rows(p["n_features"], self.largest_rows(p["n_features"]))
            self._params[key] = mixture_params(X, p["n_components"], p["covariance_type"])
        return self._params[key]

    def largest_rows(self, n_features):
        """The rows any case asks of the data set of ``n_features`` (made at that size)."""
        sizes = self.sizes
        largest = [sizes["n_rows"]] if any(d == n_features for d, _, _ in sizes["grid"]) else []
        if sizes["flash"]["n_features"] == n_features:
            largest.append(sizes["flash"]["n_rows"])
        return max(largest + [sizes["chunk_rows"]])
