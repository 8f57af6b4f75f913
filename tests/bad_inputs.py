"""The bad inputs of the ``fastvi`` command: one list that both the test
(``tests/test_bad_inputs.py``) and the table of ``docs/errors.md`` are made from.

Each case is an input the command accepts, a wrong kind of it, the command line, the
message ``fastvi: error: ...`` must start with, and the exit status.  In the command line
and the message, ``{good}/`` is a folder of good inputs (``data.h5``: 300 x 3 float32 at
``/X``; ``rows.npy``; ``gmm.h5``: a 3-component model of it) and ``{tmp}/`` the case's own
folder, where its ``setup`` writes the broken input.  The rows whose ``runs_in`` names
another test file are checked there (they need a subprocess and a file system of their
own); they are listed here so that the table is complete.

``python tests/bad_inputs.py`` rewrites the CLI table in docs/errors.md from this list
(``test_errors_doc_is_up_to_date`` fails until it is run after a change).
"""
import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from typing import Callable, Optional

import h5py
import numpy as np

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "errors.md")
BEGIN, END = "<!-- cli-cases: begin -->", "<!-- cli-cases: end -->"


@dataclass
class Case:
    input: str                  # which input: DATA, MODEL, -o, --log, an option
    kind: str                   # the wrong kind: missing, wrong type, NaN/inf, ...
    argv: str                   # the command line after `fastvi`, {good}/ and {tmp}/ in it
    message: str                # what `fastvi: error: ` is followed by (its start)
    code: int = 2
    setup: Optional[Callable] = field(default=None, repr=False)   # setup(tmp, good)
    runs_in: str = "tests/test_bad_inputs.py"

    @property
    def id(self):
        return f"{self.input} {self.kind}".replace(" ", "-")


# ----------------------------------------------------------------------------- setups

def _h5(name, **datasets):
    def setup(tmp, good):
        with h5py.File(os.path.join(tmp, name), "w") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=value)
    return setup


def _npy(name, value):
    def setup(tmp, good):
        np.save(os.path.join(tmp, name), value, allow_pickle=True)
    return setup


def _text(name, text):
    def setup(tmp, good):
        with open(os.path.join(tmp, name), "w") as fh:
            fh.write(text)
    return setup


def _truncated(tmp, good):
    with open(os.path.join(good, "data.h5"), "rb") as fh:
        head = fh.read(3000)
    with open(os.path.join(tmp, "cut.h5"), "wb") as fh:
        fh.write(head)


def _model(edit):
    """A copy of the good model as {tmp}/m.h5, changed by ``edit(h5py.File)``."""
    def setup(tmp, good):
        path = os.path.join(tmp, "m.h5")
        shutil.copy(os.path.join(good, "gmm.h5"), path)
        with h5py.File(path, "r+") as f:
            edit(f)
    return setup


def _replace(key, value):
    def edit(f):
        del f[key]
        f[key] = value
    return edit


def _params(**changes):
    def edit(f):
        params = json.loads(f.attrs["params"])
        params.update(changes)
        f.attrs["params"] = json.dumps(params)
    return edit


def _future(f):
    f.attrs["format_version"] = 99


def _file(name, content=b"x"):
    def setup(tmp, good):
        with open(os.path.join(tmp, name), "wb") as fh:
            fh.write(content)
    return setup


def _pickled_checkpoint(tmp, good):
    with open(os.path.join(tmp, "m.h5.ckpt"), "wb") as fh:
        pickle.dump({"format": "fastvi-checkpoint", "state": None}, fh)




def _interrupted(change=None):
    """A checkpoint {tmp}/m.h5.ckpt of an interrupted fit of {tmp}/data.h5; ``change``
    then edits the data (``change(path)``)."""
    def setup(tmp, good):
        from fastvi.io.checkpoint import Checkpointer
        from fastvi.cli import main

        class Stop(Exception):
            pass

        shutil.copy(os.path.join(good, "data.h5"), os.path.join(tmp, "data.h5"))
        original = Checkpointer.write

        def write_then_stop(self, state):
            original(self, state)
            raise Stop

        Checkpointer.write = write_then_stop
        try:
            main(["fit", os.path.join(tmp, "data.h5"), "--k", "3", "--algorithm",
                  "stochastic", "--batch-size", "100", "--checkpoint-chunks", "1",
                  "-o", os.path.join(tmp, "m.h5")])
        finally:
            Checkpointer.write = original
        assert os.path.exists(os.path.join(tmp, "m.h5.ckpt"))
        if change is not None:
            change(os.path.join(tmp, "data.h5"))
    return setup


