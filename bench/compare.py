"""fastvi beside every Gaussian-mixture peer that installs: time per iteration, whole fits,
the final log-likelihood of each, and peak memory, on the same data and threads, one run.

Usage::

    python bench/compare.py [--n-samples 1000000] [--n-features 16] [--n-components 16]
                            [--covariance-types full diag] [--dtypes float64 float32]
                            [--peers fastvi sklearn pomegranate torchgmm pycave]
                            [--models em vb] [--whole-fit 10] [--repeats 3] [--threads N]

Peers (each optional: one that does not import is skipped with a message):

* ``sklearn``: scikit-learn's GaussianMixture (``em``) and BayesianGaussianMixture
  (``vb``); it computes in float64 whatever it is given, so its float32 row is measured on
  float64 input;
* ``pomegranate``: pomegranate 1.x GeneralMixtureModel of Normal (PyTorch, CPU);
* ``torchgmm``: TorchGMM's GaussianMixture (PyTorch Lightning, CPU, one batch), always
  from its k-means initialisation (its "random" one fails in 0.1.4);
* ``pycave``: PyCave's GaussianMixture (TorchGMM's predecessor; it pins an old Lightning).

Only fastvi and scikit-learn have a variational Bayes mixture (``vb``).

Per iteration: as ``compare_sklearn.py`` (so its figures stay comparable): fits of 1 and
of 4 iterations with ``tol=0`` from a cheap initialisation, ``(t_4 - t_1) / 3``, the
median of ``--repeats``.  Whole fit: ``--whole-fit`` iterations from each peer's own
default initialisation, initialisation included, one fit.  ``ll/row``: the mean
log-likelihood per row of the whole fit's weights, means and covariances, computed here
by one NumPy function for every peer (not by each peer's own scorer).  ``peak MB``: the
largest resident set of the process that ran the fits, less its size before them (the
data, the imports and a warm-up on 5,000 rows; Linux's VmHWM, reset after the warm-up):
what fitting cost in memory on top of the data.  Each (peer, model, covariance, dtype) runs in its own process, with
``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, the BLAS threads and ``torch.set_num_threads``
all set to ``--threads``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from scipy.linalg import solve_triangular

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchmarks.common import mixture_data  # noqa: E402

ITERS_A, ITERS_B = 1, 4
PEERS = ("fastvi", "sklearn", "pomegranate", "torchgmm", "pycave")
TORCH_PEERS = ("pomegranate", "torchgmm", "pycave")


# -- each peer: make(n_iter, cheap_init) -> fit(X) -> (weights, means, covariances) -------

def _fastvi(model, covariance_type, n_components, seed):
    import fastvi
    cls = fastvi.GaussianMixture if model == "em" else fastvi.BayesianGaussianMixture

    def fit(X, n_iter, cheap):
        init = {"init_params": "random_from_data"} if cheap else {}
        est = cls(n_components, covariance_type=covariance_type, max_iter=n_iter, tol=0.0,
                  random_state=seed, **init).fit(X)
        return est.weights_, est.means_, est.covariances_
    return fit


def _sklearn(model, covariance_type, n_components, seed):
    from sklearn import mixture
    cls = mixture.GaussianMixture if model == "em" else mixture.BayesianGaussianMixture

    def fit(X, n_iter, cheap):
        init = {"init_params": "random_from_data"} if cheap else {}
        est = cls(n_components=n_components, covariance_type=covariance_type,
                  max_iter=n_iter, tol=0.0, random_state=seed, **init).fit(X)
        return est.weights_, est.means_, est.covariances_
    return fit


def _pomegranate(model, covariance_type, n_components, seed):
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    def fit(X, n_iter, cheap):
        # its initialisation is always a k-means of 3 iterations; 'first-k' seeds it with
        # the first K rows (cheap), 'random' (its default) with random rows
        est = GeneralMixtureModel(
            [Normal(covariance_type=covariance_type) for _ in range(n_components)],
            init="first-k" if cheap else "random", max_iter=n_iter, tol=0.0,
            random_state=seed, verbose=False).fit(torch.from_numpy(X))
        means = np.stack([d.means.detach().double().numpy() for d in est.distributions])
        covs = np.stack([d.covs.detach().double().numpy() for d in est.distributions])
        return est.priors.detach().double().numpy(), means, covs
    return fit


def _lightning_gmm(module):
    def peer(model, covariance_type, n_components, seed):
        import torch
        GaussianMixture = __import__(module + ".bayes", fromlist=["GaussianMixture"]).GaussianMixture

        def fit(X, n_iter, cheap):
            torch.manual_seed(seed)
            est = GaussianMixture(
                n_components, covariance_type=covariance_type,
                # "kmeans" for both: TorchGMM 0.1.4's "random" fails (no 'model_copy')
                init_strategy="kmeans", convergence_tolerance=0.0,
                trainer_params=dict(max_epochs=n_iter, accelerator="cpu", devices=1,
                                    enable_progress_bar=False, logger=False,
                                    precision=64 if X.dtype == np.float64 else 32))
            est.fit(torch.from_numpy(X))
            m = est.model_
            covs = m.covariances.detach().double().numpy()
            return (m.component_probs.detach().double().numpy(),
                    m.means.detach().double().numpy(), covs)
        return fit
    return peer


MAKERS = {"fastvi": _fastvi, "sklearn": _sklearn, "pomegranate": _pomegranate,
          "torchgmm": _lightning_gmm("torchgmm"), "pycave": _lightning_gmm("pycave")}


def log_likelihood_per_row(X, weights, means, covariances, covariance_type, block=65536):
    """Mean over rows of log sum_k w_k N(x | m_k, C_k), in float64, blocked; one function
    for every peer.  ``covariances`` as scikit-learn gives them (full: (K, D, D); diag:
    (K, D))."""
    n_features = X.shape[1]
    log_w = np.log(np.asarray(weights, dtype=np.float64))
    if covariance_type == "full":
        chol = np.linalg.cholesky(covariances)
        log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    else:
        log_det = np.log(covariances).sum(axis=1)
    total = 0.0
    for start in range(0, X.shape[0], block):
        rows = X[start:start + block].astype(np.float64)   # a block at a time, not N rows
        quad = np.empty((rows.shape[0], len(log_w)))
        for k in range(len(log_w)):
            diff = rows - means[k]
            if covariance_type == "full":
                z = solve_triangular(chol[k], diff.T, lower=True)
                quad[:, k] = (z * z).sum(axis=0)
            else:
                quad[:, k] = (diff * diff / covariances[k]).sum(axis=1)
        logp = log_w - 0.5 * (n_features * np.log(2 * np.pi) + log_det + quad)
        top = logp.max(axis=1, keepdims=True)
        total += float((top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))).sum())
    return total / X.shape[0]


def _status_mb(field):
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e3
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak():
    """Make VmHWM start again from the current size (Linux >= 4.0: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def worker(spec):
    """Run one (peer, model, covariance, dtype) in this process; print a JSON line."""
    if spec["peer"] in TORCH_PEERS:     # only they load PyTorch (and its OpenMP runtime)
        import torch
        torch.set_num_threads(spec["threads"])
    fit = MAKERS[spec["peer"]](spec["model"], spec["covariance_type"], spec["n_components"], 0)
    X = np.load(spec["data"])
    warnings.simplefilter("ignore")
    for cheap in (True, False):        # imports, compilation (both inits), warm caches
        fit(np.ascontiguousarray(X[:5000]), 1, cheap)
    _reset_peak()
    before = _status_mb("VmRSS")
    times = []
    for _ in range(spec["repeats"]):
        seconds = []
        for n_iter in (ITERS_A, ITERS_B):
            start = time.perf_counter()
            fit(X, n_iter, True)
            seconds.append(time.perf_counter() - start)
        times.append((seconds[1] - seconds[0]) / (ITERS_B - ITERS_A))
    result = {"per_iteration": float(np.median(times))}
    if spec["whole_fit"]:
        start = time.perf_counter()
        params = fit(X, spec["whole_fit"], False)
        result["whole_fit"] = time.perf_counter() - start
    result["peak_mb"] = max(0.0, _status_mb("VmHWM") - before)  # the fits', not the scoring's
    if spec["whole_fit"]:
        result["ll_per_row"] = log_likelihood_per_row(X, *params, spec["covariance_type"])
    print(json.dumps(result))


def run_one(spec):
    env = dict(os.environ)
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        env[name] = str(spec["threads"])
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def available(peer):
    module = {"sklearn": "sklearn", "pomegranate": "pomegranate.gmm", "torchgmm": "torchgmm",
              "pycave": "pycave", "fastvi": "fastvi"}[peer]
    try:
        __import__(module)
        return None
    except Exception as exc:  # an import that fails for any reason: skip, say why
        return f"{type(exc).__name__}: {exc}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--covariance-types", nargs="+", default=["full", "diag"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--models", nargs="+", default=["em", "vb"], choices=["em", "vb"])
    parser.add_argument("--whole-fit", type=int, default=10, metavar="N_ITER",
                        help="also time one fit of N_ITER iterations from each peer's "
                             "default initialisation, and score it (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))

    peers = []
    for peer in args.peers:
        why = available(peer)
        if why:
            print(f"# skipped {peer}: it does not import ({why})")
        else:
            peers.append(peer)
    print(f"# N={args.n_samples} D={args.n_features} K={args.n_components}, "
          f"{args.threads} threads for every peer; {os.uname().machine}, {time.strftime('%Y-%m-%d')}")
    print(f"{'model':5} {'cov':5} {'dtype':8} {'peer':12} {'s/iter':>8} {'vs fastvi':>9} "
          f"{'fit s':>7} {'ll/row':>9} {'peak MB':>8}", flush=True)
    sklearn_runs = {}  # scikit-learn computes in float64: measured once, shown on each dtype
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes:
            path = os.path.join(tmp, f"X_{dtype}.npy")
            np.save(path, mixture_data(args.n_samples, args.n_features, args.n_components,
                                       dtype))
        for model in args.models:
            for covariance_type in args.covariance_types:
                for dtype in args.dtypes:
                    ours = None
                    for peer in peers:
                        if model == "vb" and peer not in ("fastvi", "sklearn"):
                            continue
                        data_dtype = "float64" if peer == "sklearn" else dtype
                        spec = dict(peer=peer, model=model, covariance_type=covariance_type,
                                    n_components=args.n_components, repeats=args.repeats,
                                    whole_fit=args.whole_fit, threads=args.threads,
                                    data=os.path.join(tmp, f"X_{data_dtype}.npy"))
                        if not os.path.exists(spec["data"]):
                            np.save(spec["data"], mixture_data(
                                args.n_samples, args.n_features, args.n_components,
                                data_dtype))
                        if peer != "sklearn":
                            result = run_one(spec)
                        elif (model, covariance_type) in sklearn_runs:
                            result = sklearn_runs[model, covariance_type]
                        else:
                            result = sklearn_runs[model, covariance_type] = run_one(spec)
                        head = f"{model:5} {covariance_type:5} {dtype:8} {peer:12}"
                        if "error" in result:
                            print(f"{head} failed: {result['error']}", flush=True)
                            continue
                        if peer == "fastvi":
                            ours = result["per_iteration"]
                        ratio = (f"{result['per_iteration'] / ours:8.1f}x" if ours
                                 else f"{'':9}")
                        whole = (f"{result['whole_fit']:7.2f} {result['ll_per_row']:9.4f}"
                                 if "whole_fit" in result else f"{'':7} {'':9}")
                        print(f"{head} {result['per_iteration']:8.4f} {ratio} {whole} "
                              f"{result['peak_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
