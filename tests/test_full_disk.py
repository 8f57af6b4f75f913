"""A full disk ends every output in one line, never in a segfault or a traceback.

Every output of the command (a model, a predict output, a checkpoint, the log,
``make-data``'s file) must end on a failed write with ``fastvi: error: cannot write <what>
'<path>': <reason>``, exit status 2, no temporary file left and the previous output (if
any) untouched.  Two simulations, each command run in a subprocess (the defect was a
segmentation fault, which would kill pytest itself):

* a small tmpfs that the test mounts itself (needs root; skipped otherwise), which fails
  the writes with ENOSPC, "No space left on device";
* a file size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored), which works anywhere and fails
  the writes past it with EFBIG, "File too large".
"""
import os
import resource
import signal
import subprocess
import sys

import pytest

from fastvi.datasets import write_mixture_h5

N_ROWS, N_FEATURES, K = 20000, 4, 3
NO_SPACE = "No space left on device"
TOO_LARGE = "File too large"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Data and a fitted model on the ordinary disk."""
    d = tmp_path_factory.mktemp("inputs")
    write_mixture_h5(d / "data.h5", N_ROWS, N_FEATURES, K, chunk_rows=2000)
    proc = _fastvi(["fit", str(d / "data.h5"), "--k", str(K), "--passes", "2",
                    "-o", str(d / "model.h5")], d)
    assert proc.returncode == 0, proc.stderr
    return d


def _fastvi(argv, cwd, fsize=None):
    """Run ``fastvi argv`` in a subprocess; ``fsize``: a file size limit in bytes."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failed write, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    env.pop("FASTVI_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "fastvi.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=None if fsize is None else limit)


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs mounted on ``tmp_path / 'small'`` for the test (skipped where the
    test may not mount one: not root, or in a container without the capability)."""
    where = tmp_path / "small"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
                    "the RLIMIT_FSIZE tests cover the same paths")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder, keep=b"previous output"):
    """Fill ``folder``'s file system: a previous output (returned) and a filler file."""
    old = folder / "old.h5"
    old.write_bytes(keep)
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:     # unbuffered: close has nothing to flush
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return old


