"""The truncated E-step: q(z_n) supported on at most L components, found by a candidate search.

Truncated variational EM (Lucke & Eggert 2010, "Expectation truncation and the benefits of
preselection"; Forster & Lucke 2018, "Can clustering scale sublinearly with its clusters?
A variational EM acceleration of GMMs and k-means", AISTATS; Hirschberger, Exarchakis &
Lucke 2022, "A variational EM acceleration for efficient clustering at very large
scales", IEEE TPAMI).  The variational family is

    q_n(k) = rho_nk / sum_{j in S_n} rho_nj   for k in S_n,  0 otherwise,   |S_n| <= L,

whose free energy (ELBO) is ``sum_n log sum_{k in S_n} rho_nk`` (minus the KL of
q(theta) for VB; Forster & Lucke 2018, eq. 5-7).  For a fixed set of parameters, a larger
log-sum-exp over S_n is a strictly better q, so the E-step replaces S_n with the L
components of largest rho_nk among a *candidate set* that contains the old S_n: the free
energy never decreases (Forster & Lucke 2018, Proposition 1), whatever else the candidate
set holds.

Candidate set of a row (``n_candidates`` = G components in all): its old support first, then
the neighbours of its support members, rank by rank (``neighbours[c, 0] == c``, then the
components most likely at the mean of c), until G - R are found, then R components drawn
at random (a hash of the seed, the row's global index and the draw number, so the draw
does not depend on the chunking or the threads).  When G >= K every component is
evaluated exactly, in index order.  A row's first support comes from the caller (fastvi
takes the exact top L from the dense kernel: a greedy walk on the neighbour graph from a
few spread "anchor" components, tried first, missed the best component for 10-40% of rows
of 256 well-separated clusters in 16 dimensions, and a bad first pass spoils the fit).

The steps of a chunk, none with a thread-dependent sum:

1. rows, in parallel blocks: build the candidates and evaluate them.  Diagonal
   components are evaluated exactly, and the top L kept.  Full components are only
   *ranked*, by the expanded quadratic form (one contiguous dot product per candidate,
   :func:`expanded_form`); the ranked top L, and any member of the old support the
   ranking dropped, go to a per-row list for exact evaluation.
2. (full only) components, in parallel: each gathers the rows that listed it and
   evaluates them exactly, in the centred form, with the dense kernel's rows-as-vector
   tile routine (a per-row triangular solve costs several times more).
3. (full only) rows: the exact L best of each list.  The old support is in the list, so
   the free energy cannot decrease, and q and the bound carry no cancellation error.
4. components, in parallel: each gathers its (row, q) pairs in row order and adds their
   centred moments with the dense kernel's tile routines.  One component is one task, so
   its sums do not depend on the number of threads.

(Over 500 lines: the four steps above are one kernel, with their helpers beside them.)
"""
import math

import numpy as np
from numba import njit, prange

from .estep import (_INNER, _KERNEL, _TILE, BLOCK_ROWS, _keep_top, _moments_diag, _moments_full,
                    _pad_full, _pad_means, _quad_full)

_BUCKET_PARTS = 8  # runs of rows bucketed in parallel (any number gives the same result)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(**_INNER)
def _mix64(z):
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a uint64 -> uint64 hash."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(**_INNER)
def _random_component(seed, row, draw, n_components):
    """A component drawn by hashing (seed, global row index, draw number)."""
    h = _mix64(np.uint64(seed) ^ (np.uint64(row) * _GOLDEN + np.uint64(draw)))
    # the high 32 bits scaled to [0, K) by a multiply and a shift, not a (slow) modulo
    return np.int64(((h >> np.uint64(32)) * np.uint64(n_components)) >> np.uint64(32))


@njit(**_INNER)
def _centre(x, mean, d, n_features):
    for i in range(n_features):
        d[i] = x[i] - mean[i]


