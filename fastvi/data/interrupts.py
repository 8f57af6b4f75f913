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

A signal that would stop the work while a finaliser runs (a ``__del__``, a weakref
callback: Python calls them from C and only prints what they raise) is sent again 10 ms
later, when the finaliser has returned, rather than lost.

This module imports nothing from fastvi: every layer may use it.
"""
import os
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


# Where Python calls Python code from C and only prints what it raises ("Exception
# ignored in ..."): a stop raised there would be lost.
_SWALLOWING_FILES = ("weakref.py", "_weakrefset.py")
REDELIVER_SECONDS = 0.01


def _swallowed_in(frame):
    """Whether an exception raised in ``frame`` would be printed and lost: it runs inside
    a ``__del__`` or a weakref callback (a finaliser run by the garbage collector)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or os.path.basename(code.co_filename) in _SWALLOWING_FILES:
            return True
        frame = frame.f_back
    return False


def _deliver_again(signum):
    """Send ``signum`` to this process again shortly, to be handled where a raise is not
    lost (the finaliser it landed in will have returned)."""
    timer = threading.Timer(REDELIVER_SECONDS, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def _handler(signum, frame):
    record = _record
    if record is None:                          # a stale handler: behave as Python does
        raise KeyboardInterrupt
    first = not record.received
    would_raise = (not record.hold
                   and ((first and not record.defer)
                        or (not first and sys.exc_info()[1] is None)))
    if would_raise and _swallowed_in(frame):
        # (CI met it: a SIGHUP raised in a WeakValueDictionary's callback was printed,
        # and the command went on until the next signal)
        _deliver_again(signum)
        return
    record.received.append(signum)
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
    if not would_raise:
        # The stop is under way: this runs in an except or finally block (or a context
        # manager's exit) that the first signal's exception, or the deferred stop's
        # FitInterrupted, is unwinding through: let the cleanup finish.
        _note_cleanup(record)
        return
    # A second signal while a deferred stop waits for its safe point; or the first
    # signal's KeyboardInterrupt was swallowed (raised inside a callback from C code
    # that is not a finaliser, which only prints it): stop now.
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
