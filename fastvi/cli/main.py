"""The ``fastvi`` command: its parser, ``main`` (which dispatches a command to its
module) and the reporting of errors and exit statuses.

The commands live one group a module: ``fit`` (the fit job: checkpoints, resume,
signals), ``predict`` (``predict`` and ``score``), ``info``, ``demo`` (``make-data`` and
``demo``), ``amortized`` (``fastvi amortized ...``); ``jobs`` holds what they share
(argument types, exit statuses, progress bars, the JSON log).  Each imports the heavy
layers (the estimators, the engine, Numba, scikit-learn) inside the functions that use
them, so ``fastvi --help``, ``fastvi make-data`` and ``fastvi info`` on a data file load
neither Numba nor scikit-learn.

Every subcommand streams its data chunk by chunk, so files larger than memory work.  Bad
input (a missing file or dataset, wrong shape or dtype, a corrupt file, a model that does
not fit the data) ends with ``fastvi: error: <message>`` on stderr and exit status 2
(``--debug``, or the environment variable ``FASTVI_DEBUG=1``, shows the traceback too).

Exit status: 0 success, 1 an internal error (a bug: one line, the traceback with
``--debug``), 2 bad usage or bad input (one line ``fastvi: error: ...``; docs/errors.md
lists them; running out of memory too), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM,
129 by SIGHUP (``fastvi.data.interrupts``: the same in every command), 141 when the reader
of stdout went away (``fastvi ... | head``).
"""
import argparse
import functools
import os
import signal
import sys
import traceback

from .. import __version__
from ..data import interrupts
from .demo import (DEMO_BATCH_SIZE, DEMO_N_SAMPLES, DEMO_PASSES, DEMO_TOL, cmd_demo,
                   cmd_make_data)
from .fit import CHECKPOINT_EVERY_SECONDS, cmd_fit
from .info import cmd_info
from .jobs import EXIT_INTERNAL, EXIT_USAGE, STOP_SIGNALS, stop_status, stop_words
from .jobs import finite_float as _finite_float
from .jobs import SCHEDULER_TIMEOUT_SECONDS
from .jobs import finite_non_negative_float as _finite_non_negative_float
from .jobs import finite_positive_float as _finite_positive_float
from .jobs import integer as _integer
from .jobs import is_h5py_error as _is_h5py_error
from .jobs import non_negative_int as _non_negative_int
from .jobs import positive_int as _positive_int
from .predict import PREDICT_CHUNK_ROWS, cmd_predict, cmd_score


# ----------------------------------------------------------------------------- parser

