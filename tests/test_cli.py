"""The ``fastvi`` command end to end, through ``fastvi.cli.main`` on small files."""
import json
import os
import re

import h5py
import numpy as np
import pytest

from fastvi.cli import main
from fastvi.io.model import load_model

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")

N_ROWS, N_FEATURES, K = 3000, 4, 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A generated data set and one fitted model of each class, made through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    assert main(["make-data", str(d / "data.h5"), "--n-samples", str(N_ROWS),
                 "--n-features", str(N_FEATURES), "--n-components", str(K),
                 "--seed", "3", "--chunk-rows", "1000"]) == 0
    for model in ("gmm", "bgmm"):
        assert main(["fit", str(d / "data.h5"), "--k", str(K), "--model", model,
                     "--cov", "full", "--max-iter", "20", "--seed", "0",
                     "--chunk-size", "700", "-o", str(d / f"{model}.h5")]) == 0
    return d


def _data(d):
    with h5py.File(d / "data.h5", "r") as f:
        return f["X"][()], f["labels"][()]


def _error(capsys, argv):
    """Run ``main(argv)``; assert exit status 2 and one error line; return the message."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fastvi: error: "), err
    assert "Traceback" not in err
    return err


def test_make_data_writes_the_schema(workdir):
    with h5py.File(workdir / "data.h5", "r") as f:
        assert f["X"].shape == (N_ROWS, N_FEATURES) and f["X"].dtype == np.float32
        assert f["X"].chunks == (1000, N_FEATURES)
        assert f["labels"].dtype == np.int32
        assert f["truth/means"].shape == (K, N_FEATURES)
        assert f.attrs["seed"] == "3"


@pytest.mark.parametrize("model", ["gmm", "bgmm"])
def test_fit_prints_a_summary_and_saves(workdir, capsys, model):
    out = workdir / f"{model}-again.h5"
    assert main(["fit", f"{workdir / 'data.h5'}:/X", "--k", str(K), "--model", model,
                 "--cov", "diag", "--max-iter", "5", "--init", "k-means++", "--threads", "1",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("Mixture", "K=3", "iterations", "lower bound", "rows/s", "weights", str(out)):
        assert word in text
    loaded = load_model(out)
    assert loaded.covariance_type == "diag" and loaded.init_params == "k-means++"
    expected = "GaussianMixture" if model == "gmm" else "BayesianGaussianMixture"
    assert type(loaded).__name__ == expected


def test_fit_verbose_and_weight_prior(workdir, capsys):
    out = workdir / "dd.h5"
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--model", "bgmm",
                 "--weight-prior", "dirichlet_distribution", "--max-iter", "3", "--verbose",
                 "-o", str(out)]) == 0
    assert "Pass 1" in capsys.readouterr().out
    assert load_model(out).weight_concentration_prior_type == "dirichlet_distribution"


def test_fit_with_merge_moves_logs_them(workdir, tmp_path, capsys):
    out, log = tmp_path / "merged.h5", tmp_path / "fit.jsonl"
    assert main(["fit", str(workdir / "data.h5"), "--k", "12", "--model", "bgmm",
                 "--algorithm", "memoized", "--moves", "merge", "--chunk-size", "1000",
                 "--max-iter", "20", "-o", str(out), "--log", str(log)]) == 0
    text = capsys.readouterr().out
    live = load_model(out).means_.shape[0]
    assert 1 <= live < 12 and f"{live} of the cap 12 components live" in text
    passes = [json.loads(line) for line in log.read_text().splitlines()]
    moves = [move for record in passes if record.get("event") == "pass"
             for move in record.get("moves", ())]
    assert sum(move["accepted"] for move in moves) == 12 - live
    assert all(move["move"] == "merge" and "gain" in move for move in moves)


def test_fit_with_births_grows_the_components_and_logs_them(workdir, tmp_path, capsys):
    out, log = tmp_path / "born.h5", tmp_path / "fit.jsonl"
    assert main(["fit", str(workdir / "data.h5"), "--k", "12", "--k-init", "1",
                 "--model", "bgmm", "--algorithm", "memoized", "--moves", "birth", "merge",
                 "--chunk-size", "1000", "--max-iter", "20", "-o", str(out),
                 "--log", str(log)]) == 0
    text = capsys.readouterr().out
    live = load_model(out).means_.shape[0]
    assert live > 1 and f"{live} of the cap 12 components live" in text
    passes = [json.loads(line) for line in log.read_text().splitlines()]
    births = [move for record in passes if record.get("event") == "pass"
              for move in record.get("moves", ()) if move["move"] == "birth"]
    assert births[0]["accepted"] and births[0]["components"] == [0] and births[0]["gain"] > 0
    assert "params" not in births[0]
    # the summary counts them in English: "1 birth", "3 births", "0 merges"
    moves = [move for record in passes if record.get("event") == "pass"
             for move in record.get("moves", ()) if move["accepted"]]
    said = {kind: sum(move["move"] == kind for move in moves) for kind in ("birth", "merge")}
    words = [f"{n} {kind}" + ("" if n == 1 else "s") for kind, n in said.items()]
    assert f"moves        accepted {words[0]}, {words[1]}:" in text


def test_moves_need_the_bayesian_model(workdir, tmp_path, capsys):
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "3", "--moves", "merge",
                          "-o", str(tmp_path / "m.h5")])
    assert "--moves applies only to --model bgmm" in err


def test_fit_from_npy(workdir, tmp_path):
    X, _ = _data(workdir)
    np.save(tmp_path / "rows.npy", X)
    assert main(["fit", str(tmp_path / "rows.npy"), "--k", "2", "--max-iter", "3",
                 "-o", str(tmp_path / "m.h5")]) == 0
    assert load_model(tmp_path / "m.h5").n_features_in_ == N_FEATURES


@pytest.mark.parametrize("model", ["gmm", "bgmm"])
def test_predict_matches_the_estimator(workdir, tmp_path, model):
    X, _ = _data(workdir)
    estimator = load_model(workdir / f"{model}.h5")
    out = tmp_path / "pred.h5"
    # A chunk size that does not divide the rows: the last chunk is short.
    assert main(["predict", str(workdir / f"{model}.h5"), str(workdir / "data.h5"),
                 "-o", str(out), "--proba", "--chunk-size", "700"]) == 0
    with h5py.File(out, "r") as f:
        assert f["labels"].dtype == np.int32 and f["resp"].dtype == np.float32
        np.testing.assert_array_equal(f["labels"][()], estimator.predict(X))
        np.testing.assert_array_equal(f["resp"][()],
                                      estimator.predict_proba(X).astype(np.float32))
    assert os.listdir(tmp_path) == ["pred.h5"]
    assert main(["predict", str(workdir / f"{model}.h5"), str(workdir / "data.h5"),
                 "-o", str(out)]) == 0
    with h5py.File(out, "r") as f:
        assert "resp" not in f


@pytest.mark.parametrize("model", ["gmm", "bgmm"])
def test_score_matches_the_estimator(workdir, capsys, model):
    X, _ = _data(workdir)
    estimator = load_model(workdir / f"{model}.h5")
    assert main(["score", str(workdir / f"{model}.h5"), str(workdir / "data.h5"),
                 "--chunk-size", "1000"]) == 0
    text = capsys.readouterr().out
    mean = float(re.search(r"score\s+(\S+)", text).group(1))
    total = float(re.search(r"total\s+(\S+)", text).group(1))
    # Chunked sums differ from one np.mean only by rounding.
    assert mean == pytest.approx(estimator.score(X), rel=1e-12)
    assert total == pytest.approx(estimator.score_samples(X).sum(), rel=1e-12)


def test_info_on_model_data_and_npy(workdir, tmp_path, capsys):
    assert main(["info", str(workdir / "bgmm.h5")]) == 0
    text = capsys.readouterr().out
    for word in ("BayesianGaussianMixture", "params", "n_features", "K ", "lower bound",
                 "weights", '"covariance_type": "full"'):
        assert word in text
    assert main(["info", str(workdir / "data.h5")]) == 0
    text = capsys.readouterr().out
    assert "/X" in text and "(3000, 4)" in text and "float32" in text and "chunks" in text
    np.save(tmp_path / "rows.npy", np.zeros((5, 2), dtype=np.float64))
    assert main(["info", str(tmp_path / "rows.npy")]) == 0
    assert "(5, 2)" in capsys.readouterr().out


def test_demo_small(tmp_path, capsys):
    assert main(["demo", "--n-samples", "4000", "--max-iter", "10",
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    ari = float(re.search(r"ARI\s+(\S+)", text).group(1))
    assert -1.0 <= ari <= 1.0
    assert sorted(os.listdir(tmp_path)) == ["mixture.h5", "model.h5"]
    assert load_model(tmp_path / "model.h5").n_components == 16


# ----------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    with h5py.File(d / "bad.h5", "w") as f:
        f["flat"] = np.arange(10.0)
        f["text"] = np.array([[b"a", b"b"], [b"c", b"d"]])
        f["X"] = np.zeros((10, N_FEATURES + 1), dtype=np.float32)
    (d / "corrupt.h5").write_bytes(np.random.default_rng(0).bytes(2048))
    return d


@pytest.mark.parametrize("command", ["fit", "predict", "score"])
@pytest.mark.parametrize("data, words", [
    ("missing.h5", ["missing.h5", "does not exist"]),
    ("bad.h5:/nope", ["/nope", "bad.h5", "/flat"]),
    ("bad.h5:/flat", ["bad.h5:/flat", "2-D"]),
    ("bad.h5:/text", ["bad.h5:/text", "dtype"]),
    ("corrupt.h5", ["corrupt.h5", "HDF5"]),
])
def test_bad_data_exits_2_naming_it(workdir, bad_files, tmp_path, capsys, command, data,
                                    words):
    spec = str(bad_files / data)
    out = tmp_path / "out.h5"
    argv = {"fit": ["fit", spec, "--k", "2", "-o", str(out)],
            "predict": ["predict", str(workdir / "gmm.h5"), spec, "-o", str(out), "--proba"],
            "score": ["score", str(workdir / "gmm.h5"), spec]}[command]
    err = _error(capsys, argv)
    for word in words:
        assert word in err
    assert os.listdir(tmp_path) == []           # no output and no temporary file


@pytest.mark.parametrize("command", ["predict", "score"])
def test_feature_count_mismatch(workdir, bad_files, tmp_path, capsys, command):
    argv = [command, str(workdir / "gmm.h5"), str(bad_files / "bad.h5:/X")]
    if command == "predict":
        argv += ["-o", str(tmp_path / "out.h5")]
    err = _error(capsys, argv)
    assert "bad.h5:/X" in err and "5 features" in err and "gmm.h5" in err
    assert os.listdir(tmp_path) == []


def test_nan_rows_name_the_file_and_row(tmp_path, capsys):
    X = np.ones((50, 2))
    X[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    err = _error(capsys, ["fit", str(tmp_path / "nan.npy"), "--k", "2",
                          "-o", str(tmp_path / "m.h5")])
    assert "nan.npy" in err and "row 7" in err
    assert not (tmp_path / "m.h5").exists()


def test_failed_predict_leaves_no_output(workdir, tmp_path, capsys, monkeypatch):
    # A failure in the middle of the chunk loop (after the output was opened).
    from fastvi import GaussianMixture
    calls = []

    def failing_predict(self, X):
        calls.append(len(X))
        if len(calls) == 2:
            raise ValueError("simulated failure in chunk 2")
        return np.zeros(len(X), dtype=np.int64)

    monkeypatch.setattr(GaussianMixture, "predict", failing_predict)
    err = _error(capsys, ["predict", str(workdir / "gmm.h5"), str(workdir / "data.h5"),
                          "-o", str(tmp_path / "out.h5"), "--chunk-size", "1000"])
    assert "chunk 2" in err
    assert os.listdir(tmp_path) == []


def test_bad_model_files(workdir, bad_files, tmp_path, capsys):
    data = str(workdir / "data.h5")
    err = _error(capsys, ["predict", data, data, "-o", str(tmp_path / "o.h5")])
    assert "data.h5" in err and "not a fastvi model" in err
    err = _error(capsys, ["score", str(bad_files / "corrupt.h5"), data])
    assert "corrupt.h5" in err
    err = _error(capsys, ["info", str(tmp_path / "nothing.h5")])
    assert "nothing.h5" in err
    err = _error(capsys, ["info", str(bad_files / "corrupt.h5")])
    assert "corrupt.h5" in err


def test_output_may_not_overwrite_an_input(workdir, capsys):
    err = _error(capsys, ["predict", str(workdir / "gmm.h5"), str(workdir / "data.h5"),
                          "-o", str(workdir / "data.h5")])
    assert "overwrite" in err
    with h5py.File(workdir / "data.h5", "r") as f:
        assert "X" in f


def test_usage_errors(capsys):
    assert main([]) == 2
    assert main(["fit"]) == 2                                   # argparse: DATA missing
    assert main(["fit", "x.h5", "--k", "0", "-o", "m.h5"]) == 2
    assert main(["--version"]) == 0
    capsys.readouterr()
    err = _error(capsys, ["fit", "x.h5", "--k", "2", "--weight-prior", "dirichlet_process",
                          "-o", "m.h5"])
    assert "--weight-prior" in err


# ----------------------------------------------------------------------------- batch jobs

def _events(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_log_writes_json_lines_with_pass_bounds(workdir, tmp_path, capsys):
    out, log = tmp_path / "m.h5", tmp_path / "fit.jsonl"
    assert main(["fit", str(workdir / "data.h5"), "--k", str(K), "--model", "bgmm",
                 "--algorithm", "memoized", "--batch-size", "1000", "--passes", "4",
                 "--tol", "0", "--log", str(log), "-o", str(out)]) == 0
    capsys.readouterr()
    events = _events(log)                       # every line is one JSON object
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert all("time" in e and "wall" in e for e in events)
    chunks = [e for e in events if e["event"] == "chunk"]
    passes = [e for e in events if e["event"] == "pass"]
    assert len(chunks) == 4 * 3 and sum(e["rows"] for e in chunks) == 4 * N_ROWS
    assert [e["pass"] for e in passes] == [1, 2, 3, 4]
    assert [e["step"] for e in passes] == [3, 6, 9, 12]
    assert all(np.isfinite(e["bound"]) for e in passes)
    # Memoized VB never lowers the bound after its first pass.
    assert all(b >= a - 1e-9 for a, b in zip([e["bound"] for e in passes[1:]],
                                            [e["bound"] for e in passes[2:]]))
    assert passes[-1]["bound"] == load_model(out).lower_bound_
    assert events[-1]["passes"] == 4 and events[-1]["output"] == str(out)
    assert sorted(os.listdir(tmp_path)) == ["fit.jsonl", "m.h5"]      # checkpoint removed


def test_n_batches_makes_memoized_steps_of_several_chunks(workdir, tmp_path, capsys):
    # 3 chunks of 1000 rows in 2 batches (2 chunks, then 1): a step of several chunks
    # reports them in one record (the local backend hands them back chunk by chunk, so
    # the records follow the chunks), and the model file keeps the setting
    out, log = tmp_path / "m.h5", tmp_path / "fit.jsonl"
    assert main(["fit", str(workdir / "data.h5"), "--k", str(K), "--model", "bgmm",
                 "--algorithm", "memoized", "--batch-size", "1000", "--n-batches", "2",
                 "--passes", "3", "--tol", "0", "--log", str(log), "-o", str(out)]) == 0
    capsys.readouterr()
    passes = [e for e in _events(log) if e["event"] == "pass"]
    assert [e["step"] for e in passes] == [3, 6, 9]
    assert all(b >= a - 1e-9 for a, b in zip([e["bound"] for e in passes[1:]],
                                            [e["bound"] for e in passes[2:]]))
    assert load_model(out).get_params()["n_batches"] == 2


def test_validation_records_held_out_values(workdir, tmp_path, capsys):
    X, _ = _data(workdir)
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f.create_dataset("X", data=X[:2000], chunks=(500, N_FEATURES))
    with h5py.File(tmp_path / "held.h5", "w") as f:
        f.create_dataset("rows", data=X[2000:], chunks=(500, N_FEATURES))
    out, log = tmp_path / "m.h5", tmp_path / "fit.jsonl"
    assert main(["fit", str(tmp_path / "train.h5"), "--k", str(K), "--model", "bgmm",
                 "--algorithm", "stochastic", "--batch-size", "500", "--passes", "3",
                 "--validation", f"{tmp_path / 'held.h5'}:/rows", "--log", str(log),
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out" in text
    passes = [e for e in _events(log) if e["event"] == "pass"]
    assert passes and all(np.isfinite(e["validation"]) for e in passes)
    model = load_model(out)
    # float32 data: the saved parameters are the fit's float64 ones rounded to float32
    assert passes[-1]["validation"] == pytest.approx(model.score(X[2000:]), rel=1e-6)
    held = float(re.search(r"held-out\s+(\S+)", text).group(1))
    assert held == pytest.approx(passes[-1]["validation"], abs=1e-6)


@pytest.mark.parametrize("algorithm", ["batch", "stochastic"])
def test_several_files_equal_one_file(workdir, tmp_path, capsys, algorithm):
    # Per-file row counts that are multiples of the chunk rows: the same chunks either way.
    X, _ = _data(workdir)
    parts = [(0, 2000), (2000, 3000)]
    for i, (start, stop) in enumerate(parts):
        with h5py.File(tmp_path / f"part{i}.h5", "w") as f:
            f.create_dataset("X", data=X[start:stop], chunks=(1000, N_FEATURES))
    common = ["--k", str(K), "--model", "bgmm", "--algorithm", algorithm, "--passes", "3",
              "--chunk-size", "1000", "--batch-size", "1000"]
    assert main(["fit", f"{workdir / 'data.h5'}:/X", *common,
                 "-o", str(tmp_path / "one.h5")]) == 0
    assert main(["fit", f"{tmp_path / 'part0.h5'}:/X", str(tmp_path / "part1.h5"), *common,
                 "-o", str(tmp_path / "two.h5")]) == 0
    text = capsys.readouterr().out
    assert "part0.h5:/X + " in text and "(3000 x 4)" in text
    one, two = load_model(tmp_path / "one.h5"), load_model(tmp_path / "two.h5")
    for key in ("means_", "covariances_", "weights_"):
        assert np.array_equal(getattr(one, key), getattr(two, key)), key


def test_npy_and_hdf5_files_together(workdir, tmp_path):
    X, _ = _data(workdir)
    np.save(tmp_path / "a.npy", X[:1000].astype(np.float64))
    assert main(["fit", str(tmp_path / "a.npy"), str(workdir / "data.h5"), "--k", "2",
                 "--passes", "2", "-o", str(tmp_path / "m.h5")]) == 0
    assert load_model(tmp_path / "m.h5").n_features_in_ == N_FEATURES


def test_mismatched_feature_counts_across_files(workdir, bad_files, tmp_path, capsys):
    err = _error(capsys, ["fit", str(workdir / "data.h5"), str(bad_files / "bad.h5:/X"),
                          "--k", "2", "-o", str(tmp_path / "m.h5")])
    assert "same number of features" in err
    assert "data.h5:/X: 4" in err and "bad.h5:/X: 5" in err
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "2", "--validation",
                          str(bad_files / "bad.h5:/X"), "-o", str(tmp_path / "m.h5")])
    assert "--validation" in err and "5 features" in err
    # A bad file among several is named like a single one.
    err = _error(capsys, ["fit", str(workdir / "data.h5"), str(bad_files / "missing.h5"),
                          "--k", "2", "-o", str(tmp_path / "m.h5")])
    assert "missing.h5" in err and "does not exist" in err
    assert os.listdir(tmp_path) == []


def test_resume_errors(workdir, tmp_path, capsys):
    data, out = str(workdir / "data.h5"), str(tmp_path / "m.h5")
    err = _error(capsys, ["fit", data, "--k", "2", "-o", out, "--resume"])
    assert "no checkpoint" in err and f"{out}.ckpt" in err
    err = _error(capsys, ["fit", "--resume", "-o", out, "--checkpoint",
                          str(tmp_path / "other.ckpt")])
    assert "other.ckpt" in err
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle at all")
    err = _error(capsys, ["fit", "--resume", "-o", out, "--checkpoint",
                          str(tmp_path / "junk.ckpt")])
    assert "junk.ckpt" in err and "checkpoint" in err


def _stopped_fit(workdir, tmp_path, *extra, capsys=None):
    """A checkpoint as an interrupted ``fit`` leaves it (written mid-way by the loop)."""
    from fastvi.io.checkpoint import Checkpointer

    class Stop(Exception):
        pass

    original = Checkpointer.write

    def write_then_stop(self, state):
        original(self, state)
        if state.step >= 2:
            raise Stop

    argv = ["fit", str(workdir / "data.h5"), "--k", str(K), "--algorithm", "stochastic",
            "--batch-size", "1000", "--passes", "3", "--checkpoint-chunks", "1",
            "-o", str(tmp_path / "m.h5"), *extra]
    Checkpointer.write = write_then_stop
    try:
        assert main(argv) == 1          # any other exception is an internal error
    finally:
        Checkpointer.write = original
    if capsys is not None:
        assert "fastvi: internal error: Stop" in capsys.readouterr().err
    assert (tmp_path / "m.h5.ckpt").exists() and not (tmp_path / "m.h5").exists()
    return argv


def test_resume_checks_options_and_data(workdir, tmp_path, capsys):
    argv = _stopped_fit(workdir, tmp_path, capsys=capsys)
    # Starting afresh over the checkpoint of an interrupted fit is refused.
    err = _error(capsys, argv)
    assert "--resume" in err and "m.h5.ckpt" in err
    # Options given with --resume must agree with the checkpoint.
    err = _error(capsys, argv[:3] + ["4"] + argv[4:] + ["--resume"])
    assert "--k 4" in err and "checkpoint: 3" in err
    err = _error(capsys, argv + ["--algorithm", "memoized", "--resume"])
    assert "--algorithm memoized" in err
    with h5py.File(workdir / "data.h5", "r") as f:
        rows = f["X"][:2500]
    moved = tmp_path / "data.h5"
    with h5py.File(moved, "w") as f:
        f.create_dataset("X", data=rows, chunks=(1000, N_FEATURES))
    err = _error(capsys, [argv[0], str(moved), *argv[2:], "--resume"])
    assert "DATA" in err and str(moved) in err
    # The data changed since: clear error, checkpoint kept.
    from fastvi.io.checkpoint import load_checkpoint, Checkpointer
    state, meta = load_checkpoint(tmp_path / "m.h5.ckpt")
    meta = dict(meta, data=[f"{moved}:/X"])
    Checkpointer(tmp_path / "m.h5.ckpt", meta=meta).write(state)
    err = _error(capsys, ["fit", "--resume", "-o", str(tmp_path / "m.h5")])
    assert "changed" in err and "2500 x 4" in err and "3000 x 4" in err
    assert (tmp_path / "m.h5.ckpt").exists() and not (tmp_path / "m.h5").exists()


def test_resume_needs_only_the_output(workdir, tmp_path, capsys):
    argv = _stopped_fit(workdir, tmp_path, "--seed", "4", capsys=capsys)
    capsys.readouterr()
    # --threads may change on resuming; --no-checkpoint still removes the one consumed.
    assert main(["fit", "--resume", "-o", str(tmp_path / "m.h5"), "--threads", "1",
                 "--no-checkpoint"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]
    resumed = load_model(tmp_path / "m.h5")
    assert main([*argv[:-2], "-o", str(tmp_path / "ref.h5"), "--seed", "4"]) == 0
    reference = load_model(tmp_path / "ref.h5")
    for key in ("means_", "covariances_", "weights_"):
        assert np.array_equal(getattr(resumed, key), getattr(reference, key)), key


def test_n_init_and_checkpoints(workdir, tmp_path, capsys):
    out = str(tmp_path / "m.h5")
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--n-init", "2",
                 "--passes", "2", "-o", out]) == 0
    assert "no checkpoint with --n-init 2" in capsys.readouterr().err
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "2", "--n-init", "2",
                          "--checkpoint-chunks", "1", "-o", out])
    assert "--n-init 1" in err


def test_fit_usage_errors(workdir, tmp_path, capsys):
    assert main(["fit", "--k", "2", "-o", "m.h5"]) == 2                  # no DATA
    assert "DATA" in capsys.readouterr().err
    assert main(["fit", str(workdir / "data.h5"), "-o", "m.h5"]) == 2     # no --k
    assert "--k" in capsys.readouterr().err
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--algorithm", "sgd",
                 "-o", "m.h5"]) == 2
    capsys.readouterr()
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "2", "--kappa", "0.3",
                          "-o", str(tmp_path / "m.h5")])
    assert "kappa" in err
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "2",
                          "-o", str(tmp_path / "no" / "m.h5")])
    assert "does not exist" in err
    err = _error(capsys, ["fit", str(workdir / "data.h5"), "--k", "2",
                          "-o", str(workdir / "data.h5")])
    assert "overwrite" in err
    assert os.listdir(tmp_path) == []


def test_minibatches_smaller_than_the_hdf5_chunks_stay_small(workdir, tmp_path, capsys):
    # data.h5 is chunked by 1000 rows: 300-row minibatches are read as asked.
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--algorithm", "stochastic",
                 "--batch-size", "300", "--passes", "1", "--log", str(tmp_path / "l.jsonl"),
                 "-o", str(tmp_path / "m.h5")]) == 0
    captured = capsys.readouterr()
    assert "batch_size=300" in captured.out and "read as" not in captured.out
    rows = sorted(e["rows"] for e in _events(tmp_path / "l.jsonl") if e["event"] == "chunk")
    assert rows == [300] * 10

    # above one HDF5 chunk, reads are rounded up to whole chunks, and the CLI says so
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--algorithm", "stochastic",
                 "--batch-size", "1500", "--passes", "1", "--log", str(tmp_path / "l2.jsonl"),
                 "-o", str(tmp_path / "m2.h5")]) == 0
    captured = capsys.readouterr()
    assert "minibatches of up to 2000 rows" in captured.err
    assert "batch_size=1500 read as 2000" in captured.out

    # a minibatch of several chunks (3000 over --chunk-size 1500: 2 chunks of 1500), each
    # rounded up to whole HDF5 chunks: 2 of 2000 rows
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--algorithm", "stochastic",
                 "--batch-size", "3000", "--chunk-size", "1500", "--passes", "1",
                 "-o", str(tmp_path / "m3.h5")]) == 0
    captured = capsys.readouterr()
    assert "minibatches of up to 4000 rows" in captured.err
    assert "batch_size=3000 in 2 chunks of 2000" in captured.out


def test_progress_bar_when_forced(workdir, tmp_path, capsys):
    assert main(["fit", str(workdir / "data.h5"), "--k", "2", "--passes", "2",
                 "--progress", "-o", str(tmp_path / "m.h5")]) == 0
    err = capsys.readouterr().err
    assert "rows/s" in err and "bound=" in err and "pass 2/2" in err


def test_fit_with_a_truncated_q(workdir, tmp_path, capsys):
    import fastvi
    out = tmp_path / "hard.h5"
    assert main(["fit", str(workdir / "data.h5"), "--k", "6", "--n-active", "1",
                 "--n-candidates", "3", "--max-iter", "4", "--tol", "0",
                 "-o", str(out)]) == 0
    assert "n_active=1, n_candidates=3" in capsys.readouterr().out
    loaded = load_model(out)
    assert (loaded.n_active, loaded.n_candidates) == (1, 3)
    with h5py.File(workdir / "data.h5", "r") as f:
        api = fastvi.GaussianMixture(6, n_active=1, n_candidates=3, max_iter=4, tol=0,
                                     random_state=0).fit(f["X"])
    np.testing.assert_array_equal(loaded.means_, api.means_)
    assert loaded.lower_bound_ == api.lower_bound_


def test_predict_top_writes_each_rows_most_probable_components(workdir, tmp_path):
    X, _ = _data(workdir)
    estimator = load_model(workdir / "gmm.h5")
    out = tmp_path / "top.h5"
    assert main(["predict", str(workdir / "gmm.h5"), str(workdir / "data.h5"), "-o", str(out),
                 "--top", "2", "--chunk-size", "700"]) == 0
    resp = estimator.predict_proba(X)
    order = np.argsort(-resp, axis=1, kind="stable")[:, :2]
    kept = np.take_along_axis(resp, order, axis=1)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["top_index"][()], order)
        np.testing.assert_allclose(f["top_resp"][()], kept / kept.sum(axis=1, keepdims=True),
                                   rtol=1e-6)


# ----------------------------------------------------------------------------- issue 10

def test_make_data_sample_seed_writes_held_out_rows_of_the_same_mixture(workdir, tmp_path,
                                                                        capsys):
    held = tmp_path / "held.h5"
    assert main(["make-data", str(held), "--n-samples", "1000", "--n-features",
                 str(N_FEATURES), "--n-components", str(K), "--seed", "3",
                 "--sample-seed", "1"]) == 0
    assert "--sample-seed 1" in capsys.readouterr().out
    with h5py.File(workdir / "data.h5", "r") as a, h5py.File(held, "r") as b:
        np.testing.assert_array_equal(a["truth/means"][()], b["truth/means"][()])
        np.testing.assert_array_equal(a["truth/covariances"][()], b["truth/covariances"][()])
        assert not np.any(np.all(a["X"][:1000] == b["X"][()], axis=1))


def _bar_states(err):
    """The successive states of tqdm bars written to a non-terminal (\\r-separated)."""
    return [s.strip() for s in re.split(r"[\r\n]", err) if "rows/s" in s or "rows/" in s]


def test_fit_progress_ends_at_100_percent_per_pass(workdir, tmp_path, capsys):
    assert main(["fit", str(workdir / "data.h5"), "--k", str(K), "--passes", "50",
                 "--chunk-size", "700", "--progress", "-o", str(tmp_path / "m.h5")]) == 0
    captured = capsys.readouterr()
    passes = int(re.search(r"iterations\s+(\d+) passes", captured.out).group(1))
    assert passes < 50                                  # converged well before --passes
    states = [s for s in _bar_states(captured.err) if "fit pass" in s]
    assert states[-1].startswith(f"fit pass {passes}/50: 100%"), states[-1]
    for n in range(1, passes + 1):                      # every pass reached its end
        assert any(s.startswith(f"fit pass {n}/50: 100%") for s in states), n
    # and once ended, a pass is never drawn again from 0% (the next pass's bar is)
    for before, after in zip(states, states[1:]):
        if re.match(r"fit pass \d+/50: 100%", before) and " 0%" in after:
            assert after.split(":")[0] != before.split(":")[0], (before, after)


def test_convergence_warning_names_the_cli_options(workdir, tmp_path, capsys):
    data = str(workdir / "data.h5")
    assert main(["fit", data, "--k", str(K), "--passes", "1", "--tol", "0",
                 "-o", str(tmp_path / "a.h5")]) == 0
    warnings_ = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert len(warnings_) == 1, warnings_
    assert "--passes 1" in warnings_[0] and "--tol 0" in warnings_[0]
    assert "max_iter" not in warnings_[0] and "initialization" not in warnings_[0]
    assert main(["fit", data, "--k", str(K), "--passes", "1", "--tol", "0", "--n-init", "2",
                 "-o", str(tmp_path / "b.h5")]) == 0
    warnings_ = [l for l in capsys.readouterr().err.splitlines() if "warning:" in l]
    assert len(warnings_) == 1 and "--n-init 2 initializations" in warnings_[0], warnings_
    assert "max_iter" not in warnings_[0]


@pytest.fixture(scope="module")
def amortized_models(workdir):
    """A small VAE and a PPCA fitted through the CLI on the module's data."""
    for model, extra in (("vae", ["--decoder-hidden", "5"]), ("ppca", [])):
        assert main(["amortized", "fit", str(workdir / "data.h5"), "--model", model,
                     "--latent", "2", "--epochs", "3", *extra,
                     "-o", str(workdir / f"{model}.h5")]) == 0
    return workdir