def _fewer_rows(path):
    with h5py.File(path, "r") as f:
        X = f["X"][:250]
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)


def _other_values(path):
    with h5py.File(path, "r+") as f:
        f["X"][0] = f["X"][0] + 1.0


def _clean_dir(name):
    def setup(tmp, good):
        os.mkdir(os.path.join(tmp, name))
    return setup


def _copy_of_good(name):
    """{good}/data.h5 copied to {tmp}/``name``."""
    def setup(tmp, good):
        shutil.copy(os.path.join(good, "data.h5"), os.path.join(tmp, name))
    return setup


NAN_ROWS = np.ones((20, 3), dtype=np.float32)
NAN_ROWS[7, 1] = np.nan
INF_ROWS = np.ones((20, 3))
INF_ROWS[3, 0] = np.inf

FIT = "fit {tmp}/x.h5 --k 2 -o {tmp}/m.h5"
FIT_GOOD = "fit {good}/data.h5 --k 2 -o {tmp}/m.h5"
PREDICT = "predict {good}/gmm.h5 {good}/data.h5 -o {tmp}/p.h5"

CASES = [
    # ------------------------------------------------------------------ DATA
    Case("DATA", "missing", "fit {tmp}/nope.h5 --k 2 -o {tmp}/m.h5",
         "data file '{tmp}/nope.h5' does not exist"),
    Case("DATA", "missing dataset", "fit {good}/data.h5:/Y --k 2 -o {tmp}/m.h5",
         "dataset '/Y' does not exist in '{good}/data.h5' (datasets: /X, /labels"),
    Case("DATA", "a group, not a dataset", "fit {tmp}/x.h5:/g --k 2 -o {tmp}/m.h5",
         "dataset '/g' is a group, not a dataset in '{tmp}/x.h5'",
         setup=_h5("x.h5", **{"g/a": [1.0]})),
    Case("DATA", "no /X and several 2-D datasets", FIT,
         "'{tmp}/x.h5' has no dataset /X and 2 2-D datasets; name one as {tmp}/x.h5:/DATASET",
         setup=_h5("x.h5", A=np.ones((5, 2)), B=np.ones((5, 2)))),
    Case("DATA", "a directory", "fit {tmp} --k 2 -o {good}/m.h5",
         "data '{tmp}' is a directory, not a file"),
    Case("DATA", "not HDF5 or .npy", FIT,
         "'{tmp}/x.h5' is not an HDF5 file (or it is corrupt)", setup=_text("x.h5", "a,b\n1,2\n")),
    Case("DATA", "truncated HDF5", "fit {tmp}/cut.h5 --k 2 -o {tmp}/m.h5",
         "cannot read HDF5 file '{tmp}/cut.h5'", setup=_truncated),
    Case("DATA", "wrong shape: 1-D", FIT,
         "{tmp}/x.h5:/X must be 2-D (n_samples, n_features), got shape (10,)",
         setup=_h5("x.h5", X=np.ones(10))),
    Case("DATA", "wrong shape: 3-D", FIT,
         "{tmp}/x.h5:/X must be 2-D (n_samples, n_features), got shape (2, 3, 4)",
         setup=_h5("x.h5", X=np.ones((2, 3, 4)))),
    Case("DATA", "wrong dtype: integer HDF5", FIT,
         "{tmp}/x.h5:/X holds int64 values; fastvi fits real-valued data: store it as "
         "float32 or float64", setup=_h5("x.h5", X=np.ones((10, 2), dtype=np.int64))),
    Case("DATA", "wrong dtype: integer .npy", "fit {tmp}/x.npy --k 2 -o {tmp}/m.h5",
         "{tmp}/x.npy holds int64 values; fastvi fits real-valued data: store it as "
         "float32 or float64", setup=_npy("x.npy", np.ones((10, 2), dtype=np.int64))),
    Case("DATA", "wrong dtype: bool .npy", "fit {tmp}/x.npy --k 2 -o {tmp}/m.h5",
         "{tmp}/x.npy holds bool values; fastvi fits real-valued data",
         setup=_npy("x.npy", np.ones((10, 2), dtype=bool))),
    Case("DATA", "wrong dtype: strings", FIT,
         "{tmp}/x.h5:/X must hold numbers, got dtype object",
         setup=_h5("x.h5", X=np.array([["a", "b"]] * 3, dtype=h5py.string_dtype()))),
    Case("DATA", "wrong type: object .npy (a pickle)", "fit {tmp}/x.npy --k 2 -o {tmp}/m.h5",
         "cannot read '{tmp}/x.npy' as a .npy file: Array can't be memory-mapped: Python "
         "objects in dtype",
         setup=_npy("x.npy", np.array([[{}, 1]], dtype=object))),
    Case("DATA", "empty: no rows", FIT, "{tmp}/x.h5:/X has no rows (shape (0, 3))",
         setup=_h5("x.h5", X=np.ones((0, 3)))),
    Case("DATA", "empty: no features", FIT, "{tmp}/x.h5:/X has no features (shape (5, 0))",
         setup=_h5("x.h5", X=np.ones((5, 0)))),
    Case("DATA", "NaN", FIT, "{tmp}/x.h5:/X contains NaN or infinity (first at row 7)",
         setup=_h5("x.h5", X=NAN_ROWS)),
    Case("DATA", "inf", "fit {tmp}/x.npy --k 2 -o {tmp}/m.h5",
         "{tmp}/x.npy contains NaN or infinity (first at row 3)", setup=_npy("x.npy", INF_ROWS)),
    Case("DATA", "fewer rows than --k", "fit {good}/data.h5 --k 500 -o {tmp}/m.h5",
         "{good}/data.h5:/X: Expected n_samples >= n_components but got n_components = 500, "
         "n_samples = 300"),
    Case("DATA", "files of other widths", "fit {good}/data.h5 {tmp}/x.h5 --k 2 -o {tmp}/m.h5",
         "all data must have the same number of features, got {good}/data.h5:/X: 3, "
         "{tmp}/x.h5:/X: 2", setup=_h5("x.h5", X=np.ones((5, 2)))),
    Case("DATA", "other width than the model", "predict {good}/gmm.h5 {tmp}/x.h5 -o {tmp}/p.h5",
         "{tmp}/x.h5:/X has 2 features, but the model in '{good}/gmm.h5' was fitted on 3",
         setup=_h5("x.h5", X=np.ones((5, 2)))),
    Case("--validation", "other width than DATA",
         "fit {good}/data.h5 --k 2 --validation {tmp}/x.h5 -o {tmp}/m.h5",
         "--validation {tmp}/x.h5:/X has 2 features, the data {good}/data.h5:/X 3",
         setup=_h5("x.h5", X=np.ones((5, 2)))),
    # ------------------------------------------------------------------ MODEL
    Case("MODEL", "missing", "predict {tmp}/nope.h5 {good}/data.h5 -o {tmp}/p.h5",
         "file '{tmp}/nope.h5' does not exist"),
    Case("MODEL", "wrong type: a data file", "score {good}/data.h5 {good}/data.h5",
         "'{good}/data.h5' is not a fastvi model file (no format='fastvi-model' attribute)"),
    Case("MODEL", "corrupt: not HDF5", "score {tmp}/m.h5 {good}/data.h5",
         "'{tmp}/m.h5' is not an HDF5 file (or it is corrupt)", setup=_text("m.h5", "junk")),
    Case("MODEL", "future format version", "score {tmp}/m.h5 {good}/data.h5",
         "'{tmp}/m.h5' has format_version 99, written by fastvi", setup=_model(_future)),
    Case("MODEL", "NaN in means_", "predict {tmp}/m.h5 {good}/data.h5 -o {tmp}/p.h5",
         "model file '{tmp}/m.h5': means_ contains NaN or infinity",
         setup=_model(_replace("means_", np.full((3, 3), np.nan)))),
    Case("MODEL", "wrong shape: means_", "score {tmp}/m.h5 {good}/data.h5",
         "model file '{tmp}/m.h5': means_ has shape (3, 5), expected (3, 3) (n_components=3, "
         "n_features_in_=3", setup=_model(_replace("means_", np.zeros((3, 5))))),
    Case("MODEL", "wrong dtype: means_", "score {tmp}/m.h5 {good}/data.h5",
         "model file '{tmp}/m.h5': means_ holds int64 values, expected floating point",
         setup=_model(_replace("means_", np.zeros((3, 3), dtype=np.int64)))),
    Case("MODEL", "weights_ not summing to 1", "info {tmp}/m.h5",
         "model file '{tmp}/m.h5': weights_ must be >= 0 and sum to 1",
         setup=_model(_replace("weights_", np.full(3, 0.5)))),
    Case("MODEL", "corrupt covariance_type", "score {tmp}/m.h5 {good}/data.h5",
         "model file '{tmp}/m.h5': covariance_type 'banana' is not one of",
         setup=_model(_params(covariance_type="banana"))),
    Case("MODEL", "missing dataset", "score {tmp}/m.h5 {good}/data.h5",
         "model file '{tmp}/m.h5': lacks the dataset 'precisions_cholesky_'",
         setup=_model(lambda f: f.__delitem__("precisions_cholesky_"))),
    # ------------------------------------------------------------------ outputs
    Case("-o", "its folder missing", "fit {good}/data.h5 --k 2 -o {tmp}/no/m.h5",
         "cannot write the model '{tmp}/no/m.h5': directory '{tmp}/no' does not exist"),
    Case("-o", "a directory", "predict {good}/gmm.h5 {good}/data.h5 -o {tmp}/d",
         "cannot write the predict output '{tmp}/d': it is a directory", setup=_clean_dir("d")),
    Case("-o", "an input", "predict {good}/gmm.h5 {good}/data.h5 -o {good}/data.h5",
         "output '{good}/data.h5' would overwrite the input '{good}/data.h5'"),
    Case("-o", "make-data into a missing folder", "make-data {tmp}/no/d.h5 --n-samples 10",
         "cannot write the data file '{tmp}/no/d.h5': directory '{tmp}/no' does not exist"),
    Case("-o", "read-only file system", "predict MODEL DATA -o ro/p.h5 (also fit, make-data)",
         "cannot write the predict output 'ro/p.h5': Read-only file system",
         runs_in="tests/test_full_disk.py"),
    Case("-o", "full disk", "predict MODEL DATA -o full/p.h5 --proba",
         "cannot write the predict output 'full/p.h5': No space left on device",
         runs_in="tests/test_full_disk.py"),
    Case("-o", "full disk (model)", "fit DATA --k 3 -o full/m.h5",
         "cannot write the model 'full/m.h5': No space left on device; the checkpoint "
         "'full/m.h5.ckpt' holds the finished fit: make room and save it with: fastvi fit "
         "... --resume", runs_in="tests/test_full_disk.py"),
    Case("-o", "full disk (make-data)", "make-data full/d.h5",
         "cannot write the data file 'full/d.h5': No space left on device",
         runs_in="tests/test_full_disk.py"),
    Case("-o", "file size limit (ulimit -f)", "predict MODEL DATA -o big/p.h5 --proba",
         "cannot write the predict output 'big/p.h5': File too large",
         runs_in="tests/test_full_disk.py"),
    Case("--log", "a directory", FIT_GOOD + " --log {tmp}/d",
         "cannot write the log '{tmp}/d': it is a directory", setup=_clean_dir("d")),
    Case("--log", "its folder missing", FIT_GOOD + " --log {tmp}/no/l.jsonl",
         "cannot write the log '{tmp}/no/l.jsonl': directory '{tmp}/no' does not exist"),
    Case("--log", "full disk", "fit DATA --k 3 -o m.h5 --log full/l.jsonl",
         "cannot write the log 'full/l.jsonl': No space left on device",
         runs_in="tests/test_full_disk.py"),
    Case("--checkpoint", "its folder missing", FIT_GOOD + " --checkpoint {tmp}/no/c.ckpt",
         "cannot write the checkpoint '{tmp}/no/c.ckpt': directory '{tmp}/no' does not exist"),
    Case("--checkpoint", "the model's path", FIT_GOOD + " --checkpoint {tmp}/m.h5",
         "the checkpoint and the model cannot both be '{tmp}/m.h5'"),
    Case("--checkpoint", "an input", FIT_GOOD + " --checkpoint {good}/data.h5",
         "checkpoint '{good}/data.h5' would overwrite the input '{good}/data.h5'"),
    Case("--checkpoint", "left by an interrupted fit", FIT_GOOD,
         "the checkpoint '{tmp}/m.h5.ckpt' of an interrupted fit exists: add --resume",
         setup=_file("m.h5.ckpt")),
    Case("--checkpoint", "full disk", "fit DATA --k 3 -o m.h5 --checkpoint full/c.ckpt",
         "cannot write the checkpoint 'full/c.ckpt': No space left on device",
         runs_in="tests/test_full_disk.py"),
    # ------------------------------------------------------------------ --resume
    Case("--resume", "missing checkpoint", "fit --resume -o {tmp}/m.h5",
         "--resume: there is no checkpoint '{tmp}/m.h5.ckpt'"),
    Case("--resume", "corrupt checkpoint", "fit --resume -o {tmp}/m.h5",
         "{tmp}/m.h5.ckpt: not a readable fastvi checkpoint", setup=_file("m.h5.ckpt", b"junk")),
    Case("--resume", "an old pickled checkpoint", "fit --resume -o {tmp}/m.h5",
         "{tmp}/m.h5.ckpt is a checkpoint of an older fastvi (a pickle, which is no longer "
         "loaded because unpickling can run code); remove it and start the fit afresh",
         setup=_pickled_checkpoint),
    Case("--resume", "other options than the checkpoint's",
         "fit {tmp}/data.h5 --k 4 --resume -o {tmp}/m.h5",
         "--resume goes on with the settings and data stored in the checkpoint "
         "'{tmp}/m.h5.ckpt', but these differ from it: --k 4 (checkpoint: 3)",
         setup=_interrupted()),
    Case("--resume", "changed data: other shape", "fit --resume -o {tmp}/m.h5",
         "the data changed since the checkpoint '{tmp}/m.h5.ckpt' was written: "
         "{tmp}/data.h5:/X has 250 x 3 rows, the checkpoint is of 300 x 3",
         setup=_interrupted(_fewer_rows)),
    Case("--resume", "changed data: same shape, other values", "fit --resume -o {tmp}/m.h5",
         "--resume: the data (or sample_weight) changed since the checkpoint was written",
         setup=_interrupted(_other_values)),
    # ------------------------------------------------------------------ numeric options
    Case("--k", "0", "fit {good}/data.h5 --k 0 -o {tmp}/m.h5",
         "argument --k: must be >= 1, got 0"),
    Case("--k", "not an integer", "fit {good}/data.h5 --k 2.5 -o {tmp}/m.h5",
         "argument --k: expected an integer, got '2.5'"),
    Case("--seed", "negative", "fit {good}/data.h5 --k 2 --seed -1 -o {tmp}/m.h5",
         "argument --seed: must be >= 0, got -1"),
    Case("--reg-covar", "inf", "fit {good}/data.h5 --k 2 --reg-covar inf -o {tmp}/m.h5",
         "argument --reg-covar: must be a finite number, got inf"),
    Case("--reg-covar", "NaN", "fit {good}/data.h5 --k 2 --reg-covar nan -o {tmp}/m.h5",
         "argument --reg-covar: must be a finite number, got nan"),
    Case("--reg-covar", "negative", "fit {good}/data.h5 --k 2 --reg-covar -1 -o {tmp}/m.h5",
         "argument --reg-covar: must be >= 0, got -1"),
    Case("--tol", "NaN", "fit {good}/data.h5 --k 2 --tol nan -o {tmp}/m.h5",
         "argument --tol: must be a finite number, got nan"),
    Case("--tau", "negative", "fit {good}/data.h5 --k 2 --tau -1 -o {tmp}/m.h5",
         "argument --tau: must be >= 0, got -1"),
    Case("--kappa", "out of (0.5, 1]", "fit {good}/data.h5 --k 2 --kappa 0.3 -o {tmp}/m.h5",
         "learning_decay (kappa) must be in (0.5, 1] for the stochastic step sizes to "
         "converge, got 0.3"),
    Case("--kappa", "inf", "fit {good}/data.h5 --k 2 --kappa inf -o {tmp}/m.h5",
         "argument --kappa: must be a finite number, got inf"),
    Case("--passes", "negative", "fit {good}/data.h5 --k 2 --passes -1 -o {tmp}/m.h5",
         "argument --passes/--max-iter: must be >= 0, got -1"),
    Case("--batch-size", "0", "fit {good}/data.h5 --k 2 --batch-size 0 -o {tmp}/m.h5",
         "argument --batch-size: must be >= 1, got 0"),
    Case("--chunk-size", "0", "score {good}/gmm.h5 {good}/data.h5 --chunk-size 0",
         "argument --chunk-size: must be >= 1, got 0"),
    Case("--n-init", "2 with --checkpoint-chunks",
         "fit {good}/data.h5 --k 2 --n-init 2 --checkpoint-chunks 1 -o {tmp}/m.h5",
         "--checkpoint needs --n-init 1: a checkpoint holds one initialisation"),
    Case("--n-candidates", "fewer than --n-active",
         "fit {good}/data.h5 --k 3 --n-active 3 --n-candidates 2 -o {tmp}/m.h5",
         "n_candidates must be an integer >= n_active=3 (or None for all 3 components), "
         "got 2"),
    Case("--threads", "0", "fit {good}/data.h5 --k 2 --threads 0 -o {tmp}/m.h5",
         "argument --threads: must be -1 (all) or >= 1, got 0"),
    Case("--threads", "not an integer", "fit {good}/data.h5 --k 2 --threads x -o {tmp}/m.h5",
         "argument --threads: expected an integer, got 'x'"),
    Case("--checkpoint-every", "inf",
         "fit {good}/data.h5 --k 2 --checkpoint-every inf -o {tmp}/m.h5",
         "argument --checkpoint-every: must be a finite number, got inf"),
    Case("--weight-prior", "with --model gmm",
         "fit {good}/data.h5 --k 2 --weight-prior dirichlet_process -o {tmp}/m.h5",
         "--weight-prior applies only to --model bgmm"),
    Case("--top", "0", PREDICT + " --top 0", "argument --top: must be >= 1, got 0"),
    Case("--separation", "overflowing (1e300)", "make-data {tmp}/d.h5 --separation 1e300",
         "separation (--separation) 1e+300 is too large: the means overflow float32"),
    Case("--separation", "inf", "make-data {tmp}/d.h5 --separation inf",
         "argument --separation: must be a finite number, got inf"),
    Case("--n-samples", "0", "make-data {tmp}/d.h5 --n-samples 0",
         "argument --n-samples: must be >= 1, got 0"),
    Case("--learning-rate", "0",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --learning-rate 0",
         "argument --learning-rate: must be > 0, got 0"),
    Case("amortized -o", "its folder missing",
         "amortized fit {good}/data.h5 -o {tmp}/no/v.h5",
         "cannot write the model '{tmp}/no/v.h5': directory '{tmp}/no' does not exist"),
    Case("amortized --resume", "missing checkpoint",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --resume",
         "--resume: there is no checkpoint '{tmp}/v.h5.ckpt'"),
    # ------------------------------------------------------------------ a Dask cluster
    Case("--workers", "0", FIT_GOOD + " --workers 0", "argument --workers: must be >= 1, got 0"),
    Case("--workers", "with --scheduler",
         "score {good}/gmm.h5 {good}/data.h5 --scheduler tcp://127.0.0.1:1 --workers 2",
         "argument --workers: not allowed with argument --scheduler"),
    Case("--scheduler-timeout", "0",
         "score {good}/gmm.h5 {good}/data.h5 --scheduler tcp://127.0.0.1:1 "
         "--scheduler-timeout 0", "argument --scheduler-timeout: must be > 0, got 0"),
    Case("--workers", "dask not installed", FIT_GOOD + " --workers 2",
         "--workers 2 needs dask.distributed, which is not installed: "
         "pip install 'fastvi[dask]'", runs_in="tests/test_cli_dask.py"),
    Case("--scheduler", "nothing answers there",
         "score {good}/gmm.h5 {good}/data.h5 --scheduler tcp://127.0.0.1:1 "
         "--scheduler-timeout 2",
         "--scheduler tcp://127.0.0.1:1: nothing answered in 2 s (is a Dask scheduler, "
         "`dask scheduler`, running at that address and reachable from here?",
         runs_in="tests/test_cli_dask.py"),
    Case("--scheduler", "a Dask worker's address",
         "score {good}/gmm.h5 {good}/data.h5 --scheduler tcp://WORKER:PORT",
         "--scheduler tcp://WORKER:PORT: what answered there is not a Dask scheduler but "
         "a Dask Worker", runs_in="tests/test_cli_dask.py"),
    Case("DATA", "not at its path on the Dask workers",
         "predict {good}/gmm.h5 {tmp}/x.h5 -o {tmp}/p.h5 --scheduler tcp://host:8786",
         "{tmp}/x.h5:/X: cannot read rows 0:300 here (FileNotFoundError",
         setup=_copy_of_good("x.h5"), runs_in="tests/test_cli_dask.py"),
    # ------------------------------------------------------------------ outputs that clash
    # (issue 26, section 1)
    # ------------------------------------------------------------------ signals
    # ------------------------------------------------------------------ strange data files
    # (issue 26: null dataspace, FIFOs and other non-regular files, overflowing values)
    # ------------------------------------------------------------------ absurd sizes
    # (issue 26: sizes whose memory is checked before it is allocated)
    # ------------------------------------------------------------------ tampered checkpoints
    # (issue 26: refused as corrupt, naming the file and the field)
    # ------------------------------------------------------------------ usage
    Case("COMMAND", "missing", "", "a command is required"),
    Case("COMMAND", "unknown", "fitt", "argument COMMAND: invalid choice: 'fitt'"),
    Case("fit", "no DATA", "fit --k 2 -o {tmp}/m.h5",
         "the following arguments are required: DATA (unless --resume)"),
    Case("fit", "no -o", "fit {good}/data.h5 --k 2",
         "the following arguments are required: -o/--output"),
]


def expand(text, tmp, good):
    """A case's command line or message with its folders filled in."""
    return text.replace("{tmp}", str(tmp)).replace("{good}", str(good))


def _shown(text):
    """How the doc shows a case's text: relative paths, as a user would type them."""
    text = text.replace("{tmp}/", "").replace("{good}/", "").replace("{tmp}", "dir")
    return text.replace("|", "\\|")


def cli_table():
    """The CLI rows of docs/errors.md, as markdown."""
    lines = ["| input | wrong kind | command | message (`fastvi: error: ` and its start) "
             "| exit |", "|---|---|---|---|---|"]
    for case in CASES:
        command = f"`fastvi {_shown(case.argv)}`" if case.argv else "`fastvi`"
        lines.append(f"| `{case.input}` | {case.kind} | {command} | {_shown(case.message)} "
                     f"| {case.code} |")
    return "\n".join(lines)


def render(text):
    """``text`` (docs/errors.md) with its CLI table replaced by ``cli_table()``."""
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + cli_table() + "\n" + text[stop:]


if __name__ == "__main__":
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    with open(DOC, "w", encoding="utf-8") as fh:
        fh.write(render(text))
    print(f"wrote the {len(CASES)} CLI cases to {os.path.normpath(DOC)}")
