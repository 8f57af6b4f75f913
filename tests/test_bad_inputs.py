"""Every bad input of the ``fastvi`` command ends in one line ``fastvi: error: ...`` and
exit status 2, never a traceback; a bug ends in one ``fastvi: internal error: ...`` line
and exit status 1 (the traceback with ``--debug``).

The cases are ``tests/bad_inputs.py``'s ``CASES``, the same list that docs/errors.md's
table is made from (``test_errors_doc_is_up_to_date``).  They run in-process through
``fastvi.cli.main``.
"""
import hashlib
import os

import numpy as np
import pytest

from fastvi.cli import main
from fastvi.datasets import write_mixture_h5

from bad_inputs import CASES, DOC, expand, render

pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")
HERE = [case for case in CASES if case.runs_in == "tests/test_bad_inputs.py"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Good inputs: data.h5 (300 x 3 float32 at /X), rows.npy, gmm.h5 fitted to them."""
    d = tmp_path_factory.mktemp("good")
    write_mixture_h5(d / "data.h5", 300, 3, 3, chunk_rows=100)
    assert main(["fit", str(d / "data.h5"), "--k", "3", "--passes", "3",
                 "-o", str(d / "gmm.h5")]) == 0
    return d


def _file_bytes(folder):
    """{path: sha256 of its bytes} of the regular files under ``folder``."""
    digests = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    digests[path] = hashlib.sha256(fh.read()).hexdigest()
    return digests


@pytest.mark.parametrize("case", HERE, ids=[case.id for case in HERE])
def test_bad_input_is_one_clear_line(case, good, tmp_path, capsys):
    if case.setup is not None:
        case.setup(str(tmp_path), str(good))
    before = sorted(os.listdir(good))
    inputs = _file_bytes(good) | _file_bytes(tmp_path)
    capsys.readouterr()
    code = main(expand(case.argv, tmp_path, good).split())
    err = capsys.readouterr().err
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    # A fit may warn first (one line each); the error is the last line and the only one.
    assert [line for line in lines if line.startswith("fastvi: error: ")] == lines[-1:], err
    assert lines[-1].startswith("fastvi: error: " + expand(case.message, tmp_path, good)), err
    assert sorted(os.listdir(good)) == before            # no input touched, nothing left
    # every file that was there before (the inputs) has the same bytes
    assert {path: digest for path, digest in (_file_bytes(good) | _file_bytes(tmp_path)).items()
            if path in inputs} == inputs
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_every_case_is_tested_somewhere():
    here = os.path.dirname(__file__)
    for case in CASES:
        assert os.path.exists(os.path.join(here, os.pardir, case.runs_in)), case.id
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


def test_errors_doc_is_up_to_date():
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    assert render(text) == text, "run `python tests/bad_inputs.py` to update docs/errors.md"


def test_a_bug_is_one_internal_error_line_and_debug_shows_the_traceback(good, monkeypatch,
                                                                        capsys):
    import fastvi.cli.predict

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(fastvi.cli.predict, "score_chunks", broken)
    argv = ["score", str(good / "gmm.h5"), str(good / "data.h5")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == ("fastvi: internal error: ZeroDivisionError: division by zero (run with "
                   "--debug for the traceback)\n")
    for debug_argv in (["--debug", *argv], [*argv, "--debug"]):
        assert main(debug_argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "in broken" in err
        assert err.strip().splitlines()[-1] == ("fastvi: internal error: ZeroDivisionError: "
                                                "division by zero")
    monkeypatch.setenv("FASTVI_DEBUG", "1")
    assert main(argv) == 1
    assert "Traceback" in capsys.readouterr().err


def test_debug_shows_the_traceback_of_a_bad_input_too(good, tmp_path, capsys):
    assert main(["--debug", "fit", str(tmp_path / "nope.h5"), "--k", "2",
                 "-o", str(tmp_path / "m.h5")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("fastvi: error: ")


def test_parameter_errors_do_not_blame_the_data(good, tmp_path, capsys):
    assert main(["fit", str(good / "data.h5"), "--k", "2", "--kappa", "0.3",
                 "-o", str(tmp_path / "m.h5")]) == 2
    err = capsys.readouterr().err
    assert "data.h5" not in err and "kappa" in err


def test_an_unwritable_output_is_found_before_the_work(good, tmp_path, capsys, monkeypatch):
    # The fit must not start when the model cannot be written: count the fits.
    import fastvi.cli.fit
    calls = []
    monkeypatch.setattr(fastvi.cli.fit, "_fit_model", lambda *a, **k: calls.append(1))
    os.mkdir(tmp_path / "d")
    assert main(["fit", str(good / "data.h5"), "--k", "2", "-o", str(tmp_path / "d")]) == 2
    assert "cannot write the model" in capsys.readouterr().err and not calls
    if os.geteuid() != 0:       # root may write into a read-only folder
        os.chmod(tmp_path / "d", 0o555)
        assert main(["fit", str(good / "data.h5"), "--k", "2",
                     "-o", str(tmp_path / "d" / "m.h5")]) == 2
        assert "cannot write the model" in capsys.readouterr().err and not calls


def test_integer_npy_like_integer_hdf5_is_refused(good, tmp_path, capsys):
    np.save(tmp_path / "int.npy", np.arange(20).reshape(10, 2))
    assert main(["fit", str(tmp_path / "int.npy"), "--k", "2",
                 "-o", str(tmp_path / "m.h5")]) == 2
    assert "holds int64 values" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "int.npy")]) == 0     # info describes any file