@njit(**_INNER)
def _log_rho_full(x, mean, Lt, c, d, n_features):
    """c - 1/2 ||L (x - mean)||^2 for one row, with L = U^T lower-triangular (Dp, Dp).

    Four outputs v_i..v_i+3 at a time, each a dot product of a row of L with d over the
    columns j < i + 4 (the rest are zero): the four running sums stay in registers and
    the loop over j vectorises (about 2x faster than accumulating v in memory).
    """
    n_pad = Lt.shape[0]
    _centre(x, mean, d, n_features)
    total = 0.0
    for i in range(0, n_pad, _TILE):
        r0, r1, r2, r3 = Lt[i], Lt[i + 1], Lt[i + 2], Lt[i + 3]
        a0 = a1 = a2 = a3 = 0.0
        for j in range(i + _TILE):
            dj = d[j]
            a0 += r0[j] * dj
            a1 += r1[j] * dj
            a2 += r2[j] * dj
            a3 += r3[j] * dj
        total += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)
    return c - 0.5 * total


@njit(**_INNER)
def _expanded_row(x, x0, y, z):
    """z = [y_i y_j (i <= j), y_i, 1] of y = x - x0 (formed in float64, stored in z's
    dtype): a row's side of the expanded form."""
    n_features = y.shape[0]
    for i in range(n_features):
        y[i] = x[i] - x0[i]
    pos = 0
    for i in range(n_features):
        yi = y[i]
        for j in range(i, n_features):
            z[pos] = yi * y[j]
            pos += 1
    for i in range(n_features):
        z[pos] = y[i]
        pos += 1
    z[pos] = 1.0


