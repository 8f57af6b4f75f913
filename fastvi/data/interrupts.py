"""Ctrl-C and SIGTERM: stop at a safe point, clean up, and never die half-way.

One policy, for the fit loop of the Python API and for every ``fastvi`` command:

* The first signal stops the work.  Where work can stop at a safe point (the fit loop,
  between two chunks: ``deferred``), it is a flag that the loop reads there; elsewhere it
  raises ``KeyboardInterrupt`` at once, and the unwinding removes the temporaries of the
  outputs in progress (``fastvi.data.atomic``: outputs appear whole or not at all).
* A second signal while a deferred stop waits for its safe point stops at once (a chunk
  that takes minutes need not finish).
* Any later signal during cleanup (``held``: a checkpoint being written; or while the
  stop's exception unwinds through except and finally blocks, which remove temporaries)
  is noted and otherwise ignored: the cleanup finishes, then the process exits with the
  status of the first signal.  A held signal that was the first one stops the work when
  the held block ends.  A later signal outside any cleanup stops at once: the first one's
  KeyboardInterrupt may have been swallowed by a callback from C code, which only prints
  it.

``handling(signals)`` installs the policy's handler for the block (on the main thread
only; elsewhere Python cannot install handlers and the block runs as is).  Nested blocks
share the outer one's record, so a command (SIGINT and SIGTERM) that runs a fit (the
loop's SIGINT) is one policy, and ``received`` tells the command which signal stopped it.

This module imports nothing from fastvi: every layer may use it.
"""
import signal
import sys
import threading
from contextlib import contextmanager


class _Record:
    """The signals of one outermost ``handling`` block, and where the work stands."""

    def __init__(self):
        self.received = []          # signal numbers, in order
        self.defer = 0              # > 0: inside ``deferred`` (the first signal is a flag)
        self.hold = 0               # > 0: inside ``held`` (cleanup: signals are only noted)
        self.held_first = False     # the first signal arrived while held
        self.noted = False          # the "finishing cleanup" note was printed

    def stopping(self):
        return bool(self.received)


_record = None


def _note_cleanup(record):
    if not record.noted:
        record.noted = True
        print("fastvi: stopping: finishing the cleanup first (a checkpoint or a temporary "
              "file); it exits when done", file=sys.stderr)


def _handler(signum, frame):
    record = _record
    if record is None:                          # a stale handler: behave as Python does
        raise KeyboardInterrupt
    record.received.append(signum)
    first = len(record.received) == 1
    if record.hold:
        if first:
            record.held_first = True            # stop when the held block ends
        else:
            _note_cleanup(record)
        return
    if first:
        if record.defer:
            return                              # the loop stops at its next safe point
        raise KeyboardInterrupt
    if sys.exc_info()[1] is not None:
        # The stop is under way: this runs in an except or finally block (or a context
        # manager's exit) that the first signal's exception, or the deferred stop's
        # FitInterrupted, is unwinding through: let the cleanup finish.
        _note_cleanup(record)
        return
    # A second signal while a deferred stop waits for its safe point; or the first
    # signal's KeyboardInterrupt was swallowed (raised inside a callback from C code,
    # which only prints it): stop now.
    raise KeyboardInterrupt


def can_handle():
    """Whether this thread may install signal handlers (Python's main thread only)."""
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handling(signals=(signal.SIGINT,), final=None):
    """Handle ``signals`` by the policy of this module for the block.

    Parameters
    ----------
    signals : tuple of int
        The signals to handle.
    final : handler, optional
        What the signals get when the block ends, instead of the handlers they had
        before (a program's ``signal.SIG_IGN``: it has said how it ended and only exits
        now).  From the block's end until that handler is in, a signal is only noted, so
        none can slip between the two.

    Yields
    ------
    list of int
        The signals received so far in the outermost block (its first tells which
        stopped the work: ``signal.SIGTERM`` or ``signal.SIGINT``).
    """
    global _record
    if not can_handle():
        yield []
        return
    outermost = _record is None
    if outermost:
        _record = _Record()
    record = _record
    previous = {}
    for signum in signals:
        if signal.getsignal(signum) is not _handler:
            previous[signum] = signal.signal(signum, _handler)
    try:
        yield record.received
    finally:
        if final is not None:
            record.hold += 1                    # never undone: the record ends here
            for signum in signals:
                signal.signal(signum, final)
        else:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if outermost:
            _record = None


def settle():
    """The stop has been reported (the command said how it ended): from now on, a signal
    is only noted.  Without this, a second Ctrl-C after the first one's exception was
    handled is taken for a swallowed first stop and raised again, into whatever runs
    then (a progress bar's ``__del__``, the interpreter's shutdown)."""
    record = _record
    if record is not None:
        record.hold += 1                        # never undone: the record ends with the block
        record.noted = True                     # and nothing more is said


@contextmanager
def deferred():
    """The block stops at safe points: yields ``stopped()``, which tells whether a stop
    was asked for (the first SIGINT, or SIGTERM where a command handles it), for the
    block to check between steps.  Installs the SIGINT handler if no block has."""
    with handling((signal.SIGINT,)):
        record = _record
        if record is None:                      # not the main thread: no signals here
            yield lambda: False
            return
        record.defer += 1
        try:
            yield record.stopping
        finally:
            record.defer -= 1


@contextmanager
def held():
    """Cleanup that must finish (a checkpoint being written): a signal during the block
    is noted, not raised; if it was the first, the work stops when the block ends (at
    once, or at the next safe point inside ``deferred``)."""
    record = _record
    if record is None or not can_handle():
        yield
        return
    record.hold += 1
    try:
        yield
    finally:
        record.hold -= 1
    if record.hold:
        return
    stop, record.held_first = record.held_first, False
    if stop and not record.defer:
        raise KeyboardInterrupt


def stop_signal():
    """The first signal of the current ``handling`` block, or None."""
    record = _record
    return record.received[0] if record is not None and record.received else None
