"""Scaling curves, written as JSON and drawn as PNG under ``bench/results/``.

Usage::

    python bench/scaling.py n      [--max-n 100000000] [--data DIR]   # s/iteration against N
    python bench/scaling.py k      [--n-samples 200000]               # against K, dense and truncated
    python bench/scaling.py d      [--n-samples 200000]               # against D
    python bench/scaling.py elbo   [--n-samples 10000000] [--data DIR] # ELBO against wall time
    python bench/scaling.py plot                                      # redraw every PNG from its JSON

Every curve is seconds per EM iteration (a pass and its M-step) from fits with ``tol=0``:
the median of passes 2..P measured by the pass callback's clock (pass 1 of a truncated fit
also finds the exact top L, so it is left out everywhere).  Data: ``mixture_data`` in
memory (fixed seed), or for N >= 10^7 the float32 HDF5 file of
``benchmarks.common.mixture_file`` streamed by ``fastvi.HDF5Source`` (read once before,
so from the page cache).  scikit-learn, on the same rows in memory where it fits
(N <= 10^6, K <= 256), is the reference curve; its time per iteration is the median over
iterations 2..P of the same callback-free measure: ``(t_P - t_1) / (P - 1)``.

``elbo``: batch, stochastic and memoized VB on ``--n-samples`` rows streamed from HDF5,
K = 16 full, the exact ELBO per row after every pass (an evaluation pass, left out of the
clock) against wall time.
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchmarks.common import elbo_curve, mixture_data, mixture_file  # noqa: E402

import fastvi  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# one colour per library, one line style per covariance type
COLOURS = {"fastvi": "C0", "dense": "C0", "truncated": "C2", "sklearn": "C1"}
PASSES = 4


def fastvi_per_iteration(X, n_components, covariance_type, passes=PASSES, **kwargs):
    stamps = []

    def callback(record):
        if record["event"] == "pass":
            stamps.append(time.perf_counter())

    model = fastvi.GaussianMixture(n_components, covariance_type=covariance_type, tol=0,
                                   max_iter=passes, init_params="random_from_data",
                                   random_state=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, callback=callback)
    return float(np.median(np.diff(stamps)))


def sklearn_per_iteration(X, n_components, covariance_type, passes=PASSES):
    from sklearn.mixture import GaussianMixture
    seconds = []
    for max_iter in (1, passes):
        model = GaussianMixture(n_components, covariance_type=covariance_type, tol=0,
                                max_iter=max_iter, init_params="random_from_data",
                                random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(X)
            seconds.append(time.perf_counter() - start)
    return (seconds[1] - seconds[0]) / (passes - 1)


def warm_up(covariance_types, **kwargs):
    X = mixture_data(5000, 16, 4)
    for cov in covariance_types:
        fastvi_per_iteration(X, 4, cov, passes=2)
        fastvi_per_iteration(X.astype(np.float32), 4, cov, passes=2, **kwargs)


def machine():
    import platform
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def save(name, payload):
    os.makedirs(RESULTS, exist_ok=True)
    payload.update(machine=machine(), date=time.strftime("%Y-%m-%d"),
                   command="python bench/scaling.py " + " ".join(sys.argv[1:]))
    path = os.path.join(RESULTS, f"scaling_{name}.json")
    with open(path + ".tmp", "w") as out:
        json.dump(payload, out, indent=1)
    os.replace(path + ".tmp", path)
    plot(name)


def curve_n(args):
    sizes = [n for n in (10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8) if n <= args.max_n]
    warm_up(("full", "diag"))
    rows = []
    for n in sizes:
        for cov in ("full", "diag"):
            if n >= 10 ** 7:
                path = mixture_file(args.data, n)
                with fastvi.HDF5Source(path, "/X") as source:
                    ours = fastvi_per_iteration(source, 16, cov, passes=3)
                where = "HDF5"
            else:
                ours = fastvi_per_iteration(mixture_data(n, 16, 16, "float32"), 16, cov)
                where = "memory"
            theirs = (sklearn_per_iteration(mixture_data(n, 16, 16), 16, cov)
                      if n <= 10 ** 6 else None)
            rows.append(dict(n=n, covariance_type=cov, fastvi=ours, sklearn=theirs,
                             source=where))
            print(rows[-1], flush=True)
    save("n", dict(title="seconds per EM iteration against N (D=16, K=16)", rows=rows))


def curve_k(args):
    warm_up(("full", "diag"), n_active=2, n_candidates=4)
    rows = []
    for k in (4, 16, 64, 256, 1024):
        X = mixture_data(args.n_samples, 16, k, "float32")
        for cov in ("full", "diag"):
            row = dict(k=k, covariance_type=cov, dense=fastvi_per_iteration(X, k, cov))
            if k >= 64:
                row["truncated"] = fastvi_per_iteration(X, k, cov, n_active=4,
                                                        n_candidates=16)
            if k <= 256:
                row["sklearn"] = sklearn_per_iteration(mixture_data(args.n_samples, 16, k),
                                                       k, cov, passes=3)
            rows.append(row)
            print(row, flush=True)
    save("k", dict(title=f"seconds per EM iteration against K (N={args.n_samples:,}, D=16; "
                         "truncated: L=4, G=16)", rows=rows))


def curve_d(args):
    warm_up(("full", "diag"))
    rows = []
    for d in (2, 4, 8, 16, 32, 64, 128):
        X = mixture_data(args.n_samples, d, 16)
        for cov in ("full", "diag"):
            rows.append(dict(d=d, covariance_type=cov,
                             fastvi=fastvi_per_iteration(X.astype(np.float32), 16, cov),
                             sklearn=sklearn_per_iteration(X, 16, cov, passes=3)))
            print(rows[-1], flush=True)
    save("d", dict(title=f"seconds per EM iteration against D (N={args.n_samples:,}, K=16)",
                   rows=rows))


def curve_elbo(args):
    path = mixture_file(args.data, args.n_samples)
    runs = {"batch": dict(algorithm="batch", max_iter=args.passes),
            "stochastic": dict(algorithm="stochastic", max_iter=args.passes,
                               batch_size=65536),
            "memoized": dict(algorithm="memoized", max_iter=args.passes, batch_size=1 << 20)}
    curves = {}
    with fastvi.HDF5Source(path, "/X") as source:
        for name, kwargs in runs.items():
            model = fastvi.BayesianGaussianMixture(16, random_state=0, tol=0, **kwargs)
            curve = elbo_curve(model, source)
            curves[name] = curve
            print(name, curve[-1], flush=True)
    save("elbo", dict(title=f"exact ELBO per row against time, {args.n_samples:,} x 16 "
                            "float32 from HDF5, K=16 full", curves=curves))


def plot(name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(os.path.join(RESULTS, f"scaling_{name}.json")) as handle:
        data = json.load(handle)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if name == "elbo":
        for label, curve in data["curves"].items():
            t, elbo = zip(*curve)
            ax.plot(t, elbo, marker="o", markersize=3, label=label)
        values = [e for curve in data["curves"].values() for _, e in curve]
        best, worst = max(values), min(values)
        margin = 0.05 * (best - worst) or 1e-6
        ax.set_ylim(worst - margin, best + margin)   # every pass's point, nothing else
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("wall time (s), evaluation passes excluded")
        ax.set_ylabel("ELBO per row")
    else:
        x = {"n": "n", "k": "k", "d": "d"}[name]
        for cov, style in (("full", "-"), ("diag", "--")):
            rows = [r for r in data["rows"] if r["covariance_type"] == cov]
            for key in ("fastvi", "dense", "truncated", "sklearn"):
                pts = [(r[x], r[key]) for r in rows if r.get(key) is not None]
                if pts:
                    label = {"dense": "fastvi", "truncated": "fastvi truncated"}.get(key, key)
                    ax.plot(*zip(*pts), style, marker="o", markersize=4,
                            color=COLOURS[key], label=f"{label} {cov}")
        ax.set_xscale("log", base=2 if name in ("k", "d") else 10)
        ax.set_yscale("log")
        ax.set_xlabel({"n": "N (rows)", "k": "K (components)", "d": "D (features)"}[name])
        ax.set_ylabel("seconds per iteration")
    ax.set_title(data["title"], fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, f"{data['machine']}; {data['date']}; {data['command']}", fontsize=6,
             color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = os.path.join(RESULTS, f"scaling_{name}.png")
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    print("wrote", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["n", "k", "d", "elbo", "plot"])
    parser.add_argument("--n-samples", type=int)
    parser.add_argument("--max-n", type=int, default=10 ** 8)
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--data", default="/tmp/fastvi-bench")
    args = parser.parse_args(argv)
    os.makedirs(args.data, exist_ok=True)
    if args.what == "plot":
        for name in ("n", "k", "d", "elbo"):
            if os.path.exists(os.path.join(RESULTS, f"scaling_{name}.json")):
                plot(name)
        return
    if args.n_samples is None:
        args.n_samples = 10_000_000 if args.what == "elbo" else 200_000
    {"n": curve_n, "k": curve_k, "d": curve_d, "elbo": curve_elbo}[args.what](args)


if __name__ == "__main__":
    main()