@njit(**_INNER)
def _dot(a, b):
    """A dot product in the dtype of its arguments (float32 ranks with 16 lanes)."""
    total = a.dtype.type(0.0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(**_INNER)
def _log_rho_diag(x, mean, prec_sqrt, c, d, n_features):
    """c - 1/2 sum_i ((x_i - mean_i) prec_sqrt_i)^2 for one row."""
    total = 0.0
    for i in range(n_features):
        u = (x[i] - mean[i]) * prec_sqrt[i]
        total += u * u
    return c - 0.5 * total


@njit(**_INNER)
def _build_candidates(support_row, neighbours, n_search, n_total, seed, row, mark, stamp,
                      cand):
    """Fill ``cand`` with the row's candidates (see the module docstring); return how many.

    ``mark[k] == stamp`` flags a component already taken for this row.
    """
    n_components = mark.shape[0]
    n_active = support_row.shape[0]
    count = 0
    for h in range(neighbours.shape[1]):
        for l in range(n_active):
            s = support_row[l]
            if s < 0:
                continue
            # branch-free dedup: always write, advance only for a new component (whether
            # a neighbour repeats is data-dependent, and a mispredicted branch cost more)
            k = neighbours[s, h]
            cand[count] = k
            count += mark[k] != stamp
            mark[k] = stamp
            if count == n_search:
                break
        if count == n_search:
            break
    draw = 0
    # a bounded number of draws: with few components left the fill may stop short
    while count < n_total and draw < 4 * n_total:
        k = _random_component(seed, row, draw, n_components)
        draw += 1
        cand[count] = k
        count += mark[k] != stamp
        mark[k] = stamp
    return count


@njit(**_INNER)
def _finish_row(best_k, best_v, n_kept, has_nan, support_row, q_row):
    """Write the support and q of one row; return its log-normaliser over the support.

    q_k = exp(l_k - l_max) / sum_j exp(l_j - l_max); unused support slots get -1 and 0.
    """
    n_active = support_row.shape[0]
    top = best_v[0] if n_kept > 0 else -np.inf
    shift = top if top > -np.inf else 0.0
    total = 0.0
    for l in range(n_kept):
        q_row[l] = math.exp(best_v[l] - shift)
        total += q_row[l]
    inv = 1.0 / total if total > 0.0 else 0.0
    for l in range(n_active):
        if l < n_kept:
            support_row[l] = best_k[l]
            q_row[l] *= inv
        else:
            support_row[l] = -1
            q_row[l] = 0.0
    if has_nan:
        return np.nan
    if total == 0.0:
        return -np.inf
    return shift + math.log(total)


@njit(**_KERNEL)
def _bucket(keys, n_components):
    """Group the entries of ``keys`` (n, width) that are >= 0 by component.

    Returns (offsets (K + 1,), rows, slots): component k owns the entries
    offsets[k]:offsets[k + 1] of rows and slots, rows ascending.  (Rows and slots are
    kept apart rather than as one flat index: dividing by the width per pair cost more
    than the pair's arithmetic.)  A counting sort in parallel over ``_BUCKET_PARTS`` runs
    of rows: each run counts its entries per component, the counts give every (run,
    component) its start, and each run fills its own places, so the result is the
    sequential one whatever the number of runs or threads.
    """
    n_rows, width = keys.shape
    n_blocks = _BUCKET_PARTS
    size = (n_rows + n_blocks - 1) // n_blocks
    counts = np.zeros((n_blocks, n_components), dtype=np.int64)
    for b in prange(n_blocks):
        for t in range(b * size, min((b + 1) * size, n_rows)):
            for l in range(width):
                k = keys[t, l]
                if k >= 0:
                    counts[b, k] += 1
    offsets = np.zeros(n_components + 1, dtype=np.int64)
    starts = np.empty((n_blocks, n_components), dtype=np.int64)
    position = 0
    for k in range(n_components):
        offsets[k] = position
        for b in range(n_blocks):
            starts[b, k] = position
            position += counts[b, k]
    offsets[n_components] = position
    rows = np.empty(position, dtype=np.int64)
    slots = np.empty(position, dtype=np.int64)
    for b in prange(n_blocks):
        fill = starts[b]
        for t in range(b * size, min((b + 1) * size, n_rows)):
            for l in range(width):
                k = keys[t, l]
                if k >= 0:
                    rows[fill[k]] = t
                    slots[fill[k]] = l
                    fill[k] += 1
    return offsets, rows, slots


@njit(**_INNER)
def _gather_rows(X, rows, first, count, n_pad):
    """The rows rows[first:first + count], transposed: (Dp, count) float64."""
    n_features = X.shape[1]
    xT = np.zeros((n_pad, count))
    for t in range(count):
        x = X[rows[first + t]]
        for i in range(n_features):
            xT[i, t] = x[i]
    return xT


@njit(**_INNER)
def _search_rows(X, sample_weight, c, mp, lt, mpp, expanded, x0, neighbours, n_search, n_cand,
                 seed, row_offset, support, q_out, log_norm_out, exact_k, start, n):
    """Step 1 for the rows start:start + n; returns their weighted sum of log-normalisers
    (0 for rows whose decision waits for steps 2-3).

    ``mpp`` (K, 2, Dp) holds the means and square-root precisions of diagonal components
    side by side (one memory block per component); ``lt`` the transposed full factors,
    for exhaustive searches; ``expanded`` the full components' ranking vectors.  Unused
    arrays are empty, so both branches type-check in one function.  Full components in a
    search write their exact-evaluation list to ``exact_k`` (n, 2L), -1 padded.
    """
    full = mpp.shape[0] == 0
    n_components = mp.shape[0]
    n_features = X.shape[1]
    n_pad = mp.shape[1]
    n_active = support.shape[1]
    exhaustive = n_cand >= n_components
    mark = np.full(n_components, -1, dtype=np.int64)
    cand = np.empty(n_components if exhaustive else n_cand, dtype=np.int64)
    values = np.empty(cand.shape[0])
    best_k = np.empty(n_active, dtype=np.int64)
    best_v = np.empty(n_active)
    d = np.zeros(n_pad)
    y = np.empty(n_features)
    z = np.zeros(expanded.shape[1], dtype=expanded.dtype)
    stamp = 0
    total = 0.0
    for t in range(start, start + n):
        x = X[t]
        support_row = support[t]
        if exhaustive:
            count = n_components
            for k in range(n_components):
                cand[k] = k
        else:
            stamp += 1
            count = _build_candidates(support_row, neighbours, n_search, n_cand, seed,
                                      row_offset + t, mark, stamp, cand)
        # evaluate first, select after: independent iterations overlap their loads
        if full and not exhaustive:
            _expanded_row(x, x0, y, z)
            for j in range(count):
                k = cand[j]
                values[j] = c[k] - 0.5 * _dot(z, expanded[k])
        elif full:
            for k in range(n_components):
                values[k] = _log_rho_full(x, mp[k], lt[k], c[k], d, n_features)
        else:
            for j in range(count):
                k = cand[j]
                values[j] = _log_rho_diag(x, mpp[k, 0], mpp[k, 1], c[k], d, n_features)
        n_kept = 0
        has_nan = False
        for j in range(count):
            value = values[j]
            has_nan |= value != value
            n_kept = _keep_top(cand[j], value, best_k, best_v, n_kept)
        if full and not exhaustive:
            _exact_list(best_k, n_kept, support_row, mark, stamp + 1, exact_k[t])
            stamp += 1
            continue
        log_norm = _finish_row(best_k, best_v, n_kept, has_nan, support_row, q_out[t])
        if log_norm_out.shape[0] > 0:
            log_norm_out[t] = log_norm
        w = sample_weight[t] if sample_weight.shape[0] > 0 else 1.0
        total += w * log_norm
    return total


@njit(**_INNER)
def _exact_list(best_k, n_kept, support_row, mark, stamp, out):
    """The ranked top list, then the old support's members it dropped; -1 after them."""
    count = 0
    for l in range(n_kept):
        mark[best_k[l]] = stamp
        out[count] = best_k[l]
        count += 1
    for l in range(support_row.shape[0]):
        k = support_row[l]
        if k >= 0 and mark[k] != stamp:
            mark[k] = stamp
            out[count] = k
            count += 1
    for l in range(count, out.shape[0]):
        out[l] = -1


@njit(**_KERNEL)
def _truncated(X, sample_weight, c, mp, lt, mpp, expanded, x0, neighbours, n_search, n_cand,
               seed, row_offset, support, q_out, log_norm_out, exact_k):
    """Step 1 over all rows (parallel blocks, block sums added in block order)."""
    n_rows = X.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    block_sums = np.zeros(n_blocks)
    for b in prange(n_blocks):
        start = b * BLOCK_ROWS
        n = min(BLOCK_ROWS, n_rows - start)
        block_sums[b] = _search_rows(X, sample_weight, c, mp, lt, mpp, expanded, x0,
                                     neighbours, n_search, n_cand, seed, row_offset, support,
                                     q_out, log_norm_out, exact_k, start, n)
    total = 0.0
    for b in range(n_blocks):
        total += block_sums[b]
    return total


@njit(**_KERNEL)
def _exact_values(X, c, mp, up, offsets, rows, slots, values):
    """Step 2: values[row, slot] = log rho of the listed component, exactly, per component
    over its gathered rows (the dense kernel's vectorised triangular tiles), in blocks of
    ``BLOCK_ROWS`` rows so that a block stays in L1 across the tiles' passes."""
    n_pad = mp.shape[1]
    for k in prange(mp.shape[0]):
        y = np.empty((_TILE, BLOCK_ROWS))
        lr = np.empty(BLOCK_ROWS)
        for first in range(offsets[k], offsets[k + 1], BLOCK_ROWS):
            count = min(BLOCK_ROWS, offsets[k + 1] - first)
            xT = _gather_rows(X, rows, first, count, n_pad)
            _quad_full(xT, mp[k], up[k], count, y, c[k], lr)
            for t in range(count):
                values[rows[first + t], slots[first + t]] = lr[t]


@njit(**_KERNEL)
def _decide_rows(exact_k, values, sample_weight, support, q_out, log_norm_out):
    """Step 3: each row's exact L best of its list; the weighted sum of log-normalisers."""
    n_rows = exact_k.shape[0]
    n_active = support.shape[1]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    block_sums = np.zeros(n_blocks)
    for b in prange(n_blocks):
        best_k = np.empty(n_active, dtype=np.int64)
        best_v = np.empty(n_active)
        subtotal = 0.0
        for t in range(b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, n_rows)):
            n_kept = 0
            has_nan = False
            for l in range(exact_k.shape[1]):
                k = exact_k[t, l]
                if k < 0:
                    break
                value = values[t, l]
                has_nan |= value != value
                n_kept = _keep_top(k, value, best_k, best_v, n_kept)
            log_norm = _finish_row(best_k, best_v, n_kept, has_nan, support[t], q_out[t])
            if log_norm_out.shape[0] > 0:
                log_norm_out[t] = log_norm
            w = sample_weight[t] if sample_weight.shape[0] > 0 else 1.0
            subtotal += w * log_norm
        block_sums[b] = subtotal
    total = 0.0
    for b in range(n_blocks):
        total += block_sums[b]
    return total


