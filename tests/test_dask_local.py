"""``fastvi.engine.dask_local.local_client``: a cluster of worker processes started from a
script, and the one sentence when the script starts it without a ``__main__`` guard."""
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

from fastvi.engine.dask_local import _guarded_lines, local_cluster_kwargs  # noqa: E402

SCRIPT = """\
import numpy as np
import fastvi
from fastvi.engine.cluster import DaskBackend
from fastvi.engine.dask_local import local_client

{guard}
    X = np.random.default_rng(0).standard_normal((600, 3))
    with local_client(n_workers=1) as client:
        there = fastvi.GaussianMixture(2, random_state=0, chunk_size=200,
                                       backend=DaskBackend(client)).fit(X)
    here = fastvi.GaussianMixture(2, random_state=0, chunk_size=200).fit(X)
    assert (there.means_ == here.means_).all()
    print("same bits")
"""


def _run(tmp_path, guard, tail=""):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(guard=guard) + tail)
    return subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_a_guarded_script_fits_on_its_local_cluster_quietly(tmp_path):
    proc = _run(tmp_path, 'if __name__ == "__main__":')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "same bits\n" and proc.stderr == ""


def test_an_unguarded_script_is_told_in_one_sentence(tmp_path):
    # local_client at the top level; a guard (for something else) at the bottom does not
    # hide it
    proc = _run(tmp_path, "if True:               # no __main__ guard",
                tail='if __name__ == "__main__":\n    pass\n')
    assert proc.returncode != 0 and "same bits" not in proc.stdout
    sentence = (f"the Dask cluster cannot start: its worker processes import the script "
                f"{tmp_path / 'script.py'} again")
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: " + sentence) and "__main__" in last
    # the worker says the same in a line of its own; Dask's tracebacks are not shown
    assert f"fastvi: {sentence}" in proc.stderr
    assert "Nanny failed to start" not in proc.stderr
    assert "bootstrapping phase" not in proc.stderr


@pytest.mark.parametrize("source,lines", [
    ('if __name__ == "__main__":\n    pass\n', [(2, 2)]),
    ("import os\nif '__main__' == __name__:\n    x = 1\n    y = 2\n", [(3, 4)]),
    ("import fastvi\nfastvi.GaussianMixture(2)\n", []),
    ("def main():\n    if __name__ == '__main__':\n        pass\n", []),
])
def test_the_guarded_lines_are_those_of_top_level_guards(tmp_path, source, lines):
    path = tmp_path / "s.py"
    path.write_text(source)
    assert _guarded_lines(str(path)) == lines


def test_the_workers_share_the_cores():
    kwargs = local_cluster_kwargs(2, cores=8)
    assert kwargs["n_workers"] == 2 and kwargs["threads_per_worker"] == 1
    assert kwargs["env"] == {"NUMBA_NUM_THREADS": "4"}
    assert kwargs["dashboard_address"] is None      # never port 8787: no clash, no warning