def _assert_clean_failure(proc, what, path, reason):
    """Exit 2, one line naming the output, nothing left behind in its folder."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    expected = f"fastvi: error: cannot write {what} {str(path)!r}: {reason}"
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "Fatal Python error" not in proc.stderr, proc.stderr
    assert ".tmp" not in proc.stderr
    leftovers = [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]
    assert not leftovers


# ----------------------------------------------------------------------------- a full tmpfs

def test_predict_on_a_full_disk(inputs, small_fs):
    old = _fill(small_fs)
    out = small_fs / "old.h5"
    proc = _fastvi(["predict", str(inputs / "model.h5"), str(inputs / "data.h5"),
                    "-o", str(out), "--proba"], inputs)
    _assert_clean_failure(proc, "the predict output", out, NO_SPACE)
    assert old.read_bytes() == b"previous output"


def test_predict_fills_the_disk_half_way(inputs, small_fs):
    # No filler: the first chunks fit, the output (1.7 MB) does not.
    out = small_fs / "labels.h5"
    proc = _fastvi(["predict", str(inputs / "model.h5"), str(inputs / "data.h5"),
                    "-o", str(out), "--proba", "--chunk-size", "2000"], inputs)
    _assert_clean_failure(proc, "the predict output", out, NO_SPACE)
    assert os.listdir(small_fs) == []


def test_make_data_on_a_full_disk(inputs, small_fs):
    out = small_fs / "data.h5"
    proc = _fastvi(["make-data", str(out), "--n-samples", "20000"], inputs)
    _assert_clean_failure(proc, "the data file", out, NO_SPACE)
    assert os.listdir(small_fs) == []


def test_fit_model_on_a_full_disk_keeps_the_checkpoint_to_resume(inputs, small_fs,
                                                                 tmp_path):
    old = _fill(small_fs)
    out, ckpt = small_fs / "old.h5", tmp_path / "fit.ckpt"
    argv = ["fit", str(inputs / "data.h5"), "--k", str(K), "--passes", "2",
            "--checkpoint", str(ckpt), "-o", str(out)]
    proc = _fastvi(argv, inputs)
    _assert_clean_failure(proc, "the model", out, NO_SPACE)
    assert "the checkpoint" in proc.stderr and "--resume" in proc.stderr
    assert old.read_bytes() == b"previous output" and ckpt.exists()
    os.remove(small_fs / "filler")
    proc = _fastvi(argv + ["--resume"], inputs)              # room again: save it
    assert proc.returncode == 0, proc.stderr
    assert not ckpt.exists() and out.stat().st_size > 1000


def test_fit_checkpoint_on_a_full_disk(inputs, small_fs, tmp_path):
    _fill(small_fs)
    ckpt = small_fs / "fit.ckpt"
    proc = _fastvi(["fit", str(inputs / "data.h5"), "--k", str(K), "--passes", "2",
                    "--algorithm", "stochastic", "--checkpoint-chunks", "1",
                    "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.h5")], inputs)
    _assert_clean_failure(proc, "the checkpoint", ckpt, NO_SPACE)
    assert not (tmp_path / "m.h5").exists() and not ckpt.exists()


def test_fit_log_on_a_full_disk(inputs, small_fs, tmp_path):
    _fill(small_fs)
    log = small_fs / "fit.jsonl"
    proc = _fastvi(["fit", str(inputs / "data.h5"), "--k", str(K), "--passes", "2",
                    "--log", str(log), "-o", str(tmp_path / "m.h5")], inputs)
    _assert_clean_failure(proc, "the log", log, NO_SPACE)


def test_support_file_on_a_full_disk(inputs, small_fs, tmp_path):
    # 20000 rows x L=1 int32 supports: 80 KB, more than the 64 KiB file system holds.
    # The file takes its space before the first pass: one error line, nothing left.
    support = small_fs / "s.h5"
    proc = _fastvi(["fit", str(inputs / "data.h5"), "--k", str(K), "--n-active", "1",
                    "--n-candidates", "2", "--passes", "2", "--support-file", str(support),
                    "-o", str(tmp_path / "m.h5")], inputs)
    _assert_clean_failure(proc, "the support file", support, NO_SPACE)
    assert os.listdir(small_fs) == [] and not (tmp_path / "m.h5").exists()


def test_amortized_outputs_on_a_full_disk(inputs, small_fs, tmp_path):
    _fill(small_fs)
    for option, what in (("-o", "the model"), ("--checkpoint", "the checkpoint")):
        path = small_fs / "v.h5"
        argv = ["amortized", "fit", str(inputs / "data.h5"), "--epochs", "1",
                "--encoder-hidden", "256", "--decoder-hidden", "256"]
        argv += (["-o", str(path), "--checkpoint", str(tmp_path / "v.ckpt")]
                 if option == "-o" else ["-o", str(tmp_path / "v.h5"), "--checkpoint", str(path)])
        proc = _fastvi(argv, inputs)
        _assert_clean_failure(proc, what, path, NO_SPACE)


def test_outputs_on_a_read_only_file_system_are_refused_before_the_work(inputs, tmp_path):
    where = tmp_path / "ro"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip()})")
    try:
        data, model = str(inputs / "data.h5"), str(inputs / "model.h5")
        for what, out, argv in [
                ("the predict output", where / "p.h5", ["predict", model, data, "-o"]),
                ("the data file", where / "d.h5", ["make-data"]),
                ("the model", where / "m.h5", ["fit", data, "--k", "2", "-o"]),
                ("the log", where / "l.jsonl",
                 ["fit", data, "--k", "2", "-o", str(tmp_path / "m.h5"), "--log"]),
                ("the checkpoint", where / "c.ckpt",
                 ["fit", data, "--k", "2", "-o", str(tmp_path / "m.h5"), "--checkpoint"])]:
            proc = _fastvi([*argv, str(out)], inputs)
            _assert_clean_failure(proc, what, out, "Read-only file system")
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# ----------------------------------------------------------------------------- a file size limit

def test_predict_past_a_file_size_limit(inputs, tmp_path):
    out = tmp_path / "labels.h5"
    out.write_bytes(b"previous output")
    proc = _fastvi(["predict", str(inputs / "model.h5"), str(inputs / "data.h5"),
                    "-o", str(out), "--proba"], inputs, fsize=256 * 1024)
    _assert_clean_failure(proc, "the predict output", out, TOO_LARGE)
    assert out.read_bytes() == b"previous output"


def test_make_data_past_a_file_size_limit(inputs, tmp_path):
    out = tmp_path / "data.h5"
    proc = _fastvi(["make-data", str(out), "--n-samples", "50000"], inputs,
                   fsize=256 * 1024)
    _assert_clean_failure(proc, "the data file", out, TOO_LARGE)
    assert os.listdir(tmp_path) == []


def test_fit_outputs_past_a_file_size_limit(inputs, tmp_path):
    # A 4 KiB limit: the model (about 10 KiB), the checkpoint and a long log exceed it.
    data = str(inputs / "data.h5")
    out = tmp_path / "m.h5"
    proc = _fastvi(["fit", data, "--k", str(K), "--passes", "2", "--no-checkpoint",
                    "-o", str(out)], inputs, fsize=4096)
    _assert_clean_failure(proc, "the model", out, TOO_LARGE)
    ckpt = tmp_path / "fit.ckpt"
    proc = _fastvi(["fit", data, "--k", str(K), "--passes", "2", "--checkpoint", str(ckpt),
                    "--checkpoint-chunks", "1", "-o", str(out)], inputs, fsize=4096)
    _assert_clean_failure(proc, "the checkpoint", ckpt, TOO_LARGE)
    log = tmp_path / "fit.jsonl"
    proc = _fastvi(["fit", data, "--k", str(K), "--passes", "2", "--chunk-size", "500",
                    "--no-checkpoint", "--log", str(log), "-o", str(tmp_path / "m2.h5")],
                   inputs, fsize=4096)
    _assert_clean_failure(proc, "the log", log, TOO_LARGE)
    assert sorted(os.listdir(tmp_path)) == ["fit.jsonl"]     # the log up to the failure
