"""What the ``fastvi`` commands share: argument types, exit statuses, the naming of
errors, progress bars, the JSON log, warnings.

Used by every command module of ``fastvi.cli`` and by its parser (``main``).  Like them
it imports no heavy layer at its top: the estimators, the engine, Numba and scikit-learn
are loaded by the commands that use them.

The argument types refuse a bad number while the command line is parsed, so the error
names the option (``argument --seed: must be >= 0, got -1``) and no work has started.

Progress bars are drawn on stderr, only when it is a terminal unless a command's
``--progress`` forces them.  ``fit`` draws one bar per pass over the rows, which ends at
100% when the pass ends; the description counts the passes (``fit pass 3/100``), the
postfix holds the bound (and the held-out value) after the last pass.

``cluster_backend`` is the Dask side of ``fit``, ``predict`` and ``score``: with
``--scheduler ADDRESS`` or ``--workers N`` it connects to (or starts) a cluster for the
duration of the command and yields the ``DaskBackend`` the estimator runs on.  dask is
imported only then (docs/cluster.md).
"""
import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import ExitStack, contextmanager

import numpy as np

from ..data.atomic import OutputError, output_error
from ..data.files import split_spec

EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


# the signals every command stops on (fastvi.data.interrupts): Ctrl-C, a batch scheduler's
# SIGTERM, and SIGHUP when the terminal of an interactive job closes
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_status():
    """The exit status of a command that a signal stopped: 128 + the signal's number (130
    for SIGINT, also when none is known; 143 for SIGTERM, 129 for SIGHUP), as a shell
    reports a process that the signal killed.  The command has decided to end: later
    signals are only noted (``interrupts.settle``)."""
    from ..data.interrupts import settle, stop_signal
    settle()
    return 128 + int(stop_signal() or signal.SIGINT)


def stop_words():
    """How messages say that a signal stopped the command."""
    from ..data.interrupts import stop_signal
    signum = stop_signal()
    if signum is None or signum == signal.SIGINT:
        return "interrupted"
    return f"stopped by {signal.Signals(signum).name}"


# ----------------------------------------------------------------------------- arguments

