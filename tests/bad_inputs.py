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
import subprocess
import sys
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
        shutil.copy(os.path.join(good, "data.h5"), os.path.join(tmp, "data.h5"))
        _stop_at_first_checkpoint(["fit", os.path.join(tmp, "data.h5"), "--k", "3",
                                   "--algorithm", "stochastic", "--batch-size", "100",
                                   "--checkpoint-chunks", "1", "-o", os.path.join(tmp, "m.h5")])
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


def _link(name, symbolic):
    """{tmp}/``name``: a symbolic or hard link to {good}/data.h5."""
    def setup(tmp, good):
        make = os.symlink if symbolic else os.link
        make(os.path.join(good, "data.h5"), os.path.join(tmp, name))
    return setup


def _fifo(name):
    def setup(tmp, good):
        os.mkfifo(os.path.join(tmp, name))
    return setup


def _both(*setups):
    def setup(tmp, good):
        for one in setups:
            one(tmp, good)
    return setup


# tampered checkpoints (issue 26): a real checkpoint, one field of its state edited

def _stop_at_first_checkpoint(argv):
    """Run ``fastvi argv`` in-process and stop it, as a crash would, right after it wrote
    its first checkpoint."""
    from fastvi.io.checkpoint import Checkpointer
    from fastvi.cli import main

    class Stop(Exception):
        pass

    original = Checkpointer.write

    def write_then_stop(self, state):
        original(self, state)
        raise Stop

    Checkpointer.write = write_then_stop
    try:
        main(argv)
    finally:
        Checkpointer.write = original


def _tampered(edit, options="--k 3 --algorithm stochastic", amortized=False):
    """{tmp}/data.h5 and the checkpoint of a fit of it stopped after its first chunk
    (``fastvi fit ... --batch-size 100 OPTIONS -o {tmp}/m.h5``: {tmp}/m.h5.ckpt) or
    epoch (``fastvi amortized fit ... OPTIONS -o {tmp}/v.h5``: {tmp}/v.h5.ckpt), then
    changed by ``edit(fields, f)``: ``fields`` is the JSON object of the state's
    attributes (written back), ``f`` the open file (its ``/arrays``)."""
    def setup(tmp, good):
        data = os.path.join(tmp, "data.h5")
        shutil.copy(os.path.join(good, "data.h5"), data)
        if amortized:
            output = os.path.join(tmp, "v.h5")
            _stop_at_first_checkpoint(["amortized", "fit", data, "--epochs", "3",
                                       *options.split(), "-o", output])
        else:
            output = os.path.join(tmp, "m.h5")
            _stop_at_first_checkpoint(["fit", data, "--batch-size", "100", "--chunk-size",
                                       "100", "--checkpoint-chunks", "1", *options.split(),
                                       "-o", output])
        with h5py.File(output + ".ckpt", "r+") as f:
            tree = json.loads(f["state"].asstr()[()])
            edit(tree["state"], f)
            del f["state"]
            f.create_dataset("state", data=json.dumps(tree), dtype=h5py.string_dtype())
    return setup


def _set(key, value):
    """An edit: the state's field ``key`` becomes the JSON tree ``value``."""
    def edit(fields, f):
        fields[key] = value
    return edit


def _change_array(node_of, change):
    """An edit: the array of the node ``node_of(fields)`` becomes ``change(its copy)``,
    stored in a dataset of its own (the other arrays of its stack stay as they were)."""
    def edit(fields, f):
        node = node_of(fields)
        new = np.asarray(change(f["arrays"][str(node["array"])][node["index"]].copy()))
        name = str(len(f["arrays"]))
        f["arrays"].create_dataset(name, data=new[np.newaxis])
        node.update(array=int(name), index=0, dtype=new.dtype.str, shape=list(new.shape))
    return edit


def _put(index, value):
    """A ``change`` of ``_change_array``: ``value`` at ``index``."""
    def change(array):
        array[index] = value
        return array
    return change


