"""The E-step of rows with missing entries (NaN): the missing coordinates as latent variables.

Ghahramani & Jordan (1994), "Supervised learning from incomplete data via an EM approach":
with x_n = (x_o, x_m) and a component in the canonical form of ``estep.py``,
``log rho_k(x) = c_k - 1/2 ||U_k^T (x - m_k)||^2`` with precision Lambda_k = U_k U_k^T,
the missing coordinates integrate out in closed form.  Writing d for the centred row with
zeros at the missing places, y = U^T d, A = U[m, :] (the factor's rows at the missing
coordinates), G = A A^T = Lambda_mm = L L^T and v = A y = (Lambda d)_m:

    log rho_k(x_o) = log int exp(log rho_k(x)) dx_m
                   = c_k + |m|/2 log 2 pi - 1/2 log|G| - 1/2 (||y||^2 - ||L^-1 v||^2),

the Schur complement of Lambda_mm giving the observed coordinates' marginal precision
(d_o^T Lambda_oo d_o = ||y||^2; Bishop 2006, eq. 2.69-2.73 for the partitioned Gaussian).
For EM this is log pi_k N(x_o; mu_o, Sigma_oo); for VB-EM, whose c_k and U_k are the
expectations of Bishop eq. 10.64-10.66, it is the log-normaliser of the optimal
q(x_m | x_o, z = k), so ``sum_n log sum_k rho_nk - KL(q(theta) || p(theta))`` stays the
exact ELBO, the entropy of q(x_m | x_o, z) included.

The same q gives the expected statistics: x_m is replaced by its conditional mean,
``E[x_m - m_m | x_o, k] = -G^-1 v``, and the conditional covariance ``C = G^-1`` is added
to the missing block of the second moments (E[x x^T] = xhat xhat^T + C).

For ``diag`` (and ``spherical``) factors the missing coordinates simply drop out:
their centred value is 0 and their conditional variance 1 / U_kd^2.

Rows are taken one at a time (each has its own missing set, so nothing is shared across
rows to vectorise over); the loops over features are innermost and contiguous.  Blocks of
``BLOCK_ROWS`` rows add into their own slots, summed in block order, as in ``estep.py``:
the same bits for any number of threads.  A row with no observed entry is given its
per-row outputs (for EM: log-normaliser 0 and the weights as responsibilities) but adds
nothing to the statistics or to the returned sum: it says nothing about the parameters.
"""
import math

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .estep import BLOCK_ROWS, GROUP_BLOCKS, _INNER, _KERNEL, _add_slots, _keep_top

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(**_INNER)
def _missing_places(x, missing):
    """Fill ``missing`` with the indices of the NaN entries of ``x``; return their count."""
    count = 0
    for i in range(x.shape[0]):
        if np.isnan(x[i]):
            missing[count] = i
            count += 1
    return count


@njit(**_INNER)
def _log_rho_full(x, mean, U, missing, n_missing, d, y, G, v, cond_mean, cond_cov):
    """log rho of one row for one full factor ``U``; leaves the centred row with the
    conditional mean filled in in ``d`` and the conditional covariance in
    ``cond_cov[:m, :m]`` (for the statistics)."""
    n_features = x.shape[0]
    for i in range(n_features):
        d[i] = 0.0 if np.isnan(x[i]) else x[i] - mean[i]
    for j in range(n_features):
        y[j] = 0.0
    for i in range(n_features):
        di = d[i]
        for j in range(i, n_features):
            y[j] += U[i, j] * di
    quad = 0.0
    for j in range(n_features):
        quad += y[j] * y[j]
    if n_missing == 0:
        return -0.5 * quad
    # G = A A^T and v = A y, A = U[missing, :] (row a of A is zero before column missing[a])
    for a in range(n_missing):
        ia = missing[a]
        total = 0.0
        for j in range(ia, n_features):
            total += U[ia, j] * y[j]
        v[a] = total
        for b in range(a + 1):
            ib = missing[b]
            total = 0.0
            for j in range(ia, n_features):         # ia >= ib: row a starts later
                total += U[ia, j] * U[ib, j]
            G[a, b] = total
    # Cholesky G = L L^T in place (lower triangle), log|G| = 2 sum log L_aa
    log_det = 0.0
    for a in range(n_missing):
        for b in range(a + 1):
            total = G[a, b]
            for p in range(b):
                total -= G[a, p] * G[b, p]
            if a == b:
                root = math.sqrt(total) if total > 0.0 else np.nan
                G[a, a] = root
                log_det += 2.0 * math.log(root)
            else:
                G[a, b] = total / G[b, b]
    # w = L^-1 v (forward), in v
    for a in range(n_missing):
        total = v[a]
        for p in range(a):
            total -= G[a, p] * v[p]
        v[a] = total / G[a, a]
    explained = 0.0
    for a in range(n_missing):
        explained += v[a] * v[a]
    # conditional mean offset -L^-T w (backward), into d's missing places
    for a in range(n_missing - 1, -1, -1):
        total = v[a]
        for p in range(a + 1, n_missing):
            total -= G[p, a] * cond_mean[p]
        cond_mean[a] = total / G[a, a]
    for a in range(n_missing):
        d[missing[a]] = -cond_mean[a]
    # C = G^-1 = L^-T L^-1: L^-1 column by column into cond_cov's lower triangle, then
    # C_ab = sum_p Linv_pa Linv_pb (p >= max(a, b))
    for b in range(n_missing):
        for a in range(n_missing):
            if a < b:
                cond_cov[a, b] = 0.0
            else:
                total = 1.0 if a == b else 0.0
                for p in range(b, a):
                    total -= G[a, p] * cond_cov[p, b]
                cond_cov[a, b] = total / G[a, a]
    for a in range(n_missing):
        for b in range(a, n_missing):
            total = 0.0
            for p in range(b, n_missing):
                total += cond_cov[p, a] * cond_cov[p, b]
            G[a, b] = total                     # G's upper triangle: C (L is below)
    for a in range(n_missing):
        for b in range(a, n_missing):
            cond_cov[a, b] = G[a, b]
    return n_missing * _HALF_LOG_2PI - 0.5 * log_det - 0.5 * (quad - explained)


