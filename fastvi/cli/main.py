"""The ``fastvi`` command: make data, fit, predict, score, inspect, demo.

(Over 600 lines: issue 12 splits the command line into one module per command group;
until then the fit job's bars, log and warnings are in ``cli_jobs.py`` and the amortized
commands in ``cli_amortized.py``.)

Every subcommand streams its data chunk by chunk, so files larger than memory work.  Bad
input (a missing file or dataset, wrong shape or dtype, a corrupt file, a model that does
not fit the data) ends with ``fastvi: error: <message>`` on stderr and exit status 2
(``--debug``, or the environment variable ``FASTVI_DEBUG=1``, shows the traceback too).

``fastvi fit`` is made for long batch jobs:

* several DATA files are read as one data set, in the order given;
* ``--algorithm batch|stochastic|memoized`` picks how chunk statistics are combined;
* the fit state is checkpointed to ``MODEL.h5.ckpt`` (``--checkpoint``) every
  ``--checkpoint-every`` seconds (60), every ``--checkpoint-chunks`` chunks if given, at
  the end of every pass and on an interruption;
* Ctrl-C (SIGINT) or SIGTERM stops the fit at the next chunk boundary, writes the
  checkpoint and exits with status 130 (143 for SIGTERM) without writing the model; the
  same command with ``--resume`` goes on from the checkpoint, as does one after a
  ``kill -9`` or a crash (from the last checkpoint written), and ends with the same model,
  bit for bit, as a fit that was never stopped;
* the model is written atomically when the fit ends, then the checkpoint is removed;
* ``--log FILE.jsonl`` records every chunk and pass as one JSON object per line, and a
  progress bar (rows/s, the bound after each pass) is drawn on stderr when it is a
  terminal (``--progress`` forces it).

Exit status: 0 success, 1 an internal error (a bug: one line, the traceback with
``--debug``), 2 bad usage or bad input (one line ``fastvi: error: ...``; docs/errors.md
lists them), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""
import argparse
import functools
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager

import h5py
import numpy as np

from .. import __version__
from ..io.checkpoint import Checkpointer
from .jobs import FitProgress, FitRecorder, JsonLog
from .jobs import finite_float as _finite_float
from .jobs import finite_non_negative_float as _finite_non_negative_float
from .jobs import integer as _integer
from .jobs import non_negative_int as _non_negative_int
from .jobs import positive_int as _positive_int
from .jobs import fit_model as _fit_model
from .jobs import progress_bar as _progress
from ..data.atomic import OutputError, atomic_h5, check_writable, output_error
from ..data.files import (list_datasets, open_h5, open_source, open_sources, resolve_spec,
                          split_spec)
from ..io.model import get_params, is_model_file, load_model, save_model

PREDICT_CHUNK_ROWS = 65536
DEMO_N_SAMPLES = 2_000_000
DEMO_PASSES = 5
DEMO_BATCH_SIZE = 65536
DEMO_TOL = 1e-3
CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_EVERY_SECONDS = 60.0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _check_model_data(model, model_path, X, label):
    if X.shape[1] != model.n_features_in_:
        raise ValueError(f"{label} has {X.shape[1]} features, but the model in "
                         f"{model_path!r} was fitted on {model.n_features_in_}")


@contextmanager
def _about(label):
    """Prefix errors raised while working on the data with its name (a NaN row, a read
    error in a corrupt chunk, too few rows), unless the message names it already."""
    from ..engine.loop import ResumeMismatch   # here: _loop loads the kernels, which info needs not
    try:
        yield
    except (OutputError, ResumeMismatch):
        raise                   # an output's error names the output; a checkpoint's, see
                                # _naming_checkpoint
    except (ValueError, OSError) as exc:
        message = str(exc)
        if label in message:
            raise
        kind = OSError if isinstance(exc, OSError) else ValueError
        raise kind(f"{label}: {message}") from exc


@contextmanager
def _naming_checkpoint(checkpoint_path):
    """A checkpoint that does not belong to the data or the model: not the data's fault
    alone, so the message names the checkpoint, and the way out."""
    from ..engine.loop import ResumeMismatch
    try:
        yield
    except ResumeMismatch as exc:
        raise ValueError(f"--resume: {exc} (checkpoint {checkpoint_path!r}; remove it to "
                         "start afresh)") from None


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _spec_path(spec):
    return split_spec(spec)[0]


def _note(message):
    print(f"fastvi: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- summaries

def _format_weights(weights, top=8):
    order = np.argsort(weights)[::-1][:top]
    return "  ".join(f"{weights[k]:.4f} (k={k})" for k in order)


def fit_summary(model, label, shape, elapsed, rows=None, chunk_rows=None):
    """Lines describing a fitted model and its fit time.

    ``rows/s`` counts the rows the passes of this fit streamed (``rows``; by default rows
    times passes of the best initialisation) over the whole fit time, initialisation
    included: a lower bound of the streaming rate.  ``chunk_rows``: the rows per chunk
    actually read, when they differ from the minibatch asked for.
    """
    n_rows = shape[0]
    weights = np.asarray(model.weights_)
    used = int((weights > 1e-3).sum())
    status = "converged" if model.converged_ else "not converged"
    if rows is None:
        rows = n_rows * max(model.n_iter_, 1)
    rate = rows / elapsed if elapsed > 0 else float("inf")
    algorithm = getattr(model, "algorithm", "batch")
    how = f"algorithm={algorithm}"
    if getattr(model, "n_active", None) is not None:
        how += f", n_active={model.n_active}, n_candidates={model.n_candidates or 'all'}"
    if algorithm != "batch" and getattr(model, "batch_size", None) is not None:
        how += f", batch_size={model.batch_size}"
        if chunk_rows is not None and chunk_rows != model.batch_size:
            how += f" read as {chunk_rows}"
    lines = [
        f"model        {type(model).__name__} (K={model.n_components}, "
        f"covariance_type={model.covariance_type}, {how})",
        f"data         {label}  ({shape[0]} x {shape[1]})",
        f"iterations   {model.n_iter_} passes over the data ({status})",
        f"lower bound  {model.lower_bound_:.6f} per row",
    ]
    history = getattr(model, "validation_history_", None)
    if history:
        lines.append(f"held-out     {history[-1]:.6f} per row (mean log-normaliser of the "
                     "validation rows after the last pass)")
    lines += [
        f"time         {elapsed:.2f} s  ({rate:.3g} rows/s, {rows} rows streamed)",
        f"weights      {used} of {model.n_components} components above 0.001; largest: "
        f"{_format_weights(weights)}",
    ]
    return lines


# ----------------------------------------------------------------------------- fit jobs

@contextmanager
def _sigterm_as_ctrl_c():
    """Handle SIGTERM (what batch schedulers send before they kill) like Ctrl-C: the fit
    stops at the next chunk boundary and writes its checkpoint.  Yields a list that holds
    SIGTERM once one arrived."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)      # the fit loop's deferred Ctrl-C
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


