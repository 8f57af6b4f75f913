"""The peers of ``bench/gpu.py``: one E-step with statistics on the kernel case's rows and
parameters, by plain PyTorch (float32 and float64), scikit-learn's array-API
GaussianMixture on torch tensors, and fastvi's local (CPU) backend."""
import os
import warnings

import numpy as np

from fastvi.data.sources import DEFAULT_CHUNK_ROWS, ArraySource
from fastvi.engine.backend import get_backend, total_stats
from gpu_common import (Unavailable, clock, free_gpu_memory, gpu_pass, one_line, reduced,
                        repeated, rows_for, summarise, tag, timed_runs)

TORCH_BLOCK_ELEMENTS = 1 << 27   # the PyTorch peer's (rows x K x D) temporaries, at most


def import_torch(ctx):
    """torch, the device its peers run on ("cuda"; "cpu" only in a smoke run), and the
    call that waits for that device."""
    try:
        import torch
    except Exception as exc:
        raise Unavailable(f"torch does not import ({one_line(exc)})") from None
    if torch.cuda.is_available():
        return torch, "cuda", torch.cuda.synchronize
    if ctx.smoke:
        return torch, "cpu", None
    raise Unavailable("torch sees no CUDA device")


def torch_estep(torch, X, c, means, factor, full, block_rows):
    """One E-step with statistics in plain PyTorch: N_k, s1 = sum r x, s2 = sum r x x^T (or
    its diagonal), sum of log-normalisers.  The Mahalanobis terms by matmul: for full,
    y_k = x U_k (all K at once, x @ [U_1 ... U_K]) less m_k U_k; for diag, the expansion
    sum_d u_kd^2 (x_d^2 - 2 x_d m_kd + m_kd^2).  ``block_rows`` rows at a time."""
    K, D = means.shape
    nk = torch.zeros(K, dtype=X.dtype, device=X.device)
    s1 = torch.zeros(K, D, dtype=X.dtype, device=X.device)
    s2 = torch.zeros((K, D, D) if full else (K, D), dtype=X.dtype, device=X.device)
    log_norm = torch.zeros((), dtype=X.dtype, device=X.device)
    if full:
        U = factor.permute(1, 0, 2).reshape(D, K * D)
        mU = torch.einsum("ki,kij->kj", means, factor)
    else:
        P = factor * factor
        mP = means * P
        const = (means * mP).sum(dim=1)
    for start in range(0, X.shape[0], block_rows):
        x = X[start:start + block_rows]
        if full:
            y = (x @ U).view(-1, K, D) - mU
            quad = (y * y).sum(dim=2)
        else:
            quad = (x * x) @ P.T - 2.0 * (x @ mP.T) + const
        lr = c - 0.5 * quad
        lse = torch.logsumexp(lr, dim=1)
        resp = torch.exp(lr - lse[:, None])
        nk += resp.sum(dim=0)
        s1 += resp.T @ x
        if full:
            weighted = (resp[:, :, None] * x[:, None, :]).reshape(x.shape[0], K * D)
            s2 += (weighted.T @ x).view(K, D, D)
        else:
            s2 += resp.T @ (x * x)
        log_norm += lse.sum()
    return nk, s1, s2, log_norm


def nk_difference(nk, reference):
    """max |N_k - N_k(fastvi)| / N, or None without the fastvi figure."""
    if reference is None:
        return None
    return float(np.max(np.abs(np.asarray(nk, dtype=np.float64) - reference))
                 / max(reference.sum(), 1.0))