def _threads(text):
    """``--threads``: -1 (all cores) or a count >= 1."""
    value = _integer(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (all) or >= 1, got {value}")
    return value


FIT_EPILOG = """\
examples:
  fastvi fit data.h5:/X --k 16 --model bgmm -o model.h5
  fastvi fit part1.h5:/X part2.h5:/X --k 16 --model bgmm --algorithm stochastic \\
      --batch-size 65536 --passes 5 --validation held.h5:/X --log fit.jsonl -o model.h5
  fastvi fit ... -o model.h5 --resume      (after Ctrl-C, SIGTERM, kill -9 or a crash)
  fastvi fit data.h5:/X --k 16 -o model.h5 --scheduler tcp://host:8786   (a Dask cluster)

The fit state is checkpointed to MODEL.h5.ckpt while it runs.  Ctrl-C or SIGTERM stops it
at the next chunk, writes the checkpoint and exits with status 130 (143); the same
command with --resume goes on and ends with the same model, bit for bit.  The model is
written atomically at the end and the checkpoint removed.  --resume takes the settings
and data from the checkpoint: DATA and the model options may be left out (given, they
must agree with it); --threads, --verbose, --log, --progress, --scheduler and --workers
may change.  With --scheduler or --workers the chunks are computed on a Dask cluster and
the model is the same, bit for bit (docs/cluster.md)."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, as every other error of the command."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastvi: error: {message} (see: {self.prog} --help)\n")


def _add_cluster_options(parser):
    """``--backend`` (this machine's cores or its GPU), and ``--scheduler`` /
    ``--workers`` (one of them) and ``--scheduler-timeout``: run the command's chunk tasks
    on a Dask cluster (docs/cluster.md)."""
    parser.add_argument("--backend", choices=("local", "cuda", "auto"), default="local",
                        help="where the chunk work runs: local (this machine's cores), cuda "
                             "(an NVIDIA GPU; pip install 'fastvi[cuda]'; docs/gpu.md) or "
                             "auto (the GPU when one is usable, else local) (local)")
    group = parser.add_argument_group(
        "cluster", "run the chunk work on a Dask cluster, with the same results "
                   "(pip install 'fastvi[dask]'; docs/cluster.md)")
    one = group.add_mutually_exclusive_group()
    one.add_argument("--scheduler", metavar="ADDRESS",
                     help="the Dask scheduler of a running cluster (tcp://host:8786); its "
                          "workers read the data files by the same paths")
    one.add_argument("--workers", type=_positive_int, metavar="N",
                     help="start N Dask worker processes on this machine for the command "
                          "(each on cores/N Numba threads) and stop them at its end")
    group.add_argument("--scheduler-timeout", type=_finite_positive_float, metavar="SECONDS",
                       default=SCHEDULER_TIMEOUT_SECONDS,
                       help=f"how long --scheduler may take to answer "
                            f"({SCHEDULER_TIMEOUT_SECONDS:g})")


def _add_debug(parser):
    # SUPPRESS: a subcommand's parser leaves a --debug given before the subcommand alone.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error (also FASTVI_DEBUG=1)")


def build_parser():
    """The argparse parser of the ``fastvi`` command."""
    parser = _Parser(
        prog="fastvi", description="Streaming EM and variational Bayes for Gaussian mixtures.")
    parser.add_argument("--version", action="version", version=f"fastvi {__version__}")
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("make-data", help="write a generated Gaussian mixture to HDF5")
    p.add_argument("out", metavar="OUT.h5")
    p.add_argument("--n-samples", type=_positive_int, default=1_000_000)
    p.add_argument("--n-features", type=_positive_int, default=16)
    p.add_argument("--n-components", type=_positive_int, default=16)
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the mixture's parameters (and of the rows, unless "
                        "--sample-seed) (0)")
    p.add_argument("--sample-seed", type=_non_negative_int, metavar="S",
                   help="draw the rows with this seed instead: other rows from the same "
                        "mixture as --seed gives, e.g. a held-out file")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--separation", type=_finite_non_negative_float, default=4.0,
                   help="minimum distance of two means, in standard deviations (4)")
    p.add_argument("--cov", choices=("full", "tied", "diag", "spherical"), default="full",
                   help="structure of the true covariances (full)")
    p.add_argument("--chunk-rows", type=_positive_int, default=65536)
    p.add_argument("--missing-rate", type=_finite_non_negative_float, default=0.0,
                   metavar="R", help="make each entry NaN with probability R in [0, 1), "
                                     "for fit --missing marginalize (0)")
    p.add_argument("--force", action="store_true",
                   help="replace OUT even if it is not a file that fastvi generated")
    p.set_defaults(func=cmd_make_data)

    p = sub.add_parser("fit", help="fit a mixture and save it (checkpointed, resumable)",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", nargs="*",
                   help="file.npy, file.h5 or file.h5:/dataset; several are read as one "
                        "data set, in order (optional with --resume)")
    g = p.add_argument_group("model")
    g.add_argument("--k", type=_positive_int, help="number of components (required)")
    g.add_argument("--model", choices=("gmm", "bgmm"), help="EM or variational Bayes (gmm)")
    g.add_argument("--cov", choices=("full", "tied", "diag", "spherical"),
                   help="covariance structure (full)")
    g.add_argument("--weight-prior", choices=("dirichlet_process", "dirichlet_distribution"),
                   help="bgmm only (dirichlet_process)")
    g.add_argument("--init", choices=("auto", "kmeans", "k-means++", "k-means||", "random",
                                      "random_from_data"),
                   help="initialisation on a sample (auto: k-means||, the scalable "
                        "k-means++, from K = 256 on, else kmeans)")
    g.add_argument("--n-init", type=_positive_int,
                   help="initialisations, best kept (1; more disables checkpoints)")
    g.add_argument("--seed", type=_non_negative_int, help="random seed (0)")
    g.add_argument("--reg-covar", type=_finite_non_negative_float,
                   help="added to the covariances (gmm) or the prior's (bgmm) (1e-6)")
    g.add_argument("--missing", choices=("error", "marginalize"),
                   help="what a NaN entry is: an error, or a value missing at random, "
                        "integrated out by exact EM / VB (error)")
    g = p.add_argument_group("algorithm")
    g.add_argument("--algorithm", choices=("batch", "stochastic", "memoized"),
                   help="exact passes, stochastic VB / stepwise EM, or memoized (batch)")
    g.add_argument("--passes", "--max-iter", dest="max_iter", type=_non_negative_int,
                   metavar="N", help="most passes over the data (100)")
    g.add_argument("--tol", type=_finite_non_negative_float,
                   help="stop when the bound per row changes less (gmm 1e-3, bgmm 1e-5); "
                        "the stochastic algorithm judges the held-out value when "
                        "--validation is given")
    g.add_argument("--batch-size", type=_positive_int, metavar="ROWS",
                   help="rows per minibatch of stochastic and memoized (--chunk-size); "
                        "rounded up to the HDF5 chunking; a stochastic minibatch larger "
                        "than --chunk-size is several chunks, computed together")
    g.add_argument("--n-batches", type=_positive_int, metavar="B",
                   help="memoized: cache the statistics of B batches of consecutive "
                        "chunks, each recomputed as one step (default: one per chunk up "
                        "to 64 chunks, then 64 or fewer, the caches within 256 MiB)")
    g.add_argument("--tau", type=_finite_non_negative_float, metavar="TAU",
                   help="learning offset of the step size (t + tau)^-kappa (10)")
    g.add_argument("--kappa", type=_finite_float, metavar="KAPPA",
                   help="learning decay, in (0.5, 1] (0.7)")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_const", const=False,
                   help="visit the minibatches in file order (default: a new random order "
                        "every pass)")
    g.add_argument("--n-active", type=_positive_int, metavar="L",
                   help="truncated variational EM: each row's q(z) on its L most probable "
                        "components (1: hard EM; default: all, the exact E-step)")
    g.add_argument("--n-candidates", type=_positive_int, metavar="G",
                   help="components searched per row for its L (old support, neighbours, "
                        "random); work per row depends on G, not K (default: all K)")
    g.add_argument("--support-file", metavar="FILE.h5",
                   help="keep the per-row supports of --n-active in this HDF5 file instead "
                        "of memory (N x L int32)")
    g.add_argument("--moves", choices=("merge", "birth", "delete"), nargs="+", metavar="MOVE",
                   help="moves of a batch or memoized bgmm fit (merge, birth, delete): "
                        "merge, split or remove components when the exact ELBO rises; --k "
                        "is then a cap")
    g.add_argument("--k-init", type=_positive_int, metavar="K",
                   help="components a fit with --moves starts from (--k); births grow them")
    g.add_argument("--chunk-size", type=_positive_int, metavar="ROWS",
                   help="rows per read and kernel call (65536)")
    g.add_argument("--threads", type=_threads, help="compute threads (-1: all)")
    g = p.add_argument_group("input and output")
    g.add_argument("-o", "--output", required=True, metavar="MODEL.h5")
    g.add_argument("--validation", metavar="DATA", action="append",
                   help="held-out rows: their mean log-normaliser is recorded every pass "
                        "(repeat for several files)")
    g.add_argument("--log", metavar="FILE.jsonl",
                   help="write every chunk and pass event as a JSON line")
    g.add_argument("--progress", action="store_true",
                   help="draw the progress bar even when stderr is not a terminal")
    g.add_argument("--verbose", action="store_true", help="print every pass")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (MODEL.h5.ckpt)")
    g.add_argument("--checkpoint-every", type=_finite_non_negative_float, metavar="SECONDS",
                   default=CHECKPOINT_EVERY_SECONDS,
                   help="write it every SECONDS (60; 0: only after passes and on Ctrl-C)")
    g.add_argument("--checkpoint-chunks", type=_positive_int, metavar="N",
                   help="also write it every N chunks")
    g.add_argument("--no-checkpoint", action="store_true", help="write no checkpoint")
    g.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint of an interrupted fit")
    _add_cluster_options(p)
    p.set_defaults(func=cmd_fit, check=functools.partial(_check_fit_args, p))

    p = sub.add_parser("predict", help="write the labels (and responsibilities) of DATA")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    p.add_argument("--proba", action="store_true", help="also write /resp (float32)")
    p.add_argument("--top", type=_positive_int, metavar="L",
                   help="also write /top_index and /top_resp: each row's L most probable "
                        "components (for large K)")
    p.add_argument("--impute", action="store_true",
                   help="also write /imputed: the rows with each NaN replaced by its "
                        "conditional mean under the model (incomplete rows are then "
                        "labelled from their observed entries)")
    p.add_argument("--chunk-size", type=_positive_int, default=PREDICT_CHUNK_ROWS)
    _add_cluster_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="mean and total per-row log-likelihood of DATA")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--chunk-size", type=_positive_int, default=PREDICT_CHUNK_ROWS)
    _add_cluster_options(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("info", help="describe a model, HDF5 or .npy file")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="generate a mixture in HDF5, fit it by stochastic VB "
                                    "streaming from the file, report the ARI")
    p.add_argument("--n-samples", type=_positive_int, default=DEMO_N_SAMPLES)
    p.add_argument("--passes", "--max-iter", dest="passes", type=_positive_int,
                   default=DEMO_PASSES, metavar="N")
    p.add_argument("--batch-size", type=_positive_int, default=DEMO_BATCH_SIZE,
                   metavar="ROWS")
    p.add_argument("--tol", type=_finite_non_negative_float, default=DEMO_TOL)
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--out", metavar="DIR", help="keep the data and model here")
    p.add_argument("--force", action="store_true",
                   help="replace DIR/mixture.h5 and DIR/model.h5 even if an earlier demo "
                        "did not write them")
    p.set_defaults(func=cmd_demo)

    from .amortized import add_parser as add_amortized
    add_amortized(sub)
    _add_debug_everywhere(sub)
    return parser


def _add_debug_everywhere(subparsers):
    """``--debug`` after any subcommand too (``fastvi fit ... --debug``)."""
    for parser in subparsers.choices.values():
        _add_debug(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_everywhere(action)


def _check_fit_args(parser, args):
    """Usage errors of ``fit`` that argparse cannot express (it exits 2 on them)."""
    if args.resume:
        return
    missing = [name for name, value in (("DATA", args.data), ("--k", args.k)) if not value]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} "
                     "(unless --resume)")


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _stopped():
    """Say that a signal stopped the command (its outputs were removed as the stop
    unwound); the exit status."""
    print(f"fastvi: {stop_words()}; no output was left half-written", file=sys.stderr)
    return stop_status()


def _broken_pipe(exc):
    """Whether ``exc`` is (or was raised from) a write to a pipe whose reader has gone."""
    while exc is not None:
        if isinstance(exc, BrokenPipeError):
            return True
        exc = exc.__cause__
    return False


def _silence_stdout():
    """stdout to /dev/null: the interpreter's last flush must not fail on the pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _one_line(text):
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def main(argv=None):
    """Run the ``fastvi`` command; return its exit status.

    Bad usage or input (``ValueError``, ``OSError``, ``KeyError``, an h5py
    ``RuntimeError``) prints one line ``fastvi: error: <message>``; any other exception
    is a bug and prints ``fastvi: internal error: <Type>: <message>``.  ``--debug`` (or
    ``FASTVI_DEBUG=1``) prints the traceback before that line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on an internal error, 2 on bad usage or bad input (or out of
        memory), 130 when interrupted (Ctrl-C), 143 when stopped by SIGTERM, 129 by
        SIGHUP, 141 when stdout's reader went away.
    """
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is not None and getattr(args, "check", None) is not None:
            args.check(args)
    except SystemExit as exc:       # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        print("fastvi: error: a command is required (see: fastvi --help)", file=sys.stderr)
        return EXIT_USAGE
    args.argv = argv
    debug = getattr(args, "debug", False) or bool(os.environ.get("FASTVI_DEBUG"))
    # SIGINT, SIGTERM and SIGHUP alike in every command (fastvi.data.interrupts): the work
    # stops at a safe point, the outputs in progress are removed, a second signal during
    # that cleanup does not cut it short, and the exit status is 128 + the signal.
    # A program (not a call from Python) ignores signals once the block ends: the command
    # has said how it ended and the process only exits now; a late signal would kill the
    # interpreter's shutdown raw and change the status.
    with interrupts.handling(STOP_SIGNALS, final=signal.SIG_IGN if as_program else None):
        return _run(args, debug)


def _run(args, debug):
    """Run the command; its exit status (errors and signals reported on one line)."""
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _stopped()
    except MemoryError as exc:
        # The last line of defence: the sizes are checked against this machine's memory
        # before the work (fastvi.data.memory.check_memory), but what other programs hold
        # is not known then.  Not a bug: the job is too large for the memory free now.
        if debug:
            traceback.print_exc()
        options = {"predict": "--chunk-size", "score": "--chunk-size",
                   "make-data": "--n-features, --n-components or --chunk-rows",
                   "amortized": "--batch-size, --chunk-size, --latent or the hidden widths"
                   }.get(args.command, "--chunk-size, --batch-size or --k")
        detail = f" ({_one_line(exc)})" if str(exc) else ""
        print(f"fastvi: error: out of memory{detail}: lower the sizes of the job ({options}) "
              "or free memory", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if interrupts.stop_signal() is not None:
            # The stop's KeyboardInterrupt, raised inside a callback from C code (h5py's
            # type conversion or file driver), comes out as that library's own error:
            # the signal stopped the command, and the unwinding has cleaned up.
            if debug:
                traceback.print_exc()
            return _stopped()
        if _broken_pipe(exc):
            # `fastvi ... | head`: the reader has gone, so stop without a word, as a
            # process killed by SIGPIPE would (Python ignores SIGPIPE and raises this)
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        if debug:
            traceback.print_exc()
        if isinstance(exc, (ValueError, OSError, KeyError)) or (
                isinstance(exc, RuntimeError) and _is_h5py_error(exc)):
            # KeyError's str() is the repr of its argument; print the message itself.
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"fastvi: error: {_one_line(message)}", file=sys.stderr)
            return EXIT_USAGE
        hint = "" if debug else " (run with --debug for the traceback)"
        summary = ": ".join(filter(None, (type(exc).__name__, _one_line(exc))))
        print(f"fastvi: internal error: {summary}{hint}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