# dest of a `fit` option -> (estimator parameter, the option as the user spells it)
_MODEL_OPTIONS = {
    "k": ("n_components", "--k"),
    "cov": ("covariance_type", "--cov"),
    "seed": ("random_state", "--seed"),
    "max_iter": ("max_iter", "--passes"),
    "tol": ("tol", "--tol"),
    "n_init": ("n_init", "--n-init"),
    "init": ("init_params", "--init"),
    "reg_covar": ("reg_covar", "--reg-covar"),
    "chunk_size": ("chunk_size", "--chunk-size"),
    "weight_prior": ("weight_concentration_prior_type", "--weight-prior"),
    "algorithm": ("algorithm", "--algorithm"),
    "batch_size": ("batch_size", "--batch-size"),
    "tau": ("learning_offset", "--tau"),
    "kappa": ("learning_decay", "--kappa"),
    "shuffle": ("shuffle", "--no-shuffle"),
    "n_active": ("n_active", "--n-active"),
    "n_candidates": ("n_candidates", "--n-candidates"),
    "support_file": ("support_file", "--support-file"),
}
_MODEL_CLASSES = {"gmm": "GaussianMixture", "bgmm": "BayesianGaussianMixture"}
_META_KEYS = ("class", "params", "data", "n_rows", "n_features")


def _given_params(args):
    """The estimator parameters that the command line sets."""
    return {param: getattr(args, dest) for dest, (param, _) in _MODEL_OPTIONS.items()
            if getattr(args, dest, None) is not None}


def _runtime_params(args):
    """Parameters that leave the result unchanged (so a resumed fit may change them)."""
    params = {"verbose": 2 if args.verbose else 0, "verbose_interval": 1}
    if args.threads is not None:
        params["n_jobs"] = args.threads
    return params


