"""``fastvi make-data`` and ``fastvi demo``: write a generated Gaussian mixture to HDF5;
generate one, fit it by stochastic VB streaming from the file, report the ARI.

``make-data`` loads neither the estimators nor Numba nor scikit-learn; ``demo`` imports
them when it fits.
"""
import os
import sys
import tempfile
import time

import h5py

from ..data.atomic import check_writable
from ..data.files import open_source
from ..data.generate import GENERATOR
from ..io.model import save_model
from .fit import fit_summary
from .jobs import FitProgress, FitRecorder
from .jobs import about as _about
from .jobs import fit_model as _fit_model
from .paths import check_replaceable

DEMO_N_SAMPLES = 2_000_000
DEMO_PASSES = 5
DEMO_BATCH_SIZE = 65536
DEMO_TOL = 1e-3


DEMO_MODEL = "fastvi demo"          # the written_by attribute of its model


def cmd_make_data(args):
    from ..data.generate import write_mixture_h5
    check_replaceable(args.out, "the data file", {GENERATOR}, force=args.force)
    check_writable(args.out, "the data file")
    start = time.perf_counter()
    write_mixture_h5(args.out, args.n_samples, args.n_features, args.n_components,
                     separation=args.separation, covariance_type=args.cov, dtype=args.dtype,
                     random_state=args.seed, sample_seed=args.sample_seed,
                     chunk_rows=args.chunk_rows, progress=sys.stderr.isatty(),
                     missing_rate=args.missing_rate)
    rows = "" if args.sample_seed is None else f", rows from --sample-seed {args.sample_seed}"
    if args.missing_rate:
        rows += f", {args.missing_rate:.0%} of the entries NaN"
    print(f"wrote {args.out}: /X ({args.n_samples} x {args.n_features}, {args.dtype}), "
          f"/labels, /truth ({args.n_components} components, seed {args.seed}{rows}) "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def cmd_demo(args):
    from sklearn.metrics import adjusted_rand_score

    from ..data.generate import write_mixture_h5
    from ..mixture import BayesianGaussianMixture
    keep = args.out is not None
    if keep and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file, not a directory")
    out_dir = args.out if keep else tempfile.mkdtemp(prefix="fastvi-demo-")
    data_path = os.path.join(out_dir, "mixture.h5")
    model_path = os.path.join(out_dir, "model.h5")
    # A folder of the user's: the demo replaces only the files an earlier demo wrote.
    check_replaceable(data_path, "--out: the data file", {GENERATOR}, force=args.force)
    check_replaceable(model_path, "--out: the model", {DEMO_MODEL}, force=args.force)
    os.makedirs(out_dir, exist_ok=True)
    n_features = n_components = 16

    start = time.perf_counter()
    write_mixture_h5(data_path, args.n_samples, n_features, n_components,
                     random_state=args.seed, chunk_rows=min(args.batch_size, DEMO_BATCH_SIZE),
                     progress=sys.stderr.isatty())
    print(f"data         {data_path}: {args.n_samples} x {n_features} float32 from "
          f"{n_components} Gaussians (seed {args.seed}), made in "
          f"{time.perf_counter() - start:.2f} s")

    model = BayesianGaussianMixture(n_components=n_components, covariance_type="full",
                                    algorithm="stochastic", batch_size=args.batch_size,
                                    max_iter=args.passes, tol=args.tol, n_init=1,
                                    random_state=args.seed)
    # The fit streams minibatches from the HDF5 dataset, read ahead in a thread; it never
    # loads /X whole.
    source = open_source(data_path + ":/X", chunk_rows=args.batch_size)
    progress = FitProgress(sys.stderr.isatty(), source.n_rows, args.passes, desc="demo")
    recorder = FitRecorder(progress=progress)
    with source as X, _about(source.label):
        elapsed = _fit_model(model, X, progress=progress, callback=recorder)
        print("\n".join(fit_summary(model, source.label, X.shape, elapsed,
                                    rows=recorder.rows)))
        print("passes       " + "  ".join(f"{bound:.6f}" for bound in model.lower_bounds_)
              + "  (bound per row after each pass)")
        labels = model.predict(X)
    with h5py.File(data_path, "r") as f:
        truth = f["labels"][()]
    print(f"ARI          {adjusted_rand_score(truth, labels):.4f}  (adjusted Rand index of "
          "the predicted against the true components)")
    save_model(model_path, model, attrs={"written_by": DEMO_MODEL})
    print(f"model        saved to {model_path}")
    if not keep:
        # The data are the bulky part of a throw-away directory; the model is small.
        os.remove(data_path)
        print("             (the data were deleted; pass --out DIR to keep them)")
    print(f"total        {time.perf_counter() - start:.1f} s")
    return 0
