"""``fastvi amortized fit|gap|demo``: amortized variational inference from the command line.

Kept apart from the mixture commands; ``fastvi.cli.main`` registers it.  The models and
their files (``fastvi.amortized``, ``fastvi.io.amortized``: Numba's kernels, and
scikit-learn) are imported by the commands that use them, so registering the parser, or
``fastvi info`` on a data file, loads neither.
"""
import os
import sys
import time

import h5py
import numpy as np

from .jobs import stop_status, stop_words

DEMO_EPOCHS = 40
OPTIMISE_STEPS = 100            # gap's psi* steps (gap_report's own default)
GAP_BLOCK_ROWS = 1024           # rows per gap_report call of a VAE: the progress step
PPCA_GAP_BLOCK_ROWS = 65536


def _widths(text):
    """'128,64' -> (128, 64); '' or 'linear' -> ()."""
    if text in ("", "linear", None):
        return ()
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"layer widths must be comma-separated integers, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise ValueError(f"layer widths must be >= 1, got {text!r}")
    return widths


class EpochProgress:
    """``fastvi fit``'s bar (``jobs.FitProgress``: one bar per pass over the rows, rows/s
    and the time left in the pass) drawn for every epoch, the epoch's ELBO so far in its
    postfix; the fit's records (``VAE.fit``'s ``callback``) move it.  With ``lines``, the
    line each epoch ends with is printed on stdout above the bar (tqdm.write), as
    ``verbose=1`` printed it."""

    def __init__(self, enabled, n_rows, epochs, first_epoch=0, lines=True):
        self.lines = lines
        self.enabled, self.n_rows = enabled, n_rows
        self.start, self.start_step = None, None     # PPCA's closed-form start: its bar
        from .jobs import FitProgress
        # its description counts the epochs: "amortized fit pass 3/20"
        self.progress = FitProgress(enabled, n_rows, epochs, done_rows=first_epoch * n_rows,
                                    n_pass=first_epoch, desc="amortized fit")

    def __call__(self, record):
        from tqdm import tqdm
        if record["event"] == "init":
            self._start(record)
            return
        self._end_start()
        self.progress(record)
        if record["event"] == "chunk":
            self.progress.bar.set_postfix({"ELBO": f"{record['elbo']:.4f}"}, refresh=False)
        elif record["event"] == "pass" and self.lines:
            tqdm.write(f"epoch {record['pass']}: ELBO {record['bound']:.4f} per row "
                       f"({record['seconds']:.1f} s)", file=sys.stdout)

    def _start(self, record):
        """A bar of its own for each pass of a start computed from the data (PPCA's
        moments, then per-example psi), gone when it ends."""
        from tqdm import tqdm
        if record["step"] != self.start_step:
            self._end_start()
            self.start_step = record["step"]
            self.start = tqdm(total=self.n_rows, unit="rows", unit_scale=True, leave=False,
                              disable=not self.enabled, file=sys.stderr, dynamic_ncols=True,
                              desc=f"closed-form start ({record['step']})")
        self.start.update(record["rows"])

    def _end_start(self):
        if self.start is not None:
            self.start.close()
            self.start, self.start_step = None, None

    def close(self):
        self._end_start()
        self.progress.close()


def _print_report(report):
    for key in ("log_px", "elbo_best", "elbo_inference", "approximation_gap",
                "amortization_gap"):
        print(f"{key:18s} {report[key]:10.4f} nats per example")


