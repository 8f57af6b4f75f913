"""``fastvi fit``: the mixture fit job, checkpointed and resumable.

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
  terminal (``--progress`` forces it);
* ``--scheduler ADDRESS`` or ``--workers N`` computes the chunk statistics on a Dask
  cluster (``jobs.cluster_backend``); the fit state, checkpoints, the log and the bar stay
  here, on the client, and the model is the same bits.  Where a fit runs is an option of
  the command, not a setting of the fit: the checkpoint's meta records ``backend`` as
  "local" (the model file records no backend at all), so a fit stopped on a cluster may
  be resumed on one machine, or on another cluster, and the other way round.

Here: the command (``cmd_fit``, ``_run_fit``, ``_interrupted``), the model options and the
estimator they build, resuming from a checkpoint, the checkpoints' meta and writer
(``NamedCheckpointer``, also used by ``fastvi amortized fit``), SIGTERM as Ctrl-C, and
``fit_summary`` (also printed by ``fastvi demo``).  The estimators and the engine are
imported by the functions that use them.
"""
import os
import shlex
import sys
import time
from contextlib import contextmanager

import numpy as np

from .. import __version__
from ..data.atomic import OutputError, check_writable, output_error
from ..data.files import open_sources, resolve_spec
from ..io.checkpoint import Checkpointer, validate_state
from ..io.model import save_model
from .jobs import (ClusterError, FitProgress, FitRecorder, JsonLog,
                   stop_status, stop_words)
from .jobs import about as _about
from .jobs import cluster_backend as _cluster_backend
from .jobs import fit_model as _fit_model
from .jobs import is_h5py_error as _is_h5py_error
from .jobs import spec_path as _spec_path
from .paths import check_paths as _check_paths_of

CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_EVERY_SECONDS = 60.0


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