@pytest.mark.parametrize("model", ["vae", "ppca"])
def test_info_summarises_amortized_models(amortized_models, capsys, model):
    path = amortized_models / f"{model}.h5"
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    with h5py.File(path, "r") as f:
        history = json.loads(f.attrs["elbo_history_"])
        version = int(f.attrs["format_version"])
    assert "elbo_history_" not in out and "@" not in out      # no raw attribute dump
    assert f"format_version {version}" in out
    assert re.search(r"^class\s+" + ("VAE" if model == "vae" else "PPCA") + "$", out, re.M)
    assert re.search(r"^n_latent\s+2$", out, re.M)
    assert re.search(rf"^n_features\s+{N_FEATURES}$", out, re.M)
    assert re.search(r"^inference\s+amortized", out, re.M)
    assert re.search(r"^likelihood\s+gaussian", out, re.M)
    assert re.search(rf"^epochs\s+{len(history)}$", out, re.M)
    assert f"{history[-1]:.6f}" in out


def test_gap_of_the_first_rows_equals_the_closed_form(amortized_models, capsys):
    """PPCA's gaps are closed form: the CLI's block-wise mean over the first N rows must
    equal gap_report on those rows at once."""
    from fastvi.io.amortized import load_amortized
    X, _ = _data(amortized_models)
    path = str(amortized_models / "ppca.h5")
    capsys.readouterr()
    assert main(["amortized", "gap", path, str(amortized_models / "data.h5"),
                 "--max-rows", "1234", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "the first 1234 of" in captured.out and "(1234 rows)" in captured.out
    assert any(s.startswith("gap: 100%") and "1234/1234" in s
               for s in re.split(r"[\r\n]", captured.err))
    expected = load_amortized(path).gap_report(X[:1234].astype(np.float64))
    for key, value in expected.items():
        printed = float(re.search(rf"^{key}\s+(\S+)", captured.out, re.M).group(1))
        assert printed == pytest.approx(value, abs=1e-4), key


def test_gap_of_a_vae_combines_blocks_weighted_by_rows(amortized_models, capsys):
    from fastvi.io.amortized import load_amortized
    from fastvi.cli.amortized import GAP_BLOCK_ROWS
    X, _ = _data(amortized_models)
    path = str(amortized_models / "vae.h5")
    n_rows = GAP_BLOCK_ROWS + 100                    # one whole block and a part
    capsys.readouterr()
    assert main(["amortized", "gap", path, str(amortized_models / "data.h5"),
                 "--max-rows", str(n_rows), "--importance", "5",
                 "--optimise-steps", "3", "--progress"]) == 0
    captured = capsys.readouterr()
    assert f"({n_rows} rows)" in captured.out and "gap: 100%" in captured.err
    model = load_amortized(path)
    X = X.astype(model.dtype)
    first = model.gap_report(X[:GAP_BLOCK_ROWS], n_importance=5, optimise_steps=3,
                             random_state=0)
    second = model.gap_report(X[GAP_BLOCK_ROWS:n_rows], n_importance=5, optimise_steps=3,
                              random_state=1)
    for key in first:
        expected = (GAP_BLOCK_ROWS * first[key] + 100 * second[key]) / n_rows
        printed = float(re.search(rf"^{key}\s+(\S+)", captured.out, re.M).group(1))
        assert printed == pytest.approx(expected, abs=1e-4), key


# ----------------------------------------------------------------------------- issue 29

def test_missing_values_from_make_data_to_fit_predict_impute_and_score(tmp_path, capsys):
    """make-data --missing-rate, fit --missing marginalize (its summary counts the holes),
    predict --impute and score: the same numbers as the API on the same rows."""
    data = tmp_path / "holes.h5"
    assert main(["make-data", str(data), "--n-samples", "3000", "--n-features", "4",
                 "--n-components", "3", "--missing-rate", "0.2", "--chunk-rows", "700"]) == 0
    with h5py.File(data, "r") as f:
        X = f["X"][()]
        assert f.attrs["missing_rate"] == 0.2
    holes = np.isnan(X)
    assert 0.18 < holes.mean() < 0.22
    capsys.readouterr()
    model = tmp_path / "m.h5"
    assert main(["fit", f"{data}:/X", "--k", "3", "--missing", "marginalize",
                 "-o", str(model)]) == 0
    out = capsys.readouterr().out
    assert (f"missing      {holes.mean():.2%} of the entries, in "
            f"{holes.any(axis=1).sum()} rows (marginalised); "
            f"{holes.all(axis=1).sum()} with none observed") in out
    estimator = load_model(model)
    assert estimator.missing == "marginalize"
    filled = tmp_path / "filled.h5"
    assert main(["predict", str(model), f"{data}:/X", "-o", str(filled), "--impute",
                 "--proba", "--chunk-size", "500"]) == 0
    with h5py.File(filled, "r") as f:
        np.testing.assert_array_equal(f["imputed"][()], estimator.impute(X))
        np.testing.assert_array_equal(f["labels"][()], estimator.predict(X))
        assert f["imputed"].dtype == np.float32
    capsys.readouterr()
    assert main(["score", str(model), f"{data}:/X"]) == 0
    mean = float(re.search(r"score\s+(\S+)", capsys.readouterr().out).group(1))
    assert mean == pytest.approx(estimator.score(X), rel=1e-12)
    # a model fitted without holes refuses them, but --impute fills them
    complete = tmp_path / "complete.npy"
    np.save(complete, np.where(holes, 0.0, X))
    plain = tmp_path / "plain.h5"
    assert main(["fit", str(complete), "--k", "3", "-o", str(plain)]) == 0
    assert main(["predict", str(plain), f"{data}:/X", "-o", str(tmp_path / "p.h5")]) == 2
    assert main(["predict", str(plain), f"{data}:/X", "-o", str(tmp_path / "p.h5"),
                 "--impute"]) == 0
