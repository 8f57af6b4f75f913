"""The ``fastvi`` command: make data, fit, predict, score, inspect, demo.

Every subcommand streams its data chunk by chunk, so files larger than memory work.  Bad
input (a missing file or dataset, wrong shape or dtype, a corrupt file, a model that does
not fit the data) ends with ``fastvi: error: <message>`` on stderr and exit status 2
(set the environment variable ``FASTVI_DEBUG=1`` to see the traceback instead).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager

import h5py
import numpy as np

from . import __version__
from .io import (atomic_path, get_params, is_model_file, list_datasets, load_model,
                 open_data, open_h5, save_model, split_spec)

PREDICT_CHUNK_ROWS = 65536
DEMO_N_SAMPLES = 1_000_000
DEMO_MAX_ITER = 100


def _progress(iterable=None, **kwargs):
    """A tqdm bar on stderr, shown only when stderr is a terminal."""
    from tqdm import tqdm
    return tqdm(iterable, disable=not sys.stderr.isatty(), file=sys.stderr, **kwargs)


def _row_chunks(n_rows, chunk_rows):
    return [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]


def _check_model_data(model, model_path, X, label):
    if X.shape[1] != model.n_features_in_:
        raise ValueError(f"{label} has {X.shape[1]} features, but the model in "
                         f"{model_path!r} was fitted on {model.n_features_in_}")


@contextmanager
def _about(label):
    """Prefix errors raised while working on the data with its name (a NaN row, a read
    error in a corrupt chunk, too few rows), unless the message names it already."""
    try:
        yield
    except (ValueError, OSError) as exc:
        message = str(exc)
        if label in message:
            raise
        kind = OSError if isinstance(exc, OSError) else ValueError
        raise kind(f"{label}: {message}") from exc


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


# ----------------------------------------------------------------------------- summaries

def _format_weights(weights, top=8):
    order = np.argsort(weights)[::-1][:top]
    return "  ".join(f"{weights[k]:.4f} (k={k})" for k in order)


def fit_summary(model, label, shape, elapsed):
    """Lines describing a fitted model and its fit time.

    ``rows/s`` counts rows times iterations of the best initialisation over the whole fit
    time (initialisation included), a lower bound of the streaming rate.
    """
    n_rows = shape[0]
    weights = np.asarray(model.weights_)
    used = int((weights > 1e-3).sum())
    status = "converged" if model.converged_ else "not converged"
    rate = n_rows * max(model.n_iter_, 1) / elapsed if elapsed > 0 else float("inf")
    return [
        f"model        {type(model).__name__} (K={model.n_components}, "
        f"covariance_type={model.covariance_type})",
        f"data         {label}  ({shape[0]} x {shape[1]})",
        f"iterations   {model.n_iter_} ({status})",
        f"lower bound  {model.lower_bound_:.6f} per row",
        f"time         {elapsed:.2f} s  ({rate:.3g} rows/s over {model.n_iter_} iterations)",
        f"weights      {used} of {model.n_components} components above 0.001; largest: "
        f"{_format_weights(weights)}",
    ]


def _fit_model(model, X):
    """Fit, reporting warnings (non-convergence) as one ``fastvi: warning:`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X)
        elapsed = time.perf_counter() - start
    for warning in caught:
        print(f"fastvi: warning: {warning.message}", file=sys.stderr)
    return elapsed


# ----------------------------------------------------------------------------- commands

def cmd_make_data(args):
    from .datasets import write_mixture_h5
    start = time.perf_counter()
    write_mixture_h5(args.out, args.n_samples, args.n_features, args.n_components,
                     separation=args.separation, covariance_type=args.cov, dtype=args.dtype,
                     random_state=args.seed, chunk_rows=args.chunk_rows,
                     progress=sys.stderr.isatty())
    print(f"wrote {args.out}: /X ({args.n_samples} x {args.n_features}, {args.dtype}), "
          f"/labels, /truth ({args.n_components} components, seed {args.seed}) "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def _build_model(args):
    from .mixture import BayesianGaussianMixture, GaussianMixture
    kwargs = {"n_components": args.k, "covariance_type": args.cov,
              "random_state": args.seed, "verbose": 2 if args.verbose else 0,
              "verbose_interval": 1}
    optional = {"max_iter": args.max_iter, "tol": args.tol, "n_init": args.n_init,
                "init_params": args.init, "reg_covar": args.reg_covar,
                "chunk_size": args.chunk_size, "n_jobs": args.threads}
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    if args.model == "gmm":
        if args.weight_prior is not None:
            raise ValueError("--weight-prior applies only to --model bgmm")
        return GaussianMixture(**kwargs)
    if args.weight_prior is not None:
        kwargs["weight_concentration_prior_type"] = args.weight_prior
    return BayesianGaussianMixture(**kwargs)


def cmd_fit(args):
    model = _build_model(args)
    source = open_data(args.data)
    with source as X, _about(source.label):
        elapsed = _fit_model(model, X)
        shape = X.shape
    print("\n".join(fit_summary(model, source.label, shape, elapsed)))
    save_model(args.output, model)
    print(f"saved        {args.output}")
    return 0


def predict_to_h5(model, X, output, proba=False, chunk_rows=PREDICT_CHUNK_ROWS, attrs=None):
    """Write ``/labels`` (int32) and optionally ``/resp`` (float32) of ``X`` to ``output``.

    The rows are read and predicted ``chunk_rows`` at a time into pre-created datasets; the
    file appears (atomically) only when every chunk is done.
    """
    n_rows, n_components = X.shape[0], model.means_.shape[0]
    chunk = min(chunk_rows, n_rows)
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs or {})
        labels = out.create_dataset("labels", (n_rows,), dtype=np.int32, chunks=(chunk,))
        resp = (out.create_dataset("resp", (n_rows, n_components), dtype=np.float32,
                                   chunks=(chunk, n_components)) if proba else None)
        for start, stop in _progress(_row_chunks(n_rows, chunk_rows), unit="chunk",
                                     desc="predict"):
            rows = X[start:stop]
            labels[start:stop] = model.predict(rows)
            if resp is not None:
                resp[start:stop] = model.predict_proba(rows)


def cmd_predict(args):
    # The output replaces its path only at the end, after the inputs were read: naming an
    # input as the output would silently destroy it.
    for other in (args.model, split_spec(args.data)[0]):
        if _same_file(args.output, other):
            raise ValueError(f"output {args.output!r} would overwrite the input {other!r}")
    model = load_model(args.model)
    source = open_data(args.data)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        n_rows = X.shape[0]
        predict_to_h5(model, X, args.output, proba=args.proba, chunk_rows=args.chunk_size,
                      attrs={"model": os.path.abspath(args.model), "data": source.label,
                             "fastvi_version": __version__})
    what = "/labels and /resp" if args.proba else "/labels"
    print(f"wrote {what} of {n_rows} rows to {args.output}")
    return 0


def score_chunks(model, X, chunk_rows=PREDICT_CHUNK_ROWS):
    """Total and mean of ``model.score_samples`` over ``X``, read ``chunk_rows`` at a time.

    Returns
    -------
    mean, total : float
    """
    total = 0.0
    for start, stop in _row_chunks(X.shape[0], chunk_rows):
        total += float(model.score_samples(X[start:stop]).sum())
    return total / X.shape[0], total


def cmd_score(args):
    model = load_model(args.model)
    source = open_data(args.data)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        mean, total = score_chunks(model, X, args.chunk_size)
        n_rows = X.shape[0]
    what = ("log-likelihood" if type(model).__name__ == "GaussianMixture"
            else "log sum_k rho_nk (the per-row ELBO term)")
    print(f"score  {mean!r}  (mean {what} per row)")
    print(f"total  {total!r}  over {n_rows} rows of {source.label}")
    return 0


def _info_model(path):
    model = load_model(path)
    with open_h5(path) as f:
        header = {key: f.attrs[key] for key in ("format_version", "fastvi_version")}
    params, arrays = get_params(model)
    status = "converged" if model.converged_ else "not converged"
    lines = [f"{path}: fastvi model (format_version {header['format_version']}, written by "
             f"fastvi {header['fastvi_version']})",
             f"class        {type(model).__name__}",
             f"params       {json.dumps(params, sort_keys=True)}",
             f"n_features   {model.n_features_in_}",
             f"K            {model.means_.shape[0]}",
             f"iterations   {model.n_iter_} ({status})",
             f"lower bound  {model.lower_bound_:.6f} per row",
             "weights      " + " ".join(f"{w:.4f}" for w in model.weights_)]
    if arrays:
        lines.insert(3, f"param arrays {', '.join(sorted(arrays))}")
    return lines


def _info_h5(path):
    lines = [f"{path}: HDF5 file"]
    with open_h5(path) as f:
        for key, value in f.attrs.items():
            lines.append(f"  @{key} = {value}")
        for name in list_datasets(f):
            dset = f[name]
            extra = f", chunks {dset.chunks}" if dset.chunks else ", contiguous"
            if dset.compression:
                extra += f", {dset.compression}"
            lines.append(f"  {name}  shape {dset.shape}, {dset.dtype}{extra}")
    return lines


def cmd_info(args):
    path = args.path
    if not os.path.exists(path):
        raise FileNotFoundError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY" or path.lower().endswith(".npy"):
        with open_data(path) as X:
            lines = [f"{path}: NumPy file", f"  shape {X.shape}, {X.dtype}"]
    elif is_model_file(path):
        lines = _info_model(path)
    else:
        lines = _info_h5(path)
    print("\n".join(lines))
    return 0


def cmd_demo(args):
    from .datasets import adjusted_rand_index, write_mixture_h5
    from .mixture import BayesianGaussianMixture
    keep = args.out is not None
    out_dir = args.out if keep else tempfile.mkdtemp(prefix="fastvi-demo-")
    os.makedirs(out_dir, exist_ok=True)
    data_path = os.path.join(out_dir, "mixture.h5")
    model_path = os.path.join(out_dir, "model.h5")
    n_features = n_components = 16

    start = time.perf_counter()
    write_mixture_h5(data_path, args.n_samples, n_features, n_components,
                     random_state=args.seed, progress=sys.stderr.isatty())
    print(f"data         {data_path}: {args.n_samples} x {n_features} float32 from "
          f"{n_components} Gaussians (seed {args.seed}), made in "
          f"{time.perf_counter() - start:.2f} s")

    model = BayesianGaussianMixture(n_components=n_components, covariance_type="full",
                                    max_iter=args.max_iter, n_init=1, random_state=args.seed)
    source = open_data(data_path + ":/X")
    with source as X, _about(source.label):
        # The fit streams the HDF5 dataset chunk by chunk; it never loads /X whole.
        elapsed = _fit_model(model, X)
        print("\n".join(fit_summary(model, source.label, X.shape, elapsed)))
        labels = model.predict(X)
    with h5py.File(data_path, "r") as f:
        truth = f["labels"][()]
    print(f"ARI          {adjusted_rand_index(truth, labels):.4f}  (adjusted Rand index of "
          "the predicted against the true components)")
    save_model(model_path, model)
    print(f"model        saved to {model_path}")
    if not keep:
        # The data are the bulky part of a throw-away directory; the model is small.
        os.remove(data_path)
        print("             (the data were deleted; pass --out DIR to keep them)")
    print(f"total        {time.perf_counter() - start:.1f} s")
    return 0


# ----------------------------------------------------------------------------- parser

def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser():
    """The argparse parser of the ``fastvi`` command."""
    parser = argparse.ArgumentParser(
        prog="fastvi", description="Streaming EM and variational Bayes for Gaussian mixtures.")
    parser.add_argument("--version", action="version", version=f"fastvi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("make-data", help="write a generated Gaussian mixture to HDF5")
    p.add_argument("out", metavar="OUT.h5")
    p.add_argument("--n-samples", type=_positive_int, default=1_000_000)
    p.add_argument("--n-features", type=_positive_int, default=16)
    p.add_argument("--n-components", type=_positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--separation", type=float, default=4.0,
                   help="minimum distance of two means, in standard deviations (4)")
    p.add_argument("--cov", choices=("full", "tied", "diag", "spherical"), default="full",
                   help="structure of the true covariances (full)")
    p.add_argument("--chunk-rows", type=_positive_int, default=65536)
    p.set_defaults(func=cmd_make_data)

    p = sub.add_parser("fit", help="fit a mixture and save it")
    p.add_argument("data", metavar="DATA", help="file.npy, file.h5 or file.h5:/dataset")
    p.add_argument("--k", type=_positive_int, required=True, help="number of components")
    p.add_argument("--model", choices=("gmm", "bgmm"), default="gmm")
    p.add_argument("--cov", choices=("full", "tied", "diag", "spherical"), default="full")
    p.add_argument("--max-iter", type=int)
    p.add_argument("--tol", type=float)
    p.add_argument("--n-init", type=_positive_int)
    p.add_argument("--init", choices=("kmeans", "k-means++", "random", "random_from_data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reg-covar", type=float)
    p.add_argument("--chunk-size", type=_positive_int)
    p.add_argument("--threads", type=int)
    p.add_argument("--weight-prior", choices=("dirichlet_process", "dirichlet_distribution"))
    p.add_argument("--verbose", action="store_true", help="print every iteration")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.h5")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="write the labels (and responsibilities) of DATA")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    p.add_argument("--proba", action="store_true", help="also write /resp (float32)")
    p.add_argument("--chunk-size", type=_positive_int, default=PREDICT_CHUNK_ROWS)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="mean and total per-row log-likelihood of DATA")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--chunk-size", type=_positive_int, default=PREDICT_CHUNK_ROWS)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("info", help="describe a model, HDF5 or .npy file")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="generate a mixture, fit it from HDF5, report the ARI")
    p.add_argument("--n-samples", type=_positive_int, default=DEMO_N_SAMPLES)
    p.add_argument("--max-iter", type=_positive_int, default=DEMO_MAX_ITER)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="keep the data and model here")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    """Run the ``fastvi`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on bad usage or bad input.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError) as exc:
        if os.environ.get("FASTVI_DEBUG"):
            raise                   # the traceback, for a suspected bug rather than bad input
        # KeyError's str() is the repr of its argument; print the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"fastvi: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastvi: interrupted", file=sys.stderr)
        return 130
