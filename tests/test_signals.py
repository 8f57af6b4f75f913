"""SIGINT and SIGTERM, the same way in every command (``fastvi.data.interrupts``): the work
stops at a safe point, the outputs in progress are removed, a second signal during that
cleanup does not cut it short, one line says what was kept, and the exit status is 130
(SIGINT) or 143 (SIGTERM), never a raw signal death (-2, -15).

The policy itself is tested in-process (``signal.raise_signal``); the commands in
subprocesses, slowed down by a ``sitecustomize`` so that a signal surely lands mid-work.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from fastvi.data import interrupts
from fastvi.cli import main
from fastvi.datasets import write_mixture_h5
from fastvi.io.checkpoint import load_checkpoint
from fastvi.io.model import load_model

pytestmark = [pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

N_ROWS, N_FEATURES, K, CHUNK = 6000, 3, 3, 500

# FASTVI_TEST_READ_DELAY: seconds per chunk read (touching FASTVI_TEST_MARKER.read), and
# per block of generated rows;
# FASTVI_TEST_CHECKPOINT_DELAY: seconds a checkpoint write takes (it touches the file
# FASTVI_TEST_MARKER when it starts, so the test knows when to send its signals).
SITECUSTOMIZE = '''
import os
import time

_delay = float(os.environ.get("FASTVI_TEST_READ_DELAY", "0") or 0)
_ckpt = float(os.environ.get("FASTVI_TEST_CHECKPOINT_DELAY", "0") or 0)
if _delay:
    import fastvi.data.generate
    import fastvi.data.sources

    _read = fastvi.data.sources.ChunkSource.read

    def _slow_read(self, *args, **kwargs):
        open(os.environ["FASTVI_TEST_MARKER"] + ".read", "a").close()
        time.sleep(_delay)
        return _read(self, *args, **kwargs)

    fastvi.data.sources.ChunkSource.read = _slow_read
    _blocks = fastvi.data.generate._blocks

    def _slow_blocks(*args, **kwargs):
        for block in _blocks(*args, **kwargs):
            time.sleep(_delay)
            yield block

    fastvi.data.generate._blocks = _slow_blocks
if _ckpt:
    import fastvi.io.checkpoint

    _write = fastvi.io.checkpoint.Checkpointer.write

    def _slow_write(self, state):
        open(os.environ["FASTVI_TEST_MARKER"], "a").close()
        time.sleep(_ckpt)
        return _write(self, state)

    fastvi.io.checkpoint.Checkpointer.write = _slow_write
'''


# ----------------------------------------------------------------------------- the policy

@pytest.fixture
def restored():
    """The test's own handlers back afterwards, whatever it did."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_first_signal_stops_and_a_second_during_cleanup_is_only_noted(restored, capsys):
    cleaned = []
    with interrupts.handling((signal.SIGINT, signal.SIGTERM)) as received:
        with pytest.raises(KeyboardInterrupt):
            try:
                signal.raise_signal(signal.SIGTERM)
                pytest.fail("the first signal did not stop the work")
            finally:
                signal.raise_signal(signal.SIGINT)      # during cleanup: noted
                cleaned.append(True)
        assert interrupts.stop_signal() == signal.SIGTERM
        assert received == [signal.SIGTERM, signal.SIGINT]
    assert cleaned == [True]
    assert "finishing the cleanup" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler    # put back


def test_deferred_stop_is_a_flag_and_a_second_signal_stops_at_once(restored):
    with interrupts.handling((signal.SIGINT, signal.SIGTERM)):
        with interrupts.deferred() as stopped:
            assert not stopped()
            signal.raise_signal(signal.SIGTERM)         # a command's SIGTERM, deferred too
            assert stopped()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
                pytest.fail("the second signal did not stop at once")


def test_held_block_finishes_before_the_stop(restored):
    done = []
    with interrupts.handling((signal.SIGINT,)):
        with pytest.raises(KeyboardInterrupt):
            with interrupts.held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
                done.append("written")
            pytest.fail("the held signal was lost")
    assert done == ["written"]
    # inside a deferred block the held signal is the loop's flag, not an exception
    with interrupts.deferred() as stopped:
        with interrupts.held():
            signal.raise_signal(signal.SIGINT)
        assert stopped()


def test_a_swallowed_first_signal_does_not_make_the_process_unstoppable(restored):
    # A KeyboardInterrupt raised in a callback from C code is printed and lost: the next
    # signal, outside any cleanup, must stop the work again.
    with interrupts.handling((signal.SIGINT,)):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass                                        # swallowed
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_signals_after_the_stop_is_reported_are_only_noted(restored, capsys):
    # The race CI met: the second Ctrl-C landed after the command had caught the first
    # one's KeyboardInterrupt and printed its line (no exception unwinding any more), and
    # was raised into a progress bar's __del__ and the handlers' restore (exit -2).
    with interrupts.handling((signal.SIGINT, signal.SIGTERM), final=signal.SIG_IGN) as got:
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            pass                                        # the command reports the stop
        interrupts.settle()
        signal.raise_signal(signal.SIGINT)              # noted, not raised
        signal.raise_signal(signal.SIGINT)
        assert got == [signal.SIGTERM, signal.SIGINT, signal.SIGINT]
        assert interrupts.stop_signal() == signal.SIGTERM
    assert "finishing the cleanup" not in capsys.readouterr().err     # nothing more said
    # a program's block leaves the signals ignored: it only exits now
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signal.SIGINT)