@njit(**_INNER)
def _pair_weights(rows, slots, first, count, q, sample_weight):
    """w_n q_nk of the gathered pairs."""
    r = np.empty(count)
    for t in range(count):
        row = rows[first + t]
        w = sample_weight[row] if sample_weight.shape[0] > 0 else 1.0
        r[t] = w * q[row, slots[first + t]]
    return r


@njit(**_KERNEL)
def _component_moments(X, mp, full, offsets, rows, slots, q, sample_weight, nk, s1, s2full,
                       s2diag):
    """Step 4: each component's centred moments from its gathered (row, q) pairs, in
    blocks of ``BLOCK_ROWS`` pairs (a gathered block stays in L1 across the tiles'
    passes), the blocks added in order.

    ``s2full`` (K, D, D) for full components, ``s2diag`` (K, D) for diagonal ones (the
    other empty).
    """
    n_features = X.shape[1]
    n_pad = mp.shape[1]
    for k in prange(mp.shape[0]):
        m1 = np.empty((1, n_features))
        m2 = np.zeros((n_features, n_features) if full else (1, n_features))
        sn = np.empty(1)
        for first in range(offsets[k], offsets[k + 1], BLOCK_ROWS):
            count = min(BLOCK_ROWS, offsets[k + 1] - first)
            xT = _gather_rows(X, rows, first, count, n_pad)
            r = _pair_weights(rows, slots, first, count, q, sample_weight)
            if full:
                nk[k] += _moments_full(xT, mp[k], r, count, m1[0], m2)
                s1[k] += m1[0]
                s2full[k] += m2
            else:
                _moments_diag(xT, mp[k:k + 1], r.reshape(1, count), count, sn, m1, m2)
                nk[k] += sn[0]
                s1[k] += m1[0]
                s2diag[k] += m2[0]