def cmd_fit(args):
    from ..amortized import PPCA, VAE
    from ..data.atomic import check_writable
    from ..data.files import open_source
    from ..io.amortized import save_amortized
    from .fit import NamedCheckpointer
    from .jobs import spec_path
    from .paths import check_paths
    checkpoint_path = args.checkpoint or args.output + ".ckpt"
    check_paths([("the data", spec_path(args.data))],
                [("the model", args.output), ("the checkpoint", checkpoint_path)])
    # Before the work: a read-only or missing folder is found now, not after the epochs.
    check_writable(args.output, "the model")
    check_writable(checkpoint_path, "the checkpoint")
    if args.resume and not os.path.exists(checkpoint_path):
        raise FileNotFoundError(f"--resume: there is no checkpoint {checkpoint_path!r} (an "
                                "interrupted run leaves it; leave out --resume to start "
                                "afresh)")
    if not args.resume and os.path.lexists(checkpoint_path):
        # the epochs of an interrupted run: not to be overwritten by a fresh start
        raise ValueError(f"the checkpoint {checkpoint_path!r} of an interrupted run exists: "
                         "add --resume to continue it, or remove the file to start afresh")
    source = open_source(args.data, chunk_rows=args.chunk_size)
    common = dict(encoder_hidden=_widths(args.encoder_hidden), activation=args.activation,
                  inference=args.inference, refine_steps=args.refine_steps,
                  batch_size=args.batch_size, max_epochs=args.epochs,
                  learning_rate=args.learning_rate, random_state=args.seed,
                  dtype=args.dtype, chunk_size=args.chunk_size)
    if args.model == "ppca":
        model = PPCA(args.latent, **common)
    else:
        model = VAE(args.latent, decoder_hidden=_widths(args.decoder_hidden),
                    likelihood=args.likelihood, **common)
    resume = None
    if args.resume:
        from ..io.checkpoint import load_checkpoint, validate_state
        resume, _ = load_checkpoint(checkpoint_path)
        validate_state(resume, model, source, checkpoint_path)   # a tampered one: refused
        print(f"resuming from {checkpoint_path} after epoch {resume.epochs}")
    # keep=True: the file goes only once the model is saved (see below).
    checkpointer = NamedCheckpointer(checkpoint_path, every_seconds=None, keep=True)
    first_epoch = 0 if resume is None else resume.epochs
    progress = EpochProgress(args.progress or sys.stderr.isatty(), source.n_rows,
                             args.epochs, first_epoch)
    started = time.perf_counter()
    try:
        model.fit(source, checkpoint=checkpointer, resume=resume, callback=progress)
    except KeyboardInterrupt:
        progress.close()
        if os.path.exists(checkpoint_path):
            kept = (f"the checkpoint {checkpoint_path} holds the epochs done; go on with the "
                    "same command and --resume")
        else:
            kept = "no epoch was finished, so no checkpoint was written"
        print(f"fastvi: {stop_words()}; {kept}", file=sys.stderr)
        return stop_status()
    finally:
        progress.close()
        source.close()
    elapsed = time.perf_counter() - started
    save_amortized(model, args.output)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    # Only the epochs of this run were timed: a resumed fit did the others before.
    epochs = len(model.elbo_history_) - first_epoch
    rows = source.n_rows * epochs
    rate = rows / elapsed if elapsed > 0 else float("inf")
    print(f"{type(model).__name__} (d={args.latent}, {args.inference}) on {source.label}: "
          f"{epochs} epochs ({rows} examples) in {elapsed:.1f} s, {rate:,.0f} examples/s; "
          f"last ELBO {model.elbo_history_[-1]:.4f} per row")
    print(f"model        saved to {args.output}")
    return 0


class BlockShare:
    """Moves ``bar`` by whole rows as shares of a block of ``n_rows`` rows are reported
    done (``gap_report``'s ``callback``)."""

    def __init__(self, bar, n_rows):
        self.bar, self.n_rows, self.done, self.moved = bar, n_rows, 0.0, 0

    def __call__(self, share):
        self.done += share
        rows = min(int(self.done * self.n_rows), self.n_rows - 1)   # the last on return
        if rows > self.moved:
            self.bar.update(rows - self.moved)
            self.moved = rows


def gap_in_blocks(model, source, max_rows=None, n_importance=1000,
                  optimise_steps=OPTIMISE_STEPS, progress=None, precision="auto"):
    """``model.gap_report`` on the first ``max_rows`` rows of ``source`` (all if None),
    one block at a time: block ``i`` of a VAE uses ``random_state=i``, and the blocks'
    means are combined weighted by their rows.

    Returns
    -------
    report : dict
        As ``gap_report``.
    n_rows : int
        The rows used.
    """
    from .jobs import progress_bar
    is_ppca = type(model).__name__ == "PPCA"
    block_rows = PPCA_GAP_BLOCK_ROWS if is_ppca else GAP_BLOCK_ROWS
    total = source.n_rows if max_rows is None else min(max_rows, source.n_rows)
    sums, done = {}, 0
    with progress_bar(total=total, enabled=progress, unit="rows", desc="gap",
                      dynamic_ncols=True) as bar:
        for _, _, chunk in source.chunks():
            for start in range(0, chunk.shape[0], block_rows):
                rows = np.asarray(chunk[start:start + min(block_rows, total - done)])
                if is_ppca:
                    report = model.gap_report(rows)
                else:
                    # the bar moves within a block, by the share of its work done, so
                    # the time left shows from the first seconds (a block of a VAE
                    # takes a second or more)
                    moved = BlockShare(bar, rows.shape[0])
                    report = model.gap_report(rows, n_importance=n_importance,
                                              optimise_steps=optimise_steps,
                                              random_state=done // block_rows,
                                              precision=precision, callback=moved)
                for key, value in report.items():
                    sums[key] = sums.get(key, 0.0) + value * rows.shape[0]
                done += rows.shape[0]
                bar.update(done - bar.n)
                if done >= total:
                    return {key: value / done for key, value in sums.items()}, done
    return {key: value / done for key, value in sums.items()}, done


