"""Crash safety: ``fastvi fit`` and ``fastvi predict`` SIGKILLed at random points.

Every job here is a real CLI process (``python -m fastvi.cli``) killed with SIGKILL at a
point drawn by a seeded random generator, then run again -- ``fit ... --resume`` when a
checkpoint exists, the same command without ``--resume`` (a fresh start) when the kill
came before the first checkpoint -- until a run exits 0.  Then:

* the model (or predict output) is bit-identical to the one of an uninterrupted run of
  the same command: every dataset (dtype, shape, bytes) and every attribute of every
  object, except ``fastvi_version`` and time-like attributes (``_same_h5``);
* at every kill the output path either does not exist or is a complete, readable file: a
  previous complete output (predict overwriting an older ``out.h5``) or the final one
  (a fit killed after its model was saved, before its checkpoint was removed); a
  checkpoint left by a kill is always a readable one;
* once the job has finished, its folder holds the output and the log only: no hidden
  temporary file (``.NAME.*.tmp``, ``.ckpt-*``) of any earlier killed run, and no
  checkpoint (a job cleans up after its own killed runs).

Kill points
-----------
A fit variant writes a checkpoint after every chunk (``--checkpoint-chunks 1``; 10 chunks
of 2,000 rows, 2 passes: 20 steps), so kills land in the middle of checkpoint writes too.
Each kill point is a position t drawn from U(0, 22) in units of steps: the run is killed
``frac(t)`` x 50 ms (about a chunk's time) after its JSON ``--log`` shows the chunk event
of step ``floor(t)`` (a resumed run appends to the log; only its own events count);
t < 1 kills before the first checkpoint (t < 0.5: 0-3 s after the start, while
importing; else 0-1.5 s after the log's start event, while initialising or in the first
chunk); 20 <= t < 21 kills 0-50 ms after the last pass event, around the final save;
t >= 21 kills 0-10 ms after the model file was renamed into place, around the
checkpoint's removal.  The first job of worker 0 always starts with a kill before its
first checkpoint, so the fresh-start path is always taken; the jobs of worker 1 start
with an older complete model (a 1-pass fit) at the output path, which every kill must
leave intact until the final model replaces it.  A job's points are drawn
sorted, so they spread over the fit.  A run that ends before its kill ends its job, and
the remaining kills go to a new job (in a fresh folder).  Each variant runs two workers in
parallel (two folders, two generators), to halve the wall time on two cores.

Predict is killed while importing and loading (a random delay after the start), a random
delay after its temporary output file appeared (while it computes and writes), or just
after the output was renamed into place.
One worker overwrites an older complete ``out.h5`` (which must survive every kill), the
other writes to an empty folder.

Figures (default run; ``pytest -m long`` for the long variants)
-------------------------------------------------------------------
================================  =============================  ========================
variant                           default                        long
================================  =============================  ========================
fit batch, stochastic, memoized,  2 workers x 2 kills = 4 kills  2 workers x 12 kills =
truncated (K=6, ``--n-active 2    each, in 6 runs: 2-3 resumes   24 kills each, in 26
--n-candidates 3``)               and 3-4 fresh starts           runs, 20-22 resumes
predict ``--proba`` (100,000      2 workers x 3 kills = 6 kills  2 workers x 15 kills =
rows)                             in 8 runs                      30 kills in ~32 runs
total                             22 kills                       126 kills
================================  =============================  ========================

Each test prints one summary line (``pytest -s`` shows it): kills, runs, resumes, fresh
starts, finished jobs, kills before any checkpoint or output was begun, kills that left a
temporary file (a half-written checkpoint or output), kills after the output was
written, and the kill points.  Every CLI process costs about 3 s of CPU to start
(imports, scikit-learn's above all, and the Numba cache load), which is most of the cost:
the default run of this file takes about 125 s of CPU, 73 s on the two cores otherwise
idle (130-160 s while other test runs shared them); ``-m long`` takes about 515 s of CPU,
420 s of wall time with the cores shared.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from fastvi.io.checkpoint import load_checkpoint
from fastvi.cli import main

pytestmark = [pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

N_ROWS, N_FEATURES, CHUNK, PASSES = 20_000, 3, 2_000, 2
N_CHUNKS = N_ROWS // CHUNK
N_STEPS = PASSES * N_CHUNKS
PREDICT_ROWS = 100_000
SEED = 20240611

FIT_VARIANTS = {
    "batch": ["--k", "4", "--algorithm", "batch"],
    "stochastic": ["--k", "4", "--algorithm", "stochastic"],
    "memoized": ["--k", "4", "--algorithm", "memoized"],
    "truncated": ["--k", "6", "--n-active", "2", "--n-candidates", "3"],
}

# Attributes that may differ between two runs of one command.
_IGNORED_ATTRS = ("fastvi_version",)
_TIME_LIKE = ("time", "date", "created", "wall", "seconds", "elapsed")

# ----------------------------------------------------------------------------- helpers

def _ignored(key):
    return key in _IGNORED_ATTRS or any(word in key.lower() for word in _TIME_LIKE)


def _value_key(value):
    array = np.asarray(value)
    if array.dtype.kind == "O":
        return ("O", repr(value))
    return (array.dtype.str, array.shape, array.tobytes())


def _h5_content(path):
    """Every object of an HDF5 file: its kind, dtype, shape, bytes and attributes."""
    content = {}

    def attrs(obj):
        return {key: _value_key(obj.attrs[key]) for key in obj.attrs if not _ignored(key)}

    with h5py.File(path, "r") as f:
        content["/"] = ("group", attrs(f))

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                content[name] = ("dataset", _value_key(data), attrs(obj))
            else:
                content[name] = ("group", attrs(obj))
        f.visititems(visit)
    return content


def _same_h5(path, expected):
    """None if ``path`` has the content ``expected`` (an ``_h5_content``), else why not."""
    try:
        got = _h5_content(path)
    except Exception as exc:             # noqa: BLE001 - unreadable is the finding
        return f"{path} is not a readable HDF5 file ({type(exc).__name__}: {exc})"
    if got == expected:
        return None
    differ = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
    return f"{path} differs from the uninterrupted run in {differ}"


def _env():
    env = dict(os.environ)
    env.pop("FASTVI_DEBUG", None)
    return env


def _start(argv, cwd):
    return subprocess.Popen([sys.executable, "-m", "fastvi.cli", *argv], cwd=cwd,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _kill_and_reap(proc, kill=True):
    """SIGKILL ``proc`` if ``kill`` and it still runs; reap it.  (status, stdout, stderr)"""
    if kill and proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


class _LogTail:
    """The complete JSON lines appended to a ``--log`` file from ``offset`` on."""

    def __init__(self, path, offset):
        self.path, self.offset, self.buffer = path, offset, b""
        self.events = []

    def poll(self):
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return self.events
        self.offset += len(data)
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass            # a line cut by an earlier kill, then appended to
        return self.events


def _wait(proc, until, timeout=120.0):
    """Poll ``until()`` every 2 ms; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("the run neither reached its kill point nor ended in time")


