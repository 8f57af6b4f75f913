"""The commands that need no estimator start fast: ``fastvi --help``, ``fastvi info`` on a
data file and ``fastvi make-data`` load neither scikit-learn nor Numba (seconds of imports),
nor the layers that do (``fastvi.cli`` imports them inside the commands that use them).

Each command runs in a fresh interpreter, ``fastvi.cli.main`` called in-process there, and
reports what ``sys.modules`` holds afterwards.
"""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

HEAVY = ("sklearn", "numba", "scipy", "fastvi.mixture", "fastvi.amortized", "fastvi.engine",
         "fastvi.io.amortized", "fastvi.kernels")

CODE = f"""
import contextlib, io, json, sys
from fastvi.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    status = main(sys.argv[1:])
print(json.dumps([status, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
"""


def _loaded(argv, cwd):
    """The exit status of ``fastvi ARGV`` and the heavy modules it loaded."""
    done = subprocess.run([sys.executable, "-c", CODE, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    status, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return status, loaded


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("startup")
    with h5py.File(d / "data.h5", "w") as f:
        f.create_dataset("X", data=np.zeros((10, 3), np.float32), chunks=(5, 3))
        f.attrs["note"] = "a data file"
    np.save(d / "rows.npy", np.zeros((4, 2)))
    return d


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["fit", "--help"],
    ["info", "data.h5"],
    ["info", "rows.npy"],
    ["make-data", "made.h5", "--n-samples", "500", "--n-features", "2", "--n-components", "2"],
], ids=["help", "fit-help", "info-h5", "info-npy", "make-data"])
def test_loads_neither_sklearn_nor_numba(files, argv):
    status, loaded = _loaded(argv, files)
    assert status == 0
    assert loaded == [], f"fastvi {' '.join(argv)} loaded {', '.join(loaded)}"
