"""``fastvi fit``, ``predict`` and ``score`` on a Dask cluster (``--workers N``,
``--scheduler ADDRESS``), end to end through ``fastvi.cli.main``: the same model file, the
same outputs and the same log as on one machine, bit for bit; checkpoints that record
no backend, resumed anywhere; the cluster's bad inputs (``tests/bad_inputs.py`` rows
that run here) as one line and exit status 2, in bounded time.

``--workers`` starts (and stops) a LocalCluster of worker processes per command, some
seconds each; the ``--scheduler`` tests share one LocalCluster started for the module.
"""
import json
import os
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from fastvi.cli import main  # noqa: E402
from fastvi.engine.dask_local import local_cluster_kwargs  # noqa: E402
from fastvi.datasets import write_mixture_h5  # noqa: E402

from bad_inputs import CASES, expand  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")
HERE = {case.id: case for case in CASES if case.runs_in == "tests/test_cli_dask.py"}
SCHEDULER_PLACEHOLDER, WORKER_PLACEHOLDER = "tcp://host:8786", "tcp://WORKER:PORT"
# 3000 rows in HDF5 chunks of 500, read 1000 at a time: 3 chunks a pass
FIT = ["--k", "3", "--model", "bgmm", "--passes", "20", "--chunk-size", "1000"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """data.h5 (3000 x 4) and held.h5 (other rows of the same mixture), a local fit of
    data.h5 (local.h5, its log local.jsonl), and the 300 x 3 data.h5 and gmm.h5 of the
    bad-input cases under good/."""
    d = tmp_path_factory.mktemp("cli_dask")
    write_mixture_h5(d / "data.h5", 3000, 4, 3, chunk_rows=500, random_state=3)
    write_mixture_h5(d / "held.h5", 600, 4, 3, chunk_rows=500, random_state=3,
                     sample_seed=1)
    assert main(["fit", str(d / "data.h5"), *FIT, "-o", str(d / "local.h5"),
                 "--log", str(d / "local.jsonl")]) == 0
    good = d / "good"
    good.mkdir()
    write_mixture_h5(good / "data.h5", 300, 3, 3, chunk_rows=100)
    assert main(["fit", str(good / "data.h5"), "--k", "3", "--passes", "3",
                 "-o", str(good / "gmm.h5")]) == 0
    return d


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two worker processes, as ``--workers 2`` starts it on 2 cores."""
    with distributed.LocalCluster(**local_cluster_kwargs(2, cores=2)) as cluster:
        yield cluster


def _arrays(path):
    """Every dataset of an HDF5 file, and its root attributes."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        return out, dict(f.attrs)


def assert_same_file(a, b):
    (arrays_a, attrs_a), (arrays_b, attrs_b) = _arrays(a), _arrays(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        assert np.array_equal(arrays_a[name], arrays_b[name]), name    # bit for bit
        assert arrays_a[name].dtype == arrays_b[name].dtype, name
    assert attrs_a == attrs_b


def _events(path):
    """The log's events without what differs between runs (times, paths, argv)."""
    differ = ("time", "wall", "seconds", "argv", "output", "checkpoint")
    with open(path, encoding="utf-8") as fh:
        return [{key: value for key, value in json.loads(line).items() if key not in differ}
                for line in fh]


def _fit_locally_and_on(cluster_args, d, tmp_path, *options):
    """Fit data.h5 with ``options`` here and with ``cluster_args``: the two model files."""
    argv = ["fit", str(d / "data.h5"), *FIT, *options]
    local, remote = tmp_path / "local.h5", tmp_path / "remote.h5"
    assert main(argv + ["-o", str(local), "--log", str(tmp_path / "local.jsonl")]) == 0
    assert main(argv + ["-o", str(remote), "--log", str(tmp_path / "remote.jsonl"),
                        *cluster_args]) == 0
    return local, remote


# ----------------------------------------------------------------------------- --workers

def test_fit_on_workers_is_the_local_fit(files, tmp_path, capsys):
    out = tmp_path / "m.h5"
    capsys.readouterr()
    assert main(["fit", str(files / "data.h5"), *FIT, "-o", str(out), "--workers", "2",
                 "--log", str(tmp_path / "m.jsonl")]) == 0
    text = capsys.readouterr()
    assert "saved" in text.out and text.err == "", text.err    # no Dask noise on stderr
    assert_same_file(files / "local.h5", out)      # arrays and params: no backend in it
    with h5py.File(out, "r") as f:
        assert "backend" not in json.loads(f.attrs["params"])
    assert _events(tmp_path / "m.jsonl") == _events(files / "local.jsonl")
    assert not os.path.exists(str(out) + ".ckpt")


def test_predict_on_workers_writes_the_local_outputs(files, tmp_path):
    argv = ["predict", str(files / "local.h5"), str(files / "data.h5"), "--proba",
            "--top", "2", "--chunk-size", "600"]
    assert main(argv + ["-o", str(tmp_path / "local.h5")]) == 0
    assert main(argv + ["-o", str(tmp_path / "remote.h5"), "--workers", "2"]) == 0
    assert_same_file(tmp_path / "local.h5", tmp_path / "remote.h5")
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


def test_score_on_workers_prints_the_local_score(files, capsys):
    argv = ["score", str(files / "local.h5"), str(files / "data.h5"), "--chunk-size", "700"]
    assert main(argv) == 0
    local = capsys.readouterr().out
    assert main(argv + ["--workers", "2"]) == 0
    assert capsys.readouterr().out == local         # the mean and total, all digits


def test_workers_share_the_cores():
    kwargs = local_cluster_kwargs(3, cores=16)
    assert kwargs["threads_per_worker"] == 1 and kwargs["n_workers"] == 3
    assert kwargs["env"] == {"NUMBA_NUM_THREADS": "5"}
    assert local_cluster_kwargs(4, cores=2)["env"] == {"NUMBA_NUM_THREADS": "1"}
    assert kwargs["dashboard_address"] is None


def _numba_threads():
    import numba

    import fastvi.engine.local  # noqa: F401  (the kernels, as a task imports them)
    return numba.config.NUMBA_NUM_THREADS


def test_the_workers_kernels_run_on_their_share_of_the_cores(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        assert client.submit(_numba_threads, pure=False).result(timeout=60) == 1


# ----------------------------------------------------------------------------- --scheduler

@pytest.mark.parametrize("options", [
    ["--algorithm", "stochastic", "--batch-size", "500", "--validation", "{held}"],
    ["--algorithm", "memoized", "--batch-size", "500"],
    ["--n-active", "1", "--n-candidates", "2", "--support-file", "{tmp}/s.h5"],
], ids=["stochastic-validation", "memoized", "truncated-support-file"])
def test_fit_on_a_scheduler_is_the_local_fit(files, cluster, tmp_path, options):
    options = [o.replace("{held}", str(files / "held.h5")).replace("{tmp}", str(tmp_path))
               for o in options]
    local, remote = _fit_locally_and_on(["--scheduler", cluster.scheduler_address], files,
                                        tmp_path, *options)
    assert_same_file(local, remote)
    assert _events(tmp_path / "remote.jsonl") == _events(tmp_path / "local.jsonl")


def test_predict_and_score_on_a_scheduler(files, cluster, tmp_path, capsys):
    on = ["--scheduler", cluster.scheduler_address]
    argv = ["predict", str(files / "local.h5"), str(files / "data.h5"), "--top", "3"]
    assert main(argv + ["-o", str(tmp_path / "local.h5")]) == 0
    assert main(argv + ["-o", str(tmp_path / "remote.h5"), *on]) == 0
    assert_same_file(tmp_path / "local.h5", tmp_path / "remote.h5")
    argv = ["score", str(files / "local.h5"), str(files / "held.h5")]
    capsys.readouterr()
    assert main(argv) == 0
    local = capsys.readouterr().out
    assert main(argv + on) == 0
    assert capsys.readouterr().out == local


def test_a_checkpoint_records_no_backend_and_resumes_anywhere(files, cluster, tmp_path,
                                                              capsys):
    """A fit stopped on the cluster (as a crash leaves it) records backend "local" in the
    checkpoint's meta and ends, resumed on this machine, with the model of a fit that
    never stopped."""
    from fastvi.io.checkpoint import Checkpointer, load_checkpoint

    class Stop(Exception):
        pass

    original = Checkpointer.write

    def write_then_stop(self, state):
        original(self, state)
        if state.step >= 4:
            raise Stop

    argv = ["fit", str(files / "data.h5"), *FIT, "--algorithm", "stochastic",
            "--batch-size", "500", "--passes", "3", "--checkpoint-chunks", "1",
            "-o", str(tmp_path / "m.h5")]
    Checkpointer.write = write_then_stop
    try:
        assert main(argv + ["--scheduler", cluster.scheduler_address]) == 1   # Stop: a bug
    finally:
        Checkpointer.write = original
    assert "internal error: Stop" in capsys.readouterr().err
    state, meta = load_checkpoint(tmp_path / "m.h5.ckpt")
    assert meta["params"]["backend"] == "local" and state.step == 4
    assert main(argv + ["--resume"]) == 0
    assert main(argv[:-1] + [str(tmp_path / "whole.h5")]) == 0
    assert_same_file(tmp_path / "whole.h5", tmp_path / "m.h5")
    # and a checkpoint written on one machine resumes on the cluster
    Checkpointer.write = write_then_stop
    try:
        assert main(argv[:-1] + [str(tmp_path / "m2.h5")]) == 1
    finally:
        Checkpointer.write = original
    assert main(argv[:-1] + [str(tmp_path / "m2.h5"), "--resume", "--scheduler",
                             cluster.scheduler_address]) == 0
    assert_same_file(tmp_path / "whole.h5", tmp_path / "m2.h5")


def test_a_lost_scheduler_is_one_line_naming_the_checkpoint(files, cluster, tmp_path,
                                                            capsys, monkeypatch):
    """The scheduler goes away mid-fit (simulated: the futures are cancelled, as the client
    reports a lost connection): one line, which gives the --resume command; resumed on
    this machine, the fit ends as one that never stopped."""
    from fastvi.engine.cluster import DaskBackend
    real, calls = DaskBackend._result, []

    def lost_after_a_while(self, future):
        calls.append(1)
        if len(calls) > 7:
            future.cancel()
            raise distributed.client.FutureCancelledError(
                future.key, "scheduler-connection-lost", "Client lost the connection")
        return real(self, future)

    monkeypatch.setattr(DaskBackend, "_result", lost_after_a_while)
    argv = ["fit", str(files / "data.h5"), *FIT, "--checkpoint-chunks", "1",
            "-o", str(tmp_path / "m.h5")]
    line = _one_error_line(capsys, argv + ["--scheduler", cluster.scheduler_address],
                           f"--scheduler {cluster.scheduler_address}: the Dask cluster "
                           "cancelled the work (did the scheduler stop?)")
    assert f"the checkpoint '{tmp_path / 'm.h5.ckpt'}' holds the fit" in line
    assert "continue with: fastvi fit " in line and line.endswith(
        "--resume (on this cluster, another one or none)")
    monkeypatch.undo()
    assert main(argv + ["--resume"]) == 0
    assert_same_file(files / "local.h5", tmp_path / "m.h5")


# ----------------------------------------------------------------------------- bad input

def _one_error_line(capsys, argv, message, seconds=None):
    """``main(argv)`` fails with exit status 2 and the one line ``fastvi: error:
    message...`` (within ``seconds`` if given)."""
    capsys.readouterr()
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("fastvi: error: ")] == lines[-1:], err
    assert lines[-1].startswith("fastvi: error: " + message), err
    if seconds is not None:
        assert elapsed < seconds, f"{elapsed:.1f} s: {err}"
    return lines[-1]


def _case(case_id, files, tmp_path, **addresses):
    case = HERE[case_id]
    if case.setup is not None:
        case.setup(str(tmp_path), str(files / "good"))
    argv, message = (expand(text, tmp_path, files / "good") for text in (case.argv,
                                                                         case.message))
    for placeholder, address in addresses.items():
        argv, message = argv.replace(placeholder, address), message.replace(placeholder,
                                                                            address)
    return argv.split(), message


def test_nothing_answers_at_the_scheduler_address(files, tmp_path, capsys):
    argv, message = _case("--scheduler-nothing-answers-there", files, tmp_path)
    _one_error_line(capsys, argv, message, seconds=15)


def test_a_port_that_accepts_but_never_answers_fails_in_bounded_time(files, capsys):
    """A socket that listens and never speaks (a web server, a firewall's tarpit): the
    TCP connect succeeds, distributed's handshake would wait for ever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = "tcp://127.0.0.1:%d" % silent.getsockname()[1]
        _one_error_line(capsys, ["score", str(files / "good" / "gmm.h5"),
                                 str(files / "good" / "data.h5"), "--scheduler", address,
                                 "--scheduler-timeout", "1"],
                        f"--scheduler {address}: nothing answered in 1 s", seconds=15)


def test_a_worker_is_not_a_scheduler(files, cluster, tmp_path, capsys):
    worker = next(iter(cluster.scheduler_info["workers"]))
    argv, message = _case("--scheduler-a-Dask-worker's-address", files, tmp_path,
                          **{WORKER_PLACEHOLDER: worker})
    _one_error_line(capsys, argv, message, seconds=15)


def test_dask_not_installed(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)      # its import fails
    argv, message = _case("--workers-dask-not-installed", files, tmp_path)
    _one_error_line(capsys, argv, message)
    good = files / "good"
    for argv in (["score", str(good / "gmm.h5"), str(good / "data.h5")],
                 ["predict", str(good / "gmm.h5"), str(good / "data.h5"),
                  "-o", str(tmp_path / "p.h5")]):
        for option in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"]):
            _one_error_line(capsys, argv + option, f"{' '.join(option)} needs "
                            "dask.distributed, which is not installed")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["predict", "score"])
def test_data_the_workers_cannot_open(files, cluster, tmp_path, capsys, monkeypatch,
                                      command):
    """The client opens the file, the workers do not find it at that path (no shared
    file system): the backend's error, as one line."""
    import fastvi.cli.predict as predict
    real = predict.open_source

    def opened_then_gone(spec, **kwargs):
        source = real(spec, **kwargs)
        os.remove(spec)          # this process holds it open; the workers open its path
        return source

    monkeypatch.setattr(predict, "open_source", opened_then_gone)
    argv, message = _case("DATA-not-at-its-path-on-the-Dask-workers", files, tmp_path,
                          **{SCHEDULER_PLACEHOLDER: cluster.scheduler_address})
    if command == "score":
        argv = ["score"] + argv[1:3] + argv[5:]      # without -o
    line = _one_error_line(capsys, argv, message, seconds=30)
    assert "every worker must see the file at this path" in line
    assert os.listdir(tmp_path) == []               # no output, no temporary file


def test_local_commands_do_not_import_dask(files):
    code = ("import sys, contextlib, io\n"
            "from fastvi.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    status = main(sys.argv[1:])\n"
            "print(status, sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, "score", str(files / "local.h5"),
                           str(files / "data.h5")], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["0", "[]"], done.stderr