def _sleep_or_exit(proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)


def _hidden(folder):
    return {name for name in os.listdir(folder) if name.startswith(".")}


class _Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(
            ["kills", "runs", "resumes", "fresh", "jobs", "early", "half_written",
             "after_save", "missed"], 0)
        self.leftovers = []
        self.points = []

    def add(self, **kwargs):
        with self.lock:
            for key, value in kwargs.items():
                self.counts[key] += value


def _report(name, stats, started, problems):
    c = stats.counts
    line = (f"crash {name}: {c['kills']} kills, {c['runs']} runs ({c['resumes']} resumes, "
            f"{c['fresh']} fresh starts), {c['jobs']} jobs finished; "
            f"{c['early']} kills before any checkpoint or output was begun, "
            f"{c['half_written']} left a temporary file, "
            f"{c['after_save']} after the output was written, "
            f"{c['missed']} kill points after the run ended; "
            f"{time.monotonic() - started:.1f} s; "
            f"kill points {sorted(stats.points)}")
    print("\n" + line)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash-data")
    assert main(["make-data", str(d / "small.h5"), "--n-samples", str(N_ROWS),
                 "--n-features", str(N_FEATURES), "--n-components", "4",
                 "--chunk-rows", str(CHUNK)]) == 0
    assert main(["make-data", str(d / "big.h5"), "--n-samples", str(PREDICT_ROWS),
                 "--n-features", str(N_FEATURES), "--n-components", "4",
                 "--chunk-rows", "10000", "--sample-seed", "7"]) == 0
    return d


