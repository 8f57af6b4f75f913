"""The E-step on a CUDA GPU: log-densities, log-sum-exp, responsibilities and statistics.

The same mathematics as the CPU kernels (``fastvi.kernels.estep``): a component is given
in the canonical form of DESIGN.md,

    log rho_nk = c_k - 1/2 || U_k^T (x_n - m_k) ||^2 ,

``U_k`` upper-triangular (K, D, D) for full and tied, or the square roots of a diagonal
precision (K, D) for diag and spherical; the statistics are centred about ``m_k``.  The
backend (``fastvi.engine.cuda``) runs four kernels on each chunk, on one stream:

1. ``log_rho_full`` / ``log_rho_diag``: one thread per row, every component; the rows are
   read once here.  The components' parameters are staged through shared memory, a tile
   of components at a time (as many as fit in ``SHARED_BYTES``; all K when they fit; a
   full factor as its packed upper triangle), or read from global memory when not even
   one component fits (full with D > 99).  Log rho is stored (K, rows): the threads of a
   warp, consecutive rows, write and later read consecutive addresses.
2. ``normalise``: one thread per row: the log-sum-exp, the labels (the L most probable
   components) and the responsibilities, written over the log rho in place.
3. ``moments``: block (k, g) adds, over the rows of group g (``GROUP_ROWS`` rows), the
   centred moments of component k; block (K, g) adds the weighted log-normalisers (k
   varies fastest in the grid, so the blocks that run together read the same rows, from
   L2).  The rows of the group pass through shared memory ``ROW_TILE`` at a time, centred
   once per block; each thread owns entries of the augmented moment matrix
   ``sum_n w_n r_nk a a^T`` with ``a = (1, x_n - m_k)`` (``entry_tables``: N_k, s1 and the
   upper triangle of s2, or its diagonal), and adds its rows in ascending order.
4. ``reduce_groups``: one thread per entry adds the groups' partials, g ascending.

Determinism: nothing summed uses an atomic, and every sum runs in an order fixed by the
chunk's rows and ``GROUP_ROWS`` alone (rows ascending within a group, groups ascending),
never by the block size, the tile sizes or the GPU model.  So a chunk's statistics are the
same bits on every run, and on any GPU that runs the same PTX (numba-cuda compiles it from
the same code; fused multiply-adds are chosen there, not by the GPU).  They agree with the
CPU kernels to rounding only: those sum in another order.

All arithmetic is float64 whatever the dtype of the rows (float32 rows are widened as they
are read), as on the CPU: the statistics are exact to float64 rounding.

The launch parameters are module constants, read at each call, so that the tests can
shrink them (several blocks, groups and tiles on a few rows, under the simulator).
"""
import math

import numpy as np
from numba import cuda, float64

ROW_THREADS = 128       # threads per block of the per-row kernels (1, 2)
ENTRY_THREADS = 128     # threads per block of the moments kernel (3); they stride over entries
REDUCE_THREADS = 256    # threads per block of the reduction (4)
GROUP_ROWS = 4096       # rows per statistics partial (the only shape that sets the bits)
ROW_TILE = 32           # rows staged through shared memory at a time in the moments kernel
SHARED_BYTES = 40 * 1024  # dynamic shared memory a kernel may ask for (48 KiB without opt-in)

_NEG_INF = -math.inf


def entry_tables(n_features, full):
    """The entries of the augmented moment matrix that the moments kernel computes.

    Entry e is ``sum_n w_n r_nk a_i a_j`` with ``a_{-1} = 1`` and ``a_i = x_ni - m_ki``:
    e = 0 is N_k (i = j = -1), e = 1..D is s1 (i = -1, j = 0..D-1), and the rest s2's upper
    triangle, row by row (full) or its diagonal.  Returns ``(pair_i, pair_j)`` int32.
    """
    first = [(-1, -1)] + [(-1, j) for j in range(n_features)]
    if full:
        second = [(i, j) for i in range(n_features) for j in range(i, n_features)]
    else:
        second = [(i, i) for i in range(n_features)]
    table = np.array(first + second, dtype=np.int32)
    return np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1])