def _build_model(args):
    from ..mixture import BayesianGaussianMixture, GaussianMixture
    kwargs = {"random_state": 0, **_given_params(args), **_runtime_params(args)}
    if (args.model or "gmm") == "gmm":
        if args.weight_prior is not None:
            raise ValueError("--weight-prior applies only to --model bgmm")
        return GaussianMixture(**kwargs)
    return BayesianGaussianMixture(**kwargs)


def _chunk_rows(model):
    """Rows per chunk of the fit: the minibatch of the online algorithms."""
    if model.algorithm != "batch" and model.batch_size is not None:
        return int(model.batch_size)
    return int(model.chunk_size)


class NamedCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose failed writes (a full disk) name the checkpoint: the fit
    loop calls it while it reads the data, whose name would be blamed otherwise."""

    def write(self, state):
        try:
            super().write(state)
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _is_h5py_error(exc):
                raise
            raise output_error("the checkpoint", self.path, exc) from None


def _check_log_writable(path):
    """The log is appended to (``--resume``) or rewritten in place: it must be a writable
    file, or one that can be made."""
    if os.path.isdir(path):
        raise OutputError(f"cannot write the log {path!r}: it is a directory")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write the log {path!r}: Permission denied")
    else:
        check_writable(path, "the log")


def _check_outputs(args, checkpoint_path, sources):
    """Neither the model nor the checkpoint may replace an input, nor each other."""
    inputs = [_spec_path(spec) for source in sources if source is not None
              for spec in (source.spec if isinstance(source.spec, list) else [source.spec])]
    for other in inputs:
        if _same_file(args.output, other):
            raise ValueError(f"output {args.output!r} would overwrite the input {other!r}")
        if checkpoint_path is not None and _same_file(checkpoint_path, other):
            raise ValueError(f"checkpoint {checkpoint_path!r} would overwrite the input "
                             f"{other!r}")
    if checkpoint_path is not None and _same_file(checkpoint_path, args.output):
        raise ValueError(f"the checkpoint and the model cannot both be {args.output!r}")


def _specs(source):
    return list(source.spec) if isinstance(source.spec, list) else [source.spec]


def _checkpoint_meta(model, source, validation, args):
    """What ``fastvi fit --resume`` needs to rebuild the estimator and reopen the data."""
    from ..io.checkpoint import estimator_params
    return {"class": type(model).__name__, "params": estimator_params(model),
            "data": _specs(source),
            "validation": None if validation is None else _specs(validation),
            "n_rows": int(source.n_rows), "n_features": int(source.n_features),
            "n_chunks": int(source.n_chunks), "output": os.path.abspath(args.output),
            "argv": list(args.argv), "fastvi_version": __version__}


def _resume_command(args):
    argv = list(args.argv)
    if "--resume" not in argv:
        argv.append("--resume")
    return "fastvi " + shlex.join(argv)


def _load_resume(args, checkpoint_path):
    """The estimator, checkpoint meta and fit state of ``fit --resume``."""
    from ..io.checkpoint import load_checkpoint
    from ..io.model import _estimator_classes
    if not os.path.exists(checkpoint_path):
        raise FileNotFoundError(
            f"--resume: there is no checkpoint {checkpoint_path!r} (a fit writes it while it "
            "runs and removes it when it ends; name another one with --checkpoint PATH, or "
            "leave out --resume to start afresh)")
    state, meta = load_checkpoint(checkpoint_path)
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{checkpoint_path!r} was not written by `fastvi fit` (its meta "
                         f"lacks {', '.join(missing)}); resume it from Python with "
                         "fastvi.load_checkpoint")
    classes = _estimator_classes()
    if meta["class"] not in classes:
        raise ValueError(f"{checkpoint_path!r} holds an unknown model class {meta['class']!r}")
    # Options given again with --resume must agree with the checkpoint: a different K or
    # algorithm would silently be ignored otherwise.
    params = meta["params"]
    differ = []
    if args.model is not None and _MODEL_CLASSES[args.model] != meta["class"]:
        differ.append(f"--model {args.model} (checkpoint: {meta['class']})")
    for dest, (param, option) in _MODEL_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None and value != params.get(param):
            shown = option if option == "--no-shuffle" else f"{option} {value}"
            differ.append(f"{shown} (checkpoint: {params.get(param)!r})")
    if args.data:
        given = [resolve_spec(spec) for spec in args.data]
        if given != list(meta["data"]):
            differ.append(f"DATA {' '.join(args.data)} (checkpoint: {' '.join(meta['data'])})")
    if args.validation:
        given = [resolve_spec(spec) for spec in args.validation]
        if given != list(meta.get("validation") or []):
            differ.append(f"--validation {' '.join(args.validation)} (checkpoint: "
                          f"{' '.join(meta.get('validation') or ['none'])})")
    if differ:
        raise ValueError(f"--resume goes on with the settings and data stored in the "
                         f"checkpoint {checkpoint_path!r}, but these differ from it: "
                         f"{'; '.join(differ)}; drop them, or remove the checkpoint to start "
                         "afresh")
    model = classes[meta["class"]](**params)
    for key, value in _runtime_params(args).items():
        setattr(model, key, value)
    return model, meta, state


def _check_resumed_data(meta, source, checkpoint_path):
    stored = (int(meta["n_rows"]), int(meta["n_features"]))
    if source.shape != stored:
        raise ValueError(f"the data changed since the checkpoint {checkpoint_path!r} was "
                         f"written: {source.label} has {source.n_rows} x {source.n_features} "
                         f"rows, the checkpoint is of {stored[0]} x {stored[1]}; remove the "
                         "checkpoint to start afresh")
    if "n_chunks" in meta and source.n_chunks != meta["n_chunks"]:
        raise ValueError(f"the chunking of {source.label} changed since the checkpoint "
                         f"{checkpoint_path!r} was written ({source.n_chunks} chunks, not "
                         f"{meta['n_chunks']}); remove the checkpoint to start afresh")


def _position(state, source):
    """(passes completed; chunks done in the next; chunks in a pass; rows done).

    The passes completed are the ``pass`` of the log's events (0 in the first pass)."""
    n_chunks = len(state.order) if state.order is not None else source.n_chunks
    position = state.position if state.order is not None else 0
    bounds = source.chunk_bounds()
    rows = state.n_pass * source.n_rows
    if state.order is not None:
        rows += sum(bounds[i][1] - bounds[i][0] for i in state.order[:position])
    return state.n_pass, position, n_chunks, rows


