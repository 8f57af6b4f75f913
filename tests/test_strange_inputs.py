"""Strange inputs (issue 26): named pipes and devices, HDF5 datasets with no rows or rows
kept elsewhere, and values so large that the arithmetic overflows.

Each is refused with one ValueError that names the file (and dataset, row), before it can
hang a command or end a fit in a FloatingPointError or NaN parameters.  The command-line
cases are in ``tests/bad_inputs.py``; here: that a FIFO never makes a command wait (in
subprocesses with a timeout, so a regression fails instead of hanging the test run), the
same refusals through the Python API, and that large but safe data still fit.
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

import fastvi
import fastvi.io
from fastvi import BayesianGaussianMixture, GaussianMixture
from fastvi.data.files import open_source
from fastvi.data.limits import LARGEST_FLOAT32, LARGEST_FLOAT64
from fastvi.data.sources import ArraySource, HDF5Source
from fastvi.datasets import write_mixture_h5

from conftest import blobs

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")

X, LABELS = blobs(n_per=40)
HUGE = X.copy()
HUGE[3, 1] = 1e300
TOO_LARGE = r"has values too large for fastvi: 1e\+300 at row 3 is the first beyond 1e\+140"


# ----------------------------------------------------------------------------- named pipes

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """data.h5 (60 x 3), gmm.h5 fitted to it, and pipe.h5, a named pipe."""
    d = tmp_path_factory.mktemp("strange")
    write_mixture_h5(d / "data.h5", 60, 3, 2)
    fastvi.io.save(GaussianMixture(2, random_state=0).fit(X), d / "gmm.h5")
    os.mkfifo(d / "pipe.h5")
    return d


def _fastvi(argv, cwd, stdin=subprocess.DEVNULL):
    env = {**os.environ}
    env.pop("FASTVI_DEBUG", None)
    # timeout: a command that waits on the pipe fails the test instead of hanging it
    return subprocess.run([sys.executable, "-m", "fastvi.cli", *argv], cwd=cwd, env=env,
                          stdin=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv, words", [
    (["fit", "pipe.h5", "--k", "2", "-o", "m.h5"], "data 'pipe.h5' is a named pipe (FIFO)"),
    (["predict", "pipe.h5", "data.h5", "-o", "p.h5"], "model 'pipe.h5' is a named pipe (FIFO)"),
    (["info", "pipe.h5"], "file 'pipe.h5' is a named pipe (FIFO)"),
], ids=["fit DATA", "predict MODEL", "info"])
def test_a_fifo_is_refused_without_waiting(files, argv, words):
    done = _fastvi(argv, files)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"fastvi: error: {words}, not a regular file: fastvi "
                                  "reads its inputs by random access"), done.stderr


def test_dev_stdin_on_a_pipe_is_refused_without_waiting(files):
    # /dev/stdin is a pipe that stays open and empty: a read of it would wait for ever.
    proc = subprocess.Popen([sys.executable, "-m", "fastvi.cli", "fit", "/dev/stdin",
                             "--k", "2", "-o", "m.h5"], cwd=files, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert proc.returncode == 2, err
    assert "data '/dev/stdin' is a named pipe (FIFO), not a regular file" in err


def test_a_regular_file_behind_dev_stdin_is_read(files):
    """``fastvi info /dev/stdin < data.h5``: a regular file is a file, however named."""
    with open(files / "data.h5", "rb") as fh:
        done = _fastvi(["info", "/dev/stdin"], files, stdin=fh)
    assert done.returncode == 0, done.stderr
    assert "/X  shape (60, 3)" in done.stdout


# ----------------------------------------------------------------------------- HDF5 storage

def _virtual(path, source_name, source_rows):
    layout = h5py.VirtualLayout(shape=source_rows.shape, dtype="f8")
    layout[:] = h5py.VirtualSource(source_name, "X", shape=source_rows.shape)
    with h5py.File(path, "a") as f:
        f.create_virtual_dataset("V", layout, fillvalue=0.0)


def test_an_empty_hdf5_dataset_is_refused(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_dataset("X", data=h5py.Empty("f8"))
    with pytest.raises(ValueError, match=r"e.h5:/X is an empty HDF5 dataset \(a null "
                                         r"dataspace, no shape\)"):
        GaussianMixture(2).fit(HDF5Source(str(tmp_path / "e.h5"), "/X"))
    with pytest.raises(ValueError, match="is an empty HDF5 dataset"):
        open_source(str(tmp_path / "e.h5"))


def test_a_virtual_dataset_reads_its_sources_and_refuses_a_missing_one(tmp_path):
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["X"] = X
    _virtual(tmp_path / "v.h5", "src.h5", X)                    # in another file
    with h5py.File(tmp_path / "same.h5", "w") as f:             # and in the same file
        f["X"] = X
    _virtual(tmp_path / "same.h5", ".", X)
    for path in ("v.h5:/V", "same.h5:/V"):
        with open_source(str(tmp_path / path)) as source:
            np.testing.assert_array_equal(source.read(0, source.n_rows), X)
    os.rename(tmp_path / "src.h5", tmp_path / "moved.h5")
    with pytest.raises(ValueError, match=r"v.h5:/V is a virtual dataset whose source file "
                                         r"'src.h5' is missing"):
        open_source(str(tmp_path / "v.h5:/V"))
    with h5py.File(tmp_path / "src.h5", "w") as f:              # the file, not the dataset
        f["Y"] = X
    with pytest.raises(ValueError, match=r"source dataset '/?X' is missing from"):
        open_source(str(tmp_path / "v.h5:/V"))


def test_external_storage_is_read_when_whole_and_refused_when_gone_or_short(tmp_path):
    raw = str(tmp_path / "raw.bin")
    X.tofile(raw)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", X.shape, "<f8", external=[(raw, 0, h5py.h5f.UNLIMITED)])
    with open_source(str(tmp_path / "x.h5")) as source:
        np.testing.assert_array_equal(source.read(0, source.n_rows), X)
    os.truncate(raw, 64)
    with pytest.raises(ValueError, match=rf"holds 64 bytes where the dataset needs {X.nbytes}"):
        open_source(str(tmp_path / "x.h5"))
    os.remove(raw)
    with pytest.raises(ValueError, match="keeps its values in the external file .*raw.bin', "
                                         "which does not exist"):
        open_source(str(tmp_path / "x.h5"))


# ----------------------------------------------------------------------------- huge values

@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_fit_refuses_values_whose_squares_overflow(cls):
    # BayesianGaussianMixture first reads all rows for its prior, with a zero precision
    # (no log-likelihood to trace the overflow), GaussianMixture in its initialisation.
    with pytest.raises(ValueError, match="X " + TOO_LARGE):
        cls(2, random_state=0).fit(HUGE)


def test_fit_refuses_a_huge_row_outside_the_initial_sample():
    # A row the initialisation does not sample is read by an unchecked E-step: its
    # non-finite log-likelihood is traced to it, with the same message.
    Y = np.vstack([X] * 5)
    Y[150, 0] = 1e300
    model = GaussianMixture(2, init_sample_size=50, random_state=0)
    with pytest.raises(ValueError, match=r"too large for fastvi: 1e\+300 at row 150"):
        model.fit(Y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_prediction_refuses_values_whose_squares_overflow(method):
    # Before: predict gave label 0, predict_proba rows of zeros, the scores -inf.
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X " + TOO_LARGE):
        getattr(model, method)(HUGE)


def test_float32_beyond_1e18_is_refused_and_fits_as_float64():
    big = (X * 1e37).astype(np.float32)         # up to ~3e38: covariances overflow float32
    with pytest.raises(ValueError, match=r"the most it takes in float32 data \(a fit's "
                                         r"float32 covariances overflow\).* or store it as "
                                         r"float64"):
        GaussianMixture(2, random_state=0).fit(big)
    model = GaussianMixture(2, random_state=0, dtype="float64").fit(big)
    assert np.isfinite(model.covariances_).all()
    assert np.isfinite(model.score(big.astype(np.float64)))


@pytest.mark.parametrize("scale", [1e6, 1e30, 1e100, 1e139])
@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_large_but_safe_values_fit_as_the_unscaled_data(cls, scale):
    model = cls(3, random_state=0).fit(X * scale)
    assert all(np.isfinite(getattr(model, name)).all()
               for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"))
    labels = model.predict(X * scale)
    assert len(set(zip(labels, LABELS))) == 3           # the three blobs, found again
    assert np.isfinite(model.score(X * scale))


def test_float32_up_to_1e18_fits_and_its_model_loads(tmp_path):
    big = (X / np.abs(X).max() * 9e17).astype(np.float32)
    model = GaussianMixture(3, random_state=0).fit(big)
    assert model.covariances_.dtype == np.float32
    fastvi.io.save(model, tmp_path / "m.h5")
    assert np.isfinite(fastvi.io.load(tmp_path / "m.h5").covariances_).all()


@pytest.mark.parametrize("dtype, limit", [(np.float64, LARGEST_FLOAT64),
                                          (np.float32, LARGEST_FLOAT32)])
def test_the_limits_are_inclusive_and_name_the_row(dtype, limit):
    rows = np.ones((10, 2), dtype=dtype)
    rows[6, 1] = -dtype(limit)
    source = ArraySource(rows, chunk_rows=4)
    for start, stop in source.chunk_bounds():
        source.read(start, stop)
    rows[9, 0] = np.nextafter(dtype(limit), dtype(np.inf))
    words = f"at row 9 is the first beyond {limit:g}, the most it takes in {dtype.__name__} data"
    with pytest.raises(ValueError, match=re.escape(words)):
        source.read(8, 10)
    with pytest.raises(ValueError, match="at row 9 is"):        # a sample names its rows
        source.read_rows(np.array([0, 9]))
    rows[2, 0] = np.nan                                         # the first bad row is named
    with pytest.raises(ValueError, match=r"contains NaN or infinity \(first at row 2\)"):
        source.read(0, 4)
