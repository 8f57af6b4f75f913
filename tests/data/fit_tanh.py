"""Derive the rational tanh of ``kernels/dense.py`` and check it on every float32 input.

Usage::

    python tests/data/fit_tanh.py [--degrees 5 5] [--clamp 9.1]

tanh |x| ~ |x| P(u) / Q(u), u = x^2, on [0, clamp], P of degree a and Q of degree b in u
(Q(0) = 1).  The fit minimises the largest *relative* error by Lawson's iteration
(Lawson 1961; see also Rice & Usow 1968) on the linearised problem: weighted least squares
for x P(u) - tanh(x) Q(u) = 0 with weights 1 / (tanh(x) Q_prev(u)), each point's weight
then multiplied by (its error)^0.3 so that the largest errors are levelled.  The variable
is scaled, s = u / clamp^2, for the conditioning of the least squares, and the
coefficients turned back into powers of u at the end.

The check evaluates the result as the kernel does (float64 Horner, one division, rounded
to float32) on every positive float32 up to 20, subnormals included (~1.1e9 inputs, about
40 s on two cores; tanh is odd and the kernel works on |x|; above 20 the clamp gives the
same value as at 20) and prints the largest error in float32 ulps
of the exact value (``math.tanh`` in float64).  ``clamp`` must be where tanh rounds to 1.0
in float32 (tanh x > 1 - 2^-25 for x > 9.01), so that the clamped inputs are right too.
"""
import argparse
import math

import numpy as np
from numba import njit, prange


def fit(a, b, clamp, iterations=200):
    """(P, Q) coefficients in powers of u = x^2, lowest first, and the max relative error."""
    n = 40_000
    x = np.concatenate([clamp * (1 - np.cos(np.linspace(0, np.pi / 2, n))),
                        np.geomspace(1e-5, 0.5, 4000)])
    x = np.unique(x[x > 0])
    t = np.tanh(x)
    s = x * x / clamp ** 2
    weight = np.ones_like(x)
    q_prev = np.ones_like(x)
    best = None
    for _ in range(iterations):
        A = np.concatenate([np.stack([x * s ** j for j in range(a + 1)], 1),
                            -np.stack([t * s ** j for j in range(1, b + 1)], 1)], 1)
        w = weight / (t * q_prev)
        sol = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)[0]
        p, q = sol[:a + 1], np.concatenate([[1.0], sol[a + 1:]])
        q_prev = np.polyval(q[::-1], s)
        rel = (x * np.polyval(p[::-1], s) / q_prev - t) / t
        err = np.abs(rel).max()
        if best is None or err < best[0]:
            best = (err, p, q)
        weight = np.maximum(weight * np.abs(rel) ** 0.3, 1e-300)
        weight /= weight.max()
    err, p, q = best
    return p / clamp ** (2 * np.arange(a + 1)), q / clamp ** (2 * np.arange(b + 1)), err


@njit(fastmath={"contract"}, error_model="numpy")
def _rational(x, p, q, clamp):
    ax = min(abs(x), clamp)
    u = ax * ax
    num = p[-1]
    for j in range(p.shape[0] - 2, -1, -1):
        num = num * u + p[j]
    den = q[-1]
    for j in range(q.shape[0] - 2, -1, -1):
        den = den * u + q[j]
    return ax * num / den


@njit(parallel=True)
def worst_ulp(p, q, clamp, lo, hi):
    """The largest error in float32 ulps over the float32 inputs with bit patterns [lo, hi)."""
    n_parts = 256
    worst = np.zeros(n_parts)
    where = np.zeros(n_parts, dtype=np.float32)
    step = (hi - lo + n_parts - 1) // n_parts
    for part in prange(n_parts):
        bits = np.empty(1, dtype=np.int32)
        for k in range(lo + part * step, min(hi, lo + (part + 1) * step)):
            bits[0] = k
            x = bits.view(np.float32)[0]
            got = np.float32(_rational(np.float64(x), p, q, clamp))
            exact = math.tanh(np.float64(x))
            near = np.float32(exact)
            ulp = np.float64(np.nextafter(near, np.float32(2.0))) - np.float64(near)
            err = abs(np.float64(got) - exact) / ulp
            if err > worst[part]:
                worst[part], where[part] = err, x
    i = np.argmax(worst)
    return worst[i], where[i]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", type=int, nargs=2, default=[5, 5], metavar=("A", "B"))
    parser.add_argument("--clamp", type=float, default=9.1)
    args = parser.parse_args()
    p, q, err = fit(*args.degrees, args.clamp)
    print(f"max relative error of the fit (float64): {err:.3g}")
    print("_TANH_P =", tuple(float(v) for v in p))
    print("_TANH_Q =", tuple(float(v) for v in q))
    hi = np.array([20.0], dtype=np.float32).view(np.int32)[0]
    ulps, at = worst_ulp(p, q, args.clamp, 1, int(hi) + 1)     # bits 1: the least subnormal
    print(f"every positive float32 up to 20: max error {ulps:.5f} ulp (at x = {at!r})")


if __name__ == "__main__":
    main()
