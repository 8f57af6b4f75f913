"""Checkpoints of a running fit: written atomically between chunks, resumed exactly.

A checkpoint holds the whole ``FitState`` of ``fastvi._loop`` (parameters, running or
cached statistics, step counter, the random generator, the position in the pass) and a
``meta`` dict (the estimator's class and constructor parameters, the data it reads).  It
is a pickle, so load only checkpoints you wrote yourself.  A fit resumed from it ends with
the same model, bit for bit, as the fit that was never stopped.

Example
-------
>>> ckpt = Checkpointer("fit.ckpt", every_seconds=60)            # doctest: +SKIP
>>> model.fit(source, checkpoint=ckpt)                           # killed half-way
>>> state, meta = load_checkpoint("fit.ckpt")
>>> model.fit(source, resume=state)                              # goes on
"""
import os
import pickle
import tempfile
import time

FORMAT = "fastvi-checkpoint"
FORMAT_VERSION = 1


def estimator_params(estimator):
    """The constructor arguments of an estimator, by inspecting its ``__init__``."""
    import inspect
    names = [p for p in inspect.signature(type(estimator).__init__).parameters if p != "self"]
    return {name: getattr(estimator, name) for name in names}


class Checkpointer:
    """Writes the fit state every ``every_chunks`` chunks or ``every_seconds`` seconds.

    Parameters
    ----------
    path : str or path-like
    every_chunks : int or None
    every_seconds : float or None
        With both None, only the end of every pass (and an interruption) writes.
    meta : dict, optional
        Stored beside the state (for example what ``fastvi fit --resume`` needs to rebuild
        the estimator and reopen the data).
    keep : bool, default False
        Whether ``finish`` leaves the file in place.  By default a fit that ends (is not
        interrupted) removes its checkpoint, as ``fastvi fit`` does: only an interrupted
        or crashed fit leaves one to resume from.

    Notes
    -----
    Checkpoint files are private (mode 0600): they are pickles of the fit state.
    """

    def __init__(self, path, every_chunks=None, every_seconds=60.0, meta=None, keep=False):
        self.path = os.fspath(path)
        self.keep = keep
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        self.meta = dict(meta or {})
        self._chunks = 0
        self._last = time.monotonic()
        self.writes = 0

    def __call__(self, state, force=False):
        self._chunks += 1
        due = force
        if self.every_chunks is not None and self._chunks >= self.every_chunks:
            due = True
        if self.every_seconds is not None and time.monotonic() - self._last >= self.every_seconds:
            due = True
        if due:
            self.write(state)

    def write(self, state):
        """Write now: to a temporary file in the same folder, then an atomic rename."""
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state": state,
                   "meta": self.meta}
        folder = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(prefix=".ckpt-", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        self._chunks = 0
        self._last = time.monotonic()
        self.writes += 1


    def finish(self):
        """The fit ended: remove the checkpoint file unless ``keep`` (a missing file is
        fine).  Returns whether a file was removed."""
        if self.keep:
            return False
        try:
            os.remove(self.path)
        except FileNotFoundError:
            return False
        return True


def load_checkpoint(path):
    """``(state, meta)`` from a checkpoint file, with clear errors for anything else."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable fastvi checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastvi checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload['format_version']} is newer than "
                         f"this fastvi reads ({FORMAT_VERSION}); upgrade fastvi")
    return payload["state"], payload["meta"]