def _number(text, kind, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def integer(text):
    """An integer option (any sign)."""
    return _number(text, int, "an integer")


def positive_int(text):
    """An integer option >= 1."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text):
    """An integer option >= 0."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def finite_float(text):
    """A real option: finite (``inf``, ``nan`` and overflowing ``1e999`` are refused,
    since they end in NaN parameters or a FloatingPointError deep in a fit)."""
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def finite_non_negative_float(text):
    """A finite real option >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def finite_positive_float(text):
    """A finite real option > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# ----------------------------------------------------------------------------- errors

def is_h5py_error(exc):
    """Whether ``exc`` was raised inside h5py (its RuntimeErrors are failed reads and
    writes of a file, not bugs of fastvi)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}h5py{os.sep}" in tb.tb_frame.f_code.co_filename


@contextmanager
def about(label):
    """Prefix errors raised while working on the data with its name (a NaN row, a read
    error in a corrupt chunk, too few rows), unless the message names it already."""
    from ..engine.loop import ResumeMismatch   # here: _loop loads the kernels, which info needs not
    try:
        yield
    except (OutputError, ResumeMismatch, ClusterError):
        raise                   # an output's error names the output; a checkpoint's, see
                                # fit._naming_checkpoint; a cluster's, the option
    except (ValueError, OSError) as exc:
        message = str(exc)
        if label in message:
            raise
        kind = OSError if isinstance(exc, OSError) else ValueError
        raise kind(f"{label}: {message}") from exc


def spec_path(spec):
    """The file of a data spec (``file.h5:/X`` -> ``file.h5``)."""
    return split_spec(spec)[0]


# ----------------------------------------------------------------------------- jobs

def progress_bar(iterable=None, enabled=None, **kwargs):
    """A tqdm bar on stderr; ``enabled`` None: shown only when stderr is a terminal."""
    from tqdm import tqdm
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, file=sys.stderr, **kwargs)


def convergence_message(model):
    """The CLI's words for an estimator's ConvergenceWarning: its options, not the
    estimator's parameters."""
    passes = getattr(model, "max_iter", None)
    tol = getattr(model, "tol", None)
    n_init = getattr(model, "n_init", 1) or 1
    who = (f"the best of the --n-init {n_init} initializations" if n_init > 1
           else "the fit")
    return (f"{who} did not converge in --passes {passes} passes (the bound per row still "
            f"changed by more than --tol {tol}); raise --passes or --tol, or check the data")


def fit_model(model, X, progress=None, **fit_kwargs):
    """Fit; report each warning as one ``fastvi: warning:`` line on stderr, after the
    progress bar (if any) is closed.  A ConvergenceWarning (fastvi's or scikit-learn's)
    is reworded in the command's own options (``--passes``, ``--tol``, ``--n-init``).

    Returns
    -------
    float
        The seconds the fit took.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            model.fit(X, **fit_kwargs)
        finally:
            elapsed = time.perf_counter() - start
            if progress is not None:
                progress.close()
            printed = set()
            for warning in caught:
                if issubclass(warning.category, DeprecationWarning):
                    continue
                if any(cls.__name__ == "ConvergenceWarning"
                       for cls in warning.category.__mro__):
                    text = convergence_message(model)
                else:
                    text = str(warning.message)
                if text not in printed:
                    printed.add(text)
                    print(f"fastvi: warning: {text}", file=sys.stderr)
    return elapsed


def _jsonable(value):
    """``value`` with NumPy scalars as Python ones and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _open_log(path, append):
    """The log's file object.  A regular file is created, truncated or appended to; a
    named pipe or a device (``--log /dev/stderr``) is opened without waiting, so a pipe
    that no process reads is an error ("No such device or address"), not a hang."""
    import fcntl
    if os.path.isfile(path) or not os.path.exists(path):
        return open(path, "a" if append else "w", encoding="utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)   # then write as usual
    return os.fdopen(fd, "a", encoding="utf-8")


class JsonLog:
    """``--log FILE.jsonl``: one JSON object per line, flushed as each line is written.

    Every line holds the event's own fields plus ``time`` (Unix time) and ``wall``
    (seconds since the command started); a value that is not finite is written as null.
    A resumed fit appends to the log of the fit it continues.  ``pass`` counts the passes
    completed when the event happened (a chunk of the first pass has ``pass`` 0).
    """

    def __init__(self, path, append=False, start=None):
        self.path = path
        self._start = time.perf_counter() if start is None else start
        self._file = None
        self._failed = False
        if path is not None:
            try:
                self._file = _open_log(path, append)
            except OSError as exc:
                raise output_error("the log", path, exc) from None

    def write(self, record):
        """Append one event; a failed write (a full disk) raises ``OutputError``."""
        if self._file is None or self._failed:
            return
        line = {**record, "time": time.time(), "wall": time.perf_counter() - self._start}
        try:
            self._file.write(json.dumps(_jsonable(line), allow_nan=False, default=str) + "\n")
            self._file.flush()
        except OSError as exc:
            self._failed = True         # the job stops on this error: write nothing more
            raise output_error("the log", self.path, exc) from None

    def close(self):
        """Close the file; after a failed write its unwritten buffer is dropped quietly
        (the failure was reported once already)."""
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            handle.close()
        except OSError as exc:
            if not self._failed:
                raise output_error("the log", self.path, exc) from None


class FitProgress:
    """A tqdm bar per pass over the rows (so it ends at 100%): rows/s, ``pass i/max`` in
    the description, the bound after each pass in the postfix.

    ``done_rows`` counts the rows of the ``n_pass`` completed passes and of the pass in
    progress (a resumed fit starts its bar there).
    """

    def __init__(self, enabled, n_rows, max_passes, done_rows=0, n_pass=0, desc="fit"):
        from tqdm import tqdm
        self.max_passes = max(int(max_passes), 1)
        self.n_rows = int(n_rows)
        self.n_pass = int(n_pass)
        self.desc = desc
        self.bar = tqdm(total=self.n_rows, initial=max(done_rows - n_pass * n_rows, 0),
                        unit="rows", unit_scale=True, disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1, desc=self._desc())

    def _desc(self):
        return f"{self.desc} pass {min(self.n_pass + 1, self.max_passes)}/{self.max_passes}"

    def __call__(self, record):
        if record["event"] == "chunk":
            if record["pass"] != self.n_pass:       # the first chunk of a new pass
                self.n_pass = record["pass"]
                # the new description first: reset() redraws the bar (at 0%), which with
                # the old one read "pass 1/5: 0%" after the first pass had ended
                self.bar.set_description(self._desc(), refresh=False)
                self.bar.reset(total=self.n_rows)
            self.bar.update(record["rows"])
        elif record["event"] == "pass":
            postfix = {"bound": f"{record['bound']:.6g}"}
            if "validation" in record:
                postfix["held-out"] = f"{record['validation']:.6g}"
            self.bar.set_postfix(postfix)

    def close(self):
        self.bar.close()


class FitRecorder:
    """The fit's callback: counts the rows streamed, writes the log, moves the bar."""

    def __init__(self, log=None, progress=None):
        self.log = log
        self.progress = progress
        self.rows = 0
        self.last = None

    def __call__(self, record):
        if record["event"] == "chunk":
            self.rows += record["rows"]
        self.last = record
        if self.log is not None:
            self.log.write(record)
        if self.progress is not None:
            self.progress(record)


# ----------------------------------------------------------------------------- clusters

SCHEDULER_TIMEOUT_SECONDS = 10.0
WORKER_WAIT_SECONDS = 600.0       # DaskBackend's default timeout for one task's result


class ClusterError(OSError):
    """The Dask cluster of ``--scheduler`` / ``--workers`` failed (not the data): dask not
    installed, no scheduler at the address, workers that died.  The message names the
    option; ``about`` does not prefix it with the data's name."""


def cluster_option(args):
    """The Dask option the command line gives (``--scheduler ADDRESS``, ``--workers N``),
    as the user wrote it, or None."""
    if getattr(args, "scheduler", None) is not None:
        return f"--scheduler {args.scheduler}"
    if getattr(args, "workers", None) is not None:
        return f"--workers {args.workers}"
    return None


def _import_distributed(option):
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"{option} needs dask.distributed, which is not installed: "
                           "pip install 'fastvi[dask]'") from None
    return distributed


@contextmanager
def _sigint_ignored():
    """SIGINT ignored while the worker processes are started: they inherit that, so a
    Ctrl-C in the terminal (sent to the whole process group) reaches only this process,
    whose fit stops at the next chunk and writes its checkpoint, while the workers finish
    the chunks in flight."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _probe_scheduler(address, timeout):
    """Ask ``address`` who it is, within ``timeout`` seconds in all (``Client(address,
    timeout=T)`` bounds only the TCP connect: a port that accepts and never answers, a web
    server say, holds it for ever).  Returns what answered (a scheduler's identity is a
    dict with ``type`` "Scheduler")."""
    import asyncio
    import concurrent.futures

    async def probe():
        from distributed.comm import connect
        from distributed.security import Security
        # tls:// takes its certificates from the dask config, as the Client does
        extra = Security().get_connection_args("client")
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **extra), timeout)
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
            return await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    # in a thread of its own: main() may be called where an event loop runs already
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe()).result()


def _connect(distributed, address, timeout):
    """A ``distributed.Client`` of the scheduler at ``address``, or one error line."""
    import asyncio
    import concurrent.futures
    nothing = (f"--scheduler {address}: nothing answered in {timeout:g} s (is a Dask "
               "scheduler, `dask scheduler`, running at that address and reachable from "
               "here? its port is 8786 by default, not the dashboard's; "
               "--scheduler-timeout SECONDS waits longer)")
    timeouts = (asyncio.TimeoutError, concurrent.futures.TimeoutError, OSError)
    try:
        identity = _probe_scheduler(address, timeout)
    except (ValueError, TypeError) as exc:           # a malformed address
        raise ClusterError(f"--scheduler {address}: {exc}") from None
    except timeouts:
        raise ClusterError(nothing) from None
    except Exception as exc:                         # something answered, in another protocol
        raise ClusterError(f"--scheduler {address}: what answered there is not a Dask "
                           f"scheduler ({type(exc).__name__})") from None
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != "Scheduler":
        raise ClusterError(f"--scheduler {address}: what answered there is not a Dask "
                           "scheduler" + (f" but a Dask {kind}" if isinstance(kind, str)
                                          else ""))
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except timeouts:
        raise ClusterError(nothing) from None
    if not identity.get("n_workers", identity.get("workers")):
        # The backend's scatters need a running worker (they fail after the client's
        # timeout otherwise): wait for one, for as long as the backend waits for a task.
        wait = WORKER_WAIT_SECONDS
        print(f"fastvi: note: the scheduler at {address} has no workers yet; waiting up to "
              f"{wait:g} s for one to join", file=sys.stderr)
        try:
            client.wait_for_workers(1, timeout=wait)
        except timeouts:
            client.close()
            raise ClusterError(f"--scheduler {address}: no worker joined the scheduler in "
                               f"{wait:g} s (start some with `dask worker {address}`)"
                               ) from None
        except BaseException:
            client.close()
            raise
    return client


@contextmanager
def _quiet_distributed(distributed):
    """distributed's log handlers in this process at CRITICAL for the block."""
    import logging
    silence = getattr(distributed.utils, "silence_logging_cmgr", None)
    if silence is None:                     # pragma: no cover - another distributed
        yield
        return
    with silence(logging.CRITICAL):
        yield


def _close_quietly(closable):
    try:
        closable.close()
    except Exception:       # the command's result stands; a cluster slow to stop is no error
        pass


@contextmanager
def cluster_backend(args):
    """The backend of a command's ``--backend``, ``--scheduler`` and ``--workers`` options.

    Yields None when none of them asks for anything but this machine's cores (the
    estimator keeps its local backend; dask is not imported), the CUDA backend for
    ``--backend cuda`` (or ``auto``, on a machine with a usable GPU; ``auto`` elsewhere
    is the local backend).  Otherwise yields a ``DaskBackend`` on a client of the scheduler at
    ``--scheduler`` (answering within ``--scheduler-timeout`` seconds) or of a
    ``LocalCluster`` of ``--workers`` worker processes, started here and closed when the
    block ends, however it ends (an error, Ctrl-C).  The cluster's own failures (a task
    that killed every worker it ran on, work cancelled because the scheduler went away,
    no result in the backend's timeout, workers without fastvi) are raised as
    ``ClusterError`` with one line that names the option.  The backend's errors about the
    data (a file the workers cannot open, a NaN row) pass through as they are.
    """
    option = cluster_option(args)
    device = getattr(args, "backend", "local")
    if option is None:
        if device == "local":
            yield None
        else:
            from ..engine.backend import get_backend
            yield get_backend(device)     # one sentence when it cannot run (no GPU, ...)
        return
    if device != "local":
        raise ValueError(f"--backend {device} and {option} cannot be combined: the Dask "
                         "workers run the local kernels")
    distributed = _import_distributed(option)
    from ..engine.cluster import DaskBackend
    from ..engine.dask_local import local_cluster_kwargs
    debug = getattr(args, "debug", False) or bool(os.environ.get("FASTVI_DEBUG"))
    with ExitStack() as stack:
        if not debug:
            # distributed's own log lines (a lost scheduler's reconnection attempts, with
            # tracebacks) would bury the command's one error line; --debug keeps them
            stack.enter_context(_quiet_distributed(distributed))
        if args.scheduler is not None:
            client = _connect(distributed, args.scheduler,
                              getattr(args, "scheduler_timeout", SCHEDULER_TIMEOUT_SECONDS))
        else:
            with _sigint_ignored():
                cluster = distributed.LocalCluster(**local_cluster_kwargs(args.workers,
                                                                          debug=debug))
            stack.callback(_close_quietly, cluster)
            client = distributed.Client(cluster, set_as_default=False)
        stack.callback(_close_quietly, client)
        try:
            yield DaskBackend(client)
        except Exception as exc:
            failure = _cluster_failure(exc, distributed)
            if failure is None:
                raise
            raise ClusterError(f"{option}: {failure}") from None


# DaskBackend's own failures: a RuntimeError (which would read as a bug) and a TimeoutError
_BACKEND_FAILURES = ("a Dask worker cannot run fastvi's tasks",
                     "no result from the Dask cluster")


def _cluster_failure(exc, distributed):
    """What went wrong with the cluster itself, if ``exc`` (or an error it was raised
    from, as ``about`` re-raises the data's errors) says so; None for any other error."""
    import asyncio
    while exc is not None:
        text = str(exc)
        if isinstance(exc, distributed.KilledWorker):
            return f"a task killed every Dask worker that ran it (out of memory?): {text}"
        if isinstance(exc, distributed.client.FutureCancelledError):
            return f"the Dask cluster cancelled the work (did the scheduler stop?): {text}"
        if "No valid workers found" in text:
            return "the Dask scheduler has no running worker (No valid workers found)"
        if isinstance(exc, (RuntimeError, OSError)) and any(
                phrase in text for phrase in _BACKEND_FAILURES):
            return text
        if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, OSError):
            # distributed's own timeouts before Python 3.11 (not an OSError there)
            return f"no result from the Dask cluster ({text})"
        exc = exc.__cause__
    return None