def _note(message):
    print(f"fastvi: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- summaries

def _format_weights(weights, top=8):
    order = np.argsort(weights)[::-1][:top]
    return "  ".join(f"{weights[k]:.4f} (k={k})" for k in order)


def _counted(n, noun):
    """``n noun``, plural when n is not 1: "1 birth", "2 merges"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
        chunks = model._minibatch_chunks() if hasattr(model, "_minibatch_chunks") else 1
        if chunks > 1 and chunk_rows is not None:
            how += f" in {chunks} chunks of {chunk_rows}"
        elif chunk_rows is not None and chunk_rows != model.batch_size:
            how += f" read as {chunk_rows}"
    lines = [
        f"model        {type(model).__name__} (K={model.n_components}, "
        f"covariance_type={model.covariance_type}, {how})",
        f"data         {label}  ({shape[0]} x {shape[1]})",
        f"iterations   {model.n_iter_} passes over the data ({status})",
        f"lower bound  {model.lower_bound_:.6f} per row",
    ]
    if getattr(model, "n_incomplete_rows_", None) is not None:
        lines.append(f"missing      {model.missing_fraction_:.2%} of the entries, in "
                     f"{model.n_incomplete_rows_} rows (marginalised); "
                     f"{model.n_empty_rows_} with none observed, which add nothing")
    history = getattr(model, "validation_history_", None)
    if history:
        lines.append(f"held-out     {history[-1]:.6f} per row (mean log-normaliser of the "
                     "validation rows after the last pass)")
    lines += [
        f"time         {elapsed:.2f} s  ({rate:.3g} rows/s, {rows} rows streamed)",
        f"weights      {used} of {len(weights)} components above 0.001; largest: "
        f"{_format_weights(weights)}",
    ]
    if getattr(model, "moves", None):
        accepted = [move["move"] for move in getattr(model, "history_", ()) if move["accepted"]]
        counts = ", ".join(_counted(accepted.count(kind), kind) for kind in model.moves)
        lines.append(f"moves        accepted {counts}: {len(weights)} of the cap "
                     f"{model.n_components} components live")
    return lines


# ----------------------------------------------------------------------------- fit jobs

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
    "missing": ("missing", "--missing"),
    "chunk_size": ("chunk_size", "--chunk-size"),
    "weight_prior": ("weight_concentration_prior_type", "--weight-prior"),
    "algorithm": ("algorithm", "--algorithm"),
    "batch_size": ("batch_size", "--batch-size"),
    "n_batches": ("n_batches", "--n-batches"),
    "tau": ("learning_offset", "--tau"),
    "kappa": ("learning_decay", "--kappa"),
    "shuffle": ("shuffle", "--no-shuffle"),
    "n_active": ("n_active", "--n-active"),
    "n_candidates": ("n_candidates", "--n-candidates"),
    "support_file": ("support_file", "--support-file"),
    "moves": ("moves", "--moves"),
    "k_init": ("n_components_init", "--k-init"),
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
        for option, dest in (("--weight-prior", "weight_prior"), ("--moves", "moves"),
                             ("--k-init", "k_init")):
            if getattr(args, dest, None) is not None:
                raise ValueError(f"{option} applies only to --model bgmm")
        return GaussianMixture(**kwargs)
    return BayesianGaussianMixture(**kwargs)


def _chunk_rows(model):
    """Rows per chunk of the fit: the minibatch of the online algorithms (or its share
    of a stochastic minibatch of several chunks)."""
    return int(model._chunk_rows())


class NamedCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose failed writes (a full disk) name the checkpoint: the fit
    loop calls it while it reads the data, whose name would be blamed otherwise.  (The fit
    loops hold a signal while it writes: ``fastvi.data.interrupts``.)"""

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


def _check_paths(args, model, data_specs, validation_specs, checkpoint_path):
    """No output of the fit (the model, the checkpoint, the log, the support file) may
    replace an input (the data, the held-out data) or another output.  On ``--resume`` the
    checkpoint is read and rewritten, and the support file goes on: outputs both."""
    inputs = ([("the data", _spec_path(spec)) for spec in data_specs or ()]
              + [("the --validation data", _spec_path(spec))
                 for spec in validation_specs or ()])
    support_file = getattr(model, "support_file", None)
    _check_paths_of(inputs, [("the model", args.output), ("the checkpoint", checkpoint_path),
                             ("the log", args.log), ("the support file", support_file)])
    if support_file is not None and not args.resume:
        from ..engine.truncation import check_support_file
        check_support_file(support_file)        # a fresh fit makes it anew


def _specs(source):
    return list(source.spec) if isinstance(source.spec, list) else [source.spec]


def _fit_params(model):
    """The estimator's parameters as the checkpoint's meta records them: ``backend`` is
    "local" whatever the fit ran on (``--scheduler`` and ``--workers`` are runtime options,
    like ``--threads``; the result is the same bits)."""
    from ..io.checkpoint import estimator_params
    params = estimator_params(model)
    if "backend" in params:
        params["backend"] = "local"
    return params


def _checkpoint_meta(model, source, validation, args):
    """What ``fastvi fit --resume`` needs to rebuild the estimator and reopen the data."""
    return {"class": type(model).__name__, "params": _fit_params(model),
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
    # A checkpoint written from Python may name the backend the fit ran on ("dask"): here
    # that is the command's --scheduler / --workers.
    model = classes[meta["class"]](**{**params, "backend": "local"})
    if "backend" in params:
        meta["params"] = {**params, "backend": "local"}    # as the checkpoints it writes
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
    # Before the test for a checkpoint left by an interrupted fit (an input is not one)
    # and before any data are read.
    _check_paths(args, model, data_specs, validation_specs,
                 checkpoint_path if use_checkpoint else None)
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
        if args.resume:
            _check_resumed_data(meta, source, checkpoint_path)
            # before anything reads the state (the position below, the fit): a tampered
            # checkpoint is refused naming the file and the field
            validate_state(state, model, source, checkpoint_path)
        else:
            meta = _checkpoint_meta(model, source, validation, args)
        # (a --batch-size beyond the rows is clamped to them: no note)
        # (a stochastic minibatch of several chunks: each chunk rounded up)
        if (model.algorithm != "batch" and model.batch_size is not None
                and source.max_chunk_rows > model._chunk_rows()):
            rows = model._minibatch_chunks() * source.max_chunk_rows
            _note(f"note: minibatches of up to {rows} rows, not --batch-size "
                  f"{model.batch_size}: reads are aligned to the HDF5 chunking of "
                  f"{source.label} (write it with smaller chunks for smaller minibatches)")
        # The cluster last, once every cheap check passed; the meta above records no backend.
        try:
            with _cluster_backend(args) as backend:
                if backend is not None:
                    model.set_params(backend=backend)
                status = _run_fit(args, model, source, validation, meta, state,
                                  checkpoint_path if use_checkpoint else None, started)
        except ClusterError as exc:
            if not (use_checkpoint and os.path.exists(checkpoint_path)):
                raise
            raise ClusterError(f"{exc}; the checkpoint {checkpoint_path!r} holds the fit up "
                               f"to its last write: continue with: {_resume_command(args)} "
                               "(on this cluster, another one or none)") from None
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
        with _naming_checkpoint(checkpoint_path), _about(source.label):
            try:
                elapsed = _fit_model(model, source, progress=progress, X_val=validation,
                                     callback=recorder, checkpoint=checkpointer, resume=state)
            except FitInterrupted as exc:
                return _interrupted(args, exc.state, source, checkpointer, log)
            except KeyboardInterrupt:
                # A second Ctrl-C, or one before the first chunk: no state to save now.
                return _interrupted(args, None, source, checkpointer, log)
        print("\n".join(fit_summary(model, source.label, source.shape, elapsed,
                                    rows=recorder.rows, chunk_rows=source.max_chunk_rows)))
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


def _signal_name(status):
    import signal
    return signal.Signals(status - 128).name


def _interrupted(args, state, source, checkpointer, log):
    """Report a stopped fit on stderr; the exit status."""
    what, status = stop_words(), stop_status()
    if state is not None:
        where = " after " + _where(*_position(state, source)[:3])
    else:
        where = ""
    record = {"event": "interrupted", "signal": _signal_name(status)}
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