def test_a_stop_that_lands_in_a_finaliser_is_not_lost(restored, capsys):
    # CI met it: the first signal landed in a WeakValueDictionary's weakref callback,
    # where Python prints a raised KeyboardInterrupt and goes on.  It is sent again and
    # stops the work once the finaliser has returned, with nothing printed.
    class Finalised:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            self.returned = True

    with interrupts.handling((signal.SIGINT,)) as received:
        with pytest.raises(KeyboardInterrupt):
            Finalised()                                 # dropped at once: __del__ runs
            assert received == []                       # not taken there
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.001)
            pytest.fail("the stop was lost")
        assert received == [signal.SIGINT]
    assert "Exception ignored" not in capsys.readouterr().err


def test_handlers_are_put_back_after_a_command(tmp_path, restored):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["make-data", str(tmp_path / "d.h5"), "--n-samples", "10"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


# ----------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals")
    write_mixture_h5(d / "data.h5", N_ROWS, N_FEATURES, K, random_state=3, chunk_rows=CHUNK)
    assert main(["fit", str(d / "data.h5"), "--k", str(K), "--passes", "2",
                 "-o", str(d / "gmm.h5")]) == 0
    (d / "site").mkdir()
    (d / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return d


def _digests(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in os.listdir(folder) if (folder / name).is_file()}


def _start(workdir, cwd, argv, read_delay=0.0, checkpoint_delay=0.0):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(workdir / "site")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(FASTVI_TEST_READ_DELAY=str(read_delay),
               FASTVI_TEST_CHECKPOINT_DELAY=str(checkpoint_delay),
               FASTVI_TEST_MARKER=str(cwd / "writing"))
    env.pop("FASTVI_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "fastvi.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, ready, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended ({proc.returncode}) before the signal:\n{out}{err}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the command did not get going in time")


def _temporaries(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def _assert_stopped(proc, status, words):
    """Exit ``status``; the last stderr line says ``words``; no traceback."""
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [line for line in err.strip().splitlines() if "finishing the cleanup" not in line]
    assert lines[-1].startswith(f"fastvi: {words}"), err
    return lines[-1]


# (command, its argv in the case folder, the file that shows it is mid-work, the first
# signal): every command that writes, and one that only reads
COMMANDS = {
    "predict": (["predict", "{w}/gmm.h5", "{w}/data.h5", "-o", "p.h5", "--proba",
                 "--chunk-size", str(CHUNK)], "temp", signal.SIGTERM),
    "make-data": (["make-data", "d.h5", "--n-samples", "200000", "--chunk-rows", "5000"],
                  "temp", signal.SIGHUP),
    "amortized fit": (["amortized", "fit", "{w}/data.h5", "-o", "v.h5", "--epochs", "50",
                       "--chunk-size", str(CHUNK)], "v.h5.ckpt", signal.SIGTERM),
    "score": (["score", "{w}/gmm.h5", "{w}/data.h5", "--chunk-size", str(CHUNK)],
              "writing.read", signal.SIGINT),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_signal_stops_every_command_cleanly(workdir, tmp_path, command):
    argv, mid_work, first = COMMANDS[command]
    argv = [arg.replace("{w}", str(workdir)) for arg in argv]
    inputs = _digests(workdir)
    proc = _start(workdir, tmp_path, argv, read_delay=0.05)
    if mid_work == "temp":
        _wait_for(proc, lambda: _temporaries(tmp_path))
    else:
        _wait_for(proc, lambda: (tmp_path / mid_work).exists())
    proc.send_signal(first)
    time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)                 # during the cleanup: noted only
    words = ("interrupted" if first == signal.SIGINT
             else f"stopped by {signal.Signals(first).name}")
    message = _assert_stopped(proc, 128 + first, words)
    assert not _temporaries(tmp_path)
    assert _digests(workdir) == inputs                  # the inputs are untouched
    if command == "amortized fit":
        assert "v.h5.ckpt holds the epochs done" in message and "--resume" in message
        state, _ = load_checkpoint(tmp_path / "v.h5.ckpt")
        assert state.epochs >= 1
        assert not (tmp_path / "v.h5").exists()
    else:
        assert set(os.listdir(tmp_path)) <= {"writing.read"}    # no output, whole or half


def test_a_second_sigint_while_the_checkpoint_is_written_lets_it_finish(workdir, tmp_path):
    argv = ["fit", str(workdir / "data.h5"), "--k", str(K), "--model", "bgmm",
            "--algorithm", "stochastic", "--batch-size", str(CHUNK), "--passes", "3",
            "--tol", "0", "--checkpoint-every", "0", "--checkpoint-chunks", "3", "-o", "m.h5"]
    proc = _start(workdir, tmp_path, argv, checkpoint_delay=1.0)
    _wait_for(proc, lambda: (tmp_path / "writing").exists())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)     # before: this one cut the write short (exit -2)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    message = _assert_stopped(proc, 130, "interrupted after ")
    assert "checkpoint written to m.h5.ckpt" in message
    assert not _temporaries(tmp_path)
    state, _ = load_checkpoint(tmp_path / "m.h5.ckpt")
    assert state.step >= 3
    # it resumes to the model of a fit never stopped
    proc = _start(workdir, tmp_path, argv + ["--resume"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert main(argv[:-1] + [str(tmp_path / "ref.h5"), "--no-checkpoint"]) == 0
    resumed, reference = load_model(tmp_path / "m.h5"), load_model(tmp_path / "ref.h5")
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    np.testing.assert_array_equal(resumed.precisions_cholesky_,
                                  reference.precisions_cholesky_)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["format"] == "fastvi-model"


def test_a_reader_that_goes_away_ends_the_command_quietly(workdir):
    # `fastvi info DATA | head`, where head is gone before fastvi writes (`true` reads
    # nothing): exit 141 (as if killed by SIGPIPE), no message
    proc = subprocess.run(f"{sys.executable} -m fastvi.cli info {workdir / 'data.h5'} "
                          "| true; exit ${PIPESTATUS[0]}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