@njit(**_INNER)
def _log_rho_diag(x, mean, u, d, var):
    """log rho of one row for one diagonal factor ``u``; leaves the centred row (0 at the
    missing places) in ``d`` and each missing coordinate's variance 1 / u^2 in ``var``
    (0 where observed)."""
    total = 0.0
    for i in range(x.shape[0]):
        if np.isnan(x[i]):
            d[i] = 0.0
            var[i] = 1.0 / (u[i] * u[i])
            total += _HALF_LOG_2PI - math.log(u[i])
        else:
            diff = x[i] - mean[i]
            d[i] = diff
            var[i] = 0.0
            z = u[i] * diff
            total -= 0.5 * z * z
    return total


def _component(x, mean, factor_k, missing, n_missing, d, var, y, G, v, cond_mean, cov):
    """log rho of one row for one component (its factor full or diagonal), leaving what
    the statistics need in ``d`` and ``var`` or ``cov`` (by overload below)."""


@overload(_component, jit_options=_INNER)
def _component_by_factor(x, mean, factor_k, missing, n_missing, d, var, y, G, v, cond_mean,
                         cov):
    if factor_k.ndim == 2:
        def full(x, mean, factor_k, missing, n_missing, d, var, y, G, v, cond_mean, cov):
            return _log_rho_full(x, mean, factor_k, missing, n_missing, d, y, G, v,
                                 cond_mean, cov)
        return full

    def diag(x, mean, factor_k, missing, n_missing, d, var, y, G, v, cond_mean, cov):
        return _log_rho_diag(x, mean, factor_k, d, var)
    return diag


def _add_row(s2_k, r, d, var, cov, missing, n_missing):
    """Add one row's expected second moments, weight ``r``, into ``s2_k`` (by overload)."""


@overload(_add_row, jit_options=_INNER)
def _add_row_by_moments(s2_k, r, d, var, cov, missing, n_missing):
    if s2_k.ndim == 2:
        def full(s2_k, r, d, var, cov, missing, n_missing):
            n_features = d.shape[0]
            for i in range(n_features):
                rdi = r * d[i]
                for j in range(i, n_features):
                    s2_k[i, j] += rdi * d[j]
            for a in range(n_missing):             # E[x x^T] = xhat xhat^T + C
                for q in range(a, n_missing):
                    s2_k[missing[a], missing[q]] += r * cov[a, q]
        return full

    def diag(s2_k, r, d, var, cov, missing, n_missing):
        for i in range(d.shape[0]):
            s2_k[i] += r * (d[i] * d[i] + var[i])
    return diag


@njit(**_INNER)
def _row_outputs(row, lr, n_components, log_norm_out, resp_out, labels_out, top_v):
    """The row's log-sum-exp over ``lr`` (K,), and ``lr`` turned into responsibilities in
    place; the per-row outputs asked for are written."""
    if labels_out.shape[0] > 0:
        top_k = labels_out[row]
        kept = 0
        for k in range(n_components):
            kept = _keep_top(k, lr[k], top_k, top_v, kept)
    top = lr[0]
    for k in range(1, n_components):
        top = lr[k] if lr[k] > top else top
    shift = top if top > -np.inf else 0.0
    total = 0.0
    for k in range(n_components):
        lr[k] = math.exp(lr[k] - shift)
        total += lr[k]
    lse = math.log(total) + shift if total > 0.0 else (-np.inf if total == 0.0 else total)
    scale = 1.0 / total if total > 0.0 else 0.0
    for k in range(n_components):
        lr[k] *= scale
    if log_norm_out.shape[0] > 0:
        log_norm_out[row] = lse
    if resp_out.shape[0] > 0:
        for k in range(n_components):
            resp_out[row, k] = lr[k]
    return lse