def _fit_argv(data, variant, folder):
    return ["fit", f"{data / 'small.h5'}:/X", *FIT_VARIANTS[variant], "--model", "bgmm",
            "--passes", str(PASSES), "--tol", "0", "--seed", "3",
            "--chunk-size", str(CHUNK), "--batch-size", str(CHUNK),
            "--checkpoint-chunks", "1", "--log", str(folder / "fit.jsonl"),
            "-o", str(folder / "model.h5")]


def _reference_fit(data, variant, tmp_path):
    """The model file of an uninterrupted run of the same command (in this process), and
    an older complete model (one pass) that worker 1's jobs start by overwriting."""
    folder = tmp_path / f"ref-{variant}"
    folder.mkdir()
    assert main(_fit_argv(data, variant, folder)) == 0
    assert sorted(os.listdir(folder)) == ["fit.jsonl", "model.h5"]
    old = tmp_path / f"old-{variant}.h5"
    assert main([*_fit_argv(data, variant, folder)[:-1], str(old), "--passes", "1",
                 "--no-checkpoint"]) == 0
    return _h5_content(folder / "model.h5"), old.read_bytes(), _h5_content(old)


# ----------------------------------------------------------------------------- fit

def _replaced(path, inode):
    """Whether ``path`` now is another file than the one of ``inode`` (None: no file)."""
    try:
        return os.stat(path).st_ino != inode
    except FileNotFoundError:
        return False


def _inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _kill_point(proc, tail, t, model, inode):
    """Wait for kill point ``t`` (in steps; see the module docstring) of a fit run."""
    step, frac = int(t), t - int(t)
    if step == 0:
        # Before the first checkpoint: 0 <= t < 0.5 while importing, then while
        # initialising or running the first chunk, 1.5 s after the start event at most.
        if frac < 0.5:
            _sleep_or_exit(proc, 6.0 * frac)
            return
        if _wait(proc, lambda: any(e.get("event") in ("start", "resume")
                                   for e in tail.poll())):
            _sleep_or_exit(proc, 3.0 * (frac - 0.5))
        return
    if step == N_STEPS:
        # The last pass event comes before the final save and the checkpoint's removal.
        if _wait(proc, lambda: any(e.get("event") == "pass" and e.get("pass") == PASSES
                                   for e in tail.poll())):
            _sleep_or_exit(proc, 0.05 * frac)
        return
    if step > N_STEPS:
        # Once the model is in place: around the checkpoint's removal and the log's end.
        if _wait(proc, lambda: _replaced(model, inode)):
            _sleep_or_exit(proc, 0.01 * frac)
        return
    if _wait(proc, lambda: any(e.get("event") in ("chunk", "pass", "end")
                               and e.get("step", N_STEPS) >= step for e in tail.poll())):
        _sleep_or_exit(proc, 0.05 * frac)