def _memo_key(fields, f):
    fields["memo"]["items"][0][0] = 99


def _clean_dir(name):
    def setup(tmp, good):
        os.mkdir(os.path.join(tmp, name))
    return setup


def _copy_of_good(name):
    """{good}/data.h5 copied to {tmp}/``name``."""
    def setup(tmp, good):
        shutil.copy(os.path.join(good, "data.h5"), os.path.join(tmp, name))
    return setup


# strange data files (issue 26)

def _input_fifo(name, link=None):
    """{tmp}/``name``: a named pipe (and {tmp}/``link``, a symbolic link to it), given as
    an input.  fastvi must refuse it without opening it.  Should it wait in ``open``
    instead, a writer opens and closes the pipe from 30 s on, each time a reader waits,
    for a minute, so that the case fails (at the end of the file) instead of hanging the
    test run: from another process, since h5py holds the GIL while it waits."""
    def setup(tmp, good):
        path = os.path.join(tmp, name)
        os.mkfifo(path)
        if link is not None:
            os.symlink(path, os.path.join(tmp, link))
        _GUARDS.append(subprocess.Popen([sys.executable, "-c", _UNBLOCK, path],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return setup


_GUARDS = []        # the unblocking processes: each ends by itself after 90 s
_UNBLOCK = """
import os, sys, time
time.sleep(30)
for _ in range(240):            # whenever a reader waits on the pipe: open it, close it
    try:
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
    except FileNotFoundError:   # the case's folder is gone
        break
    except OSError:             # ENXIO: no reader waits
        pass
    time.sleep(0.25)
"""


def _virtual_without_source(tmp, good):
    """{tmp}/x.h5:/X: a virtual dataset of {tmp}/src.h5:/X, which is then removed (HDF5
    would read the fill value, 0, in its place)."""
    with h5py.File(os.path.join(tmp, "src.h5"), "w") as f:
        f["X"] = np.ones((20, 3))
    layout = h5py.VirtualLayout(shape=(20, 3), dtype="f8")
    layout[:] = h5py.VirtualSource("src.h5", "X", shape=(20, 3))
    with h5py.File(os.path.join(tmp, "x.h5"), "w") as f:
        f.create_virtual_dataset("X", layout)
    os.remove(os.path.join(tmp, "src.h5"))


def _external(keep_bytes):
    """{tmp}/x.h5:/X (20 x 3 float64, 480 bytes) stored in the external file
    {tmp}/raw.bin, which is then removed (``keep_bytes`` None) or cut short."""
    def setup(tmp, good):
        raw = os.path.join(tmp, "raw.bin")
        np.ones((20, 3)).tofile(raw)
        with h5py.File(os.path.join(tmp, "x.h5"), "w") as f:
            f.create_dataset("X", (20, 3), "<f8", external=[(raw, 0, h5py.h5f.UNLIMITED)])
        if keep_bytes is None:
            os.remove(raw)
        else:
            os.truncate(raw, keep_bytes)
    return setup


HUGE_ROWS = np.ones((20, 3))
HUGE_ROWS[3, 1] = 1e300
HUGE_FLOAT32 = np.ones((20, 3), dtype=np.float32)
HUGE_FLOAT32[3, 1] = 3e38
PIPE = "named pipe (FIFO), not a regular file: fastvi reads its inputs by random access"

def _vae_model(tmp, good):
    """{tmp}/v.h5: a VAE trained for one epoch on {good}/data.h5."""
    from fastvi.cli import main
    assert main(["amortized", "fit", os.path.join(good, "data.h5"), "--epochs", "1",
                 "-o", os.path.join(tmp, "v.h5")]) == 0


# 2 x 250000 float32: one component's full covariance statistics alone need 18 TiB
WIDE_ROWS = np.zeros((2, 250_000), dtype=np.float32)

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
    Case("DATA", "NaN", FIT, "{tmp}/x.h5:/X contains NaN or infinity (first at row 7); if "
         "NaN marks missing entries, fit with missing='marginalize' (fastvi fit --missing "
         "marginalize)", setup=_h5("x.h5", X=NAN_ROWS)),
    Case("DATA", "inf", "fit {tmp}/x.npy --k 2 -o {tmp}/m.h5",
         "{tmp}/x.npy contains NaN or infinity (first at row 3); if NaN marks missing "
         "entries, fit with missing='marginalize' (fastvi fit --missing marginalize)",
         setup=_npy("x.npy", INF_ROWS)),
    Case("DATA", "inf with --missing marginalize",
         "fit {tmp}/x.npy --k 2 --missing marginalize -o {tmp}/m.h5",
         "{tmp}/x.npy contains infinity (first at row 3); missing entries are NaN",
         setup=_npy("x.npy", INF_ROWS)),
    Case("--missing", "with --n-active",
         "fit {good}/data.h5 --k 3 --missing marginalize --n-active 1 -o {tmp}/m.h5",
         "missing='marginalize' needs the dense E-step: the truncated q (n_active) does not "
         "marginalise missing entries; leave n_active=None"),
    Case("--missing-rate", "1 or more", "make-data {tmp}/x.h5 --missing-rate 1",
         "missing_rate (--missing-rate) must be in [0, 1), got 1.0"),
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
         "the predict output '{good}/data.h5' would overwrite the data '{good}/data.h5'"),
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
         "the model '{tmp}/m.h5' and the checkpoint '{tmp}/m.h5' are one file"),
    Case("--checkpoint", "an input", FIT_GOOD + " --checkpoint {good}/data.h5",
         "the checkpoint '{good}/data.h5' would overwrite the data '{good}/data.h5'"),
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
    # (issue 26, section 1: each of these destroyed the input before)
    Case("--log", "the data", "fit {tmp}/data.h5:/X --k 2 -o {tmp}/m.h5 --log {tmp}/data.h5",
         "the log '{tmp}/data.h5' would overwrite the data '{tmp}/data.h5'",
         setup=_copy_of_good("data.h5")),
    Case("--log", "the --validation data",
         FIT_GOOD + " --validation {tmp}/v.h5 --log {tmp}/v.h5",
         "the log '{tmp}/v.h5' would overwrite the --validation data '{tmp}/v.h5'",
         setup=_copy_of_good("v.h5")),
    Case("--log", "a symbolic link to the data", FIT_GOOD + " --log {tmp}/link",
         "the log '{tmp}/link' would overwrite the data '{good}/data.h5'",
         setup=_link("link", symbolic=True)),
    Case("--log", "a hard link to the data", FIT_GOOD + " --log {tmp}/link",
         "the log '{tmp}/link' would overwrite the data '{good}/data.h5'",
         setup=_link("link", symbolic=False)),
    Case("--log", "the model (-o) of an older fit",
         "fit {tmp}/x.h5 --k 2 -o {tmp}/m.h5 --log {tmp}/m.h5",
         "the model '{tmp}/m.h5' and the log '{tmp}/m.h5' are one file",
         setup=_both(_model(lambda f: None), _h5("x.h5", X=NAN_ROWS))),
    Case("--log", "the checkpoint", FIT_GOOD + " --checkpoint {tmp}/c --log {tmp}/c",
         "the checkpoint '{tmp}/c' and the log '{tmp}/c' are one file"),
    Case("--support-file", "the data (.npy)",
         "fit {tmp}/rows.npy --k 3 --n-active 1 --n-candidates 2 -o {tmp}/m.h5 "
         "--support-file {tmp}/rows.npy",
         "the support file '{tmp}/rows.npy' would overwrite the data '{tmp}/rows.npy'",
         setup=_npy("rows.npy", np.random.default_rng(0).normal(size=(50, 2)))),
    Case("--support-file", "the model (-o)",
         FIT_GOOD + " --n-active 1 --n-candidates 2 --support-file {tmp}/m.h5",
         "the model '{tmp}/m.h5' and the support file '{tmp}/m.h5' are one file"),
    Case("--support-file", "another program's file",
         FIT_GOOD + " --k 3 --n-active 1 --n-candidates 2 --support-file {tmp}/mine.h5",
         "cannot write the support file '{tmp}/mine.h5': it exists and is not a fastvi "
         "support file (choose another path, or remove it)",
         setup=_h5("mine.h5", results=np.ones(3))),
    Case("-o", "the data", "fit {tmp}/data.h5 --k 2 -o {tmp}/data.h5",
         "the model '{tmp}/data.h5' would overwrite the data '{tmp}/data.h5'",
         setup=_copy_of_good("data.h5")),
    Case("-o", "the --validation data", FIT_GOOD + " --validation {tmp}/v.h5 -o {tmp}/v.h5",
         "the model '{tmp}/v.h5' would overwrite the --validation data '{tmp}/v.h5'",
         setup=_copy_of_good("v.h5")),
    Case("-o", "predict: the model", "predict {tmp}/m.h5 {good}/data.h5 -o {tmp}/m.h5",
         "the predict output '{tmp}/m.h5' would overwrite the model '{tmp}/m.h5'",
         setup=_model(lambda f: None)),
    Case("-o", "a named pipe (FIFO)", "predict {good}/gmm.h5 {good}/data.h5 -o {tmp}/pipe",
         "cannot write the predict output '{tmp}/pipe': it is a named pipe (FIFO), not a "
         "regular file", setup=_fifo("pipe")),
    Case("amortized -o", "the data", "amortized fit {tmp}/data.h5 -o {tmp}/data.h5",
         "the model '{tmp}/data.h5' would overwrite the data '{tmp}/data.h5'",
         setup=_copy_of_good("data.h5")),
    Case("amortized --checkpoint", "the data",
         "amortized fit {tmp}/data.h5 -o {tmp}/v.h5 --checkpoint {tmp}/data.h5",
         "the checkpoint '{tmp}/data.h5' would overwrite the data '{tmp}/data.h5'",
         setup=_copy_of_good("data.h5")),
    Case("amortized --checkpoint", "the model (-o)",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --checkpoint {tmp}/v.h5",
         "the model '{tmp}/v.h5' and the checkpoint '{tmp}/v.h5' are one file"),
    Case("amortized --checkpoint", "left by an interrupted run",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5",
         "the checkpoint '{tmp}/v.h5.ckpt' of an interrupted run exists: add --resume",
         setup=_file("v.h5.ckpt")),
    Case("make-data OUT", "a model file", "make-data {tmp}/m.h5 --n-samples 10",
         "the data file '{tmp}/m.h5' exists and was not written by fastvi (it may be your "
         "own file): choose another path, remove it, or add --force",
         setup=_model(lambda f: None)),
    Case("make-data OUT", "a file of the user's", "make-data {tmp}/notes.txt --n-samples 10",
         "the data file '{tmp}/notes.txt' exists and was not written by fastvi",
         setup=_text("notes.txt", "my notes")),
    Case("demo --out", "a folder with the user's mixture.h5", "demo --out {tmp}",
         "--out: the data file '{tmp}/mixture.h5' exists and was not written by fastvi",
         setup=_h5("mixture.h5", X=np.ones((5, 2)))),
    Case("demo --out", "a folder with the user's model.h5", "demo --out {tmp}",
         "--out: the model '{tmp}/model.h5' exists and was not written by fastvi",
         setup=_copy_of_good("model.h5")),
    Case("demo --out", "a file", "demo --out {tmp}/notes.txt",
         "--out '{tmp}/notes.txt' is a file, not a directory",
         setup=_text("notes.txt", "my notes")),
    # ------------------------------------------------------------------ signals
    # ------------------------------------------------------------------ strange data files
    # (issue 26: null dataspace, FIFOs and other non-regular files, overflowing values)
    Case("DATA", "a named pipe (FIFO)", "fit {tmp}/pipe.h5 --k 2 -o {tmp}/m.h5",
         "data '{tmp}/pipe.h5' is a " + PIPE, setup=_input_fifo("pipe.h5")),
    Case("DATA", "a symbolic link to a FIFO", "fit {tmp}/link.h5 --k 2 -o {tmp}/m.h5",
         "data '{tmp}/link.h5' is a " + PIPE, setup=_input_fifo("pipe", link="link.h5")),
    Case("DATA", "a character device", "fit /dev/zero --k 2 -o {tmp}/m.h5",
         "data '/dev/zero' is a character device, not a regular file"),
    Case("DATA", "score: a FIFO", "score {good}/gmm.h5 {tmp}/pipe.h5",
         "data '{tmp}/pipe.h5' is a " + PIPE, setup=_input_fifo("pipe.h5")),
    Case("--validation", "a FIFO", FIT_GOOD + " --validation {tmp}/pipe.h5",
         "data '{tmp}/pipe.h5' is a " + PIPE, setup=_input_fifo("pipe.h5")),
    Case("MODEL", "a FIFO", "predict {tmp}/pipe.h5 {good}/data.h5 -o {tmp}/p.h5",
         "model '{tmp}/pipe.h5' is a " + PIPE, setup=_input_fifo("pipe.h5")),
    Case("amortized MODEL", "a FIFO", "amortized gap {tmp}/pipe.h5 {good}/data.h5",
         "model '{tmp}/pipe.h5' is a " + PIPE, setup=_input_fifo("pipe.h5")),
    Case("info PATH", "a FIFO", "info {tmp}/pipe.h5", "file '{tmp}/pipe.h5' is a " + PIPE,
         setup=_input_fifo("pipe.h5")),
    Case("--resume", "the checkpoint a FIFO", "fit --resume -o {tmp}/m.h5",
         "checkpoint '{tmp}/m.h5.ckpt' is a " + PIPE, setup=_input_fifo("m.h5.ckpt")),
    Case("DATA", "HDF5 null dataspace (h5py.Empty)", FIT,
         "{tmp}/x.h5:/X is an empty HDF5 dataset (a null dataspace, no shape): it holds no "
         "rows", setup=_h5("x.h5", X=h5py.Empty("f8"))),
    Case("DATA", "HDF5 scalar dataset", FIT,
         "{tmp}/x.h5:/X must be 2-D (n_samples, n_features), got shape ()",
         setup=_h5("x.h5", X=1.0)),
    Case("DATA", "HDF5 compound dtype", FIT,
         "{tmp}/x.h5:/X has a compound dtype (a table with the fields a, b); fastvi reads "
         "a 2-D array of numbers", setup=_h5("x.h5", X=np.zeros(5, dtype=[("a", "f8"),
                                                                           ("b", "f8")]))),
    Case("DATA", "HDF5 virtual dataset, source gone", FIT,
         "{tmp}/x.h5:/X is a virtual dataset whose source file 'src.h5' is missing",
         setup=_virtual_without_source),
    Case("DATA", "HDF5 external storage, file gone", FIT,
         "{tmp}/x.h5:/X keeps its values in the external file '{tmp}/raw.bin', which does "
         "not exist", setup=_external(None)),
    Case("DATA", "HDF5 external storage, file short", FIT,
         "{tmp}/x.h5:/X keeps its values in the external file '{tmp}/raw.bin', which holds "
         "100 bytes where the dataset needs 480 (truncated?)", setup=_external(100)),
    Case("DATA", "values near 1e300", FIT,
         "{tmp}/x.h5:/X has values too large for fastvi: 1e+300 at row 3 is the first "
         "beyond 1e+140, the most it takes in float64 data (sums of their squares "
         "overflow); rescale the data (e.g. divide it by 1e+300",
         setup=_h5("x.h5", X=HUGE_ROWS)),
    Case("DATA", "values near 1e300 (bgmm)", FIT + " --model bgmm",
         "{tmp}/x.h5:/X has values too large for fastvi: 1e+300 at row 3",
         setup=_h5("x.h5", X=HUGE_ROWS)),
    Case("DATA", "score: values near 1e300", "score {good}/gmm.h5 {tmp}/x.h5",
         "{tmp}/x.h5:/X has values too large for fastvi: 1e+300 at row 3",
         setup=_h5("x.h5", X=HUGE_ROWS)),
    Case("DATA", "predict: values near 1e300", "predict {good}/gmm.h5 {tmp}/x.h5 -o {tmp}/p.h5",
         "{tmp}/x.h5:/X has values too large for fastvi: 1e+300 at row 3",
         setup=_h5("x.h5", X=HUGE_ROWS)),
    Case("DATA", "float32 values near 3e38", FIT,
         "{tmp}/x.h5:/X has values too large for fastvi: 3e+38 at row 3 is the first beyond "
         "1e+18, the most it takes in float32 data (a fit's float32 covariances overflow)",
         setup=_h5("x.h5", X=HUGE_FLOAT32)),
    # ------------------------------------------------------------------ absurd sizes
    # (issue 26: sizes whose memory is checked before it is allocated)
    # The messages end "; this machine has <its memory>": the cases stop before the number.
    # Sizes that only bound the work (--chunk-size, --batch-size, --top beyond the data)
    # are clamped, not refused: tests/test_sizes.py.
    Case("--n-features", "absurd (1e6: TiB of covariances)",
         "make-data {tmp}/d.h5 --n-samples 10 --n-features 1000000",
         "n_features (--n-features) 1000000 needs 36 TiB for one full covariance, its "
         "Cholesky factor and its QR draw (5 x 1000000 x 1000000 float64); this machine has"),
    Case("--n-components", "absurd (1e10)",
         "make-data {tmp}/d.h5 --n-samples 10 --n-components 10000000000",
         "n_components (--n-components) 10000000000 with n_features (--n-features) 16 needs "
         "40 TiB for the components' means and full covariances with their factors "
         "(2 x 10000000000 x 16 float64 and 2 x 10000000000 x 16 x 16 float64); this "
         "machine has"),
    Case("--n-samples", "more than a file holds (1e30)",
         "make-data {tmp}/d.h5 --n-samples 1000000000000000000000000000000",
         "n_samples (--n-samples) 1000000000000000000000000000000 x 16 features (float32) is "
         "more data than a file can hold (8 EiB)"),
    Case("--chunk-rows", "absurd (1e12 rows of 1e12)",
         "make-data {tmp}/d.h5 --n-samples 1000000000000 --chunk-rows 1000000000000",
         "chunk_rows (--chunk-rows) 1000000000000 needs 58 TiB for the HDF5 chunk being "
         "written (1000000000000 x 16 float32); this machine has"),
    Case("--cov", "full on 250000 features", "fit {tmp}/wide.h5 --k 2 -o {tmp}/m.h5",
         "{tmp}/wide.h5:/X: covariance_type (--cov) 'full' on 250000 features needs 18 TiB "
         "for one component's second moments (40 arrays of 250000 x 250000 float64: the "
         "E-step's 32 block sums and the fit's own copies); this machine has",
         setup=_h5("wide.h5", X=WIDE_ROWS)),
    Case("--encoder-hidden", "absurd (1e10)",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --encoder-hidden 10000000000",
         "encoder_hidden (--encoder-hidden) 10000000000 needs 49 TiB for training the encoder "
         "and the decoder (3 -> 10000000000 -> 4 and 2 -> 3, float64: the weights with their "
         "gradients and Adam moments, and the activations of a minibatch of 128 rows); this "
         "machine has"),
    Case("--decoder-hidden", "absurd (1e10)",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --decoder-hidden 10000000000",
         "decoder_hidden (--decoder-hidden) 10000000000 needs 48 TiB for training the encoder "
         "and the decoder (3 -> 4 and 2 -> 10000000000 -> 3"),
    Case("--latent", "absurd (1e10)",
         "amortized fit {good}/data.h5 -o {tmp}/v.h5 --latent 10000000000",
         "n_latent (--latent) 10000000000 needs 106 TiB for training the encoder and the "
         "decoder (3 -> 20000000000 and 10000000000 -> 3"),
    Case("--importance", "absurd (1e11 draws)",
         "amortized gap {tmp}/v.h5 {good}/data.h5 --importance 100000000000",
         "n_importance (--importance) 100000000000 needs 437 TiB for the importance "
         "log-weights of a block of rows (2 x 100000000000 x 300 float64); this machine has",
         setup=_vae_model),
    # ------------------------------------------------------------------ tampered checkpoints
    # (issue 26: refused as corrupt, naming the file and the field)
    Case("checkpoint", "order out of range", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: order holds 7, not a chunk index (expected "
         "each of the 3 chunks 0..2 once)", setup=_tampered(_set("order", {"list": [0, 1, 7]}))),
    Case("checkpoint", "position beyond the order", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: position is 9, beyond the order of 3 chunks "
         "(expected 0..3)", setup=_tampered(_set("position", 9))),
    Case("checkpoint", "negative n_pass", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: n_pass is -1 (expected an integer >= 0)",
         setup=_tampered(_set("n_pass", -1))),
    Case("checkpoint", "negative step", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: step is -3 (expected 1, the chunks done: 0 "
         "passes of 3 and 1 of this one)",
         setup=_tampered(_set("step", -3))),
    Case("checkpoint", "NaN counts", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: stats.nk contains NaN or infinity",
         setup=_tampered(_change_array(lambda s: s["stats"]["state"]["nk"],
                                       _put(0, np.nan)))),
    Case("checkpoint", "negative counts", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: stats.nk has a negative count (-50.0, "
         "component 1; expected counts >= 0)",
         setup=_tampered(_change_array(lambda s: s["stats"]["state"]["nk"], _put(1, -50.0)))),
    Case("checkpoint", "means of the wrong shape", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: params.means has shape (3, 5) (expected "
         "(3, 3): 3 components of 3 features)",
         setup=_tampered(_change_array(lambda s: s["params"]["tuple"][1],
                                       lambda a: np.zeros((3, 5))))),
    Case("checkpoint", "weights not summing to 1", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: params.weights sum to 1.5 with a minimum of "
         "0.5 (expected weights >= 0 that sum to 1)",
         setup=_tampered(_change_array(lambda s: s["params"]["tuple"][0],
                                       lambda a: np.full(3, 0.5)))),
    Case("checkpoint", "precision not positive definite", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: params.precisions_cholesky of component 0 "
         "is not the factor of a positive definite precision",
         setup=_tampered(_change_array(lambda s: s["params"]["tuple"][3],
                                       _put((0, 1, 1), -2.0)))),
    Case("checkpoint", "memo key not a chunk index", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: memo has the key 99, not a chunk index "
         "(expected keys in 0..2)",
         setup=_tampered(_memo_key, "--k 3 --algorithm memoized --checkpoint-chunks 2")),
    Case("checkpoint", "memo stats of the wrong shape", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: memo[",
         setup=_tampered(_change_array(lambda s: s["memo"]["items"][0][1]["state"]["s1"],
                                       lambda a: np.zeros((3, 5))),
                         "--k 3 --algorithm memoized --checkpoint-chunks 2")),
    Case("checkpoint", "supports out of range", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: supports holds 99 (expected components "
         "0..3, or -1 for none yet)",
         setup=_tampered(_change_array(lambda s: s["supports"]["state"]["array"],
                                       _put((5, 0), 99)),
                         "--k 4 --algorithm memoized --n-active 2 --n-candidates 3")),
    Case("checkpoint", "neighbour lists out of range", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: neighbours holds 1000 (expected components "
         "0..3)",
         setup=_tampered(_change_array(lambda s: s["neighbours"], _put((0, 1), 1000)),
                         "--k 4 --algorithm memoized --n-active 2 --n-candidates 3")),
    Case("checkpoint", "merge pairs out of range", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: merge_pairs holds (0, 9) (expected pairs "
         "j < k of components 0..2)",
         setup=_tampered(_change_array(lambda s: s["merge_pairs"], _put(0, [0, 9])),
                         "--k 3 --model bgmm --algorithm batch --moves merge")),
    Case("checkpoint", "rng not a generator", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: rng is an int (expected a numpy Generator)",
         setup=_tampered(_set("rng", 5))),
    Case("checkpoint", "rng state garbage (a generator stuck at one value)",
         "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: rng has a PCG64 state with an even increment "
         "(0; a seeded generator's is odd)",
         setup=_tampered(lambda s, f: s["rng"]["state"]["dict"].update(
             state={"dict": {"state": 0, "inc": 0}}))),
    Case("checkpoint", "rng state out of range", "fit --resume -o {tmp}/m.h5",
         "{tmp}/m.h5.ckpt: not a readable fastvi checkpoint (state.rng: a PCG64 state that numpy "
         "refuses: ",
         setup=_tampered(lambda s, f: s["rng"]["state"]["dict"].update(
             state={"dict": {"state": -5, "inc": 3}}))),
    Case("checkpoint", "tried not lists", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: tried['birth'] is a str (expected a list "
         "of component indices)",
         setup=_tampered(_set("tried", {"dict": {"birth": "x"}}),
                         "--k 3 --model bgmm --algorithm memoized --moves birth delete")),
    Case("checkpoint", "next_move not a move", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: next_move is 'x' (expected an integer in "
         "0..1: one of the 2 kinds of move)",
         setup=_tampered(_set("next_move", "x"),
                         "--k 3 --model bgmm --algorithm memoized --moves birth delete")),
    Case("amortized checkpoint", "decoder weights of the wrong shape",
         "amortized fit {tmp}/data.h5 -o {tmp}/v.h5 --epochs 3 --resume",
         "'{tmp}/v.h5.ckpt': corrupt checkpoint: model.decoder_.params[0] has shape (5, 3) "
         "(expected (2, 3)",
         setup=_tampered(_change_array(
             lambda s: s["model"]["state"]["decoder_"]["state"]["params"]["list"][0],
             lambda a: np.ones((5, 3))), "", amortized=True)),
    Case("amortized checkpoint", "negative epochs",
         "amortized fit {tmp}/data.h5 -o {tmp}/v.h5 --epochs 3 --resume",
         "'{tmp}/v.h5.ckpt': corrupt checkpoint: epochs is -1 (expected",
         setup=_tampered(_set("epochs", -1), "", amortized=True)),
    Case("amortized checkpoint", "max_epochs garbled (would train for ever)",
         "amortized fit {tmp}/data.h5 -o {tmp}/v.h5 --epochs 3 --resume",
         "'{tmp}/v.h5.ckpt': the checkpoint is of a VAE with max_epochs=1000000000, this "
         "fit's has max_epochs=3",
         setup=_tampered(lambda s, f: s["model"]["state"].update(max_epochs=10 ** 9), "",
                         amortized=True)),
    Case("checkpoint", "data description garbled", "fit --resume -o {tmp}/m.h5",
         "'{tmp}/m.h5.ckpt': corrupt checkpoint: data['n_components'] is None (expected an "
         "integer >= 1)",
         setup=_tampered(lambda s, f: s["data"]["dict"].pop("n_components"))),
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
