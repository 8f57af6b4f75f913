"""The entropy that merging pairs of components would take from q(z) (merge moves).

For each pair (j, k) of ``pairs``:

    L_jk = sum_n w_n [ (r_nj + r_nk) log(r_nj + r_nk) - r_nj log r_nj - r_nk log r_nk ],

0 log 0 = 0 (Hughes & Sudderth 2013, section 4.2; ``fastvi.mixture.moves``).  The
responsibilities come transposed, one contiguous row per component, so that every loop
runs over the rows and vectorises; the logs are the E-step's vectorised ``_log_rows``
(NumPy's ``log`` took ~14 ns a value here on responsibilities, many of them tiny).
``_log_rows`` does not handle subnormal inputs (its log of one is off by up to ~35 nats),
which responsibilities can be; but such an x has |x log x| < 2e-305, so the loss moves
by less than that per row.  The components, then the pairs, are shared out among the
threads; each sum runs over the rows in order inside one thread, so the bits do not
depend on the thread count.
"""
import numpy as np
from numba import njit, prange

from .estep import _log_rows

_LOSS = dict(nogil=True, cache=True, fastmath={"nsz", "arcp", "contract", "reassoc"},
             error_model="numpy")


@njit(**_LOSS)
def _x_log_x(values, out, scratch):
    """out = values log values, 0 where values == 0."""
    n = values.shape[0]
    _log_rows(values, scratch, n)
    for t in range(n):
        v = values[t]
        out[t] = v * scratch[t] if v > 0.0 else 0.0


@njit(parallel=True, **_LOSS)
def pair_entropy_loss(resp_t, pairs, weights):
    """L_jk of each pair (P, 2) for responsibilities ``resp_t`` (K, n), row weights
    ``weights`` (n,) (length 0 for unit weights); returns (P,) float64."""
    n_components, n = resp_t.shape
    r_log_r = np.empty((n_components, n))
    for k in prange(n_components):
        _x_log_x(resp_t[k], r_log_r[k], np.empty(n))
    loss = np.empty(pairs.shape[0])
    unit = weights.shape[0] == 0
    for p in prange(pairs.shape[0]):
        a, b = pairs[p, 0], pairs[p, 1]
        ra, rb = resp_t[a], resp_t[b]
        merged = np.empty(n)
        for t in range(n):
            merged[t] = ra[t] + rb[t]
        merged_log = np.empty(n)
        _x_log_x(merged, merged_log, np.empty(n))
        la, lb = r_log_r[a], r_log_r[b]
        total = 0.0
        for t in range(n):
            w = 1.0 if unit else weights[t]
            total += w * (merged_log[t] - la[t] - lb[t])
        loss[p] = total
    return loss
