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

Layout: ``estep_missing_full`` and ``estep_missing_diag`` keep ``estep.py``'s blocks of
``BLOCK_ROWS`` rows, vectorised over the rows, each block adding into its own slot,
summed in block order: the same bits for any number of threads.  For full factors the
holes are first filled, per component, with their conditional means (the quadratic form
of the filled row is the observed entries' marginal one): a vectorised step for a run
of rows with the same holes (the local backend sorts rows by pattern), a short scalar
one for a row alone; the m x m factors are computed once per pattern of holes in a
block.  ``impute_missing`` uses the same block steps.  A row with no observed entry gets
log-normaliser 0 and its responsibilities (for EM, the weights) but adds nothing to the
statistics or to the returned sum: it says nothing about the parameters.

(Over 600 lines: the two kernels, ``impute_missing`` and the block steps they share are
tuned and read together, as ``estep.py``'s are.)
"""
import math

import numpy as np
from numba import njit, prange

from .estep import (_INNER, _KERNEL, _TILE, BLOCK_ROWS, GROUP_BLOCKS, _add_slots, _block_start,
                    _emit_rows, _moments_full, _normalise, _pad_full, _pad_means,
                    _padded, _quad_full, _weighted_lse)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
KEEP_BYTES = 1 << 21     # a block keeps its holes' offsets and factors up to this size


@njit(**_INNER)
def _patterns(xT, n, n_features, missing, n_missing, pattern, w):
    """Each row's holes (``missing[t, :n_missing[t]]``, ascending) and its pattern: rows
    of the block with the same holes share ``pattern[t]``, the first such row, whose
    Cholesky factor and conditional covariance serve them all (they depend on the holes
    and the component, not on the values).  The previous row's pattern is tried first
    (the local backend sorts a chunk's incomplete rows by pattern).  A row with none
    observed gets weight 0: it adds nothing."""
    keys = np.empty(n, dtype=np.int64)
    for t in range(n):
        count = 0
        key = 0
        for i in range(n_features):
            if np.isnan(xT[i, t]):
                missing[t, count] = i
                count += 1
                key = key * 31 + i + 1
        n_missing[t] = count
        keys[t] = key
        if count == n_features:
            w[t] = 0.0
        pattern[t] = t
        if count == 0:
            continue
        if t > 0 and keys[t - 1] == key and n_missing[t - 1] == count:
            same = True
            for a in range(count):
                same = same and missing[t - 1, a] == missing[t, a]
            if same:
                pattern[t] = pattern[t - 1]
                continue
        for u in range(t):
            if pattern[u] == u and keys[u] == key and n_missing[u] == count:
                same = True
                for a in range(count):
                    if missing[u, a] != missing[t, a]:
                        same = False
                        break
                if same:
                    pattern[t] = u
                    break


@njit(**_INNER)
def _slots(nk, s1, s2):
    """Per-block accumulators for a group of ``GROUP_BLOCKS`` blocks, shaped as the
    outputs (zero components when no statistics are wanted), as ``estep.py`` has them."""
    return (np.zeros(GROUP_BLOCKS), np.zeros((GROUP_BLOCKS,) + nk.shape),
            np.zeros((GROUP_BLOCKS,) + s1.shape), np.zeros((GROUP_BLOCKS,) + s2.shape))


@njit(**_INNER)
def _say_nothing(n, n_missing, n_features, lse):
    """A row with nothing observed has log-normaliser 0 (``score_samples``, and its
    share of the bound): it says nothing, for EM (where the formula gives 0 too) and VB
    (where it would give the bound's gap on an empty observation) alike."""
    for t in range(n):
        if n_missing[t] == n_features:
            lse[t] = 0.0


@njit(**_INNER)
def _offsets(n, n_missing, pattern, offset):
    """Where each pattern's m x m matrix starts in a flat store; returns its size."""
    size = 0
    for t in range(n):
        if pattern[t] == t:
            offset[t] = size
            size += n_missing[t] * n_missing[t]
    return size


@njit(**_INNER)
def _factor_patterns(lam, n, missing, n_missing, pattern, offset, chol, log_det,
                     cond_cov, want_cov):
    """Per pattern (first row t): L with L L^T = Lambda_mm (row-major m x m at
    ``offset[t]`` of ``chol``, lower triangle, its diagonal inverted), log|Lambda_mm| in
    ``log_det[t]``, and with ``want_cov`` C = Lambda_mm^-1 (upper triangle) in
    ``cond_cov``."""
    for t in range(n):
        m = n_missing[t]
        if pattern[t] != t or m == 0:
            continue
        L = chol[offset[t]:offset[t] + m * m]
        holes = missing[t]
        total_log = 0.0         # a log a pivot: their product over- or underflows
        for a in range(m):
            row = lam[holes[a]]
            for b in range(a + 1):
                total = row[holes[b]]
                for p in range(b):
                    total -= L[a * m + p] * L[b * m + p]
                if a == b:
                    total_log += math.log(total) if total > 0.0 else np.nan
                    L[a * m + a] = 1.0 / math.sqrt(total)
                else:
                    L[a * m + b] = total * L[b * m + b]
        log_det[t] = total_log
        if want_cov:
            _inverse_from_factor(L, m, cond_cov[offset[t]:offset[t] + m * m])


@njit(**_INNER)
def _inverse_from_factor(L, m, C):
    """C = (L L^T)^-1 = L^-T L^-1 (upper triangle, row-major m x m) from the lower factor
    ``L`` with its diagonal inverted; one and two holes in closed form (most rows at
    10% missing), which made the statistics' pass twice as fast as the loops."""
    if m == 1:
        C[0] = L[0] * L[0]
        return
    if m == 2:
        i00, l10, i11 = L[0], L[2], L[3]
        off = -l10 * i00 * i11                      # (L^-1)[1, 0]
        C[0] = i00 * i00 + off * off
        C[1] = off * i11
        C[3] = i11 * i11
        return
    # L^-1 (lower) into C's lower triangle, then C = L^-T L^-1 into the upper one, the
    # diagonal last (the products read the lower triangle and the diagonal of L^-1)
    for b in range(m):
        for a in range(b, m):
            total = 1.0 if a == b else 0.0
            for p in range(b, a):
                total -= L[a * m + p] * C[p * m + b]
            C[a * m + b] = total * L[a * m + a]
    for a in range(m):
        diagonal = 0.0
        for b in range(m - 1, a - 1, -1):
            total = 0.0
            for p in range(b, m):
                total += C[p * m + a] * C[p * m + b]
            if b > a:
                C[a * m + b] = total
            else:
                diagonal = total
        C[a * m + a] = diagonal


@njit(**_INNER)
def _mean_filled(xT, mean, n, xfT):
    """``xfT`` (Dp, B): the block's rows with each hole at the component's mean (the
    centred row d is then zero there); padding rows stay zero."""
    for i in range(mean.shape[0]):
        xi, fi, mi = xT[i], xfT[i], mean[i]
        for t in range(n):
            fi[t] = mi if np.isnan(xi[t]) else xi[t]


RUN_ROWS = 4     # consecutive rows of one pattern from which the fill is vectorised


@njit(**_INNER)
def _fill_rows(X, start, n, mean, lam, missing, n_missing, pattern, offset, chol, xfT,
               shift, first_shift, V):
    """Each row's holes in ``xfT`` (already at the mean) moved to their conditional mean
    under one component: v = (Lambda d)_m with d the centred row, zero at the holes;
    w = L^-1 v with L its pattern's factor; the offset -L^-T w, also kept in
    ``shift[first_shift[t]:][:m]``.  A run of at least ``RUN_ROWS`` consecutive rows of
    one pattern is done in loops over its rows (vectorised; ``V`` (D, B) scratch), any
    other row alone, in short scalar loops.  (A vectorised Lambda d over all the block's
    rows was slower: D^2 products a row where its holes need m D.)"""
    n_features = X.shape[1]
    t = 0
    while t < n:
        m = n_missing[t]
        end = t + 1
        while end < n and pattern[end] == pattern[t]:
            end += 1
        if m == 0:
            t = end
            continue
        holes = missing[t]
        first = offset[pattern[t]]
        L = chol[first:first + m * m]
        if end - t >= RUN_ROWS:
            for a in range(m):                        # v for the run's rows
                row = lam[holes[a]]
                va = V[a]
                for u in range(t, end):
                    va[u] = 0.0
                split = n_features - n_features % _TILE
                for j in range(0, split, _TILE):      # four features a sweep of va
                    l0, l1, l2, l3 = row[j], row[j + 1], row[j + 2], row[j + 3]
                    m0, m1, m2, m3 = mean[j], mean[j + 1], mean[j + 2], mean[j + 3]
                    x0, x1, x2, x3 = xfT[j], xfT[j + 1], xfT[j + 2], xfT[j + 3]
                    for u in range(t, end):
                        va[u] += ((l0 * (x0[u] - m0) + l1 * (x1[u] - m1))
                                  + (l2 * (x2[u] - m2) + l3 * (x3[u] - m3)))
                for j in range(split, n_features):
                    lj, mj, xj = row[j], mean[j], xfT[j]
                    for u in range(t, end):
                        va[u] += lj * (xj[u] - mj)
            for a in range(m):                        # forward: w = L^-1 v
                va = V[a]
                for p in range(a):
                    lap, vp = L[a * m + p], V[p]
                    for u in range(t, end):
                        va[u] -= lap * vp[u]
                inverse = L[a * m + a]
                for u in range(t, end):
                    va[u] *= inverse
            for a in range(m - 1, -1, -1):            # backward: offset = -L^-T w
                va = V[a]
                for p in range(a + 1, m):
                    lpa, vp = L[p * m + a], V[p]
                    for u in range(t, end):
                        va[u] += lpa * vp[u]
                inverse = -L[a * m + a]
                fa = xfT[holes[a]]
                for u in range(t, end):
                    va[u] *= inverse
                    fa[u] += va[u]
                    shift[first_shift[u] + a] = va[u]
            t = end
            continue
        for u in range(t, end):
            x = X[start + u]
            out = shift[first_shift[u]:first_shift[u] + m]
            for a in range(m):                        # forward: w = L^-1 v, in out
                row = lam[holes[a]]
                total = 0.0
                for j in range(n_features):
                    xj = x[j]
                    total += row[j] * (0.0 if np.isnan(xj) else xj - mean[j])
                for p in range(a):
                    total -= L[a * m + p] * out[p]
                out[a] = total * L[a * m + a]
            for a in range(m - 1, -1, -1):            # backward: offset = -L^-T w
                total = out[a]
                for p in range(a + 1, m):
                    total += L[p * m + a] * out[p]
                out[a] = -total * L[a * m + a]
                xfT[holes[a], u] += out[a]
        t = end


@njit(**_INNER)
def _precisions(factor):
    """Lambda_k = U_k U_k^T of (K, D, D) upper-triangular factors."""
    n_components, n_features = factor.shape[0], factor.shape[1]
    lam = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        U = factor[k]
        for i in range(n_features):
            for j in range(i, n_features):
                total = 0.0
                for p in range(j, n_features):      # U[i, p] U[j, p], p >= max(i, j)
                    total += U[i, p] * U[j, p]
                lam[k, i, j] = total
                lam[k, j, i] = total
    return lam


@njit(**_INNER)
def _block_holes(xT, n, n_features, n_components, w, want_cov, keep_all):
    """What a block's rows with holes need, for every component: their holes and
    patterns (``_patterns``), the flat stores of the patterns' factors (and, with
    ``want_cov``, conditional covariances), the holes' conditional offsets, and whether
    they are kept per component (``keep_all`` and within ``KEEP_BYTES``) or computed
    again when needed."""
    missing = np.empty((BLOCK_ROWS, n_features), dtype=np.int64)
    n_missing = np.empty(BLOCK_ROWS, dtype=np.int64)
    pattern = np.empty(BLOCK_ROWS, dtype=np.int64)
    offset = np.zeros(BLOCK_ROWS, dtype=np.int64)
    _patterns(xT, n, n_features, missing, n_missing, pattern, w)
    size = _offsets(n, n_missing, pattern, offset)
    first_shift = np.empty(BLOCK_ROWS, dtype=np.int64)
    holes_total = 0
    for t in range(n):
        first_shift[t] = holes_total
        holes_total += n_missing[t]
    keep = keep_all and n_components * (holes_total + 2 * size) * 8 <= KEEP_BYTES
    kept = n_components if keep else 1
    return (missing, n_missing, pattern, offset, first_shift, keep,
            np.empty((kept, holes_total)), np.empty((kept, size)),
            np.empty((kept, size if want_cov else 0)), np.zeros(BLOCK_ROWS))


@njit(**_INNER)
def _log_rho_holes(X, start, n, xT, c, means, mp, up, lam, holes, xfT, y, V, lr, want_cov):
    """lr[k, t]: the block's marginal log rho (module docstring) of every component; the
    filled rows go through ``estep._quad_full``.  Keeps what ``holes`` (``_block_holes``)
    says to keep."""
    (missing, n_missing, pattern, offset, first_shift, keep, shifts, chol, cond_cov,
     log_det) = holes
    for k in range(means.shape[0]):
        kk = k if keep else 0
        _factor_patterns(lam[k], n, missing, n_missing, pattern, offset, chol[kk],
                         log_det, cond_cov[kk], keep and want_cov)
        _mean_filled(xT, means[k], n, xfT)
        _fill_rows(X, start, n, means[k], lam[k], missing, n_missing, pattern, offset,
                   chol[kk], xfT, shifts[kk], first_shift, V)
        # (xhat - m)^T Lambda (xhat - m) is the observed entries' marginal form
        _quad_full(xfT, mp[k], up[k], n, y, c[k], lr[k])
        for t in range(n):
            lr[k, t] += n_missing[t] * _HALF_LOG_2PI - 0.5 * log_det[pattern[t]]


@njit(**_INNER)
def _filled(X, start, n, xT, k, means, lam, holes, xfT, want_cov, scratch):
    """``xfT``: the block's rows with their holes at their conditional means under
    component ``k``, from the kept offsets or computed again (with the factors and,
    with ``want_cov``, the covariances); returns the index of ``k``'s stores."""
    (missing, n_missing, pattern, offset, first_shift, keep, shifts, chol, cond_cov,
     log_det) = holes
    _mean_filled(xT, means[k], n, xfT)
    if keep:
        sk = shifts[k]
        for t in range(n):
            where = missing[t]
            for a in range(n_missing[t]):
                xfT[where[a], t] += sk[first_shift[t] + a]
        return k
    _factor_patterns(lam[k], n, missing, n_missing, pattern, offset, chol[0], log_det,
                     cond_cov[0], want_cov)
    _fill_rows(X, start, n, means[k], lam[k], missing, n_missing, pattern, offset, chol[0],
               xfT, shifts[0], first_shift, scratch)
    return 0


@njit(**_KERNEL)
def estep_missing_full(X, sample_weight, c, means, prec_chol, nk, s1, s2,
                       log_norm_out, resp_out, labels_out):
    """The fused E-step of rows with NaN entries, full (and tied) factors; the arguments
    and outputs of ``estep.estep_full``, the statistics the expected ones (module
    docstring).  Rows without a NaN are right too, but ``estep_full`` is faster for them.

    Vectorised as ``estep_full`` over the rows of a block: per component, each row's
    holes are filled with their conditional mean, then the block goes through
    ``estep.py``'s ``_quad_full`` and ``_moments_full``, whose quadratic form and moments
    of the filled rows are the marginal Mahalanobis distance and the conditional means'
    moments.  The m x m factors and conditional covariances are computed once per
    pattern of holes in the block (``_patterns``); the covariances enter the second
    moments as sum over patterns of (their rows' responsibilities) C.  The holes'
    offsets are kept for the statistics (``KEEP_BYTES``) or computed again there.

    Returns
    -------
    float : sum_n w_n log sum_k rho_nk over the rows with at least one observed entry
    """
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_pad = _padded(n_features)
    mp, up, lam = _pad_means(means), _pad_full(prec_chol), _precisions(prec_chol)
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    want_stats = nk.shape[0] > 0
    slot_lse, slot_n, slot_s1, slot_s2 = _slots(nk, s1, s2)
    total = 0.0
    for first in range(0, n_blocks, GROUP_BLOCKS):
        n_slots = min(GROUP_BLOCKS, n_blocks - first)
        for b in prange(n_slots):
            start = (first + b) * BLOCK_ROWS
            n = min(BLOCK_ROWS, n_rows - start)
            xT, lr, e, w, ws, scale, lse, tmp = _block_start(
                X, sample_weight, start, n, n_pad, n_components)
            holes = _block_holes(xT, n, n_features, n_components, w, want_stats, want_stats)
            missing, n_missing, pattern, offset = holes[0], holes[1], holes[2], holes[3]
            cond_cov = holes[8]
            xfT = np.zeros((n_pad, BLOCK_ROWS))
            y = np.empty((_TILE, BLOCK_ROWS))
            V = np.empty((n_features, BLOCK_ROWS))
            _log_rho_holes(X, start, n, xT, c, means, mp, up, lam, holes, xfT, y, V, lr,
                           want_stats)
            _normalise(lr, n, e, scale, lse, tmp)
            _say_nothing(n, n_missing, n_features, lse)
            _emit_rows(start, n, lr, e, scale, lse, log_norm_out, resp_out, labels_out)
            slot_lse[b] = _weighted_lse(w, lse, n)
            if not want_stats:
                continue
            r = np.empty(BLOCK_ROWS)
            mass = np.zeros(BLOCK_ROWS)
            for t in range(n):
                ws[t] = w[t] * scale[t]
            for k in range(n_components):
                mass[:n] = 0.0
                for t in range(n):
                    r[t] = e[k, t] * ws[t]
                    mass[pattern[t]] += r[t]
                kk = _filled(X, start, n, xT, k, means, lam, holes, xfT, True, V)
                slot_n[b, k] = _moments_full(xfT, mp[k], r, n, slot_s1[b, k],
                                             slot_s2[b, k])
                moments = slot_s2[b, k]
                for t in range(n):                # E[x x^T] = xhat xhat^T + C
                    m = n_missing[t]
                    if pattern[t] != t or m == 0:
                        continue
                    C = cond_cov[kk, offset[t]:offset[t] + m * m]
                    where = missing[t]
                    for a in range(m):
                        for q in range(a, m):
                            moments[where[a], where[q]] += mass[t] * C[a * m + q]
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
    return total


@njit(**_INNER)
def _hole_terms(prec_sqrt, n_pad):
    """-2 (1/2 log 2 pi - log p_ki): what a hole adds to ``_quad_diag_holes``'s sum."""
    n_components, n_features = prec_sqrt.shape
    terms = np.zeros((n_components, n_pad))
    for k in range(n_components):
        for i in range(n_features):
            terms[k, i] = 2.0 * math.log(prec_sqrt[k, i]) - 2.0 * _HALF_LOG_2PI
    return terms


@njit(**_INNER)
def _quad_diag_holes(xT, mp, pp, hole_terms, c, n, lr):
    """``estep._quad_diag`` with holes: lr[k, t] = c[k] - 1/2 sum over observed i of
    ((x_it - m_ki) p_ki)^2 + sum over missing i of (1/2 log 2 pi - log p_ki); the
    missing terms enter the running sum as -2 ``hole_terms`` (a select, vectorised)."""
    n_components = lr.shape[0]
    for i in range(0, xT.shape[0], _TILE):
        x0, x1, x2, x3 = xT[i], xT[i + 1], xT[i + 2], xT[i + 3]
        for k in range(n_components):
            mean, prec_sqrt, hole = mp[k], pp[k], hole_terms[k]
            q = lr[k]
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            p0, p1, p2, p3 = prec_sqrt[i], prec_sqrt[i + 1], prec_sqrt[i + 2], prec_sqrt[i + 3]
            h0, h1, h2, h3 = hole[i], hole[i + 1], hole[i + 2], hole[i + 3]
            for t in range(n):
                u0 = (x0[t] - m0) * p0
                u1 = (x1[t] - m1) * p1
                u2 = (x2[t] - m2) * p2
                u3 = (x3[t] - m3) * p3
                total = ((h0 if np.isnan(u0) else u0 * u0) + (h1 if np.isnan(u1) else u1 * u1)
                         + (h2 if np.isnan(u2) else u2 * u2)
                         + (h3 if np.isnan(u3) else u3 * u3))
                q[t] = total if i == 0 else q[t] + total
    for k in range(n_components):
        q = lr[k]
        ck = c[k]
        for t in range(n):
            q[t] = ck - 0.5 * q[t]


@njit(**_INNER)
def _moments_diag_holes(xT, mp, variances, r, n, sn, s1, s2):
    """``estep._moments_diag`` with holes: a missing coordinate adds 0 to s1 and its
    variance 1 / p_ki^2 (``variances``) to s2, times the row's weighted responsibility."""
    n_components, n_features = s1.shape
    for k in range(n_components):
        rk = r[k]
        total = 0.0
        for t in range(n):
            total += rk[t]
        sn[k] = total
    for i in range(0, xT.shape[0], _TILE):
        x0, x1, x2, x3 = xT[i], xT[i + 1], xT[i + 2], xT[i + 3]
        for k in range(n_components):
            mean, var, rk = mp[k], variances[k], r[k]
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            v0, v1, v2, v3 = var[i], var[i + 1], var[i + 2], var[i + 3]
            a0 = a1 = a2 = a3 = 0.0
            b0 = b1 = b2 = b3 = 0.0
            for t in range(n):
                rt = rk[t]
                d0, d1, d2, d3 = x0[t] - m0, x1[t] - m1, x2[t] - m2, x3[t] - m3
                o0, o1, o2, o3 = np.isnan(d0), np.isnan(d1), np.isnan(d2), np.isnan(d3)
                d0 = 0.0 if o0 else d0
                d1 = 0.0 if o1 else d1
                d2 = 0.0 if o2 else d2
                d3 = 0.0 if o3 else d3
                a0 += rt * d0
                a1 += rt * d1
                a2 += rt * d2
                a3 += rt * d3
                b0 += rt * (v0 if o0 else d0 * d0)
                b1 += rt * (v1 if o1 else d1 * d1)
                b2 += rt * (v2 if o2 else d2 * d2)
                b3 += rt * (v3 if o3 else d3 * d3)
            sums = ((a0, b0), (a1, b1), (a2, b2), (a3, b3))
            for a in range(_TILE):
                if i + a < n_features:
                    s1[k, i + a] = sums[a][0]
                    s2[k, i + a] = sums[a][1]


@njit(**_KERNEL)
def estep_missing_diag(X, sample_weight, c, means, prec_sqrt, nk, s1, s2,
                       log_norm_out, resp_out, labels_out):
    """``estep_missing_full`` for diagonal (and spherical) factors (``estep.estep_diag``'s
    arguments): the holes drop out of the quadratic form and add their variance to the
    second moments, all in the vectorised loops (no per-row step)."""
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_pad = _padded(n_features)
    mp, pp = _pad_means(means), _pad_means(prec_sqrt)
    hole_terms = _hole_terms(prec_sqrt, n_pad)
    variances = np.zeros((n_components, n_pad))
    for k in range(n_components):
        for i in range(n_features):
            variances[k, i] = 1.0 / (prec_sqrt[k, i] * prec_sqrt[k, i])
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    want_stats = nk.shape[0] > 0
    slot_lse, slot_n, slot_s1, slot_s2 = _slots(nk, s1, s2)
    total = 0.0
    for first in range(0, n_blocks, GROUP_BLOCKS):
        n_slots = min(GROUP_BLOCKS, n_blocks - first)
        for b in prange(n_slots):
            start = (first + b) * BLOCK_ROWS
            n = min(BLOCK_ROWS, n_rows - start)
            xT, lr, e, w, ws, scale, lse, tmp = _block_start(
                X, sample_weight, start, n, n_pad, n_components)
            n_missing = np.zeros(BLOCK_ROWS, dtype=np.int64)
            for t in range(n):                # a row with none observed adds nothing
                for i in range(n_features):
                    n_missing[t] += np.isnan(xT[i, t])
                w[t] = 0.0 if n_missing[t] == n_features else w[t]
            _quad_diag_holes(xT, mp, pp, hole_terms, c, n, lr)
            _normalise(lr, n, e, scale, lse, tmp)
            _say_nothing(n, n_missing, n_features, lse)
            _emit_rows(start, n, lr, e, scale, lse, log_norm_out, resp_out, labels_out)
            slot_lse[b] = _weighted_lse(w, lse, n)
            if want_stats:
                for t in range(n):
                    ws[t] = w[t] * scale[t]
                for k in range(n_components):
                    rk = e[k]
                    for t in range(n):
                        rk[t] *= ws[t]
                _moments_diag_holes(xT, mp, variances, e, n, slot_n[b], slot_s1[b],
                                    slot_s2[b])
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
    return total


@njit(**_KERNEL)
def _impute_full(X, c, means, prec_chol, out):
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_pad = _padded(n_features)
    mp, up, lam = _pad_means(means), _pad_full(prec_chol), _precisions(prec_chol)
    for b in prange((n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
        start = b * BLOCK_ROWS
        n = min(BLOCK_ROWS, n_rows - start)
        xT, lr, e, w, ws, scale, lse, tmp = _block_start(X, np.zeros(0), start, n, n_pad,
                                                         n_components)
        holes = _block_holes(xT, n, n_features, n_components, w, False, True)
        xfT = np.zeros((n_pad, BLOCK_ROWS))
        V = np.empty((n_features, BLOCK_ROWS))
        _log_rho_holes(X, start, n, xT, c, means, mp, up, lam, holes, xfT,
                       np.empty((_TILE, BLOCK_ROWS)), V, lr, False)
        _normalise(lr, n, e, scale, lse, tmp)
        for t in range(n):
            for i in range(n_features):
                out[start + t, i] = 0.0 if np.isnan(X[start + t, i]) else X[start + t, i]
        for k in range(n_components):
            _filled(X, start, n, xT, k, means, lam, holes, xfT, False, V)
            for t in range(n):
                where = holes[0][t]
                r = e[k, t] * scale[t]
                for a in range(holes[1][t]):
                    out[start + t, where[a]] += r * xfT[where[a], t]


@njit(**_KERNEL)
def _impute_diag(X, c, means, prec_sqrt, out):
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_pad = _padded(n_features)
    mp, pp = _pad_means(means), _pad_means(prec_sqrt)
    hole_terms = _hole_terms(prec_sqrt, n_pad)
    for b in prange((n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
        start = b * BLOCK_ROWS
        n = min(BLOCK_ROWS, n_rows - start)
        xT, lr, e, w, ws, scale, lse, tmp = _block_start(X, np.zeros(0), start, n, n_pad,
                                                         n_components)
        _quad_diag_holes(xT, mp, pp, hole_terms, c, n, lr)
        _normalise(lr, n, e, scale, lse, tmp)
        for t in range(n):
            for i in range(n_features):
                x = X[start + t, i]
                if not np.isnan(x):
                    out[start + t, i] = x
                    continue
                total = 0.0                     # a hole's conditional mean is m_ki
                for k in range(n_components):
                    total += e[k, t] * means[k, i]
                out[start + t, i] = total * scale[t]


def impute_missing(X, c, means, factor, out):
    """The conditional mean E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, z = k] of each
    row's holes under the mixture (``c``, ``means``, ``factor`` as the E-step kernels take
    them), written into ``out`` (n, D) float64: observed entries copied, holes filled (a
    row with nothing observed: sum_k r_k m_k, the weights' mean)."""
    kernel = _impute_full if factor.ndim == 3 else _impute_diag
    kernel(X, c, means, factor, out)


def estep_missing(X, sample_weight, c, means, factor, nk, s1, s2, log_norm_out, resp_out,
                  labels_out):
    """``estep_missing_full`` or ``estep_missing_diag``, by the factor's shape."""
    kernel = estep_missing_full if factor.ndim == 3 else estep_missing_diag
    return kernel(X, sample_weight, c, means, factor, nk, s1, s2, log_norm_out, resp_out,
                  labels_out)