@njit(**_KERNEL)
def estep_missing(X, sample_weight, c, means, factor, nk, s1, s2,
                  log_norm_out, resp_out, labels_out):
    """The fused E-step of rows with NaN entries, the missing ones marginalised.

    The arguments and outputs are those of ``estep.estep_full`` (``factor`` (K, D, D)
    upper triangular) or ``estep.estep_diag`` (``factor`` (K, D)): the statistics are the
    expected ones (module docstring), centred about ``means``, upper triangle of ``s2``
    only for full factors.  Rows without a NaN are handled too, exactly (no missing
    place), but ``estep_full``/``estep_diag`` are several times faster for them.

    Returns
    -------
    float : sum_n w_n log sum_k rho_nk over the rows with at least one observed entry
    """
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    n_acc = n_components if nk.shape[0] > 0 else 0
    slot_lse = np.zeros(GROUP_BLOCKS)
    slot_n = np.zeros((GROUP_BLOCKS, n_acc))
    slot_s1 = np.zeros((GROUP_BLOCKS, n_acc, n_features))
    slot_s2 = np.zeros((GROUP_BLOCKS, n_acc) + s2.shape[1:])
    total = 0.0
    for first in range(0, n_blocks, GROUP_BLOCKS):
        n_slots = min(GROUP_BLOCKS, n_blocks - first)
        for b in prange(n_slots):
            start = (first + b) * BLOCK_ROWS
            stop = min(start + BLOCK_ROWS, n_rows)
            missing = np.empty(n_features, dtype=np.int64)
            d = np.empty((n_components, n_features))      # centred, conditional mean filled
            var = np.zeros((n_components, n_features))    # diag: conditional variances
            cov = np.zeros((n_components, n_features, n_features))  # full: C (upper)
            y = np.empty(n_features)
            G = np.empty((n_features, n_features))
            v = np.empty(n_features)
            cond_mean = np.empty(n_features)
            lr = np.empty(n_components)
            top_v = np.empty(max(labels_out.shape[1], 1))
            lse_sum = 0.0
            for row in range(start, stop):
                x = X[row]
                n_missing = _missing_places(x, missing)
                for k in range(n_components):
                    lr[k] = c[k] + _component(x, means[k], factor[k], missing, n_missing,
                                              d[k], var[k], y, G, v, cond_mean, cov[k])
                lse = _row_outputs(row, lr, n_components, log_norm_out, resp_out,
                                   labels_out, top_v)
                if n_missing == n_features:
                    continue                              # says nothing: weight 0
                w = sample_weight[row] if sample_weight.shape[0] > 0 else 1.0
                lse_sum += w * lse
                if n_acc == 0:
                    continue
                for k in range(n_components):
                    r = w * lr[k]
                    slot_n[b, k] += r
                    dk = d[k]
                    for i in range(n_features):
                        slot_s1[b, k, i] += r * dk[i]
                    _add_row(slot_s2[b, k], r, dk, var[k], cov[k], missing, n_missing)
            slot_lse[b] = lse_sum
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
        slot_lse[:] = 0.0
        slot_n[:] = 0.0
        slot_s1[:] = 0.0
        slot_s2[:] = 0.0
    return total


@njit(**_KERNEL)
def impute_missing(X, c, means, factor, out):
    """The conditional mean E[x_m | x_o] = sum_k r_k E[x_m | x_o, z = k] of each row's
    missing entries under the mixture (``c``, ``means``, ``factor`` as ``estep_missing``
    takes them), written into ``out`` (n, D) float64: observed entries copied, missing
    ones filled.  A row with nothing observed gets sum_k r_k m_k (the weights' mean)."""
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    for b in prange(n_blocks):
        missing = np.empty(n_features, dtype=np.int64)
        d = np.empty((n_components, n_features))
        var = np.zeros((n_components, n_features))
        cov = np.zeros((n_components, n_features, n_features))
        y = np.empty(n_features)
        G = np.empty((n_features, n_features))
        v = np.empty(n_features)
        cond_mean = np.empty(n_features)
        lr = np.empty(n_components)
        no_labels = np.zeros((0, 1), dtype=np.int64)
        nothing = np.zeros(0)
        no_resp = np.zeros((0, n_components))
        top_v = np.empty(1)
        for row in range(b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, n_rows)):
            x = X[row]
            n_missing = _missing_places(x, missing)
            for i in range(n_features):
                out[row, i] = x[i]
            if n_missing == 0:
                continue
            for k in range(n_components):
                lr[k] = c[k] + _component(x, means[k], factor[k], missing, n_missing,
                                          d[k], var[k], y, G, v, cond_mean, cov[k])
            _row_outputs(row, lr, n_components, nothing, no_resp, no_labels, top_v)
            for a in range(n_missing):
                i = missing[a]
                total = 0.0
                for k in range(n_components):
                    total += lr[k] * (d[k, i] + means[k, i])
                out[row, i] = total
