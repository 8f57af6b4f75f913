"""The commands that need no estimator start fast: ``fastvi --help``, ``fastvi info`` on a
data file or a model file (mixture, VAE, PPCA: it reads the file's attributes, it builds
no estimator) and ``fastvi make-data`` load neither scikit-learn nor Numba (seconds of
imports), nor the layers that do (``fastvi.cli`` imports them inside the commands that
use them).

Each command runs in a fresh interpreter, ``fastvi.cli.main`` called in-process there, and
reports what ``sys.modules`` holds afterwards.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

HEAVY = ("sklearn", "numba", "scipy", "fastvi.mixture", "fastvi.amortized", "fastvi.engine",
         "fastvi.kernels")
LEGACY = pathlib.Path(__file__).parent / "data" / "legacy" / "models"
MODELS = ("gmm_full.h5", "bgmm_dp_full.h5", "vae_amortized.h5", "ppca_per_example.h5")

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
    for name in MODELS:         # model files of each kind, as fastvi wrote them
        shutil.copy(LEGACY / name, d / name)
    return d


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["fit", "--help"],
    ["info", "data.h5"],
    ["info", "rows.npy"],
    *(["info", name] for name in MODELS),
    ["make-data", "made.h5", "--n-samples", "500", "--n-features", "2", "--n-components", "2"],
], ids=["help", "fit-help", "info-h5", "info-npy", *(f"info-{name[:-3]}" for name in MODELS),
        "make-data"])
def test_loads_neither_sklearn_nor_numba(files, argv):
    status, loaded = _loaded(argv, files)
    assert status == 0
    assert loaded == [], f"fastvi {' '.join(argv)} loaded {', '.join(loaded)}"


def test_the_gap_report_of_a_vae_file_loads_neither_sklearn_nor_numba(files):
    """``fastvi amortized gap`` on a VAE file runs ``fastvi.amortized.gaps`` (NumPy) on the
    file's networks: no estimator, so no scikit-learn (its import was a second of the
    command) and no Numba."""
    argv = ["amortized", "gap", "vae_amortized.h5", "data.h5:/X", "--importance", "20",
            "--optimise-steps", "5"]
    status, loaded = _loaded(argv, files)
    assert status == 0
    heavy = [name for name in loaded if name in ("sklearn", "numba", "scipy")]
    assert heavy == [], f"fastvi {' '.join(argv)} loaded {', '.join(heavy)}"
