"""The fused E-step: log-densities, log-sum-exp, responsibilities and sufficient statistics.

Every algorithm in fastvi (EM, VB-EM, and later the streaming ones) calls one of the two
kernels below, once per chunk of rows.  A component is given in the canonical form of
DESIGN.md,

    log rho_nk = c_k - 1/2 || U_k^T (x_n - m_k) ||^2 ,

where ``U_k`` is an upper-triangular factor with ``U_k U_k^T`` equal to the precision (the
``precisions_cholesky_`` of scikit-learn) or, for the ``diag`` kernel, the square root of
a diagonal precision.  EM passes ``c_k = log pi_k + log|U_k| - D/2 log 2 pi``; VB-EM passes
the expectations of Bishop (2006) eq. 10.64-10.66 (see ``fastvi/_vb.py``).

The statistics are *centred* about ``m_k`` (the same difference ``x_n - m_k`` the density
needed, so the centring costs nothing):

    N_k  += sum_n w_n r_nk
    s1_k += sum_n w_n r_nk (x_n - m_k)
    s2_k += sum_n w_n r_nk (x_n - m_k)(x_n - m_k)^T     (its diagonal for ``diag``)

Only the upper triangle of ``s2`` is accumulated; the caller mirrors it
(``fastvi._stats.SufficientStats``).

Determinism: rows are cut into blocks of ``BLOCK_ROWS``; each block adds into its own slot;
slots are added into the outputs in block order, ``GROUP_BLOCKS`` blocks at a time (which
bounds the scratch memory).  No float is ever summed in an order that depends on the number
of threads, so results are bit-identical for any ``NUMBA_NUM_THREADS``.

Optional inputs and outputs are passed as arrays of length 0 when not wanted (the
statistics too):
``sample_weight`` (n,), ``log_norm_out`` (n,), ``resp_out`` (n, K), ``labels_out`` (n,).
All float accumulation is in float64 whatever the dtype of ``X`` (float32 or float64).
"""
import math

import numpy as np
from numba import njit, prange

BLOCK_ROWS = 256
GROUP_BLOCKS = 32

# 'reassoc' lets LLVM vectorise the short dot products; 'nnan' and 'ninf' are left out on
# purpose, so a NaN or an underflowed -inf keeps its IEEE meaning.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_KERNEL = dict(parallel=True, nogil=True, cache=True, fastmath=_FASTMATH)
_INNER = dict(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")


@njit(**_INNER)
def _log_sum_exp(log_rho):
    """Stable log sum_k exp(log_rho[k]); -inf when every entry is -inf."""
    top = -np.inf
    for k in range(log_rho.shape[0]):
        if log_rho[k] > top:
            top = log_rho[k]
    if top == -np.inf:
        return top
    total = 0.0
    for k in range(log_rho.shape[0]):
        total += math.exp(log_rho[k] - top)
    return top + math.log(total)


@njit(**_INNER)
def _log_rho_full(x, c, means, prec_chol, diff, y, log_rho):
    """log rho_k for one row; leaves x - m_k in diff[k] for the statistics."""
    n_components, n_features = means.shape
    for k in range(n_components):
        for i in range(n_features):
            diff[k, i] = x[i] - means[k, i]
            y[i] = 0.0
        # y = U_k^T diff, U_k upper triangular: y_j = sum_{i <= j} diff_i U_k[i, j]
        for i in range(n_features):
            d = diff[k, i]
            for j in range(i, n_features):
                y[j] += d * prec_chol[k, i, j]
        sq = 0.0
        for j in range(n_features):
            sq += y[j] * y[j]
        log_rho[k] = c[k] - 0.5 * sq


@njit(**_INNER)
def _log_rho_diag(x, c, means, prec_sqrt, diff, log_rho):
    n_components, n_features = means.shape
    for k in range(n_components):
        sq = 0.0
        for i in range(n_features):
            d = x[i] - means[k, i]
            diff[k, i] = d
            t = d * prec_sqrt[k, i]
            sq += t * t
        log_rho[k] = c[k] - 0.5 * sq


@njit(**_INNER)
def _emit_row(row, log_rho, lse, log_norm_out, resp_out, labels_out):
    """Write the per-row outputs that the caller asked for."""
    if log_norm_out.shape[0] > 0:
        log_norm_out[row] = lse
    if resp_out.shape[0] > 0:
        for k in range(log_rho.shape[0]):
            resp_out[row, k] = math.exp(log_rho[k] - lse) if lse > -np.inf else 0.0
    if labels_out.shape[0] > 0:
        best = 0
        for k in range(1, log_rho.shape[0]):
            if log_rho[k] > log_rho[best]:
                best = k
        labels_out[row] = best


@njit(**_INNER)
def _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2):
    """Add the per-block slots into the outputs, in block order; return the lse sum."""
    total = 0.0
    for b in range(n_slots):
        total += slot_lse[b]
        nk += slot_n[b]
        s1 += slot_s1[b]
        s2 += slot_s2[b]
    return total