def _fit_worker(data, variant, worker, n_kills, references, stats, problems, root):
    reference, old_bytes, old = references
    rng = random.Random(f"{SEED}-{variant}-{worker}")
    job = 0
    while n_kills > 0:
        job += 1
        folder = root / f"{variant}-w{worker}-job{job}"
        folder.mkdir()
        argv = _fit_argv(data, variant, folder)
        model, checkpoint = folder / "model.h5", folder / "model.h5.ckpt"
        log = folder / "fit.jsonl"
        previous = None
        if worker == 1:                 # overwrite an older complete model
            model.write_bytes(old_bytes)
            previous = old
        # A job's kill points, sorted; the first job of worker 0 starts with a kill
        # before its first checkpoint (so the fresh-start path is always exercised).
        points = sorted(rng.uniform(0, N_STEPS + 2) for _ in range(n_kills))
        if worker == 0 and job == 1:
            points[0] = rng.uniform(0, 1)
        schedule = []
        while True:
            resume = checkpoint.exists()
            if not resume and log.exists():
                os.remove(log)          # a fresh start rewrites it; count only its events
            tail = _LogTail(log, log.stat().st_size if log.exists() else 0)
            before, inode = _hidden(folder), _inode(model)
            t = points.pop(0) if points else None
            proc = _start(argv + ["--resume"] if resume else argv, folder)
            stats.add(runs=1, resumes=int(resume), fresh=int(not resume))
            try:
                if t is not None:
                    _kill_point(proc, tail, t, model, inode)
            except BaseException:
                _kill_and_reap(proc)
                raise
            code, _, err = _kill_and_reap(proc, kill=t is not None)
            where = (f"{variant} worker {worker} job {job} (seed {SEED}), run "
                     f"{len(schedule) + 1} ({'--resume' if resume else 'fresh'}"
                     f"{'' if t is None else f', kill point t={t:.3f}'})")
            if code == 0:
                break
            if code != -signal.SIGKILL:
                problems.append(f"{where}: exit status {code}, not 0 or SIGKILL:\n{err}")
                return
            n_kills -= 1
            schedule.append(round(t, 3))
            stats.points.append(round(t, 2))
            stats.add(kills=1, early=int(not resume and not checkpoint.exists()),
                      half_written=int(bool(_hidden(folder) - before)))
            # No output is ever truncated: absent, the older model, or the final one.
            if model.exists():
                why = _same_h5(model, reference)
                if why is None:
                    stats.add(after_save=1)
                elif previous is None or _same_h5(model, previous) is not None:
                    problems.append(f"{where}: {why}; and it is not the older model")
                    return
            elif previous is not None:
                problems.append(f"{where}: the older complete model {model} was removed")
                return
            if checkpoint.exists():
                try:
                    load_checkpoint(checkpoint)
                except Exception as exc:     # noqa: BLE001
                    problems.append(f"{where}: the checkpoint is not readable: {exc}")
                    return
        # The run that exited 0 ended the job.
        if t is not None:
            stats.add(missed=1)            # its kill point came after it had ended
        stats.add(jobs=1)
        where = f"{variant} worker {worker} job {job} (seed {SEED}, kills at t={schedule})"
        why = _same_h5(model, reference)
        if why:
            problems.append(f"{where}: {why}")
            return
        left = sorted(set(os.listdir(folder)) - {"model.h5", "fit.jsonl"})
        if left:
            stats.leftovers.append(f"{where}: left {left}")


def _crash_fit(data, tmp_path, variant, kills_per_worker):
    started = time.monotonic()
    references = _reference_fit(data, variant, tmp_path)
    stats, problems = _Stats(), []
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_fit_worker, data, variant, w, kills_per_worker, references,
                               stats, problems, tmp_path) for w in range(2)]
        for future in futures:
            future.result()
    if stats.leftovers:
        problems.append("files left once the job had finished (temporary files of killed "
                        "runs, or a checkpoint):\n" + "\n".join(stats.leftovers))
    _report(f"fit {variant}", stats, started, problems)


@pytest.mark.parametrize("variant", list(FIT_VARIANTS))
def test_fit_killed_at_random_points_resumes_bit_identical(data, tmp_path, variant):
    _crash_fit(data, tmp_path, variant, kills_per_worker=2)


@pytest.mark.long
@pytest.mark.parametrize("variant", list(FIT_VARIANTS))
def test_fit_killed_at_many_points_long(data, tmp_path, variant):
    _crash_fit(data, tmp_path, variant, kills_per_worker=12)


# ----------------------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def predict_setup(data, tmp_path_factory):
    """Two models, the uninterrupted output of the one the test predicts with, and an
    older complete output (of the other model) that a killed predict must leave intact."""
    d = tmp_path_factory.mktemp("crash-predict")
    for name, k in (("model.h5", "4"), ("other.h5", "3")):
        assert main(["fit", f"{data / 'small.h5'}:/X", "--k", k, "--model", "bgmm",
                     "--passes", "2", "--no-checkpoint", "-o", str(d / name)]) == 0
    (d / "ref").mkdir()
    (d / "old").mkdir()
    assert main(_predict_argv(data, d, d / "ref")) == 0
    assert main(["predict", str(d / "other.h5"), f"{data / 'big.h5'}:/X", "-o",
                 str(d / "old" / "out.h5"), "--proba"]) == 0
    assert os.listdir(d / "ref") == ["out.h5"] and os.listdir(d / "old") == ["out.h5"]
    return {"dir": d, "reference": _h5_content(d / "ref" / "out.h5"),
            "old": (d / "old" / "out.h5").read_bytes(),
            "old_content": _h5_content(d / "old" / "out.h5")}


def _predict_argv(data, d, folder):
    return ["predict", str(d / "model.h5"), f"{data / 'big.h5'}:/X", "-o",
            str(folder / "out.h5"), "--proba", "--chunk-size", "10000"]