def _where(n_done, position, n_chunks):
    """'7 passes and 3 of 10 chunks': the words of the interrupt and resume messages."""
    passes = "1 pass" if n_done == 1 else f"{n_done} passes"
    return f"{passes} and {position} of {n_chunks} chunks"


def cmd_fit(args):
    started = time.perf_counter()
    checkpoint_path = args.checkpoint or args.output + CHECKPOINT_SUFFIX
    # Every output is checked before the data are read: a read-only folder or a directory
    # in the way is found now, not after hours of fitting.
    check_writable(args.output, "the model")
    if args.log is not None:
        _check_log_writable(args.log)
    if args.resume:
        model, meta, state = _load_resume(args, checkpoint_path)
        data_specs, validation_specs = meta["data"], meta.get("validation")
    else:
        model = _build_model(args)
        meta = state = None
        data_specs, validation_specs = args.data, args.validation
    # The parameters too, so that their errors are not blamed on the data.
    model._check_parameters()
    use_checkpoint = not args.no_checkpoint
    if use_checkpoint and model.n_init > 1:
        if args.checkpoint is not None or args.checkpoint_chunks is not None:
            raise ValueError("--checkpoint needs --n-init 1: a checkpoint holds one "
                             "initialisation (or pass --no-checkpoint)")
        _note(f"note: no checkpoint with --n-init {model.n_init} (a checkpoint holds one "
              "initialisation): an interrupted fit cannot be resumed")
        use_checkpoint = False
    if use_checkpoint:
        # Before the test for a checkpoint left by an interrupted fit: an input is not one.
        for spec in list(data_specs or []) + list(validation_specs or []):
            if _same_file(checkpoint_path, _spec_path(spec)):
                raise ValueError(f"checkpoint {checkpoint_path!r} would overwrite the input "
                                 f"{_spec_path(spec)!r}")
    if use_checkpoint and not args.resume and os.path.exists(checkpoint_path):
        raise ValueError(f"the checkpoint {checkpoint_path!r} of an interrupted fit exists: "
                         "add --resume to continue that fit, or remove the file to start "
                         "afresh")
    if use_checkpoint:
        check_writable(checkpoint_path, "the checkpoint")

    chunk_rows = _chunk_rows(model)
    source = open_sources(data_specs, chunk_rows)
    validation = None
    try:
        if validation_specs:
            validation = open_sources(validation_specs, chunk_rows)
            if validation.n_features != source.n_features:
                raise ValueError(f"--validation {validation.label} has "
                                 f"{validation.n_features} features, the data "
                                 f"{source.label} {source.n_features}")
        _check_outputs(args, checkpoint_path if use_checkpoint else None,
                       [source, validation])
        if args.resume:
            _check_resumed_data(meta, source, checkpoint_path)
        else:
            meta = _checkpoint_meta(model, source, validation, args)
        if (model.algorithm != "batch" and model.batch_size is not None
                and source.chunk_rows != model.batch_size):
            _note(f"note: minibatches of up to {source.chunk_rows} rows, not --batch-size "
                  f"{model.batch_size}: reads are aligned to the HDF5 chunking of "
                  f"{source.label} (write it with smaller chunks for smaller minibatches)")
        status = _run_fit(args, model, source, validation, meta, state,
                          checkpoint_path if use_checkpoint else None, started)
        if status == 0 and args.resume and os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)      # consumed by a fit resumed with --no-checkpoint
        return status
    finally:
        source.close()
        if validation is not None:
            validation.close()