@njit(**_KERNEL)
def estep_full(X, sample_weight, c, means, prec_chol, nk, s1, s2,
               log_norm_out, resp_out, labels_out):
    """Fused E-step for full (and tied) precision factors.

    Parameters
    ----------
    X : (n, D) float32 or float64, C-contiguous, may be read-only
    sample_weight : (n,) float64, or (0,) for unit weights
    c : (K,) float64
    means : (K, D) float64
    prec_chol : (K, D, D) float64, upper triangular, U_k U_k^T = precision
    nk, s1, s2 : (K,), (K, D), (K, D, D) float64 accumulators, added into (upper triangle
        of s2 only); pass them with K = 0 to skip the statistics
    log_norm_out, resp_out, labels_out : optional per-row outputs (length 0 to skip)

    Returns
    -------
    float : sum_n w_n log sum_k rho_nk
    """
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    weighted = sample_weight.shape[0] > 0
    want_stats = nk.shape[0] > 0
    n_acc = n_components if want_stats else 0
    slot_lse = np.zeros(GROUP_BLOCKS)
    slot_n = np.zeros((GROUP_BLOCKS, n_acc))
    slot_s1 = np.zeros((GROUP_BLOCKS, n_acc, n_features))
    slot_s2 = np.zeros((GROUP_BLOCKS, n_acc, n_features, n_features))
    total = 0.0
    for first in range(0, n_blocks, GROUP_BLOCKS):
        n_slots = min(GROUP_BLOCKS, n_blocks - first)
        for b in prange(n_slots):
            slot_lse[b] = 0.0
            slot_n[b, :] = 0.0
            slot_s1[b, :, :] = 0.0
            slot_s2[b, :, :, :] = 0.0
            diff = np.empty((n_components, n_features))
            y = np.empty(n_features)
            log_rho = np.empty(n_components)
            start = (first + b) * BLOCK_ROWS
            for row in range(start, min(start + BLOCK_ROWS, n_rows)):
                _log_rho_full(X[row], c, means, prec_chol, diff, y, log_rho)
                lse = _log_sum_exp(log_rho)
                w = sample_weight[row] if weighted else 1.0
                slot_lse[b] += w * lse
                _emit_row(row, log_rho, lse, log_norm_out, resp_out, labels_out)
                if not want_stats or lse == -np.inf:
                    continue
                for k in range(n_components):
                    r = w * math.exp(log_rho[k] - lse)
                    if r == 0.0:
                        continue
                    slot_n[b, k] += r
                    for i in range(n_features):
                        rd = r * diff[k, i]
                        slot_s1[b, k, i] += rd
                        for j in range(i, n_features):
                            slot_s2[b, k, i, j] += rd * diff[k, j]
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
    return total


@njit(**_KERNEL)
def estep_diag(X, sample_weight, c, means, prec_sqrt, nk, s1, s2,
               log_norm_out, resp_out, labels_out):
    """Fused E-step for diagonal (and spherical) precisions.

    As :func:`estep_full`, with ``prec_sqrt`` (K, D) the square roots of the diagonal
    precisions and ``s2`` (K, D) the diagonal of the centred second moments.
    """
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    weighted = sample_weight.shape[0] > 0
    want_stats = nk.shape[0] > 0
    n_acc = n_components if want_stats else 0
    slot_lse = np.zeros(GROUP_BLOCKS)
    slot_n = np.zeros((GROUP_BLOCKS, n_acc))
    slot_s1 = np.zeros((GROUP_BLOCKS, n_acc, n_features))
    slot_s2 = np.zeros((GROUP_BLOCKS, n_acc, n_features))
    total = 0.0
    for first in range(0, n_blocks, GROUP_BLOCKS):
        n_slots = min(GROUP_BLOCKS, n_blocks - first)
        for b in prange(n_slots):
            slot_lse[b] = 0.0
            slot_n[b, :] = 0.0
            slot_s1[b, :, :] = 0.0
            slot_s2[b, :, :] = 0.0
            diff = np.empty((n_components, n_features))
            log_rho = np.empty(n_components)
            start = (first + b) * BLOCK_ROWS
            for row in range(start, min(start + BLOCK_ROWS, n_rows)):
                _log_rho_diag(X[row], c, means, prec_sqrt, diff, log_rho)
                lse = _log_sum_exp(log_rho)
                w = sample_weight[row] if weighted else 1.0
                slot_lse[b] += w * lse
                _emit_row(row, log_rho, lse, log_norm_out, resp_out, labels_out)
                if not want_stats or lse == -np.inf:
                    continue
                for k in range(n_components):
                    r = w * math.exp(log_rho[k] - lse)
                    if r == 0.0:
                        continue
                    slot_n[b, k] += r
                    for i in range(n_features):
                        rd = r * diff[k, i]
                        slot_s1[b, k, i] += rd
                        slot_s2[b, k, i] += rd * diff[k, i]
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
    return total