def _predict_kill_point(proc, folder, before, inode, t):
    """Kill point ``t`` in [0, 1) of a predict run: t < 0.25 a delay of 0-3 s after the
    start (while importing and loading); t < 0.85 0-1 s after its temporary output
    appeared (while it computes and writes); else 0-100 ms after the output was renamed
    into place."""
    if t < 0.25:
        _sleep_or_exit(proc, 12.0 * t)
    elif t < 0.85:
        if _wait(proc, lambda: bool(_hidden(folder) - before)):
            _sleep_or_exit(proc, (t - 0.25) / 0.6)
    elif _wait(proc, lambda: _replaced(folder / "out.h5", inode)):
        _sleep_or_exit(proc, 0.1 * (t - 0.85) / 0.15)


def _predict_worker(data, setup, worker, n_kills, stats, problems, root):
    rng = random.Random(f"{SEED}-predict-{worker}")
    reference = setup["reference"]
    job = 0
    while n_kills > 0:
        job += 1
        folder = root / f"predict-w{worker}-job{job}"
        folder.mkdir()
        out = folder / "out.h5"
        # Worker 0 overwrites an older complete output; worker 1 writes a new file.
        previous = None
        if worker == 0:
            out.write_bytes(setup["old"])
            previous = setup["old_content"]
        argv = _predict_argv(data, setup["dir"], folder)
        points = [rng.random() for _ in range(n_kills)]
        schedule = []
        while True:
            t = points.pop(0) if points else None
            before, inode = _hidden(folder), _inode(out)
            had_new = out.exists() and _same_h5(out, reference) is None
            proc = _start(argv, folder)
            stats.add(runs=1, fresh=1)
            try:
                if t is not None:
                    _predict_kill_point(proc, folder, before, inode, t)
            except BaseException:
                _kill_and_reap(proc)
                raise
            code, _, err = _kill_and_reap(proc, kill=t is not None)
            where = (f"predict worker {worker} job {job} (seed {SEED}), run "
                     f"{len(schedule) + 1}{'' if t is None else f', kill point t={t:.3f}'}")
            if code == 0:
                break
            if code != -signal.SIGKILL:
                problems.append(f"{where}: exit status {code}, not 0 or SIGKILL:\n{err}")
                return
            n_kills -= 1
            schedule.append(round(t, 3))
            stats.points.append(round(t, 2))
            new_hidden = bool(_hidden(folder) - before)
            stats.add(kills=1, half_written=int(new_hidden),
                      early=int(not new_hidden and not (out.exists() and not had_new)))
            # The output is absent (never written), the older complete output, or the
            # complete new one: never a truncated file.
            if out.exists():
                why_new = _same_h5(out, reference)
                if why_new is None:
                    stats.add(after_save=int(not had_new))
                elif previous is None or _same_h5(out, previous) is not None:
                    problems.append(f"{where}: {why_new}; and it is not the older output")
                    return
            elif previous is not None:
                problems.append(f"{where}: the older complete output {out} was removed")
                return
        if t is not None:
            stats.add(missed=1)
        stats.add(jobs=1)
        where = f"predict worker {worker} job {job} (seed {SEED}, kills at t={schedule})"
        why = _same_h5(out, reference)
        if why:
            problems.append(f"{where}: {why}")
            return
        left = sorted(set(os.listdir(folder)) - {"out.h5"})
        if left:
            stats.leftovers.append(f"{where}: left {left}")


def _crash_predict(data, setup, tmp_path, kills_per_worker):
    started = time.monotonic()
    stats, problems = _Stats(), []
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_predict_worker, data, setup, w, kills_per_worker, stats,
                               problems, tmp_path) for w in range(2)]
        for future in futures:
            future.result()
    if stats.leftovers:
        problems.append("files left once the job had finished (temporary files of killed "
                        "runs):\n" + "\n".join(stats.leftovers))
    _report("predict", stats, started, problems)


def test_predict_killed_at_random_points_leaves_whole_outputs(data, predict_setup, tmp_path):
    _crash_predict(data, predict_setup, tmp_path, kills_per_worker=3)


@pytest.mark.long
def test_predict_killed_at_many_points_long(data, predict_setup, tmp_path):
    _crash_predict(data, predict_setup, tmp_path, kills_per_worker=15)