def cmd_gap(args):
    from ..data.files import open_source
    from ..amortized.gaps import FileVAE
    # a VAE with an encoder is read without its class (no scikit-learn to import: a
    # second and more of the command's start); anything else is loaded as a model
    model = FileVAE.read(args.model)
    if model is None:
        from ..io.amortized import load_amortized
        model = load_amortized(args.model)
    block = PPCA_GAP_BLOCK_ROWS if type(model).__name__ == "PPCA" else GAP_BLOCK_ROWS
    source = open_source(args.data, chunk_rows=block)
    with source:
        report, n_rows = gap_in_blocks(model, source, args.max_rows, args.importance,
                                       args.optimise_steps, progress=args.progress or None,
                                       precision=args.precision)
    of = "" if n_rows == source.n_rows else f"the first {n_rows} of "
    print(f"gap report of {args.model} on {of}{source.label} ({n_rows} rows)")
    _print_report(report)
    return 0


def is_amortized_file(path):
    """Whether ``path`` is an HDF5 file with ``format="fastvi-amortized"``."""
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("format", "")
    except OSError:
        return False
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if not kind:
        return False            # a data file: no need to load the models to tell
    from ..io.amortized import FORMAT
    return kind == FORMAT


def cmd_demo(args):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the demo uses the digits data bundled with scikit-learn: "
                         "pip install scikit-learn") from None
    from ..amortized import VAE
    X = load_digits().data / 16.0
    order = np.random.default_rng(args.seed).permutation(len(X))
    train, test = X[order[:1500]], X[order[1500:]]
    print(f"digits (bundled with scikit-learn): train {train.shape}, test {test.shape}; "
          f"Bernoulli VAE d=8, encoder 64 and decoder 128 (tanh), {args.epochs} epochs")
    enabled = args.progress or sys.stderr.isatty()
    started = time.perf_counter()
    model = VAE(8, decoder_hidden=(128,), encoder_hidden=(64,), likelihood="bernoulli",
                max_epochs=args.epochs, learning_rate=2e-3, random_state=args.seed)
    progress = EpochProgress(enabled, len(train), args.epochs, lines=False)
    try:
        model.fit(train, callback=progress)
    finally:
        progress.close()
    print(f"trained in {time.perf_counter() - started:.1f} s; last training ELBO "
          f"{model.elbo_history_[-1]:.3f} per row")
    # one block (the test rows are fewer than GAP_BLOCK_ROWS): gap_report(test, ...) with
    # its default random_state 0, with a bar
    from ..data.sources import as_source
    report, _ = gap_in_blocks(model, as_source(test), n_importance=500,
                              optimise_steps=200, progress=enabled)
    _print_report(report)
    return 0