def _run_fit(args, model, source, validation, meta, state, checkpoint_path, started):
    from ..engine.loop import FitInterrupted
    checkpointer = None
    if checkpoint_path is not None:
        every = args.checkpoint_every if args.checkpoint_every > 0 else None
        # keep=True: the estimator's fit leaves the file, which is removed here only
        # once the model is saved (a crash in between can still resume).
        checkpointer = NamedCheckpointer(checkpoint_path, every_chunks=args.checkpoint_chunks,
                                         every_seconds=every, meta=meta, keep=True)
    n_done, position, n_chunks, done_rows = (_position(state, source) if state is not None
                                             else (0, 0, source.n_chunks, 0))
    if state is not None:
        _note(f"resuming from {checkpoint_path} after {_where(n_done, position, n_chunks)}")
    log = JsonLog(args.log, append=args.resume, start=started)
    progress = FitProgress(args.progress or sys.stderr.isatty(), source.n_rows,
                           model.max_iter, done_rows=done_rows, n_pass=n_done)
    recorder = FitRecorder(log, progress)
    log.write({"event": "resume" if state is not None else "start",
               "argv": list(args.argv), "data": meta["data"], "n_rows": source.n_rows,
               "n_features": source.n_features, "n_chunks": source.n_chunks,
               "chunk_rows": source.chunk_rows, "algorithm": model.algorithm,
               "class": type(model).__name__,
               "checkpoint": checkpoint_path, "pass": n_done, "position": position})
    try:
        with _sigterm_as_ctrl_c() as terminated, _naming_checkpoint(checkpoint_path), \
                _about(source.label):
            try:
                elapsed = _fit_model(model, source, progress=progress, X_val=validation,
                                     callback=recorder, checkpoint=checkpointer, resume=state)
            except FitInterrupted as exc:
                return _interrupted(args, exc.state, source, checkpointer, terminated, log)
            except KeyboardInterrupt:
                # A second Ctrl-C, or one before the first chunk: no state to save now.
                return _interrupted(args, None, source, checkpointer, terminated, log)
        print("\n".join(fit_summary(model, source.label, source.shape, elapsed,
                                    rows=recorder.rows, chunk_rows=source.chunk_rows)))
        if state is not None:
            print(f"resumed      from {checkpoint_path} (after "
                  f"{_where(n_done, position, n_chunks)})")
        try:
            save_model(args.output, model)
        except OutputError as exc:
            if checkpoint_path is None or not os.path.exists(checkpoint_path):
                raise
            raise OutputError(f"{exc}; the checkpoint {checkpoint_path!r} holds the finished "
                              f"fit: make room and save it with: {_resume_command(args)}"
                              ) from None
        print(f"saved        {args.output}")
        if checkpoint_path is not None and os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)
        log.write({"event": "end", "passes": model.n_iter_, "converged": model.converged_,
                   "bound": model.lower_bound_, "seconds": elapsed, "rows": recorder.rows,
                   "output": args.output})
        return 0
    finally:
        progress.close()
        log.close()


