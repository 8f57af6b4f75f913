"""The fused E-step: log-densities, log-sum-exp, responsibilities and sufficient statistics.

Every algorithm in fastvi (EM, VB-EM, and later the streaming ones) calls one of the two
kernels below, once per chunk of rows.  A component is given in the canonical form of
DESIGN.md,

    log rho_nk = c_k - 1/2 || U_k^T (x_n - m_k) ||^2 ,

where ``U_k`` is an upper-triangular factor with ``U_k U_k^T`` equal to the precision (the
``precisions_cholesky_`` of scikit-learn) or, for the ``diag`` kernel, the square root of
a diagonal precision.  EM passes ``c_k = log pi_k + log|U_k| - D/2 log 2 pi``; VB-EM passes
the expectations of Bishop (2006) eq. 10.64-10.66 (see ``fastvi/mixture/vb.py``).

The statistics are *centred* about ``m_k`` (the same difference ``x_n - m_k`` the density
needed, so the centring costs nothing):

    N_k  += sum_n w_n r_nk
    s1_k += sum_n w_n r_nk (x_n - m_k)
    s2_k += sum_n w_n r_nk (x_n - m_k)(x_n - m_k)^T     (its diagonal for ``diag``)

Only the upper triangle of ``s2`` is accumulated; the caller mirrors it
(``fastvi.engine.stats.SufficientStats``).

Determinism: rows are cut into blocks of ``BLOCK_ROWS``; each block adds into its own slot;
slots are added into the outputs in block order, ``GROUP_BLOCKS`` blocks at a time (which
bounds the scratch memory).  No float is ever summed in an order that depends on the number
of threads, so results are bit-identical for any ``NUMBA_NUM_THREADS``.

Optional inputs and outputs are passed as arrays of length 0 when not wanted (the
statistics too):
``sample_weight`` (n,), ``log_norm_out`` (n,), ``resp_out`` (n, K), ``labels_out`` (n, L):
the L most probable components of each row, most probable first (L = 1: the labels).
All float accumulation is in float64 whatever the dtype of ``X`` (float32 or float64).

Speed (why the code looks the way it does)
------------------------------------------
LLVM vectorises innermost loops only.  So inside a block the rows become the vector
dimension: the block is copied transposed, ``xT[i, t] = X[start + t, i]`` (converted to
float64 there, so float32 input costs the same), and every inner loop runs over the ``t``
rows of the block, contiguous in memory.  The feature dimension is padded with zeros to a
multiple of ``_TILE`` (4), so the loops over features are unrolled by hand four at a time
without a remainder: a padded feature has ``x = m = 0`` and a zero factor, and adds
exactly zero.  The centred differences ``x_i - m_ki`` are formed on the fly inside those
loops (an add per use, on otherwise idle adder ports) rather than stored: writing a
(D, rows) array per component costs more memory traffic than it saves.  Hand-unrolled
tiles keep several running sums in registers per loaded vector: the triangular product
``U_k^T (x - m_k)`` four output columns and four input features at a time, the second
moments as 4 x 4 tiles of dot products over the rows.  Each slot entry is written once
per block (never updated in an inner loop, which would block vectorisation).

``math.exp`` and ``math.log`` are scalar libm calls, so the responsibilities use
:func:`_exp_rows` and :func:`_log_rows`, written out in vectorisable arithmetic (relative
error ~2e-16).  The responsibilities are ``exp(l_k - max_k l) / sum_k exp(l_k - max_k l)``:
one exp per (row, component) and one log per row.

No BLAS is used, so the kernels need no thread limits from the caller.

(Over 500 lines: the two kernels and the block helpers they inline are tuned together, for
LLVM's vectoriser, and are read together; ``truncated.py`` reuses the helpers.)
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

BLOCK_ROWS = 256
GROUP_BLOCKS = 32
_TILE = 4  # feature padding and hand-unrolling width

# 'reassoc' lets LLVM vectorise the sums over rows; 'nnan' and 'ninf' are left out on
# purpose, so a NaN or an underflowed -inf keeps its IEEE meaning.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# error_model="numpy": a float division by zero gives inf or NaN, as in NumPy, instead of
# numba's default ZeroDivisionError check, a branch in every division that keeps LLVM from
# vectorising the loop around it (the log below was scalar for that reason).
_KERNEL = dict(parallel=True, nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
_INNER = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")

# exp(x) = 2^n exp(f), n = round(x / ln 2), f = x - n ln 2 (Cody-Waite: ln 2 in two parts).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# Adding 1.5 * 2^52 rounds to an integer, which then sits in the low mantissa bits.
_ROUND_MAGIC = 6755399441055744.0
_EXP_MIN = -708.0  # below it exp underflows to subnormals; we return 0 there


@intrinsic
def _as_int64(typingctx, x):
    """The bits of a float64 as an int64 (a register move, vectorisable)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _as_float64(typingctx, x):
    """The int64 bits as a float64 (a register move, vectorisable)."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _shift_right(typingctx, x, count):
    """x >> count for an int64 x, logical (a zero enters the top bit).  AVX2 has a
    vectorised logical shift of 64-bit lanes and no arithmetic one, so numba's ``>>``
    (arithmetic on int64) kept the loops that used it scalar."""
    if x != types.int64 or not isinstance(count, types.IntegerLiteral):
        return None
    shift = count.literal_value

    def codegen(context, builder, signature, args):
        return builder.lshr(args[0], ir.Constant(ir.IntType(64), shift))
    return types.int64(types.int64, count), codegen


# Only 'contract' here: 'reassoc' would fold (t + MAGIC) - MAGIC into t.  Never give
# these functions numba's inline='always' (they would take the caller's flags); LLVM
# inlining keeps the flags per instruction and is harmless.
@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def exp_nonpositive(z):
    """exp(z) for z <= ~0 in vectorisable arithmetic (relative error ~2e-16): below -708
    it gives 0 (-inf too), NaN gives NaN.  Inlined into the loops that call it."""
    x = _EXP_MIN if z < _EXP_MIN else z
    r = x * _LOG2E + _ROUND_MAGIC
    nf = r - _ROUND_MAGIC
    f = x - nf * _LN2_HI - nf * _LN2_LO
    # Taylor series of exp(f), |f| <= ln2 / 2, to degree 13 (Horner)
    p = 1.0 / 6227020800.0
    p = p * f + 1.0 / 479001600.0
    p = p * f + 1.0 / 39916800.0
    p = p * f + 1.0 / 3628800.0
    p = p * f + 1.0 / 362880.0
    p = p * f + 1.0 / 40320.0
    p = p * f + 1.0 / 5040.0
    p = p * f + 1.0 / 720.0
    p = p * f + 1.0 / 120.0
    p = p * f + 1.0 / 24.0
    p = p * f + 1.0 / 6.0
    p = p * f + 0.5
    p = p * f + 1.0
    p = p * f + 1.0
    # the integer n is in the low bits of r; (n + 1023) << 52 is the double 2^n
    # (the high bits of the magic number shift out of the 64-bit word)
    scale = _as_float64((_as_int64(r) + 1023) << 52)
    return 0.0 if z < _EXP_MIN else p * scale


@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _exp_rows(z, shift, out, total, n):
    """out[k, :n] = exp(z[k, :n] - shift[:n]) and total[:n] = sum_k out[k, :n].

    :func:`exp_nonpositive` of arguments <= ~0.  The order of the sum over k is fixed
    (k ascending).  Four components share one loop over the rows: each exp is a chain of
    ~20 dependent operations, and one chain per iteration left the out-of-order core
    waiting on it (LLVM does not interleave this loop by itself); four independent chains
    per iteration made this function a third faster, with the same bits.
    """
    for t in range(n):
        total[t] = 0.0
    n_components = z.shape[0]
    k = 0
    while k + 4 <= n_components:
        z0, z1, z2, z3 = z[k], z[k + 1], z[k + 2], z[k + 3]
        o0, o1, o2, o3 = out[k], out[k + 1], out[k + 2], out[k + 3]
        for t in range(n):
            s = shift[t]
            v0 = exp_nonpositive(z0[t] - s)
            v1 = exp_nonpositive(z1[t] - s)
            v2 = exp_nonpositive(z2[t] - s)
            v3 = exp_nonpositive(z3[t] - s)
            o0[t] = v0
            o1[t] = v1
            o2[t] = v2
            o3[t] = v3
            total[t] = (((total[t] + v0) + v1) + v2) + v3
        k += 4
    for k in range(k, n_components):
        zk = z[k]
        ok = out[k]
        for t in range(n):
            v = exp_nonpositive(zk[t] - shift[t])
            ok[t] = v
            total[t] += v


_SQRT2 = 1.4142135623730951
_MANTISSA = (1 << 52) - 1
_EXP_ONE = 1023 << 52  # the exponent bits of 1.0


_EXP_BIAS_MAGIC = 0x4330000000000000  # the bits of 2^52: or-ing in an integer < 2^52 adds it


@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _log_rows(s, out, n):
    """out[:n] = log(s[:n]) for s >= 0 (a vectorisable log; 0 gives -inf, NaN gives NaN).

    s = 2^e m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(z), z = (m - 1)/(m + 1),
    |z| <= 0.172, by its odd series to z^21 (truncation < 3e-17 relative).  Subnormal s
    are not handled (they do not occur: s is a sum of exps whose largest term is 1).
    One loop that LLVM vectorises: no division check (``error_model="numpy"``), a
    logical shift for the exponent (numba's ``>>`` on int64 is arithmetic, which AVX2
    lacks; either kept this loop scalar), and no int64 -> float64 conversion (AVX2 has no
    vector one): the biased exponent becomes a float as the double 2^52 + e minus 2^52.
    """
    for t in range(n):
        st = s[t]
        b = _as_int64(st)
        e = _as_float64(_shift_right(b, 52) | _EXP_BIAS_MAGIC) - 4503599627370496.0 - 1023.0
        m = _as_float64((b & _MANTISSA) | _EXP_ONE)  # m in [1, 2)
        big = m > _SQRT2
        m = m * 0.5 if big else m
        e = e + 1.0 if big else e
        z = (m - 1.0) / (m + 1.0)
        w = z * z
        p = 1.0 / 21.0
        p = p * w + 1.0 / 19.0
        p = p * w + 1.0 / 17.0
        p = p * w + 1.0 / 15.0
        p = p * w + 1.0 / 13.0
        p = p * w + 1.0 / 11.0
        p = p * w + 1.0 / 9.0
        p = p * w + 1.0 / 7.0
        p = p * w + 1.0 / 5.0
        p = p * w + 1.0 / 3.0
        log_m = 2.0 * z + (2.0 * z) * (w * p)
        v = e * _LN2_HI + (e * _LN2_LO + log_m)
        out[t] = v if (st > 0.0 and st < np.inf) else (-np.inf if st == 0.0 else st)


@njit(**_INNER)
def _padded(n_features):
    return (n_features + _TILE - 1) // _TILE * _TILE


@njit(**_INNER)
def _block_start(X, sample_weight, start, n, n_pad, n_components):
    """Scratch arrays of one block (BLOCK_ROWS columns each), with the rows loaded.

    xT[i, t] = X[start + t, i] in float64, its padding features zero; w the row weights;
    lr, e (K, BLOCK_ROWS) log rho and exps; ws, scale, lse, tmp per-row scratch.
    """
    n_features = X.shape[1]
    xT = np.empty((n_pad, BLOCK_ROWS))
    xT[n_features:, :] = 0.0
    rows = X[start:start + n]
    for i in range(n_features):
        xi = xT[i]
        for t in range(n):
            xi[t] = rows[t, i]
    w = np.empty(BLOCK_ROWS)
    for t in range(n):
        w[t] = sample_weight[start + t] if sample_weight.shape[0] > 0 else 1.0
    lr = np.empty((n_components, BLOCK_ROWS))
    e = np.empty((n_components, BLOCK_ROWS))
    ws = np.empty(BLOCK_ROWS)
    scale = np.empty(BLOCK_ROWS)
    lse = np.empty(BLOCK_ROWS)
    tmp = np.empty(BLOCK_ROWS)
    return xT, lr, e, w, ws, scale, lse, tmp


@njit(**_INNER)
def _normalise(lr, n, e, scale, lse, tmp):
    """Log-sum-exp over components of the block's log rho ``lr`` (K, B).

    Leaves ``e[k, t] = exp(lr[k, t] - top_t)`` and ``lse[t] = log sum_k rho_tk``, and
    ``scale[t] = 1 / sum_k e[k, t]`` (0 for a row whose rho are all 0), so that the
    responsibility is ``e[k, t] * scale[t]``.  A NaN anywhere in a row makes its lse and
    responsibilities NaN; a row with every log rho = -inf gets lse = -inf and r = 0.
    """
    n_components = lr.shape[0]
    top = scale  # reuse: the largest log rho per row
    for t in range(n):
        top[t] = lr[0, t]
    for k in range(1, n_components):
        for t in range(n):
            v = lr[k, t]
            top[t] = v if v > top[t] else top[t]
    for t in range(n):
        # shift by 0 when the max is -inf (all -inf) or NaN, so no inf - inf appears
        top[t] = top[t] if top[t] > -np.inf else 0.0
    total = tmp
    _exp_rows(lr, top, e, total, n)
    _log_rows(total, lse, n)
    for t in range(n):
        lse[t] += top[t]
        scale[t] = 1.0 / total[t] if total[t] > 0.0 else 0.0


@njit(**_INNER)
def _emit_rows(start, n, lr, e, scale, lse, log_norm_out, resp_out, labels_out):
    """Write the per-row outputs that the caller asked for."""
    n_components = lr.shape[0]
    if log_norm_out.shape[0] > 0:
        for t in range(n):
            log_norm_out[start + t] = lse[t]
    if resp_out.shape[0] > 0:
        for t in range(n):
            for k in range(n_components):
                resp_out[start + t, k] = e[k, t] * scale[t]
    if labels_out.shape[0] > 0:
        # the L = labels_out.shape[1] most probable components, most probable first
        top_v = np.empty(labels_out.shape[1])
        for t in range(n):
            top_k = labels_out[start + t]
            kept = 0
            for k in range(n_components):
                kept = _keep_top(k, lr[k, t], top_k, top_v, kept)


@njit(**_INNER)
def _keep_top(k, value, best_k, best_v, n_kept):
    """Insert (k, value) into the descending top list (best_k, best_v) of n_kept entries;
    return the new count.  Equal values keep the earlier entry first (so L = 1 is the
    first maximum, as ``argmax``), and a NaN first entry is never displaced.
    """
    n_top = best_k.shape[0]
    if n_kept == n_top and not value > best_v[n_top - 1]:
        return n_kept
    pos = n_kept if n_kept < n_top else n_top - 1
    while pos > 0 and value > best_v[pos - 1]:
        if pos < n_top:
            best_k[pos] = best_k[pos - 1]
            best_v[pos] = best_v[pos - 1]
        pos -= 1
    best_k[pos] = k
    best_v[pos] = value
    return n_kept + 1 if n_kept < n_top else n_kept


@njit(**_INNER)
def _weighted_lse(w, lse, n):
    total = 0.0
    for t in range(n):
        total += w[t] * lse[t]
    return total


@njit(**_INNER)
def _quad_full(xT, mean, U, n, y, c, lr):
    """lr[t] = c - 1/2 || U^T (xT[:, t] - mean) ||^2 for upper-triangular U (zero-padded).

    Four output columns j..j+3 are done together, four input rows i..i+3 at a time: each
    centred vector d_i = x_i - m_i (formed on the fly, never stored) feeds four
    multiply-adds, and the 16 factor entries of the tile stay in registers.  The partial
    sums of the columns live in y (4, B).
    """
    y0, y1, y2, y3 = y[0], y[1], y[2], y[3]
    for t in range(n):
        lr[t] = 0.0
    for j in range(0, xT.shape[0], _TILE):
        for i in range(0, j + _TILE, _TILE):
            a0, a1, a2, a3 = U[i, j], U[i + 1, j], U[i + 2, j], U[i + 3, j]
            b0, b1, b2, b3 = U[i, j + 1], U[i + 1, j + 1], U[i + 2, j + 1], U[i + 3, j + 1]
            c0, c1, c2, c3 = U[i, j + 2], U[i + 1, j + 2], U[i + 2, j + 2], U[i + 3, j + 2]
            e0, e1, e2, e3 = U[i, j + 3], U[i + 1, j + 3], U[i + 2, j + 3], U[i + 3, j + 3]
            x0, x1, x2, x3 = xT[i], xT[i + 1], xT[i + 2], xT[i + 3]
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            if i == 0 and i == j:  # the only tile of these columns: square them now
                for t in range(n):
                    d0, d1, d2, d3 = x0[t] - m0, x1[t] - m1, x2[t] - m2, x3[t] - m3
                    va = a0 * d0 + a1 * d1 + a2 * d2 + a3 * d3
                    vb = b0 * d0 + b1 * d1 + b2 * d2 + b3 * d3
                    vc = c0 * d0 + c1 * d1 + c2 * d2 + c3 * d3
                    ve = e0 * d0 + e1 * d1 + e2 * d2 + e3 * d3
                    lr[t] += (va * va + vb * vb) + (vc * vc + ve * ve)
            elif i == 0:
                for t in range(n):
                    d0, d1, d2, d3 = x0[t] - m0, x1[t] - m1, x2[t] - m2, x3[t] - m3
                    y0[t] = a0 * d0 + a1 * d1 + a2 * d2 + a3 * d3
                    y1[t] = b0 * d0 + b1 * d1 + b2 * d2 + b3 * d3
                    y2[t] = c0 * d0 + c1 * d1 + c2 * d2 + c3 * d3
                    y3[t] = e0 * d0 + e1 * d1 + e2 * d2 + e3 * d3
            elif i == j:  # the diagonal tile, last: finish the columns and square them
                for t in range(n):
                    d0, d1, d2, d3 = x0[t] - m0, x1[t] - m1, x2[t] - m2, x3[t] - m3
                    va = y0[t] + a0 * d0 + a1 * d1 + a2 * d2 + a3 * d3
                    vb = y1[t] + b0 * d0 + b1 * d1 + b2 * d2 + b3 * d3
                    vc = y2[t] + c0 * d0 + c1 * d1 + c2 * d2 + c3 * d3
                    ve = y3[t] + e0 * d0 + e1 * d1 + e2 * d2 + e3 * d3
                    lr[t] += (va * va + vb * vb) + (vc * vc + ve * ve)
            else:
                for t in range(n):
                    d0, d1, d2, d3 = x0[t] - m0, x1[t] - m1, x2[t] - m2, x3[t] - m3
                    y0[t] += a0 * d0 + a1 * d1 + a2 * d2 + a3 * d3
                    y1[t] += b0 * d0 + b1 * d1 + b2 * d2 + b3 * d3
                    y2[t] += c0 * d0 + c1 * d1 + c2 * d2 + c3 * d3
                    y3[t] += e0 * d0 + e1 * d1 + e2 * d2 + e3 * d3
    for t in range(n):
        lr[t] = c - 0.5 * lr[t]


@njit(**_INNER)
def _moments_full(xT, mean, r, n, s1, s2):
    """Centred moments of one component over the block; returns sum_t r[t].

    s1[i] = sum_t r_t d_it and s2[i, j] = sum_t r_t d_it d_jt (i <= j), d = xT - mean,
    as tiles of dot products over the rows: two features i, i+1 against four j..j+3,
    eight running sums, so that they and the loaded rows fit AVX2's sixteen vector
    registers (a 4 x 4 tile's sixteen sums spilled to the stack, and each spilled sum
    made a loop-carried chain through memory).  d is formed on the fly (never stored).
    """
    n_features = s2.shape[0]
    n_pad = xT.shape[0]
    total = 0.0
    for t in range(n):
        total += r[t]
    for i in range(0, n_pad, 2):
        xa0, xa1 = xT[i], xT[i + 1]
        ma0, ma1 = mean[i], mean[i + 1]
        j0 = i - i % _TILE  # the tile of four that holds i
        # the first tile: columns j0..j0+3 (those below i are thrown away), and s1
        xb0, xb1, xb2, xb3 = xT[j0], xT[j0 + 1], xT[j0 + 2], xT[j0 + 3]
        mb0, mb1, mb2, mb3 = mean[j0], mean[j0 + 1], mean[j0 + 2], mean[j0 + 3]
        f0 = f1 = 0.0
        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = 0.0
        for t in range(n):
            rt = r[t]
            p0 = rt * (xa0[t] - ma0)
            p1 = rt * (xa1[t] - ma1)
            v0, v1, v2, v3 = xb0[t] - mb0, xb1[t] - mb1, xb2[t] - mb2, xb3[t] - mb3
            f0 += p0
            f1 += p1
            c00 += p0 * v0
            c01 += p0 * v1
            c02 += p0 * v2
            c03 += p0 * v3
            c10 += p1 * v0
            c11 += p1 * v1
            c12 += p1 * v2
            c13 += p1 * v3
        first = (f0, f1)
        tile = ((c00, c01, c02, c03), (c10, c11, c12, c13))
        for a in range(2):
            if i + a < n_features:
                s1[i + a] = first[a]
                for b in range(_TILE):
                    if j0 + b >= i + a and j0 + b < n_features:
                        s2[i + a, j0 + b] = tile[a][b]
        # the later tiles: the same products without the first moments (two more
        # running sums in this loop would spill again)
        for j in range(j0 + _TILE, n_pad, _TILE):
            xb0, xb1, xb2, xb3 = xT[j], xT[j + 1], xT[j + 2], xT[j + 3]
            mb0, mb1, mb2, mb3 = mean[j], mean[j + 1], mean[j + 2], mean[j + 3]
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = 0.0
            for t in range(n):
                rt = r[t]
                p0 = rt * (xa0[t] - ma0)
                p1 = rt * (xa1[t] - ma1)
                v0, v1, v2, v3 = xb0[t] - mb0, xb1[t] - mb1, xb2[t] - mb2, xb3[t] - mb3
                c00 += p0 * v0
                c01 += p0 * v1
                c02 += p0 * v2
                c03 += p0 * v3
                c10 += p1 * v0
                c11 += p1 * v1
                c12 += p1 * v2
                c13 += p1 * v3
            tile = ((c00, c01, c02, c03), (c10, c11, c12, c13))
            for a in range(2):
                for b in range(_TILE):
                    if i + a < n_features and j + b < n_features:
                        s2[i + a, j + b] = tile[a][b]
    return total


@njit(**_INNER)
def _pad_means(means):
    """Means (K, Dp), zero-padded to Dp features."""
    n_components, n_features = means.shape
    mp = np.zeros((n_components, _padded(n_features)))
    mp[:, :n_features] = means
    return mp


@njit(**_INNER)
def _pad_full(factor):
    """The upper triangles of the factors (K, D, D), zero-padded to (K, Dp, Dp)."""
    n_components, n_features = factor.shape[0], factor.shape[1]
    n_pad = _padded(n_features)
    fp = np.zeros((n_components, n_pad, n_pad))
    for k in range(n_components):
        for i in range(n_features):
            for j in range(i, n_features):
                fp[k, i, j] = factor[k, i, j]
    return fp


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
    n_pad = _padded(n_features)
    mp, up = _pad_means(means), _pad_full(prec_chol)
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
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
            start = (first + b) * BLOCK_ROWS
            n = min(BLOCK_ROWS, n_rows - start)
            xT, lr, e, w, ws, scale, lse, tmp = _block_start(
                X, sample_weight, start, n, n_pad, n_components)
            y = np.empty((_TILE, BLOCK_ROWS))
            r = np.empty(BLOCK_ROWS)
            for k in range(n_components):
                _quad_full(xT, mp[k], up[k], n, y, c[k], lr[k])
            _normalise(lr, n, e, scale, lse, tmp)
            _emit_rows(start, n, lr, e, scale, lse, log_norm_out, resp_out, labels_out)
            slot_lse[b] = _weighted_lse(w, lse, n)
            if want_stats:
                for t in range(n):
                    ws[t] = w[t] * scale[t]
                for k in range(n_components):
                    for t in range(n):
                        r[t] = e[k, t] * ws[t]  # the weighted responsibility
                    slot_n[b, k] = _moments_full(xT, mp[k], r, n, slot_s1[b, k], slot_s2[b, k])
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
    n_pad = _padded(n_features)
    mp, pp = _pad_means(means), _pad_means(prec_sqrt)
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
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
            start = (first + b) * BLOCK_ROWS
            n = min(BLOCK_ROWS, n_rows - start)
            xT, lr, e, w, ws, scale, lse, tmp = _block_start(
                X, sample_weight, start, n, n_pad, n_components)
            _quad_diag(xT, mp, pp, c, n, lr)
            _normalise(lr, n, e, scale, lse, tmp)
            _emit_rows(start, n, lr, e, scale, lse, log_norm_out, resp_out, labels_out)
            slot_lse[b] = _weighted_lse(w, lse, n)
            if want_stats:
                for t in range(n):
                    ws[t] = w[t] * scale[t]
                for k in range(n_components):
                    r = e[k]
                    for t in range(n):
                        r[t] *= ws[t]  # the weighted responsibility (e is not needed again)
                _moments_diag(xT, mp, e, n, slot_n[b], slot_s1[b], slot_s2[b])
        total += _add_slots(n_slots, slot_lse, slot_n, slot_s1, slot_s2, nk, s1, s2)
    return total


@njit(**_INNER)
def _moments_diag(xT, mp, r, n, sn, s1, s2):
    """Centred moments of every component over the block, into its slot rows.

    sn[k] = sum_t r_kt, s1[k, i] = sum_t r_kt d_kit, s2[k, i] = sum_t r_kt d_kit^2 with
    d_ki = x_i - mp[k, i] formed on the fly and ``r`` the weighted responsibilities (K, B).
    Feature tiles outer and components inner: the four feature rows of a tile stay in L1
    while every component passes over them (the whole transposed block does not fit).
    """
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
            mean = mp[k]
            rk = r[k]
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            a0 = a1 = a2 = a3 = 0.0
            b0 = b1 = b2 = b3 = 0.0
            for t in range(n):
                rt = rk[t]
                d0 = x0[t] - m0
                d1 = x1[t] - m1
                d2 = x2[t] - m2
                d3 = x3[t] - m3
                e0 = rt * d0
                e1 = rt * d1
                e2 = rt * d2
                e3 = rt * d3
                a0 += e0
                a1 += e1
                a2 += e2
                a3 += e3
                b0 += e0 * d0
                b1 += e1 * d1
                b2 += e2 * d2
                b3 += e3 * d3
            sums = ((a0, b0), (a1, b1), (a2, b2), (a3, b3))
            for a in range(_TILE):
                if i + a < n_features:
                    s1[k, i + a] = sums[a][0]
                    s2[k, i + a] = sums[a][1]


@njit(**_INNER)
def _quad_diag(xT, mp, pp, c, n, lr):
    """lr[k, t] = c[k] - 1/2 sum_i ((xT[i, t] - mp[k, i]) pp[k, i])^2 for every component.

    Feature tiles outer and components inner, so the four feature rows of a tile stay in
    L1 while every component passes over them; lr[k] holds the running sum until the last
    tile (the first tile writes it, so no zeroing pass).
    """
    n_components = lr.shape[0]
    n_pad = xT.shape[0]
    for i in range(0, n_pad, _TILE):
        x0, x1, x2, x3 = xT[i], xT[i + 1], xT[i + 2], xT[i + 3]
        for k in range(n_components):
            mean = mp[k]
            prec_sqrt = pp[k]
            q = lr[k]
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            p0, p1, p2, p3 = prec_sqrt[i], prec_sqrt[i + 1], prec_sqrt[i + 2], prec_sqrt[i + 3]
            if i == 0:
                for t in range(n):
                    u0 = (x0[t] - m0) * p0
                    u1 = (x1[t] - m1) * p1
                    u2 = (x2[t] - m2) * p2
                    u3 = (x3[t] - m3) * p3
                    q[t] = u0 * u0 + u1 * u1 + u2 * u2 + u3 * u3
            else:
                for t in range(n):
                    u0 = (x0[t] - m0) * p0
                    u1 = (x1[t] - m1) * p1
                    u2 = (x2[t] - m2) * p2
                    u3 = (x3[t] - m3) * p3
                    q[t] += u0 * u0 + u1 * u1 + u2 * u2 + u3 * u3
    for k in range(n_components):
        q = lr[k]
        ck = c[k]
        for t in range(n):
            q[t] = ck - 0.5 * q[t]
