"""Sizes (issue 26): a size that only bounds the work from above is clamped to the data,
one whose arrays cannot fit in memory is refused before they are allocated, naming the
parameter, and a MemoryError that still happens is one clear line, not a bug.

The refusals that hold on any machine (terabytes) are cases of tests/bad_inputs.py; the
ones here shrink the machine instead (``physical_memory`` patched), so that small sizes
reach each check.
"""
import h5py
import numpy as np
import pytest

import fastvi.data.memory as memory
from fastvi.amortized import VAE
from fastvi.cli import main
from fastvi.data.memory import SizeError, check_memory, format_bytes
from fastvi.data.sources import ArraySource, ConcatSource, HDF5Source
from fastvi.datasets import make_mixture, write_mixture_h5
from fastvi.io.model import load_model
from fastvi.mixture import BayesianGaussianMixture, GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")
HUGE = 10 ** 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 x 3 float32 rows at /X, HDF5 chunks of 100 rows (as tests/bad_inputs.py's)."""
    path = tmp_path_factory.mktemp("sizes") / "data.h5"
    write_mixture_h5(path, 300, 3, 3, chunk_rows=100)
    return path


@pytest.fixture(scope="module")
def rows(data):
    with h5py.File(data, "r") as f:
        return f["X"][()]


def _memory(monkeypatch, n_bytes):
    """This machine, as the size checks see it, has ``n_bytes`` of memory."""
    monkeypatch.setattr(memory, "physical_memory", lambda: n_bytes)


def _fit(path, tmp_path, name, *options):
    out = tmp_path / name
    assert main(["fit", str(path), "--k", "3", "--passes", "5", "-o", str(out),
                 *map(str, options)]) == 0
    return load_model(out)


def _same_model(a, b):
    for name in ("weights_", "means_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.lower_bound_ == b.lower_bound_


# ----------------------------------------------------------------------------- helpers

def test_format_bytes():
    assert format_bytes(512) == "512 bytes"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(24 * 2 ** 30) == "24 GiB"
    assert format_bytes(8 * 10 ** 12) == "7.3 TiB"
    assert format_bytes(10 ** 30).endswith(" YiB")         # no unit beyond: a number


def test_check_memory_names_the_size_and_the_machine(monkeypatch):
    _memory(monkeypatch, 24 * 2 ** 30)
    check_memory(24 * 2 ** 30, "n_things 3", "the things")          # exactly fits
    with pytest.raises(SizeError, match=r"^n_things 4 needs 32 GiB for the things; this "
                                        r"machine has 24 GiB$"):
        check_memory(32 * 2 ** 30, "n_things 4", "the things")
    assert issubclass(SizeError, ValueError)
    monkeypatch.setattr(memory, "physical_memory", lambda: None)     # unknown: no check
    check_memory(10 ** 30, "n_things 5", "the things")


def test_a_chunk_holds_at_most_the_rows(data, rows):
    with h5py.File(data, "r") as f:
        source = HDF5Source(f["X"], chunk_rows=HUGE)
        assert source.chunk_bounds() == [(0, 300)] and source.max_chunk_rows == 300
        assert source.buffer_bytes() == 3 * 300 * 3 * 4        # read ahead, not 10**12 rows
        chunks = list(source.chunks(reuse=True))
        assert len(chunks) == 1 and chunks[0][2].shape == (300, 3)
        both = ConcatSource([HDF5Source(f["X"], chunk_rows=HUGE), ArraySource(rows[:50])])
        assert both.max_chunk_rows == 300
    assert ArraySource(rows, chunk_rows=HUGE).buffer_bytes() == 0     # views of the array
    assert ArraySource(rows, chunk_rows=HUGE, dtype=np.float64).buffer_bytes() == 300 * 3 * 8


# ----------------------------------------------------------------------------- clamped

def test_fit_chunk_size_beyond_the_data_is_clamped(data, tmp_path):
    _same_model(_fit(data, tmp_path, "huge.h5", "--chunk-size", HUGE),
                _fit(data, tmp_path, "rows.h5", "--chunk-size", 300))


@pytest.mark.parametrize("algorithm", ["stochastic", "memoized"])
def test_fit_batch_size_beyond_the_data_is_clamped(data, tmp_path, algorithm):
    _same_model(_fit(data, tmp_path, "huge.h5", "--algorithm", algorithm, "--batch-size", HUGE),
                _fit(data, tmp_path, "rows.h5", "--algorithm", algorithm, "--batch-size", 300))


def test_predict_and_score_chunk_size_and_top_beyond_the_data(data, tmp_path, capsys):
    model = tmp_path / "m.h5"
    assert main(["fit", str(data), "--k", "3", "--passes", "3", "-o", str(model)]) == 0
    outputs = {}
    for name, options in (("huge", ["--chunk-size", str(HUGE), "--top", str(10 ** 9)]),
                          ("small", ["--chunk-size", "100", "--top", "3"])):
        path = tmp_path / f"{name}.h5"
        assert main(["predict", str(model), str(data), "-o", str(path), "--proba",
                     *options]) == 0
        with h5py.File(path, "r") as f:
            outputs[name] = {key: f[key][()] for key in ("labels", "resp", "top_index")}
    for key in ("labels", "resp", "top_index"):
        np.testing.assert_array_equal(outputs["huge"][key], outputs["small"][key])
    assert outputs["huge"]["top_index"].shape == (300, 3)        # --top clamped to K
    capsys.readouterr()
    scores = []
    for chunk in (str(HUGE), "300"):
        assert main(["score", str(model), str(data), "--chunk-size", chunk]) == 0
        scores.append(capsys.readouterr().out)
    assert scores[0] == scores[1]


def test_api_chunk_and_batch_sizes_beyond_the_data(data, rows):
    reference = GaussianMixture(3, random_state=0).fit(rows)
    with h5py.File(data, "r") as f:
        for X in (rows, f["X"]):
            _same_model(GaussianMixture(3, chunk_size=HUGE, random_state=0).fit(X), reference)
        online = [GaussianMixture(3, algorithm="stochastic", batch_size=size, max_iter=5,
                                  random_state=0).fit(f["X"]) for size in (HUGE, 300)]
    _same_model(*online)
    VAE(batch_size=HUGE, chunk_size=HUGE, max_epochs=1, random_state=0).fit(rows)


# ----------------------------------------------------------------------------- refused

def test_make_mixture_refuses_a_width_whose_covariances_cannot_fit():
    with pytest.raises(SizeError, match=r"^n_features \(--n-features\) 1000000 needs 36 TiB "
                                        r"for one full covariance"):
        make_mixture(10, n_features=10 ** 6)
    with pytest.raises(SizeError, match=r"^n_samples 1000000000000 needs 62 TiB for the rows"):
        make_mixture(10 ** 12)


def test_fit_names_the_components_when_one_fits_but_not_all(monkeypatch):
    X = np.zeros((40, 200))
    _memory(monkeypatch, 100 * 2 ** 20)
    with pytest.raises(SizeError, match=r"^n_components \(--k\) 40 with covariance_type "
                                        r"\(--cov\) 'full' on 200 features needs 488 MiB for "
                                        r"the components' statistics \(40 arrays of 40 x 200 "
                                        r"x 200 float64"):
        GaussianMixture(40).fit(X)
    with pytest.raises(SizeError, match=r"^covariance_type \(--cov\) 'tied' on 2000 features "
                                        r"needs 1.2 GiB for one component's"):
        BayesianGaussianMixture(2, covariance_type="tied").fit(np.zeros((4, 2000)))


def test_fit_names_the_chunk_size_and_clamps_it_in_the_message(data, monkeypatch):
    # Of a one-thread diag fit of one component to 300 x 3 rows (float32, read ahead from
    # HDF5): the statistics 1.9 KiB, the E-step's work 4 KiB, the chunks 10.5 KiB (shown as 11).
    _memory(monkeypatch, 9 * 1024)
    with h5py.File(data, "r") as f, pytest.raises(
            SizeError, match=r"^chunk_size \(--chunk-size\) 1000000000000 needs 11 KiB for "
                             r"the chunks in memory at once \(up to 3 of 300 x 3 float32\)"):
        GaussianMixture(1, covariance_type="diag", chunk_size=HUGE, n_jobs=1).fit(f["X"])


def test_fit_names_n_active_for_supports_in_memory(monkeypatch):
    X = np.zeros((100_000, 1))
    _memory(monkeypatch, 100 * 1024)
    model = GaussianMixture(3, covariance_type="diag", n_active=1, n_candidates=2, n_jobs=1,
                            init_sample_size=100)
    with pytest.raises(SizeError, match=r"^n_active \(--n-active\) 1 needs 391 KiB for the "
                                        r"rows' supports in memory \(100000 x 1 int32; "
                                        r"support_file \(--support-file\)"):
        model.fit(X)


def test_predict_proba_names_the_rows(rows, monkeypatch):
    model = GaussianMixture(3, random_state=0).fit(rows)
    _memory(monkeypatch, 4 * 1024)
    with pytest.raises(SizeError, match=r"^X \(300 rows\) needs 7 KiB for the per-row outputs "
                                        r"\(300 x 3 float64\)"):
        model.predict_proba(rows)
    assert model.predict(rows[:10]).shape == (10,)


def test_cli_predict_names_the_chunk_size(data, tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.h5"
    assert main(["fit", str(data), "--k", "3", "--passes", "3", "-o", str(model)]) == 0
    _memory(monkeypatch, 16 * 1024)
    out = tmp_path / "p.h5"
    capsys.readouterr()
    assert main(["predict", str(model), str(data), "-o", str(out), "--proba"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastvi: error: ") and "chunk_rows (--chunk-size) 65536 needs" in err
    assert "300 x 3 float64" in err and not out.exists()
    assert main(["predict", str(model), str(data), "-o", str(out), "--proba",
                 "--chunk-size", "10"]) == 0


def test_vae_names_the_largest_size(rows):
    with pytest.raises(SizeError, match=r"^encoder_hidden \(--encoder-hidden\) "
                                        r"16,10000000000 needs"):
        VAE(encoder_hidden=(16, 10 ** 10)).fit(rows)
    with pytest.raises(SizeError, match=r"^n_latent \(--latent\) 10000000000 needs"):
        VAE(10 ** 10, inference="per_example").fit(rows)


# ----------------------------------------------------------------------------- last resort

def test_a_memory_error_is_one_clear_line(data, tmp_path, monkeypatch, capsys):
    import fastvi.cli.fit

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 12 GiB for an array")

    monkeypatch.setattr(fastvi.cli.fit, "_fit_model", out_of_memory)
    assert main(["fit", str(data), "--k", "3", "-o", str(tmp_path / "m.h5")]) == 2
    assert capsys.readouterr().err == (
        "fastvi: error: out of memory (Unable to allocate 12 GiB for an array): lower the "
        "sizes of the job (--chunk-size, --batch-size or --k) or free memory\n")