def add_parser(sub):
    """Register ``amortized`` and its subcommands on the main parser's subparsers.

    Every option has one line of help ending in its default in parentheses, as ``fastvi
    fit``'s do (tests/test_amortized_cli.py checks it).
    """
    from .jobs import (finite_positive_float, non_negative_int, positive_int)
    p = sub.add_parser("amortized", help="amortized VI: PPCA and VAEs (fit, gap, demo)")
    inner = p.add_subparsers(dest="amortized_command", metavar="COMMAND", required=True)

    f = inner.add_parser("fit", help="train a PPCA or VAE on DATA and save it")
    f.add_argument("data", metavar="DATA", help="file.npy or file.h5:/dataset")
    f.add_argument("-o", "--output", required=True, metavar="MODEL.h5",
                   help="the model file to write (required)")
    f.add_argument("--model", choices=("vae", "ppca"), default="vae",
                   help="an MLP decoder (vae) or probabilistic PCA, a linear decoder "
                        "started at its closed-form solution (vae)")
    f.add_argument("--latent", type=positive_int, default=2, metavar="D",
                   help="dimension of z (2)")
    f.add_argument("--decoder-hidden", default="linear", metavar="W1,W2",
                   help="decoder hidden widths, vae only (linear)")
    f.add_argument("--encoder-hidden", default="linear", metavar="W1,W2",
                   help="encoder hidden widths (linear)")
    f.add_argument("--activation", choices=("tanh", "relu", "softplus"), default="tanh",
                   help="of the hidden layers (tanh)")
    f.add_argument("--likelihood", choices=("gaussian", "bernoulli"), default="gaussian",
                   help="of x given z, vae only; bernoulli needs data in [0, 1] (gaussian)")
    f.add_argument("--inference", choices=("amortized", "per_example", "semi_amortized"),
                   default="amortized",
                   help="an encoder, one psi per row, or the encoder's psi refined by "
                        "--refine-steps (amortized)")
    f.add_argument("--refine-steps", type=non_negative_int, default=10, metavar="N",
                   help="gradient steps on psi per row, semi_amortized and per_example "
                        "(10)")
    f.add_argument("--epochs", type=positive_int, default=20, metavar="N",
                   help="passes over the rows (20)")
    f.add_argument("--batch-size", type=positive_int, default=128, metavar="ROWS",
                   help="rows per minibatch (128)")
    f.add_argument("--learning-rate", type=finite_positive_float, default=1e-3,
                   metavar="LR", help="Adam's step; ppca's W and b take it times the rows' "
                                      "spread (0.001)")
    f.add_argument("--chunk-size", type=positive_int, default=65536, metavar="ROWS",
                   help="rows read at a time; minibatches are drawn within a chunk (65536)")
    f.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="of the networks and the arithmetic (float64)")
    f.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed of the initial weights and the minibatches (0)")
    f.add_argument("--checkpoint", metavar="PATH",
                   help="written after every epoch, removed at the end (MODEL.h5.ckpt)")
    f.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint of an interrupted run of this command")
    f.add_argument("--progress", action="store_true",
                   help="draw the progress bar of every epoch (rows, ELBO so far, time "
                        "left) even when stderr is not a terminal")
    f.set_defaults(func=cmd_fit)

    g = inner.add_parser("gap", help="approximation and amortization gaps of MODEL on DATA")
    g.add_argument("model", metavar="MODEL.h5", help="a model written by amortized fit")
    g.add_argument("data", metavar="DATA", help="file.npy or file.h5:/dataset")
    g.add_argument("--importance", type=positive_int, default=1000, metavar="N",
                   help="draws of the importance-weighted bound of log p(x), vae only "
                        "(1000)")
    g.add_argument("--optimise-steps", type=non_negative_int, default=OPTIMISE_STEPS,
                   metavar="N", help="gradient steps of the per-row optimum psi*, vae only; "
                                     f"0: psi* is the encoder's psi ({OPTIMISE_STEPS})")
    g.add_argument("--max-rows", type=positive_int, metavar="N",
                   help="use only the first N rows of DATA (all)")
    g.add_argument("--precision", choices=("auto", "float32", "model"), default="auto",
                   help="the decoder's dtype on the draws, vae only: auto is float32 "
                        "unless Gaussian rows lie beyond 1024 noise sd; model: the "
                        "model's dtype (auto)")
    g.add_argument("--progress", action="store_true",
                   help="draw the progress bar (rows done, time left) even when stderr "
                        "is not a terminal")
    g.set_defaults(func=cmd_gap)

    d = inner.add_parser("demo", help="a VAE on scikit-learn's bundled digits, its gaps")
    d.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS, metavar="N",
                   help=f"training epochs ({DEMO_EPOCHS})")
    d.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed of the split, the weights and the minibatches (0)")
    d.add_argument("--progress", action="store_true",
                   help="draw the progress bars (every epoch, the gaps) even when stderr "
                        "is not a terminal")
    d.set_defaults(func=cmd_demo)
