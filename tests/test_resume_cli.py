"""``fastvi fit`` stopped (kill -9, Ctrl-C, SIGTERM) and resumed with ``--resume`` ends with
the model of a run that was never stopped, bit for bit.

The stopped runs are real subprocesses (``python -m fastvi.cli``).  To stop them half-way
reliably, their HDF5 reads are slowed down by a ``sitecustomize`` module on PYTHONPATH
(``FASTVI_TEST_READ_DELAY`` seconds per chunk): that changes the timing, never the result.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastvi.io.checkpoint import load_checkpoint
from fastvi.cli import main
from fastvi.datasets import write_mixture_h5
from fastvi.io.model import load_model

pytestmark = [pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

N_ROWS, N_FEATURES, K, CHUNK = 20_000, 4, 3, 500
N_CHUNKS = N_ROWS // CHUNK
PASSES = 4
READ_DELAY = 0.02           # seconds per chunk in the runs that get stopped: 160 chunks ~ 3 s

SITECUSTOMIZE = '''
import os
import time

_delay = float(os.environ.get("FASTVI_TEST_READ_DELAY", "0") or 0)
if _delay:
    import fastvi.data.sources

    _read = fastvi.data.sources.HDF5Source._read

    def _slow_read(self, start, stop):
        time.sleep(_delay)
        return _read(self, start, stop)

    fastvi.data.sources.HDF5Source._read = _slow_read
'''


def fit_args(algorithm, output="m.h5", log="fit.jsonl"):
    return ["fit", "data.h5:/X", "--k", str(K), "--model", "bgmm", "--algorithm", algorithm,
            "--batch-size", str(CHUNK), "--chunk-size", str(CHUNK), "--passes", str(PASSES),
            "--tol", "0", "--seed", "1", "--checkpoint-chunks", "1", "--log", log,
            "-o", output]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    write_mixture_h5(d / "data.h5", N_ROWS, N_FEATURES, K, separation=3.0, random_state=5,
                     chunk_rows=CHUNK)
    (d / "site").mkdir()
    (d / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return d


_references = {}


@pytest.fixture
def reference(workdir, monkeypatch):
    """The model of an uninterrupted run with the same arguments (in-process, cached)."""
    def get(algorithm):
        if algorithm not in _references:
            monkeypatch.chdir(workdir)
            out = f"ref-{algorithm}.h5"
            assert main(fit_args(algorithm, output=out, log=f"ref-{algorithm}.jsonl")) == 0
            assert not os.path.exists(out + ".ckpt")
            _references[algorithm] = load_model(workdir / out)
        return _references[algorithm]
    return get


def _env(workdir, delay):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(workdir / "site")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["FASTVI_TEST_READ_DELAY"] = str(delay)
    env.pop("FASTVI_DEBUG", None)
    return env


def _start(workdir, argv, delay):
    return subprocess.Popen([sys.executable, "-m", "fastvi.cli", *argv], cwd=workdir,
                            env=_env(workdir, delay), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(workdir, argv, delay=0.0):
    proc = _start(workdir, argv, delay)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _chunk_events(path):
    """The complete ``chunk`` lines of a log that is being written."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh.read().split("\n")[:-1]]      # the last may be partial
    return [r for r in map(json.loads, lines) if r["event"] == "chunk"]