def expanded_form(means, factor):
    """The full components as one vector each, for ranking candidates by a dot product.

    With y = x - x0 and e_k = m_k - x0, P_k = U_k U_k^T:

        (x - m_k)^T P_k (x - m_k) = sum_{i<=j} (2 - [i = j]) P_kij y_i y_j
                                    - 2 (P_k e_k)^T y + e_k^T P_k e_k ,

    so the quadratic form is the dot product of ``[y_i y_j (i <= j), y, 1]`` (made once per
    row) with ``w_k = [(2 - [i = j]) P_kij, -2 P_k e_k, e_k^T P_k e_k]``: D(D+1)/2 + D + 1
    contiguous multiply-adds instead of a triangular solve.  Expanding loses precision to
    cancellation when rows lie far from x0 compared with the component widths; centring on the mean of the means keeps it small, and it only ranks: the
    decision is taken on values evaluated again in the centred form.

    Returns (W (K, Q) padded to a multiple of 16, x0 (D,)).
    """
    n_components, n_features = means.shape
    x0 = means.mean(axis=0)
    precision = np.matmul(factor, factor.transpose(0, 2, 1))
    offsets = means - x0
    upper = np.triu_indices(n_features)
    n_pairs = upper[0].size
    width = n_pairs + n_features + 1
    W = np.zeros((n_components, (width + 15) // 16 * 16))
    W[:, :n_pairs] = (precision * (2.0 - np.eye(n_features)))[:, upper[0], upper[1]]
    linear = np.matmul(precision, offsets[:, :, None])[:, :, 0]
    W[:, n_pairs:n_pairs + n_features] = -2.0 * linear
    W[:, n_pairs + n_features] = np.einsum("ki,ki->k", offsets, linear)
    return W, x0


def search_arrays(means, factor):
    """What the steps read about the components: (mp, up, lt, mpp, expanded, x0).

    mp (K, Dp) padded means; full: up (K, Dp, Dp) padded upper factors, lt their
    transposes, expanded the ranking vectors and x0 their centre; diagonal: mpp
    (K, 2, Dp) means and square-root precisions side by side.  Unused arrays are empty.
    """
    mp = _pad_means(means)
    n_features, n_pad = means.shape[1], mp.shape[1]
    if factor.ndim == 3:
        expanded, x0 = expanded_form(means, factor)
        up = _pad_full(factor)
        lt = np.ascontiguousarray(up.transpose(0, 2, 1))
        return mp, up, lt, np.zeros((0, 2, n_pad)), expanded.astype(np.float32), x0
    mpp = np.ascontiguousarray(np.stack((mp, _pad_means(factor)), axis=1))
    empty = np.zeros((0, n_pad, n_pad))
    return (mp, empty, empty, mpp, np.zeros((0, 16), dtype=np.float32),
            np.zeros(n_features))


def estep_truncated(X, sample_weight, c, means, factor, neighbours, n_candidates, n_random,
                    seed, row_offset, support, q_out, nk, s1, s2, log_norm_out, arrays=None):
    """Truncated E-step of one chunk; see the module docstring.

    Parameters
    ----------
    X : (n, D) float32 or float64, C-contiguous
    sample_weight : (n,) float64, or (0,) for unit weights
    c, means, factor : the components in canonical form; ``factor`` (K, D, D) upper
        triangular (full, tied) or (K, D) square roots of diagonal precisions
    neighbours : (K, H) int64, ``neighbours[k, 0] == k``; unused when n_candidates >= K
    n_candidates : int, G; >= K evaluates every component (exact top-L)
    n_random : int, R <= G - L of the G candidates drawn at random
    seed : int >= 0; row_offset : global index of the chunk's first row
    support : (n, L) int32 or int64, in and out; -1 marks an empty slot.  Unless the search
        is exhaustive, every row should come with a support (fastvi starts from the exact
        top L of the dense kernel); a row without one only gets random candidates
    q_out : (n, L) float64 out, q of the support
    nk, s1, s2 : statistics accumulators as in ``estep_full`` / ``estep_diag`` (K = 0
        skips them; for full factors only the upper triangle of s2 is added)
    log_norm_out : (n,) or (0,), per-row log-normaliser over the support
    arrays : ``search_arrays(means, factor)``, when the caller keeps them for several chunks

    Returns
    -------
    float : sum_n w_n log sum_{k in S_n} rho_nk
    """
    n_components, n_features = means.shape
    full = factor.ndim == 3
    if arrays is None:
        arrays = search_arrays(means, factor)
    mp, up, lt, mpp, expanded, x0 = arrays
    n_candidates = min(int(n_candidates), n_components)
    n_search = n_candidates - int(n_random)
    n_active = support.shape[1]
    deferred = full and n_candidates < n_components
    exact_k = np.empty((X.shape[0] if deferred else 0, 2 * n_active), dtype=np.int64)
    total = _truncated(X, sample_weight, c, mp, lt, mpp, expanded, x0, neighbours, n_search,
                       n_candidates, int(seed), int(row_offset), support, q_out, log_norm_out,
                       exact_k)
    if deferred:
        offsets, rows, slots = _bucket(exact_k, n_components)
        values = np.empty(exact_k.shape)
        _exact_values(X, c, mp, up, offsets, rows, slots, values)
        total = _decide_rows(exact_k, values, sample_weight, support, q_out, log_norm_out)
    if nk.shape[0] > 0:
        offsets, rows, slots = _bucket(support, n_components)
        _component_moments(X, mp, full, offsets, rows, slots, q_out, sample_weight, nk, s1,
                           s2 if full else np.zeros((0, n_features, n_features)),
                           np.zeros((0, n_features)) if full else s2)
    return total


@njit(**_KERNEL)
def _rank_rows(X, c, mpp, expanded, x0, out):
    """out[t, k]: the ranking score of step 1 (log rho, full components in the float32
    expanded form) for every row and component."""
    n_features = X.shape[1]
    full = mpp.shape[0] == 0
    for t in prange(X.shape[0]):
        x = X[t]
        d = np.zeros(mpp.shape[2])
        y = np.empty(n_features)
        z = np.zeros(expanded.shape[1], dtype=expanded.dtype)
        if full:
            _expanded_row(x, x0, y, z)
        for k in range(c.shape[0]):
            if full:
                out[t, k] = c[k] - 0.5 * _dot(z, expanded[k])
            else:
                out[t, k] = _log_rho_diag(x, mpp[k, 0], mpp[k, 1], c[k], d, n_features)


def rank_table(X, c, means, factor, arrays=None):
    """The (n, K) table of the search's ranking scores (log rho_nk; for full components
    from the float32 expanded form, accurate to ~1e-6 relative) for a few rows: the
    neighbour lists rank the components at each mean with it.  ``arrays`` as in
    :func:`estep_truncated`."""
    if arrays is None:
        arrays = search_arrays(means, factor)
    _, _, _, mpp, expanded, x0 = arrays
    out = np.empty((X.shape[0], means.shape[0]))
    _rank_rows(np.ascontiguousarray(X, dtype=np.float64), c, mpp, expanded, x0, out)
    return out