def _interrupted(args, state, source, checkpointer, terminated, log):
    """Report a stopped fit on stderr; the exit status."""
    what = "stopped by SIGTERM" if terminated else "interrupted"
    status = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if state is not None:
        where = " after " + _where(*_position(state, source)[:3])
    else:
        where = ""
    record = {"event": "interrupted", "signal": "SIGTERM" if terminated else "SIGINT"}
    if state is not None and checkpointer is not None:
        message = (f"{what}{where}; checkpoint written to {checkpointer.path}; "
                   f"continue with: {_resume_command(args)}")
        record.update({"pass": state.n_pass, "position": state.position,
                       "checkpoint": checkpointer.path})
    elif checkpointer is not None and os.path.exists(checkpointer.path):
        message = (f"{what}{where}; the last checkpoint is {checkpointer.path}; continue "
                   f"with: {_resume_command(args)}")
        record["checkpoint"] = checkpointer.path
    else:
        message = f"{what}{where}; no checkpoint was written, the fit is lost"
    log.write(record)
    _note(message)
    return status


# ----------------------------------------------------------------------------- commands

def cmd_make_data(args):
    from ..data.generate import write_mixture_h5
    check_writable(args.out, "the data file")
    start = time.perf_counter()
    write_mixture_h5(args.out, args.n_samples, args.n_features, args.n_components,
                     separation=args.separation, covariance_type=args.cov, dtype=args.dtype,
                     random_state=args.seed, sample_seed=args.sample_seed,
                     chunk_rows=args.chunk_rows, progress=sys.stderr.isatty())
    rows = "" if args.sample_seed is None else f", rows from --sample-seed {args.sample_seed}"
    print(f"wrote {args.out}: /X ({args.n_samples} x {args.n_features}, {args.dtype}), "
          f"/labels, /truth ({args.n_components} components, seed {args.seed}{rows}) "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def _as_chunk_source(X, chunk_rows):
    from ..data.sources import as_source
    return as_source(X, chunk_rows=chunk_rows)


def predict_to_h5(model, X, output, proba=False, chunk_rows=PREDICT_CHUNK_ROWS, attrs=None,
                  top=None):
    """Write ``/labels`` (int32) and optionally ``/resp`` (float32) of ``X`` to ``output``;
    with ``top`` = L, ``/top_index`` (int32) and ``/top_resp`` (float32), (n, L): each row's
    L most probable components and their responsibilities renormalised over them (the
    layout for large K, where ``/resp`` would be N x K).

    ``X`` is a chunk source (``fastvi.io.open_source``), an h5py dataset or an array; its
    chunks are read ahead in a thread while the previous one is predicted, into
    pre-created datasets.  The file appears (atomically) only when every chunk is done.
    """
    source = _as_chunk_source(X, chunk_rows)
    n_rows, n_components = source.n_rows, model.means_.shape[0]
    chunk = min(source.chunk_rows, n_rows)
    with atomic_h5(output, "the predict output") as out:
        out.attrs.update(attrs or {})
        labels = out.create_dataset("labels", (n_rows,), dtype=np.int32, chunks=(chunk,))
        resp = (out.create_dataset("resp", (n_rows, n_components), dtype=np.float32,
                                   chunks=(chunk, n_components)) if proba else None)
        if top is not None:
            top = min(int(top), n_components)
            top_index = out.create_dataset("top_index", (n_rows, top), dtype=np.int32,
                                           chunks=(chunk, top))
            top_resp = out.create_dataset("top_resp", (n_rows, top), dtype=np.float32,
                                          chunks=(chunk, top))
        for _, start, rows in _progress(source.chunks(), total=source.n_chunks,
                                        unit="chunk", desc="predict"):
            stop = start + rows.shape[0]
            labels[start:stop] = model.predict(rows)
            if resp is not None:
                resp[start:stop] = model.predict_proba(rows)
            if top is not None:
                top_index[start:stop], top_resp[start:stop] = model.top_responsibilities(
                    rows, top)


def cmd_predict(args):
    # The output replaces its path only at the end, after the inputs were read: naming an
    # input as the output would silently destroy it.
    for other in (args.model, _spec_path(args.data)):
        if _same_file(args.output, other):
            raise ValueError(f"output {args.output!r} would overwrite the input {other!r}")
    check_writable(args.output, "the predict output")      # before the work, not after
    model = load_model(args.model)
    source = open_source(args.data, chunk_rows=args.chunk_size)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        n_rows = X.n_rows
        predict_to_h5(model, X, args.output, proba=args.proba, chunk_rows=args.chunk_size,
                      attrs={"model": os.path.abspath(args.model), "data": source.label,
                             "fastvi_version": __version__}, top=args.top)
    what = "/labels" + (", /resp" if args.proba else "") + (
        ", /top_index and /top_resp" if args.top else "")
    print(f"wrote {what} of {n_rows} rows to {args.output}")
    return 0


def score_chunks(model, X, chunk_rows=PREDICT_CHUNK_ROWS):
    """Total and mean of ``model.score_samples`` over ``X`` (a chunk source, an h5py
    dataset or an array), read ``chunk_rows`` at a time (HDF5: aligned, read ahead).

    Returns
    -------
    mean, total : float
    """
    source = _as_chunk_source(X, chunk_rows)
    total = 0.0
    for _, _, rows in source.chunks():
        total += float(model.score_samples(rows).sum())
    return total / source.n_rows, total


def cmd_score(args):
    model = load_model(args.model)
    source = open_source(args.data, chunk_rows=args.chunk_size)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        mean, total = score_chunks(model, X, args.chunk_size)
        n_rows = X.n_rows
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
    from .amortized import info_lines as amortized_info, is_amortized_file
    path = args.path
    if not os.path.exists(path):
        raise FileNotFoundError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY" or path.lower().endswith(".npy"):
        # Not open_data: info describes any .npy file, even one fastvi would not fit.
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"cannot read {path!r} as a .npy file: {exc}") from None
        lines = [f"{path}: NumPy file", f"  shape {X.shape}, {X.dtype}"]
    elif is_model_file(path):
        lines = _info_model(path)
    elif is_amortized_file(path):
        lines = amortized_info(path)
    else:
        lines = _info_h5(path)
    print("\n".join(lines))
    return 0