def component_words(n_features, full):
    """The float64 words of one component's parameters in shared memory: c, m, and U
    (its packed upper triangle, column by column, for full; its diagonal for diag)."""
    return 1 + n_features + (n_features * (n_features + 1) // 2 if full else n_features)


def component_tile(n_components, n_features, full):
    """How many components' parameters (c, m, U) fit in ``SHARED_BYTES`` at once (at most
    K); 0 when not even one does, and the kernel then reads them from global memory."""
    return min(n_components, SHARED_BYTES // (8 * component_words(n_features, full)))


def row_tile(n_features):
    """Rows the moments kernel stages through shared memory at a time (0: none fit)."""
    return min(ROW_TILE, SHARED_BYTES // (8 * (n_features + 1)))


@cuda.jit
def log_rho_full(X, c, means, factor, tile, lr):
    """lr[k, n] = c_k - 1/2 ||U_k^T (x_n - m_k)||^2, one thread per row n.

    ``tile`` components at a time pass through dynamic shared memory (the launch gives
    ``8 * tile * component_words(D, True)`` bytes), U_k as its upper triangle packed
    column by column (column j, entries i = 0..j, at j (j + 1) / 2 + i);
    ``tile = 0`` reads the parameters where they are.
    """
    n = cuda.grid(1)
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    if tile == 0:
        if n < n_rows:
            for k in range(n_components):
                q = 0.0
                for j in range(n_features):
                    y = 0.0
                    for i in range(j + 1):
                        y += factor[k, i, j] * (X[n, i] - means[k, i])
                    q += y * y
                lr[k, n] = c[k] - 0.5 * q
        return
    shared = cuda.shared.array(0, dtype=float64)
    per = 1 + n_features + n_features * (n_features + 1) // 2
    for first in range(0, n_components, tile):
        count = min(tile, n_components - first)
        for index in range(cuda.threadIdx.x, count * per, cuda.blockDim.x):
            kk = index // per
            r = index - kk * per
            if r == 0:
                shared[index] = c[first + kk]
            elif r <= n_features:
                shared[index] = means[first + kk, r - 1]
            else:
                f = r - 1 - n_features          # packed index: column j, row i <= j
                j = int((math.sqrt(8.0 * f + 1.0) - 1.0) * 0.5)
                while (j + 1) * (j + 2) // 2 <= f:
                    j += 1
                while j * (j + 1) // 2 > f:
                    j -= 1
                shared[index] = factor[first + kk, f - j * (j + 1) // 2, j]
        cuda.syncthreads()
        if n < n_rows:
            for kk in range(count):
                base = kk * per
                packed = base + 1 + n_features
                q = 0.0
                for j in range(n_features):
                    y = 0.0
                    for i in range(j + 1):
                        y += shared[packed + i] * (X[n, i] - shared[base + 1 + i])
                    q += y * y
                    packed += j + 1
                lr[first + kk, n] = shared[base] - 0.5 * q
        cuda.syncthreads()


@cuda.jit
def log_rho_diag(X, c, means, factor, tile, lr):
    """``log_rho_full`` for a diagonal factor (K, D): ||U_k^T d||^2 = sum_i (u_ki d_i)^2
    (``8 * tile * component_words(D, False)`` bytes of shared memory)."""
    n = cuda.grid(1)
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    if tile == 0:
        if n < n_rows:
            for k in range(n_components):
                q = 0.0
                for i in range(n_features):
                    y = factor[k, i] * (X[n, i] - means[k, i])
                    q += y * y
                lr[k, n] = c[k] - 0.5 * q
        return
    shared = cuda.shared.array(0, dtype=float64)
    per = 1 + 2 * n_features
    for first in range(0, n_components, tile):
        count = min(tile, n_components - first)
        for index in range(cuda.threadIdx.x, count * per, cuda.blockDim.x):
            kk = index // per
            r = index - kk * per
            if r == 0:
                shared[index] = c[first + kk]
            elif r <= n_features:
                shared[index] = means[first + kk, r - 1]
            else:
                shared[index] = factor[first + kk, r - 1 - n_features]
        cuda.syncthreads()
        if n < n_rows:
            for kk in range(count):
                base = kk * per
                q = 0.0
                for i in range(n_features):
                    y = shared[base + 1 + n_features + i] * (X[n, i] - shared[base + 1 + i])
                    q += y * y
                lr[first + kk, n] = shared[base] - 0.5 * q
        cuda.syncthreads()


@cuda.jit
def normalise(lr, want_resp, lse, labels, top_v):
    """Per row n (``lr`` is (K, n)): ``lse[n] = log sum_k exp(lr[k, n])``; ``labels[n, :L]`` the L most
    probable components, most probable first (ties: the lower index first, so L = 1 is
    ``argmax``), when ``labels`` has rows (``top_v`` (n, L) is its scratch); and, when
    ``want_resp``, the responsibilities written over ``lr`` in place.

    The CPU kernel's conventions: a NaN in a row makes its lse and responsibilities NaN;
    a row whose log rho are all -inf gets lse = -inf and responsibilities 0.
    """
    n = cuda.grid(1)
    if n >= lr.shape[1]:
        return
    n_components = lr.shape[0]
    if labels.shape[0] > 0:
        n_top = labels.shape[1]
        kept = 0
        for k in range(n_components):
            value = lr[k, n]
            if kept == n_top and not value > top_v[n, n_top - 1]:
                continue
            pos = kept if kept < n_top else n_top - 1
            while pos > 0 and value > top_v[n, pos - 1]:
                if pos < n_top:
                    labels[n, pos] = labels[n, pos - 1]
                    top_v[n, pos] = top_v[n, pos - 1]
                pos -= 1
            labels[n, pos] = k
            top_v[n, pos] = value
            if kept < n_top:
                kept += 1
    top = lr[0, n]
    for k in range(1, n_components):
        if lr[k, n] > top:
            top = lr[k, n]
    if not top > _NEG_INF:          # all -inf, or NaN first: shift by 0 (no inf - inf)
        top = 0.0
    total = 0.0
    for k in range(n_components):
        e = math.exp(lr[k, n] - top)
        if want_resp:
            lr[k, n] = e
        total += e
    if total > 0.0:
        lse[n] = math.log(total) + top
    elif total == 0.0:
        lse[n] = _NEG_INF
    else:
        lse[n] = total              # NaN
    if want_resp:
        scale = 1.0 / total if total > 0.0 else 0.0
        for k in range(n_components):
            lr[k, n] *= scale


@cuda.jit
def moments(X, weights, resp, means, lse, pair_i, pair_j, group_rows, tile, partial):
    """Block (k, g): ``partial[g, k, e]`` = entry e (``entry_tables``) of component k over
    rows ``g * group_rows`` to the group's end (``resp`` is (K, n)); block (K, g):
    ``partial[g, K, 0]`` =
    ``sum_n w_n lse_n`` over those rows (the rest of its slot 0).  ``weights`` of length 0
    means all ones.  ``tile`` rows at a time pass through shared memory, centred
    (``8 * tile * (D + 1)`` bytes); ``tile = 0`` reads the rows where they are.  Either
    way every entry adds its rows in ascending order, so the bits do not depend on it.
    """
    k = cuda.blockIdx.x
    g = cuda.blockIdx.y
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    n_entries = pair_i.shape[0]
    start = g * group_rows
    stop = min(n_rows, start + group_rows)
    weighted = weights.shape[0] > 0
    if k == n_components:           # the log-normalisers: one sum, by thread 0
        for e in range(cuda.threadIdx.x, n_entries, cuda.blockDim.x):
            acc = 0.0
            if e == 0:
                for n in range(start, stop):
                    acc += (weights[n] if weighted else 1.0) * lse[n]
            partial[g, k, e] = acc
        return
    if tile == 0:
        for e in range(cuda.threadIdx.x, n_entries, cuda.blockDim.x):
            i = pair_i[e]
            j = pair_j[e]
            acc = 0.0
            for n in range(start, stop):
                rn = (weights[n] if weighted else 1.0) * resp[k, n]
                a = 1.0 if i < 0 else X[n, i] - means[k, i]
                b = 1.0 if j < 0 else X[n, j] - means[k, j]
                acc += (rn * a) * b
            partial[g, k, e] = acc
        return
    shared = cuda.shared.array(0, dtype=float64)
    width = n_features + 1            # a staged row: w r, then x - m_k
    # the running sums live in `partial` itself (only this block writes its slot): a
    # thread's entries vary in number, and a local array needs a compile-time size
    for e in range(cuda.threadIdx.x, n_entries, cuda.blockDim.x):
        partial[g, k, e] = 0.0
    for first in range(start, stop, tile):
        count = min(tile, stop - first)
        for index in range(cuda.threadIdx.x, count * width, cuda.blockDim.x):
            t = index // width
            f = index - t * width
            n = first + t
            if f == 0:
                shared[index] = (weights[n] if weighted else 1.0) * resp[k, n]
            else:
                shared[index] = X[n, f - 1] - means[k, f - 1]
        cuda.syncthreads()
        for e in range(cuda.threadIdx.x, n_entries, cuda.blockDim.x):
            i = pair_i[e]
            j = pair_j[e]
            acc = partial[g, k, e]
            for t in range(count):
                row = t * width
                a = 1.0 if i < 0 else shared[row + 1 + i]
                b = 1.0 if j < 0 else shared[row + 1 + j]
                acc += (shared[row] * a) * b
            partial[g, k, e] = acc
        cuda.syncthreads()


@cuda.jit
def reduce_groups(partial, out):
    """out[k, e] = sum_g partial[g, k, e], g ascending; one thread per (k, e)."""
    index = cuda.grid(1)
    n_groups, n_slots, n_entries = partial.shape
    if index >= n_slots * n_entries:
        return
    k = index // n_entries
    e = index - k * n_entries
    acc = 0.0
    for g in range(n_groups):
        acc += partial[g, k, e]
    out[k, e] = acc