def _wait_mid_run(proc, workdir, log, checkpoint, min_steps=10, timeout=90):
    """Wait until the run is some chunks in and has written a checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(checkpoint) and len(_chunk_events(log)) >= min_steps:
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before it could be "
                        f"stopped:\n{out}\n{err}")
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    pytest.fail("the run did not reach the middle in time")


def _assert_same_model(path, expected):
    model = load_model(path)
    for key in ("means_", "covariances_", "weights_", "precisions_cholesky_",
                "mean_precision_", "degrees_of_freedom_"):
        assert np.array_equal(getattr(model, key), getattr(expected, key)), key
    assert model.lower_bound_ == expected.lower_bound_
    assert model.n_iter_ == expected.n_iter_ == PASSES


def _clean(workdir, *names):
    for name in names:
        if os.path.exists(workdir / name):
            os.remove(workdir / name)


@pytest.mark.parametrize("algorithm", ["stochastic", "batch", "memoized"])
def test_kill_9_then_resume_is_bit_identical(workdir, reference, algorithm):
    expected = reference(algorithm)
    out, log = f"killed-{algorithm}.h5", f"killed-{algorithm}.jsonl"
    checkpoint = workdir / (out + ".ckpt")
    _clean(workdir, out, log, out + ".ckpt")
    argv = fit_args(algorithm, output=out, log=log)

    proc = _start(workdir, argv, READ_DELAY)
    _wait_mid_run(proc, workdir, workdir / log, checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / out).exists()
    state, meta = load_checkpoint(checkpoint)
    assert 0 < state.step < PASSES * N_CHUNKS              # really stopped half-way
    assert meta["class"] == "BayesianGaussianMixture"
    assert meta["params"]["algorithm"] == algorithm and meta["params"]["n_components"] == K
    [spec] = meta["data"]
    path, dataset = spec.rsplit(":", 1)
    assert dataset == "/X" and os.path.samefile(path, workdir / "data.h5")
    assert (meta["n_rows"], meta["n_features"]) == (N_ROWS, N_FEATURES)

    code, stdout, stderr = _run(workdir, argv + ["--resume"])
    assert code == 0, stderr
    assert "resumed" in stdout and "resuming from" in stderr
    _assert_same_model(workdir / out, expected)
    assert not checkpoint.exists()
    # The resumed run appended to the log: the chunks after the checkpoint, then the end.
    with open(workdir / log, encoding="utf-8") as fh:
        events = [json.loads(line) for line in fh]
    assert [e["event"] for e in events if e["event"] in ("start", "resume")] == ["start",
                                                                                 "resume"]
    assert events[-1]["event"] == "end"
    passes = [e for e in events if e["event"] == "pass"]
    assert passes[-1]["pass"] == PASSES and passes[-1]["bound"] == expected.lower_bound_


@pytest.mark.parametrize("sig, algorithm, status", [(signal.SIGINT, "stochastic", 130),
                                                   (signal.SIGTERM, "memoized", 143)],
                         ids=["SIGINT-stochastic", "SIGTERM-memoized"])
def test_ctrl_c_writes_a_checkpoint_and_exits_130(workdir, reference, sig, algorithm,
                                                  status):
    expected = reference(algorithm)
    out, log = f"int-{algorithm}.h5", f"int-{algorithm}.jsonl"
    checkpoint = workdir / (out + ".ckpt")
    _clean(workdir, out, log, out + ".ckpt")
    before = set(os.listdir(workdir))

    proc = _start(workdir, fit_args(algorithm, output=out, log=log), READ_DELAY)
    _wait_mid_run(proc, workdir, workdir / log, checkpoint)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    what = "interrupted" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert message.startswith(f"fastvi: {what} after "), message
    assert f"checkpoint written to {out}.ckpt" in message
    assert not (workdir / out).exists()                    # no model, whole or half
    assert set(os.listdir(workdir)) - before == {out + ".ckpt", log}   # no temporary files
    state, _ = load_checkpoint(checkpoint)
    assert 0 < state.step < PASSES * N_CHUNKS
    # The message counts passes as the log does: the last chunk event's "pass" is the
    # number of passes completed, its "position" the chunks done in the next one.
    last_chunk = _chunk_events(workdir / log)[-1]
    assert (last_chunk["pass"], last_chunk["position"]) == (state.n_pass, state.position)
    passes = "1 pass" if state.n_pass == 1 else f"{state.n_pass} passes"
    assert f"after {passes} and {state.position} of {N_CHUNKS} chunks;" in message, message
    with open(workdir / log, encoding="utf-8") as fh:
        last = json.loads(fh.read().splitlines()[-1])
    assert last["event"] == "interrupted" and last["checkpoint"] == out + ".ckpt"
    assert last["pass"] == last_chunk["pass"]

    # The command the message suggests goes on to the model of the run never stopped.
    command = shlex.split(message.split("continue with: ", 1)[1])
    assert command[0] == "fastvi" and command[-1] == "--resume"
    code, _, stderr = _run(workdir, command[1:])
    assert code == 0, stderr
    _assert_same_model(workdir / out, expected)
    assert not checkpoint.exists()


# ----------------------------------------------------------------------------- amortized

def _interrupt_amortized_after(monkeypatch, epochs):
    """Make the next amortized fit stop like Ctrl-C after its checkpoint of ``epochs``."""
    from fastvi.io.checkpoint import Checkpointer
    write = Checkpointer.write

    def write_then_stop(self, state):
        write(self, state)
        if state.epochs == epochs:
            raise KeyboardInterrupt
    monkeypatch.setattr(Checkpointer, "write", write_then_stop)


def test_interrupted_amortized_fit_prints_one_message_and_resume_counts_this_run(
        workdir, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "vae.h5")
    argv = ["amortized", "fit", str(workdir / "data.h5"), "--decoder-hidden", "3",
            "--epochs", "3", "-o", out]
    with monkeypatch.context() as patch:
        _interrupt_amortized_after(patch, 1)
        assert main(argv) == 130
    captured = capsys.readouterr()
    assert "interrupted" not in captured.out
    lines = [l for l in captured.err.splitlines() if "interrupted" in l]
    assert len(lines) == 1 and "--resume" in lines[0], captured.err
    assert os.path.exists(out + ".ckpt") and not os.path.exists(out)

    assert main(argv + ["--resume"]) == 0
    summary = [l for l in capsys.readouterr().out.splitlines() if "examples/s" in l][0]
    # two epochs ran in this process: only their examples are counted and timed
    assert f"2 epochs ({2 * N_ROWS} examples)" in summary, summary
    assert not os.path.exists(out + ".ckpt")


@pytest.mark.parametrize("command", ["fit", "amortized"])
def test_the_checkpoint_outlives_a_failed_save(workdir, reference, monkeypatch, capsys,
                                               command):
    """The estimator's fit would remove a checkpoint when it ends; the CLI keeps it until
    the model is written, so a failure in between can still be resumed."""
    import fastvi.cli.fit
    import fastvi.io.amortized
    monkeypatch.chdir(workdir)
    out = f"save-{command}.h5"
    _clean(workdir, out, out + ".ckpt")
    if command == "fit":
        argv, module, name = fit_args("batch", output=out, log="save.jsonl"), fastvi.cli.fit, \
            "save_model"
    else:
        argv = ["amortized", "fit", "data.h5:/X", "--epochs", "2", "-o", out]
        module, name = fastvi.io.amortized, "save_amortized"

    def disk_full(*args, **kwargs):
        raise OSError("disk full")
    with monkeypatch.context() as patch:
        patch.setattr(module, name, disk_full)
        assert main(argv) == 2
    assert "disk full" in capsys.readouterr().err
    assert os.path.exists(out + ".ckpt") and not os.path.exists(out)
    assert main(argv + ["--resume"]) == 0
    assert os.path.exists(out) and not os.path.exists(out + ".ckpt")
    if command == "fit":
        _assert_same_model(out, reference("batch"))
