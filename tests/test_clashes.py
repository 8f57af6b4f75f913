"""Outputs never replace an input or a file the command did not write (issue 26).

The refusals are rows of ``tests/bad_inputs.py`` (each checks that every input keeps its
bytes); here, what still works: a command that creates data replaces its own earlier
output without a word, and anything with ``--force``; a log goes to a pipe that a
process reads.
"""
import os
import threading

import h5py
import pytest

from fastvi.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")


def _generator(path):
    with h5py.File(path, "r") as f:
        return f.attrs.get("generator")


def test_make_data_replaces_its_own_file_and_others_only_with_force(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert main(["make-data", str(out), "--n-samples", "20", "--seed", "1"]) == 0
    assert main(["make-data", str(out), "--n-samples", "30", "--seed", "2"]) == 0
    with h5py.File(out, "r") as f:
        assert f["X"].shape[0] == 30
    mine = tmp_path / "mine.h5"
    mine.write_bytes(b"my own bytes")
    assert main(["make-data", str(mine), "--n-samples", "20"]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_bytes() == b"my own bytes"
    assert main(["make-data", str(mine), "--n-samples", "20", "--force"]) == 0
    assert _generator(mine) == "fastvi.datasets.write_mixture_h5"


def test_demo_out_runs_again_in_its_own_folder_and_force_replaces_the_users(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path), "--n-samples", "3000", "--passes", "2",
            "--batch-size", "1000"]
    assert main(argv) == 0
    assert main(argv) == 0                          # its own files: replaced
    (tmp_path / "model.h5").unlink()
    with h5py.File(tmp_path / "model.h5", "w") as f:
        f["mine"] = [1.0]
    assert main(argv) == 2
    assert "model.h5' exists and was not written by fastvi" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    with h5py.File(tmp_path / "model.h5", "r") as f:
        assert f.attrs["written_by"] == "fastvi demo"


def test_log_to_a_pipe_that_a_process_reads(tmp_path, capsys):
    from fastvi.datasets import write_mixture_h5
    write_mixture_h5(tmp_path / "data.h5", 300, 2, 2, chunk_rows=100)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    argv = ["fit", str(tmp_path / "data.h5"), "--k", "2", "--passes", "2", "--no-checkpoint",
            "-o", str(tmp_path / "m.h5"), "--log", str(pipe)]
    # no reader: one error line at once, not a hang
    assert main(argv) == 2
    assert "cannot write the log" in capsys.readouterr().err
    lines = []

    def read():
        with open(pipe, encoding="utf-8") as fh:
            lines.extend(fh)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        import time
        time.sleep(0.2)                             # the reader has opened its end
        assert main(argv) == 0
    finally:
        reader.join(timeout=30)
    assert lines and '"event": "end"' in lines[-1]