def run_torch(ctx, case, deadline):
    p = case.params
    torch, device, sync = import_torch(ctx)
    dtype = torch.float32 if p["arithmetic"] == "float32" else torch.float64
    params = ctx.params(p)
    X = torch.from_numpy(ctx.rows(p["n_features"], p["n_rows"])).to(device).to(dtype)
    c, means, factor = (torch.from_numpy(a).to(device).to(dtype)
                        for a in (params.c, params.means, params.factor))
    K, D = params.means.shape
    per_row = K * D if params.full else K       # the largest temporaries, per row
    block = max(1, min(X.shape[0], TORCH_BLOCK_ELEMENTS // per_row))
    with torch.no_grad():
        runs, warm, last = timed_runs(
            ctx, lambda: torch_estep(torch, X, c, means, factor, params.full, block),
            deadline, warm_up=True, sync=sync)
    out = summarise(runs, "s", p["n_rows"], ctx.repeats)
    out.update(warm_up_s=warm, device=device, block_rows=block,
               float32_matmul_precision=torch.get_float32_matmul_precision(),
               nk_max_diff_over_rows=nk_difference(last[0].double().cpu().numpy(),
                                                   ctx.fastvi_nk.get(tag(p))))
    return out


def run_sklearn(ctx, case, deadline):
    """scikit-learn's array-API GaussianMixture on torch tensors: fit(max_iter=1) over the
    E-steps it ran (the loop's and the final one; its M-steps are in the time too)."""
    p = case.params
    torch, device, sync = import_torch(ctx)
    try:
        import sklearn
        from sklearn.mixture import GaussianMixture
    except Exception as exc:
        raise Unavailable(f"scikit-learn does not import ({one_line(exc)})") from None
    version = tuple(int(v) for v in sklearn.__version__.split(".")[:2] if v.isdigit())
    if version < (1, 8):
        raise Unavailable(f"scikit-learn {sklearn.__version__} has no array-API "
                          "GaussianMixture (1.8 or later)")
    if os.environ.get("SCIPY_ARRAY_API") != "1":
        raise Unavailable("SCIPY_ARRAY_API is set to something else than 1")
    X = torch.from_numpy(ctx.rows(p["n_features"], p["n_rows"])).to(device)
    K = p["n_components"]
    e_steps = []

    def fit(rows):
        model = GaussianMixture(K, covariance_type=p["covariance_type"], max_iter=1, tol=0.0,
                                init_params="random_from_data", random_state=0)
        with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, _ = clock(lambda: model.fit(rows), sync)
        e_steps[:] = [model.n_iter_ + 1]
        return {"s": seconds}

    try:
        warm = fit(X[:min(X.shape[0], max(8192, 4 * K))])["s"]
        runs, _ = repeated(ctx, lambda: fit(X), ctx.extend(deadline, warm), warm_up=False)
    except Exception as exc:
        raise Unavailable(f"it raised {one_line(exc)}") from None
    out = summarise(runs, "s", p["n_rows"], ctx.repeats)
    out.update(warm_up_s=warm, device=device, e_steps_per_fit=e_steps[0],
               fit_rows_per_s=out["rows_per_s"])
    out["rows_per_s"] = out["rows_per_s"] * e_steps[0]
    out["counted"] = ("rows x E-steps per fit / fit time; the fit's initial M-step and "
                      "the M-step after its E-step are in the time")
    return out


def stats_difference(a, b):
    """The largest difference of N_k, s1 and s2, relative to the largest entry of each."""
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300))
               for x, y in ((a.nk, b.nk), (a.s1, b.s1), (a.s2, b.s2)))


def run_cpu(ctx, case, deadline):
    """fastvi's local backend (Numba, all cores) on a subset, scaled to rows/s; its
    statistics against the GPU's on the same rows."""
    p = case.params
    X = ctx.rows(p["n_features"], p["n_rows"])
    params = ctx.params(p)
    backend = get_backend("local")
    probe_rows = min(p["n_rows"], DEFAULT_CHUNK_ROWS)

    def one_pass(rows):
        return total_stats(backend, ArraySource(X[:rows]), params)

    warm, _ = clock(lambda: one_pass(probe_rows))  # compiles without Numba's cache
    probe, probe_stats = clock(lambda: one_pass(probe_rows))
    deadline = ctx.extend(deadline, warm)
    n_rows = rows_for(deadline, probe / probe_rows, ctx.repeats, probe_rows, p["n_rows"])
    runs, _, _ = timed_runs(ctx, lambda: one_pass(n_rows), deadline)
    out = summarise(runs, "s", n_rows, ctx.repeats)
    out.update(warm_up_s=warm, n_rows_used=n_rows, chunk_rows=DEFAULT_CHUNK_ROWS,
               threads=__import__("numba").get_num_threads())
    if n_rows < p["n_rows"]:
        out["reduced"] = reduced(p["n_rows"], n_rows,
                                 f" to fit the case's {case.cap:.0f} s share")
    try:        # the same rows on the GPU: the two backends agree to rounding
        _, gpu = gpu_pass(X[:probe_rows], p["chunk_rows"], params)
        out["max_rel_diff_vs_gpu"] = stats_difference(gpu, probe_stats)
        out["checked_rows"] = probe_rows
    except Exception as exc:
        out["max_rel_diff_vs_gpu"] = None
        out["gpu_check_error"] = one_line(exc)
    free_gpu_memory()
    return out