def cmd_demo(args):
    from sklearn.metrics import adjusted_rand_score

    from ..data.generate import write_mixture_h5
    from ..mixture import BayesianGaussianMixture
    keep = args.out is not None
    out_dir = args.out if keep else tempfile.mkdtemp(prefix="fastvi-demo-")
    os.makedirs(out_dir, exist_ok=True)
    data_path = os.path.join(out_dir, "mixture.h5")
    model_path = os.path.join(out_dir, "model.h5")
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
    save_model(model_path, model)
    print(f"model        saved to {model_path}")
    if not keep:
        # The data are the bulky part of a throw-away directory; the model is small.
        os.remove(data_path)
        print("             (the data were deleted; pass --out DIR to keep them)")
    print(f"total        {time.perf_counter() - start:.1f} s")
    return 0


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

The fit state is checkpointed to MODEL.h5.ckpt while it runs.  Ctrl-C or SIGTERM stops it
at the next chunk, writes the checkpoint and exits with status 130 (143); the same
command with --resume goes on and ends with the same model, bit for bit.  The model is
written atomically at the end and the checkpoint removed.  --resume takes the settings
and data from the checkpoint: DATA and the model options may be left out (given, they
must agree with it); --threads, --verbose, --log and --progress may change."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, as every other error of the command."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastvi: error: {message} (see: {self.prog} --help)\n")


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
    g.add_argument("--init", choices=("kmeans", "k-means++", "random", "random_from_data"))
    g.add_argument("--n-init", type=_positive_int,
                   help="initialisations, best kept (1; more disables checkpoints)")
    g.add_argument("--seed", type=_non_negative_int, help="random seed (0)")
    g.add_argument("--reg-covar", type=_finite_non_negative_float,
                   help="added to the covariances (gmm) or the prior's (bgmm) (1e-6)")
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
                        "rounded up to the HDF5 chunking")
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
    p.set_defaults(func=cmd_fit, check=functools.partial(_check_fit_args, p))

    p = sub.add_parser("predict", help="write the labels (and responsibilities) of DATA")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    p.add_argument("--proba", action="store_true", help="also write /resp (float32)")
    p.add_argument("--top", type=_positive_int, metavar="L",
                   help="also write /top_index and /top_resp: each row's L most probable "
                        "components (for large K)")
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


def _is_h5py_error(exc):
    """Whether ``exc`` was raised inside h5py (its RuntimeErrors are failed reads and
    writes of a file, not bugs of fastvi)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}h5py{os.sep}" in tb.tb_frame.f_code.co_filename


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
        0 on success, 1 on an internal error, 2 on bad usage or bad input, 130 when
        interrupted (Ctrl-C), 143 when stopped by SIGTERM.
    """
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
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("fastvi: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
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
