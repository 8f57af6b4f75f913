"""``fastvi amortized fit|gap|demo``: every option's help and default, and the progress
bars (``--progress``: each epoch's rows, ELBO so far and time left; the gap's rows and
time left)."""
import argparse
import re

import numpy as np
import pytest

from fastvi.cli import main
from fastvi.cli.main import build_parser
from test_ppca import ppca_data


def amortized_subparsers():
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    inner = next(a for a in top.choices["amortized"]._actions
                 if isinstance(a, argparse._SubParsersAction))
    return inner.choices


@pytest.mark.parametrize("command", ["fit", "gap", "demo"])
def test_every_option_has_help_and_its_default(command):
    """One line of help per option, ending with its default in parentheses where it has
    one (a flag's default, off, is not shown), as ``fastvi fit --help`` does."""
    sub = amortized_subparsers()[command]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name} has no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            shown = {str(action.default), f"{action.default:g}"
                     if isinstance(action.default, float) else str(action.default)}
            assert any(f"({text})" in action.help for text in shown), (
                f"{command} {name}: default {action.default!r} not in {action.help!r}")
    text = sub.format_help()
    assert "(0.001)" in text or command != "fit"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    X, *_ = ppca_data(3000, n_features=5, n_latent=2, seed=2)
    path = tmp_path_factory.mktemp("cli") / "x.npy"
    np.save(path, X)
    return str(path)


def bar_lines(err):
    return [line for line in re.split(r"[\r\n]", err) if line.strip()]


def test_fit_draws_a_bar_per_epoch(tmp_path, capsys, data_file):
    assert main(["amortized", "fit", data_file, "--epochs", "2", "--batch-size", "50",
                 "--progress", "-o", str(tmp_path / "m.h5")]) == 0
    captured = capsys.readouterr()
    lines = bar_lines(captured.err)
    for epoch in (1, 2):
        mine = [line for line in lines if f"amortized fit pass {epoch}/2" in line]
        assert mine, captured.err
        # rows done of the epoch, the time left in it (the ELBO so far is in the
        # postfix of a redraw within an epoch: test_epoch_progress_shows_the_elbo_so_far)
        assert any(re.search(r"\d+(\.\d+)?k?/3\.00k", line) for line in mine)
        assert any(re.search(r"<\d\d:\d\d", line) for line in mine)
    assert "100%" in lines[-1] or any("100%" in line for line in lines)
    # the epoch lines are still printed, on stdout
    assert "epoch 1: ELBO" in captured.out and "epoch 2: ELBO" in captured.out


def test_epoch_progress_shows_the_elbo_so_far(capsys):
    """The records of ``VAE.fit``'s callback: the rows move the bar, the running ELBO
    is its postfix, an epoch's end prints its line on stdout."""
    from fastvi.cli.amortized import EpochProgress
    progress = EpochProgress(True, 100, 3, first_epoch=1)
    bar = progress.progress.bar
    assert bar.desc.startswith("amortized fit pass 2/3") and bar.n == 0
    progress({"event": "chunk", "pass": 1, "rows": 40, "elbo": -1.25})
    assert bar.n == 40 and bar.postfix == "ELBO=-1.2500"
    progress({"event": "chunk", "pass": 1, "rows": 60, "elbo": -1.5})
    progress({"event": "pass", "pass": 2, "bound": -1.5, "seconds": 0.25})
    progress({"event": "chunk", "pass": 2, "rows": 10, "elbo": -1.0})
    assert bar.n == 10 and bar.desc.startswith("amortized fit pass 3/3")
    progress.close()
    assert "epoch 2: ELBO -1.5000 per row (0.2 s)" in capsys.readouterr().out


def test_fit_without_a_terminal_draws_no_bar(tmp_path, capsys, data_file):
    assert main(["amortized", "fit", data_file, "--epochs", "1",
                 "-o", str(tmp_path / "m.h5")]) == 0
    captured = capsys.readouterr()
    assert "amortized fit pass" not in captured.err
    assert "epoch 1: ELBO" in captured.out


def test_gap_bar_counts_the_rows_and_shows_the_time_left(tmp_path, capsys, data_file):
    model = str(tmp_path / "v.h5")
    assert main(["amortized", "fit", data_file, "--epochs", "1", "--decoder-hidden", "8",
                 "-o", model]) == 0
    capsys.readouterr()
    assert main(["amortized", "gap", model, data_file, "--max-rows", "300",
                 "--importance", "50", "--optimise-steps", "40", "--progress"]) == 0
    lines = bar_lines(capsys.readouterr().err)
    assert re.search(r"\| *300/300 \[\d\d:\d\d<\d\d:\d\d", lines[-1]), lines


class CountingBar:
    def __init__(self):
        self.n, self.steps = 0, []

    def update(self, n):
        self.n += n
        self.steps.append(n)


def test_gap_bar_moves_within_a_block(data_file):
    """The report's shares of a block's work move the bar by whole rows as they come
    (so its time left shows within the first block); the block's last row is left to
    the end of the block."""
    from fastvi.cli.amortized import BlockShare, gap_in_blocks
    import fastvi
    from fastvi.data.sources import as_source
    X = np.load(data_file)[:300]
    model = fastvi.VAE(2, decoder_hidden=(8,), max_epochs=1, random_state=0).fit(X)
    bar = CountingBar()
    share = BlockShare(bar, 300)
    model.gap_report(X, n_importance=50, optimise_steps=40, callback=share)
    assert len(bar.steps) > 10 and bar.n == 299
    report, rows = gap_in_blocks(model, as_source(X), n_importance=50, optimise_steps=40)
    assert rows == 300
    assert report == model.gap_report(X, n_importance=50, optimise_steps=40)


def test_demo_shows_its_bars_and_gaps(capsys):
    assert main(["amortized", "demo", "--epochs", "1", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "amortized fit pass 1/1" in captured.err and "gap:" in captured.err
    assert "amortization_gap" in captured.out


def test_gap_with_no_optimisation_steps_reports_no_amortization_gap(tmp_path, capsys,
                                                                     data_file):
    """--optimise-steps 0 (psi* = the encoder's psi): the API's optimise_steps=0."""
    model = str(tmp_path / "v.h5")
    assert main(["amortized", "fit", data_file, "--epochs", "1", "--decoder-hidden", "8",
                 "-o", model]) == 0
    capsys.readouterr()
    assert main(["amortized", "gap", model, data_file, "--max-rows", "100",
                 "--importance", "20", "--optimise-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^amortization_gap +0\.0000 nats per example$", out, re.M), out


def test_the_ppca_start_has_a_bar_of_its_own(capsys):
    """PPCA's closed-form start (a pass over the rows before the first epoch) draws its
    own bar, per pass, gone when the epochs begin."""
    from fastvi.cli.amortized import EpochProgress
    progress = EpochProgress(True, 100, 2)
    progress({"event": "init", "step": "moments", "rows": 60})
    assert progress.start.desc == "closed-form start (moments)" and progress.start.n == 60
    progress({"event": "init", "step": "moments", "rows": 40})
    progress({"event": "init", "step": "psi", "rows": 100})
    assert progress.start.desc == "closed-form start (psi)" and progress.start.n == 100
    progress({"event": "chunk", "pass": 0, "rows": 50, "elbo": -1.0})
    assert progress.start is None and progress.progress.bar.n == 50
    progress.close()
    assert "closed-form start (moments)" in capsys.readouterr().err
